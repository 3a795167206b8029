//! The storage contract: tables, rows, conditions, changesets and the [`Backend`] trait.
//!
//! Domain modules describe their tables with [`TableDef`] (inside versioned
//! [`Migration`]s), read with [`Backend::get`] / [`Backend::select`], and write by
//! committing a [`Changeset`]: every row written by a command, across modules, plus its
//! audit entries and domain events. A backend applies a changeset atomically (all of it or
//! nothing) and assigns the events their per-tenant sequence numbers inside the same
//! transaction. This is what makes a command that spans modules atomic on every backend,
//! and it keeps backends generic: a third-party module's tables are stored exactly like the
//! built-in ones.
//!
//! Every table is keyed by tenant: `tenant_id` is an implicit first column, the first
//! column of the primary key and of every index, and every backend call takes the tenant.
//! A [`Row`] holds the declared columns only, without `tenant_id`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{AuditChange, NewEvent};
use crate::id::{RecordRef, TenantId, UserId};

/// A boxed, sendable future (what [`Backend`]'s methods return, so it can be a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stored value. Richer domain types map onto these four: booleans, timestamps
/// (microseconds since the Unix epoch, UTC), decimals and money (10^-4 units) are `Int`;
/// dates (`YYYY-MM-DD`) and JSON are `Text`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// UTF-8 text, stored byte-exact.
    Text(String),
    /// A UUID (stored as its lowercase hyphenated text, so it sorts the same everywhere).
    Uuid(Uuid),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Int(_) => 1,
            Value::Text(_) => 2,
            Value::Uuid(_) => 3,
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The UUID, if this is one.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Value::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    /// A text value or NULL.
    pub fn opt_text(s: Option<impl Into<String>>) -> Value {
        s.map(|s| Value::Text(s.into())).unwrap_or(Value::Null)
    }

    /// A UUID value or NULL.
    pub fn opt_uuid(u: Option<impl Into<Uuid>>) -> Value {
        u.map(|u| Value::Uuid(u.into())).unwrap_or(Value::Null)
    }

    /// An integer value or NULL.
    pub fn opt_int(i: Option<i64>) -> Value {
        i.map(Value::Int).unwrap_or(Value::Null)
    }

    /// A timestamp as microseconds since the epoch.
    pub fn timestamp(t: DateTime<Utc>) -> Value {
        Value::Int(t.timestamp_micros())
    }

    /// An optional timestamp.
    pub fn opt_timestamp(t: Option<DateTime<Utc>>) -> Value {
        t.map(Value::timestamp).unwrap_or(Value::Null)
    }

    /// The cell every backend returns for an exact [`Measure::Sum`] of `total`: `Int` when
    /// it fits 64 bits, otherwise `Text` holding its decimal digits (`-?[0-9]+`). One rule
    /// for every backend, so results compare equal across backends.
    pub fn sum(total: i128) -> Value {
        match i64::try_from(total) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Text(total.to_string()),
        }
    }

    /// The exact value of a [`Measure::Sum`] cell (see [`Value::sum`]): an `Int`, or `Text`
    /// holding a decimal integer that fits 128 bits; NULL counts as 0. `None` for anything
    /// else.
    pub fn as_sum(&self) -> Option<i128> {
        match self {
            Value::Null => Some(0),
            Value::Int(i) => Some(i128::from(*i)),
            Value::Text(s) => {
                let digits = s.strip_prefix('-').unwrap_or(s);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse().ok()
            }
            Value::Uuid(_) => None,
        }
    }
}

/// Total order used by the in-memory backend; it matches SQL ordering for values of one
/// column type (integers numerically, text by bytes, UUIDs by their text).
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Uuid(a), Value::Uuid(b)) => a.cmp(b),
            (Value::Text(a), Value::Uuid(b)) => a.as_str().cmp(b.hyphenated().to_string().as_str()),
            (Value::Uuid(a), Value::Text(b)) => a.hyphenated().to_string().as_str().cmp(b.as_str()),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v as i64)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<Uuid> for Value {
    fn from(v: Uuid) -> Self {
        Value::Uuid(v)
    }
}

/// The values of a table's declared columns, in declaration order (no `tenant_id`).
pub type Row = Vec<Value>;

/// A cell of a result row read in place: a [`Value`] whose text is borrowed from the
/// backend's row instead of copied into a `String` (see [`Backend::select_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// UTF-8 text.
    Text(&'a str),
    /// A UUID.
    Uuid(Uuid),
}

impl CellRef<'_> {
    /// The owned value.
    pub fn to_value(&self) -> Value {
        match *self {
            CellRef::Null => Value::Null,
            CellRef::Int(i) => Value::Int(i),
            CellRef::Text(s) => Value::Text(s.to_owned()),
            CellRef::Uuid(u) => Value::Uuid(u),
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, CellRef::Null)
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            CellRef::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            CellRef::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The UUID, if this is one.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            CellRef::Uuid(u) => Some(*u),
            _ => None,
        }
    }
}

impl Value {
    /// This value as a borrowed cell.
    pub fn as_cell(&self) -> CellRef<'_> {
        match self {
            Value::Null => CellRef::Null,
            Value::Int(i) => CellRef::Int(*i),
            Value::Text(s) => CellRef::Text(s),
            Value::Uuid(u) => CellRef::Uuid(*u),
        }
    }
}

/// One result row handed to a [`RowSink`]: cells read in place by the backend, or a row
/// the backend owns already (the in-memory backend, the default implementations).
#[derive(Debug)]
pub enum RowRef<'a> {
    /// Borrowed cells, valid for the call.
    Cells(&'a [CellRef<'a>]),
    /// An owned row.
    Owned(Row),
}

impl RowRef<'_> {
    /// The owned row (copies borrowed text).
    pub fn into_row(self) -> Row {
        match self {
            RowRef::Cells(c) => c.iter().map(CellRef::to_value).collect(),
            RowRef::Owned(r) => r,
        }
    }

    /// A copy of the row.
    pub fn to_row(&self) -> Row {
        match self {
            RowRef::Cells(c) => c.iter().map(CellRef::to_value).collect(),
            RowRef::Owned(r) => r.clone(),
        }
    }
}

/// What [`Backend::select_with`] and [`Backend::get_with`] hand each row to; an error
/// stops the read and is returned.
pub type RowSink<'s> = dyn FnMut(RowRef<'_>) -> crate::Result<()> + Send + 's;

/// The type of a column. Backends map each to a type that round-trips the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A UUID (VARCHAR(36) text).
    Uuid,
    /// Text of at most this many characters (at most 255 for indexed columns).
    Text(u32),
    /// Unbounded text (JSON, long bodies); cannot be indexed.
    LongText,
    /// A 64-bit integer.
    Int,
    /// A boolean, stored as 0/1.
    Bool,
    /// An instant, as microseconds since the Unix epoch (UTC).
    Timestamp,
    /// A decimal or money amount, as an integer count of 10^-4.
    Decimal,
    /// A calendar date as `YYYY-MM-DD` text.
    Date,
}

/// A column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// The column's name (a lowercase identifier).
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The value existing rows get when the column is added by a later migration.
    pub default: Option<Value>,
}

impl ColumnDef {
    /// A NOT NULL column.
    pub const fn required(name: &'static str, ty: ColumnType) -> Self {
        ColumnDef {
            name,
            ty,
            nullable: false,
            default: None,
        }
    }

    /// A nullable column.
    pub const fn optional(name: &'static str, ty: ColumnType) -> Self {
        ColumnDef {
            name,
            ty,
            nullable: true,
            default: None,
        }
    }

    /// The same column with a default for rows that exist when it is added.
    pub fn with_default(mut self, v: Value) -> Self {
        self.default = Some(v);
        self
    }
}

/// Columns from `(name, type, nullable)` triples, the compact form modules declare their
/// tables in.
pub fn columns(spec: &[(&'static str, ColumnType, bool)]) -> Vec<ColumnDef> {
    spec.iter()
        .map(|&(n, t, nullable)| {
            if nullable {
                ColumnDef::optional(n, t)
            } else {
                ColumnDef::required(n, t)
            }
        })
        .collect()
}

/// An index; `tenant_id` is implicitly its first column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    /// The index's name, unique in the database (prefix it with the table's name).
    pub name: &'static str,
    /// The indexed columns after `tenant_id`.
    pub columns: Vec<&'static str>,
    /// Whether the indexed values are unique per tenant (NULLs never collide).
    pub unique: bool,
}

impl IndexDef {
    /// A plain index.
    pub fn new(name: &'static str, columns: impl Into<Vec<&'static str>>) -> Self {
        IndexDef {
            name,
            columns: columns.into(),
            unique: false,
        }
    }

    /// A unique index.
    pub fn unique(name: &'static str, columns: impl Into<Vec<&'static str>>) -> Self {
        IndexDef {
            name,
            columns: columns.into(),
            unique: true,
        }
    }
}

/// A table; `tenant_id` is implicitly its first column and the first primary-key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// The table's name (a lowercase identifier, prefixed by the module: `contacts_person`).
    pub name: &'static str,
    /// Declared columns, in row order.
    pub columns: Vec<ColumnDef>,
    /// Primary-key columns after `tenant_id`.
    pub primary_key: Vec<&'static str>,
    /// Secondary indexes.
    pub indexes: Vec<IndexDef>,
}

impl TableDef {
    /// A table with columns and a primary key.
    pub fn new(
        name: &'static str,
        columns: impl Into<Vec<ColumnDef>>,
        primary_key: impl Into<Vec<&'static str>>,
    ) -> Self {
        TableDef {
            name,
            columns: columns.into(),
            primary_key: primary_key.into(),
            indexes: vec![],
        }
    }

    /// Adds an index.
    pub fn index(mut self, index: IndexDef) -> Self {
        self.indexes.push(index);
        self
    }

    /// The position of a column in a [`Row`].
    pub fn position(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == column)
    }

    /// The column named `column`.
    pub fn column(&self, column: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == column)
    }

    /// Positions of the primary-key columns in a row.
    pub fn key_positions(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .map(|c| self.position(c).expect("validated schema"))
            .collect()
    }

    /// The primary-key values of a row.
    pub fn key_of(&self, row: &Row) -> Vec<Value> {
        self.primary_key
            .iter()
            .map(|c| row[self.position(c).expect("validated schema")].clone())
            .collect()
    }
}

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStep {
    /// Creates a table with its indexes.
    CreateTable(TableDef),
    /// Adds a column (nullable, or with a default) at the end of a table's rows.
    AddColumn {
        /// The table.
        table: &'static str,
        /// The new column.
        column: ColumnDef,
    },
    /// Adds an index to a table.
    CreateIndex {
        /// The table.
        table: &'static str,
        /// The index.
        index: IndexDef,
    },
}

impl SchemaStep {
    /// One [`SchemaStep::AddColumn`] of `table` per column, in order.
    pub fn add_columns(
        table: &'static str,
        columns: impl IntoIterator<Item = ColumnDef>,
    ) -> Vec<SchemaStep> {
        columns
            .into_iter()
            .map(|column| SchemaStep::AddColumn { table, column })
            .collect()
    }
}

/// A versioned schema change of one module. Versions start at 1 and increase by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The version this migration brings the module to.
    pub version: u32,
    /// What it does, in words.
    pub description: &'static str,
    /// Its steps.
    pub steps: Vec<SchemaStep>,
}

impl Migration {
    /// A migration that creates `tables`.
    pub fn create_tables(
        version: u32,
        description: &'static str,
        tables: impl IntoIterator<Item = TableDef>,
    ) -> Self {
        Migration {
            version,
            description,
            steps: tables.into_iter().map(SchemaStep::CreateTable).collect(),
        }
    }
}

/// The migrations of one module.
#[derive(Debug, Clone)]
pub struct ModuleMigrations {
    /// The module's name.
    pub module: &'static str,
    /// Its migrations, by increasing version.
    pub migrations: Vec<Migration>,
}

/// The tables of every composed module at their latest version.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    tables: HashMap<&'static str, TableDef>,
    modules: Vec<ModuleMigrations>,
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 60
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Schema {
    /// Replays the migrations of `modules` (in order) into the resulting tables, checking
    /// names, versions and references; a bad schema is a Config error.
    pub fn build(modules: Vec<ModuleMigrations>) -> Result<Schema> {
        let mut tables: HashMap<&'static str, TableDef> = HashMap::new();
        let mut index_names = std::collections::HashSet::new();
        for m in &modules {
            for (i, mig) in m.migrations.iter().enumerate() {
                if mig.version as usize != i + 1 {
                    return Err(Error::Config(format!(
                        "module {}: migration versions must be 1, 2, 3, ...; found {} at position {}",
                        m.module,
                        mig.version,
                        i + 1
                    )));
                }
                for step in &mig.steps {
                    let mut check_index = |t: &TableDef, ix: &IndexDef| -> Result<()> {
                        if !valid_ident(ix.name) || !index_names.insert(ix.name) {
                            return Err(Error::Config(format!(
                                "index name {} is invalid or used twice",
                                ix.name
                            )));
                        }
                        for c in &ix.columns {
                            let col = t.column(c).ok_or_else(|| {
                                Error::Config(format!("index {} names unknown column {c}", ix.name))
                            })?;
                            if col.ty == ColumnType::LongText
                                || matches!(col.ty, ColumnType::Text(n) if n > 255)
                            {
                                return Err(Error::Config(format!(
                                    "index {} covers {c}, a text column longer than 255",
                                    ix.name
                                )));
                            }
                        }
                        Ok(())
                    };
                    match step {
                        SchemaStep::CreateTable(t) => {
                            if !valid_ident(t.name) || tables.contains_key(t.name) {
                                return Err(Error::Config(format!(
                                    "table {} is invalid or defined twice",
                                    t.name
                                )));
                            }
                            let mut seen = std::collections::HashSet::new();
                            for c in &t.columns {
                                if !valid_ident(c.name)
                                    || c.name == "tenant_id"
                                    || !seen.insert(c.name)
                                {
                                    return Err(Error::Config(format!(
                                        "table {}: column {} is invalid, reserved or repeated",
                                        t.name, c.name
                                    )));
                                }
                            }
                            if t.primary_key.is_empty() {
                                return Err(Error::Config(format!(
                                    "table {} has no primary key",
                                    t.name
                                )));
                            }
                            for k in &t.primary_key {
                                if t.column(k).is_none_or(|c| c.nullable) {
                                    return Err(Error::Config(format!(
                                        "table {}: key column {k} is unknown or nullable",
                                        t.name
                                    )));
                                }
                            }
                            for ix in &t.indexes {
                                check_index(t, ix)?;
                            }
                            tables.insert(t.name, t.clone());
                        }
                        SchemaStep::AddColumn { table, column } => {
                            let t = tables.get_mut(table).ok_or_else(|| {
                                Error::Config(format!("add column to unknown table {table}"))
                            })?;
                            if !valid_ident(column.name) || t.column(column.name).is_some() {
                                return Err(Error::Config(format!(
                                    "column {} is invalid or exists",
                                    column.name
                                )));
                            }
                            if !column.nullable && column.default.is_none() {
                                return Err(Error::Config(format!(
                                    "added column {}.{} needs to be nullable or have a default",
                                    table, column.name
                                )));
                            }
                            t.columns.push(column.clone());
                        }
                        SchemaStep::CreateIndex { table, index } => {
                            let t = tables
                                .get(table)
                                .ok_or_else(|| {
                                    Error::Config(format!("index on unknown table {table}"))
                                })?
                                .clone();
                            check_index(&t, index)?;
                            tables
                                .get_mut(table)
                                .expect("checked")
                                .indexes
                                .push(index.clone());
                        }
                    }
                }
            }
        }
        Ok(Schema { tables, modules })
    }

    /// The table named `name`.
    pub fn table(&self, name: &str) -> Result<&TableDef> {
        self.tables
            .get(name)
            .ok_or_else(|| Error::Config(format!("unknown table {name}")))
    }

    /// Every table.
    pub fn tables(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.values()
    }

    /// The migrations the schema was built from, per module.
    pub fn modules(&self) -> &[ModuleMigrations] {
        &self.modules
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl CmpOp {
    /// Whether `ord` (left compared to right) satisfies the operator.
    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Lte => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Gte => ord != Ordering::Less,
        }
    }
}

/// A condition on a table's rows, with SQL's three-valued logic (a comparison with NULL is
/// unknown, and `Not(unknown)` is unknown) on every backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Always true.
    True,
    /// Always false.
    False,
    /// `column op value`.
    Cmp(String, CmpOp, Value),
    /// `column IN (values)`; an empty list is false.
    In(String, Vec<Value>),
    /// `column IS NULL`.
    IsNull(String),
    /// `column` contains the text (byte-exact; callers fold case beforehand).
    Contains(String, String),
    /// `column` starts with the text (byte-exact).
    StartsWith(String, String),
    /// All of them (empty: true).
    And(Vec<Cond>),
    /// Any of them (empty: false).
    Or(Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
    /// Whether the row (whose key column `id` is a UUID) has a matching value of a custom
    /// field in the core custom-value table. Never unknown.
    Custom {
        /// The field.
        field: CustomRef,
        /// The condition on the custom-value row (columns `int_val`, `text_val`), or `None`
        /// for "has any value".
        cond: Option<Box<Cond>>,
    },
}

impl Cond {
    /// `a AND b`, flattening.
    pub fn and(self, other: Cond) -> Cond {
        match (self, other) {
            (Cond::True, c) | (c, Cond::True) => c,
            (Cond::And(mut a), Cond::And(b)) => {
                a.extend(b);
                Cond::And(a)
            }
            (Cond::And(mut a), c) => {
                a.push(c);
                Cond::And(a)
            }
            (a, b) => Cond::And(vec![a, b]),
        }
    }

    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: impl Into<Value>) -> Cond {
        Cond::Cmp(column.into(), CmpOp::Eq, value.into())
    }
}

/// One sort key of a [`Select`].
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    /// The column.
    pub column: String,
    /// Descending instead of ascending.
    pub desc: bool,
    /// What NULL sorts as (rendered as `COALESCE(column, value)`); required for nullable
    /// columns so that every backend orders NULLs the same way.
    pub null_as: Option<Value>,
    /// When set, the key is not a column of the table but the value column `column`
    /// (`int_val` or `text_val`) of this custom field's first value (`ord = 0`) in the core
    /// custom-value table, joined on the row's `id`.
    pub custom: Option<CustomRef>,
}

impl OrderKey {
    /// Ascending on the table's `column` (no NULL substitute, not a custom field).
    pub fn asc(column: impl Into<String>) -> Self {
        OrderKey {
            column: column.into(),
            desc: false,
            null_as: None,
            custom: None,
        }
    }

    /// Descending on the table's `column` (no NULL substitute, not a custom field).
    pub fn desc(column: impl Into<String>) -> Self {
        OrderKey {
            desc: true,
            ..OrderKey::asc(column)
        }
    }
}

/// A custom field of a record kind, as referenced by conditions and sort keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomRef {
    /// The record kind.
    pub record_kind: String,
    /// The field's key.
    pub key: String,
}

/// A query on one table: condition, order, keyset position and limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// The table.
    pub table: &'static str,
    /// The condition.
    pub cond: Cond,
    /// The order; it must end with a unique column (the key) for keyset paging.
    pub order: Vec<OrderKey>,
    /// Keyset position: the order-key values (NULLs replaced) of the last row seen; rows
    /// strictly after it are returned.
    pub after: Option<Vec<Value>>,
    /// At most this many rows.
    pub limit: Option<u32>,
    /// Columns returned as NULL without being read (search shadows a list never decodes);
    /// rows keep their shape.
    pub omit: Vec<String>,
}

impl Select {
    /// All rows of `table` matching `cond`, unordered.
    pub fn new(table: &'static str, cond: Cond) -> Self {
        Select {
            table,
            cond,
            order: vec![],
            after: None,
            limit: None,
            omit: vec![],
        }
    }
}

/// An aggregate over a table's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The table.
    pub table: &'static str,
    /// Which rows.
    pub cond: Cond,
    /// Group-by columns.
    pub group_by: Vec<String>,
    /// What to compute per group.
    pub measures: Vec<Measure>,
    /// Also group by the range of a column each row falls in (time buckets of a report:
    /// one aggregate instead of one per bucket).
    pub buckets: Option<Buckets>,
}

/// Ranges of one column an [`Aggregate`] groups by: bucket `i` holds the rows with
/// `bounds[i] <= column < bounds[i + 1]`. Rows below the first bound, from the last bound
/// on, or NULL in the column are left out, and a bucket without rows has no result row
/// (as a group without rows has none). A result row starts with the bucket's index
/// (an `Int`), then the `group_by` columns, then the measures. At least two bounds,
/// strictly increasing, of the column's stored variant (a Config error otherwise); the
/// contract allows at most [`Buckets::MAX`] buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    /// The column (an `Int`, `Timestamp`, `Decimal` or `Date` column usually).
    pub column: String,
    /// The bounds, strictly increasing.
    pub bounds: Vec<Value>,
}

impl Buckets {
    /// Most buckets an aggregate may ask for.
    pub const MAX: usize = 1000;

    /// Buckets of `column` between consecutive `bounds`.
    pub fn new(column: impl Into<String>, bounds: Vec<Value>) -> Buckets {
        Buckets {
            column: column.into(),
            bounds,
        }
    }

    /// The bucket of a value: `i` with `bounds[i] <= v < bounds[i + 1]`.
    pub fn index_of(&self, v: &Value) -> Option<usize> {
        if v.is_null() {
            return None;
        }
        let above = self.bounds.partition_point(|b| b <= v);
        (above >= 1 && above < self.bounds.len()).then(|| above - 1)
    }

    /// A Config error unless the bounds are at least two, strictly increasing, not NULL,
    /// at most [`Self::MAX`] buckets.
    pub fn check(&self) -> Result<()> {
        let n = self.bounds.len();
        if n < 2 || n - 1 > Self::MAX {
            return Err(Error::Config(format!(
                "buckets of {} need 2 to {} bounds, not {n}",
                self.column,
                Self::MAX + 1
            )));
        }
        if self.bounds.iter().any(Value::is_null) || self.bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Config(format!(
                "the bucket bounds of {} must be non-null and strictly increasing",
                self.column
            )));
        }
        Ok(())
    }
}

/// One aggregate measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// Number of rows (an `Int`).
    Count,
    /// Exact sum of an integer column (NULLs ignored; an empty group sums to 0). Sums never
    /// overflow: a sum of any number of 64-bit values (fewer than 2^64 rows) fits 128 bits.
    /// The cell is [`Value::sum`] of the total (an `Int` when it fits 64 bits, else its
    /// decimal digits as `Text`) on every backend; read it with [`Value::as_sum`].
    Sum(String),
}

/// One row written by a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Inserts a row; a primary-key or unique-index collision is [`Error::Duplicate`].
    Insert {
        /// The table.
        table: &'static str,
        /// The row.
        row: Row,
    },
    /// Updates columns of the row with this primary key.
    Update {
        /// The table.
        table: &'static str,
        /// Primary-key values (after `tenant_id`).
        key: Vec<Value>,
        /// Columns and their new values.
        set: Vec<(&'static str, Value)>,
        /// Optimistic concurrency: when set, the row's `version` column must equal it and
        /// becomes `expect_version + 1`; otherwise the write fails with a Conflict.
        expect_version: Option<u64>,
        /// The record, for the Conflict or NotFound error.
        record: RecordRef,
    },
    /// Deletes the row with this primary key (no error if absent).
    Delete {
        /// The table.
        table: &'static str,
        /// Primary-key values.
        key: Vec<Value>,
    },
    /// Deletes every row matching a condition.
    DeleteWhere {
        /// The table.
        table: &'static str,
        /// Which rows.
        cond: Cond,
    },
    /// Sets columns of every row matching a condition (no error when none matches; a
    /// `version` column is left as it is). For derived state that a module keeps beside
    /// another module's records, where the row may not exist (see
    /// [`crate::Module::before_commit`]). The set columns must not be key columns.
    UpdateWhere {
        /// The table.
        table: &'static str,
        /// Which rows.
        cond: Cond,
        /// Columns and their new values.
        set: Vec<(&'static str, Value)>,
    },
}

/// Everything one command writes, applied atomically by [`Backend::commit`].
#[derive(Debug, Clone)]
pub struct Changeset {
    /// The tenant every write belongs to.
    pub tenant: TenantId,
    /// Who made the change.
    pub actor: Option<UserId>,
    /// Where the call came from.
    pub origin: String,
    /// When (stored on events and audit entries).
    pub at: DateTime<Utc>,
    /// Row writes, applied in order.
    pub writes: Vec<Write>,
    /// Audit entries.
    pub audit: Vec<AuditChange>,
    /// Domain events; they get consecutive sequence numbers at commit.
    pub events: Vec<NewEvent>,
    /// The automation rule run that makes the change, if one does (from
    /// [`crate::Ctx::cause`]).
    pub cause: Option<crate::event::Cause>,
}

impl Changeset {
    /// An empty changeset for the context's tenant, actor, origin and time.
    pub fn new(ctx: &crate::ctx::Ctx) -> Self {
        Changeset {
            tenant: ctx.tenant(),
            actor: Some(ctx.actor().user),
            origin: ctx.origin().to_owned(),
            at: ctx.now(),
            writes: vec![],
            audit: vec![],
            events: vec![],
            cause: ctx.cause().cloned(),
        }
    }

    /// Whether nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.audit.is_empty() && self.events.is_empty()
    }

    /// Every write of the changeset, in the order a backend applies them: the row writes,
    /// then audit rows, then the events numbered from `first_seq` (allocated by the backend
    /// inside its transaction, just before the events are written).
    pub fn audit_writes(&self) -> Vec<Write> {
        self.audit
            .iter()
            .map(|a| crate::event::audit_row(self, a))
            .collect()
    }

    /// The event rows, numbered from `first_seq`.
    pub fn event_writes(&self, first_seq: u64) -> Vec<Write> {
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| crate::event::event_row(self, e, first_seq + i as u64))
            .collect()
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Commit {
    /// Sequence numbers given to the changeset's events (`first..=last`), if it had any.
    pub events: Option<(u64, u64)>,
}

/// A fault to inject into the next commits (for atomicity tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with a Storage error just before the n-th write (0-based) of each commit,
    /// counting row writes, audit rows, the sequence allocation and event rows.
    FailAtWrite(usize),
}

/// Checks one value bound for a column of type `ty` (`None`: a column the schema does not
/// know, which the backend reports itself) against what every backend stores and compares
/// alike, so that a bad value is the same Validation error, naming the column, everywhere
/// (never a PostgreSQL-only Storage error or a silently empty result elsewhere):
/// - text never contains NUL (PostgreSQL text cannot hold it);
/// - a [`ColumnType::Date`] value is canonical `YYYY-MM-DD` text of a date in the years 1
///   to 9999 ([`crate::text::check_date`]): dates are stored and compared as text, which
///   orders correctly only for four-digit years (`"10000-01-01" < "9999-12-31"`).
///
/// Every backend calls it (through [`check_cond`], [`check_select`], [`check_key`] and
/// [`check_changeset`]) before it touches storage; domain validation normally refuses
/// such values earlier with a field-specific error.
pub fn check_cell(column: &str, ty: Option<ColumnType>, v: &Value) -> Result<()> {
    match v {
        Value::Text(s) if s.contains('\0') => {
            Err(Error::validation(column, "contains a NUL character"))
        }
        Value::Text(s) if ty == Some(ColumnType::Date) => {
            let ok = s.len() == 10
                && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok_and(|d| {
                    crate::text::check_date(d).is_ok() && d.format("%Y-%m-%d").to_string() == *s
                });
            if ok {
                Ok(())
            } else {
                Err(Error::validation(
                    column,
                    format!("{s:?} is not a date from 0001-01-01 to 9999-12-31 (YYYY-MM-DD)"),
                ))
            }
        }
        _ => Ok(()),
    }
}

fn check_needle(column: &str, needle: &str) -> Result<()> {
    if needle.contains('\0') {
        Err(Error::validation(column, "contains a NUL character"))
    } else {
        Ok(())
    }
}

/// Checks every value of a condition on `table` with [`check_cell`] (custom-value
/// conditions against the custom-value table). Unknown tables and columns are left to the
/// backend's own errors.
pub fn check_cond(schema: &Schema, table: &TableDef, cond: &Cond) -> Result<()> {
    let ty = |c: &str| table.column(c).map(|c| c.ty);
    match cond {
        Cond::True | Cond::False | Cond::IsNull(_) => Ok(()),
        Cond::Cmp(c, _, v) => check_cell(c, ty(c), v),
        Cond::In(c, vs) => vs.iter().try_for_each(|v| check_cell(c, ty(c), v)),
        Cond::Contains(c, n) | Cond::StartsWith(c, n) => check_needle(c, n),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().try_for_each(|c| check_cond(schema, table, c)),
        Cond::Not(c) => check_cond(schema, table, c),
        Cond::Custom { cond, .. } => match (cond, schema.table(crate::custom::VALUES_TABLE)) {
            (Some(c), Ok(values)) => check_cond(schema, values, c),
            _ => Ok(()),
        },
    }
}

/// Checks a select's condition and keyset position (see [`check_cell`]).
pub fn check_select(schema: &Schema, select: &Select) -> Result<()> {
    let Ok(t) = schema.table(select.table) else {
        return Ok(());
    };
    check_cond(schema, t, &select.cond)?;
    if let Some(after) = &select.after {
        for (k, v) in select.order.iter().zip(after) {
            // Keyset values may be a NULL substitute (`""` for a date), so only NUL matters.
            check_cell(&k.column, None, v)?;
        }
    }
    Ok(())
}

/// Checks primary-key values of `table` (see [`check_cell`]).
pub fn check_key(schema: &Schema, table: &str, key: &[Value]) -> Result<()> {
    let Ok(t) = schema.table(table) else {
        return Ok(());
    };
    for (c, v) in t.primary_key.iter().zip(key) {
        check_cell(c, t.column(c).map(|c| c.ty), v)?;
    }
    Ok(())
}

/// Checks every value a changeset writes or matches on (see [`check_cell`]) and its
/// origin, before anything is written: a bad value fails the whole commit with the same
/// Validation error on every backend.
pub fn check_changeset(schema: &Schema, cs: &Changeset) -> Result<()> {
    if cs.origin.contains('\0') {
        return Err(Error::validation("origin", "contains a NUL character"));
    }
    let set_ok = |t: &TableDef, set: &[(&'static str, Value)]| {
        set.iter()
            .try_for_each(|(c, v)| check_cell(c, t.column(c).map(|c| c.ty), v))
    };
    for w in &cs.writes {
        let table = match w {
            Write::Insert { table, .. }
            | Write::Update { table, .. }
            | Write::Delete { table, .. }
            | Write::DeleteWhere { table, .. }
            | Write::UpdateWhere { table, .. } => *table,
        };
        let Ok(t) = schema.table(table) else {
            continue;
        };
        match w {
            Write::Insert { row, .. } => {
                for (c, v) in t.columns.iter().zip(row) {
                    check_cell(c.name, Some(c.ty), v)?;
                }
            }
            Write::Update { key, set, .. } => {
                check_key(schema, table, key)?;
                set_ok(t, set)?;
            }
            Write::Delete { key, .. } => check_key(schema, table, key)?,
            Write::DeleteWhere { cond, .. } => check_cond(schema, t, cond)?,
            Write::UpdateWhere { cond, set, .. } => {
                check_cond(schema, t, cond)?;
                set_ok(t, set)?;
            }
        }
    }
    Ok(())
}

/// Checks the arguments of [`Backend::reserve`].
pub fn check_reserve(sequence: &str, n: u64) -> Result<()> {
    if sequence == crate::event::EVENT_SEQUENCE {
        return Err(Error::Config(
            "the events sequence is the change feed's and cannot be reserved".into(),
        ));
    }
    if sequence.is_empty() || sequence.len() > 64 || sequence.contains('\0') {
        return Err(Error::Config(
            "a sequence name has 1 to 64 bytes and no NUL".into(),
        ));
    }
    if n == 0 || n > i64::MAX as u64 / 2 {
        return Err(Error::Config(format!("cannot reserve {n} values")));
    }
    Ok(())
}

/// Which kind of backend this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The in-memory reference backend.
    Memory,
    /// SQLite through rusqlite.
    Sqlite,
    /// PostgreSQL through sqlx.
    Postgres,
    /// MySQL or MariaDB through sqlx.
    Mysql,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Memory => "memory",
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
            BackendKind::Mysql => "mysql",
        })
    }
}

/// A storage backend. Implemented by [`crate::memory::MemoryBackend`] and by crmkit-sql;
/// a third-party backend implements it too and runs crmkit-testkit's conformance suite.
///
/// Every method is scoped by a tenant; a backend never reads or writes a row of another
/// tenant. Tables and columns are checked against the [`Schema`]; rows are trusted to have
/// the schema's shape (the domain layer builds them). Every value is checked with
/// [`check_cell`] (through [`check_key`], [`check_select`], [`check_cond`] and
/// [`check_changeset`]) before storage is touched, so that NUL in text and malformed or
/// out-of-range dates are the same Validation error on every backend.
pub trait Backend: Send + Sync + 'static {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// The schema the backend was opened with.
    fn schema(&self) -> &Schema;

    /// The row of `table` with this primary key.
    fn get<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        key: &'a [Value],
    ) -> BoxFuture<'a, Result<Option<Row>>>;

    /// Rows matching a select.
    fn select<'a>(
        &'a self,
        tenant: TenantId,
        select: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row>>>;

    /// Like [`Backend::get`], handing the row (if any) to `each` instead of returning it;
    /// whether there was one. A backend that can read cells in place (SQLite) overrides it
    /// so that text is not copied into a [`Row`] only to be decoded and dropped.
    fn get_with<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        key: &'a [Value],
        each: &'a mut RowSink<'_>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            match self.get(tenant, table, key).await? {
                Some(row) => each(RowRef::Owned(row)).map(|()| true),
                None => Ok(false),
            }
        })
    }

    /// Like [`Backend::select`], handing the rows in order to `each` instead of returning
    /// them (see [`Backend::get_with`]).
    fn select_with<'a>(
        &'a self,
        tenant: TenantId,
        select: &'a Select,
        each: &'a mut RowSink<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for row in self.select(tenant, select).await? {
                each(RowRef::Owned(row))?;
            }
            Ok(())
        })
    }

    /// The number of rows of `table` matching `cond`.
    fn count<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        cond: &'a Cond,
    ) -> BoxFuture<'a, Result<u64>>;

    /// Grouped aggregates: one row per group, the group values then the measures (a count
    /// is an `Int`; a sum is [`Value::sum`] of its exact total, never an overflow error).
    fn aggregate<'a>(
        &'a self,
        tenant: TenantId,
        agg: &'a Aggregate,
    ) -> BoxFuture<'a, Result<Vec<Row>>>;

    /// Applies a changeset atomically: all its writes, audit rows and events, or nothing.
    fn commit(&self, changeset: Changeset) -> BoxFuture<'_, Result<Commit>>;

    /// Reserves `n` (at least 1) consecutive values of the tenant's counter `sequence`, in
    /// a transaction of its own, and returns the first. Values are unique and increasing
    /// per tenant and sequence, also under concurrent reservations (the counter row is
    /// locked until the reservation commits); a value reserved by a command that then
    /// fails is not reused, so numbers may have gaps. The sequence `events` is the
    /// change feed's and cannot be reserved (a Config error), nor can `n` be 0.
    fn reserve<'a>(
        &'a self,
        tenant: TenantId,
        sequence: &'a str,
        n: u64,
    ) -> BoxFuture<'a, Result<u64>>;

    /// Injects (or clears) a fault into subsequent commits. For tests.
    fn inject_fault(&self, fault: Option<Fault>);
}
