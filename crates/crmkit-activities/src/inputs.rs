//! Inputs and results of the activities API.

use chrono::{DateTime, NaiveDate, Utc};
use crmkit_core::{ActivityId, Event, RecordRef, TeamId, UserId};
use serde::{Deserialize, Serialize};

use crate::model::{
    Activity, ActivityDetails, Attendee, Call, CallOutcome, Direction, Due, Frequency, LoggedEmail,
    Meeting, Note, Priority, Recurrence, RecurrenceEnd, Reminder, Task, TaskStatus,
};

/// A new activity. Phone numbers of a call are normalised; a task's `completed_at` is set
/// by the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewActivity {
    /// Related records (contacts, organizations, leads, deals), each visible to the actor.
    #[serde(default)]
    pub related: Vec<RecordRef>,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// Owner (assignee); the actor when `None`.
    #[serde(default)]
    pub owner: Option<UserId>,
    /// Team.
    #[serde(default)]
    pub team: Option<TeamId>,
    /// The kind-specific details.
    pub details: ActivityDetails,
}

impl NewActivity {
    /// An activity with a subject and details (a [`Task`], [`Call`], [`Meeting`], [`Note`]
    /// or [`LoggedEmail`], or [`ActivityDetails`]), related to nothing, owned by the actor.
    ///
    /// ```
    /// use crmkit_activities::{NewActivity, Priority, Task};
    /// let due = chrono::NaiveDate::from_ymd_opt(2027, 1, 10).unwrap();
    /// let t = NewActivity::new("Call Grace back", Task::new().due_on(due).priority(Priority::High));
    /// assert_eq!(t.subject, "Call Grace back");
    /// ```
    pub fn new(subject: impl Into<String>, details: impl Into<ActivityDetails>) -> Self {
        NewActivity {
            related: vec![],
            subject: subject.into(),
            owner: None,
            team: None,
            details: details.into(),
        }
    }

    crmkit_core::setters! {
        /// Related to one more record.
        push related_to(related): RecordRef;
        /// Owned by `owner`.
        some owner: UserId;
        /// Of team `team`.
        some team: TeamId;
    }
}

/// A change to an activity: each `Some` replaces the field. The details replace the old
/// ones as a whole and must be of the same kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivityPatch {
    /// New related records.
    pub related: Option<Vec<RecordRef>>,
    /// New subject.
    pub subject: Option<String>,
    /// New owner.
    pub owner: Option<UserId>,
    /// New team (`Some(None)` clears it; `null` in JSON).
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
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

// ----- builders -----

impl ActivityPatch {
    /// A patch that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the related records.
    pub fn related(mut self, related: impl IntoIterator<Item = RecordRef>) -> Self {
        self.related = Some(related.into_iter().collect());
        self
    }

    crmkit_core::setters! {
        /// Replaces the subject.
        some subject: String;
        /// Gives the activity to `owner`.
        some owner: UserId;
        /// Sets the team (`None` clears it).
        some team: Option<TeamId>;
        /// Replaces the details (of the same kind).
        some details: ActivityDetails;
    }
}

impl Task {
    /// An open task of normal priority, without description, due time or recurrence.
    pub fn new() -> Self {
        Task {
            description: None,
            due: None,
            priority: Priority::Normal,
            status: TaskStatus::Open,
            recurrence: None,
            completed_at: None,
        }
    }

    crmkit_core::setters! {
        /// With a description.
        some description: String;
    }

    /// Due some time on `date` (all-day, in the assignee's time zone).
    pub fn due_on(mut self, date: NaiveDate) -> Self {
        self.due = Some(Due::Date { date });
        self
    }

    /// Due at an instant, given in an IANA time zone.
    pub fn due_at(mut self, at: DateTime<Utc>, time_zone: impl Into<String>) -> Self {
        self.due = Some(Due::At {
            at,
            time_zone: time_zone.into(),
        });
        self
    }

    crmkit_core::setters! {
        /// With a priority.
        set priority: Priority;
        /// With a status (`done` sets the completion time when the task is stored).
        set status: TaskStatus;
        /// Repeating (it needs a due time).
        some recurrence: Recurrence;
    }
}

impl Default for Task {
    fn default() -> Self {
        Task::new()
    }
}

impl Recurrence {
    /// Every `interval` days, weeks or months by `frequency`, until `end`; this task is the
    /// first occurrence.
    pub fn new(frequency: Frequency, interval: u32, end: RecurrenceEnd) -> Self {
        Recurrence {
            frequency,
            interval,
            end,
            occurrence: 1,
        }
    }
}

impl Call {
    /// A call of no duration, without agent, recording or notes.
    pub fn new(
        direction: Direction,
        from: impl Into<String>,
        to: impl Into<String>,
        started_at: DateTime<Utc>,
        outcome: CallOutcome,
    ) -> Self {
        Call {
            direction,
            from: from.into(),
            to: to.into(),
            started_at,
            duration_secs: 0,
            outcome,
            agent: None,
            recording_ref: None,
            notes: None,
        }
    }

    crmkit_core::setters! {
        /// Lasting `secs` seconds.
        val duration_secs: u32;
        /// Taken or made by `agent`.
        some agent: UserId;
        /// With the host's key of its recording.
        some recording_ref: String;
        /// With notes.
        some notes: String;
    }
}

impl Meeting {
    /// A meeting from `start` to `end`, scheduled in an IANA time zone, without place,
    /// link, attendees or outcome.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, time_zone: impl Into<String>) -> Self {
        Meeting {
            start,
            end,
            time_zone: time_zone.into(),
            location: None,
            link: None,
            attendees: vec![],
            outcome_notes: None,
        }
    }

    crmkit_core::setters! {
        /// At a place.
        some location: String;
        /// With a video link.
        some link: String;
        /// With one more attendee.
        push attendee(attendees): Attendee;
        /// With outcome notes.
        some outcome_notes: String;
    }
}

impl Note {
    /// An unpinned note written by `author` (a Rep writes as themselves only).
    pub fn new(body: impl Into<String>, author: UserId) -> Self {
        Note {
            body: body.into(),
            pinned: false,
            author,
        }
    }

    crmkit_core::setters! {
        /// Pinned to the top of the timeline.
        set pinned: bool;
    }
}

impl LoggedEmail {
    /// An email without recipients, copies or excerpt.
    pub fn new(
        direction: Direction,
        from: impl Into<String>,
        message_id: impl Into<String>,
    ) -> Self {
        LoggedEmail {
            direction,
            from: from.into(),
            to: vec![],
            cc: vec![],
            excerpt: None,
            message_id: message_id.into(),
        }
    }

    crmkit_core::setters! {
        /// With one more recipient.
        push to(to): String;
        /// With one more copy.
        push cc(cc): String;
        /// With a text excerpt.
        some excerpt: String;
    }
}

macro_rules! into_details {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for ActivityDetails {
            fn from(d: $t) -> Self {
                ActivityDetails::$v(d)
            }
        }
    )*};
}
into_details!(Task => Task, Call => Call, Meeting => Meeting, Note => Note, LoggedEmail => Email);
