//! Helpers for tests that run against database servers.
//!
//! A test run must leave nothing behind on the servers: [`TestDatabase`] drops the database
//! it created when it is dropped, and [`SharedDatabase`] (one database shared by the tests
//! of a process) drops it when the last [`DatabaseHold`] on it ends. Databases that a
//! killed run could not drop are dropped by the next run once they are older than
//! [`MAX_AGE_SECS`].

use std::future::Future;
use std::sync::Mutex;

use crmkit_core::{Error, Result};

/// The prefix of every database [`fresh_database`] creates.
pub const DATABASE_PREFIX: &str = "crmkit_t_";

/// How old a test database must be (in seconds) before [`fresh_database`] drops it.
pub const MAX_AGE_SECS: u64 = 6 * 3600;

/// Given a server URL (`postgres://...` or `mysql://...`), creates a new uniquely named
/// empty database (`crmkit_t_<unix-secs>_<random>`), drops such databases older than
/// six hours, and returns the URL of the new database. A server that does not answer is
/// an error (never a skip).
pub async fn fresh_database(server_url: &str) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("{DATABASE_PREFIX}{now}_{}", &random[random.len() - 10..]);
    let scheme = server_url.split(':').next().unwrap_or("");
    match scheme {
        "postgres" | "postgresql" => {
            create_postgres(server_url, &name, now).await?;
            with_database(server_url, &name)
        }
        "mysql" | "mariadb" => {
            create_mysql(server_url, &name, now).await?;
            with_database(server_url, &name)
        }
        _ => Err(Error::Config(format!(
            "fresh_database needs a postgres:// or mysql:// URL, got {}",
            crate::redact(server_url)
        ))),
    }
}

/// Drops a database that [`fresh_database`] created: `server_url` is the URL that was
/// given to it and `database_url` the URL it returned. Only names with
/// [`DATABASE_PREFIX`] are dropped (anything else is a Config error); a database that is
/// already gone is fine. Open connections to it are closed by the server (PostgreSQL) or
/// must be idle (MySQL).
pub async fn drop_database(server_url: &str, database_url: &str) -> Result<()> {
    let name = database_name(database_url)?;
    match server_url.split(':').next().unwrap_or("") {
        "postgres" | "postgresql" => drop_postgres(server_url, &name).await,
        "mysql" | "mariadb" => drop_mysql(server_url, &name).await,
        _ => Err(Error::Config(format!(
            "drop_database needs a postgres:// or mysql:// URL, got {}",
            crate::redact(server_url)
        ))),
    }
}

/// The database name of a URL made by [`fresh_database`], checked to be one of ours (it is
/// spliced into DDL, which cannot bind identifiers).
fn database_name(url: &str) -> Result<String> {
    let start = url
        .find("://")
        .ok_or_else(|| Error::Config("database URL without ://".into()))?
        + 3;
    let after = &url[start..];
    let path = after.find('/').map(|i| &after[i + 1..]).unwrap_or("");
    let name = path.split('?').next().unwrap_or("");
    let ours = name.strip_prefix(DATABASE_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    if ours {
        Ok(name.to_owned())
    } else {
        Err(Error::Config(format!(
            "{name:?} is not a test database (they are named {DATABASE_PREFIX}...)"
        )))
    }
}

/// Runs `f` to completion on a new thread with a runtime of its own, so that it can be
/// called from anywhere, a `Drop` inside another runtime included (driver connections are
/// bound to the runtime that made them).
fn on_own_runtime<T, F, Fut>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::storage_from("building a runtime for a test database", e))?
            .block_on(f())
    })
    .join()
    .map_err(|_| Error::storage("the thread managing a test database panicked"))?
}

/// A fresh database on a server that is dropped when this value is dropped. Creating and
/// dropping it are reported on stderr (one line each, so a test log shows that a run
/// cleaned up); a failure to drop it too ([`fresh_database`] then drops it later by age).
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh database on the server of `server_url` (see [`fresh_database`]).
    /// Blocks the calling thread while it does (call it from `spawn_blocking` in async
    /// code).
    pub fn create(server_url: &str) -> Result<Self> {
        let server = server_url.to_owned();
        let url = on_own_runtime(move || async move { fresh_database(&server).await })?;
        eprintln!("crmkit test database {}: created", crate::redact(&url));
        Ok(TestDatabase {
            server: server_url.to_owned(),
            url,
        })
    }

    /// The URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, url) = (self.server.clone(), self.url.clone());
        match on_own_runtime(move || async move { drop_database(&server, &url).await }) {
            Ok(()) => eprintln!("crmkit test database {}: dropped", crate::redact(&self.url)),
            Err(e) => eprintln!(
                "crmkit test database {}: could not drop it: {e}",
                crate::redact(&self.url)
            ),
        }
    }
}

/// One fresh database on the server named by an environment variable, shared by the tests
/// of a process: created on first [`SharedDatabase::lease`], and dropped as soon as no
/// [`DatabaseHold`] on it is left (a later lease creates a new one). A test harness takes a
/// hold for as long as a test runs, so the database lives through the run and is gone
/// when the last test ends. Put it in a `static`.
#[derive(Debug)]
pub struct SharedDatabase {
    var: &'static str,
    state: Mutex<SharedState>,
}

#[derive(Debug)]
struct SharedState {
    db: Option<TestDatabase>,
    holds: usize,
    failed: Option<String>,
}

impl SharedDatabase {
    /// A shared database on the server named by the environment variable `var` (none is
    /// created yet).
    pub const fn new(var: &'static str) -> Self {
        SharedDatabase {
            var,
            state: Mutex::new(SharedState {
                db: None,
                holds: 0,
                failed: None,
            }),
        }
    }

    /// The server URL, when the variable is set and not empty.
    pub fn server_url(&self) -> Option<String> {
        std::env::var(self.var).ok().filter(|s| !s.is_empty())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the database (once there is one) from being dropped until the hold ends,
    /// without creating it.
    pub fn hold(&'static self) -> DatabaseHold {
        self.lock().holds += 1;
        DatabaseHold { db: self }
    }

    /// The URL of the shared database, created if there is none, and a hold on it. Blocks
    /// while it creates the database (call it from `spawn_blocking` in async code). A
    /// variable that is not set, or a server that fails, is an error; a failure is
    /// remembered, so later leases fail at once with the same message.
    pub fn lease(&'static self) -> Result<(String, DatabaseHold)> {
        let mut st = self.lock();
        if let Some(e) = &st.failed {
            return Err(Error::Config(e.clone()));
        }
        if st.db.is_none() {
            let server = self
                .server_url()
                .ok_or_else(|| Error::Config(format!("{} is not set", self.var)))?;
            match TestDatabase::create(&server) {
                Ok(db) => st.db = Some(db),
                Err(e) => {
                    let msg = format!(
                        "{} is set, but creating a fresh database on that server failed: {e}",
                        self.var
                    );
                    st.failed = Some(msg.clone());
                    return Err(Error::Config(msg));
                }
            }
        }
        st.holds += 1;
        let url = st.db.as_ref().map(|d| d.url.clone()).unwrap_or_default();
        Ok((url, DatabaseHold { db: self }))
    }
}

/// A hold on a [`SharedDatabase`]: the last one to end drops the database.
#[derive(Debug)]
pub struct DatabaseHold {
    db: &'static SharedDatabase,
}

impl Drop for DatabaseHold {
    fn drop(&mut self) {
        let mut st = self.db.lock();
        st.holds = st.holds.saturating_sub(1);
        if st.holds == 0 {
            // Dropped under the lock, so a concurrent lease waits and then makes a new one.
            drop(st.db.take());
        }
    }
}

#[cfg(not(feature = "postgres"))]
async fn create_postgres(_: &str, _: &str, _: u64) -> Result<()> {
    Err(crate::feature_off("postgres"))
}

#[cfg(not(feature = "postgres"))]
async fn drop_postgres(_: &str, _: &str) -> Result<()> {
    Err(crate::feature_off("postgres"))
}

#[cfg(not(feature = "mysql"))]
async fn create_mysql(_: &str, _: &str, _: u64) -> Result<()> {
    Err(crate::feature_off("mysql"))
}

#[cfg(not(feature = "mysql"))]
async fn drop_mysql(_: &str, _: &str) -> Result<()> {
    Err(crate::feature_off("mysql"))
}

/// Whether `name` is a test database created more than [`MAX_AGE_SECS`] before `now`.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn expired(name: &str, now: u64) -> bool {
    name.strip_prefix(DATABASE_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|created| now.saturating_sub(created) > MAX_AGE_SECS)
}

/// The URL with its database (path) replaced by `db`, keeping any query string.
fn with_database(url: &str, db: &str) -> Result<String> {
    let start = url
        .find("://")
        .ok_or_else(|| Error::Config("database URL without ://".into()))?
        + 3;
    let after = &url[start..];
    let auth_end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(auth_end);
    let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
    Ok(format!("{}{authority}/{db}{query}", &url[..start]))
}

/// How one server lists, drops and creates the test databases.
#[cfg(any(feature = "postgres", feature = "mysql"))]
struct Server {
    /// Names the server in errors.
    what: &'static str,
    /// The URL sqlx connects to for a server URL.
    url: fn(&str) -> String,
    /// Lists the databases whose names start with [`DATABASE_PREFIX`].
    list: &'static str,
    /// Drops a database if it exists (names are generated, `[a-z0-9_]` only: identifiers
    /// cannot be bound).
    drop: fn(&str) -> String,
    /// Creates a database.
    create: fn(&str) -> String,
}

#[cfg(feature = "postgres")]
const POSTGRES: Server = Server {
    what: "postgres server",
    url: str::to_owned,
    list: "SELECT datname FROM pg_database WHERE datname LIKE 'crmkit!_t!_%' ESCAPE '!'",
    drop: |name| format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    create: |name| format!("CREATE DATABASE \"{name}\""),
};

#[cfg(feature = "mysql")]
const MYSQL: Server = Server {
    what: "mysql server",
    url: |url| match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url.to_owned(),
    },
    list: "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'crmkit!_t!_%' ESCAPE '!'",
    drop: |name| format!("DROP DATABASE IF EXISTS `{name}`"),
    create: |name| format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
};

#[cfg(feature = "postgres")]
async fn create_postgres(url: &str, name: &str, now: u64) -> Result<()> {
    POSTGRES.create_db::<sqlx::Postgres>(url, name, now).await
}

#[cfg(feature = "postgres")]
async fn drop_postgres(url: &str, name: &str) -> Result<()> {
    POSTGRES.drop_db::<sqlx::Postgres>(url, name).await
}

#[cfg(feature = "mysql")]
async fn create_mysql(url: &str, name: &str, now: u64) -> Result<()> {
    MYSQL.create_db::<sqlx::MySql>(url, name, now).await
}

#[cfg(feature = "mysql")]
async fn drop_mysql(url: &str, name: &str) -> Result<()> {
    MYSQL.drop_db::<sqlx::MySql>(url, name).await
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Server {
    fn err(&self, e: sqlx::Error) -> Error {
        Error::storage_from(self.what, e)
    }

    async fn connect<D: crate::server::Driver>(&self, url: &str) -> Result<D::Connection> {
        use sqlx::Connection;
        D::Connection::connect(&(self.url)(url))
            .await
            .map_err(|e| self.err(e))
    }

    /// Drops the expired test databases, then creates `name`.
    async fn create_db<D: crate::server::Driver>(
        &self,
        url: &str,
        name: &str,
        now: u64,
    ) -> Result<()> {
        use crate::render::{Fetch, Kind, Stmt};
        use sqlx::Connection;
        let mut conn = self.connect::<D>(url).await?;
        let list = Fetch {
            stmt: Stmt {
                sql: self.list.into(),
                binds: vec![],
            },
            kinds: vec![Kind::Text],
        };
        let names = D::fetch(&mut conn, &list).await.map_err(|e| self.err(e))?;
        for old in names.iter().filter_map(|r| r.first()?.as_text()) {
            if expired(old, now) {
                let _ = D::ddl(&mut conn, (self.drop)(old)).await;
            }
        }
        D::ddl(&mut conn, (self.create)(name))
            .await
            .map_err(|e| self.err(e))?;
        conn.close().await.map_err(|e| self.err(e))
    }

    /// Drops `name` (which passed [`database_name`]).
    async fn drop_db<D: crate::server::Driver>(&self, url: &str, name: &str) -> Result<()> {
        use sqlx::Connection;
        let mut conn = self.connect::<D>(url).await?;
        D::ddl(&mut conn, (self.drop)(name))
            .await
            .map_err(|e| self.err(e))?;
        conn.close().await.map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_expiry() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306", "x").unwrap(),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert!(expired("crmkit_t_100_abc", 100 + MAX_AGE_SECS + 1));
        assert!(!expired("crmkit_t_100_abc", 100 + MAX_AGE_SECS));
        assert!(!expired("other_100", u64::MAX));
    }

    #[test]
    fn only_test_databases_are_dropped() {
        assert_eq!(
            database_name("postgres://u@h:5432/crmkit_t_1_ab?sslmode=disable").unwrap(),
            "crmkit_t_1_ab"
        );
        assert_eq!(
            database_name("mysql://root@h/crmkit_t_2_cd").unwrap(),
            "crmkit_t_2_cd"
        );
        for bad in [
            "postgres://u@h/postgres",
            "mysql://root@h",
            "postgres://u@h/crmkit_t_",
            "postgres://u@h/crmkit_t_x\"; DROP",
            "no-scheme",
        ] {
            assert!(matches!(database_name(bad), Err(Error::Config(_))), "{bad}");
        }
    }
}
