//! A sales rep's day with the activities module: tasks (one recurring, one overdue, one
//! with a reminder), a meeting, an inbound call that links itself to the caller's contact
//! by phone number; then the rep's agenda for today, the overdue tasks, the due reminder
//! delivered (once, however often it is asked), the recurring task completed (and its next
//! occurrence), and the contact's timeline (activities and events, newest first).
//!
//! The context carries a `ManualClock`, so "today" and "overdue" do not depend on when the
//! example runs. Run with `cargo run --example agenda`.

use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
use crmkit::activities::{
    ActivityDetails, Call, CallOutcome, Direction, Due, Frequency, Meeting, NewActivity, Note,
    Priority, Recurrence, RecurrenceEnd, Task, TaskStatus, TimelineEntry,
};
use crmkit::contacts::{NewContact, PhoneInput};
use crmkit::pipeline::deal::NewDeal;
use crmkit::{
    Actor, Crm, Ctx, Error, ManualClock, Money, RecordKind, RecordRef, Role, TenantId, UserId,
    UserInput,
};

/// The rep works in Tokyo (no daylight saving time, so a fixed offset displays it).
const TIME_ZONE: &str = "Asia/Tokyo";

fn tokyo() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("a valid offset")
}

/// An instant given as a Tokyo wall-clock time on 10 March 2025.
fn jst(h: u32, m: u32) -> DateTime<Utc> {
    tokyo()
        .with_ymd_and_hms(2025, 3, 10, h, m, 0)
        .single()
        .expect("a valid time")
        .with_timezone(&Utc)
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&tokyo())
        .format("%a %d %b %H:%M")
        .to_string()
}

fn task(due: Due, recurrence: Option<Recurrence>) -> ActivityDetails {
    ActivityDetails::Task(Task {
        description: None,
        due: Some(due),
        priority: Priority::Normal,
        status: TaskStatus::Open,
        recurrence,
        completed_at: None,
    })
}

fn at(t: DateTime<Utc>) -> Due {
    Due::At {
        at: t,
        time_zone: TIME_ZONE.into(),
    }
}

fn describe(a: &crmkit::activities::Activity) -> String {
    let when = match &a.details {
        ActivityDetails::Task(t) => match &t.due {
            Some(Due::At { at, .. }) => format!("task    due {}", local(*at)),
            Some(Due::Date { date }) => format!("task    due {date} (all day)"),
            None => "task    no due".into(),
        },
        ActivityDetails::Meeting(m) => {
            format!("meeting {} - {}", local(m.start), local(m.end))
        }
        ActivityDetails::Call(c) => format!("call    {}", local(c.started_at)),
        ActivityDetails::Note(_) => "note".into(),
        ActivityDetails::Email(_) => "email".into(),
    };
    format!("{when:<40} {}", a.subject)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let path = std::env::temp_dir().join("crmkit-agenda.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let crm = Crm::open(&format!("sqlite://{}", path.display())).await?;
    println!("opened {}", path.display());

    // 10:00 in Tokyo on Monday 10 March 2025.
    let clock = Arc::new(ManualClock::new(jst(10, 0)));
    let today = NaiveDate::from_ymd_opt(2025, 3, 10).expect("a valid date");
    let (tenant, admin, rep) = (TenantId::new(), UserId::new(), UserId::new());
    // Bootstrap: the host's first admin (`Ctx::new` trusts the host) puts the users; every
    // request context after that comes from the directory (`ctx_for`).
    let bootstrap = Ctx::new(tenant, Actor::new(admin, [Role::Admin], []))?;
    for (id, name, email, role) in [
        (admin, "Aiko Admin", "aiko@example.com", Role::Admin),
        (rep, "Rei Tanaka", "rei@example.com", Role::Manager),
    ] {
        crm.directory()
            .put_user(
                &bootstrap,
                UserInput::new(id, name, email, role).time_zone(TIME_ZONE),
            )
            .await?;
    }
    let ctx = crm
        .directory()
        .ctx_for(tenant, rep)
        .await?
        .with_clock(clock.clone());

    let ada = crm
        .contacts()
        .create(
            &ctx,
            NewContact::named("Ada", "Lovelace")
                .email("ada@analytical.example")
                .phone(PhoneInput::new("+44 20 7946 0958")),
        )
        .await?;
    let ada_ref = RecordRef::from(ada.id);
    println!("contact: {} ({})", ada.full_name(), ada.phones[0].number);

    clock.advance(Duration::minutes(1));
    let acts = crm.activities();
    // A weekly review every Monday at 11:00, four times in all.
    let review = acts
        .create(
            &ctx,
            NewActivity::new(
                "Weekly pipeline review",
                task(
                    at(jst(11, 0)),
                    Some(Recurrence {
                        frequency: Frequency::Weekly {
                            weekdays: vec![Weekday::Mon],
                        },
                        interval: 1,
                        end: RecurrenceEnd::Count { count: 4 },
                        occurrence: 1,
                    }),
                ),
            ),
        )
        .await?;
    // Due last Friday, all day: overdue.
    acts.create(
        &ctx,
        NewActivity::new(
            "Send Ada the maintenance contract",
            task(
                Due::Date {
                    date: NaiveDate::from_ymd_opt(2025, 3, 7).expect("a valid date"),
                },
                None,
            ),
        )
        .related_to(ada_ref.clone()),
    )
    .await?;
    // Due at 17:00, with a reminder at 09:30 (already due at 10:00).
    let proposal = acts
        .create(
            &ctx,
            NewActivity::new("Send proposal to Ada", task(at(jst(17, 0)), None))
                .related_to(ada_ref.clone()),
        )
        .await?;
    let reminder = acts
        .add_reminder(&ctx, proposal.id, None, jst(9, 30))
        .await?;
    acts.create(
        &ctx,
        NewActivity::new(
            "Demo of the Analytical Engine",
            ActivityDetails::Meeting(Meeting {
                start: jst(14, 0),
                end: jst(15, 0),
                time_zone: TIME_ZONE.into(),
                location: Some("Meeting room 2".into()),
                link: None,
                attendees: vec![crmkit::activities::Attendee::Contact { id: ada.id }],
                outcome_notes: None,
            }),
        )
        .related_to(ada_ref.clone()),
    )
    .await?;

    // An inbound call from Ada's number, written differently: nothing names the contact,
    // the number links it.
    clock.advance(Duration::minutes(5));
    let call = acts
        .create(
            &ctx,
            NewActivity::new(
                "Ada called about the proposal",
                ActivityDetails::Call(Call {
                    direction: Direction::Inbound,
                    from: "+442079460958".into(),
                    to: "+81 3 1234 5678".into(),
                    started_at: jst(9, 50),
                    duration_secs: 240,
                    outcome: CallOutcome::Connected,
                    agent: Some(rep),
                    recording_ref: None,
                    notes: Some("Wants the proposal before the demo.".into()),
                }),
            ),
        )
        .await?;
    println!(
        "logged call from {}: linked to {:?}",
        match &call.details {
            ActivityDetails::Call(c) => c.from.as_str(),
            _ => "?",
        },
        call.related
            .iter()
            .map(|r| format!("{} {}", r.kind.as_str(), r.id))
            .collect::<Vec<_>>()
    );
    assert!(call.related.contains(&ada_ref));

    println!("\nagenda of Rei Tanaka for {today} ({TIME_ZONE}):");
    // The agenda is keyset-paged: follow the cursor until the day is exhausted.
    let mut cursor = None;
    loop {
        let page = acts.agenda(&ctx, rep, today, cursor, 50).await?;
        for a in &page.items {
            println!("  {}", describe(a));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }

    println!("\noverdue at {}:", local(ctx.now()));
    for a in acts
        .overdue_tasks(&ctx, rep, ctx.now(), None, 50)
        .await?
        .items
    {
        println!("  {}", describe(&a));
    }

    println!("\ndue reminders:");
    for r in acts.due_reminders(&ctx, ctx.now(), 50).await? {
        println!(
            "  {} for activity {} at {}",
            r.id,
            r.activity,
            local(r.remind_at)
        );
    }
    for attempt in 1..=2 {
        let d = acts.deliver_reminder(&ctx, reminder.id).await?;
        println!(
            "  deliver attempt {attempt}: {}",
            if d.first {
                "delivered"
            } else {
                "already delivered, nothing sent"
            }
        );
    }
    println!(
        "  due reminders left: {}",
        acts.due_reminders(&ctx, ctx.now(), 50).await?.len()
    );

    clock.set(jst(11, 30));
    let done = acts
        .set_task_status(&ctx, review.id, review.version, TaskStatus::Done)
        .await?;
    println!("\ncompleted {:?} at {}", done.subject, local(ctx.now()));
    for a in acts.open_tasks(&ctx, rep, None, 50).await?.items {
        if let ActivityDetails::Task(Task {
            recurrence: Some(r),
            ..
        }) = &a.details
        {
            println!(
                "  next occurrence ({} of 4): {}",
                r.occurrence,
                describe(&a)
            );
        }
    }

    println!("\ntimeline of {} (newest first):", ada.full_name());
    let page = acts.timeline(&ctx, &ada_ref, None, 50).await?;
    for e in &page.items {
        match e {
            TimelineEntry::Activity { activity } => {
                println!("  {}  activity  {}", local(e.at()), describe(activity))
            }
            TimelineEntry::Event { event } => {
                println!("  {}  event     {}", local(e.at()), event.kind)
            }
        }
    }

    // A deal with Ada: its timeline merges its activities with its stage moves.
    let deals = crm.deals();
    let pipeline = crm.pipelines().ensure_default(&ctx).await?;
    let mut input = NewDeal::new("Analytical Engine licence", pipeline.id);
    input.amount = Some(Money::parse("48000", "GBP")?);
    let deal = deals.create(&ctx, input).await?;
    let deal_ref = RecordRef::from(deal.id);
    clock.advance(Duration::minutes(10));
    acts.create(
        &ctx,
        NewActivity::new(
            "Pricing agreed on the call",
            ActivityDetails::Note(Note {
                body: "List price, 10% off.".into(),
                pinned: false,
                author: rep,
            }),
        )
        .related_to(deal_ref.clone())
        .related_to(ada_ref.clone()),
    )
    .await?;
    clock.advance(Duration::minutes(10));
    let proposal_stage = pipeline
        .stages
        .iter()
        .find(|s| s.name == "Proposal")
        .map(|s| s.id)
        .unwrap_or(deal.stage);
    deals
        .move_to_stage(&ctx, deal.id, deal.version, proposal_stage, None)
        .await?;
    println!(
        "
timeline of deal {:?} (newest first):",
        deal.title
    );
    for e in acts.timeline(&ctx, &deal_ref, None, 50).await?.items {
        match &e {
            TimelineEntry::Activity { activity } => {
                println!("  {}  activity  {}", local(e.at()), describe(activity))
            }
            TimelineEntry::Event { event } => {
                println!("  {}  event     {}", local(e.at()), event.kind)
            }
        }
    }

    // Follow-up lists (for managers): records with no next step, including records that
    // never had an activity, and contacts nobody talked to since this morning.
    let charles = crm
        .contacts()
        .create(&ctx, NewContact::named("Charles", "Babbage"))
        .await?;
    clock.advance(Duration::minutes(1));
    let no_next = acts
        .without_next_activity(&ctx, &RecordKind::DEAL, None, 50)
        .await?;
    println!(
        "
deals without a next step: {}",
        no_next.items.len()
    );
    for f in &no_next.items {
        println!(
            "  deal {} (last activity {:?})",
            f.record.id,
            f.last_activity_at.map(local)
        );
    }
    let quiet = acts
        .stale_records(&ctx, &RecordKind::CONTACT, ctx.now(), None, 50)
        .await?;
    println!("contacts not contacted since {}:", local(ctx.now()));
    for f in &quiet.items {
        let name = crm
            .contacts()
            .get(&ctx, crmkit::core::ContactId::from_uuid(f.record.id))
            .await?
            .full_name();
        let last = match f.last_activity_at {
            Some(t) => format!("last activity {}", local(t)),
            None => "never contacted".into(),
        };
        println!("  {name}: {last}");
    }
    assert!(
        quiet
            .items
            .iter()
            .any(|f| f.record.id == charles.id.as_uuid())
    );
    Ok(())
}
