//! Conformance checks of pipeline snapshots, the pipeline waterfall and forecast accuracy
//! (`crmkit_analytics::snapshot`) on any backend.
//!
//! Each report is compared with an oracle computed in plain Rust, by brute force, from
//! what the public API returns: the snapshots' rows as the Admin reads them
//! (`Analytics::snapshot_rows`), filtered by the actor's access to the owner and team each
//! row recorded (`Actor::can_see`), and the deals the actor lists now (`Deals::list`),
//! following the definitions in the snapshot module's docs. A snapshot's rows are compared
//! with the deals listed when it was taken and the rates of its date. Each check makes its
//! own tenant; [`checks`] lists them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use rust_decimal::{Decimal, RoundingStrategy};

use crmkit_analytics::period::{Period, local_date};
use crmkit_analytics::snapshot::{SNAPSHOT_DEAL_TABLE, SNAPSHOT_TABLE};
use crmkit_analytics::{
    AccuracyRow, Analytics, AnalyticsModule, Change, Every, ForecastAccuracy, Line, Report,
    Snapshot, SnapshotId, SnapshotRow, SnapshotSchedule, Waterfall, WaterfallRow,
};
use crmkit_contacts::ContactsModule;
use crmkit_core::store::Fault;
use crmkit_core::{
    Ctx, Currency, DealId, Error, ManualClock, Modules, Money, PipelineId, Query, Store, UserId,
};
use crmkit_pipeline::PipelineModule;
use crmkit_pipeline::currency::Currencies;
use crmkit_pipeline::deal::{
    Deal, DealPatch, LostReasonInput, NewDeal, NewPipeline, NewStage, Pipeline, StageKind,
};

use crate::analytics::{ZONE, eur, period, tz, usd};
use crate::check::{At, expect_denied, expect_not_found, expect_validation, validation_reasons};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::pipeline_deals::DealFixture;
use crate::support::{all_pages, count, date};

/// Core, contacts, pipeline and analytics.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(PipelineModule)
        .add(AnalyticsModule)
        .build()
}

/// `y-m-d h:00` local time in [`ZONE`], as UTC.
fn local(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    tz().with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

/// A tenant whose actors share one manual clock.
struct World {
    d: DealFixture,
    a: Analytics,
    clock: Arc<ManualClock>,
    /// admin, manager, rep, rep2, rep_y, readonly on the clock.
    actors: Vec<(&'static str, Ctx)>,
    other: Pipeline,
}

impl World {
    fn ctx(&self, name: &str) -> &Ctx {
        &self
            .actors
            .iter()
            .find(|(n, _)| *n == name)
            .expect("actor")
            .1
    }

    fn admin(&self) -> &Ctx {
        self.ctx("admin")
    }

    fn at(&self, t: DateTime<Utc>) {
        self.clock.set(t);
    }
}

/// A tenant with base currency EUR, USD rates (0.9 from 2026-01-01, 0.95 from
/// 2026-02-15), reporting in [`ZONE`], and a second pipeline "Other".
async fn world(store: &Store) -> CheckResult<World> {
    let d = crate::pipeline_deals::setup(store).await?;
    let clock = Arc::new(ManualClock::new(local(2026, 1, 1, 9)));
    let on = |c: &Ctx| c.clone().with_clock(clock.clone());
    let actors = vec![
        ("admin", on(&d.f.admin)),
        ("manager", on(&d.f.manager)),
        ("rep", on(&d.f.rep)),
        ("rep2", on(&d.f.rep2)),
        ("rep_y", on(&d.f.rep_y)),
        ("readonly", on(&d.f.readonly)),
    ];
    let admin = &actors[0].1;
    let cur = Currencies::new(store).at("currencies")?;
    cur.set_base_currency(admin, Currency::parse("EUR").at("EUR")?)
        .await
        .at("base currency")?;
    let usd_c = Currency::parse("USD").at("USD")?;
    cur.set_rate(admin, usd_c, date(2026, 1, 1), Decimal::new(9, 1))
        .await
        .at("rate")?;
    cur.set_rate(admin, usd_c, date(2026, 2, 15), Decimal::new(95, 2))
        .await
        .at("rate")?;
    let a = Analytics::new(store).at("Analytics::new")?;
    a.set_settings(admin, ZONE, 1, 0).await.at("settings")?;
    let other = d
        .deals
        .pipelines()
        .create(
            admin,
            NewPipeline {
                name: "Other".into(),
                currency: None,
                stages: vec![
                    NewStage::open("O1", 30),
                    NewStage::won("OW"),
                    NewStage::lost("OL"),
                ],
            },
        )
        .await
        .at("other pipeline")?;
    Ok(World {
        d,
        a,
        clock,
        actors,
        other,
    })
}

/// A deal made by the admin now.
struct Spec {
    owner: &'static str,
    team: Option<&'static str>,
    amount: Option<Money>,
    close: Option<NaiveDate>,
    probability: u8,
    other: bool,
}

fn spec(owner: &'static str, amount: Option<Money>, close: Option<NaiveDate>, p: u8) -> Spec {
    Spec {
        owner,
        team: None,
        amount,
        close,
        probability: p,
        other: false,
    }
}

async fn make(w: &World, s: Spec) -> CheckResult<Deal> {
    let pipeline = if s.other { w.other.id } else { w.d.default.id };
    let mut n = NewDeal::new("deal", pipeline)
        .owner(w.ctx(s.owner).actor().user)
        .probability(s.probability);
    match s.team {
        Some("x") => n = n.team(w.d.f.team_x),
        Some("y") => n = n.team(w.d.f.team_y),
        _ => {}
    }
    if let Some(m) = s.amount {
        n = n.amount(m);
    }
    if let Some(c) = s.close {
        n = n.expected_close(c);
    }
    w.d.deals.create(w.admin(), n).await.at("create deal")
}

fn stage_of(p: &Pipeline, kind: StageKind) -> CheckResult<crmkit_core::StageId> {
    p.stages
        .iter()
        .find(|s| s.kind == kind)
        .map(|s| s.id)
        .ok_or_else(|| Failure::new(format!("no {kind:?} stage")))
}

async fn patch(w: &World, deal: &Deal, p: DealPatch) -> CheckResult<Deal> {
    w.d.deals
        .update(w.admin(), deal.id, deal.version, p)
        .await
        .at("update deal")
}

async fn win(w: &World, deal: &Deal) -> CheckResult<Deal> {
    let p = if deal.pipeline == w.other.id {
        &w.other
    } else {
        &w.d.default
    };
    w.d.deals
        .move_to_stage(
            w.admin(),
            deal.id,
            deal.version,
            stage_of(p, StageKind::Won)?,
            None,
        )
        .await
        .at("win")
}

async fn lose(w: &World, deal: &Deal) -> CheckResult<Deal> {
    let p = if deal.pipeline == w.other.id {
        &w.other
    } else {
        &w.d.default
    };
    w.d.deals
        .move_to_stage(
            w.admin(),
            deal.id,
            deal.version,
            stage_of(p, StageKind::Lost)?,
            Some(LostReasonInput::Text("price".into())),
        )
        .await
        .at("lose")
}

async fn delete(w: &World, deal: &Deal) -> CheckResult {
    w.d.deals
        .delete(w.admin(), deal.id, deal.version)
        .await
        .at("delete")?;
    Ok(())
}

async fn move_pipeline(w: &World, deal: &Deal, to: PipelineId) -> CheckResult<Deal> {
    w.d.deals
        .move_to_pipeline(w.admin(), deal.id, deal.version, to, None)
        .await
        .at("move pipeline")
}

// ---------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------

/// Every row of snapshot `id`, as the admin reads them page by page.
async fn all_rows(w: &World, id: SnapshotId) -> CheckResult<Vec<SnapshotRow>> {
    let mut out: Vec<SnapshotRow> = vec![];
    loop {
        let page =
            w.a.snapshot_rows(w.admin(), id, out.last().map(|r| r.deal), 7)
                .await
                .at("snapshot rows")?;
        let n = page.len();
        out.extend(page);
        if n < 7 {
            return Ok(out);
        }
    }
}

/// The deals `ctx` lists now, by id.
async fn listed(w: &World, ctx: &Ctx) -> CheckResult<HashMap<DealId, Deal>> {
    let q = Query::new().limit(50);
    let deals = all_pages(&q, "list deals", |q| async move {
        w.d.deals.list(ctx, &q).await
    })
    .await?;
    Ok(deals.into_iter().map(|d| (d.id, d)).collect())
}

fn even(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointNearestEven)
}

/// What a snapshot taken now must hold: every open deal the admin lists, converted at the
/// rates of `on`.
async fn expected_rows(w: &World, on: NaiveDate) -> CheckResult<Vec<SnapshotRow>> {
    let cur = Currencies::new(&w.d.f.store).at("currencies")?;
    let mut rows = vec![];
    for deal in listed(w, w.admin()).await?.into_values() {
        if deal.status() != StageKind::Open {
            continue;
        }
        let base_amount = match deal.amount {
            Some(m) => {
                let r = cur
                    .rate_at(w.admin(), m.currency(), on)
                    .await
                    .at("rate_at")?;
                Some(even(m.amount() * r.rate, 2))
            }
            None => None,
        };
        rows.push(SnapshotRow {
            deal: deal.id,
            pipeline: deal.pipeline,
            stage: deal.stage,
            owner: deal.owner,
            team: deal.team,
            amount: deal.amount,
            base_amount,
            probability: deal.probability,
            expected_close: deal.expected_close,
            created_at: deal.created_at,
        });
    }
    rows.sort_by_key(|r| r.deal);
    Ok(rows)
}

fn holds(r: &SnapshotRow, q: &Waterfall) -> bool {
    q.pipeline.is_none_or(|p| p == r.pipeline)
        && q.period
            .is_none_or(|p| r.expected_close.is_some_and(|d| p.contains(d)))
}

fn base(r: &SnapshotRow) -> Decimal {
    r.base_amount.unwrap_or_default()
}

/// The waterfall by brute force, by the definitions, as `ctx` sees it.
fn oracle_waterfall(
    ctx: &Ctx,
    (e, e_rows): (&Snapshot, &[SnapshotRow]),
    (l, l_rows): (&Snapshot, &[SnapshotRow]),
    now: &HashMap<DealId, Deal>,
    q: &Waterfall,
) -> Vec<WaterfallRow> {
    let sees = |r: &&SnapshotRow| ctx.actor().can_see(Some(r.owner), r.team);
    let es: Vec<&SnapshotRow> = e_rows.iter().filter(sees).collect();
    let ls: Vec<&SnapshotRow> = l_rows.iter().filter(sees).collect();
    let ids: BTreeSet<DealId> = es.iter().chain(ls.iter()).map(|r| r.deal).collect();
    let mut lines: BTreeMap<Change, (u64, Decimal)> = BTreeMap::new();
    let mut add = |c: Change, v: Decimal| {
        let x = lines.entry(c).or_default();
        x.0 += 1;
        x.1 += v;
    };
    for id in ids {
        let er = es.iter().find(|r| r.deal == id).copied();
        let lr = ls.iter().find(|r| r.deal == id).copied();
        let e_in = er.is_some_and(|r| holds(r, q));
        let l_in = lr.is_some_and(|r| holds(r, q));
        if l_in {
            let lr = lr.expect("in");
            if e_in {
                let er = er.expect("in");
                let ord = match (er.amount, lr.amount) {
                    (Some(x), Some(y)) if x.currency() == y.currency() => {
                        y.amount().cmp(&x.amount())
                    }
                    _ => base(lr).cmp(&base(er)),
                };
                let c = match ord {
                    std::cmp::Ordering::Greater => Change::Increased,
                    std::cmp::Ordering::Less => Change::Decreased,
                    std::cmp::Ordering::Equal => Change::Unchanged,
                };
                add(c, base(lr) - base(er));
            } else if er.is_none() && lr.created_at > e.taken_at {
                add(Change::New, base(lr));
            } else {
                add(Change::MovedIn, base(lr));
            }
        } else if e_in {
            let er = er.expect("in");
            let c = match lr {
                Some(lr) => {
                    let slipped = q.pipeline.is_none_or(|p| p == lr.pipeline)
                        && q.period
                            .is_some_and(|p| lr.expected_close.is_some_and(|d| d > p.to()));
                    if slipped {
                        Change::Slipped
                    } else {
                        Change::MovedOut
                    }
                }
                None => match now.get(&id) {
                    Some(d) if d.won_at.is_some_and(|t| t <= l.taken_at) => Change::Won,
                    Some(d) if d.lost_at.is_some_and(|t| t <= l.taken_at) => Change::Lost,
                    _ => Change::Removed,
                },
            };
            add(c, -base(er));
        }
    }
    let total = |rows: &[&SnapshotRow]| {
        let v: Vec<&&SnapshotRow> = rows.iter().filter(|r| holds(r, q)).collect();
        (v.len() as u64, v.iter().map(|r| base(r)).sum::<Decimal>())
    };
    Change::ALL
        .iter()
        .map(|&c| {
            let (count, amount) = match c {
                Change::Start => total(&es),
                Change::End => total(&ls),
                c => lines.get(&c).copied().unwrap_or_default(),
            };
            WaterfallRow {
                change: c,
                count,
                amount,
            }
        })
        .collect()
}

/// `start + Σ changes = end`, in count and in amount.
fn reconciles(rows: &[WaterfallRow], what: &str) -> CheckResult {
    ensure_eq!(
        rows.iter().map(|r| r.change).collect::<Vec<_>>(),
        Change::ALL.to_vec(),
        "{what}: the lines"
    );
    let start = &rows[0];
    let end = &rows[rows.len() - 1];
    let mid = &rows[1..rows.len() - 1];
    let count = start.count as i64
        + mid
            .iter()
            .map(|r| r.change.count_sign() * r.count as i64)
            .sum::<i64>();
    ensure_eq!(count, end.count as i64, "{what}: the counts reconcile");
    let amount = start.amount + mid.iter().map(|r| r.amount).sum::<Decimal>();
    ensure_eq!(amount, end.amount, "{what}: the amounts reconcile");
    Ok(())
}

/// Forecast accuracy by brute force, as `ctx` sees it.
async fn oracle_accuracy(
    w: &World,
    ctx: &Ctx,
    (s, rows): (&Snapshot, &[SnapshotRow]),
    q: &ForecastAccuracy,
) -> CheckResult<Vec<AccuracyRow>> {
    type Sums = ([(u64, Decimal); 4], Decimal);
    let mut groups: BTreeMap<Option<UserId>, Sums> = BTreeMap::new();
    if !q.by_owner {
        groups.insert(None, Default::default());
    }
    let key = |o: UserId| if q.by_owner { Some(o) } else { None };
    for r in rows {
        if !ctx.actor().can_see(Some(r.owner), r.team)
            || q.pipeline.is_some_and(|p| p != r.pipeline)
            || !r.expected_close.is_some_and(|d| q.period.contains(d))
        {
            continue;
        }
        let band = if r.probability >= q.commit_at {
            2
        } else if r.probability >= q.best_case_at {
            1
        } else {
            0
        };
        let g = groups.entry(key(r.owner)).or_default();
        g.0[band].0 += 1;
        g.0[band].1 += base(r);
        g.1 += base(r) * Decimal::from(r.probability) / Decimal::from(100);
    }
    let cur = Currencies::new(&w.d.f.store).at("currencies")?;
    let on = q.rate_date.unwrap_or(s.rate_date);
    let mut won: BTreeMap<Option<UserId>, (u64, BTreeMap<&'static str, Decimal>)> = BTreeMap::new();
    let mut rates: HashMap<&'static str, Decimal> = HashMap::new();
    for d in listed(w, ctx).await?.into_values() {
        let Some(t) = d.won_at else { continue };
        if d.status() != StageKind::Won
            || t < s.taken_at
            || !q.period.contains(local_date(tz(), t))
            || q.pipeline.is_some_and(|p| p != d.pipeline)
        {
            continue;
        }
        let g = won.entry(key(d.owner)).or_default();
        g.0 += 1;
        if let Some(m) = d.amount {
            let c = m.currency().code();
            *g.1.entry(c).or_default() += m.amount();
            if let std::collections::hash_map::Entry::Vacant(v) = rates.entry(c) {
                v.insert(cur.rate_at(ctx, m.currency(), on).await.at("rate")?.rate);
            }
        }
    }
    for (k, (n, sums)) in won {
        let g = groups.entry(k).or_default();
        g.0[3].0 += n;
        g.0[3].1 += sums
            .iter()
            .map(|(c, s)| even(*s * rates[c], 2))
            .sum::<Decimal>();
    }
    Ok(groups
        .into_iter()
        .map(|(owner, (l, weighted))| {
            let weighted = even(weighted, 2);
            let line = |x: (u64, Decimal)| Line {
                count: x.0,
                amount: x.1,
            };
            AccuracyRow {
                owner,
                pipeline: line(l[0]),
                best_case: line(l[1]),
                commit: line(l[2]),
                weighted,
                won: line(l[3]),
                accuracy: (!weighted.is_zero()).then(|| even(l[3].1 / weighted, 4)),
            }
        })
        .collect())
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

/// The waterfall of every filter (none, pipeline, close period, both, the other pipeline)
/// as each actor, against the oracle, reconciled; also through JSON. The rows of every
/// actor and filter, by actor.
async fn waterfalls_equal_oracle(
    w: &World,
    e: &Snapshot,
    l: &Snapshot,
    actors: &[&str],
    periods: &[Period],
) -> CheckResult<BTreeMap<String, Vec<Vec<WaterfallRow>>>> {
    let e_rows = all_rows(w, e.id).await?;
    let l_rows = all_rows(w, l.id).await?;
    let mut filters = vec![(None, None)];
    for p in [Some(w.d.default.id), Some(w.other.id)] {
        filters.push((p, None));
    }
    for &per in periods {
        filters.push((None, Some(per)));
        filters.push((Some(w.d.default.id), Some(per)));
    }
    let mut out = BTreeMap::new();
    for &who in actors {
        let ctx = w.ctx(who);
        let now = listed(w, ctx).await?;
        let mut all = vec![];
        for &(pipeline, period) in &filters {
            let q = Waterfall {
                earlier: e.id,
                later: l.id,
                pipeline,
                period,
            };
            let got = w.a.pipeline_waterfall(ctx, &q).await.at("waterfall")?;
            let want = oracle_waterfall(ctx, (e, &e_rows), (l, &l_rows), &now, &q);
            ensure_eq!(got, want, "{who}: waterfall {pipeline:?} {period:?}");
            reconciles(&got, &format!("{who}: {pipeline:?} {period:?}"))?;
            json_equals_typed(&w.a, ctx, Report::PipelineWaterfall(q), &got).await?;
            all.push(got);
        }
        out.insert(who.to_owned(), all);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------

/// Q2 2026, the close period of the scenario's filters.
fn q2() -> Period {
    period(date(2026, 4, 1), date(2026, 6, 30))
}

/// A tenant where every waterfall line happens between a snapshot taken by the manager
/// at 2026-02-01 12:00 and one taken by the admin at 2026-03-01 12:00; afterwards (March
/// to May) deals are won for forecast accuracy.
async fn scenario(store: &Store) -> CheckResult<(World, Snapshot, Snapshot)> {
    let w = world(store).await?;
    w.at(local(2026, 1, 10, 9));
    let d = |m, day| Some(date(2026, m, day));
    let inc = make(&w, spec("rep", Some(eur("100")), d(5, 10), 20)).await?;
    let dec = make(
        &w,
        Spec {
            team: Some("x"),
            ..spec("rep2", Some(usd("200")), d(5, 20), 50)
        },
    )
    .await?;
    let same = make(
        &w,
        Spec {
            team: Some("y"),
            ..spec("rep_y", Some(usd("300.01")), d(6, 1), 90)
        },
    )
    .await?;
    let slip = make(&w, spec("rep", Some(eur("50")), d(6, 15), 50)).await?;
    let out = make(
        &w,
        Spec {
            team: Some("x"),
            ..spec("rep2", Some(eur("70")), d(5, 5), 95)
        },
    )
    .await?;
    let early = make(&w, spec("admin", Some(eur("10")), d(4, 20), 10)).await?;
    let into = make(&w, spec("rep", Some(eur("40")), d(9, 1), 60)).await?;
    let won = make(
        &w,
        Spec {
            team: Some("y"),
            ..spec("rep_y", Some(eur("500")), d(4, 10), 90)
        },
    )
    .await?;
    let lost = make(&w, spec("rep", Some(usd("80")), d(4, 11), 50)).await?;
    let del = make(
        &w,
        Spec {
            team: Some("x"),
            ..spec("rep2", Some(eur("60")), d(4, 12), 20)
        },
    )
    .await?;
    let reassign = make(&w, spec("rep", Some(eur("25")), d(5, 25), 50)).await?;
    make(&w, spec("rep", None, d(5, 30), 90)).await?;
    make(
        &w,
        Spec {
            team: Some("x"),
            ..spec("rep2", Some(eur("90")), None, 50)
        },
    )
    .await?;
    let move_in = make(
        &w,
        Spec {
            other: true,
            team: Some("x"),
            ..spec("rep2", Some(eur("15")), d(5, 2), 30)
        },
    )
    .await?;
    let late = make(&w, spec("rep", Some(eur("5")), d(4, 3), 90)).await?;
    // Closed or deleted before the first snapshot: in neither.
    let before = make(&w, spec("rep", Some(eur("1000")), d(4, 1), 50)).await?;
    let gone = make(&w, spec("rep_y", Some(eur("2000")), d(4, 1), 50)).await?;
    w.at(local(2026, 1, 20, 9));
    win(&w, &before).await?;
    delete(&w, &gone).await?;

    w.at(local(2026, 2, 1, 12));
    let e = w.a.take_snapshot(w.ctx("manager")).await.at("take E")?;
    ensure_eq!(
        all_rows(&w, e.id).await?,
        expected_rows(&w, e.rate_date).await?,
        "the earlier snapshot holds every open deal"
    );

    w.at(local(2026, 2, 10, 9));
    patch(&w, &inc, DealPatch::default().amount(Some(eur("150")))).await?;
    patch(&w, &dec, DealPatch::default().amount(Some(usd("120")))).await?;
    patch(
        &w,
        &slip,
        DealPatch::default().expected_close(Some(date(2026, 8, 1))),
    )
    .await?;
    move_pipeline(&w, &out, w.other.id).await?;
    patch(
        &w,
        &early,
        DealPatch::default().expected_close(Some(date(2026, 3, 20))),
    )
    .await?;
    patch(
        &w,
        &into,
        DealPatch::default().expected_close(Some(date(2026, 5, 1))),
    )
    .await?;
    win(&w, &won).await?;
    lose(&w, &lost).await?;
    delete(&w, &del).await?;
    patch(
        &w,
        &reassign,
        DealPatch::default()
            .owner(w.ctx("rep_y").actor().user)
            .team(None),
    )
    .await?;
    move_pipeline(&w, &move_in, w.d.default.id).await?;
    w.at(local(2026, 2, 20, 9));
    make(&w, spec("rep", Some(eur("33")), d(4, 30), 50)).await?;
    make(
        &w,
        Spec {
            other: true,
            team: Some("y"),
            ..spec("rep_y", Some(usd("44")), d(5, 1), 30)
        },
    )
    .await?;

    w.at(local(2026, 3, 1, 12));
    let l = w.a.take_snapshot(w.admin()).await.at("take L")?;
    ensure_eq!(
        all_rows(&w, l.id).await?,
        expected_rows(&w, l.rate_date).await?,
        "the later snapshot holds every open deal"
    );

    // After both snapshots: wins for forecast accuracy (and nothing changes the
    // snapshots).
    w.at(local(2026, 3, 10, 9));
    let late = w.d.deals.get(w.admin(), late.id).await.at("get")?;
    win(&w, &late).await?;
    w.at(local(2026, 4, 15, 9));
    let inc = w.d.deals.get(w.admin(), inc.id).await.at("get")?;
    win(&w, &inc).await?;
    w.at(local(2026, 5, 20, 9));
    let same = w.d.deals.get(w.admin(), same.id).await.at("get")?;
    win(&w, &same).await?;
    w.at(local(2026, 6, 30, 23));
    Ok((w, e, l))
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// Who takes, reads and deletes snapshots: an Admin and a Manager take them (a Rep and a
/// ReadOnly user are refused); a snapshot holds every open deal of the tenant whoever
/// takes it, as the deals were (later changes leave it as it is); a Rep reads only the
/// rows of deals they or their teams owned then, and its deal count is theirs; only an
/// Admin deletes one (audited, with events), after which it is gone everywhere.
pub async fn snapshot_rights_and_content(store: &Store) -> CheckResult {
    let (w, e, l) = scenario(store).await?;
    for who in ["rep", "readonly"] {
        expect_denied(
            w.a.take_snapshot(w.ctx(who)).await,
            &format!("take as {who}"),
        )?;
    }
    // Immutable: the deals changed after both snapshots; the rows are still those
    // recorded (compared with the deals of the time in the scenario).
    let e_rows = all_rows(&w, e.id).await?;
    ensure_eq!(e.deal_count, e_rows.len() as u64, "deal count");
    ensure!(
        e_rows.len() >= 15,
        "the earlier snapshot has the scenario's open deals: {}",
        e_rows.len()
    );
    let listed_snapshots = w.a.snapshots(w.admin()).await.at("list")?;
    ensure_eq!(
        listed_snapshots,
        vec![e.clone(), l.clone()],
        "both snapshots, oldest first"
    );
    ensure_eq!(
        w.a.snapshot(w.admin(), e.id).await.at("get")?,
        e,
        "get a snapshot"
    );
    for who in ["rep", "rep2", "rep_y", "readonly"] {
        let ctx = w.ctx(who);
        let want: Vec<SnapshotRow> = e_rows
            .iter()
            .filter(|r| ctx.actor().can_see(Some(r.owner), r.team))
            .cloned()
            .collect();
        let got =
            w.a.snapshot_rows(ctx, e.id, None, 1000)
                .await
                .at("rows as rep")?;
        ensure_eq!(got, want, "{who} reads the rows of what they owned");
        ensure!(
            got.len() < e_rows.len(),
            "{who} sees fewer rows than the admin"
        );
        let h = w.a.snapshot(ctx, e.id).await.at("get as rep")?;
        ensure_eq!(h.deal_count, want.len() as u64, "{who}'s deal count");
        expect_denied(
            w.a.delete_snapshot(ctx, e.id).await,
            &format!("delete as {who}"),
        )?;
    }
    expect_denied(
        w.a.delete_snapshot(w.ctx("manager"), e.id).await,
        "delete as manager",
    )?;
    let rows_before = count(store, w.admin(), SNAPSHOT_DEAL_TABLE).await?;
    w.a.delete_snapshot(w.admin(), e.id).await.at("delete")?;
    ensure_eq!(
        count(store, w.admin(), SNAPSHOT_DEAL_TABLE).await?,
        rows_before - e.deal_count,
        "the rows are gone"
    );
    expect_not_found(w.a.snapshot(w.admin(), e.id).await, "deleted snapshot")?;
    expect_not_found(
        w.a.snapshot_rows(w.admin(), e.id, None, 10).await,
        "rows of a deleted snapshot",
    )?;
    expect_not_found(w.a.delete_snapshot(w.admin(), e.id).await, "delete twice")?;
    expect_validation(
        w.a.pipeline_waterfall(
            w.admin(),
            &Waterfall {
                earlier: e.id,
                later: l.id,
                pipeline: None,
                period: None,
            },
        )
        .await,
        "earlier",
        "a waterfall from a deleted snapshot",
    )?;
    ensure_eq!(
        w.a.snapshots(w.admin()).await.at("list")?,
        vec![l.clone()],
        "one left"
    );
    let kinds: Vec<String> = crate::support::events_after(store, w.admin(), 0)
        .await?
        .into_iter()
        .filter(|ev| ev.kind.starts_with("analytics.snapshot"))
        .map(|ev| ev.kind)
        .collect();
    ensure_eq!(
        kinds,
        [
            "analytics.snapshot_taken",
            "analytics.snapshot_taken",
            "analytics.snapshot_deleted"
        ],
        "events"
    );
    Ok(())
}

/// The full scenario: the waterfall between the two snapshots, for every filter (none,
/// each pipeline, the close period Q2, both) and as every actor, equals the oracle and
/// reconciles (`start + Σ changes = end`); every line is non-empty for some filter; each
/// Rep's and the ReadOnly user's waterfall is the one over the rows they see (and differs
/// from the Admin's, so a waterfall that ignored the scope would fail).
pub async fn waterfall_equals_oracle(store: &Store) -> CheckResult {
    let (w, e, l) = scenario(store).await?;
    let actors = ["admin", "manager", "rep", "rep2", "rep_y", "readonly"];
    let all = waterfalls_equal_oracle(&w, &e, &l, &actors, &[q2()]).await?;
    let admin = &all["admin"];
    for c in Change::ALL {
        ensure!(
            admin
                .iter()
                .any(|rows| rows.iter().any(|r| r.change == c && r.count > 0)),
            "the scenario has a {c:?} deal for some filter: {admin:?}"
        );
    }
    ensure_eq!(
        all["manager"],
        *admin,
        "the manager sees what the admin sees"
    );
    for who in ["rep", "rep2", "rep_y", "readonly"] {
        ensure!(all[who] != *admin, "{who}'s waterfall is not the admin's");
    }
    // The same snapshot twice: nothing changes.
    let same =
        w.a.pipeline_waterfall(
            w.admin(),
            &Waterfall {
                earlier: l.id,
                later: l.id,
                pipeline: None,
                period: None,
            },
        )
        .await
        .at("same snapshot")?;
    ensure!(
        same.iter().all(
            |r| matches!(r.change, Change::Start | Change::End | Change::Unchanged) || r.count == 0
        ),
        "only unchanged deals between a snapshot and itself: {same:?}"
    );
    Ok(())
}

/// Empty and one-deal tenants, and the edges of the period filter: two empty snapshots
/// give a waterfall of zeros; one deal closing on the period's last day is in it, the day
/// after slips; a deal won exactly when the later snapshot is taken is won. A deal the
/// earlier snapshot recorded as the Rep's, reassigned to another team and then won, is
/// `won` for the admin but `removed` for the Rep (who sees its row in the earlier
/// snapshot but not the deal now): fails when the current-access condition on the deals
/// that left is removed.
pub async fn waterfall_edges(store: &Store) -> CheckResult {
    let w = world(store).await?;
    w.at(local(2026, 2, 1, 12));
    let e0 = w.a.take_snapshot(w.admin()).await.at("empty E")?;
    w.at(local(2026, 2, 2, 12));
    let l0 = w.a.take_snapshot(w.admin()).await.at("empty L")?;
    ensure_eq!(e0.deal_count, 0, "an empty snapshot");
    let all = waterfalls_equal_oracle(&w, &e0, &l0, &["admin", "rep"], &[q2()]).await?;
    ensure!(
        all["admin"]
            .iter()
            .flatten()
            .all(|r| r.count == 0 && r.amount.is_zero()),
        "zeros"
    );
    // One deal closing on the last day of Q2, slipped by one day; another won exactly at
    // the later snapshot's instant.
    w.at(local(2026, 2, 3, 9));
    let one = make(
        &w,
        spec("rep", Some(usd("10.01")), Some(date(2026, 6, 30)), 50),
    )
    .await?;
    let two = make(&w, spec("rep", Some(eur("3")), Some(date(2026, 4, 1)), 50)).await?;
    // No close date: outside the Q2 filters, so only the unfiltered waterfall has it.
    let three = make(&w, spec("rep", Some(eur("7")), None, 50)).await?;
    w.at(local(2026, 2, 4, 12));
    let e = w.a.take_snapshot(w.admin()).await.at("E")?;
    w.at(local(2026, 2, 5, 9));
    patch(
        &w,
        &one,
        DealPatch::default().expected_close(Some(date(2026, 7, 1))),
    )
    .await?;
    // Given to rep_y (team Y) and won: hidden from rep now.
    let three = patch(
        &w,
        &three,
        DealPatch::default()
            .owner(w.ctx("rep_y").actor().user)
            .team(Some(w.d.f.team_y)),
    )
    .await?;
    win(&w, &three).await?;
    let t = local(2026, 2, 6, 12);
    w.at(t);
    win(&w, &two).await?;
    let l = w.a.take_snapshot(w.admin()).await.at("L")?;
    ensure_eq!(l.taken_at, t, "taken when the deal was won");
    let all = waterfalls_equal_oracle(&w, &e, &l, &["admin", "rep", "rep_y"], &[q2()]).await?;
    let q2_rows = &all["admin"][3];
    let line = |c: Change| {
        q2_rows
            .iter()
            .find(|r| r.change == c)
            .map(|r| (r.count, r.amount))
    };
    ensure_eq!(
        line(Change::Slipped),
        Some((1, -Decimal::new(901, 2))),
        "10.01 USD at 0.9 is 9.01 EUR, slipped"
    );
    ensure_eq!(line(Change::Won), Some((1, -Decimal::from(3))), "won");
    // The unfiltered waterfall: the reassigned deal is won for the admin, removed for
    // rep (its earlier row is rep's, the deal is not), and absent for rep_y (the earlier
    // row was not theirs).
    let unfiltered = |who: &str, c: Change| {
        all[who][0]
            .iter()
            .find(|r| r.change == c)
            .map_or((0, Decimal::ZERO), |r| (r.count, r.amount))
    };
    ensure_eq!(
        unfiltered("admin", Change::Won),
        (2, -Decimal::from(10)),
        "admin: both won deals"
    );
    ensure_eq!(
        unfiltered("admin", Change::Removed),
        (0, Decimal::ZERO),
        "admin: nothing removed"
    );
    ensure_eq!(
        unfiltered("rep", Change::Won),
        (1, -Decimal::from(3)),
        "rep: only the deal rep still sees is won"
    );
    ensure_eq!(
        unfiltered("rep", Change::Removed),
        (1, -Decimal::from(7)),
        "rep: the deal won by another team is removed"
    );
    ensure_eq!(
        (
            unfiltered("rep_y", Change::Won),
            unfiltered("rep_y", Change::Removed)
        ),
        ((0, Decimal::ZERO), (0, Decimal::ZERO)),
        "rep_y: the earlier row was rep's"
    );
    // The empty earlier snapshot against the one with deals: both are new.
    let from_empty = waterfalls_equal_oracle(&w, &e0, &e, &["admin"], &[]).await?;
    ensure_eq!(
        from_empty["admin"][0]
            .iter()
            .find(|r| r.change == Change::New)
            .map(|r| r.count),
        Some(3),
        "three new deals"
    );
    Ok(())
}

/// Forecast accuracy of both scenario snapshots, for several periods, thresholds and
/// pipelines, in total and per owner, as every actor, equals the oracle (what was won
/// after the snapshot, converted at the rate date, against the snapshot's forecast); a
/// Rep's report differs from the Admin's.
pub async fn forecast_accuracy_equals_oracle(store: &Store) -> CheckResult {
    let (w, e, l) = scenario(store).await?;
    let mut admin_rows = vec![];
    for who in ["admin", "manager", "rep", "rep2", "rep_y", "readonly"] {
        let ctx = w.ctx(who);
        let mut mine = vec![];
        for s in [&e, &l] {
            let rows = all_rows(&w, s.id).await?;
            for per in [
                q2(),
                period(date(2026, 1, 1), date(2026, 12, 31)),
                period(date(2026, 4, 15), date(2026, 4, 15)),
            ] {
                for (by_owner, pipeline, (best_case_at, commit_at), rate_date) in [
                    (false, None, (50, 90), None),
                    (true, None, (50, 90), Some(date(2026, 6, 30))),
                    (true, Some(w.d.default.id), (20, 95), None),
                    (false, Some(w.other.id), (0, 100), None),
                ] {
                    let q = ForecastAccuracy {
                        snapshot: s.id,
                        period: per,
                        pipeline,
                        by_owner,
                        rate_date,
                        best_case_at,
                        commit_at,
                    };
                    let got = w.a.forecast_accuracy(ctx, &q).await.at("accuracy")?;
                    let want = oracle_accuracy(&w, ctx, (s, &rows), &q).await?;
                    ensure_eq!(got, want, "{who}: forecast accuracy {q:?}");
                    json_equals_typed(&w.a, ctx, Report::ForecastAccuracy(q), &got).await?;
                    mine.push(got);
                }
            }
        }
        if who == "admin" {
            admin_rows = mine.clone();
            ensure!(
                mine.iter()
                    .flatten()
                    .any(|r| r.won.count > 0 && r.accuracy.is_some()),
                "something forecast was won: {mine:?}"
            );
        } else if who != "manager" {
            ensure!(mine != admin_rows, "{who}'s accuracy is not the admin's");
        }
    }
    Ok(())
}

/// The schedule: only an Admin sets it (bad values named, a stale version a Conflict);
/// `take_due_snapshots` (Admin or Manager) takes the latest due instant once, never one
/// before the schedule was set, again not even from two concurrent callers; clearing the
/// schedule stops it; a snapshot whose writing failed leaves nothing visible and a
/// partial one is swept an hour later.
pub async fn schedule(store: &Store) -> CheckResult {
    let w = world(store).await?;
    let admin = w.admin();
    w.at(local(2026, 3, 10, 12));
    make(&w, spec("rep", Some(eur("5")), Some(date(2026, 4, 1)), 50)).await?;
    let six = NaiveTime::from_hms_opt(6, 0, 0).expect("time");
    let daily = SnapshotSchedule {
        every: Every::Day,
        at: six,
    };
    for who in ["manager", "rep"] {
        expect_denied(
            w.a.set_snapshot_schedule(w.ctx(who), Some(daily), 0).await,
            &format!("set schedule as {who}"),
        )?;
    }
    expect_validation(
        w.a.set_snapshot_schedule(
            admin,
            Some(SnapshotSchedule {
                every: Every::Month(29),
                at: six,
            }),
            0,
        )
        .await,
        "every",
        "day 29",
    )?;
    expect_validation(
        w.a.set_snapshot_schedule(
            admin,
            Some(SnapshotSchedule {
                every: Every::Week(Weekday::Mon),
                at: NaiveTime::from_hms_opt(6, 0, 30).expect("time"),
            }),
            0,
        )
        .await,
        "at",
        "seconds",
    )?;
    let set =
        w.a.set_snapshot_schedule(admin, Some(daily), 0)
            .await
            .at("set")?;
    ensure_eq!(
        w.a.snapshot_schedule(w.ctx("rep")).await.at("read")?,
        set,
        "everyone reads the schedule"
    );
    let stale = w.a.set_snapshot_schedule(admin, None, 0).await;
    ensure!(
        matches!(stale, Err(Error::Conflict { .. })),
        "stale version: {stale:?}"
    );
    expect_denied(
        w.a.take_due_snapshots(w.ctx("rep"), local(2026, 3, 11, 7))
            .await,
        "take due as a rep",
    )?;
    // Set at 12:00: today's 06:00 is before it.
    for now in [local(2026, 3, 10, 12), local(2026, 3, 11, 5)] {
        w.at(now);
        ensure!(
            w.a.take_due_snapshots(admin, now)
                .await
                .at("tick")?
                .is_none(),
            "nothing due at {now}"
        );
    }
    let now = local(2026, 3, 11, 6);
    w.at(now);
    let taken =
        w.a.take_due_snapshots(w.ctx("manager"), now)
            .await
            .at("tick")?
            .ok_or_else(|| Failure::new("due at 06:00"))?;
    ensure_eq!(taken.scheduled_for, Some(now), "scheduled for 06:00 local");
    ensure_eq!(taken.deal_count, 1, "the open deal");
    for later in [local(2026, 3, 11, 6), local(2026, 3, 11, 23)] {
        w.at(later);
        ensure!(
            w.a.take_due_snapshots(admin, later)
                .await
                .at("tick")?
                .is_none(),
            "taken once ({later})"
        );
    }
    // Two concurrent callers at the next instant: one snapshot.
    let next = local(2026, 3, 12, 7);
    w.at(next);
    let manager = w.ctx("manager");
    let (x, y) = tokio::join!(
        w.a.take_due_snapshots(admin, next),
        w.a.take_due_snapshots(manager, next)
    );
    let (x, y) = (x.at("tick 1")?, y.at("tick 2")?);
    ensure!(
        x.is_some() != y.is_some(),
        "exactly one concurrent caller takes it: {x:?} {y:?}"
    );
    let all = w.a.snapshots(admin).await.at("list")?;
    ensure_eq!(
        all.iter().map(|s| s.scheduled_for).collect::<Vec<_>>(),
        vec![Some(now), Some(local(2026, 3, 12, 6))],
        "two scheduled snapshots"
    );
    w.a.set_snapshot_schedule(admin, None, set.version)
        .await
        .at("clear")?;
    let much_later = local(2026, 3, 20, 7);
    w.at(much_later);
    ensure!(
        w.a.take_due_snapshots(admin, much_later)
            .await
            .at("tick")?
            .is_none(),
        "no schedule, nothing taken"
    );
    // A failing write: the header commit (one write) passes, the rows' commit fails, and
    // so does the clean-up; nothing is visible, and an hour later the partial snapshot is
    // swept.
    let headers = count(store, admin, SNAPSHOT_TABLE).await?;
    store.backend().inject_fault(Some(Fault::FailAtWrite(1)));
    let failed = w.a.take_snapshot(admin).await;
    store.backend().inject_fault(None);
    ensure!(failed.is_err(), "the write failed: {failed:?}");
    ensure_eq!(
        w.a.snapshots(admin).await.at("list")?.len(),
        2,
        "a failed snapshot is not listed"
    );
    ensure_eq!(
        count(store, admin, SNAPSHOT_TABLE).await?,
        headers + 1,
        "the partial header is left"
    );
    w.at(much_later + chrono::TimeDelta::minutes(30));
    w.a.take_due_snapshots(admin, much_later + chrono::TimeDelta::minutes(30))
        .await
        .at("tick")?;
    ensure_eq!(
        count(store, admin, SNAPSHOT_TABLE).await?,
        headers + 1,
        "not swept within the hour"
    );
    let sweep = much_later + chrono::TimeDelta::minutes(61);
    w.at(sweep);
    w.a.take_due_snapshots(admin, sweep).await.at("tick")?;
    ensure_eq!(
        count(store, admin, SNAPSHOT_TABLE).await?,
        headers,
        "the partial snapshot is swept"
    );
    ensure_eq!(
        count(store, admin, SNAPSHOT_DEAL_TABLE).await?,
        2,
        "with its rows (the two complete snapshots hold one deal each)"
    );
    Ok(())
}

/// Bad input is a typed error naming the part: report JSON (missing or malformed
/// snapshot ids, SQL in an id, a bad period, unknown members); unknown, swapped or
/// deleted snapshots; an unknown pipeline; inverted thresholds; a page limit out of range;
/// taking a snapshot with an open deal in a currency without a rate (naming the currency
/// and the date, nothing written) or without a base currency.
pub async fn bad_input(store: &Store) -> CheckResult {
    let w = world(store).await?;
    let admin = w.admin();
    let id = "0190b6c8-0000-7000-8000-000000000000";
    for (json, field) in [
        (
            r#"{"format":1,"report":"pipeline_waterfall","later":"x"}"#.to_owned(),
            "earlier",
        ),
        (
            format!(
                r#"{{"format":1,"report":"pipeline_waterfall","earlier":"{id}","later":"1' OR 1=1--"}}"#
            ),
            "later",
        ),
        (
            format!(
                r#"{{"format":1,"report":"pipeline_waterfall","earlier":"{id}","later":"{id}","period":{{"from":"2026-05-01","to":"2026-04-01"}}}}"#
            ),
            "period",
        ),
        (
            format!(
                r#"{{"format":1,"report":"forecast_accuracy","snapshot":"{id}","period":{{"from":"2026-05-01"}}}}"#
            ),
            "period.to",
        ),
        (
            format!(
                r#"{{"format":1,"report":"forecast_accuracy","snapshot":"{id}","period":{{"from":"2026-05-01","to":"2026-05-02"}},"group_by":"owner"}}"#
            ),
            "group_by",
        ),
    ] {
        expect_validation(Report::from_json(&json), field, &json)?;
    }
    w.at(local(2026, 2, 1, 12));
    make(&w, spec("rep", Some(eur("5")), Some(date(2026, 4, 1)), 50)).await?;
    let e = w.a.take_snapshot(admin).await.at("E")?;
    w.at(local(2026, 2, 2, 12));
    let l = w.a.take_snapshot(admin).await.at("L")?;
    let unknown = SnapshotId::new();
    let wf = |earlier, later| Waterfall {
        earlier,
        later,
        pipeline: None,
        period: None,
    };
    let r = w.a.pipeline_waterfall(admin, &wf(unknown, unknown)).await;
    let reasons = validation_reasons(&r).ok_or_else(|| Failure::new(format!("{r:?}")))?;
    ensure_eq!(
        reasons.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        ["earlier", "later"],
        "both unknown snapshots named"
    );
    expect_validation(
        w.a.pipeline_waterfall(admin, &wf(l.id, e.id)).await,
        "later",
        "swapped snapshots",
    )?;
    expect_validation(
        w.a.pipeline_waterfall(
            admin,
            &Waterfall {
                pipeline: Some(PipelineId::new()),
                ..wf(e.id, l.id)
            },
        )
        .await,
        "pipeline",
        "unknown pipeline",
    )?;
    let acc = ForecastAccuracy {
        snapshot: e.id,
        period: q2(),
        pipeline: None,
        by_owner: false,
        rate_date: None,
        best_case_at: 90,
        commit_at: 50,
    };
    expect_validation(
        w.a.forecast_accuracy(admin, &acc).await,
        "commit_at",
        "inverted thresholds",
    )?;
    expect_validation(
        w.a.forecast_accuracy(
            admin,
            &ForecastAccuracy {
                snapshot: unknown,
                best_case_at: 50,
                commit_at: 90,
                ..acc.clone()
            },
        )
        .await,
        "snapshot",
        "unknown snapshot",
    )?;
    for limit in [0, 1001] {
        expect_validation(
            w.a.snapshot_rows(admin, e.id, None, limit).await,
            "limit",
            "limit out of range",
        )?;
    }
    expect_not_found(
        w.a.snapshot_rows(admin, unknown, None, 10).await,
        "rows of an unknown snapshot",
    )?;
    // An open deal in GBP, which has no rate: the snapshot is refused before anything is
    // written.
    make(
        &w,
        spec(
            "rep",
            Some(Money::parse("7", "GBP").expect("GBP")),
            None,
            50,
        ),
    )
    .await?;
    let before = (
        count(store, admin, SNAPSHOT_TABLE).await?,
        count(store, admin, SNAPSHOT_DEAL_TABLE).await?,
    );
    w.at(local(2026, 2, 3, 12));
    let r = w.a.take_snapshot(admin).await;
    let reasons = validation_reasons(&r).ok_or_else(|| Failure::new(format!("{r:?}")))?;
    ensure!(
        reasons
            .iter()
            .any(|(f, why)| f == "rate_date" && why.contains("GBP") && why.contains("2026-02-03")),
        "names GBP and the date: {reasons:?}"
    );
    ensure_eq!(
        (
            count(store, admin, SNAPSHOT_TABLE).await?,
            count(store, admin, SNAPSHOT_DEAL_TABLE).await?,
        ),
        before,
        "nothing written"
    );
    // A tenant without a base currency.
    let bare = crate::pipeline_deals::setup(store).await?;
    expect_validation(
        w.a.take_snapshot(&bare.f.admin).await,
        "base_currency",
        "no base currency",
    )
}

/// More deals than one chunk ([`crmkit_analytics::snapshot::SNAPSHOT_CHUNK`]): a snapshot
/// of 1,030 open deals is written in two changesets and holds every deal once; read back
/// in pages across the chunk edge; the waterfall (read page by page on both sides) equals
/// the oracle for the Admin and a Rep.
pub async fn more_deals_than_a_chunk(store: &Store) -> CheckResult {
    let w = world(store).await?;
    w.at(local(2026, 1, 10, 9));
    let n = crmkit_analytics::snapshot::SNAPSHOT_CHUNK + 30;
    let mut deals = vec![];
    for i in 0..n {
        let owner = ["rep", "rep2", "rep_y", "admin"][i % 4];
        let amount = Money::new(
            Decimal::new(i as i64 + 1, 0),
            Currency::parse(["EUR", "USD"][i % 2]).expect("currency"),
        )
        .expect("money");
        deals.push(
            make(
                &w,
                spec(
                    owner,
                    Some(amount),
                    Some(date(2026, 4, 1) + chrono::Days::new(i as u64 % 90)),
                    (i % 101) as u8,
                ),
            )
            .await?,
        );
    }
    w.at(local(2026, 2, 1, 12));
    let e = w.a.take_snapshot(w.admin()).await.at("E")?;
    ensure_eq!(e.deal_count, n as u64, "every deal");
    ensure_eq!(
        all_rows(&w, e.id).await?,
        expected_rows(&w, e.rate_date).await?,
        "the rows across the chunk edge"
    );
    w.at(local(2026, 2, 10, 9));
    for (i, deal) in deals.iter().enumerate().filter(|(i, _)| i % 97 == 0) {
        match i % 3 {
            0 => {
                win(&w, deal).await?;
            }
            1 => {
                patch(&w, deal, DealPatch::default().amount(None)).await?;
            }
            _ => delete(&w, deal).await?,
        }
    }
    w.at(local(2026, 3, 1, 12));
    let l = w.a.take_snapshot(w.admin()).await.at("L")?;
    waterfalls_equal_oracle(&w, &e, &l, &["admin", "rep"], &[q2()]).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Property
// ---------------------------------------------------------------------------------------

/// One random deal: owner, team, amount (currency, cents), close date (days from
/// 2026-03-01), probability, in the other pipeline, what happens to it between the
/// snapshots (0 nothing, 1 amount, 2 close date, 3 pipeline, 4 won, 5 lost, 6 deleted, 7
/// reassigned, 8 amount cleared) and the value it uses.
type RandomDeal = (
    usize,
    usize,
    Option<(usize, i64)>,
    Option<u64>,
    u8,
    bool,
    u8,
    i64,
);

/// A random history: deals before the earlier snapshot, deals created between, and the
/// filter (pipeline: 0 none, 1 default, 2 other; close period offset and length).
type History = (Vec<RandomDeal>, Vec<RandomDeal>, u8, Option<(u64, u64)>);

async fn random_case(store: &Store, (before, between, pf, per): History) -> CheckResult {
    let w = world(store).await?;
    let owners = ["admin", "rep", "rep2", "rep_y"];
    let teams = [None, Some("x"), Some("y")];
    let start = date(2026, 3, 1);
    let to_spec = |x: &RandomDeal| Spec {
        owner: owners[x.0 % 4],
        team: teams[x.1 % 3],
        amount: x.2.map(|(c, cents)| {
            Money::new(
                Decimal::new(cents, 2),
                Currency::parse(["EUR", "USD"][c % 2]).expect("currency"),
            )
            .expect("money")
        }),
        close: x.3.map(|d| start + chrono::Days::new(d)),
        probability: x.4,
        other: x.5,
    };
    w.at(local(2026, 1, 10, 9));
    let mut made = vec![];
    for x in &before {
        made.push((make(&w, to_spec(x)).await?, x));
    }
    w.at(local(2026, 2, 1, 12));
    let e = w.a.take_snapshot(w.admin()).await.at("E")?;
    w.at(local(2026, 2, 10, 9));
    for (deal, x) in &made {
        let v = x.7;
        match x.6 {
            1 => {
                let m = deal.amount.map_or(eur("1"), |m| {
                    Money::new(Decimal::new(v, 2), m.currency()).expect("money")
                });
                patch(&w, deal, DealPatch::default().amount(Some(m))).await?;
            }
            2 => {
                let d = start + chrono::Days::new(v.unsigned_abs() % 200);
                patch(&w, deal, DealPatch::default().expected_close(Some(d))).await?;
            }
            3 => {
                let to = if deal.pipeline == w.other.id {
                    w.d.default.id
                } else {
                    w.other.id
                };
                move_pipeline(&w, deal, to).await?;
            }
            4 => {
                win(&w, deal).await?;
            }
            5 => {
                lose(&w, deal).await?;
            }
            6 => delete(&w, deal).await?,
            7 => {
                let owner = w.ctx(owners[v.unsigned_abs() as usize % 4]).actor().user;
                patch(&w, deal, DealPatch::default().owner(owner).team(None)).await?;
            }
            8 => {
                patch(&w, deal, DealPatch::default().amount(None)).await?;
            }
            _ => {}
        }
    }
    w.at(local(2026, 2, 20, 9));
    for x in &between {
        make(&w, to_spec(x)).await?;
    }
    w.at(local(2026, 3, 1, 12));
    let l = w.a.take_snapshot(w.admin()).await.at("L")?;
    let e_rows = all_rows(&w, e.id).await?;
    let l_rows = all_rows(&w, l.id).await?;
    let q = Waterfall {
        earlier: e.id,
        later: l.id,
        pipeline: match pf % 3 {
            1 => Some(w.d.default.id),
            2 => Some(w.other.id),
            _ => None,
        },
        period: per.map(|(off, len)| {
            let from = start + chrono::Days::new(off);
            period(from, from + chrono::Days::new(len))
        }),
    };
    for who in ["admin", "rep"] {
        let ctx = w.ctx(who);
        let now = listed(&w, ctx).await?;
        let got = w.a.pipeline_waterfall(ctx, &q).await.at("waterfall")?;
        ensure_eq!(
            got,
            oracle_waterfall(ctx, (&e, &e_rows), (&l, &l_rows), &now, &q),
            "{who}: waterfall {q:?}"
        );
        reconciles(&got, who)?;
    }
    Ok(())
}

/// Property: for random deal histories (owners, teams, EUR/USD amounts or none, close
/// dates or none, probabilities, both pipelines; between two snapshots amounts, close
/// dates, pipelines and owners change, deals are won, lost, deleted and created) and a
/// random filter, the waterfall equals the brute-force oracle and reconciles, for the
/// Admin and for a Rep (proptest, 8 cases).
pub fn random_histories<F, Fut>(factory: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = crmkit_core::Result<Store>>,
{
    use proptest::prelude::*;
    let deal = || {
        (
            0usize..4,
            0usize..3,
            proptest::option::weighted(0.85, (0usize..2, 1i64..10_000_000)),
            proptest::option::weighted(0.85, 0u64..200),
            0u8..=100,
            prop_oneof![3 => Just(false), 1 => Just(true)],
            0u8..9,
            1i64..10_000_000,
        )
    };
    let history = (
        proptest::collection::vec(deal(), 0..10),
        proptest::collection::vec(deal(), 0..4),
        0u8..3,
        proptest::option::of((0u64..120, 0u64..90)),
    );
    crate::support::run_property(
        "random deal histories",
        factory,
        history,
        (8, 20),
        |s, h| Box::pin(async move { random_case(s, h).await }),
    )
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name.
    names: analytics_snapshots_check_names,
    checks: [
        snapshot_rights_and_content,
        waterfall_equals_oracle,
        waterfall_edges,
        forecast_accuracy_equals_oracle,
        schedule,
        bad_input,
        more_deals_than_a_chunk,
    ],
}
