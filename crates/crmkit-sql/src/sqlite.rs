//! SQLite through rusqlite.
//!
//! One writer connection behind an async mutex: a commit takes it, runs every statement
//! inline inside `BEGIN IMMEDIATE ... COMMIT` (ROLLBACK on any error) and releases it, so
//! writers queue without blocking the runtime and there is no thread hop per statement.
//! A file database also gets a few WAL reader connections; `sqlite::memory:` has only the
//! one connection, which reads use too.

use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crmkit_core::event::EVENT_SEQUENCE;
use crmkit_core::id::TenantId;
use crmkit_core::store::{
    Aggregate, Backend, BackendKind, BoxFuture, CellRef, Changeset, Commit, Cond, Fault, Row,
    RowRef, RowSink, Schema, Select, Value, Write,
};
use crmkit_core::{Error, Modules, Result};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use tokio::sync::Mutex;

use crate::dialect::Dialect;
use crate::render::{Bind, Fetch, Kind, Renderer, Stmt, decode_text};
use crate::shared::{
    Steps, block_start, duplicate, index_named_in, now_micros, pending, sort_groups, update_missed,
};

const READERS: usize = 4;

/// A select's SQL and SQLite's plan for it ([`SqliteBackend::explain_select`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPlan {
    /// The statement, as the backend runs it (values as `?` placeholders).
    pub sql: String,
    /// The plan's steps, in the order `EXPLAIN QUERY PLAN` lists them (its `detail`
    /// column: `SEARCH t USING INDEX i (tenant_id=? AND ...)`, `USE TEMP B-TREE FOR
    /// ORDER BY`, ...).
    pub steps: Vec<String>,
}

/// Runs a read that may visit many rows (a count, a grouped aggregate) where it does not
/// stall the runtime: on a multi-threaded tokio runtime through
/// [`tokio::task::block_in_place`], so the worker's other tasks (point reads, writes)
/// move to another thread while this one reads; elsewhere (a current-thread runtime, no
/// runtime) inline. SQLite's calls block; an aggregate over a million deals holding a
/// worker for its whole run made every other task on that worker wait for it. Point
/// reads and pages stay inline: handing a worker off costs more than they take.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The SQLite backend (a file or an in-memory database).
pub struct SqliteBackend {
    render: Renderer,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<(Connection, usize)>>,
    /// Bumped each time the writer refreshes statistics; a reader that saw an older
    /// generation is reopened before its next read (a connection loads statistics when it
    /// reads the schema, and a read-only one cannot reload them in place).
    stats_generation: AtomicUsize,
    /// The database file, for reopening readers.
    path: Option<String>,
    next_reader: AtomicUsize,
    fault: StdMutex<Option<Fault>>,
    /// Commits and rows written since the last `PRAGMA optimize`.
    since_optimize: StdMutex<(usize, usize)>,
}

/// Commits between two `PRAGMA optimize` runs on the writer. Without statistics SQLite's
/// planner walks a table's primary key to satisfy an ORDER BY + LIMIT even where an index
/// on the filtered columns is far cheaper (a record's newest events: a scan of every event
/// of the tenant instead of an index range); `PRAGMA optimize` keeps `sqlite_stat1`
/// current, with `analysis_limit` bounding its cost. It runs after this many commits, or
/// after [`OPTIMIZE_ROWS`] rows, whichever comes first (batched imports write many rows in
/// few commits).
const OPTIMIZE_EVERY: usize = 1000;
/// Rows written between two `PRAGMA optimize` runs at most.
const OPTIMIZE_ROWS: usize = 20_000;

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("readers", &self.readers.len())
            .finish()
    }
}

fn storage(e: rusqlite::Error) -> Error {
    Error::storage_from("sqlite", e)
}

/// Page cache of the writer connection (KiB): large enough that a big commit does not
/// spill pages to the file before it commits (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// WAL pages before a commit checkpoints (SQLite's default is 1000). Bulk writes commit in
/// chunks; checkpointing after every chunk rewrote the same hot index pages again and
/// again, which was about half the cost of an import.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// A read-only WAL reader of a database file.
fn open_reader(path: &str) -> Result<Connection> {
    let r = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(storage)?;
    configure(&r, false)?;
    // The writer's page cache size: a reader with SQLite's 2 MiB default read most pages of
    // a point-read workload over 100k contacts from the file again (a pread per page).
    r.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(storage)?;
    Ok(r)
}

fn configure(conn: &Connection, file: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(storage)?;
    if file {
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(storage)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(storage)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(storage)?;
    }
    conn.execute_batch("PRAGMA case_sensitive_like = ON; PRAGMA analysis_limit = 1000;")
        .map_err(storage)?;
    Ok(())
}

/// Binds without copying: text is handed to SQLite as a borrowed slice.
impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Bind::Int(Some(i)) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Bind::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Bind::Int(None) | Bind::Text(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// A cell of a row being inserted, bound without copying: text is borrowed from the row,
/// a UUID is formatted into the cell itself (as [`Bind`] would format it).
enum Cell<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Uuid([u8; 36]),
}

impl<'a> Cell<'a> {
    fn of(v: &'a Value) -> Cell<'a> {
        match v {
            Value::Null => Cell::Null,
            Value::Int(i) => Cell::Int(*i),
            Value::Text(s) => Cell::Text(s),
            Value::Uuid(u) => Cell::uuid(u),
        }
    }

    fn uuid(u: &uuid::Uuid) -> Cell<'a> {
        let mut buf = [0u8; 36];
        u.hyphenated().encode_lower(&mut buf);
        Cell::Uuid(buf)
    }
}

impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Int(i) => ValueRef::Integer(*i),
            Cell::Text(s) => ValueRef::Text(s.as_bytes()),
            Cell::Uuid(b) => ValueRef::Text(b),
        }))
    }
}

fn decode(kind: Kind, v: ValueRef<'_>) -> Result<Value> {
    match v {
        ValueRef::Null => Ok(if kind == Kind::Sum {
            Value::Int(0)
        } else {
            Value::Null
        }),
        ValueRef::Integer(i) => match kind {
            Kind::Int | Kind::Sum => Ok(Value::Int(i)),
            _ => Ok(Value::Text(i.to_string())),
        },
        ValueRef::Text(t) => {
            let s = std::str::from_utf8(t)
                .map_err(|e| Error::storage_from("invalid UTF-8 in database", e))?;
            decode_text(kind, s)
        }
        ValueRef::Real(_) | ValueRef::Blob(_) => {
            Err(Error::storage("unexpected REAL or BLOB value in database"))
        }
    }
}

fn exec(conn: &Connection, s: &Stmt) -> rusqlite::Result<usize> {
    let mut st = conn.prepare_cached(&s.sql)?;
    st.execute(rusqlite::params_from_iter(s.binds.iter()))
}

fn fetch(conn: &Connection, f: &Fetch) -> Result<Vec<Row>> {
    let mut st = conn.prepare_cached(&f.stmt.sql).map_err(storage)?;
    let mut rows = st
        .query(rusqlite::params_from_iter(f.stmt.binds.iter()))
        .map_err(storage)?;
    let mut out = vec![];
    while let Some(r) = rows.next().map_err(storage)? {
        let mut row = Vec::with_capacity(f.kinds.len());
        for (i, k) in f.kinds.iter().enumerate() {
            row.push(decode(*k, r.get_ref(i).map_err(storage)?)?);
        }
        out.push(row);
    }
    Ok(out)
}

/// A cell read in place, or `None` where [`decode`] would build a value that owns its text
/// (an integer in a text column, a decimal sum) or report an error: the row is then
/// decoded by [`decode`] instead, with the same result.
fn cell(kind: Kind, v: ValueRef<'_>) -> Option<CellRef<'_>> {
    match (v, kind) {
        (ValueRef::Null, Kind::Sum) => Some(CellRef::Int(0)),
        (ValueRef::Null, _) => Some(CellRef::Null),
        (ValueRef::Integer(i), Kind::Int | Kind::Sum) => Some(CellRef::Int(i)),
        (ValueRef::Text(t), Kind::Text) => std::str::from_utf8(t).ok().map(CellRef::Text),
        (ValueRef::Text(t), Kind::Uuid) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .map(CellRef::Uuid),
        (ValueRef::Text(t), Kind::Int) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(CellRef::Int),
        _ => None,
    }
}

/// Cells of a row kept on the stack up to this many columns.
const STACK_CELLS: usize = 40;

/// Runs `f` and hands each row to `each`, its cells read in place (text borrowed from
/// SQLite's row, no `String` per cell); returns how many rows there were.
fn fetch_with(conn: &Connection, f: &Fetch, each: &mut RowSink<'_>) -> Result<usize> {
    let mut st = conn.prepare_cached(&f.stmt.sql).map_err(storage)?;
    let mut rows = st
        .query(rusqlite::params_from_iter(f.stmt.binds.iter()))
        .map_err(storage)?;
    let n = f.kinds.len();
    let mut count = 0;
    while let Some(r) = rows.next().map_err(storage)? {
        count += 1;
        let mut stack = [CellRef::Null; STACK_CELLS];
        let mut heap = Vec::new();
        let cells: &mut [CellRef<'_>] = if n <= STACK_CELLS {
            &mut stack[..n]
        } else {
            heap.resize(n, CellRef::Null);
            &mut heap
        };
        let mut in_place = true;
        for (i, (k, c)) in f.kinds.iter().zip(cells.iter_mut()).enumerate() {
            match cell(*k, r.get_ref(i).map_err(storage)?) {
                Some(v) => *c = v,
                None => {
                    in_place = false;
                    break;
                }
            }
        }
        if in_place {
            each(RowRef::Cells(cells))?;
        } else {
            let mut row = Vec::with_capacity(n);
            for (i, k) in f.kinds.iter().enumerate() {
                row.push(decode(*k, r.get_ref(i).map_err(storage)?)?);
            }
            each(RowRef::Owned(row))?;
        }
    }
    Ok(count)
}

/// Maps a write's driver error: a uniqueness violation becomes Duplicate.
fn write_error(table: &crmkit_core::store::TableDef, e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        match f.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => return duplicate(table, None),
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
                let msg = msg.as_deref().unwrap_or("");
                // "UNIQUE constraint failed: t.tenant_id, t.a, t.b": match the columns.
                let cols: Vec<&str> = msg
                    .split_once(':')
                    .map(|(_, rest)| {
                        rest.split(',')
                            .filter_map(|c| c.trim().rsplit('.').next())
                            .collect()
                    })
                    .unwrap_or_default();
                let ix = table.indexes.iter().filter(|i| i.unique).find(|i| {
                    cols.len() == i.columns.len() + 1
                        && cols[1..].iter().zip(&i.columns).all(|(a, b)| a == b)
                });
                return duplicate(
                    table,
                    Some(
                        ix.map(|i| i.name)
                            .or_else(|| index_named_in(table, msg))
                            .unwrap_or("id"),
                    ),
                );
            }
            _ => {}
        }
    }
    storage(e)
}

impl SqliteBackend {
    /// Opens `sqlite://path` (created if missing) or `sqlite::memory:` and applies every
    /// composed module's pending migrations.
    pub async fn open(url: &str, modules: &Modules) -> Result<Self> {
        let target = parse_url(url)?;
        let schema: Arc<Schema> = modules.schema().clone();
        let render = Renderer::new(Dialect::Sqlite, schema, "");
        let (writer, readers) = match &target {
            None => {
                let c = Connection::open_in_memory().map_err(storage)?;
                configure(&c, false)?;
                (c, vec![])
            }
            Some(path) => {
                let c = Connection::open(path).map_err(storage)?;
                configure(&c, true)?;
                let mut readers = Vec::with_capacity(READERS);
                for _ in 0..READERS {
                    readers.push(Mutex::new((open_reader(path)?, 0)));
                }
                (c, readers)
            }
        };
        let backend = SqliteBackend {
            render,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            since_optimize: StdMutex::new((0, 0)),
            stats_generation: AtomicUsize::new(0),
            path: target.clone(),
            fault: StdMutex::new(None),
        };
        backend.migrate().await?;
        // Statistics for a database that grew in an earlier process (advisory).
        let _ = backend
            .writer
            .lock()
            .await
            .execute_batch("PRAGMA optimize;");
        Ok(backend)
    }

    /// SQLite's plan for the select `s` in `tenant`: the SQL this backend runs for it
    /// (rendered exactly as [`Backend::select`] renders it) and the lines of `EXPLAIN QUERY
    /// PLAN` for it with its values bound, read on a connection a select would use. For
    /// benchmarks and tests that check a query walks an index, such as
    /// `SEARCH t USING INDEX t_due (tenant_id=? AND due_at<?)`.
    pub async fn explain_select(&self, tenant: TenantId, s: &Select) -> Result<QueryPlan> {
        let f = self.render.select(tenant, s)?;
        self.read(|c| {
            let mut st = c
                .prepare(&format!("EXPLAIN QUERY PLAN {}", f.stmt.sql))
                .map_err(storage)?;
            let steps = st
                .query_map(rusqlite::params_from_iter(f.stmt.binds.iter()), |r| {
                    r.get::<_, String>(3)
                })
                .map_err(storage)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(storage)?;
            Ok(QueryPlan {
                sql: f.stmt.sql.to_string(),
                steps,
            })
        })
        .await
    }

    async fn migrate(&self) -> Result<()> {
        let conn = self.writer.lock().await;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(storage)?;
        let r = self.migrate_in(&conn);
        finish(&conn, r)
    }

    fn migrate_in(&self, conn: &Connection) -> Result<()> {
        let r = &self.render;
        conn.execute_batch(&r.create_migrations_table())
            .map_err(storage)?;
        let recorded = fetch(conn, &r.read_migrations()?)?;
        for m in r.schema().modules() {
            let todo = pending(&recorded, m.module, m.migrations.len())?;
            if todo.is_empty() {
                continue;
            }
            for mig in &m.migrations[todo] {
                for step in &mig.steps {
                    for sql in r.step_sql(step) {
                        conn.execute_batch(&sql).map_err(storage)?;
                    }
                }
                exec(
                    conn,
                    &r.record_migration(m.module, mig.version, now_micros())?,
                )
                .map_err(storage)?;
            }
        }
        Ok(())
    }

    async fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        // A read on a free connection completes without ever returning Pending, so a task
        // looping on reads would never yield and could starve the tasks queued behind it
        // on its worker (tokio's LIFO slot is not stolen): spend one unit of the task's
        // cooperative budget, which yields once it is used up (every 128 operations).
        tokio::task::coop::consume_budget().await;
        if self.readers.is_empty() {
            let conn = self.writer.lock().await;
            return f(&conn);
        }
        // The first free reader: a lone caller keeps using one connection, whose page cache
        // and prepared statements stay warm (round robin over all readers made sequential
        // reads about 1.5x as expensive in SQLite's B-tree code); concurrent callers spread
        // over the others, and wait in turn when every reader is busy.
        let free = self.readers.iter().find_map(|r| r.try_lock().ok());
        let mut guard = match free {
            Some(g) => g,
            None => {
                let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
                self.readers[i].lock().await
            }
        };
        let generation = self.stats_generation.load(Ordering::Acquire);
        if guard.1 != generation
            && let Some(path) = &self.path
        {
            // Advisory: a reader with old statistics still answers correctly.
            if let Ok(fresh) = open_reader(path) {
                guard.0 = fresh;
            }
            guard.1 = generation;
        }
        f(&guard.0)
    }

    fn apply<'c>(
        &self,
        conn: &'c Connection,
        inserts: &mut Inserts<'c>,
        tenant: TenantId,
        w: &Write,
    ) -> Result<()> {
        let r = &self.render;
        let t = r.write_table(w)?;
        match w {
            Write::Insert { table, row } => {
                // The hottest write (imports, audit entries, events): bound straight from
                // the row, with no copy of its text, through the table's statement held
                // for the commit (not looked up in rusqlite's cache by its SQL per row).
                let (_, sql) = r.insert_sql(table, row)?;
                let st = match inserts.iter().position(|(name, _)| *name == t.name) {
                    Some(i) => &mut inserts[i].1,
                    None => {
                        let st = conn.prepare_cached(sql).map_err(storage)?;
                        inserts.push((t.name, st));
                        &mut inserts.last_mut().expect("just pushed").1
                    }
                };
                let cells =
                    std::iter::once(Cell::uuid(&tenant.as_uuid())).chain(row.iter().map(Cell::of));
                st.execute(rusqlite::params_from_iter(cells))
                    .map_err(|e| write_error(t, e))?;
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
                    return Err(not_found());
                };
                let n = exec(conn, &s).map_err(|e| write_error(t, e))?;
                if n == 0 {
                    let current = match r.get(tenant, table, key)? {
                        Some(f) => fetch(conn, &f)?.into_iter().next(),
                        None => None,
                    };
                    return Err(update_missed(t, record, *expect_version, current));
                }
            }
            Write::Delete { table, key } => {
                if let Some(s) = r.delete(tenant, table, key)? {
                    exec(conn, &s).map_err(|e| write_error(t, e))?;
                }
            }
            Write::DeleteWhere { table, cond } => {
                let s = r.delete_where(tenant, table, cond)?;
                exec(conn, &s).map_err(|e| write_error(t, e))?;
            }
            Write::UpdateWhere { table, cond, set } => {
                if let Some(s) = r.update_where(tenant, table, cond, set)? {
                    exec(conn, &s).map_err(|e| write_error(t, e))?;
                }
            }
        }
        Ok(())
    }

    fn commit_in(&self, conn: &Connection, cs: &Changeset, fault: Option<Fault>) -> Result<Commit> {
        let mut steps = Steps::new(fault);
        let tenant = cs.tenant;
        let mut inserts = Inserts::new();
        for w in &cs.writes {
            steps.step()?;
            self.apply(conn, &mut inserts, tenant, w)?;
        }
        for w in cs.audit_writes() {
            steps.step()?;
            self.apply(conn, &mut inserts, tenant, &w)?;
        }
        let n = cs.events.len() as u64;
        if n == 0 {
            return Ok(Commit { events: None });
        }
        steps.step()?;
        let r = &self.render;
        exec(conn, &r.seq_ensure(tenant, EVENT_SEQUENCE)?).map_err(storage)?;
        exec(conn, &r.seq_bump(tenant, EVENT_SEQUENCE, n as i64)?).map_err(storage)?;
        let read = fetch(conn, &r.seq_read(tenant, EVENT_SEQUENCE)?)?;
        let first = block_start(&read, n, "event sequence row missing")?;
        for w in cs.event_writes(first) {
            steps.step()?;
            self.apply(conn, &mut inserts, tenant, &w)?;
        }
        Ok(Commit {
            events: Some((first, first + n - 1)),
        })
    }
}

/// The INSERT statements of one commit, by table (a handful per commit).
type Inserts<'c> = Vec<(&'static str, rusqlite::CachedStatement<'c>)>;

/// Commits on success, rolls back on error.
fn finish<T>(conn: &Connection, r: Result<T>) -> Result<T> {
    match r {
        Ok(v) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(storage(e))
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// `None` for an in-memory database, else the file path.
fn parse_url(url: &str) -> Result<Option<String>> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| Error::Config(format!("not a sqlite URL: {url}")))?;
    if rest == ":memory:" || rest == "//:memory:" {
        return Ok(None);
    }
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() {
        return Err(Error::Config(format!("sqlite URL without a path: {url}")));
    }
    Ok(Some(path.to_owned()))
}

impl Backend for SqliteBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    fn schema(&self) -> &Schema {
        self.render.schema()
    }

    fn get<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        key: &'a [Value],
    ) -> BoxFuture<'a, Result<Option<Row>>> {
        Box::pin(async move {
            let Some(f) = self.render.get(tenant, table, key)? else {
                return Ok(None);
            };
            self.read(|c| fetch(c, &f))
                .await
                .map(|rows| rows.into_iter().next())
        })
    }

    fn select<'a>(
        &'a self,
        tenant: TenantId,
        select: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(async move {
            let f = self.render.select(tenant, select)?;
            self.read(|c| fetch(c, &f)).await
        })
    }

    fn get_with<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        key: &'a [Value],
        each: &'a mut RowSink<'_>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(f) = self.render.get(tenant, table, key)? else {
                return Ok(false);
            };
            // A point read yields at most one row (the key is the primary key).
            self.read(|c| fetch_with(c, &f, each)).await.map(|n| n > 0)
        })
    }

    fn select_with<'a>(
        &'a self,
        tenant: TenantId,
        select: &'a Select,
        each: &'a mut RowSink<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let f = self.render.select(tenant, select)?;
            self.read(|c| fetch_with(c, &f, each)).await.map(|_| ())
        })
    }

    fn count<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        cond: &'a Cond,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let f = self.render.count(tenant, table, cond)?;
            let rows = self.read(|c| off_worker(|| fetch(c, &f))).await?;
            Ok(rows.first().and_then(|r| r[0].as_int()).unwrap_or(0).max(0) as u64)
        })
    }

    fn aggregate<'a>(
        &'a self,
        tenant: TenantId,
        agg: &'a Aggregate,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(async move {
            let f = self.render.aggregate(tenant, agg)?;
            let rows = self.read(|c| off_worker(|| fetch(c, &f))).await?;
            let mut rows = self.render.finish_aggregate(agg, rows)?;
            sort_groups(
                &mut rows,
                agg.group_by.len() + usize::from(agg.buckets.is_some()),
            );
            Ok(rows)
        })
    }

    fn commit(&self, changeset: Changeset) -> BoxFuture<'_, Result<Commit>> {
        Box::pin(async move {
            crmkit_core::store::check_changeset(self.render.schema(), &changeset)?;
            let fault = *self.fault.lock().unwrap_or_else(|e| e.into_inner());
            let conn = self.writer.lock().await;
            if !conn.is_autocommit() {
                // A transaction left open by an interrupted commit: discard it.
                conn.execute_batch("ROLLBACK").map_err(storage)?;
            }
            conn.execute_batch("BEGIN IMMEDIATE").map_err(storage)?;
            let r = self.commit_in(&conn, &changeset, fault);
            let r = finish(&conn, r);
            let rows = changeset.writes.len() + changeset.audit.len() + changeset.events.len();
            let due = r.is_ok() && {
                let mut since = self
                    .since_optimize
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                since.0 += 1;
                since.1 += rows;
                let due = since.0 >= OPTIMIZE_EVERY || since.1 >= OPTIMIZE_ROWS;
                if due {
                    *since = (0, 0);
                }
                due
            };
            if due {
                // Statistics are advisory: a failure here does not fail the commit.
                if conn.execute_batch("PRAGMA optimize;").is_ok() {
                    self.stats_generation.fetch_add(1, Ordering::Release);
                }
            }
            r
        })
    }

    fn reserve<'a>(
        &'a self,
        tenant: TenantId,
        sequence: &'a str,
        n: u64,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            crmkit_core::store::check_reserve(sequence, n)?;
            let conn = self.writer.lock().await;
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK").map_err(storage)?;
            }
            conn.execute_batch("BEGIN IMMEDIATE").map_err(storage)?;
            let r = (|| {
                let r = &self.render;
                exec(&conn, &r.seq_ensure(tenant, sequence)?).map_err(storage)?;
                exec(&conn, &r.seq_bump(tenant, sequence, n as i64)?).map_err(storage)?;
                let read = fetch(&conn, &r.seq_read(tenant, sequence)?)?;
                block_start(&read, n, "sequence row missing")
            })();
            finish(&conn, r)
        })
    }

    fn inject_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(parse_url("sqlite::memory:").unwrap(), None);
        assert_eq!(
            parse_url("sqlite://a/b.db").unwrap().as_deref(),
            Some("a/b.db")
        );
        assert_eq!(
            parse_url("sqlite:///tmp/x.db").unwrap().as_deref(),
            Some("/tmp/x.db")
        );
        assert!(parse_url("sqlite://").is_err());
    }

    /// A long read frees its worker: on a one-worker runtime, a second task runs while
    /// the first is inside `off_worker` (the read waits for that task's message, so
    /// without the hand-off it would wait its whole timeout and fail). Elsewhere it runs
    /// inline.
    #[test]
    fn long_reads_leave_the_worker() {
        use super::off_worker;
        assert_eq!(off_worker(|| 1), 1);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(current.block_on(async { off_worker(|| 2) }), 2);

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let got = rt.block_on(async move {
            let reader = tokio::spawn(async move {
                off_worker(|| rx.recv_timeout(std::time::Duration::from_secs(20)).is_ok())
            });
            // Give the reader the worker first.
            tokio::task::yield_now().await;
            let other = tokio::spawn(async move { tx.send(()).is_ok() });
            let sent = other.await.expect("the other task");
            (reader.await.expect("the reader"), sent)
        });
        assert_eq!(got, (true, true));
    }
}
