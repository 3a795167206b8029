//! Time-relative triggers: "N minutes, hours, days or working days before or after a date
//! or timestamp field of a record".
//!
//! A timer per (rule, record) is a row of [`TIMER_TABLE`] with its due instant (indexed,
//! so finding the due ones is an index range). When a timed rule is saved, changed,
//! enabled or restored, the engine arms the timers of the records that exist then
//! (as the rule's owner sees them). It arms, re-plans and cancels a
//! timer when it processes a change of the record (created, updated, restored: armed from the
//! field's value as the rule's owner sees the record; deleted, field cleared, record no
//! longer visible: cancelled). [`Engine::fire_timers`] runs the due ones: it reloads the
//! record and computes the instant again (a change the feed has not brought yet re-plans
//! it instead of firing early), evaluates the conditions on the record as it is, and runs
//! the actions under the occurrence `t<record id>@<due, µs>`, so one instant fires once
//! (a re-planned timer with a new instant fires again at that instant).
//!
//! Instants: a timestamp field is its instant; a date field is midnight of that date in
//! the rule owner's time zone. Minutes and hours are exact durations; days are calendar
//! days in the owner's time zone at the same local time (so "3 days before" stays at the
//! same wall-clock time across a DST change); working days follow the offset's calendar
//! (see [`crate::model::Offset`]).

use chrono::{DateTime, LocalResult, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crmkit_core::event::decode_timestamp;
use crmkit_core::record::Json;
use crmkit_core::store::{
    CmpOp, ColumnType, Cond, IndexDef, OrderKey, Row, Select, TableDef, Value, Write, columns,
};
use crmkit_core::{Ctx, Error, Event, RecordKind, RecordRef, Result, RuleId, Store, TenantId};

use crate::engine::{Engine, RuleRun, RuleSet};
use crate::eval::evaluate_conditions;
use crate::model::{Direction, Offset, Rule, TimeUnit, Trigger};
use crate::runlog::FailedRun;
use crate::template::field;
use crate::{RunReport, runlog};

/// Armed timers, one per (rule, record), by due instant.
pub const TIMER_TABLE: &str = "automation_timers";

const TIMER_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("rule_id", Uuid, false),
        ("record_kind", Text(64), false),
        ("record_id", Uuid, false),
        ("due_at", Timestamp, false),
        ("armed_at", Timestamp, false),
    ]
};

pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(
            TIMER_TABLE,
            columns(TIMER_COLUMNS),
            ["rule_id", "record_kind", "record_id"],
        )
        .index(IndexDef::new("automation_timers_due", ["due_at"])),
    ]
}

/// An armed timer: rule `rule` fires for `record` at `due_at` (a row of [`TIMER_TABLE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The timed rule.
    pub rule: RuleId,
    /// The record it fires for.
    pub record: RecordRef,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// When the engine armed (or last re-planned) it.
    pub armed_at: DateTime<Utc>,
}

impl Timer {
    /// The timer's row of [`TIMER_TABLE`], as the engine writes it.
    pub fn row(&self) -> Row {
        let mut row = key(self.rule, &self.record);
        row.push(Value::timestamp(self.due_at));
        row.push(Value::timestamp(self.armed_at));
        row
    }

    fn decode(row: &Row) -> Result<Timer> {
        let bad = || Error::storage("malformed timer row");
        let (Some(rule), Some(kind), Some(id), Some(due), Some(armed)) =
            (row.first(), row.get(1), row.get(2), row.get(3), row.get(4))
        else {
            return Err(bad());
        };
        Ok(Timer {
            rule: RuleId::from_uuid(rule.as_uuid().ok_or_else(bad)?),
            record: RecordRef::new(
                RecordKind::parse(kind.as_text().ok_or_else(bad)?)?,
                id.as_uuid().ok_or_else(bad)?,
            ),
            due_at: decode_timestamp(due)?,
            armed_at: decode_timestamp(armed)?,
        })
    }
}

/// The read [`Engine::due_timers`] (and so [`Engine::fire_timers`]) runs: the timers due at
/// `now`, earliest first, at most `limit` (clamped to 1..=1000). On the SQL backends it is a
/// range of the index `automation_timers_due` (`tenant_id`, `due_at`).
pub fn due_select(now: DateTime<Utc>, limit: u32) -> Select {
    let mut s = Select::new(
        TIMER_TABLE,
        Cond::Cmp("due_at".into(), CmpOp::Lte, Value::timestamp(now)),
    );
    s.order = vec![OrderKey::asc("due_at")];
    s.limit = Some(limit.clamp(1, crmkit_core::query::MAX_LIMIT));
    s
}

fn key(rule: RuleId, record: &RecordRef) -> Vec<Value> {
    vec![
        Value::Uuid(rule.as_uuid()),
        Value::Text(record.kind.as_str().to_owned()),
        Value::Uuid(record.id),
    ]
}

/// Local midnight (or the first instant of the day, on a DST gap) of `d` in `tz`.
fn start_of(d: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    let midnight = d.and_hms_opt(0, 0, 0)?;
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => (1..=180).find_map(|m| {
            tz.from_local_datetime(&(midnight + TimeDelta::minutes(m)))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        }),
    }
}

/// The instant a field's value stands for (`None`: no value, or not a date or time).
pub(crate) fn instant_of(v: &Json, tz: Tz) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| start_of(d, tz))
}

/// `anchor` moved by `offset` in `direction`; days are local calendar days in `tz`.
pub(crate) async fn shifted(
    store: &Store,
    ctx: &Ctx,
    anchor: DateTime<Utc>,
    offset: &Offset,
    direction: Direction,
    tz: Tz,
) -> Result<DateTime<Utc>> {
    let sign = match direction {
        Direction::Before => -1,
        Direction::After => 1,
    };
    if offset.unit == TimeUnit::Days {
        return shift_days(anchor, i64::from(offset.amount) * sign, tz);
    }
    crate::timing::shift(store, ctx, anchor, offset, sign).await
}

/// `anchor` moved by `days` local calendar days in `tz`, at the same local time (on a DST
/// gap, the first local instant after it).
fn shift_days(anchor: DateTime<Utc>, days: i64, tz: Tz) -> Result<DateTime<Utc>> {
    let local = anchor.with_timezone(&tz).naive_local();
    let date = local
        .date()
        .checked_add_signed(TimeDelta::days(days))
        .ok_or_else(|| Error::validation("offset", "reaches past the supported dates"))?;
    let target = date.and_time(local.time());
    Ok(match tz.from_local_datetime(&target) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => (1..=180)
            .find_map(|m| {
                tz.from_local_datetime(&(target + TimeDelta::minutes(m)))
                    .earliest()
            })
            .map_or(anchor, |t| t.with_timezone(&Utc)),
    })
}

/// The owner's time zone (UTC when unknown).
pub(crate) async fn zone_of(store: &Store, ctx: &Ctx) -> Tz {
    match store.directory().user(ctx, ctx.actor().user).await {
        Ok(u) => u.time_zone.parse().unwrap_or(Tz::UTC),
        Err(_) => Tz::UTC,
    }
}

/// When `rule`'s timer for `record` (its JSON as the owner sees it) is due, if it has one.
async fn due_for(
    store: &Store,
    ctx: &Ctx,
    rule: &Rule,
    record: &Json,
) -> Result<Option<DateTime<Utc>>> {
    let Trigger::Relative {
        field: f,
        offset,
        direction,
        ..
    } = &rule.trigger
    else {
        return Ok(None);
    };
    let tz = zone_of(store, ctx).await;
    let Some(anchor) = field(record, f).and_then(|v| instant_of(v, tz)) else {
        return Ok(None);
    };
    shifted(store, ctx, anchor, offset, *direction, tz)
        .await
        .map(Some)
}

/// Sets (or clears, `None`) the timer of `rule` for `record`, unless it already is so.
async fn set(
    e: &Engine,
    tenant: TenantId,
    rule: RuleId,
    record: &RecordRef,
    due: Option<DateTime<Utc>>,
) -> Result<()> {
    let k = key(rule, record);
    let row = e.store.backend().get(tenant, TIMER_TABLE, &k).await?;
    let current = row.as_ref().map(|r| decode_timestamp(&r[3])).transpose()?;
    if current == due {
        return Ok(());
    }
    let mut writes = vec![Write::Delete {
        table: TIMER_TABLE,
        key: k,
    }];
    if let Some(due_at) = due {
        let timer = Timer {
            rule,
            record: record.clone(),
            due_at,
            armed_at: e.now(),
        };
        writes.push(Write::Insert {
            table: TIMER_TABLE,
            row: timer.row(),
        });
    }
    e.commit_once(tenant, writes).await
}

/// Arms, re-plans or cancels the timers of the event's record.
pub(crate) async fn arm_for_event(
    e: &Engine,
    tenant: TenantId,
    rules: &RuleSet,
    ev: &Event,
) -> Result<()> {
    let kind = ev.record.kind.as_str();
    let Some(timed) = rules.timers.get(kind) else {
        return Ok(());
    };
    let verb = ev.kind.strip_prefix(kind).and_then(|v| v.strip_prefix('.'));
    if !matches!(verb, Some("created" | "updated" | "deleted" | "restored")) {
        return Ok(());
    }
    for rule in timed {
        let due = if verb == Some("deleted") {
            None
        } else {
            match e.owner_ctx(tenant, rule).await? {
                Err(_) => None,
                Ok(ctx) => match e.load(&ctx, ev).await? {
                    Err(_) => None,
                    Ok(record) => due_for(&e.store, &ctx, rule, &record).await?,
                },
            }
        };
        set(e, tenant, rule.id, &ev.record, due).await?;
    }
    Ok(())
}

/// Arms the timers of the records that exist when a timed rule is saved, changed, enabled
/// or restored (`changed`: those rules' ids), reading them page by page as the rule's
/// owner sees them. Records that change later are re-planned by [`arm_for_event`].
pub(crate) async fn arm_existing(
    e: &Engine,
    tenant: TenantId,
    rules: &RuleSet,
    changed: &[RuleId],
) -> Result<()> {
    let mut ids = changed.to_vec();
    ids.sort();
    ids.dedup();
    for id in ids {
        let Some(rule) = rules.by_id.get(&id) else {
            continue;
        };
        let Trigger::Relative { record_kind, .. } = &rule.trigger else {
            continue;
        };
        let Ok(ctx) = e.owner_ctx(tenant, rule).await? else {
            continue;
        };
        let kind = RecordKind::parse(record_kind)?;
        let mut q = crmkit_core::Query::new().limit(crmkit_core::query::MAX_LIMIT);
        loop {
            let page = e.store.records().list(&ctx, record_kind, &q).await?;
            for r in &page.items {
                let Some(rid) = r.id() else { continue };
                let due = due_for(&e.store, &ctx, rule, r.value()).await?;
                set(e, tenant, rule.id, &RecordRef::new(kind.clone(), rid), due).await?;
            }
            match page.next_cursor {
                Some(c) => q = q.after(c),
                None => break,
            }
        }
    }
    Ok(())
}

impl Engine {
    /// Fires up to `limit` (1 to 1000) timers that are due: each at most once per
    /// instant, never before it. See [the timers](crate::timers) for how they are armed.
    pub async fn fire_timers(&self, tenant: TenantId, limit: u32) -> Result<RunReport> {
        let due = self.due_timers(tenant, limit).await?;
        let rules = self.rule_set(tenant, true).await?;
        self.forget_owners();
        let mut report = RunReport::default();
        for t in due {
            self.fire(tenant, &rules, t.rule, t.record, t.due_at, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// The first `limit` (1 to 1000) timers due now, earliest first: what
    /// [`Engine::fire_timers`] fires next ([`due_select`], one index range), without firing
    /// them.
    pub async fn due_timers(&self, tenant: TenantId, limit: u32) -> Result<Vec<Timer>> {
        let s = due_select(self.now(), limit);
        let rows = self.store.backend().select(tenant, &s).await?;
        rows.iter().map(Timer::decode).collect()
    }

    async fn fire(
        &self,
        tenant: TenantId,
        rules: &RuleSet,
        rule_id: RuleId,
        record: RecordRef,
        at: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        let Some(rule) = rules.by_id.get(&rule_id).cloned() else {
            return set(self, tenant, rule_id, &record, None).await;
        };
        let ctx = match self.owner_ctx(tenant, &rule).await? {
            Ok(c) => c,
            Err(_) => return set(self, tenant, rule_id, &record, None).await,
        };
        let Some(after) = self.current(&ctx, &record).await? else {
            return set(self, tenant, rule_id, &record, None).await;
        };
        // The record may have changed since the timer was armed (the feed brings it
        // later): fire only at the instant it gives now.
        let due = due_for(&self.store, &ctx, &rule, &after).await?;
        if due != Some(at) {
            return set(self, tenant, rule_id, &record, due).await;
        }
        report.triggered += 1;
        let occurrence = format!("t{}@{}", record.id.simple(), at.timestamp_micros());
        let explanation = evaluate_conditions(&rule.conditions, &after, None);
        if explanation.holds {
            let run = RuleRun {
                tenant,
                rule: &rule,
                occurrence,
                depth: 1,
                record: record.clone(),
                latest: std::sync::Mutex::new(crate::engine::Latest::After),
                after,
                event: None,
                retry: false,
            };
            self.run_actions(&ctx, &run, 0, report).await?;
        } else {
            report.skipped += 1;
            let row = runlog::skipped_row(
                rule.id,
                &occurrence,
                Some(&record),
                1,
                &crate::engine::why_not(&explanation),
                self.now(),
            );
            self.commit_once(tenant, vec![row]).await?;
        }
        // Fired: the timer is spent (a failed action is retried from the failed runs).
        let k = key(rule_id, &record);
        let w = Write::DeleteWhere {
            table: TIMER_TABLE,
            cond: Cond::eq("rule_id", k[0].clone())
                .and(Cond::eq("record_kind", k[1].clone()))
                .and(Cond::eq("record_id", k[2].clone()))
                .and(Cond::eq("due_at", Value::timestamp(at))),
        };
        self.commit_once(tenant, vec![w]).await
    }
}

/// Retries a timer's or a schedule's failed run: the rule's actions from the failed one,
/// on the record as it is now.
pub(crate) async fn retry(
    e: &Engine,
    tenant: TenantId,
    rule: &Rule,
    f: FailedRun,
    report: &mut RunReport,
) -> Result<()> {
    let Some(record) = f.record.clone() else {
        return e.give_up(tenant, f, "the run names no record").await;
    };
    let ctx = match e.owner_ctx(tenant, rule).await? {
        Ok(c) => c,
        Err(why) => return e.give_up(tenant, f, &why).await,
    };
    let Some(after) = e.current(&ctx, &record).await? else {
        let why = "the record is gone or not visible to the rule's owner";
        return e.give_up(tenant, f, why).await;
    };
    let run = RuleRun {
        tenant,
        rule,
        occurrence: f.occurrence.clone(),
        depth: f.depth,
        record,
        latest: std::sync::Mutex::new(crate::engine::Latest::After),
        after,
        event: None,
        retry: true,
    };
    e.run_actions(&ctx, &run, f.action as usize, report).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_keep_the_local_time_across_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Close date 2027-04-01 (CEST): midnight local is 22:00 UTC the day before; three
        // days before is 2027-03-29 00:00 CEST, again 22:00 UTC (the change to summer
        // time on 2027-03-28 does not move the wall-clock time).
        let close = instant_of(&serde_json::json!("2027-04-01"), berlin).unwrap();
        assert_eq!(close, Utc.with_ymd_and_hms(2027, 3, 31, 22, 0, 0).unwrap());
        assert_eq!(
            shift_days(close, -3, berlin).unwrap(),
            Utc.with_ymd_and_hms(2027, 3, 28, 22, 0, 0).unwrap()
        );
        // Across the change: 2027-03-30 00:00 CEST minus 3 days is 2027-03-27 00:00 CET,
        // which is 23:00 UTC, an hour later in UTC terms than 72 hours before.
        let a = instant_of(&serde_json::json!("2027-03-30"), berlin).unwrap();
        assert_eq!(
            shift_days(a, -3, berlin).unwrap(),
            Utc.with_ymd_and_hms(2027, 3, 26, 23, 0, 0).unwrap()
        );
        // A timestamp is its instant.
        assert_eq!(
            instant_of(&serde_json::json!("2027-03-30T08:00:00Z"), berlin),
            Some(Utc.with_ymd_and_hms(2027, 3, 30, 8, 0, 0).unwrap())
        );
        assert_eq!(instant_of(&serde_json::json!(null), berlin), None);
    }
}
