//! Pieces every backend shares: error shapes, fault counting, group sorting, URLs.

use crmkit_core::id::{RecordKind, RecordRef};
use crmkit_core::store::{Fault, Row, TableDef, Value};
use crmkit_core::{Error, Result};

/// The Duplicate error the in-memory backend gives for `table`: the table's name as kind,
/// and the unique index's name as field (`id` for the primary key).
pub(crate) fn duplicate(table: &TableDef, index: Option<&str>) -> Error {
    Error::Duplicate {
        kind: RecordKind::parse(table.name).unwrap_or(RecordKind::new("row")),
        field: index.unwrap_or("id").to_owned(),
        existing: None,
    }
}

/// The error of an update of `record` that changed no row: Conflict (with the stored
/// version) when the row is there (`current`) and the update expected a version, else
/// NotFound, as the in-memory backend reports them.
pub(crate) fn update_missed(
    table: &TableDef,
    record: &RecordRef,
    expect_version: Option<u64>,
    current: Option<Row>,
) -> Error {
    match (current, expect_version) {
        (Some(row), Some(expected)) => {
            let vp = table.position("version").unwrap_or(0);
            Error::conflict(
                record.clone(),
                expected,
                row[vp].as_int().unwrap_or(0) as u64,
            )
        }
        _ => Error::not_found(record.kind.clone(), record.id),
    }
}

/// Finds which unique index of `table` a driver's message names (by index name), if any.
pub(crate) fn index_named_in(table: &TableDef, message: &str) -> Option<&'static str> {
    table
        .indexes
        .iter()
        .filter(|i| i.unique)
        .find(|i| {
            message.contains(&format!("'{}'", i.name))
                || message.contains(&format!(".{}'", i.name))
                || message.contains(&format!("\"{}\"", i.name))
        })
        .map(|i| i.name)
}

/// Counts the steps of a commit and fails just before the injected one.
pub(crate) struct Steps {
    fault: Option<Fault>,
    n: usize,
}

impl Steps {
    /// A counter for one commit.
    pub(crate) fn new(fault: Option<Fault>) -> Self {
        Steps { fault, n: 0 }
    }

    /// Accounts for the next step; an error if the fault is injected here.
    pub(crate) fn step(&mut self) -> Result<()> {
        let here = self.n;
        self.n += 1;
        match self.fault {
            Some(Fault::FailAtWrite(at)) if at == here => {
                Err(Error::storage(format!("injected fault at write {here}")))
            }
            _ => Ok(()),
        }
    }
}

/// Sorts aggregate groups by their group values, like the in-memory backend's ordered map.
pub(crate) fn sort_groups(rows: &mut [Row], groups: usize) {
    rows.sort_by(|a, b| a[..groups].cmp(&b[..groups]));
}

/// The current time in microseconds since the epoch.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The migrations of `module` to apply: its version in `recorded` (the migrations
/// table's `(module, version)` rows; 0 when absent) up to the `supported` number the
/// code has, or SchemaTooNew when the database is ahead.
pub(crate) fn pending(
    recorded: &[Row],
    module: &str,
    supported: usize,
) -> Result<std::ops::Range<usize>> {
    let found = recorded
        .iter()
        .find(|row| row[0].as_text() == Some(module))
        .map(|row| version_of(&row[1]))
        .transpose()?
        .unwrap_or(0);
    let supported_u32 = u32::try_from(supported).unwrap_or(u32::MAX);
    if found > supported_u32 {
        return Err(Error::SchemaTooNew {
            module: module.to_owned(),
            found,
            supported: supported_u32,
        });
    }
    Ok(found as usize..supported)
}

/// The first number of a block of `n` just taken from a sequence: `rows` is the read of
/// the sequence after the bump (its last number); `missing` is the Storage error's text
/// when there is no row.
pub(crate) fn block_start(rows: &[Row], n: u64, missing: &str) -> Result<u64> {
    let last = rows
        .first()
        .and_then(|row| row[0].as_int())
        .ok_or_else(|| Error::storage(missing))?;
    Ok(last as u64 + 1 - n)
}

/// Converts a stored version to u32.
fn version_of(v: &Value) -> Result<u32> {
    v.as_int()
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| Error::storage(format!("bad migration version {v:?}")))
}
