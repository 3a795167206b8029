//! Schedules: "every day, week or month at a local time, over the records a query
//! selects".
//!
//! [`Engine::run_schedules`] (part of [`Engine::tick`]) finds, for each enabled schedule
//! rule, its latest scheduled instant at or before now in the rule's time zone. When that
//! instant is after the last one the rule ran for (or, the first time, after the rule was
//! made), the rule runs once for it: the records its filter selects, as the rule's owner
//! sees them, page by page; for each, the conditions and then the actions, under the
//! occurrence `s<instant µs>:<record>`, so a record is acted on once per instant even if a
//! run is cut short and made again. Then the instant is stored as done
//! ([`SCHEDULE_TABLE`]). Instants missed while no engine ran are made up once, not once
//! per missed instant. Local times follow the time zone, across DST (a time that does not
//! exist on a day runs at the first instant after the gap).

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use crmkit_core::event::decode_timestamp;
use crmkit_core::store::{ColumnType, TableDef, Value, Write, columns};
use crmkit_core::{Query, RecordKind, RecordRef, Result, TenantId};

use crate::engine::{Engine, Latest, RuleRun, why_not};
use crate::eval::evaluate_conditions;
use crate::model::{Recurrence, Rule, Trigger};
use crate::{RunReport, runlog};

/// When each schedule rule last ran: the scheduled instant it ran for.
pub const SCHEDULE_TABLE: &str = "automation_schedules";

const SCHEDULE_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[("rule_id", Uuid, false), ("last_at", Timestamp, false)]
};

pub(crate) fn tables() -> Vec<TableDef> {
    vec![TableDef::new(
        SCHEDULE_TABLE,
        columns(SCHEDULE_COLUMNS),
        ["rule_id"],
    )]
}

/// The instant of local `time` on `date` in `tz` (after a DST gap when it falls in one).
fn at_local(date: NaiveDate, time: NaiveTime, tz: Tz) -> Option<DateTime<Utc>> {
    let t = date.and_time(time);
    match tz.from_local_datetime(&t) {
        LocalResult::Single(x) | LocalResult::Ambiguous(x, _) => Some(x.with_timezone(&Utc)),
        LocalResult::None => (1..=180).find_map(|m| {
            tz.from_local_datetime(&(t + TimeDelta::minutes(m)))
                .earliest()
                .map(|x| x.with_timezone(&Utc))
        }),
    }
}

/// Whether a schedule runs on `date`.
fn runs_on(every: &Recurrence, date: NaiveDate) -> bool {
    match every {
        Recurrence::Daily => true,
        Recurrence::Weekly { weekday } => date.weekday() == *weekday,
        Recurrence::Monthly { day } => date.day() == *day,
    }
}

/// The latest scheduled instant at or before `now` (looking back at most 62 days).
pub(crate) fn latest_at_or_before(
    every: &Recurrence,
    time: NaiveTime,
    tz: Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let today = now.with_timezone(&tz).date_naive();
    (0..=62u64)
        .filter_map(|back| today.checked_sub_days(Days::new(back)))
        .filter(|d| runs_on(every, *d))
        .filter_map(|d| at_local(d, time, tz))
        .find(|t| *t <= now)
}

impl Engine {
    /// Runs the schedule rules whose instant has come (see [the schedules](self)).
    pub async fn run_schedules(&self, tenant: TenantId) -> Result<RunReport> {
        let rules = self.rule_set(tenant, true).await?;
        self.forget_owners();
        let mut report = RunReport::default();
        let mut scheduled: Vec<_> = rules
            .by_id
            .values()
            .filter(|r| matches!(r.trigger, Trigger::Schedule { .. }))
            .cloned()
            .collect();
        scheduled.sort_by_key(|r| r.id);
        for rule in scheduled {
            self.run_schedule(tenant, &rule, &mut report).await?;
        }
        Ok(report)
    }

    async fn run_schedule(
        &self,
        tenant: TenantId,
        rule: &Rule,
        report: &mut RunReport,
    ) -> Result<()> {
        let Trigger::Schedule {
            record_kind,
            every,
            at,
            time_zone,
            filter,
        } = &rule.trigger
        else {
            return Ok(());
        };
        let (Ok(time), Ok(tz)) = (
            NaiveTime::parse_from_str(at, "%H:%M"),
            time_zone.parse::<Tz>(),
        ) else {
            return Ok(());
        };
        let Some(due) = latest_at_or_before(every, time, tz, self.now()) else {
            return Ok(());
        };
        let key = vec![Value::Uuid(rule.id.as_uuid())];
        let last = match self
            .store
            .backend()
            .get(tenant, SCHEDULE_TABLE, &key)
            .await?
        {
            Some(r) => decode_timestamp(&r[1])?,
            None => rule.created_at,
        };
        if due <= last {
            return Ok(());
        }
        report.triggered += 1;
        if let Ok(ctx) = self.owner_ctx(tenant, rule).await? {
            let kind = RecordKind::parse(record_kind)?;
            let mut q = Query::new().limit(crmkit_core::query::MAX_LIMIT);
            if let Some(f) = filter {
                q = q.filter(f.clone());
            }
            loop {
                let page = self.store.records().list(&ctx, record_kind, &q).await?;
                for r in page.items {
                    let Some(id) = r.id() else { continue };
                    let record = RecordRef::new(kind.clone(), id);
                    self.run_scheduled(tenant, &ctx, rule, due, record, r.into_value(), report)
                        .await?;
                }
                match page.next_cursor {
                    Some(c) => q = q.after(c),
                    None => break,
                }
            }
        }
        self.commit_once(
            tenant,
            vec![
                Write::Delete {
                    table: SCHEDULE_TABLE,
                    key: key.clone(),
                },
                Write::Insert {
                    table: SCHEDULE_TABLE,
                    row: vec![key[0].clone(), Value::timestamp(due)],
                },
            ],
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_scheduled(
        &self,
        tenant: TenantId,
        ctx: &crmkit_core::Ctx,
        rule: &Rule,
        due: DateTime<Utc>,
        record: RecordRef,
        after: serde_json::Value,
        report: &mut RunReport,
    ) -> Result<()> {
        let occurrence = format!("s{}:{}", due.timestamp_micros(), record.id.simple());
        let explanation = evaluate_conditions(&rule.conditions, &after, None);
        if !explanation.holds {
            report.skipped += 1;
            let row = runlog::skipped_row(
                rule.id,
                &occurrence,
                Some(&record),
                1,
                &why_not(&explanation),
                self.now(),
            );
            return self.commit_once(tenant, vec![row]).await;
        }
        let run = RuleRun {
            tenant,
            rule,
            occurrence,
            depth: 1,
            record,
            after,
            event: None,
            latest: std::sync::Mutex::new(Latest::After),
            retry: false,
        };
        self.run_actions(ctx, &run, 0, report).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    #[test]
    fn latest_instants_follow_the_local_calendar() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        // Monday 2027-03-29 08:59 CEST (06:59 UTC): the last daily 09:00 is Sunday's,
        // already summer time (the change was at 02:00 that Sunday): 07:00 UTC.
        let now = Utc.with_ymd_and_hms(2027, 3, 29, 6, 59, 0).unwrap();
        assert_eq!(
            latest_at_or_before(&Recurrence::Daily, nine, berlin, now),
            Some(Utc.with_ymd_and_hms(2027, 3, 28, 7, 0, 0).unwrap())
        );
        // Saturday's 09:00 was CET: 08:00 UTC.
        let sat = Utc.with_ymd_and_hms(2027, 3, 27, 9, 0, 0).unwrap();
        assert_eq!(
            latest_at_or_before(&Recurrence::Daily, nine, berlin, sat),
            Some(Utc.with_ymd_and_hms(2027, 3, 27, 8, 0, 0).unwrap())
        );
        let weekly = Recurrence::Weekly {
            weekday: Weekday::Mon,
        };
        assert_eq!(
            latest_at_or_before(&weekly, nine, berlin, now),
            Some(Utc.with_ymd_and_hms(2027, 3, 22, 8, 0, 0).unwrap())
        );
        let monthly = Recurrence::Monthly { day: 1 };
        assert_eq!(
            latest_at_or_before(&monthly, nine, berlin, now),
            Some(Utc.with_ymd_and_hms(2027, 3, 1, 8, 0, 0).unwrap())
        );
    }
}
