//! # crmkit-tickets
//!
//! Customer-service tickets for crmkit, composed after contacts and activities (the
//! [`TicketsModule`] declares both).
//!
//! * [`Tickets`]: the API. Tickets have a per-tenant human number (unique and increasing,
//!   claimed through a unique index, safe under concurrent creates), a subject and
//!   description, a status with a fixed transition table (see [`TicketStatus`]), a
//!   priority, a channel, a requester contact (or only a requester phone, for callers not
//!   yet known), an organization, an assignee and a queue (record-level access: a Rep
//!   sees the tickets assigned to them and those in their teams' queues), tags, custom
//!   fields, an append-only status and priority history, public replies and internal
//!   notes with attachment metadata (the first public agent reply records
//!   `first_response_at`), escalation, and one satisfaction rating per solve. Every
//!   command validates every field at once (a Validation error naming each bad field,
//!   nothing written), checks access, and commits one changeset with its audit entries
//!   and events (`ticket.created`, `ticket.updated`, `ticket.status_changed`,
//!   `ticket.commented`, `ticket.escalated`, `ticket.rated`, `ticket.deleted`,
//!   `ticket.restored`).
//! * [`calls`]: the call-centre path, [`Tickets::record_inbound_call`]: an inbound call
//!   finds its caller by number and lands on the caller's recent open ticket or opens a
//!   phone ticket, logged as a call activity related to both, in one commit (emits
//!   `ticket.call_logged`); [`Tickets::activities`] is an activities API that relates
//!   activities to tickets ([`TicketRecords`]).
//! * [`calendar`]: [`BusinessCalendar`](calendar::BusinessCalendar), a time zone with weekly
//!   working hours and dated exceptions (holidays, extra working days), and business-time
//!   arithmetic that is exact across daylight-saving changes;
//! * [`clock`]: [`SlaClock`](clock::SlaClock), a value that counts business minutes towards
//!   a target and pauses while a ticket waits on the customer or is on hold.
//!
//! * [`sla`]: SLA policies (ordered, with conditions on priority, channel, organization or
//!   a custom field, a stored calendar and first-response / next-response / resolution
//!   targets in business minutes) and [`SlaState`](sla::SlaState), the pure per-ticket SLA
//!   state machine (rules in [`sla`]'s docs). [`SlaCalendars`] and [`SlaPolicies`] store
//!   calendars and policies (`create`, `update`, `get`, `all`, `list`, `audit`);
//!   [`Tickets`] finds the policy of a ticket (`policy_for`), keeps each ticket's SLA state in
//!   [`SLA_TABLE`] from the one private hook every ticket-writing command calls inside its
//!   changeset (`Tickets::stage_sla`), and answers `sla`, `breached` and `at_risk` (index
//!   ranges on `(next_due_at, ticket_id)`, keyset-paged, visibility pushed down) and
//!   `sweep` (records breaches and warnings exactly once: `ticket.sla_breached`,
//!   `ticket.sla_warning`). `recompute_sla` re-evaluates open tickets page by page after
//!   a host edited a policy or a calendar; each SLA row keeps the business minutes to the
//!   first response and to resolution once reached.
//! * [`analytics`]: backlog, response and resolution times, SLA outcomes and satisfaction,
//!   every number computed by the backend (grouped counts and exact integer sums).
//! * [`kinds`]: the record kinds `ticket`, `sla_calendar` and `sla_policy` for the generic
//!   record API ([`crmkit_core::record::Records`]). Every reference the module checks
//!   (requester, organization, assignee, queue, a call's agent, a policy's calendar and
//!   organization conditions, the caller lookup) follows
//!   [`Records::visible`](crmkit_core::record::Records::visible): a record that does not
//!   exist, is deleted, belongs to another tenant or is hidden from the actor gives the
//!   same error.
//!
//! The calendar, the clock and the SLA state are plain values: no storage, no clock
//! reads; every instant is passed in.
//!
//! ```
//! use crmkit_contacts::{Contacts, ContactsModule, NewContact};
//! use crmkit_core::memory::MemoryBackend;
//! use crmkit_core::{Actor, Ctx, Modules, Role, Store, TenantId, UserId, UserInput};
//! use crmkit_tickets::{NewComment, NewTicket, TicketStatus, Tickets, TicketsModule};
//!
//! let modules = Modules::builder()
//!     .add(ContactsModule)
//!     .add(crmkit_pipeline::PipelineModule)
//!     .add(crmkit_activities::ActivitiesModule)
//!     .add(TicketsModule)
//!     .build()?;
//! let store = Store::new(MemoryBackend::new(modules.schema().as_ref().clone()), modules);
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! rt.block_on(async {
//!     let agent = UserId::new();
//!     let ctx = Ctx::new(TenantId::new(), Actor::new(agent, [Role::Admin], []))?;
//!     store
//!         .directory()
//!         .put_user(&ctx, UserInput {
//!             id: agent,
//!             name: "Ada".into(),
//!             email: "ada@example.com".into(),
//!             roles: vec![Role::Admin],
//!             teams: vec![],
//!             active: true,
//!             time_zone: "Europe/Berlin".into(),
//!         })
//!         .await?;
//!     let grace = Contacts::new(&store)?
//!         .create(&ctx, NewContact::named("Grace", "Hopper"))
//!         .await?;
//!     let tickets = Tickets::new(&store)?;
//!     let t = tickets
//!         .create(&ctx, NewTicket::new("Printer on fire", grace.id).tag("Hardware"))
//!         .await?;
//!     assert_eq!((t.number, t.status), (1, TicketStatus::New));
//!     assert_eq!(t.tags, ["hardware"]);
//!     // The first public reply by an agent records the first response and opens it.
//!     let c = tickets.comment(&ctx, t.id, NewComment::reply("On our way")).await?;
//!     assert_eq!(c.ticket.status, TicketStatus::Open);
//!     assert!(c.ticket.first_response_at.is_some());
//!     let solved = tickets
//!         .set_status(&ctx, t.id, c.ticket.version, TicketStatus::Solved)
//!         .await?;
//!     tickets.rate(&ctx, t.id, 5, Some("Fast!".into())).await?;
//!     assert_eq!(tickets.history(&ctx, t.id).await?.len(), 3);
//!     assert_eq!(solved.solve_count, 1);
//!     Ok::<(), crmkit_core::Error>(())
//! })?;
//! # Ok::<(), crmkit_core::Error>(())
//! ```
//!
//! The business-time core on its own:
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use crmkit_tickets::calendar::{BusinessCalendar, Interval};
//! use crmkit_tickets::clock::SlaClock;
//!
//! let christmas = NaiveDate::from_ymd_opt(2026, 12, 25).unwrap();
//! let cal = BusinessCalendar::builder("Europe/Berlin")
//!     .weekdays([Interval::hm(9, 0, 12, 0), Interval::hm(13, 0, 17, 0)])
//!     .holiday(christmas)
//!     .build()?;
//!
//! // Thursday 2026-12-24, 16:30 in Berlin (CET, UTC+1).
//! let start = Utc.with_ymd_and_hms(2026, 12, 24, 15, 30, 0).unwrap();
//! // 30 minutes on Thursday; Friday is Christmas, then the weekend; 60 minutes on Monday.
//! let due = cal.add_minutes(start, 90);
//! assert_eq!(due, Utc.with_ymd_and_hms(2026, 12, 28, 9, 0, 0).unwrap()); // 10:00 CET
//! assert_eq!(cal.minutes_between(start, due), 90);
//!
//! // An SLA clock with the same target, paused for nothing: due at the same instant.
//! let clock = SlaClock::start(start, 90)?;
//! assert_eq!(clock.due_at(&cal), Some(due));
//! # Ok::<(), crmkit_core::Error>(())
//! ```

pub mod actions;
pub mod analytics;
pub mod calendar;
pub mod calls;
pub mod clock;
pub mod inputs;
pub mod kinds;
pub mod model;
pub mod rows;
mod service;
pub mod sla;
mod sla_service;

pub use analytics::{BacklogRow, MinutesStat, ResponseTimes, SatisfactionStat, SlaOutcome};
pub use calls::{CallRouting, InboundCall, InboundCallResult, TicketRecords};
pub use inputs::*;
pub use kinds::{
    CalendarKind, CalendarPatch, NewCalendar, SlaPolicyKind, SlaPolicyPatch, SlaSummary,
    TicketKind, TicketRecord,
};
pub use model::*;
pub use rows::TICKET_FIELDS;
pub use service::{
    EVENT_KINDS, MAX_ATTACHMENTS, MAX_PHONE, MAX_RATING_COMMENT, MAX_REASON, MAX_SUBJECT,
    MAX_TAG_LEN, MAX_TAGS, MAX_TEXT, NUMBER_SEQUENCE, Tickets, normalize_tag, tag_filter,
};
pub use sla_service::{
    CALENDAR, CALENDAR_FIELDS, CALENDAR_TABLE, CREATED_INDEX, DUE_INDEX, MAX_SLA_NAME, POLICY,
    POLICY_FIELDS, POLICY_TABLE, RecomputeReport, SLA_TABLE, SlaCalendars, SlaPolicies,
    SweepReport, TargetView, TicketSla,
};

use crmkit_core::{Migration, Module};

/// The tickets module: its tables (tickets, history, comments, satisfaction, calendars,
/// SLA policies and state), its record kinds (`ticket`, `sla_calendar`, `sla_policy`: see
/// [`kinds`]) and event kinds. Composed after contacts and activities.
#[derive(Debug, Clone, Copy, Default)]
pub struct TicketsModule;

impl Module for TicketsModule {
    fn name(&self) -> &'static str {
        "tickets"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["contacts", "activities"]
    }

    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration::create_tables(
                1,
                "tickets, status history, comments, satisfaction ratings",
                rows::tables(),
            ),
            Migration::create_tables(
                2,
                "business calendars, SLA policies, per-ticket SLA state",
                sla_service::tables(),
            ),
            Migration {
                version: 3,
                description: "SLA measures: first-response and resolution business minutes, \
                              creation instant",
                steps: sla_service::measure_steps(),
            },
            Migration {
                version: 4,
                description: "satisfaction ratings mirror their ticket's assignee, queue and \
                              deletion (older ratings: none, seen by admins and managers only)",
                steps: rows::satisfaction_steps(),
            },
        ]
    }

    fn record_kinds(&self) -> Vec<std::sync::Arc<dyn crmkit_core::record::KindHandler>> {
        vec![
            crmkit_core::record::typed(kinds::TicketKind),
            crmkit_core::record::typed(kinds::CalendarKind),
            crmkit_core::record::typed(kinds::SlaPolicyKind),
        ]
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        EVENT_KINDS.to_vec()
    }

    fn automation_actions(&self) -> Vec<std::sync::Arc<dyn crmkit_core::action::CustomAction>> {
        actions::actions()
    }
}
