//! Typed identifiers.
//!
//! Every record kind has its own id newtype over a UUID v7 (time-ordered, so ids sort by
//! creation time and make a stable keyset tiebreaker). They are all defined here so that
//! modules can refer to each other's records without depending on each other.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, ValidationErrors};

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (for example one read back from storage).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The record kind this id belongs to.
            pub fn kind() -> RecordKind {
                RecordKind::new($kind)
            }

            /// Parses the hyphenated form; a malformed id is a Validation error on `field`.
            pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| ValidationErrors::single(field, "is not a valid id").into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::parse("id", s)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl From<$name> for RecordRef {
            fn from(id: $name) -> RecordRef {
                RecordRef::new(RecordKind::new($kind), id.0)
            }
        }
    };
}

define_id!(
    /// A tenant: the unit of isolation. Every record and every query is scoped by one.
    TenantId,
    "tenant"
);
define_id!(
    /// A user of a tenant, as kept in the tenant's directory.
    UserId,
    "user"
);
define_id!(
    /// A team (also used as a work queue) of a tenant.
    TeamId,
    "team"
);
define_id!(
    /// A person.
    ContactId,
    "contact"
);
define_id!(
    /// A company or other organization.
    OrganizationId,
    "organization"
);
define_id!(
    /// A lead (a prospect before qualification).
    LeadId,
    "lead"
);
define_id!(
    /// A deal (an opportunity).
    DealId,
    "deal"
);
define_id!(
    /// A sales pipeline.
    PipelineId,
    "pipeline"
);
define_id!(
    /// A stage of a pipeline.
    StageId,
    "stage"
);
define_id!(
    /// A marketing campaign.
    CampaignId,
    "campaign"
);
define_id!(
    /// An activity (task, call, meeting, note, logged email).
    ActivityId,
    "activity"
);
define_id!(
    /// A support ticket.
    TicketId,
    "ticket"
);
define_id!(
    /// A custom field definition.
    CustomFieldId,
    "custom_field"
);
define_id!(
    /// An audit entry.
    AuditId,
    "audit"
);

define_id!(
    /// A reminder of an activity.
    ReminderId,
    "reminder"
);
define_id!(
    /// A managed reason for losing a deal.
    LostReasonId,
    "lost_reason"
);
define_id!(
    /// A member of a campaign (a lead or contact in it).
    CampaignMemberId,
    "campaign_member"
);
define_id!(
    /// An exchange rate of a tenant.
    ExchangeRateId,
    "exchange_rate"
);
define_id!(
    /// A business calendar (working hours and exceptions) of the tickets module's SLA
    /// policies: record kind `sla_calendar`.
    CalendarId,
    "sla_calendar"
);
define_id!(
    /// An SLA policy.
    SlaPolicyId,
    "sla_policy"
);
define_id!(
    /// A comment on a ticket.
    CommentId,
    "comment"
);
define_id!(
    /// An automation rule (crmkit-automation): record kind `automation_rule`.
    RuleId,
    "automation_rule"
);
define_id!(
    /// An automation sequence (crmkit-automation): record kind `automation_sequence`.
    SequenceId,
    "automation_sequence"
);

/// The kind of a record, such as `contact` or `deal`.
///
/// Built-in kinds are associated constants; a third-party module names its own with
/// [`RecordKind::new`]. Kinds are lowercase ASCII identifiers.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordKind(Cow<'static, str>);

impl RecordKind {
    /// A contact (person).
    pub const CONTACT: RecordKind = RecordKind(Cow::Borrowed("contact"));
    /// An organization.
    pub const ORGANIZATION: RecordKind = RecordKind(Cow::Borrowed("organization"));
    /// A lead.
    pub const LEAD: RecordKind = RecordKind(Cow::Borrowed("lead"));
    /// A deal.
    pub const DEAL: RecordKind = RecordKind(Cow::Borrowed("deal"));
    /// A support ticket.
    pub const TICKET: RecordKind = RecordKind(Cow::Borrowed("ticket"));
    /// A user of the directory.
    pub const USER: RecordKind = RecordKind(Cow::Borrowed("user"));
    /// A team of the directory.
    pub const TEAM: RecordKind = RecordKind(Cow::Borrowed("team"));
    /// A custom field definition.
    pub const CUSTOM_FIELD: RecordKind = RecordKind(Cow::Borrowed("custom_field"));

    /// A kind from a static name (for third-party modules).
    pub const fn new(name: &'static str) -> Self {
        RecordKind(Cow::Borrowed(name))
    }

    /// A kind read back from storage or input; must be a lowercase identifier.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(RecordKind(Cow::Owned(s.to_owned())))
        } else {
            Err(ValidationErrors::single("record_kind", "is not a valid record kind").into())
        }
    }

    /// The kind's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference to any record: its kind and id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordRef {
    /// The record's kind.
    pub kind: RecordKind,
    /// The record's id.
    pub id: Uuid,
}

impl RecordRef {
    /// A reference from a kind and an id.
    pub fn new(kind: RecordKind, id: Uuid) -> Self {
        RecordRef { kind, id }
    }
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

impl fmt::Debug for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = ContactId::new();
        let b = ContactId::new();
        assert!(a < b);
        assert_eq!(ContactId::parse("id", &a.to_string()).unwrap(), a);
        assert!(ContactId::parse("contact", "nope").is_err());
        assert_eq!(RecordRef::from(a).kind, RecordKind::CONTACT);
    }

    #[test]
    fn record_kind_rejects_sql() {
        assert!(RecordKind::parse("contact").is_ok());
        assert!(RecordKind::parse("x'; DROP TABLE y;--").is_err());
        assert!(RecordKind::parse("").is_err());
    }
}
