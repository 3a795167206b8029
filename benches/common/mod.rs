//! What every benchmark shares: sizes, the runtime, temporary databases, the raw SQLite
//! connection (opened like crmkit's writer), the recorder behind the ratio report, and the
//! raw baselines themselves ([`raw`]).
//!
//! The benchmarks run on [divan]. Each workload is a module of the bench file with divan
//! benchmarks for crmkit and its baseline (`crmkit` and `raw`, or two crmkit variants),
//! run in one process on the same data: either back to back, or, where a target is tight,
//! [`interleaved`] in one benchmark (`pair`: every iteration runs both sides, alternating
//! which goes first). The closures time themselves through [`timed`] as well, and after
//! divan's own tree [`main`] prints one line per workload:
//! crmkit's median, the baseline's median, their ratio, the spread of each side (the
//! interquartile range as a share of the median: how noisy the run was) and the target.
//!
//! `cargo bench --bench NAME` runs with the default sizes; every size can be set by its
//! environment variable (`CRMKIT_BENCH_...`, listed in each bench file). `cargo test
//! --benches` (or `cargo bench -- --test`) runs each benchmark once on tiny sizes, since
//! divan treats a run without `--bench` as a test run. Divan's options work as usual:
//! `cargo bench --bench contacts -- get_by_id` runs one workload, `--sample-count 5`
//! shortens every workload.
#![allow(dead_code)]

pub mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crmkit::{Actor, Crm, Ctx, Role, TenantId, UserId, UserInput};
use rusqlite::Connection;
use uuid::Uuid;

/// True when divan benchmarks (`cargo bench`), false in a test run (`cargo test
/// --benches`, `cargo bench -- --test`), where every benchmark runs once.
pub fn benchmarking() -> bool {
    static BENCH: LazyLock<bool> = LazyLock::new(|| {
        let args: Vec<String> = std::env::args().collect();
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
    });
    *BENCH
}

/// A workload size: the environment variable `var` if set, else `default` when
/// benchmarking and `test` in a test run.
pub fn size(var: &str, default: usize, test: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(if benchmarking() { default } else { test })
}

/// The runtime every benchmark blocks on (2 workers, like the machine).
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    &RT
}

/// Runs a future to completion on [`rt`].
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    rt().block_on(f)
}

/// What crmkit's SQLite writer sets (crates/crmkit-sql/src/sqlite.rs), so that a raw
/// baseline caches and syncs alike: WAL, `synchronous = NORMAL`, a 64 MiB page cache,
/// checkpoints every 16 384 WAL pages, byte-wise LIKE, bounded `PRAGMA optimize`.
pub const WRITER_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384; \
     PRAGMA case_sensitive_like = ON; PRAGMA analysis_limit = 1000;";

/// A raw connection to a database file, configured like crmkit's writer.
pub fn raw_conn(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open SQLite file");
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    conn.execute_batch(WRITER_PRAGMAS).expect("pragmas");
    conn
}

/// A database file in the temp directory, removed (with its WAL files) on drop, or by
/// [`main`] for one kept in a static.
pub struct TempDb(pub PathBuf);

static KEPT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

impl TempDb {
    /// A fresh path (no file yet).
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("crmkit-bench-{tag}-{}.db", Uuid::now_v7()));
        KEPT.lock().unwrap().push(path.clone());
        TempDb(path)
    }

    /// The `sqlite://` URL crmkit opens.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }

    /// A raw connection configured like crmkit's writer.
    pub fn connect(&self) -> Connection {
        raw_conn(&self.0)
    }

    /// Opens crmkit (every module) on this file.
    pub fn open(&self) -> Crm {
        block_on(Crm::open(&self.url())).expect("open crmkit")
    }
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        remove_db(&self.0);
        KEPT.lock().unwrap().retain(|p| p != &self.0);
    }
}

/// A tenant with `users` active users (the first an admin, the others reps); the admin's
/// context and the user ids.
pub async fn tenant(crm: &Crm, users: usize) -> (Ctx, Vec<UserId>) {
    let admin_id = UserId::new();
    let ctx = Ctx::new(TenantId::new(), Actor::new(admin_id, [Role::Admin], [])).unwrap();
    let mut ids = vec![];
    for i in 0..users.max(1) {
        let id = if i == 0 { admin_id } else { UserId::new() };
        crm.directory()
            .put_user(
                &ctx,
                UserInput {
                    id,
                    name: format!("User {i}"),
                    email: format!("user{i}@example.com"),
                    roles: vec![if i == 0 { Role::Admin } else { Role::Rep }],
                    teams: vec![],
                    active: true,
                    time_zone: "UTC".into(),
                },
            )
            .await
            .unwrap();
        ids.push(id);
    }
    (ctx, ids)
}

// ---- the ratio report ------------------------------------------------------------------

/// Timings per series ("workload/crmkit", "workload/raw", ...), per call or per item.
static SAMPLES: Mutex<BTreeMap<String, Vec<Duration>>> = Mutex::new(BTreeMap::new());

/// Runs `f`, records its time divided by `items` under `series`, and returns its output.
/// Divan times the same closure; this copy is what the ratio report reads.
pub fn timed<O>(series: &str, items: u32, f: impl FnOnce() -> O) -> O {
    let t = Instant::now();
    let out = f();
    record(series, t.elapsed() / items.max(1));
    out
}

/// Records one sample of `series` (a time per item) that the caller measured itself,
/// where setup inside an iteration must not be timed.
pub fn record(series: &str, per_item: Duration) {
    SAMPLES
        .lock()
        .unwrap()
        .entry(series.to_owned())
        .or_default()
        .push(per_item);
}

/// [`timed`] around a future run on [`rt`].
pub fn timed_async<F: std::future::Future>(series: &str, items: u32, f: F) -> F::Output {
    timed(series, items, || block_on(f))
}

/// Benchmarks two sides interleaved: each iteration runs both, `a` first in odd
/// iterations and `b` first in even ones, each timed into its series (per item). On a
/// machine shared with other work, the ratio of the two is then measured under the same
/// load, which back-to-back runs of one side and then the other are not.
pub fn interleaved(
    b: divan::Bencher,
    items: u32,
    (a_series, mut a): (&str, impl FnMut()),
    (b_series, mut bb): (&str, impl FnMut()),
) {
    let mut flip = false;
    b.bench_local(|| {
        flip = !flip;
        if flip {
            timed(a_series, items, &mut a);
            timed(b_series, items, &mut bb);
        } else {
            timed(b_series, items, &mut bb);
            timed(a_series, items, &mut a);
        }
    });
}

/// One line of the report: `series` next to `baseline`.
pub struct Line {
    /// What is measured.
    pub workload: String,
    /// The crmkit series.
    pub series: &'static str,
    /// The series it is compared with.
    pub baseline: &'static str,
    /// What the baseline is.
    pub baseline_is: &'static str,
    /// The target for the ratio (or "report").
    pub target: &'static str,
}

impl Line {
    /// A line comparing `series` with `baseline`.
    pub fn new(
        workload: impl Into<String>,
        series: &'static str,
        baseline: &'static str,
        baseline_is: &'static str,
        target: &'static str,
    ) -> Line {
        Line {
            workload: workload.into(),
            series,
            baseline,
            baseline_is,
            target,
        }
    }
}

struct Summary {
    median: Duration,
    spread: f64,
    n: usize,
}

fn summary(series: &str) -> Option<Summary> {
    let map = SAMPLES.lock().unwrap();
    let mut v = map.get(series)?.clone();
    if v.is_empty() {
        return None;
    }
    v.sort();
    // Best of two (one-shot workloads run once or twice); the median from three on.
    let median = if v.len() < 3 { v[0] } else { v[v.len() / 2] };
    let (q1, q3) = (v[v.len() / 4], v[(v.len() * 3) / 4]);
    let spread = (q3 - q1).as_secs_f64() / median.as_secs_f64().max(f64::MIN_POSITIVE);
    Some(Summary {
        median,
        spread,
        n: v.len(),
    })
}

fn cell(s: &Option<Summary>) -> (String, String) {
    match s {
        Some(s) => (
            format!("{:.2?}", s.median),
            format!("n={} iqr {:.0}%", s.n, s.spread * 100.0),
        ),
        None => ("-".into(), String::new()),
    }
}

/// Prints the report: per line, the medians of both series, their ratio, each side's
/// sample count and interquartile range (relative to its median), and the target.
pub fn report(title: &str, lines: &[Line]) {
    println!(
        "\n{title}: crmkit next to its baseline (medians; iqr = interquartile range / median)"
    );
    println!(
        "{:<60} {:>11} {:>15} {:>11} {:>15} {:>6}  {:<32} target",
        "workload", "crmkit", "", "baseline", "", "ratio", "baseline is"
    );
    for l in lines {
        let a = summary(l.series);
        let b = summary(l.baseline);
        if a.is_none() && b.is_none() {
            continue;
        }
        let ratio = match (&a, &b) {
            (Some(a), Some(b)) => format!(
                "{:.2}",
                a.median.as_secs_f64() / b.median.as_secs_f64().max(f64::MIN_POSITIVE)
            ),
            _ => "-".into(),
        };
        let (am, an) = cell(&a);
        let (bm, bn) = cell(&b);
        println!(
            "{:<60} {am:>11} {an:>15} {bm:>11} {bn:>15} {ratio:>6}  {:<32} {}",
            l.workload, l.baseline_is, l.target
        );
    }
}

/// Runs divan (its own output first), then prints the ratio report (when benchmarking)
/// and removes the databases kept by the benchmarks' fixtures.
pub fn main(title: &str, lines: impl FnOnce() -> Vec<Line>) {
    divan::Divan::from_args().main();
    if benchmarking() {
        report(title, &lines());
    }
    for p in KEPT.lock().unwrap().drain(..) {
        remove_db(&p);
    }
}
