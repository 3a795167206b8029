//! Conformance checks of the lead and campaign reports (`crmkit_analytics::leads`: lead
//! funnel by source, campaign ROI) on any backend.
//!
//! Every report is compared with an oracle computed in plain Rust from what the actor
//! reads through the public API: the leads it lists (`Leads::list`), the deals it lists
//! (`Deals::list`), the campaigns it lists (`Campaigns::list`) and the exchange rates
//! (`Currencies::rate_at`). The oracle follows the definitions of the analytics crate's
//! `leads` docs literally (a lead's local creation date in the period, its status now; a
//! deal attributed by its `campaign` field, won on a local date of the period), not the
//! report's aggregates. Each check makes its own tenant; [`checks`] lists them.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};

use crmkit_analytics::leads::{sort_lead_rows, sort_roi_rows};
use crmkit_analytics::period::{Period, local_date};
use crmkit_analytics::{
    Analytics, CampaignRoi, LeadDim, LeadFunnel, LeadFunnelRow, Report, RoiRow,
};
use crmkit_core::store::{Value, Write};
use crmkit_core::{CampaignId, Changeset, Ctx, Currency, LeadId, Money, Query, RecordRef, Store};
use crmkit_pipeline::campaign::{
    Campaign, CampaignKind, Campaigns, CurrencyTotal, DEAL_TABLE, NewCampaign,
};
use crmkit_pipeline::currency::Currencies;
use crmkit_pipeline::deal::{Deal, NewDeal, Source, StageKind};
use crmkit_pipeline::lead::{ConvertDeal, ConvertLead, Lead, LeadStatus, Leads, NewLead};

use crate::analytics::{ZONE, actor, eur, local, period, q1, team, usd, year_2026};
use crate::check::{At, expect_validation, validation_reasons};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::pipeline_deals::DealFixture;
use crate::support::{all_pages, at_time, date};

pub use crate::analytics::modules;

fn q2() -> Period {
    period(date(2026, 4, 1), date(2026, 6, 30))
}

/// The tenant of a check: base currency EUR, USD at 0.9 from 2026-01-01 and 0.95 from
/// 2026-06-01, reporting in [`ZONE`].
struct Tenant {
    d: DealFixture,
    a: Analytics,
    leads: Leads,
    campaigns: Campaigns,
}

async fn tenant(store: &Store) -> CheckResult<Tenant> {
    let d = crate::pipeline_deals::setup(store).await?;
    let admin = &d.f.admin;
    let cur = Currencies::new(store).at("currencies")?;
    cur.set_base_currency(admin, Currency::parse("EUR").at("EUR")?)
        .await
        .at("base currency")?;
    let usd = Currency::parse("USD").at("USD")?;
    cur.set_rate(admin, usd, date(2026, 1, 1), Decimal::new(9, 1))
        .await
        .at("rate")?;
    cur.set_rate(admin, usd, date(2026, 6, 1), Decimal::new(95, 2))
        .await
        .at("rate")?;
    let a = Analytics::new(store).at("Analytics::new")?;
    a.set_settings(admin, ZONE, 1, 0).await.at("settings")?;
    Ok(Tenant {
        leads: Leads::new(store).at("Leads::new")?,
        campaigns: Campaigns::new(store).at("Campaigns::new")?,
        d,
        a,
    })
}

// ---------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------

/// A campaign to make (by the admin): name, owner, team, actual cost, deleted.
#[derive(Clone, Debug)]
struct CampaignPlan {
    name: &'static str,
    owner: &'static str,
    team: Option<&'static str>,
    cost: Option<Money>,
    deleted: bool,
}

fn campaign(name: &'static str, owner: &'static str, cost: Option<Money>) -> CampaignPlan {
    CampaignPlan {
        name,
        owner,
        team: None,
        cost,
        deleted: false,
    }
}

/// What happens to a lead after its creation, at an instant.
#[derive(Clone, Debug)]
enum Then {
    /// Nothing: it stays `new`.
    Stay,
    /// Its status moves (not to converted).
    Status(DateTime<Utc>, LeadStatus),
    /// It is converted; with a deal of this amount, won at the instant when given.
    Convert(
        DateTime<Utc>,
        Option<(Option<Money>, Option<DateTime<Utc>>)>,
    ),
}

/// A lead to make (by the admin for `owner`) at `created`, with a source and a campaign
/// (an index into the campaigns made).
#[derive(Clone, Debug)]
struct LeadPlan {
    owner: &'static str,
    team: Option<&'static str>,
    source: Source,
    campaign: Option<usize>,
    created: DateTime<Utc>,
    then: Then,
    deleted: bool,
}

fn lead(
    owner: &'static str,
    source: Source,
    campaign: Option<usize>,
    created: DateTime<Utc>,
    then: Then,
) -> LeadPlan {
    LeadPlan {
        owner,
        team: None,
        source,
        campaign,
        created,
        then,
        deleted: false,
    }
}

/// A deal made directly (not from a lead), attributed to a campaign (an index), won at an
/// instant when given.
#[derive(Clone, Debug)]
struct DealPlan {
    owner: &'static str,
    team: Option<&'static str>,
    campaign: Option<usize>,
    amount: Option<Money>,
    won: Option<DateTime<Utc>>,
    deleted: bool,
}

fn deal(
    owner: &'static str,
    campaign: Option<usize>,
    amount: Option<Money>,
    won: Option<DateTime<Utc>>,
) -> DealPlan {
    DealPlan {
        owner,
        team: None,
        campaign,
        amount,
        won,
        deleted: false,
    }
}

/// Moves a deal into the default pipeline's won stage at `at`.
async fn win(t: &Tenant, deal: Deal, at: DateTime<Utc>) -> CheckResult<Deal> {
    let (ctx, _) = at_time(&t.d.f.admin, at);
    let won =
        t.d.default
            .stages
            .iter()
            .find(|s| s.kind == StageKind::Won)
            .ok_or_else(|| Failure::new("the default pipeline has no won stage"))?;
    t.d.deals
        .move_to_stage(&ctx, deal.id, deal.version, won.id, None)
        .await
        .at("win deal")
}

/// Makes the campaigns, leads and deals; the campaigns' ids.
async fn make(
    t: &Tenant,
    campaigns: &[CampaignPlan],
    leads: &[LeadPlan],
    deals: &[DealPlan],
) -> CheckResult<(Vec<CampaignId>, Vec<LeadId>)> {
    let d = &t.d;
    let admin = &d.f.admin;
    let mut made: Vec<Campaign> = vec![];
    for c in campaigns {
        let mut n =
            NewCampaign::named(c.name, CampaignKind::Email).owner(actor(d, c.owner).actor().user);
        if let Some(tm) = team(d, c.team) {
            n = n.team(tm);
        }
        if let Some(m) = c.cost {
            n = n.actual_cost(m);
        }
        made.push(t.campaigns.create(admin, n).await.at("create campaign")?);
    }
    let ids: Vec<CampaignId> = made.iter().map(|c| c.id).collect();
    let mut lead_ids = vec![];
    for (i, p) in leads.iter().enumerate() {
        let (ctx, clock) = at_time(admin, p.created);
        let mut n = NewLead::named(format!("Lead{i}"), "Plan")
            .source(p.source)
            .owner(actor(d, p.owner).actor().user);
        if let Some(tm) = team(d, p.team) {
            n = n.team(tm);
        }
        if let Some(c) = p.campaign {
            n = n.campaign(ids[c]);
        }
        let mut l = t.leads.create(&ctx, n).await.at("create lead")?;
        match &p.then {
            Then::Stay => {}
            Then::Status(at, s) => {
                clock.set(*at);
                let reason = (*s == LeadStatus::Disqualified).then(|| "not a fit".to_owned());
                l = t
                    .leads
                    .set_status(&ctx, l.id, l.version, *s, reason)
                    .await
                    .at("set lead status")?;
            }
            Then::Convert(at, with_deal) => {
                clock.set(*at);
                let input = ConvertLead {
                    deal: with_deal.as_ref().map(|(amount, _)| ConvertDeal {
                        amount: *amount,
                        ..ConvertDeal::new(format!("Deal of lead {i}"), d.default.id)
                    }),
                    ..ConvertLead::default()
                };
                let done = t
                    .leads
                    .convert(&ctx, l.id, l.version, input)
                    .await
                    .at("convert lead")?;
                l = done.lead;
                if let (Some(deal), Some((_, Some(won)))) = (done.deal, with_deal) {
                    win(t, deal, *won).await?;
                }
            }
        }
        if p.deleted {
            t.leads
                .delete(&ctx, l.id, l.version)
                .await
                .at("delete lead")?;
        }
        lead_ids.push(l.id);
    }
    for (i, p) in deals.iter().enumerate() {
        let mut n =
            NewDeal::new(format!("direct {i}"), d.default.id).owner(actor(d, p.owner).actor().user);
        if let Some(tm) = team(d, p.team) {
            n = n.team(tm);
        }
        if let Some(c) = p.campaign {
            n = n.campaign(ids[c]);
        }
        if let Some(m) = p.amount {
            n = n.amount(m);
        }
        let mut deal = d.deals.create(admin, n).await.at("create deal")?;
        if let Some(at) = p.won {
            deal = win(t, deal, at).await?;
        }
        if p.deleted {
            d.deals
                .delete(admin, deal.id, deal.version)
                .await
                .at("delete deal")?;
        }
    }
    for (c, p) in made.iter().zip(campaigns) {
        if p.deleted {
            t.campaigns
                .delete(admin, c.id, c.version)
                .await
                .at("delete campaign")?;
        }
    }
    Ok((ids, lead_ids))
}

// ---------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------

/// What one actor reads: its leads, deals and campaigns, the zone and base currency.
struct Oracle {
    leads: Vec<Lead>,
    deals: Vec<Deal>,
    campaigns: Vec<Campaign>,
    tz: Tz,
    base: Currency,
}

async fn oracle(store: &Store, t: &Tenant, ctx: &Ctx) -> CheckResult<Oracle> {
    let q = Query::new().limit(50);
    let leads = all_pages(
        &q,
        "list leads",
        |q| async move { t.leads.list(ctx, &q).await },
    )
    .await?;
    let deals = all_pages(&q, "list deals", |q| async move {
        t.d.deals.list(ctx, &q).await
    })
    .await?;
    let campaigns = all_pages(&q, "list campaigns", |q| async move {
        t.campaigns.list(ctx, &q).await
    })
    .await?;
    let base = Currencies::new(store)
        .at("currencies")?
        .require_base_currency(ctx)
        .await
        .at("base")?;
    let settings = t.a.settings(ctx).await.at("settings")?;
    Ok(Oracle {
        leads,
        deals,
        campaigns,
        tz: settings
            .time_zone
            .parse()
            .map_err(|_| Failure::new("zone"))?,
        base,
    })
}

fn round(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointNearestEven)
}

fn oracle_funnel(o: &Oracle, r: &LeadFunnel) -> Vec<LeadFunnelRow> {
    let mut groups: BTreeMap<(&'static str, Option<String>), [u64; 6]> = BTreeMap::new();
    for l in &o.leads {
        if !r.period.contains(local_date(o.tz, l.created_at)) {
            continue;
        }
        let group = match r.by {
            None => None,
            Some(LeadDim::Owner) => Some(l.owner.to_string()),
            Some(LeadDim::Team) => l.team.map(|x| x.to_string()),
            Some(LeadDim::Campaign) => l.campaign.map(|x| x.to_string()),
        };
        let i = LeadStatus::ALL
            .iter()
            .position(|s| *s == l.status)
            .expect("a status");
        groups.entry((l.source.as_str(), group)).or_default()[i] += 1;
    }
    let mut out: Vec<LeadFunnelRow> = groups
        .into_iter()
        .map(|((source, group), counts)| {
            let created: u64 = counts.iter().sum();
            let converted = counts[5];
            LeadFunnelRow {
                source: Source::parse(source).expect("source"),
                group,
                created,
                new: counts[0],
                contacted: counts[1],
                nurturing: counts[2],
                qualified: counts[3],
                disqualified: counts[4],
                converted,
                conversion_rate: (created > 0)
                    .then(|| round(Decimal::from(converted) / Decimal::from(created), 4)),
            }
        })
        .collect();
    sort_lead_rows(&mut out);
    out
}

/// Rates on one date, read through `Currencies::rate_at`, for every currency the oracle's
/// campaigns and deals use.
async fn rates(
    store: &Store,
    ctx: &Ctx,
    o: &Oracle,
    on: NaiveDate,
) -> CheckResult<BTreeMap<&'static str, Decimal>> {
    let cur = Currencies::new(store).at("currencies")?;
    let mut out = BTreeMap::new();
    let used = o
        .deals
        .iter()
        .filter_map(|d| d.amount)
        .chain(o.campaigns.iter().filter_map(|c| c.actual_cost));
    for m in used {
        let r = cur.rate_at(ctx, m.currency(), on).await.at("rate_at")?;
        out.insert(m.currency().code(), r.rate);
    }
    Ok(out)
}

fn oracle_roi(o: &Oracle, rates: &BTreeMap<&'static str, Decimal>, r: &CampaignRoi) -> Vec<RoiRow> {
    let digits = o.base.minor_digits();
    let mut out = vec![];
    for c in &o.campaigns {
        if r.campaign.is_some_and(|x| x != c.id) {
            continue;
        }
        let cost = c
            .actual_cost
            .map(|m| round(m.amount() * rates[m.currency().code()], digits))
            .unwrap_or_default();
        let attributed: Vec<&Deal> = o
            .deals
            .iter()
            .filter(|d| d.campaign == Some(c.id))
            .collect();
        let won: Vec<&&Deal> = attributed
            .iter()
            .filter(|d| {
                d.won_at
                    .is_some_and(|w| r.period.is_none_or(|p| p.contains(local_date(o.tz, w))))
            })
            .collect();
        let mut by_currency: BTreeMap<&'static str, Decimal> = BTreeMap::new();
        for d in &won {
            if let Some(m) = d.amount {
                *by_currency.entry(m.currency().code()).or_default() += m.amount();
            }
        }
        let revenue: Decimal = by_currency
            .iter()
            .map(|(code, sum)| round(*sum * rates[code], digits))
            .sum();
        out.push(RoiRow {
            campaign: c.id,
            name: c.name.clone(),
            cost,
            revenue,
            roi: (!cost.is_zero()).then(|| round((revenue - cost) / cost, 4)),
            leads: o.leads.iter().filter(|l| l.campaign == Some(c.id)).count() as u64,
            deals: attributed.len() as u64,
            won: won.len() as u64,
        });
    }
    sort_roi_rows(&mut out);
    out
}

/// Running the definition through its JSON gives the typed rows.
async fn json_equals_typed<T: serde::Serialize>(
    a: &Analytics,
    ctx: &Ctx,
    r: Report,
    typed: &[T],
) -> CheckResult {
    crate::analytics::json_rows_equal(a, ctx, r, typed)
        .await
        .map(|_| ())
}

/// Every report, for several periods, groupings, campaigns and rate dates, equals the
/// oracle for `ctx`; with `json`, running each definition from its JSON too.
async fn every_report_equals_oracle(
    store: &Store,
    t: &Tenant,
    ctx: &Ctx,
    who: &str,
    json: bool,
) -> CheckResult {
    let o = oracle(store, t, ctx).await?;
    let periods = [
        year_2026(),
        q1(),
        q2(),
        period(date(2026, 3, 31), date(2026, 3, 31)),
    ];
    for p in periods {
        for by in [
            None,
            Some(LeadDim::Owner),
            Some(LeadDim::Team),
            Some(LeadDim::Campaign),
        ] {
            let r = LeadFunnel { period: p, by };
            let got = t.a.lead_funnel(ctx, &r).await.at("lead funnel")?;
            ensure_eq!(
                got,
                oracle_funnel(&o, &r),
                "{who}: lead funnel {p:?} {by:?}"
            );
            if json {
                json_equals_typed(&t.a, ctx, Report::LeadFunnel(r), &got).await?;
            }
        }
    }
    let mut which: Vec<Option<CampaignId>> = vec![None];
    which.extend(o.campaigns.iter().map(|c| Some(c.id)));
    for p in [None, Some(year_2026()), Some(q1()), Some(q2())] {
        for rd in [date(2026, 3, 31), date(2026, 12, 31)] {
            let rates = rates(store, ctx, &o, rd).await?;
            for campaign in &which {
                let r = CampaignRoi {
                    campaign: *campaign,
                    period: p,
                    rate_date: Some(rd),
                };
                let got = t.a.campaign_roi(ctx, &r).await.at("campaign roi")?;
                ensure_eq!(
                    got,
                    oracle_roi(&o, &rates, &r),
                    "{who}: campaign roi {campaign:?} {p:?} at {rd}"
                );
                if json {
                    json_equals_typed(&t.a, ctx, Report::CampaignRoi(r), &got).await?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------

/// Campaigns: Spring (rep, team X, 1000 EUR), Expo (rep_y, team Y, 500 USD), Expo again
/// (the manager, cost 0: a name tie and no ROI), Quiet (the admin, no cost, nothing
/// attributed), Gone (rep, 10 EUR, deleted).
fn scenario_campaigns() -> Vec<CampaignPlan> {
    vec![
        CampaignPlan {
            team: Some("x"),
            ..campaign("Spring", "rep", Some(eur("1000")))
        },
        CampaignPlan {
            team: Some("y"),
            ..campaign("Expo", "rep_y", Some(usd("500")))
        },
        campaign("Expo", "manager", Some(eur("0"))),
        campaign("Quiet", "admin", None),
        CampaignPlan {
            deleted: true,
            ..campaign("Gone", "rep", Some(eur("10")))
        },
    ]
}

/// Leads of every source, owner and team, in every status; converted with and without
/// deals, deals won on both sides of the Q1/Q2 edge (23:59:59 CEST on 2026-03-31 and a
/// second later), deals left open; ties (two leads alike); deleted leads; a lead of the
/// previous year; leads of a deleted campaign.
fn scenario_leads() -> Vec<LeadPlan> {
    let jan = |d: u32, h: u32| local(2026, 1, d, h, 0, 0);
    let q1_last = local(2026, 3, 31, 23, 59, 59);
    let q2_first = local(2026, 4, 1, 0, 0, 0);
    use LeadStatus::*;
    use Source::*;
    vec![
        // Spring: converted with a EUR deal won in Q1, one won at the last second of Q1,
        // one a second later, one left open, one converted without a deal.
        LeadPlan {
            team: Some("x"),
            ..lead(
                "rep",
                WebForm,
                Some(0),
                jan(5, 9),
                Then::Convert(jan(6, 9), Some((Some(eur("1200")), Some(jan(20, 9))))),
            )
        },
        lead(
            "rep2",
            WebForm,
            Some(0),
            jan(5, 10),
            Then::Convert(jan(7, 9), Some((Some(usd("333.33")), Some(q1_last)))),
        ),
        lead(
            "rep_y",
            Campaign,
            Some(0),
            jan(8, 10),
            Then::Convert(jan(9, 9), Some((Some(eur("250.50")), Some(q2_first)))),
        ),
        lead(
            "rep",
            Campaign,
            Some(0),
            jan(9, 10),
            Then::Convert(jan(10, 9), Some((Some(eur("75")), None))),
        ),
        lead(
            "rep",
            WebForm,
            Some(0),
            jan(10, 10),
            Then::Convert(jan(11, 9), None),
        ),
        // Expo (rep_y's): qualified, disqualified, nurturing, contacted; a USD deal won in
        // June (the other rate) without an amount too.
        LeadPlan {
            team: Some("y"),
            ..lead(
                "rep_y",
                Event,
                Some(1),
                jan(12, 9),
                Then::Status(jan(13, 9), Qualified),
            )
        },
        lead(
            "rep_y",
            Event,
            Some(1),
            jan(12, 9),
            Then::Status(jan(14, 9), Disqualified),
        ),
        lead(
            "rep2",
            Event,
            Some(1),
            q1_last,
            Then::Status(q2_first, Nurturing),
        ),
        lead(
            "admin",
            Event,
            Some(1),
            q2_first,
            Then::Status(local(2026, 4, 2, 9, 0, 0), Contacted),
        ),
        lead(
            "rep_y",
            Referral,
            Some(1),
            local(2026, 5, 5, 9, 0, 0),
            Then::Convert(
                local(2026, 6, 2, 9, 0, 0),
                Some((Some(usd("1000")), Some(local(2026, 6, 3, 9, 0, 0)))),
            ),
        ),
        lead(
            "rep_y",
            Referral,
            Some(1),
            local(2026, 5, 5, 9, 0, 0),
            Then::Convert(
                local(2026, 6, 2, 10, 0, 0),
                Some((None, Some(local(2026, 6, 3, 10, 0, 0)))),
            ),
        ),
        // The manager's Expo (cost 0): one converted lead with a won deal.
        lead(
            "manager",
            Partner,
            Some(2),
            jan(15, 9),
            Then::Convert(jan(16, 9), Some((Some(eur("99.99")), Some(jan(17, 9))))),
        ),
        // No campaign; two alike (a tie); every other source.
        lead("rep", Other, None, jan(20, 9), Then::Stay),
        lead("rep", Other, None, jan(20, 9), Then::Stay),
        LeadPlan {
            team: Some("x"),
            ..lead("rep2", Import, None, jan(21, 9), Then::Stay)
        },
        lead(
            "readonly",
            InboundCall,
            None,
            jan(22, 9),
            Then::Status(jan(23, 9), Contacted),
        ),
        // Deleted leads: left out everywhere.
        LeadPlan {
            deleted: true,
            ..lead(
                "rep",
                WebForm,
                Some(0),
                jan(5, 11),
                Then::Status(jan(6, 11), Qualified),
            )
        },
        LeadPlan {
            deleted: true,
            ..lead(
                "rep_y",
                Event,
                Some(1),
                jan(5, 11),
                Then::Convert(jan(6, 12), Some((Some(eur("5")), Some(jan(7, 12))))),
            )
        },
        // The deleted campaign's lead, and one of the previous year.
        lead("rep", WebForm, Some(4), jan(25, 9), Then::Stay),
        lead(
            "rep",
            WebForm,
            Some(0),
            local(2025, 12, 31, 23, 59, 59),
            Then::Convert(
                local(2026, 1, 2, 9, 0, 0),
                Some((Some(eur("10")), Some(local(2026, 1, 3, 9, 0, 0)))),
            ),
        ),
    ]
}

/// Deals made directly: attributed to Spring (won in the previous year, won in Q2,
/// deleted and won), to Expo (lost? left open), and one without a campaign.
fn scenario_deals() -> Vec<DealPlan> {
    vec![
        deal(
            "rep",
            Some(0),
            Some(eur("40")),
            Some(local(2025, 12, 15, 9, 0, 0)),
        ),
        DealPlan {
            team: Some("x"),
            ..deal(
                "rep2",
                Some(0),
                Some(usd("60")),
                Some(local(2026, 5, 1, 9, 0, 0)),
            )
        },
        DealPlan {
            deleted: true,
            ..deal(
                "rep",
                Some(0),
                Some(eur("1000000")),
                Some(local(2026, 2, 1, 9, 0, 0)),
            )
        },
        deal("rep_y", Some(1), Some(usd("7")), None),
        deal(
            "rep",
            None,
            Some(eur("500")),
            Some(local(2026, 2, 1, 9, 0, 0)),
        ),
    ]
}

async fn scenario_tenant(store: &Store) -> CheckResult<Tenant> {
    let t = tenant(store).await?;
    make(
        &t,
        &scenario_campaigns(),
        &scenario_leads(),
        &scenario_deals(),
    )
    .await?;
    Ok(t)
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// With no leads, deals or campaigns, both reports equal the oracle: no funnel rows and
/// no ROI rows; a campaign without anything attributed has a row of zeros and no ROI.
pub async fn empty_tenant(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", true).await?;
    let admin = &t.d.f.admin;
    let f =
        t.a.lead_funnel(
            admin,
            &LeadFunnel {
                period: year_2026(),
                by: None,
            },
        )
        .await
        .at("lead funnel")?;
    ensure!(f.is_empty(), "no funnel rows: {f:?}");
    let all = CampaignRoi {
        campaign: None,
        period: None,
        rate_date: None,
    };
    let roi = t.a.campaign_roi(admin, &all).await.at("roi")?;
    ensure!(roi.is_empty(), "no ROI rows: {roi:?}");
    make(&t, &[campaign("Quiet", "admin", None)], &[], &[]).await?;
    every_report_equals_oracle(store, &t, admin, "admin", true).await?;
    let roi = t.a.campaign_roi(admin, &all).await.at("roi")?;
    ensure_eq!(
        roi.iter()
            .map(|r| (r.cost, r.revenue, r.roi, r.leads, r.deals, r.won))
            .collect::<Vec<_>>(),
        vec![(Decimal::ZERO, Decimal::ZERO, None, 0, 0, 0)],
        "one row of zeros"
    );
    Ok(())
}

/// One lead of a campaign costing 100 EUR, converted into a deal of 150 EUR won in Q1:
/// the funnel has one web-form row, created 1, converted 1, rate 1; the ROI row has cost
/// 100, revenue 150, ROI 0.5, one lead, one deal, one won; the deal inherited the lead's
/// campaign.
pub async fn one_lead(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let (camps, leads) = make(
        &t,
        &[campaign("Solo", "rep", Some(eur("100")))],
        &[lead(
            "rep",
            Source::WebForm,
            Some(0),
            local(2026, 2, 2, 9, 0, 0),
            Then::Convert(
                local(2026, 2, 3, 9, 0, 0),
                Some((Some(eur("150")), Some(local(2026, 2, 4, 9, 0, 0)))),
            ),
        )],
        &[],
    )
    .await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", true).await?;
    let admin = &t.d.f.admin;
    let converted = t.leads.get(admin, leads[0]).await.at("lead")?;
    let deal_id = converted
        .converted_deal
        .ok_or_else(|| Failure::new("the lead has its deal"))?;
    let deal = t.d.deals.get(admin, deal_id).await.at("deal")?;
    ensure_eq!(
        deal.campaign,
        Some(camps[0]),
        "the deal inherits the campaign"
    );
    let f =
        t.a.lead_funnel(
            admin,
            &LeadFunnel {
                period: q1(),
                by: None,
            },
        )
        .await
        .at("lead funnel")?;
    ensure_eq!(
        f,
        vec![LeadFunnelRow {
            source: Source::WebForm,
            group: None,
            created: 1,
            new: 0,
            contacted: 0,
            nurturing: 0,
            qualified: 0,
            disqualified: 0,
            converted: 1,
            conversion_rate: Some(Decimal::ONE),
        }],
        "one converted web-form lead"
    );
    let roi =
        t.a.campaign_roi(
            admin,
            &CampaignRoi {
                campaign: Some(camps[0]),
                period: Some(q1()),
                rate_date: None,
            },
        )
        .await
        .at("roi")?;
    ensure_eq!(
        roi.iter()
            .map(|r| (r.cost, r.revenue, r.roi, r.leads, r.deals, r.won))
            .collect::<Vec<_>>(),
        vec![(
            Decimal::new(100, 0),
            Decimal::new(150, 0),
            Some(Decimal::new(5, 1)),
            1,
            1,
            1
        )],
        "cost 100, revenue 150, ROI 0.5"
    );
    Ok(())
}

/// The scenario: both reports equal the oracle for the Admin and the Manager, every
/// grouping, several periods, each campaign alone and all, two rate dates.
pub async fn reports_equal_oracle(store: &Store) -> CheckResult {
    let t = scenario_tenant(store).await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", true).await?;
    every_report_equals_oracle(store, &t, &t.d.f.manager, "manager", false).await?;
    // A few figures by hand: Spring in Q1 at the Q1 rates (USD 0.9): won 1200 EUR, 333.33
    // USD (= 300.00 EUR after rounding 299.997) and 10 EUR (the lead of 2025, its deal won
    // on 2026-01-03), cost 1000: ROI 0.51.
    let spring =
        t.a.campaign_roi(
            &t.d.f.admin,
            &CampaignRoi {
                campaign: None,
                period: Some(q1()),
                rate_date: Some(date(2026, 3, 31)),
            },
        )
        .await
        .at("roi")?
        .into_iter()
        .find(|r| r.name == "Spring")
        .ok_or_else(|| Failure::new("a Spring row"))?;
    ensure_eq!(
        (spring.revenue, spring.won, spring.roi),
        (Decimal::new(151000, 2), 3, Some(Decimal::new(51, 2))),
        "Spring in Q1: {spring:?}"
    );
    Ok(())
}

/// Period edges in the tenant's zone: a lead created at 23:59:59 CEST on 2026-03-31 is in
/// the Q1 cohort, one created a second later in Q2; a deal won at that last second counts
/// in Q1's revenue, one won a second later in Q2's.
pub async fn period_edges(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let q1_last = local(2026, 3, 31, 23, 59, 59);
    let q2_first = local(2026, 4, 1, 0, 0, 0);
    let conv = local(2026, 3, 1, 9, 0, 0);
    let (camps, _) = make(
        &t,
        &[campaign("Edge", "rep", Some(eur("10")))],
        &[
            lead("rep", Source::Event, Some(0), q1_last, Then::Stay),
            lead("rep", Source::Event, Some(0), q2_first, Then::Stay),
            lead(
                "rep",
                Source::Referral,
                Some(0),
                local(2026, 2, 1, 9, 0, 0),
                Then::Convert(conv, Some((Some(eur("1")), Some(q1_last)))),
            ),
            lead(
                "rep",
                Source::Referral,
                Some(0),
                local(2026, 2, 1, 9, 0, 0),
                Then::Convert(conv, Some((Some(eur("2")), Some(q2_first)))),
            ),
        ],
        &[],
    )
    .await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", false).await?;
    let admin = &t.d.f.admin;
    for (p, events) in [
        (q1(), 1),
        (q2(), 1),
        (period(date(2026, 3, 31), date(2026, 3, 31)), 1),
    ] {
        let f =
            t.a.lead_funnel(
                admin,
                &LeadFunnel {
                    period: p,
                    by: None,
                },
            )
            .await
            .at("lead funnel")?;
        let got = f
            .iter()
            .find(|r| r.source == Source::Event)
            .map(|r| r.created);
        ensure_eq!(got, Some(events), "one event lead in {p:?}: {f:?}");
    }
    for (p, revenue) in [(q1(), 1), (q2(), 2)] {
        let roi =
            t.a.campaign_roi(
                admin,
                &CampaignRoi {
                    campaign: Some(camps[0]),
                    period: Some(p),
                    rate_date: None,
                },
            )
            .await
            .at("roi")?;
        ensure_eq!(
            (roi[0].revenue, roi[0].won),
            (Decimal::from(revenue), 1),
            "the deal won in {p:?}"
        );
    }
    Ok(())
}

/// Access: each Rep's and the ReadOnly user's reports equal the oracle over the leads,
/// deals and campaigns they list, and differ from the admin's, so a report that ignored
/// the scope would fail: a Rep sees fewer leads in the funnel, fewer campaigns, and fewer
/// deals and leads in a campaign it sees.
pub async fn scoped_by_access(store: &Store) -> CheckResult {
    let t = scenario_tenant(store).await?;
    for who in ["rep", "rep2", "rep_y", "readonly"] {
        every_report_equals_oracle(store, &t, actor(&t.d, who), who, false).await?;
    }
    let admin = &t.d.f.admin;
    let f = LeadFunnel {
        period: year_2026(),
        by: None,
    };
    let roi = CampaignRoi {
        campaign: None,
        period: None,
        rate_date: Some(date(2026, 12, 31)),
    };
    let created = |rows: &[LeadFunnelRow]| rows.iter().map(|r| r.created).sum::<u64>();
    let all_f = t.a.lead_funnel(admin, &f).await.at("funnel")?;
    let all_r = t.a.campaign_roi(admin, &roi).await.at("roi")?;
    for who in ["rep", "rep_y"] {
        let ctx = actor(&t.d, who);
        let rep_f = t.a.lead_funnel(ctx, &f).await.at("funnel")?;
        ensure!(
            created(&rep_f) < created(&all_f),
            "{who} sees fewer leads: {rep_f:?} vs {all_f:?}"
        );
        let rep_r = t.a.campaign_roi(ctx, &roi).await.at("roi")?;
        ensure!(
            !rep_r.is_empty() && rep_r.len() < all_r.len(),
            "{who} sees fewer campaigns: {rep_r:?} vs {all_r:?}"
        );
        for r in &rep_r {
            let admin_row = all_r
                .iter()
                .find(|x| x.campaign == r.campaign)
                .ok_or_else(|| Failure::new("the admin sees every campaign"))?;
            ensure!(
                r.leads < admin_row.leads || r.deals < admin_row.deals,
                "{who} counts fewer records of {}: {r:?} vs {admin_row:?}",
                r.name
            );
        }
    }
    // A campaign the Rep does not see is refused like a missing one.
    let expo = all_r
        .iter()
        .find(|r| r.name == "Expo" && r.cost > Decimal::ZERO)
        .ok_or_else(|| Failure::new("rep_y's Expo"))?;
    expect_validation(
        t.a.campaign_roi(
            &t.d.f.rep,
            &CampaignRoi {
                campaign: Some(expo.campaign),
                ..roi
            },
        )
        .await,
        "campaign",
        "another team's campaign",
    )?;
    Ok(())
}

/// Money beyond 64 bits: two won deals of the largest amount storage holds
/// (922337203685477.5807 EUR: 2^63 - 1 units; the deal commands cap amounts below 10^12,
/// so the amounts are written into the deal rows directly, as data written by another
/// version or tool could be), attributed to one campaign, give the exact revenue (twice
/// that, which no single amount holds, rounded once to the cent) in the ROI report and
/// the exact total in `Campaigns::roi_inputs`.
pub async fn totals_beyond_64_bits(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let max = eur("922337203685477.5807");
    let won = local(2026, 2, 1, 9, 0, 0);
    let (camps, _) = make(
        &t,
        &[campaign("Big", "rep", Some(eur("1")))],
        &[],
        &[
            deal("rep", Some(0), Some(eur("1")), Some(won)),
            deal("rep2", Some(0), Some(eur("1")), Some(won)),
        ],
    )
    .await?;
    let mut cs = Changeset::new(&t.d.f.admin);
    let (deals, admin) = (&t.d.deals, &t.d.f.admin);
    for d in all_pages(&Query::new().limit(50), "list deals", |q| async move {
        deals.list(admin, &q).await
    })
    .await?
    {
        cs.writes.push(Write::Update {
            table: DEAL_TABLE,
            key: vec![Value::Uuid(d.id.as_uuid())],
            set: vec![("amount", Value::Int(i64::MAX))],
            expect_version: None,
            record: RecordRef::from(d.id),
        });
    }
    t.d.f
        .store
        .commit(cs)
        .await
        .at("write the largest amounts")?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", false).await?;
    let roi =
        t.a.campaign_roi(
            &t.d.f.admin,
            &CampaignRoi {
                campaign: Some(camps[0]),
                period: Some(q1()),
                rate_date: None,
            },
        )
        .await
        .at("roi")?;
    let twice = round(max.amount() * Decimal::TWO, 2);
    ensure_eq!(
        twice,
        Decimal::new(184_467_440_737_095_516, 2),
        "twice the largest amount, to the cent"
    );
    ensure_eq!(roi[0].revenue, twice, "exact revenue");
    ensure_eq!(roi[0].roi, Some(twice - Decimal::ONE), "ROI of a cost of 1");
    let inputs = t
        .campaigns
        .roi_inputs(&t.d.f.admin, camps[0])
        .await
        .at("roi inputs")?;
    ensure_eq!(
        inputs.attributed_won,
        vec![CurrencyTotal {
            currency: max.currency(),
            units: 2 * i128::from(i64::MAX),
        }],
        "roi_inputs' exact total"
    );
    Ok(())
}

/// Bad input: an unknown, deleted or hidden campaign is a Validation error on `campaign`;
/// a cost or an amount in a currency without a rate on the rate date one on `rate_date`
/// naming the currency and the date; bad report JSON names the part.
pub async fn bad_input(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let admin = &t.d.f.admin;
    let (camps, _) = make(
        &t,
        &[
            CampaignPlan {
                deleted: true,
                ..campaign("Gone", "rep", None)
            },
            campaign("Pounds", "rep", Some(Money::parse("10", "GBP").at("GBP")?)),
        ],
        &[],
        &[],
    )
    .await?;
    for (id, what) in [
        (CampaignId::new(), "an unknown campaign"),
        (camps[0], "a deleted campaign"),
    ] {
        expect_validation(
            t.a.campaign_roi(
                admin,
                &CampaignRoi {
                    campaign: Some(id),
                    period: None,
                    rate_date: None,
                },
            )
            .await,
            "campaign",
            what,
        )?;
    }
    expect_validation(
        t.a.campaign_roi(
            &t.d.f.rep_y,
            &CampaignRoi {
                campaign: Some(camps[1]),
                period: None,
                rate_date: None,
            },
        )
        .await,
        "campaign",
        "a campaign of another team",
    )?;
    let got =
        t.a.campaign_roi(
            admin,
            &CampaignRoi {
                campaign: None,
                period: Some(q1()),
                rate_date: Some(date(2026, 5, 1)),
            },
        )
        .await;
    let reasons = validation_reasons(&got).ok_or_else(|| Failure::new(format!("{got:?}")))?;
    ensure!(
        reasons
            .iter()
            .any(|(f, why)| f == "rate_date" && why.contains("GBP") && why.contains("2026-05-01")),
        "the error names GBP and the date: {reasons:?}"
    );
    for (json, field) in [
        (
            r#"{"format":1,"report":"lead_funnel","period":{"from":"2026-01-01","to":"2026-02-01"},"by":"source"}"#,
            "by",
        ),
        (
            r#"{"format":1,"report":"lead_funnel","period":{"from":"2026-01-01","to":"2026-02-01"},"by":"owner_id' OR 1=1--"}"#,
            "by",
        ),
        (r#"{"format":1,"report":"lead_funnel"}"#, "period"),
        (
            r#"{"format":1,"report":"campaign_roi","campaign":"1; DROP TABLE pipeline_campaign"}"#,
            "campaign",
        ),
        (
            r#"{"format":1,"report":"campaign_roi","period":{"from":"2026-01-01"}}"#,
            "period.to",
        ),
        (
            r#"{"format":1,"report":"campaign_roi","rate_date":"2026-02-30"}"#,
            "rate_date",
        ),
    ] {
        expect_validation(Report::from_json(json), field, json)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name.
    names: analytics_leads_check_names,
    checks: [
        empty_tenant,
        one_lead,
        reports_equal_oracle,
        period_edges,
        scoped_by_access,
        totals_beyond_64_bits,
        bad_input,
    ],
}
