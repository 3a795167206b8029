//! Pipeline snapshots, the pipeline waterfall between two of them, and forecast accuracy.
//!
//! ## Snapshots
//! A snapshot is an immutable copy of every open deal of the tenant (not deleted, status
//! `open`) at one instant: its pipeline, stage, owner, team, amount, the amount in the
//! base currency, probability, expected close date and creation instant. An Admin or a
//! Manager takes one on demand ([`Analytics::take_snapshot`]; anyone else is
//! PermissionDenied), or the host calls [`Analytics::take_due_snapshots`] and the tenant's
//! [`SnapshotSchedule`] says when. A snapshot always holds **every** open deal of the
//! tenant, whoever takes it. There is no update path; an Admin may delete one
//! ([`Analytics::delete_snapshot`]: audited, event `analytics.snapshot_deleted`), which
//! removes its rows for good (a snapshot is derived data; the audit entry keeps who
//! deleted it and how many deals it held).
//!
//! **Money.** The base-currency amount of each row is the deal's amount converted at the
//! snapshot's rate date (the local date of `taken_at` in the reporting zone), rounded half
//! to even to the base currency's minor unit, per deal. A currency of an open deal without
//! a rate on that date is a Validation error on `rate_date` naming the currency and the
//! date (checked before anything is written); no base currency is one on `base_currency`.
//! The waterfall and the forecast side of forecast accuracy sum these stored per-deal
//! amounts exactly, so a snapshot's figures never change afterwards, and the waterfall
//! reconciles exactly.
//!
//! **Storage.** A header row in `analytics_snapshot` and one row per deal in
//! `analytics_snapshot_deal`, keyed `(tenant, snapshot, deal)`: reading a snapshot in deal
//! order is a range of that key. Taking a snapshot writes the header first, marked
//! incomplete, then the rows in changesets of [`SNAPSHOT_CHUNK`] deals read page by page
//! from the deals table in id order (so memory stays bounded by one chunk, and no backend
//! sees a 100k-statement transaction), then marks the header complete with its deal count,
//! its audit entry and its `analytics.snapshot_taken` event. An incomplete snapshot is
//! invisible to every read. If a chunk fails, the partial snapshot is deleted before the
//! error is returned; one left by a crash is deleted by the next
//! [`Analytics::take_due_snapshots`] once it is older than an hour. Since the deals are
//! read page by page, a deal changed while a snapshot is being taken is recorded either
//! before or after the change (each deal exactly once).
//!
//! **Access.** Reading (rows, waterfall, forecast accuracy, a snapshot's deal count) is
//! scoped by the owner and team **recorded in the snapshot row**: a Rep or ReadOnly user
//! sees the rows of deals that they or their teams owned when the snapshot was taken (the
//! same rule as deal lists, pushed into the read as a condition). The outcome of a deal
//! that left the pipeline (won, lost) is read from the deals table with the actor's
//! **current** access: a deal the actor cannot see now counts as `removed`, so nothing
//! hidden shows through.
//!
//! ## The waterfall
//! [`Waterfall`] compares two snapshots, `earlier` and `later`, optionally within a
//! filter (a pipeline, and/or a period of expected close dates: a deal without a close
//! date is outside a period filter). `start` is the earlier snapshot's deals in the filter,
//! `end` the later one's. Every deal in either is in exactly one change, decided in this
//! order (E: its row in the earlier snapshot, L: its row in the later one, "in" = present,
//! visible and in the filter):
//!
//! | change | when | amount |
//! |---|---|---|
//! | `new` | L in, E absent, created after the earlier snapshot was taken | + L |
//! | `moved_in` | L in, E absent (created before) or present but outside the filter: moved into the pipeline or close period, reopened, restored, or given to the actor | + L |
//! | `increased` / `decreased` / `unchanged` | E and L in: amount larger / smaller / equal (compared in the deal's currency when it kept it, else in the base currency; no amount is zero) | L − E (for `unchanged` the exchange-rate effect) |
//! | `slipped` | E in, L present outside the filter, L in the filter's pipeline, and its close date after the filter period's end | − E |
//! | `moved_out` | E in, L present outside the filter otherwise (other pipeline, close date earlier, removed) | − E |
//! | `won` / `lost` | E in, L absent, the deal (visible to the actor now) won / lost at or before the later snapshot | − E |
//! | `removed` | E in, L absent otherwise (deleted, hidden from the actor now, reopened after closing) | − E |
//!
//! Rows come in that order between `start` and `end`; money is the sum of the stored
//! per-deal base amounts (a deal without an amount counts and adds nothing), so
//! `start + Σ changes = end` exactly, in count (where increases, decreases and unchanged
//! deals move nothing) and in amount. `start` and `end` are backend aggregates over each
//! snapshot; the changes are one merge of the two snapshots read in deal order (a page of
//! [`SNAPSHOT_CHUNK`] rows of each at a time, plus one read of the deals that left per
//! chunk of them), so the waterfall is linear in the snapshots' sizes.
//!
//! ## Forecast accuracy
//! [`ForecastAccuracy`] takes what a snapshot forecast for a period (its open deals whose
//! expected close date lies in the period, in the categories of [`crate::Forecast`]:
//! `pipeline` below `best_case_at`, `best_case` from it to below `commit_at`, `commit`
//! from `commit_at`, and the weighted amount, all from the stored base amounts) and what
//! actually closed: the deals won on a local date of the period at or after the snapshot
//! was taken, their amounts converted at `rate_date` (the snapshot's rate date by
//! default) and rounded once per currency. `accuracy` is won / weighted, rounded half to
//! even to 4 places. Optionally per owner (the snapshot's recorded owner for the forecast,
//! the deal's owner for what was won). Every count and sum is a backend aggregate.
//!
//! ## Schedule
//! A tenant's [`SnapshotSchedule`] (every day, every week on a weekday, or every month on
//! a day from 1 to 28, at a local time in the reporting zone) is kept in this module's
//! settings table, set by an Admin. [`Analytics::take_due_snapshots`], called by the host
//! as often as it likes, takes the snapshot of the latest scheduled instant at or before
//! `now` (not before the schedule was set) unless it was taken: the scheduled instant is a
//! unique key of the snapshot table, so two concurrent callers take it once (the second
//! gets `None`). Earlier instants missed while the host did not call are not taken: a
//! snapshot can only record the present. A scheduled snapshot an Admin deletes is taken
//! again by the next call while its instant is still the latest one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use crmkit_core::service::visibility_scope;
use crmkit_core::store::{
    CmpOp, ColumnType, Cond, IndexDef, Measure, OrderKey, Row, Select, TableDef, Value, Write,
    columns,
};
use crmkit_core::{
    AuditChange, Changeset, Ctx, Currency, DealId, Error, Money, NewEvent, PipelineId, RecordKind,
    RecordRef, Result, StageId, TeamId, UserId, ValidationErrors,
};
use crmkit_pipeline::currency::Currencies;
use crmkit_pipeline::deal::Deals;
use crmkit_pipeline::deal::rows::DEAL_TABLE;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Analytics;
use crate::period::{Period, local_date};
use crate::sales::{Converter, Line, div_half_even, minor_digits, ratio};
use crate::settings::SETTINGS_TABLE;

/// The snapshot headers.
pub const SNAPSHOT_TABLE: &str = "analytics_snapshot";
/// The snapshot rows, one per deal, keyed `(snapshot_id, deal_id)`.
pub const SNAPSHOT_DEAL_TABLE: &str = "analytics_snapshot_deal";
/// The record kind of snapshots (audit entries, events, NotFound errors).
pub const SNAPSHOT: RecordKind = RecordKind::new("analytics_snapshot");
/// Deals per changeset when a snapshot is written, and rows per page when one is read.
pub const SNAPSHOT_CHUNK: usize = 1000;
/// The most rows [`Analytics::snapshot_rows`] returns at once.
pub const MAX_ROWS_PAGE: u32 = 1000;
/// How old an incomplete snapshot (left by a crash) must be before
/// [`Analytics::take_due_snapshots`] deletes it.
pub const STALE_INCOMPLETE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

const SCHEDULE_KEY: &str = "snapshot_schedule";

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            SNAPSHOT_TABLE,
            columns(&[
                ("id", Uuid, false),
                ("taken_at", Timestamp, false),
                ("taken_by", Uuid, false),
                ("scheduled_for", Timestamp, true),
                ("deal_count", Int, false),
                ("base_currency", Text(3), false),
                ("rate_date", Date, false),
                ("complete", Int, false),
            ]),
            ["id"],
        )
        .index(IndexDef::unique(
            "analytics_snapshot_schedule",
            ["scheduled_for"],
        ))
        .index(IndexDef::new(
            "analytics_snapshot_taken",
            ["complete", "taken_at", "id"],
        )),
        TableDef::new(
            SNAPSHOT_DEAL_TABLE,
            columns(&[
                ("snapshot_id", Uuid, false),
                ("deal_id", Uuid, false),
                ("pipeline_id", Uuid, false),
                ("stage_id", Uuid, false),
                ("owner_id", Uuid, false),
                ("team_id", Uuid, true),
                ("amount", Decimal, true),
                ("currency", Text(3), true),
                ("base_amount", Decimal, true),
                ("probability", Int, false),
                ("base_weighted_x100", Int, true),
                ("expected_close", Date, true),
                ("created_at", Timestamp, false),
            ]),
            ["snapshot_id", "deal_id"],
        )
        .index(IndexDef::new(
            "analytics_snapshot_deal_close",
            ["snapshot_id", "expected_close"],
        )),
    ]
}

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

/// The id of a snapshot (a UUID v7).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(Uuid);

impl SnapshotId {
    /// A new, time-ordered id.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        SnapshotId(Uuid::now_v7())
    }

    /// Wraps a UUID.
    pub const fn from_uuid(u: Uuid) -> Self {
        SnapshotId(u)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Parses the hyphenated form; a malformed id is a Validation error on `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(SnapshotId)
            .map_err(|_| Error::validation(field, "is not a valid id"))
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotId({})", self.0)
    }
}

impl FromStr for SnapshotId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SnapshotId::parse("id", s)
    }
}

impl From<SnapshotId> for RecordRef {
    fn from(id: SnapshotId) -> RecordRef {
        RecordRef::new(SNAPSHOT, id.0)
    }
}

/// A snapshot's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its id.
    pub id: SnapshotId,
    /// When it was taken (the deals were read from then on).
    pub taken_at: DateTime<Utc>,
    /// Who took it.
    pub taken_by: UserId,
    /// The scheduled instant it was taken for, if the schedule took it.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Its deals, as far as the reader sees them (all of them for Admin and Manager).
    pub deal_count: u64,
    /// The base currency of its base amounts.
    pub base_currency: Currency,
    /// The date whose rates converted its amounts (`taken_at`'s local date).
    pub rate_date: NaiveDate,
}

/// One deal as a snapshot recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    /// The deal.
    pub deal: DealId,
    /// Its pipeline.
    pub pipeline: PipelineId,
    /// Its stage.
    pub stage: StageId,
    /// Its owner.
    pub owner: UserId,
    /// Its team.
    pub team: Option<TeamId>,
    /// Its amount.
    pub amount: Option<Money>,
    /// The amount in the snapshot's base currency at its rate date (per deal, rounded half
    /// to even to the minor unit).
    pub base_amount: Option<Decimal>,
    /// Its effective probability.
    pub probability: u8,
    /// Its expected close date.
    pub expected_close: Option<NaiveDate>,
    /// When the deal was created.
    pub created_at: DateTime<Utc>,
}

/// The pipeline waterfall between two snapshots (see the module docs for the changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waterfall {
    /// The earlier snapshot (the start).
    pub earlier: SnapshotId,
    /// The later snapshot (the end); taken at or after `earlier`.
    pub later: SnapshotId,
    /// Only deals in this pipeline.
    pub pipeline: Option<PipelineId>,
    /// Only deals expected to close in this period.
    pub period: Option<Period>,
}

/// A line of the waterfall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The earlier snapshot's total.
    Start,
    /// Created after the earlier snapshot.
    New,
    /// Entered the filter (or the actor's view) otherwise.
    MovedIn,
    /// Amount increased.
    Increased,
    /// Amount decreased.
    Decreased,
    /// Amount unchanged (its figure is the exchange-rate effect).
    Unchanged,
    /// Close date moved past the filter period's end.
    Slipped,
    /// Left the filter otherwise, still open.
    MovedOut,
    /// Won by the later snapshot.
    Won,
    /// Lost by the later snapshot.
    Lost,
    /// Left otherwise (deleted, hidden, reopened).
    Removed,
    /// The later snapshot's total.
    End,
}

impl Change {
    /// Every line, in the order of the rows.
    pub const ALL: [Change; 12] = [
        Change::Start,
        Change::New,
        Change::MovedIn,
        Change::Increased,
        Change::Decreased,
        Change::Unchanged,
        Change::Slipped,
        Change::MovedOut,
        Change::Won,
        Change::Lost,
        Change::Removed,
        Change::End,
    ];

    /// Whether the deals of this line enter (+1), leave (−1) or stay (0) in the count.
    pub fn count_sign(self) -> i64 {
        match self {
            Change::New | Change::MovedIn => 1,
            Change::Slipped | Change::MovedOut | Change::Won | Change::Lost | Change::Removed => -1,
            _ => 0,
        }
    }
}

/// One row of [`Waterfall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaterfallRow {
    /// The line.
    pub change: Change,
    /// Deals on the line (`start` and `end`: in the snapshot).
    pub count: u64,
    /// The change of value in the base currency (signed); `start` and `end`: the total.
    pub amount: Decimal,
}

/// Forecast accuracy: what a snapshot forecast for a period vs what was won in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForecastAccuracy {
    /// The snapshot whose forecast is judged.
    pub snapshot: SnapshotId,
    /// The period (of expected close dates, and of `won_at`'s local date).
    pub period: Period,
    /// Only this pipeline.
    pub pipeline: Option<PipelineId>,
    /// One row per owner instead of one total row.
    pub by_owner: bool,
    /// The date whose rates convert what was won (the snapshot's rate date when `None`).
    pub rate_date: Option<NaiveDate>,
    /// Lowest probability of a best-case deal (default 50).
    pub best_case_at: u8,
    /// Lowest probability of a committed deal (default 90).
    pub commit_at: u8,
}

/// One row of [`ForecastAccuracy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccuracyRow {
    /// The owner (`None` for the total row).
    pub owner: Option<UserId>,
    /// Forecast: open, below best case.
    pub pipeline: Line,
    /// Forecast: best case.
    pub best_case: Line,
    /// Forecast: committed.
    pub commit: Line,
    /// Forecast: the weighted amount of the three (amount × probability).
    pub weighted: Decimal,
    /// Actually won in the period after the snapshot.
    pub won: Line,
    /// `won / weighted`, 4 places (`None` when nothing was weighted).
    pub accuracy: Option<Decimal>,
}

/// How often a scheduled snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    /// Every day.
    Day,
    /// Every week on this weekday.
    Week(Weekday),
    /// Every month on this day (1 to 28).
    Month(u32),
}

/// When scheduled snapshots are taken: `every` at the local time `at` in the reporting
/// zone (a time in a DST gap means the first instant after it; one in an overlap the
/// first of the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSchedule {
    /// How often.
    pub every: Every,
    /// At what local time (whole minutes).
    pub at: NaiveTime,
}

/// The tenant's snapshot schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSetting {
    /// The schedule (`None`: no scheduled snapshots).
    pub schedule: Option<SnapshotSchedule>,
    /// When it was set (instants before it are never taken).
    pub since: Option<DateTime<Utc>>,
    /// Version of the stored setting (0 while none is stored).
    #[serde(default)]
    pub version: u64,
}

impl SnapshotSchedule {
    /// Checks the schedule: a month day outside 1-28 is a Validation error on `every`, a
    /// time with seconds one on `at`.
    pub fn validate(&self) -> Result<()> {
        let mut errs = ValidationErrors::new();
        if let Every::Month(d) = self.every
            && !(1..=28).contains(&d)
        {
            errs.push("every", "a monthly day must be from 1 to 28");
        }
        if self.at.second() != 0 || self.at.nanosecond() != 0 {
            errs.push("at", "must be a time in whole minutes");
        }
        errs.into_result()
    }

    fn matches(&self, d: NaiveDate) -> bool {
        match self.every {
            Every::Day => true,
            Every::Week(w) => d.weekday() == w,
            Every::Month(m) => d.day() == m,
        }
    }

    /// The latest scheduled instant at or before `now` in `tz` (`None` only for a schedule
    /// that fails [`Self::validate`]).
    pub fn latest_at_or_before(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut d = local_date(tz, now);
        for _ in 0..40 {
            if self.matches(d) {
                let t = local_instant(tz, d, self.at);
                if t <= now {
                    return Some(t);
                }
            }
            d = d.pred_opt()?;
        }
        None
    }
}

/// The instant of local date `d` at time `at` in `tz` (the first valid minute after a gap,
/// the earlier of an overlap).
fn local_instant(tz: Tz, d: NaiveDate, at: NaiveTime) -> DateTime<Utc> {
    let mut t = d.and_time(at);
    for _ in 0..(24 * 60) {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(1);
    }
    d.and_time(at).and_utc()
}

// ---------------------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------------------

fn bad() -> Error {
    Error::storage("malformed snapshot row")
}

fn too_large() -> Error {
    Error::validation("amount", "a report total is too large")
}

fn uuid_of(v: &Value) -> Result<Uuid> {
    v.as_uuid().ok_or_else(bad)
}

fn date_cell(d: NaiveDate) -> Value {
    Value::Text(d.format("%Y-%m-%d").to_string())
}

/// `units` × 10^-4 as a decimal with the base currency's `digits` (exact; scale 4 if not).
fn from_units(units: i128, digits: u32) -> Result<Decimal> {
    let f = 10i128.pow(4 - digits.min(4));
    if units % f == 0 {
        Decimal::try_from_i128_with_scale(units / f, digits.min(4)).map_err(|_| too_large())
    } else {
        Decimal::try_from_i128_with_scale(units, 4).map_err(|_| too_large())
    }
}

/// A decimal as 10^-4 units (it has at most 4 places).
fn to_units(d: Decimal) -> Result<i128> {
    let s = d.scale();
    if s > 4 {
        return Err(too_large());
    }
    d.mantissa()
        .checked_mul(10i128.pow(4 - s))
        .ok_or_else(too_large)
}

fn decode_header(r: &Row) -> Result<(Snapshot, bool)> {
    Ok((
        Snapshot {
            id: SnapshotId(uuid_of(&r[0])?),
            taken_at: crmkit_core::row::timestamp(&r[1])?,
            taken_by: UserId::from_uuid(uuid_of(&r[2])?),
            scheduled_for: crmkit_core::row::opt_timestamp(&r[3])?,
            deal_count: r[4].as_int().ok_or_else(bad)? as u64,
            base_currency: Currency::parse(r[5].as_text().ok_or_else(bad)?)?,
            rate_date: crmkit_core::row::opt_date(&r[6])?.ok_or_else(bad)?,
        },
        r[7].as_int() == Some(1),
    ))
}

fn decode_row(r: &Row, digits: u32) -> Result<SnapshotRow> {
    Ok(SnapshotRow {
        deal: DealId::from_uuid(uuid_of(&r[1])?),
        pipeline: PipelineId::from_uuid(uuid_of(&r[2])?),
        stage: StageId::from_uuid(uuid_of(&r[3])?),
        owner: UserId::from_uuid(uuid_of(&r[4])?),
        team: r[5].as_uuid().map(TeamId::from_uuid),
        amount: crmkit_core::row::opt_money(&r[6], &r[7])?,
        base_amount: match r[8].as_int() {
            Some(u) => Some(from_units(i128::from(u), digits)?),
            None => None,
        },
        probability: u8::try_from(r[9].as_int().ok_or_else(bad)?).map_err(|_| bad())?,
        expected_close: crmkit_core::row::opt_date(&r[11])?,
        created_at: crmkit_core::row::timestamp(&r[12])?,
    })
}

/// A paged reader of one snapshot's visible rows in deal order.
struct RowStream {
    cond: Cond,
    after: Option<Uuid>,
    buf: VecDeque<SnapshotRow>,
    done: bool,
    digits: u32,
}

impl RowStream {
    fn new(ctx: &Ctx, id: SnapshotId, digits: u32) -> Self {
        RowStream {
            cond: Cond::eq("snapshot_id", id.0).and(visibility_scope(ctx, true)),
            after: None,
            buf: VecDeque::new(),
            done: false,
            digits,
        }
    }

    async fn peek(&mut self, a: &Analytics, ctx: &Ctx) -> Result<Option<&SnapshotRow>> {
        if self.buf.is_empty() && !self.done {
            let rows = a
                .row_page(ctx, &self.cond, self.after, MAX_ROWS_PAGE)
                .await?;
            self.done = rows.len() < MAX_ROWS_PAGE as usize;
            self.after = rows.last().and_then(|r| r[1].as_uuid());
            for r in rows {
                let r = decode_row(&r, self.digits)?;
                self.buf.push_back(r);
            }
        }
        Ok(self.buf.front())
    }

    fn take(&mut self) -> Option<SnapshotRow> {
        self.buf.pop_front()
    }
}

/// Sums per waterfall line: count and 10^-4 units.
#[derive(Default)]
struct Tally {
    lines: BTreeMap<Change, (u64, i128)>,
}

impl Tally {
    fn add(&mut self, c: Change, units: i128) {
        let e = self.lines.entry(c).or_default();
        e.0 += 1;
        e.1 += units;
    }
}

fn base_units(r: &SnapshotRow) -> Result<i128> {
    r.base_amount
        .map(to_units)
        .transpose()
        .map(|u| u.unwrap_or(0))
}

/// Per owner: [pipeline, best case, commit, won] as (count, 10^-4 units), and the
/// weighted 10^-6 units.
type OwnerSums = ([(u64, i128); 4], i128);

/// The waterfall's filter.
struct Filter {
    pipeline: Option<PipelineId>,
    period: Option<Period>,
}

impl Filter {
    fn holds(&self, r: &SnapshotRow) -> bool {
        self.pipeline.is_none_or(|p| p == r.pipeline)
            && self
                .period
                .is_none_or(|p| r.expected_close.is_some_and(|d| p.contains(d)))
    }

    fn cond(&self) -> Cond {
        let mut c = Cond::True;
        if let Some(p) = self.pipeline {
            c = c.and(Cond::eq("pipeline_id", p.as_uuid()));
        }
        if let Some(p) = self.period {
            c = c.and(close_in(&p));
        }
        c
    }
}

fn close_in(p: &Period) -> Cond {
    Cond::And(vec![
        Cond::Cmp("expected_close".into(), CmpOp::Gte, date_cell(p.from())),
        Cond::Cmp("expected_close".into(), CmpOp::Lte, date_cell(p.to())),
    ])
}

// ---------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------

impl Analytics {
    async fn row_page(
        &self,
        ctx: &Ctx,
        cond: &Cond,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Row>> {
        let mut s = Select::new(SNAPSHOT_DEAL_TABLE, cond.clone());
        s.order = vec![OrderKey::asc("deal_id")];
        s.after = after.map(|u| vec![Value::Uuid(u)]);
        s.limit = Some(limit);
        self.store.backend().select(ctx.tenant(), &s).await
    }

    /// The complete snapshot `id` (stored deal count), or NotFound.
    async fn header(&self, ctx: &Ctx, id: SnapshotId) -> Result<Snapshot> {
        let row = self
            .store
            .backend()
            .get(ctx.tenant(), SNAPSHOT_TABLE, &[Value::Uuid(id.0)])
            .await?;
        match row.as_ref().map(decode_header).transpose()? {
            Some((s, true)) => Ok(s),
            _ => Err(Error::not_found(SNAPSHOT, id)),
        }
    }

    /// The header with the deal count as `ctx` sees it.
    async fn scoped_header(&self, ctx: &Ctx, mut s: Snapshot) -> Result<Snapshot> {
        if !ctx.actor().manages() {
            s.deal_count = self
                .store
                .backend()
                .count(
                    ctx.tenant(),
                    SNAPSHOT_DEAL_TABLE,
                    &Cond::eq("snapshot_id", s.id.0).and(visibility_scope(ctx, true)),
                )
                .await?;
        }
        Ok(s)
    }

    /// A snapshot named by a report parameter: a missing one is a Validation error on it.
    async fn snapshot_param(&self, ctx: &Ctx, id: SnapshotId, field: &str) -> Result<Snapshot> {
        match self.header(ctx, id).await {
            Err(Error::NotFound { .. }) => {
                Err(Error::validation(field, "is not a snapshot of this tenant"))
            }
            other => other,
        }
    }

    async fn check_pipeline(&self, ctx: &Ctx, p: Option<PipelineId>) -> Result<()> {
        let Some(p) = p else { return Ok(()) };
        match Deals::new(&self.store)?.pipelines().get(ctx, p).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) => Err(Error::validation(
                "pipeline",
                "is not a pipeline of this tenant",
            )),
            Err(e) => Err(e),
        }
    }

    /// Takes a snapshot of every open deal of the tenant now (Admin or Manager;
    /// PermissionDenied otherwise). See the [module docs](crate::snapshot) for what it
    /// holds and how it is written.
    pub async fn take_snapshot(&self, ctx: &Ctx) -> Result<Snapshot> {
        ctx.actor().require_manage("take a pipeline snapshot")?;
        self.take(ctx, None).await
    }

    async fn take(&self, ctx: &Ctx, scheduled_for: Option<DateTime<Utc>>) -> Result<Snapshot> {
        let tz = self.settings(ctx).await?.tz()?;
        let taken_at = ctx.now();
        let rate_date = local_date(tz, taken_at);
        let currencies = Currencies::new(&self.store)?;
        let base = currencies
            .base_currency(ctx)
            .await?
            .ok_or_else(|| Error::validation("base_currency", "is not set"))?;
        let mut rates = Converter::with_base(currencies, base, rate_date)?;
        let open = Cond::IsNull("deleted_at".into()).and(Cond::eq("status", "open"));
        // Every currency of an open deal has a rate, before anything is written.
        for row in self
            .store
            .aggregate(
                ctx,
                DEAL_TABLE,
                open.clone(),
                &["currency"],
                vec![Measure::Count],
            )
            .await?
        {
            if let Some(c) = row[0].as_text() {
                rates.rate(ctx, Currency::parse(c)?).await?;
            }
        }
        let id = SnapshotId::new();
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: SNAPSHOT_TABLE,
            row: vec![
                Value::Uuid(id.0),
                Value::timestamp(taken_at),
                Value::Uuid(ctx.actor().user.as_uuid()),
                Value::opt_timestamp(scheduled_for),
                Value::Int(0),
                Value::Text(base.code().into()),
                date_cell(rate_date),
                Value::Int(0),
            ],
        });
        self.store.commit(cs).await?;
        let snapshot = Snapshot {
            id,
            taken_at,
            taken_by: ctx.actor().user,
            scheduled_for,
            deal_count: 0,
            base_currency: base,
            rate_date,
        };
        let r = async {
            let n = self.fill(ctx, id, open, &mut rates).await?;
            let snapshot = Snapshot {
                deal_count: n,
                ..snapshot
            };
            let mut cs = Changeset::new(ctx);
            cs.writes.push(Write::Update {
                table: SNAPSHOT_TABLE,
                key: vec![Value::Uuid(id.0)],
                set: vec![
                    ("deal_count", Value::Int(n as i64)),
                    ("complete", Value::Int(1)),
                ],
                expect_version: None,
                record: id.into(),
            });
            cs.audit.push(AuditChange {
                record: id.into(),
                field: "deal_count".into(),
                old: None,
                new: Some(n.to_string()),
            });
            cs.events.push(NewEvent::new(
                "analytics.snapshot_taken",
                id.into(),
                vec![],
                serde_json::to_value(&snapshot).map_err(|e| Error::storage_from("snapshot", e))?,
            ));
            self.store.commit(cs).await?;
            Ok(snapshot)
        }
        .await;
        if r.is_err() {
            // Best effort: the partial snapshot is invisible either way, and a stale one is
            // swept by `take_due_snapshots`.
            let _ = self.discard(ctx, id).await;
        }
        r
    }

    /// Writes the open deals into snapshot `id`, a chunk per changeset; their number.
    async fn fill(
        &self,
        ctx: &Ctx,
        id: SnapshotId,
        open: Cond,
        rates: &mut Converter,
    ) -> Result<u64> {
        let table = self.store.backend().schema().table(DEAL_TABLE)?;
        let keep = [
            "id",
            "pipeline_id",
            "stage_id",
            "owner_id",
            "team_id",
            "amount",
            "currency",
            "probability",
            "expected_close",
            "created_at",
        ];
        let pos = keep
            .iter()
            .map(|c| {
                table
                    .position(c)
                    .ok_or_else(|| Error::Config(format!("no deal column {c}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let omit: Vec<String> = table
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .filter(|c| !keep.contains(&c.as_str()))
            .collect();
        let base_digits = rates.digits();
        let mut after: Option<Value> = None;
        let mut n = 0u64;
        loop {
            let mut s = Select::new(DEAL_TABLE, open.clone());
            s.order = vec![OrderKey::asc("id")];
            s.after = after.clone().map(|v| vec![v]);
            s.limit = Some(SNAPSHOT_CHUNK as u32);
            s.omit = omit.clone();
            let rows = self.store.backend().select(ctx.tenant(), &s).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last[pos[0]].clone());
            let full = rows.len() == SNAPSHOT_CHUNK;
            let mut cs = Changeset::new(ctx);
            for r in rows {
                let probability = r[pos[7]].as_int().ok_or_else(bad)?;
                let (base, weighted) = match (r[pos[5]].as_int(), r[pos[6]].as_text()) {
                    (Some(units), Some(c)) => {
                        let b = rates
                            .convert(ctx, Currency::parse(c)?, i128::from(units), 4)
                            .await?;
                        let bu = i64::try_from(to_units(b)?).map_err(|_| too_large())?;
                        let w = bu.checked_mul(probability).ok_or_else(too_large)?;
                        (Value::Int(bu), Value::Int(w))
                    }
                    _ => (Value::Null, Value::Null),
                };
                debug_assert!(base_digits <= 4);
                cs.writes.push(Write::Insert {
                    table: SNAPSHOT_DEAL_TABLE,
                    row: vec![
                        Value::Uuid(id.0),
                        r[pos[0]].clone(),
                        r[pos[1]].clone(),
                        r[pos[2]].clone(),
                        r[pos[3]].clone(),
                        r[pos[4]].clone(),
                        r[pos[5]].clone(),
                        r[pos[6]].clone(),
                        base,
                        Value::Int(probability),
                        weighted,
                        r[pos[8]].clone(),
                        r[pos[9]].clone(),
                    ],
                });
                n += 1;
            }
            self.store.commit(cs).await?;
            if !full {
                break;
            }
        }
        Ok(n)
    }

    /// Deletes snapshot `id`'s rows and header (no audit: used for incomplete snapshots).
    async fn discard(&self, ctx: &Ctx, id: SnapshotId) -> Result<()> {
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::DeleteWhere {
            table: SNAPSHOT_DEAL_TABLE,
            cond: Cond::eq("snapshot_id", id.0),
        });
        cs.writes.push(Write::Delete {
            table: SNAPSHOT_TABLE,
            key: vec![Value::Uuid(id.0)],
        });
        self.store.commit(cs).await.map(|_| ())
    }

    /// The tenant's complete snapshots, oldest first. Every actor may list them; a Rep's
    /// or ReadOnly user's `deal_count` counts only the rows they see.
    pub async fn snapshots(&self, ctx: &Ctx) -> Result<Vec<Snapshot>> {
        let mut s = Select::new(SNAPSHOT_TABLE, Cond::eq("complete", 1i64));
        s.order = vec![OrderKey::asc("taken_at"), OrderKey::asc("id")];
        let rows = self.store.backend().select(ctx.tenant(), &s).await?;
        let mut out = vec![];
        for r in &rows {
            let (h, _) = decode_header(r)?;
            out.push(self.scoped_header(ctx, h).await?);
        }
        Ok(out)
    }

    /// Snapshot `id` (NotFound if there is none, or it is being taken). Every actor;
    /// `deal_count` as in [`Self::snapshots`].
    pub async fn snapshot(&self, ctx: &Ctx, id: SnapshotId) -> Result<Snapshot> {
        let h = self.header(ctx, id).await?;
        self.scoped_header(ctx, h).await
    }

    /// A page of snapshot `id`'s rows that `ctx` sees (by the recorded owner and team), in
    /// deal order, after deal `after`; at most `limit` (1 to [`MAX_ROWS_PAGE`]; a
    /// Validation error on `limit` otherwise).
    pub async fn snapshot_rows(
        &self,
        ctx: &Ctx,
        id: SnapshotId,
        after: Option<DealId>,
        limit: u32,
    ) -> Result<Vec<SnapshotRow>> {
        if !(1..=MAX_ROWS_PAGE).contains(&limit) {
            return Err(Error::validation(
                "limit",
                format!("must be from 1 to {MAX_ROWS_PAGE}"),
            ));
        }
        let h = self.header(ctx, id).await?;
        let digits = minor_digits(h.base_currency);
        let cond = Cond::eq("snapshot_id", id.0).and(visibility_scope(ctx, true));
        self.row_page(ctx, &cond, after.map(|d| d.as_uuid()), limit)
            .await?
            .iter()
            .map(|r| decode_row(r, digits))
            .collect()
    }

    /// Deletes snapshot `id` and its rows (Admin only; NotFound for an unknown id), with an
    /// audit entry and the event `analytics.snapshot_deleted`.
    pub async fn delete_snapshot(&self, ctx: &Ctx, id: SnapshotId) -> Result<()> {
        ctx.actor().require_admin("delete a pipeline snapshot")?;
        let h = self.header(ctx, id).await?;
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::DeleteWhere {
            table: SNAPSHOT_DEAL_TABLE,
            cond: Cond::eq("snapshot_id", id.0),
        });
        cs.writes.push(Write::Delete {
            table: SNAPSHOT_TABLE,
            key: vec![Value::Uuid(id.0)],
        });
        cs.audit.push(AuditChange {
            record: id.into(),
            field: "deal_count".into(),
            old: Some(h.deal_count.to_string()),
            new: None,
        });
        cs.events.push(NewEvent::new(
            "analytics.snapshot_deleted",
            id.into(),
            vec![],
            serde_json::to_value(&h).map_err(|e| Error::storage_from("snapshot", e))?,
        ));
        self.store.commit(cs).await.map(|_| ())
    }

    /// The tenant's snapshot schedule (none until an Admin sets one). Every actor.
    pub async fn snapshot_schedule(&self, ctx: &Ctx) -> Result<ScheduleSetting> {
        let row = self
            .store
            .backend()
            .get(
                ctx.tenant(),
                SETTINGS_TABLE,
                &[Value::Text(SCHEDULE_KEY.into())],
            )
            .await?;
        match row {
            None => Ok(ScheduleSetting {
                schedule: None,
                since: None,
                version: 0,
            }),
            Some(r) => {
                let mut s: ScheduleSetting = serde_json::from_str(r[1].as_text().ok_or_else(bad)?)
                    .map_err(|e| Error::storage_from("snapshot schedule", e))?;
                s.version = r[3].as_int().ok_or_else(bad)? as u64;
                Ok(s)
            }
        }
    }

    /// Sets (or with `None` clears) the snapshot schedule, Admin only (PermissionDenied
    /// otherwise). `expected_version` is the version read (0 when none is stored); a stale
    /// one is a Conflict. Bad values: see [`SnapshotSchedule::validate`]. Audited
    /// (`snapshot_schedule` of the record `analytics_snapshot` with the tenant's id),
    /// event `analytics.snapshot_schedule_set`.
    pub async fn set_snapshot_schedule(
        &self,
        ctx: &Ctx,
        schedule: Option<SnapshotSchedule>,
        expected_version: u64,
    ) -> Result<ScheduleSetting> {
        ctx.actor()
            .require_admin("set the pipeline snapshot schedule")?;
        if let Some(s) = &schedule {
            s.validate()?;
        }
        let record = RecordRef::new(SNAPSHOT, ctx.tenant().as_uuid());
        let old = self.snapshot_schedule(ctx).await?;
        if old.version != expected_version {
            return Err(Error::conflict(record, expected_version, old.version));
        }
        let new = ScheduleSetting {
            schedule,
            since: Some(ctx.now()),
            version: old.version + 1,
        };
        let value = serde_json::json!({"schedule": new.schedule, "since": new.since}).to_string();
        let key = Value::Text(SCHEDULE_KEY.into());
        let mut cs = Changeset::new(ctx);
        if old.version == 0 {
            cs.writes.push(Write::Insert {
                table: SETTINGS_TABLE,
                row: vec![
                    key,
                    Value::Text(value),
                    Value::timestamp(ctx.now()),
                    Value::Int(1),
                ],
            });
        } else {
            cs.writes.push(Write::Update {
                table: SETTINGS_TABLE,
                key: vec![key],
                set: vec![
                    ("value", Value::Text(value)),
                    ("updated_at", Value::timestamp(ctx.now())),
                ],
                expect_version: Some(old.version),
                record: record.clone(),
            });
        }
        let json = |s: &Option<SnapshotSchedule>| serde_json::json!(s).to_string();
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "snapshot_schedule".into(),
            old: Some(json(&old.schedule)),
            new: Some(json(&new.schedule)),
        });
        cs.events.push(NewEvent::new(
            "analytics.snapshot_schedule_set",
            record.clone(),
            vec!["snapshot_schedule".into()],
            serde_json::to_value(&new).map_err(|e| Error::storage_from("schedule", e))?,
        ));
        match self.store.commit(cs).await {
            Err(Error::Duplicate { .. }) => Err(Error::conflict(record, 0, 1)),
            other => other.map(|_| new),
        }
    }

    /// Takes the scheduled snapshot that is due at `now`, if it was not taken yet (Admin or
    /// Manager, like [`Self::take_snapshot`]): the latest scheduled instant at or before
    /// `now`, not before the schedule was set. `None` when there is no schedule, nothing
    /// is due, or it was taken (also by a concurrent caller: the instant is a unique key).
    /// First deletes incomplete snapshots older than [`STALE_INCOMPLETE`] (left by a crash).
    pub async fn take_due_snapshots(
        &self,
        ctx: &Ctx,
        now: DateTime<Utc>,
    ) -> Result<Option<Snapshot>> {
        ctx.actor()
            .require_manage("take scheduled pipeline snapshots")?;
        let stale = Select::new(
            SNAPSHOT_TABLE,
            Cond::eq("complete", 0i64).and(Cond::Cmp(
                "taken_at".into(),
                CmpOp::Lt,
                Value::timestamp(now - STALE_INCOMPLETE),
            )),
        );
        for r in self.store.backend().select(ctx.tenant(), &stale).await? {
            self.discard(ctx, SnapshotId(uuid_of(&r[0])?)).await?;
        }
        let setting = self.snapshot_schedule(ctx).await?;
        let (Some(schedule), Some(since)) = (setting.schedule, setting.since) else {
            return Ok(None);
        };
        let tz = self.settings(ctx).await?.tz()?;
        let Some(due) = schedule.latest_at_or_before(tz, now) else {
            return Ok(None);
        };
        if due < since {
            return Ok(None);
        }
        let taken = self
            .store
            .backend()
            .count(
                ctx.tenant(),
                SNAPSHOT_TABLE,
                &Cond::eq("scheduled_for", Value::timestamp(due)),
            )
            .await?;
        if taken > 0 {
            return Ok(None);
        }
        match self.take(ctx, Some(due)).await {
            Err(Error::Duplicate { .. }) => Ok(None),
            other => other.map(Some),
        }
    }

    /// The pipeline waterfall between two snapshots (see the [module docs](crate::snapshot)):
    /// one row per [`Change`], in [`Change::ALL`]'s order. An unknown snapshot is a
    /// Validation error on `earlier` / `later`; a later snapshot taken before the earlier
    /// one, or in another base currency, one on `later`; an unknown pipeline one on
    /// `pipeline`.
    pub async fn pipeline_waterfall(&self, ctx: &Ctx, r: &Waterfall) -> Result<Vec<WaterfallRow>> {
        let e = self.snapshot_param(ctx, r.earlier, "earlier").await;
        let l = self.snapshot_param(ctx, r.later, "later").await;
        let (e, l) = match (e, l) {
            (Ok(e), Ok(l)) => (e, l),
            (e, l) => {
                let mut errs = ValidationErrors::new();
                for x in [e, l] {
                    match x {
                        Err(Error::Validation(v)) => {
                            for f in v.errors {
                                errs.push(f.field, f.reason);
                            }
                        }
                        Err(other) => return Err(other),
                        Ok(_) => {}
                    }
                }
                return Err(errs.into_result().err().unwrap_or_else(bad));
            }
        };
        if e.taken_at > l.taken_at {
            return Err(Error::validation(
                "later",
                "was taken before the earlier snapshot",
            ));
        }
        if e.base_currency != l.base_currency {
            return Err(Error::validation(
                "later",
                format!(
                    "is in base currency {}, the earlier snapshot in {}",
                    l.base_currency, e.base_currency
                ),
            ));
        }
        self.check_pipeline(ctx, r.pipeline).await?;
        let digits = minor_digits(e.base_currency);
        let filter = Filter {
            pipeline: r.pipeline,
            period: r.period,
        };
        // Start and end: one aggregate over each snapshot.
        let mut totals = vec![];
        for s in [&e, &l] {
            let cond = Cond::eq("snapshot_id", s.id.0)
                .and(visibility_scope(ctx, true))
                .and(filter.cond());
            let rows = self
                .store
                .aggregate(
                    ctx,
                    SNAPSHOT_DEAL_TABLE,
                    cond,
                    &[],
                    vec![Measure::Count, Measure::Sum("base_amount".into())],
                )
                .await?;
            let (n, sum) = match rows.first() {
                Some(r) => (
                    r[0].as_int().ok_or_else(bad)? as u64,
                    r[1].as_sum().ok_or_else(bad)?,
                ),
                None => (0, 0),
            };
            totals.push((n, sum));
        }
        // The changes: a merge of the two snapshots in deal order.
        let mut tally = Tally::default();
        let mut gone: Vec<(Uuid, i128)> = vec![];
        let mut a = RowStream::new(ctx, e.id, digits);
        let mut b = RowStream::new(ctx, l.id, digits);
        loop {
            let ka = a.peek(self, ctx).await?.map(|r| r.deal);
            let kb = b.peek(self, ctx).await?.map(|r| r.deal);
            let (er, lr) = match (ka, kb) {
                (None, None) => break,
                (Some(x), Some(y)) if x == y => (a.take(), b.take()),
                (Some(x), Some(y)) if x < y => (a.take(), None),
                (Some(_), None) => (a.take(), None),
                _ => (None, b.take()),
            };
            let e_in = er.as_ref().is_some_and(|x| filter.holds(x));
            let l_in = lr.as_ref().is_some_and(|x| filter.holds(x));
            match (er, lr) {
                (er, Some(lr)) if l_in => {
                    let lu = base_units(&lr)?;
                    match er {
                        Some(er) if e_in => {
                            let eu = base_units(&er)?;
                            let ord = match (&er.amount, &lr.amount) {
                                (Some(x), Some(y)) if x.currency() == y.currency() => {
                                    y.amount().cmp(&x.amount())
                                }
                                _ => lu.cmp(&eu),
                            };
                            let c = match ord {
                                std::cmp::Ordering::Greater => Change::Increased,
                                std::cmp::Ordering::Less => Change::Decreased,
                                std::cmp::Ordering::Equal => Change::Unchanged,
                            };
                            tally.add(c, lu - eu);
                        }
                        Some(_) => tally.add(Change::MovedIn, lu),
                        None if lr.created_at > e.taken_at => tally.add(Change::New, lu),
                        None => tally.add(Change::MovedIn, lu),
                    }
                }
                (Some(er), lr) if e_in => {
                    let eu = base_units(&er)?;
                    match lr {
                        Some(lr) => {
                            let slipped = filter.pipeline.is_none_or(|p| p == lr.pipeline)
                                && filter
                                    .period
                                    .is_some_and(|p| lr.expected_close.is_some_and(|d| d > p.to()));
                            let c = if slipped {
                                Change::Slipped
                            } else {
                                Change::MovedOut
                            };
                            tally.add(c, -eu);
                        }
                        None => {
                            gone.push((er.deal.as_uuid(), eu));
                            if gone.len() >= SNAPSHOT_CHUNK {
                                self.outcomes(ctx, &l, &mut gone, &mut tally).await?;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        self.outcomes(ctx, &l, &mut gone, &mut tally).await?;
        let mut out = vec![];
        for c in Change::ALL {
            let (count, units) = match c {
                Change::Start => totals[0],
                Change::End => totals[1],
                c => tally.lines.get(&c).copied().unwrap_or_default(),
            };
            out.push(WaterfallRow {
                change: c,
                count,
                amount: from_units(units, digits)?,
            });
        }
        Ok(out)
    }

    /// Won, lost or removed, for deals of the earlier snapshot missing from the later one:
    /// by their current state as `ctx` sees it.
    async fn outcomes(
        &self,
        ctx: &Ctx,
        later: &Snapshot,
        gone: &mut Vec<(Uuid, i128)>,
        tally: &mut Tally,
    ) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let table = self.store.backend().schema().table(DEAL_TABLE)?;
        let keep = ["id", "status", "won_at", "lost_at"];
        let pos = keep
            .iter()
            .map(|c| {
                table
                    .position(c)
                    .ok_or_else(|| Error::Config(format!("no deal column {c}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut s = Select::new(
            DEAL_TABLE,
            visibility_scope(ctx, false).and(Cond::In(
                "id".into(),
                gone.iter().map(|(u, _)| Value::Uuid(*u)).collect(),
            )),
        );
        s.omit = table
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .filter(|c| !keep.contains(&c.as_str()))
            .collect();
        let mut state = HashMap::new();
        for r in self.store.backend().select(ctx.tenant(), &s).await? {
            let closed_by = |i: usize| -> Result<bool> {
                Ok(crmkit_core::row::opt_timestamp(&r[pos[i]])?
                    .is_some_and(|t| t <= later.taken_at))
            };
            let c = match r[pos[1]].as_text() {
                Some("won") if closed_by(2)? => Change::Won,
                Some("lost") if closed_by(3)? => Change::Lost,
                _ => Change::Removed,
            };
            state.insert(uuid_of(&r[pos[0]])?, c);
        }
        for (u, units) in gone.drain(..) {
            tally.add(state.get(&u).copied().unwrap_or(Change::Removed), -units);
        }
        Ok(())
    }

    /// Forecast accuracy (see the [module docs](crate::snapshot)): one total row, or one per
    /// owner (ordered by owner id) with `by_owner`. An unknown snapshot is a Validation
    /// error on `snapshot` (also when the tenant's base currency changed since), inverted
    /// thresholds one on `commit_at`, a missing rate one on `rate_date`.
    pub async fn forecast_accuracy(
        &self,
        ctx: &Ctx,
        r: &ForecastAccuracy,
    ) -> Result<Vec<AccuracyRow>> {
        if r.best_case_at > r.commit_at || r.commit_at > 100 {
            return Err(Error::validation(
                "commit_at",
                "must be at most 100 and at least best_case_at",
            ));
        }
        let s = self.snapshot_param(ctx, r.snapshot, "snapshot").await?;
        self.check_pipeline(ctx, r.pipeline).await?;
        let currencies = Currencies::new(&self.store)?;
        let base = currencies
            .base_currency(ctx)
            .await?
            .ok_or_else(|| Error::validation("base_currency", "is not set"))?;
        if base != s.base_currency {
            return Err(Error::validation(
                "snapshot",
                format!(
                    "is in base currency {}, the tenant's is now {base}",
                    s.base_currency
                ),
            ));
        }
        let digits = minor_digits(base);
        let mut rates = Converter::with_base(currencies, base, r.rate_date.unwrap_or(s.rate_date))?;
        let tz = self.settings(ctx).await?.tz()?;
        let group: &[&str] = if r.by_owner { &["owner_id"] } else { &[] };
        let owner_of = |row: &Row| -> Result<Option<UserId>> {
            Ok(if r.by_owner {
                Some(UserId::from_uuid(uuid_of(&row[0])?))
            } else {
                None
            })
        };
        // Per owner: [pipeline, best case, commit, won] as (count, 10^-4 units), and the
        // weighted 10^-6 units.
        let mut groups: BTreeMap<Option<UserId>, OwnerSums> = BTreeMap::new();
        if !r.by_owner {
            groups.insert(None, Default::default());
        }
        let p = |v: u8| Value::Int(i64::from(v));
        let bands = [
            Cond::Cmp("probability".into(), CmpOp::Lt, p(r.best_case_at)),
            Cond::And(vec![
                Cond::Cmp("probability".into(), CmpOp::Gte, p(r.best_case_at)),
                Cond::Cmp("probability".into(), CmpOp::Lt, p(r.commit_at)),
            ]),
            Cond::Cmp("probability".into(), CmpOp::Gte, p(r.commit_at)),
        ];
        let n = group.len();
        for (i, band) in bands.into_iter().enumerate() {
            let mut cond = Cond::eq("snapshot_id", s.id.0)
                .and(visibility_scope(ctx, true))
                .and(close_in(&r.period))
                .and(band);
            if let Some(pl) = r.pipeline {
                cond = cond.and(Cond::eq("pipeline_id", pl.as_uuid()));
            }
            for row in self
                .store
                .aggregate(
                    ctx,
                    SNAPSHOT_DEAL_TABLE,
                    cond,
                    group,
                    vec![
                        Measure::Count,
                        Measure::Sum("base_amount".into()),
                        Measure::Sum("base_weighted_x100".into()),
                    ],
                )
                .await?
            {
                let g = groups.entry(owner_of(&row)?).or_default();
                g.0[i].0 += row[n].as_int().ok_or_else(bad)? as u64;
                g.0[i].1 += row[n + 1].as_sum().ok_or_else(bad)?;
                g.1 += row[n + 2].as_sum().ok_or_else(bad)?;
            }
        }
        // What was won in the period after the snapshot.
        let (start, end) = r.period.instants(tz);
        let start = start.max(s.taken_at);
        let mut cond = visibility_scope(ctx, false)
            .and(Cond::eq("status", "won"))
            .and(Cond::Cmp(
                "won_at".into(),
                CmpOp::Gte,
                Value::timestamp(start),
            ))
            .and(Cond::Cmp("won_at".into(), CmpOp::Lt, Value::timestamp(end)));
        if let Some(pl) = r.pipeline {
            cond = cond.and(Cond::eq("pipeline_id", pl.as_uuid()));
        }
        let mut won_group: Vec<&str> = group.to_vec();
        won_group.push("currency");
        for row in self
            .store
            .aggregate(
                ctx,
                DEAL_TABLE,
                cond,
                &won_group,
                vec![Measure::Count, Measure::Sum("amount".into())],
            )
            .await?
        {
            let amount = match row[n].as_text() {
                Some(c) => {
                    let sum = row[n + 2].as_sum().ok_or_else(bad)?;
                    let d = rates.convert(ctx, Currency::parse(c)?, sum, 4).await?;
                    to_units(d)?
                }
                None => 0,
            };
            let g = groups.entry(owner_of(&row)?).or_default();
            g.0[3].0 += row[n + 1].as_int().ok_or_else(bad)? as u64;
            g.0[3].1 += amount;
        }
        let line = |(count, units): (u64, i128)| -> Result<Line> {
            Ok(Line {
                count,
                amount: from_units(units, digits)?,
            })
        };
        let mut out = vec![];
        for (owner, (lines, w)) in groups {
            let wf = 10i128.pow(6 - digits);
            let weighted_units = div_half_even(w, wf);
            let weighted = Decimal::try_from_i128_with_scale(weighted_units, digits)
                .map_err(|_| too_large())?;
            let won_units = lines[3].1 / 10i128.pow(4 - digits);
            out.push(AccuracyRow {
                owner,
                pipeline: line(lines[0])?,
                best_case: line(lines[1])?,
                commit: line(lines[2])?,
                weighted,
                won: line(lines[3])?,
                accuracy: if weighted_units == 0 {
                    None
                } else {
                    ratio(won_units, weighted_units, 4)
                },
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn schedule_instants() {
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        let at = NaiveTime::from_hms_opt(2, 30, 0).expect("time");
        let daily = SnapshotSchedule {
            every: Every::Day,
            at,
        };
        // 2026-03-29 02:30 does not exist in Berlin (summer time begins): 03:00 CEST.
        let now = local_instant(
            tz,
            d("2026-03-29"),
            NaiveTime::from_hms_opt(12, 0, 0).expect("t"),
        );
        let due = daily.latest_at_or_before(tz, now).expect("due");
        assert_eq!(due.to_rfc3339(), "2026-03-29T01:00:00+00:00");
        // Before today's time: yesterday's.
        let early = local_instant(
            tz,
            d("2026-03-30"),
            NaiveTime::from_hms_opt(1, 0, 0).expect("t"),
        );
        assert_eq!(daily.latest_at_or_before(tz, early).expect("due"), due);
        let weekly = SnapshotSchedule {
            every: Every::Week(Weekday::Mon),
            at,
        };
        let w = weekly.latest_at_or_before(tz, now).expect("due");
        assert_eq!(local_date(tz, w), d("2026-03-23"));
        let monthly = SnapshotSchedule {
            every: Every::Month(28),
            at,
        };
        let m = monthly.latest_at_or_before(tz, now).expect("due");
        assert_eq!(local_date(tz, m), d("2026-03-28"));
        let bad = SnapshotSchedule {
            every: Every::Month(31),
            at: NaiveTime::from_hms_opt(2, 30, 5).expect("time"),
        };
        let fields: Vec<String> = bad
            .validate()
            .expect_err("bad")
            .validation_errors()
            .expect("validation")
            .errors
            .iter()
            .map(|f| f.field.clone())
            .collect();
        assert_eq!(fields, ["every", "at"]);
    }

    #[test]
    fn units_round_trip() {
        assert_eq!(from_units(12345, 2).expect("ok"), Decimal::new(12345, 4));
        assert_eq!(from_units(12300, 2).expect("ok").to_string(), "1.23");
        assert_eq!(to_units(Decimal::new(123, 2)).expect("ok"), 12300);
        assert_eq!(from_units(-500, 0).expect("ok"), Decimal::new(-5, 2));
        assert_eq!(Change::ALL.iter().map(|c| c.count_sign()).sum::<i64>(), -3);
    }
}
