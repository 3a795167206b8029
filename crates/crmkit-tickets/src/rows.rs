//! The ticket tables, their row encoding and the queryable ticket fields.
//!
//! - [`TICKET_TABLE`]: one row per ticket. `owner_id` holds the assignee and `team_id`
//!   the queue (the column names record-level access uses); the tags are one text column
//!   `|tag|tag|` so that a list can filter on a tag ([`crate::tag_filter`]); the number
//!   has a unique index (`tickets_ticket_number`), which is what makes concurrent
//!   numbering safe.
//! - [`HISTORY_TABLE`]: the append-only status and priority history, keyed by (ticket,
//!   ticket version after the change).
//! - [`COMMENT_TABLE`]: comments, indexed by (ticket, time, id).
//! - [`SATISFACTION_TABLE`]: ratings keyed by (ticket, solve): one per solve. Migration 4
//!   adds `owner_id`, `team_id` and `deleted_at` (`satisfaction_steps`): copies of the
//!   ticket's assignee, queue and deletion, written with the rating and kept in step by
//!   every ticket write that changes them (the SLA hook, `Tickets::stage_sla`), so that
//!   satisfaction statistics carry ticket visibility like the other ticket reports.
//!   Ratings recorded before migration 4 have NULL there until their ticket's assignee,
//!   queue or deletion next changes: no Rep or ReadOnly user sees them (no owner, no
//!   queue), Admins and Managers do (also when their ticket was deleted before it).

use crmkit_core::query::{FieldSpec, FieldType, RecordFields};
use crmkit_core::row::{
    from_json, int, json, opt_timestamp, take_opt_text, take_text, timestamp, uuid,
};
use crmkit_core::store::{
    ColumnDef, ColumnType, IndexDef, Row, SchemaStep, TableDef, Value, columns,
};
use crmkit_core::text::fold;
use crmkit_core::{
    CommentId, ContactId, Error, OrganizationId, RecordKind, Result, TeamId, TicketId, UserId,
};

use crate::model::*;

/// The tickets table.
pub const TICKET_TABLE: &str = "tickets_ticket";
/// The status and priority history table.
pub const HISTORY_TABLE: &str = "tickets_history";
/// The comments table.
pub const COMMENT_TABLE: &str = "tickets_comment";
/// The satisfaction ratings table.
pub const SATISFACTION_TABLE: &str = "tickets_satisfaction";
/// The unique index on the per-tenant ticket number.
pub const NUMBER_INDEX: &str = "tickets_ticket_number";

/// The record kind of tickets.
pub const TICKET: RecordKind = RecordKind::TICKET;

/// Stored names of [`TicketStatus`].
pub const STATUS_NAMES: &[&str] = &["new", "open", "pending", "on_hold", "solved", "closed"];
/// Stored names of [`TicketPriority`].
pub const PRIORITY_NAMES: &[&str] = &["low", "normal", "high", "urgent"];
/// Stored names of [`Channel`].
pub const CHANNEL_NAMES: &[&str] = &["email", "phone", "chat", "web_form", "api"];

/// Column positions of [`TICKET_TABLE`].
pub(crate) mod col {
    pub const ID: usize = 0;
    pub const NUMBER: usize = 1;
    pub const SUBJECT: usize = 2;
    pub const DESCRIPTION: usize = 4;
    pub const STATUS: usize = 5;
    pub const PRIORITY: usize = 6;
    pub const CHANNEL: usize = 8;
    pub const REQUESTER: usize = 9;
    pub const PHONE: usize = 10;
    pub const ORG: usize = 11;
    pub const OWNER: usize = 12;
    pub const TEAM: usize = 13;
    pub const TAGS: usize = 14;
    pub const CUSTOM: usize = 15;
    pub const FIRST_RESPONSE: usize = 16;
    pub const SOLVED: usize = 17;
    pub const CLOSED: usize = 18;
    pub const SOLVE_COUNT: usize = 19;
    pub const CREATED: usize = 20;
    pub const UPDATED: usize = 21;
    pub const DELETED: usize = 22;
    pub const VERSION: usize = 23;
}

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            TICKET_TABLE,
            columns(&[
                ("id", Uuid, false),
                ("number", Int, false),
                ("subject", Text(200), false),
                ("subject_fold", Text(200), false),
                ("description", LongText, true),
                ("status", Text(16), false),
                ("priority", Text(16), false),
                ("priority_rank", Int, false),
                ("channel", Text(16), false),
                ("requester_id", Uuid, true),
                ("requester_phone", Text(64), true),
                ("organization_id", Uuid, true),
                ("owner_id", Uuid, true),
                ("team_id", Uuid, true),
                ("tags", Text(1100), false),
                ("custom", LongText, false),
                ("first_response_at", Timestamp, true),
                ("solved_at", Timestamp, true),
                ("closed_at", Timestamp, true),
                ("solve_count", Int, false),
                ("created_at", Timestamp, false),
                ("updated_at", Timestamp, false),
                ("deleted_at", Timestamp, true),
                ("version", Int, false),
            ]),
            ["id"],
        )
        .index(IndexDef::unique(NUMBER_INDEX, ["number"]))
        .index(IndexDef::new("tickets_ticket_status", ["status", "id"]))
        .index(IndexDef::new(
            "tickets_ticket_owner",
            ["owner_id", "status", "id"],
        ))
        .index(IndexDef::new(
            "tickets_ticket_team",
            ["team_id", "status", "id"],
        ))
        .index(IndexDef::new(
            "tickets_ticket_requester",
            ["requester_id", "status", "id"],
        ))
        .index(IndexDef::new(
            "tickets_ticket_organization",
            ["organization_id", "id"],
        ))
        .index(IndexDef::new(
            "tickets_ticket_priority",
            ["priority_rank", "id"],
        ))
        .index(IndexDef::new(
            "tickets_ticket_created",
            ["created_at", "id"],
        ))
        .index(IndexDef::new(
            "tickets_ticket_updated",
            ["updated_at", "id"],
        )),
        TableDef::new(
            HISTORY_TABLE,
            columns(&[
                ("ticket_id", Uuid, false),
                ("version", Int, false),
                ("kind", Text(16), false),
                ("from_status", Text(16), true),
                ("to_status", Text(16), false),
                ("from_priority", Text(16), true),
                ("to_priority", Text(16), false),
                ("assignee_id", Uuid, true),
                ("queue_id", Uuid, true),
                ("reason", Text(1000), true),
                ("at", Timestamp, false),
                ("actor_id", Uuid, true),
            ]),
            ["ticket_id", "version"],
        )
        .index(IndexDef::new("tickets_history_at", ["at", "ticket_id"])),
        TableDef::new(
            COMMENT_TABLE,
            columns(&[
                ("id", Uuid, false),
                ("ticket_id", Uuid, false),
                ("public", Bool, false),
                ("author_kind", Text(16), false),
                ("author_id", Uuid, false),
                ("body", LongText, false),
                ("attachments", LongText, false),
                ("created_at", Timestamp, false),
            ]),
            ["id"],
        )
        .index(IndexDef::new(
            "tickets_comment_ticket",
            ["ticket_id", "created_at", "id"],
        )),
        TableDef::new(
            SATISFACTION_TABLE,
            columns(&[
                ("ticket_id", Uuid, false),
                ("solve", Int, false),
                ("rating", Int, false),
                ("comment", Text(2000), true),
                ("at", Timestamp, false),
                ("actor_id", Uuid, true),
            ]),
            ["ticket_id", "solve"],
        )
        .index(IndexDef::new(
            "tickets_satisfaction_at",
            ["at", "ticket_id"],
        )),
    ]
}

/// Migration 4: the scope columns of [`SATISFACTION_TABLE`] (see the module docs), at the
/// end of its rows, all nullable (ratings recorded before it have none).
pub(crate) fn satisfaction_steps() -> Vec<SchemaStep> {
    SchemaStep::add_columns(
        SATISFACTION_TABLE,
        [
            ColumnDef::optional("owner_id", ColumnType::Uuid),
            ColumnDef::optional("team_id", ColumnType::Uuid),
            ColumnDef::optional("deleted_at", ColumnType::Timestamp),
        ],
    )
}

/// The scope columns of a rating row and their values for `t` (its assignee, queue and
/// deletion): what a rating mirrors of its ticket.
pub(crate) fn rating_scope(t: &Ticket) -> Vec<(&'static str, Value)> {
    vec![
        ("owner_id", Value::opt_uuid(t.assignee.map(|u| u.as_uuid()))),
        ("team_id", Value::opt_uuid(t.queue.map(|q| q.as_uuid()))),
        ("deleted_at", Value::opt_timestamp(t.deleted_at)),
    ]
}

/// Queryable ticket fields (and `custom.<key>`): `id`, `number`, `subject` (text search),
/// `status`, `priority` (filter by name), `priority_rank` (0 low to 3 urgent, to sort by
/// urgency), `channel`, `requester`, `requester_phone`, `organization`, `assignee`,
/// `queue`, `tags` (see [`crate::tag_filter`]), `first_response_at`, `solved_at`,
/// `closed_at`, `created_at`, `updated_at`, `deleted_at`.
pub const TICKET_FIELDS: RecordFields = RecordFields {
    kind: TICKET,
    table: TICKET_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("number", FieldType::Int, false),
        FieldSpec::new("subject", FieldType::Text, false).folded("subject_fold"),
        FieldSpec::new("status", FieldType::Enum(STATUS_NAMES), false),
        FieldSpec::new("priority", FieldType::Enum(PRIORITY_NAMES), false),
        FieldSpec::new("priority_rank", FieldType::Int, false),
        FieldSpec::new("channel", FieldType::Enum(CHANNEL_NAMES), false),
        FieldSpec::new("requester", FieldType::Uuid, true).in_column("requester_id"),
        FieldSpec::new("requester_phone", FieldType::Text, true),
        FieldSpec::new("organization", FieldType::Uuid, true).in_column("organization_id"),
        FieldSpec::new("assignee", FieldType::Uuid, true).in_column("owner_id"),
        FieldSpec::new("queue", FieldType::Uuid, true).in_column("team_id"),
        FieldSpec::new("tags", FieldType::Text, false).folded("tags"),
        FieldSpec::new("first_response_at", FieldType::Timestamp, true),
        FieldSpec::new("solved_at", FieldType::Timestamp, true),
        FieldSpec::new("closed_at", FieldType::Timestamp, true),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
        FieldSpec::new("deleted_at", FieldType::Timestamp, true),
    ],
    custom_column: Some("custom"),
};

/// Tags as stored: `|a|b|` (`||` for none).
pub(crate) fn tags_text(tags: &[String]) -> String {
    let mut s = String::from("|");
    for t in tags {
        s.push_str(t);
        s.push('|');
    }
    if tags.is_empty() {
        s.push('|');
    }
    s
}

fn parse_tags(s: &str) -> Vec<String> {
    s.split('|')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The row of a ticket.
pub(crate) fn ticket_row(t: &Ticket) -> Row {
    vec![
        Value::Uuid(t.id.as_uuid()),
        Value::Int(t.number as i64),
        Value::Text(t.subject.clone()),
        Value::Text(fold(&t.subject)),
        Value::opt_text(t.description.clone()),
        Value::Text(t.status.as_str().into()),
        Value::Text(t.priority.as_str().into()),
        Value::Int(t.priority.rank()),
        Value::Text(t.channel.as_str().into()),
        Value::opt_uuid(t.requester),
        Value::opt_text(t.requester_phone.clone()),
        Value::opt_uuid(t.organization),
        Value::opt_uuid(t.assignee),
        Value::opt_uuid(t.queue),
        Value::Text(tags_text(&t.tags)),
        json(&t.custom),
        Value::opt_timestamp(t.first_response_at),
        Value::opt_timestamp(t.solved_at),
        Value::opt_timestamp(t.closed_at),
        Value::Int(i64::from(t.solve_count)),
        Value::timestamp(t.created_at),
        Value::timestamp(t.updated_at),
        Value::opt_timestamp(t.deleted_at),
        Value::Int(t.version as i64),
    ]
}

fn malformed(what: &str) -> Error {
    Error::storage(format!("malformed ticket row: {what}"))
}

fn enum_cell<T>(v: &Value, parse: fn(&str) -> Option<T>, what: &str) -> Result<T> {
    v.as_text().and_then(parse).ok_or_else(|| malformed(what))
}

/// Decodes a ticket row.
pub(crate) fn decode_ticket(mut r: Row) -> Result<Ticket> {
    use col::*;
    if r.len() <= VERSION {
        return Err(malformed("too few columns"));
    }
    Ok(Ticket {
        id: TicketId::from_uuid(uuid(&r[ID])?),
        number: u64::try_from(int(&r[NUMBER])?).map_err(|_| malformed("number"))?,
        subject: take_text(&mut r[SUBJECT])?,
        description: take_opt_text(&mut r[DESCRIPTION]),
        status: enum_cell(&r[STATUS], TicketStatus::parse, "status")?,
        priority: enum_cell(&r[PRIORITY], TicketPriority::parse, "priority")?,
        channel: enum_cell(&r[CHANNEL], Channel::parse, "channel")?,
        requester: r[REQUESTER].as_uuid().map(ContactId::from_uuid),
        requester_phone: take_opt_text(&mut r[PHONE]),
        organization: r[ORG].as_uuid().map(OrganizationId::from_uuid),
        assignee: r[OWNER].as_uuid().map(UserId::from_uuid),
        queue: r[TEAM].as_uuid().map(TeamId::from_uuid),
        tags: parse_tags(r[TAGS].as_text().ok_or_else(|| malformed("tags"))?),
        custom: from_json(&r[CUSTOM])?,
        first_response_at: opt_timestamp(&r[FIRST_RESPONSE])?,
        solved_at: opt_timestamp(&r[SOLVED])?,
        closed_at: opt_timestamp(&r[CLOSED])?,
        solve_count: u32::try_from(int(&r[SOLVE_COUNT])?).map_err(|_| malformed("solve_count"))?,
        created_at: timestamp(&r[CREATED])?,
        updated_at: timestamp(&r[UPDATED])?,
        deleted_at: opt_timestamp(&r[DELETED])?,
        version: u64::try_from(int(&r[VERSION])?).map_err(|_| malformed("version"))?,
    })
}

/// The row of a history entry.
pub(crate) fn history_row(h: &HistoryEntry) -> Row {
    vec![
        Value::Uuid(h.ticket.as_uuid()),
        Value::Int(h.version as i64),
        Value::Text(h.kind.as_str().into()),
        Value::opt_text(h.from_status.map(TicketStatus::as_str)),
        Value::Text(h.to_status.as_str().into()),
        Value::opt_text(h.from_priority.map(TicketPriority::as_str)),
        Value::Text(h.to_priority.as_str().into()),
        Value::opt_uuid(h.assignee),
        Value::opt_uuid(h.queue),
        Value::opt_text(h.reason.clone()),
        Value::timestamp(h.at),
        Value::opt_uuid(h.actor),
    ]
}

/// Decodes a history row.
pub(crate) fn decode_history(mut r: Row) -> Result<HistoryEntry> {
    if r.len() < 12 {
        return Err(malformed("history row"));
    }
    let opt_status = |v: &Value| match v.as_text() {
        None => Ok(None),
        Some(s) => TicketStatus::parse(s)
            .map(Some)
            .ok_or_else(|| malformed("history status")),
    };
    let opt_priority = |v: &Value| match v.as_text() {
        None => Ok(None),
        Some(s) => TicketPriority::parse(s)
            .map(Some)
            .ok_or_else(|| malformed("history priority")),
    };
    Ok(HistoryEntry {
        ticket: TicketId::from_uuid(uuid(&r[0])?),
        version: u64::try_from(int(&r[1])?).map_err(|_| malformed("history version"))?,
        kind: enum_cell(&r[2], HistoryKind::parse, "history kind")?,
        from_status: opt_status(&r[3])?,
        to_status: enum_cell(&r[4], TicketStatus::parse, "history status")?,
        from_priority: opt_priority(&r[5])?,
        to_priority: enum_cell(&r[6], TicketPriority::parse, "history priority")?,
        assignee: r[7].as_uuid().map(UserId::from_uuid),
        queue: r[8].as_uuid().map(TeamId::from_uuid),
        reason: take_opt_text(&mut r[9]),
        at: timestamp(&r[10])?,
        actor: r[11].as_uuid().map(UserId::from_uuid),
    })
}

/// The row of a comment.
pub(crate) fn comment_row(c: &Comment) -> Row {
    let (kind, id) = match c.author {
        CommentAuthor::Agent { user } => ("agent", user.as_uuid()),
        CommentAuthor::Requester { contact } => ("requester", contact.as_uuid()),
    };
    vec![
        Value::Uuid(c.id.as_uuid()),
        Value::Uuid(c.ticket.as_uuid()),
        Value::from(c.public),
        Value::Text(kind.into()),
        Value::Uuid(id),
        Value::Text(c.body.clone()),
        json(&c.attachments),
        Value::timestamp(c.created_at),
    ]
}

/// Decodes a comment row.
pub(crate) fn decode_comment(mut r: Row) -> Result<Comment> {
    if r.len() < 8 {
        return Err(malformed("comment row"));
    }
    let author_id = uuid(&r[4])?;
    let author = match r[3].as_text() {
        Some("agent") => CommentAuthor::Agent {
            user: UserId::from_uuid(author_id),
        },
        Some("requester") => CommentAuthor::Requester {
            contact: ContactId::from_uuid(author_id),
        },
        _ => return Err(malformed("comment author")),
    };
    Ok(Comment {
        id: CommentId::from_uuid(uuid(&r[0])?),
        ticket: TicketId::from_uuid(uuid(&r[1])?),
        public: int(&r[2])? != 0,
        author,
        body: take_text(&mut r[5])?,
        attachments: from_json(&r[6])?,
        created_at: timestamp(&r[7])?,
    })
}

/// The row of a satisfaction rating of ticket `t` (whose scope it mirrors).
pub(crate) fn satisfaction_row(s: &Satisfaction, t: &Ticket) -> Row {
    let mut row = vec![
        Value::Uuid(s.ticket.as_uuid()),
        Value::Int(i64::from(s.solve)),
        Value::Int(i64::from(s.rating)),
        Value::opt_text(s.comment.clone()),
        Value::timestamp(s.at),
        Value::opt_uuid(s.recorded_by),
    ];
    row.extend(rating_scope(t).into_iter().map(|(_, v)| v));
    row
}

/// Decodes a satisfaction row.
pub(crate) fn decode_satisfaction(mut r: Row) -> Result<Satisfaction> {
    if r.len() < 6 {
        return Err(malformed("satisfaction row"));
    }
    Ok(Satisfaction {
        ticket: TicketId::from_uuid(uuid(&r[0])?),
        solve: u32::try_from(int(&r[1])?).map_err(|_| malformed("solve"))?,
        rating: u8::try_from(int(&r[2])?).map_err(|_| malformed("rating"))?,
        comment: take_opt_text(&mut r[3]),
        at: timestamp(&r[4])?,
        recorded_by: r[5].as_uuid().map(UserId::from_uuid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_columns_exist() {
        let tables = tables();
        for f in TICKET_FIELDS.fields {
            assert!(tables[0].position(f.column).is_some(), "{}", f.column);
        }
        for (name, pos) in [
            ("id", col::ID),
            ("number", col::NUMBER),
            ("subject", col::SUBJECT),
            ("description", col::DESCRIPTION),
            ("status", col::STATUS),
            ("priority", col::PRIORITY),
            ("channel", col::CHANNEL),
            ("requester_id", col::REQUESTER),
            ("requester_phone", col::PHONE),
            ("organization_id", col::ORG),
            ("owner_id", col::OWNER),
            ("team_id", col::TEAM),
            ("tags", col::TAGS),
            ("custom", col::CUSTOM),
            ("first_response_at", col::FIRST_RESPONSE),
            ("solved_at", col::SOLVED),
            ("closed_at", col::CLOSED),
            ("solve_count", col::SOLVE_COUNT),
            ("created_at", col::CREATED),
            ("updated_at", col::UPDATED),
            ("deleted_at", col::DELETED),
            ("version", col::VERSION),
        ] {
            assert_eq!(tables[0].position(name), Some(pos), "{name}");
        }
    }

    #[test]
    fn tags_round_trip() {
        for tags in [vec![], vec!["a".to_owned()], vec!["x y".into(), "b".into()]] {
            assert_eq!(parse_tags(&tags_text(&tags)), tags);
        }
    }
}

crmkit_core::stored_record!(
    Ticket,
    crmkit_core::TicketId,
    TICKET,
    TICKET_TABLE,
    decode_ticket,
    access: |t| (t.assignee, t.queue)
);
