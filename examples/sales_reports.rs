//! Sales reports: a few deals in two currencies, the tenant's reporting time zone and
//! fiscal year, then the pipeline by stage, a quarterly forecast and the win rate, typed
//! and from a stored JSON definition.
//!
//! Run with `cargo run --example sales_reports`.

use crmkit::analytics::{Bucket, Dim, Forecast, Period, PipelineByStage, Report};
use crmkit::pipeline::deal::{NewDeal, StageKind};
use crmkit::{Actor, Crm, Ctx, Currency, Decimal, Error, Money, NaiveDate, Role, TenantId, UserId};
use crmkit::{ManualClock, UserInput};
use std::sync::Arc;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a date")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let crm = Crm::open("sqlite::memory:").await?;
    let (tenant, admin) = (TenantId::new(), UserId::new());
    let boot = Ctx::new(tenant, Actor::new(admin, [Role::Admin], []))?;
    crm.directory()
        .put_user(
            &boot,
            UserInput::new(admin, "Alex", "alex@example.com", Role::Admin),
        )
        .await?;
    let clock = Arc::new(ManualClock::new(
        day(2026, 3, 2)
            .and_hms_opt(9, 0, 0)
            .expect("time")
            .and_utc(),
    ));
    let ctx = crm
        .directory()
        .ctx_for(tenant, admin)
        .await?
        .with_clock(clock.clone());

    // Base currency, a rate, and the reporting settings (fiscal year from April).
    let eur = Currency::parse("EUR")?;
    crm.currencies().set_base_currency(&ctx, eur).await?;
    crm.currencies()
        .set_rate(
            &ctx,
            Currency::parse("USD")?,
            day(2026, 1, 1),
            Decimal::new(92, 2),
        )
        .await?;
    crm.analytics()
        .set_settings(&ctx, "Europe/Berlin", 4, 0)
        .await?;

    // Three open deals and one won.
    let pipeline = crm.pipelines().ensure_default(&ctx).await?;
    for (title, amount, close) in [
        ("Looms", Money::parse("12000", "EUR")?, day(2026, 3, 31)),
        ("Engines", Money::parse("8000", "USD")?, day(2026, 5, 15)),
        ("Tables", Money::parse("2500.50", "EUR")?, day(2026, 6, 30)),
    ] {
        crm.deals()
            .create(
                &ctx,
                NewDeal::new(title, pipeline.id)
                    .amount(amount)
                    .expected_close(close),
            )
            .await?;
    }
    let won = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Won)
        .expect("a won stage");
    let deal = crm
        .deals()
        .create(
            &ctx,
            NewDeal::new("Cards", pipeline.id).amount(Money::parse("3000", "EUR")?),
        )
        .await?;
    clock.set(
        day(2026, 3, 20)
            .and_hms_opt(16, 0, 0)
            .expect("time")
            .and_utc(),
    );
    crm.deals()
        .move_to_stage(&ctx, deal.id, deal.version, won.id, None)
        .await?;

    let analytics = crm.analytics();
    println!("pipeline by stage (EUR):");
    for row in analytics
        .pipeline_by_stage(
            &ctx,
            &PipelineByStage {
                pipeline: None,
                by: Some(Dim::Owner),
                rate_date: None,
            },
        )
        .await?
    {
        println!(
            "  {:<14} {} deal(s)  {:>10}  weighted {:>10}",
            row.stage_name, row.count, row.amount, row.weighted
        );
    }

    let forecast = Forecast {
        period: Period::new(day(2026, 1, 1), day(2026, 12, 31))?,
        bucket: Bucket::Quarter,
        pipeline: None,
        rate_date: None,
        best_case_at: 50,
        commit_at: 90,
    };
    println!("forecast by fiscal quarter (EUR):");
    for row in analytics.forecast(&ctx, &forecast).await? {
        let label = row
            .period
            .map(|p| p.label)
            .unwrap_or_else(|| "no date".into());
        println!(
            "  {label:<10} pipeline {:>10}  closed {:>8}  weighted {:>10}",
            row.pipeline.amount, row.closed.amount, row.weighted
        );
    }

    // A host stores report definitions as JSON and runs them later.
    let stored = r#"{"format": 1, "report": "win_rate", "by": "source",
                     "period": {"from": "2026-01-01", "to": "2026-03-31"}}"#;
    let rows = analytics.run(&ctx, &Report::from_json(stored)?).await?;
    println!(
        "win rate, Q1 2026, as JSON: {}",
        serde_json_text(&rows.rows)
    );
    Ok(())
}

fn serde_json_text(rows: &[crmkit::serde_json::Value]) -> String {
    crmkit::serde_json::to_string(rows).unwrap_or_default()
}
