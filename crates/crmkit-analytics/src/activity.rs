//! Activity reports: activities done per rep and period, open and overdue tasks per rep,
//! and follow-up health per owner (feature `activities`; a store without the activities
//! module composed, or a build without the feature, gets a Config error).
//!
//! Every count is a grouped backend aggregate; every report is scoped by the actor's
//! access through the condition lists use (`visibility_scope`): Admin and Manager see
//! everything, a Rep and a ReadOnly user what they or their teams own; deleted records are
//! left out.
//!
//! ## Activities done ([`ActivitiesDone`])
//! An activity the actor sees is **done** at one instant, by kind:
//! - a task when its status is `done`, at its completion (`completed_at`; the activities
//!   module's migration 3 stores it as a column, so tasks completed before that migration
//!   count once they are written again);
//! - a call at its start (`started_at`: calls are logged after the fact);
//! - a meeting at its start;
//! - a logged email at its logging (its creation), inbound and outbound alike.
//!
//! Only done instants up to the report's now count (a meeting that has not started yet
//! is not done). Notes are not counted (they record, they are not work done). Each
//! activity counts once, for its owner (a task's assignee), in the bucket of the local
//! date of its done instant in the tenant's reporting zone. One aggregate per bucket,
//! grouped by owner and kind.
//!
//! ## Open and overdue tasks ([`OverdueTasks`])
//! Per owner, the open (open or in progress) tasks the actor sees, and of those the
//! overdue ones: due before now. An all-day task is due at the start of its day in the
//! assignee's zone (the activities module's `due_at`), the rule
//! `Activities::overdue_tasks` lists by, so a row's `overdue` equals that list's length.
//!
//! ## Follow-up health ([`FollowUpHealth`])
//! For the tracked kinds (contacts, organizations, leads, deals), per kind and record
//! owner, over the **live** records the actor sees (not deleted; deals open, leads
//! neither converted nor disqualified):
//! - `records`: how many;
//! - `no_next_step`: of those, the records with no next step planned: no open task with
//!   a due instant and no meeting that was upcoming when it was last written, on any
//!   activity related to the record (whoever owns the activity). An overdue open task is
//!   still a planned step (it shows in [`OverdueTasks`]); this is the activities module's
//!   follow-up rule (`Activities::without_next_activity`);
//! - `not_contacted`: of those, the records whose last contact is before the start of the
//!   local date `quiet_days` days before today in the tenant's zone (no contact on any of
//!   the local dates from then to today). The last contact is the activities module's
//!   follow-up rule (`Activities::stale_records`): a done task at its completion, a call
//!   at its start, a past meeting at its start, a note or an email at its logging; a
//!   record never contacted counts from its creation. Records created before the
//!   activities module was composed and never touched since have no such instant and are
//!   not counted, as in that list.
//!
//! **How it is computed.** The follow-up state lives in the activities module's
//! follow-up table, which carries no owner, and the storage contract's aggregate reads
//! one table with no join and no `EXISTS`, so the two cannot be joined in one aggregate.
//! The report therefore pages the follow-up rows of one kind that match either condition
//! (their record ids and the two instants, by record id, [`FOLLOW_UP_CHUNK`] at a time),
//! and for each page has the backend count the records of those ids in the record table,
//! with the actor's scope and the liveness condition, grouped by owner. Memory stays
//! bounded by the page size; the cost grows with the tenant's number of records without
//! a next step or not contacted (not with the actor's share of them). Keeping the owner
//! on the follow-up row (a migration and a write on every reassignment) would make it one
//! aggregate; that is left for when it is measured to matter.

use serde::{Deserialize, Serialize};

use crmkit_core::UserId;

use crate::period::{Bucket, BucketKey, Period};

/// Activities done per owner and period, by kind (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivitiesDone {
    /// The period (local dates of the done instants).
    pub period: Period,
    /// The bucket.
    pub bucket: Bucket,
}

/// One row of [`ActivitiesDone`]: one owner in one bucket (only pairs with an activity
/// done are listed), ordered by bucket then owner id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivitiesDoneRow {
    /// The bucket.
    pub period: BucketKey,
    /// The owner (a task's assignee).
    pub owner: UserId,
    /// Tasks completed.
    pub tasks: u64,
    /// Calls made or taken.
    pub calls: u64,
    /// Meetings held.
    pub meetings: u64,
    /// Emails logged.
    pub emails: u64,
    /// The sum of the four.
    pub total: u64,
}

/// Open and overdue tasks per owner, now (no parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueTasks {}

/// One row of [`OverdueTasks`]: an owner with open tasks, ordered by owner id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueRow {
    /// The owner (assignee).
    pub owner: UserId,
    /// Open or in-progress tasks.
    pub open: u64,
    /// Of those, due before now.
    pub overdue: u64,
}

/// A record kind with follow-up tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackedKind {
    /// Contacts (people).
    Contact,
    /// Organizations.
    Organization,
    /// Leads.
    Lead,
    /// Deals.
    Deal,
}

impl TrackedKind {
    /// Every tracked kind, in report order.
    pub const ALL: [TrackedKind; 4] = [
        TrackedKind::Contact,
        TrackedKind::Organization,
        TrackedKind::Lead,
        TrackedKind::Deal,
    ];

    /// Every tracked kind's JSON name.
    pub const NAMES: &'static [&'static str] = &["contact", "organization", "lead", "deal"];

    /// The record kind's name (`contact`, ...), as the follow-up table stores it.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The most days [`FollowUpHealth::quiet_days`] may be.
pub const MAX_QUIET_DAYS: u32 = 3650;

/// How many follow-up rows [`FollowUpHealth`] reads per page (and ids per counting
/// aggregate).
pub const FOLLOW_UP_CHUNK: u32 = 500;

/// Follow-up health per record kind and owner (see the [module docs](self)).
/// `quiet_days` outside 1 to [`MAX_QUIET_DAYS`] is a Validation error on `quiet_days`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpHealth {
    /// Only this kind (every tracked kind when `None`).
    pub kind: Option<TrackedKind>,
    /// "Not contacted for this many days".
    pub quiet_days: u32,
}

/// One row of [`FollowUpHealth`]: one kind and owner with live records, ordered by kind
/// (contact, organization, lead, deal) then owner id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpRow {
    /// The record kind.
    pub kind: TrackedKind,
    /// The records' owner.
    pub owner: UserId,
    /// Live records.
    pub records: u64,
    /// Of those, without a next step.
    pub no_next_step: u64,
    /// Of those, not contacted for `quiet_days` days.
    pub not_contacted: u64,
}

#[cfg(feature = "activities")]
mod run {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Days, Utc};
    use crmkit_activities::rows::{ACTIVITY_TABLE, FOLLOWUP_TABLE};
    use crmkit_core::service::visibility_scope;
    use crmkit_core::store::{
        Aggregate, Buckets, CmpOp, Cond, Measure, OrderKey, Row, Select, Value,
    };
    use crmkit_core::{Ctx, Error, Result, UserId};

    use super::*;
    use crate::Analytics;
    use crate::period::{day_start, local_date};

    fn bad() -> Error {
        Error::storage("malformed aggregate row")
    }

    fn count_of(v: &Value) -> Result<u64> {
        u64::try_from(v.as_int().ok_or_else(bad)?).map_err(|_| bad())
    }

    fn owner_of(v: &Value) -> Result<UserId> {
        v.as_uuid().map(UserId::from_uuid).ok_or_else(bad)
    }

    fn ts(t: DateTime<Utc>) -> Value {
        Value::timestamp(t)
    }

    /// The record table of a tracked kind and its liveness condition.
    fn record_table(k: TrackedKind) -> (&'static str, Cond) {
        match k {
            TrackedKind::Contact => (crmkit_contacts::rows::PERSON_TABLE, Cond::True),
            TrackedKind::Organization => (crmkit_contacts::rows::ORG_TABLE, Cond::True),
            TrackedKind::Lead => (
                crmkit_pipeline::campaign::LEAD_TABLE,
                Cond::Not(Box::new(Cond::In(
                    "status".into(),
                    vec![
                        Value::Text("converted".into()),
                        Value::Text("disqualified".into()),
                    ],
                ))),
            ),
            TrackedKind::Deal => (
                crmkit_pipeline::deal::rows::DEAL_TABLE,
                Cond::eq("status", "open"),
            ),
        }
    }

    impl Analytics {
        async fn count_by_owner(
            &self,
            ctx: &Ctx,
            table: &'static str,
            cond: Cond,
            extra_group: Option<&str>,
        ) -> Result<Vec<Row>> {
            let mut group_by = vec!["owner_id".to_owned()];
            group_by.extend(extra_group.map(str::to_owned));
            let agg = Aggregate {
                table,
                cond: visibility_scope(ctx, false).and(cond),
                group_by,
                measures: vec![Measure::Count],
                buckets: None,
            };
            self.store.backend().aggregate(ctx.tenant(), &agg).await
        }

        pub(crate) async fn activities_done_impl(
            &self,
            ctx: &Ctx,
            r: &ActivitiesDone,
        ) -> Result<Vec<ActivitiesDoneRow>> {
            self.store.require_module("activities")?;
            let settings = self.settings(ctx).await?;
            let tz = settings.tz()?;
            let buckets = r.bucket.cover(&r.period, settings.fiscal_year_start)?;
            let now = ctx.now();
            let bounds: Vec<Value> = r
                .period
                .bucket_bounds(&buckets, tz)
                .into_iter()
                .map(ts)
                .collect();
            // One bucketed aggregate per instant column: a task counts when completed, a
            // call or meeting when it starts, an email when logged; none after now.
            let parts = [
                (
                    "completed_at",
                    Cond::eq("kind", "task").and(Cond::eq("status", "done")),
                ),
                (
                    "starts_at",
                    Cond::In(
                        "kind".into(),
                        vec![Value::Text("call".into()), Value::Text("meeting".into())],
                    ),
                ),
                ("created_at", Cond::eq("kind", "email")),
            ];
            let mut rows: BTreeMap<(usize, String), ActivitiesDoneRow> = BTreeMap::new();
            for (column, kinds) in parts {
                let agg = Aggregate {
                    table: ACTIVITY_TABLE,
                    cond: visibility_scope(ctx, false).and(kinds).and(Cond::Cmp(
                        column.into(),
                        CmpOp::Lte,
                        ts(now),
                    )),
                    group_by: vec!["owner_id".into(), "kind".into()],
                    measures: vec![Measure::Count],
                    buckets: Some(Buckets::new(column, bounds.clone())),
                };
                for row in self.store.backend().aggregate(ctx.tenant(), &agg).await? {
                    let i = row[0]
                        .as_int()
                        .and_then(|i| usize::try_from(i).ok())
                        .ok_or_else(bad)?;
                    let period = buckets.get(i).cloned().ok_or_else(bad)?;
                    let owner = owner_of(&row[1])?;
                    let n = count_of(&row[3])?;
                    let e =
                        rows.entry((i, owner.to_string()))
                            .or_insert_with(|| ActivitiesDoneRow {
                                period,
                                owner,
                                tasks: 0,
                                calls: 0,
                                meetings: 0,
                                emails: 0,
                                total: 0,
                            });
                    match row[2].as_text().ok_or_else(bad)? {
                        "task" => e.tasks += n,
                        "call" => e.calls += n,
                        "meeting" => e.meetings += n,
                        "email" => e.emails += n,
                        _ => return Err(bad()),
                    }
                    e.total += n;
                }
            }
            Ok(rows.into_values().filter(|r| r.total > 0).collect())
        }

        pub(crate) async fn overdue_tasks_impl(
            &self,
            ctx: &Ctx,
            _r: &OverdueTasks,
        ) -> Result<Vec<OverdueRow>> {
            self.store.require_module("activities")?;
            let open = Cond::eq("kind", "task").and(Cond::eq("open", true));
            let mut rows: BTreeMap<String, OverdueRow> = BTreeMap::new();
            for (i, cond) in [
                open.clone(),
                open.and(Cond::Cmp("due_at".into(), CmpOp::Lt, ts(ctx.now()))),
            ]
            .into_iter()
            .enumerate()
            {
                for row in self.count_by_owner(ctx, ACTIVITY_TABLE, cond, None).await? {
                    let owner = owner_of(&row[0])?;
                    let n = count_of(&row[1])?;
                    let e = rows.entry(owner.to_string()).or_insert(OverdueRow {
                        owner,
                        open: 0,
                        overdue: 0,
                    });
                    if i == 0 {
                        e.open += n;
                    } else {
                        e.overdue += n;
                    }
                }
            }
            Ok(rows.into_values().filter(|r| r.open > 0).collect())
        }

        pub(crate) async fn follow_up_health_impl(
            &self,
            ctx: &Ctx,
            r: &FollowUpHealth,
        ) -> Result<Vec<FollowUpRow>> {
            self.store.require_module("activities")?;
            if !(1..=MAX_QUIET_DAYS).contains(&r.quiet_days) {
                return Err(Error::validation(
                    "quiet_days",
                    format!("must be from 1 to {MAX_QUIET_DAYS}"),
                ));
            }
            let tz = self.settings(ctx).await?.tz()?;
            let today = local_date(tz, ctx.now());
            let cutoff_day = today
                .checked_sub_days(Days::new(u64::from(r.quiet_days)))
                .ok_or_else(|| Error::validation("quiet_days", "reaches before year 1"))?;
            let cutoff = day_start(tz, cutoff_day);
            let kinds: Vec<TrackedKind> = match r.kind {
                Some(k) => vec![k],
                None => TrackedKind::ALL.to_vec(),
            };
            let mut out = vec![];
            for kind in kinds {
                let (table, live) = record_table(kind);
                // Per owner: records, no next step, not contacted.
                let mut rows: BTreeMap<String, FollowUpRow> = BTreeMap::new();
                let mut add = |row: &Row, which: usize| -> Result<()> {
                    let owner = owner_of(&row[0])?;
                    let n = count_of(&row[1])?;
                    let e = rows.entry(owner.to_string()).or_insert(FollowUpRow {
                        kind,
                        owner,
                        records: 0,
                        no_next_step: 0,
                        not_contacted: 0,
                    });
                    match which {
                        0 => e.records += n,
                        1 => e.no_next_step += n,
                        _ => e.not_contacted += n,
                    }
                    Ok(())
                };
                for row in self.count_by_owner(ctx, table, live.clone(), None).await? {
                    add(&row, 0)?;
                }
                let quiet = Cond::Cmp("quiet_since".into(), CmpOp::Lt, ts(cutoff));
                let mut s = Select::new(
                    FOLLOWUP_TABLE,
                    Cond::eq("record_kind", kind.as_str())
                        .and(Cond::eq("active", true))
                        .and(Cond::Or(vec![
                            Cond::IsNull("next_activity_at".into()),
                            quiet.clone(),
                        ])),
                );
                s.order = vec![OrderKey::asc("record_id")];
                s.limit = Some(FOLLOW_UP_CHUNK);
                let def = self.store.backend().schema().table(FOLLOWUP_TABLE)?;
                let keep = ["record_id", "next_activity_at", "quiet_since"];
                s.omit = def
                    .columns
                    .iter()
                    .map(|c| c.name.to_string())
                    .filter(|c| !keep.contains(&c.as_str()))
                    .collect();
                let pos = |c: &str| {
                    def.position(c)
                        .ok_or_else(|| Error::Config(format!("no column {c} in {FOLLOWUP_TABLE}")))
                };
                let (pid, pnext, pquiet) = (
                    pos("record_id")?,
                    pos("next_activity_at")?,
                    pos("quiet_since")?,
                );
                loop {
                    let page = self.store.backend().select(ctx.tenant(), &s).await?;
                    let mut no_next = vec![];
                    let mut stale = vec![];
                    for row in &page {
                        let id = row[pid].as_uuid().ok_or_else(bad)?;
                        if row[pnext].is_null() {
                            no_next.push(Value::Uuid(id));
                        }
                        let q = crmkit_core::row::opt_timestamp(&row[pquiet])?;
                        if q.is_some_and(|q| q < cutoff) {
                            stale.push(Value::Uuid(id));
                        }
                    }
                    for (which, ids) in [(1, no_next), (2, stale)] {
                        if ids.is_empty() {
                            continue;
                        }
                        let cond = live.clone().and(Cond::In("id".into(), ids));
                        for row in self.count_by_owner(ctx, table, cond, None).await? {
                            add(&row, which)?;
                        }
                    }
                    match page.last() {
                        Some(last) if page.len() as u32 == FOLLOW_UP_CHUNK => {
                            s.after = Some(vec![last[pid].clone()]);
                        }
                        _ => break,
                    }
                }
                out.extend(rows.into_values().filter(|r| r.records > 0));
            }
            Ok(out)
        }
    }
}

#[cfg(not(feature = "activities"))]
impl crate::Analytics {
    fn without_activities() -> crmkit_core::Error {
        crmkit_core::Error::Config(
            "activity reports need crmkit-analytics built with the `activities` feature".into(),
        )
    }

    pub(crate) async fn activities_done_impl(
        &self,
        _ctx: &crmkit_core::Ctx,
        _r: &ActivitiesDone,
    ) -> crmkit_core::Result<Vec<ActivitiesDoneRow>> {
        Err(Self::without_activities())
    }

    pub(crate) async fn overdue_tasks_impl(
        &self,
        _ctx: &crmkit_core::Ctx,
        _r: &OverdueTasks,
    ) -> crmkit_core::Result<Vec<OverdueRow>> {
        Err(Self::without_activities())
    }

    pub(crate) async fn follow_up_health_impl(
        &self,
        _ctx: &crmkit_core::Ctx,
        _r: &FollowUpHealth,
    ) -> crmkit_core::Result<Vec<FollowUpRow>> {
        Err(Self::without_activities())
    }
}

impl crate::Analytics {
    /// Activities done per owner and bucket, by kind (see [`ActivitiesDone`] and the
    /// [module docs](self)). A Config error when the activities module is not composed
    /// (or the crate is built without the `activities` feature); more than
    /// [`crate::MAX_BUCKETS`] buckets is a Validation error on `bucket`.
    pub async fn activities_done(
        &self,
        ctx: &crmkit_core::Ctx,
        r: &ActivitiesDone,
    ) -> crmkit_core::Result<Vec<ActivitiesDoneRow>> {
        self.activities_done_impl(ctx, r).await
    }

    /// Open and overdue tasks per owner now (see [`OverdueTasks`]). A Config error when
    /// the activities module is not composed (or not built).
    pub async fn overdue_tasks(
        &self,
        ctx: &crmkit_core::Ctx,
        r: &OverdueTasks,
    ) -> crmkit_core::Result<Vec<OverdueRow>> {
        self.overdue_tasks_impl(ctx, r).await
    }

    /// Follow-up health per kind and owner (see [`FollowUpHealth`] and the
    /// [module docs](self)). A Config error when the activities module is not composed
    /// (or not built).
    pub async fn follow_up_health(
        &self,
        ctx: &crmkit_core::Ctx,
        r: &FollowUpHealth,
    ) -> crmkit_core::Result<Vec<FollowUpRow>> {
        self.follow_up_health_impl(ctx, r).await
    }
}
