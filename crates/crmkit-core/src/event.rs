//! Domain events (the outbox and change feed) and audit entries.
//!
//! Events are written in the same transaction as the change they describe, numbered by a
//! per-tenant gap-free sequence. A reader at cursor N has seen every event up to N: the
//! sequence is allocated under a per-tenant lock held until commit, so numbers commit in
//! order. Read them with [`crate::Store::events_since`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::id::{RecordKind, RecordRef, RuleId, TenantId, UserId};
use crate::store::{Changeset, ColumnDef, ColumnType, IndexDef, Row, TableDef, Value, Write};

/// The outbox table.
pub const EVENTS_TABLE: &str = "crm_events";
/// The audit table.
pub const AUDIT_TABLE: &str = "crm_audit";
/// Per-tenant named counters (event sequence, ticket numbers, ...).
pub const SEQUENCES_TABLE: &str = "crm_sequences";
/// The name of the event sequence in [`SEQUENCES_TABLE`].
pub const EVENT_SEQUENCE: &str = "events";

/// An event a command emits; the backend numbers it at commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened, as `module_record.verb` (`contact.created`).
    pub kind: String,
    /// The record it happened to.
    pub record: RecordRef,
    /// Names of the fields that changed.
    pub changed: Vec<String>,
    /// The record's state or the change, as JSON text (kept as text so that a command
    /// serialises its record once for the audit entry and the event).
    pub payload: String,
}

impl NewEvent {
    /// An event.
    pub fn new(
        kind: impl Into<String>,
        record: RecordRef,
        changed: Vec<String>,
        payload: serde_json::Value,
    ) -> Self {
        NewEvent {
            kind: kind.into(),
            record,
            changed,
            payload: payload.to_string(),
        }
    }

    /// An event whose payload is already JSON text (it must be valid JSON).
    pub fn from_json(
        kind: impl Into<String>,
        record: RecordRef,
        changed: Vec<String>,
        payload_json: String,
    ) -> Self {
        NewEvent {
            kind: kind.into(),
            record,
            changed,
            payload: payload_json,
        }
    }
}

/// Why a change was made, when an automation rule made it: the rule, the occurrence that
/// triggered it (an event's `e<seq>`, a timer's or schedule's key), which of its actions
/// and how deep in a chain of rules. A [`crate::Ctx`] carries it
/// ([`crate::Ctx::with_cause`]) into every [`crate::Changeset`] the command commits; the
/// events of that changeset record the rule and the depth ([`Event::rule`],
/// [`Event::depth`]), so that a rule engine can tell a rule's own changes from others and
/// stop a chain, and a module's [`crate::Module::before_commit`] can add a record of the
/// run to the same changeset (the automation module does: that makes each action's
/// effect happen exactly once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    /// The rule.
    pub rule: RuleId,
    /// What triggered it, as a key unique per rule (`e42`: event 42).
    pub occurrence: String,
    /// Which of the rule's actions (0-based).
    pub action: u32,
    /// The chain depth of the change: 1 for a rule triggered by a change no rule made,
    /// one more than the triggering change's otherwise.
    pub depth: u32,
    /// The record the rule ran for, if any (kept in the run log).
    pub record: Option<RecordRef>,
    /// What the action does, in words (kept in the run log).
    pub detail: String,
    /// This attempt's id, unique per try: kept with the run's record so that an engine
    /// can tell its own commit from a concurrent engine's.
    pub attempt: uuid::Uuid,
    /// Rows the run writes with whatever the action commits (the rule engine's own state
    /// that must change atomically with the record, such as an assignment pointer).
    #[serde(skip)]
    pub writes: Vec<crate::store::Write>,
}

/// A committed event, as read from the change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The tenant.
    pub tenant: TenantId,
    /// Position in the tenant's feed (1, 2, 3, ... without gaps).
    pub seq: u64,
    /// What happened.
    pub kind: String,
    /// The record.
    pub record: RecordRef,
    /// Changed fields.
    pub changed: Vec<String>,
    /// Payload.
    pub payload: serde_json::Value,
    /// Who did it.
    pub actor: Option<UserId>,
    /// Through which channel (`api`, `import`, `automation`, ...).
    pub origin: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The automation rule whose action made the change, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleId>,
    /// The chain depth of the change: 0 when no rule made it (see [`Cause::depth`]).
    #[serde(default)]
    pub depth: u32,
}

/// One audited field change of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditChange {
    /// The record.
    pub record: RecordRef,
    /// The field (`*` for the record as a whole: created, deleted, restored).
    pub field: String,
    /// The old value, as JSON text.
    pub old: Option<String>,
    /// The new value, as JSON text.
    pub new: Option<String>,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who.
    pub actor: Option<UserId>,
    /// When.
    pub at: DateTime<Utc>,
    /// The change.
    pub change: AuditChange,
}

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            EVENTS_TABLE,
            [
                ColumnDef::required("seq", Int),
                ColumnDef::required("kind", Text(64)),
                ColumnDef::required("record_kind", Text(64)),
                ColumnDef::required("record_id", Uuid),
                ColumnDef::required("changed", LongText),
                ColumnDef::required("payload", LongText),
                ColumnDef::optional("actor", Uuid),
                ColumnDef::required("origin", Text(32)),
                ColumnDef::required("at", Timestamp),
            ],
            ["seq"],
        )
        .index(IndexDef::new(
            "crm_events_record",
            ["record_kind", "record_id", "seq"],
        )),
        TableDef::new(
            AUDIT_TABLE,
            [
                ColumnDef::required("id", Uuid),
                ColumnDef::required("at", Timestamp),
                ColumnDef::optional("actor", Uuid),
                ColumnDef::required("record_kind", Text(64)),
                ColumnDef::required("record_id", Uuid),
                ColumnDef::required("field", Text(128)),
                ColumnDef::optional("old_value", LongText),
                ColumnDef::optional("new_value", LongText),
            ],
            ["id"],
        )
        .index(IndexDef::new(
            "crm_audit_record",
            ["record_kind", "record_id", "id"],
        )),
        TableDef::new(
            SEQUENCES_TABLE,
            [
                ColumnDef::required("name", Text(64)),
                ColumnDef::required("last_value", Int),
            ],
            ["name"],
        ),
    ]
}

pub(crate) fn event_row(cs: &Changeset, e: &NewEvent, seq: u64) -> Write {
    Write::Insert {
        table: EVENTS_TABLE,
        row: vec![
            Value::Int(seq as i64),
            Value::Text(e.kind.clone()),
            Value::Text(e.record.kind.as_str().to_owned()),
            Value::Uuid(e.record.id),
            Value::Text(serde_json::to_string(&e.changed).unwrap_or_else(|_| "[]".into())),
            Value::Text(e.payload.clone()),
            Value::opt_uuid(cs.actor),
            Value::Text(cs.origin.clone()),
            Value::timestamp(cs.at),
            Value::opt_uuid(cs.cause.as_ref().map(|c| c.rule)),
            Value::opt_int(cs.cause.as_ref().map(|c| i64::from(c.depth))),
        ],
    }
}

/// The columns migration 2 of the kernel adds to the events table: the rule that made a
/// change and the chain depth (see [`Cause`]).
pub(crate) fn cause_columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::optional("cause_rule", ColumnType::Uuid),
        ColumnDef::optional("cause_depth", ColumnType::Int),
    ]
}

pub(crate) fn audit_row(cs: &Changeset, a: &AuditChange) -> Write {
    Write::Insert {
        table: AUDIT_TABLE,
        row: vec![
            Value::Uuid(Uuid::now_v7()),
            Value::timestamp(cs.at),
            Value::opt_uuid(cs.actor),
            Value::Text(a.record.kind.as_str().to_owned()),
            Value::Uuid(a.record.id),
            Value::Text(a.field.clone()),
            Value::opt_text(a.old.clone()),
            Value::opt_text(a.new.clone()),
        ],
    }
}

/// Reads a timestamp stored as microseconds.
pub fn decode_timestamp(v: &Value) -> Result<DateTime<Utc>> {
    v.as_int()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| Error::storage(format!("bad timestamp value {v:?}")))
}

/// Decodes a full row of the events table ([`EVENTS_TABLE`]) of `tenant`.
pub fn decode_event(tenant: TenantId, row: &Row) -> Result<Event> {
    let bad = || Error::storage("malformed event row");
    Ok(Event {
        tenant,
        seq: row[0].as_int().ok_or_else(bad)? as u64,
        kind: row[1].as_text().ok_or_else(bad)?.to_owned(),
        record: RecordRef::new(
            RecordKind::parse(row[2].as_text().ok_or_else(bad)?)?,
            row[3].as_uuid().ok_or_else(bad)?,
        ),
        changed: serde_json::from_str(row[4].as_text().ok_or_else(bad)?)
            .map_err(|e| Error::storage_from("event", e))?,
        payload: serde_json::from_str(row[5].as_text().ok_or_else(bad)?)
            .map_err(|e| Error::storage_from("event", e))?,
        actor: row[6].as_uuid().map(UserId::from_uuid),
        origin: row[7].as_text().ok_or_else(bad)?.to_owned(),
        at: decode_timestamp(&row[8])?,
        rule: row.get(9).and_then(Value::as_uuid).map(RuleId::from_uuid),
        depth: row
            .get(10)
            .and_then(Value::as_int)
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0),
    })
}

pub(crate) fn decode_audit(row: &Row) -> Result<AuditEntry> {
    let bad = || Error::storage("malformed audit row");
    Ok(AuditEntry {
        at: decode_timestamp(&row[1])?,
        actor: row[2].as_uuid().map(UserId::from_uuid),
        change: AuditChange {
            record: RecordRef::new(
                RecordKind::parse(row[3].as_text().ok_or_else(bad)?)?,
                row[4].as_uuid().ok_or_else(bad)?,
            ),
            field: row[5].as_text().ok_or_else(bad)?.to_owned(),
            old: row[6].as_text().map(str::to_owned),
            new: row[7].as_text().map(str::to_owned),
        },
    })
}
