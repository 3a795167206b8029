//! Contacts benchmarks: crmkit next to a raw baseline doing the same work on the same
//! schema (common/raw.rs), and their ratio.
//!
//! `cargo bench --bench contacts`. Sizes (environment variables):
//! - CRMKIT_BENCH_CONTACTS, default 100 000: contacts imported into a SQLite file (crmkit's
//!   batch API vs the raw import; 2 imports each, into fresh files), and the size of the
//!   database the reads run on.
//! - CRMKIT_BENCH_MEMORY_CONTACTS, default 1 000 000: contacts imported into the in-memory
//!   backend (once).
//!
//! Reads: 1000 gets by id per iteration (reported per call); a page of 50 of one owner's
//! customers (keyset by id), the first and the last page. Each read workload has divan
//! benchmarks `crmkit` and `raw` (one side alone) and `pair` (both interleaved, what the
//! report reads: 41 iterations of 1000 gets, 30 x 20 pages); the import is a `pair` only.
//! The workloads run in name order: get_by_id, import, list_deep_page, list_page_1,
//! memory_import.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use common::{Line, TempDb, block_on, raw, size, timed, timed_async};
use crmkit::contacts::{ImportOptions, LifecycleStage, NewContact};
use crmkit::{Crm, Ctx, Filter, Query, UserId};
use divan::Bencher;
use rusqlite::Connection;
use uuid::Uuid;

fn contacts_n() -> usize {
    size("CRMKIT_BENCH_CONTACTS", 100_000, 2_000)
}

fn memory_n() -> usize {
    size("CRMKIT_BENCH_MEMORY_CONTACTS", 1_000_000, 2_000)
}

const STAGES: [LifecycleStage; 8] = LifecycleStage::ALL;

/// `n` new contacts spread over the owners and stages.
fn inputs(n: usize, owners: &[UserId], salt: &str) -> Vec<NewContact> {
    (0..n)
        .map(|i| {
            let mut c = NewContact::named(format!("First{i}"), format!("Last{}", i % 977))
                .email(format!("person{i}.{salt}@example{}.com", i % 50));
            c.owner = Some(owners[i % owners.len()]);
            c.lifecycle_stage = STAGES[(i / owners.len()) % STAGES.len()];
            c
        })
        .collect()
}

/// A fresh database with a tenant of 10 users, and the contacts to import into it.
fn fresh(tag: &str) -> (TempDb, Crm, Ctx, Vec<NewContact>) {
    let db = TempDb::new(tag);
    let crm = db.open();
    let (ctx, owners) = block_on(common::tenant(&crm, 10));
    let rows = inputs(contacts_n(), &owners, "import");
    (db, crm, ctx, rows)
}

mod import {
    use super::*;

    /// Each iteration imports into two fresh files, crmkit's batch API and the raw import,
    /// alternating which goes first.
    #[divan::bench(sample_count = 2, sample_size = 1)]
    fn pair(b: Bencher) {
        let flip = std::cell::Cell::new(false);
        b.with_inputs(|| {
            let ours = fresh("import");
            let (db, crm, ctx, rows) = fresh("import-raw");
            drop(crm);
            let conn = db.connect();
            (ours, (db, conn, ctx, rows))
        })
        .bench_local_values(
            |((db, crm, ctx, rows), (raw_db, mut conn, raw_ctx, raw_rows))| {
                let n = rows.len();
                let mut ours = Some((ctx, rows));
                let mut crmkit_side = || {
                    let (ctx, rows) = ours.take().unwrap();
                    let report = timed_async(
                        "import/crmkit",
                        1,
                        crm.contacts().import(&ctx, rows, ImportOptions::default()),
                    )
                    .unwrap();
                    assert_eq!(report.created.len(), n);
                };
                let mut raw_side = || {
                    timed("import/raw", 1, || {
                        raw::import_contacts(
                            &mut conn,
                            raw_ctx.tenant(),
                            raw_ctx.actor().user,
                            &raw_rows,
                        )
                    })
                };
                flip.set(!flip.get());
                if flip.get() {
                    crmkit_side();
                    raw_side();
                } else {
                    raw_side();
                    crmkit_side();
                }
                (db, crm, raw_db, conn)
            },
        );
    }
}

/// The database the reads run on: `contacts_n()` contacts imported through crmkit.
struct Reads {
    _db: TempDb,
    crm: Crm,
    ctx: Ctx,
    conn: Mutex<Connection>,
    tenant: String,
    ids: Vec<Uuid>,
    owner: UserId,
    query: Query,
    /// The cursor of every page of the owner's customers (None for page 1), and the id
    /// the raw query starts after.
    pages: Vec<(Option<String>, Option<String>)>,
}

/// How many pages the listed owner's customers fill (set when READS is built).
static PAGES: AtomicUsize = AtomicUsize::new(0);

static READS: LazyLock<Reads> = LazyLock::new(|| {
    let (db, crm, ctx, rows) = fresh("reads");
    let owners: Vec<UserId> = {
        let mut o: Vec<UserId> = rows.iter().filter_map(|r| r.owner).collect();
        o.dedup();
        o.truncate(10);
        o
    };
    block_on(crm.contacts().import(&ctx, rows, ImportOptions::default())).unwrap();
    let conn = db.connect();
    let tenant = ctx.tenant().to_string();
    let all: Vec<String> = conn
        .prepare("SELECT id FROM contacts_person WHERE tenant_id = ? ORDER BY id")
        .unwrap()
        .query_map([&tenant], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let ids = (0..1000)
        .map(|i| Uuid::parse_str(&all[(i * 7919) % all.len()]).unwrap())
        .collect();
    let owner = owners[3 % owners.len()];
    let query = Query::new()
        .filter(Filter::eq("owner", owner).and(Filter::eq("lifecycle_stage", "customer")))
        .limit(50);
    let contacts = crm.contacts();
    let mut cursors = vec![None];
    loop {
        let mut q = query.clone();
        q.cursor = cursors.last().unwrap().clone();
        let page = block_on(contacts.list(&ctx, &q)).unwrap();
        match page.next_cursor {
            Some(c) => cursors.push(Some(c)),
            None => break,
        }
    }
    let pages = cursors
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let after = (i > 0).then(|| raw::customers_after(&conn, &tenant, owner, i));
            (c, after)
        })
        .collect::<Vec<_>>();
    PAGES.store(pages.len(), Ordering::Relaxed);
    Reads {
        _db: db,
        crm,
        ctx,
        conn: Mutex::new(conn),
        tenant,
        ids,
        owner,
        query,
        pages,
    }
});

fn get_crmkit(r: &Reads) -> impl FnMut() + '_ {
    let contacts = r.crm.contacts();
    move || {
        block_on(async {
            for id in &r.ids {
                let c = contacts
                    .get(&r.ctx, crmkit::ContactId::from_uuid(*id))
                    .await
                    .unwrap();
                divan::black_box(c);
            }
        })
    }
}

fn get_raw<'a>(r: &'a Reads, conn: &'a Connection) -> impl FnMut() + 'a {
    move || {
        for id in &r.ids {
            divan::black_box(raw::get_contact(conn, &r.tenant, id));
        }
    }
}

mod get_by_id {
    use super::*;

    /// 1000 gets per iteration.
    #[divan::bench(sample_count = 21, sample_size = 1)]
    fn crmkit(b: Bencher) {
        b.bench_local(get_crmkit(&READS));
    }

    #[divan::bench(sample_count = 21, sample_size = 1)]
    fn raw(b: Bencher) {
        let conn = READS.conn.lock().unwrap();
        b.bench_local(get_raw(&READS, &conn));
    }

    /// Both interleaved: what the report reads.
    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn pair(b: Bencher) {
        let r = &*READS;
        let conn = r.conn.lock().unwrap();
        let n = r.ids.len() as u32;
        common::interleaved(
            b,
            n,
            ("get/crmkit", get_crmkit(r)),
            ("get/raw", get_raw(r, &conn)),
        );
    }
}

/// crmkit's list of page `page` (0-based; `usize::MAX` for the last).
fn list_crmkit(r: &Reads, page: usize) -> impl FnMut() + '_ {
    let contacts = r.crm.contacts();
    let mut q = r.query.clone();
    q.cursor = r.pages[page.min(r.pages.len() - 1)].0.clone();
    move || {
        divan::black_box(block_on(contacts.list(&r.ctx, &q)).unwrap());
    }
}

fn list_raw<'a>(r: &'a Reads, conn: &'a Connection, page: usize) -> impl FnMut() + 'a {
    let after = r.pages[page.min(r.pages.len() - 1)].1.as_deref();
    move || {
        divan::black_box(raw::customers_page(conn, &r.tenant, r.owner, after));
    }
}

fn list_pair(b: Bencher, series: (&'static str, &'static str), page: usize) {
    let r = &*READS;
    let conn = r.conn.lock().unwrap();
    common::interleaved(
        b,
        1,
        (series.0, list_crmkit(r, page)),
        (series.1, list_raw(r, &conn, page)),
    );
}

mod list_page_1 {
    use super::*;

    #[divan::bench(sample_count = 15, sample_size = 20)]
    fn crmkit(b: Bencher) {
        b.bench_local(list_crmkit(&READS, 0));
    }

    #[divan::bench(sample_count = 15, sample_size = 20)]
    fn raw(b: Bencher) {
        let conn = READS.conn.lock().unwrap();
        b.bench_local(list_raw(&READS, &conn, 0));
    }

    #[divan::bench(sample_count = 30, sample_size = 20)]
    fn pair(b: Bencher) {
        list_pair(b, ("list1/crmkit", "list1/raw"), 0);
    }
}

mod list_deep_page {
    use super::*;

    #[divan::bench(sample_count = 15, sample_size = 20)]
    fn crmkit(b: Bencher) {
        b.bench_local(list_crmkit(&READS, usize::MAX));
    }

    #[divan::bench(sample_count = 15, sample_size = 20)]
    fn raw(b: Bencher) {
        let conn = READS.conn.lock().unwrap();
        b.bench_local(list_raw(&READS, &conn, usize::MAX));
    }

    #[divan::bench(sample_count = 30, sample_size = 20)]
    fn pair(b: Bencher) {
        list_pair(b, ("listdeep/crmkit", "listdeep/raw"), usize::MAX);
    }
}

mod memory_import {
    use super::*;

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn crmkit(b: Bencher) {
        b.with_inputs(|| {
            let crm = Crm::in_memory().unwrap();
            let (ctx, owners) = block_on(common::tenant(&crm, 10));
            let rows = inputs(memory_n(), &owners, "m");
            (crm, ctx, rows)
        })
        .bench_local_values(|(crm, ctx, rows)| {
            let n = rows.len();
            let report = timed_async(
                "memory/crmkit",
                1,
                crm.contacts().import(&ctx, rows, ImportOptions::default()),
            )
            .unwrap();
            assert_eq!(report.created.len(), n);
            crm
        });
    }
}

fn main() {
    common::main("contacts", || {
        let pages = PAGES.load(Ordering::Relaxed);
        vec![
            Line::new(
                format!("import {} contacts, SQLite file (batch API)", contacts_n()),
                "import/crmkit",
                "import/raw",
                "raw, one transaction",
                "<= 1.5",
            ),
            Line::new(
                "get contact by id (per call)",
                "get/crmkit",
                "get/raw",
                "raw, same query + decode",
                "<= 1.3",
            ),
            Line::new(
                format!("list owner+stage, 50/page, page 1 (of {pages})"),
                "list1/crmkit",
                "list1/raw",
                "raw, same query + decode",
                "<= 1.3",
            ),
            Line::new(
                format!("list owner+stage, 50/page, page {pages} (of {pages})"),
                "listdeep/crmkit",
                "listdeep/raw",
                "raw, same query + decode",
                "<= 1.3",
            ),
            Line::new(
                "deep page vs page 1 (crmkit)",
                "listdeep/crmkit",
                "list1/crmkit",
                "crmkit, page 1",
                "<= 2",
            ),
            Line::new(
                format!("import {} contacts, in-memory backend", memory_n()),
                "memory/crmkit",
                "-",
                "-",
                ">= 1M/s",
            ),
        ]
    });
}
