//! Conformance checks of business calendars, SLA policies and per-ticket SLA state
//! (`crmkit_tickets::sla`) on any backend. Same conventions as [`crate::tickets`]: each
//! check makes its own tenant; [`checks`] lists them; [`sweep_once`] spawns tokio tasks
//! (run the suite on a multi-thread runtime).

use chrono::{Duration, TimeZone, Utc};
use crmkit_contacts::NewOrganization;
use crmkit_core::event::EVENTS_TABLE;
use crmkit_core::{CalendarId, Ctx, OrganizationId, Page, SlaPolicyId, Store, TicketId};
use crmkit_tickets::calendar::CalendarSpec;
use crmkit_tickets::sla::{NewSlaPolicy, SlaConditions, SlaTargetKind, SlaTargets};
use crmkit_tickets::{
    CALENDAR_TABLE, Channel, Escalation, NewComment, POLICY_TABLE, Ticket, TicketPatch,
    TicketPriority, TicketSla, TicketStatus,
};

use crate::check::{At, expect_validation};
pub use crate::check::{CheckResult, Failure};
use crate::sla_support::{
    always, calendar, catch_all, catch_all_policy, due, office, sla, t0, t0_plus, target, targets,
};
use crate::support::{at_time, record_events, row_counts};
use crate::tickets::new_ticket;
pub use crate::tickets::{CheckFn, CheckFuture, Fixture, modules, setup};

/// An active policy `name` at `position` on calendar `cal`, applying when `conditions`
/// hold, with targets `t`, stored by the admin.
async fn policy(
    f: &Fixture,
    name: &str,
    position: i64,
    conditions: SlaConditions,
    cal: CalendarId,
    t: SlaTargets,
) -> CheckResult<SlaPolicyId> {
    Ok(f.tickets
        .sla_policies()
        .create(
            &f.admin,
            NewSlaPolicy::new(name, cal)
                .position(position)
                .conditions(conditions)
                .targets(t),
        )
        .await
        .at("create policy")?
        .id)
}

async fn org(f: &Fixture) -> CheckResult<OrganizationId> {
    let mut o = NewOrganization::named("Navy");
    o.team = Some(f.team_x);
    Ok(f.contacts
        .organizations()
        .create(&f.admin, o)
        .await
        .at("create organization")?
        .id)
}

/// Sets the status of `x` as `ctx` (`what` names the step in failures).
async fn set_status(
    f: &Fixture,
    ctx: &Ctx,
    x: &Ticket,
    status: TicketStatus,
    what: &str,
) -> CheckResult<Ticket> {
    f.tickets
        .set_status(ctx, x.id, x.version, status)
        .await
        .at(what)
}

/// Posts `comment` on ticket `id` as `ctx` (`what` names the step in failures).
async fn comment(
    f: &Fixture,
    ctx: &Ctx,
    id: TicketId,
    comment: NewComment,
    what: &str,
) -> CheckResult {
    f.tickets.comment(ctx, id, comment).await.at(what)?;
    Ok(())
}

/// The tickets of every page of a due listing, following cursors: `page` fetches the page
/// at a cursor.
async fn due_tickets(
    page: impl AsyncFn(Option<String>) -> crmkit_core::Result<Page<TicketSla>>,
    what: &str,
) -> CheckResult<Vec<TicketId>> {
    let mut got = vec![];
    let mut cursor = None;
    loop {
        let p = page(cursor).await.at(what)?;
        got.extend(p.items.iter().map(|s| s.ticket));
        cursor = p.next_cursor;
        if cursor.is_none() {
            return Ok(got);
        }
    }
}

async fn sla_events(store: &Store, ctx: &Ctx, id: TicketId) -> CheckResult<Vec<String>> {
    let events = record_events(store, ctx, id).await?;
    Ok(events
        .into_iter()
        .filter(|e| e.kind.starts_with("ticket.sla_"))
        .map(|e| {
            format!(
                "{}:{}",
                e.kind,
                e.payload["target"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

/// The first active policy in position order whose conditions match applies; inactive
/// policies are skipped; a priority change (update or escalation) re-evaluates it,
/// keeping the business time consumed.
pub async fn policy_selection(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let cal = calendar(&f, always()).await?.id;
    let o = org(&f).await?;
    let any = SlaConditions::default();
    let p_fallback = policy(
        &f,
        "fallback",
        50,
        any.clone(),
        cal,
        targets(Some(500), None, None),
    )
    .await?;
    let mut inactive = f
        .tickets
        .sla_policies()
        .create(
            &f.admin,
            NewSlaPolicy::new("off", cal)
                .targets(targets(Some(1), None, None))
                .active(false),
        )
        .await
        .at("inactive policy")?;
    let p_org = policy(
        &f,
        "org",
        30,
        SlaConditions {
            organizations: vec![o],
            ..any.clone()
        },
        cal,
        targets(Some(300), None, None),
    )
    .await?;
    let p_phone = policy(
        &f,
        "phone",
        20,
        SlaConditions {
            channels: vec![Channel::Phone],
            ..any.clone()
        },
        cal,
        targets(Some(200), None, None),
    )
    .await?;
    let p_urgent = policy(
        &f,
        "urgent",
        10,
        SlaConditions {
            priorities: vec![TicketPriority::Urgent, TicketPriority::High],
            ..any.clone()
        },
        cal,
        targets(Some(100), None, Some(1000)),
    )
    .await?;
    let listed: Vec<SlaPolicyId> = f
        .tickets
        .sla_policies()
        .all(&f.admin)
        .await
        .at("policies")?
        .iter()
        .map(|p| p.id)
        .collect();
    ensure_eq!(
        listed,
        vec![inactive.id, p_urgent, p_phone, p_org, p_fallback],
        "evaluation order"
    );
    let (ctx, clock) = at_time(&f.admin, t0());
    let a = new_ticket(&f, &ctx, |n| {
        n.priority(TicketPriority::Urgent).channel(Channel::Phone)
    })
    .await?;
    let b = new_ticket(&f, &ctx, |n| n.channel(Channel::Phone).organization(o)).await?;
    let c = new_ticket(&f, &ctx, |n| n.organization(o)).await?;
    let d = new_ticket(&f, &ctx, |n| n).await?;
    for (t, p, fr) in [
        (&a, p_urgent, 100),
        (&b, p_phone, 200),
        (&c, p_org, 300),
        (&d, p_fallback, 500),
    ] {
        let s = sla(&f, &ctx, t.id).await?;
        ensure_eq!(s.policy, Some(p), "policy of ticket {}", t.number);
        ensure_eq!(
            due(&s, SlaTargetKind::FirstResponse),
            Some(t0_plus(fr)),
            "first response due of ticket {}",
            t.number
        );
        ensure_eq!(s.next_due_at, Some(t0_plus(fr)), "next due");
    }
    // Priority change by update: 40 minutes consumed are kept under the new policy.
    clock.advance(Duration::minutes(40));
    let d2 = f
        .tickets
        .update(
            &ctx,
            d.id,
            d.version,
            TicketPatch {
                priority: Some(TicketPriority::High),
                ..TicketPatch::default()
            },
        )
        .await
        .at("raise priority")?;
    let s = sla(&f, &ctx, d.id).await?;
    ensure_eq!(s.policy, Some(p_urgent), "re-evaluated on update");
    ensure_eq!(
        due(&s, SlaTargetKind::FirstResponse),
        Some(t0_plus(100)),
        "elapsed time kept, new target"
    );
    ensure_eq!(
        due(&s, SlaTargetKind::Resolution),
        Some(t0_plus(40 + 1000)),
        "a target kind new to the ticket starts at the change"
    );
    // Escalation of c (org policy) to urgent.
    let c2 = f
        .tickets
        .escalate(
            &ctx,
            c.id,
            c.version,
            Escalation {
                reason: "angry".into(),
                priority: Some(TicketPriority::Urgent),
                queue: None,
                assignee: None,
            },
        )
        .await
        .at("escalate")?;
    ensure_eq!(c2.priority, TicketPriority::Urgent, "escalated");
    let s = sla(&f, &ctx, c.id).await?;
    ensure_eq!(s.policy, Some(p_urgent), "re-evaluated on escalation");
    ensure_eq!(
        due(&s, SlaTargetKind::FirstResponse),
        Some(t0_plus(100)),
        "due recomputed on escalation"
    );
    // Lowering it again falls back; activating the inactive policy changes new tickets only.
    let d3 = f
        .tickets
        .update(
            &ctx,
            d.id,
            d2.version,
            TicketPatch {
                priority: Some(TicketPriority::Low),
                ..TicketPatch::default()
            },
        )
        .await
        .at("lower priority")?;
    ensure_eq!(d3.priority, TicketPriority::Low, "lowered");
    let s = sla(&f, &ctx, d.id).await?;
    ensure_eq!(s.policy, Some(p_fallback), "back to the fallback");
    ensure_eq!(
        s.target(SlaTargetKind::Resolution),
        None,
        "resolution dropped"
    );
    inactive = f
        .tickets
        .sla_policies()
        .update(
            &f.admin,
            inactive.id,
            inactive.version,
            NewSlaPolicy::new("on", cal)
                .conditions(any)
                .targets(targets(Some(1), None, None)),
        )
        .await
        .at("activate")?;
    let e = new_ticket(&f, &ctx, |n| n).await?;
    ensure_eq!(
        sla(&f, &ctx, e.id).await?.policy,
        Some(inactive.id),
        "activated"
    );
    ensure_eq!(
        sla(&f, &ctx, a.id).await?.policy,
        Some(p_urgent),
        "old tickets keep theirs"
    );
    Ok(())
}

/// First response is met by a public agent reply, not by an internal note or a requester
/// comment; its due time is cleared then and `next_due_at` moves to the next target.
/// Next response starts on a requester comment without overriding a pending first
/// response, and is met by the next agent reply.
pub async fn responses(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    catch_all_policy(&f, always(), targets(Some(60), Some(30), Some(600))).await?;
    let (ctx, clock) = at_time(&f.rep, t0());
    let x = new_ticket(&f, &ctx, |n| n).await?;
    clock.advance(Duration::minutes(5));
    comment(&f, &ctx, x.id, NewComment::internal("hm"), "note").await?;
    let s = sla(&f, &ctx, x.id).await?;
    ensure_eq!(
        s.target(SlaTargetKind::FirstResponse)
            .and_then(|t| t.achieved_at),
        None,
        "not by a note"
    );
    comment(
        &f,
        &ctx,
        x.id,
        NewComment::from_requester("hello?"),
        "requester",
    )
    .await?;
    let s = sla(&f, &ctx, x.id).await?;
    ensure_eq!(
        s.target(SlaTargetKind::FirstResponse)
            .and_then(|t| t.achieved_at),
        None,
        "not by the requester"
    );
    ensure_eq!(
        due(&s, SlaTargetKind::NextResponse),
        Some(t0_plus(35)),
        "next response started by the requester"
    );
    ensure_eq!(
        due(&s, SlaTargetKind::FirstResponse),
        Some(t0_plus(60)),
        "first response not overridden"
    );
    ensure_eq!(s.next_due_at, Some(t0_plus(35)), "earliest");
    clock.advance(Duration::minutes(10));
    comment(
        &f,
        &ctx,
        x.id,
        NewComment::from_requester("again"),
        "requester 2",
    )
    .await?;
    ensure_eq!(
        due(&sla(&f, &ctx, x.id).await?, SlaTargetKind::NextResponse),
        Some(t0_plus(35)),
        "a second message keeps the running next response"
    );
    clock.advance(Duration::minutes(5));
    let replied = t0_plus(20);
    comment(&f, &ctx, x.id, NewComment::reply("on it"), "reply").await?;
    let s = sla(&f, &ctx, x.id).await?;
    for k in [SlaTargetKind::FirstResponse, SlaTargetKind::NextResponse] {
        let t = target(&s, k)?;
        ensure_eq!(
            (t.achieved_at, t.due_at, t.breached_at),
            (Some(replied), None, None),
            "{k:?} met"
        );
    }
    ensure_eq!(s.next_due_at, Some(t0_plus(600)), "resolution is next");
    clock.advance(Duration::minutes(100));
    comment(
        &f,
        &ctx,
        x.id,
        NewComment::from_requester("and now?"),
        "requester 3",
    )
    .await?;
    let s = sla(&f, &ctx, x.id).await?;
    let nr = target(&s, SlaTargetKind::NextResponse)?;
    ensure_eq!(
        (nr.due_at, nr.achieved_at),
        (Some(t0_plus(150)), None),
        "a new next-response cycle"
    );
    ensure_eq!(s.next_due_at, Some(t0_plus(150)), "next due");
    clock.advance(Duration::minutes(40));
    comment(&f, &ctx, x.id, NewComment::reply("sorry"), "late reply").await?;
    let s = sla(&f, &ctx, x.id).await?;
    let nr = target(&s, SlaTargetKind::NextResponse)?;
    ensure_eq!(nr.achieved_at, Some(t0_plus(160)), "met late");
    ensure_eq!(
        nr.breached_at,
        Some(t0_plus(150)),
        "breached stays breached"
    );
    ensure_eq!(
        sla_events(store, &f.admin, x.id).await?,
        vec!["ticket.sla_breached:next_response".to_owned()],
        "the command that recorded the breach emitted it"
    );
    Ok(())
}

/// Pending and on-hold pause resolution (and next response) and move the due time by
/// exactly the paused business minutes; solve achieves; reopen resumes from the consumed
/// time; delete stops everything.
pub async fn pause_resume(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    catch_all_policy(&f, office(), targets(None, None, Some(240))).await?;
    let (ctx, clock) = at_time(&f.rep, t0()); // Monday 09:00
    let x = new_ticket(&f, &ctx, |n| n).await?;
    let at = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2027, 4, d, h, m, 0).unwrap();
    ensure_eq!(
        due(&sla(&f, &ctx, x.id).await?, SlaTargetKind::Resolution),
        Some(at(5, 13, 0)),
        "due"
    );
    clock.set(at(5, 10, 0));
    let x = set_status(&f, &ctx, &x, TicketStatus::Pending, "pending").await?;
    let s = sla(&f, &ctx, x.id).await?;
    ensure_eq!(
        (s.next_due_at, due(&s, SlaTargetKind::Resolution)),
        (None, None),
        "paused"
    );
    // Paused from 10:00 to 16:30: 390 business minutes.
    clock.set(at(5, 16, 30));
    let x = set_status(&f, &ctx, &x, TicketStatus::Open, "open").await?;
    // 180 minutes left from 16:30: 30 on Monday, 150 on Tuesday: 11:30.
    ensure_eq!(
        due(&sla(&f, &ctx, x.id).await?, SlaTargetKind::Resolution),
        Some(at(6, 11, 30)),
        "moved by the paused business minutes"
    );
    clock.set(at(6, 9, 30));
    let x = set_status(&f, &ctx, &x, TicketStatus::OnHold, "on hold").await?;
    clock.set(at(6, 10, 0)); // 30 business minutes on hold
    let x = set_status(&f, &ctx, &x, TicketStatus::Open, "open 2").await?;
    ensure_eq!(
        due(&sla(&f, &ctx, x.id).await?, SlaTargetKind::Resolution),
        Some(at(6, 12, 0)),
        "on hold pauses too"
    );
    clock.set(at(6, 11, 0));
    let x = set_status(&f, &ctx, &x, TicketStatus::Solved, "solve").await?;
    let s = sla(&f, &ctx, x.id).await?;
    let r = target(&s, SlaTargetKind::Resolution)?;
    ensure_eq!(
        (r.achieved_at, r.due_at, s.next_due_at),
        (Some(at(6, 11, 0)), None, None),
        "achieved"
    );
    clock.set(at(7, 9, 0));
    let x = set_status(&f, &ctx, &x, TicketStatus::Open, "reopen").await?;
    let s = sla(&f, &ctx, x.id).await?;
    let r = target(&s, SlaTargetKind::Resolution)?;
    // 60 minutes were left when it was solved.
    ensure_eq!(
        (r.achieved_at, r.due_at),
        (None, Some(at(7, 10, 0))),
        "reopen resumes from consumed time"
    );
    let x = f.tickets.delete(&ctx, x.id, x.version).await.at("delete")?;
    let s = f.tickets.sla(&f.admin, x.id).await;
    ensure!(
        s.is_err(),
        "a deleted ticket's SLA is not readable through get"
    );
    let page = f
        .tickets
        .breached(&f.admin, at(30, 0, 0), None, 100)
        .await
        .at("breached")?;
    ensure!(
        page.items.iter().all(|s| s.ticket != x.id),
        "deleted tickets are stopped"
    );
    let x = f
        .tickets
        .restore(&ctx, x.id, x.version)
        .await
        .at("restore")?;
    ensure!(
        sla(&f, &ctx, x.id).await?.next_due_at.is_some(),
        "restored tickets run again"
    );
    Ok(())
}

/// breached() and at_risk() return the right tickets by due time across pages, only
/// visible ones.
pub async fn due_queries(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    catch_all_policy(&f, always(), targets(Some(60), None, None)).await?;
    let (ctx, clock) = at_time(&f.rep, t0());
    let mut ids = vec![];
    for _ in 0..7 {
        ids.push(new_ticket(&f, &ctx, |n| n).await?.id); // due t0 + 60 + i*10
        clock.advance(Duration::minutes(10));
    }
    let (ctx_admin, _) = at_time(&f.admin, t0());
    let other = new_ticket(&f, &ctx_admin, |n| n).await?.id; // not visible to the rep
    let now = t0_plus(90); // tickets 0..=3 due at or before now
    let got = due_tickets(
        async |cursor| f.tickets.breached(&f.rep, now, cursor, 2).await,
        "breached",
    )
    .await?;
    ensure_eq!(got, ids[..4].to_vec(), "breached for the rep, by due time");
    let all = f
        .tickets
        .breached(&f.admin, now, None, 100)
        .await
        .at("breached admin")?;
    ensure_eq!(all.items.len(), 5, "the admin sees the other team's ticket");
    ensure!(
        all.items.iter().any(|s| s.ticket == other),
        "including the admin's ticket"
    );
    let window = Duration::minutes(25);
    let got = due_tickets(
        async |cursor| f.tickets.at_risk(&f.rep, now, window, cursor, 1).await,
        "at risk",
    )
    .await?;
    ensure_eq!(got, ids[4..6].to_vec(), "at risk in (now, now+window]");
    // Replying removes a ticket from both.
    clock.set(now);
    comment(&f, &ctx, ids[0], NewComment::reply("late"), "reply").await?;
    let p = f
        .tickets
        .breached(&f.rep, now, None, 100)
        .await
        .at("breached 2")?;
    ensure_eq!(p.items.len(), 3, "met targets leave the breach list");
    Ok(())
}

/// sweep() records each breach and warning once, even when run twice or by four
/// concurrent tasks; a target met before its due time is never reported.
pub async fn sweep_once(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    catch_all_policy(&f, always(), targets(Some(60), None, Some(600))).await?;
    let (ctx, clock) = at_time(&f.rep, t0());
    let a = new_ticket(&f, &ctx, |n| n).await?; // fr due t0+60
    let b = new_ticket(&f, &ctx, |n| n).await?;
    clock.advance(Duration::minutes(59));
    comment(&f, &ctx, b.id, NewComment::reply("in time"), "reply b").await?;
    let c = new_ticket(&f, &ctx, |n| n).await?; // fr due t0+119
    let now = t0_plus(70);
    let window = Duration::minutes(60);
    let mut tasks = vec![];
    for _ in 0..4 {
        let tk = f.tickets.clone();
        let admin = f.admin.clone();
        tasks.push(tokio::spawn(
            async move { tk.sweep(&admin, now, window).await },
        ));
    }
    let mut breaches = 0;
    let mut warnings = 0;
    for t in tasks {
        let r = t
            .await
            .map_err(|e| Failure::new(format!("join: {e}")))?
            .at("sweep")?;
        breaches += r.breaches;
        warnings += r.warnings;
    }
    let again = f
        .tickets
        .sweep(&f.admin, now, window)
        .await
        .at("sweep again")?;
    ensure_eq!(
        (again.breaches, again.warnings),
        (0, 0),
        "nothing new the second time"
    );
    ensure_eq!(
        (breaches, warnings),
        (1, 1),
        "one breach (a) and one warning (c)"
    );
    ensure_eq!(
        sla_events(store, &f.admin, a.id).await?,
        vec!["ticket.sla_breached:first_response".to_owned()],
        "a"
    );
    ensure_eq!(
        sla_events(store, &f.admin, b.id).await?,
        Vec::<String>::new(),
        "b replied in time"
    );
    ensure_eq!(
        sla_events(store, &f.admin, c.id).await?,
        vec!["ticket.sla_warning:first_response".to_owned()],
        "c"
    );
    let s = sla(&f, &f.admin, a.id).await?;
    let fr = target(&s, SlaTargetKind::FirstResponse)?;
    ensure_eq!(
        fr.breached_at,
        Some(t0_plus(60)),
        "breached_at is the due instant"
    );
    // A late reply achieves but keeps the breach, and emits nothing more.
    clock.set(now);
    comment(&f, &ctx, a.id, NewComment::reply("sorry"), "late reply").await?;
    let s = sla(&f, &f.admin, a.id).await?;
    let fr = target(&s, SlaTargetKind::FirstResponse)?;
    ensure_eq!(
        (fr.achieved_at, fr.breached_at),
        (Some(now), Some(t0_plus(60))),
        "achieved, still breached"
    );
    let later = f
        .tickets
        .sweep(&f.admin, t0_plus(200), window)
        .await
        .at("later sweep")?;
    ensure_eq!(later.breaches, 1, "c breaches later, once");
    ensure_eq!(
        sla_events(store, &f.admin, a.id).await?.len(),
        1,
        "a: still one event"
    );
    Ok(())
}

/// Bad calendars, policy targets <= 0 and unknown calendars are named Validation errors,
/// nothing is written; only admins and managers save.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    const TABLES: [&str; 3] = [CALENDAR_TABLE, POLICY_TABLE, EVENTS_TABLE];
    let before = row_counts(store, &f.admin, TABLES).await?;
    expect_validation(
        f.tickets
            .sla_calendars()
            .create(&f.admin, "x", CalendarSpec::new("Mars/Olympus"))
            .await,
        "time_zone",
        "unknown zone",
    )?;
    expect_validation(
        f.tickets
            .sla_calendars()
            .create(&f.admin, " ", always())
            .await,
        "name",
        "blank name",
    )?;
    let cal = calendar(&f, always()).await?.id;
    let mid = row_counts(store, &f.admin, TABLES).await?;
    let mut expected = before.clone();
    *expected.entry(CALENDAR_TABLE).or_default() += 1;
    *expected.entry(EVENTS_TABLE).or_default() += 1;
    ensure_eq!(mid, expected, "only the good calendar was written");
    let bad = NewSlaPolicy {
        name: "p".into(),
        ..catch_all(cal, targets(Some(0), Some(-5), Some(10)))
    };
    let r = f.tickets.sla_policies().create(&f.admin, bad.clone()).await;
    expect_validation(r, "targets.first_response", "zero")?;
    let r = f.tickets.sla_policies().create(&f.admin, bad.clone()).await;
    expect_validation(r, "targets.next_response", "negative")?;
    let r = f
        .tickets
        .sla_policies()
        .create(
            &f.admin,
            NewSlaPolicy {
                calendar: CalendarId::new(),
                targets: targets(Some(5), None, None),
                ..bad.clone()
            },
        )
        .await;
    expect_validation(r, "calendar", "unknown calendar")?;
    let r = f
        .tickets
        .sla_policies()
        .create(
            &f.rep,
            NewSlaPolicy {
                targets: targets(Some(5), None, None),
                ..bad
            },
        )
        .await;
    ensure!(
        matches!(r, Err(crmkit_core::Error::PermissionDenied(_))),
        "a rep may not save policies: {r:?}"
    );
    ensure_eq!(
        row_counts(store, &f.admin, TABLES).await?,
        mid,
        "nothing written"
    );
    let bad_window = f
        .tickets
        .at_risk(&f.admin, t0(), Duration::minutes(-1), None, 10)
        .await;
    expect_validation(bad_window, "window", "negative window")?;
    Ok(())
}

suite_checks! {
    /// Every check of this module by name.
    names: tickets_sla_check_names,
    checks: [
        policy_selection,
        responses,
        pause_resume,
        due_queries,
        sweep_once,
        bad_input,
    ],
}
