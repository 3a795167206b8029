//! # crmkit-testkit
//!
//! The conformance suite of crmkit: every storage backend (the in-memory reference
//! backend, SQLite as a file and in memory, PostgreSQL and MySQL/MariaDB) runs the same
//! scenarios and model-based property tests, and must give the same answers.
//!
//! The main design decision: **the checks are public functions over a
//! [`crmkit_core::Backend`]**, as in object_store's exported integration suite. A
//! third-party backend runs exactly the checks the built-in ones run, by calling them with
//! its own `Arc<dyn Backend>`; a check panics (with a message naming the broken rule) when
//! the backend violates the contract, and returns `Err` when the backend fails in a way the
//! contract does not allow for at that point.
//!
//! - [`directory`]: who manages and reads users, teams and custom fields, request contexts
//!   from [`crmkit_core::Directory::ctx_for`], and no work for deactivated users.
//! - [`storage`]: the storage contract (round trips, versions, unique indexes, atomicity
//!   under injected faults, the event sequence, tenant isolation, select semantics,
//!   aggregates, custom fields) and a model-based differential property test against the
//!   in-memory backend.
//! - The harness in this module: [`TestBackend`], [`backends`], [`open`] and
//!   [`run_on_all`], which run one scenario on every configured backend and report which
//!   backend failed.
//!
//! ## Which backends run
//!
//! Memory, SQLite (a temporary file) and SQLite (`sqlite::memory:`) always run. PostgreSQL
//! runs when `CRMKIT_TEST_POSTGRES_URL` is set and MySQL when `CRMKIT_TEST_MYSQL_URL` is
//! set; the URL names a server on which the suite creates one fresh database per test
//! process, and drops it again when the process's last test is done with it (so a run
//! leaves no `crmkit_t_*` database behind; one a killed run left is dropped by a later run
//! after six hours). If a URL is set but the server does not answer, the tests fail; they
//! never skip.
//!
//! `CRMKIT_TESTKIT_ONLY` (a comma-separated list of `memory`, `sqlite-file`,
//! `sqlite-memory`, `postgres`, `mysql`) restricts the run to those backends, and the
//! harness says so on stderr, so nothing is skipped silently. Naming a server backend whose
//! URL is not set is an error.
//!
//! ## Example
//!
//! Running one check of the storage suite on the in-memory backend:
//!
//! ```
//! use crmkit_testkit::{TestBackend, open, storage};
//!
//! let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
//! rt.block_on(async {
//!     let modules = storage::modules()?;
//!     let backend = open(TestBackend::Memory, &modules).await?;
//!     storage::round_trip(backend).await
//! })?;
//! # Ok::<(), crmkit_core::Error>(())
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crmkit_core::memory::MemoryBackend;
use crmkit_core::store::BackendKind;
use crmkit_core::{Backend, Error, Modules, Result};
use crmkit_sql::testing::{DatabaseHold, SharedDatabase};

#[macro_use]
pub mod check;
#[macro_use]
mod support;
pub mod activities;
pub mod analytics;
pub mod analytics_funnel;
pub mod analytics_leads;
pub mod analytics_service;
pub mod analytics_snapshots;
pub mod automation;
pub mod automation_engine;
pub mod automation_scoring;
pub mod automation_sequences;
pub mod contacts;
pub mod directory;
pub mod pipeline_campaigns;
pub mod pipeline_deals;
pub mod pipeline_leads;
pub mod queries;
pub mod records;
pub mod records_fixtures;
mod sla_support;
pub mod storage;
pub mod tickets;
pub mod tickets_analytics;
pub mod tickets_calls;
pub mod tickets_sla;

#[doc(hidden)]
pub use crmkit_core as __core;

/// Inside an `impl Backend for Wrapper`, defines the named [`Backend`] methods as calls of
/// the same method on the field `self.$inner` (anything that derefs to a [`Backend`]), so a
/// test backend that wraps another (to inject a bug, to clean up after itself) writes out
/// only the methods it changes.
///
/// ```
/// use crmkit_core::Backend;
/// use crmkit_core::memory::MemoryBackend;
/// use crmkit_core::store::{BoxFuture, Changeset, Commit};
///
/// /// A backend that sees every commit before the memory backend does.
/// struct Watched {
///     inner: MemoryBackend,
/// }
///
/// impl Backend for Watched {
///     crmkit_testkit::delegate_backend!(
///         inner: kind, schema, get, select, count, aggregate, reserve, inject_fault
///     );
///
///     fn commit(&self, changeset: Changeset) -> BoxFuture<'_, crmkit_core::Result<Commit>> {
///         eprintln!("{} writes", changeset.writes.len());
///         self.inner.commit(changeset)
///     }
/// }
/// ```
#[macro_export]
macro_rules! delegate_backend {
    ($inner:ident: $($method:ident),* $(,)?) => {
        $($crate::delegate_backend!(@ $inner $method);)*
    };
    (@ $inner:ident kind) => {
        fn kind(&self) -> $crate::__core::store::BackendKind {
            self.$inner.kind()
        }
    };
    (@ $inner:ident schema) => {
        fn schema(&self) -> &$crate::__core::store::Schema {
            self.$inner.schema()
        }
    };
    (@ $inner:ident get) => {
        fn get<'a>(
            &'a self,
            tenant: $crate::__core::TenantId,
            table: &'a str,
            key: &'a [$crate::__core::store::Value],
        ) -> $crate::__core::store::BoxFuture<
            'a,
            $crate::__core::Result<Option<$crate::__core::store::Row>>,
        > {
            self.$inner.get(tenant, table, key)
        }
    };
    (@ $inner:ident select) => {
        fn select<'a>(
            &'a self,
            tenant: $crate::__core::TenantId,
            select: &'a $crate::__core::store::Select,
        ) -> $crate::__core::store::BoxFuture<
            'a,
            $crate::__core::Result<Vec<$crate::__core::store::Row>>,
        > {
            self.$inner.select(tenant, select)
        }
    };
    (@ $inner:ident count) => {
        fn count<'a>(
            &'a self,
            tenant: $crate::__core::TenantId,
            table: &'a str,
            cond: &'a $crate::__core::store::Cond,
        ) -> $crate::__core::store::BoxFuture<'a, $crate::__core::Result<u64>> {
            self.$inner.count(tenant, table, cond)
        }
    };
    (@ $inner:ident aggregate) => {
        fn aggregate<'a>(
            &'a self,
            tenant: $crate::__core::TenantId,
            agg: &'a $crate::__core::store::Aggregate,
        ) -> $crate::__core::store::BoxFuture<
            'a,
            $crate::__core::Result<Vec<$crate::__core::store::Row>>,
        > {
            self.$inner.aggregate(tenant, agg)
        }
    };
    (@ $inner:ident commit) => {
        fn commit(
            &self,
            changeset: $crate::__core::store::Changeset,
        ) -> $crate::__core::store::BoxFuture<
            '_,
            $crate::__core::Result<$crate::__core::store::Commit>,
        > {
            self.$inner.commit(changeset)
        }
    };
    (@ $inner:ident reserve) => {
        fn reserve<'a>(
            &'a self,
            tenant: $crate::__core::TenantId,
            sequence: &'a str,
            n: u64,
        ) -> $crate::__core::store::BoxFuture<'a, $crate::__core::Result<u64>> {
            self.$inner.reserve(tenant, sequence, n)
        }
    };
    (@ $inner:ident inject_fault) => {
        fn inject_fault(&self, fault: Option<$crate::__core::store::Fault>) {
            self.$inner.inject_fault(fault)
        }
    };
}

/// The environment variable naming a PostgreSQL server to test against.
pub const POSTGRES_URL_VAR: &str = "CRMKIT_TEST_POSTGRES_URL";
/// The environment variable naming a MySQL/MariaDB server to test against.
pub const MYSQL_URL_VAR: &str = "CRMKIT_TEST_MYSQL_URL";
/// The environment variable that restricts a run to some backends (comma-separated names,
/// as [`TestBackend::name`] spells them).
pub const ONLY_VAR: &str = "CRMKIT_TESTKIT_ONLY";

/// A backend the suite can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestBackend {
    /// The in-memory reference backend.
    Memory,
    /// SQLite in a new temporary file.
    SqliteFile,
    /// SQLite in memory (`sqlite::memory:`).
    SqliteMemory,
    /// PostgreSQL, on the server named by `CRMKIT_TEST_POSTGRES_URL`.
    Postgres,
    /// MySQL or MariaDB, on the server named by `CRMKIT_TEST_MYSQL_URL`.
    Mysql,
}

impl TestBackend {
    /// Every backend, in the order the suite runs them.
    pub const ALL: [TestBackend; 5] = [
        TestBackend::Memory,
        TestBackend::SqliteFile,
        TestBackend::SqliteMemory,
        TestBackend::Postgres,
        TestBackend::Mysql,
    ];

    /// The backend's name in output and in `CRMKIT_TESTKIT_ONLY`.
    pub fn name(self) -> &'static str {
        match self {
            TestBackend::Memory => "memory",
            TestBackend::SqliteFile => "sqlite-file",
            TestBackend::SqliteMemory => "sqlite-memory",
            TestBackend::Postgres => "postgres",
            TestBackend::Mysql => "mysql",
        }
    }

    /// The kind of backend [`open`] returns for this.
    pub fn kind(self) -> BackendKind {
        match self {
            TestBackend::Memory => BackendKind::Memory,
            TestBackend::SqliteFile | TestBackend::SqliteMemory => BackendKind::Sqlite,
            TestBackend::Postgres => BackendKind::Postgres,
            TestBackend::Mysql => BackendKind::Mysql,
        }
    }

    /// The environment variable holding the server URL, for server backends.
    pub fn url_var(self) -> Option<&'static str> {
        match self {
            TestBackend::Postgres => Some(POSTGRES_URL_VAR),
            TestBackend::Mysql => Some(MYSQL_URL_VAR),
            _ => None,
        }
    }
}

impl fmt::Display for TestBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn env_set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty())
}

/// The backends to run on: Memory, SqliteFile and SqliteMemory always; Postgres when
/// `CRMKIT_TEST_POSTGRES_URL` is set; Mysql when `CRMKIT_TEST_MYSQL_URL` is set. When
/// `CRMKIT_TESTKIT_ONLY` is set, only the backends it names (and a notice goes to stderr).
///
/// # Panics
///
/// When `CRMKIT_TESTKIT_ONLY` names an unknown backend, or a server backend whose URL
/// variable is not set.
pub fn backends() -> Vec<TestBackend> {
    let configured: Vec<TestBackend> = TestBackend::ALL
        .into_iter()
        .filter(|b| b.url_var().is_none_or(env_set))
        .collect();
    let Ok(only) = std::env::var(ONLY_VAR) else {
        return configured;
    };
    let mut chosen = vec![];
    for name in only.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(b) = TestBackend::ALL.into_iter().find(|b| b.name() == name) else {
            panic!(
                "{ONLY_VAR}={only}: unknown backend {name:?}; use memory, sqlite-file, \
                 sqlite-memory, postgres or mysql"
            );
        };
        if !configured.contains(&b) {
            panic!(
                "{ONLY_VAR}={only} names {name}, but {} is not set",
                b.url_var().unwrap_or("its URL variable")
            );
        }
        if !chosen.contains(&b) {
            chosen.push(b);
        }
    }
    let left_out: Vec<&str> = configured
        .iter()
        .filter(|b| !chosen.contains(b))
        .map(|b| b.name())
        .collect();
    if !left_out.is_empty() {
        eprintln!(
            "conformance: {ONLY_VAR}={only}: not running on {}",
            left_out.join(", ")
        );
    }
    chosen
}

/// One fresh database per server backend, shared by the tests of the process and dropped
/// when the last of them is done with it (see [`crmkit_sql::testing::SharedDatabase`]).
static POSTGRES_DB: SharedDatabase = SharedDatabase::new(POSTGRES_URL_VAR);
static MYSQL_DB: SharedDatabase = SharedDatabase::new(MYSQL_URL_VAR);
/// Serialises opening (and so migrating) the shared server databases within the process.
static POSTGRES_OPEN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static MYSQL_OPEN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn shared_database(b: TestBackend) -> Option<&'static SharedDatabase> {
    match b {
        TestBackend::Postgres => Some(&POSTGRES_DB),
        TestBackend::Mysql => Some(&MYSQL_DB),
        _ => None,
    }
}

/// Opens backend `b` for `modules`' schema, empty apart from the migrations (server
/// backends share one fresh database per process; tests keep apart by using fresh random
/// tenants).
///
/// The backend is bound to the runtime it is opened on: open it inside the runtime that
/// runs the test. A server database lives while a backend opened on it (or a run of
/// [`run_on_all`]) does: when the last one is dropped, the database is dropped from the
/// server, so a test process leaves no database behind.
pub async fn open(b: TestBackend, modules: &Modules) -> Result<Arc<dyn Backend>> {
    match b {
        TestBackend::Memory => Ok(Arc::new(MemoryBackend::new(
            modules.schema().as_ref().clone(),
        ))),
        TestBackend::SqliteFile => {
            let path = std::env::temp_dir().join(format!(
                "crmkit-testkit-{}.sqlite3",
                uuid::Uuid::now_v7().simple()
            ));
            let url = format!("sqlite://{}", path.display());
            match crmkit_sql::open(&url, modules).await {
                Ok(inner) => Ok(Arc::new(CleanupBackend {
                    inner,
                    _cleanup: Cleanup::TempFile(path),
                })),
                Err(e) => {
                    remove_database_files(&path);
                    Err(e)
                }
            }
        }
        TestBackend::SqliteMemory => crmkit_sql::open("sqlite::memory:", modules).await,
        TestBackend::Postgres | TestBackend::Mysql => {
            let shared = shared_database(b).expect("a server backend");
            let (url, hold) = tokio::task::spawn_blocking(move || shared.lease())
                .await
                .map_err(|e| Error::storage_from("creating the test database", e))??;
            let lock = if b == TestBackend::Postgres {
                &POSTGRES_OPEN
            } else {
                &MYSQL_OPEN
            };
            let _guard = lock.lock().await;
            match crmkit_sql::open(&url, modules).await {
                Ok(inner) => Ok(Arc::new(CleanupBackend {
                    inner,
                    _cleanup: Cleanup::Server { _hold: hold },
                })),
                Err(Error::Config(m)) => {
                    Err(Error::Config(format!("opening the {b} test database: {m}")))
                }
                Err(other) => Err(other),
            }
        }
    }
}

fn remove_database_files(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// What a test backend cleans up after itself.
enum Cleanup {
    /// A temporary SQLite file, deleted.
    TempFile(PathBuf),
    /// A hold on a shared server database (dropped from the server with the last hold).
    Server {
        /// Held for its `Drop`.
        _hold: DatabaseHold,
    },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::TempFile(path) = self {
            remove_database_files(path);
        }
    }
}

/// A backend that cleans up its database when dropped (after the backend itself, which is
/// the first field, has closed its connections).
struct CleanupBackend {
    inner: Arc<dyn Backend>,
    _cleanup: Cleanup,
}

impl Backend for CleanupBackend {
    delegate_backend!(inner: kind, schema, get, select, count, aggregate, commit, reserve, inject_fault);
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_owned()
    }
}

/// Runs `f` on a runtime built for each backend of [`backends`], printing
/// `conformance <name> on <backend>: ok` (or `FAILED`) for each, and panics at the end
/// naming every backend that failed (returned `Err` or panicked).
///
/// Each backend gets a new multi-thread runtime; `f` opens its backend inside it (with
/// [`open`]).
pub fn run_on_all<F, Fut>(name: &str, f: F)
where
    F: Fn(TestBackend) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    run_sync_on_all(name, |b| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .map_err(|e| Error::storage_from("building a tokio runtime", e))?;
        rt.block_on(f(b))
    });
}

/// Like [`run_on_all`] for a scenario that builds its own runtime (such as
/// [`storage::model_differential`]): calls `f` once per backend of [`backends`], reports each
/// and panics at the end naming every backend that failed.
pub fn run_sync_on_all<F>(name: &str, f: F)
where
    F: Fn(TestBackend) -> Result<()>,
{
    let mut failed = vec![];
    let backends = backends();
    // The server databases live through the whole run, not just while one backend is open.
    let _holds: Vec<DatabaseHold> = backends
        .iter()
        .filter_map(|b| shared_database(*b))
        .map(SharedDatabase::hold)
        .collect();
    for b in backends {
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(b)));
        let took = start.elapsed();
        match outcome {
            Ok(Ok(())) => println!("conformance {name} on {b}: ok ({took:.2?})"),
            Ok(Err(e)) => {
                println!("conformance {name} on {b}: FAILED: {e}");
                failed.push(format!("{b}: {e}"));
            }
            Err(p) => {
                let msg = panic_message(p.as_ref());
                println!("conformance {name} on {b}: FAILED (panic): {msg}");
                failed.push(format!("{b}: {msg}"));
            }
        }
    }
    if !failed.is_empty() {
        panic!(
            "conformance {name} failed on {} backend(s):\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}
