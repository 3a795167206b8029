//! Analytics benchmarks: reports next to hand-written SQL on the same schema, the
//! in-memory backend's time, and point-read latency while dashboards render.
//!
//! `cargo bench --bench analytics`. Sizes (environment variables):
//! - CRMKIT_BENCH_ANALYTICS_DEALS, default 1 000 000 deals on a SQLite file (W3): 80%
//!   created open over 20 owners with close dates across 2026 (some without), 20% won on
//!   a day of 2026, and one in ten of the open ones then lost. Forecast by month and win
//!   rate by owner over 2026, crmkit against the same grouped SQL written by hand.
//! - CRMKIT_BENCH_ANALYTICS_MEMORY_DEALS, default 1 000 000: the same deals in memory
//!   (target: each report in <= 200 ms).
//! - CRMKIT_BENCH_MIXED_DEALS, default 200 000 deals, and CRMKIT_BENCH_MIXED_READS,
//!   default 20 000 point reads per reader: the mixed load. On the shared 2-worker
//!   runtime, 8 tasks: 3 readers getting contacts by id (each read timed), 2 writers
//!   updating contacts, a lister paging contacts, and 2 tasks rendering a dashboard
//!   (forecast by month, win rate by owner, pipeline by stage) again and again. The
//!   point reads' p50 and p99 with the dashboards running, next to the same load without
//!   them. Target: p99 of get-by-id under 2 ms while dashboards render.
//! - CRMKIT_BENCH_HISTORY_DEALS, default 250 000 deals created in Q1 2026, each with up to
//!   three more stage-history rows (about 750 000 rows): the stage funnel and time in
//!   stage, next to hand-written SQL (a JOIN with MAX per deal; a LEAD window).
//! - CRMKIT_BENCH_SNAPSHOT_DEALS, default 100 000 open deals: a snapshot, then changes
//!   (moves, re-pricing, wins, 5% new deals), a second snapshot and the waterfall between
//!   the two; the same at half the size, so the waterfall's growth shows (linear, not
//!   quadratic).

mod common;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, TimeZone, Utc};
use common::{Line, TempDb, block_on, raw, record, rt, size, timed, timed_async};
use crmkit::analytics::{
    Bucket, ChartKind, Dashboard, Dim, Forecast, Period, PipelineByStage, Report, StageFunnel,
    TimeInStage, Waterfall, Widget, WinRate,
};
use crmkit::contacts::{ContactPatch, NewContact};
use crmkit::core::Changeset;
use crmkit::pipeline::deal::{DealPatch, LostReasonInput, NewDeal, Pipeline, StageKind};
use crmkit::{ContactId, Crm, Ctx, Currency, Decimal, ManualClock, Money, Query, UserId};
use divan::Bencher;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params};

fn deals_n() -> usize {
    size("CRMKIT_BENCH_ANALYTICS_DEALS", 1_000_000, 2_000)
}

fn memory_deals_n() -> usize {
    size("CRMKIT_BENCH_ANALYTICS_MEMORY_DEALS", 1_000_000, 2_000)
}

fn mixed_deals_n() -> usize {
    size("CRMKIT_BENCH_MIXED_DEALS", 200_000, 1_000)
}

fn mixed_reads_n() -> usize {
    size("CRMKIT_BENCH_MIXED_READS", 20_000, 200)
}

const OWNERS: usize = 20;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn year() -> Period {
    Period::new(day(2026, 1, 1), day(2026, 12, 31)).unwrap()
}

fn forecast() -> Forecast {
    Forecast {
        period: year(),
        bucket: Bucket::Month,
        pipeline: None,
        rate_date: None,
        best_case_at: 50,
        commit_at: 90,
    }
}

fn win_rate() -> WinRate {
    WinRate {
        period: year(),
        by: Some(Dim::Owner),
        pipeline: None,
        rate_date: None,
    }
}

/// A tenant with `OWNERS` reps, a base currency (EUR) and a USD rate, reporting in UTC;
/// the admin's context on a manual clock, the owners and the default pipeline.
async fn setup(crm: &Crm) -> (Ctx, std::sync::Arc<ManualClock>, Vec<UserId>, Pipeline) {
    let (ctx, users) = common::tenant(crm, OWNERS + 1).await;
    let clock = std::sync::Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap(),
    ));
    let ctx = ctx.with_clock(clock.clone());
    let cur = crm.currencies();
    cur.set_base_currency(&ctx, Currency::parse("EUR").unwrap())
        .await
        .unwrap();
    cur.set_rate(
        &ctx,
        Currency::parse("USD").unwrap(),
        day(2025, 1, 1),
        Decimal::new(92, 2),
    )
    .await
    .unwrap();
    let pipeline = crm.pipelines().ensure_default(&ctx).await.unwrap();
    (ctx, clock, users[1..].to_vec(), pipeline)
}

/// `n` deals as the module docs say, 1000 per commit, the clock on the batch's day of
/// 2026 (a won deal's `won_at`); then one in ten open deals lost, one command each.
async fn seed(crm: &Crm, n: usize) -> (Ctx, Pipeline) {
    let (ctx, clock, owners, pipeline) = setup(crm).await;
    let open: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .collect();
    let won = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Won)
        .unwrap();
    let lost = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Lost)
        .unwrap();
    let deals = crm.deals();
    let jan1 = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
    let mut done = 0;
    let mut to_lose = vec![];
    while done < n {
        clock.set(jan1 + chrono::Duration::days(((done / 1000) % 365) as i64));
        let mut cs = Changeset::new(&ctx);
        for i in done..(done + 1000).min(n) {
            let mut d = NewDeal::new(format!("Deal {i}"), pipeline.id);
            d.stage = Some(if i % 5 == 0 {
                won.id
            } else {
                open[i % open.len()].id
            });
            d.owner = Some(owners[i % owners.len()]);
            d.amount = Some(
                Money::parse(
                    &format!("{}.{:02}", 1000 + (i * 7919) % 90_000, i % 100),
                    ["EUR", "USD"][i % 2],
                )
                .unwrap(),
            );
            if i % 13 != 0 {
                d.expected_close = day(2026, 1, 1).checked_add_days(Days::new((i % 365) as u64));
            }
            let staged = deals.stage_create(&ctx, &d, &[], &mut cs).await.unwrap();
            if i % 10 == 3 {
                to_lose.push(staged.id);
            }
        }
        deals.store().commit(cs).await.unwrap();
        done = (done + 1000).min(n);
    }
    for (k, id) in to_lose.into_iter().enumerate() {
        clock.set(jan1 + chrono::Duration::days((k % 365) as i64));
        deals
            .move_to_stage(
                &ctx,
                id,
                1,
                lost.id,
                Some(LostReasonInput::Text("price".into())),
            )
            .await
            .unwrap();
    }
    clock.set(Utc.with_ymd_and_hms(2027, 1, 10, 9, 0, 0).unwrap());
    (ctx, pipeline)
}

/// The microsecond instants of the local (UTC) month starts of 2026 and the next one.
fn month_starts() -> Vec<i64> {
    (1..=13)
        .map(|m| {
            let (y, m) = if m == 13 { (2027, 1) } else { (2026, m) };
            Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                .unwrap()
                .timestamp_micros()
        })
        .collect()
}

/// The forecast by month as one hand-written statement per part: the open deals by
/// close month, probability band and currency, and the won deals by the month of
/// `won_at` and currency.
fn raw_forecast(conn: &Connection, tenant: &str) -> usize {
    let mut n = 0;
    let mut open = conn
        .prepare_cached(
            "SELECT substr(expected_close, 1, 7), \
             CASE WHEN probability < 50 THEN 0 WHEN probability < 90 THEN 1 ELSE 2 END, \
             currency, COUNT(*), SUM(amount), SUM(weighted_x100) FROM pipeline_deals \
             WHERE tenant_id = ? AND deleted_at IS NULL AND status = 'open' \
             AND (expected_close BETWEEN '2026-01-01' AND '2026-12-31' OR expected_close IS NULL) \
             GROUP BY 1, 2, 3",
        )
        .unwrap();
    let rows = open
        .query_map(params![tenant], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .unwrap();
    n += rows.map(Result::unwrap).count();
    let m = month_starts();
    let bucket: String = (1..12)
        .map(|i| format!("WHEN won_at < {} THEN {} ", m[i], i - 1))
        .collect();
    let mut won = conn
        .prepare_cached(&format!(
            "SELECT CASE {bucket}ELSE 11 END, currency, COUNT(*), SUM(amount), \
             SUM(weighted_x100) FROM pipeline_deals WHERE tenant_id = ? AND deleted_at IS NULL \
             AND status = 'won' AND won_at >= ? AND won_at < ? GROUP BY 1, 2"
        ))
        .unwrap();
    let rows = won
        .query_map(params![tenant, m[0], m[12]], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })
        .unwrap();
    n += rows.map(Result::unwrap).count();
    n
}

/// The win rate by owner as one hand-written statement.
fn raw_win_rate(conn: &Connection, tenant: &str) -> usize {
    let m = month_starts();
    let mut st = conn
        .prepare_cached(
            "SELECT owner_id, status, currency, COUNT(*), SUM(amount) FROM pipeline_deals \
             WHERE tenant_id = ? AND deleted_at IS NULL AND ( \
             (status = 'won' AND won_at >= ?2 AND won_at < ?3) OR \
             (status = 'lost' AND lost_at >= ?2 AND lost_at < ?3)) GROUP BY 1, 2, 3",
        )
        .unwrap();
    st.query_map(params![tenant, m[0], m[12]], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .count()
}

struct Deals {
    db: TempDb,
    crm: Crm,
    ctx: Ctx,
}

static DEALS: LazyLock<Deals> = LazyLock::new(|| {
    let db = TempDb::new("analytics");
    let crm = db.open();
    let (ctx, _) = block_on(seed(&crm, deals_n()));
    Deals { db, crm, ctx }
});

/// W3 on SQLite: forecast by month, crmkit next to the hand-written statements.
mod forecast_by_month {
    use super::*;

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let s = &*DEALS;
        let a = s.crm.analytics();
        b.bench_local(|| {
            timed_async("forecast/crmkit", 1, async {
                divan::black_box(a.forecast(&s.ctx, &forecast()).await.unwrap())
            })
        });
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn raw(b: Bencher) {
        let s = &*DEALS;
        let conn = s.db.connect();
        let tenant = s.ctx.tenant().to_string();
        b.bench_local(|| {
            timed("forecast/raw", 1, || {
                divan::black_box(raw_forecast(&conn, &tenant))
            })
        });
    }
}

/// W3 on SQLite: win rate by owner.
mod win_rate_by_owner {
    use super::*;

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let s = &*DEALS;
        let a = s.crm.analytics();
        b.bench_local(|| {
            timed_async("winrate/crmkit", 1, async {
                divan::black_box(a.win_rate(&s.ctx, &win_rate()).await.unwrap())
            })
        });
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn raw(b: Bencher) {
        let s = &*DEALS;
        let conn = s.db.connect();
        let tenant = s.ctx.tenant().to_string();
        b.bench_local(|| {
            timed("winrate/raw", 1, || {
                divan::black_box(raw_win_rate(&conn, &tenant))
            })
        });
    }
}

/// W3 in memory: both reports over the same deals.
mod in_memory {
    use super::*;

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let crm = Crm::in_memory().unwrap();
        let (ctx, _) = block_on(seed(&crm, memory_deals_n()));
        let a = crm.analytics();
        b.bench_local(|| {
            timed_async("memforecast/crmkit", 1, async {
                divan::black_box(a.forecast(&ctx, &forecast()).await.unwrap())
            });
            timed_async("memwinrate/crmkit", 1, async {
                divan::black_box(a.win_rate(&ctx, &win_rate()).await.unwrap())
            });
        });
    }
}

/// The mixed load (module docs); `reports` switches the dashboard tasks on. The point
/// reads' latencies, sorted.
async fn mixed(crm: &Crm, ctx: &Ctx, ids: &[ContactId], reports: bool) -> Vec<Duration> {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut background = vec![];
    for w in 0..2 {
        let (crm, ctx, ids, stop) = (crm.clone(), ctx.clone(), ids.to_vec(), stop.clone());
        background.push(tokio::spawn(async move {
            let contacts = crm.contacts();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let id = ids[(i * 7919) % ids.len()];
                let c = contacts.get(&ctx, id).await.unwrap();
                let patch = ContactPatch::default().job_title(Some(format!("T{i}")));
                // A concurrent writer may have moved the version on: retry next time.
                let _ = contacts.update(&ctx, id, c.version, patch).await;
                i += 2;
            }
        }));
    }
    {
        let (crm, ctx, stop) = (crm.clone(), ctx.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            let contacts = crm.contacts();
            while !stop.load(Ordering::Relaxed) {
                divan::black_box(contacts.list(&ctx, &Query::new().limit(50)).await.unwrap());
            }
        }));
    }
    if reports {
        let dash = Dashboard::new("Monday")
            .widget(Widget::new(
                "Forecast",
                Report::Forecast(forecast()),
                ChartKind::StackedBar,
            ))
            .widget(Widget::new(
                "Win rate",
                Report::WinRate(win_rate()),
                ChartKind::Bar,
            ))
            .widget(Widget::new(
                "Pipeline",
                Report::PipelineByStage(PipelineByStage {
                    pipeline: None,
                    by: None,
                    rate_date: None,
                }),
                ChartKind::Bar,
            ));
        for _ in 0..2 {
            let (crm, ctx, stop, dash) = (crm.clone(), ctx.clone(), stop.clone(), dash.clone());
            background.push(tokio::spawn(async move {
                let a = crm.analytics();
                while !stop.load(Ordering::Relaxed) {
                    divan::black_box(a.render_dashboard(&ctx, &dash).await.unwrap());
                }
            }));
        }
    }
    let mut readers = vec![];
    for r in 0..3 {
        let (crm, ctx, ids) = (crm.clone(), ctx.clone(), ids.to_vec());
        readers.push(tokio::spawn(async move {
            let contacts = crm.contacts();
            let mut lat = Vec::with_capacity(mixed_reads_n());
            for i in 0..mixed_reads_n() {
                let id = ids[(i * 104_729 + r) % ids.len()];
                let t = Instant::now();
                divan::black_box(contacts.get(&ctx, id).await.unwrap());
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = vec![];
    for r in readers {
        all.extend(r.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for b in background {
        b.await.unwrap();
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[((sorted.len() * p).div_ceil(100)).clamp(1, sorted.len()) - 1]
}

struct Mixed {
    _db: TempDb,
    crm: Crm,
    ctx: Ctx,
    ids: Vec<ContactId>,
}

static MIXED: LazyLock<Mixed> = LazyLock::new(|| {
    let db = TempDb::new("mixed");
    let crm = db.open();
    let (ctx, _) = block_on(seed(&crm, mixed_deals_n()));
    let contacts = crm.contacts();
    let ids = block_on(async {
        let mut ids = vec![];
        for i in 0..2000 {
            let c = NewContact::named(format!("Ada{i}"), "Lovelace");
            ids.push(contacts.create(&ctx, c).await.unwrap().id);
        }
        ids
    });
    Mixed {
        _db: db,
        crm,
        ctx,
        ids,
    }
});

/// Point-read latency under the mixed load, with and without dashboards rendering.
mod mixed_load {
    use super::*;

    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn with_dashboards(b: Bencher) {
        let m = &*MIXED;
        b.bench_local(|| {
            let lat = rt().block_on(mixed(&m.crm, &m.ctx, &m.ids, true));
            record("mixed-reports/p50", percentile(&lat, 50));
            record("mixed-reports/p99", percentile(&lat, 99));
            eprintln!(
                "mixed load with dashboards: get-by-id p50 {:?}, p99 {:?}, max {:?}",
                percentile(&lat, 50),
                percentile(&lat, 99),
                lat.last()
            );
        });
    }

    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn without_reports(b: Bencher) {
        let m = &*MIXED;
        b.bench_local(|| {
            let lat = rt().block_on(mixed(&m.crm, &m.ctx, &m.ids, false));
            record("mixed-plain/p50", percentile(&lat, 50));
            record("mixed-plain/p99", percentile(&lat, 99));
            eprintln!(
                "mixed load without reports: get-by-id p50 {:?}, p99 {:?}",
                percentile(&lat, 50),
                percentile(&lat, 99)
            );
        });
    }
}

// ---- funnel and time in stage over the stage history ------------------------------------

fn history_deals_n() -> usize {
    size("CRMKIT_BENCH_HISTORY_DEALS", 250_000, 500)
}

/// `history_deals_n()` deals created in Q1 2026 through crmkit, each then given three
/// more stage-history rows (copied from a real move's row, rows written raw: the seeding
/// is not measured): 4 rows a deal, 1M rows at the default size. One deal in four stops
/// after the second stage, one in four after the third.
struct History {
    db: TempDb,
    crm: Crm,
    ctx: Ctx,
    stages: Vec<String>,
}

static HISTORY: LazyLock<History> = LazyLock::new(|| {
    let db = TempDb::new("history");
    let crm = db.open();
    let n = history_deals_n();
    let (ctx, pipeline) = block_on(async {
        let (ctx, clock, owners, pipeline) = setup(&crm).await;
        let first = pipeline.stages[0].id;
        let deals = crm.deals();
        let jan1 = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
        let mut done = 0;
        while done < n {
            clock.set(jan1 + chrono::Duration::minutes((done / 10) as i64));
            let mut cs = Changeset::new(&ctx);
            for i in done..(done + 1000).min(n) {
                let mut d = NewDeal::new(format!("Deal {i}"), pipeline.id);
                d.stage = Some(first);
                d.owner = Some(owners[i % owners.len()]);
                d.amount = Some(Money::parse("1000", "EUR").unwrap());
                deals.stage_create(&ctx, &d, &[], &mut cs).await.unwrap();
            }
            deals.store().commit(cs).await.unwrap();
            done = (done + 1000).min(n);
        }
        // One real move, as the template of the raw history rows.
        let page = deals.list(&ctx, &Query::new().limit(1)).await.unwrap();
        let d = &page.items[0];
        deals
            .move_to_stage(&ctx, d.id, d.version, pipeline.stages[1].id, None)
            .await
            .unwrap();
        (ctx, pipeline)
    });
    let conn = db.connect();
    let tenant = ctx.tenant().to_string();
    let (names, row) = raw::template_where(
        &conn,
        "pipeline_stage_history",
        &tenant,
        Some(("seq", SqlValue::Integer(2))),
    );
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM pipeline_deals WHERE tenant_id = ? ORDER BY id")
        .unwrap()
        .query_map(params![tenant], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let stage = |k: usize| SqlValue::Text(pipeline.stages[k].id.to_string());
    // Steps 2, 3 and 4 (stages 1, 2, 3) for every deal but the template one.
    let rows: Vec<(usize, usize)> = (1..ids.len())
        .flat_map(|d| {
            (1..=3usize)
                .filter(move |s| *s <= 1 + d % 4)
                .map(move |s| (d, s))
        })
        .collect();
    raw::copy_rows(
        &conn,
        "pipeline_stage_history",
        &row,
        &names,
        rows.len(),
        |i| {
            let (d, s) = rows[i];
            let base = Utc
                .with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
                .unwrap()
                .timestamp_micros();
            let at = base
                + (d as i64 / 10) * 60_000_000
                + (s as i64) * 86_400_000_000 * (1 + (d % 7) as i64);
            vec![
                ("deal_id", SqlValue::Text(ids[d].clone())),
                ("seq", SqlValue::Integer(s as i64 + 1)),
                ("from_stage", stage(s - 1)),
                ("to_stage", stage(s)),
                ("at", SqlValue::Integer(at)),
            ]
        },
    );
    // The rows written raw are analysed, as crmkit's own `PRAGMA optimize` would once it
    // had written them (with the statistics of the 4 000-row table SQLite plans the
    // per-deal history reads on the stage index and scans every stage's rows per chunk).
    conn.execute_batch("ANALYZE").unwrap();
    let stages = pipeline.stages.iter().map(|s| s.id.to_string()).collect();
    History {
        db,
        crm,
        ctx,
        stages,
    }
});

fn q1() -> Period {
    Period::new(day(2026, 1, 1), day(2026, 3, 31)).unwrap()
}

/// The micro-second bounds of Q1 2026 in UTC (the tenant reports in UTC).
fn q1_bounds() -> (i64, i64) {
    (
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp_micros(),
        Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0)
            .unwrap()
            .timestamp_micros(),
    )
}

/// The stage funnel by hand: per deal created in the period, the furthest open stage
/// (by position) its history reached, then deals per furthest stage.
fn raw_funnel(conn: &Connection, tenant: &str) -> usize {
    let (from, to) = q1_bounds();
    conn.prepare_cached(
        "SELECT furthest, COUNT(*) FROM ( \
           SELECT h.deal_id, MAX(s.position) AS furthest \
           FROM pipeline_stage_history h \
           JOIN pipeline_deals d ON d.tenant_id = h.tenant_id AND d.id = h.deal_id \
           JOIN pipeline_stages s ON s.tenant_id = h.tenant_id AND s.id = h.to_stage \
           WHERE h.tenant_id = ?1 AND d.deleted_at IS NULL \
             AND d.created_at >= ?2 AND d.created_at < ?3 AND s.kind = 'open' \
           GROUP BY h.deal_id) GROUP BY furthest",
    )
    .unwrap()
    .query_map(params![tenant, from, to], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .count()
}

/// Time in stage by hand: every stay (a history row and the next one of its deal, by
/// `LEAD`) that ended in the period, read per stage; median and p90 by nearest rank.
fn raw_time_in_stage(conn: &Connection, tenant: &str) -> usize {
    let (from, to) = q1_bounds();
    let mut per: std::collections::HashMap<String, Vec<i64>> = Default::default();
    let mut st = conn
        .prepare_cached(
            "SELECT to_stage, next_at - at FROM ( \
               SELECT h.to_stage, h.at, LEAD(h.at) OVER (PARTITION BY h.deal_id ORDER BY h.seq) AS next_at \
               FROM pipeline_stage_history h \
               JOIN pipeline_deals d ON d.tenant_id = h.tenant_id AND d.id = h.deal_id \
               WHERE h.tenant_id = ?1 AND d.deleted_at IS NULL) \
             WHERE next_at >= ?2 AND next_at < ?3",
        )
        .unwrap();
    let rows = st
        .query_map(params![tenant, from, to], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .unwrap();
    for r in rows {
        let (stage, len) = r.unwrap();
        per.entry(stage).or_default().push(len);
    }
    let mut out = 0;
    for v in per.values_mut() {
        v.sort_unstable();
        let rank = |p: usize| v[((v.len() * p).div_ceil(100)).clamp(1, v.len()) - 1];
        out += divan::black_box(rank(50) + rank(90)) as usize % 2;
    }
    out + per.len()
}

/// The stage funnel over `history_deals_n()` deals' histories.
mod stage_funnel {
    use super::*;

    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let h = &*HISTORY;
        let a = h.crm.analytics();
        let r = StageFunnel {
            period: q1(),
            pipeline: None,
        };
        b.bench_local(|| {
            timed_async("funnel/crmkit", 1, async {
                divan::black_box(a.stage_funnel(&h.ctx, &r).await.unwrap())
            })
        });
    }

    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn raw(b: Bencher) {
        let h = &*HISTORY;
        let conn = h.db.connect();
        let tenant = h.ctx.tenant().to_string();
        assert!(!h.stages.is_empty());
        b.bench_local(|| {
            timed("funnel/raw", 1, || {
                divan::black_box(raw_funnel(&conn, &tenant))
            })
        });
    }
}

/// Time in stage over the same histories.
mod time_in_stage {
    use super::*;

    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let h = &*HISTORY;
        let a = h.crm.analytics();
        let r = TimeInStage {
            period: q1(),
            pipeline: None,
        };
        b.bench_local(|| {
            timed_async("stagetime/crmkit", 1, async {
                divan::black_box(a.time_in_stage(&h.ctx, &r).await.unwrap())
            })
        });
    }

    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn raw(b: Bencher) {
        let h = &*HISTORY;
        let conn = h.db.connect();
        let tenant = h.ctx.tenant().to_string();
        b.bench_local(|| {
            timed("stagetime/raw", 1, || {
                divan::black_box(raw_time_in_stage(&conn, &tenant))
            })
        });
    }
}

// ---- snapshots and the waterfall -------------------------------------------------------

fn snapshot_deals_n() -> usize {
    size("CRMKIT_BENCH_SNAPSHOT_DEALS", 100_000, 300)
}

/// Snapshots of `n` open deals on a fresh file: the time of the first snapshot, then,
/// after one deal in ten moved on, one in twenty re-priced, one in twenty won and
/// `n / 20` new deals, the second snapshot and the waterfall between the two.
async fn snapshots(n: usize, tag: &str) {
    let db = TempDb::new(tag);
    let crm = Crm::open(&db.url()).await.unwrap();
    let (ctx, clock, owners, pipeline) = setup(&crm).await;
    let deals = crm.deals();
    let create = |from: usize, to: usize| {
        let (ctx, deals, owners, pipeline) = (&ctx, &deals, &owners, &pipeline);
        async move {
            let mut done = from;
            while done < to {
                let mut cs = Changeset::new(ctx);
                for i in done..(done + 1000).min(to) {
                    let mut d = NewDeal::new(format!("Deal {i}"), pipeline.id);
                    d.stage = Some(pipeline.stages[i % 3].id);
                    d.owner = Some(owners[i % owners.len()]);
                    d.amount = Some(Money::parse(&format!("{}", 1000 + i % 9000), "EUR").unwrap());
                    d.expected_close =
                        day(2026, 1, 1).checked_add_days(Days::new((i % 180) as u64));
                    deals.stage_create(ctx, &d, &[], &mut cs).await.unwrap();
                }
                deals.store().commit(cs).await.unwrap();
                done = (done + 1000).min(to);
            }
        }
    };
    create(0, n).await;
    let a = crm.analytics();
    let t = Instant::now();
    let earlier = a.take_snapshot(&ctx).await.unwrap();
    record(&format!("{tag}/snapshot"), t.elapsed());
    eprintln!("{tag}: a snapshot of {n} open deals took {:?}", t.elapsed());
    clock.set(Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).unwrap());
    let won = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Won)
        .unwrap()
        .id;
    let mut q = Query::new().limit(1000);
    let mut k = 0usize;
    loop {
        let page = deals.list(&ctx, &q).await.unwrap();
        for d in &page.items {
            if k.is_multiple_of(10) && d.stage != pipeline.stages[2].id {
                let next = pipeline.stages[(k / 10) % 2 + 1].id;
                let _ = deals.move_to_stage(&ctx, d.id, d.version, next, None).await;
            } else if k % 20 == 1 {
                let amount = Money::parse("123456", "EUR").unwrap();
                let patch = DealPatch::default().amount(Some(amount));
                deals.update(&ctx, d.id, d.version, patch).await.unwrap();
            } else if k % 20 == 3 {
                deals
                    .move_to_stage(&ctx, d.id, d.version, won, None)
                    .await
                    .unwrap();
            }
            k += 1;
        }
        match page.next_cursor {
            Some(c) => q = q.after(c),
            None => break,
        }
    }
    create(n, n + n / 20).await;
    let later = a.take_snapshot(&ctx).await.unwrap();
    let w = Waterfall {
        earlier: earlier.id,
        later: later.id,
        pipeline: None,
        period: None,
    };
    let t = Instant::now();
    divan::black_box(a.pipeline_waterfall(&ctx, &w).await.unwrap());
    record(&format!("{tag}/waterfall"), t.elapsed());
    eprintln!(
        "{tag}: the waterfall between two snapshots took {:?}",
        t.elapsed()
    );
}

/// A snapshot of `snapshot_deals_n()` open deals and the waterfall between two of them,
/// and the same at half the size (the waterfall is a merge: about twice the time for
/// twice the deals).
mod snapshot_waterfall {
    use super::*;

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn full(b: Bencher) {
        b.bench_local(|| block_on(snapshots(snapshot_deals_n(), "snapfull")));
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn half(b: Bencher) {
        b.bench_local(|| block_on(snapshots(snapshot_deals_n() / 2, "snaphalf")));
    }
}

fn main() {
    common::main("analytics", || {
        vec![
            Line::new(
                format!("W3 forecast by month, {} deals, SQLite", deals_n()),
                "forecast/crmkit",
                "forecast/raw",
                "hand-written GROUP BY",
                "<= 1.5",
            ),
            Line::new(
                format!("W3 win rate by owner, {} deals, SQLite", deals_n()),
                "winrate/crmkit",
                "winrate/raw",
                "hand-written GROUP BY",
                "<= 1.5",
            ),
            Line::new(
                format!("W3 forecast by month, {} deals, memory", memory_deals_n()),
                "memforecast/crmkit",
                "memforecast/none",
                "-",
                "<= 200 ms",
            ),
            Line::new(
                format!("W3 win rate by owner, {} deals, memory", memory_deals_n()),
                "memwinrate/crmkit",
                "memwinrate/none",
                "-",
                "<= 200 ms",
            ),
            Line::new(
                format!(
                    "stage funnel, {} deals' histories (4 rows a deal at most)",
                    history_deals_n()
                ),
                "funnel/crmkit",
                "funnel/raw",
                "hand-written SQL (JOIN, MAX, GROUP BY)",
                "report",
            ),
            Line::new(
                format!("time in stage, {} deals' histories", history_deals_n()),
                "stagetime/crmkit",
                "stagetime/raw",
                "hand-written SQL (LEAD window)",
                "report",
            ),
            Line::new(
                format!(
                    "snapshot of {} open deals vs {}",
                    snapshot_deals_n(),
                    snapshot_deals_n() / 2
                ),
                "snapfull/snapshot",
                "snaphalf/snapshot",
                "the same at half the deals",
                "report (about 2: linear)",
            ),
            Line::new(
                format!(
                    "waterfall between two snapshots of {} deals vs {}",
                    snapshot_deals_n(),
                    snapshot_deals_n() / 2
                ),
                "snapfull/waterfall",
                "snaphalf/waterfall",
                "the same at half the deals",
                "report (about 2: not quadratic)",
            ),
            Line::new(
                "get-by-id p50, mixed load, dashboards rendering vs not",
                "mixed-reports/p50",
                "mixed-plain/p50",
                "the same load without reports",
                "report",
            ),
            Line::new(
                "get-by-id p99, mixed load, dashboards rendering vs not",
                "mixed-reports/p99",
                "mixed-plain/p99",
                "the same load without reports",
                "p99 < 2 ms",
            ),
        ]
    });
}
