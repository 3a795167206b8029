//! The query AST: filters over named fields, sorting, and keyset pagination with an opaque
//! cursor.
//!
//! Field names are checked against the record kind's [`RecordFields`] and its custom
//! fields (`custom.<key>`); an unknown name is a Validation error and never reaches SQL.
//! Values are converted to the field's type (a wrong type is a Validation error) and always
//! bound as parameters.
//!
//! Values every backend would treat differently are refused as a Validation error naming
//! `filter.<field>`, the same on every backend:
//! - text containing NUL (PostgreSQL cannot compare it; the others would match nothing);
//! - dates (built-in and custom date fields) outside 0001-01-01 to 9999-12-31, the range
//!   stored dates have ([`crate::text::check_date`]): dates are stored as `YYYY-MM-DD` text,
//!   and a five-digit or negative year would compare wrongly as text.
//!
//! Timestamps are stored as integer microseconds, which compare correctly for every
//! instant `chrono` represents (about ±262 000 years), so a timestamp bound needs no range:
//! a bound past the year 9999 or before the year 0 gives the correct result everywhere. `contains` and `starts_with` are case-insensitive: they compare
//! folded text ([`crate::text::fold`]) kept in a shadow column.
//!
//! Pages are keyset-paged: the order always ends with the record id (UUID v7), and the
//! cursor carries the last row's sort values plus a fingerprint of the tenant and query, so
//! a cursor of another query or tenant, or one that was tampered with, is a Validation
//! error. Limits are 1 to [`MAX_LIMIT`].

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::custom::{CustomFieldType, CustomSchema, CustomValue, CustomValues, value_column};
use crate::error::{Error, Result};
use crate::id::{RecordKind, TenantId};
use crate::money::{Money, decimal_to_units};
use crate::store::{CmpOp, ColumnType, Cond, OrderKey, Row, Select, TableDef, Value};
use crate::text::fold;

/// The largest page.
pub const MAX_LIMIT: u32 = 1000;
/// The page size when none is given.
pub const DEFAULT_LIMIT: u32 = 50;

/// Fails with a Validation error on `limit` unless a page of `limit` items may be asked
/// for (1 to [`MAX_LIMIT`]).
pub fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::validation(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    Ok(())
}

/// A value in a filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    /// No value (comparisons with it are never true; use `is_null`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A decimal (also money amounts).
    Decimal(Decimal),
    /// Text (also enum values, ids and dates in text form).
    Text(String),
    /// A UUID.
    Uuid(Uuid),
    /// A date.
    Date(NaiveDate),
    /// An instant.
    Timestamp(DateTime<Utc>),
}

macro_rules! fv_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for FieldValue { fn from(x: $t) -> Self { FieldValue::$v(x.into()) } }
    )*};
}
fv_from!(bool => Bool, i64 => Int, i32 => Int, u32 => Int, Decimal => Decimal, String => Text, &str => Text, Uuid => Uuid, NaiveDate => Date, DateTime<Utc> => Timestamp);

macro_rules! fv_from_id {
    ($($t:ty),*) => {$(
        impl From<$t> for FieldValue { fn from(x: $t) -> Self { FieldValue::Uuid(x.as_uuid()) } }
    )*};
}
fv_from_id!(
    crate::id::UserId,
    crate::id::TeamId,
    crate::id::ContactId,
    crate::id::OrganizationId,
    crate::id::LeadId,
    crate::id::DealId,
    crate::id::CampaignId,
    crate::id::PipelineId,
    crate::id::StageId
);

impl From<Money> for FieldValue {
    fn from(m: Money) -> Self {
        FieldValue::Decimal(m.amount())
    }
}

/// A filter over named fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// `field op value`.
    Cmp(String, CmpOpName, FieldValue),
    /// `field` is one of the values.
    In(String, Vec<FieldValue>),
    /// `field` has no value.
    IsNull(String),
    /// `field` contains the text, ignoring case.
    Contains(String, String),
    /// `field` starts with the text, ignoring case.
    StartsWith(String, String),
    /// All of them.
    And(Vec<Filter>),
    /// Any of them.
    Or(Vec<Filter>),
    /// Not.
    Not(Box<Filter>),
}

/// A comparison operator in a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOpName {
    /// Equal.
    Eq,
    /// Not equal (a missing value is neither equal nor not equal).
    Ne,
    /// Less than.
    Lt,
    /// Less or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater or equal.
    Gte,
}

impl From<CmpOpName> for CmpOp {
    fn from(o: CmpOpName) -> Self {
        match o {
            CmpOpName::Eq => CmpOp::Eq,
            CmpOpName::Ne => CmpOp::Ne,
            CmpOpName::Lt => CmpOp::Lt,
            CmpOpName::Lte => CmpOp::Lte,
            CmpOpName::Gt => CmpOp::Gt,
            CmpOpName::Gte => CmpOp::Gte,
        }
    }
}

impl Filter {
    /// `field = value`.
    pub fn eq(field: impl Into<String>, v: impl Into<FieldValue>) -> Filter {
        Filter::Cmp(field.into(), CmpOpName::Eq, v.into())
    }
    /// `field <> value`.
    pub fn ne(field: impl Into<String>, v: impl Into<FieldValue>) -> Filter {
        Filter::Cmp(field.into(), CmpOpName::Ne, v.into())
    }
    /// `field < value`.
    pub fn lt(field: impl Into<String>, v: impl Into<FieldValue>) -> Filter {
        Filter::Cmp(field.into(), CmpOpName::Lt, v.into())
    }
    /// `field <= value`.
    pub fn lte(field: impl Into<String>, v: impl Into<FieldValue>) -> Filter {
        Filter::Cmp(field.into(), CmpOpName::Lte, v.into())
    }
    /// `field > value`.
    pub fn gt(field: impl Into<String>, v: impl Into<FieldValue>) -> Filter {
        Filter::Cmp(field.into(), CmpOpName::Gt, v.into())
    }
    /// `field >= value`.
    pub fn gte(field: impl Into<String>, v: impl Into<FieldValue>) -> Filter {
        Filter::Cmp(field.into(), CmpOpName::Gte, v.into())
    }
    /// `field` is one of `values`.
    pub fn is_in<V: Into<FieldValue>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::In(field.into(), values.into_iter().map(Into::into).collect())
    }
    /// `field` has no value.
    pub fn is_null(field: impl Into<String>) -> Filter {
        Filter::IsNull(field.into())
    }
    /// `field` contains `text`, ignoring case.
    pub fn contains(field: impl Into<String>, text: impl Into<String>) -> Filter {
        Filter::Contains(field.into(), text.into())
    }
    /// `field` starts with `text`, ignoring case.
    pub fn starts_with(field: impl Into<String>, text: impl Into<String>) -> Filter {
        Filter::StartsWith(field.into(), text.into())
    }
    /// Both.
    pub fn and(self, other: Filter) -> Filter {
        match self {
            Filter::And(mut v) => {
                v.push(other);
                Filter::And(v)
            }
            f => Filter::And(vec![f, other]),
        }
    }
    /// Either.
    pub fn or(self, other: Filter) -> Filter {
        match self {
            Filter::Or(mut v) => {
                v.push(other);
                Filter::Or(v)
            }
            f => Filter::Or(vec![f, other]),
        }
    }
    /// Negation.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    /// The field.
    pub field: String,
    /// Descending.
    pub desc: bool,
}

/// A list query: filter, sort, page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Which records.
    pub filter: Option<Filter>,
    /// Order (the record id is always the last key).
    pub sort: Vec<Sort>,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Where to continue (from [`Page::next_cursor`]).
    pub cursor: Option<String>,
    /// Include soft-deleted records.
    pub include_deleted: bool,
    /// Also count every matching record (costs a second query).
    pub with_total: bool,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            filter: None,
            sort: vec![],
            limit: DEFAULT_LIMIT,
            cursor: None,
            include_deleted: false,
            with_total: false,
        }
    }
}

impl Query {
    /// The first page of everything, [`DEFAULT_LIMIT`] per page.
    pub fn new() -> Self {
        Self::default()
    }
    /// With a filter (and-ed with any filter already set).
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = Some(match self.filter {
            None => f,
            Some(old) => old.and(f),
        });
        self
    }
    /// Sorted ascending by `field` (after earlier keys).
    pub fn sort_asc(mut self, field: impl Into<String>) -> Self {
        self.sort.push(Sort {
            field: field.into(),
            desc: false,
        });
        self
    }
    /// Sorted descending by `field` (after earlier keys).
    pub fn sort_desc(mut self, field: impl Into<String>) -> Self {
        self.sort.push(Sort {
            field: field.into(),
            desc: true,
        });
        self
    }
    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
    /// Continue after a cursor.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
    /// Count every match too.
    pub fn with_total(mut self) -> Self {
        self.with_total = true;
        self
    }
    /// Include soft-deleted records.
    pub fn include_deleted(mut self) -> Self {
        self.include_deleted = true;
        self
    }

    /// Whether the filter or sort names a custom field (`custom.<key>`), so that the
    /// custom field definitions are needed to compile it.
    pub fn mentions_custom(&self) -> bool {
        fn walk(f: &Filter) -> bool {
            match f {
                Filter::Cmp(n, ..)
                | Filter::In(n, _)
                | Filter::IsNull(n)
                | Filter::Contains(n, _)
                | Filter::StartsWith(n, _) => n.starts_with("custom."),
                Filter::And(fs) | Filter::Or(fs) => fs.iter().any(walk),
                Filter::Not(f) => walk(f),
            }
        }
        self.sort.iter().any(|s| s.field.starts_with("custom."))
            || self.filter.as_ref().is_some_and(walk)
    }
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The records.
    pub items: Vec<T>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
    /// The total, if asked for.
    pub total: Option<u64>,
}

/// The type of a built-in field, deciding which filter values it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// An id.
    Uuid,
    /// Text.
    Text,
    /// An integer.
    Int,
    /// A boolean.
    Bool,
    /// A decimal or money amount (10^-4 units in storage).
    Decimal,
    /// An instant.
    Timestamp,
    /// A date.
    Date,
    /// One of fixed values.
    Enum(&'static [&'static str]),
}

/// A filterable, sortable field of a record kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The API name.
    pub name: &'static str,
    /// The column it is stored in.
    pub column: &'static str,
    /// Its type.
    pub ty: FieldType,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// The column holding folded text, which makes `contains` / `starts_with` possible.
    pub fold_column: Option<&'static str>,
}

impl FieldSpec {
    /// A field stored in the column of the same name.
    pub const fn new(name: &'static str, ty: FieldType, nullable: bool) -> Self {
        FieldSpec {
            name,
            column: name,
            ty,
            nullable,
            fold_column: None,
        }
    }
    /// The same field, searchable case-insensitively through `fold_column`.
    pub const fn folded(mut self, fold_column: &'static str) -> Self {
        self.fold_column = Some(fold_column);
        self
    }
    /// The same field stored in another column.
    pub const fn in_column(mut self, column: &'static str) -> Self {
        self.column = column;
        self
    }
}

/// The queryable fields of a record kind and where they live.
#[derive(Debug, Clone)]
pub struct RecordFields {
    /// The record kind.
    pub kind: RecordKind,
    /// Its table (with an `id` UUID key column).
    pub table: &'static str,
    /// Its fields.
    pub fields: &'static [FieldSpec],
    /// The column holding custom values as JSON, if the kind has custom fields.
    pub custom_column: Option<&'static str>,
}

/// A compiled list query.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The select to run (asking for one row more than the page, to know if there is a next).
    pub select: Select,
    /// The page size.
    pub limit: u32,
    fingerprint: u64,
    order_sources: Vec<OrderSource>,
}

#[derive(Debug, Clone)]
enum OrderSource {
    Column(usize, Option<Value>),
    Custom(String, &'static str, Option<Value>),
}

/// FNV-1a over text written into it (a `fmt::Write`), so a fingerprint is hashed from
/// its formatted parts without building the string.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf29ce484222325)
    }
}

impl std::fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for b in s.bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
        Ok(())
    }
}

fn bad_field(section: &str, name: &str, reason: impl Into<String>) -> Error {
    Error::validation(format!("{section}.{name}"), reason)
}

fn null_sub(ty: FieldType) -> Value {
    match ty {
        FieldType::Uuid => Value::Uuid(Uuid::nil()),
        FieldType::Text | FieldType::Date | FieldType::Enum(_) => Value::Text(String::new()),
        FieldType::Int | FieldType::Bool | FieldType::Decimal | FieldType::Timestamp => {
            Value::Int(i64::MIN)
        }
    }
}

impl RecordFields {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Compiles a query for `tenant` into a select on this kind's table, and-ed with `scope`
    /// (tenant-independent conditions the service adds: visibility, not deleted).
    /// `table` is this kind's table definition (from the backend's schema), used to locate
    /// sort columns in rows when building the next cursor.
    pub fn compile(
        &self,
        table: &TableDef,
        tenant: TenantId,
        q: &Query,
        custom: &CustomSchema,
        scope: Cond,
    ) -> Result<Compiled> {
        check_limit(q.limit)?;
        let mut cond = scope;
        if let Some(f) = &q.filter {
            cond = cond.and(self.compile_filter(f, custom, 0)?);
        }
        let table_def_pos = |c: &str| {
            table
                .position(c)
                .ok_or_else(|| Error::Config(format!("{} has no column {c}", table.name)))
        };
        let mut order = vec![];
        let mut sources = vec![];
        for s in &q.sort {
            if let Some(key) = s.field.strip_prefix("custom.") {
                let def = custom.get(key).ok_or_else(|| {
                    bad_field("sort", &s.field, "is not a field of this record kind")
                })?;
                if matches!(def.ty, CustomFieldType::MultiChoice { .. }) {
                    return Err(bad_field(
                        "sort",
                        &s.field,
                        "a multi-choice field cannot be sorted",
                    ));
                }
                let col = value_column(&def.ty);
                let sub = if col == "int_val" {
                    Value::Int(i64::MIN)
                } else {
                    Value::Text(String::new())
                };
                order.push(OrderKey {
                    column: col.into(),
                    desc: s.desc,
                    null_as: Some(sub.clone()),
                    custom: Some(custom.field_ref(key).expect("defined")),
                });
                sources.push(OrderSource::Custom(key.to_owned(), col, Some(sub)));
            } else {
                let f = self.field(&s.field).ok_or_else(|| {
                    bad_field("sort", &s.field, "is not a field of this record kind")
                })?;
                let null_as = f.nullable.then(|| null_sub(f.ty));
                order.push(OrderKey {
                    column: f.column.into(),
                    desc: s.desc,
                    null_as: null_as.clone(),
                    custom: None,
                });
                let pos = table_def_pos(f.column)?;
                sources.push(OrderSource::Column(pos, null_as));
            }
        }
        order.push(OrderKey::asc("id"));
        sources.push(OrderSource::Column(table_def_pos("id")?, None));
        // The FNV-1a hash of `"{tenant}|{table}|{cond:?}|{order:?}|{include_deleted}"`,
        // hashed as it is formatted.
        let fingerprint = {
            let mut h = Fnv::new();
            std::fmt::Write::write_fmt(
                &mut h,
                format_args!(
                    "{tenant}|{}|{:?}|{:?}|{}",
                    self.table, cond, order, q.include_deleted
                ),
            )
            .expect("hashing cannot fail");
            h.0
        };
        let after = match &q.cursor {
            None => None,
            Some(c) => {
                let vals = decode_cursor(c, fingerprint, &order)?;
                // Each key must have its column's type: a retyped value would otherwise
                // reach the backend (a SQL type error, or a silent cross-type compare).
                for (v, s) in vals.iter().zip(&sources) {
                    let text = match s {
                        OrderSource::Column(p, _) => match table.columns[*p].ty {
                            ColumnType::Uuid => None,
                            ColumnType::Text(_) | ColumnType::LongText | ColumnType::Date => {
                                Some(true)
                            }
                            _ => Some(false),
                        },
                        OrderSource::Custom(_, col, _) => Some(*col == "text_val"),
                    };
                    let ok = matches!(
                        (text, v),
                        (None, Value::Uuid(_))
                            | (Some(true), Value::Text(_))
                            | (Some(false), Value::Int(_))
                    );
                    if !ok {
                        return Err(Error::validation("cursor", "is not a cursor of this query"));
                    }
                }
                Some(vals)
            }
        };
        Ok(Compiled {
            select: Select {
                table: self.table,
                cond,
                order,
                after,
                limit: Some(q.limit + 1),
                omit: self.search_shadows(),
            },
            limit: q.limit,
            fingerprint,
            order_sources: sources,
        })
    }

    /// Fold columns that are only search shadows (no field is stored in them): list
    /// queries do not read them, since records are decoded from their own columns.
    pub fn search_shadows(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .fields
            .iter()
            .filter_map(|f| f.fold_column)
            .filter(|c| !self.fields.iter().any(|f| f.column == *c))
            .map(str::to_owned)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The cursor continuing after `row` (the last row of a page), given its custom values.
    pub fn cursor_after(&self, compiled: &Compiled, row: &Row, custom: &CustomValues) -> String {
        let mut vals = vec![];
        for s in &compiled.order_sources {
            let v = match s {
                OrderSource::Column(p, sub) => match (&row[*p], sub) {
                    (Value::Null, Some(sub)) => sub.clone(),
                    (v, _) => v.clone(),
                },
                OrderSource::Custom(key, col, sub) => {
                    let v = custom
                        .get(key)
                        .map(|v| first_index_value(v, col))
                        .unwrap_or(Value::Null);
                    match (v, sub) {
                        (Value::Null, Some(sub)) => sub.clone(),
                        (v, _) => v,
                    }
                }
            };
            vals.push(v);
        }
        encode_cursor(compiled.fingerprint, &vals)
    }

    fn compile_filter(&self, f: &Filter, custom: &CustomSchema, depth: usize) -> Result<Cond> {
        if depth > 32 {
            return Err(Error::validation(
                "filter",
                "is nested more than 32 levels deep",
            ));
        }
        Ok(match f {
            Filter::And(fs) => Cond::And(
                fs.iter()
                    .map(|f| self.compile_filter(f, custom, depth + 1))
                    .collect::<Result<_>>()?,
            ),
            Filter::Or(fs) => Cond::Or(
                fs.iter()
                    .map(|f| self.compile_filter(f, custom, depth + 1))
                    .collect::<Result<_>>()?,
            ),
            Filter::Not(f) => Cond::Not(Box::new(self.compile_filter(f, custom, depth + 1)?)),
            Filter::Cmp(name, op, v) => self.leaf(name, custom, |col, conv| {
                Ok(Cond::Cmp(col.into(), (*op).into(), conv(v)?))
            })?,
            Filter::In(name, vs) => {
                if vs.len() > MAX_LIMIT as usize {
                    return Err(bad_field(
                        "filter",
                        name,
                        format!("`in` takes at most {MAX_LIMIT} values"),
                    ));
                }
                self.leaf(name, custom, |col, conv| {
                    Ok(Cond::In(
                        col.into(),
                        vs.iter().map(conv).collect::<Result<_>>()?,
                    ))
                })?
            }
            Filter::IsNull(name) => {
                if let Some(key) = name.strip_prefix("custom.") {
                    let field = custom.field_ref(key).ok_or_else(|| {
                        bad_field("filter", name, "is not a field of this record kind")
                    })?;
                    Cond::Not(Box::new(Cond::Custom { field, cond: None }))
                } else {
                    let f = self.field(name).ok_or_else(|| {
                        bad_field("filter", name, "is not a field of this record kind")
                    })?;
                    Cond::IsNull(f.column.into())
                }
            }
            Filter::Contains(name, text) | Filter::StartsWith(name, text) => {
                let starts = matches!(f, Filter::StartsWith(..));
                if text.contains('\0') || text.chars().count() > 255 {
                    return Err(bad_field(
                        "filter",
                        name,
                        "search text must be at most 255 characters without NUL",
                    ));
                }
                let needle = fold(text);
                let make = |col: &str| {
                    if starts {
                        Cond::StartsWith(col.into(), needle.clone())
                    } else {
                        Cond::Contains(col.into(), needle.clone())
                    }
                };
                if let Some(key) = name.strip_prefix("custom.") {
                    let def = custom.get(key).ok_or_else(|| {
                        bad_field("filter", name, "is not a field of this record kind")
                    })?;
                    if value_column(&def.ty) != "text_val" {
                        return Err(bad_field("filter", name, "text search needs a text field"));
                    }
                    Cond::Custom {
                        field: custom.field_ref(key).expect("defined"),
                        cond: Some(Box::new(make("fold_val"))),
                    }
                } else {
                    let f = self.field(name).ok_or_else(|| {
                        bad_field("filter", name, "is not a field of this record kind")
                    })?;
                    let col = f
                        .fold_column
                        .ok_or_else(|| bad_field("filter", name, "does not support text search"))?;
                    make(col)
                }
            }
        })
    }

    fn leaf(
        &self,
        name: &str,
        custom: &CustomSchema,
        build: impl FnOnce(&str, &dyn Fn(&FieldValue) -> Result<Value>) -> Result<Cond>,
    ) -> Result<Cond> {
        if let Some(key) = name.strip_prefix("custom.") {
            let def = custom
                .get(key)
                .ok_or_else(|| bad_field("filter", name, "is not a field of this record kind"))?;
            let ty = def.ty.clone();
            let conv = |v: &FieldValue| convert_custom(name, &ty, v);
            let inner = build(value_column(&def.ty), &conv)?;
            return Ok(Cond::Custom {
                field: custom.field_ref(key).expect("defined"),
                cond: Some(Box::new(inner)),
            });
        }
        let f = *self
            .field(name)
            .ok_or_else(|| bad_field("filter", name, "is not a field of this record kind"))?;
        // A field stored only in folded form (its column is its fold column) compares
        // folded values, so `eq("name", "Grace Hopper")` matches.
        let folded = f.fold_column == Some(f.column);
        let conv = |v: &FieldValue| match convert(name, f.ty, v)? {
            Value::Text(t) if folded => Ok(Value::Text(fold(&t))),
            other => Ok(other),
        };
        build(f.column, &conv)
    }
}

fn type_err(name: &str, want: &str) -> Error {
    bad_field("filter", name, format!("expects {want}"))
}

/// Converts a filter value to the stored form of a built-in field's type.
pub fn convert(name: &str, ty: FieldType, v: &FieldValue) -> Result<Value> {
    if *v == FieldValue::Null {
        return Ok(Value::Null);
    }
    Ok(match (ty, v) {
        (FieldType::Uuid, FieldValue::Uuid(u)) => Value::Uuid(*u),
        (FieldType::Uuid, FieldValue::Text(s)) => {
            Value::Uuid(Uuid::parse_str(s).map_err(|_| type_err(name, "an id"))?)
        }
        (FieldType::Uuid, _) => return Err(type_err(name, "an id")),
        (FieldType::Text | FieldType::Enum(_), FieldValue::Text(s)) if s.contains('\0') => {
            return Err(bad_field("filter", name, "contains a NUL character"));
        }
        (FieldType::Text, FieldValue::Text(s)) => Value::Text(s.clone()),
        (FieldType::Text, _) => return Err(type_err(name, "text")),
        (FieldType::Enum(choices), FieldValue::Text(s)) => {
            if choices.contains(&s.as_str()) {
                Value::Text(s.clone())
            } else {
                return Err(bad_field(
                    "filter",
                    name,
                    format!("{s:?} is not one of {}", choices.join(", ")),
                ));
            }
        }
        (FieldType::Enum(_), _) => return Err(type_err(name, "text")),
        (FieldType::Int, FieldValue::Int(i)) => Value::Int(*i),
        (FieldType::Int, _) => return Err(type_err(name, "an integer")),
        (FieldType::Bool, FieldValue::Bool(b)) => Value::from(*b),
        (FieldType::Bool, _) => return Err(type_err(name, "a boolean")),
        (FieldType::Decimal, FieldValue::Decimal(d)) => {
            Value::Int(decimal_to_units(*d, &format!("filter.{name}"))?)
        }
        (FieldType::Decimal, FieldValue::Int(i)) => Value::Int(decimal_to_units(
            Decimal::from(*i),
            &format!("filter.{name}"),
        )?),
        (FieldType::Decimal, _) => return Err(type_err(name, "a decimal")),
        (FieldType::Timestamp, FieldValue::Timestamp(t)) => Value::Int(t.timestamp_micros()),
        (FieldType::Timestamp, _) => return Err(type_err(name, "a timestamp")),
        (FieldType::Date, FieldValue::Date(d)) => date_value(name, *d)?,
        (FieldType::Date, FieldValue::Text(s)) => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| type_err(name, "a date (YYYY-MM-DD)"))?;
            date_value(name, d)?
        }
        (FieldType::Date, _) => return Err(type_err(name, "a date")),
    })
}

/// A date filter value in its stored form; dates outside the years 1 to 9999 are refused
/// (stored dates are text, which compares correctly only with four-digit years).
fn date_value(name: &str, d: NaiveDate) -> Result<Value> {
    crate::text::check_date(d).map_err(|reason| bad_field("filter", name, reason))?;
    Ok(Value::Text(d.format("%Y-%m-%d").to_string()))
}

fn convert_custom(name: &str, ty: &CustomFieldType, v: &FieldValue) -> Result<Value> {
    use CustomFieldType as T;
    let ft = match ty {
        T::Text { .. } | T::SingleChoice { .. } | T::MultiChoice { .. } => FieldType::Text,
        T::Number => FieldType::Int,
        T::Decimal | T::Money { .. } => FieldType::Decimal,
        T::Bool => FieldType::Bool,
        T::Date => FieldType::Date,
        T::DateTime => FieldType::Timestamp,
        T::Reference { .. } => {
            return match v {
                FieldValue::Uuid(u) => Ok(Value::Text(u.hyphenated().to_string())),
                FieldValue::Text(s) => Uuid::parse_str(s)
                    .map(|u| Value::Text(u.hyphenated().to_string()))
                    .map_err(|_| type_err(name, "an id")),
                FieldValue::Null => Ok(Value::Null),
                _ => Err(type_err(name, "an id")),
            };
        }
    };
    if let (T::SingleChoice { choices } | T::MultiChoice { choices }, FieldValue::Text(s)) = (ty, v)
        && !choices.contains(s)
    {
        return Err(bad_field(
            "filter",
            name,
            format!("{s:?} is not one of the choices"),
        ));
    }
    convert(name, ft, v)
}

fn first_index_value(v: &CustomValue, col: &str) -> Value {
    let (i, t) = match v {
        CustomValue::Text(s) | CustomValue::Choice(s) => (Value::Null, Some(s.clone())),
        CustomValue::Number(n) => (Value::Int(*n), None),
        CustomValue::Decimal(d) => (Value::opt_int(decimal_to_units(*d, "v").ok()), None),
        CustomValue::Money(m) => (Value::opt_int(m.to_storage_units().ok()), None),
        CustomValue::Bool(b) => (Value::Int(*b as i64), None),
        CustomValue::Date(d) => (Value::Null, Some(d.format("%Y-%m-%d").to_string())),
        CustomValue::DateTime(t) => (Value::Int(t.timestamp_micros()), None),
        CustomValue::Choices(cs) => (Value::Null, cs.first().cloned()),
        CustomValue::Reference(u) => (Value::Null, Some(u.hyphenated().to_string())),
    };
    if col == "int_val" {
        i
    } else {
        Value::opt_text(t)
    }
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    f: u64,
    k: Vec<CursorValue>,
}

#[derive(Serialize, Deserialize)]
enum CursorValue {
    N,
    I(i64),
    T(String),
    U(Uuid),
}

fn encode_cursor(fingerprint: u64, vals: &[Value]) -> String {
    let body = CursorBody {
        f: fingerprint,
        k: vals
            .iter()
            .map(|v| match v {
                Value::Null => CursorValue::N,
                Value::Int(i) => CursorValue::I(*i),
                Value::Text(s) => CursorValue::T(s.clone()),
                Value::Uuid(u) => CursorValue::U(*u),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&body).expect("cursor serializes");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(json.len() * 2 + 2);
    out.push_str("c1");
    for b in json {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The value of one lowercase or uppercase hex digit.
fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

fn decode_cursor(c: &str, fingerprint: u64, order: &[OrderKey]) -> Result<Vec<Value>> {
    let bad = || Error::validation("cursor", "is not a cursor of this query");
    let hex = c.strip_prefix("c1").ok_or_else(bad)?;
    if hex.len() % 2 != 0 || hex.len() > 16_384 {
        return Err(bad());
    }
    let bytes = hex
        .as_bytes()
        .chunks_exact(2)
        .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if body.f != fingerprint || body.k.len() != order.len() {
        return Err(bad());
    }
    let vals: Vec<Value> = body
        .k
        .into_iter()
        .map(|v| match v {
            CursorValue::N => Value::Null,
            CursorValue::I(i) => Value::Int(i),
            CursorValue::T(s) => Value::Text(s),
            CursorValue::U(u) => Value::Uuid(u),
        })
        .collect();
    if vals.last().and_then(Value::as_uuid).is_none()
        || vals
            .iter()
            .any(|v| v.is_null() || matches!(v, Value::Text(s) if s.contains('\0')))
    {
        return Err(bad());
    }
    Ok(vals)
}
