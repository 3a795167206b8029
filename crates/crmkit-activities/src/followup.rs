//! The follow-up row of every tracked record, kept from the record's creation.
//!
//! Follow-up lists ("deals with no next step", "leads not contacted for 7 days") must find
//! records that never had an activity, so the row cannot wait for the first activity: the
//! activities module's [`crmkit_core::Module::before_commit`] hook adds it to the changeset
//! that creates the record (whichever module stages it), and keeps its `active` flag in
//! step with the record's lifecycle events (deleted, restored, a deal won, lost or
//! reopened, a lead disqualified or converted). Activity changes maintain the rest of the
//! row (last and next activity) in their own changesets.
//!
//! Row layout (after migration 2): `record_kind, record_id, last_activity_at,
//! next_activity_at, next_activity_id, version, created_at, quiet_since, active`.
//! `quiet_since` is the last activity time, or the creation time for a record never
//! contacted, so "not contacted since" is one index range.

use std::collections::HashSet;

use crmkit_core::store::{Cond, SchemaStep, Value, Write, columns};
use crmkit_core::{Changeset, RecordKind, Result};

use crate::rows::FOLLOWUP_TABLE;

/// Record kinds that have a follow-up row.
pub const TRACKED: [RecordKind; 4] = [
    RecordKind::CONTACT,
    RecordKind::ORGANIZATION,
    RecordKind::LEAD,
    RecordKind::DEAL,
];

/// Event verbs whose payload (the record's snapshot) may change whether it is active.
const LIFECYCLE: &[&str] = &[
    "deleted",
    "restored",
    "moved",
    "status_changed",
    "converted",
];

/// Column positions in a follow-up row.
pub(crate) mod col {
    pub const LAST: usize = 2;
    pub const NEXT: usize = 3;
    pub const NEXT_ID: usize = 4;
    pub const VERSION: usize = 5;
    pub const CREATED: usize = 6;
    pub const QUIET: usize = 7;
    pub const ACTIVE: usize = 8;
}

/// Migration 2: creation time, quiet-since and active columns, and the indexes of the
/// follow-up lists. Rows written by migration 1 get `active` true and no `quiet_since`
/// until their record's next activity.
pub(crate) fn migration_v2() -> Vec<SchemaStep> {
    use crmkit_core::store::{ColumnType::*, IndexDef};
    let mut cols = columns(&[
        ("created_at", Timestamp, true),
        ("quiet_since", Timestamp, true),
        ("active", Bool, false),
    ]);
    let active = cols.pop().map(|c| c.with_default(Value::Int(1)));
    let mut steps = SchemaStep::add_columns(FOLLOWUP_TABLE, cols.into_iter().chain(active));
    steps.push(SchemaStep::CreateIndex {
        table: FOLLOWUP_TABLE,
        index: IndexDef::new(
            "activities_followup_quiet",
            ["record_kind", "active", "quiet_since", "record_id"],
        ),
    });
    steps.push(SchemaStep::CreateIndex {
        table: FOLLOWUP_TABLE,
        index: IndexDef::new(
            "activities_followup_pending",
            ["record_kind", "active", "next_activity_at", "record_id"],
        ),
    });
    steps
}

/// The primary key of a record's follow-up row.
pub(crate) fn key(kind: &RecordKind, id: uuid::Uuid) -> Vec<Value> {
    vec![Value::Text(kind.as_str().into()), Value::Uuid(id)]
}

fn key_cond(kind: &RecordKind, id: uuid::Uuid) -> Cond {
    Cond::eq("record_kind", kind.as_str()).and(Cond::eq("record_id", id))
}

/// Whether a record snapshot (an event payload) is active: not deleted, not won or lost,
/// not disqualified or converted. `None` when the payload is not a snapshot.
///
/// Only the four fields it looks at are read; the rest of the snapshot is skipped without
/// building a JSON tree (this runs for every record an import creates).
fn active_of(payload: &str) -> Option<bool> {
    if !payload.trim_start().starts_with('{') {
        return None;
    }
    let s: Snapshot = serde_json::from_str(payload).ok()?;
    s.deleted_at.as_ref()?;
    let set = |f: &Option<Set>| f.as_ref().is_some_and(|x| x.0);
    Some(
        !(set(&s.deleted_at) || set(&s.won_at) || set(&s.lost_at) || s.status.is_some_and(|c| c.0)),
    )
}

/// The fields of a snapshot [`active_of`] reads (the others are skipped).
#[derive(serde::Deserialize)]
struct Snapshot {
    #[serde(default, deserialize_with = "present")]
    deleted_at: Option<Set>,
    #[serde(default, deserialize_with = "present")]
    won_at: Option<Set>,
    #[serde(default, deserialize_with = "present")]
    lost_at: Option<Set>,
    #[serde(default, deserialize_with = "present")]
    status: Option<Closed>,
}

/// A field that is there (`None` only when it is missing, not when it is null).
fn present<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A field that is present: whether it is set (not null). Any JSON value is accepted.
struct Set(bool);

/// A `status` field: whether it is one of the closed statuses (text only).
struct Closed(bool);

/// Reads any JSON value, skipping its contents, into what `f` makes of it (`None` for
/// null, the text for a string, `Some("")` for anything else).
struct AnyValue<F>(F);

impl<'de, T, F: FnOnce(Option<&str>) -> T> serde::de::Visitor<'de> for AnyValue<F> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> std::result::Result<T, E> {
        Ok((self.0)(None))
    }
    fn visit_none<E>(self) -> std::result::Result<T, E> {
        Ok((self.0)(None))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<T, D::Error> {
        <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d)?;
        Ok((self.0)(Some("")))
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<T, E> {
        Ok((self.0)(Some("")))
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<T, E> {
        Ok((self.0)(Some("")))
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<T, E> {
        Ok((self.0)(Some("")))
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<T, E> {
        Ok((self.0)(Some("")))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<T, E> {
        // Text is passed on as text; `Some("")` from the other visits is never a status.
        Ok((self.0)(Some(v)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<T, A::Error> {
        while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok((self.0)(Some("")))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> std::result::Result<T, A::Error> {
        while a
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok((self.0)(Some("")))
    }
}

impl<'de> serde::Deserialize<'de> for Set {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(AnyValue(|v: Option<&str>| Set(v.is_some())))
    }
}

impl<'de> serde::Deserialize<'de> for Closed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(AnyValue(|v: Option<&str>| {
            Closed(matches!(
                v,
                Some("converted" | "disqualified" | "won" | "lost")
            ))
        }))
    }
}

/// Adds the follow-up writes that `cs`'s events call for: a row for each tracked record
/// created (unless the changeset already writes one), and the `active` flag of each
/// tracked record whose lifecycle changed.
pub(crate) fn derive(cs: &mut Changeset) -> Result<()> {
    let mut extra = vec![];
    // Follow-up rows the changeset already inserts (an activity on a record created in
    // the same changeset), found once: an import of 1000 records must not scan its 4000
    // writes per record.
    let mut staged: HashSet<Vec<Value>> = cs
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::Insert { table, row } if *table == FOLLOWUP_TABLE => Some(row[..2].to_vec()),
            _ => None,
        })
        .collect();
    for e in &cs.events {
        let Some((kind, verb)) = e.kind.split_once('.') else {
            continue;
        };
        if e.record.kind.as_str() != kind || !TRACKED.iter().any(|k| k.as_str() == kind) {
            continue;
        }
        if verb == "created" {
            let key = key(&e.record.kind, e.record.id);
            if !staged.insert(key.clone()) {
                continue;
            }
            let mut row = key;
            row.extend([
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Int(1),
                Value::timestamp(cs.at),
                Value::timestamp(cs.at),
                Value::from(active_of(&e.payload).unwrap_or(true)),
            ]);
            extra.push(Write::Insert {
                table: FOLLOWUP_TABLE,
                row,
            });
        } else if LIFECYCLE.contains(&verb)
            && let Some(active) = active_of(&e.payload)
        {
            extra.push(Write::UpdateWhere {
                table: FOLLOWUP_TABLE,
                cond: key_cond(&e.record.kind, e.record.id),
                set: vec![("active", Value::from(active))],
            });
        }
    }
    cs.writes.extend(extra);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_decide_activeness() {
        assert_eq!(active_of(r#"{"deleted_at":null}"#), Some(true));
        assert_eq!(
            active_of(r#"{"deleted_at":"2027-01-01T00:00:00Z"}"#),
            Some(false)
        );
        assert_eq!(
            active_of(r#"{"deleted_at":null,"won_at":"2027-01-01T00:00:00Z"}"#),
            Some(false)
        );
        assert_eq!(
            active_of(r#"{"deleted_at":null,"status":"converted"}"#),
            Some(false)
        );
        assert_eq!(
            active_of(r#"{"deleted_at":null,"status":"qualified"}"#),
            Some(true)
        );
        assert_eq!(active_of(r#"{"status":"won"}"#), None, "not a snapshot");
        assert_eq!(active_of("not json"), None);
        assert_eq!(active_of("[null, null]"), None);
        // Other fields of any type are skipped; a non-text status is not closed.
        assert_eq!(
            active_of(
                r#"{"id":"x","tags":["a",{"b":[1,2.5,true]}],"deleted_at":null,"status":{"won":1},"lost_at":null,"n":-3}"#
            ),
            Some(true)
        );
        assert_eq!(
            active_of(r#"{"deleted_at":null,"lost_at":{"at":1},"status":"open"}"#),
            Some(false)
        );
        assert_eq!(
            active_of(r#"{"deleted_at":null,"status":null}"#),
            Some(true)
        );
    }
}
