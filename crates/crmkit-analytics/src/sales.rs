//! Sales reports over deals: parameters, rows and their computation.
//!
//! Every count and sum is a grouped backend aggregate over the deals table (its
//! `status`, `expected_close`, `won_at`, `lost_at`, owner, team and pipeline columns);
//! only the sales cycle's median and 90th percentile read the won deals' two instants
//! (there is no portable SQL percentile). Every report is scoped by the actor's access
//! through the same condition as deal lists (`visibility_scope`): Admin and Manager see
//! every deal, a Rep and a ReadOnly user the deals they or their teams own; deleted deals
//! are left out.
//!
//! ## Money
//! Figures are in the tenant's base currency. For each money figure of a row (an amount,
//! a weighted amount, each forecast category), the exact sum of each currency's amounts
//! (or weighted amounts) is converted at the rate of the report's `rate_date` (the rate
//! with the latest effective date on or before it) and rounded once, half to even, to the
//! base currency's minor unit; the figure is the sum of those (and the forecast's
//! `weighted` adds its categories' figures).
//! A currency without a rate is a Validation error on `rate_date` naming the currency and
//! the date; no base currency is one on `base_currency`. Deals without an amount count
//! but add nothing.
//!
//! ## Ratios and percentiles
//! Win rates are fractions (0 to 1) rounded half to even to 4 decimal places; `None`
//! when nothing was closed (or, by value, the closed value is zero). Averages are rounded
//! half to even (deal size to the base currency's minor unit, durations to whole
//! seconds, cycle days to 2 places). A sales cycle is `won_at - created_at` in whole
//! seconds (rounded down); the median and the 90th percentile are **nearest-rank**: the
//! `ceil(p × n)`-th smallest of the `n` durations (`p` = 0.5, 0.9).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use crmkit_core::service::visibility_scope;
use crmkit_core::store::{Aggregate, Buckets, CmpOp, Cond, Measure, OrderKey, Row, Select, Value};
use crmkit_core::{Ctx, Currency, Error, PipelineId, Result, StageId, Store};
use crmkit_pipeline::currency::{Currencies, multiply_exact};
use crmkit_pipeline::deal::rows::DEAL_TABLE;
use crmkit_pipeline::deal::{Deals, Pipeline};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::period::{Bucket, BucketKey, Period, local_date};
use crate::settings::ReportSettings;

/// A deal attribute a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// The owner (a user id).
    Owner,
    /// The team (a team id, or none).
    Team,
    /// The lead source (`web`, `referral`, ...).
    Source,
    /// The campaign (a campaign id, or none).
    Campaign,
    /// The pipeline (a pipeline id).
    Pipeline,
}

impl Dim {
    /// Every dimension's JSON name.
    pub const NAMES: &'static [&'static str] = &["owner", "team", "source", "campaign", "pipeline"];

    fn column(self) -> &'static str {
        match self {
            Dim::Owner => "owner_id",
            Dim::Team => "team_id",
            Dim::Source => "source",
            Dim::Campaign => "campaign_id",
            Dim::Pipeline => "pipeline_id",
        }
    }
}

/// Open deals per pipeline and stage: count, amount and weighted amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineByStage {
    /// Only this pipeline (every pipeline when `None`).
    pub pipeline: Option<PipelineId>,
    /// Also group by this attribute.
    pub by: Option<Dim>,
    /// The date whose exchange rates convert amounts (today in the tenant's zone when
    /// `None`).
    pub rate_date: Option<NaiveDate>,
}

/// One row of [`PipelineByStage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRow {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The stage.
    pub stage: StageId,
    /// The stage's name (empty for a removed stage).
    pub stage_name: String,
    /// The value of the `by` attribute (a uuid or a name; `None` for a deal without one,
    /// or when the report does not group).
    pub group: Option<String>,
    /// Open deals.
    pub count: u64,
    /// Their amounts, in the base currency.
    pub amount: Decimal,
    /// Their amounts × effective probability, in the base currency.
    pub weighted: Decimal,
}

/// Forecast by close period.
///
/// Open deals fall into the bucket of their expected close date, in a category by their
/// effective probability: `pipeline` below `best_case_at`, `best_case` from `best_case_at`
/// to below `commit_at`, `commit` from `commit_at`; open deals without an expected close
/// date make a last row with no period. `closed` is the deals won in the bucket (by
/// `won_at`'s local date). The categories are disjoint; `weighted` is the open deals'
/// weighted amount plus the closed amount. `best_case_at` above `commit_at`, or
/// `commit_at` above 100, is a Validation error on `commit_at`; more than
/// [`crate::MAX_BUCKETS`] buckets one on `bucket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forecast {
    /// The period.
    pub period: Period,
    /// The bucket (month or quarter usually).
    pub bucket: Bucket,
    /// Only this pipeline.
    pub pipeline: Option<PipelineId>,
    /// The date whose rates convert amounts (the period's last day when `None`).
    pub rate_date: Option<NaiveDate>,
    /// Lowest probability of a best-case deal (default 50).
    pub best_case_at: u8,
    /// Lowest probability of a committed deal (default 90).
    pub commit_at: u8,
}

/// Count and amount of some deals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Deals.
    pub count: u64,
    /// Their amounts, in the base currency.
    pub amount: Decimal,
}

/// One row of [`Forecast`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForecastRow {
    /// The bucket (`None`: open deals without an expected close date).
    pub period: Option<BucketKey>,
    /// Open, below best case.
    pub pipeline: Line,
    /// Open, best case.
    pub best_case: Line,
    /// Open, committed.
    pub commit: Line,
    /// Won.
    pub closed: Line,
    /// Weighted open amount plus the closed amount.
    pub weighted: Decimal,
}

/// Win rate (by count and by value) and average deal size of the deals closed in a
/// period: won (`won_at`) or lost (`lost_at`) on a local date of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinRate {
    /// The period.
    pub period: Period,
    /// Group by this attribute (one total row when `None`).
    pub by: Option<Dim>,
    /// Only this pipeline.
    pub pipeline: Option<PipelineId>,
    /// The date whose rates convert amounts (the period's last day when `None`).
    pub rate_date: Option<NaiveDate>,
}

/// One row of [`WinRate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinRateRow {
    /// The group (see [`StageRow::group`]).
    pub group: Option<String>,
    /// Deals won.
    pub won: u64,
    /// Deals lost.
    pub lost: u64,
    /// Value won, in the base currency.
    pub won_value: Decimal,
    /// Value lost, in the base currency.
    pub lost_value: Decimal,
    /// `won / (won + lost)`.
    pub win_rate_by_count: Option<Decimal>,
    /// `won_value / (won_value + lost_value)`.
    pub win_rate_by_value: Option<Decimal>,
    /// `won_value / won`.
    pub average_deal_size: Option<Decimal>,
}

/// Sales cycle length of the deals won in a period (created to won).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesCycle {
    /// The period (of `won_at`).
    pub period: Period,
    /// Group by this attribute (one total row when `None`).
    pub by: Option<Dim>,
    /// Only this pipeline.
    pub pipeline: Option<PipelineId>,
}

/// One row of [`SalesCycle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRow {
    /// The group.
    pub group: Option<String>,
    /// Deals won.
    pub won: u64,
    /// Average seconds from creation to won.
    pub average_seconds: Option<i64>,
    /// Median (nearest rank) seconds.
    pub median_seconds: Option<i64>,
    /// 90th percentile (nearest rank) seconds.
    pub p90_seconds: Option<i64>,
}

/// Sales velocity: open deals × win rate × average deal size / average cycle length, per
/// day. Open deals are counted now; the win rate, deal size and cycle length are those of
/// the deals closed in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Velocity {
    /// The period the closed deals come from.
    pub period: Period,
    /// Only this pipeline.
    pub pipeline: Option<PipelineId>,
    /// The date whose rates convert amounts (the period's last day when `None`).
    pub rate_date: Option<NaiveDate>,
}

/// The row of [`Velocity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VelocityRow {
    /// Open deals now.
    pub open_deals: u64,
    /// Win rate by count in the period.
    pub win_rate: Option<Decimal>,
    /// Average won deal size in the period (base currency).
    pub average_deal_size: Option<Decimal>,
    /// Average days from creation to won (2 places).
    pub average_cycle_days: Option<Decimal>,
    /// Value per day in the base currency: `open × won_value × won / ((won + lost) ×
    /// total cycle days)`, computed exactly and rounded once to the minor unit.
    pub per_day: Option<Decimal>,
}

// ---------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------

/// `num / den` rounded half to even (`den` > 0).
pub fn div_half_even(num: i128, den: i128) -> i128 {
    let q = num.div_euclid(den);
    let r = num.rem_euclid(den);
    let twice = r * 2;
    if twice > den || (twice == den && q.rem_euclid(2) == 1) {
        q + 1
    } else {
        q
    }
}

/// `num / den` as a decimal with `dp` places, rounded half to even; `None` when `den`
/// is zero or the result does not fit.
pub fn ratio(num: i128, den: i128, dp: u32) -> Option<Decimal> {
    if den == 0 {
        return None;
    }
    let n = num.checked_mul(10i128.checked_pow(dp)?)?;
    Decimal::try_from_i128_with_scale(div_half_even(n, den), dp).ok()
}

/// A decimal as an integer count of `10^-dp` units (exact; `None` if it has more places
/// or does not fit).
pub(crate) fn units(d: Decimal, dp: u32) -> Option<i128> {
    if d.scale() > dp {
        return None;
    }
    d.mantissa()
        .checked_mul(10i128.checked_pow(dp - d.scale())?)
}

fn too_large() -> Error {
    Error::validation("amount", "a report total is too large")
}

/// The decimal places figures in currency `c` are rounded to: its minor unit, at most
/// the storage scale (4).
pub(crate) fn minor_digits(c: Currency) -> u32 {
    c.minor_digits().min(crmkit_core::Money::STORAGE_SCALE)
}

/// Converts per-currency sums into base-currency figures at one date's rates, caching
/// the rates. The one converter of the crate: the sales reports and the pipeline
/// snapshots (their per-deal base amounts and forecast accuracy's won deals) use it.
pub(crate) struct Converter {
    currencies: Currencies,
    base: Currency,
    date: NaiveDate,
    rates: HashMap<Currency, Decimal>,
}

impl Converter {
    /// A converter into the tenant's base currency (a Validation error on
    /// `base_currency` when none is set) at `date`'s rates.
    pub(crate) async fn new(store: &Store, ctx: &Ctx, date: NaiveDate) -> Result<Converter> {
        let currencies = Currencies::new(store)?;
        let base = currencies
            .base_currency(ctx)
            .await?
            .ok_or_else(|| Error::validation("base_currency", "is not set"))?;
        Converter::with_base(currencies, base, date)
    }

    /// A converter into `base` (read by the caller) at `date`'s rates; a date outside
    /// years 1-9999 is a Validation error on `rate_date`.
    pub(crate) fn with_base(
        currencies: Currencies,
        base: Currency,
        date: NaiveDate,
    ) -> Result<Converter> {
        if let Err(r) = crmkit_core::text::check_date(date) {
            return Err(Error::validation("rate_date", r));
        }
        Ok(Converter {
            currencies,
            base,
            date,
            rates: HashMap::new(),
        })
    }

    /// The decimal places of converted figures (the base currency's minor unit).
    pub(crate) fn digits(&self) -> u32 {
        minor_digits(self.base)
    }

    /// The rate from `c` into the base currency at the date (1 for the base itself); no
    /// rate on or before the date is a Validation error on `rate_date` naming both.
    pub(crate) async fn rate(&mut self, ctx: &Ctx, c: Currency) -> Result<Decimal> {
        if c == self.base {
            return Ok(Decimal::ONE);
        }
        if let Some(r) = self.rates.get(&c) {
            return Ok(*r);
        }
        let r = match self.currencies.rate_at(ctx, c, self.date).await {
            Ok(r) => r.rate.normalize(),
            Err(Error::NotFound { .. }) => {
                return Err(Error::validation(
                    "rate_date",
                    format!(
                        "no exchange rate from {c} to {} on or before {}",
                        self.base, self.date
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        self.rates.insert(c, r);
        Ok(r)
    }

    /// `sum × 10^-scale` of currency `c` in the base currency, rounded half to even.
    pub(crate) async fn convert(
        &mut self,
        ctx: &Ctx,
        c: Currency,
        sum: i128,
        scale: u32,
    ) -> Result<Decimal> {
        let rate = self.rate(ctx, c).await?;
        let amount = Decimal::try_from_i128_with_scale(sum, scale).map_err(|_| too_large())?;
        multiply_exact(amount, rate, self.digits()).ok_or_else(too_large)
    }
}

// ---------------------------------------------------------------------------------------
// Aggregates
// ---------------------------------------------------------------------------------------

fn bad() -> Error {
    Error::storage("malformed aggregate row")
}

fn count_of(v: &Value) -> Result<u64> {
    v.as_int().map(|i| i as u64).ok_or_else(bad)
}

fn sum_of(v: &Value) -> Result<i128> {
    v.as_sum().ok_or_else(bad)
}

fn currency_of(v: &Value) -> Result<Option<Currency>> {
    match v.as_text() {
        Some(c) => Currency::parse(c).map(Some),
        None if v.is_null() => Ok(None),
        None => Err(bad()),
    }
}

/// A group value as text (uuid or name).
fn group_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Uuid(u) => Some(u.to_string()),
        Value::Text(t) => Some(t.clone()),
        Value::Int(i) => Some(i.to_string()),
    }
}

fn ts(t: DateTime<Utc>) -> Value {
    Value::timestamp(t)
}

/// The sales reports over one store.
pub(crate) struct Sales<'a> {
    pub store: &'a Store,
    pub settings: ReportSettings,
    pub tz: Tz,
}

/// Per-currency sums of one group: count, amount units (10^-4), weighted units (10^-6).
#[derive(Default)]
struct Sums {
    count: u64,
    by_currency: BTreeMap<Option<&'static str>, (i128, i128)>,
}

impl Sums {
    fn add(&mut self, currency: Option<Currency>, count: u64, amount: i128, weighted: i128) {
        self.count += count;
        let e = self
            .by_currency
            .entry(currency.map(|c| c.code()))
            .or_default();
        e.0 += amount;
        e.1 += weighted;
    }

    /// (amount, weighted) in the base currency.
    async fn convert(&self, ctx: &Ctx, conv: &mut Converter) -> Result<(Decimal, Decimal)> {
        let mut amount = Decimal::ZERO;
        let mut weighted = Decimal::ZERO;
        for (c, (a, w)) in &self.by_currency {
            let Some(c) = c else { continue };
            let c = Currency::parse(c)?;
            amount = amount
                .checked_add(conv.convert(ctx, c, *a, 4).await?)
                .ok_or_else(too_large)?;
            weighted = weighted
                .checked_add(conv.convert(ctx, c, *w, 6).await?)
                .ok_or_else(too_large)?;
        }
        Ok((amount, weighted))
    }
}

impl Sales<'_> {
    fn deals(&self) -> Result<Deals> {
        Deals::new(self.store)
    }

    async fn pipelines(&self, ctx: &Ctx) -> Result<Vec<Pipeline>> {
        self.deals()?.pipelines().all(ctx).await
    }

    /// The scope condition: visible, not deleted, and the pipeline filter (an unknown
    /// pipeline is a Validation error on `pipeline`).
    async fn scope(&self, ctx: &Ctx, pipeline: Option<PipelineId>) -> Result<Cond> {
        let mut c = visibility_scope(ctx, false);
        if let Some(p) = pipeline {
            match self.deals()?.pipelines().get(ctx, p).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(Error::validation(
                        "pipeline",
                        "is not a pipeline of this tenant",
                    ));
                }
                Err(e) => return Err(e),
            }
            c = c.and(Cond::eq("pipeline_id", p.as_uuid()));
        }
        Ok(c)
    }

    async fn aggregate(
        &self,
        ctx: &Ctx,
        cond: Cond,
        group_by: Vec<&str>,
        measures: Vec<Measure>,
    ) -> Result<Vec<Row>> {
        let agg = Aggregate {
            table: DEAL_TABLE,
            cond,
            group_by: group_by.into_iter().map(String::from).collect(),
            measures,
            buckets: None,
        };
        self.store.backend().aggregate(ctx.tenant(), &agg).await
    }

    fn today(&self, ctx: &Ctx) -> NaiveDate {
        local_date(self.tz, ctx.now())
    }

    /// [`PipelineByStage`].
    pub async fn pipeline_by_stage(&self, ctx: &Ctx, r: &PipelineByStage) -> Result<Vec<StageRow>> {
        let cond = self
            .scope(ctx, r.pipeline)
            .await?
            .and(Cond::eq("status", "open"));
        let mut conv =
            Converter::new(self.store, ctx, r.rate_date.unwrap_or(self.today(ctx))).await?;
        let mut group_by = vec!["pipeline_id", "stage_id"];
        if let Some(d) = r.by {
            group_by.push(d.column());
        }
        let n = group_by.len();
        group_by.push("currency");
        let rows = self
            .aggregate(
                ctx,
                cond,
                group_by,
                vec![
                    Measure::Count,
                    Measure::Sum("amount".into()),
                    Measure::Sum("weighted_x100".into()),
                ],
            )
            .await?;
        let mut groups: BTreeMap<(String, String, Option<String>), Sums> = BTreeMap::new();
        for row in rows {
            let key = (
                group_text(&row[0]).ok_or_else(bad)?,
                group_text(&row[1]).ok_or_else(bad)?,
                if r.by.is_some() {
                    group_text(&row[2])
                } else {
                    None
                },
            );
            groups.entry(key).or_default().add(
                currency_of(&row[n])?,
                count_of(&row[n + 1])?,
                sum_of(&row[n + 2])?,
                sum_of(&row[n + 3])?,
            );
        }
        let pipelines = self.pipelines(ctx).await?;
        let mut out = vec![];
        for ((p, s, g), sums) in groups {
            let (amount, weighted) = sums.convert(ctx, &mut conv).await?;
            let pipeline: PipelineId = p.parse()?;
            let stage: StageId = s.parse()?;
            let stage_name = pipelines
                .iter()
                .find(|x| x.id == pipeline)
                .and_then(|x| x.stage(stage))
                .map(|x| x.name.clone())
                .unwrap_or_default();
            out.push(StageRow {
                pipeline,
                stage,
                stage_name,
                group: g,
                count: sums.count,
                amount,
                weighted,
            });
        }
        sort_stage_rows(&mut out, &pipelines);
        Ok(out)
    }

    /// [`Forecast`].
    pub async fn forecast(&self, ctx: &Ctx, r: &Forecast) -> Result<Vec<ForecastRow>> {
        if r.best_case_at > r.commit_at || r.commit_at > 100 {
            return Err(Error::validation(
                "commit_at",
                "must be at most 100 and at least best_case_at",
            ));
        }
        let buckets = r.bucket.cover(&r.period, self.settings.fiscal_year_start)?;
        let scope = self.scope(ctx, r.pipeline).await?;
        let mut conv =
            Converter::new(self.store, ctx, r.rate_date.unwrap_or(r.period.to())).await?;
        let measures = || {
            vec![
                Measure::Count,
                Measure::Sum("amount".into()),
                Measure::Sum("weighted_x100".into()),
            ]
        };
        let date = |d: NaiveDate| Value::Text(d.format("%Y-%m-%d").to_string());
        let in_period = Cond::Or(vec![
            Cond::And(vec![
                Cond::Cmp("expected_close".into(), CmpOp::Gte, date(r.period.from())),
                Cond::Cmp("expected_close".into(), CmpOp::Lte, date(r.period.to())),
            ]),
            Cond::IsNull("expected_close".into()),
        ]);
        // Per bucket (None: no close date): the three open categories and closed.
        let nb = buckets.len();
        let mut cats: Vec<[Sums; 4]> = (0..=nb).map(|_| Default::default()).collect();
        // One aggregate for the open deals, grouped by close date, probability (at most
        // 101 values) and currency; the bands are applied to the groups here.
        let band = |probability: i64| {
            if probability < i64::from(r.best_case_at) {
                0
            } else if probability < i64::from(r.commit_at) {
                1
            } else {
                2
            }
        };
        let cond = scope.clone().and(Cond::eq("status", "open")).and(in_period);
        let rows = self
            .aggregate(
                ctx,
                cond,
                vec!["expected_close", "probability", "currency"],
                measures(),
            )
            .await?;
        for row in rows {
            let slot = match crmkit_core::row::opt_date(&row[0])? {
                None => nb,
                Some(d) => buckets.iter().position(|b| b.contains(d)).ok_or_else(bad)?,
            };
            let ci = band(row[1].as_int().ok_or_else(bad)?);
            cats[slot][ci].add(
                currency_of(&row[2])?,
                count_of(&row[3])?,
                sum_of(&row[4])?,
                sum_of(&row[5])?,
            );
        }
        // The won deals: one aggregate over `won_at`, bucketed by the local buckets'
        // first instants (the first and last clipped to the period).
        let bounds = r
            .period
            .bucket_bounds(&buckets, self.tz)
            .into_iter()
            .map(ts)
            .collect();
        let cond = scope.clone().and(Cond::eq("status", "won"));
        let agg = Aggregate {
            table: DEAL_TABLE,
            cond,
            group_by: vec!["currency".into()],
            measures: measures(),
            buckets: Some(Buckets::new("won_at", bounds)),
        };
        for row in self.store.backend().aggregate(ctx.tenant(), &agg).await? {
            let i = usize::try_from(row[0].as_int().ok_or_else(bad)?).map_err(|_| bad())?;
            cats.get_mut(i).ok_or_else(bad)?[3].add(
                currency_of(&row[1])?,
                count_of(&row[2])?,
                sum_of(&row[3])?,
                sum_of(&row[4])?,
            );
        }
        let mut out = vec![];
        for (i, c) in cats.iter().enumerate() {
            let mut lines = vec![];
            let mut weighted = Decimal::ZERO;
            for (ci, sums) in c.iter().enumerate() {
                let (amount, w) = sums.convert(ctx, &mut conv).await?;
                let add = if ci == 3 { amount } else { w };
                weighted = weighted.checked_add(add).ok_or_else(too_large)?;
                lines.push(Line {
                    count: sums.count,
                    amount,
                });
            }
            let period = buckets.get(i).cloned();
            if period.is_none() && c.iter().all(|s| s.count == 0) {
                continue;
            }
            let [pipeline, best_case, commit, closed]: [Line; 4] =
                lines.try_into().map_err(|_| bad())?;
            out.push(ForecastRow {
                period,
                pipeline,
                best_case,
                commit,
                closed,
                weighted,
            });
        }
        Ok(out)
    }

    /// Won and lost sums per group and currency in the period.
    pub(crate) async fn closed(
        &self,
        ctx: &Ctx,
        period: &Period,
        by: Option<Dim>,
        pipeline: Option<PipelineId>,
        status: &str,
        extra: Vec<Measure>,
    ) -> Result<Vec<(Option<String>, Option<Currency>, u64, i128, Vec<i128>)>> {
        let (start, end) = period.instants(self.tz);
        let at = if status == "won" { "won_at" } else { "lost_at" };
        let cond = self
            .scope(ctx, pipeline)
            .await?
            .and(Cond::eq("status", status))
            .and(Cond::Cmp(at.into(), CmpOp::Gte, ts(start)))
            .and(Cond::Cmp(at.into(), CmpOp::Lt, ts(end)));
        let mut group_by = vec![];
        if let Some(d) = by {
            group_by.push(d.column());
        }
        let n = group_by.len();
        group_by.push("currency");
        let mut measures = vec![Measure::Count, Measure::Sum("amount".into())];
        let ne = extra.len();
        measures.extend(extra);
        let rows = self.aggregate(ctx, cond, group_by, measures).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    if n == 1 { group_text(&row[0]) } else { None },
                    currency_of(&row[n])?,
                    count_of(&row[n + 1])?,
                    sum_of(&row[n + 2])?,
                    (0..ne)
                        .map(|i| sum_of(&row[n + 3 + i]))
                        .collect::<Result<Vec<_>>>()?,
                ))
            })
            .collect()
    }

    /// [`WinRate`].
    pub async fn win_rate(&self, ctx: &Ctx, r: &WinRate) -> Result<Vec<WinRateRow>> {
        let mut conv =
            Converter::new(self.store, ctx, r.rate_date.unwrap_or(r.period.to())).await?;
        let mut groups: BTreeMap<Option<String>, [Sums; 2]> = BTreeMap::new();
        if r.by.is_none() {
            groups.insert(None, Default::default());
        }
        for (i, status) in ["won", "lost"].into_iter().enumerate() {
            for (g, c, count, amount, _) in self
                .closed(ctx, &r.period, r.by, r.pipeline, status, vec![])
                .await?
            {
                groups.entry(g).or_default()[i].add(c, count, amount, 0);
            }
        }
        let digits = conv.digits();
        let mut out = vec![];
        for (group, [won, lost]) in groups {
            let (won_value, _) = won.convert(ctx, &mut conv).await?;
            let (lost_value, _) = lost.convert(ctx, &mut conv).await?;
            out.push(win_rate_row(
                group, won.count, lost.count, won_value, lost_value, digits,
            )?);
        }
        Ok(out)
    }

    /// [`SalesCycle`].
    pub async fn sales_cycle(&self, ctx: &Ctx, r: &SalesCycle) -> Result<Vec<CycleRow>> {
        let mut sums: BTreeMap<Option<String>, (u64, i128)> = BTreeMap::new();
        if r.by.is_none() {
            sums.insert(None, (0, 0));
        }
        for (g, _, count, _, extra) in self
            .closed(
                ctx,
                &r.period,
                r.by,
                r.pipeline,
                "won",
                vec![
                    Measure::Sum("won_at".into()),
                    Measure::Sum("created_at".into()),
                ],
            )
            .await?
        {
            let e = sums.entry(g).or_default();
            e.0 += count;
            e.1 += extra[0] - extra[1];
        }
        // The durations, for the percentiles (no portable SQL percentile).
        let (start, end) = r.period.instants(self.tz);
        let cond = self
            .scope(ctx, r.pipeline)
            .await?
            .and(Cond::eq("status", "won"))
            .and(Cond::Cmp("won_at".into(), CmpOp::Gte, ts(start)))
            .and(Cond::Cmp("won_at".into(), CmpOp::Lt, ts(end)));
        let mut s = Select::new(DEAL_TABLE, cond);
        s.order = vec![OrderKey::asc("id")];
        let table = self.store.backend().schema().table(DEAL_TABLE)?;
        let keep = [
            "id",
            "created_at",
            "won_at",
            r.by.map(Dim::column).unwrap_or("id"),
        ];
        s.omit = table
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .filter(|c| !keep.contains(&c.as_str()))
            .collect();
        let pos = |c: &str| {
            table
                .columns
                .iter()
                .position(|x| x.name == c)
                .ok_or_else(|| Error::Config(format!("no column {c}")))
        };
        let (pc, pw, pg) = (pos("created_at")?, pos("won_at")?, pos(keep[3])?);
        let mut durations: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
        for row in self.store.backend().select(ctx.tenant(), &s).await? {
            let c = row[pc].as_int().ok_or_else(bad)?;
            let w = row[pw].as_int().ok_or_else(bad)?;
            let g = if r.by.is_some() {
                group_text(&row[pg])
            } else {
                None
            };
            durations
                .entry(g)
                .or_default()
                .push((w - c).div_euclid(1_000_000));
        }
        let mut out = vec![];
        for (g, (won, total_us)) in sums {
            let mut d = durations.remove(&g).unwrap_or_default();
            d.sort_unstable();
            out.push(CycleRow {
                group: g,
                won,
                average_seconds: (won > 0)
                    .then(|| div_half_even(total_us, i128::from(won) * 1_000_000) as i64),
                median_seconds: nearest_rank(&d, 50),
                p90_seconds: nearest_rank(&d, 90),
            });
        }
        Ok(out)
    }

    /// [`Velocity`].
    pub async fn velocity(&self, ctx: &Ctx, r: &Velocity) -> Result<VelocityRow> {
        let open = self
            .aggregate(
                ctx,
                self.scope(ctx, r.pipeline)
                    .await?
                    .and(Cond::eq("status", "open")),
                vec![],
                vec![Measure::Count],
            )
            .await?;
        let open_deals = open
            .first()
            .map(|r| count_of(&r[0]))
            .transpose()?
            .unwrap_or(0);
        let rate = self
            .win_rate(
                ctx,
                &WinRate {
                    period: r.period,
                    by: None,
                    pipeline: r.pipeline,
                    rate_date: r.rate_date,
                },
            )
            .await?;
        // The total microseconds from creation to won, again exactly.
        let total_us = self
            .closed(
                ctx,
                &r.period,
                None,
                r.pipeline,
                "won",
                vec![
                    Measure::Sum("won_at".into()),
                    Measure::Sum("created_at".into()),
                ],
            )
            .await?
            .iter()
            .map(|x| x.4[0] - x.4[1])
            .sum::<i128>();
        let w = rate.first().ok_or_else(bad)?;
        let digits = Converter::new(self.store, ctx, r.rate_date.unwrap_or(r.period.to()))
            .await?
            .digits();
        Ok(velocity_row(
            open_deals,
            w.won,
            w.lost,
            w.won_value,
            total_us,
            digits,
        ))
    }
}

/// The nearest-rank `p`th percentile of sorted values: the `ceil(p/100 × n)`-th smallest.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (u64::from(p) * n).div_ceil(100).max(1);
    sorted.get(rank as usize - 1).copied()
}

/// A win-rate row from its sums (shared with the oracle's tests).
pub fn win_rate_row(
    group: Option<String>,
    won: u64,
    lost: u64,
    won_value: Decimal,
    lost_value: Decimal,
    digits: u32,
) -> Result<WinRateRow> {
    let wv = units(won_value, digits).ok_or_else(too_large)?;
    let lv = units(lost_value, digits).ok_or_else(too_large)?;
    Ok(WinRateRow {
        group,
        won,
        lost,
        won_value,
        lost_value,
        win_rate_by_count: ratio(i128::from(won), i128::from(won + lost), 4),
        win_rate_by_value: ratio(wv, wv + lv, 4),
        average_deal_size: if won == 0 {
            None
        } else {
            Decimal::try_from_i128_with_scale(div_half_even(wv, i128::from(won)), digits).ok()
        },
    })
}

/// A velocity row from its inputs: open deals, won and lost counts, the won value (base
/// currency) and the total microseconds from creation to won.
pub fn velocity_row(
    open_deals: u64,
    won: u64,
    lost: u64,
    won_value: Decimal,
    total_us: i128,
    digits: u32,
) -> VelocityRow {
    const DAY_US: i128 = 86_400_000_000;
    let wv = units(won_value, digits);
    let per_day = (|| {
        let wv = wv?;
        let num = i128::from(open_deals)
            .checked_mul(wv)?
            .checked_mul(i128::from(won))?
            .checked_mul(DAY_US)?;
        let den = i128::from(won + lost).checked_mul(total_us)?;
        if den <= 0 {
            return None;
        }
        Decimal::try_from_i128_with_scale(div_half_even(num, den), digits).ok()
    })();
    VelocityRow {
        open_deals,
        win_rate: ratio(i128::from(won), i128::from(won + lost), 4),
        average_deal_size: match (won, wv) {
            (0, _) | (_, None) => None,
            (n, Some(v)) => {
                Decimal::try_from_i128_with_scale(div_half_even(v, i128::from(n)), digits).ok()
            }
        },
        average_cycle_days: if won == 0 {
            None
        } else {
            ratio(total_us, i128::from(won) * DAY_US, 2)
        },
        per_day,
    }
}

/// Orders stage rows by pipeline (as the pipelines are listed), stage position, stage
/// id and group.
pub fn sort_stage_rows(rows: &mut [StageRow], pipelines: &[Pipeline]) {
    let key = |r: &StageRow| {
        let pi = pipelines.iter().position(|p| p.id == r.pipeline);
        let pos = pipelines
            .get(pi.unwrap_or(usize::MAX))
            .and_then(|p| p.stage(r.stage))
            .map(|s| s.position);
        (
            pi.unwrap_or(usize::MAX),
            pos.unwrap_or(u32::MAX),
            r.stage.to_string(),
            r.group.clone(),
        )
    };
    rows.sort_by_key(key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank_is_the_ceil_rank() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[1, 2], 50), Some(1));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 90), Some(4));
        assert_eq!(nearest_rank(&(1..=10).collect::<Vec<_>>(), 90), Some(9));
        assert_eq!(nearest_rank(&(1..=11).collect::<Vec<_>>(), 90), Some(10));
    }

    proptest! {
        #[test]
        fn half_even_division_matches_decimal(num in -1_000_000_000i64..1_000_000_000, den in 1i64..100_000) {
            let exact = Decimal::from(num) / Decimal::from(den);
            let want = exact.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointNearestEven);
            prop_assert_eq!(Decimal::from(div_half_even(num.into(), den.into()) as i64), want);
        }

        #[test]
        fn nearest_rank_matches_its_definition(mut v in proptest::collection::vec(-1000i64..1000, 1..60), p in 1u32..=100) {
            v.sort_unstable();
            let got = nearest_rank(&v, p).expect("non-empty");
            // The smallest value with at least p% of the values at or below it.
            let n = v.len() as f64;
            let want = v.iter().copied().find(|x| {
                (v.iter().filter(|y| *y <= x).count() as f64) * 100.0 >= f64::from(p) * n
            }).expect("some value");
            prop_assert_eq!(got, want);
        }
    }
}
