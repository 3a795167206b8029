//! The ticket records: tickets, their status rules, comments, history and satisfaction
//! ratings.

use chrono::{DateTime, Utc};
use crmkit_core::{CommentId, ContactId, CustomValues, OrganizationId, TeamId, TicketId, UserId};
use serde::{Deserialize, Serialize};

/// Where a ticket is in its life.
///
/// The allowed moves ([`TicketStatus::can_move_to`]); every other move between two
/// different statuses is an `InvalidTransition` error, and "moving" to the status a
/// ticket already has changes nothing:
///
/// | from \ to | new | open | pending | on_hold | solved | closed |
/// |-----------|-----|------|---------|---------|--------|--------|
/// | new       |  -  | yes  | yes     | yes     | yes    | yes    |
/// | open      | no  |  -   | yes     | yes     | yes    | yes    |
/// | pending   | no  | yes  |  -      | yes     | yes    | yes    |
/// | on_hold   | no  | yes  | yes     |  -      | yes    | yes    |
/// | solved    | no  | yes (reopen) | no | no    |  -     | yes    |
/// | closed    | no  | no   | no      | no      | no     |  -     |
///
/// `new` is only ever the first status; `solved` can be reopened (to `open`) or closed;
/// `closed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// Not yet looked at.
    #[default]
    New,
    /// Being worked on.
    Open,
    /// Waiting on the customer (the requester).
    Pending,
    /// Waiting on a third party.
    OnHold,
    /// Solved; the requester may still reply or rate it; it may be reopened.
    Solved,
    /// Closed: final.
    Closed,
}

impl TicketStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [TicketStatus; 6] = [
        TicketStatus::New,
        TicketStatus::Open,
        TicketStatus::Pending,
        TicketStatus::OnHold,
        TicketStatus::Solved,
        TicketStatus::Closed,
    ];

    /// The statuses of a ticket that still needs work (not solved, not closed).
    pub const UNSOLVED: [TicketStatus; 4] = [
        TicketStatus::New,
        TicketStatus::Open,
        TicketStatus::Pending,
        TicketStatus::OnHold,
    ];

    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::New => "new",
            TicketStatus::Open => "open",
            TicketStatus::Pending => "pending",
            TicketStatus::OnHold => "on_hold",
            TicketStatus::Solved => "solved",
            TicketStatus::Closed => "closed",
        }
    }

    /// The status with this stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether a ticket may move from `self` to `to` (a different status); see the table
    /// on [`TicketStatus`].
    pub fn can_move_to(self, to: TicketStatus) -> bool {
        use TicketStatus::*;
        match (self, to) {
            (a, b) if a == b => false,
            (Closed, _) | (_, New) => false,
            (Solved, Open | Closed) => true,
            (Solved, _) => false,
            _ => true,
        }
    }

    /// Whether the ticket still needs work (not solved or closed).
    pub fn is_unsolved(self) -> bool {
        Self::UNSOLVED.contains(&self)
    }
}

/// How urgent a ticket is; ordered from low to urgent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum TicketPriority {
    /// Low.
    Low,
    /// Normal.
    #[default]
    Normal,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

impl TicketPriority {
    /// Every priority, from low to urgent.
    pub const ALL: [TicketPriority; 4] = [
        TicketPriority::Low,
        TicketPriority::Normal,
        TicketPriority::High,
        TicketPriority::Urgent,
    ];

    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketPriority::Low => "low",
            TicketPriority::Normal => "normal",
            TicketPriority::High => "high",
            TicketPriority::Urgent => "urgent",
        }
    }

    /// The priority with this stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// 0 (low) to 3 (urgent): the stored, sortable rank (list field `priority_rank`).
    pub fn rank(self) -> i64 {
        match self {
            TicketPriority::Low => 0,
            TicketPriority::Normal => 1,
            TicketPriority::High => 2,
            TicketPriority::Urgent => 3,
        }
    }
}

/// How a ticket came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// By email.
    Email,
    /// By phone (the call-centre path).
    Phone,
    /// By chat.
    Chat,
    /// Through a web form.
    WebForm,
    /// Through the API.
    #[default]
    Api,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 5] = [
        Channel::Email,
        Channel::Phone,
        Channel::Chat,
        Channel::WebForm,
        Channel::Api,
    ];

    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
            Channel::Chat => "chat",
            Channel::WebForm => "web_form",
            Channel::Api => "api",
        }
    }

    /// The channel with this stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A support ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Id.
    pub id: TicketId,
    /// The per-tenant human number (unique, increasing; not necessarily gap-free).
    pub number: u64,
    /// Subject line.
    pub subject: String,
    /// Description.
    pub description: Option<String>,
    /// Status.
    pub status: TicketStatus,
    /// Priority.
    pub priority: TicketPriority,
    /// How it came in.
    pub channel: Channel,
    /// The contact who asked.
    pub requester: Option<ContactId>,
    /// The requester's phone number as given (for a caller not, or not yet, a contact).
    pub requester_phone: Option<String>,
    /// The requester's organization.
    pub organization: Option<OrganizationId>,
    /// The agent working on it (record-level access: the owner).
    pub assignee: Option<UserId>,
    /// The queue (a team) it is in (record-level access: the owning team).
    pub queue: Option<TeamId>,
    /// Tags: trimmed, lower case, inner whitespace collapsed to one space, no repeats.
    pub tags: Vec<String>,
    /// Custom field values.
    pub custom: CustomValues,
    /// When an agent first replied publicly.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub first_response_at: Option<DateTime<Utc>>,
    /// When it was last solved (cleared when reopened).
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub solved_at: Option<DateTime<Utc>>,
    /// When it was closed.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub closed_at: Option<DateTime<Utc>>,
    /// How many times it has been solved (each solve may get one satisfaction rating).
    pub solve_count: u32,
    /// Created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version for optimistic concurrency.
    pub version: u64,
}

/// Who wrote a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommentAuthor {
    /// An agent (a user of the tenant).
    Agent {
        /// The user.
        user: UserId,
    },
    /// The ticket's requester (a contact), recorded on their behalf by the acting user.
    Requester {
        /// The contact.
        contact: ContactId,
    },
}

/// Metadata of a file attached to a comment; the file itself is kept by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name (1 to 255 characters, no control characters).
    pub name: String,
    /// Size in bytes (0 or more).
    pub size: i64,
    /// MIME type, `type/subtype` (at most 255 characters).
    pub content_type: String,
    /// Where the host stores the file (1 to 500 characters).
    pub storage_key: String,
}

impl Attachment {
    /// The metadata of a file (every field is required): its name, size in bytes, MIME
    /// type and the key the host stores it under.
    pub fn new(
        name: impl Into<String>,
        size: i64,
        content_type: impl Into<String>,
        storage_key: impl Into<String>,
    ) -> Self {
        Attachment {
            name: name.into(),
            size,
            content_type: content_type.into(),
            storage_key: storage_key.into(),
        }
    }
}

/// A comment on a ticket: a public reply or an internal note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// Id (UUID v7).
    pub id: CommentId,
    /// The ticket.
    pub ticket: TicketId,
    /// Who wrote it.
    pub author: CommentAuthor,
    /// Public reply (seen by the requester) or internal note.
    pub public: bool,
    /// The text.
    pub body: String,
    /// Attached files (metadata).
    pub attachments: Vec<Attachment>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// What a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The ticket was created (to its first status and priority).
    Created,
    /// The status changed.
    Status,
    /// The priority changed (by an update).
    Priority,
    /// The ticket was escalated (priority raised and/or reassigned, with a reason).
    Escalated,
}

impl HistoryKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Created => "created",
            HistoryKind::Status => "status",
            HistoryKind::Priority => "priority",
            HistoryKind::Escalated => "escalated",
        }
    }

    /// The kind with this stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            HistoryKind::Created,
            HistoryKind::Status,
            HistoryKind::Priority,
            HistoryKind::Escalated,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One entry of a ticket's append-only status and priority history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The ticket.
    pub ticket: TicketId,
    /// The ticket's version after the change (orders a ticket's entries).
    pub version: u64,
    /// What changed.
    pub kind: HistoryKind,
    /// Status before (`None` at creation).
    pub from_status: Option<TicketStatus>,
    /// Status after.
    pub to_status: TicketStatus,
    /// Priority before (`None` at creation).
    pub from_priority: Option<TicketPriority>,
    /// Priority after.
    pub to_priority: TicketPriority,
    /// The assignee after the change.
    pub assignee: Option<UserId>,
    /// The queue after the change.
    pub queue: Option<TeamId>,
    /// Why (escalations; automatic status moves say what moved them).
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Option<UserId>,
}

/// A satisfaction rating of one solve of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Satisfaction {
    /// The ticket.
    pub ticket: TicketId,
    /// Which solve it rates (the ticket's `solve_count` when rated; 1 for the first).
    pub solve: u32,
    /// 1 (bad) to 5 (good).
    pub rating: u8,
    /// What the requester said.
    pub comment: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The user who recorded it.
    pub recorded_by: Option<UserId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in TicketStatus::ALL {
            assert_eq!(TicketStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        for p in TicketPriority::ALL {
            assert_eq!(TicketPriority::parse(p.as_str()), Some(p));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
    }

    #[test]
    fn transition_table() {
        use TicketStatus::*;
        let allowed = [
            (New, Open),
            (New, Pending),
            (New, OnHold),
            (New, Solved),
            (New, Closed),
            (Open, Pending),
            (Open, OnHold),
            (Open, Solved),
            (Open, Closed),
            (Pending, Open),
            (Pending, OnHold),
            (Pending, Solved),
            (Pending, Closed),
            (OnHold, Open),
            (OnHold, Pending),
            (OnHold, Solved),
            (OnHold, Closed),
            (Solved, Open),
            (Solved, Closed),
        ];
        for a in TicketStatus::ALL {
            for b in TicketStatus::ALL {
                assert_eq!(
                    a.can_move_to(b),
                    allowed.contains(&(a, b)),
                    "{a:?} -> {b:?}"
                );
            }
        }
    }
}
