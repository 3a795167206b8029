//! The engine's tables: the run log (which makes every action's effect happen once), the
//! failed runs waiting for a retry, the feed cursor and the delivery outbox.

use chrono::{DateTime, Utc};
use crmkit_core::event::decode_timestamp;
use crmkit_core::row::{opt_timestamp, take_opt_text, take_text, uuid};
use crmkit_core::store::{ColumnType, IndexDef, Row, TableDef, Value, Write, columns};
use crmkit_core::{Cause, Error, RecordKind, RecordRef, Result, RuleId};
use serde::{Deserialize, Serialize};

/// The run log: one row per applied (or skipped) action of a rule for one occurrence,
/// keyed by `(rule, occurrence, action)`. An applied action's row is written in the same
/// commit as the action's own writes, so a second run of the same action (a redelivered
/// event, a crash before the cursor moved, a second engine) fails its whole commit on the
/// key and writes nothing.
pub const RUN_TABLE: &str = "automation_runs";
/// Failed actions waiting for a retry (or given up), by the same key as the run log.
pub const FAILURE_TABLE: &str = "automation_failures";
/// The engine's position in each tenant's change feed.
pub const CURSOR_TABLE: &str = "automation_cursors";
/// Notifications and webhook calls waiting for delivery.
pub const OUTBOX_TABLE: &str = "automation_outbox";

/// The action index of a run-log line about the rule as a whole (its conditions did not
/// hold, the loop guard or the depth limit stopped it, its owner cannot act).
pub(crate) const RULE_LEVEL: i64 = -1;

const RUN_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("rule_id", Uuid, false),
        ("occurrence", Text(80), false),
        ("action", Int, false),
        ("outcome", Text(16), false),
        ("record_kind", Text(64), true),
        ("record_id", Uuid, true),
        ("depth", Int, false),
        ("detail", LongText, false),
        ("at", Timestamp, false),
        ("attempt", Uuid, true),
    ]
};

const FAILURE_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("rule_id", Uuid, false),
        ("occurrence", Text(80), false),
        ("action", Int, false),
        ("record_kind", Text(64), true),
        ("record_id", Uuid, true),
        ("depth", Int, false),
        ("attempts", Int, false),
        ("next_at", Timestamp, true),
        ("error", LongText, false),
        ("first_at", Timestamp, false),
        ("last_at", Timestamp, false),
    ]
};

const CURSOR_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[("name", Text(64), false), ("last_seq", Int, false)]
};

const OUTBOX_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("rule_id", Uuid, false),
        ("occurrence", Text(80), false),
        ("action", Int, false),
        ("channel", Text(16), false),
        ("recipient", Text(2000), false),
        ("subject", LongText, true),
        ("body", LongText, false),
        ("signature", Text(128), true),
        ("status", Text(16), false),
        ("attempts", Int, false),
        ("next_at", Timestamp, true),
        ("error", LongText, true),
        ("created_at", Timestamp, false),
        ("delivered_at", Timestamp, true),
    ]
};

/// Assignment state per (rule, action): the round-robin position and what each member
/// was given, versioned, written in the commit of the assignment it records.
pub const ASSIGNMENT_TABLE: &str = "automation_assignments";

const ASSIGNMENT_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("rule_id", Uuid, false),
        ("action", Int, false),
        ("state", LongText, false),
        ("version", Int, false),
    ]
};

/// The tables of the engine (the module's migration 2).
pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(
            RUN_TABLE,
            columns(RUN_COLUMNS),
            ["rule_id", "occurrence", "action"],
        )
        .index(IndexDef::new(
            "automation_runs_record",
            ["record_kind", "record_id", "at"],
        ))
        .index(IndexDef::new("automation_runs_rule_at", ["rule_id", "at"])),
        TableDef::new(
            FAILURE_TABLE,
            columns(FAILURE_COLUMNS),
            ["rule_id", "occurrence", "action"],
        )
        .index(IndexDef::new("automation_failures_due", ["next_at"])),
        TableDef::new(CURSOR_TABLE, columns(CURSOR_COLUMNS), ["name"]),
        TableDef::new(OUTBOX_TABLE, columns(OUTBOX_COLUMNS), ["id"]).index(IndexDef::new(
            "automation_outbox_due",
            ["status", "next_at"],
        )),
        TableDef::new(
            ASSIGNMENT_TABLE,
            columns(ASSIGNMENT_COLUMNS),
            ["rule_id", "action"],
        ),
    ]
}

/// How a run-log line came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The action ran; its effect committed with this line.
    Applied,
    /// The rule did not act, and why is in the detail (its conditions did not hold, the
    /// loop guard or the depth limit stopped it, its owner cannot act, the record is not
    /// visible to its owner).
    Skipped,
}

impl RunOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Applied => "applied",
            RunOutcome::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Result<RunOutcome> {
        match s {
            "applied" => Ok(RunOutcome::Applied),
            "skipped" => Ok(RunOutcome::Skipped),
            _ => Err(Error::storage(format!("unknown run outcome {s:?}"))),
        }
    }
}

/// A line of the run log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    /// The rule.
    pub rule: RuleId,
    /// What triggered it (`e42`: event 42 of the change feed).
    pub occurrence: String,
    /// Which action (0-based); `None` for a line about the rule as a whole.
    pub action: Option<u32>,
    /// How it came out.
    pub outcome: RunOutcome,
    /// The record it ran for.
    pub record: Option<RecordRef>,
    /// The chain depth (1 for a rule triggered by a change no rule made).
    pub depth: u32,
    /// What it did, or why it did not act.
    pub detail: String,
    /// When.
    pub at: DateTime<Utc>,
}

fn record_cells(record: Option<&RecordRef>) -> (Value, Value) {
    match record {
        Some(r) => (Value::Text(r.kind.as_str().to_owned()), Value::Uuid(r.id)),
        None => (Value::Null, Value::Null),
    }
}

fn decode_record(kind: &mut Value, id: &Value) -> Result<Option<RecordRef>> {
    match take_opt_text(kind) {
        Some(k) => Ok(Some(RecordRef::new(RecordKind::parse(&k)?, uuid(id)?))),
        None => Ok(None),
    }
}

fn action_cell(action: Option<u32>) -> Value {
    Value::Int(action.map_or(RULE_LEVEL, i64::from))
}

fn decode_action(v: &Value) -> Option<u32> {
    v.as_int().and_then(|a| u32::try_from(a).ok())
}

/// The key of a run-log or failure row.
pub(crate) fn key(rule: RuleId, occurrence: &str, action: Option<u32>) -> Vec<Value> {
    vec![
        Value::Uuid(rule.as_uuid()),
        Value::Text(occurrence.to_owned()),
        action_cell(action),
    ]
}

/// The run-log row of an applied action, from its cause (added to the action's commit by
/// the module's `before_commit`).
pub(crate) fn applied_row(cause: &Cause, at: DateTime<Utc>) -> Write {
    let (rk, ri) = record_cells(cause.record.as_ref());
    Write::Insert {
        table: RUN_TABLE,
        row: vec![
            Value::Uuid(cause.rule.as_uuid()),
            Value::Text(cause.occurrence.clone()),
            Value::Int(i64::from(cause.action)),
            Value::Text(RunOutcome::Applied.as_str().into()),
            rk,
            ri,
            Value::Int(i64::from(cause.depth)),
            Value::Text(cause.detail.clone()),
            Value::timestamp(at),
            Value::Uuid(cause.attempt),
        ],
    }
}

/// A rule-level line saying why the rule did not act.
pub(crate) fn skipped_row(
    rule: RuleId,
    occurrence: &str,
    record: Option<&RecordRef>,
    depth: u32,
    why: &str,
    at: DateTime<Utc>,
) -> Write {
    let (rk, ri) = record_cells(record);
    Write::Insert {
        table: RUN_TABLE,
        row: vec![
            Value::Uuid(rule.as_uuid()),
            Value::Text(occurrence.to_owned()),
            Value::Int(RULE_LEVEL),
            Value::Text(RunOutcome::Skipped.as_str().into()),
            rk,
            ri,
            Value::Int(i64::from(depth)),
            Value::Text(why.to_owned()),
            Value::timestamp(at),
            Value::Null,
        ],
    }
}

pub(crate) fn decode_run(mut r: Row) -> Result<RunEntry> {
    let bad = |w: &str| Error::storage(format!("malformed automation run row: {w}"));
    Ok(RunEntry {
        rule: RuleId::from_uuid(uuid(&r[0])?),
        occurrence: take_text(&mut r[1])?,
        action: decode_action(&r[2]),
        outcome: RunOutcome::parse(&take_text(&mut r[3])?)?,
        record: {
            let id = r[5].clone();
            decode_record(&mut r[4], &id)?
        },
        depth: r[6]
            .as_int()
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| bad("depth"))?,
        detail: take_text(&mut r[7])?,
        at: decode_timestamp(&r[8])?,
    })
}

/// A failed action: retried with backoff until it succeeds or its attempts run out, then
/// kept until a host retries it ([`crate::Engine::retry`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRun {
    /// The rule.
    pub rule: RuleId,
    /// What triggered it.
    pub occurrence: String,
    /// Which action failed (0-based); the rule's later actions wait for it.
    pub action: u32,
    /// The record it ran for.
    pub record: Option<RecordRef>,
    /// The chain depth.
    pub depth: u32,
    /// How many times it ran and failed.
    pub attempts: u32,
    /// When the engine tries again; `None` once it gave up.
    pub next_attempt: Option<DateTime<Utc>>,
    /// The last error.
    pub error: String,
    /// When it first failed.
    pub first_at: DateTime<Utc>,
    /// When it last failed.
    pub last_at: DateTime<Utc>,
}

impl FailedRun {
    pub(crate) fn row(&self) -> Row {
        let (rk, ri) = record_cells(self.record.as_ref());
        vec![
            Value::Uuid(self.rule.as_uuid()),
            Value::Text(self.occurrence.clone()),
            Value::Int(i64::from(self.action)),
            rk,
            ri,
            Value::Int(i64::from(self.depth)),
            Value::Int(i64::from(self.attempts)),
            Value::opt_timestamp(self.next_attempt),
            Value::Text(self.error.clone()),
            Value::timestamp(self.first_at),
            Value::timestamp(self.last_at),
        ]
    }

    pub(crate) fn decode(mut r: Row) -> Result<FailedRun> {
        let bad = |w: &str| Error::storage(format!("malformed automation failure row: {w}"));
        let int = |v: &Value, w: &str| {
            v.as_int()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| bad(w))
        };
        Ok(FailedRun {
            rule: RuleId::from_uuid(uuid(&r[0])?),
            occurrence: take_text(&mut r[1])?,
            action: int(&r[2], "action")?,
            record: {
                let id = r[4].clone();
                decode_record(&mut r[3], &id)?
            },
            depth: int(&r[5], "depth")?,
            attempts: int(&r[6], "attempts")?,
            next_attempt: opt_timestamp(&r[7])?,
            error: take_text(&mut r[8])?,
            first_at: decode_timestamp(&r[9])?,
            last_at: decode_timestamp(&r[10])?,
        })
    }
}
