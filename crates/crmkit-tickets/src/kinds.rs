//! The tickets module's record kinds, for the generic record API (see
//! [`crmkit_core::record`]): `ticket`, and the tenant's SLA configuration, `sla_calendar`
//! and `sla_policy`. Each generic call runs the typed command of [`Tickets`], so both paths
//! validate, check access and write the same.
//!
//! Who sees what:
//! - a **ticket** is visible by record-level access (Admin and Manager: all; others: the
//!   tickets assigned to them or in their teams' queues); its status changes only through
//!   [`Tickets::set_status`] and the comment rules, so `status` is read-only here, as are
//!   its number and SLA.
//! - **calendars and policies** are tenant configuration: every user of the tenant reads
//!   them (every ticket's SLA counts on them), only Admins and Managers create and change
//!   them (PermissionDenied otherwise). They have versions and an audit trail, and are
//!   never deleted (a policy is deactivated instead, and a calendar may be in use by
//!   tickets' running clocks): a generic delete or restore of one is PermissionDenied, and
//!   NotFound when there is no such record in the tenant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use crmkit_core::record::{
    FieldDescription as F, FieldType as T, KindDescription, Lifecycle, TypedKind,
};
use crmkit_core::{
    CalendarId, Ctx, Error, Page, Query, Result, SlaPolicyId, Store, TicketId, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::CalendarSpec;
use crate::inputs::{NewTicket, TicketPatch};
use crate::model::{Channel, Ticket, TicketPriority, TicketStatus};
use crate::rows::TICKET_FIELDS;
use crate::sla::{NewSlaPolicy, SlaConditions, SlaPolicy, SlaTargets, StoredCalendar};
use crate::sla_service::{
    CALENDAR_FIELDS, POLICY_FIELDS, SlaCalendars, SlaPolicies, TargetView, TicketSla,
};
use crate::{MAX_PHONE, MAX_SLA_NAME, MAX_SUBJECT, MAX_TAG_LEN, MAX_TEXT, Tickets};

fn names<const N: usize, X: Copy>(all: [X; N], name: fn(X) -> &'static str) -> Vec<&'static str> {
    all.into_iter().map(name).collect()
}

fn max(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A ticket's SLA as the `ticket` record shows it: the policy that applies, the next due
/// instant and each target's state (see [`TicketSla`], of which it is the summary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaSummary {
    /// The policy that applies, if any.
    pub policy: Option<SlaPolicyId>,
    /// The earliest due instant among running, unmet targets.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub next_due_at: Option<DateTime<Utc>>,
    /// The targets the ticket has.
    pub targets: Vec<TargetView>,
    /// Business minutes to the first response, once it met its target.
    pub first_response_minutes: Option<i64>,
    /// Business minutes to resolution, once solved.
    pub resolution_minutes: Option<i64>,
}

impl From<TicketSla> for SlaSummary {
    fn from(s: TicketSla) -> Self {
        SlaSummary {
            policy: s.policy,
            next_due_at: s.next_due_at,
            targets: s.targets,
            first_response_minutes: s.first_response_minutes,
            resolution_minutes: s.resolution_minutes,
        }
    }
}

/// A ticket as the generic record API shows it: the [`Ticket`]'s fields and its `sla`
/// (`null` when no policy ever applied to it). The SLA changes with time and with
/// sweeps, without the ticket's version changing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// The ticket.
    #[serde(flatten)]
    pub ticket: Ticket,
    /// Its SLA.
    pub sla: Option<SlaSummary>,
}

/// The `ticket` kind.
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/ticket.md")]
pub struct TicketKind;

impl TicketKind {
    async fn with_sla(tickets: &Tickets, ctx: &Ctx, t: Ticket) -> Result<TicketRecord> {
        let mut slas = tickets.sla_rows(ctx, &[t.id]).await?;
        let sla = slas.remove(&t.id).map(SlaSummary::from);
        Ok(TicketRecord { ticket: t, sla })
    }
}

impl TypedKind for TicketKind {
    type Record = TicketRecord;
    type New = NewTicket;
    type Patch = TicketPatch;

    fn describe(&self) -> KindDescription {
        let events: Vec<&str> = crate::EVENT_KINDS
            .iter()
            .copied()
            .filter(|e| e.starts_with("ticket."))
            .collect();
        KindDescription::new("ticket", "Ticket", "Tickets", "tickets")
            .doc(
                "A customer-service ticket with a per-tenant number, a status moved by \
                 `set_status` and the comment rules (read-only here), a requester contact or \
                 phone, an assignee and a queue (record-level access), and an SLA.",
            )
            .events(&events)
            .id_field()
            .field(F::new("number", T::Int).read_only().doc(
                "The tenant's ticket number, assigned on create from a counter; never changes.",
            ))
            .field(F::new("subject", T::text(max(MAX_SUBJECT))).required())
            .field(F::new("description", T::text(max(MAX_TEXT))).nullable())
            .field(
                F::new(
                    "status",
                    T::choice(&names(TicketStatus::ALL, TicketStatus::as_str)),
                )
                .read_only()
                .doc(
                    "`new` on create; changed by `set_status` (transition table) and by comments.",
                ),
            )
            .field(
                F::new(
                    "priority",
                    T::choice(&names(TicketPriority::ALL, TicketPriority::as_str)),
                )
                .doc("`normal` when absent; a change is recorded in the history."),
            )
            .field(
                F::new("channel", T::choice(&names(Channel::ALL, Channel::as_str)))
                    .doc("How it came in; `api` when absent."),
            )
            .field(
                F::new("requester", T::reference("contact"))
                    .nullable()
                    .doc("The contact who asked; a ticket needs a requester or a requester phone."),
            )
            .field(
                F::new("requester_phone", T::text(max(MAX_PHONE)))
                    .nullable()
                    .personal()
                    .doc("The requester's phone as given, for a caller not (yet) a contact."),
            )
            .field(
                F::new("organization", T::reference("organization"))
                    .nullable()
                    .doc("The requester's organization when absent on create."),
            )
            .field(F::new("assignee", T::reference("user")).nullable().doc(
                "An active user (record-level access: the owner); the actor when neither \
                          an assignee nor a queue is given. A rep assigns only to themselves.",
            ))
            .field(F::new("queue", T::reference("team")).nullable().doc(
                "A team (record-level access: the owning team); a rep uses only their own teams.",
            ))
            .field(
                F::new("tags", T::list(T::text(max(MAX_TAG_LEN))))
                    .doc("Normalised: trimmed, lower case, no repeats, no `|`."),
            )
            .with_custom()
            .field(
                F::new("first_response_at", T::Timestamp)
                    .nullable()
                    .read_only()
                    .doc("Set by the first public agent reply."),
            )
            .field(
                F::new("solved_at", T::Timestamp)
                    .nullable()
                    .read_only()
                    .doc("Set when solved, cleared when reopened."),
            )
            .field(F::new("closed_at", T::Timestamp).nullable().read_only())
            .field(
                F::new("solve_count", T::Int)
                    .read_only()
                    .doc("How many times it was solved (one satisfaction rating per solve)."),
            )
            .system_fields()
            .field(F::new("sla", T::Object).nullable().computed().doc(
                "`{policy, next_due_at, targets: [{kind, target_minutes, due_at, achieved_at, \
                         breached_at, warned_at, paused}], first_response_minutes, \
                         resolution_minutes}`, derived from the ticket's life, its policy and \
                         calendar; `null` when no policy ever applied. Changes without the \
                         ticket's version.",
            ))
            .queryable(&TICKET_FIELDS)
    }

    async fn get(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<TicketRecord> {
        let tickets = Tickets::new(store)?;
        let t = tickets.get(ctx, TicketId::from_uuid(id)).await?;
        Self::with_sla(&tickets, ctx, t).await
    }

    async fn list(&self, store: &Store, ctx: &Ctx, q: &Query) -> Result<Page<TicketRecord>> {
        let tickets = Tickets::new(store)?;
        let page = tickets.list(ctx, q).await?;
        let ids: Vec<TicketId> = page.items.iter().map(|t| t.id).collect();
        let mut slas: HashMap<TicketId, TicketSla> = tickets.sla_rows(ctx, &ids).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|t| TicketRecord {
                    sla: slas.remove(&t.id).map(SlaSummary::from),
                    ticket: t,
                })
                .collect(),
            next_cursor: page.next_cursor,
            total: page.total,
        })
    }

    async fn create(&self, store: &Store, ctx: &Ctx, input: NewTicket) -> Result<TicketRecord> {
        let tickets = Tickets::new(store)?;
        let t = tickets.create(ctx, input).await?;
        Self::with_sla(&tickets, ctx, t).await
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: TicketPatch,
    ) -> Result<TicketRecord> {
        let tickets = Tickets::new(store)?;
        let t = tickets
            .update(ctx, TicketId::from_uuid(id), expected_version, patch)
            .await?;
        Self::with_sla(&tickets, ctx, t).await
    }

    async fn delete(&self, store: &Store, ctx: &Ctx, id: Uuid, v: u64) -> Result<TicketRecord> {
        let tickets = Tickets::new(store)?;
        let t = tickets.delete(ctx, TicketId::from_uuid(id), v).await?;
        Self::with_sla(&tickets, ctx, t).await
    }

    async fn restore(&self, store: &Store, ctx: &Ctx, id: Uuid, v: u64) -> Result<TicketRecord> {
        let tickets = Tickets::new(store)?;
        let t = tickets.restore(ctx, TicketId::from_uuid(id), v).await?;
        Self::with_sla(&tickets, ctx, t).await
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Tickets::new(store)?, id: TicketId;
        audit,
    }
}

/// The lifecycle of the SLA configuration kinds: created and changed, versioned and
/// audited, never deleted.
const CONFIGURATION: Lifecycle = Lifecycle {
    create: true,
    patch: true,
    soft_delete: false,
    restore: false,
    versioned: true,
    audit: true,
};

/// The input of a stored calendar: a name and the calendar's spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewCalendar {
    /// Its name (1 to [`MAX_SLA_NAME`] characters).
    pub name: String,
    /// Its time zone, weekly hours and exceptions.
    pub calendar: CalendarSpec,
}

impl NewCalendar {
    /// A calendar named `name` with spec `calendar`.
    pub fn new(name: impl Into<String>, calendar: CalendarSpec) -> Self {
        NewCalendar {
            name: name.into(),
            calendar,
        }
    }
}

/// A change to a stored calendar: each `Some` replaces the field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CalendarPatch {
    /// New name.
    pub name: Option<String>,
    /// New spec (replacing the whole spec).
    pub calendar: Option<CalendarSpec>,
}

/// Names the spec's fields under `calendar.` as the record has them (`time_zone` becomes
/// `calendar.time_zone`).
fn spec_fields(e: Error) -> Error {
    match e {
        Error::Validation(v) => {
            let mut out = ValidationErrors::new();
            out.kind = v.kind;
            for mut fe in v.errors {
                if fe.field != "name" && !fe.field.starts_with("calendar") {
                    fe.field = format!("calendar.{}", fe.field);
                }
                out.errors.push(fe);
            }
            Error::Validation(out)
        }
        other => other,
    }
}

/// The `sla_calendar` kind.
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/sla_calendar.md")]
pub struct CalendarKind;

impl TypedKind for CalendarKind {
    type Record = StoredCalendar;
    type New = NewCalendar;
    type Patch = CalendarPatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new(
            "sla_calendar",
            "Business calendar",
            "Business calendars",
            "tickets",
        )
        .doc(
            "A business calendar SLA policies count on: a time zone, weekly working hours \
                 and dated exceptions. Tenant configuration: every user reads it, Admins and \
                 Managers write it; never deleted.",
        )
        .events(&["sla_calendar.created", "sla_calendar.updated"])
        .lifecycle(CONFIGURATION)
        .id_field()
        .field(F::new("name", T::text(max(MAX_SLA_NAME))).required())
        .field(F::new("calendar", T::Object).required().doc(
            "`{time_zone, hours: {monday: [\"09:00-17:00\"], ...}, exceptions: \
                     {\"2026-12-25\": []}}`: an IANA time zone, each weekday's working \
                     intervals in local time, and dated exceptions (an empty list is a holiday). \
                     A patch replaces the whole spec.",
        ))
        .field(F::new("created_at", T::Timestamp).read_only())
        .field(F::new("updated_at", T::Timestamp).read_only())
        .field(F::new("version", T::Int).read_only())
        .queryable(&CALENDAR_FIELDS)
    }

    async fn create(&self, store: &Store, ctx: &Ctx, input: NewCalendar) -> Result<StoredCalendar> {
        SlaCalendars::new(store)?
            .create(ctx, &input.name, input.calendar)
            .await
            .map_err(spec_fields)
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: CalendarPatch,
    ) -> Result<StoredCalendar> {
        let calendars = SlaCalendars::new(store)?;
        let id = CalendarId::from_uuid(id);
        let old = calendars.get(ctx, id).await?;
        let name = patch.name.unwrap_or(old.name);
        let spec = patch.calendar.unwrap_or_else(|| old.calendar.into());
        calendars
            .update(ctx, id, expected_version, &name, spec)
            .await
            .map_err(spec_fields)
    }

    crmkit_core::forward_typed_kind! {
        api: |store| SlaCalendars::new(store)?, id: CalendarId;
        get, list, audit,
    }

    crmkit_core::forward_typed_kind!(never_deleted: CalendarId::kind());
}

/// A change to an SLA policy: each `Some` replaces the field (`conditions` and `targets`
/// as a whole).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SlaPolicyPatch {
    /// New name.
    pub name: Option<String>,
    /// New place in the evaluation order.
    pub position: Option<i64>,
    /// New conditions.
    pub conditions: Option<SlaConditions>,
    /// New calendar.
    pub calendar: Option<CalendarId>,
    /// New targets.
    pub targets: Option<SlaTargets>,
    /// Considered or not.
    pub active: Option<bool>,
}

impl SlaPolicyPatch {
    /// The full input of the policy `p` after this patch.
    pub fn apply(self, p: &SlaPolicy) -> NewSlaPolicy {
        let mut n = NewSlaPolicy::from(p);
        if let Some(v) = self.name {
            n.name = v;
        }
        if let Some(v) = self.position {
            n.position = v;
        }
        if let Some(v) = self.conditions {
            n.conditions = v;
        }
        if let Some(v) = self.calendar {
            n.calendar = v;
        }
        if let Some(v) = self.targets {
            n.targets = v;
        }
        if let Some(v) = self.active {
            n.active = v;
        }
        n
    }
}

/// The `sla_policy` kind.
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/sla_policy.md")]
pub struct SlaPolicyKind;

impl TypedKind for SlaPolicyKind {
    type Record = SlaPolicy;
    type New = NewSlaPolicy;
    type Patch = SlaPolicyPatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new("sla_policy", "SLA policy", "SLA policies", "tickets")
            .doc(
                "An SLA policy: the first active one in evaluation order whose conditions \
                 match a ticket gives it its targets. Tenant configuration: every user reads \
                 it, Admins and Managers write it; never deleted (deactivate it).",
            )
            .events(&["sla_policy.created", "sla_policy.updated"])
            .lifecycle(CONFIGURATION)
            .id_field()
            .field(F::new("name", T::text(max(MAX_SLA_NAME))).required())
            .field(
                F::new("position", T::Int)
                    .doc("Place in the evaluation order (lower first, ties by id); 0 when absent."),
            )
            .field(F::new("conditions", T::Object).doc(
                "`{priorities: [..], channels: [..], organizations: [organization ids], custom: \
                 [key, value] | null}`: every condition given must hold; none: every ticket. \
                 Organizations must be live organizations of the tenant.",
            ))
            .field(
                F::new("calendar", T::reference("sla_calendar"))
                    .required()
                    .doc("The business calendar its targets count on."),
            )
            .field(F::new("targets", T::Object).doc(
                "`{first_response, next_response, resolution}`: business minutes, each \
                 positive or null (no such target).",
            ))
            .field(F::new("active", T::Bool).doc("Whether it is considered; true when absent."))
            .field(F::new("created_at", T::Timestamp).read_only())
            .field(F::new("updated_at", T::Timestamp).read_only())
            .field(F::new("version", T::Int).read_only())
            .queryable(&POLICY_FIELDS)
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: SlaPolicyPatch,
    ) -> Result<SlaPolicy> {
        let policies = SlaPolicies::new(store)?;
        let id = SlaPolicyId::from_uuid(id);
        let old = policies.get(ctx, id).await?;
        policies
            .update(ctx, id, expected_version, patch.apply(&old))
            .await
    }

    crmkit_core::forward_typed_kind! {
        api: |store| SlaPolicies::new(store)?, id: SlaPolicyId;
        get, list, audit, create,
    }

    crmkit_core::forward_typed_kind!(never_deleted: SlaPolicyId::kind());
}

#[cfg(test)]
mod doc_tables {
    use super::*;

    fn check(doc: &str, d: &KindDescription) {
        if let Err(e) = crmkit_core::record::check_field_table(doc, d) {
            panic!("{e}");
        }
    }

    #[test]
    fn the_docs_list_every_field() {
        check(include_str!("kinds/ticket.md"), &TicketKind.describe());
        check(
            include_str!("kinds/sla_calendar.md"),
            &CalendarKind.describe(),
        );
        check(
            include_str!("kinds/sla_policy.md"),
            &SlaPolicyKind.describe(),
        );
    }
}
