//! Dialect-neutral rendering of the storage contract into SQL.
//!
//! Every statement is built with sea-query and rendered for one [`Dialect`]; values are
//! always bound parameters, never formatted into the SQL text. Every table and column name
//! is checked against the [`Schema`] before a statement is built, so an identifier taken
//! from a condition or sort key never reaches SQL unchecked: an unknown one is
//! [`Error::Config`].
//!
//! The SQL of the hottest statements (insert and point read per table) is built once, when
//! the renderer is made; the SQL of selects and counts is kept per statement shape (the
//! `shape` module), so a list renders with sea-query once per shape, not once per call.

use std::collections::HashMap;
use std::sync::Arc;

use crmkit_core::id::TenantId;
use crmkit_core::store::{
    Aggregate, CmpOp, ColumnDef, ColumnType, Cond, CustomRef, IndexDef, Measure, OrderKey, Row,
    Schema, SchemaStep, Select, TableDef, Value, Write,
};
use crmkit_core::{Error, Result};
use sea_query::{
    Alias, Asterisk, BinOper, Expr, ExprTrait, Func, Index, LikeExpr, LockType, MysqlQueryBuilder,
    NullOrdering, OnConflict, Order, PostgresQueryBuilder, Query, QueryStatementWriter,
    SqliteQueryBuilder, Table,
};

use crate::dialect::Dialect;

/// The custom-value table (columns: record_kind, field_key, record_id, ord, int_val,
/// text_val, fold_val).
pub(crate) const CUSTOM_VALUES: &str = crmkit_core::custom::VALUES_TABLE;
/// The backend-internal migration bookkeeping table.
pub(crate) const MIGRATIONS_TABLE: &str = "crm_migrations";
const TENANT: &str = "tenant_id";
const SORT_ALIAS: &str = "crm_sort_cv";
const LIKE_ESCAPE: char = '!';
/// The low 32 bits of a BIGINT, for split sums.
const LOW_32_BITS: i64 = 0xFFFF_FFFF;

/// A bound parameter. Only two SQL types are ever bound: BIGINT and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    /// A BIGINT (or a NULL typed as one).
    Int(Option<i64>),
    /// Text (or a NULL typed as text).
    Text(Option<String>),
}

/// How to decode one result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A BIGINT column.
    Int,
    /// A text column.
    Text,
    /// A UUID stored as text.
    Uuid,
    /// An exact sum: an integer, a decimal rendered as text, or NULL for 0.
    Sum,
}

impl Kind {
    fn of(ty: ColumnType) -> Kind {
        match ty {
            ColumnType::Uuid => Kind::Uuid,
            ColumnType::Text(_) | ColumnType::LongText | ColumnType::Date => Kind::Text,
            ColumnType::Int | ColumnType::Bool | ColumnType::Timestamp | ColumnType::Decimal => {
                Kind::Int
            }
        }
    }
}

/// A rendered statement: SQL text and its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    /// The SQL text (shared, so cached statements cost no copy).
    pub sql: Arc<str>,
    /// The parameters, in placeholder order.
    pub binds: Vec<Bind>,
}

/// A rendered query with how to decode its result columns.
#[derive(Debug, Clone)]
pub(crate) struct Fetch {
    /// The statement.
    pub stmt: Stmt,
    /// One decoder per result column.
    pub kinds: Vec<Kind>,
}

/// Decodes a text column; only `Text` keeps (and so allocates) the string.
pub(crate) fn decode_text<S: AsRef<str> + Into<String>>(kind: Kind, s: S) -> Result<Value> {
    let s_ref = s.as_ref();
    match kind {
        Kind::Uuid => uuid::Uuid::parse_str(s_ref)
            .map(Value::Uuid)
            .map_err(|e| Error::storage_from(format!("bad uuid {s_ref:?} in database"), e)),
        Kind::Sum => parse_sum(s_ref),
        Kind::Int => s_ref
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|e| Error::storage_from(format!("bad integer {s_ref:?} in database"), e)),
        Kind::Text => Ok(Value::Text(s.into())),
    }
}

/// Parses an exact decimal sum (`123`, `-5`, `42.0000`) into [`Value::sum`], without
/// floats.
pub(crate) fn parse_sum(s: &str) -> Result<Value> {
    let s = s.trim();
    let int_part = match s.split_once('.') {
        Some((i, frac)) if frac.bytes().all(|b| b == b'0') => i,
        Some(_) => return Err(Error::storage(format!("sum {s} is not an integer"))),
        None => s,
    };
    let wide: i128 = int_part
        .parse()
        .map_err(|e| Error::storage_from(format!("bad sum {s:?} from database"), e))?;
    Ok(Value::sum(wide))
}

/// Escapes `%`, `_` and the escape character itself for a LIKE pattern.
pub(crate) fn like_escape(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    for ch in needle.chars() {
        if ch == '%' || ch == '_' || ch == LIKE_ESCAPE {
            out.push(LIKE_ESCAPE);
        }
        out.push(ch);
    }
    out
}

fn is_text(ty: ColumnType) -> bool {
    !matches!(Kind::of(ty), Kind::Int)
}

/// Converts a stored value to a sea-query value, typing NULL after the column.
fn sv(ty: Option<ColumnType>, v: &Value) -> sea_query::Value {
    match v {
        Value::Null => match ty {
            Some(t) if !is_text(t) => sea_query::Value::BigInt(None),
            _ => sea_query::Value::String(None),
        },
        Value::Int(i) => sea_query::Value::BigInt(Some(*i)),
        Value::Text(s) => sea_query::Value::String(Some(s.clone())),
        Value::Uuid(u) => sea_query::Value::String(Some(u.hyphenated().to_string())),
    }
}

fn val(ty: Option<ColumnType>, v: &Value) -> Expr {
    Expr::val(sv(ty, v))
}

fn tenant_val(tenant: TenantId) -> Expr {
    Expr::val(tenant.as_uuid().hyphenated().to_string())
}

fn unknown_column(table: &str, column: &str) -> Error {
    Error::Config(format!("unknown column {table}.{column}"))
}

/// Renders the storage contract's statements for one dialect and one schema.
#[derive(Debug)]
pub(crate) struct Renderer {
    dialect: Dialect,
    schema: Arc<Schema>,
    mysql_collation: String,
    inserts: HashMap<&'static str, Arc<str>>,
    gets: HashMap<&'static str, Arc<str>>,
    /// Select and count SQL by statement shape (see `shape`).
    shapes: shape::ShapeCache,
}

impl Renderer {
    /// A renderer; builds the cached insert and point-read SQL of every table.
    /// `mysql_collation` is the binary collation MySQL tables are created with.
    pub(crate) fn new(dialect: Dialect, schema: Arc<Schema>, mysql_collation: &str) -> Self {
        let mut r = Renderer {
            dialect,
            schema,
            mysql_collation: mysql_collation.to_owned(),
            inserts: HashMap::new(),
            gets: HashMap::new(),
            shapes: shape::ShapeCache::default(),
        };
        let schema = r.schema.clone();
        for t in schema.tables() {
            let ins = r.build_insert_sql(t);
            r.inserts.insert(t.name, ins);
            let get = r.build_get_sql(t);
            r.gets.insert(t.name, get);
        }
        r
    }

    /// The schema.
    pub(crate) fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The table named `name`, or a Config error.
    pub(crate) fn table(&self, name: &str) -> Result<&TableDef> {
        self.schema.table(name)
    }

    fn build<S: QueryStatementWriter>(&self, q: &S) -> Result<Stmt> {
        let (sql, values) = match self.dialect {
            Dialect::Sqlite => q.build(SqliteQueryBuilder),
            Dialect::Postgres => q.build(PostgresQueryBuilder),
            Dialect::Mysql => q.build(MysqlQueryBuilder),
        };
        let binds = values
            .into_iter()
            .map(|v| match v {
                sea_query::Value::BigInt(i) => Ok(Bind::Int(i)),
                sea_query::Value::Int(i) => Ok(Bind::Int(i.map(i64::from))),
                sea_query::Value::String(s) => Ok(Bind::Text(s)),
                sea_query::Value::BigUnsigned(u) => u
                    .map(i64::try_from)
                    .transpose()
                    .map(Bind::Int)
                    .map_err(|_| Error::Config("limit out of range".into())),
                other => Err(Error::storage(format!("unexpected bound value {other:?}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Stmt {
            sql: sql.into(),
            binds,
        })
    }

    fn sql_only<S: QueryStatementWriter>(&self, q: &S) -> Arc<str> {
        match self.dialect {
            Dialect::Sqlite => q.build(SqliteQueryBuilder).0,
            Dialect::Postgres => q.build(PostgresQueryBuilder).0,
            Dialect::Mysql => q.build(MysqlQueryBuilder).0,
        }
        .into()
    }

    fn row_kinds(t: &TableDef) -> Vec<Kind> {
        t.columns.iter().map(|c| Kind::of(c.ty)).collect()
    }

    fn key_binds(t: &TableDef, tenant: TenantId, key: &[Value]) -> Vec<Bind> {
        let mut binds = Vec::with_capacity(key.len() + 1);
        binds.push(Bind::Text(Some(tenant.as_uuid().hyphenated().to_string())));
        for (k, v) in t.primary_key.iter().zip(key) {
            let ty = t.column(k).map(|c| c.ty);
            binds.push(bind_of(ty, v));
        }
        binds
    }

    // ---- cached statements -------------------------------------------------------------

    fn build_insert_sql(&self, t: &TableDef) -> Arc<str> {
        let mut q = Query::insert();
        q.into_table(Alias::new(t.name))
            .columns(std::iter::once(TENANT).chain(t.columns.iter().map(|c| c.name)));
        let placeholders: Vec<Expr> = std::iter::once(Expr::val(""))
            .chain(t.columns.iter().map(|c| val(Some(c.ty), &Value::Null)))
            .collect();
        q.values_panic(placeholders);
        self.sql_only(&q)
    }

    fn build_get_sql(&self, t: &TableDef) -> Arc<str> {
        let mut q = Query::select();
        q.columns(t.columns.iter().map(|c| c.name))
            .from(Alias::new(t.name))
            .and_where(Expr::col(TENANT).eq(""));
        for k in &t.primary_key {
            q.and_where(Expr::col(*k).eq(""));
        }
        self.sql_only(&q)
    }

    /// The cached `INSERT` SQL of `table` (placeholders: `tenant_id`, then the table's
    /// columns in order), after checking the row has one value per column. A backend that
    /// binds the row's values itself (without copying them into a [`Stmt`]) uses this.
    pub(crate) fn insert_sql(&self, table: &str, row: &Row) -> Result<(&TableDef, &Arc<str>)> {
        let t = self.table(table)?;
        if row.len() != t.columns.len() {
            return Err(Error::storage(format!(
                "row for {table} has {} values, expected {}",
                row.len(),
                t.columns.len()
            )));
        }
        let sql = self
            .inserts
            .get(t.name)
            .ok_or_else(|| Error::Config(format!("unknown table {table}")))?;
        Ok((t, sql))
    }

    /// `INSERT` of one row (SQL cached per table).
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn insert(&self, tenant: TenantId, table: &str, row: &Row) -> Result<Stmt> {
        let (t, sql) = self.insert_sql(table, row)?;
        let sql = sql.clone();
        let mut binds = Vec::with_capacity(row.len() + 1);
        binds.push(Bind::Text(Some(tenant.as_uuid().hyphenated().to_string())));
        for (c, v) in t.columns.iter().zip(row) {
            binds.push(bind_of(Some(c.ty), v));
        }
        Ok(Stmt { sql, binds })
    }

    /// Point read by primary key (SQL cached per table); `None` when the key has the wrong
    /// number of values (no row can match).
    pub(crate) fn get(
        &self,
        tenant: TenantId,
        table: &str,
        key: &[Value],
    ) -> Result<Option<Fetch>> {
        crmkit_core::store::check_key(&self.schema, table, key)?;
        let t = self.table(table)?;
        if key.len() != t.primary_key.len() {
            return Ok(None);
        }
        let sql = self
            .gets
            .get(t.name)
            .cloned()
            .ok_or_else(|| Error::Config(format!("unknown table {table}")))?;
        Ok(Some(Fetch {
            stmt: Stmt {
                sql,
                binds: Self::key_binds(t, tenant, key),
            },
            kinds: Self::row_kinds(t),
        }))
    }

    // ---- conditions --------------------------------------------------------------------

    fn column(&self, t: &TableDef, name: &str) -> Result<ColumnType> {
        t.column(name)
            .map(|c| c.ty)
            .ok_or_else(|| unknown_column(t.name, name))
    }

    fn text_expr(&self, e: Expr, ty: ColumnType) -> Expr {
        if is_text(ty) {
            e
        } else {
            Func::cast_as(e, Alias::new(self.dialect.text_cast_type())).into()
        }
    }

    /// `cs` joined with `op` (AND or OR), left to right; `empty` (TRUE or FALSE) for none.
    fn join(
        &self,
        tenant: TenantId,
        t: &TableDef,
        cs: &[Cond],
        empty: &'static str,
        op: fn(Expr, Expr) -> Expr,
    ) -> Result<Expr> {
        let mut it = cs.iter();
        let Some(first) = it.next() else {
            return Ok(Expr::cust(empty));
        };
        let mut e = self.cond(tenant, t, first)?;
        for c in it {
            e = op(e, self.cond(tenant, t, c)?);
        }
        Ok(e)
    }

    /// Renders a condition on table `t` (columns unqualified).
    pub(crate) fn cond(&self, tenant: TenantId, t: &TableDef, c: &Cond) -> Result<Expr> {
        Ok(match c {
            Cond::True => Expr::cust("TRUE"),
            Cond::False => Expr::cust("FALSE"),
            Cond::Cmp(col, op, v) => {
                let ty = self.column(t, col)?;
                let l = Expr::col(col.clone());
                let r = val(Some(ty), v);
                match op {
                    CmpOp::Eq => l.eq(r),
                    CmpOp::Ne => l.ne(r),
                    CmpOp::Lt => l.lt(r),
                    CmpOp::Lte => l.lte(r),
                    CmpOp::Gt => l.gt(r),
                    CmpOp::Gte => l.gte(r),
                }
            }
            Cond::In(col, vs) => {
                let ty = self.column(t, col)?;
                if vs.is_empty() {
                    Expr::cust("FALSE")
                } else {
                    Expr::col(col.clone()).is_in(vs.iter().map(|v| val(Some(ty), v)))
                }
            }
            Cond::IsNull(col) => {
                self.column(t, col)?;
                Expr::col(col.clone()).is_null()
            }
            Cond::Contains(col, needle) => {
                let ty = self.column(t, col)?;
                self.text_expr(Expr::col(col.clone()), ty)
                    .like(LikeExpr::new(format!("%{}%", like_escape(needle))).escape(LIKE_ESCAPE))
            }
            Cond::StartsWith(col, prefix) => {
                let ty = self.column(t, col)?;
                self.text_expr(Expr::col(col.clone()), ty)
                    .like(LikeExpr::new(format!("{}%", like_escape(prefix))).escape(LIKE_ESCAPE))
            }
            Cond::And(cs) => self.join(tenant, t, cs, "TRUE", |a, b| a.and(b))?,
            Cond::Or(cs) => self.join(tenant, t, cs, "FALSE", |a, b| a.or(b))?,
            Cond::Not(c) => self.cond(tenant, t, c)?.not(),
            Cond::Custom { field, cond } => {
                self.column(t, "id")?;
                let cv = self.table(CUSTOM_VALUES)?;
                let mut sub = Query::select();
                sub.column(Alias::new("record_id"))
                    .from(Alias::new(CUSTOM_VALUES))
                    .and_where(Expr::col(TENANT).eq(tenant_val(tenant)))
                    .and_where(Expr::col("record_kind").eq(field.record_kind.as_str()))
                    .and_where(Expr::col("field_key").eq(field.key.as_str()));
                if let Some(inner) = cond {
                    sub.and_where(self.cond(tenant, cv, inner)?);
                }
                Expr::col("id").in_subquery(sub)
            }
        })
    }

    fn scoped(&self, tenant: TenantId, t: &TableDef, c: &Cond) -> Result<Expr> {
        Ok(Expr::col(TENANT)
            .eq(tenant_val(tenant))
            .and(self.cond(tenant, t, c)?))
    }

    // ---- select ------------------------------------------------------------------------

    fn custom_sort_expr(
        &self,
        tenant: TenantId,
        t: &TableDef,
        column: &str,
        f: &CustomRef,
    ) -> Result<(Expr, ColumnType)> {
        self.column(t, "id")?;
        let cv = self.table(CUSTOM_VALUES)?;
        let ty = self.column(cv, column)?;
        let a = || Alias::new(SORT_ALIAS);
        let mut sub = Query::select();
        sub.expr(Expr::col((a(), Alias::new(column))))
            .from_as(Alias::new(CUSTOM_VALUES), a())
            .and_where(Expr::col((a(), TENANT)).eq(tenant_val(tenant)))
            .and_where(Expr::col((a(), "record_kind")).eq(f.record_kind.as_str()))
            .and_where(Expr::col((a(), "field_key")).eq(f.key.as_str()))
            .and_where(Expr::col((a(), "record_id")).equals((Alias::new(t.name), Alias::new("id"))))
            .and_where(Expr::col((a(), "ord")).eq(0i64));
        Ok((Expr::SubQuery(None, Box::new(sub.into())), ty))
    }

    fn order_expr(
        &self,
        tenant: TenantId,
        t: &TableDef,
        o: &OrderKey,
    ) -> Result<(Expr, ColumnType)> {
        let (e, ty) = match &o.custom {
            None => {
                let ty = self.column(t, &o.column)?;
                (Expr::col(Alias::new(o.column.as_str())), ty)
            }
            Some(f) => self.custom_sort_expr(tenant, t, &o.column, f)?,
        };
        Ok(match &o.null_as {
            Some(v) => (Func::coalesce([e, val(Some(ty), v)]).into(), ty),
            None => (e, ty),
        })
    }

    /// The condition "this row's key is strictly after `after`" in the order `keys`
    /// (lexicographic, honouring each key's direction; NULL sorts lowest).
    fn keyset(keys: &[(Expr, ColumnType, bool)], after: &[Value]) -> Expr {
        let n = keys.len().min(after.len());
        let mut ors: Option<Expr> = None;
        for i in 0..n {
            let (e, ty, desc) = &keys[i];
            let v = &after[i];
            let beyond = match (v.is_null(), desc) {
                (true, false) => Some(e.clone().is_not_null()),
                (true, true) => None,
                (false, false) => Some(e.clone().gt(val(Some(*ty), v))),
                (false, true) => Some(e.clone().lt(val(Some(*ty), v)).or(e.clone().is_null())),
            };
            let Some(mut term) = beyond else { continue };
            for j in (0..i).rev() {
                let (ej, tyj, _) = &keys[j];
                let eq = if after[j].is_null() {
                    ej.clone().is_null()
                } else {
                    ej.clone().eq(val(Some(*tyj), &after[j]))
                };
                term = eq.and(term);
            }
            ors = Some(match ors {
                None => term,
                Some(o) => o.or(term),
            });
        }
        ors.unwrap_or_else(|| Expr::cust("FALSE"))
    }

    /// A select: the table's columns in order, filtered, ordered (then by primary key),
    /// after the keyset position, limited.
    pub(crate) fn select(&self, tenant: TenantId, s: &Select) -> Result<Fetch> {
        let t = self.table(s.table)?;
        crmkit_core::store::check_select(&self.schema, s)?;
        Ok(Fetch {
            stmt: self.select_stmt(tenant, t, s)?,
            kinds: Self::row_kinds(t),
        })
    }

    /// Builds [`Self::select`]'s statement with sea-query.
    fn build_select(&self, tenant: TenantId, t: &TableDef, s: &Select) -> Result<Stmt> {
        let mut q = Query::select();
        for c in &t.columns {
            if s.omit.iter().any(|o| o == c.name) {
                // A constant: the column is not read (the row keeps its shape).
                q.expr(Expr::cust("NULL"));
            } else {
                // A `&'static str` identifier is borrowed (an `Alias` allocates twice).
                q.column(c.name);
            }
        }
        q.from(t.name).and_where(self.scoped(tenant, t, &s.cond)?);
        let mut keys = Vec::with_capacity(s.order.len());
        for o in &s.order {
            let (e, ty) = self.order_expr(tenant, t, o)?;
            keys.push((e, ty, o.desc));
        }
        for ((e, _, desc), o) in keys.iter().zip(&s.order) {
            let order = if *desc { Order::Desc } else { Order::Asc };
            if self.dialect.nulls_sort_high() && o.null_as.is_none() {
                let nulls = if *desc {
                    NullOrdering::Last
                } else {
                    NullOrdering::First
                };
                q.order_by_expr_with_nulls(e.clone(), order, nulls);
            } else {
                q.order_by_expr(e.clone(), order);
            }
        }
        // Ties in key order, as the in-memory backend returns them. A key column already
        // ordered by is left out: repeating it (with another direction) would keep SQLite
        // from walking an index that covers the order.
        for k in &t.primary_key {
            if !s.order.iter().any(|o| o.custom.is_none() && o.column == *k) {
                q.order_by(*k, Order::Asc);
            }
        }
        if let Some(after) = &s.after {
            q.and_where(Self::keyset(&keys, after));
        }
        if let Some(l) = s.limit {
            q.limit(u64::from(l));
        }
        self.build(&q)
    }

    /// `SELECT COUNT(*)` of matching rows.
    pub(crate) fn count(&self, tenant: TenantId, table: &str, cond: &Cond) -> Result<Fetch> {
        let t = self.table(table)?;
        crmkit_core::store::check_cond(&self.schema, t, cond)?;
        Ok(Fetch {
            stmt: self.count_stmt(tenant, t, cond)?,
            kinds: vec![Kind::Int],
        })
    }

    /// Builds [`Self::count`]'s statement with sea-query.
    fn build_count(&self, tenant: TenantId, t: &TableDef, cond: &Cond) -> Result<Stmt> {
        let mut q = Query::select();
        q.expr(Func::count(Expr::col(Asterisk)))
            .from(t.name)
            .and_where(self.scoped(tenant, t, cond)?);
        self.build(&q)
    }

    /// Grouped aggregates: group columns, then one column per measure (two per sum where
    /// the dialect splits sums, see [`Dialect::split_sums`]); [`Self::finish_aggregate`]
    /// turns the fetched rows into the contract's. Groups come back unordered; the caller
    /// sorts them.
    pub(crate) fn aggregate(&self, tenant: TenantId, agg: &Aggregate) -> Result<Fetch> {
        let t = self.table(agg.table)?;
        crmkit_core::store::check_cond(&self.schema, t, &agg.cond)?;
        let mut q = Query::select();
        let mut kinds = vec![];
        // Buckets: the index of a row's range comes first, as a CASE over the bounds; the
        // rows outside every range are filtered out. It is grouped by position (`GROUP BY
        // 1`): PostgreSQL would not match a repeated CASE whose bounds are new parameters.
        let mut bucket_range = None;
        if let Some(b) = &agg.buckets {
            b.check()?;
            let ty = self.column(t, &b.column)?;
            let col = || Expr::col(Alias::new(b.column.as_str()));
            let last = b.bounds.len() - 2;
            let mut case = sea_query::CaseStatement::new();
            for (i, bound) in b.bounds[1..].iter().enumerate() {
                case = case.case(col().lt(val(Some(ty), bound)), Expr::val(i as i64));
            }
            q.expr(case);
            kinds.push(Kind::Int);
            bucket_range = Some(
                col()
                    .gte(val(Some(ty), &b.bounds[0]))
                    .and(col().lt(val(Some(ty), &b.bounds[last + 1]))),
            );
        }
        for g in &agg.group_by {
            let ty = self.column(t, g)?;
            q.column(Alias::new(g.as_str()));
            kinds.push(Kind::of(ty));
        }
        for m in &agg.measures {
            match m {
                Measure::Count => {
                    q.expr(Func::count(Expr::col(Asterisk)));
                    kinds.push(Kind::Int);
                }
                Measure::Sum(c) => {
                    let ty = self.column(t, c)?;
                    if is_text(ty) {
                        return Err(Error::Config(format!(
                            "cannot sum {}.{c}, a text column",
                            t.name
                        )));
                    }
                    let col = || Expr::col(Alias::new(c.as_str()));
                    if self.dialect.split_sums() {
                        // SUM of integers raises on a 64-bit overflow: sum the high and the
                        // low 32 bits apart (each partial sum fits 64 bits for fewer than
                        // 2^31 rows) and join them exactly in `finish_aggregate`.
                        q.expr(Func::sum(col().binary(BinOper::RShift, Expr::val(32i64))));
                        q.expr(Func::sum(
                            col().binary(BinOper::BitAnd, Expr::val(LOW_32_BITS)),
                        ));
                        kinds.push(Kind::Sum);
                        kinds.push(Kind::Sum);
                        continue;
                    }
                    let sum: Expr = Func::sum(col()).into();
                    if self.dialect.sum_as_text() {
                        q.expr(Func::cast_as(
                            sum,
                            Alias::new(self.dialect.text_cast_type()),
                        ));
                    } else {
                        q.expr(sum);
                    }
                    kinds.push(Kind::Sum);
                }
            }
        }
        q.from(t.name).and_where(self.scoped(tenant, t, &agg.cond)?);
        if let Some(range) = bucket_range {
            q.and_where(range);
            q.add_group_by([Expr::cust("1")]);
        }
        for g in &agg.group_by {
            q.add_group_by([Expr::col(Alias::new(g.as_str()))]);
        }
        Ok(Fetch {
            stmt: self.build(&q)?,
            kinds,
        })
    }

    /// The contract's aggregate rows from the fetched ones: where the dialect splits sums,
    /// each (high, low) pair becomes one exact [`Value::sum`] of `high * 2^32 + low`.
    pub(crate) fn finish_aggregate(&self, agg: &Aggregate, rows: Vec<Row>) -> Result<Vec<Row>> {
        if !self.dialect.split_sums() {
            return Ok(rows);
        }
        let bad = || Error::storage("malformed split sum from database");
        rows.into_iter()
            .map(|r| {
                let mut cells = r.into_iter();
                let keys = agg.group_by.len() + usize::from(agg.buckets.is_some());
                let mut out: Row = cells.by_ref().take(keys).collect();
                for m in &agg.measures {
                    match m {
                        Measure::Count => out.push(cells.next().ok_or_else(bad)?),
                        Measure::Sum(_) => {
                            let hi = cells.next().and_then(|v| v.as_sum()).ok_or_else(bad)?;
                            let lo = cells.next().and_then(|v| v.as_sum()).ok_or_else(bad)?;
                            let total = hi
                                .checked_mul(1 << 32)
                                .and_then(|h| h.checked_add(lo))
                                .ok_or_else(bad)?;
                            out.push(Value::sum(total));
                        }
                    }
                }
                Ok(out)
            })
            .collect()
    }

    // ---- writes ------------------------------------------------------------------------

    fn key_cond(&self, t: &TableDef, key: &[Value]) -> Result<Expr> {
        let mut e: Option<Expr> = None;
        for (k, v) in t.primary_key.iter().zip(key) {
            let ty = self.column(t, k)?;
            let c = Expr::col(Alias::new(*k)).eq(val(Some(ty), v));
            e = Some(match e {
                None => c,
                Some(p) => p.and(c),
            });
        }
        e.ok_or_else(|| Error::Config(format!("table {} has no primary key", t.name)))
    }

    /// A keyed `UPDATE`; with `expect_version`, also `version = v + 1 ... AND version = v`.
    /// `None` when the key has the wrong number of values (no row can match).
    pub(crate) fn update(
        &self,
        tenant: TenantId,
        table: &str,
        key: &[Value],
        set: &[(&'static str, Value)],
        expect_version: Option<u64>,
    ) -> Result<Option<Stmt>> {
        let t = self.table(table)?;
        let mut q = Query::update();
        q.table(Alias::new(t.name));
        let mut values: Vec<(Alias, Expr)> = Vec::with_capacity(set.len() + 1);
        for (c, v) in set {
            let ty = self.column(t, c)?;
            values.push((Alias::new(*c), val(Some(ty), v)));
        }
        if let Some(v) = expect_version {
            self.column(t, "version")
                .map_err(|_| Error::Config(format!("{table} has no version column")))?;
            let next = i64::try_from(v)
                .ok()
                .and_then(|v| v.checked_add(1))
                .ok_or_else(|| Error::Config(format!("version {v} out of range")))?;
            if !set.iter().any(|(c, _)| *c == "version") {
                values.push((Alias::new("version"), Expr::val(next)));
            }
        }
        if key.len() != t.primary_key.len() {
            return Ok(None);
        }
        if values.is_empty() {
            // Nothing to set: a no-op update that still reports whether the row exists.
            let first = t.primary_key[0];
            values.push((Alias::new(first), Expr::col(Alias::new(first))));
        }
        q.values(values);
        q.and_where(Expr::col(TENANT).eq(tenant_val(tenant)))
            .and_where(self.key_cond(t, key)?);
        if let Some(v) = expect_version {
            let v = i64::try_from(v).map_err(|_| Error::Config("version out of range".into()))?;
            q.and_where(Expr::col("version").eq(v));
        }
        self.build(&q).map(Some)
    }

    /// A keyed `DELETE`; `None` when the key has the wrong number of values.
    pub(crate) fn delete(
        &self,
        tenant: TenantId,
        table: &str,
        key: &[Value],
    ) -> Result<Option<Stmt>> {
        let t = self.table(table)?;
        if key.len() != t.primary_key.len() {
            return Ok(None);
        }
        let mut q = Query::delete();
        q.from_table(Alias::new(t.name))
            .and_where(Expr::col(TENANT).eq(tenant_val(tenant)))
            .and_where(self.key_cond(t, key)?);
        self.build(&q).map(Some)
    }

    /// `DELETE ... WHERE cond`.
    pub(crate) fn delete_where(&self, tenant: TenantId, table: &str, cond: &Cond) -> Result<Stmt> {
        let t = self.table(table)?;
        let mut q = Query::delete();
        q.from_table(Alias::new(t.name))
            .and_where(self.scoped(tenant, t, cond)?);
        self.build(&q)
    }

    /// `UPDATE ... SET ... WHERE cond` (never a key column, never the version).
    pub(crate) fn update_where(
        &self,
        tenant: TenantId,
        table: &str,
        cond: &Cond,
        set: &[(&'static str, Value)],
    ) -> Result<Option<Stmt>> {
        let t = self.table(table)?;
        if set.is_empty() {
            return Ok(None);
        }
        let mut values: Vec<(Alias, Expr)> = Vec::with_capacity(set.len());
        for (c, v) in set {
            let ty = self.column(t, c)?;
            if t.primary_key.contains(c) {
                return Err(Error::Config(format!(
                    "UpdateWhere cannot set key column {table}.{c}"
                )));
            }
            values.push((Alias::new(*c), val(Some(ty), v)));
        }
        let mut q = Query::update();
        q.table(Alias::new(t.name))
            .values(values)
            .and_where(self.scoped(tenant, t, cond)?);
        self.build(&q).map(Some)
    }

    /// The table a write touches (checked against the schema).
    pub(crate) fn write_table(&self, w: &Write) -> Result<&TableDef> {
        self.table(match w {
            Write::Insert { table, .. }
            | Write::Update { table, .. }
            | Write::Delete { table, .. }
            | Write::DeleteWhere { table, .. }
            | Write::UpdateWhere { table, .. } => table,
        })
    }

    // ---- event sequence ----------------------------------------------------------------

    /// Inserts the tenant's sequence row with 0 unless it exists.
    pub(crate) fn seq_ensure(&self, tenant: TenantId, name: &str) -> Result<Stmt> {
        let mut q = Query::insert();
        q.into_table(Alias::new(crmkit_core::event::SEQUENCES_TABLE))
            .columns([TENANT, "name", "last_value"])
            .values_panic([tenant_val(tenant), Expr::val(name), Expr::val(0i64)])
            .on_conflict(
                OnConflict::columns([TENANT, "name"])
                    .do_nothing_on(["name"])
                    .to_owned(),
            );
        self.build(&q)
    }

    /// Adds `n` to the tenant's sequence (taking its row lock until commit).
    pub(crate) fn seq_bump(&self, tenant: TenantId, name: &str, n: i64) -> Result<Stmt> {
        let mut q = Query::update();
        q.table(Alias::new(crmkit_core::event::SEQUENCES_TABLE))
            .value(Alias::new("last_value"), Expr::col("last_value").add(n))
            .and_where(Expr::col(TENANT).eq(tenant_val(tenant)))
            .and_where(Expr::col("name").eq(name));
        self.build(&q)
    }

    /// Reads the tenant's sequence value (a locking read where there is one).
    pub(crate) fn seq_read(&self, tenant: TenantId, name: &str) -> Result<Fetch> {
        let mut q = Query::select();
        q.column(Alias::new("last_value"))
            .from(Alias::new(crmkit_core::event::SEQUENCES_TABLE))
            .and_where(Expr::col(TENANT).eq(tenant_val(tenant)))
            .and_where(Expr::col("name").eq(name));
        if self.dialect.supports_for_update() {
            q.lock(LockType::Update);
        }
        Ok(Fetch {
            stmt: self.build(&q)?,
            kinds: vec![Kind::Int],
        })
    }

    // ---- DDL ---------------------------------------------------------------------------

    fn column_def(&self, c: &ColumnDef, with_default: bool) -> sea_query::ColumnDef {
        let mut d = sea_query::ColumnDef::new(Alias::new(c.name));
        self.column_type(&mut d, c.ty);
        if c.nullable {
            d.null();
        } else {
            d.not_null();
        }
        if let (true, Some(v)) = (with_default, &c.default) {
            d.default(sv(Some(c.ty), v));
        }
        d
    }

    fn column_type(&self, d: &mut sea_query::ColumnDef, ty: ColumnType) {
        if let (Some(coll), true) = (self.dialect.text_collation(), is_text(ty)) {
            // The collation belongs to the type (before NOT NULL / DEFAULT).
            let base = match ty {
                ColumnType::Uuid => "varchar(36)".to_owned(),
                ColumnType::Date => "varchar(10)".to_owned(),
                ColumnType::Text(n) => format!("varchar({n})"),
                _ => "text".to_owned(),
            };
            d.custom(Alias::new(format!("{base} {coll}")));
            return;
        }
        match ty {
            ColumnType::Uuid => {
                d.string_len(36);
            }
            ColumnType::Text(n) => {
                if self.dialect.bounded_text_is_text() {
                    d.text();
                } else {
                    d.string_len(n);
                }
            }
            ColumnType::LongText => match self.dialect.long_text_type() {
                Some(name) => {
                    d.custom(Alias::new(name));
                }
                None => {
                    d.text();
                }
            },
            ColumnType::Date => {
                d.string_len(10);
            }
            ColumnType::Int | ColumnType::Bool | ColumnType::Timestamp | ColumnType::Decimal => {
                d.big_integer();
            }
        }
    }

    fn table_stmt(&self, name: &str) -> sea_query::TableCreateStatement {
        let mut ct = Table::create();
        ct.table(Alias::new(name));
        if self.dialect == Dialect::Mysql {
            ct.engine("InnoDB")
                .character_set("utf8mb4")
                .collate(self.mysql_collation.as_str());
        }
        ct
    }

    fn schema_sql<S: sea_query::SchemaStatementBuilder>(&self, s: &S) -> String {
        match self.dialect {
            Dialect::Sqlite => s.build(sea_query::SqliteQueryBuilder),
            Dialect::Postgres => s.build(sea_query::PostgresQueryBuilder),
            Dialect::Mysql => s.build(sea_query::MysqlQueryBuilder),
        }
    }

    /// `CREATE TABLE` with `tenant_id` first, then one `CREATE INDEX` per index.
    pub(crate) fn create_table(&self, t: &TableDef) -> Vec<String> {
        let mut ct = self.table_stmt(t.name);
        let mut tenant = sea_query::ColumnDef::new(Alias::new(TENANT));
        self.column_type(&mut tenant, ColumnType::Uuid);
        tenant.not_null();
        ct.col(tenant);
        for c in &t.columns {
            ct.col(self.column_def(c, false));
        }
        let mut pk = Index::create();
        pk.col(Alias::new(TENANT));
        for k in &t.primary_key {
            pk.col(Alias::new(*k));
        }
        ct.primary_key(&mut pk);
        let mut out = vec![self.schema_sql(&ct)];
        if self.dialect.without_rowid() {
            out[0].push_str(" WITHOUT ROWID");
        }
        for ix in &t.indexes {
            out.push(self.create_index(t.name, ix));
        }
        out
    }

    /// `CREATE [UNIQUE] INDEX name ON table (tenant_id, columns...)`.
    pub(crate) fn create_index(&self, table: &str, ix: &IndexDef) -> String {
        let mut ci = Index::create();
        ci.name(ix.name)
            .table(Alias::new(table))
            .col(Alias::new(TENANT));
        for c in &ix.columns {
            ci.col(Alias::new(*c));
        }
        if ix.unique {
            ci.unique();
        }
        self.schema_sql(&ci)
    }

    /// `ALTER TABLE ... ADD COLUMN` with the default for existing rows.
    pub(crate) fn add_column(&self, table: &str, c: &ColumnDef) -> String {
        let mut at = Table::alter();
        at.table(Alias::new(table))
            .add_column(self.column_def(c, true));
        self.schema_sql(&at)
    }

    /// Creates the migration bookkeeping table if it does not exist.
    pub(crate) fn create_migrations_table(&self) -> String {
        let mut ct = self.table_stmt(MIGRATIONS_TABLE);
        ct.if_not_exists();
        let mut module = sea_query::ColumnDef::new(Alias::new("module"));
        self.column_type(&mut module, ColumnType::Text(64));
        module.not_null().primary_key();
        ct.col(module)
            .col(
                sea_query::ColumnDef::new(Alias::new("version"))
                    .big_integer()
                    .not_null(),
            )
            .col(
                sea_query::ColumnDef::new(Alias::new("applied_at"))
                    .big_integer()
                    .not_null(),
            );
        self.schema_sql(&ct)
    }

    /// Reads every module's recorded version.
    pub(crate) fn read_migrations(&self) -> Result<Fetch> {
        let mut q = Query::select();
        q.columns(["module", "version"])
            .from(Alias::new(MIGRATIONS_TABLE));
        Ok(Fetch {
            stmt: self.build(&q)?,
            kinds: vec![Kind::Text, Kind::Int],
        })
    }

    /// Records a module's version.
    pub(crate) fn record_migration(&self, module: &str, version: u32, at: i64) -> Result<Stmt> {
        let mut q = Query::insert();
        q.into_table(Alias::new(MIGRATIONS_TABLE))
            .columns(["module", "version", "applied_at"])
            .values_panic([
                Expr::val(module),
                Expr::val(i64::from(version)),
                Expr::val(at),
            ])
            .on_conflict(
                OnConflict::column("module")
                    .update_columns(["version", "applied_at"])
                    .to_owned(),
            );
        self.build(&q)
    }

    /// The SQL of one migration step.
    pub(crate) fn step_sql(&self, step: &SchemaStep) -> Vec<String> {
        match step {
            SchemaStep::CreateTable(t) => self.create_table(t),
            SchemaStep::AddColumn { table, column } => vec![self.add_column(table, column)],
            SchemaStep::CreateIndex { table, index } => vec![self.create_index(table, index)],
        }
    }

    /// Lists which of MySQL's byte-wise no-pad collations the server has.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn collation_probe(&self) -> Result<Fetch> {
        let mut q = Query::select();
        q.column(Alias::new("COLLATION_NAME"))
            .from((Alias::new("information_schema"), Alias::new("COLLATIONS")))
            .and_where(
                Expr::col(Alias::new("COLLATION_NAME"))
                    .is_in(["utf8mb4_0900_bin", "utf8mb4_nopad_bin"]),
            );
        Ok(Fetch {
            stmt: self.build(&q)?,
            kinds: vec![Kind::Text],
        })
    }

    /// A bare `SELECT` of one function call, for locks (`pg_advisory_lock`, `GET_LOCK`).
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn call(&self, func: &'static str, args: Vec<Expr>) -> Result<Stmt> {
        let mut q = Query::select();
        q.expr(Func::cust(func).args(args));
        self.build(&q)
    }
}

/// Binds a value for a column of type `ty`.
pub(crate) fn bind_of(ty: Option<ColumnType>, v: &Value) -> Bind {
    match sv(ty, v) {
        sea_query::Value::BigInt(i) => Bind::Int(i),
        sea_query::Value::String(s) => Bind::Text(s),
        _ => Bind::Text(None),
    }
}

/// An integer literal expression (for lock calls).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn int_arg(v: i64) -> Expr {
    Expr::val(v)
}

/// A text literal expression (for lock calls).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn text_arg(v: &str) -> Expr {
    Expr::val(v)
}

mod shape;
#[cfg(test)]
mod tests;
