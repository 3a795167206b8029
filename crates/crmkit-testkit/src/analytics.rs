//! Conformance checks of the sales reports (`crmkit_analytics`) on any backend.
//!
//! Every report is compared with an oracle computed in plain Rust from the deals the
//! actor lists through the public API (`Deals::list`), the pipelines and the exchange
//! rates (`Currencies::rate_at`), following the definitions in the analytics crate's
//! docs: per-currency exact sums converted at the rate date's rate and rounded once half
//! to even, win rates rounded to 4 places, nearest-rank percentiles. The scenario has
//! ties, deals without amount or close date, several currencies, deleted deals (left
//! out), deals of several owners and teams, and deals won at the last second of a quarter
//! in the tenant's zone across a DST change. Each check makes its own tenant; [`checks`]
//! lists them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};

use crmkit_analytics::chart::color_hex;
use crmkit_analytics::period::{Period, local_date};
use crmkit_analytics::report::REPORT_NAMES;
use crmkit_analytics::sales::sort_stage_rows;
use crmkit_analytics::{
    Analytics, AnalyticsModule, Bucket, ChartKind, CycleRow, Dashboard, Dim, Forecast,
    ForecastAccuracy, ForecastRow, Line, PipelineByStage, Report, SalesCycle, StageRow, Velocity,
    VelocityRow, Waterfall, Widget, WinRate, WinRateRow,
};
use crmkit_contacts::ContactsModule;
use crmkit_core::{CampaignId, Ctx, Currency, Error, Modules, Money, Query, Store, TeamId};
use crmkit_pipeline::PipelineModule;
use crmkit_pipeline::campaign::{CampaignKind, Campaigns, NewCampaign};
use crmkit_pipeline::currency::Currencies;
use crmkit_pipeline::deal::{Deal, LostReasonInput, NewDeal, Pipeline, Source, StageKind};

use crate::check::{At, expect_denied, expect_validation, validation_reasons};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::pipeline_deals::DealFixture;
use crate::support::{all_pages, at_time, date};

/// Core, contacts, pipeline, activities, tickets and analytics (the dashboard check
/// renders every report, the activity and service ones too).
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(PipelineModule)
        .add(crmkit_activities::ActivitiesModule)
        .add(crmkit_tickets::TicketsModule)
        .add(AnalyticsModule)
        .build()
}

/// The reporting zone of the scenarios (CET/CEST; summer time begins 2026-03-29).
pub(crate) const ZONE: &str = "Europe/Berlin";

pub(crate) fn tz() -> Tz {
    ZONE.parse().expect("zone")
}

/// `y-m-d h:mi:s` local time in [`ZONE`], as UTC.
pub(crate) fn local(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    tz().with_ymd_and_hms(y, m, d, h, mi, s)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

pub(crate) fn eur(s: &str) -> Money {
    Money::parse(s, "EUR").expect("EUR")
}

pub(crate) fn usd(s: &str) -> Money {
    Money::parse(s, "USD").expect("USD")
}

pub(crate) fn period(from: NaiveDate, to: NaiveDate) -> Period {
    Period::new(from, to).expect("period")
}

pub(crate) fn q1() -> Period {
    period(date(2026, 1, 1), date(2026, 3, 31))
}

pub(crate) fn year_2026() -> Period {
    period(date(2026, 1, 1), date(2026, 12, 31))
}

/// How a scenario deal ends.
#[derive(Clone, Copy)]
enum End {
    Open,
    Won(DateTime<Utc>),
    Lost(DateTime<Utc>),
}

/// One scenario deal, made by the admin for `owner` (an actor of the fixture by name).
#[derive(Clone)]
struct Spec {
    owner: &'static str,
    team: Option<&'static str>,
    amount: Option<Money>,
    close: Option<NaiveDate>,
    probability: Option<u8>,
    source: Source,
    campaign: bool,
    created: DateTime<Utc>,
    end: End,
    deleted: bool,
}

fn spec(owner: &'static str, amount: Option<Money>, created: DateTime<Utc>, end: End) -> Spec {
    Spec {
        owner,
        team: None,
        amount,
        close: None,
        probability: None,
        source: Source::Other,
        campaign: false,
        created,
        end,
        deleted: false,
    }
}

/// A tenant with base currency EUR, USD rates (0.9 from 2026-01-01, 0.95 from
/// 2026-06-01), reporting in [`ZONE`] with the fiscal year from `fiscal_start`.
async fn tenant(store: &Store, fiscal_start: u32) -> CheckResult<(DealFixture, Analytics)> {
    let d = crate::pipeline_deals::setup(store).await?;
    let a = &d.f.admin;
    let cur = Currencies::new(store).at("currencies")?;
    cur.set_base_currency(a, Currency::parse("EUR").at("EUR")?)
        .await
        .at("base currency")?;
    let usd_c = Currency::parse("USD").at("USD")?;
    cur.set_rate(a, usd_c, date(2026, 1, 1), Decimal::new(9, 1))
        .await
        .at("rate")?;
    cur.set_rate(a, usd_c, date(2026, 6, 1), Decimal::new(95, 2))
        .await
        .at("rate")?;
    let analytics = Analytics::new(store).at("Analytics::new")?;
    analytics
        .set_settings(a, ZONE, fiscal_start, 0)
        .await
        .at("settings")?;
    Ok((d, analytics))
}

pub(crate) fn actor<'a>(d: &'a DealFixture, name: &str) -> &'a Ctx {
    match name {
        "manager" => &d.f.manager,
        "rep" => &d.f.rep,
        "rep2" => &d.f.rep2,
        "rep_y" => &d.f.rep_y,
        "readonly" => &d.f.readonly,
        _ => &d.f.admin,
    }
}

pub(crate) fn team(d: &DealFixture, name: Option<&str>) -> Option<TeamId> {
    match name {
        Some("x") => Some(d.f.team_x),
        Some("y") => Some(d.f.team_y),
        _ => None,
    }
}

/// Makes the deals of `specs` (all by the admin, at their instants).
async fn make(d: &DealFixture, specs: &[Spec], campaign: Option<CampaignId>) -> CheckResult {
    let won = stage_of(&d.default, StageKind::Won)?;
    let lost = stage_of(&d.default, StageKind::Lost)?;
    for (i, s) in specs.iter().enumerate() {
        let (ctx, clock) = at_time(&d.f.admin, s.created);
        let mut n = NewDeal::new(format!("deal {i}"), d.default.id)
            .owner(actor(d, s.owner).actor().user)
            .source(s.source);
        if let Some(t) = team(d, s.team) {
            n = n.team(t);
        }
        if let Some(m) = s.amount {
            n = n.amount(m);
        }
        if let Some(c) = s.close {
            n = n.expected_close(c);
        }
        if let Some(p) = s.probability {
            n = n.probability(p);
        }
        if let (true, Some(c)) = (s.campaign, campaign) {
            n = n.campaign(c);
        }
        let mut deal = d.deals.create(&ctx, n).await.at("create deal")?;
        match s.end {
            End::Open => {}
            End::Won(at) => {
                clock.set(at);
                deal = d
                    .deals
                    .move_to_stage(&ctx, deal.id, deal.version, won, None)
                    .await
                    .at("win")?;
            }
            End::Lost(at) => {
                clock.set(at);
                deal = d
                    .deals
                    .move_to_stage(
                        &ctx,
                        deal.id,
                        deal.version,
                        lost,
                        Some(LostReasonInput::Text("price".into())),
                    )
                    .await
                    .at("lose")?;
            }
        }
        if s.deleted {
            d.deals
                .delete(&ctx, deal.id, deal.version)
                .await
                .at("delete")?;
        }
    }
    Ok(())
}

fn stage_of(p: &Pipeline, kind: StageKind) -> CheckResult<crmkit_core::StageId> {
    p.stages
        .iter()
        .find(|s| s.kind == kind)
        .map(|s| s.id)
        .ok_or_else(|| Failure::new(format!("no {kind:?} stage")))
}

/// The scenario: every owner and team, EUR and USD, no amount, no close date, ties,
/// deleted deals, wins on both sides of the Q1/Q2 edge (2026-03-31 23:59:59 CEST, the
/// first quarter end after the DST change), losses.
fn scenario() -> Vec<Spec> {
    let jan = local(2026, 1, 5, 9, 0, 0);
    let feb = local(2026, 2, 10, 14, 30, 0);
    let q1_last = local(2026, 3, 31, 23, 59, 59);
    let q2_first = local(2026, 4, 1, 0, 0, 0);
    let mut v = vec![
        // Open deals in every category, with and without close dates and amounts.
        Spec {
            close: Some(date(2026, 2, 15)),
            probability: Some(20),
            team: Some("x"),
            source: Source::WebForm,
            campaign: true,
            ..spec("rep", Some(eur("1000.10")), jan, End::Open)
        },
        Spec {
            close: Some(date(2026, 3, 31)),
            probability: Some(50),
            team: Some("x"),
            ..spec("rep2", Some(usd("333.35")), jan, End::Open)
        },
        Spec {
            close: Some(date(2026, 4, 1)),
            probability: Some(95),
            ..spec("rep_y", Some(usd("1234.57")), jan, End::Open)
        },
        Spec {
            close: None,
            probability: Some(90),
            team: Some("y"),
            ..spec("rep_y", Some(eur("77.77")), jan, End::Open)
        },
        Spec {
            close: Some(date(2026, 11, 30)),
            ..spec("admin", None, jan, End::Open)
        },
        Spec {
            close: None,
            ..spec("rep", Some(usd("0.01")), jan, End::Open)
        },
        // A deleted open deal, left out everywhere.
        Spec {
            close: Some(date(2026, 2, 15)),
            deleted: true,
            ..spec("rep", Some(eur("5000")), jan, End::Open)
        },
        // Won and lost deals; two with equal durations and amounts (ties).
        Spec {
            source: Source::Referral,
            campaign: true,
            team: Some("x"),
            ..spec("rep", Some(eur("500")), jan, End::Won(feb))
        },
        Spec {
            source: Source::Referral,
            ..spec("rep2", Some(eur("500")), jan, End::Won(feb))
        },
        Spec {
            team: Some("y"),
            ..spec("rep_y", Some(usd("999.99")), feb, End::Won(q1_last))
        },
        spec("rep", Some(usd("10.05")), feb, End::Won(q2_first)),
        spec("admin", None, jan, End::Won(local(2026, 7, 1, 12, 0, 0))),
        Spec {
            team: Some("x"),
            ..spec("rep2", Some(eur("250.50")), jan, End::Lost(feb))
        },
        spec("rep_y", Some(usd("40")), feb, End::Lost(q1_last)),
        // A deleted won deal, left out everywhere.
        Spec {
            deleted: true,
            ..spec("rep", Some(eur("9999")), jan, End::Won(feb))
        },
    ];
    // A deal won in the previous year: outside the period.
    v.push(spec(
        "rep",
        Some(eur("1")),
        local(2025, 12, 1, 9, 0, 0),
        End::Won(local(2025, 12, 31, 23, 59, 59)),
    ));
    v
}

async fn scenario_tenant(
    store: &Store,
    fiscal_start: u32,
) -> CheckResult<(DealFixture, Analytics)> {
    let (d, analytics) = tenant(store, fiscal_start).await?;
    let campaign = Campaigns::new(store)
        .at("campaigns")?
        .create(
            &d.f.admin,
            NewCampaign::named("Spring", CampaignKind::Email),
        )
        .await
        .at("campaign")?;
    make(&d, &scenario(), Some(campaign.id)).await?;
    Ok((d, analytics))
}

// ---------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------

/// The oracle's view of a tenant as one actor sees it.
struct Oracle {
    deals: Vec<Deal>,
    pipelines: Vec<Pipeline>,
    tz: Tz,
    fiscal_start: u32,
    base: Currency,
}

async fn oracle(store: &Store, d: &DealFixture, ctx: &Ctx) -> CheckResult<Oracle> {
    let q = Query::new().limit(50);
    let deals = all_pages(
        &q,
        "list deals",
        |q| async move { d.deals.list(ctx, &q).await },
    )
    .await?;
    let pipelines = d.deals.pipelines().all(ctx).await.at("pipelines")?;
    let settings = Analytics::new(store)
        .at("analytics")?
        .settings(ctx)
        .await
        .at("settings")?;
    let base = Currencies::new(store)
        .at("currencies")?
        .require_base_currency(ctx)
        .await
        .at("base")?;
    Ok(Oracle {
        deals,
        pipelines,
        tz: settings
            .time_zone
            .parse()
            .map_err(|_| Failure::new("zone"))?,
        fiscal_start: settings.fiscal_year_start,
        base,
    })
}

/// Exact per-currency sums, converted by the oracle's rates.
#[derive(Default, Clone)]
struct Acc {
    count: u64,
    amount: BTreeMap<&'static str, Decimal>,
    weighted: BTreeMap<&'static str, Decimal>,
}

impl Acc {
    fn add(&mut self, deal: &Deal) {
        self.count += 1;
        if let Some(m) = deal.amount {
            let c = m.currency().code();
            *self.amount.entry(c).or_default() += m.amount();
            *self.weighted.entry(c).or_default() +=
                m.amount() * Decimal::from(deal.probability) / Decimal::from(100);
        }
    }
}

/// The rates of every currency on one date, read through `Currencies::rate_at`.
struct Rates {
    base: Currency,
    rates: HashMap<&'static str, Decimal>,
}

impl Rates {
    async fn new(store: &Store, ctx: &Ctx, o: &Oracle, on: NaiveDate) -> CheckResult<Rates> {
        let cur = Currencies::new(store).at("currencies")?;
        let mut rates = HashMap::new();
        for deal in &o.deals {
            if let Some(m) = deal.amount {
                let r = cur.rate_at(ctx, m.currency(), on).await.at("rate_at")?;
                rates.insert(m.currency().code(), r.rate);
            }
        }
        Ok(Rates {
            base: o.base,
            rates,
        })
    }

    fn convert(&self, sums: &BTreeMap<&'static str, Decimal>) -> Decimal {
        sums.iter()
            .map(|(c, s)| {
                (*s * self.rates[c]).round_dp_with_strategy(
                    self.base.minor_digits(),
                    RoundingStrategy::MidpointNearestEven,
                )
            })
            .sum()
    }
}

fn dim_value(deal: &Deal, by: Option<Dim>) -> Option<String> {
    match by? {
        Dim::Owner => Some(deal.owner.to_string()),
        Dim::Team => deal.team.map(|t| t.to_string()),
        Dim::Source => Some(deal.source.as_str().to_owned()),
        Dim::Campaign => deal.campaign.map(|c| c.to_string()),
        Dim::Pipeline => Some(deal.pipeline.to_string()),
    }
}

fn round4(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(4, RoundingStrategy::MidpointNearestEven)
}

fn in_period(o: &Oracle, p: &Period, at: Option<DateTime<Utc>>) -> bool {
    at.is_some_and(|t| p.contains(local_date(o.tz, t)))
}

fn oracle_by_stage(o: &Oracle, rates: &Rates, r: &PipelineByStage) -> Vec<StageRow> {
    let mut groups: BTreeMap<(String, String, Option<String>), (Acc, &Deal)> = BTreeMap::new();
    for deal in o.deals.iter().filter(|x| x.status() == StageKind::Open) {
        if r.pipeline.is_some_and(|p| p != deal.pipeline) {
            continue;
        }
        let key = (
            deal.pipeline.to_string(),
            deal.stage.to_string(),
            dim_value(deal, r.by),
        );
        groups
            .entry(key)
            .or_insert((Acc::default(), deal))
            .0
            .add(deal);
    }
    let mut out: Vec<StageRow> = groups
        .into_iter()
        .map(|((_, _, g), (acc, deal))| StageRow {
            pipeline: deal.pipeline,
            stage: deal.stage,
            stage_name: o
                .pipelines
                .iter()
                .find(|p| p.id == deal.pipeline)
                .and_then(|p| p.stage(deal.stage))
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            group: g,
            count: acc.count,
            amount: rates.convert(&acc.amount),
            weighted: rates.convert(&acc.weighted),
        })
        .collect();
    sort_stage_rows(&mut out, &o.pipelines);
    out
}

fn oracle_forecast(o: &Oracle, rates: &Rates, r: &Forecast) -> Vec<ForecastRow> {
    let buckets = r.bucket.cover(&r.period, o.fiscal_start).expect("buckets");
    let mut cats: Vec<[Acc; 4]> = vec![Default::default(); buckets.len() + 1];
    for deal in &o.deals {
        if r.pipeline.is_some_and(|p| p != deal.pipeline) {
            continue;
        }
        match deal.status() {
            StageKind::Open => {
                let slot = match deal.expected_close {
                    None => buckets.len(),
                    Some(c) if r.period.contains(c) => {
                        buckets.iter().position(|b| b.contains(c)).expect("covered")
                    }
                    Some(_) => continue,
                };
                let cat = if deal.probability >= r.commit_at {
                    2
                } else if deal.probability >= r.best_case_at {
                    1
                } else {
                    0
                };
                cats[slot][cat].add(deal);
            }
            StageKind::Won => {
                if !in_period(o, &r.period, deal.won_at) {
                    continue;
                }
                let day = local_date(o.tz, deal.won_at.expect("won"));
                let slot = buckets
                    .iter()
                    .position(|b| b.contains(day))
                    .expect("covered");
                cats[slot][3].add(deal);
            }
            StageKind::Lost => {}
        }
    }
    let mut out = vec![];
    for (i, c) in cats.iter().enumerate() {
        if i == buckets.len() && c.iter().all(|a| a.count == 0) {
            continue;
        }
        let line = |a: &Acc| Line {
            count: a.count,
            amount: rates.convert(&a.amount),
        };
        out.push(ForecastRow {
            period: buckets.get(i).cloned(),
            pipeline: line(&c[0]),
            best_case: line(&c[1]),
            commit: line(&c[2]),
            closed: line(&c[3]),
            weighted: rates.convert(&c[0].weighted)
                + rates.convert(&c[1].weighted)
                + rates.convert(&c[2].weighted)
                + rates.convert(&c[3].amount),
        });
    }
    out
}

/// Won and lost deals of the period, per group.
fn closed_groups<'a>(
    o: &'a Oracle,
    p: &Period,
    by: Option<Dim>,
) -> BTreeMap<Option<String>, (Vec<&'a Deal>, Vec<&'a Deal>)> {
    let mut groups: BTreeMap<Option<String>, (Vec<&Deal>, Vec<&Deal>)> = BTreeMap::new();
    if by.is_none() {
        groups.insert(None, Default::default());
    }
    for deal in &o.deals {
        if deal.status() == StageKind::Won && in_period(o, p, deal.won_at) {
            groups.entry(dim_value(deal, by)).or_default().0.push(deal);
        }
        if deal.status() == StageKind::Lost && in_period(o, p, deal.lost_at) {
            groups.entry(dim_value(deal, by)).or_default().1.push(deal);
        }
    }
    groups
}

fn acc_of(deals: &[&Deal]) -> Acc {
    let mut a = Acc::default();
    for d in deals {
        a.add(d);
    }
    a
}

fn oracle_win_rate(o: &Oracle, rates: &Rates, r: &WinRate) -> Vec<WinRateRow> {
    closed_groups(o, &r.period, r.by)
        .into_iter()
        .map(|(g, (won, lost))| {
            let wv = rates.convert(&acc_of(&won).amount);
            let lv = rates.convert(&acc_of(&lost).amount);
            let (nw, nl) = (won.len() as u64, lost.len() as u64);
            WinRateRow {
                group: g,
                won: nw,
                lost: nl,
                won_value: wv,
                lost_value: lv,
                win_rate_by_count: (nw + nl > 0)
                    .then(|| round4(Decimal::from(nw) / Decimal::from(nw + nl))),
                win_rate_by_value: (!(wv + lv).is_zero()).then(|| round4(wv / (wv + lv))),
                average_deal_size: (nw > 0).then(|| {
                    (wv / Decimal::from(nw)).round_dp_with_strategy(
                        o.base.minor_digits(),
                        RoundingStrategy::MidpointNearestEven,
                    )
                }),
            }
        })
        .collect()
}

fn micros(deal: &Deal) -> i64 {
    (deal.won_at.expect("won") - deal.created_at)
        .num_microseconds()
        .expect("fits")
}

/// The nearest-rank percentile, by its definition: the smallest value with at least `p`
/// percent of the values at or below it.
fn percentile(sorted: &[i64], p: u64) -> Option<i64> {
    let n = sorted.len() as u64;
    sorted
        .iter()
        .copied()
        .find(|x| sorted.iter().filter(|y| *y <= x).count() as u64 * 100 >= p * n)
}

fn oracle_cycle(o: &Oracle, r: &SalesCycle) -> Vec<CycleRow> {
    closed_groups(o, &r.period, r.by)
        .into_iter()
        .filter(|(g, (won, _))| !won.is_empty() || (g.is_none() && r.by.is_none()))
        .map(|(g, (won, _))| {
            let mut secs: Vec<i64> = won
                .iter()
                .map(|d| micros(d).div_euclid(1_000_000))
                .collect();
            secs.sort_unstable();
            let total: i64 = won.iter().map(|d| micros(d)).sum();
            CycleRow {
                group: g,
                won: won.len() as u64,
                average_seconds: (!won.is_empty()).then(|| {
                    (Decimal::from(total) / Decimal::from(won.len() as u64 * 1_000_000))
                        .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
                        .try_into()
                        .expect("fits")
                }),
                median_seconds: percentile(&secs, 50),
                p90_seconds: percentile(&secs, 90),
            }
        })
        .collect()
}

fn oracle_velocity(o: &Oracle, rates: &Rates, r: &Velocity) -> VelocityRow {
    let open = o
        .deals
        .iter()
        .filter(|d| d.status() == StageKind::Open)
        .count() as u64;
    let (won, lost) = closed_groups(o, &r.period, None)
        .remove(&None)
        .unwrap_or_default();
    let wv = rates.convert(&acc_of(&won).amount);
    let (nw, nl) = (
        Decimal::from(won.len() as u64),
        Decimal::from(lost.len() as u64),
    );
    let total = Decimal::from(won.iter().map(|d| micros(d)).sum::<i64>());
    let day = Decimal::from(86_400_000_000i64);
    let digits = o.base.minor_digits();
    let even = RoundingStrategy::MidpointNearestEven;
    VelocityRow {
        open_deals: open,
        win_rate: (!(nw + nl).is_zero()).then(|| round4(nw / (nw + nl))),
        average_deal_size: (!nw.is_zero()).then(|| (wv / nw).round_dp_with_strategy(digits, even)),
        average_cycle_days: (!nw.is_zero())
            .then(|| (total / (nw * day)).round_dp_with_strategy(2, even)),
        per_day: (!nw.is_zero() && total > Decimal::ZERO).then(|| {
            (Decimal::from(open) * wv * nw * day / ((nw + nl) * total))
                .round_dp_with_strategy(digits, even)
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Comparing every report with the oracle
// ---------------------------------------------------------------------------------------

/// Runs every report (each group-by, buckets, pipelines, rate dates) as `ctx` and
/// compares it with the oracle over what `ctx` lists; also checks that running the JSON
/// definition gives the typed rows.
async fn every_report_equals_oracle(
    store: &Store,
    d: &DealFixture,
    a: &Analytics,
    ctx: &Ctx,
    who: &str,
) -> CheckResult {
    let o = oracle(store, d, ctx).await?;
    let dims = [
        None,
        Some(Dim::Owner),
        Some(Dim::Team),
        Some(Dim::Source),
        Some(Dim::Campaign),
        Some(Dim::Pipeline),
    ];
    let rate_dates = [date(2026, 3, 31), date(2026, 12, 31)];
    let periods = [
        year_2026(),
        period(date(2026, 1, 1), date(2026, 3, 31)),
        period(date(2026, 4, 1), date(2026, 4, 1)),
    ];
    for rd in rate_dates {
        let rates = Rates::new(store, ctx, &o, rd).await?;
        for by in dims {
            for pipeline in [None, Some(d.default.id)] {
                let r = PipelineByStage {
                    pipeline,
                    by,
                    rate_date: Some(rd),
                };
                let got = a.pipeline_by_stage(ctx, &r).await.at("pipeline by stage")?;
                ensure_eq!(
                    got,
                    oracle_by_stage(&o, &rates, &r),
                    "{who}: pipeline by stage {by:?} at {rd}"
                );
                json_equals_typed(a, ctx, Report::PipelineByStage(r), &got).await?;
            }
            for p in periods {
                let r = WinRate {
                    period: p,
                    by,
                    pipeline: None,
                    rate_date: Some(rd),
                };
                let got = a.win_rate(ctx, &r).await.at("win rate")?;
                ensure_eq!(
                    got,
                    oracle_win_rate(&o, &rates, &r),
                    "{who}: win rate {by:?} {p:?} at {rd}"
                );
                json_equals_typed(a, ctx, Report::WinRate(r), &got).await?;
            }
        }
        for bucket in [
            Bucket::Day,
            Bucket::Week,
            Bucket::Month,
            Bucket::Quarter,
            Bucket::Year,
        ] {
            let p = if bucket == Bucket::Day {
                period(date(2026, 3, 25), date(2026, 4, 5))
            } else {
                year_2026()
            };
            for (best_case_at, commit_at) in [(50, 90), (20, 95), (0, 100)] {
                let r = Forecast {
                    period: p,
                    bucket,
                    pipeline: None,
                    rate_date: Some(rd),
                    best_case_at,
                    commit_at,
                };
                let got = a.forecast(ctx, &r).await.at("forecast")?;
                ensure_eq!(
                    got,
                    oracle_forecast(&o, &rates, &r),
                    "{who}: forecast {bucket:?} {best_case_at}/{commit_at} at {rd}"
                );
                json_equals_typed(a, ctx, Report::Forecast(r), &got).await?;
            }
        }
        for p in periods {
            let r = Velocity {
                period: p,
                pipeline: None,
                rate_date: Some(rd),
            };
            let got = a.velocity(ctx, &r).await.at("velocity")?;
            ensure_eq!(
                got,
                oracle_velocity(&o, &rates, &r),
                "{who}: velocity {p:?} at {rd}"
            );
            json_equals_typed(a, ctx, Report::Velocity(r), &[got]).await?;
        }
    }
    for by in dims {
        for p in periods {
            let r = SalesCycle {
                period: p,
                by,
                pipeline: None,
            };
            let got = a.sales_cycle(ctx, &r).await.at("sales cycle")?;
            ensure_eq!(got, oracle_cycle(&o, &r), "{who}: sales cycle {by:?} {p:?}");
            json_equals_typed(a, ctx, Report::SalesCycle(r), &got).await?;
        }
    }
    Ok(())
}

/// Running the definition through its JSON gives the typed rows (the other analytics
/// suites share this); the rows as run.
pub(crate) async fn json_rows_equal<T: serde::Serialize>(
    a: &Analytics,
    ctx: &Ctx,
    r: Report,
    typed: &[T],
) -> CheckResult<crmkit_analytics::ReportRows> {
    let parsed = Report::from_json(&r.to_json().to_string()).at("parse definition")?;
    ensure_eq!(parsed, r, "definition round trip");
    let rows = a.run(ctx, &parsed).await.at("run")?;
    let want: Vec<serde_json::Value> = typed
        .iter()
        .map(|t| serde_json::to_value(t).expect("row"))
        .collect();
    ensure_eq!(rows.rows, want, "{} run from JSON", r.name());
    Ok(rows)
}

/// Running the definition (through its JSON) gives the typed rows.
async fn json_equals_typed<T: serde::Serialize>(
    a: &Analytics,
    ctx: &Ctx,
    r: Report,
    typed: &[T],
) -> CheckResult {
    let rows = json_rows_equal(a, ctx, r, typed).await?;
    ensure_eq!(
        rows.currency.as_deref(),
        Some("EUR"),
        "currency of the rows"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// With no deals at all, every report equals the oracle: no stage rows, empty forecast
/// buckets, one total row of zeros with no rates, velocity of nothing.
pub async fn empty_tenant(store: &Store) -> CheckResult {
    let (d, a) = tenant(store, 1).await?;
    every_report_equals_oracle(store, &d, &a, &d.f.admin, "admin").await?;
    let w = a
        .win_rate(
            &d.f.admin,
            &WinRate {
                period: year_2026(),
                by: None,
                pipeline: None,
                rate_date: None,
            },
        )
        .await
        .at("win rate")?;
    ensure_eq!(w.len(), 1, "one total row");
    ensure!(
        w[0].won == 0 && w[0].win_rate_by_count.is_none(),
        "nothing closed: {w:?}"
    );
    Ok(())
}

/// One won deal: every report equals the oracle, and the figures are the deal's own.
pub async fn one_deal(store: &Store) -> CheckResult {
    let (d, a) = tenant(store, 1).await?;
    make(
        &d,
        &[spec(
            "rep",
            Some(usd("100.01")),
            local(2026, 2, 1, 9, 0, 0),
            End::Won(local(2026, 2, 3, 9, 0, 30)),
        )],
        None,
    )
    .await?;
    every_report_equals_oracle(store, &d, &a, &d.f.admin, "admin").await?;
    let c = a
        .sales_cycle(
            &d.f.admin,
            &SalesCycle {
                period: year_2026(),
                by: None,
                pipeline: None,
            },
        )
        .await
        .at("cycle")?;
    let two_days = 2 * 86_400 + 30;
    ensure_eq!(
        (c[0].won, c[0].median_seconds, c[0].p90_seconds),
        (1, Some(two_days), Some(two_days)),
        "one deal's cycle"
    );
    let w = a
        .win_rate(
            &d.f.admin,
            &WinRate {
                period: year_2026(),
                by: None,
                pipeline: None,
                rate_date: Some(date(2026, 2, 3)),
            },
        )
        .await
        .at("win rate")?;
    // 100.01 USD × 0.9 = 90.009 EUR, rounded half to even to 90.01.
    ensure_eq!(w[0].won_value, Decimal::new(9001, 2), "converted value");
    ensure_eq!(w[0].win_rate_by_count, Some(Decimal::ONE), "won everything");
    Ok(())
}

/// The full scenario as Admin and Manager: every report, every group-by, every bucket,
/// two rate dates, equals the oracle.
pub async fn reports_equal_oracle(store: &Store) -> CheckResult {
    let (d, a) = scenario_tenant(store, 1).await?;
    every_report_equals_oracle(store, &d, &a, &d.f.admin, "admin").await?;
    every_report_equals_oracle(store, &d, &a, &d.f.manager, "manager").await
}

/// With a fiscal year starting in April, quarters and years follow it (and still equal
/// the oracle).
pub async fn fiscal_year(store: &Store) -> CheckResult {
    let (d, a) = scenario_tenant(store, 4).await?;
    every_report_equals_oracle(store, &d, &a, &d.f.admin, "admin").await?;
    let rows = a
        .forecast(
            &d.f.admin,
            &Forecast {
                period: year_2026(),
                bucket: Bucket::Quarter,
                pipeline: None,
                rate_date: None,
                best_case_at: 50,
                commit_at: 90,
            },
        )
        .await
        .at("forecast")?;
    let labels: Vec<String> = rows
        .iter()
        .filter_map(|r| r.period.as_ref().map(|p| p.label.clone()))
        .collect();
    ensure_eq!(
        labels,
        ["FY2026-Q4", "FY2027-Q1", "FY2027-Q2", "FY2027-Q3"],
        "fiscal quarters of 2026 (fiscal year from April)"
    );
    Ok(())
}

/// A deal won at 23:59:59 local time on the last day of a quarter (after the switch to
/// summer time) counts in that quarter; one won a second later in the next, in every
/// report that buckets or filters by period.
pub async fn quarter_end_across_dst(store: &Store) -> CheckResult {
    let (d, a) = tenant(store, 1).await?;
    let created = local(2026, 3, 1, 12, 0, 0);
    make(
        &d,
        &[
            spec(
                "rep",
                Some(eur("10")),
                created,
                End::Won(local(2026, 3, 31, 23, 59, 59)),
            ),
            spec(
                "rep",
                Some(eur("20")),
                created,
                End::Won(local(2026, 4, 1, 0, 0, 0)),
            ),
        ],
        None,
    )
    .await?;
    let q = a
        .forecast(
            &d.f.admin,
            &Forecast {
                period: year_2026(),
                bucket: Bucket::Quarter,
                pipeline: None,
                rate_date: None,
                best_case_at: 50,
                commit_at: 90,
            },
        )
        .await
        .at("forecast")?;
    let closed: Vec<(u64, Decimal)> = q
        .iter()
        .map(|r| (r.closed.count, r.closed.amount))
        .collect();
    ensure_eq!(
        closed[..2],
        [(1, Decimal::from(10)), (1, Decimal::from(20))],
        "Q1 and Q2 closed"
    );
    for (p, want) in [
        (period(date(2026, 1, 1), date(2026, 3, 31)), 1),
        (period(date(2026, 4, 1), date(2026, 6, 30)), 1),
        (period(date(2026, 3, 31), date(2026, 3, 31)), 1),
    ] {
        let w = a
            .win_rate(
                &d.f.admin,
                &WinRate {
                    period: p,
                    by: None,
                    pipeline: None,
                    rate_date: None,
                },
            )
            .await
            .at("win rate")?;
        ensure_eq!(w[0].won, want, "won in {p:?}");
    }
    every_report_equals_oracle(store, &d, &a, &d.f.admin, "admin").await
}

/// Access: each Rep's, the ReadOnly user's every report equals the oracle over the deals
/// that actor lists (own and team's; never another rep's through a count, total or
/// group); and the reps' figures differ from the admin's, so a report that ignored the
/// scope would fail.
pub async fn scoped_by_access(store: &Store) -> CheckResult {
    let (d, a) = scenario_tenant(store, 1).await?;
    for who in ["rep", "rep2", "rep_y", "readonly"] {
        every_report_equals_oracle(store, &d, &a, actor(&d, who), who).await?;
    }
    let r = WinRate {
        period: year_2026(),
        by: None,
        pipeline: None,
        rate_date: None,
    };
    let admin = a.win_rate(&d.f.admin, &r).await.at("admin")?;
    for who in ["rep", "rep_y"] {
        let rep = a.win_rate(actor(&d, who), &r).await.at("rep")?;
        ensure!(
            rep[0].won < admin[0].won,
            "{who} sees fewer wins than the admin: {rep:?} vs {admin:?}"
        );
        let by_owner = a
            .win_rate(
                actor(&d, who),
                &WinRate {
                    by: Some(Dim::Owner),
                    ..r.clone()
                },
            )
            .await
            .at("by owner")?;
        let other = if who == "rep" { &d.f.rep_y } else { &d.f.rep };
        let other = other.actor().user.to_string();
        ensure!(
            by_owner
                .iter()
                .all(|row| row.group.as_deref() != Some(other.as_str())),
            "{who} sees no group of another team's rep: {by_owner:?}"
        );
    }
    Ok(())
}

/// A currency without a rate on the rate date is a Validation error on `rate_date` naming
/// the currency and the date, not a silent zero; no base currency is one on
/// `base_currency`. A deleted deal in such a currency does not count (no error).
pub async fn missing_rate(store: &Store) -> CheckResult {
    let (d, a) = tenant(store, 1).await?;
    let gbp = Money::parse("10", "GBP").expect("GBP");
    let jan = local(2026, 1, 5, 9, 0, 0);
    make(
        &d,
        &[Spec {
            deleted: true,
            ..spec("rep", Some(gbp), jan, End::Won(jan))
        }],
        None,
    )
    .await?;
    let r = WinRate {
        period: year_2026(),
        by: None,
        pipeline: None,
        rate_date: Some(date(2026, 5, 1)),
    };
    a.win_rate(&d.f.admin, &r)
        .await
        .at("deleted GBP deal left out")?;
    make(&d, &[spec("rep", Some(gbp), jan, End::Won(jan))], None).await?;
    let got = a.win_rate(&d.f.admin, &r).await;
    let reasons = validation_reasons(&got).ok_or_else(|| Failure::new(format!("{got:?}")))?;
    ensure!(
        reasons
            .iter()
            .any(|(f, why)| f == "rate_date" && why.contains("GBP") && why.contains("2026-05-01")),
        "the error names GBP and the date: {reasons:?}"
    );
    // A USD rate from 2026-01-01 does not cover a date before it.
    make(&d, &[spec("rep", Some(usd("5")), jan, End::Open)], None).await?;
    expect_validation(
        a.pipeline_by_stage(
            &d.f.admin,
            &PipelineByStage {
                pipeline: None,
                by: None,
                rate_date: Some(date(2025, 12, 31)),
            },
        )
        .await,
        "rate_date",
        "no USD rate on 2025-12-31",
    )?;
    // A tenant without a base currency.
    let bare = crate::pipeline_deals::setup(store).await?;
    make(&bare, &[spec("rep", Some(eur("1")), jan, End::Open)], None).await?;
    expect_validation(
        a.pipeline_by_stage(
            &bare.f.admin,
            &PipelineByStage {
                pipeline: None,
                by: None,
                rate_date: None,
            },
        )
        .await,
        "base_currency",
        "no base currency",
    )
}

/// Bad input is a typed error naming the part: report JSON (unknown format, report,
/// group-by, inverted or unbounded period, SQL in a group-by), an unknown pipeline,
/// inverted forecast thresholds, too many buckets, bad settings; only an Admin sets the
/// settings. Nothing is written by a refused setting.
pub async fn bad_input(store: &Store) -> CheckResult {
    let (d, a) = tenant(store, 1).await?;
    let admin = &d.f.admin;
    for (json, field) in [
        (
            r#"{"format":2,"report":"win_rate","period":{"from":"2026-01-01","to":"2026-02-01"}}"#,
            "format",
        ),
        (r#"{"format":1,"report":"funnel"}"#, "report"),
        (
            r#"{"format":1,"report":"win_rate","by":"owner_id' OR 1=1--","period":{"from":"2026-01-01","to":"2026-02-01"}}"#,
            "by",
        ),
        (
            r#"{"format":1,"report":"win_rate","period":{"from":"2026-03-01","to":"2026-02-01"}}"#,
            "period",
        ),
        (
            r#"{"format":1,"report":"sales_cycle","period":{"from":"2026-03-01"}}"#,
            "period.to",
        ),
        (
            r#"{"format":1,"report":"forecast","period":{"from":"2026-01-01","to":"2026-02-01"},"bucket":"decade"}"#,
            "bucket",
        ),
    ] {
        expect_validation(Report::from_json(json), field, json)?;
    }
    let p = year_2026();
    expect_validation(
        a.win_rate(
            admin,
            &WinRate {
                period: p,
                by: None,
                pipeline: Some(crmkit_core::PipelineId::new()),
                rate_date: None,
            },
        )
        .await,
        "pipeline",
        "unknown pipeline",
    )?;
    let f = Forecast {
        period: p,
        bucket: Bucket::Month,
        pipeline: None,
        rate_date: None,
        best_case_at: 90,
        commit_at: 50,
    };
    expect_validation(
        a.forecast(admin, &f).await,
        "commit_at",
        "inverted thresholds",
    )?;
    expect_validation(
        a.forecast(
            admin,
            &Forecast {
                period: period(date(2020, 1, 1), date(2026, 12, 31)),
                bucket: Bucket::Day,
                best_case_at: 50,
                commit_at: 90,
                ..f
            },
        )
        .await,
        "bucket",
        "too many buckets",
    )?;
    let before = a.settings(admin).await.at("settings")?;
    expect_validation(
        a.set_settings(admin, "Europe/Berlin'; DROP TABLE x--", 13, before.version)
            .await,
        "time_zone",
        "bad zone",
    )?;
    let r = a
        .set_settings(admin, "Europe/Berlin", 13, before.version)
        .await;
    expect_validation(r, "fiscal_year_start", "month 13")?;
    expect_denied(
        a.set_settings(&d.f.rep, "UTC", 1, before.version).await,
        "a rep sets the settings",
    )?;
    expect_denied(
        a.set_settings(&d.f.manager, "UTC", 1, before.version).await,
        "a manager sets the settings",
    )?;
    let stale = a.set_settings(admin, "UTC", 2, before.version + 5).await;
    ensure!(
        matches!(stale, Err(Error::Conflict { .. })),
        "stale version: {stale:?}"
    );
    ensure_eq!(
        a.settings(&d.f.rep).await.at("settings")?,
        before,
        "nothing written"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Property
// ---------------------------------------------------------------------------------------

/// One random deal: owner (index), team (index), amount (currency index, cents), close
/// date (days from 2025-12-01), probability, source (index), outcome (0 open, 1 won, 2
/// lost), seconds from 2026-01-01 to its creation, seconds from creation to its end,
/// deleted.
type RandomDeal = (
    usize,
    usize,
    Option<(usize, i64)>,
    Option<u64>,
    Option<u8>,
    usize,
    u8,
    i64,
    i64,
    bool,
);

async fn random_case(store: &Store, deals: &[RandomDeal]) -> CheckResult {
    let (d, a) = tenant(store, 1 + (deals.len() as u32 % 12)).await?;
    let owners = ["admin", "rep", "rep2", "rep_y"];
    let teams = [None, Some("x"), Some("y")];
    let sources = [Source::WebForm, Source::Referral, Source::Other];
    let start = local(2026, 1, 1, 0, 0, 0);
    let specs: Vec<Spec> = deals
        .iter()
        .map(
            |&(o, t, amount, close, probability, src, outcome, created, len, deleted)| {
                let created = start + chrono::Duration::seconds(created);
                let at = created + chrono::Duration::seconds(len);
                Spec {
                    team: teams[t % 3],
                    close: close.map(|c| date(2025, 12, 1) + chrono::Days::new(c)),
                    probability,
                    source: sources[src % 3],
                    deleted,
                    ..spec(
                        owners[o % 4],
                        amount.map(|(c, cents)| {
                            Money::new(
                                Decimal::new(cents, 2),
                                Currency::parse(["EUR", "USD"][c % 2]).expect("currency"),
                            )
                            .expect("money")
                        }),
                        created,
                        match outcome {
                            1 => End::Won(at),
                            2 => End::Lost(at),
                            _ => End::Open,
                        },
                    )
                }
            },
        )
        .collect();
    make(&d, &specs, None).await?;
    let rd = date(2026, 12, 31);
    for (who, ctx) in [("admin", &d.f.admin), ("rep", &d.f.rep)] {
        let o = oracle(store, &d, ctx).await?;
        let rates = Rates::new(store, ctx, &o, rd).await?;
        let r = PipelineByStage {
            pipeline: None,
            by: Some(Dim::Owner),
            rate_date: Some(rd),
        };
        ensure_eq!(
            a.pipeline_by_stage(ctx, &r).await.at("by stage")?,
            oracle_by_stage(&o, &rates, &r),
            "{who}: pipeline by stage"
        );
        let f = Forecast {
            period: year_2026(),
            bucket: Bucket::Month,
            pipeline: None,
            rate_date: Some(rd),
            best_case_at: 40,
            commit_at: 80,
        };
        ensure_eq!(
            a.forecast(ctx, &f).await.at("forecast")?,
            oracle_forecast(&o, &rates, &f),
            "{who}: forecast"
        );
        let w = WinRate {
            period: year_2026(),
            by: Some(Dim::Team),
            pipeline: None,
            rate_date: Some(rd),
        };
        ensure_eq!(
            a.win_rate(ctx, &w).await.at("win rate")?,
            oracle_win_rate(&o, &rates, &w),
            "{who}: win rate"
        );
        let c = SalesCycle {
            period: year_2026(),
            by: None,
            pipeline: None,
        };
        ensure_eq!(
            a.sales_cycle(ctx, &c).await.at("cycle")?,
            oracle_cycle(&o, &c),
            "{who}: sales cycle"
        );
        let v = Velocity {
            period: year_2026(),
            pipeline: None,
            rate_date: Some(rd),
        };
        ensure_eq!(
            a.velocity(ctx, &v).await.at("velocity")?,
            oracle_velocity(&o, &rates, &v),
            "{who}: velocity"
        );
    }
    Ok(())
}

/// Property: on random deals (owners, teams, EUR/USD amounts or none, close dates in and
/// out of the period or none, probabilities, wins and losses at random instants, some
/// deleted) and a random fiscal start, the reports equal the oracle for the Admin and for
/// a Rep (proptest, 8 cases of up to 12 deals).
pub fn random_deals<F, Fut>(factory: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = crmkit_core::Result<Store>>,
{
    use proptest::prelude::*;
    let deal = (
        0usize..4,
        0usize..3,
        proptest::option::of((0usize..2, 0i64..100_000_000)),
        proptest::option::weighted(0.8, 0u64..430),
        // The thresholds themselves (40, 80) often, so that a band's edge is exercised.
        proptest::option::weighted(
            0.8,
            prop_oneof![1 => Just(40u8), 1 => Just(80u8), 2 => 0u8..=100],
        ),
        0usize..3,
        prop_oneof![2 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        0i64..(330 * 86_400),
        0i64..(60 * 86_400),
        prop_oneof![5 => Just(false), 1 => Just(true)],
    );
    crate::support::run_property(
        "random deals",
        factory,
        proptest::collection::vec(deal, 0..12),
        (8, 20),
        |s, deals| Box::pin(async move { random_case(s, &deals).await }),
    )
}

/// The `<rect>` fills (lower case) and the texts of an SVG chart, parsed as XML.
fn svg_parts(svg: &str) -> CheckResult<(Vec<String>, Vec<String>)> {
    let doc = roxmltree::Document::parse(svg).map_err(|e| Failure::new(format!("SVG: {e}")))?;
    let root = doc.root_element();
    ensure!(root.tag_name().name() == "svg", "the chart is an <svg>");
    let fills = root
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .filter_map(|n| n.attribute("fill").map(str::to_ascii_lowercase))
        .collect();
    let texts = root
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .collect();
    Ok((fills, texts))
}

/// What a chart shows for `text`: a user's or team's name for their id, a pipeline's or
/// campaign's name as `ctx` reads it, else the text.
async fn shown(store: &Store, ctx: &Ctx, text: &str) -> CheckResult<String> {
    let Ok(id) = uuid::Uuid::parse_str(text) else {
        return Ok(text.to_owned());
    };
    let dir = store.directory();
    if let Ok(u) = dir.user(ctx, crmkit_core::UserId::from_uuid(id)).await {
        return Ok(u.name);
    }
    if let Ok(t) = dir.team(ctx, TeamId::from_uuid(id)).await {
        return Ok(t.name);
    }
    for kind in ["pipeline", "campaign"] {
        if let Ok(r) = store.records().get(ctx, kind, id).await
            && let Some(n) = r.get("name").and_then(|n| n.as_str())
        {
            return Ok(n.to_owned());
        }
    }
    Ok(text.to_owned())
}

/// Reports whose definitions need more than a period and a bucket (snapshot ids).
const NEEDS_FIXTURES: &[&str] = &["pipeline_waterfall", "forecast_accuracy"];

/// A definition of report `name` over 2026: the first of (no parameters, a period, a
/// period and a monthly bucket, 14 quiet days) that parses.
fn any_definition(name: &str) -> Option<Report> {
    let period = r#""period": {"from": "2026-01-01", "to": "2026-12-31"}"#;
    [
        String::new(),
        format!(", {period}"),
        format!(r#", {period}, "bucket": "month""#),
        r#", "quiet_days": 14"#.to_owned(),
    ]
    .iter()
    .find_map(|extra| {
        Report::from_json(&format!(r#"{{"format": 1, "report": "{name}"{extra}}}"#)).ok()
    })
}

/// A dashboard renders every widget's report as the actor runs it (the same rows as
/// `Analytics::run`), with one bar per row and series in its SVG chart and the row labels
/// and series names as text; a Rep's dashboard shows no group of another team's rep; a
/// bad definition is a Validation error naming the widget's part, and a widget whose
/// report fails fails the rendering with the report's error.
pub async fn dashboard(store: &Store) -> CheckResult {
    let (d, a) = scenario_tenant(store, 1).await?;
    let forecast = Report::Forecast(Forecast {
        period: year_2026(),
        bucket: Bucket::Quarter,
        pipeline: None,
        rate_date: None,
        best_case_at: 50,
        commit_at: 90,
    });
    let by_owner = Report::PipelineByStage(PipelineByStage {
        pipeline: None,
        by: Some(Dim::Owner),
        rate_date: None,
    });
    let win = Report::WinRate(WinRate {
        period: year_2026(),
        by: Some(Dim::Owner),
        pipeline: None,
        rate_date: None,
    });
    let dash = Dashboard::new("Monday")
        .widget(Widget::new("Forecast", forecast, ChartKind::StackedBar))
        .widget(
            Widget::new("Pipeline by owner", by_owner, ChartKind::StackedBar)
                .label("stage_name")
                .values(["amount"])
                .series("group"),
        )
        .widget(Widget::new("Win rate", win, ChartKind::Bar).values(["won", "lost"]));
    let back = Dashboard::from_json(&dash.to_json().to_string()).at("definition")?;
    ensure!(back == dash, "the definition round-trips through JSON");
    for who in ["admin", "rep", "rep_y"] {
        let ctx = actor(&d, who);
        let out = a.render_dashboard(ctx, &dash).await.at(who)?;
        ensure!(out.widgets.len() == 3, "{who}: three widgets");
        for (w, r) in dash.widgets.iter().zip(&out.widgets) {
            let rows = a.run(ctx, &w.report).await.at("run")?;
            ensure!(r.rows == rows, "{who}: {} shows the report's rows", w.title);
            let (fills, texts) = svg_parts(&r.svg)?;
            ensure!(texts.contains(&w.title), "{who}: the caption {}", w.title);
            let data = w.chart_data(&rows).at("chart data")?;
            for (i, s) in data.series.iter().enumerate() {
                let bars = fills
                    .iter()
                    .filter(|f| **f == color_hex(i).to_ascii_lowercase());
                ensure!(
                    bars.count() == data.labels.len() + 1,
                    "{who}: {}: one bar per row of series {} plus its legend box",
                    w.title,
                    s.name
                );
                let name = shown(store, ctx, &s.name).await?;
                ensure!(texts.contains(&name), "{who}: legend {name} ({})", s.name);
            }
            for l in &data.labels {
                let name = shown(store, ctx, l).await?;
                ensure!(texts.contains(&name), "{who}: {}: label {name}", w.title);
            }
        }
        if who != "admin" {
            let other = if who == "rep" { &d.f.rep_y } else { &d.f.rep };
            let other = other.actor().user;
            let other_name = store
                .directory()
                .user(&d.f.admin, other)
                .await
                .at("other rep")?
                .name;
            let other = other.to_string();
            for w in &out.widgets {
                let (_, texts) = svg_parts(&w.svg)?;
                ensure!(
                    !w.svg.contains(&other)
                        && !texts.contains(&other_name)
                        && w.rows.rows.iter().all(|r| r["group"] != other.as_str()),
                    "{who}'s dashboard shows nothing of another team's rep"
                );
            }
        } else {
            // The admin's pipeline pivot names the owners, not their ids.
            let (_, texts) = svg_parts(&out.widgets[1].svg)?;
            let rep = store
                .directory()
                .user(ctx, d.f.rep.actor().user)
                .await
                .at("rep")?;
            ensure!(texts.contains(&rep.name), "owners by name: {texts:?}");
        }
    }
    // A widget of every report with its default fields: the dashboard module's table of
    // row fields matches the rows each report really returns (a drawn field missing from
    // a row fails the rendering).
    let mut every = Dashboard::new("Every report");
    for name in REPORT_NAMES {
        let Some(report) = any_definition(name) else {
            ensure!(
                NEEDS_FIXTURES.contains(name),
                "report {name} has a definition with only a period, a bucket or quiet days"
            );
            continue;
        };
        let chart = if *name == "stage_funnel" {
            ChartKind::Funnel
        } else {
            ChartKind::Bar
        };
        every = every.widget(Widget::new(*name, report, chart));
    }
    let earlier = a.take_snapshot(&d.f.admin).await.at("snapshot")?;
    let later = a.take_snapshot(&d.f.admin).await.at("snapshot")?;
    every = every
        .widget(Widget::new(
            "pipeline_waterfall",
            Report::PipelineWaterfall(Waterfall {
                earlier: earlier.id,
                later: later.id,
                pipeline: None,
                period: None,
            }),
            ChartKind::Bar,
        ))
        .widget(Widget::new(
            "forecast_accuracy",
            Report::ForecastAccuracy(ForecastAccuracy {
                snapshot: earlier.id,
                period: year_2026(),
                pipeline: None,
                by_owner: true,
                rate_date: None,
                best_case_at: 50,
                commit_at: 90,
            }),
            ChartKind::Bar,
        ));
    ensure!(
        every.widgets.len() == REPORT_NAMES.len(),
        "a widget of every report"
    );
    let out = a
        .render_dashboard(&d.f.admin, &every)
        .await
        .at("every report")?;
    for w in &out.widgets {
        svg_parts(&w.svg)?;
    }
    ensure!(
        out.widgets
            .iter()
            .filter(|w| !w.rows.rows.is_empty())
            .count()
            >= 6,
        "most reports have rows in the scenario"
    );
    let mut bad = dash.clone();
    bad.widgets[2].values = vec!["nope".into()];
    let e = a.render_dashboard(&d.f.admin, &bad).await;
    expect_validation(e, "widgets[2].values[0]", "an unknown value field")?;
    let mut no_rate = dash;
    no_rate.widgets.truncate(1);
    if let Report::Forecast(f) = &mut no_rate.widgets[0].report {
        f.rate_date = Some(date(1990, 1, 1));
    }
    let e = a.render_dashboard(&d.f.admin, &no_rate).await;
    ensure!(
        e.as_ref()
            .err()
            .and_then(Error::validation_errors)
            .is_some(),
        "a report's error fails the rendering: {e:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name.
    names: analytics_check_names,
    checks: [
        empty_tenant,
        one_deal,
        reports_equal_oracle,
        fiscal_year,
        quarter_end_across_dst,
        scoped_by_access,
        missing_rate,
        bad_input,
        dashboard,
    ],
}
