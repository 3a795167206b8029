//! SLA policies and the per-ticket SLA state machine.
//!
//! [`SlaState`] is a plain value (no storage, no clock reads): the service keeps one per
//! ticket and feeds it [`SlaEvent`]s with the instant they happened at
//! ([`SlaState::apply`]); it can be tested on its own against a brute-force oracle
//! (`tests/sla_oracle.rs`).
//!
//! # Rules
//!
//! Three targets, each an [`SlaClock`] counting business minutes of the policy's calendar
//! plus `achieved_at`, `breached_at` and `warned_at`:
//!
//! * **first response** starts when the ticket is created and is met by the first public
//!   agent reply. It does not pause while the ticket is pending or on hold (the agent has
//!   not answered yet); it stops while the ticket is solved or closed (resumed on reopen if
//!   still unmet).
//! * **next response** starts on a customer (requester) message when no next-response
//!   target is outstanding, and is met by the next public agent reply. Each such cycle is a
//!   fresh target (its achieved/breached/warned stamps start empty); a second customer
//!   message while one is outstanding keeps the running clock (measured from the first
//!   unanswered message). It pauses while the ticket is pending or on hold. It is tracked
//!   independently of first response: both may run at once.
//! * **resolution** starts when the ticket is created, pauses while it is pending or on
//!   hold, and is achieved when it is solved or closed (also if it was breached: the
//!   breach stays). Reopening clears `achieved_at` and resumes the clock **from the
//!   business time it had consumed** (no fresh start).
//! * A deleted ticket stops every clock; restoring it resumes them by the same rules.
//! * **Breaches are sticky**: a target is breached when an instant after its due instant
//!   passes while it is unmet; `breached_at` records that due instant (the instant the
//!   target was exceeded) and is never cleared for the same target, even when the target
//!   is achieved later (then both stamps are set). Breaches are recorded by any event
//!   applied after the due instant ([`SlaState::settle`]) and by the service's sweep.
//! * **Policy change** ([`SlaEvent::Retarget`], applied when the fields a policy matches
//!   on change): a target kind present in both policies keeps its clock and the business
//!   time consumed so far, with the new target ([`SlaClock::retarget`]); a target kind
//!   only in the new policy starts at the change (first response only if no agent has
//!   replied yet, next response only while a customer message is unanswered, resolution
//!   achieved at once on a solved or closed ticket); a target kind the new policy lacks is
//!   dropped.

use chrono::{DateTime, Utc};
use crmkit_core::custom::CustomValue;
use crmkit_core::{CalendarId, Error, OrganizationId, Result, SlaPolicyId, ValidationErrors};
use serde::{Deserialize, Serialize};

use crate::calendar::BusinessCalendar;
use crate::clock::SlaClock;
use crate::model::{Channel, Ticket, TicketPriority, TicketStatus};

/// One of the three SLA targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaTargetKind {
    /// Time to the first public agent reply.
    FirstResponse,
    /// Time from an unanswered customer message to the next public agent reply.
    NextResponse,
    /// Time to solve the ticket.
    Resolution,
}

impl SlaTargetKind {
    /// Every kind, in a fixed order.
    pub const ALL: [SlaTargetKind; 3] = [
        SlaTargetKind::FirstResponse,
        SlaTargetKind::NextResponse,
        SlaTargetKind::Resolution,
    ];

    /// The stored name (`first_response`, `next_response`, `resolution`).
    pub fn as_str(self) -> &'static str {
        match self {
            SlaTargetKind::FirstResponse => "first_response",
            SlaTargetKind::NextResponse => "next_response",
            SlaTargetKind::Resolution => "resolution",
        }
    }
}

/// Targets of a policy in business minutes; each optional, positive when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlaTargets {
    /// Minutes to the first public agent reply.
    pub first_response: Option<i64>,
    /// Minutes from a customer message to the next public agent reply.
    pub next_response: Option<i64>,
    /// Minutes to solve.
    pub resolution: Option<i64>,
}

impl SlaTargets {
    /// No targets yet (add them with the setters).
    pub fn new() -> Self {
        SlaTargets::default()
    }

    crmkit_core::setters! {
        /// With a first-response target of `minutes` business minutes.
        some first_response: i64;
        /// With a next-response target of `minutes` business minutes.
        some next_response: i64;
        /// With a resolution target of `minutes` business minutes.
        some resolution: i64;
    }

    /// The target of one kind.
    pub fn get(&self, kind: SlaTargetKind) -> Option<i64> {
        match kind {
            SlaTargetKind::FirstResponse => self.first_response,
            SlaTargetKind::NextResponse => self.next_response,
            SlaTargetKind::Resolution => self.resolution,
        }
    }

    /// Adds a Validation error on `targets.<kind>` for every target that is set but not
    /// positive.
    pub fn check(&self, errs: &mut ValidationErrors) {
        for kind in SlaTargetKind::ALL {
            if let Some(m) = self.get(kind)
                && m <= 0
            {
                errs.push(
                    format!("targets.{}", kind.as_str()),
                    format!("must be a positive number of business minutes, got {m}"),
                );
            }
        }
    }
}

/// When a policy applies to a ticket. Every condition that is set must hold (an empty
/// set or `None` matches everything); all of them empty: the policy matches every ticket.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SlaConditions {
    /// The ticket's priority is one of these (empty: any).
    #[serde(default)]
    pub priorities: Vec<TicketPriority>,
    /// The ticket's channel is one of these (empty: any).
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// The ticket's organization is one of these (empty: any).
    #[serde(default)]
    pub organizations: Vec<OrganizationId>,
    /// The ticket's custom field `key` equals `value`.
    #[serde(default)]
    pub custom: Option<(String, CustomValue)>,
}

impl SlaConditions {
    /// No conditions: matches every ticket.
    pub fn any() -> Self {
        SlaConditions::default()
    }

    crmkit_core::setters! {
        /// Also requiring the ticket's priority to be `p` or another priority given so.
        push priority(priorities): TicketPriority;
        /// Also requiring the ticket's channel to be `c` or another channel given so.
        push channel(channels): Channel;
        /// Also requiring the ticket's organization to be `o` or another organization given
        /// so.
        push organization(organizations): OrganizationId;
    }

    /// Also requiring the ticket's custom field `key` to equal `value`.
    pub fn custom(mut self, key: impl Into<String>, value: CustomValue) -> Self {
        self.custom = Some((key.into(), value));
        self
    }

    /// Whether the ticket matches.
    pub fn matches(&self, t: &Ticket) -> bool {
        (self.priorities.is_empty() || self.priorities.contains(&t.priority))
            && (self.channels.is_empty() || self.channels.contains(&t.channel))
            && (self.organizations.is_empty()
                || t.organization
                    .is_some_and(|o| self.organizations.contains(&o)))
            && self
                .custom
                .as_ref()
                .is_none_or(|(k, v)| t.custom.get(k) == Some(v))
    }
}

/// A stored business calendar of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCalendar {
    /// Its id.
    pub id: CalendarId,
    /// Its name.
    pub name: String,
    /// The calendar.
    pub calendar: BusinessCalendar,
    /// When it was created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version (1 after creation).
    pub version: u64,
}

/// Input of a policy (create and full update). Absent fields of a JSON body take the
/// [`Default`]: position 0, no conditions, no targets, active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewSlaPolicy {
    /// Its name (1 to 200 characters).
    pub name: String,
    /// Its place in the evaluation order (lower first; ties by id).
    pub position: i64,
    /// When it applies.
    pub conditions: SlaConditions,
    /// The business calendar its targets count on (a stored calendar of the tenant).
    pub calendar: CalendarId,
    /// Its targets.
    pub targets: SlaTargets,
    /// Whether it is considered at all.
    pub active: bool,
}

impl Default for NewSlaPolicy {
    /// No name, position 0, no conditions, no targets, active, and the nil calendar id
    /// (which is no calendar: give one).
    fn default() -> Self {
        NewSlaPolicy {
            name: String::new(),
            position: 0,
            conditions: SlaConditions::default(),
            calendar: CalendarId::from_uuid(uuid::Uuid::nil()),
            targets: SlaTargets::default(),
            active: true,
        }
    }
}

impl NewSlaPolicy {
    /// An active policy named `name` counting on calendar `calendar`, at position 0,
    /// matching every ticket, without targets yet.
    pub fn new(name: impl Into<String>, calendar: CalendarId) -> Self {
        NewSlaPolicy {
            name: name.into(),
            calendar,
            ..NewSlaPolicy::default()
        }
    }

    crmkit_core::setters! {
        /// At `position` in the evaluation order (lower first).
        val position: i64;
        /// Applying when `conditions` hold.
        set conditions: SlaConditions;
        /// With these targets.
        set targets: SlaTargets;
        /// Considered (`true`) or not.
        set active: bool;
    }
}

impl From<&SlaPolicy> for NewSlaPolicy {
    /// The input that stores `p` as it is (a starting point for a full update).
    fn from(p: &SlaPolicy) -> Self {
        NewSlaPolicy {
            name: p.name.clone(),
            position: p.position,
            conditions: p.conditions.clone(),
            calendar: p.calendar,
            targets: p.targets,
            active: p.active,
        }
    }
}

/// A stored SLA policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaPolicy {
    /// Its id.
    pub id: SlaPolicyId,
    /// Its name.
    pub name: String,
    /// Its place in the evaluation order (lower first; ties by id).
    pub position: i64,
    /// When it applies.
    pub conditions: SlaConditions,
    /// The calendar its targets count on.
    pub calendar: CalendarId,
    /// Its targets.
    pub targets: SlaTargets,
    /// Whether it is considered.
    pub active: bool,
    /// When it was created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version (1 after creation).
    pub version: u64,
}

/// The first active policy, in `policies`' order, whose conditions match the ticket.
pub fn policy_for<'a>(policies: &'a [SlaPolicy], t: &Ticket) -> Option<&'a SlaPolicy> {
    policies
        .iter()
        .find(|p| p.active && p.conditions.matches(t))
}

/// One target of a ticket: its clock and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetState {
    /// The clock.
    pub clock: SlaClock,
    /// When the target was met (the reply, the solve).
    pub achieved_at: Option<DateTime<Utc>>,
    /// When the target was exceeded, once recorded (never cleared).
    pub breached_at: Option<DateTime<Utc>>,
    /// When the service's sweep warned that the target was about to be exceeded.
    pub warned_at: Option<DateTime<Utc>>,
}

impl TargetState {
    fn start(at: DateTime<Utc>, minutes: i64) -> Result<Self> {
        Ok(TargetState {
            clock: SlaClock::start(at, minutes)?,
            achieved_at: None,
            breached_at: None,
            warned_at: None,
        })
    }

    /// Whether the target was met.
    pub fn is_met(&self) -> bool {
        self.achieved_at.is_some()
    }

    /// When the unmet target is due if its clock keeps running; `None` when it is met or
    /// its clock is paused.
    pub fn due_at(&self, cal: &BusinessCalendar) -> Option<DateTime<Utc>> {
        if self.is_met() {
            None
        } else {
            self.clock.due_at(cal)
        }
    }

    /// Whether the target is breached at `now`: a breach was recorded, or it is unmet and
    /// its clock passed the target before `now`.
    pub fn is_breached(&self, cal: &BusinessCalendar, now: DateTime<Utc>) -> bool {
        self.breached_at.is_some() || (!self.is_met() && self.clock.is_breached(cal, now))
    }
}

/// Something that happened to a ticket, as far as its SLA is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum SlaEvent {
    /// The ticket was created (status `new`) under these targets (those of its policy;
    /// `policy` `None`: no policy applies).
    Created {
        /// The policy.
        policy: Option<SlaPolicyId>,
        /// Its calendar.
        calendar: Option<CalendarId>,
        /// Its targets.
        targets: SlaTargets,
    },
    /// A public reply by an agent.
    AgentReply,
    /// A message by the requester.
    CustomerMessage,
    /// The ticket's status changed to this one.
    Status(TicketStatus),
    /// The ticket was soft-deleted.
    Deleted,
    /// The ticket was restored.
    Restored,
    /// The ticket's policy was re-evaluated (see the module's rules).
    Retarget {
        /// The policy.
        policy: Option<SlaPolicyId>,
        /// Its calendar.
        calendar: Option<CalendarId>,
        /// Its targets.
        targets: SlaTargets,
    },
}

/// The SLA state of one ticket. See the [module's rules](self).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlaState {
    /// The policy that applies (`None`: none).
    pub policy: Option<SlaPolicyId>,
    /// The policy's calendar.
    pub calendar: Option<CalendarId>,
    /// The policy's targets, as they were when it was applied.
    pub targets: SlaTargets,
    /// The ticket's status.
    pub status: TicketStatus,
    /// Whether the ticket is deleted.
    pub deleted: bool,
    /// Whether an agent replied publicly.
    pub responded: bool,
    /// Since when a customer message is unanswered.
    pub awaiting_since: Option<DateTime<Utc>>,
    /// The first-response target.
    pub first_response: Option<TargetState>,
    /// The current next-response target.
    pub next_response: Option<TargetState>,
    /// The resolution target.
    pub resolution: Option<TargetState>,
}

fn stopped(s: TicketStatus) -> bool {
    matches!(s, TicketStatus::Solved | TicketStatus::Closed)
}

fn waiting(s: TicketStatus) -> bool {
    matches!(s, TicketStatus::Pending | TicketStatus::OnHold)
}

impl SlaState {
    /// The target of one kind.
    pub fn target(&self, kind: SlaTargetKind) -> Option<&TargetState> {
        match kind {
            SlaTargetKind::FirstResponse => self.first_response.as_ref(),
            SlaTargetKind::NextResponse => self.next_response.as_ref(),
            SlaTargetKind::Resolution => self.resolution.as_ref(),
        }
    }

    /// The target of one kind, mutable.
    pub fn target_mut(&mut self, kind: SlaTargetKind) -> Option<&mut TargetState> {
        match kind {
            SlaTargetKind::FirstResponse => self.first_response.as_mut(),
            SlaTargetKind::NextResponse => self.next_response.as_mut(),
            SlaTargetKind::Resolution => self.resolution.as_mut(),
        }
    }

    fn slot(&mut self, kind: SlaTargetKind) -> &mut Option<TargetState> {
        match kind {
            SlaTargetKind::FirstResponse => &mut self.first_response,
            SlaTargetKind::NextResponse => &mut self.next_response,
            SlaTargetKind::Resolution => &mut self.resolution,
        }
    }

    /// The earliest due instant among running, unmet targets (`None` when there is none).
    pub fn next_due_at(&self, cal: &BusinessCalendar) -> Option<DateTime<Utc>> {
        SlaTargetKind::ALL
            .into_iter()
            .filter_map(|k| self.target(k)?.due_at(cal))
            .min()
    }

    /// Records the breach of every unmet target whose clock passed its target before
    /// `at` (`breached_at` = the instant it was exceeded). Returns the kinds newly
    /// breached.
    pub fn settle(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) -> Vec<SlaTargetKind> {
        let mut newly = vec![];
        for kind in SlaTargetKind::ALL {
            if let Some(t) = self.target_mut(kind)
                && !t.is_met()
                && t.breached_at.is_none()
                && t.clock.is_breached(cal, at)
            {
                t.breached_at = Some(t.clock.reached_at(cal).unwrap_or(at));
                newly.push(kind);
            }
        }
        newly
    }

    /// Applies `event`, which happened at `at` (instants must not go backwards): records
    /// breaches that happened before it ([`settle`](Self::settle)), applies the rules of
    /// the [module](self), then pauses and resumes clocks to match the ticket's state.
    pub fn apply(
        &mut self,
        cal: &BusinessCalendar,
        event: &SlaEvent,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.settle(cal, at);
        match event {
            SlaEvent::Created {
                policy,
                calendar,
                targets,
            } => {
                *self = SlaState::default();
                self.status = TicketStatus::New;
                self.retarget(cal, *policy, *calendar, *targets, at)?;
            }
            SlaEvent::AgentReply => {
                self.responded = true;
                self.awaiting_since = None;
                for kind in [SlaTargetKind::FirstResponse, SlaTargetKind::NextResponse] {
                    if let Some(t) = self.target_mut(kind) {
                        t.achieved_at.get_or_insert(at);
                    }
                }
            }
            SlaEvent::CustomerMessage => {
                self.awaiting_since.get_or_insert(at);
                if let Some(m) = self.targets.next_response
                    && self.next_response.as_ref().is_none_or(TargetState::is_met)
                {
                    self.next_response = Some(TargetState::start(at, m)?);
                }
            }
            SlaEvent::Status(s) => {
                let was = self.status;
                self.status = *s;
                if let Some(r) = self.resolution.as_mut() {
                    if stopped(*s) {
                        r.achieved_at.get_or_insert(at);
                    } else if stopped(was) {
                        r.achieved_at = None;
                    }
                }
            }
            SlaEvent::Deleted => self.deleted = true,
            SlaEvent::Restored => self.deleted = false,
            SlaEvent::Retarget {
                policy,
                calendar,
                targets,
            } => self.retarget(cal, *policy, *calendar, *targets, at)?,
        }
        self.sync(cal, at);
        Ok(())
    }

    fn retarget(
        &mut self,
        cal: &BusinessCalendar,
        policy: Option<SlaPolicyId>,
        calendar: Option<CalendarId>,
        targets: SlaTargets,
        at: DateTime<Utc>,
    ) -> Result<()> {
        if self.policy == policy && self.targets == targets && self.calendar == calendar {
            return Ok(());
        }
        self.policy = policy;
        self.calendar = calendar;
        self.targets = targets;
        let responded = self.responded;
        let awaiting = self.awaiting_since.is_some();
        let solved = stopped(self.status);
        for kind in SlaTargetKind::ALL {
            let slot = self.slot(kind);
            match (targets.get(kind), slot.as_mut()) {
                (None, _) => *slot = None,
                (Some(m), Some(t)) => t.clock.retarget(cal, at, m)?,
                (Some(m), None) => {
                    let start = match kind {
                        SlaTargetKind::FirstResponse => !responded,
                        SlaTargetKind::NextResponse => awaiting,
                        SlaTargetKind::Resolution => true,
                    };
                    if start {
                        let mut t = TargetState::start(at, m)?;
                        if kind == SlaTargetKind::Resolution && solved {
                            t.achieved_at = Some(at);
                        }
                        *slot = Some(t);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the target of `kind` should be counting now.
    fn counts(&self, kind: SlaTargetKind) -> bool {
        let Some(t) = self.target(kind) else {
            return false;
        };
        !t.is_met()
            && !self.deleted
            && !stopped(self.status)
            && (kind == SlaTargetKind::FirstResponse || !waiting(self.status))
    }

    fn sync(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) {
        for kind in SlaTargetKind::ALL {
            let counts = self.counts(kind);
            if let Some(t) = self.target_mut(kind) {
                if counts {
                    t.clock.resume(at);
                } else {
                    t.clock.pause(cal, at);
                }
            }
        }
    }
}

/// A Validation error for a target kind that has no state (used by callers).
pub(crate) fn no_calendar() -> Error {
    crmkit_core::record::reference_error("calendar", &CalendarId::kind())
}
