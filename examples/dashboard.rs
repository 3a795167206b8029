//! A sales manager's Monday: a realistic quarter seeded into a SQLite file (a few hundred
//! deals moving through the pipeline over three months, leads, calls and meetings,
//! support tickets), the main reports printed as tables, and a dashboard rendered into
//! SVG charts in a folder.
//!
//! Run with `cargo run --example dashboard`; the database and the charts go to
//! `$TMPDIR/crmkit-dashboard/` (or the folder given as the first argument).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc, Weekday};
use crmkit::activities::{ActivityDetails, Call, CallOutcome, Direction, Meeting, NewActivity};
use crmkit::analytics::{
    ActivitiesDone, Bucket, ChartKind, Dashboard, Dim, Forecast, ForecastAccuracy, LostReasons,
    Period, PipelineByStage, Report, SalesCycle, SlipDim, SlippedDeals, StageFunnel, TicketTimes,
    TicketVolume, TimeInStage, Waterfall, Widget, WinRate,
};
use crmkit::contacts::NewContact;
use crmkit::pipeline::deal::{DealPatch, LostReasonInput, NewDeal, Source, StageKind};
use crmkit::pipeline::lead::{LeadStatus, NewLead};
use crmkit::tickets::calendar::{CalendarSpec, Interval};
use crmkit::tickets::sla::{NewSlaPolicy, SlaConditions, SlaTargets};
use crmkit::tickets::{NewComment, NewTicket, TicketStatus};
use crmkit::{
    Actor, Crm, Ctx, Currency, Decimal, Error, ManualClock, Money, RecordRef, Role, TenantId,
    UserId, UserInput,
};

const ZONE: &str = "Europe/Berlin";

/// A small deterministic generator (xorshift), so every run seeds the same quarter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a date")
}

/// 09:00 + `minutes` on `d` in Berlin.
fn at(d: NaiveDate, minutes: i64) -> DateTime<Utc> {
    let tz: chrono_tz::Tz = ZONE.parse().expect("a zone");
    tz.from_local_datetime(&d.and_hms_opt(9, 0, 0).expect("a time"))
        .single()
        .expect("no gap at 09:00")
        .with_timezone(&Utc)
        + Duration::minutes(minutes)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("crmkit-dashboard"));
    std::fs::create_dir_all(&dir).map_err(|e| Error::storage_from("output folder", e))?;
    let db = dir.join("quarter.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let crm = Crm::open(&format!("sqlite://{}", db.display())).await?;

    // The team: an admin (the sales manager) and four reps.
    let tenant = TenantId::new();
    let manager = UserId::new();
    let boot = Ctx::new(tenant, Actor::new(manager, [Role::Admin], []))?;
    crm.directory()
        .put_user(
            &boot,
            UserInput::new(manager, "Mara", "mara@example.com", Role::Admin).time_zone(ZONE),
        )
        .await?;
    let mut reps = vec![];
    for name in ["Ravi", "Sofia", "Jonas", "Amira"] {
        let id = UserId::new();
        let email = format!("{}@example.com", name.to_lowercase());
        crm.directory()
            .put_user(
                &boot,
                UserInput::new(id, name, &email, Role::Rep).time_zone(ZONE),
            )
            .await?;
        reps.push((id, name));
    }
    let start = day(2026, 1, 5);
    let clock = Arc::new(ManualClock::new(at(start, 0)));
    let ctx = crm
        .directory()
        .ctx_for(tenant, manager)
        .await?
        .with_clock(clock.clone());
    let rep_ctx = |i: usize| {
        let clock = clock.clone();
        let crm = crm.clone();
        let id = reps[i].0;
        async move {
            crm.directory()
                .ctx_for(tenant, id)
                .await
                .map(|c| c.with_clock(clock))
        }
    };
    let mut rep_ctxs = vec![];
    for i in 0..reps.len() {
        rep_ctxs.push(rep_ctx(i).await?);
    }

    crm.analytics().set_settings(&ctx, ZONE, 1, 0).await?;
    crm.currencies()
        .set_base_currency(&ctx, Currency::parse("EUR")?)
        .await?;
    crm.currencies()
        .set_rate(
            &ctx,
            Currency::parse("USD")?,
            day(2025, 12, 1),
            Decimal::new(92, 2),
        )
        .await?;
    // Support hours and an SLA: first response within 4 working hours, resolution in 3 days.
    let mut spec = CalendarSpec::new(ZONE);
    for wd in [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ] {
        *spec.hours.get_mut(wd) = vec![Interval::hm(8, 0, 18, 0)];
    }
    let calendar = crm.sla_calendars().create(&ctx, "Berlin", spec).await?;
    crm.sla_policies()
        .create(
            &ctx,
            NewSlaPolicy {
                name: "Standard".into(),
                position: 0,
                conditions: SlaConditions::default(),
                calendar: calendar.id,
                targets: SlaTargets {
                    first_response: Some(240),
                    next_response: None,
                    resolution: Some(3 * 600),
                },
                active: true,
            },
        )
        .await?;
    let pipeline = crm.pipelines().ensure_default(&ctx).await?;
    let open: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .map(|s| s.id)
        .collect();
    let won = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Won)
        .expect("a won stage")
        .id;
    let lost = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Lost)
        .expect("a lost stage")
        .id;
    // Managed lost reasons (a rep may also type one).
    let mut reasons = vec![];
    for name in ["Price", "Timing", "Went with a competitor", "No budget"] {
        reasons.push(crm.deals().add_lost_reason(&ctx, name).await?.id);
    }
    let sources = [
        Source::WebForm,
        Source::Referral,
        Source::Event,
        Source::Partner,
    ];

    // The quarter, a working day at a time.
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut live: Vec<(crmkit::DealId, usize, usize)> = vec![]; // (deal, rep, stage index)
    let mut tickets = vec![];
    let (mut deals_made, mut leads_made) = (0, 0);
    let mut first_snapshot = None;
    let mut d = start;
    while d <= day(2026, 3, 31) {
        if d == day(2026, 2, 16) {
            // Mid-quarter, Monday morning: the manager snapshots the open pipeline.
            clock.set(at(d, -60));
            first_snapshot = Some(crm.analytics().take_snapshot(&ctx).await?);
        }
        let weekday = d.format("%u").to_string();
        if weekday == "6" || weekday == "7" {
            d = d.succ_opt().expect("a day");
            continue;
        }
        clock.set(at(d, 0));
        // New deals and leads.
        for _ in 0..(3 + rng.below(3)) {
            let r = rng.below(reps.len() as u64) as usize;
            let cents = 50_000 + rng.below(4_000_000);
            let currency = if rng.chance(20) { "USD" } else { "EUR" };
            let amount = Money::parse(&format!("{}.{:02}", cents / 100, cents % 100), currency)?;
            let close = d + Duration::days(14 + rng.below(75) as i64);
            let mut input = NewDeal::new(format!("Deal {deals_made}"), pipeline.id)
                .amount(amount)
                .expected_close(close);
            input.source = sources[rng.below(4) as usize];
            let deal = crm.deals().create(&rep_ctxs[r], input).await?;
            live.push((deal.id, r, 0));
            deals_made += 1;
        }
        for _ in 0..(2 + rng.below(3)) {
            let r = rng.below(reps.len() as u64) as usize;
            let mut lead = NewLead::named("Lead", format!("No. {leads_made}"));
            lead.emails = vec![format!("lead{leads_made}@prospect.example")];
            lead.source = sources[rng.below(4) as usize];
            lead.status = match rng.below(10) {
                0..=3 => LeadStatus::New,
                4..=5 => LeadStatus::Contacted,
                6..=7 => LeadStatus::Qualified,
                _ => LeadStatus::Disqualified,
            };
            if lead.status == LeadStatus::Disqualified {
                lead.disqualified_reason = Some("not a fit".into());
            }
            let l = crm.leads().create(&rep_ctxs[r], lead).await?;
            if l.status == LeadStatus::Qualified && rng.chance(50) {
                crm.leads()
                    .convert(&rep_ctxs[r], l.id, l.version, Default::default())
                    .await?;
            }
            leads_made += 1;
        }
        // Deals move on, win, lose or slip.
        let mut still = vec![];
        for (id, r, stage) in live.drain(..) {
            let c = &rep_ctxs[r];
            clock.set(at(d, 30 + rng.below(480) as i64));
            let deal = crm.deals().get(c, id).await?;
            let roll = rng.below(100);
            if roll < 12 && stage + 1 < open.len() {
                crm.deals()
                    .move_to_stage(c, id, deal.version, open[stage + 1], None)
                    .await?;
                still.push((id, r, stage + 1));
            } else if roll < 15 && stage >= 2 {
                crm.deals()
                    .move_to_stage(c, id, deal.version, won, None)
                    .await?;
            } else if roll < 17 {
                let reason = if rng.chance(85) {
                    LostReasonInput::Listed(reasons[rng.below(4) as usize])
                } else {
                    LostReasonInput::Text("Project cancelled".into())
                };
                crm.deals()
                    .move_to_stage(c, id, deal.version, lost, Some(reason))
                    .await?;
            } else if roll < 19 {
                let later = deal
                    .expected_close
                    .map(|x| x + Duration::days(7 + rng.below(30) as i64));
                crm.deals()
                    .update(
                        c,
                        id,
                        deal.version,
                        DealPatch::default().expected_close(later),
                    )
                    .await?;
                still.push((id, r, stage));
            } else {
                still.push((id, r, stage));
            }
        }
        live = still;
        // Calls and meetings, and the support desk.
        for (r, (rep, _)) in reps.iter().enumerate() {
            let c = &rep_ctxs[r];
            clock.set(at(d, 60 + 90 * r as i64));
            let customer = crm
                .contacts()
                .create(c, NewContact::named("Customer", format!("{d} {r}")))
                .await?;
            let related = RecordRef::from(customer.id);
            let started = at(d, 60 + 90 * r as i64);
            crm.activities()
                .create(
                    c,
                    NewActivity::new(
                        "Check-in call",
                        ActivityDetails::Call(Call {
                            direction: Direction::Outbound,
                            from: "+49 30 1234567".into(),
                            to: "+49 40 7654321".into(),
                            started_at: started,
                            duration_secs: 300 + rng.below(900) as u32,
                            outcome: if rng.chance(70) {
                                CallOutcome::Connected
                            } else {
                                CallOutcome::NoAnswer
                            },
                            agent: Some(*rep),
                            recording_ref: None,
                            notes: None,
                        }),
                    )
                    .related_to(related.clone()),
                )
                .await?;
            if rng.chance(30) {
                crm.activities()
                    .create(
                        c,
                        NewActivity::new(
                            "Demo",
                            ActivityDetails::Meeting(Meeting {
                                start: started + Duration::hours(2),
                                end: started + Duration::hours(3),
                                time_zone: ZONE.into(),
                                location: None,
                                link: Some("https://meet.example/demo".into()),
                                attendees: vec![],
                                outcome_notes: None,
                            }),
                        )
                        .related_to(related),
                    )
                    .await?;
            }
            if rng.chance(35) {
                let t = crm
                    .tickets()
                    .create(c, NewTicket::new("Cannot export invoices", customer.id))
                    .await?;
                tickets.push(t.id);
            }
        }
        // The desk answers in the late morning and solves in the evening.
        clock.set(at(d, 120));
        for id in &tickets {
            if rng.chance(50) {
                let reply = NewComment {
                    body: "Thanks, we are looking into it.".into(),
                    public: true,
                    by_requester: false,
                    attachments: vec![],
                };
                crm.tickets().comment(&ctx, *id, reply).await?;
            }
        }
        clock.set(at(d, 600));
        let mut open_tickets = vec![];
        for id in tickets.drain(..) {
            if rng.chance(40) {
                let t = crm.tickets().get(&ctx, id).await?;
                crm.tickets()
                    .set_status(&ctx, id, t.version, TicketStatus::Solved)
                    .await?;
            } else {
                open_tickets.push(id);
            }
        }
        tickets = open_tickets;
        d = d.succ_opt().expect("a day");
    }
    clock.set(at(day(2026, 4, 1), -60));
    let earlier = first_snapshot.expect("a snapshot on 16 February");
    let later = crm.analytics().take_snapshot(&ctx).await?;
    clock.set(at(day(2026, 4, 6), 0));
    println!(
        "seeded {deals_made} deals, {leads_made} leads and the activities and tickets of a \
         quarter into {}",
        db.display()
    );

    let a = crm.analytics();
    let q1 = Period::new(day(2026, 1, 1), day(2026, 3, 31))?;
    let name = |id: &str| {
        reps.iter()
            .find(|(u, _)| u.to_string() == id)
            .map_or_else(|| id.to_owned(), |(_, n)| (*n).to_owned())
    };

    println!("\nOpen pipeline by stage (EUR)");
    println!(
        "{:<14} {:>6} {:>14} {:>14}",
        "stage", "deals", "amount", "weighted"
    );
    for r in a
        .pipeline_by_stage(
            &ctx,
            &PipelineByStage {
                pipeline: None,
                by: None,
                rate_date: None,
            },
        )
        .await?
    {
        println!(
            "{:<14} {:>6} {:>14} {:>14}",
            r.stage_name, r.count, r.amount, r.weighted
        );
    }

    let forecast = Forecast {
        period: Period::new(day(2026, 1, 1), day(2026, 6, 30))?,
        bucket: Bucket::Month,
        pipeline: None,
        rate_date: None,
        best_case_at: 50,
        commit_at: 80,
    };
    println!("\nForecast by month (EUR)");
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "month", "closed", "commit", "best case", "pipeline", "weighted"
    );
    for r in a.forecast(&ctx, &forecast).await? {
        let label = r.period.map_or_else(|| "no close date".into(), |p| p.label);
        println!(
            "{label:<16} {:>12} {:>12} {:>12} {:>12} {:>12}",
            r.closed.amount, r.commit.amount, r.best_case.amount, r.pipeline.amount, r.weighted
        );
    }

    let win = WinRate {
        period: q1,
        by: Some(Dim::Owner),
        pipeline: None,
        rate_date: None,
    };
    println!("\nWin rate by owner, Q1");
    println!(
        "{:<8} {:>5} {:>5} {:>8} {:>8} {:>12}",
        "owner", "won", "lost", "rate", "by value", "avg size"
    );
    for r in a.win_rate(&ctx, &win).await? {
        let owner = r.group.as_deref().map(name).unwrap_or_default();
        let pct = |x: Option<Decimal>| {
            x.map_or("-".into(), |x| format!("{:.1}%", x * Decimal::ONE_HUNDRED))
        };
        println!(
            "{owner:<8} {:>5} {:>5} {:>8} {:>8} {:>12}",
            r.won,
            r.lost,
            pct(r.win_rate_by_count),
            pct(r.win_rate_by_value),
            r.average_deal_size.map_or("-".into(), |x| x.to_string())
        );
    }

    let cycle = SalesCycle {
        period: q1,
        by: None,
        pipeline: None,
    };
    for r in a.sales_cycle(&ctx, &cycle).await? {
        let days =
            |s: Option<i64>| s.map_or("-".into(), |s| format!("{:.1} d", s as f64 / 86_400.0));
        println!(
            "\nSales cycle, Q1: {} won, median {}, p90 {}",
            r.won,
            days(r.median_seconds),
            days(r.p90_seconds)
        );
    }

    let funnel = StageFunnel {
        period: q1,
        pipeline: None,
    };
    println!("\nStage funnel of the deals created in Q1");
    println!("{:<14} {:>8} {:>12}", "step", "reached", "next step");
    for r in a.stage_funnel(&ctx, &funnel).await? {
        let conv = r
            .conversion
            .map_or("-".into(), |x| format!("{:.1}%", x * Decimal::ONE_HUNDRED));
        println!("{:<14} {:>8} {:>12}", r.stage_name, r.reached, conv);
    }

    let time = TimeInStage {
        period: q1,
        pipeline: None,
    };
    println!("\nTime in stage, stays ended in Q1");
    println!(
        "{:<14} {:>6} {:>10} {:>10} {:>8}",
        "stage", "stays", "median", "p90", "still in"
    );
    for r in a.time_in_stage(&ctx, &time).await? {
        let days =
            |s: Option<i64>| s.map_or("-".into(), |s| format!("{:.1} d", s as f64 / 86_400.0));
        println!(
            "{:<14} {:>6} {:>10} {:>10} {:>8}",
            r.stage_name,
            r.stays,
            days(r.median_seconds),
            days(r.p90_seconds),
            r.still_in
        );
    }

    let lost_reasons = LostReasons {
        period: q1,
        pipeline: None,
        rate_date: None,
    };
    println!("\nLost reasons, Q1");
    for r in a.lost_reasons(&ctx, &lost_reasons).await? {
        let what = r
            .name
            .clone()
            .unwrap_or_else(|| "(typed by the rep)".into());
        println!("{what:<24} {:>4} deals {:>14}", r.count, r.value);
    }

    let slipped = SlippedDeals {
        period: q1,
        by: Some(SlipDim::Owner),
        pipeline: None,
    };
    println!("\nSlipped close dates, Q1");
    for r in a.slipped_deals(&ctx, &slipped).await? {
        let owner = r.group.as_deref().map(name).unwrap_or_default();
        println!(
            "{owner:<8} {:>3} slips of {:>3} deals, {:>4} days in all",
            r.slips, r.deals, r.days
        );
    }

    let waterfall = Waterfall {
        earlier: earlier.id,
        later: later.id,
        pipeline: None,
        period: None,
    };
    println!(
        "\nPipeline waterfall, {} ({} open deals) to {} ({} open deals)",
        earlier.taken_at.format("%d %b"),
        earlier.deal_count,
        later.taken_at.format("%d %b"),
        later.deal_count
    );
    for r in a.pipeline_waterfall(&ctx, &waterfall).await? {
        let line = format!("{:?}", r.change);
        println!("{line:<10} {:>4} deals {:>14}", r.count, r.amount);
    }
    let accuracy = ForecastAccuracy {
        snapshot: earlier.id,
        period: Period::new(day(2026, 2, 16), day(2026, 3, 31))?,
        pipeline: None,
        by_owner: false,
        rate_date: None,
        best_case_at: 50,
        commit_at: 80,
    };
    for r in a.forecast_accuracy(&ctx, &accuracy).await? {
        println!(
            "\nForecast accuracy: on 16 Feb the weighted forecast for the rest of Q1 was {}; \
             won since: {} ({} deals){}",
            r.weighted,
            r.won.amount,
            r.won.count,
            r.accuracy.map_or(String::new(), |x| format!(
                ", {:.0}% of it",
                x * Decimal::ONE_HUNDRED
            ))
        );
    }
    let times = a.ticket_times(&ctx, &TicketTimes { period: q1 }).await?;
    let minutes = |m: Option<i64>| m.map_or("-".into(), |m| format!("{m} min"));
    println!(
        "\nSupport, Q1: first response median {} (p90 {}), resolution median {} (p90 {}), \
         in business minutes",
        minutes(times.first_response.median_minutes),
        minutes(times.first_response.p90_minutes),
        minutes(times.resolution.median_minutes),
        minutes(times.resolution.p90_minutes)
    );

    // The dashboard: stored as JSON by the host, rendered as SVG charts.
    let dashboard = Dashboard::new("Sales Monday")
        .widget(Widget::new(
            "Forecast by month",
            Report::Forecast(forecast),
            ChartKind::StackedBar,
        ))
        .widget(
            Widget::new(
                "Open pipeline by stage and owner",
                Report::PipelineByStage(PipelineByStage {
                    pipeline: None,
                    by: Some(Dim::Owner),
                    rate_date: None,
                }),
                ChartKind::StackedBar,
            )
            .label("stage_name")
            .values(["amount"])
            .series("group"),
        )
        .widget(Widget::new(
            "Stage funnel, Q1",
            Report::StageFunnel(funnel),
            ChartKind::Funnel,
        ))
        .widget(Widget::new(
            "Win rate by owner, Q1",
            Report::WinRate(win),
            ChartKind::Bar,
        ))
        .widget(Widget::new(
            "Time in stage, Q1",
            Report::TimeInStage(time),
            ChartKind::Bar,
        ))
        .widget(Widget::new(
            "Lost reasons, Q1",
            Report::LostReasons(lost_reasons),
            ChartKind::Bar,
        ))
        .widget(Widget::new(
            "Pipeline waterfall, 16 Feb to 1 Apr",
            Report::PipelineWaterfall(waterfall),
            ChartKind::Bar,
        ))
        .widget(Widget::new(
            "Activities done per week and rep",
            Report::ActivitiesDone(ActivitiesDone {
                period: q1,
                bucket: Bucket::Week,
            }),
            ChartKind::StackedBar,
        ))
        .widget(Widget::new(
            "Tickets created and solved per week",
            Report::TicketVolume(TicketVolume {
                period: q1,
                bucket: Bucket::Week,
            }),
            ChartKind::Line,
        ));
    let stored = dashboard.to_json().to_string();
    let dashboard = Dashboard::from_json(&stored)?;
    let rendered = a.render_dashboard(&ctx, &dashboard).await?;
    println!("\nDashboard \"{}\":", rendered.name);
    for (i, w) in rendered.widgets.iter().enumerate() {
        // What a viewer gets: a well-formed SVG document.
        let doc = roxmltree::Document::parse(&w.svg)
            .map_err(|e| Error::storage(format!("chart {}: {e}", w.title)))?;
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let path = dir.join(format!("{:02}-{}.svg", i + 1, slug(&w.title)));
        std::fs::write(&path, &w.svg).map_err(|e| Error::storage_from("chart file", e))?;
        println!(
            "  {:<34} {:>3} rows  {}",
            w.title,
            w.rows.rows.len(),
            path.display()
        );
    }
    Ok(())
}

fn slug(title: &str) -> String {
    title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}
