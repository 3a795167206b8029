//! Activities benchmarks: crmkit next to a raw rusqlite baseline doing the same work on the
//! same schema, and their ratio.
//!
//! `cargo bench --bench activities`. Sizes:
//! - CRMKIT_BENCH_APPENDS, default 1 000 000 notes appended on SQLite through
//!   `create_many` in batches of 1000 (one changeset each), over 100 contacts. The baseline
//!   writes the same rows in transactions of 1000: per note the activity, its relation,
//!   an audit entry and an event (from the tenant's sequence); per contact and batch one
//!   follow-up update.
//! - CRMKIT_BENCH_SINGLE, default 20 000 notes appended with one `create` (one commit)
//!   each, next to the baseline with one transaction per note.
//! - CRMKIT_BENCH_TIMELINE, default 100 000 entries on the big record, seeded in batches;
//!   the newest-50 read is compared with records of 10 and 50 entries, and the newest-10
//!   read with the 10-entry record (equal result sizes).
//! - CRMKIT_BENCH_REMINDERS, default 1 000 000 pending reminders: 1000 added through
//!   `add_reminder`, the rest inserted as rows of the same shape (one `add_reminder` per
//!   commit is too slow for a million); 1% of them due.

use std::time::{Duration, Instant};

use chrono::Utc;
use crmkit::activities::{Activity, ActivityDetails, NewActivity, Note, Priority, Task};
use crmkit::activities::{Due, TaskStatus};
use crmkit::contacts::NewContact;
use crmkit::{Actor, Crm, Ctx, RecordRef, Role, TenantId, UserId, UserInput};
use rusqlite::{Connection, params};
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
    baseline: &'static str,
    target: &'static str,
}

fn print(rows: &[Line]) {
    println!(
        "\n{:<66} {:>12} {:>12} {:>7}  {:<22} target",
        "workload", "crmkit", "baseline", "ratio", "baseline is"
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
            "{:<66} {:>12} {:>12} {:>7}  {:<22} {}",
            r.workload,
            format!("{:.2?}", r.crmkit),
            raw,
            ratio,
            r.baseline,
            r.target
        );
    }
}

struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        TempDb(std::env::temp_dir().join(format!("crmkit-bench-{tag}-{}.db", Uuid::now_v7())))
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
    fn connect(&self) -> Connection {
        let conn = Connection::open(&self.0).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        // The page cache crmkit's SQLite writer uses (64 MiB), so both sides cache alike.
        conn.pragma_update(None, "cache_size", -65536).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

async fn setup(crm: &Crm) -> Ctx {
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
    ctx
}

async fn contacts(crm: &Crm, ctx: &Ctx, n: usize) -> Vec<RecordRef> {
    let mut out = vec![];
    for i in 0..n {
        let c = crm
            .contacts()
            .create_contact(ctx, NewContact::named("Bench", format!("Contact {i}")))
            .await
            .unwrap();
        out.push(RecordRef::from(c.id));
    }
    out
}

fn note(ctx: &Ctx, i: usize, related: &RecordRef) -> NewActivity {
    NewActivity::new(
        format!("Note {i}"),
        ActivityDetails::Note(Note {
            body: format!("Talked about item {i}."),
            pinned: false,
            author: ctx.actor().user,
        }),
    )
    .related_to(related.clone())
}

/// The rows one note `create` writes, inserted directly: the activity, its relation, the
/// follow-up row of its record, one audit entry and one event (with the tenant's event
/// sequence).
fn raw_note(tx: &rusqlite::Transaction<'_>, tenant: &str, ctx: &Ctx, i: usize, r: &RecordRef) {
    raw_note_rows(tx, tenant, ctx, i, r);
    raw_followup(tx, tenant, r, Utc::now().timestamp_micros());
}

/// What a follow-up update writes: the record's last activity, versioned.
fn raw_followup(tx: &rusqlite::Transaction<'_>, tenant: &str, r: &RecordRef, micros: i64) {
    tx.prepare_cached(
        "UPDATE activities_followup SET last_activity_at = ?, quiet_since = ?, version = version + 1 \
         WHERE tenant_id = ? AND record_kind = 'contact' AND record_id = ?",
    )
    .unwrap()
    .execute(params![micros, micros, tenant, r.id.to_string()])
    .unwrap();
}

/// The per-note rows: activity, relation, audit entry, event.
fn raw_note_rows(tx: &rusqlite::Transaction<'_>, tenant: &str, ctx: &Ctx, i: usize, r: &RecordRef) {
    let now = Utc::now();
    let micros = now.timestamp_micros();
    let a = Activity {
        id: crmkit::core::ActivityId::new(),
        related: vec![r.clone()],
        subject: format!("Note {i}"),
        owner: ctx.actor().user,
        team: None,
        details: ActivityDetails::Note(Note {
            body: format!("Talked about item {i}."),
            pinned: false,
            author: ctx.actor().user,
        }),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        version: 1,
    };
    let id = a.id.to_string();
    let owner = a.owner.to_string();
    let record = r.id.to_string();
    tx.prepare_cached(
        "INSERT INTO activities_activity (tenant_id, id, kind, subject, owner_id, team_id, status, open, due_at, starts_at, ends_at, message_id, related, details, created_at, updated_at, deleted_at, version) \
         VALUES (?, ?, 'note', ?, ?, NULL, NULL, 0, NULL, NULL, NULL, NULL, ?, ?, ?, ?, NULL, 1)",
    )
    .unwrap()
    .execute(params![
        tenant,
        id,
        a.subject,
        owner,
        serde_json::to_string(&a.related).unwrap(),
        serde_json::to_string(&a.details).unwrap(),
        micros,
        micros
    ])
    .unwrap();
    tx.prepare_cached(
        "INSERT INTO activities_relation (tenant_id, activity_id, record_kind, record_id, at, done_at, next_at) VALUES (?, ?, 'contact', ?, ?, ?, NULL)",
    )
    .unwrap()
    .execute(params![tenant, id, record, micros, micros])
    .unwrap();
    let snapshot = serde_json::to_string(&a).unwrap();
    tx.prepare_cached(
        "INSERT INTO crm_audit (tenant_id, id, at, actor, record_kind, record_id, field, old_value, new_value) VALUES (?, ?, ?, ?, 'activity', ?, '*', NULL, ?)",
    )
    .unwrap()
    .execute(params![tenant, Uuid::now_v7().to_string(), micros, owner, id, snapshot])
    .unwrap();
    let next: i64 = tx
        .prepare_cached(
            "UPDATE crm_sequences SET last_value = last_value + 1 WHERE tenant_id = ? AND name = 'events' RETURNING last_value",
        )
        .unwrap()
        .query_row(params![tenant], |r| r.get(0))
        .unwrap();
    tx.prepare_cached(
        "INSERT INTO crm_events (tenant_id, seq, kind, record_kind, record_id, changed, payload, actor, origin, at) VALUES (?, ?, 'activity.created', 'activity', ?, '[]', ?, ?, 'api', ?)",
    )
    .unwrap()
    .execute(params![tenant, next, id, snapshot, owner, micros])
    .unwrap();
}

async fn appends(out: &mut Vec<Line>) {
    let n = env_usize("CRMKIT_BENCH_APPENDS", 1_000_000);
    let db = TempDb::new("appends");
    let crm = Crm::open(&db.url()).await.unwrap();
    let ctx = setup(&crm).await;
    let records = contacts(&crm, &ctx, 100).await;
    let acts = crm.activities();

    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let end = (done + 1000).min(n);
        let batch = (done..end)
            .map(|i| note(&ctx, i, &records[i % records.len()]))
            .collect();
        acts.create_many(&ctx, batch).await.unwrap();
        done = end;
    }
    let crmkit_time = t.elapsed();
    println!("appends: crmkit created {n} notes in batches of 1000 in {crmkit_time:.1?}");

    let conn = db.connect();
    let tenant = ctx.tenant().to_string();
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let end = (done + 1000).min(n);
        let tx = conn.unchecked_transaction().unwrap();
        for i in done..end {
            raw_note_rows(&tx, &tenant, &ctx, i, &records[i % records.len()]);
        }
        let now = Utc::now().timestamp_micros();
        for r in records.iter().take(end - done) {
            raw_followup(&tx, &tenant, r, now);
        }
        tx.commit().unwrap();
        done = end;
    }
    let raw_batched = t.elapsed();
    out.push(Line {
        workload: format!("append {n} notes, batches of 1000, SQLite"),
        crmkit: crmkit_time,
        raw: Some(raw_batched),
        baseline: "raw, 1000 per tx",
        target: "report",
    });

    let single = env_usize("CRMKIT_BENCH_SINGLE", 20_000);
    let t = Instant::now();
    for i in 0..single {
        acts.create(&ctx, note(&ctx, i, &records[i % records.len()]))
            .await
            .unwrap();
    }
    let crmkit_single = t.elapsed();
    let t = Instant::now();
    for i in 0..single {
        let tx = conn.unchecked_transaction().unwrap();
        raw_note(&tx, &tenant, &ctx, i, &records[i % records.len()]);
        tx.commit().unwrap();
    }
    out.push(Line {
        workload: format!("append {single} notes, 1 per create, SQLite"),
        crmkit: crmkit_single,
        raw: Some(t.elapsed()),
        baseline: "raw, 1 per tx",
        target: "report",
    });
}

async fn timeline(out: &mut Vec<Line>) {
    let big_n = env_usize("CRMKIT_BENCH_TIMELINE", 100_000);
    let db = TempDb::new("timeline");
    let crm = Crm::open(&db.url()).await.unwrap();
    let ctx = setup(&crm).await;
    let recs = contacts(&crm, &ctx, 3).await;
    let (big, small, mid) = (&recs[0], &recs[1], &recs[2]);
    let acts = crm.activities();
    let t = Instant::now();
    let mut done = 0;
    while done < big_n {
        let end = (done + 1000).min(big_n);
        let batch = (done..end).map(|i| note(&ctx, i, big)).collect();
        acts.create_many(&ctx, batch).await.unwrap();
        done = end;
    }
    // Each record also has its contact.created event: 10 and 50 entries in all.
    for i in 0..9 {
        acts.create(&ctx, note(&ctx, i, small)).await.unwrap();
    }
    for i in 0..49 {
        acts.create(&ctx, note(&ctx, i, mid)).await.unwrap();
    }
    println!(
        "timeline: seeded {big_n} + 9 + 49 notes through the API in {:.1?}",
        t.elapsed()
    );
    let read = |r: &RecordRef, limit: u32| {
        let (acts, ctx, r) = (acts.clone(), ctx.clone(), r.clone());
        async move {
            let mut times = vec![];
            for _ in 0..41 {
                let t = Instant::now();
                let page = acts.timeline(&ctx, &r, None, limit).await.unwrap();
                times.push(t.elapsed());
                std::hint::black_box(page);
            }
            median(times)
        }
    };
    let big_t = read(big, 50).await;
    let small_t = read(small, 50).await;
    let mid_t = read(mid, 50).await;
    let big10 = read(big, 10).await;
    let small10 = read(small, 10).await;
    let conn = db.connect();
    let tenant = ctx.tenant().to_string();
    let mut raw = vec![];
    for _ in 0..21 {
        let t = Instant::now();
        let mut st = conn
            .prepare_cached(
                "SELECT activity_id, at FROM activities_relation WHERE tenant_id = ? AND record_kind = 'contact' AND record_id = ? ORDER BY at DESC, activity_id DESC LIMIT 50",
            )
            .unwrap();
        let ids: Vec<String> = st
            .query_map(params![tenant, big.id.to_string()], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut ev = conn
            .prepare_cached(
                "SELECT seq, kind, payload, at FROM crm_events WHERE tenant_id = ? AND record_kind = 'contact' AND record_id = ? ORDER BY seq DESC LIMIT 50",
            )
            .unwrap();
        let evs: Vec<(i64, String, String, i64)> = ev
            .query_map(params![tenant, big.id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut act = conn
            .prepare_cached(
                "SELECT id, details, related FROM activities_activity WHERE tenant_id = ? AND id = ?",
            )
            .unwrap();
        let rows: Vec<(String, String, String)> = ids
            .iter()
            .map(|id| {
                act.query_row(params![tenant, id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap()
            })
            .collect();
        raw.push(t.elapsed());
        std::hint::black_box((rows, evs));
    }
    println!(
        "timeline: newest 50 of {big_n} entries {big_t:.2?}, of 10 entries {small_t:.2?}, ratio {:.2}",
        big_t.as_secs_f64() / small_t.as_secs_f64()
    );
    out.push(Line {
        workload: format!("newest-50 timeline, record with {big_n} entries"),
        crmkit: big_t,
        raw: Some(small_t),
        baseline: "crmkit, 10 entries (returns 10)",
        target: "report",
    });
    out.push(Line {
        workload: format!("newest-50 timeline, record with {big_n} entries"),
        crmkit: big_t,
        raw: Some(mid_t),
        baseline: "crmkit, 50 entries (returns 50)",
        target: "<= 2",
    });
    out.push(Line {
        workload: format!("newest-10 timeline, record with {big_n} entries"),
        crmkit: big10,
        raw: Some(small10),
        baseline: "crmkit, 10 entries (returns 10)",
        target: "<= 2",
    });
    out.push(Line {
        workload: format!("newest-50 timeline, record with {big_n} entries"),
        crmkit: big_t,
        raw: Some(median(raw)),
        baseline: "raw, same reads",
        target: "report",
    });
}

async fn reminders(out: &mut Vec<Line>) {
    let n = env_usize("CRMKIT_BENCH_REMINDERS", 1_000_000);
    let db = TempDb::new("reminders");
    let crm = Crm::open(&db.url()).await.unwrap();
    let ctx = setup(&crm).await;
    let acts = crm.activities();
    let now = Utc::now();
    let far = now + chrono::Duration::days(400);
    let mut tasks = vec![];
    for i in 0..100 {
        let t = acts
            .create(
                &ctx,
                NewActivity::new(
                    format!("Task {i}"),
                    ActivityDetails::Task(Task {
                        description: None,
                        due: Some(Due::At {
                            at: far,
                            time_zone: "UTC".into(),
                        }),
                        priority: Priority::Normal,
                        status: TaskStatus::Open,
                        recurrence: None,
                        completed_at: None,
                    }),
                ),
            )
            .await
            .unwrap();
        tasks.push(t.id);
    }
    // Every 100th reminder is due (in the last year), the others are later.
    let remind_at = |i: usize| {
        if i.is_multiple_of(100) {
            now - chrono::Duration::minutes((i / 100) as i64 % 500_000 + 1)
        } else {
            now + chrono::Duration::minutes(i as i64 % 500_000 + 1)
        }
    };
    let via_api = n.min(1000);
    let t = Instant::now();
    for i in 0..via_api {
        acts.add_reminder(&ctx, tasks[i % tasks.len()], None, remind_at(i))
            .await
            .unwrap();
    }
    println!(
        "reminders: {via_api} added through add_reminder in {:.1?}",
        t.elapsed()
    );
    let conn = db.connect();
    let tenant = ctx.tenant().to_string();
    let user = ctx.actor().user.to_string();
    let t = Instant::now();
    let mut i = via_api;
    while i < n {
        let tx = conn.unchecked_transaction().unwrap();
        for j in i..(i + 10_000).min(n) {
            tx.prepare_cached(
                "INSERT INTO activities_reminder (tenant_id, id, activity_id, user_id, remind_at, delivered_at, version) VALUES (?, ?, ?, ?, ?, NULL, 1)",
            )
            .unwrap()
            .execute(params![
                tenant,
                Uuid::now_v7().to_string(),
                tasks[j % tasks.len()].to_string(),
                user,
                remind_at(j).timestamp_micros()
            ])
            .unwrap();
        }
        tx.commit().unwrap();
        i = (i + 10_000).min(n);
    }
    conn.execute_batch("ANALYZE").unwrap();
    println!(
        "reminders: {} more inserted as rows in {:.1?}",
        n - via_api,
        t.elapsed()
    );
    let sql = "SELECT id, activity_id, user_id, remind_at, delivered_at, version FROM activities_reminder \
               WHERE tenant_id = ? AND delivered_at IS NULL AND remind_at <= ? ORDER BY remind_at, id LIMIT 100";
    println!("EXPLAIN QUERY PLAN {sql}");
    let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    for line in plan
        .query_map(params![tenant, now.timestamp_micros()], |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
    {
        println!("  {}", line.unwrap());
    }
    let (mut ours, mut theirs) = (vec![], vec![]);
    for _ in 0..21 {
        let t = Instant::now();
        let due = acts.due_reminders(&ctx, now, 100).await.unwrap();
        ours.push(t.elapsed());
        assert_eq!(due.len(), 100);
        let t = Instant::now();
        let mut st = conn.prepare_cached(sql).unwrap();
        let rows: Vec<(String, String, String, i64, Option<i64>, i64)> = st
            .query_map(params![tenant, now.timestamp_micros()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        theirs.push(t.elapsed());
        assert_eq!(rows.len(), 100);
    }
    out.push(Line {
        workload: format!("oldest 100 due of {n} pending reminders (1% due), SQLite"),
        crmkit: median(ours),
        raw: Some(median(theirs)),
        baseline: "raw indexed query",
        target: "index-backed",
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
        let only = std::env::var("CRMKIT_BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "appends" {
            appends(&mut out).await;
        }
        if only.is_empty() || only == "timeline" {
            timeline(&mut out).await;
        }
        if only.is_empty() || only == "reminders" {
            reminders(&mut out).await;
        }
    });
    print(&out);
}
