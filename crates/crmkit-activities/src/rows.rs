//! The activity tables, their row encoding and the queryable activity fields.
//!
//! - [`ACTIVITY_TABLE`]: one row per activity: the common columns, the kind, the details
//!   as JSON and denormalised, indexed columns the queries need (`status`, `open`,
//!   `due_at`, `starts_at`, `ends_at`, `message_id`).
//! - [`RELATION_TABLE`]: one row per (activity, related record), with the activity's
//!   creation time (the timeline order) and its follow-up contribution (`done_at`,
//!   `next_at`), indexed by record.
//! - [`REMINDER_TABLE`]: reminders, indexed by `(delivered_at, remind_at)` so that due
//!   reminders are an index range.
//! - [`FOLLOWUP_TABLE`]: per record, the last and next activity, indexed for "no next
//!   activity" and "not contacted since".
//!
//! Migration 3 adds `completed_at` at the end of [`ACTIVITY_TABLE`]'s rows: a done task's
//! completion instant (NULL for every other activity), indexed with the id
//! (`activities_activity_completed`), so that "tasks done in a period" is an index range
//! for reports. Tasks completed before migration 3 get it on their next write.

use chrono::{DateTime, Utc};
use crmkit_core::query::{FieldSpec, FieldType, RecordFields};
use crmkit_core::row::{from_json, int, json, opt_timestamp, take_text, timestamp, uuid};
use crmkit_core::store::{
    ColumnDef, ColumnType, IndexDef, Row, SchemaStep, TableDef, Value, columns,
};
use crmkit_core::{ActivityId, Error, RecordKind, RecordRef, ReminderId, Result, TeamId, UserId};

use crate::model::{Activity, ActivityDetails, ActivityKind, Reminder, TaskStatus};

/// The activities table.
pub const ACTIVITY_TABLE: &str = "activities_activity";
/// The activity-to-record relation table.
pub const RELATION_TABLE: &str = "activities_relation";
/// The reminders table.
pub const REMINDER_TABLE: &str = "activities_reminder";
/// The follow-up table (last and next activity per record).
pub const FOLLOWUP_TABLE: &str = "activities_followup";

/// The record kind of activities.
pub const ACTIVITY: RecordKind = RecordKind::new("activity");

/// Stored names of [`ActivityKind`].
pub const KIND_NAMES: &[&str] = &["task", "call", "meeting", "note", "email"];
/// Stored names of [`TaskStatus`].
pub const STATUS_NAMES: &[&str] = &["open", "in_progress", "done", "cancelled"];

/// The stored name of a kind.
pub fn kind_name(k: ActivityKind) -> &'static str {
    match k {
        ActivityKind::Task => "task",
        ActivityKind::Call => "call",
        ActivityKind::Meeting => "meeting",
        ActivityKind::Note => "note",
        ActivityKind::Email => "email",
    }
}

/// The stored name of a task status.
pub fn status_name(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Open => "open",
        TaskStatus::InProgress => "in_progress",
        TaskStatus::Done => "done",
        TaskStatus::Cancelled => "cancelled",
    }
}

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            ACTIVITY_TABLE,
            columns(&[
                ("id", Uuid, false),
                ("kind", Text(16), false),
                ("subject", Text(500), false),
                ("owner_id", Uuid, false),
                ("team_id", Uuid, true),
                ("status", Text(16), true),
                ("open", Bool, false),
                ("due_at", Timestamp, true),
                ("starts_at", Timestamp, true),
                ("ends_at", Timestamp, true),
                ("message_id", Text(255), true),
                ("related", LongText, false),
                ("details", LongText, false),
                ("created_at", Timestamp, false),
                ("updated_at", Timestamp, false),
                ("deleted_at", Timestamp, true),
                ("version", Int, false),
            ]),
            ["id"],
        )
        .index(IndexDef::new(
            "activities_activity_open_due",
            ["owner_id", "open", "due_at", "id"],
        ))
        .index(IndexDef::new(
            "activities_activity_owner_start",
            ["owner_id", "kind", "starts_at", "id"],
        ))
        .index(IndexDef::unique(
            "activities_activity_message",
            ["message_id"],
        ))
        .index(IndexDef::new("activities_activity_kind", ["kind", "id"]))
        .index(IndexDef::new(
            "activities_activity_status",
            ["status", "id"],
        ))
        .index(IndexDef::new("activities_activity_team", ["team_id", "id"]))
        .index(IndexDef::new("activities_activity_due", ["due_at", "id"]))
        .index(IndexDef::new(
            "activities_activity_created",
            ["created_at", "id"],
        )),
        TableDef::new(
            RELATION_TABLE,
            columns(&[
                ("activity_id", Uuid, false),
                ("record_kind", Text(64), false),
                ("record_id", Uuid, false),
                ("at", Timestamp, false),
                ("done_at", Timestamp, true),
                ("next_at", Timestamp, true),
            ]),
            ["activity_id", "record_kind", "record_id"],
        )
        .index(IndexDef::new(
            "activities_relation_timeline",
            ["record_kind", "record_id", "at", "activity_id"],
        ))
        .index(IndexDef::new(
            "activities_relation_done",
            ["record_kind", "record_id", "done_at"],
        ))
        .index(IndexDef::new(
            "activities_relation_next",
            ["record_kind", "record_id", "next_at"],
        )),
        TableDef::new(
            REMINDER_TABLE,
            columns(&[
                ("id", Uuid, false),
                ("activity_id", Uuid, false),
                ("user_id", Uuid, false),
                ("remind_at", Timestamp, false),
                ("delivered_at", Timestamp, true),
                ("version", Int, false),
            ]),
            ["id"],
        )
        .index(IndexDef::new(
            "activities_reminder_due",
            ["delivered_at", "remind_at", "id"],
        ))
        .index(IndexDef::new(
            "activities_reminder_activity",
            ["activity_id"],
        )),
        TableDef::new(
            FOLLOWUP_TABLE,
            columns(&[
                ("record_kind", Text(64), false),
                ("record_id", Uuid, false),
                ("last_activity_at", Timestamp, true),
                ("next_activity_at", Timestamp, true),
                ("next_activity_id", Uuid, true),
                ("version", Int, false),
            ]),
            ["record_kind", "record_id"],
        )
        .index(IndexDef::new(
            "activities_followup_last",
            ["record_kind", "last_activity_at", "record_id"],
        ))
        .index(IndexDef::new(
            "activities_followup_next",
            ["record_kind", "next_activity_at", "record_id"],
        )),
    ]
}

/// Migration 3: `completed_at` on [`ACTIVITY_TABLE`] and its index.
pub(crate) fn migration_v3() -> Vec<SchemaStep> {
    vec![
        SchemaStep::AddColumn {
            table: ACTIVITY_TABLE,
            column: ColumnDef::optional("completed_at", ColumnType::Timestamp),
        },
        SchemaStep::CreateIndex {
            table: ACTIVITY_TABLE,
            index: IndexDef::new("activities_activity_completed", ["completed_at", "id"]),
        },
    ]
}

/// Queryable activity fields.
pub const ACTIVITY_FIELDS: RecordFields = RecordFields {
    kind: ACTIVITY,
    table: ACTIVITY_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("kind", FieldType::Enum(KIND_NAMES), false),
        FieldSpec::new("subject", FieldType::Text, false),
        FieldSpec::new("owner", FieldType::Uuid, false).in_column("owner_id"),
        FieldSpec::new("team", FieldType::Uuid, true).in_column("team_id"),
        FieldSpec::new("status", FieldType::Enum(STATUS_NAMES), true),
        FieldSpec::new("open", FieldType::Bool, false),
        FieldSpec::new("due_at", FieldType::Timestamp, true),
        FieldSpec::new("starts_at", FieldType::Timestamp, true),
        FieldSpec::new("ends_at", FieldType::Timestamp, true),
        FieldSpec::new("message_id", FieldType::Text, true),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
        FieldSpec::new("deleted_at", FieldType::Timestamp, true),
    ],
    custom_column: None,
};

/// The denormalised columns of an activity: status, open, due_at, starts_at, ends_at,
/// message_id. `due_at` is the task's due instant (for an all-day task, the start of the
/// day in the assignee's time zone, given as `date_start`).
pub(crate) struct Denorm {
    pub status: Option<TaskStatus>,
    pub open: bool,
    pub due_at: Option<DateTime<Utc>>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub message_id: Option<String>,
}

pub(crate) fn denorm(a: &Activity, date_start: Option<DateTime<Utc>>) -> Denorm {
    let mut d = Denorm {
        status: None,
        open: false,
        due_at: None,
        starts_at: None,
        ends_at: None,
        message_id: None,
    };
    match &a.details {
        ActivityDetails::Task(t) => {
            d.status = Some(t.status);
            d.open = matches!(t.status, TaskStatus::Open | TaskStatus::InProgress);
            d.due_at = match &t.due {
                Some(crate::model::Due::At { at, .. }) => Some(*at),
                Some(crate::model::Due::Date { .. }) => date_start,
                None => None,
            };
        }
        ActivityDetails::Call(c) => {
            d.starts_at = Some(c.started_at);
            d.ends_at = Some(c.started_at + chrono::Duration::seconds(i64::from(c.duration_secs)));
        }
        ActivityDetails::Meeting(m) => {
            d.starts_at = Some(m.start);
            d.ends_at = Some(m.end);
        }
        ActivityDetails::Note(_) => {}
        ActivityDetails::Email(e) => d.message_id = Some(e.message_id.clone()),
    }
    d
}

/// The row of an activity.
pub(crate) fn activity_row(a: &Activity, date_start: Option<DateTime<Utc>>) -> Row {
    let d = denorm(a, date_start);
    vec![
        Value::Uuid(a.id.as_uuid()),
        Value::Text(kind_name(a.kind()).into()),
        Value::Text(a.subject.clone()),
        Value::Uuid(a.owner.as_uuid()),
        Value::opt_uuid(a.team),
        Value::opt_text(d.status.map(status_name)),
        Value::from(d.open),
        Value::opt_timestamp(d.due_at),
        Value::opt_timestamp(d.starts_at),
        Value::opt_timestamp(d.ends_at),
        Value::opt_text(d.message_id),
        json(&a.related),
        json(&a.details),
        Value::timestamp(a.created_at),
        Value::timestamp(a.updated_at),
        Value::opt_timestamp(a.deleted_at),
        Value::Int(a.version as i64),
        // Migration 3.
        Value::opt_timestamp(completed_at(a)),
    ]
}

/// A done task's completion instant (the stored `completed_at` column); `None` for any
/// other activity.
pub fn completed_at(a: &Activity) -> Option<DateTime<Utc>> {
    match &a.details {
        ActivityDetails::Task(t) if t.status == TaskStatus::Done => t.completed_at,
        _ => None,
    }
}

/// The stored `due_at` of an activity row.
pub(crate) fn row_due_at(r: &Row) -> Result<Option<DateTime<Utc>>> {
    opt_timestamp(&r[7])
}

/// Decodes an activity row.
pub(crate) fn decode_activity(mut r: Row) -> Result<Activity> {
    Ok(Activity {
        id: ActivityId::from_uuid(uuid(&r[0])?),
        subject: take_text(&mut r[2])?,
        owner: UserId::from_uuid(uuid(&r[3])?),
        team: r[4].as_uuid().map(TeamId::from_uuid),
        related: from_json(&r[11])?,
        details: from_json(&r[12])?,
        created_at: timestamp(&r[13])?,
        updated_at: timestamp(&r[14])?,
        deleted_at: opt_timestamp(&r[15])?,
        version: int(&r[16])? as u64,
    })
}

/// The row of a reminder.
pub(crate) fn reminder_row(m: &Reminder, version: u64) -> Row {
    vec![
        Value::Uuid(m.id.as_uuid()),
        Value::Uuid(m.activity.as_uuid()),
        Value::Uuid(m.user.as_uuid()),
        Value::timestamp(m.remind_at),
        Value::opt_timestamp(m.delivered_at),
        Value::Int(version as i64),
    ]
}

/// Decodes a reminder row and its version.
pub(crate) fn decode_reminder(r: &Row) -> Result<(Reminder, u64)> {
    Ok((
        Reminder {
            id: ReminderId::from_uuid(uuid(&r[0])?),
            activity: ActivityId::from_uuid(uuid(&r[1])?),
            user: UserId::from_uuid(uuid(&r[2])?),
            remind_at: timestamp(&r[3])?,
            delivered_at: opt_timestamp(&r[4])?,
        },
        int(&r[5])? as u64,
    ))
}

/// A relation row's record.
pub(crate) fn relation_record(r: &Row) -> Result<RecordRef> {
    let k = r[1]
        .as_text()
        .ok_or_else(|| Error::storage("malformed relation row"))?;
    Ok(RecordRef::new(RecordKind::parse(k)?, uuid(&r[2])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_columns_exist() {
        let tables = tables();
        for f in ACTIVITY_FIELDS.fields {
            assert!(tables[0].position(f.column).is_some(), "{}", f.column);
        }
        assert_eq!(tables[0].position("version"), Some(16));
    }
}

crmkit_core::stored_record!(
    Activity,
    crmkit_core::ActivityId,
    ACTIVITY,
    ACTIVITY_TABLE,
    decode_activity
);
