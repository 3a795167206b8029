//! Sales pipeline benchmarks: crmkit next to a raw baseline doing the same work on the same
//! schema, and their ratio.
//!
//! `cargo bench --bench pipeline` (sizes: CRMKIT_BENCH_MOVES, default 100 000 deals moved;
//! CRMKIT_BENCH_DEALS, default 1 000 000 deals summarised; CRMKIT_BENCH_MEMORY_DEALS,
//! default 1 000 000 on the in-memory backend).

use std::time::{Duration, Instant};

use crmkit::core::Changeset;
use crmkit::pipeline::deal::{Deals, NewDeal, Pipeline};
use crmkit::{Actor, Crm, Ctx, Money, Role, TenantId, UserId, UserInput};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Line {
    workload: String,
    crmkit: Duration,
    raw: Option<Duration>,
    target: &'static str,
}

fn print(rows: &[Line]) {
    println!(
        "\n{:<62} {:>12} {:>12} {:>7}  target",
        "workload", "crmkit", "baseline", "ratio"
    );
    for r in rows {
        let raw = r
            .raw
            .map(|d| format!("{d:.2?}"))
            .unwrap_or_else(|| "-".into());
        let ratio = r
            .raw
            .map(|d| format!("{:.2}", r.crmkit.as_secs_f64() / d.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<62} {:>12} {:>12} {:>7}  {}",
            r.workload,
            format!("{:.2?}", r.crmkit),
            raw,
            ratio,
            r.target
        );
    }
}

/// version, stage, amount, currency, close date, stage entered, history seq, probability
/// override, pipeline: what a move reads of a deal.
type DealState = (
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    String,
);

struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        TempDb(std::env::temp_dir().join(format!("crmkit-bench-{tag}-{}.db", Uuid::now_v7())))
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

async fn setup(crm: &Crm) -> (Ctx, Pipeline) {
    let me = UserId::new();
    let ctx = Ctx::new(TenantId::new(), Actor::new(me, [Role::Admin], [])).unwrap();
    crm.directory()
        .put_user(
            &ctx,
            UserInput {
                id: me,
                name: "Bench".into(),
                email: "bench@example.com".into(),
                roles: vec![Role::Admin],
                teams: vec![],
                active: true,
                time_zone: "UTC".into(),
            },
        )
        .await
        .unwrap();
    let pipeline = crm.deals().ensure_default_pipeline(&ctx).await.unwrap();
    (ctx, pipeline)
}

/// Creates `n` open deals spread over the open stages, 1000 per commit.
async fn seed(deals: &Deals, ctx: &Ctx, pipeline: &Pipeline, n: usize) {
    let open: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == crmkit::pipeline::deal::StageKind::Open)
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
            deals.stage_deal(ctx, &d, &[], &mut cs).await.unwrap();
        }
        deals.store().commit(cs).await.unwrap();
        done = (done + 1000).min(n);
    }
}

async fn moves(out: &mut Vec<Line>) {
    let n = env_usize("CRMKIT_BENCH_MOVES", 100_000);
    let db = TempDb::new("moves");
    let crm = Crm::open(&db.url()).await.unwrap();
    let (ctx, pipeline) = setup(&crm).await;
    let deals = crm.deals();
    // Two sets of deals in the first stage: one moved by crmkit, one by the raw baseline.
    let first = pipeline.stages[0].id;
    let target = pipeline.stages[2].id;
    let mut p0 = pipeline.clone();
    p0.stages.truncate(1);
    seed(&deals, &ctx, &p0, 2 * n).await;
    let conn = Connection::open(&db.0).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let tenant = ctx.tenant().to_string();
    let ids: Vec<String> = {
        let mut st = conn
            .prepare(
                "SELECT id FROM pipeline_deals WHERE tenant_id = ? AND stage_id = ? ORDER BY id",
            )
            .unwrap();
        st.query_map(params![tenant, first.to_string()], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let (ours, theirs) = ids.split_at(n);

    let t = Instant::now();
    for id in ours {
        let id = crmkit::DealId::parse("id", id).unwrap();
        deals.move_deal(&ctx, id, 1, target, None).await.unwrap();
    }
    let crmkit_time = t.elapsed();

    // What one crmkit move wrote, so that the baseline writes the same rows.
    let audit_per_move: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM crm_audit WHERE tenant_id = ? AND record_id = ?",
            params![tenant, ours[0]],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        - 1;
    let (to_prob, to_kind): (i64, String) = conn
        .query_row(
            "SELECT probability, kind FROM pipeline_stages WHERE tenant_id = ? AND id = ?",
            params![tenant, target.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let actor = ctx.actor().user.to_string();
    let t = Instant::now();
    for id in theirs {
        let tx = conn.unchecked_transaction().unwrap();
        let (version, from, amount, currency, close, entered, seq, prob_override, pipeline_id): DealState = tx
            .prepare_cached("SELECT version, stage_id, amount, currency, expected_close, stage_entered_at, history_seq, probability_override, pipeline_id FROM pipeline_deals WHERE tenant_id = ? AND id = ?")
            .unwrap()
            .query_row(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?)))
            .unwrap();
        let now = chrono::Utc::now().timestamp_micros();
        let prob = prob_override.unwrap_or(to_prob);
        let weighted = amount.map(|a| a * prob);
        let changed = tx
            .prepare_cached("UPDATE pipeline_deals SET stage_id = ?, probability = ?, weighted_x100 = ?, stage_entered_at = ?, history_seq = ?, updated_at = ?, version = ? WHERE tenant_id = ? AND id = ? AND version = ?")
            .unwrap()
            .execute(params![target.to_string(), prob, weighted, now, seq + 1, now, version + 1, tenant, id, version])
            .unwrap();
        assert_eq!(changed, 1);
        tx.prepare_cached("INSERT INTO pipeline_stage_history (tenant_id, deal_id, seq, pipeline_id, from_stage, to_stage, to_kind, amount, currency, expected_close, at, by_user, seconds_in_previous) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .unwrap()
            .execute(params![tenant, id, seq + 1, pipeline_id, from, target.to_string(), to_kind, amount, currency, close, now, actor, (now - entered) / 1_000_000])
            .unwrap();
        let payload = serde_json::json!({ "id": id, "stage": target.to_string(), "from": from, "probability": prob }).to_string();
        for f in 0..audit_per_move {
            tx.prepare_cached("INSERT INTO crm_audit (tenant_id, id, at, actor, record_kind, record_id, field, old_value, new_value) VALUES (?, ?, ?, ?, 'deal', ?, ?, ?, ?)")
                .unwrap()
                .execute(params![tenant, Uuid::now_v7().to_string(), now, actor, id, format!("field{f}"), from, payload])
                .unwrap();
        }
        let last: Option<i64> = tx
            .prepare_cached(
                "SELECT last_value FROM crm_sequences WHERE tenant_id = ? AND name = 'events'",
            )
            .unwrap()
            .query_row(params![tenant], |r| r.get(0))
            .optional()
            .unwrap();
        let next = last.unwrap_or(0) + 1;
        tx.prepare_cached(
            "UPDATE crm_sequences SET last_value = ? WHERE tenant_id = ? AND name = 'events'",
        )
        .unwrap()
        .execute(params![next, tenant])
        .unwrap();
        tx.prepare_cached("INSERT INTO crm_events (tenant_id, seq, kind, record_kind, record_id, changed, payload, actor, origin, at) VALUES (?, ?, 'deal.moved', 'deal', ?, '[\"stage\"]', ?, ?, 'api', ?)")
            .unwrap()
            .execute(params![tenant, next, id, payload, actor, now])
            .unwrap();
        tx.commit().unwrap();
    }
    let raw_time = t.elapsed();
    out.push(Line {
        workload: format!("move {n} deals one stage on (history, event, audit), SQLite"),
        crmkit: crmkit_time,
        raw: Some(raw_time),
        target: "report",
    });
}

async fn summary(out: &mut Vec<Line>) {
    let n = env_usize("CRMKIT_BENCH_DEALS", 1_000_000);
    let db = TempDb::new("summary");
    let crm = Crm::open(&db.url()).await.unwrap();
    let (ctx, pipeline) = setup(&crm).await;
    let deals = crm.deals();
    let t = Instant::now();
    seed(&deals, &ctx, &pipeline, n).await;
    println!("seeded {n} deals on SQLite in {:.1?}", t.elapsed());
    let conn = Connection::open(&db.0).unwrap();
    let tenant = ctx.tenant().to_string();
    let mut ours = vec![];
    let mut theirs = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        let s = deals.pipeline_summary(&ctx, pipeline.id).await.unwrap();
        ours.push(t.elapsed());
        std::hint::black_box(s);
        let t = Instant::now();
        let mut st = conn
            .prepare_cached(
                "SELECT stage_id, currency, COUNT(*), SUM(amount), SUM(weighted_x100) FROM pipeline_deals \
                 WHERE tenant_id = ? AND pipeline_id = ? AND status = 'open' AND deleted_at IS NULL \
                 GROUP BY stage_id, currency",
            )
            .unwrap();
        let rows: Vec<(String, Option<String>, i64, i64, i64)> = st
            .query_map(params![tenant, pipeline.id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        theirs.push(t.elapsed());
        std::hint::black_box(rows);
    }
    out.push(Line {
        workload: format!("weighted pipeline summary over {n} deals, SQLite"),
        crmkit: median(ours),
        raw: Some(median(theirs)),
        target: "<= 1.5",
    });
}

async fn memory_summary(out: &mut Vec<Line>) {
    let n = env_usize("CRMKIT_BENCH_MEMORY_DEALS", 1_000_000);
    let crm = Crm::in_memory().unwrap();
    let (ctx, pipeline) = setup(&crm).await;
    let deals = crm.deals();
    seed(&deals, &ctx, &pipeline, n).await;
    let mut ours = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(deals.pipeline_summary(&ctx, pipeline.id).await.unwrap());
        ours.push(t.elapsed());
    }
    out.push(Line {
        workload: format!("weighted pipeline summary over {n} deals, in memory"),
        crmkit: median(ours),
        raw: None,
        target: "report",
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut out = vec![];
    rt.block_on(async {
        moves(&mut out).await;
        summary(&mut out).await;
        memory_summary(&mut out).await;
    });
    print(&out);
}
