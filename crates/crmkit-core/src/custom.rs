//! Custom fields: per-tenant definitions per record kind, validated values stored with the
//! record, and filterable and sortable like built-in fields (as `custom.<key>`).
//!
//! A record keeps its custom values as JSON in its own row (what reads return) and, in the
//! same changeset, one row per value in the core table [`VALUES_TABLE`], which the query
//! layer uses for filters and sorting on every backend.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result, ValidationErrors};
use crate::id::{CustomFieldId, RecordKind, RecordRef};
use crate::money::{Currency, Money, decimal_to_units};
use crate::store::{ColumnDef, ColumnType, Cond, CustomRef, IndexDef, TableDef, Value, Write};
use crate::text::fold;

/// The definitions table.
pub const DEFS_TABLE: &str = "crm_custom_fields";
/// The value-index table (one row per value).
pub const VALUES_TABLE: &str = "crm_custom_values";

/// Longest text a custom text field may hold.
pub const MAX_TEXT: u32 = 1000;

/// The type of a custom field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CustomFieldType {
    /// Text of at most `max_len` characters (at most [`MAX_TEXT`]).
    Text {
        /// Maximum length in characters.
        max_len: u32,
    },
    /// A whole number.
    Number,
    /// A decimal with at most 4 fractional digits.
    Decimal,
    /// Money in a fixed currency.
    Money {
        /// The currency.
        currency: Currency,
    },
    /// Yes or no.
    Bool,
    /// A calendar date.
    Date,
    /// An instant.
    DateTime,
    /// One of the choices.
    SingleChoice {
        /// The allowed choices.
        choices: Vec<String>,
    },
    /// Any subset of the choices.
    MultiChoice {
        /// The allowed choices.
        choices: Vec<String>,
    },
    /// A reference to a record of a kind.
    Reference {
        /// The referenced kind.
        kind: RecordKind,
    },
}

/// A custom field definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomFieldDef {
    /// Its id.
    pub id: CustomFieldId,
    /// The record kind it belongs to.
    pub record_kind: RecordKind,
    /// Its key (a lowercase identifier, unique per record kind).
    pub key: String,
    /// A label for people.
    pub label: String,
    /// Its type.
    pub ty: CustomFieldType,
    /// Whether every record must have a value.
    pub required: bool,
}

/// A custom field value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum CustomValue {
    /// Text.
    Text(String),
    /// A whole number.
    Number(i64),
    /// A decimal.
    Decimal(Decimal),
    /// Money.
    Money(Money),
    /// A boolean.
    Bool(bool),
    /// A date.
    Date(NaiveDate),
    /// An instant.
    DateTime(DateTime<Utc>),
    /// One choice.
    Choice(String),
    /// Several choices.
    Choices(Vec<String>),
    /// A record reference.
    Reference(Uuid),
}

/// The custom values of a record, by key.
pub type CustomValues = BTreeMap<String, CustomValue>;

/// The custom field definitions of one record kind for one tenant.
#[derive(Debug, Clone, Default)]
pub struct CustomSchema {
    kind: Option<RecordKind>,
    defs: BTreeMap<String, CustomFieldDef>,
}

impl CustomSchema {
    /// Definitions of a kind.
    pub fn new(kind: RecordKind, defs: impl IntoIterator<Item = CustomFieldDef>) -> Self {
        CustomSchema {
            kind: Some(kind),
            defs: defs.into_iter().map(|d| (d.key.clone(), d)).collect(),
        }
    }

    /// The definition of `key`.
    pub fn get(&self, key: &str) -> Option<&CustomFieldDef> {
        self.defs.get(key)
    }

    /// Every definition.
    pub fn defs(&self) -> impl Iterator<Item = &CustomFieldDef> {
        self.defs.values()
    }

    /// Validates a record's values (all of them, as they will be stored): unknown keys,
    /// wrong types, unknown choices, over-long text and missing required fields.
    pub fn validate(&self, values: &CustomValues) -> Result<()> {
        let mut errs = ValidationErrors::new();
        for (key, v) in values {
            let field = format!("custom.{key}");
            let Some(def) = self.defs.get(key) else {
                errs.push(field, "is not a custom field of this record kind");
                continue;
            };
            if let Err(reason) = check_value(&def.ty, v) {
                errs.push(field, reason);
            }
        }
        for def in self.defs.values() {
            if def.required && !values.contains_key(&def.key) {
                errs.push(format!("custom.{}", def.key), "is required");
            }
        }
        errs.into_result()
    }

    /// The value-index writes that move a record's custom values from `old` to `new`
    /// after an update: none when they are the same, else
    /// [`index_writes`](Self::index_writes) replacing the old ones.
    pub fn changed_index_writes(
        &self,
        record: &RecordRef,
        old: &CustomValues,
        new: &CustomValues,
    ) -> Vec<Write> {
        if old == new {
            return vec![];
        }
        self.index_writes(record, new, true)
    }

    /// The value-index writes for a record: delete its old values, insert the new ones.
    pub fn index_writes(
        &self,
        record: &RecordRef,
        values: &CustomValues,
        replace: bool,
    ) -> Vec<Write> {
        let mut out = vec![];
        if replace {
            out.push(Write::DeleteWhere {
                table: VALUES_TABLE,
                cond: Cond::eq("record_kind", record.kind.as_str())
                    .and(Cond::eq("record_id", record.id)),
            });
        }
        for (key, v) in values {
            for (ord, (i, t)) in index_values(v).into_iter().enumerate() {
                out.push(Write::Insert {
                    table: VALUES_TABLE,
                    row: vec![
                        Value::Text(record.kind.as_str().to_owned()),
                        Value::Text(key.clone()),
                        Value::Uuid(record.id),
                        Value::Int(ord as i64),
                        i,
                        Value::opt_text(t.clone()),
                        Value::opt_text(t.map(|t| fold(&t))),
                    ],
                });
            }
        }
        out
    }

    /// The kind these definitions belong to.
    pub fn kind(&self) -> Option<&RecordKind> {
        self.kind.as_ref()
    }

    /// A reference to the custom field `key` for conditions and sort keys.
    pub fn field_ref(&self, key: &str) -> Option<CustomRef> {
        let kind = self.kind.as_ref()?;
        self.defs.contains_key(key).then(|| CustomRef {
            record_kind: kind.as_str().to_owned(),
            key: key.to_owned(),
        })
    }
}

fn check_value(ty: &CustomFieldType, v: &CustomValue) -> std::result::Result<(), String> {
    use CustomFieldType as T;
    use CustomValue as V;
    match (ty, v) {
        (T::Text { max_len }, V::Text(s)) => {
            if s.chars().count() > *max_len as usize {
                Err(format!("is longer than {max_len} characters"))
            } else {
                Ok(())
            }
        }
        (T::Number, V::Number(_)) | (T::Bool, V::Bool(_)) | (T::DateTime, V::DateTime(_)) => Ok(()),
        (T::Date, V::Date(d)) => crate::text::check_date(*d),
        (T::Decimal, V::Decimal(d)) => decimal_to_units(*d, "value")
            .map(|_| ())
            .map_err(|e| e.to_string()),
        (T::Money { currency }, V::Money(m)) => {
            if m.currency() == *currency {
                Ok(())
            } else {
                Err(format!("must be in {currency}, not {}", m.currency()))
            }
        }
        (T::SingleChoice { choices }, V::Choice(c)) => {
            if choices.contains(c) {
                Ok(())
            } else {
                Err(format!("{c:?} is not one of the choices"))
            }
        }
        (T::MultiChoice { choices }, V::Choices(cs)) => {
            if let Some(bad) = cs.iter().find(|c| !choices.contains(c)) {
                Err(format!("{bad:?} is not one of the choices"))
            } else {
                Ok(())
            }
        }
        (T::Reference { .. }, V::Reference(_)) => Ok(()),
        (ty, _) => Err(format!("has the wrong type for a {} field", type_name(ty))),
    }
}

fn type_name(ty: &CustomFieldType) -> &'static str {
    match ty {
        CustomFieldType::Text { .. } => "text",
        CustomFieldType::Number => "number",
        CustomFieldType::Decimal => "decimal",
        CustomFieldType::Money { .. } => "money",
        CustomFieldType::Bool => "bool",
        CustomFieldType::Date => "date",
        CustomFieldType::DateTime => "datetime",
        CustomFieldType::SingleChoice { .. } => "single choice",
        CustomFieldType::MultiChoice { .. } => "multi choice",
        CustomFieldType::Reference { .. } => "reference",
    }
}

/// Which value column a field type is indexed in: `int_val` or `text_val`.
pub fn value_column(ty: &CustomFieldType) -> &'static str {
    match ty {
        CustomFieldType::Number
        | CustomFieldType::Decimal
        | CustomFieldType::Money { .. }
        | CustomFieldType::Bool
        | CustomFieldType::DateTime => "int_val",
        _ => "text_val",
    }
}

/// The indexed (int, text) values of a custom value; several for multi choice.
fn index_values(v: &CustomValue) -> Vec<(Value, Option<String>)> {
    match v {
        CustomValue::Text(s) | CustomValue::Choice(s) => vec![(Value::Null, Some(s.clone()))],
        CustomValue::Number(n) => vec![(Value::Int(*n), None)],
        CustomValue::Decimal(d) => vec![(Value::opt_int(decimal_to_units(*d, "value").ok()), None)],
        CustomValue::Money(m) => vec![(Value::opt_int(m.to_storage_units().ok()), None)],
        CustomValue::Bool(b) => vec![(Value::Int(*b as i64), None)],
        CustomValue::Date(d) => vec![(Value::Null, Some(d.format("%Y-%m-%d").to_string()))],
        CustomValue::DateTime(t) => vec![(Value::Int(t.timestamp_micros()), None)],
        CustomValue::Choices(cs) => cs.iter().map(|c| (Value::Null, Some(c.clone()))).collect(),
        CustomValue::Reference(u) => vec![(Value::Null, Some(u.hyphenated().to_string()))],
    }
}

/// Validates a definition before it is stored.
pub fn check_def(def: &CustomFieldDef) -> Result<()> {
    let mut errs = ValidationErrors::new();
    let key_ok = !def.key.is_empty()
        && def.key.len() <= 64
        && def.key.as_bytes()[0].is_ascii_lowercase()
        && def
            .key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !key_ok {
        errs.push(
            "key",
            "must be a lowercase identifier of at most 64 characters",
        );
    }
    if def.label.trim().is_empty() || def.label.chars().count() > 200 {
        errs.push("label", "must be 1 to 200 characters");
    }
    match &def.ty {
        CustomFieldType::Text { max_len } if *max_len == 0 || *max_len > MAX_TEXT => {
            errs.push("ty.max_len", format!("must be 1 to {MAX_TEXT}"));
        }
        CustomFieldType::SingleChoice { choices } | CustomFieldType::MultiChoice { choices } => {
            if choices.is_empty() {
                errs.push("ty.choices", "needs at least one choice");
            }
            let mut seen = std::collections::BTreeSet::new();
            for c in choices {
                if c.trim().is_empty() || c.chars().count() > 200 || !seen.insert(c) {
                    errs.push(
                        "ty.choices",
                        format!("{c:?} is empty, too long or repeated"),
                    );
                }
            }
        }
        _ => {}
    }
    errs.into_result()
}

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            DEFS_TABLE,
            [
                ColumnDef::required("id", Uuid),
                ColumnDef::required("record_kind", Text(64)),
                ColumnDef::required("field_key", Text(64)),
                ColumnDef::required("label", Text(200)),
                ColumnDef::required("definition", LongText),
                ColumnDef::required("required", Bool),
                ColumnDef::required("version", Int),
            ],
            ["id"],
        )
        .index(IndexDef::unique(
            "crm_custom_fields_key",
            ["record_kind", "field_key"],
        )),
        TableDef::new(
            VALUES_TABLE,
            [
                ColumnDef::required("record_kind", Text(64)),
                ColumnDef::required("field_key", Text(64)),
                ColumnDef::required("record_id", Uuid),
                ColumnDef::required("ord", Int),
                ColumnDef::optional("int_val", Int),
                ColumnDef::optional("text_val", Text(MAX_TEXT)),
                ColumnDef::optional("fold_val", Text(MAX_TEXT)),
            ],
            ["record_kind", "field_key", "record_id", "ord"],
        )
        .index(IndexDef::new(
            "crm_custom_values_int",
            ["record_kind", "field_key", "int_val"],
        ))
        .index(IndexDef::new(
            "crm_custom_values_record",
            ["record_kind", "record_id"],
        )),
    ]
}

pub(crate) fn def_row(def: &CustomFieldDef) -> Result<Vec<Value>> {
    Ok(vec![
        Value::Uuid(def.id.as_uuid()),
        Value::Text(def.record_kind.as_str().to_owned()),
        Value::Text(def.key.clone()),
        Value::Text(def.label.clone()),
        Value::Text(
            serde_json::to_string(&def.ty).map_err(|e| Error::storage_from("custom field", e))?,
        ),
        Value::Int(def.required as i64),
        Value::Int(1),
    ])
}

pub(crate) fn decode_def(row: &[Value]) -> Result<CustomFieldDef> {
    let bad = || Error::storage("malformed custom field row");
    Ok(CustomFieldDef {
        id: CustomFieldId::from_uuid(row[0].as_uuid().ok_or_else(bad)?),
        record_kind: RecordKind::parse(row[1].as_text().ok_or_else(bad)?)?,
        key: row[2].as_text().ok_or_else(bad)?.to_owned(),
        label: row[3].as_text().ok_or_else(bad)?.to_owned(),
        ty: serde_json::from_str(row[4].as_text().ok_or_else(bad)?)
            .map_err(|e| Error::storage_from("custom field", e))?,
        required: row[5].as_int() == Some(1),
    })
}
