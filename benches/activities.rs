//! Activities benchmarks: crmkit next to a raw rusqlite baseline doing the same work on the
//! same schema (common/raw.rs), and their ratio.
//!
//! `cargo bench --bench activities`. Sizes (environment variables):
//! - CRMKIT_BENCH_APPENDS, default 1 000 000 notes appended on SQLite through
//!   `create_many` in batches of 1000 (one changeset each), over 100 contacts. The baseline
//!   writes the same rows in transactions of 1000: per note the activity, its relation,
//!   an audit entry and an event (from the tenant's sequence); per contact and batch one
//!   follow-up update. Once a side, in one database.
//! - CRMKIT_BENCH_SINGLE, default 20 000 notes appended with one `create` (one commit)
//!   each, next to the baseline with one transaction per note (same database).
//! - CRMKIT_BENCH_TIMELINE, default 100 000 entries on the big record, seeded in batches;
//!   the newest-50 read is compared with records of 10 and 50 entries, and the newest-10
//!   read with the 10-entry record (equal result sizes), and with the same reads run raw.
//! - CRMKIT_BENCH_REMINDERS, default 1 000 000 pending reminders: 1000 added through
//!   `add_reminder`, the rest inserted as rows of the same shape (one `add_reminder` per
//!   commit is too slow for a million); 1% of them due.

mod common;

use std::sync::{LazyLock, Mutex};

use chrono::Utc;
use crmkit::activities::{ActivityDetails, Due, NewActivity, Note, Priority, Task, TaskStatus};
use crmkit::contacts::NewContact;
use crmkit::{Crm, Ctx, RecordRef};
use divan::Bencher;
use rusqlite::params;
use uuid::Uuid;

use common::{Line, TempDb, block_on, raw, size, timed, timed_async};

fn appends_n() -> usize {
    size("CRMKIT_BENCH_APPENDS", 1_000_000, 2_000)
}

fn single_n() -> usize {
    size("CRMKIT_BENCH_SINGLE", 20_000, 100)
}

fn timeline_n() -> usize {
    size("CRMKIT_BENCH_TIMELINE", 100_000, 1_000)
}

fn reminders_n() -> usize {
    size("CRMKIT_BENCH_REMINDERS", 1_000_000, 2_000)
}

async fn contacts(crm: &Crm, ctx: &Ctx, n: usize) -> Vec<RecordRef> {
    let mut out = vec![];
    for i in 0..n {
        let c = crm
            .contacts()
            .create(ctx, NewContact::named("Bench", format!("Contact {i}")))
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

/// One database with 100 contacts that both sides append notes to.
struct Appends {
    db: TempDb,
    crm: Crm,
    ctx: Ctx,
    records: Vec<RecordRef>,
}

static APPENDS: LazyLock<Mutex<Appends>> = LazyLock::new(|| {
    let db = TempDb::new("appends");
    let crm = db.open();
    let (ctx, _) = block_on(common::tenant(&crm, 1));
    let records = block_on(contacts(&crm, &ctx, 100));
    Mutex::new(Appends {
        db,
        crm,
        ctx,
        records,
    })
});

mod append_batches {
    use super::*;

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let a = APPENDS.lock().unwrap();
        let acts = a.crm.activities();
        let n = appends_n();
        b.bench_local(|| {
            timed_async("batches/crmkit", 1, async {
                let mut done = 0;
                while done < n {
                    let end = (done + 1000).min(n);
                    let batch = (done..end)
                        .map(|i| note(&a.ctx, i, &a.records[i % a.records.len()]))
                        .collect();
                    acts.create_many(&a.ctx, batch).await.unwrap();
                    done = end;
                }
            })
        });
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn raw(b: Bencher) {
        let a = APPENDS.lock().unwrap();
        let conn = a.db.connect();
        let tenant = a.ctx.tenant().to_string();
        let n = appends_n();
        b.bench_local(|| {
            timed("batches/raw", 1, || {
                raw::append_notes(&conn, &tenant, &a.ctx, &a.records, 0, n)
            })
        });
    }
}

mod append_single {
    use super::*;

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let a = APPENDS.lock().unwrap();
        let acts = a.crm.activities();
        b.bench_local(|| {
            timed_async("single/crmkit", 1, async {
                for i in 0..single_n() {
                    acts.create(&a.ctx, note(&a.ctx, i, &a.records[i % a.records.len()]))
                        .await
                        .unwrap();
                }
            })
        });
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn raw(b: Bencher) {
        let a = APPENDS.lock().unwrap();
        let conn = a.db.connect();
        let tenant = a.ctx.tenant().to_string();
        b.bench_local(|| {
            timed("single/raw", 1, || {
                for i in 0..single_n() {
                    let tx = conn.unchecked_transaction().unwrap();
                    raw::note(&tx, &tenant, &a.ctx, i, &a.records[i % a.records.len()]);
                    tx.commit().unwrap();
                }
            })
        });
    }
}

/// A record with `timeline_n()` notes, one with 10 timeline entries and one with 50 (each
/// record also has its `contact.created` event).
struct Timeline {
    db: TempDb,
    crm: Crm,
    ctx: Ctx,
    big: RecordRef,
    small: RecordRef,
    mid: RecordRef,
}

static TIMELINE: LazyLock<Timeline> = LazyLock::new(|| {
    let db = TempDb::new("timeline");
    let crm = db.open();
    let (ctx, _) = block_on(common::tenant(&crm, 1));
    let recs = block_on(contacts(&crm, &ctx, 3));
    let acts = crm.activities();
    let n = timeline_n();
    block_on(async {
        let mut done = 0;
        while done < n {
            let end = (done + 1000).min(n);
            let batch = (done..end).map(|i| note(&ctx, i, &recs[0])).collect();
            acts.create_many(&ctx, batch).await.unwrap();
            done = end;
        }
        for i in 0..9 {
            acts.create(&ctx, note(&ctx, i, &recs[1])).await.unwrap();
        }
        for i in 0..49 {
            acts.create(&ctx, note(&ctx, i, &recs[2])).await.unwrap();
        }
    });
    Timeline {
        db,
        crm,
        ctx,
        big: recs[0].clone(),
        small: recs[1].clone(),
        mid: recs[2].clone(),
    }
});

fn timeline_read(b: Bencher, series: &'static str, pick: fn(&Timeline) -> &RecordRef, limit: u32) {
    let t = &*TIMELINE;
    let acts = t.crm.activities();
    let r = pick(t);
    b.bench_local(|| {
        timed_async(series, 1, async {
            divan::black_box(acts.timeline(&t.ctx, r, None, limit).await.unwrap())
        })
    });
}

mod timeline {
    use super::*;

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn big_50(b: Bencher) {
        timeline_read(b, "timeline/big50", |t| &t.big, 50);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn small_50(b: Bencher) {
        timeline_read(b, "timeline/small50", |t| &t.small, 50);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn mid_50(b: Bencher) {
        timeline_read(b, "timeline/mid50", |t| &t.mid, 50);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn big_10(b: Bencher) {
        timeline_read(b, "timeline/big10", |t| &t.big, 10);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn small_10(b: Bencher) {
        timeline_read(b, "timeline/small10", |t| &t.small, 10);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn raw_big_50(b: Bencher) {
        let t = &*TIMELINE;
        let conn = t.db.connect();
        let tenant = t.ctx.tenant().to_string();
        b.bench_local(|| {
            timed("timeline/raw50", 1, || {
                divan::black_box(raw::timeline(&conn, &tenant, &t.big))
            })
        });
    }
}

/// `reminders_n()` pending reminders, 1% due.
struct Reminders {
    db: TempDb,
    crm: Crm,
    ctx: Ctx,
    now: chrono::DateTime<Utc>,
}

static REMINDERS: LazyLock<Reminders> = LazyLock::new(|| {
    let n = reminders_n();
    let db = TempDb::new("reminders");
    let crm = db.open();
    let (ctx, _) = block_on(common::tenant(&crm, 1));
    let acts = crm.activities();
    let now = Utc::now();
    let far = now + chrono::Duration::days(400);
    let tasks: Vec<_> = block_on(async {
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
        tasks
    });
    // Every 100th reminder is due (in the last year), the others are later.
    let remind_at = |i: usize| {
        if i.is_multiple_of(100) {
            now - chrono::Duration::minutes((i / 100) as i64 % 500_000 + 1)
        } else {
            now + chrono::Duration::minutes(i as i64 % 500_000 + 1)
        }
    };
    let via_api = n.min(1000);
    block_on(async {
        for i in 0..via_api {
            acts.add_reminder(&ctx, tasks[i % tasks.len()], None, remind_at(i))
                .await
                .unwrap();
        }
    });
    let conn = db.connect();
    let tenant = ctx.tenant().to_string();
    let user = ctx.actor().user.to_string();
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
    raw::explain(
        &conn,
        raw::DUE_REMINDERS,
        &[tenant.clone().into(), now.timestamp_micros().into()],
    );
    Reminders { db, crm, ctx, now }
});

mod due_reminders {
    use super::*;

    #[divan::bench(sample_count = 21, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let r = &*REMINDERS;
        let acts = r.crm.activities();
        let want = reminders_n().div_ceil(100).min(100);
        b.bench_local(|| {
            let due = timed_async(
                "reminders/crmkit",
                1,
                acts.due_reminders(&r.ctx, r.now, 100),
            )
            .unwrap();
            assert_eq!(due.len(), want);
        });
    }

    #[divan::bench(sample_count = 21, sample_size = 1)]
    fn raw(b: Bencher) {
        let r = &*REMINDERS;
        let conn = r.db.connect();
        let tenant = r.ctx.tenant().to_string();
        let now = r.now.timestamp_micros();
        b.bench_local(|| {
            timed("reminders/raw", 1, || {
                divan::black_box(raw::due_reminders(&conn, &tenant, now))
            })
        });
    }
}

fn main() {
    common::main("activities", || {
        let big = timeline_n();
        vec![
            Line::new(
                format!("append {} notes, batches of 1000, SQLite", appends_n()),
                "batches/crmkit",
                "batches/raw",
                "raw, 1000 per tx",
                "report",
            ),
            Line::new(
                format!("append {} notes, 1 per create, SQLite", single_n()),
                "single/crmkit",
                "single/raw",
                "raw, 1 per tx",
                "report",
            ),
            Line::new(
                format!("newest-50 timeline, record with {big} entries"),
                "timeline/big50",
                "timeline/small50",
                "crmkit, 10 entries (returns 10)",
                "report",
            ),
            Line::new(
                format!("newest-50 timeline, record with {big} entries"),
                "timeline/big50",
                "timeline/mid50",
                "crmkit, 50 entries (returns 50)",
                "<= 2",
            ),
            Line::new(
                format!("newest-10 timeline, record with {big} entries"),
                "timeline/big10",
                "timeline/small10",
                "crmkit, 10 entries (returns 10)",
                "<= 2",
            ),
            Line::new(
                format!("newest-50 timeline, record with {big} entries"),
                "timeline/big50",
                "timeline/raw50",
                "raw, same reads",
                "report",
            ),
            Line::new(
                format!(
                    "oldest 100 due of {} pending reminders (1% due)",
                    reminders_n()
                ),
                "reminders/crmkit",
                "reminders/raw",
                "raw indexed query",
                "index-backed",
            ),
        ]
    });
}
