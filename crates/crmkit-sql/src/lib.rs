//! # crmkit-sql
//!
//! The SQL backend of crmkit: SQLite (embedded, through rusqlite), PostgreSQL and
//! MySQL/MariaDB (servers, through sqlx), each implementing crmkit-core's
//! [`Backend`] storage contract with exactly the observable behaviour
//! of the in-memory reference backend.
//!
//! The main design decision: **one dialect-neutral renderer**. Conditions, selects,
//! aggregates, writes and DDL are turned into sea-query statements in one module and
//! rendered per [`Dialect`]; values are always bound, and every identifier is checked
//! against the schema first. The backends only execute statements, decode rows by the
//! schema's column types, and run a commit (row writes, audit rows, the per-tenant event
//! sequence, event rows) in one transaction.
//!
//! Pick a backend at run time with [`open`]:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let modules = crmkit_core::Modules::builder().build()?;
//! let backend = crmkit_sql::open("sqlite::memory:", &modules).await?;
//! assert_eq!(backend.kind(), crmkit_core::BackendKind::Sqlite);
//! # Ok::<(), crmkit_core::Error>(()) }).unwrap();
//! ```
//!
//! Type mapping (identical values on every backend): `tenant_id` and UUIDs are
//! `VARCHAR(36)` lowercase hyphenated text; bounded text is `VARCHAR(n)` (`TEXT` on
//! SQLite); long text is `TEXT` (`MEDIUMTEXT` on MySQL); integers, booleans, timestamps
//! and decimals are `BIGINT`; dates are `VARCHAR(10)`. Text compares byte-wise everywhere
//! (`COLLATE "C"` on PostgreSQL, a binary no-pad collation on MySQL, SQLite's BINARY).

mod dialect;
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
mod render;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server;
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod testing;

use std::sync::Arc;

use crmkit_core::{Backend, Error, Modules, Result};

pub use dialect::Dialect;
#[cfg(feature = "sqlite")]
pub use sqlite::{QueryPlan, SqliteBackend};

/// Opens a backend by URL and applies every composed module's pending migrations.
///
/// URLs: `sqlite://relative/or/absolute/path.db` (created if missing), `sqlite::memory:`,
/// `postgres://...` / `postgresql://...`, `mysql://...` / `mariadb://...`.
/// A scheme whose cargo feature is off, or an unknown scheme, is [`Error::Config`].
pub async fn open(url: &str, modules: &Modules) -> Result<Arc<dyn Backend>> {
    match scheme(url) {
        Some("sqlite") => open_sqlite(url, modules).await,
        Some("postgres" | "postgresql") => open_postgres(url, modules).await,
        Some("mysql" | "mariadb") => open_mysql(url, modules).await,
        _ => Err(Error::Config(format!(
            "unknown database URL scheme in {}",
            redact(url)
        ))),
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, modules: &Modules) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(SqliteBackend::open(url, modules).await?))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, modules: &Modules) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(PostgresBackend::open(url, modules).await?))
}

#[cfg(feature = "mysql")]
async fn open_mysql(url: &str, modules: &Modules) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(MysqlBackend::open(url, modules).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_: &str, _: &Modules) -> Result<Arc<dyn Backend>> {
    Err(feature_off("sqlite"))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: &Modules) -> Result<Arc<dyn Backend>> {
    Err(feature_off("postgres"))
}

#[cfg(not(feature = "mysql"))]
async fn open_mysql(_: &str, _: &Modules) -> Result<Arc<dyn Backend>> {
    Err(feature_off("mysql"))
}

/// The Config error for a URL whose backend was compiled out.
#[cfg_attr(
    all(feature = "sqlite", feature = "postgres", feature = "mysql"),
    allow(dead_code)
)]
pub(crate) fn feature_off(feature: &str) -> Error {
    Error::Config(format!(
        "crmkit-sql was built without its `{feature}` feature"
    ))
}

/// The URL's scheme (before `:`), lowercased.
fn scheme(url: &str) -> Option<&str> {
    let (s, _) = url.split_once(':')?;
    Some(s)
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(at)) if at > a => {
            let userinfo = &url[a + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..a + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

macro_rules! server_backend {
    ($(#[$doc:meta])* $name:ident, $db:ty, $kind:expr, $feature:literal) => {
        $(#[$doc])*
        #[cfg(feature = $feature)]
        pub struct $name(server::ServerBackend<$db>);

        #[cfg(feature = $feature)]
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        #[cfg(feature = $feature)]
        impl $name {
            /// Connects a pool to the URL and applies every composed module's pending
            /// migrations (serialized across processes by a database lock).
            pub async fn open(url: &str, modules: &Modules) -> Result<Self> {
                server::ServerBackend::open(url, modules).await.map($name)
            }
        }

        #[cfg(feature = $feature)]
        impl Backend for $name {
            fn kind(&self) -> crmkit_core::BackendKind {
                $kind
            }

            fn schema(&self) -> &crmkit_core::store::Schema {
                self.0.schema()
            }

            fn get<'a>(
                &'a self,
                tenant: crmkit_core::TenantId,
                table: &'a str,
                key: &'a [crmkit_core::store::Value],
            ) -> crmkit_core::store::BoxFuture<'a, Result<Option<crmkit_core::store::Row>>> {
                Box::pin(self.0.get(tenant, table, key))
            }

            fn select<'a>(
                &'a self,
                tenant: crmkit_core::TenantId,
                select: &'a crmkit_core::store::Select,
            ) -> crmkit_core::store::BoxFuture<'a, Result<Vec<crmkit_core::store::Row>>> {
                Box::pin(self.0.select(tenant, select))
            }

            fn count<'a>(
                &'a self,
                tenant: crmkit_core::TenantId,
                table: &'a str,
                cond: &'a crmkit_core::store::Cond,
            ) -> crmkit_core::store::BoxFuture<'a, Result<u64>> {
                Box::pin(self.0.count(tenant, table, cond))
            }

            fn aggregate<'a>(
                &'a self,
                tenant: crmkit_core::TenantId,
                agg: &'a crmkit_core::store::Aggregate,
            ) -> crmkit_core::store::BoxFuture<'a, Result<Vec<crmkit_core::store::Row>>> {
                Box::pin(self.0.aggregate(tenant, agg))
            }

            fn commit(
                &self,
                changeset: crmkit_core::Changeset,
            ) -> crmkit_core::store::BoxFuture<'_, Result<crmkit_core::Commit>> {
                Box::pin(self.0.commit(changeset))
            }

            fn reserve<'a>(
                &'a self,
                tenant: crmkit_core::TenantId,
                sequence: &'a str,
                n: u64,
            ) -> crmkit_core::store::BoxFuture<'a, Result<u64>> {
                Box::pin(self.0.reserve(tenant, sequence, n))
            }

            fn inject_fault(&self, fault: Option<crmkit_core::Fault>) {
                self.0.inject_fault(fault)
            }
        }
    };
}

server_backend!(
    /// The PostgreSQL backend (through a sqlx pool).
    PostgresBackend,
    sqlx::Postgres,
    crmkit_core::BackendKind::Postgres,
    "postgres"
);
server_backend!(
    /// The MySQL / MariaDB backend (through a sqlx pool).
    MysqlBackend,
    sqlx::MySql,
    crmkit_core::BackendKind::Mysql,
    "mysql"
);
