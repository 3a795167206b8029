//! The activity records and their inputs.

use chrono::{DateTime, NaiveDate, Utc, Weekday};
use crmkit_core::{ActivityId, RecordRef, ReminderId, TeamId, UserId};
use serde::{Deserialize, Serialize};

/// What kind of activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    /// Something to do.
    Task,
    /// A phone call (logged).
    Call,
    /// A meeting.
    Meeting,
    /// A note.
    Note,
    /// A logged email.
    Email,
}

/// An activity: common fields and the kind-specific details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Id.
    pub id: ActivityId,
    /// The records it relates to (contacts, organizations, leads, deals, later tickets).
    pub related: Vec<RecordRef>,
    /// Subject line (for notes: a title, possibly empty).
    pub subject: String,
    /// The owning user (tasks: the assignee).
    pub owner: UserId,
    /// The owning team.
    pub team: Option<TeamId>,
    /// Kind-specific details.
    pub details: ActivityDetails,
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

impl Activity {
    /// The activity's kind.
    pub fn kind(&self) -> ActivityKind {
        match self.details {
            ActivityDetails::Task(_) => ActivityKind::Task,
            ActivityDetails::Call(_) => ActivityKind::Call,
            ActivityDetails::Meeting(_) => ActivityKind::Meeting,
            ActivityDetails::Note(_) => ActivityKind::Note,
            ActivityDetails::Email(_) => ActivityKind::Email,
        }
    }
}

/// Kind-specific details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActivityDetails {
    /// A task.
    Task(Task),
    /// A call.
    Call(Call),
    /// A meeting.
    Meeting(Meeting),
    /// A note.
    Note(Note),
    /// A logged email.
    Email(LoggedEmail),
}

/// When a task is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Due {
    /// Some time on a day (all-day), in the assignee's time zone.
    Date {
        /// The day.
        date: NaiveDate,
    },
    /// An instant, with the IANA time zone it was given in (for display and calendars).
    At {
        /// The instant.
        #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
        at: DateTime<Utc>,
        /// IANA time zone name.
        time_zone: String,
    },
}

/// Task priority.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
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

/// Task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not started.
    #[default]
    Open,
    /// Being worked on.
    InProgress,
    /// Done.
    Done,
    /// Called off.
    Cancelled,
}

/// How often a task repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frequency {
    /// Every `interval` days.
    Daily,
    /// Every `interval` weeks, on the given weekdays.
    Weekly {
        /// The weekdays (at least one).
        weekdays: Vec<Weekday>,
    },
    /// Every `interval` months, on a day of the month (1-31; a shorter month uses its last
    /// day).
    Monthly {
        /// Day of the month.
        day: u8,
    },
}

/// When a recurrence ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecurrenceEnd {
    /// After this many occurrences in all (at least 1).
    Count {
        /// Occurrences.
        count: u32,
    },
    /// No occurrence after this day.
    Until {
        /// Last possible day.
        date: NaiveDate,
    },
}

/// A task's recurrence: completing an occurrence creates the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// The frequency.
    pub frequency: Frequency,
    /// Every how many days/weeks/months (at least 1).
    pub interval: u32,
    /// When it ends.
    pub end: RecurrenceEnd,
    /// Which occurrence this task is (1 for the first).
    pub occurrence: u32,
}

/// A task. Missing keys take the values of [`Task::new`] when it is deserialised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    /// Description.
    pub description: Option<String>,
    /// When it is due.
    pub due: Option<Due>,
    /// Priority.
    pub priority: Priority,
    /// Status.
    pub status: TaskStatus,
    /// Repetition.
    pub recurrence: Option<Recurrence>,
    /// When it was completed.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// Direction of a call or email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the outside in.
    Inbound,
    /// From us out.
    Outbound,
}

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Someone answered.
    Connected,
    /// Nobody answered.
    NoAnswer,
    /// Voicemail.
    Voicemail,
    /// Busy.
    Busy,
    /// Wrong number.
    WrongNumber,
}

/// A logged call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Direction.
    pub direction: Direction,
    /// Calling number (E.164 when it parsed).
    pub from: String,
    /// Called number (E.164 when it parsed).
    pub to: String,
    /// Start.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub started_at: DateTime<Utc>,
    /// Duration in seconds (0 when absent).
    #[serde(default)]
    pub duration_secs: u32,
    /// Outcome.
    pub outcome: CallOutcome,
    /// The agent who took or made it.
    pub agent: Option<UserId>,
    /// Where the recording is (a key the host owns).
    pub recording_ref: Option<String>,
    /// Notes.
    pub notes: Option<String>,
}

/// Someone attending a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Attendee {
    /// A contact.
    Contact {
        /// The contact.
        id: crmkit_core::ContactId,
    },
    /// A user.
    User {
        /// The user.
        id: UserId,
    },
}

/// A meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// Start.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub start: DateTime<Utc>,
    /// End (after the start).
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub end: DateTime<Utc>,
    /// IANA time zone it was scheduled in.
    pub time_zone: String,
    /// Place.
    pub location: Option<String>,
    /// Video link.
    pub link: Option<String>,
    /// Attendees (none when absent).
    #[serde(default)]
    pub attendees: Vec<Attendee>,
    /// Outcome notes.
    pub outcome_notes: Option<String>,
}

/// A note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The text.
    pub body: String,
    /// Pinned to the top of the timeline (not when absent).
    #[serde(default)]
    pub pinned: bool,
    /// Who wrote it.
    pub author: UserId,
}

/// A logged email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEmail {
    /// Direction.
    pub direction: Direction,
    /// Sender.
    pub from: String,
    /// Recipients (none when absent).
    #[serde(default)]
    pub to: Vec<String>,
    /// Copies (none when absent).
    #[serde(default)]
    pub cc: Vec<String>,
    /// A text excerpt.
    pub excerpt: Option<String>,
    /// The RFC 5322 Message-ID (logged once per tenant).
    pub message_id: String,
}

/// A reminder of a task or meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    /// Id.
    pub id: ReminderId,
    /// The activity.
    pub activity: ActivityId,
    /// Who is reminded.
    pub user: UserId,
    /// When.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub remind_at: DateTime<Utc>,
    /// When it was delivered (once).
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub delivered_at: Option<DateTime<Utc>>,
}
