//! A support desk: a business calendar and two SLA policies, a ticket opened by email and
//! one by an inbound call, a reply, a pause while waiting on the customer, a breach found
//! by `breached(now)`, and a satisfaction rating.
//!
//! `cargo run --example support_desk` (in memory; the clock is set by hand so the run is
//! the same every time).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc, Weekday};
use crmkit::contacts::{NewContact, PhoneInput};
use crmkit::tickets::calendar::{CalendarSpec, Interval};
use crmkit::tickets::sla::{NewSlaPolicy, SlaConditions, SlaTargetKind, SlaTargets};
use crmkit::tickets::{
    CallRouting, Channel, InboundCall, NewComment, NewTicket, TicketPriority, TicketStatus,
};
use crmkit::{Actor, Crm, Ctx, Error, ManualClock, Role, TenantId, UserId, UserInput};

fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    // March 2027 in Berlin is UTC+1 until the 28th.
    Utc.with_ymd_and_hms(2027, 3, d, h - 1, m, 0)
        .single()
        .expect("a valid time")
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::Berlin)
        .format("%a %d %b %H:%M")
        .to_string()
}

fn due(t: Option<DateTime<Utc>>) -> String {
    t.map(local).unwrap_or_else(|| "-".into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let crm = Crm::in_memory()?;
    let tenant = TenantId::new();
    let (admin, agent) = (UserId::new(), UserId::new());
    // Monday 1 March 2027, 09:00 in Berlin.
    let clock = Arc::new(ManualClock::new(at(1, 9, 0)));
    // Bootstrap: the host's first admin (`Ctx::new` trusts the host) puts the users; every
    // request context after that comes from the directory (`ctx_for`).
    let bootstrap = Ctx::new(tenant, Actor::new(admin, [Role::Admin], []))?;
    for (id, name, email, role) in [
        (admin, "Alex Admin", "alex@example.com", Role::Admin),
        (agent, "Sam Agent", "sam@example.com", Role::Manager),
    ] {
        crm.directory()
            .put_user(
                &bootstrap,
                UserInput::new(id, name, email, role).time_zone("Europe/Berlin"),
            )
            .await?;
    }
    let ctx = crm
        .directory()
        .ctx_for(tenant, agent)
        .await?
        .with_clock(clock.clone());
    let tickets = crm.tickets();

    // Office hours in Berlin, Monday to Friday 09:00-12:30 and 13:30-17:00.
    let mut spec = CalendarSpec::new("Europe/Berlin");
    for d in [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ] {
        *spec.hours.get_mut(d) = vec![Interval::hm(9, 0, 12, 30), Interval::hm(13, 30, 17, 0)];
    }
    let cal = crm
        .sla_calendars()
        .create(&ctx, "Berlin office", spec)
        .await?;
    let urgent = SlaConditions {
        priorities: vec![TicketPriority::Urgent, TicketPriority::High],
        ..SlaConditions::default()
    };
    crm.sla_policies()
        .create(
            &ctx,
            NewSlaPolicy {
                name: "Priority".into(),
                position: 0,
                conditions: urgent,
                calendar: cal.id,
                targets: SlaTargets {
                    first_response: Some(30),
                    next_response: Some(60),
                    resolution: Some(4 * 60),
                },
                active: true,
            },
        )
        .await?;
    crm.sla_policies()
        .create(
            &ctx,
            NewSlaPolicy {
                name: "Standard".into(),
                position: 1,
                conditions: SlaConditions::default(),
                calendar: cal.id,
                targets: SlaTargets {
                    first_response: Some(4 * 60),
                    next_response: Some(8 * 60),
                    resolution: Some(3 * 8 * 60),
                },
                active: true,
            },
        )
        .await?;
    println!(
        "calendar {:?} and two policies: Priority (high, urgent), Standard",
        cal.name
    );

    let ada = crm
        .contacts()
        .create(
            &ctx,
            NewContact::named("Ada", "Lovelace")
                .email("ada@example.org")
                .phone(PhoneInput::new("+44 20 7946 0958")),
        )
        .await?;

    // A ticket by email, high priority: the Priority policy applies.
    let mail = tickets
        .create(
            &ctx,
            NewTicket::new("Invoice shows the wrong VAT", ada.id)
                .channel(Channel::Email)
                .priority(TicketPriority::High),
        )
        .await?;
    let sla = tickets.sla(&ctx, mail.id).await?.expect("a policy applies");
    println!(
        "\n#{} {:?} ({:?}, {:?}): first response due {}, resolution due {}",
        mail.number,
        mail.subject,
        mail.channel,
        mail.priority,
        due(sla
            .target(SlaTargetKind::FirstResponse)
            .and_then(|t| t.due_at)),
        due(sla.target(SlaTargetKind::Resolution).and_then(|t| t.due_at)),
    );

    // Ada calls ten minutes later: the number finds her, and the call joins her open ticket.
    clock.set(at(1, 9, 10));
    let call = tickets
        .record_inbound_call(
            &ctx,
            InboundCall::new("+442079460958", "+49 30 1234567", ctx.now()),
            CallRouting::default(),
        )
        .await?;
    println!(
        "inbound call from +442079460958: caller {:?}, ticket #{} ({})",
        call.contact.map(|_| "Ada Lovelace"),
        call.ticket.number,
        if call.created { "opened" } else { "attached" }
    );
    // An unknown number opens a phone ticket with the raw number kept.
    let stranger = tickets
        .record_inbound_call(
            &ctx,
            InboundCall::new("+1 202 555 0143", "+49 30 1234567", ctx.now()),
            CallRouting::default(),
        )
        .await?;
    println!(
        "inbound call from +1 202 555 0143: ticket #{} {:?}, requester phone {:?}",
        stranger.ticket.number, stranger.ticket.subject, stranger.ticket.requester_phone
    );

    // The agent replies at 09:20 (first response met), asks for the invoice number and
    // waits on the customer: the resolution clock pauses.
    clock.set(at(1, 9, 20));
    let replied = tickets
        .comment(
            &ctx,
            mail.id,
            NewComment::reply("Sorry about that! Which invoice number is it?"),
        )
        .await?
        .ticket;
    let pending = tickets
        .set_status(&ctx, mail.id, replied.version, TicketStatus::Pending)
        .await?;
    let sla = tickets.sla(&ctx, mail.id).await?.expect("sla");
    println!(
        "\n09:20 reply and pending: first response achieved at {}, resolution paused: {}",
        due(sla
            .target(SlaTargetKind::FirstResponse)
            .and_then(|t| t.achieved_at)),
        sla.target(SlaTargetKind::Resolution)
            .is_some_and(|t| t.paused)
    );

    // Ada answers the next morning: the ticket reopens, the clock resumes, and the
    // next-response target starts.
    clock.set(at(2, 10, 0));
    let answered = tickets
        .comment(
            &ctx,
            mail.id,
            NewComment::from_requester("It is invoice 2027-0042."),
        )
        .await?
        .ticket;
    let sla = tickets.sla(&ctx, mail.id).await?.expect("sla");
    println!(
        "Tue 10:00 Ada answers: status {:?}; resolution due {} (the pending night did not count), next response due {}",
        answered.status,
        due(sla.target(SlaTargetKind::Resolution).and_then(|t| t.due_at)),
        due(sla
            .target(SlaTargetKind::NextResponse)
            .and_then(|t| t.due_at)),
    );
    let _ = pending;

    // Nobody answers; at 14:00 the desk looks for breaches.
    clock.set(at(2, 14, 0));
    let report = tickets.sweep(&ctx, ctx.now(), TimeDelta::hours(1)).await?;
    println!(
        "\nTue 14:00 sweep: {} breach(es), {} warning(s) recorded",
        report.breaches, report.warnings
    );
    for t in tickets.breached(&ctx, ctx.now(), None, 50).await?.items {
        let ticket = tickets.get(&ctx, t.ticket).await?;
        let late: Vec<String> = t
            .targets
            .iter()
            .filter(|x| x.breached_at.is_some())
            .map(|x| format!("{:?} (due {})", x.kind, due(x.due_at)))
            .collect();
        println!(
            "  breached: #{} {:?}: {}",
            ticket.number,
            ticket.subject,
            late.join(", ")
        );
    }

    // The agent fixes it and solves the ticket; Ada rates the help.
    clock.set(at(2, 14, 30));
    let fixed = tickets
        .comment(
            &ctx,
            mail.id,
            NewComment::reply("Corrected invoice attached. Sorry for the wait."),
        )
        .await?
        .ticket;
    let solved = tickets
        .set_status(&ctx, mail.id, fixed.version, TicketStatus::Solved)
        .await?;
    let rating = tickets
        .rate(
            &ctx,
            solved.id,
            4,
            Some("Quick once it was picked up.".into()),
        )
        .await?;
    println!(
        "\nsolved #{} at {}; rated {}/5: {:?}",
        solved.number,
        local(ctx.now()),
        rating.rating,
        rating.comment
    );
    match tickets.rate(&ctx, solved.id, 5, None).await {
        Err(e) => println!("a second rating for the same solve: {e}"),
        Ok(_) => println!("unexpected: a second rating was accepted"),
    }
    println!("\nhistory of #{}:", solved.number);
    for h in tickets.history(&ctx, solved.id).await? {
        println!("  {} {:?} -> {:?}", local(h.at), h.kind, h.to_status);
    }
    Ok(())
}
