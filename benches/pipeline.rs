//! Sales pipeline benchmarks: crmkit next to a raw baseline doing the same work on the same
//! schema (common/raw.rs), and their ratio.
//!
//! `cargo bench --bench pipeline`. Sizes (environment variables):
//! - CRMKIT_BENCH_MOVES, default 100 000 deals moved one stage on, one command (one
//!   commit) each; the baseline moves as many other deals of the same database, one
//!   transaction each (once a side).
//! - CRMKIT_BENCH_DEALS, default 1 000 000 deals summarised on SQLite (5 runs a side).
//! - CRMKIT_BENCH_MEMORY_DEALS, default 1 000 000 deals summarised on the in-memory backend.

mod common;

use std::sync::{LazyLock, Mutex};

use common::{Line, TempDb, block_on, raw, size, timed, timed_async};
use crmkit::core::Changeset;
use crmkit::pipeline::deal::{Deals, NewDeal, Pipeline, StageKind};
use crmkit::{Crm, Ctx, Money};
use divan::Bencher;
use rusqlite::{Connection, params};

fn moves_n() -> usize {
    size("CRMKIT_BENCH_MOVES", 100_000, 200)
}

fn deals_n() -> usize {
    size("CRMKIT_BENCH_DEALS", 1_000_000, 2_000)
}

fn memory_deals_n() -> usize {
    size("CRMKIT_BENCH_MEMORY_DEALS", 1_000_000, 2_000)
}

async fn setup(crm: &Crm) -> (Ctx, Pipeline) {
    let (ctx, _) = common::tenant(crm, 1).await;
    let pipeline = crm.pipelines().ensure_default(&ctx).await.unwrap();
    (ctx, pipeline)
}

/// Creates `n` open deals spread over the pipeline's open stages, 1000 per commit.
async fn seed(deals: &Deals, ctx: &Ctx, pipeline: &Pipeline, n: usize) {
    let open: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Open)
        .collect();
    let currencies = ["EUR", "USD"];
    let mut done = 0;
    while done < n {
        let mut cs = Changeset::new(ctx);
        for i in done..(done + 1000).min(n) {
            let mut d = NewDeal::new(format!("Deal {i}"), pipeline.id);
            d.stage = Some(open[i % open.len()].id);
            d.amount = Some(
                Money::parse(
                    &format!("{}.{:02}", 1000 + (i * 7919) % 90_000, i % 100),
                    currencies[i % 2],
                )
                .unwrap(),
            );
            deals.stage_create(ctx, &d, &[], &mut cs).await.unwrap();
        }
        deals.store().commit(cs).await.unwrap();
        done = (done + 1000).min(n);
    }
}

/// 2 x `moves_n()` deals in the first stage: the first half moved by crmkit, the second
/// by the raw baseline.
struct Moves {
    db: TempDb,
    crm: Crm,
    ctx: Ctx,
    pipeline: Pipeline,
    ids: Vec<String>,
}

static MOVES: LazyLock<Mutex<Moves>> = LazyLock::new(|| {
    let n = moves_n();
    let db = TempDb::new("moves");
    let crm = db.open();
    let (ctx, pipeline) = block_on(setup(&crm));
    let mut first = pipeline.clone();
    first.stages.truncate(1);
    block_on(seed(&crm.deals(), &ctx, &first, 2 * n));
    let conn = db.connect();
    let ids = conn
        .prepare("SELECT id FROM pipeline_deals WHERE tenant_id = ? AND stage_id = ? ORDER BY id")
        .unwrap()
        .query_map(
            params![ctx.tenant().to_string(), pipeline.stages[0].id.to_string()],
            |r| r.get(0),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    Mutex::new(Moves {
        db,
        crm,
        ctx,
        pipeline,
        ids,
    })
});

mod move_deals {
    use super::*;

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let m = MOVES.lock().unwrap();
        let n = moves_n();
        let target = m.pipeline.stages[2].id;
        let deals = m.crm.deals();
        b.bench_local(|| {
            timed_async("moves/crmkit", 1, async {
                for id in &m.ids[..n] {
                    let id = crmkit::DealId::parse("id", id).unwrap();
                    deals
                        .move_to_stage(&m.ctx, id, 1, target, None)
                        .await
                        .unwrap();
                }
            })
        });
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn raw(b: Bencher) {
        let m = MOVES.lock().unwrap();
        let n = moves_n();
        let conn: Connection = m.db.connect();
        let tenant = m.ctx.tenant().to_string();
        let target = m.pipeline.stages[2].id;
        // What one crmkit move writes, so that the baseline writes the same rows (one
        // move of a deal of crmkit's half, untimed, if crmkit's side did not run).
        let moved = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT COUNT(*) FROM crm_audit WHERE tenant_id = ? AND record_id = ?",
                params![tenant, m.ids[0]],
                |r| r.get(0),
            )
            .unwrap()
        };
        if moved(&conn) < 2 {
            let id = crmkit::DealId::parse("id", &m.ids[0]).unwrap();
            block_on(m.crm.deals().move_to_stage(&m.ctx, id, 1, target, None)).unwrap();
        }
        let (probability, kind): (i64, String) = conn
            .query_row(
                "SELECT probability, kind FROM pipeline_stages WHERE tenant_id = ? AND id = ?",
                params![tenant, target.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let to = raw::MoveTo {
            stage: target.to_string(),
            probability,
            kind,
            audit_rows: moved(&conn) - 1,
        };
        let actor = m.ctx.actor().user.to_string();
        b.bench_local(|| {
            timed("moves/raw", 1, || {
                for id in &m.ids[n..] {
                    raw::move_deal(&conn, &tenant, &actor, id, &to);
                }
            })
        });
    }
}

/// `deals_n()` open deals on SQLite.
struct Summary {
    db: TempDb,
    crm: Crm,
    ctx: Ctx,
    pipeline: Pipeline,
}

static SUMMARY: LazyLock<Summary> = LazyLock::new(|| {
    let db = TempDb::new("summary");
    let crm = db.open();
    let (ctx, pipeline) = block_on(setup(&crm));
    block_on(seed(&crm.deals(), &ctx, &pipeline, deals_n()));
    Summary {
        db,
        crm,
        ctx,
        pipeline,
    }
});

mod summary {
    use super::*;

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let s = &*SUMMARY;
        let deals = s.crm.deals();
        b.bench_local(|| {
            timed_async("summary/crmkit", 1, async {
                divan::black_box(deals.summary(&s.ctx, s.pipeline.id).await.unwrap())
            })
        });
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn raw(b: Bencher) {
        let s = &*SUMMARY;
        let conn = s.db.connect();
        let (tenant, pipeline) = (s.ctx.tenant().to_string(), s.pipeline.id.to_string());
        b.bench_local(|| {
            timed("summary/raw", 1, || {
                divan::black_box(raw::pipeline_summary(&conn, &tenant, &pipeline))
            })
        });
    }
}

mod summary_memory {
    use super::*;

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let crm = Crm::in_memory().unwrap();
        let (ctx, pipeline) = block_on(setup(&crm));
        let deals = crm.deals();
        block_on(seed(&deals, &ctx, &pipeline, memory_deals_n()));
        b.bench_local(|| {
            timed_async("memsummary/crmkit", 1, async {
                divan::black_box(deals.summary(&ctx, pipeline.id).await.unwrap())
            })
        });
    }
}

fn main() {
    common::main("pipeline", || {
        vec![
            Line::new(
                format!(
                    "move {} deals one stage on (one commit each), SQLite",
                    moves_n()
                ),
                "moves/crmkit",
                "moves/raw",
                "raw, 1 per tx",
                "report",
            ),
            Line::new(
                format!("weighted pipeline summary over {} deals, SQLite", deals_n()),
                "summary/crmkit",
                "summary/raw",
                "raw, same aggregate",
                "<= 1.5",
            ),
            Line::new(
                format!(
                    "weighted pipeline summary over {} deals, in memory",
                    memory_deals_n()
                ),
                "memsummary/crmkit",
                "-",
                "-",
                "report",
            ),
        ]
    });
}
