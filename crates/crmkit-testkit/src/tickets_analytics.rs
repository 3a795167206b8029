//! Conformance checks of ticket analytics (`crmkit_tickets::analytics`), the SLA measures
//! (business minutes to first response and to resolution) and `Tickets::recompute_sla`,
//! on any backend. Same conventions as [`crate::tickets`]: each check makes its own
//! tenant; [`checks`] lists them.

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};

use crmkit_core::query::Query;
use crmkit_core::{Ctx, Error, SlaPolicyId, Store};
use crmkit_tickets::analytics::average;
use crmkit_tickets::calendar::BusinessCalendar;
use crmkit_tickets::sla::SlaTargetKind;
use crmkit_tickets::{
    BacklogRow, MinutesStat, NewComment, SlaOutcome, Ticket, TicketPriority, TicketSla,
    TicketStatus,
};

use crate::check::{At, expect_invalid};
pub use crate::check::{CheckResult, Failure};
use crate::sla_support::{
    always, calendar, catch_all, catch_all_policy, office, t0, t0_plus, targets,
};
use crate::support::{all_pages, at_time};
pub use crate::tickets::{CheckFn, CheckFuture, Fixture, modules, setup};

async fn new_ticket(f: &Fixture, ctx: &Ctx, priority: TicketPriority) -> CheckResult<Ticket> {
    crate::tickets::new_ticket(f, ctx, |t| t.priority(priority)).await
}

async fn reply(f: &Fixture, ctx: &Ctx, t: &Ticket) -> CheckResult<Ticket> {
    Ok(f.tickets
        .comment(ctx, t.id, NewComment::reply("on it"))
        .await
        .at("reply")?
        .ticket)
}

async fn status(f: &Fixture, ctx: &Ctx, t: &Ticket, s: TicketStatus) -> CheckResult<Ticket> {
    f.tickets
        .set_status(ctx, t.id, t.version, s)
        .await
        .at("set status")
}

/// The SLA of `t` as the admin reads it.
async fn sla(f: &Fixture, t: &Ticket) -> CheckResult<TicketSla> {
    crate::sla_support::sla(f, &f.admin, t.id).await
}

fn row(status: TicketStatus, priority: TicketPriority, count: u64) -> BacklogRow {
    BacklogRow {
        status,
        priority,
        count,
    }
}

fn stat(count: u64, total: i64) -> MinutesStat {
    MinutesStat {
        count,
        total_minutes: total,
        average: average(total, count),
    }
}

/// Every ticket the admin can list (not deleted).
async fn listed(f: &Fixture) -> CheckResult<Vec<Ticket>> {
    let q = Query::new().sort_asc("number").limit(50);
    all_pages(
        &q,
        "list",
        |q| async move { f.tickets.list(&f.admin, &q).await },
    )
    .await
}

/// The backlog computed from listed tickets.
async fn brute_backlog(f: &Fixture) -> CheckResult<Vec<BacklogRow>> {
    let mut m: BTreeMap<(usize, i64), BacklogRow> = BTreeMap::new();
    for t in listed(f).await? {
        if let Some(pos) = TicketStatus::UNSOLVED.iter().position(|s| *s == t.status) {
            m.entry((pos, t.priority.rank()))
                .or_insert(row(t.status, t.priority, 0))
                .count += 1;
        }
    }
    Ok(m.into_values().collect())
}

/// The backlog counts unsolved, not deleted tickets of the tenant per status and priority;
/// solved, closed and deleted tickets and other tenants' tickets are not counted; the
/// answer equals a count over listed tickets.
pub async fn backlog_counts(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = setup(store).await?;
    new_ticket(&other, &other.admin, TicketPriority::Normal).await?;
    use TicketPriority::*;
    use TicketStatus::*;
    let ctx = &f.admin;
    new_ticket(&f, ctx, Normal).await?;
    new_ticket(&f, ctx, Normal).await?;
    new_ticket(&f, ctx, Urgent).await?;
    let a = new_ticket(&f, ctx, High).await?;
    reply(&f, ctx, &a).await?;
    let b = new_ticket(&f, ctx, Low).await?;
    status(&f, ctx, &b, Pending).await?;
    let c = new_ticket(&f, ctx, Urgent).await?;
    status(&f, ctx, &c, OnHold).await?;
    let d = new_ticket(&f, ctx, Normal).await?;
    status(&f, ctx, &d, Solved).await?;
    let e = new_ticket(&f, ctx, Normal).await?;
    let e = status(&f, ctx, &e, Solved).await?;
    status(&f, ctx, &e, Closed).await?;
    let x = new_ticket(&f, ctx, Normal).await?;
    f.tickets.delete(ctx, x.id, x.version).await.at("delete")?;
    let expected = vec![
        row(New, Normal, 2),
        row(New, Urgent, 1),
        row(Open, High, 1),
        row(Pending, Low, 1),
        row(OnHold, Urgent, 1),
    ];
    for (who, actor) in [("admin", &f.admin), ("manager", &f.manager)] {
        let got = f.tickets.backlog(actor).await.at("backlog")?;
        ensure_eq!(got, expected, "backlog for the {who}");
    }
    ensure_eq!(brute_backlog(&f).await?, expected, "brute force");
    ensure_eq!(
        other.tickets.backlog(&other.admin).await.at("other")?,
        vec![row(New, Normal, 1)],
        "the other tenant's backlog"
    );
    Ok(())
}

/// Business minutes to first response and to resolution are stored when reached, on the
/// policy's calendar (Mon-Fri 09:00-17:00 UTC): a ticket created Friday 16:00 and
/// answered Monday 10:00 took 120 minutes; a pending pause is excluded from resolution;
/// `response_times` sums them over the tickets created in the period.
pub async fn measured_minutes(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    catch_all_policy(&f, office(), targets(Some(240), None, Some(2000))).await?;
    let friday = |h, m| Utc.with_ymd_and_hms(2027, 4, 9, h, m, 0).unwrap();
    let monday = |h, m| Utc.with_ymd_and_hms(2027, 4, 12, h, m, 0).unwrap();
    let (ctx, clock) = at_time(&f.admin, friday(16, 0));
    let a = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
    clock.set(friday(16, 30));
    let b = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
    clock.set(friday(16, 45));
    reply(&f, &ctx, &b).await?;
    let s = sla(&f, &a).await?;
    ensure_eq!(s.first_response_minutes, None, "not answered yet");
    clock.set(monday(10, 0));
    let a = reply(&f, &ctx, &a).await?;
    let s = sla(&f, &a).await?;
    ensure_eq!(
        s.first_response_minutes,
        Some(120),
        "Friday 16:00 to Monday 10:00"
    );
    ensure_eq!(s.resolution_minutes, None, "unsolved");
    ensure_eq!(
        sla(&f, &b).await?.first_response_minutes,
        Some(15),
        "answered the same day"
    );
    clock.set(monday(11, 0));
    let a = status(&f, &ctx, &a, TicketStatus::Pending).await?;
    clock.set(monday(13, 0));
    let a = status(&f, &ctx, &a, TicketStatus::Open).await?;
    clock.set(monday(14, 0));
    let a = status(&f, &ctx, &a, TicketStatus::Solved).await?;
    let s = sla(&f, &a).await?;
    // Friday 16-17, Monday 9-11 and 13-14; 11-13 was pending.
    ensure_eq!(s.resolution_minutes, Some(240), "pending excluded");
    ensure_eq!(s.first_response_minutes, Some(120), "kept");
    // A ticket created before the period does not count.
    let (ctx2, clock2) = at_time(&f.admin, friday(10, 0) - Duration::days(1));
    let old = new_ticket(&f, &ctx2, TicketPriority::Normal).await?;
    clock2.set(monday(9, 30));
    reply(&f, &ctx2, &old).await?;
    let from = Utc.with_ymd_and_hms(2027, 4, 9, 0, 0, 0).unwrap();
    let to = from + Duration::days(1);
    let rt = f
        .tickets
        .response_times(&f.manager, from, to)
        .await
        .at("response times")?;
    ensure_eq!(rt.first_response, stat(2, 135), "first response");
    ensure_eq!(
        rt.first_response.average,
        Some("67.50".parse().unwrap()),
        "average"
    );
    ensure_eq!(rt.resolution, stat(1, 240), "resolution");
    // Reopened: no resolution measure until solved again, then the total.
    clock.set(monday(15, 0));
    let a = status(&f, &ctx, &a, TicketStatus::Open).await?;
    ensure_eq!(sla(&f, &a).await?.resolution_minutes, None, "reopened");
    clock.set(monday(15, 30));
    let a = status(&f, &ctx, &a, TicketStatus::Solved).await?;
    ensure_eq!(sla(&f, &a).await?.resolution_minutes, Some(270), "total");
    let rt = f
        .tickets
        .response_times(&f.admin, from, to)
        .await
        .at("response times")?;
    ensure_eq!(rt.resolution, stat(1, 270), "resolution after re-solve");
    let empty = f
        .tickets
        .response_times(&f.admin, to, to)
        .await
        .at("empty period")?;
    ensure_eq!(empty.first_response, stat(0, 0), "empty");
    ensure_eq!(empty.first_response.average, None, "no average");
    expect_invalid(
        f.tickets.response_times(&f.admin, to, from).await,
        "from after to",
    )?;
    Ok(())
}

/// Per policy and target: achieved (met, not breached) and breached counts.
pub async fn outcomes(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let p = catch_all_policy(&f, always(), targets(Some(60), None, Some(120))).await?;
    let (ctx, clock) = at_time(&f.admin, t0());
    let good = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
    let late = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
    clock.advance(Duration::minutes(10));
    let good = reply(&f, &ctx, &good).await?;
    clock.advance(Duration::minutes(20));
    status(&f, &ctx, &good, TicketStatus::Solved).await?;
    clock.set(t0_plus(200));
    let swept = f
        .tickets
        .sweep(&f.admin, ctx.now(), Duration::zero())
        .await
        .at("sweep")?;
    ensure_eq!(swept.breaches, 2, "both targets of the late ticket");
    clock.advance(Duration::minutes(10));
    reply(&f, &ctx, &late).await?;
    let got = f
        .tickets
        .sla_outcomes(&f.admin, t0(), t0() + Duration::hours(1))
        .await
        .at("outcomes")?;
    let o = |target, achieved, breached| SlaOutcome {
        policy_id: p,
        target,
        achieved,
        breached,
    };
    ensure_eq!(
        got,
        vec![
            o(SlaTargetKind::FirstResponse, 1, 1),
            o(SlaTargetKind::Resolution, 1, 1)
        ],
        "outcomes"
    );
    let none = f
        .tickets
        .sla_outcomes(
            &f.admin,
            t0() + Duration::hours(1),
            t0() + Duration::hours(2),
        )
        .await
        .at("later period")?;
    ensure_eq!(none, vec![], "nothing created later");
    Ok(())
}

/// Satisfaction count, exact sum and rounded average over the ratings of a period.
pub async fn satisfaction_average(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = setup(store).await?;
    let ot = new_ticket(&other, &other.admin, TicketPriority::Normal).await?;
    let ot = status(&other, &other.admin, &ot, TicketStatus::Solved).await?;
    other
        .tickets
        .rate(&other.admin, ot.id, 1, None)
        .await
        .at("other rate")?;
    let (ctx, clock) = at_time(&f.admin, t0());
    for r in [5, 4, 4, 2] {
        let t = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
        let t = status(&f, &ctx, &t, TicketStatus::Solved).await?;
        if r == 2 {
            clock.set(t0() + Duration::days(2));
        }
        f.tickets.rate(&ctx, t.id, r, None).await.at("rate")?;
    }
    let s = f
        .tickets
        .satisfaction_stats(&f.manager, t0(), t0() + Duration::days(1))
        .await
        .at("satisfaction")?;
    ensure_eq!((s.count, s.sum), (3, 13), "count and sum");
    ensure_eq!(s.average, Some("4.33".parse().unwrap()), "average");
    let all = f
        .tickets
        .satisfaction_stats(&f.admin, t0(), t0() + Duration::days(3))
        .await
        .at("satisfaction")?;
    ensure_eq!((all.count, all.sum), (4, 15), "whole period");
    ensure_eq!(all.average, Some("3.75".parse().unwrap()), "average");
    Ok(())
}

/// The satisfaction statistics of `ctx` computed from the ratings (read through the
/// public API) of the tickets `ctx` lists, recorded in `[from, to)`: (count, sum).
async fn brute_satisfaction(
    f: &Fixture,
    ctx: &Ctx,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> CheckResult<(u64, i64)> {
    let q = Query::new().sort_asc("number").limit(50);
    let tickets = all_pages(&q, "list", |q| async move { f.tickets.list(ctx, &q).await }).await?;
    let (mut count, mut sum) = (0, 0);
    for t in tickets {
        for s in f.tickets.satisfaction(ctx, t.id).await.at("ratings")? {
            if s.at >= from && s.at < to {
                count += 1;
                sum += i64::from(s.rating);
            }
        }
    }
    Ok((count, sum))
}

/// Satisfaction statistics are scoped like the other ticket reports, for every role: a
/// Rep's (and the ReadOnly user's) equal the ratings of the tickets they list, deleted
/// tickets' ratings count for nobody, and a rating follows its ticket when the assignee
/// or queue changes through the typed update, the generic record patch and escalation,
/// and when the ticket is deleted and restored. Fails when the scope is removed from
/// the aggregate or when a write path stops copying the ticket's scope to its ratings.
pub async fn satisfaction_scoped(store: &Store) -> CheckResult {
    use crmkit_tickets::{Escalation, TicketPatch};
    let f = setup(store).await?;
    let other = setup(store).await?;
    let ot = new_ticket(&other, &other.admin, TicketPriority::Normal).await?;
    let ot = status(&other, &other.admin, &ot, TicketStatus::Solved).await?;
    other
        .tickets
        .rate(&other.admin, ot.id, 5, None)
        .await
        .at("other rate")?;
    let (ctx, _clock) = at_time(&f.admin, t0());
    let rep = f.rep.actor().user;
    let rep_y = f.rep_y.actor().user;
    // A solved, rated ticket assigned to `assignee` in `queue`.
    let rated =
        |assignee: Option<crmkit_core::UserId>, queue: Option<crmkit_core::TeamId>, rating: i32| {
            let (f, ctx) = (&f, &ctx);
            async move {
                let t = crate::tickets::new_ticket(f, ctx, |n| {
                    let n = match assignee {
                        Some(u) => n.assignee(u),
                        None => n,
                    };
                    match queue {
                        Some(q) => n.queue(q),
                        None => n,
                    }
                })
                .await?;
                let t = status(f, ctx, &t, TicketStatus::Solved).await?;
                f.tickets.rate(ctx, t.id, rating, None).await.at("rate")?;
                CheckResult::Ok(t)
            }
        };
    rated(Some(rep), None, 5).await?; // rep
    rated(Some(rep_y), Some(f.team_y), 1).await?; // rep_y
    rated(None, Some(f.team_x), 3).await?; // team X: rep, rep2, readonly
    // rep -> rep_y through the typed update.
    let d = rated(Some(rep), None, 4).await?;
    f.tickets
        .update(
            &ctx,
            d.id,
            d.version,
            TicketPatch::new().assignee(Some(rep_y)),
        )
        .await
        .at("reassign (typed)")?;
    // rep_y -> rep through the generic record patch.
    let e = rated(Some(rep_y), Some(f.team_y), 2).await?;
    store
        .records()
        .patch(
            &ctx,
            "ticket",
            e.id.as_uuid(),
            e.version,
            serde_json::json!({ "assignee": rep.as_uuid(), "queue": null }),
        )
        .await
        .at("reassign (generic patch)")?;
    // rep_y -> queue X, unassigned, through escalation.
    let g = rated(Some(rep_y), None, 5).await?;
    f.tickets
        .escalate(
            &ctx,
            g.id,
            g.version,
            Escalation::because("needs team X").queue(f.team_x),
        )
        .await
        .at("escalate")?;
    // Deleted: counts for nobody.
    let h = rated(Some(rep), None, 1).await?;
    f.tickets.delete(&ctx, h.id, h.version).await.at("delete")?;
    // Deleted and restored: counts again.
    let i = rated(Some(rep), None, 2).await?;
    let i = f.tickets.delete(&ctx, i.id, i.version).await.at("delete")?;
    f.tickets
        .restore(&ctx, i.id, i.version)
        .await
        .at("restore")?;
    // Reopened and solved again: two ratings.
    let j = rated(Some(rep), None, 4).await?;
    let j = f.tickets.get(&ctx, j.id).await.at("get")?;
    let j = status(&f, &ctx, &j, TicketStatus::Open).await?;
    let j = status(&f, &ctx, &j, TicketStatus::Solved).await?;
    f.tickets.rate(&ctx, j.id, 3, None).await.at("rate again")?;
    let (from, to) = (t0(), t0() + Duration::days(1));
    // rep: 5, 3 (queue X), 2 (patched to rep), 5 (escalated to X), 2 (restored), 4 + 3.
    // rep_y: 1, 4 (updated to rep_y). admin: all of them but the deleted one.
    let expected = [
        ("admin", (9, 29)),
        ("manager", (9, 29)),
        ("rep", (7, 24)),
        ("rep2", (2, 8)),
        ("rep_y", (2, 5)),
        ("readonly", (2, 8)),
    ];
    for ((who, actor), (name, want)) in f.actors().into_iter().zip(expected) {
        ensure_eq!(who, name, "actor order");
        let s = f
            .tickets
            .satisfaction_stats(actor, from, to)
            .await
            .at("satisfaction")?;
        ensure_eq!(
            (s.count, s.sum),
            brute_satisfaction(&f, actor, from, to).await?,
            "{who}: satisfaction equals the ratings of the tickets listed"
        );
        ensure_eq!((s.count, s.sum), want, "{who}: satisfaction");
        ensure_eq!(s.average, average(s.sum, s.count), "{who}: average");
    }
    Ok(())
}

/// After a policy's resolution target is edited, `recompute_sla` re-targets the open
/// tickets under it page by page (limit 2), keeping the business time consumed; a solved
/// ticket is untouched; a second run updates nothing.
pub async fn recompute(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let cal = calendar(&f, always()).await?.id;
    let (ctx, clock) = at_time(&f.admin, t0());
    // Created before any policy: no SLA row until a recompute finds its policy.
    let pre = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
    ensure!(
        f.tickets.sla(&f.admin, pre.id).await.at("sla")?.is_none(),
        "no policy, no SLA row"
    );
    let a = f
        .tickets
        .sla_policies()
        .create(&f.admin, catch_all(cal, targets(None, None, Some(600))))
        .await
        .at("policy")?;
    let mut open = vec![];
    for _ in 0..4 {
        open.push(new_ticket(&f, &ctx, TicketPriority::Normal).await?);
    }
    let solved = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
    clock.advance(Duration::minutes(10));
    let solved = status(&f, &ctx, &solved, TicketStatus::Solved).await?;
    let solved_before = sla(&f, &solved).await?;
    ensure_eq!(solved_before.resolution_minutes, Some(10), "measured");
    clock.advance(Duration::minutes(50));
    f.tickets
        .sla_policies()
        .update(
            &f.admin,
            a.id,
            a.version,
            catch_all(cal, targets(None, None, Some(300))),
        )
        .await
        .at("edit policy")?;
    for t in &open {
        ensure_eq!(
            sla(&f, t).await?.next_due_at,
            Some(t0_plus(600)),
            "not recomputed yet"
        );
    }
    let run = |policy: Option<SlaPolicyId>| {
        let tickets = &f.tickets;
        let ctx = ctx.clone();
        async move {
            let (mut examined, mut updated, mut pages) = (0, 0, 0);
            let mut cursor = None;
            loop {
                let r = tickets
                    .recompute_sla(&ctx, policy, cursor, 2)
                    .await
                    .at("recompute")?;
                ensure_eq!(r.conflicts, 0, "no conflicts");
                examined += r.examined;
                updated += r.updated;
                pages += 1;
                ensure!(pages <= 4, "paging ends");
                match r.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return Ok::<_, Failure>((examined, updated)),
                }
            }
        }
    };
    ensure_eq!(
        run(None).await?,
        (5, 5),
        "examined and updated (one inserted)"
    );
    let s = sla(&f, &pre).await?;
    ensure_eq!(s.policy, Some(a.id), "the policy found");
    ensure_eq!(
        s.next_due_at,
        Some(t0_plus(60 + 300)),
        "a new target starts at the recompute"
    );
    for t in &open {
        let s = sla(&f, t).await?;
        ensure_eq!(
            s.target(SlaTargetKind::Resolution).and_then(|t| t.due_at),
            Some(t0_plus(300)),
            "new target, time consumed kept"
        );
        ensure_eq!(s.next_due_at, Some(t0_plus(300)), "next due");
    }
    ensure_eq!(sla(&f, &solved).await?, solved_before, "solved untouched");
    ensure_eq!(run(None).await?, (5, 0), "a second run updates nothing");
    ensure_eq!(run(Some(a.id)).await?, (5, 0), "by policy: nothing either");
    // Shorter than the time consumed: breached at the change, recorded once.
    clock.advance(Duration::minutes(10));
    let a = f
        .tickets
        .sla_policies()
        .get(&f.admin, a.id)
        .await
        .at("policy")?;
    f.tickets
        .sla_policies()
        .update(
            &f.admin,
            a.id,
            a.version,
            catch_all(cal, targets(None, None, Some(30))),
        )
        .await
        .at("edit policy again")?;
    ensure_eq!(run(Some(a.id)).await?, (5, 5), "by policy");
    for t in &open {
        let s = sla(&f, t).await?;
        ensure_eq!(
            s.target(SlaTargetKind::Resolution).and_then(|t| t.due_at),
            Some(t0_plus(70)),
            "shorter than the time consumed: reached at the change, not before"
        );
    }
    ensure_eq!(
        sla(&f, &pre).await?.next_due_at,
        Some(t0_plus(60 + 30)),
        "10 of 30 minutes consumed"
    );
    ensure_eq!(run(None).await?, (5, 0), "stable");
    let swept = f
        .tickets
        .sweep(&f.admin, ctx.now() + Duration::minutes(1), Duration::zero())
        .await
        .at("sweep")?;
    ensure_eq!(swept.breaches, 4, "breached from the change on (not `pre`)");
    Ok(())
}

/// After a calendar is edited, `recompute_sla` rewrites the stored due instants on the
/// new hours (the state is unchanged: the running segment is counted on the new calendar).
pub async fn recompute_after_calendar_edit(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let cal = calendar(&f, always()).await?;
    f.tickets
        .sla_policies()
        .create(&f.admin, catch_all(cal.id, targets(None, None, Some(600))))
        .await
        .at("policy")?;
    let (ctx, clock) = at_time(&f.admin, t0());
    let t = new_ticket(&f, &ctx, TicketPriority::Normal).await?;
    let before = sla(&f, &t).await?;
    ensure_eq!(
        before.next_due_at,
        Some(t0_plus(600)),
        "on the all-day calendar"
    );
    clock.advance(Duration::minutes(60));
    f.tickets
        .sla_calendars()
        .update(&f.admin, cal.id, cal.version, "office", office())
        .await
        .at("edit calendar")?;
    ensure_eq!(sla(&f, &t).await?, before, "not recomputed yet");
    let r = f
        .tickets
        .recompute_sla(&ctx, None, None, 10)
        .await
        .at("recompute")?;
    ensure_eq!((r.examined, r.updated), (1, 1), "rewritten");
    let after = sla(&f, &t).await?;
    // Monday 09:00 + 600 office minutes: 480 on Monday, 120 on Tuesday.
    let tuesday_11 = Utc.with_ymd_and_hms(2027, 4, 6, 11, 0, 0).unwrap();
    ensure_eq!(after.next_due_at, Some(tuesday_11), "due on the new hours");
    ensure_eq!(after.state, before.state, "state unchanged");
    ensure_eq!(after.version, before.version + 1, "one versioned write");
    let r = f
        .tickets
        .recompute_sla(&ctx, None, None, 10)
        .await
        .at("recompute again")?;
    ensure_eq!(r.updated, 0, "nothing left");
    Ok(())
}

/// Concurrent recomputes of the same tickets: each SLA row is written by exactly one of
/// them (the others skip it as a conflict, or find nothing to change), none fails, and
/// the result is the same as one recompute's. Spawns tokio tasks.
pub async fn concurrent_recompute(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let cal = calendar(&f, always()).await?.id;
    let (ctx, clock) = at_time(&f.admin, t0());
    // Two tickets without an SLA row yet (inserted by the recompute), six with one.
    let mut tickets = vec![];
    for _ in 0..2 {
        tickets.push(new_ticket(&f, &ctx, TicketPriority::Normal).await?);
    }
    let a = f
        .tickets
        .sla_policies()
        .create(
            &f.admin,
            catch_all(cal, targets(Some(100), None, Some(600))),
        )
        .await
        .at("policy")?;
    for _ in 0..6 {
        tickets.push(new_ticket(&f, &ctx, TicketPriority::Normal).await?);
    }
    clock.advance(Duration::minutes(20));
    f.tickets
        .sla_policies()
        .update(
            &f.admin,
            a.id,
            a.version,
            catch_all(cal, targets(Some(100), None, Some(200))),
        )
        .await
        .at("edit policy")?;
    let mut tasks = vec![];
    for _ in 0..4 {
        let tk = f.tickets.clone();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            tk.recompute_sla(&ctx, None, None, 100).await
        }));
    }
    let (mut updated, mut conflicts) = (0, 0);
    for t in tasks {
        let r = t
            .await
            .map_err(|e| Failure::new(format!("join: {e}")))?
            .at("recompute")?;
        ensure_eq!(r.examined, 8, "every open ticket examined");
        updated += r.updated;
        conflicts += r.conflicts;
    }
    ensure_eq!(
        updated,
        8,
        "each row written once (conflicts skipped: {conflicts})"
    );
    for (i, t) in tickets.iter().enumerate() {
        let s = sla(&f, t).await?;
        let due = if i < 2 {
            t0_plus(20 + 200)
        } else {
            t0_plus(200)
        };
        ensure_eq!(
            s.target(SlaTargetKind::Resolution).and_then(|t| t.due_at),
            Some(due),
            "resolution due of ticket {i}"
        );
    }
    let again = f
        .tickets
        .recompute_sla(&ctx, None, None, 100)
        .await
        .at("recompute again")?;
    ensure_eq!((again.updated, again.conflicts), (0, 0), "nothing left");
    Ok(())
}

/// Reps and read-only users get PermissionDenied from recompute; the backlog, response
/// times, SLA outcomes and satisfaction answer them over the tickets they see (compared
/// with an oracle in `analytics_service::ticket_reports_scoped` and
/// [`satisfaction_scoped`]).
pub async fn permissions(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (from, to) = (t0(), t0() + Duration::days(1));
    for (who, ctx) in [("rep", &f.rep), ("readonly", &f.readonly)] {
        let denied = |r: Result<(), Error>| matches!(r, Err(Error::PermissionDenied(_)));
        f.tickets.backlog(ctx).await.at("backlog")?;
        f.tickets
            .response_times(ctx, from, to)
            .await
            .at("response times")?;
        f.tickets
            .sla_outcomes(ctx, from, to)
            .await
            .at("SLA outcomes")?;
        f.tickets
            .satisfaction_stats(ctx, from, to)
            .await
            .at("satisfaction")?;
        ensure!(
            denied(f.tickets.recompute_sla(ctx, None, None, 10).await.map(drop)),
            "recompute for {who}"
        );
    }
    expect_invalid(
        f.tickets.recompute_sla(&f.admin, None, None, 0).await,
        "limit 0",
    )?;
    expect_invalid(
        f.tickets
            .recompute_sla(&f.admin, None, Some("nope".into()), 10)
            .await,
        "bad cursor",
    )?;
    Ok(())
}

/// A small model check: after a deterministic mix of creates, replies, pauses, solves,
/// ratings and deletes, every analytics number equals a brute-force computation over the
/// listed tickets and their SLA rows, and each stored measure equals the business minutes
/// between the ticket's creation and its first response (or solve) on the calendar (no
/// ticket of the mix is paused before either).
pub async fn matches_brute_force(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let p = catch_all_policy(&f, office(), targets(Some(90), None, Some(480))).await?;
    let cal = BusinessCalendar::new(office()).at("calendar")?;
    let (ctx, clock) = at_time(&f.admin, t0());
    let mut seed: u64 = 0x5eed;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let priorities = TicketPriority::ALL;
    let mut rated_sum = 0;
    let mut rated = 0;
    for i in 0..12 {
        let prio = priorities[next(priorities.len() as u64) as usize];
        let mut t = new_ticket(&f, &ctx, prio).await?;
        clock.advance(Duration::minutes(30 + next(300) as i64));
        if next(3) > 0 {
            t = reply(&f, &ctx, &t).await?;
        }
        clock.advance(Duration::minutes(next(200) as i64));
        match next(5) {
            0 => {
                status(&f, &ctx, &t, TicketStatus::Pending).await?;
            }
            1 | 2 => {
                let t = status(&f, &ctx, &t, TicketStatus::Solved).await?;
                if i % 2 == 0 {
                    let r = 1 + next(5) as i32;
                    f.tickets.rate(&ctx, t.id, r, None).await.at("rate")?;
                    rated_sum += i64::from(r);
                    rated += 1;
                }
            }
            3 if i % 4 == 3 => {
                f.tickets.delete(&ctx, t.id, t.version).await.at("delete")?;
            }
            _ => {}
        }
        clock.advance(Duration::minutes(next(120) as i64));
    }
    clock.advance(Duration::hours(30));
    f.tickets
        .sweep(&f.admin, ctx.now(), Duration::zero())
        .await
        .at("sweep")?;
    ensure_eq!(
        f.tickets.backlog(&f.admin).await.at("backlog")?,
        brute_backlog(&f).await?,
        "backlog"
    );
    let from = t0() + Duration::hours(3);
    let to = ctx.now();
    let (mut fr, mut res) = (stat(0, 0), stat(0, 0));
    let mut outcomes: BTreeMap<usize, SlaOutcome> = BTreeMap::new();
    for t in listed(&f).await? {
        if t.created_at < from || t.created_at >= to {
            continue;
        }
        let s = sla(&f, &t).await?;
        ensure_eq!(
            s.first_response_minutes,
            t.first_response_at
                .map(|at| cal.minutes_between(t.created_at, at)),
            "first response minutes of ticket {}",
            t.number
        );
        ensure_eq!(
            s.resolution_minutes,
            t.solved_at.map(|at| cal.minutes_between(t.created_at, at)),
            "resolution minutes of ticket {}",
            t.number
        );
        for (m, acc) in [
            (s.first_response_minutes, &mut fr),
            (s.resolution_minutes, &mut res),
        ] {
            if let Some(m) = m {
                *acc = stat(acc.count + 1, acc.total_minutes + m);
            }
        }
        for (i, k) in SlaTargetKind::ALL.into_iter().enumerate() {
            if let Some(v) = s.target(k) {
                let o = outcomes.entry(i).or_insert(SlaOutcome {
                    policy_id: p,
                    target: k,
                    achieved: 0,
                    breached: 0,
                });
                if v.breached_at.is_some() {
                    o.breached += 1;
                } else if v.achieved_at.is_some() {
                    o.achieved += 1;
                }
            }
        }
    }
    let rt = f
        .tickets
        .response_times(&f.admin, from, to)
        .await
        .at("response times")?;
    ensure_eq!(rt.first_response, fr, "first response");
    ensure_eq!(rt.resolution, res, "resolution");
    ensure!(fr.count > 0 && res.count > 0, "the mix measured something");
    let expected: Vec<SlaOutcome> = outcomes
        .into_values()
        .filter(|o| o.achieved + o.breached > 0)
        .collect();
    ensure_eq!(
        f.tickets
            .sla_outcomes(&f.admin, from, to)
            .await
            .at("outcomes")?,
        expected,
        "outcomes"
    );
    let s = f
        .tickets
        .satisfaction_stats(&f.admin, t0(), to + Duration::minutes(1))
        .await
        .at("satisfaction")?;
    ensure_eq!((s.count, s.sum), (rated, rated_sum), "satisfaction");
    ensure_eq!(s.average, average(rated_sum, rated), "satisfaction average");
    Ok(())
}

suite_checks! {
    /// Every check of this module by name.
    names: tickets_analytics_check_names,
    checks: [
        backlog_counts,
        measured_minutes,
        outcomes,
        satisfaction_average,
        satisfaction_scoped,
        recompute,
        recompute_after_calendar_edit,
        concurrent_recompute,
        permissions,
        matches_brute_force,
    ],
}
