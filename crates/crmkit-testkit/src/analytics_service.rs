//! Conformance checks of the activity and service reports (`crmkit_analytics::activity`
//! and `crmkit_analytics::service`) on any backend.
//!
//! Every report is compared with an oracle computed in plain Rust from what the actor
//! reads through the public APIs (`Activities::list`, the contact, organization, lead,
//! deal and ticket lists, `Tickets::sla`), following the definitions in the analytics
//! crate's docs. The scenario, in one tenant reporting in Europe/Berlin with a fiscal
//! year from April, has activities of every kind by several owners and teams (done,
//! open, cancelled, deleted, not yet held), done instants on the last second of a
//! quarter and the first second of the next one, ties, notes (never counted), tracked
//! records with and without next steps and contacts (one deleted, a won deal, a
//! disqualified lead), and tickets assigned to reps, to a queue and to the admin, replied
//! to, solved, reopened, rated and deleted. Every report runs for every actor (Admin,
//! Manager, the Reps and the ReadOnly user): a Rep's report is the oracle over what that
//! Rep lists, and is checked to be smaller than the admin's, so the checks fail when the
//! scoping is removed. Each check makes its own tenant; [`checks`] lists them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crmkit_activities::{
    Activities, ActivitiesModule, Activity, ActivityDetails, Call, CallOutcome, Direction, Due,
    LoggedEmail, Meeting, NewActivity, Note, Task, TaskStatus,
};
use crmkit_analytics::activity::MAX_QUIET_DAYS;
use crmkit_analytics::period::{Period, day_start, local_date};
use crmkit_analytics::sales::nearest_rank;
use crmkit_analytics::{
    ActivitiesDone, ActivitiesDoneRow, Analytics, AnalyticsModule, Bucket, FollowUpHealth,
    FollowUpRow, OverdueRow, OverdueTasks, Report, TicketBacklog, TicketResponseTimes,
    TicketSatisfaction, TicketSlaOutcomes, TicketTimes, TicketTimesRow, TicketVolume,
    TicketVolumeRow, TimePercentiles, TrackedKind,
};
use crmkit_contacts::{ContactsModule, NewContact, NewOrganization};
use crmkit_core::{Ctx, Modules, Query, RecordRef, Store, UserId};
use crmkit_pipeline::PipelineModule;
use crmkit_pipeline::deal::{Deals, NewDeal, Pipeline, StageKind};
use crmkit_pipeline::lead::{LeadStatus, Leads, NewLead};
use crmkit_tickets::analytics::average;
use crmkit_tickets::{
    BacklogRow, MinutesStat, NewComment, NewTicket, ResponseTimes, SatisfactionStat, Ticket,
    TicketStatus, Tickets, TicketsModule,
};

use crate::analytics::{ZONE, local, tz};
use crate::check::{At, expect_validation};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::{all_pages, at_time, date};

/// Core, contacts, pipeline, activities, tickets and analytics.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(PipelineModule)
        .add(ActivitiesModule)
        .add(TicketsModule)
        .add(AnalyticsModule)
        .build()
}

/// The reports' now: 2026-07-01 10:00 UTC (12:00 in Berlin).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 0).unwrap()
}

/// The first half of 2026.
fn h1() -> Period {
    Period::new(date(2026, 1, 1), date(2026, 6, 30)).expect("period")
}

extended_fixture! {
    /// A fresh tenant with every API the reports read.
    Fixture {
        /// Activities (relating to tickets too).
        activities: Activities,
        /// Tickets.
        tickets: Tickets,
        /// Deals.
        deals: Deals,
        /// The default pipeline.
        pipeline: Pipeline,
        /// Leads.
        leads: Leads,
        /// The reports.
        analytics: Analytics,
    }
}

/// A tenant reporting in Europe/Berlin with the fiscal year from April.
pub async fn setup(store: &Store) -> CheckResult<Fixture> {
    let base = crate::contacts::setup(store).await?;
    let tickets = Tickets::new(store).at("Tickets::new")?;
    let (deals, pipeline) = crate::pipeline_deals::deals_with_default(store, &base.admin).await?;
    let analytics = Analytics::new(store).at("Analytics::new")?;
    analytics
        .set_settings(&base.admin, ZONE, 4, 0)
        .await
        .at("settings")?;
    Ok(Fixture {
        activities: tickets.activities().at("activities")?,
        tickets,
        deals,
        pipeline,
        leads: Leads::new(store).at("Leads::new")?,
        analytics,
        base,
    })
}

/// `ctx` with its clock at the reports' now.
fn at_now(ctx: &Ctx) -> Ctx {
    at_time(ctx, now()).0
}

fn user(f: &Fixture, name: &str) -> UserId {
    f.actors()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c.actor().user)
        .expect("a fixture actor")
}

// ---------------------------------------------------------------------------------------
// Scenario
// ---------------------------------------------------------------------------------------

/// Records of the follow-up scenario.
struct Records {
    /// A contact of rep in team X.
    contact_rep: RecordRef,
    /// A contact of rep_y, created long ago.
    contact_old: RecordRef,
    /// A deal of rep.
    deal_rep: RecordRef,
    /// An organization of the admin.
    org_admin: RecordRef,
    /// A lead of rep2.
    lead_rep2: RecordRef,
}

/// Makes the tracked records (each at its own creation instant).
async fn records(f: &Fixture) -> CheckResult<Records> {
    let a = &f.admin;
    let make_contact = |owner: &str, team, at| {
        let mut c = NewContact::named("Ada", owner.to_string());
        c.owner = Some(user(f, owner));
        c.team = team;
        let (ctx, _) = at_time(a, at);
        async move { f.contacts.create(&ctx, c).await.at("create contact") }
    };
    let contact_rep = make_contact("rep", Some(f.team_x), local(2026, 1, 5, 9, 0, 0)).await?;
    let contact_old = make_contact("rep_y", Some(f.team_y), local(2025, 6, 1, 9, 0, 0)).await?;
    let contact_recent = make_contact("rep2", None, local(2026, 6, 20, 9, 0, 0)).await?;
    let deleted = make_contact("rep", Some(f.team_x), local(2025, 1, 1, 9, 0, 0)).await?;
    let (ctx, _) = at_time(a, local(2026, 2, 1, 9, 0, 0));
    f.contacts
        .delete(&ctx, deleted.id, deleted.version)
        .await
        .at("delete contact")?;
    let _ = contact_recent;
    let mut org = NewOrganization::named("Navy");
    org.owner = Some(user(f, "admin"));
    let org_admin = f
        .contacts
        .organizations()
        .create(&at_time(a, local(2025, 12, 1, 9, 0, 0)).0, org)
        .await
        .at("create organization")?;
    let deal = |owner: &str, title: &str| {
        NewDeal::new(title.to_string(), f.pipeline.id).owner(user(f, owner))
    };
    let (ctx, clock) = at_time(a, local(2026, 3, 1, 9, 0, 0));
    let deal_rep = f
        .deals
        .create(&ctx, deal("rep", "rep's"))
        .await
        .at("create deal")?;
    let won = f
        .deals
        .create(&ctx, deal("rep_y", "won"))
        .await
        .at("create deal")?;
    let won_stage = f
        .pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Won)
        .map(|s| s.id)
        .ok_or_else(|| Failure::new("a won stage"))?;
    clock.set(local(2026, 3, 5, 9, 0, 0));
    f.deals
        .move_to_stage(&ctx, won.id, won.version, won_stage, None)
        .await
        .at("win")?;
    f.deals
        .create(&ctx, deal("rep2", "rep2's").team(f.team_x))
        .await
        .at("create deal")?;
    let lead = |owner: &str| {
        let mut l = NewLead::named("Lee", owner.to_string());
        l.owner = Some(user(f, owner));
        l
    };
    let lead_rep2 = f.leads.create(&ctx, lead("rep2")).await.at("create lead")?;
    let out = f.leads.create(&ctx, lead("rep")).await.at("create lead")?;
    f.leads
        .set_status(
            &ctx,
            out.id,
            out.version,
            LeadStatus::Disqualified,
            Some("no budget".into()),
        )
        .await
        .at("disqualify")?;
    f.leads
        .create(&ctx, lead("rep_y"))
        .await
        .at("create lead")?;
    Ok(Records {
        contact_rep: RecordRef::from(contact_rep.id),
        contact_old: RecordRef::from(contact_old.id),
        deal_rep: RecordRef::from(deal_rep.id),
        org_admin: RecordRef::from(org_admin.id),
        lead_rep2: RecordRef::from(lead_rep2.id),
    })
}

/// One scenario activity: made by the admin at `at` for `owner` (and `team`).
async fn activity(
    f: &Fixture,
    at: DateTime<Utc>,
    owner: &str,
    team: Option<crmkit_core::TeamId>,
    related: &[&RecordRef],
    details: impl Into<ActivityDetails>,
) -> CheckResult<Activity> {
    let (ctx, _) = at_time(&f.admin, at);
    let mut n = NewActivity::new("work", details).owner(user(f, owner));
    if let Some(t) = team {
        n = n.team(t);
    }
    for r in related {
        n = n.related_to((*r).clone());
    }
    f.activities.create(&ctx, n).await.at("create activity")
}

fn call(at: DateTime<Utc>) -> Call {
    Call::new(
        Direction::Outbound,
        "+4930123456",
        "+4930654321",
        at,
        CallOutcome::Connected,
    )
}

fn meeting(start: DateTime<Utc>) -> Meeting {
    Meeting::new(start, start + Duration::hours(1), ZONE)
}

/// Sets a task's status at `at`.
async fn task_status(
    f: &Fixture,
    t: &Activity,
    at: DateTime<Utc>,
    s: TaskStatus,
) -> CheckResult<Activity> {
    let (ctx, _) = at_time(&f.admin, at);
    f.activities
        .set_task_status(&ctx, t.id, t.version, s)
        .await
        .at("task status")
}

/// The activity scenario (see the module docs).
async fn activity_scenario(f: &Fixture, r: &Records) -> CheckResult {
    let x = Some(f.team_x);
    let y = Some(f.team_y);
    let before = |t: DateTime<Utc>| t - Duration::hours(1);
    // Calls on the last second of fiscal Q4 (March, CEST) and the first of Q1.
    let q_end = local(2026, 3, 31, 23, 59, 59);
    let q_start = local(2026, 4, 1, 0, 0, 0);
    activity(f, q_end, "rep", None, &[&r.contact_rep], call(q_end)).await?;
    activity(f, q_start, "rep", x, &[], call(q_start)).await?;
    // Before the period: left out.
    let old = local(2025, 12, 31, 23, 59, 59);
    activity(f, old, "rep", None, &[&r.contact_rep], call(old)).await?;
    // A tie: two calls of rep2 at one instant.
    let tie = local(2026, 5, 4, 10, 0, 0);
    for _ in 0..2 {
        activity(f, tie, "rep2", x, &[&r.lead_rep2], call(tie)).await?;
    }
    // A deleted call.
    let del = activity(f, tie, "rep", None, &[&r.deal_rep], call(tie)).await?;
    f.activities
        .delete(&at_now(&f.admin), del.id, del.version)
        .await
        .at("delete activity")?;
    // Meetings: held (logged after), and one not held yet (upcoming: a next step).
    let held = local(2026, 5, 10, 10, 0, 0);
    activity(f, held + Duration::hours(2), "rep2", x, &[], meeting(held)).await?;
    let upcoming = local(2026, 8, 3, 10, 0, 0);
    activity(
        f,
        before(now()),
        "rep_y",
        y,
        &[&r.contact_rep],
        meeting(upcoming),
    )
    .await?;
    // Tasks: one done in February, one in progress then done on the period's last day,
    // one cancelled, open ones (overdue, due later, no due).
    let t = activity(f, local(2026, 2, 1, 9, 0, 0), "rep", None, &[], Task::new()).await?;
    task_status(f, &t, local(2026, 2, 14, 12, 0, 0), TaskStatus::Done).await?;
    let t = activity(f, local(2026, 6, 1, 9, 0, 0), "rep2", x, &[], Task::new()).await?;
    let t = task_status(f, &t, local(2026, 6, 2, 9, 0, 0), TaskStatus::InProgress).await?;
    task_status(f, &t, local(2026, 6, 30, 23, 59, 59), TaskStatus::Done).await?;
    let t = activity(f, local(2026, 3, 1, 9, 0, 0), "rep", None, &[], Task::new()).await?;
    task_status(f, &t, local(2026, 3, 2, 9, 0, 0), TaskStatus::Cancelled).await?;
    let overdue = Task::new().due_at(local(2026, 6, 15, 9, 0, 0), ZONE);
    activity(
        f,
        local(2026, 6, 1, 9, 0, 0),
        "rep_y",
        None,
        &[&r.org_admin],
        overdue,
    )
    .await?;
    let later = Task::new().due_at(local(2026, 9, 1, 9, 0, 0), ZONE);
    activity(
        f,
        local(2026, 6, 1, 9, 0, 0),
        "rep",
        x,
        &[&r.deal_rep],
        later,
    )
    .await?;
    activity(
        f,
        local(2026, 6, 1, 9, 0, 0),
        "rep2",
        None,
        &[],
        Task::new(),
    )
    .await?;
    // Emails: on the period's first second and last minute.
    let first = local(2026, 1, 1, 0, 0, 0);
    let email = |id: &str| LoggedEmail::new(Direction::Inbound, "ada@example.com", id);
    activity(f, first, "admin", None, &[&r.contact_old], email("<a@x>")).await?;
    let last = local(2026, 6, 30, 23, 59, 0);
    activity(f, last, "rep_y", y, &[], email("<b@x>")).await?;
    // A note: never counted as done work (but it is a contact for follow-up).
    activity(
        f,
        local(2026, 6, 25, 9, 0, 0),
        "rep",
        None,
        &[&r.lead_rep2],
        Note::new("spoke briefly", user(f, "rep")),
    )
    .await?;
    Ok(())
}

/// A tenant with the follow-up records and the activity scenario.
async fn activity_tenant(store: &Store) -> CheckResult<(Fixture, Records)> {
    let f = setup(store).await?;
    let r = records(&f).await?;
    activity_scenario(&f, &r).await?;
    Ok((f, r))
}

// ---------------------------------------------------------------------------------------
// Oracles (plain Rust over what the actor lists)
// ---------------------------------------------------------------------------------------

async fn listed_activities(f: &Fixture, ctx: &Ctx) -> CheckResult<Vec<Activity>> {
    let q = Query::new().sort_asc("created_at").limit(50);
    all_pages(&q, "list activities", |q| async move {
        f.activities.list(ctx, &q).await
    })
    .await
}

/// When an activity is done (see the analytics docs), with its column.
fn done_instant(a: &Activity) -> Option<(&'static str, DateTime<Utc>)> {
    match &a.details {
        ActivityDetails::Task(t) if t.status == TaskStatus::Done => {
            t.completed_at.map(|c| ("task", c))
        }
        ActivityDetails::Call(c) => Some(("call", c.started_at)),
        ActivityDetails::Meeting(m) => Some(("meeting", m.start)),
        ActivityDetails::Email(_) => Some(("email", a.created_at)),
        _ => None,
    }
}

async fn oracle_done(
    f: &Fixture,
    ctx: &Ctx,
    r: &ActivitiesDone,
) -> CheckResult<Vec<ActivitiesDoneRow>> {
    let settings = f.analytics.settings(ctx).await.at("settings")?;
    let buckets = r
        .bucket
        .cover(&r.period, settings.fiscal_year_start)
        .at("buckets")?;
    let mut rows: BTreeMap<(usize, String), ActivitiesDoneRow> = BTreeMap::new();
    for a in listed_activities(f, ctx).await? {
        let Some((kind, at)) = done_instant(&a) else {
            continue;
        };
        let d = local_date(tz(), at);
        if at > ctx.now() || !r.period.contains(d) {
            continue;
        }
        let i = buckets
            .iter()
            .position(|b| b.contains(d))
            .ok_or_else(|| Failure::new("a bucket of the period"))?;
        let e = rows
            .entry((i, a.owner.to_string()))
            .or_insert_with(|| ActivitiesDoneRow {
                period: buckets[i].clone(),
                owner: a.owner,
                tasks: 0,
                calls: 0,
                meetings: 0,
                emails: 0,
                total: 0,
            });
        match kind {
            "task" => e.tasks += 1,
            "call" => e.calls += 1,
            "meeting" => e.meetings += 1,
            _ => e.emails += 1,
        }
        e.total += 1;
    }
    Ok(rows.into_values().collect())
}

async fn oracle_overdue(f: &Fixture, ctx: &Ctx) -> CheckResult<Vec<OverdueRow>> {
    let mut rows: BTreeMap<String, OverdueRow> = BTreeMap::new();
    for a in listed_activities(f, ctx).await? {
        let ActivityDetails::Task(t) = &a.details else {
            continue;
        };
        if !matches!(t.status, TaskStatus::Open | TaskStatus::InProgress) {
            continue;
        }
        let due = match &t.due {
            None => None,
            Some(Due::At { at, .. }) => Some(*at),
            Some(Due::Date { .. }) => {
                return Err(Failure::new("the scenario has no all-day tasks"));
            }
        };
        let e = rows.entry(a.owner.to_string()).or_insert(OverdueRow {
            owner: a.owner,
            open: 0,
            overdue: 0,
        });
        e.open += 1;
        if due.is_some_and(|d| d < ctx.now()) {
            e.overdue += 1;
        }
    }
    Ok(rows.into_values().collect())
}

/// A live tracked record as the actor lists it: (ref, owner, created).
async fn live_records(
    f: &Fixture,
    ctx: &Ctx,
    kind: TrackedKind,
) -> CheckResult<Vec<(RecordRef, UserId, DateTime<Utc>)>> {
    let q = Query::new().sort_asc("id").limit(50);
    Ok(match kind {
        TrackedKind::Contact => {
            all_pages(
                &q,
                "contacts",
                |q| async move { f.contacts.list(ctx, &q).await },
            )
            .await?
            .into_iter()
            .map(|c| (RecordRef::from(c.id), c.owner, c.created_at))
            .collect()
        }
        TrackedKind::Organization => all_pages(&q, "organizations", |q| async move {
            f.contacts.organizations().list(ctx, &q).await
        })
        .await?
        .into_iter()
        .map(|o| (RecordRef::from(o.id), o.owner, o.created_at))
        .collect(),
        TrackedKind::Lead => all_pages(&q, "leads", |q| async move { f.leads.list(ctx, &q).await })
            .await?
            .into_iter()
            .filter(|l| !matches!(l.status, LeadStatus::Converted | LeadStatus::Disqualified))
            .map(|l| (RecordRef::from(l.id), l.owner, l.created_at))
            .collect(),
        TrackedKind::Deal => all_pages(&q, "deals", |q| async move { f.deals.list(ctx, &q).await })
            .await?
            .into_iter()
            .filter(|d| d.won_at.is_none() && d.lost_at.is_none())
            .map(|d| (RecordRef::from(d.id), d.owner, d.created_at))
            .collect(),
    })
}

/// (next step planned, last contact) of a record from every activity related to it
/// (the activities module's follow-up rules).
fn follow_up_of(all: &[Activity], r: &RecordRef) -> (bool, Option<DateTime<Utc>>) {
    let mut next = false;
    let mut last: Option<DateTime<Utc>> = None;
    for a in all.iter().filter(|a| a.related.contains(r)) {
        let done = match &a.details {
            ActivityDetails::Task(t) => match t.status {
                TaskStatus::Done => t.completed_at,
                TaskStatus::Open | TaskStatus::InProgress => {
                    next |= t.due.is_some();
                    None
                }
                TaskStatus::Cancelled => None,
            },
            ActivityDetails::Call(c) => Some(c.started_at),
            ActivityDetails::Meeting(m) if m.start > a.updated_at => {
                next = true;
                None
            }
            ActivityDetails::Meeting(m) => Some(m.start),
            ActivityDetails::Note(_) | ActivityDetails::Email(_) => Some(a.created_at),
        };
        if let Some(d) = done {
            last = Some(last.map_or(d, |l| l.max(d)));
        }
    }
    (next, last)
}

async fn oracle_follow_up(
    f: &Fixture,
    ctx: &Ctx,
    r: &FollowUpHealth,
) -> CheckResult<Vec<FollowUpRow>> {
    // Every activity counts for a record's follow-up, whoever owns it.
    let all = listed_activities(f, &at_now(&f.admin)).await?;
    let today = local_date(tz(), ctx.now());
    let cutoff = day_start(tz(), today - chrono::Days::new(u64::from(r.quiet_days)));
    let kinds = match r.kind {
        Some(k) => vec![k],
        None => TrackedKind::ALL.to_vec(),
    };
    let mut out = vec![];
    for kind in kinds {
        let mut rows: BTreeMap<String, FollowUpRow> = BTreeMap::new();
        for (rec, owner, created) in live_records(f, ctx, kind).await? {
            let (next, last) = follow_up_of(&all, &rec);
            let e = rows.entry(owner.to_string()).or_insert(FollowUpRow {
                kind,
                owner,
                records: 0,
                no_next_step: 0,
                not_contacted: 0,
            });
            e.records += 1;
            e.no_next_step += u64::from(!next);
            e.not_contacted += u64::from(last.unwrap_or(created) < cutoff);
        }
        out.extend(rows.into_values());
    }
    Ok(out)
}

/// Runs `report` as JSON and compares its rows with the typed rows.
async fn json_equals<T: serde::Serialize>(
    f: &Fixture,
    ctx: &Ctx,
    report: Report,
    typed: &T,
    who: &str,
) -> CheckResult {
    let parsed = Report::from_json(&report.to_json().to_string()).at("parse definition")?;
    ensure_eq!(parsed, report, "{who}: the definition round-trips");
    let rows = f.analytics.run(ctx, &parsed).await.at("run")?;
    let typed = serde_json::to_value(typed).map_err(|e| Failure::new(e.to_string()))?;
    let want = match typed {
        serde_json::Value::Array(v) => v,
        one => vec![one],
    };
    ensure_eq!(rows.rows, want, "{who}: {} run from JSON", report.name());
    Ok(())
}

/// Every activity report for `ctx` equals its oracle (and its JSON run).
async fn activity_reports_equal_oracle(f: &Fixture, ctx: &Ctx, who: &str) -> CheckResult {
    let ctx = &at_now(ctx);
    for bucket in [
        Bucket::Day,
        Bucket::Week,
        Bucket::Month,
        Bucket::Quarter,
        Bucket::Year,
    ] {
        let r = ActivitiesDone {
            period: h1(),
            bucket,
        };
        let got = f
            .analytics
            .activities_done(ctx, &r)
            .await
            .at("activities done")?;
        ensure_eq!(
            got,
            oracle_done(f, ctx, &r).await?,
            "{who}: activities done by {bucket:?}"
        );
        if bucket == Bucket::Quarter {
            json_equals(f, ctx, Report::ActivitiesDone(r), &got, who).await?;
        }
    }
    let got = f
        .analytics
        .overdue_tasks(ctx, &OverdueTasks {})
        .await
        .at("overdue")?;
    ensure_eq!(got, oracle_overdue(f, ctx).await?, "{who}: overdue tasks");
    json_equals(f, ctx, Report::OverdueTasks(OverdueTasks {}), &got, who).await?;
    for (kind, quiet_days) in [
        (None, 30),
        (Some(TrackedKind::Contact), 10),
        (Some(TrackedKind::Deal), 200),
        (Some(TrackedKind::Lead), 1),
        (None, MAX_QUIET_DAYS),
    ] {
        let r = FollowUpHealth { kind, quiet_days };
        let got = f
            .analytics
            .follow_up_health(ctx, &r)
            .await
            .at("follow-up")?;
        ensure_eq!(
            got,
            oracle_follow_up(f, ctx, &r).await?,
            "{who}: follow-up health {kind:?} {quiet_days}"
        );
        if kind.is_none() && quiet_days == 30 {
            json_equals(f, ctx, Report::FollowUpHealth(r), &got, who).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Activity checks
// ---------------------------------------------------------------------------------------

/// A tenant with nothing: no rows from the activity reports; every bucket of ticket
/// volume with zeros; no ticket times.
pub async fn empty_tenant(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let ctx = &at_now(&f.admin);
    let done = f
        .analytics
        .activities_done(
            ctx,
            &ActivitiesDone {
                period: h1(),
                bucket: Bucket::Month,
            },
        )
        .await
        .at("activities done")?;
    ensure!(done.is_empty(), "no activities done: {done:?}");
    let overdue = f
        .analytics
        .overdue_tasks(ctx, &OverdueTasks {})
        .await
        .at("overdue")?;
    ensure!(overdue.is_empty(), "no open tasks: {overdue:?}");
    let health = f
        .analytics
        .follow_up_health(
            ctx,
            &FollowUpHealth {
                kind: None,
                quiet_days: 7,
            },
        )
        .await
        .at("follow-up")?;
    ensure!(health.is_empty(), "no records: {health:?}");
    let volume = f
        .analytics
        .ticket_volume(
            ctx,
            &TicketVolume {
                period: h1(),
                bucket: Bucket::Month,
            },
        )
        .await
        .at("volume")?;
    ensure_eq!(volume.len(), 6, "a row per month");
    ensure!(
        volume.iter().all(|r| r.created == 0 && r.solved == 0),
        "zeros: {volume:?}"
    );
    let times = f
        .analytics
        .ticket_times(ctx, &TicketTimes { period: h1() })
        .await
        .at("times")?;
    ensure_eq!(times, TicketTimesRow::default(), "nothing measured");
    ensure_eq!(
        f.analytics
            .ticket_backlog(ctx, &TicketBacklog {})
            .await
            .at("backlog")?,
        Vec::<BacklogRow>::new(),
        "no backlog"
    );
    Ok(())
}

/// One contact with one call: one row in each activity report.
pub async fn one_record(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (ctx, _) = at_time(&f.admin, local(2026, 6, 29, 9, 0, 0));
    let mut c = NewContact::named("Ada", "Lovelace");
    c.owner = Some(user(&f, "rep"));
    let c = f.contacts.create(&ctx, c).await.at("contact")?;
    let rec = RecordRef::from(c.id);
    // The last second of 2026-06-29: "not contacted for 1 day" (since 06-30 00:00), but
    // contacted within 2 days.
    let at = local(2026, 6, 29, 23, 59, 59);
    activity(&f, at, "rep", None, &[&rec], call(at)).await?;
    let admin = &at_now(&f.admin);
    let done = f
        .analytics
        .activities_done(
            admin,
            &ActivitiesDone {
                period: h1(),
                bucket: Bucket::Year,
            },
        )
        .await
        .at("done")?;
    ensure_eq!(done.len(), 1, "one row: {done:?}");
    ensure_eq!(
        (
            done[0].owner,
            done[0].calls,
            done[0].total,
            done[0].period.label.as_str()
        ),
        (user(&f, "rep"), 1, 1, "FY2027"),
        "the call of rep in fiscal 2027 (from April 2026)"
    );
    let health = f
        .analytics
        .follow_up_health(
            admin,
            &FollowUpHealth {
                kind: None,
                quiet_days: 1,
            },
        )
        .await
        .at("follow-up")?;
    ensure_eq!(
        health,
        vec![FollowUpRow {
            kind: TrackedKind::Contact,
            owner: user(&f, "rep"),
            records: 1,
            no_next_step: 1,
            not_contacted: 1,
        }],
        "contacted before yesterday, nothing planned"
    );
    let health = f
        .analytics
        .follow_up_health(
            admin,
            &FollowUpHealth {
                kind: Some(TrackedKind::Contact),
                quiet_days: 2,
            },
        )
        .await
        .at("follow-up")?;
    ensure_eq!(
        health[0].not_contacted,
        0,
        "contacted on one of the last 3 local dates"
    );
    Ok(())
}

/// Every activity report, every bucket, for every actor, equals its oracle; a Rep sees
/// less than the admin (fails when the scope is removed).
pub async fn activity_reports_scoped(store: &Store) -> CheckResult {
    let (f, _) = activity_tenant(store).await?;
    for (who, ctx) in f.actors() {
        activity_reports_equal_oracle(&f, ctx, who).await?;
    }
    // The scenario separates the actors.
    let total = |rows: Vec<ActivitiesDoneRow>| rows.iter().map(|r| r.total).sum::<u64>();
    let r = ActivitiesDone {
        period: h1(),
        bucket: Bucket::Year,
    };
    let admin = total(
        f.analytics
            .activities_done(&at_now(&f.admin), &r)
            .await
            .at("admin")?,
    );
    let open = |rows: Vec<OverdueRow>| rows.iter().map(|r| r.open).sum::<u64>();
    let admin_open = open(
        f.analytics
            .overdue_tasks(&at_now(&f.admin), &OverdueTasks {})
            .await
            .at("admin")?,
    );
    let recs = |rows: Vec<FollowUpRow>| rows.iter().map(|r| r.records).sum::<u64>();
    let fu = FollowUpHealth {
        kind: None,
        quiet_days: 30,
    };
    let admin_recs = recs(
        f.analytics
            .follow_up_health(&at_now(&f.admin), &fu)
            .await
            .at("admin")?,
    );
    for who in ["rep", "rep_y"] {
        let ctx = &at_now(
            f.actors()
                .into_iter()
                .find(|(n, _)| *n == who)
                .map(|(_, c)| c)
                .expect("actor"),
        );
        let rep = total(f.analytics.activities_done(ctx, &r).await.at("rep")?);
        ensure!(
            rep > 0 && rep < admin,
            "{who} counts some but fewer activities: {rep} of {admin}"
        );
        let rep_open = open(
            f.analytics
                .overdue_tasks(ctx, &OverdueTasks {})
                .await
                .at("rep")?,
        );
        ensure!(
            rep_open < admin_open,
            "{who} counts fewer open tasks: {rep_open} of {admin_open}"
        );
        let rep_recs = recs(f.analytics.follow_up_health(ctx, &fu).await.at("rep")?);
        ensure!(
            rep_recs > 0 && rep_recs < admin_recs,
            "{who} counts fewer records: {rep_recs} of {admin_recs}"
        );
    }
    Ok(())
}

/// The follow-up report pages the follow-up table: more records without a next step than
/// one page ([`crmkit_analytics::activity::FOLLOW_UP_CHUNK`]) are all counted.
pub async fn follow_up_pages(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let n = crmkit_analytics::activity::FOLLOW_UP_CHUNK as usize + 3;
    let (ctx, _) = at_time(&f.admin, local(2026, 1, 10, 9, 0, 0));
    let owners = ["rep", "rep_y"];
    for i in 0..n {
        let mut c = NewContact::named("Page", format!("{i}"));
        c.owner = Some(user(&f, owners[i % 2]));
        f.contacts.create(&ctx, c).await.at("contact")?;
    }
    let r = FollowUpHealth {
        kind: Some(TrackedKind::Contact),
        quiet_days: 30,
    };
    for (who, ctx) in [("admin", &f.admin), ("rep", &f.rep)] {
        let ctx = &at_now(ctx);
        let got = f
            .analytics
            .follow_up_health(ctx, &r)
            .await
            .at("follow-up")?;
        ensure_eq!(
            got,
            oracle_follow_up(&f, ctx, &r).await?,
            "{who}: follow-up over pages"
        );
    }
    let got = f
        .analytics
        .follow_up_health(&at_now(&f.admin), &r)
        .await
        .at("follow-up")?;
    ensure_eq!(
        got.iter().map(|r| r.no_next_step).sum::<u64>(),
        n as u64,
        "every record counted once"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Ticket checks
// ---------------------------------------------------------------------------------------

/// What happens to a scenario ticket after its reply.
#[derive(Clone, Copy)]
enum Then {
    /// Solved and rated.
    Solved,
    /// Solved, then reopened: not solved now.
    Reopened,
    /// Solved, then deleted.
    Deleted,
    /// Left open.
    Open,
}

/// A scenario ticket: created, assignee, also in queue X, reply after minutes, then.
type Planned = (DateTime<Utc>, Option<&'static str>, bool, i64, Then);

/// The ticket scenario: a catch-all policy on an always-open calendar (first response in
/// 60 minutes, resolution in 600); tickets assigned to rep, rep_y, the admin and to queue
/// X only, created across the first half of 2026 (one on the first second of April),
/// replied to, solved, reopened, rated and deleted.
async fn ticket_scenario(f: &Fixture) -> CheckResult {
    let sf = crate::tickets::Fixture {
        base: f.base.clone(),
        tickets: f.tickets.clone(),
    };
    crate::sla_support::catch_all_policy(
        &sf,
        crate::sla_support::always(),
        crate::sla_support::targets(Some(60), None, Some(600)),
    )
    .await?;
    let (ctx, clock) = at_time(&f.admin, local(2026, 1, 1, 0, 0, 0));
    let requester = f.team_x_contact(&ctx, |c| c).await?;
    // (created, assignee (None: queue X only), also in queue X, reply after minutes
    // (0: never), then).
    let plan: [Planned; 9] = [
        (
            local(2026, 1, 1, 0, 0, 0),
            Some("rep"),
            false,
            30,
            Then::Solved,
        ),
        (
            local(2026, 1, 1, 0, 0, 0),
            Some("rep_y"),
            false,
            30,
            Then::Solved,
        ),
        (
            local(2026, 3, 31, 23, 59, 59),
            Some("rep"),
            true,
            90,
            Then::Reopened,
        ),
        (local(2026, 4, 1, 0, 0, 0), None, true, 45, Then::Solved),
        (
            local(2026, 5, 10, 8, 0, 0),
            Some("admin"),
            false,
            10,
            Then::Deleted,
        ),
        (
            local(2026, 6, 30, 23, 0, 0),
            Some("rep_y"),
            false,
            20,
            Then::Solved,
        ),
        (
            local(2026, 6, 1, 8, 0, 0),
            Some("rep"),
            false,
            0,
            Then::Open,
        ),
        (
            local(2025, 12, 31, 23, 0, 0),
            Some("rep"),
            false,
            5,
            Then::Solved,
        ),
        (
            local(2026, 2, 10, 9, 0, 0),
            Some("rep_y"),
            false,
            0,
            Then::Open,
        ),
    ];
    for (i, (created, assignee, queue, reply_after, next)) in plan.into_iter().enumerate() {
        clock.set(created);
        let mut n = NewTicket::new(format!("ticket {i}"), requester);
        if let Some(a) = assignee {
            n = n.assignee(user(f, a));
        }
        if queue || assignee.is_none() {
            n = n.queue(f.team_x);
        }
        let mut t = f.tickets.create(&ctx, n).await.at("create ticket")?;
        if reply_after > 0 {
            clock.set(created + Duration::minutes(reply_after));
            t = f
                .tickets
                .comment(&ctx, t.id, NewComment::reply("on it"))
                .await
                .at("reply")?
                .ticket;
        }
        clock.set(created + Duration::minutes(reply_after + 100 + 7 * i as i64));
        match next {
            Then::Solved => {
                let t = status(f, &ctx, &t, TicketStatus::Solved).await?;
                f.tickets
                    .rate(&ctx, t.id, 1 + (i as i32 % 5), None)
                    .await
                    .at("rate")?;
            }
            Then::Reopened => {
                let t = status(f, &ctx, &t, TicketStatus::Solved).await?;
                clock.set(created + Duration::hours(12));
                status(f, &ctx, &t, TicketStatus::Open).await?;
            }
            Then::Deleted => {
                // Rated, then deleted: its rating counts for nobody.
                let t = status(f, &ctx, &t, TicketStatus::Solved).await?;
                f.tickets.rate(&ctx, t.id, 5, None).await.at("rate")?;
                f.tickets.delete(&ctx, t.id, t.version).await.at("delete")?;
            }
            Then::Open => {}
        }
    }
    f.tickets
        .sweep(&f.admin, now(), Duration::zero())
        .await
        .at("sweep")?;
    Ok(())
}

async fn status(f: &Fixture, ctx: &Ctx, t: &Ticket, s: TicketStatus) -> CheckResult<Ticket> {
    f.tickets
        .set_status(ctx, t.id, t.version, s)
        .await
        .at("set status")
}

async fn listed_tickets(f: &Fixture, ctx: &Ctx) -> CheckResult<Vec<Ticket>> {
    let q = Query::new().sort_asc("number").limit(50);
    all_pages(&q, "list tickets", |q| async move {
        f.tickets.list(ctx, &q).await
    })
    .await
}

fn percentiles(mut v: Vec<i64>) -> TimePercentiles {
    v.sort_unstable();
    TimePercentiles {
        count: v.len() as u64,
        median_minutes: nearest_rank(&v, 50),
        p90_minutes: nearest_rank(&v, 90),
    }
}

fn minutes(v: &[i64]) -> MinutesStat {
    let total = v.iter().sum::<i64>();
    MinutesStat {
        count: v.len() as u64,
        total_minutes: total,
        average: average(total, v.len() as u64),
    }
}

/// Every ticket report for `ctx` equals its oracle over the tickets `ctx` lists.
async fn ticket_reports_equal_oracle(f: &Fixture, ctx: &Ctx, who: &str) -> CheckResult {
    let ctx = &at_now(ctx);
    let listed = listed_tickets(f, ctx).await?;
    let p = h1();
    let in_period = |t: &DateTime<Utc>| p.contains(local_date(tz(), *t));
    // Volume, every bucket.
    for bucket in [
        Bucket::Day,
        Bucket::Week,
        Bucket::Month,
        Bucket::Quarter,
        Bucket::Year,
    ] {
        let r = TicketVolume { period: p, bucket };
        let got = f.analytics.ticket_volume(ctx, &r).await.at("volume")?;
        let fiscal = f
            .analytics
            .settings(ctx)
            .await
            .at("settings")?
            .fiscal_year_start;
        let mut want: Vec<TicketVolumeRow> = bucket
            .cover(&p, fiscal)
            .at("buckets")?
            .into_iter()
            .map(|b| TicketVolumeRow {
                period: b,
                created: 0,
                solved: 0,
            })
            .collect();
        for t in &listed {
            for (at, solved) in [(Some(t.created_at), false), (t.solved_at, true)] {
                let Some(at) = at.filter(in_period) else {
                    continue;
                };
                let d = local_date(tz(), at);
                let row = want
                    .iter_mut()
                    .find(|r| r.period.contains(d))
                    .ok_or_else(|| Failure::new("a bucket"))?;
                if solved {
                    row.solved += 1;
                } else {
                    row.created += 1;
                }
            }
        }
        ensure_eq!(got, want, "{who}: ticket volume by {bucket:?}");
        if bucket == Bucket::Month {
            json_equals(f, ctx, Report::TicketVolume(r), &got, who).await?;
        }
    }
    // Measures of the tickets created in the period, from their SLA rows.
    let (mut fr, mut res) = (vec![], vec![]);
    for t in listed.iter().filter(|t| in_period(&t.created_at)) {
        let s = crate::sla_support::sla(
            &crate::tickets::Fixture {
                base: f.base.clone(),
                tickets: f.tickets.clone(),
            },
            &f.admin,
            t.id,
        )
        .await?;
        fr.extend(s.first_response_minutes);
        res.extend(s.resolution_minutes);
    }
    let times = f
        .analytics
        .ticket_times(ctx, &TicketTimes { period: p })
        .await
        .at("times")?;
    ensure_eq!(
        times,
        TicketTimesRow {
            first_response: percentiles(fr.clone()),
            resolution: percentiles(res.clone()),
        },
        "{who}: ticket times"
    );
    json_equals(
        f,
        ctx,
        Report::TicketTimes(TicketTimes { period: p }),
        &times,
        who,
    )
    .await?;
    // The tickets module's reports, through the analytics API.
    let rt = f
        .analytics
        .ticket_response_times(ctx, &TicketResponseTimes { period: p })
        .await
        .at("response times")?;
    ensure_eq!(
        rt,
        ResponseTimes {
            first_response: minutes(&fr),
            resolution: minutes(&res),
        },
        "{who}: response times"
    );
    let (from, to) = p.instants(tz());
    ensure_eq!(
        rt,
        f.tickets
            .response_times(ctx, from, to)
            .await
            .at("tickets")?,
        "{who}: the tickets module's response times"
    );
    json_equals(
        f,
        ctx,
        Report::TicketResponseTimes(TicketResponseTimes { period: p }),
        &rt,
        who,
    )
    .await?;
    let backlog = f
        .analytics
        .ticket_backlog(ctx, &TicketBacklog {})
        .await
        .at("backlog")?;
    let mut want: BTreeMap<(usize, i64), BacklogRow> = BTreeMap::new();
    for t in &listed {
        if let Some(pos) = TicketStatus::UNSOLVED.iter().position(|s| *s == t.status) {
            want.entry((pos, t.priority.rank()))
                .or_insert(BacklogRow {
                    status: t.status,
                    priority: t.priority,
                    count: 0,
                })
                .count += 1;
        }
    }
    ensure_eq!(
        backlog,
        want.into_values().collect::<Vec<_>>(),
        "{who}: backlog"
    );
    json_equals(
        f,
        ctx,
        Report::TicketBacklog(TicketBacklog {}),
        &backlog,
        who,
    )
    .await?;
    let outcomes = f
        .analytics
        .ticket_sla_outcomes(ctx, &TicketSlaOutcomes { period: p })
        .await
        .at("outcomes")?;
    ensure_eq!(
        outcomes,
        f.tickets.sla_outcomes(ctx, from, to).await.at("tickets")?,
        "{who}: the tickets module's SLA outcomes"
    );
    json_equals(
        f,
        ctx,
        Report::TicketSlaOutcomes(TicketSlaOutcomes { period: p }),
        &outcomes,
        who,
    )
    .await?;
    let sat = f
        .analytics
        .ticket_satisfaction(ctx, &TicketSatisfaction { period: p })
        .await;
    let sat = sat.at("satisfaction")?;
    ensure_eq!(
        sat,
        f.tickets
            .satisfaction_stats(ctx, from, to)
            .await
            .at("tickets")?,
        "{who}: the tickets module's satisfaction"
    );
    // The oracle: the ratings, read through the public API, of the tickets listed.
    let (mut count, mut sum) = (0u64, 0i64);
    for t in &listed {
        for r in f.tickets.satisfaction(ctx, t.id).await.at("ratings")? {
            if in_period(&r.at) {
                count += 1;
                sum += i64::from(r.rating);
            }
        }
    }
    ensure_eq!(
        sat,
        SatisfactionStat {
            count,
            sum,
            average: average(sum, count),
        },
        "{who}: satisfaction over the tickets listed"
    );
    json_equals(
        f,
        ctx,
        Report::TicketSatisfaction(TicketSatisfaction { period: p }),
        &[sat],
        who,
    )
    .await?;
    Ok(())
}

/// Every ticket report for every actor equals its oracle; a Rep counts fewer tickets
/// than the admin (fails when the scope is removed).
pub async fn ticket_reports_scoped(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    ticket_scenario(&f).await?;
    for (who, ctx) in f.actors() {
        ticket_reports_equal_oracle(&f, ctx, who).await?;
    }
    let r = TicketVolume {
        period: h1(),
        bucket: Bucket::Year,
    };
    let created = |rows: Vec<TicketVolumeRow>| rows.iter().map(|r| r.created).sum::<u64>();
    let admin = created(
        f.analytics
            .ticket_volume(&at_now(&f.admin), &r)
            .await
            .at("admin")?,
    );
    let tr = TicketTimes { period: h1() };
    let admin_times = f
        .analytics
        .ticket_times(&at_now(&f.admin), &tr)
        .await
        .at("admin")?;
    let admin_backlog = f.tickets.backlog(&at_now(&f.admin)).await.at("admin")?;
    let sr = TicketSatisfaction { period: h1() };
    let admin_sat = f
        .analytics
        .ticket_satisfaction(&at_now(&f.admin), &sr)
        .await
        .at("admin")?;
    for (who, ctx) in [("rep", &f.rep), ("rep_y", &f.rep_y)] {
        let ctx = &at_now(ctx);
        let rep = created(f.analytics.ticket_volume(ctx, &r).await.at("rep")?);
        ensure!(
            rep > 0 && rep < admin,
            "{who} counts fewer tickets: {rep} of {admin}"
        );
        let t = f.analytics.ticket_times(ctx, &tr).await.at("rep")?;
        ensure!(
            t.first_response.count < admin_times.first_response.count,
            "{who} measures fewer tickets: {t:?} vs {admin_times:?}"
        );
        let b = f.tickets.backlog(ctx).await.at("rep")?;
        ensure!(
            b.iter().map(|r| r.count).sum::<u64>()
                < admin_backlog.iter().map(|r| r.count).sum::<u64>(),
            "{who} has a smaller backlog: {b:?} vs {admin_backlog:?}"
        );
        let sat = f.analytics.ticket_satisfaction(ctx, &sr).await.at("rep")?;
        ensure!(
            sat.count > 0 && sat.count < admin_sat.count,
            "{who} counts fewer ratings: {sat:?} vs {admin_sat:?}"
        );
    }
    Ok(())
}

/// Period edges of ticket volume: a ticket created on the last second of March (CEST)
/// is in fiscal Q4 of FY2026, one created a second later in Q1 of FY2027.
pub async fn ticket_quarter_edges(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    ticket_scenario(&f).await?;
    let rows = f
        .analytics
        .ticket_volume(
            &at_now(&f.admin),
            &TicketVolume {
                period: h1(),
                bucket: Bucket::Quarter,
            },
        )
        .await
        .at("volume")?;
    let labels: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r.period.label.as_str(), r.created))
        .collect();
    // Q4 of FY2026: two on 2026-01-01, 02-10 and the one on 2026-03-31 23:59:59; Q1 of
    // FY2027: 2026-04-01 00:00:00, 06-01 and 06-30 (the one of 05-10 is deleted, the one
    // of 2025 is outside the period).
    ensure_eq!(
        labels,
        vec![("FY2026-Q4", 4), ("FY2027-Q1", 3)],
        "tickets per quarter"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

/// Bad parameters are Validation errors naming the part: `quiet_days` out of range,
/// too many buckets, and definitions with bad parts.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let ctx = &at_now(&f.admin);
    for q in [0, MAX_QUIET_DAYS + 1] {
        expect_validation(
            f.analytics
                .follow_up_health(
                    ctx,
                    &FollowUpHealth {
                        kind: None,
                        quiet_days: q,
                    },
                )
                .await,
            "quiet_days",
            "quiet_days out of range",
        )?;
    }
    let long = Period::new(date(2000, 1, 1), date(2026, 12, 31)).at("period")?;
    expect_validation(
        f.analytics
            .activities_done(
                ctx,
                &ActivitiesDone {
                    period: long,
                    bucket: Bucket::Day,
                },
            )
            .await,
        "bucket",
        "too many buckets",
    )?;
    expect_validation(
        f.analytics
            .ticket_volume(
                ctx,
                &TicketVolume {
                    period: long,
                    bucket: Bucket::Week,
                },
            )
            .await,
        "bucket",
        "too many buckets",
    )?;
    for (json, field) in [
        (
            r#"{"format":1,"report":"follow_up_health","quiet_days":0}"#,
            "quiet_days",
        ),
        (
            r#"{"format":1,"report":"follow_up_health","quiet_days":7,"kind":"ticket"}"#,
            "kind",
        ),
        (
            r#"{"format":1,"report":"activities_done","period":{"from":"2026-01-01","to":"2026-02-01"},"bucket":"hour"}"#,
            "bucket",
        ),
        (
            r#"{"format":1,"report":"ticket_volume","period":{"from":"2026-01-01"},"bucket":"day"}"#,
            "period.to",
        ),
        (
            r#"{"format":1,"report":"ticket_times","period":{"from":"2026-01-01","to":"2026-01-02"},"by":"owner"}"#,
            "by",
        ),
    ] {
        expect_validation(Report::from_json(json), field, json)?;
    }
    Ok(())
}

suite_checks! {
    /// Every check of this suite, by name.
    names: analytics_service_check_names,
    checks: [
        empty_tenant,
        one_record,
        activity_reports_scoped,
        follow_up_pages,
        ticket_reports_scoped,
        ticket_quarter_edges,
        bad_input,
    ],
}
