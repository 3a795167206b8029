//! Reading and writing the cells of a [`Row`](crate::store::Row): the conversions every
//! module's row encoding needs, in one place so that every module stores a date, a money
//! amount or a JSON column the same way.
//!
//! Decoding takes text out of the row (`&mut Value`) instead of copying it: a row is
//! decoded once. The `cell_*` functions decode borrowed cells ([`CellRef`], rows a backend
//! reads in place), copying only the text the record keeps.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::store::{CellRef, Value};

/// A value as a JSON text cell.
pub fn json<T: Serialize>(v: &T) -> Value {
    Value::Text(serde_json::to_string(v).expect("records serialize to JSON"))
}

/// A value from a JSON text cell.
pub fn from_json<T: DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_str(
        v.as_text()
            .ok_or_else(|| Error::storage("expected a JSON text cell"))?,
    )
    .map_err(|e| Error::storage_from("malformed JSON cell", e))
}

/// The text of a NOT NULL text cell, moved out of the row.
pub fn take_text(v: &mut Value) -> Result<String> {
    match std::mem::replace(v, Value::Null) {
        Value::Text(s) => Ok(s),
        _ => Err(Error::storage("expected a text cell")),
    }
}

/// The text of a nullable text cell, moved out of the row.
pub fn take_opt_text(v: &mut Value) -> Option<String> {
    match std::mem::replace(v, Value::Null) {
        Value::Text(s) => Some(s),
        _ => None,
    }
}

/// A NOT NULL UUID cell.
pub fn uuid(v: &Value) -> Result<Uuid> {
    v.as_uuid()
        .ok_or_else(|| Error::storage("expected an id cell"))
}

/// A NOT NULL integer cell.
pub fn int(v: &Value) -> Result<i64> {
    v.as_int()
        .ok_or_else(|| Error::storage("expected an integer cell"))
}

/// A NOT NULL timestamp cell (microseconds since the epoch).
pub fn timestamp(v: &Value) -> Result<DateTime<Utc>> {
    crate::event::decode_timestamp(v)
}

/// A nullable timestamp cell.
pub fn opt_timestamp(v: &Value) -> Result<Option<DateTime<Utc>>> {
    if v.is_null() {
        Ok(None)
    } else {
        timestamp(v).map(Some)
    }
}

/// A date as a cell (`YYYY-MM-DD` text, or NULL).
pub fn date_value(d: Option<NaiveDate>) -> Value {
    Value::opt_text(d.map(|d| d.format("%Y-%m-%d").to_string()))
}

/// A nullable date cell.
pub fn opt_date(v: &Value) -> Result<Option<NaiveDate>> {
    match v {
        Value::Null => Ok(None),
        Value::Text(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|e| Error::storage_from("malformed date cell", e)),
        _ => Err(Error::storage("expected a date cell")),
    }
}

/// Money as two cells: the amount in storage units (10^-4) and the currency code.
pub fn money_cells(m: &Option<Money>) -> Result<(Value, Value)> {
    Ok(match m {
        Some(m) => (
            Value::Int(m.to_storage_units()?),
            Value::Text(m.currency().code().into()),
        ),
        None => (Value::Null, Value::Null),
    })
}

/// Money from its two cells (`None` when either is NULL).
pub fn opt_money(units: &Value, code: &Value) -> Result<Option<Money>> {
    match (units, code) {
        (Value::Int(u), Value::Text(c)) => {
            Ok(Some(Money::from_storage_units(*u, Currency::parse(c)?)))
        }
        _ => Ok(None),
    }
}

/// The text of a NOT NULL text cell, borrowed.
pub fn cell_str<'a>(c: &CellRef<'a>) -> Result<&'a str> {
    match *c {
        CellRef::Text(s) => Ok(s),
        _ => Err(Error::storage("expected a text cell")),
    }
}

/// The text of a NOT NULL text cell, copied.
pub fn cell_text(c: &CellRef<'_>) -> Result<String> {
    cell_str(c).map(str::to_owned)
}

/// The text of a nullable text cell, copied.
pub fn cell_opt_text(c: &CellRef<'_>) -> Option<String> {
    match *c {
        CellRef::Text(s) => Some(s.to_owned()),
        _ => None,
    }
}

/// A NOT NULL UUID cell.
pub fn cell_uuid(c: &CellRef<'_>) -> Result<Uuid> {
    c.as_uuid()
        .ok_or_else(|| Error::storage("expected an id cell"))
}

/// A value from a JSON text cell.
pub fn cell_json<T: DeserializeOwned>(c: &CellRef<'_>) -> Result<T> {
    serde_json::from_str(
        c.as_text()
            .ok_or_else(|| Error::storage("expected a JSON text cell"))?,
    )
    .map_err(|e| Error::storage_from("malformed JSON cell", e))
}

/// A NOT NULL timestamp cell (microseconds since the epoch).
pub fn cell_timestamp(c: &CellRef<'_>) -> Result<DateTime<Utc>> {
    c.as_int()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| Error::storage(format!("bad timestamp value {:?}", c.to_value())))
}

/// A nullable timestamp cell.
pub fn cell_opt_timestamp(c: &CellRef<'_>) -> Result<Option<DateTime<Utc>>> {
    if c.is_null() {
        Ok(None)
    } else {
        cell_timestamp(c).map(Some)
    }
}
