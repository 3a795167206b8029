//! The call-centre path: an inbound call finds its caller by number, lands on the caller's
//! open ticket or opens a phone ticket, and is logged as a call activity related to both,
//! in one commit. Also the bridge that lets activities relate to tickets
//! ([`TicketRecords`], [`Tickets::activities`]).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crmkit_activities::{
    Activities, Activity, ActivityDetails, Call, CallOutcome, Direction, NewActivity,
    RelatedRecords,
};
use crmkit_core::lookup::{self, LookupKind};
use crmkit_core::store::BoxFuture;
use crmkit_core::text::{check_text, parse_phone};
use crmkit_core::{
    Changeset, ContactId, Ctx, Error, Filter, NewEvent, Query, RecordKind, RecordRef, Result,
    TeamId, TicketId, UserId, ValidationErrors,
};
use serde::{Deserialize, Serialize};

use crate::inputs::NewTicket;
use crate::model::{Channel, Ticket, TicketPriority, TicketStatus};
use crate::service::{MAX_PHONE, MAX_SUBJECT, Tickets};

/// The event a logged call emits on its ticket (with the ticket's other events).
pub const CALL_LOGGED: &str = "ticket.call_logged";
/// The default [`CallRouting::reopen_window`]: 7 days.
pub const DEFAULT_REOPEN_WINDOW_DAYS: i64 = 7;
/// The longest [`CallRouting::reopen_window`]: 366 days.
pub const MAX_REOPEN_WINDOW_DAYS: i64 = 366;
/// Most contacts with the caller's number that are considered (the first visible one,
/// by id, is the caller).
const MAX_CALLER_CANDIDATES: u32 = 50;
/// How many times the command is re-decided when the ticket it lands on changed between
/// its read and the commit.
const CALL_ATTEMPTS: u32 = 16;
/// Longest recording reference (as activities accept it).
const MAX_RECORDING_REF: usize = 500;

/// Tickets as records activities may relate to: a ticket is found when it is live and
/// visible to the actor (as [`Tickets::get`] finds it), NotFound otherwise. Register it
/// with [`Activities::with_related`], or use [`Tickets::activities`].
#[derive(Debug, Clone)]
pub struct TicketRecords(Tickets);

impl TicketRecords {
    /// The checker over a tickets API.
    pub fn new(tickets: Tickets) -> Self {
        TicketRecords(tickets)
    }
}

impl RelatedRecords for TicketRecords {
    fn kind(&self) -> RecordKind {
        RecordKind::TICKET
    }

    fn check<'a>(&'a self, ctx: &'a Ctx, id: uuid::Uuid) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let record = RecordRef::from(TicketId::from_uuid(id));
            if self.0.store().records().visible(ctx, &record).await? {
                Ok(())
            } else {
                Err(Error::not_found(RecordKind::TICKET, id))
            }
        })
    }
}

/// An inbound call as the telephony system reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundCall {
    /// The calling number as received (raw text, 1 to 64 characters; normalised to E.164
    /// when it parses, kept as given otherwise).
    pub from: String,
    /// The called number (1 to 64 characters; normalised like `from`).
    pub to: String,
    /// When the call started.
    pub started_at: DateTime<Utc>,
    /// How long it lasted, in seconds.
    pub duration_secs: u32,
    /// How it went.
    pub outcome: CallOutcome,
    /// The agent who took it (an active user of the tenant).
    pub agent: Option<UserId>,
    /// Where the recording is (a key the host owns; 1 to 500 characters).
    pub recording_ref: Option<String>,
    /// Notes (at most [`crmkit_activities::MAX_TEXT`] characters).
    pub notes: Option<String>,
    /// The subject of the ticket it opens and of the call activity; `Call from <number>`
    /// when `None` (at most [`MAX_SUBJECT`] characters).
    pub subject: Option<String>,
}

impl InboundCall {
    /// A connected call of no recorded length from `from` to `to`, started at
    /// `started_at`, without agent, recording, notes or subject.
    pub fn new(from: impl Into<String>, to: impl Into<String>, started_at: DateTime<Utc>) -> Self {
        InboundCall {
            from: from.into(),
            to: to.into(),
            started_at,
            duration_secs: 0,
            outcome: CallOutcome::Connected,
            agent: None,
            recording_ref: None,
            notes: None,
            subject: None,
        }
    }

    crmkit_core::setters! {
        /// Lasting `secs` seconds.
        val duration_secs: u32;
        /// With outcome `o`.
        set outcome: CallOutcome;
        /// Taken by `agent`.
        some agent: UserId;
        /// With the recording at `r` (a key the host owns).
        some recording_ref: String;
        /// With notes.
        some notes: String;
        /// With the subject of the ticket it opens and of the call activity.
        some subject: String;
    }
}

/// Where an inbound call goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRouting {
    /// A caller's unsolved ticket updated at most this long before the call started gets
    /// the call; otherwise a new ticket is opened. More than zero, at most
    /// [`MAX_REOPEN_WINDOW_DAYS`] days; [`DEFAULT_REOPEN_WINDOW_DAYS`] by default.
    pub reopen_window: Duration,
    /// The queue of a new ticket (a team of the tenant).
    pub queue: Option<TeamId>,
    /// The assignee of a new ticket (an active user); the actor when neither it nor a
    /// queue is given, as in [`Tickets::create`].
    pub assignee: Option<UserId>,
    /// The priority of a new ticket.
    pub priority: TicketPriority,
    /// The region (ISO 3166 alpha-2, e.g. `GB`) national numbers are read in: with `GB`,
    /// `020 7946 0958` is the same caller as `+44 20 7946 0958`. Without it only
    /// international numbers (`+...`) are recognised.
    pub default_region: Option<String>,
}

impl Default for CallRouting {
    fn default() -> Self {
        CallRouting {
            reopen_window: Duration::days(DEFAULT_REOPEN_WINDOW_DAYS),
            queue: None,
            assignee: None,
            priority: TicketPriority::default(),
            default_region: None,
        }
    }
}

impl CallRouting {
    /// The default routing ([`Default`]): a 7-day reopen window, no queue, the actor as the
    /// assignee, normal priority, international numbers only.
    pub fn new() -> Self {
        CallRouting::default()
    }

    crmkit_core::setters! {
        /// With reopen window `w`.
        set reopen_window: Duration;
        /// New tickets go to queue `team`.
        some queue: TeamId;
        /// New tickets are assigned to `user`.
        some assignee: UserId;
        /// New tickets get priority `p`.
        set priority: TicketPriority;
        /// National numbers are read in region `r` (ISO 3166 alpha-2).
        some default_region: String;
    }
}

/// What [`Tickets::record_inbound_call`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundCallResult {
    /// The caller: the contact found by the number (visible to the actor), if any.
    pub contact: Option<ContactId>,
    /// The ticket the call landed on, as committed.
    pub ticket: Ticket,
    /// Whether the ticket was opened by this call.
    pub created: bool,
    /// Whether the call moved the ticket from `pending` back to `open`.
    pub reopened: bool,
    /// The call activity, related to the ticket and the caller (and to whatever else has
    /// the number: see [`Tickets::record_inbound_call`]).
    pub call: Activity,
}

/// The call's inputs after validation.
struct Checked {
    raw_from: String,
    e164: Option<String>,
    to: String,
    subject: String,
}

impl Tickets {
    /// An activities API that may also relate activities to tickets (and show a ticket's
    /// timeline): [`Activities::new`] with [`TicketRecords`] registered.
    pub fn activities(&self) -> Result<Activities> {
        Ok(Activities::new(self.store())?.with_related(Arc::new(TicketRecords::new(self.clone()))))
    }

    /// Records an inbound call, in one atomic commit: the call activity, the ticket it
    /// lands on (created or changed), their history, audit entries, events and follow-up
    /// rows, or nothing.
    ///
    /// Rules:
    /// - **Validation** (every bad field at once, nothing written): `from` and `to` 1 to
    ///   64 characters, `subject` at most [`MAX_SUBJECT`], `notes` at most
    ///   [`crmkit_activities::MAX_TEXT`], `recording_ref` 1 to 500 characters, `agent`
    ///   an active user, `reopen_window` more than zero and at most
    ///   [`MAX_REOPEN_WINDOW_DAYS`] days, `default_region` a known region code. A `from`
    ///   that is not a phone number is **not** an error: it is kept as given.
    /// - **The caller**: `from` is normalised to E.164 (national numbers through
    ///   `default_region`) and looked up in core's phone index among the tenant's
    ///   contacts. Contacts the actor cannot see (or deleted ones) are skipped; of
    ///   several, the one with the lowest id (the earliest created) is the caller. A
    ///   caller the actor cannot see is treated as unknown: the ticket gets no requester.
    ///   (The call activity itself is still linked by activities to every contact,
    ///   organization and lead with the number, as every logged call is; those links are
    ///   visible only to who may see those records.)
    /// - **Attach**: when the caller has a live unsolved ticket (new, open, pending, on
    ///   hold) visible to the actor and updated no earlier than `reopen_window` before the
    ///   call started, the call goes to the most recently updated one. The ticket is not
    ///   written, except that a `pending` ticket (waiting on the customer, who has now
    ///   called) moves back to `open`, with a history entry ("the requester called") and
    ///   a `ticket.status_changed` event, as a requester comment does. When that ticket
    ///   changed between the read and the commit, the call is re-decided on its new state.
    /// - **Create** otherwise: a new ticket with channel `phone`, the routing's priority,
    ///   queue and assignee, subject as given or `Call from <number>` (E.164 when it
    ///   parsed), requester = the caller (the organization defaults from it), or, for an
    ///   unknown caller, no requester and `requester_phone` = the raw `from`. Validated
    ///   and numbered as [`Tickets::create`] does.
    /// - **The call activity** (owned by the actor; `agent` recorded on the call) is
    ///   related to the ticket and the caller, and the ticket gets a
    ///   [`CALL_LOGGED`] event (`ticket.call_logged`, payload: ticket, number, activity,
    ///   contact, from, created) on both paths, so sync and automation see every call.
    ///
    /// Routing (queue, assignee, priority) applies only to a ticket the call creates.
    pub async fn record_inbound_call(
        &self,
        ctx: &Ctx,
        call: InboundCall,
        routing: CallRouting,
    ) -> Result<InboundCallResult> {
        ctx.actor().require_write("record inbound call")?;
        let checked = self.check_call(ctx, &call, &routing).await?;
        let contact = match &checked.e164 {
            Some(n) => self.find_caller(ctx, n).await?,
            None => None,
        };
        let activities = self.activities()?;
        let mut attempts = 0;
        loop {
            let open = match contact {
                Some(c) => {
                    self.recent_open_ticket(ctx, c, call.started_at - routing.reopen_window)
                        .await?
                }
                None => None,
            };
            let attached = open.as_ref().map(|t| RecordRef::from(t.id));
            match self
                .log_call(ctx, &activities, &call, &routing, &checked, contact, open)
                .await
            {
                Err(Error::Conflict { record, .. })
                    if Some(&record) == attached.as_ref() && attempts < CALL_ATTEMPTS =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// Validates what the ticket and activity checks would not report up front.
    async fn check_call(
        &self,
        ctx: &Ctx,
        call: &InboundCall,
        routing: &CallRouting,
    ) -> Result<Checked> {
        let mut errs = ValidationErrors::new();
        let raw_from = call.from.trim().to_owned();
        errs.check(check_text("from", &raw_from, MAX_PHONE, true));
        let to = call.to.trim().to_owned();
        errs.check(check_text("to", &to, MAX_PHONE, true));
        if let Some(s) = &call.subject {
            errs.check(check_text("subject", s, MAX_SUBJECT, true));
        }
        if let Some(n) = &call.notes {
            errs.check(check_text("notes", n, crmkit_activities::MAX_TEXT, false));
        }
        if let Some(r) = &call.recording_ref {
            errs.check(check_text("recording_ref", r, MAX_RECORDING_REF, true));
        }
        if routing.reopen_window <= Duration::zero()
            || routing.reopen_window > Duration::days(MAX_REOPEN_WINDOW_DAYS)
        {
            errs.push(
                "reopen_window",
                format!("must be more than zero and at most {MAX_REOPEN_WINDOW_DAYS} days"),
            );
        }
        let region = match &routing.default_region {
            Some(r) => {
                let r = r.trim().to_ascii_uppercase();
                if r.parse::<phonenumber::country::Id>().is_ok() {
                    Some(r)
                } else {
                    errs.push("default_region", "is not a known region code");
                    None
                }
            }
            None => None,
        };
        if let Some(a) = call.agent {
            self.check_user(ctx, &mut errs, "agent", a).await?;
        }
        errs.into_result()?;
        let e164 = parse_phone("from", &raw_from, region.as_deref()).ok();
        let subject = call
            .subject
            .clone()
            .unwrap_or_else(|| format!("Call from {}", e164.as_deref().unwrap_or(&raw_from)));
        Ok(Checked {
            raw_from,
            e164,
            to,
            subject,
        })
    }

    /// The caller: of the tenant's contacts with this E.164 number, the first (lowest id)
    /// that is live and visible to the actor (each hit passes
    /// [`crmkit_core::record::Records::visible`], the one rule of lookups).
    async fn find_caller(&self, ctx: &Ctx, e164: &str) -> Result<Option<ContactId>> {
        let found = lookup::find(
            self.store().backend(),
            ctx.tenant(),
            LookupKind::Phone,
            e164,
            Some(&RecordKind::CONTACT),
            MAX_CALLER_CANDIDATES,
        )
        .await?;
        let records = self.store().records();
        for r in found {
            if r.kind == RecordKind::CONTACT && records.visible(ctx, &r).await? {
                return Ok(Some(ContactId::from_uuid(r.id)));
            }
        }
        Ok(None)
    }

    /// The caller's most recently updated unsolved ticket visible to the actor, updated
    /// at or after `since`.
    async fn recent_open_ticket(
        &self,
        ctx: &Ctx,
        contact: ContactId,
        since: DateTime<Utc>,
    ) -> Result<Option<Ticket>> {
        let q = Query::new()
            .filter(Filter::eq("requester", contact))
            .filter(Filter::is_in(
                "status",
                TicketStatus::UNSOLVED.map(TicketStatus::as_str),
            ))
            .filter(Filter::gte("updated_at", since))
            .sort_desc("updated_at")
            .limit(1);
        Ok(self.list(ctx, &q).await?.items.into_iter().next())
    }

    /// One attempt: stages everything on `open` (or a new ticket) and commits it.
    #[allow(clippy::too_many_arguments)]
    async fn log_call(
        &self,
        ctx: &Ctx,
        activities: &Activities,
        call: &InboundCall,
        routing: &CallRouting,
        checked: &Checked,
        contact: Option<ContactId>,
        open: Option<Ticket>,
    ) -> Result<InboundCallResult> {
        let mut cs = Changeset::new(ctx);
        let (ticket, created, reopened) = match open {
            Some(t) if t.status == TicketStatus::Pending => {
                let moved = self
                    .stage_status_move(
                        ctx,
                        &mut cs,
                        &t,
                        TicketStatus::Open,
                        Some("the requester called".to_owned()),
                    )
                    .await?;
                (moved, false, true)
            }
            Some(t) => (t, false, false),
            None => {
                let mut input = match contact {
                    Some(c) => NewTicket::new(checked.subject.clone(), c).channel(Channel::Phone),
                    None => NewTicket::from_phone(checked.subject.clone(), &checked.raw_from),
                };
                input.priority = routing.priority;
                input.queue = routing.queue;
                input.assignee = routing.assignee;
                (self.stage_create(ctx, input, &mut cs).await?, true, false)
            }
        };
        let tref = RecordRef::from(ticket.id);
        let mut activity = NewActivity::new(
            checked.subject.clone(),
            ActivityDetails::Call(Call {
                direction: Direction::Inbound,
                from: checked
                    .e164
                    .clone()
                    .unwrap_or_else(|| checked.raw_from.clone()),
                to: checked.to.clone(),
                started_at: call.started_at,
                duration_secs: call.duration_secs,
                outcome: call.outcome,
                agent: call.agent,
                recording_ref: call.recording_ref.clone(),
                notes: call.notes.clone(),
            }),
        )
        .related_to(tref.clone());
        if let Some(c) = contact {
            activity = activity.related_to(c);
        }
        let staged_records = if created { vec![tref.clone()] } else { vec![] };
        let staged = activities
            .stage_create(ctx, vec![activity], &staged_records, &mut cs)
            .await?;
        let activity_id = staged
            .activities()
            .next()
            .map(|a| a.id)
            .ok_or_else(|| Error::storage("the call activity was not staged"))?;
        cs.events.push(NewEvent::new(
            CALL_LOGGED,
            tref,
            vec![],
            serde_json::json!({
                "ticket": ticket.id,
                "number": ticket.number,
                "activity": activity_id,
                "contact": contact,
                "from": checked.raw_from,
                "created": created,
            }),
        ));
        let call = activities
            .commit_staged(ctx, cs, staged)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::storage("the call activity went missing"))?;
        Ok(InboundCallResult {
            contact,
            ticket,
            created,
            reopened,
            call,
        })
    }
}
