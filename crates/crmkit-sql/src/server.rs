//! PostgreSQL and MySQL/MariaDB through sqlx pools.
//!
//! Both servers share one implementation, generic over a small [`Driver`] trait that
//! executes a rendered statement on a connection and classifies driver errors. A commit is
//! one sqlx transaction; a deadlock or serialization failure retries the whole changeset
//! a few times (it is plain data, so a retry is safe).

use std::sync::Arc;
use std::sync::Mutex as StdMutex;

use crmkit_core::event::EVENT_SEQUENCE;
use crmkit_core::id::TenantId;
use crmkit_core::store::{
    Aggregate, BoxFuture, Changeset, Commit, Cond, Fault, Row, Schema, Select, TableDef, Value,
    Write,
};
use crmkit_core::{Error, Modules, Result};
use sqlx::Pool;
use sqlx::pool::PoolOptions;

use crate::dialect::Dialect;
use crate::render::{Fetch, Renderer, Stmt, int_arg, text_arg};
use crate::shared::{
    Steps, block_start, duplicate, index_named_in, now_micros, pending, sort_groups, update_missed,
};

/// What the generic server backend needs from a sqlx driver.
pub(crate) trait Driver: sqlx::Database {
    /// The dialect.
    const DIALECT: Dialect;

    /// Executes a statement, returning the number of affected (matched) rows.
    fn exec<'a>(
        conn: &'a mut Self::Connection,
        stmt: &'a Stmt,
    ) -> BoxFuture<'a, std::result::Result<u64, sqlx::Error>>;

    /// Runs a query and decodes its rows.
    fn fetch<'a>(
        conn: &'a mut Self::Connection,
        fetch: &'a Fetch,
    ) -> BoxFuture<'a, std::result::Result<Vec<Row>, sqlx::Error>>;

    /// Executes raw DDL (built by the renderer from the schema; no values).
    fn ddl<'a>(
        conn: &'a mut Self::Connection,
        sql: String,
    ) -> BoxFuture<'a, std::result::Result<(), sqlx::Error>>;
}

macro_rules! driver {
    ($db:ty, $dialect:expr) => {
        impl Driver for $db {
            const DIALECT: Dialect = $dialect;

            fn exec<'a>(
                conn: &'a mut Self::Connection,
                stmt: &'a Stmt,
            ) -> BoxFuture<'a, std::result::Result<u64, sqlx::Error>> {
                Box::pin(async move {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(stmt.sql.clone()));
                    for b in &stmt.binds {
                        q = match b {
                            crate::render::Bind::Int(v) => q.bind(*v),
                            crate::render::Bind::Text(v) => q.bind(v.clone()),
                        };
                    }
                    Ok(q.execute(&mut *conn).await?.rows_affected())
                })
            }

            fn fetch<'a>(
                conn: &'a mut Self::Connection,
                fetch: &'a Fetch,
            ) -> BoxFuture<'a, std::result::Result<Vec<Row>, sqlx::Error>> {
                Box::pin(async move {
                    use sqlx::Row as _;
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(fetch.stmt.sql.clone()));
                    for b in &fetch.stmt.binds {
                        q = match b {
                            crate::render::Bind::Int(v) => q.bind(*v),
                            crate::render::Bind::Text(v) => q.bind(v.clone()),
                        };
                    }
                    let rows = q.fetch_all(&mut *conn).await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        let mut row = Vec::with_capacity(fetch.kinds.len());
                        for (i, k) in fetch.kinds.iter().enumerate() {
                            let v = match k {
                                crate::render::Kind::Int => {
                                    Value::opt_int(r.try_get::<Option<i64>, _>(i)?)
                                }
                                kind => match r.try_get::<Option<String>, _>(i)? {
                                    None if *kind == crate::render::Kind::Sum => Value::Int(0),
                                    None => Value::Null,
                                    Some(s) => crate::render::decode_text(*kind, s)
                                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                                },
                            };
                            row.push(v);
                        }
                        out.push(row);
                    }
                    Ok(out)
                })
            }

            fn ddl<'a>(
                conn: &'a mut Self::Connection,
                sql: String,
            ) -> BoxFuture<'a, std::result::Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }
        }
    };
}

#[cfg(feature = "postgres")]
driver!(sqlx::Postgres, Dialect::Postgres);
#[cfg(feature = "mysql")]
driver!(sqlx::MySql, Dialect::Mysql);

/// The SQLSTATE of a database error, if any.
fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether the whole transaction may simply be retried (deadlock, serialization failure).
fn retryable(e: &sqlx::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("40001" | "40P01"))
}

/// A storage error wrapping a driver error.
pub(crate) fn storage(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Decode(inner) => match inner.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::Storage {
                message: "decoding a value from the database".into(),
                source: Some(other),
            },
        },
        other => {
            let message = match &other {
                sqlx::Error::Database(d) => format!("database error: {}", d.message()),
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                    "connection to the database failed".to_owned()
                }
                _ => "database driver error".to_owned(),
            };
            Error::Storage {
                message,
                source: Some(Box::new(other)),
            }
        }
    }
}

/// Maps a write's driver error: a uniqueness violation becomes Duplicate.
fn write_error(table: &TableDef, e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        let by_constraint = d.constraint().and_then(|c| {
            table
                .indexes
                .iter()
                .find(|i| i.unique && i.name == c)
                .map(|i| i.name)
        });
        let ix = by_constraint.or_else(|| index_named_in(table, d.message()));
        return duplicate(table, ix);
    }
    storage(e)
}

/// Either a crmkit error or a retryable driver error.
enum Failure {
    Retry(sqlx::Error),
    Fail(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fail(e)
    }
}

fn classify(e: sqlx::Error, map: impl FnOnce(sqlx::Error) -> Error) -> Failure {
    if retryable(&e) {
        Failure::Retry(e)
    } else {
        Failure::Fail(map(e))
    }
}

/// Ends a transaction with the outcome of its work `r`: commits it after a success (a
/// failing commit is the failure), rolls it back after a failure; returns `r`.
async fn finish<D: Driver, T>(
    tx: sqlx::Transaction<'_, D>,
    r: std::result::Result<T, Failure>,
) -> std::result::Result<T, Failure> {
    match r {
        Ok(v) => {
            tx.commit().await.map_err(|e| classify(e, storage))?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

const COMMIT_ATTEMPTS: usize = 8;
const MIGRATION_LOCK_KEY: i64 = 0x63726d6b6974; // "crmkit"
const MYSQL_LOCK_NAME: &str = "crmkit_migrations";

/// A PostgreSQL or MySQL backend over a sqlx pool.
pub(crate) struct ServerBackend<D: Driver> {
    render: Renderer,
    pool: Pool<D>,
    fault: StdMutex<Option<Fault>>,
}

impl<D: Driver> ServerBackend<D> {
    /// Connects a pool and applies pending migrations.
    pub(crate) async fn open(url: &str, modules: &Modules) -> Result<Self> {
        let url = match url.strip_prefix("mariadb:") {
            Some(rest) => format!("mysql:{rest}"),
            None => url.to_owned(),
        };
        let url = url.as_str();
        let pool = PoolOptions::<D>::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(storage)?;
        let collation = if D::DIALECT == Dialect::Mysql {
            mysql_collation::<D>(&pool).await?
        } else {
            String::new()
        };
        let schema: Arc<Schema> = modules.schema().clone();
        let backend = ServerBackend {
            render: Renderer::new(D::DIALECT, schema, &collation),
            pool,
            fault: StdMutex::new(None),
        };
        backend.migrate().await?;
        Ok(backend)
    }

    /// The schema.
    pub(crate) fn schema(&self) -> &Schema {
        self.render.schema()
    }

    async fn migrate(&self) -> Result<()> {
        let r = &self.render;
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        let (lock, unlock) = match D::DIALECT {
            Dialect::Postgres => (
                r.call("pg_advisory_lock", vec![int_arg(MIGRATION_LOCK_KEY)])?,
                r.call("pg_advisory_unlock", vec![int_arg(MIGRATION_LOCK_KEY)])?,
            ),
            _ => (
                r.call("GET_LOCK", vec![text_arg(MYSQL_LOCK_NAME), int_arg(120)])?,
                r.call("RELEASE_LOCK", vec![text_arg(MYSQL_LOCK_NAME)])?,
            ),
        };
        let no_decode = |s: Stmt| Fetch {
            stmt: s,
            kinds: vec![],
        };
        D::fetch(&mut *conn, &no_decode(lock))
            .await
            .map_err(storage)?;
        let result = self.migrate_locked(&mut *conn).await;
        let released = D::fetch(&mut *conn, &no_decode(unlock))
            .await
            .map_err(storage);
        result.and(released.map(|_| ()))
    }

    async fn migrate_locked(&self, conn: &mut D::Connection) -> Result<()> {
        let r = &self.render;
        D::ddl(conn, r.create_migrations_table())
            .await
            .map_err(storage)?;
        let recorded = D::fetch(conn, &r.read_migrations()?)
            .await
            .map_err(storage)?;
        for m in r.schema().modules() {
            let todo = pending(&recorded, m.module, m.migrations.len())?;
            for mig in &m.migrations[todo] {
                // PostgreSQL DDL is transactional: a migration applies fully or not at all.
                // MySQL commits each DDL statement implicitly.
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(storage)?;
                for step in &mig.steps {
                    for sql in r.step_sql(step) {
                        D::ddl(&mut *tx, sql).await.map_err(storage)?;
                    }
                }
                D::exec(
                    &mut *tx,
                    &r.record_migration(m.module, mig.version, now_micros())?,
                )
                .await
                .map_err(storage)?;
                tx.commit().await.map_err(storage)?;
            }
        }
        Ok(())
    }

    async fn read(&self, f: &Fetch) -> Result<Vec<Row>> {
        let mut conn = self.pool.acquire().await.map_err(storage)?;
        D::fetch(&mut *conn, f).await.map_err(storage)
    }

    /// A point read.
    pub(crate) async fn get(
        &self,
        tenant: TenantId,
        table: &str,
        key: &[Value],
    ) -> Result<Option<Row>> {
        let Some(f) = self.render.get(tenant, table, key)? else {
            return Ok(None);
        };
        Ok(self.read(&f).await?.into_iter().next())
    }

    /// A select.
    pub(crate) async fn select(&self, tenant: TenantId, s: &Select) -> Result<Vec<Row>> {
        let f = self.render.select(tenant, s)?;
        self.read(&f).await
    }

    /// A count.
    pub(crate) async fn count(&self, tenant: TenantId, table: &str, cond: &Cond) -> Result<u64> {
        let f = self.render.count(tenant, table, cond)?;
        let rows = self.read(&f).await?;
        Ok(rows.first().and_then(|r| r[0].as_int()).unwrap_or(0).max(0) as u64)
    }

    /// Grouped aggregates.
    pub(crate) async fn aggregate(&self, tenant: TenantId, agg: &Aggregate) -> Result<Vec<Row>> {
        let f = self.render.aggregate(tenant, agg)?;
        let rows = self.read(&f).await?;
        let mut rows = self.render.finish_aggregate(agg, rows)?;
        sort_groups(
            &mut rows,
            agg.group_by.len() + usize::from(agg.buckets.is_some()),
        );
        Ok(rows)
    }

    /// Sets or clears the injected fault.
    pub(crate) fn inject_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Commits a changeset in one transaction, retrying deadlocks.
    pub(crate) async fn commit(&self, cs: Changeset) -> Result<Commit> {
        crmkit_core::store::check_changeset(self.render.schema(), &cs)?;
        let fault = *self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit_once(&cs, fault).await {
                Ok(c) => return Ok(c),
                Err(Failure::Fail(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    if attempt >= COMMIT_ATTEMPTS {
                        return Err(storage(e));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(2 * attempt as u64)).await;
                }
            }
        }
    }

    pub(crate) async fn reserve(&self, tenant: TenantId, sequence: &str, n: u64) -> Result<u64> {
        crmkit_core::store::check_reserve(sequence, n)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.reserve_once(tenant, sequence, n).await {
                Ok(first) => return Ok(first),
                Err(Failure::Fail(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    if attempt >= COMMIT_ATTEMPTS {
                        return Err(storage(e));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(2 * attempt as u64)).await;
                }
            }
        }
    }

    async fn reserve_once(
        &self,
        tenant: TenantId,
        sequence: &str,
        n: u64,
    ) -> std::result::Result<u64, Failure> {
        let mut tx = self.pool.begin().await.map_err(|e| classify(e, storage))?;
        let r = async {
            let r = &self.render;
            let conn = &mut *tx;
            D::exec(conn, &r.seq_ensure(tenant, sequence)?)
                .await
                .map_err(|e| classify(e, storage))?;
            D::exec(conn, &r.seq_bump(tenant, sequence, n as i64)?)
                .await
                .map_err(|e| classify(e, storage))?;
            let read = D::fetch(conn, &r.seq_read(tenant, sequence)?)
                .await
                .map_err(|e| classify(e, storage))?;
            std::result::Result::<u64, Failure>::Ok(block_start(&read, n, "sequence row missing")?)
        }
        .await;
        finish(tx, r).await
    }

    async fn commit_once(
        &self,
        cs: &Changeset,
        fault: Option<Fault>,
    ) -> std::result::Result<Commit, Failure> {
        let mut tx = self.pool.begin().await.map_err(|e| classify(e, storage))?;
        let r = self.commit_in(&mut *tx, cs, fault).await;
        finish(tx, r).await
    }

    async fn commit_in(
        &self,
        conn: &mut D::Connection,
        cs: &Changeset,
        fault: Option<Fault>,
    ) -> std::result::Result<Commit, Failure> {
        let mut steps = Steps::new(fault);
        let tenant = cs.tenant;
        for w in &cs.writes {
            steps.step()?;
            self.apply(conn, tenant, w).await?;
        }
        for w in cs.audit_writes() {
            steps.step()?;
            self.apply(conn, tenant, &w).await?;
        }
        let n = cs.events.len() as u64;
        if n == 0 {
            return Ok(Commit { events: None });
        }
        steps.step()?;
        let r = &self.render;
        D::exec(conn, &r.seq_ensure(tenant, EVENT_SEQUENCE)?)
            .await
            .map_err(|e| classify(e, storage))?;
        D::exec(conn, &r.seq_bump(tenant, EVENT_SEQUENCE, n as i64)?)
            .await
            .map_err(|e| classify(e, storage))?;
        let read = D::fetch(conn, &r.seq_read(tenant, EVENT_SEQUENCE)?)
            .await
            .map_err(|e| classify(e, storage))?;
        let first = block_start(&read, n, "event sequence row missing")?;
        for w in cs.event_writes(first) {
            steps.step()?;
            self.apply(conn, tenant, &w).await?;
        }
        Ok(Commit {
            events: Some((first, first + n - 1)),
        })
    }

    async fn apply(
        &self,
        conn: &mut D::Connection,
        tenant: TenantId,
        w: &Write,
    ) -> std::result::Result<(), Failure> {
        let r = &self.render;
        let t = r.write_table(w)?;
        match w {
            Write::Insert { table, row } => {
                let s = r.insert(tenant, table, row)?;
                D::exec(conn, &s)
                    .await
                    .map_err(|e| classify(e, |e| write_error(t, e)))?;
            }
            Write::Update {
                table,
                key,
                set,
                expect_version,
                record,
            } => {
                let not_found = || Error::not_found(record.kind.clone(), record.id);
                let Some(s) = r.update(tenant, table, key, set, *expect_version)? else {
                    return Err(not_found().into());
                };
                let n = D::exec(conn, &s)
                    .await
                    .map_err(|e| classify(e, |e| write_error(t, e)))?;
                if n == 0 {
                    let current = match r.get(tenant, table, key)? {
                        Some(f) => D::fetch(conn, &f)
                            .await
                            .map_err(|e| classify(e, storage))?
                            .into_iter()
                            .next(),
                        None => None,
                    };
                    return Err(update_missed(t, record, *expect_version, current).into());
                }
            }
            Write::Delete { table, key } => {
                if let Some(s) = r.delete(tenant, table, key)? {
                    D::exec(conn, &s)
                        .await
                        .map_err(|e| classify(e, |e| write_error(t, e)))?;
                }
            }
            Write::DeleteWhere { table, cond } => {
                let s = r.delete_where(tenant, table, cond)?;
                D::exec(conn, &s)
                    .await
                    .map_err(|e| classify(e, |e| write_error(t, e)))?;
            }
            Write::UpdateWhere { table, cond, set } => {
                if let Some(s) = r.update_where(tenant, table, cond, set)? {
                    D::exec(conn, &s)
                        .await
                        .map_err(|e| classify(e, |e| write_error(t, e)))?;
                }
            }
        }
        Ok(())
    }
}

/// The best byte-wise, no-pad collation the MySQL server has (`utf8mb4_0900_bin` on MySQL
/// 8, `utf8mb4_nopad_bin` on MariaDB), else `utf8mb4_bin`.
async fn mysql_collation<D: Driver>(pool: &Pool<D>) -> Result<String> {
    let mut conn = pool.acquire().await.map_err(storage)?;
    let r = Renderer::new(D::DIALECT, Arc::new(Schema::default()), "utf8mb4_bin");
    let q = r.collation_probe()?;
    let found = D::fetch(&mut *conn, &q).await.map_err(storage)?;
    let names: Vec<&str> = found.iter().filter_map(|r| r[0].as_text()).collect();
    Ok(["utf8mb4_0900_bin", "utf8mb4_nopad_bin"]
        .into_iter()
        .find(|c| names.contains(c))
        .unwrap_or("utf8mb4_bin")
        .to_owned())
}
