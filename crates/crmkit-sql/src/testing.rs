//! Helpers for tests that run against database servers.

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

#[cfg(feature = "postgres")]
use pg::create as create_postgres;

#[cfg(not(feature = "postgres"))]
async fn create_postgres(_: &str, _: &str, _: u64) -> Result<()> {
    Err(crate::feature_off("postgres"))
}

#[cfg(feature = "mysql")]
use my::create as create_mysql;

#[cfg(not(feature = "mysql"))]
async fn create_mysql(_: &str, _: &str, _: u64) -> Result<()> {
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

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use sqlx::Connection;

    fn err(e: sqlx::Error) -> Error {
        Error::storage_from("postgres server", e)
    }

    pub(super) async fn create(url: &str, name: &str, now: u64) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(url).await.map_err(err)?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'crmkit!_t!_%' ESCAPE '!'",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(err)?;
        for old in names.iter().filter(|n| expired(n, now)) {
            // Generated names only ([a-z0-9_]); identifiers cannot be bound.
            let sql = format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await;
        }
        let sql = format!("CREATE DATABASE \"{name}\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(err)?;
        conn.close().await.map_err(err)
    }
}

#[cfg(feature = "mysql")]
mod my {
    use super::*;
    use sqlx::Connection;

    fn err(e: sqlx::Error) -> Error {
        Error::storage_from("mysql server", e)
    }

    pub(super) async fn create(url: &str, name: &str, now: u64) -> Result<()> {
        let url = match url.strip_prefix("mariadb:") {
            Some(rest) => format!("mysql:{rest}"),
            None => url.to_owned(),
        };
        let mut conn = sqlx::MySqlConnection::connect(&url).await.map_err(err)?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'crmkit!_t!_%' ESCAPE '!'",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(err)?;
        for old in names.iter().filter(|n| expired(n, now)) {
            let sql = format!("DROP DATABASE IF EXISTS `{old}`");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await;
        }
        let sql = format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(err)?;
        conn.close().await.map_err(err)
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
}
