//! Sales force automation with rules: round-robin lead assignment, a follow-up task when a
//! deal enters a stage, a reminder three days before a deal's close date, escalation of a
//! ticket whose SLA is breached with a notification, a ticket opened by email
//! acknowledged to its requester, a signed webhook, a dry run and the run log.
//!
//! `cargo run --example automation` (in memory; the clock is set by hand so the run is the
//! same every time). The engine runs on the change feed: the host calls
//! `run_pending` / `tick` (or runs them in a loop on its own runtime) and gives it a
//! `Notifier` and a `WebhookClient`; here they print what they would send.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc, Weekday};
use crmkit::automation::{
    Action, Channel, Direction, Engine, NewRule, Notification, Notifier, Offset, PoolMember,
    Recipient, Strategy, TimeUnit, Trigger, WebhookCall, WebhookClient,
};
use crmkit::core::store::BoxFuture;
use crmkit::pipeline::deal::{NewDeal, NewPipeline, NewStage};
use crmkit::pipeline::lead::NewLead;
use crmkit::tickets::calendar::{CalendarSpec, Interval};
use crmkit::tickets::sla::{NewSlaPolicy, SlaConditions, SlaTargets};
use crmkit::tickets::{NewTicket, TicketPriority};
use crmkit::{
    Actor, Crm, Ctx, Error, Filter, ManualClock, RecordRef, Role, TenantId, UserId, UserInput,
};

/// Prints notifications instead of sending them (a host sends email, SMS or chat here).
struct PrintingNotifier(Vec<(UserId, &'static str)>);

impl Notifier for PrintingNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), String>> {
        let who = match &n.to {
            Recipient::Contact { name, address, .. } => format!("{name} <{address}>"),
            to => self
                .0
                .iter()
                .find(|(id, _)| Some(*id) == to.user())
                .map_or("someone", |(_, name)| name)
                .to_owned(),
        };
        println!("    -> {:?} to {who}: {:?}", n.channel, n.subject);
        Box::pin(async { Ok(()) })
    }
}

/// Prints webhook calls instead of making them (a host POSTs with its HTTP client).
struct PrintingWebhooks;

impl WebhookClient for PrintingWebhooks {
    fn post<'a>(&'a self, c: &'a WebhookCall) -> BoxFuture<'a, Result<(), String>> {
        // The body names the delivery (the receiver de-duplicates on it) and is signed:
        // the receiver checks `X-Crmkit-Signature` with `crmkit::automation::outbox::sign`.
        let ok = c.signature == crmkit::automation::outbox::sign(SECRET, &c.body);
        println!("    -> POST {} (signed: {ok})", c.url);
        Box::pin(async { Ok(()) })
    }
}

/// The webhook's shared secret (the receiver has it too).
const SECRET: &str = "a-long-shared-secret-0123";

fn at(d: u32, h: u32) -> DateTime<Utc> {
    // March 2027 in Berlin is UTC+1 until the 28th.
    Utc.with_ymd_and_hms(2027, 3, d, h - 1, 0, 0)
        .single()
        .expect("a valid time")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let crm = Crm::in_memory()?;
    let tenant = TenantId::new();
    let clock = Arc::new(ManualClock::new(at(1, 9)));
    let admin = UserId::new();
    let team = [
        (UserId::new(), "Ana"),
        (UserId::new(), "Ben"),
        (UserId::new(), "Cy"),
    ];
    // Bootstrap: the host's first admin puts the users; request contexts then come from
    // the directory.
    let bootstrap = Ctx::new(tenant, Actor::new(admin, [Role::Admin], []))?;
    let dir = crm.directory();
    dir.put_user(
        &bootstrap,
        UserInput::new(admin, "Alex", "alex@example.com", Role::Admin).time_zone("Europe/Berlin"),
    )
    .await?;
    for (id, name) in team {
        let email = format!("{}@example.com", name.to_lowercase());
        dir.put_user(
            &bootstrap,
            UserInput::new(id, name, email, Role::Rep).time_zone("Europe/Berlin"),
        )
        .await?;
    }
    let ctx = dir.ctx_for(tenant, admin).await?.with_clock(clock.clone());
    let mut names: Vec<(UserId, &'static str)> = team.to_vec();
    names.push((admin, "Alex"));
    let name_of = |id: &str| {
        names
            .iter()
            .find(|(u, _)| u.as_uuid().to_string() == id)
            .map_or("?", |(_, n)| n)
    };

    // A pipeline with a proposal stage.
    let pipeline = crm
        .pipelines()
        .create(
            &ctx,
            NewPipeline::named("Sales")
                .stage(NewStage::open("Qualify", 20))
                .stage(NewStage::open("Proposal", 60))
                .stage(NewStage::won("Won"))
                .stage(NewStage::lost("Lost")),
        )
        .await?;
    let proposal = pipeline.stages[1].id;

    // Support hours and an SLA: a first response within an hour.
    let mut spec = CalendarSpec::new("Europe/Berlin");
    for d in [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ] {
        *spec.hours.get_mut(d) = vec![Interval::hm(9, 0, 17, 0)];
    }
    let cal = crm.sla_calendars().create(&ctx, "Berlin", spec).await?;
    crm.sla_policies()
        .create(
            &ctx,
            NewSlaPolicy {
                name: "Everyone".into(),
                position: 0,
                conditions: SlaConditions::default(),
                calendar: cal.id,
                targets: SlaTargets {
                    first_response: Some(60),
                    next_response: None,
                    resolution: None,
                },
                active: true,
            },
        )
        .await?;

    // The rules.
    let rules = crm.automation();
    let members = team.map(|(user, _)| PoolMember::new(user)).to_vec();
    rules
        .create(
            &ctx,
            NewRule::new(
                "Round-robin new leads",
                Trigger::RecordCreated {
                    record_kind: "lead".into(),
                },
            )
            .action(Action::AssignOwner {
                strategy: Strategy::RoundRobin,
                team: None,
                users: members,
                capacity: None,
            })
            .action(Action::Webhook {
                url: "https://erp.example.com/hooks/leads".into(),
                secret: SECRET.into(),
            }),
        )
        .await?;
    let follow_up = NewRule::new(
        "Follow up on proposals",
        Trigger::Event {
            event: "deal.moved".into(),
        },
    )
    .filter(Filter::eq("stage", proposal.as_uuid()))
    .action(Action::CreateActivity {
        activity_type: "task".into(),
        subject: "Call about the proposal for {{title}}".into(),
        due_in: Some(Offset {
            amount: 2,
            unit: TimeUnit::BusinessDays,
            calendar: Some(cal.id),
        }),
    });
    let follow_up = rules.create(&ctx, follow_up).await?;
    rules
        .create(
            &ctx,
            NewRule::new(
                "Closing soon",
                Trigger::Relative {
                    record_kind: "deal".into(),
                    field: "expected_close".into(),
                    offset: Offset {
                        amount: 3,
                        unit: TimeUnit::Days,
                        calendar: None,
                    },
                    direction: Direction::Before,
                },
            )
            .action(Action::Notify {
                channel: Channel::Email,
                to: None,
                to_field: None,
                subject: "{{title}} closes on {{expected_close}}".into(),
                body: "Amount {{amount}}. Time to call?".into(),
            }),
        )
        .await?;
    rules
        .create(
            &ctx,
            NewRule::new(
                "Escalate breached tickets",
                Trigger::Event {
                    event: "ticket.sla_breached".into(),
                },
            )
            .action(Action::EscalateTicket {
                reason: "SLA breached: {{subject}}".into(),
            })
            .action(Action::Notify {
                channel: Channel::Chat,
                to: Some(admin),
                to_field: None,
                subject: "Ticket #{{number}} breached its SLA".into(),
                body: "{{subject}}".into(),
            }),
        )
        .await?;
    rules
        .create(
            &ctx,
            NewRule::auto_acknowledgement(
                "[#{{number}}] We received your message: {{subject}}",
                "Thank you for writing to us. Your ticket number is {{number}}.",
            ),
        )
        .await?;
    println!("5 rules saved");

    let engine = Engine::new(crm.store())?
        .with_clock(clock.clone())
        .with_notifier(PrintingNotifier(names.clone()))
        .with_webhooks(PrintingWebhooks);
    let run = async || -> Result<(), Error> {
        while engine.run_pending(tenant, 100).await?.events > 0 {}
        engine.tick(tenant).await?;
        Ok(())
    };

    // Four leads from the web form: assigned in turn, each announced to the ERP.
    println!("\nfour leads come in:");
    let mut leads = vec![];
    for (first, last) in [
        ("Grace", "Hopper"),
        ("Alan", "Turing"),
        ("Ada", "Lovelace"),
        ("Edsger", "Dijkstra"),
    ] {
        leads.push(
            crm.leads()
                .create(&ctx, NewLead::named(first, last))
                .await?,
        );
    }
    run().await?;
    for l in &leads {
        let l = crm.leads().get(&ctx, l.id).await?;
        let owner = l.owner.as_uuid().to_string();
        println!("  {} {} -> {}", l.first_name, l.last_name, name_of(&owner));
    }

    // A deal closing on 12 March moves to the proposal stage: a follow-up task for two
    // working days later.
    println!("\na deal moves to Proposal:");
    let deal = crm
        .deals()
        .create(
            &ctx,
            NewDeal::new("Mainframe upgrade", pipeline.id)
                .expected_close(NaiveDate::from_ymd_opt(2027, 3, 12).expect("a date"))
                .owner(team[0].0),
        )
        .await?;
    let deal = crm
        .deals()
        .move_to_stage(&ctx, deal.id, deal.version, proposal, None)
        .await?;
    run().await?;
    let log = engine
        .runs_of_record(&ctx, &RecordRef::from(deal.id), 10)
        .await?;
    for line in log.iter().rev() {
        println!("  run log: {:?} {}", line.outcome, line.detail);
    }
    let dry = rules
        .dry_run_saved(&ctx, follow_up.id, RecordRef::from(deal.id), None)
        .await?;
    println!(
        "  dry run of {:?} on the deal now: conditions hold: {}, would do {} action(s)",
        follow_up.name,
        dry.explanation.holds,
        dry.actions.len()
    );

    // Three days before the close date (9 March, midnight in Berlin) the reminder goes out.
    println!("\n8 March, 23:59 in Berlin: nothing yet");
    clock.set(at(9, 1) - TimeDelta::minutes(61));
    run().await?;
    println!("9 March, 00:00 in Berlin:");
    clock.set(at(9, 1) - TimeDelta::hours(1));
    run().await?;

    // A ticket at 09:00 on Wednesday; nobody answers within the hour.
    println!("\na ticket waits more than an hour:");
    clock.set(at(10, 9));
    let ada = crm
        .contacts()
        .create(
            &ctx,
            crmkit::contacts::NewContact::named("Ada", "Lovelace").email("ada@example.com"),
        )
        .await?;
    // Opened by email: the auto-acknowledgement goes to Ada, once.
    let ticket = crm
        .tickets()
        .create(
            &ctx,
            NewTicket::new("Invoice shows the wrong VAT", ada.id)
                .channel(crmkit::tickets::Channel::Email),
        )
        .await?;
    run().await?;
    clock.set(at(10, 10) + TimeDelta::minutes(5));
    crm.tickets()
        .sweep(&ctx, ctx.clock().now(), TimeDelta::zero())
        .await?;
    run().await?;
    let t = crm.tickets().get(&ctx, ticket.id).await?;
    println!(
        "  ticket #{} priority {:?} (was {:?})",
        t.number,
        t.priority,
        TicketPriority::Normal
    );
    println!("\nfailed runs: {}", engine.failed(&ctx).await?.len());
    Ok(())
}
