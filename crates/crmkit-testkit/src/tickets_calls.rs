//! Conformance checks of the call-centre path (`Tickets::record_inbound_call`) on any
//! backend, over the store of [`crate::tickets::modules`].
//!
//! [`atomicity`] injects faults into the backend: do not run it concurrently with other
//! checks on the same store.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crmkit_activities::rows::{ACTIVITY_TABLE, FOLLOWUP_TABLE, RELATION_TABLE};
use crmkit_activities::{ActivityDetails, TimelineEntry};
use crmkit_contacts::{NewContact, NewOrganization, PhoneInput};
use crmkit_core::event::{AUDIT_TABLE, EVENTS_TABLE};
use crmkit_core::{ContactId, Ctx, Error, OrganizationId, RecordRef, Store, UserId};
use crmkit_tickets::rows::{HISTORY_TABLE, TICKET_TABLE};
use crmkit_tickets::{
    CallRouting, Channel, HistoryKind, InboundCall, InboundCallResult, NewTicket, Ticket,
    TicketPriority, TicketStatus,
};

use crate::check::{At, expect_validation};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::{at_time, fail_at_every_write_counting, record_event_kinds, row_counts};
use crate::tickets::{Fixture, setup};

/// The contact's number, international.
const INTL: &str = "+44 20 7946 0958";
/// The same number, national (needs region `GB`).
const NATIONAL: &str = "020 7946 0958";
/// The number in E.164.
const E164: &str = "+442079460958";
/// A number nobody has.
const UNKNOWN: &str = "+44 20 7946 0959";
/// The called number.
const LINE: &str = "+44 20 7946 0000";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn gb() -> CallRouting {
    CallRouting {
        default_region: Some("GB".into()),
        ..CallRouting::default()
    }
}

fn inbound(from: &str, at: DateTime<Utc>) -> InboundCall {
    let mut c = InboundCall::new(from, LINE, at);
    c.duration_secs = 95;
    c
}

const TABLES: [&str; 7] = [
    TICKET_TABLE,
    HISTORY_TABLE,
    ACTIVITY_TABLE,
    RELATION_TABLE,
    FOLLOWUP_TABLE,
    EVENTS_TABLE,
    AUDIT_TABLE,
];

/// A contact with `phone` visible to team X, created by `ctx`.
async fn caller(
    f: &Fixture,
    ctx: &Ctx,
    phone: PhoneInput,
    org: Option<OrganizationId>,
) -> CheckResult<ContactId> {
    f.team_x_contact(ctx, |c| NewContact {
        organization: org,
        ..c.phone(phone)
    })
    .await
}

async fn call(
    f: &Fixture,
    ctx: &Ctx,
    c: InboundCall,
    routing: CallRouting,
) -> CheckResult<InboundCallResult> {
    f.tickets
        .record_inbound_call(ctx, c, routing)
        .await
        .at("record inbound call")
}

/// The ticket's timeline (through the ticket-aware activities API) shows the call.
async fn timeline_shows(f: &Fixture, ctx: &Ctx, r: &InboundCallResult) -> CheckResult {
    let acts = f.tickets.activities().at("activities")?;
    let tl = acts
        .timeline(ctx, &RecordRef::from(r.ticket.id), None, 50)
        .await
        .at("ticket timeline")?;
    ensure!(
        tl.items.iter().any(|e| matches!(
            e,
            TimelineEntry::Activity { activity } if activity.id == r.call.id
        )),
        "the ticket's timeline shows the call: {tl:?}"
    );
    ensure!(
        tl.items.iter().any(|e| matches!(
            e,
            TimelineEntry::Event { event } if event.kind == "ticket.call_logged"
        )),
        "the ticket's timeline shows ticket.call_logged"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// A known number written differently (national with a default region) finds the
/// contact and lands on its open ticket updated within the window, the most recently
/// updated one: the ticket is not written, the call is related to both, the ticket emits
/// `ticket.call_logged` and its timeline shows the call. Of two contacts with the
/// number, the earliest created is the caller.
pub async fn attach_to_open_ticket(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (rep, clock) = at_time(&f.rep, t0());
    let c = caller(&f, &rep, PhoneInput::new(INTL), None).await?;
    let _second = caller(&f, &rep, PhoneInput::national(NATIONAL, "GB"), None).await?;
    let older = f
        .tickets
        .create(&rep, NewTicket::new("older", c))
        .await
        .at("older ticket")?;
    clock.advance(Duration::hours(1));
    let newer = f
        .tickets
        .create(&rep, NewTicket::new("newer", c))
        .await
        .at("newer ticket")?;
    clock.advance(Duration::days(3));
    let r = call(&f, &rep, inbound(NATIONAL, rep.now()), gb()).await?;
    ensure_eq!(
        r.contact,
        Some(c),
        "the earliest created contact is the caller"
    );
    ensure!(!r.created && !r.reopened, "attached: {r:?}");
    ensure_eq!(
        r.ticket.id,
        newer.id,
        "the most recently updated open ticket"
    );
    ensure_eq!(r.ticket.version, newer.version, "the ticket is not written");
    let now = f.tickets.get(&rep, newer.id).await.at("get")?;
    ensure_eq!(now, newer, "the stored ticket is unchanged");
    ensure!(
        r.call.related.contains(&RecordRef::from(newer.id))
            && r.call.related.contains(&RecordRef::from(c)),
        "the call relates to the ticket and the caller: {:?}",
        r.call.related
    );
    ensure!(
        !r.call.related.contains(&RecordRef::from(older.id)),
        "not to the other ticket"
    );
    let ActivityDetails::Call(details) = &r.call.details else {
        return Err(Failure::new("the activity is a call"));
    };
    ensure_eq!(details.from, E164, "the call's number in E.164");
    ensure_eq!(details.duration_secs, 95, "duration kept");
    let ev = record_event_kinds(store, &f.admin, newer.id).await?;
    ensure_eq!(
        ev,
        vec!["ticket.created".to_owned(), "ticket.call_logged".into()],
        "events of the ticket"
    );
    timeline_shows(&f, &rep, &r).await?;
    // The international form finds the same caller without a region.
    let r2 = call(&f, &rep, inbound(INTL, rep.now()), CallRouting::default()).await?;
    ensure_eq!(
        (r2.contact, r2.ticket.id, r2.created),
        (Some(c), newer.id, false),
        "international form"
    );
    Ok(())
}

/// Outside the window, or with only solved and closed tickets, a call opens a new phone
/// ticket with the caller as requester (organization from the contact), the routing's
/// priority, and a default subject.
pub async fn new_ticket_for_known_caller(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (rep, clock) = at_time(&f.rep, t0());
    let mut o = NewOrganization::named("Navy");
    o.team = Some(f.team_x);
    let org = f
        .contacts
        .organizations()
        .create(&rep, o)
        .await
        .at("organization")?
        .id;
    let c = caller(&f, &rep, PhoneInput::new(INTL), Some(org)).await?;
    let stale = f
        .tickets
        .create(&rep, NewTicket::new("stale", c))
        .await
        .at("stale ticket")?;
    clock.advance(Duration::days(8));
    let routing = CallRouting {
        priority: TicketPriority::High,
        ..gb()
    };
    let r = call(&f, &rep, inbound(NATIONAL, rep.now()), routing.clone()).await?;
    ensure!(
        r.created && r.ticket.id != stale.id,
        "outside the window: new"
    );
    ensure_eq!(r.contact, Some(c), "caller found");
    ensure_eq!(r.ticket.requester, Some(c), "requester");
    ensure_eq!(
        r.ticket.organization,
        Some(org),
        "organization from the contact"
    );
    ensure_eq!(r.ticket.channel, Channel::Phone, "channel");
    ensure_eq!(r.ticket.priority, TicketPriority::High, "priority");
    ensure_eq!(r.ticket.status, TicketStatus::New, "status");
    ensure_eq!(r.ticket.subject, format!("Call from {E164}"), "subject");
    ensure_eq!(r.ticket.assignee, Some(rep.actor().user), "assignee");
    ensure!(
        r.call.related.contains(&RecordRef::from(r.ticket.id))
            && r.call.related.contains(&RecordRef::from(c)),
        "related: {:?}",
        r.call.related
    );
    let ev = record_event_kinds(store, &f.admin, r.ticket.id).await?;
    ensure_eq!(
        ev,
        vec!["ticket.created".to_owned(), "ticket.call_logged".into()],
        "events of the new ticket"
    );
    timeline_shows(&f, &rep, &r).await?;
    // Solve and close every open ticket: the next call opens yet another one.
    let solved = f
        .tickets
        .set_status(&rep, r.ticket.id, r.ticket.version, TicketStatus::Solved)
        .await
        .at("solve")?;
    let s = f.tickets.get(&rep, stale.id).await.at("get stale")?;
    let s = f
        .tickets
        .set_status(&rep, s.id, s.version, TicketStatus::Solved)
        .await
        .at("solve stale")?;
    f.tickets
        .set_status(&rep, s.id, s.version, TicketStatus::Closed)
        .await
        .at("close stale")?;
    clock.advance(Duration::minutes(5));
    let r2 = call(&f, &rep, inbound(INTL, rep.now()), CallRouting::default()).await?;
    ensure!(
        r2.created && r2.ticket.id != solved.id && r2.ticket.id != stale.id,
        "only solved or closed tickets: new ({r2:?})"
    );
    ensure_eq!(r2.ticket.number, r.ticket.number + 1, "next number");
    Ok(())
}

/// A call on a pending ticket (waiting on the customer) moves it back to open, with a
/// history entry and a status event.
pub async fn pending_reopened(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (rep, clock) = at_time(&f.rep, t0());
    let c = caller(&f, &rep, PhoneInput::new(INTL), None).await?;
    let t = f
        .tickets
        .create(&rep, NewTicket::new("waiting", c))
        .await
        .at("ticket")?;
    let t = f
        .tickets
        .set_status(&rep, t.id, t.version, TicketStatus::Pending)
        .await
        .at("pending")?;
    clock.advance(Duration::days(2));
    let r = call(&f, &rep, inbound(INTL, rep.now()), CallRouting::default()).await?;
    ensure!(!r.created && r.reopened, "reopened: {r:?}");
    ensure_eq!(r.ticket.id, t.id, "same ticket");
    ensure_eq!(r.ticket.status, TicketStatus::Open, "open again");
    ensure_eq!(r.ticket.version, t.version + 1, "one write");
    ensure_eq!(
        f.tickets.get(&rep, t.id).await.at("get")?,
        r.ticket,
        "stored as returned"
    );
    let h = f.tickets.history(&rep, t.id).await.at("history")?;
    let last = h.last().ok_or_else(|| Failure::new("history"))?;
    ensure_eq!(
        (last.kind, last.from_status, last.to_status),
        (
            HistoryKind::Status,
            Some(TicketStatus::Pending),
            TicketStatus::Open
        ),
        "history entry"
    );
    ensure_eq!(
        last.reason.as_deref(),
        Some("the requester called"),
        "reason"
    );
    let ev = record_event_kinds(store, &f.admin, t.id).await?;
    ensure_eq!(
        ev[ev.len() - 2..].to_vec(),
        vec![
            "ticket.status_changed".to_owned(),
            "ticket.call_logged".into()
        ],
        "events"
    );
    // An on-hold ticket keeps its status.
    let t2 = f
        .tickets
        .set_status(&rep, t.id, r.ticket.version, TicketStatus::OnHold)
        .await
        .at("on hold")?;
    let r2 = call(&f, &rep, inbound(INTL, rep.now()), CallRouting::default()).await?;
    ensure!(!r2.created && !r2.reopened, "attached: {r2:?}");
    ensure_eq!(r2.ticket, t2, "on hold stays on hold");
    Ok(())
}

/// An unknown number opens a ticket without requester that keeps the raw number, and the
/// call relates to no contact; a number that does not parse is kept as given.
pub async fn unknown_and_unparsable_numbers(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (rep, _) = at_time(&f.rep, t0());
    caller(&f, &rep, PhoneInput::new(INTL), None).await?;
    let raw = format!("  {UNKNOWN} ");
    let r = call(&f, &rep, inbound(&raw, rep.now()), gb()).await?;
    ensure!(r.created && r.contact.is_none(), "new, no caller: {r:?}");
    ensure_eq!(r.ticket.requester, None, "no requester");
    ensure_eq!(
        r.ticket.requester_phone.as_deref(),
        Some(UNKNOWN),
        "raw number kept (trimmed)"
    );
    ensure_eq!(r.ticket.channel, Channel::Phone, "channel");
    ensure_eq!(r.ticket.subject, "Call from +442079460959", "subject");
    ensure_eq!(
        r.call.related,
        vec![RecordRef::from(r.ticket.id)],
        "the call relates only to the ticket"
    );
    timeline_shows(&f, &rep, &r).await?;

    let mut weird = inbound("ext. 12 (withheld)", rep.now());
    weird.subject = Some("Withheld caller".into());
    weird.notes = Some("asked about invoices".into());
    let r = call(&f, &rep, weird, gb()).await?;
    ensure!(r.created && r.contact.is_none(), "new: {r:?}");
    ensure_eq!(
        r.ticket.requester_phone.as_deref(),
        Some("ext. 12 (withheld)"),
        "unparsable number kept raw"
    );
    ensure_eq!(r.ticket.subject, "Withheld caller", "subject given");
    let ActivityDetails::Call(d) = &r.call.details else {
        return Err(Failure::new("a call"));
    };
    ensure_eq!(
        (d.from.as_str(), d.notes.as_deref()),
        ("ext. 12 (withheld)", Some("asked about invoices")),
        "the call keeps the raw number and the notes"
    );
    let r = call(&f, &rep, inbound("ext. 12 (withheld)", rep.now()), gb()).await?;
    ensure!(r.created, "an unparsable number never attaches");
    Ok(())
}

/// Bad input is a Validation error naming every bad field, and nothing is written.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (rep, _) = at_time(&f.rep, t0());
    caller(&f, &rep, PhoneInput::new(INTL), None).await?;
    let before = row_counts(store, &f.admin, TABLES).await?;
    let mut c = inbound(INTL, rep.now());
    c.to = "  ".into();
    c.notes = Some("x".repeat(crmkit_activities::MAX_TEXT + 1));
    c.agent = Some(UserId::new());
    c.subject = Some("s".repeat(crmkit_tickets::MAX_SUBJECT + 1));
    c.recording_ref = Some(String::new());
    let routing = CallRouting {
        reopen_window: Duration::zero(),
        default_region: Some("XX".into()),
        ..CallRouting::default()
    };
    let v = match f.tickets.record_inbound_call(&rep, c, routing).await {
        Err(Error::Validation(v)) => v,
        other => return Err(Failure::new(format!("expected Validation, got {other:?}"))),
    };
    for field in [
        "to",
        "notes",
        "agent",
        "subject",
        "recording_ref",
        "reopen_window",
        "default_region",
    ] {
        ensure!(v.has(field), "bad {field} reported: {v:?}");
    }
    let bad =
        |c: InboundCall, routing: CallRouting| f.tickets.record_inbound_call(&rep, c, routing);
    expect_validation(
        bad(inbound("", rep.now()), CallRouting::default()).await,
        "from",
        "an empty from",
    )?;
    expect_validation(
        bad(inbound(&"1".repeat(65), rep.now()), CallRouting::default()).await,
        "from",
        "an over-long from",
    )?;
    expect_validation(
        bad(
            inbound(INTL, rep.now()),
            CallRouting {
                reopen_window: Duration::days(-1),
                ..CallRouting::default()
            },
        )
        .await,
        "reopen_window",
        "a negative window",
    )?;
    expect_validation(
        f.tickets
            .record_inbound_call(
                &f.admin,
                inbound(UNKNOWN, rep.now()),
                CallRouting {
                    queue: Some(crmkit_core::TeamId::new()),
                    ..CallRouting::default()
                },
            )
            .await,
        "queue",
        "a new ticket's queue that is not a team",
    )?;
    ensure_eq!(
        row_counts(store, &f.admin, TABLES).await?,
        before,
        "nothing written by bad input"
    );
    let mut fine = inbound(INTL, rep.now());
    fine.agent = Some(f.rep2.actor().user);
    let r = call(&f, &rep, fine, CallRouting::default()).await?;
    let ActivityDetails::Call(d) = &r.call.details else {
        return Err(Failure::new("a call"));
    };
    ensure_eq!(d.agent, Some(f.rep2.actor().user), "the agent is recorded");
    ensure_eq!(r.call.owner, rep.actor().user, "the actor owns the call");
    Ok(())
}

/// A fault at every write of the command leaves nothing behind (ticket, history,
/// activity, relation, follow-up, events, audit), on the create path and on the
/// pending-reopen path; once no fault hits, the command commits whole.
pub async fn atomicity(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (rep, clock) = at_time(&f.rep, t0());
    let c = caller(&f, &rep, PhoneInput::new(INTL), None).await?;
    let paths = ["create", "reopen"];
    let mut made: Option<Ticket> = None;
    for path in paths {
        let (n, r) = fail_at_every_write_counting(store, &f.admin, &TABLES, path, async || {
            f.tickets
                .record_inbound_call(&rep, inbound(INTL, rep.now()), CallRouting::default())
                .await
        })
        .await?;
        ensure!(n > 4, "{path}: several writes ({n})");
        match path {
            "create" => {
                ensure!(r.created, "created");
                ensure_eq!(r.contact, Some(c), "caller");
                let fu = f
                    .tickets
                    .activities()
                    .at("activities")?
                    .follow_up(&rep, &RecordRef::from(r.ticket.id))
                    .await
                    .at("ticket follow-up")?;
                ensure!(
                    fu.last_activity_at.is_some(),
                    "the ticket's follow-up row knows the call: {fu:?}"
                );
                let t = f
                    .tickets
                    .set_status(&rep, r.ticket.id, r.ticket.version, TicketStatus::Pending)
                    .await
                    .at("pending")?;
                made = Some(t);
                clock.advance(Duration::hours(1));
            }
            _ => {
                let t = made.clone().ok_or_else(|| Failure::new("ticket"))?;
                ensure!(r.reopened && r.ticket.id == t.id, "reopened: {r:?}");
                ensure_eq!(
                    f.tickets.get(&rep, t.id).await.at("get")?.status,
                    TicketStatus::Open,
                    "stored open"
                );
            }
        }
    }
    Ok(())
}

/// A contact of another tenant with the same number is never found; a caller the actor
/// cannot see is treated as unknown (the ticket gets no requester and keeps the raw
/// number), and so is the caller's open ticket the actor cannot see. The call is still
/// linked by activities to the records with the number, as every logged call is.
pub async fn tenants_and_visibility(store: &Store) -> CheckResult {
    let a = setup(store).await?;
    let b = setup(store).await?;
    let (b_rep, _) = at_time(&b.rep, t0());
    let theirs = caller(&b, &b_rep, PhoneInput::new(INTL), None).await?;
    b.tickets
        .create(&b_rep, NewTicket::new("theirs", theirs))
        .await
        .at("other tenant's ticket")?;
    let (a_rep, _) = at_time(&a.rep, t0());
    let r = call(
        &a,
        &a_rep,
        inbound(INTL, a_rep.now()),
        CallRouting::default(),
    )
    .await?;
    ensure!(
        r.created && r.contact.is_none() && r.ticket.requester.is_none(),
        "another tenant's contact is never found: {r:?}"
    );
    ensure_eq!(
        r.call.related,
        vec![RecordRef::from(r.ticket.id)],
        "nor linked"
    );

    // Visibility: the contact and its ticket belong to team X; rep_y cannot see them.
    let (rep, _) = at_time(&a.rep, t0());
    let c = caller(&a, &rep, PhoneInput::new(UNKNOWN), None).await?;
    let own = a
        .tickets
        .create(&rep, NewTicket::new("team x", c))
        .await
        .at("team x ticket")?;
    let (rep_y, _) = at_time(&a.rep_y, t0() + Duration::hours(1));
    let r = call(
        &a,
        &rep_y,
        inbound(UNKNOWN, rep_y.now()),
        CallRouting::default(),
    )
    .await?;
    ensure!(
        r.created && r.ticket.id != own.id,
        "an invisible caller's ticket is not attached to"
    );
    ensure_eq!(r.contact, None, "an invisible contact is not the caller");
    ensure_eq!(r.ticket.requester, None, "no requester");
    ensure_eq!(
        r.ticket.requester_phone.as_deref(),
        Some(UNKNOWN),
        "the raw number kept"
    );
    ensure!(
        r.call.related.contains(&RecordRef::from(r.ticket.id)),
        "the call is on the new ticket"
    );
    ensure!(
        !r.call.related.contains(&RecordRef::from(c)),
        "the call is not linked to a contact the actor may not see: {:?}",
        r.call.related
    );
    // rep (team X) sees the contact: its own ticket gets the next call.
    let r = call(
        &a,
        &rep,
        inbound(UNKNOWN, rep.now()),
        CallRouting::default(),
    )
    .await?;
    ensure_eq!(
        (r.contact, r.ticket.id, r.created),
        (Some(c), own.id, false),
        "a visible caller's ticket"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name. [`atomicity`] injects faults into the backend:
    /// run it alone.
    names: tickets_calls_check_names,
    checks: [
        attach_to_open_ticket,
        new_ticket_for_known_caller,
        pending_reopened,
        unknown_and_unparsable_numbers,
        bad_input,
        atomicity,
        tenants_and_visibility,
    ],
}
