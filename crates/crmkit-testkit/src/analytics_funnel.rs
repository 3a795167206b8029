//! Conformance checks of the deal progress reports (`crmkit_analytics::funnel`: stage
//! funnel, time in stage, lost reasons, slipped deals) and of the pipeline module's
//! close-date history, on any backend.
//!
//! Every report is compared with a brute-force oracle computed in plain Rust from what
//! the actor reads through the public API: the deals it lists (`Deals::list`), each deal's
//! stage history (`Deals::stage_history`) and close-date history
//! (`Deals::close_history`), the pipelines and the exchange rates. The oracle follows the
//! definitions of the analytics crate's `funnel` docs literally (a deal reached step `k`
//! when it entered a step-`k`-or-later stage, checked stage by stage; stays walked pair by
//! pair), not the report's algorithm. Each check makes its own tenant; [`checks`] lists
//! them.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::json;

use crmkit_analytics::funnel::sort_lost_reason_rows;
use crmkit_analytics::period::{Period, local_date};
use crmkit_analytics::{
    Analytics, FunnelRow, LostReasonRow, LostReasons, ReasonKind, Report, SlipDim, SlipRow,
    SlippedDeals, StageFunnel, StageTimeRow, TimeInStage,
};
use crmkit_core::{
    Ctx, Currency, DealId, Error, LostReasonId, Money, PipelineId, Query, StageId, Store,
};
use crmkit_pipeline::currency::Currencies;
use crmkit_pipeline::deal::{
    CloseDateChange, Deal, DealPatch, LostReasonInput, NewDeal, NewPipeline, NewStage, Pipeline,
    StageChange, StageKind,
};

use crate::analytics::{ZONE, actor, local, period, q1, team, usd, year_2026};
use crate::check::{At, expect_validation, validation_reasons};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::pipeline_deals::DealFixture;
use crate::support::{all_pages, at_time, date};

pub use crate::analytics::modules;

/// The tenant of a check: base currency EUR, USD at 0.9 from 2026-01-01 and 0.95 from
/// 2026-06-01, reporting in [`ZONE`], a second pipeline `Funnel` (open A, B, C; won W;
/// lost L1, L2) next to the default one, and two managed lost reasons.
struct Tenant {
    d: DealFixture,
    a: Analytics,
    funnel: Pipeline,
    reasons: Vec<LostReasonId>,
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
    let funnel = d
        .deals
        .pipelines()
        .create(
            admin,
            NewPipeline {
                name: "Funnel".into(),
                currency: None,
                stages: vec![
                    NewStage::open("A", 10),
                    NewStage::open("B", 40),
                    NewStage::open("C", 70),
                    NewStage::won("W"),
                    NewStage::lost("L1"),
                    NewStage::lost("L2"),
                ],
            },
        )
        .await
        .at("funnel pipeline")?;
    let mut reasons = vec![];
    for name in ["Budget", "Timing"] {
        reasons.push(
            d.deals
                .add_lost_reason(admin, name)
                .await
                .at("lost reason")?
                .id,
        );
    }
    Ok(Tenant {
        d,
        a,
        funnel,
        reasons,
    })
}

// ---------------------------------------------------------------------------------------
// Deal plans
// ---------------------------------------------------------------------------------------

/// Something done to a deal at an instant.
#[derive(Clone, Debug)]
enum Op {
    /// Move to the stage at this index of the pipeline's stages; into a lost stage with
    /// reason 0 (managed "Budget"), 1 (managed "Timing") or 2 (free text). A move to the
    /// stage the deal is in is skipped.
    Stage(usize, u8),
    /// Set the close date through the typed update (`None` clears it).
    Close(Option<NaiveDate>),
    /// Set the close date through the generic record patch.
    ClosePatch(Option<NaiveDate>),
}

/// A deal to make: in the default pipeline (`default`) or `Funnel`, by the admin for
/// `owner`, created at `created` in the first stage, then `ops` at their instants.
#[derive(Clone, Debug)]
struct Plan {
    owner: &'static str,
    team: Option<&'static str>,
    default: bool,
    amount: Option<Money>,
    close: Option<NaiveDate>,
    created: DateTime<Utc>,
    ops: Vec<(DateTime<Utc>, Op)>,
    deleted: bool,
}

fn plan(owner: &'static str, created: DateTime<Utc>, ops: Vec<(DateTime<Utc>, Op)>) -> Plan {
    Plan {
        owner,
        team: None,
        default: false,
        amount: Some(Money::parse("100", "EUR").expect("EUR")),
        close: None,
        created,
        ops,
        deleted: false,
    }
}

/// Makes the deals of `plans`, in order; their ids.
async fn make(t: &Tenant, plans: &[Plan]) -> CheckResult<Vec<DealId>> {
    let d = &t.d;
    let mut ids = vec![];
    for (i, p) in plans.iter().enumerate() {
        let pipeline = if p.default { &d.default } else { &t.funnel };
        let (ctx, clock) = at_time(&d.f.admin, p.created);
        let mut n =
            NewDeal::new(format!("deal {i}"), pipeline.id).owner(actor(d, p.owner).actor().user);
        if let Some(tm) = team(d, p.team) {
            n = n.team(tm);
        }
        if let Some(m) = p.amount {
            n = n.amount(m);
        }
        if let Some(c) = p.close {
            n = n.expected_close(c);
        }
        let mut deal = d.deals.create(&ctx, n).await.at("create deal")?;
        for (at, op) in &p.ops {
            clock.set(*at);
            deal = match op {
                Op::Stage(s, reason) => {
                    let stage = &pipeline.stages[s % pipeline.stages.len()];
                    if stage.id == deal.stage {
                        continue;
                    }
                    let reason = (stage.kind == StageKind::Lost).then(|| match reason % 3 {
                        0 => LostReasonInput::Listed(t.reasons[0]),
                        1 => LostReasonInput::Listed(t.reasons[1]),
                        _ => LostReasonInput::Text("too expensive".into()),
                    });
                    d.deals
                        .move_to_stage(&ctx, deal.id, deal.version, stage.id, reason)
                        .await
                        .at("move")?
                }
                Op::Close(c) => d
                    .deals
                    .update(
                        &ctx,
                        deal.id,
                        deal.version,
                        DealPatch::default().expected_close(*c),
                    )
                    .await
                    .at("update close date")?,
                Op::ClosePatch(c) => {
                    t.d.f
                        .store
                        .records()
                        .patch(
                            &ctx,
                            "deal",
                            deal.id.as_uuid(),
                            deal.version,
                            json!({ "expected_close": c }),
                        )
                        .await
                        .at("patch close date")?;
                    d.deals.get(&ctx, deal.id).await.at("get deal")?
                }
            };
        }
        if p.deleted {
            d.deals
                .delete(&ctx, deal.id, deal.version)
                .await
                .at("delete")?;
        }
        ids.push(deal.id);
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------

/// What one actor reads: its deals with their histories, the pipelines, the base.
struct Oracle {
    deals: Vec<(Deal, Vec<StageChange>, Vec<CloseDateChange>)>,
    pipelines: Vec<Pipeline>,
    tz: Tz,
    base: Currency,
}

async fn oracle(store: &Store, d: &DealFixture, ctx: &Ctx) -> CheckResult<Oracle> {
    let q = Query::new().limit(50);
    let listed = all_pages(
        &q,
        "list deals",
        |q| async move { d.deals.list(ctx, &q).await },
    )
    .await?;
    let mut deals = vec![];
    for deal in listed {
        let h = d
            .deals
            .stage_history(ctx, deal.id)
            .await
            .at("stage history")?;
        let c = d
            .deals
            .close_history(ctx, deal.id)
            .await
            .at("close history")?;
        deals.push((deal, h, c));
    }
    let pipelines = d.deals.pipelines().all(ctx).await.at("pipelines")?;
    let base = Currencies::new(store)
        .at("currencies")?
        .require_base_currency(ctx)
        .await
        .at("base")?;
    let settings = Analytics::new(store)
        .at("analytics")?
        .settings(ctx)
        .await
        .at("settings")?;
    Ok(Oracle {
        deals,
        pipelines,
        tz: settings
            .time_zone
            .parse()
            .map_err(|_| Failure::new("zone"))?,
        base,
    })
}

impl Oracle {
    fn pipelines(&self, only: Option<PipelineId>) -> Vec<&Pipeline> {
        self.pipelines
            .iter()
            .filter(|p| only.is_none_or(|x| x == p.id))
            .collect()
    }

    fn in_period(&self, p: &Period, at: DateTime<Utc>) -> bool {
        p.contains(local_date(self.tz, at))
    }
}

fn round(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointNearestEven)
}

fn share(num: u64, den: u64, dp: u32) -> Option<Decimal> {
    (den > 0).then(|| round(Decimal::from(num) / Decimal::from(den), dp))
}

/// Nearest rank, from its definition: the smallest value with at least `p`% of the values
/// at or below it.
fn rank(v: &[i64], p: u64) -> Option<i64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.iter()
        .copied()
        .find(|x| s.iter().filter(|y| *y <= x).count() as u64 * 100 >= p * s.len() as u64)
}

fn oracle_funnel(o: &Oracle, r: &StageFunnel) -> Vec<FunnelRow> {
    let mut out = vec![];
    for p in o.pipelines(r.pipeline) {
        let open: Vec<_> = p
            .stages
            .iter()
            .filter(|s| s.kind == StageKind::Open)
            .collect();
        let won: Vec<StageId> = p
            .stages
            .iter()
            .filter(|s| s.kind == StageKind::Won)
            .map(|s| s.id)
            .collect();
        // The stages of step k and every later step.
        let later = |k: usize| -> HashSet<StageId> {
            open.iter()
                .skip(k)
                .map(|s| s.id)
                .chain(won.iter().copied())
                .collect()
        };
        let cohort: Vec<HashSet<StageId>> = o
            .deals
            .iter()
            .filter(|(deal, _, _)| o.in_period(&r.period, deal.created_at))
            .map(|(_, h, _)| h.iter().map(|e| e.to_stage).collect())
            .collect();
        let reached = |k: usize| -> Vec<usize> {
            let s = later(k);
            (0..cohort.len())
                .filter(|i| cohort[*i].iter().any(|x| s.contains(x)))
                .collect()
        };
        for k in 0..=open.len() {
            let here = reached(k);
            let conversion = (k < open.len())
                .then(|| {
                    let next: HashSet<usize> = reached(k + 1).into_iter().collect();
                    let both = here.iter().filter(|i| next.contains(i)).count() as u64;
                    share(both, here.len() as u64, 4)
                })
                .flatten();
            out.push(FunnelRow {
                pipeline: p.id,
                stage: open.get(k).map(|s| s.id),
                stage_name: open
                    .get(k)
                    .map(|s| s.name.clone())
                    .unwrap_or_else(|| "won".into()),
                reached: here.len() as u64,
                conversion,
            });
        }
    }
    out
}

fn oracle_time(o: &Oracle, r: &TimeInStage) -> Vec<StageTimeRow> {
    let mut lengths: HashMap<StageId, Vec<i64>> = HashMap::new();
    let mut still: HashMap<StageId, u64> = HashMap::new();
    let before_end = |at: DateTime<Utc>| local_date(o.tz, at) <= r.period.to();
    for (_, h, _) in &o.deals {
        for (i, e) in h.iter().enumerate() {
            if !before_end(e.at) {
                continue;
            }
            match h.get(i + 1) {
                Some(next) if before_end(next.at) => {
                    if o.in_period(&r.period, next.at) {
                        let us = (next.at - e.at).num_microseconds().expect("µs").max(0);
                        lengths.entry(e.to_stage).or_default().push(us / 1_000_000);
                    }
                }
                _ => *still.entry(e.to_stage).or_default() += 1,
            }
        }
    }
    let mut out = vec![];
    for p in o.pipelines(r.pipeline) {
        for s in &p.stages {
            let l = lengths.remove(&s.id).unwrap_or_default();
            let n = l.len() as i64;
            out.push(StageTimeRow {
                pipeline: p.id,
                stage: s.id,
                stage_name: s.name.clone(),
                stays: l.len() as u64,
                average_seconds: (n > 0).then(|| {
                    i64::try_from(
                        round(Decimal::from(l.iter().sum::<i64>()) / Decimal::from(n), 0)
                            .mantissa(),
                    )
                    .expect("fits")
                }),
                median_seconds: rank(&l, 50),
                p90_seconds: rank(&l, 90),
                still_in: still.get(&s.id).copied().unwrap_or(0),
            });
        }
    }
    out
}

/// Rates on one date, read through `Currencies::rate_at`.
async fn rates(
    store: &Store,
    ctx: &Ctx,
    o: &Oracle,
    on: NaiveDate,
) -> CheckResult<HashMap<&'static str, Decimal>> {
    let cur = Currencies::new(store).at("currencies")?;
    let mut out = HashMap::new();
    for (deal, _, _) in &o.deals {
        if let Some(m) = deal.amount {
            let r = cur.rate_at(ctx, m.currency(), on).await.at("rate_at")?;
            out.insert(m.currency().code(), r.rate);
        }
    }
    Ok(out)
}

fn oracle_lost(
    o: &Oracle,
    rates: &HashMap<&'static str, Decimal>,
    r: &LostReasons,
) -> Vec<LostReasonRow> {
    type Key = (ReasonKind, Option<LostReasonId>, Option<String>);
    let mut groups: BTreeMap<Key, (u64, BTreeMap<&'static str, Decimal>)> = BTreeMap::new();
    for (deal, _, _) in &o.deals {
        if deal.status() != StageKind::Lost
            || !deal.lost_at.is_some_and(|t| o.in_period(&r.period, t))
            || r.pipeline.is_some_and(|p| p != deal.pipeline)
        {
            continue;
        }
        let key = match (deal.lost_reason_id, &deal.lost_reason) {
            (Some(id), name) => (ReasonKind::Listed, Some(id), name.clone()),
            (None, Some(_)) => (ReasonKind::FreeText, None, None),
            (None, None) => (ReasonKind::None, None, None),
        };
        let g = groups.entry(key).or_default();
        g.0 += 1;
        if let Some(m) = deal.amount {
            *g.1.entry(m.currency().code()).or_default() += m.amount();
        }
    }
    let mut out: Vec<LostReasonRow> = groups
        .into_iter()
        .map(|((kind, reason, name), (count, sums))| LostReasonRow {
            kind,
            reason,
            name,
            count,
            value: sums
                .iter()
                .map(|(c, s)| round(*s * rates[c], o.base.minor_digits()))
                .sum(),
        })
        .collect();
    sort_lost_reason_rows(&mut out);
    out
}

fn oracle_slips(o: &Oracle, r: &SlippedDeals) -> Vec<SlipRow> {
    let mut groups: BTreeMap<Option<String>, (u64, HashSet<DealId>, i64)> = BTreeMap::new();
    if r.by.is_none() {
        groups.insert(None, Default::default());
    }
    for (deal, _, changes) in &o.deals {
        for c in changes {
            let (Some(from), Some(to)) = (c.from, c.to) else {
                continue;
            };
            let days = (to - from).num_days();
            if days <= 0
                || !o.in_period(&r.period, c.at)
                || r.pipeline.is_some_and(|p| p != c.pipeline)
            {
                continue;
            }
            let g = match r.by {
                None => None,
                Some(SlipDim::Owner) => Some(c.owner.to_string()),
                Some(SlipDim::Team) => c.team.map(|t| t.to_string()),
                Some(SlipDim::Pipeline) => Some(c.pipeline.to_string()),
            };
            let e = groups.entry(g).or_default();
            e.0 += 1;
            e.1.insert(deal.id);
            e.2 += days;
        }
    }
    groups
        .into_iter()
        .map(|(group, (slips, deals, days))| SlipRow {
            group,
            slips,
            deals: deals.len() as u64,
            days,
            average_days: share(days as u64, slips, 2),
        })
        .collect()
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

/// Every report, for several periods, pipelines, groupings and rate dates, equals the
/// oracle for `ctx`; with `json`, running each definition from its JSON too.
async fn every_report_equals_oracle(
    store: &Store,
    t: &Tenant,
    ctx: &Ctx,
    who: &str,
    json: bool,
) -> CheckResult {
    let o = oracle(store, &t.d, ctx).await?;
    let periods = [
        year_2026(),
        q1(),
        period(date(2026, 3, 31), date(2026, 3, 31)),
        period(date(2026, 4, 1), date(2026, 6, 30)),
    ];
    for p in periods {
        for pipeline in [None, Some(t.funnel.id), Some(t.d.default.id)] {
            let r = StageFunnel {
                period: p,
                pipeline,
            };
            let got = t.a.stage_funnel(ctx, &r).await.at("stage funnel")?;
            ensure_eq!(
                got,
                oracle_funnel(&o, &r),
                "{who}: funnel {p:?} {pipeline:?}"
            );
            if json {
                json_equals_typed(&t.a, ctx, Report::StageFunnel(r), &got).await?;
            }
            let r = TimeInStage {
                period: p,
                pipeline,
            };
            let got = t.a.time_in_stage(ctx, &r).await.at("time in stage")?;
            ensure_eq!(
                got,
                oracle_time(&o, &r),
                "{who}: time in stage {p:?} {pipeline:?}"
            );
            if json {
                json_equals_typed(&t.a, ctx, Report::TimeInStage(r), &got).await?;
            }
            for by in [
                None,
                Some(SlipDim::Owner),
                Some(SlipDim::Team),
                Some(SlipDim::Pipeline),
            ] {
                let r = SlippedDeals {
                    period: p,
                    by,
                    pipeline,
                };
                let got = t.a.slipped_deals(ctx, &r).await.at("slipped deals")?;
                ensure_eq!(
                    got,
                    oracle_slips(&o, &r),
                    "{who}: slips {p:?} {by:?} {pipeline:?}"
                );
                if json {
                    json_equals_typed(&t.a, ctx, Report::SlippedDeals(r), &got).await?;
                }
            }
            for rd in [date(2026, 3, 31), date(2026, 12, 31)] {
                let r = LostReasons {
                    period: p,
                    pipeline,
                    rate_date: Some(rd),
                };
                let rates = rates(store, ctx, &o, rd).await?;
                let got = t.a.lost_reasons(ctx, &r).await.at("lost reasons")?;
                ensure_eq!(
                    got,
                    oracle_lost(&o, &rates, &r),
                    "{who}: lost reasons {p:?} at {rd}"
                );
                if json {
                    json_equals_typed(&t.a, ctx, Report::LostReasons(r), &got).await?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------

/// Skips, backward moves, re-entries, wins, reopenings, losses for each kind of reason,
/// ties, stays ending on both sides of the Q1/Q2 edge (2026-03-31 23:59:59 CEST and a
/// second later), deals still in a stage, close dates moved later (typed and generic),
/// earlier, set and cleared, deleted deals, a deal of the previous year, every owner and
/// team, EUR, USD and no amount, and deals in both pipelines.
fn scenario() -> Vec<Plan> {
    let jan = |d: u32, h: u32| local(2026, 1, d, h, 0, 0);
    let q1_last = local(2026, 3, 31, 23, 59, 59);
    let q2_first = local(2026, 4, 1, 0, 0, 0);
    let (a, b, c, w, l1, l2) = (0, 1, 2, 3, 4, 5);
    vec![
        // Straight through A -> B -> C -> W.
        Plan {
            team: Some("x"),
            close: Some(date(2026, 3, 1)),
            ..plan(
                "rep",
                jan(5, 9),
                vec![
                    (jan(6, 9), Op::Stage(b, 0)),
                    (jan(8, 9), Op::Close(Some(date(2026, 3, 20)))),
                    (jan(10, 9), Op::Stage(c, 0)),
                    (jan(20, 9), Op::Stage(w, 0)),
                ],
            )
        },
        // A skip: A -> C, then lost for a managed reason; the same stay lengths (ties).
        Plan {
            amount: Some(usd("250.50")),
            ..plan(
                "rep2",
                jan(5, 9),
                vec![(jan(6, 9), Op::Stage(c, 0)), (jan(16, 9), Op::Stage(l1, 0))],
            )
        },
        // Backwards and forwards: A -> B -> A -> B -> C, still in C; close dates moved
        // later through the generic patch, earlier, cleared and set again.
        Plan {
            team: Some("y"),
            close: Some(date(2026, 2, 1)),
            ..plan(
                "rep_y",
                jan(7, 10),
                vec![
                    (jan(8, 10), Op::Stage(b, 0)),
                    (jan(9, 10), Op::ClosePatch(Some(date(2026, 2, 15)))),
                    (jan(12, 10), Op::Stage(a, 0)),
                    (jan(13, 10), Op::Close(Some(date(2026, 2, 10)))),
                    (jan(14, 10), Op::Stage(b, 0)),
                    (jan(15, 10), Op::Close(None)),
                    (jan(16, 10), Op::ClosePatch(Some(date(2026, 4, 30)))),
                    (jan(20, 10), Op::Stage(c, 0)),
                    (q1_last, Op::Close(Some(date(2026, 5, 31)))),
                    (q2_first, Op::Close(Some(date(2026, 6, 30)))),
                ],
            )
        },
        // Won, reopened into B, lost for a free-text reason, moved between lost stages.
        Plan {
            amount: Some(usd("999.99")),
            ..plan(
                "rep",
                jan(9, 8),
                vec![
                    (jan(10, 8), Op::Stage(w, 0)),
                    (jan(11, 8), Op::Stage(b, 0)),
                    (q1_last, Op::Stage(l2, 2)),
                    (local(2026, 4, 2, 12, 0, 0), Op::Stage(l1, 0)),
                ],
            )
        },
        // Lost for the second managed reason a second after Q1, no amount; left B at the
        // last second of Q1.
        Plan {
            amount: None,
            team: Some("x"),
            ..plan(
                "rep2",
                local(2026, 3, 30, 9, 0, 0),
                vec![
                    (local(2026, 3, 31, 9, 0, 0), Op::Stage(b, 0)),
                    (q1_last, Op::Stage(c, 0)),
                    (q2_first, Op::Stage(l1, 1)),
                ],
            )
        },
        // Created at the last second of Q1, still in A.
        Plan {
            close: Some(date(2026, 4, 10)),
            ..plan(
                "admin",
                q1_last,
                vec![(q2_first, Op::Close(Some(date(2026, 4, 17))))],
            )
        },
        // Two deals with the same history (ties), lost for the same reason.
        Plan {
            amount: Some(Money::parse("40", "EUR").expect("EUR")),
            ..plan(
                "rep_y",
                jan(5, 9),
                vec![(jan(6, 9), Op::Stage(b, 0)), (jan(7, 9), Op::Stage(l1, 1))],
            )
        },
        Plan {
            amount: Some(Money::parse("40", "EUR").expect("EUR")),
            ..plan(
                "rep",
                jan(5, 9),
                vec![(jan(6, 9), Op::Stage(b, 0)), (jan(7, 9), Op::Stage(l1, 1))],
            )
        },
        // Deleted deals: left out everywhere.
        Plan {
            deleted: true,
            close: Some(date(2026, 2, 1)),
            ..plan(
                "rep",
                jan(5, 9),
                vec![
                    (jan(6, 9), Op::Stage(c, 0)),
                    (jan(7, 9), Op::Close(Some(date(2026, 9, 1)))),
                    (jan(8, 9), Op::Stage(l2, 2)),
                ],
            )
        },
        // The default pipeline: through Proposal to Won; and one lost from Qualification.
        Plan {
            default: true,
            close: Some(date(2026, 5, 1)),
            ..plan(
                "rep2",
                jan(12, 9),
                vec![
                    (jan(13, 9), Op::Stage(1, 0)),
                    (jan(14, 9), Op::Close(Some(date(2026, 5, 2)))),
                    (local(2026, 5, 2, 9, 0, 0), Op::Stage(3, 0)),
                ],
            )
        },
        Plan {
            default: true,
            ..plan("rep_y", jan(12, 9), vec![(jan(13, 9), Op::Stage(4, 2))])
        },
        // The previous year: outside the 2026 cohorts; its stays end in 2026 or before.
        Plan {
            close: Some(date(2025, 12, 31)),
            ..plan(
                "rep",
                local(2025, 12, 1, 9, 0, 0),
                vec![
                    (local(2025, 12, 2, 9, 0, 0), Op::Stage(b, 0)),
                    (
                        local(2025, 12, 31, 23, 59, 59),
                        Op::Close(Some(date(2026, 1, 31))),
                    ),
                    (jan(2, 9), Op::Stage(c, 0)),
                ],
            )
        },
    ]
}

async fn scenario_tenant(store: &Store) -> CheckResult<Tenant> {
    let t = tenant(store).await?;
    make(&t, &scenario()).await?;
    Ok(t)
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// With no deals, every report equals the oracle: every step and stage with zeros and no
/// durations, no lost reason rows, one slip row of zeros.
pub async fn empty_tenant(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", true).await?;
    let f =
        t.a.stage_funnel(
            &t.d.f.admin,
            &StageFunnel {
                period: year_2026(),
                pipeline: Some(t.funnel.id),
            },
        )
        .await
        .at("funnel")?;
    ensure_eq!(f.len(), 4, "A, B, C and won: {f:?}");
    ensure!(
        f.iter().all(|r| r.reached == 0 && r.conversion.is_none()),
        "nothing reached: {f:?}"
    );
    Ok(())
}

/// One deal moved A -> C -> B: the funnel counts it in A, B (skipped, then entered
/// backwards: once) and C; its two finished stays and the stay still open in B.
pub async fn one_deal(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let created = local(2026, 2, 2, 9, 0, 0);
    make(
        &t,
        &[Plan {
            close: Some(date(2026, 3, 1)),
            ..plan(
                "rep",
                created,
                vec![
                    (local(2026, 2, 3, 9, 0, 0), Op::Stage(2, 0)),
                    (local(2026, 2, 3, 9, 0, 1), Op::Stage(1, 0)),
                    (
                        local(2026, 2, 4, 9, 0, 0),
                        Op::Close(Some(date(2026, 3, 8))),
                    ),
                ],
            )
        }],
    )
    .await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", true).await?;
    let f =
        t.a.stage_funnel(
            &t.d.f.admin,
            &StageFunnel {
                period: q1(),
                pipeline: Some(t.funnel.id),
            },
        )
        .await
        .at("funnel")?;
    let reached: Vec<u64> = f.iter().map(|r| r.reached).collect();
    ensure_eq!(reached, vec![1, 1, 1, 0], "A, B, C reached once, not won");
    let s =
        t.a.slipped_deals(
            &t.d.f.admin,
            &SlippedDeals {
                period: q1(),
                by: None,
                pipeline: None,
            },
        )
        .await
        .at("slips")?;
    ensure_eq!(
        (s[0].slips, s[0].deals, s[0].days),
        (1, 1, 7),
        "one slip of a week: {s:?}"
    );
    Ok(())
}

/// The scenario: every report equals the oracle for the Admin and the Manager.
pub async fn reports_equal_oracle(store: &Store) -> CheckResult {
    let t = scenario_tenant(store).await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", true).await?;
    every_report_equals_oracle(store, &t, &t.d.f.manager, "manager", false).await
}

/// Period edges in the tenant's zone: a stay ending at 23:59:59 CEST on 2026-03-31 is a
/// Q1 stay, one ending a second later a Q2 stay; a deal created at that last second is in
/// the Q1 cohort; a stay still open at the end of Q1 is in `still_in` and in no length.
pub async fn period_edges(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let q1_last = local(2026, 3, 31, 23, 59, 59);
    let q2_first = local(2026, 4, 1, 0, 0, 0);
    let start = local(2026, 3, 31, 23, 0, 0);
    make(
        &t,
        &[
            plan("rep", start, vec![(q1_last, Op::Stage(1, 0))]),
            plan("rep", start, vec![(q2_first, Op::Stage(1, 0))]),
            plan("rep", q1_last, vec![]),
        ],
    )
    .await?;
    every_report_equals_oracle(store, &t, &t.d.f.admin, "admin", false).await?;
    let stay = |p: Period| {
        let a = &t.a;
        let admin = &t.d.f.admin;
        let pipeline = t.funnel.id;
        async move {
            a.time_in_stage(
                admin,
                &TimeInStage {
                    period: p,
                    pipeline: Some(pipeline),
                },
            )
            .await
            .at("time in stage")
        }
    };
    let q1_rows = stay(q1()).await?;
    ensure_eq!(
        (
            q1_rows[0].stays,
            q1_rows[0].median_seconds,
            q1_rows[0].still_in
        ),
        (1, Some(3599), 2),
        "Q1: one stay in A of 59:59, two deals still in A: {q1_rows:?}"
    );
    let q2_rows = stay(period(date(2026, 4, 1), date(2026, 4, 1))).await?;
    ensure_eq!(
        (q2_rows[0].stays, q2_rows[0].median_seconds),
        (1, Some(3600)),
        "2026-04-01: the stay ended a second later: {q2_rows:?}"
    );
    let f =
        t.a.stage_funnel(
            &t.d.f.admin,
            &StageFunnel {
                period: period(date(2026, 3, 31), date(2026, 3, 31)),
                pipeline: Some(t.funnel.id),
            },
        )
        .await
        .at("funnel")?;
    ensure_eq!(f[0].reached, 3, "all three created on 2026-03-31: {f:?}");
    Ok(())
}

/// Access: each Rep's and the ReadOnly user's reports equal the oracle over the deals
/// they list (a hidden deal's history never counts), and differ from the admin's, so a
/// report that ignored the scope would fail.
pub async fn scoped_by_access(store: &Store) -> CheckResult {
    let t = scenario_tenant(store).await?;
    for who in ["rep", "rep2", "rep_y", "readonly"] {
        every_report_equals_oracle(store, &t, actor(&t.d, who), who, false).await?;
    }
    let admin = &t.d.f.admin;
    let f = StageFunnel {
        period: year_2026(),
        pipeline: Some(t.funnel.id),
    };
    let time = TimeInStage {
        period: year_2026(),
        pipeline: Some(t.funnel.id),
    };
    let slips = SlippedDeals {
        period: year_2026(),
        by: None,
        pipeline: None,
    };
    let lost = LostReasons {
        period: year_2026(),
        pipeline: None,
        rate_date: None,
    };
    let all_f = t.a.stage_funnel(admin, &f).await.at("funnel")?;
    let all_t = t.a.time_in_stage(admin, &time).await.at("time")?;
    let all_s = t.a.slipped_deals(admin, &slips).await.at("slips")?;
    let all_l = t.a.lost_reasons(admin, &lost).await.at("lost")?;
    for who in ["rep", "rep_y"] {
        let ctx = actor(&t.d, who);
        let rep_f = t.a.stage_funnel(ctx, &f).await.at("funnel")?;
        ensure!(
            rep_f[0].reached < all_f[0].reached,
            "{who} sees fewer deals in the funnel: {rep_f:?} vs {all_f:?}"
        );
        let rep_t = t.a.time_in_stage(ctx, &time).await.at("time")?;
        ensure!(
            rep_t.iter().map(|r| r.stays).sum::<u64>() < all_t.iter().map(|r| r.stays).sum(),
            "{who} sees fewer stays: {rep_t:?} vs {all_t:?}"
        );
        let rep_l = t.a.lost_reasons(ctx, &lost).await.at("lost")?;
        ensure!(
            rep_l.iter().map(|r| r.count).sum::<u64>() < all_l.iter().map(|r| r.count).sum(),
            "{who} sees fewer lost deals: {rep_l:?} vs {all_l:?}"
        );
    }
    let rep_s = t.a.slipped_deals(&t.d.f.rep, &slips).await.at("slips")?;
    ensure!(
        rep_s[0].slips < all_s[0].slips,
        "rep sees fewer slips: {rep_s:?} vs {all_s:?}"
    );
    Ok(())
}

/// The close-date history: the typed update and the generic record patch append an entry
/// with the dates before and after, the owner, team and pipeline then, who and when;
/// clearing and setting a first date have no day count; an update that leaves the date
/// alone, a stage move and the creation append nothing; a Rep reads only the history of
/// deals it sees (NotFound otherwise).
pub async fn close_history_recorded(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let at = |d: u32| local(2026, 1, d, 9, 0, 0);
    let ids = make(
        &t,
        &[Plan {
            team: Some("y"),
            close: Some(date(2026, 2, 1)),
            ..plan(
                "rep_y",
                at(1),
                vec![
                    (at(2), Op::Close(Some(date(2026, 2, 11)))),
                    (at(3), Op::Stage(1, 0)),
                    (at(4), Op::ClosePatch(Some(date(2026, 2, 5)))),
                    (at(5), Op::Close(Some(date(2026, 2, 5)))),
                    (at(6), Op::ClosePatch(None)),
                    (at(7), Op::Close(Some(date(2026, 3, 1)))),
                ],
            )
        }],
    )
    .await?;
    let admin = &t.d.f.admin;
    let deal = t.d.deals.get(admin, ids[0]).await.at("deal")?;
    let h =
        t.d.deals
            .close_history(admin, ids[0])
            .await
            .at("close history")?;
    let got: Vec<_> = h
        .iter()
        .map(|c| (c.from, c.to, c.days_later, c.at))
        .collect();
    ensure_eq!(
        got,
        vec![
            (
                Some(date(2026, 2, 1)),
                Some(date(2026, 2, 11)),
                Some(10),
                at(2)
            ),
            (
                Some(date(2026, 2, 11)),
                Some(date(2026, 2, 5)),
                Some(-6),
                at(4)
            ),
            (Some(date(2026, 2, 5)), None, None, at(6)),
            (None, Some(date(2026, 3, 1)), None, at(7)),
        ],
        "one entry per change, none for the move or the unchanged date"
    );
    let rep_y = t.d.f.rep_y.actor().user;
    for c in &h {
        ensure_eq!(c.deal, deal.id, "deal");
        ensure_eq!(c.owner, rep_y, "owner then");
        ensure_eq!(c.team, Some(t.d.f.team_y), "team then");
        ensure_eq!(c.pipeline, t.funnel.id, "pipeline then");
        ensure_eq!(c.by, Some(admin.actor().user), "by");
    }
    let versions: Vec<u64> = h.iter().map(|c| c.version).collect();
    ensure!(
        versions.windows(2).all(|w| w[0] < w[1]) && versions.last() == Some(&deal.version),
        "keyed by the deal's version after each change: {versions:?}, deal v{}",
        deal.version
    );
    let hidden = t.d.deals.close_history(&t.d.f.rep, ids[0]).await;
    ensure!(
        matches!(hidden, Err(Error::NotFound { .. })),
        "a rep of another team does not read it: {hidden:?}"
    );
    Ok(())
}

/// Bad input: an unknown pipeline is a Validation error on `pipeline` for each report; a
/// currency without a rate on the rate date one on `rate_date` naming the currency and
/// the date; bad report JSON names the part (`by` of slipped deals outside owner, team,
/// pipeline; SQL in it; a period without `to`).
pub async fn bad_input(store: &Store) -> CheckResult {
    let t = tenant(store).await?;
    let admin = &t.d.f.admin;
    let p = year_2026();
    let unknown = Some(PipelineId::new());
    expect_validation(
        t.a.stage_funnel(
            admin,
            &StageFunnel {
                period: p,
                pipeline: unknown,
            },
        )
        .await,
        "pipeline",
        "funnel of an unknown pipeline",
    )?;
    expect_validation(
        t.a.time_in_stage(
            admin,
            &TimeInStage {
                period: p,
                pipeline: unknown,
            },
        )
        .await,
        "pipeline",
        "time in stage of an unknown pipeline",
    )?;
    expect_validation(
        t.a.lost_reasons(
            admin,
            &LostReasons {
                period: p,
                pipeline: unknown,
                rate_date: None,
            },
        )
        .await,
        "pipeline",
        "lost reasons of an unknown pipeline",
    )?;
    expect_validation(
        t.a.slipped_deals(
            admin,
            &SlippedDeals {
                period: p,
                by: None,
                pipeline: unknown,
            },
        )
        .await,
        "pipeline",
        "slips of an unknown pipeline",
    )?;
    for (json, field) in [
        (
            r#"{"format":1,"report":"slipped_deals","period":{"from":"2026-01-01","to":"2026-02-01"},"by":"campaign"}"#,
            "by",
        ),
        (
            r#"{"format":1,"report":"slipped_deals","period":{"from":"2026-01-01","to":"2026-02-01"},"by":"owner_id' OR 1=1--"}"#,
            "by",
        ),
        (
            r#"{"format":1,"report":"stage_funnel","period":{"from":"2026-01-01"}}"#,
            "period.to",
        ),
        (
            r#"{"format":1,"report":"time_in_stage","period":{"from":"2026-01-01","to":"2026-02-01"},"rate_date":"2026-01-01"}"#,
            "rate_date",
        ),
    ] {
        expect_validation(Report::from_json(json), field, json)?;
    }
    // A lost GBP deal without a GBP rate.
    let jan = local(2026, 1, 5, 9, 0, 0);
    make(
        &t,
        &[Plan {
            amount: Some(Money::parse("10", "GBP").expect("GBP")),
            ..plan("rep", jan, vec![(jan, Op::Stage(4, 0))])
        }],
    )
    .await?;
    let got =
        t.a.lost_reasons(
            admin,
            &LostReasons {
                period: p,
                pipeline: None,
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
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Property
// ---------------------------------------------------------------------------------------

/// One random deal: owner, team (indexes), amount (currency index, cents) or none, seconds
/// from 2026-01-01 to its creation, its ops (seconds after the previous one; what: 0-5 a
/// stage of `Funnel` with a reason choice, 6 a close date through the update, 7 through
/// the generic patch, as days from 2026-01-01 or none), deleted.
type RandomDeal = (
    usize,
    usize,
    Option<(usize, i64)>,
    i64,
    Vec<(i64, u8, u8, Option<u64>)>,
    bool,
);

async fn random_case(store: &Store, deals: &[RandomDeal]) -> CheckResult {
    let t = tenant(store).await?;
    let owners = ["admin", "rep", "rep2", "rep_y"];
    let teams = [None, Some("x"), Some("y")];
    let start = local(2026, 1, 1, 0, 0, 0);
    let day = |n: u64| date(2026, 1, 1) + chrono::Days::new(n);
    let plans: Vec<Plan> = deals
        .iter()
        .map(|(o, tm, amount, created, ops, deleted)| {
            let created = start + chrono::Duration::seconds(*created);
            let mut at = created;
            let ops = ops
                .iter()
                .map(|(gap, what, reason, close)| {
                    at += chrono::Duration::seconds(*gap);
                    let op = match what {
                        0..=5 => Op::Stage(usize::from(*what), *reason),
                        6 => Op::Close(close.map(day)),
                        _ => Op::ClosePatch(close.map(day)),
                    };
                    (at, op)
                })
                .collect();
            Plan {
                team: teams[tm % 3],
                amount: amount.map(|(c, cents)| {
                    Money::new(
                        Decimal::new(cents, 2),
                        Currency::parse(["EUR", "USD"][c % 2]).expect("currency"),
                    )
                    .expect("money")
                }),
                close: Some(day(40)),
                deleted: *deleted,
                ..plan(owners[o % 4], created, ops)
            }
        })
        .collect();
    make(&t, &plans).await?;
    for (who, ctx) in [("admin", &t.d.f.admin), ("rep", &t.d.f.rep)] {
        let o = oracle(store, &t.d, ctx).await?;
        for p in [
            year_2026(),
            q1(),
            period(date(2026, 2, 1), date(2026, 2, 28)),
        ] {
            let r = StageFunnel {
                period: p,
                pipeline: None,
            };
            ensure_eq!(
                t.a.stage_funnel(ctx, &r).await.at("funnel")?,
                oracle_funnel(&o, &r),
                "{who}: funnel {p:?}"
            );
            let r = TimeInStage {
                period: p,
                pipeline: Some(t.funnel.id),
            };
            ensure_eq!(
                t.a.time_in_stage(ctx, &r).await.at("time in stage")?,
                oracle_time(&o, &r),
                "{who}: time in stage {p:?}"
            );
            let r = SlippedDeals {
                period: p,
                by: Some(SlipDim::Owner),
                pipeline: None,
            };
            ensure_eq!(
                t.a.slipped_deals(ctx, &r).await.at("slips")?,
                oracle_slips(&o, &r),
                "{who}: slips {p:?}"
            );
            let r = LostReasons {
                period: p,
                pipeline: None,
                rate_date: Some(date(2026, 12, 31)),
            };
            let rates = rates(store, ctx, &o, date(2026, 12, 31)).await?;
            ensure_eq!(
                t.a.lost_reasons(ctx, &r).await.at("lost reasons")?,
                oracle_lost(&o, &rates, &r),
                "{who}: lost reasons {p:?}"
            );
        }
    }
    Ok(())
}

/// Property: for random deal histories in `Funnel` (moves forwards, backwards, skipping,
/// into won and lost stages and out again, at random gaps from a second to weeks; close
/// dates moved later, earlier, cleared and set through the typed update and the generic
/// patch; random owners, teams, currencies; some deals deleted), the stage funnel, time
/// in stage, slipped deals and lost reasons equal the brute-force recomputation from the
/// histories read through the public API, for the Admin and for a Rep (proptest, 8 cases
/// of up to 8 deals).
pub fn random_histories<F, Fut>(factory: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = crmkit_core::Result<Store>>,
{
    use proptest::prelude::*;
    let op = (
        prop_oneof![1 => 1i64..60, 2 => 60i64..(20 * 86_400)],
        0u8..8,
        0u8..3,
        proptest::option::weighted(0.8, 0u64..200),
    );
    let deal = (
        0usize..4,
        0usize..3,
        proptest::option::weighted(0.8, (0usize..2, 0i64..10_000_000)),
        0i64..(120 * 86_400),
        proptest::collection::vec(op, 0..7),
        prop_oneof![5 => Just(false), 1 => Just(true)],
    );
    crate::support::run_property(
        "random histories",
        factory,
        proptest::collection::vec(deal, 0..8),
        (8, 20),
        |s, deals| Box::pin(async move { random_case(s, &deals).await }),
    )
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name.
    names: analytics_funnel_check_names,
    checks: [
        empty_tenant,
        one_deal,
        reports_equal_oracle,
        period_edges,
        scoped_by_access,
        close_history_recorded,
        bad_input,
    ],
}
