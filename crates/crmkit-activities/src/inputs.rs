//! Inputs and results of the activities API.

use chrono::{DateTime, Utc};
use crmkit_core::{ActivityId, Event, RecordRef, TeamId, UserId};
use serde::{Deserialize, Serialize};

use crate::model::{Activity, ActivityDetails, Reminder};

/// A new activity. Phone numbers of a call are normalised; a task's `completed_at` is set
/// by the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewActivity {
    /// Related records (contacts, organizations, leads, deals), each visible to the actor.
    pub related: Vec<RecordRef>,
    /// Subject.
    pub subject: String,
    /// Owner (assignee); the actor when `None`.
    pub owner: Option<UserId>,
    /// Team.
    pub team: Option<TeamId>,
    /// The kind-specific details.
    pub details: ActivityDetails,
}

impl NewActivity {
    /// An activity with a subject and details, related to nothing, owned by the actor.
    pub fn new(subject: impl Into<String>, details: ActivityDetails) -> Self {
        NewActivity {
            related: vec![],
            subject: subject.into(),
            owner: None,
            team: None,
            details,
        }
    }

    /// Related to one more record.
    pub fn related_to(mut self, r: impl Into<RecordRef>) -> Self {
        self.related.push(r.into());
        self
    }

    /// Owned by `owner`.
    pub fn owner(mut self, owner: UserId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Of team `team`.
    pub fn team(mut self, team: TeamId) -> Self {
        self.team = Some(team);
        self
    }
}

/// A change to an activity: each `Some` replaces the field. The details replace the old
/// ones as a whole and must be of the same kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityPatch {
    /// New related records.
    pub related: Option<Vec<RecordRef>>,
    /// New subject.
    pub subject: Option<String>,
    /// New owner.
    pub owner: Option<UserId>,
    /// New team (`Some(None)` clears it).
    pub team: Option<Option<TeamId>>,
    /// New details (same kind).
    pub details: Option<ActivityDetails>,
}

/// The result of [`crate::Activities::deliver_reminder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The reminder, delivered.
    pub reminder: Reminder,
    /// Whether this call delivered it (false: it had been delivered before).
    pub first: bool,
}

/// The follow-up state of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The record.
    pub record: RecordRef,
    /// When it was last contacted (the latest done activity), if ever.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// When its next planned activity is, if any.
    pub next_activity_at: Option<DateTime<Utc>>,
    /// Its next planned activity.
    pub next_activity: Option<ActivityId>,
    /// When the record was created, if it was created while the activities module was
    /// composed.
    pub created_at: Option<DateTime<Utc>>,
    /// Whether the record is live: not deleted, not a won or lost deal, not a
    /// disqualified or converted lead. Follow-up lists only list live records.
    pub active: bool,
}

/// One entry of a record's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineEntry {
    /// An activity related to the record (at its creation time).
    Activity {
        /// The activity.
        activity: Box<Activity>,
    },
    /// A domain event of the record.
    Event {
        /// The event.
        event: Box<Event>,
    },
}

impl TimelineEntry {
    /// When the entry happened (an activity's creation, an event's commit time).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            TimelineEntry::Activity { activity } => activity.created_at,
            TimelineEntry::Event { event } => event.at,
        }
    }
}

/// A page of a timeline, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePage {
    /// The entries.
    pub items: Vec<TimelineEntry>,
    /// Where the next page starts, if there may be one.
    pub next_cursor: Option<String>,
}
