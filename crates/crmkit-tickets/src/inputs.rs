//! Inputs of the tickets API.

use std::collections::BTreeMap;

use crmkit_core::{ContactId, CustomValue, CustomValues, OrganizationId, TeamId, UserId};
use serde::{Deserialize, Serialize};

use crate::model::{Attachment, Channel, TicketPriority};

/// A new ticket. It needs a requester contact or a requester phone (or both). Absent
/// fields of a JSON body take their [`Default`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewTicket {
    /// Subject (required, at most [`crate::MAX_SUBJECT`] characters).
    pub subject: String,
    /// Description (at most [`crate::MAX_TEXT`] characters).
    pub description: Option<String>,
    /// Priority.
    pub priority: TicketPriority,
    /// How it came in.
    pub channel: Channel,
    /// The requester: a contact of the tenant visible to the actor.
    pub requester: Option<ContactId>,
    /// The requester's phone number as given (kept as raw text, at most 64 characters).
    pub requester_phone: Option<String>,
    /// The organization; the requester's organization when `None`.
    pub organization: Option<OrganizationId>,
    /// The assignee (an active user). When neither an assignee nor a queue is given, the
    /// actor is the assignee.
    pub assignee: Option<UserId>,
    /// The queue (a team of the tenant).
    pub queue: Option<TeamId>,
    /// Tags (normalised; at most [`crate::MAX_TAGS`], each at most
    /// [`crate::MAX_TAG_LEN`] characters, no `|`).
    pub tags: Vec<String>,
    /// Custom field values.
    pub custom: CustomValues,
}

impl NewTicket {
    /// A ticket with a subject, from a requester contact, with the defaults (normal
    /// priority, channel `api`).
    pub fn new(subject: impl Into<String>, requester: ContactId) -> Self {
        NewTicket {
            subject: subject.into(),
            requester: Some(requester),
            ..NewTicket::default()
        }
    }

    /// A ticket from a caller known only by a phone number (channel `phone`).
    pub fn from_phone(subject: impl Into<String>, phone: impl Into<String>) -> Self {
        NewTicket {
            subject: subject.into(),
            requester_phone: Some(phone.into()),
            channel: Channel::Phone,
            ..NewTicket::default()
        }
    }

    crmkit_core::setters! {
        /// With a description.
        some description: String;
        /// With a priority.
        set priority: TicketPriority;
        /// With a channel.
        set channel: Channel;
        /// Assigned to `user`.
        some assignee: UserId;
        /// In queue `team`.
        some queue: TeamId;
        /// Of organization `org`.
        some organization: OrganizationId;
        /// With one more tag.
        push tag(tags): String;
    }

    /// With a custom value.
    pub fn custom(mut self, key: impl Into<String>, v: CustomValue) -> Self {
        self.custom.insert(key.into(), v);
        self
    }
}

/// A change to a ticket: each `Some` replaces the field (`Some(None)` clears an optional
/// one). The status changes only through [`crate::Tickets::set_status`] (and the comment
/// rules); the number never changes. In JSON, an absent key changes nothing and `null`
/// clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TicketPatch {
    /// New subject.
    pub subject: Option<String>,
    /// New description.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub description: Option<Option<String>>,
    /// New priority (recorded in the history).
    pub priority: Option<TicketPriority>,
    /// New channel.
    pub channel: Option<Channel>,
    /// New requester.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub requester: Option<Option<ContactId>>,
    /// New requester phone.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub requester_phone: Option<Option<String>>,
    /// New organization.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub organization: Option<Option<OrganizationId>>,
    /// New assignee.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub assignee: Option<Option<UserId>>,
    /// New queue.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub queue: Option<Option<TeamId>>,
    /// New tags (replacing all).
    pub tags: Option<Vec<String>>,
    /// Custom values: `Some` sets a key, `None` removes it.
    pub custom: BTreeMap<String, Option<CustomValue>>,
}

impl TicketPatch {
    /// A patch that changes nothing yet (add changes with the setters).
    pub fn new() -> Self {
        TicketPatch::default()
    }

    crmkit_core::setters! {
        /// Setting the subject.
        some subject: String;
        /// Setting (`Some`) or clearing (`None`) the description.
        some description: Option<String>;
        /// Setting the priority.
        some priority: TicketPriority;
        /// Setting the channel.
        some channel: Channel;
        /// Setting or clearing the requester contact.
        some requester: Option<ContactId>;
        /// Setting or clearing the requester phone.
        some requester_phone: Option<String>;
        /// Setting or clearing the organization.
        some organization: Option<OrganizationId>;
        /// Setting or clearing the assignee.
        some assignee: Option<UserId>;
        /// Setting or clearing the queue.
        some queue: Option<TeamId>;
    }

    /// Replacing the tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Setting (`Some`) or removing (`None`) the custom value `key`.
    pub fn custom(mut self, key: impl Into<String>, v: Option<CustomValue>) -> Self {
        self.custom.insert(key.into(), v);
        self
    }
}

/// A new comment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewComment {
    /// The text (required, at most [`crate::MAX_TEXT`] characters).
    pub body: String,
    /// A public reply (seen by the requester) or an internal note.
    pub public: bool,
    /// Written by the ticket's requester (recorded on their behalf by the actor, for
    /// example by an email gateway); otherwise by the actor as an agent. A requester
    /// comment must be public and the ticket must have a requester contact.
    pub by_requester: bool,
    /// Attachment metadata (at most [`crate::MAX_ATTACHMENTS`]).
    pub attachments: Vec<Attachment>,
}

impl NewComment {
    /// A public reply by the actor (an agent).
    pub fn reply(body: impl Into<String>) -> Self {
        NewComment {
            body: body.into(),
            public: true,
            ..NewComment::default()
        }
    }

    /// An internal note by the actor.
    pub fn internal(body: impl Into<String>) -> Self {
        NewComment {
            body: body.into(),
            public: false,
            ..NewComment::default()
        }
    }

    /// A public comment by the ticket's requester.
    pub fn from_requester(body: impl Into<String>) -> Self {
        NewComment {
            body: body.into(),
            public: true,
            by_requester: true,
            attachments: vec![],
        }
    }

    crmkit_core::setters! {
        /// With an attachment.
        push attach(attachments): Attachment;
    }
}

/// An escalation: raise the priority and/or hand the ticket to a queue or user, with a
/// reason. At least one of `priority`, `queue` and `assignee` must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Escalation {
    /// The new priority: higher than the current one.
    pub priority: Option<TicketPriority>,
    /// The queue (a team of the tenant) to hand it to.
    pub queue: Option<TeamId>,
    /// The user (active) to hand it to.
    pub assignee: Option<UserId>,
    /// Why (required, at most 1000 characters).
    pub reason: String,
}

impl Escalation {
    /// An escalation with a reason and nothing else yet.
    pub fn because(reason: impl Into<String>) -> Self {
        Escalation {
            reason: reason.into(),
            ..Escalation::default()
        }
    }

    crmkit_core::setters! {
        /// Raising the priority to `p`.
        some priority: TicketPriority;
        /// Handing it to queue `team`.
        some queue: TeamId;
        /// Handing it to `user`.
        some assignee: UserId;
    }
}

/// The result of [`crate::Tickets::comment`]: the comment and the ticket after it (changed
/// when the comment recorded the first response or moved the status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commented {
    /// The ticket after the comment.
    pub ticket: crate::model::Ticket,
    /// The comment.
    pub comment: crate::model::Comment,
}
