//! Storage and API of business calendars, SLA policies and the per-ticket SLA state.
//!
//! Tables (migration 2 of the tickets module):
//! - [`CALENDAR_TABLE`]: id, name, the calendar's spec as JSON, version.
//! - [`POLICY_TABLE`]: policies, indexed by (position, id): the evaluation order.
//! - [`SLA_TABLE`]: one row per ticket that has (or had) a policy, keyed by ticket id: the
//!   [`SlaState`] as JSON, the policy, the earliest due instant of the running unmet
//!   targets (`next_due_at`, indexed with the ticket id: the breach and at-risk queries
//!   are index ranges) and per target `<kind>_due_at`, `<kind>_achieved_at`,
//!   `<kind>_breached_at`. It mirrors the ticket's `owner_id`, `team_id` and `deleted_at`
//!   so that record-level visibility is pushed down into those queries.
//!
//! Migration 3 adds to [`SLA_TABLE`] (all nullable, at the end of the row):
//! - `first_response_minutes`: the business minutes the first-response clock had counted
//!   when the first public agent reply met it (the same consumed time the [`SlaState`]
//!   counts: from creation, not paused while pending or on hold, stopped while solved);
//! - `resolution_minutes`: the business minutes the resolution clock had counted when
//!   the ticket was solved or closed (pauses while pending or on hold excluded). Cleared
//!   when the ticket is reopened, set again (with the total) when it is solved again;
//! - `created_at`: the ticket's creation instant, indexed with the ticket id
//!   ([`CREATED_INDEX`]), so that analytics select a creation period by an index range.
//!
//! Both measures are whole minutes, rounded down, written by the same code that records
//! the targets' `achieved_at` (the row is built from the state). They stay NULL for a
//! target the ticket's policy does not have, and tickets without a policy have no SLA row
//! at all (no calendar to count business minutes on): they are not measured. Rows written
//! before migration 3 get `created_at` on their next SLA write (any ticket command or
//! [`Tickets::recompute_sla`]) and their measures when a target is next met.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use crmkit_core::query::{FieldSpec, FieldType as QueryType, RecordFields};
use crmkit_core::record::reference_reason;
use crmkit_core::row::{from_json, int, json, opt_timestamp, take_text, timestamp, uuid};
use crmkit_core::service::{self, visibility_scope};
use crmkit_core::store::{
    CmpOp, ColumnDef, ColumnType, Cond, IndexDef, OrderKey, Row, SchemaStep, Select, TableDef,
    Value, Write, columns,
};
use crmkit_core::text::check_text;
use crmkit_core::{
    AuditChange, CalendarId, Changeset, Ctx, Error, NewEvent, Page, RecordKind, RecordRef, Result,
    SlaPolicyId, TicketId, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::{BusinessCalendar, CalendarSpec, Interval};
use crate::model::{Ticket, TicketStatus};
use crate::rows::{SATISFACTION_TABLE, TICKET_TABLE};
use crate::service::Tickets;
use crate::sla::{
    NewSlaPolicy, SlaEvent, SlaPolicy, SlaState, SlaTargetKind, SlaTargets, StoredCalendar,
    no_calendar, policy_for,
};

/// The business calendars table.
pub const CALENDAR_TABLE: &str = "tickets_calendar";
/// The SLA policies table.
pub const POLICY_TABLE: &str = "tickets_sla_policy";
/// The per-ticket SLA state table.
pub const SLA_TABLE: &str = "tickets_sla";
/// The index of the breach and at-risk queries.
pub const DUE_INDEX: &str = "tickets_sla_due";
/// The index of [`SLA_TABLE`] on `(created_at, ticket_id)` (migration 3).
pub const CREATED_INDEX: &str = "tickets_sla_created";

/// Record kind of stored calendars (audit, events, errors).
pub const CALENDAR: RecordKind = RecordKind::new("sla_calendar");
/// Record kind of SLA policies.
pub const POLICY: RecordKind = RecordKind::new("sla_policy");

crmkit_core::versioned_record!(StoredCalendar, CalendarId, CALENDAR, CALENDAR_TABLE);
crmkit_core::versioned_record!(SlaPolicy, SlaPolicyId, POLICY, POLICY_TABLE);

/// The names a [`Query`](crmkit_core::Query) of stored calendars filters and sorts on: `id`, `name`,
/// `created_at`, `updated_at`.
pub static CALENDAR_FIELDS: RecordFields = RecordFields {
    kind: CALENDAR,
    table: CALENDAR_TABLE,
    fields: &[
        FieldSpec::new("id", QueryType::Uuid, false),
        FieldSpec::new("name", QueryType::Text, false),
        FieldSpec::new("created_at", QueryType::Timestamp, false),
        FieldSpec::new("updated_at", QueryType::Timestamp, false),
    ],
    custom_column: None,
};

/// The names a [`Query`](crmkit_core::Query) of SLA policies filters and sorts on: `id`, `name`, `position`,
/// `calendar`, `active`, `created_at`, `updated_at`.
pub static POLICY_FIELDS: RecordFields = RecordFields {
    kind: POLICY,
    table: POLICY_TABLE,
    fields: &[
        FieldSpec::new("id", QueryType::Uuid, false),
        FieldSpec::new("name", QueryType::Text, false),
        FieldSpec::new("position", QueryType::Int, false),
        FieldSpec::new("calendar", QueryType::Uuid, false).in_column("calendar_id"),
        FieldSpec::new("active", QueryType::Bool, false),
        FieldSpec::new("created_at", QueryType::Timestamp, false),
        FieldSpec::new("updated_at", QueryType::Timestamp, false),
    ],
    custom_column: None,
};

/// Longest calendar or policy name.
pub const MAX_SLA_NAME: usize = 200;

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    let mut sla = vec![
        ("ticket_id", Uuid, false),
        ("policy_id", Uuid, true),
        ("owner_id", Uuid, true),
        ("team_id", Uuid, true),
        ("deleted_at", Timestamp, true),
        ("state", LongText, false),
        ("next_due_at", Timestamp, true),
    ];
    for (d, a, b) in [
        (
            "first_response_due_at",
            "first_response_achieved_at",
            "first_response_breached_at",
        ),
        (
            "next_response_due_at",
            "next_response_achieved_at",
            "next_response_breached_at",
        ),
        (
            "resolution_due_at",
            "resolution_achieved_at",
            "resolution_breached_at",
        ),
    ] {
        sla.extend([
            (d, Timestamp, true),
            (a, Timestamp, true),
            (b, Timestamp, true),
        ]);
    }
    sla.push(("version", Int, false));
    vec![
        TableDef::new(
            CALENDAR_TABLE,
            columns(&[
                ("id", Uuid, false),
                ("name", Text(200), false),
                ("spec", LongText, false),
                ("created_at", Timestamp, false),
                ("updated_at", Timestamp, false),
                ("version", Int, false),
            ]),
            ["id"],
        ),
        TableDef::new(
            POLICY_TABLE,
            columns(&[
                ("id", Uuid, false),
                ("name", Text(200), false),
                ("position", Int, false),
                ("conditions", LongText, false),
                ("calendar_id", Uuid, false),
                ("first_response", Int, true),
                ("next_response", Int, true),
                ("resolution", Int, true),
                ("active", Bool, false),
                ("created_at", Timestamp, false),
                ("updated_at", Timestamp, false),
                ("version", Int, false),
            ]),
            ["id"],
        )
        .index(IndexDef::new(
            "tickets_sla_policy_order",
            ["position", "id"],
        )),
        TableDef::new(SLA_TABLE, columns(&sla), ["ticket_id"])
            .index(IndexDef::new(DUE_INDEX, ["next_due_at", "ticket_id"]))
            .index(IndexDef::new(
                "tickets_sla_policy_ticket",
                ["policy_id", "ticket_id"],
            )),
    ]
}

/// Migration 3: the business-minute measures and the creation instant on [`SLA_TABLE`].
pub(crate) fn measure_steps() -> Vec<SchemaStep> {
    let columns = [
        ColumnDef::optional("first_response_minutes", ColumnType::Int),
        ColumnDef::optional("resolution_minutes", ColumnType::Int),
        ColumnDef::optional("created_at", ColumnType::Timestamp),
    ];
    let mut steps = SchemaStep::add_columns(SLA_TABLE, columns);
    steps.push(SchemaStep::CreateIndex {
        table: SLA_TABLE,
        index: IndexDef::new(CREATED_INDEX, ["created_at", "ticket_id"]),
    });
    steps
}

/// The tenant's rows of `table` that match `cond`, ordered by the columns `by` (ascending),
/// decoded.
pub(crate) async fn select_sorted<R>(
    store: &crmkit_core::Store,
    ctx: &Ctx,
    table: &'static str,
    cond: Cond,
    by: &[&str],
    decode: fn(Row) -> Result<R>,
) -> Result<Vec<R>> {
    let mut s = Select::new(table, cond);
    s.order = by.iter().map(|c| OrderKey::asc(*c)).collect();
    service::select_rows(store, ctx, &s, decode).await
}

fn opt_int(v: &Value) -> Option<i64> {
    v.as_int()
}

fn calendar_row(c: &StoredCalendar) -> Row {
    vec![
        Value::Uuid(c.id.as_uuid()),
        Value::Text(c.name.clone()),
        json(&c.calendar),
        Value::timestamp(c.created_at),
        Value::timestamp(c.updated_at),
        Value::Int(c.version as i64),
    ]
}

fn decode_calendar(mut r: Row) -> Result<StoredCalendar> {
    Ok(StoredCalendar {
        id: CalendarId::from_uuid(uuid(&r[0])?),
        name: take_text(&mut r[1])?,
        calendar: from_json(&r[2])?,
        created_at: timestamp(&r[3])?,
        updated_at: timestamp(&r[4])?,
        version: int(&r[5])? as u64,
    })
}

fn policy_row(p: &SlaPolicy) -> Row {
    vec![
        Value::Uuid(p.id.as_uuid()),
        Value::Text(p.name.clone()),
        Value::Int(p.position),
        json(&p.conditions),
        Value::Uuid(p.calendar.as_uuid()),
        Value::opt_int(p.targets.first_response),
        Value::opt_int(p.targets.next_response),
        Value::opt_int(p.targets.resolution),
        Value::from(p.active),
        Value::timestamp(p.created_at),
        Value::timestamp(p.updated_at),
        Value::Int(p.version as i64),
    ]
}

fn decode_policy(mut r: Row) -> Result<SlaPolicy> {
    Ok(SlaPolicy {
        id: SlaPolicyId::from_uuid(uuid(&r[0])?),
        name: take_text(&mut r[1])?,
        position: int(&r[2])?,
        conditions: from_json(&r[3])?,
        calendar: CalendarId::from_uuid(uuid(&r[4])?),
        targets: SlaTargets {
            first_response: opt_int(&r[5]),
            next_response: opt_int(&r[6]),
            resolution: opt_int(&r[7]),
        },
        active: int(&r[8])? != 0,
        created_at: timestamp(&r[9])?,
        updated_at: timestamp(&r[10])?,
        version: int(&r[11])? as u64,
    })
}

/// One target of a ticket's SLA, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetView {
    /// Which target.
    pub kind: SlaTargetKind,
    /// The target in business minutes.
    pub target_minutes: i64,
    /// When it is due, if it is unmet and its clock runs.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub due_at: Option<DateTime<Utc>>,
    /// When it was met.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub achieved_at: Option<DateTime<Utc>>,
    /// When it was exceeded, once recorded.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub breached_at: Option<DateTime<Utc>>,
    /// When the sweep warned about it.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub warned_at: Option<DateTime<Utc>>,
    /// Whether its clock is paused (also when it is met or stopped).
    pub paused: bool,
}

/// The SLA of one ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSla {
    /// The ticket.
    pub ticket: TicketId,
    /// The policy that applies, if any.
    pub policy: Option<SlaPolicyId>,
    /// The earliest due instant among running, unmet targets.
    pub next_due_at: Option<DateTime<Utc>>,
    /// The targets the ticket has (first response, next response, resolution order).
    pub targets: Vec<TargetView>,
    /// The full state.
    pub state: SlaState,
    /// The SLA row's version (changes on every SLA change, independently of the ticket's).
    pub version: u64,
    /// Business minutes (rounded down) from creation to the first public agent reply, once
    /// it met the first-response target (`None` otherwise, or without that target).
    pub first_response_minutes: Option<i64>,
    /// Business minutes (rounded down) the resolution clock counted when the ticket was
    /// solved (`None` while unsolved, or without a resolution target).
    pub resolution_minutes: Option<i64>,
}

impl TicketSla {
    /// The target of one kind, if the ticket has it.
    pub fn target(&self, kind: SlaTargetKind) -> Option<&TargetView> {
        self.targets.iter().find(|t| t.kind == kind)
    }
}

/// What a [`Tickets::sweep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Breaches recorded (one `ticket.sla_breached` event each).
    pub breaches: u32,
    /// Warnings recorded (one `ticket.sla_warning` event each).
    pub warnings: u32,
    /// Tickets skipped because another command changed their SLA meanwhile.
    pub conflicts: u32,
}

/// What one page of [`Tickets::recompute_sla`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecomputeReport {
    /// Open (unsolved, not deleted) tickets re-evaluated on this page.
    pub examined: u32,
    /// SLA rows written (inserted or updated).
    pub updated: u32,
    /// Tickets skipped because another command changed their SLA row meanwhile (they
    /// are re-evaluated by the next command on them, or by the next recompute).
    pub conflicts: u32,
    /// The cursor of the next page (`None`: this was the last page).
    pub next_cursor: Option<String>,
}

/// What made a ticket change, for its SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlaTrigger {
    /// A change of the ticket's fields only.
    Change,
    /// A public reply by an agent.
    AgentReply,
    /// A comment by the requester.
    CustomerMessage,
}

const SLA_COLS_BEFORE_TARGETS: usize = 7;
/// Position of `version` in an [`SLA_TABLE`] row; the migration-3 columns follow it.
const SLA_VERSION: usize = SLA_COLS_BEFORE_TARGETS + 9;

/// The business minutes a met target's clock counted (rounded down): the clock is paused
/// when the target is met, so its consumed time is the time counted up to that instant.
fn achieved_minutes(state: &SlaState, kind: SlaTargetKind) -> Option<i64> {
    let t = state.target(kind)?;
    t.achieved_at?;
    Some(t.clock.consumed_seconds().max(0) / 60)
}

fn sla_row(ticket: &Ticket, state: &SlaState, cal: Option<&BusinessCalendar>, version: u64) -> Row {
    let due = |k: SlaTargetKind| cal.and_then(|c| state.target(k).and_then(|t| t.due_at(c)));
    let mut row = vec![
        Value::Uuid(ticket.id.as_uuid()),
        Value::opt_uuid(state.policy),
        Value::opt_uuid(ticket.assignee.map(|u| u.as_uuid())),
        Value::opt_uuid(ticket.queue.map(|q| q.as_uuid())),
        Value::opt_timestamp(ticket.deleted_at),
        json(state),
        Value::opt_timestamp(cal.and_then(|c| state.next_due_at(c))),
    ];
    for k in SlaTargetKind::ALL {
        let t = state.target(k);
        row.push(Value::opt_timestamp(due(k)));
        row.push(Value::opt_timestamp(t.and_then(|t| t.achieved_at)));
        row.push(Value::opt_timestamp(t.and_then(|t| t.breached_at)));
    }
    row.push(Value::Int(version as i64));
    row.push(Value::opt_int(achieved_minutes(
        state,
        SlaTargetKind::FirstResponse,
    )));
    row.push(Value::opt_int(achieved_minutes(
        state,
        SlaTargetKind::Resolution,
    )));
    row.push(Value::timestamp(ticket.created_at));
    row
}

fn decode_sla(r: &Row) -> Result<TicketSla> {
    let state: SlaState = from_json(&r[5])?;
    let mut targets = vec![];
    for (i, k) in SlaTargetKind::ALL.into_iter().enumerate() {
        if let Some(t) = state.target(k) {
            let base = SLA_COLS_BEFORE_TARGETS + 3 * i;
            targets.push(TargetView {
                kind: k,
                target_minutes: t.clock.target_minutes(),
                due_at: opt_timestamp(&r[base])?,
                achieved_at: opt_timestamp(&r[base + 1])?,
                breached_at: opt_timestamp(&r[base + 2])?,
                warned_at: t.warned_at,
                paused: t.clock.is_paused(),
            });
        }
    }
    Ok(TicketSla {
        ticket: TicketId::from_uuid(uuid(&r[0])?),
        policy: r[1].as_uuid().map(SlaPolicyId::from_uuid),
        next_due_at: opt_timestamp(&r[6])?,
        targets,
        state,
        version: int(&r[SLA_VERSION])? as u64,
        first_response_minutes: r.get(SLA_VERSION + 1).and_then(Value::as_int),
        resolution_minutes: r.get(SLA_VERSION + 2).and_then(Value::as_int),
    })
}

/// A calendar that is always working, for tickets without a policy (their state has no
/// clocks, so it is never consulted for time).
fn always() -> Result<BusinessCalendar> {
    let mut b = BusinessCalendar::builder("UTC");
    for d in [
        chrono::Weekday::Mon,
        chrono::Weekday::Tue,
        chrono::Weekday::Wed,
        chrono::Weekday::Thu,
        chrono::Weekday::Fri,
        chrono::Weekday::Sat,
        chrono::Weekday::Sun,
    ] {
        b = b.hours(d, [Interval::all_day()]);
    }
    b.build()
}

fn encode_cursor(due: DateTime<Utc>, id: Uuid) -> String {
    format!("{}:{id}", due.timestamp_micros())
}

fn decode_cursor(c: &str) -> Result<Vec<Value>> {
    let bad = || Error::validation("cursor", "is not an SLA cursor");
    let (micros, id) = c.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(vec![Value::Int(micros), Value::Uuid(id)])
}

/// Whether fields a policy condition reads changed.
fn policy_fields_changed(old: &Ticket, new: &Ticket) -> bool {
    old.priority != new.priority
        || old.channel != new.channel
        || old.organization != new.organization
        || old.custom != new.custom
}

fn check_name(errs: &mut ValidationErrors, name: &str) {
    if let Err(Error::Validation(v)) = check_text("name", name, MAX_SLA_NAME, true) {
        errs.errors.extend(v.errors);
    }
}

fn check_calendar(errs: &mut ValidationErrors, spec: CalendarSpec) -> Option<BusinessCalendar> {
    match BusinessCalendar::new(spec) {
        Ok(c) => Some(c),
        Err(Error::Validation(v)) => {
            errs.errors.extend(v.errors);
            None
        }
        Err(e) => {
            errs.push("calendar", e.to_string());
            None
        }
    }
}

/// The SLA calendars API: a tenant's stored business calendars (configuration: every user
/// reads them, Admin and Manager write). Made by `Crm::sla_calendars`,
/// [`SlaCalendars::new`] or [`Tickets::sla_calendars`].
#[derive(Clone, Debug)]
pub struct SlaCalendars {
    tickets: Tickets,
}

impl SlaCalendars {
    /// The API over a store composed with the tickets module.
    pub fn new(store: &crmkit_core::Store) -> Result<Self> {
        Ok(SlaCalendars {
            tickets: Tickets::new(store)?,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &crmkit_core::Store {
        self.tickets.store()
    }

    /// Stores a new business calendar of the tenant (Admin or Manager; PermissionDenied
    /// otherwise). Validation errors: an empty or over-long `name`, and every error of
    /// [`BusinessCalendar::new`] on the spec (`time_zone`, `hours.<day>[i]`, ...).
    pub async fn create(
        &self,
        ctx: &Ctx,
        name: &str,
        spec: CalendarSpec,
    ) -> Result<StoredCalendar> {
        ctx.actor().require_manage("create calendar")?;
        let mut errs = ValidationErrors::new();
        check_name(&mut errs, name);
        let cal = check_calendar(&mut errs, spec);
        errs.into_result()?;
        let Some(calendar) = cal else {
            return Err(Error::validation("calendar", "invalid"));
        };
        let now = ctx.now();
        let c = StoredCalendar {
            id: CalendarId::new(),
            name: name.to_owned(),
            calendar,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let row = calendar_row(&c);
        service::insert_record(self.store(), ctx, c, row).await
    }

    /// Replaces the name and spec of a stored calendar whose version is
    /// `expected_version` (Conflict otherwise). Validation as in
    /// [`create`](Self::create). Tickets whose clocks count on it count
    /// on the new hours from now on (their consumed time is kept); their stored due
    /// instants are recomputed by their next SLA write or by
    /// [`recompute_sla`](Tickets::recompute_sla).
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: CalendarId,
        expected_version: u64,
        name: &str,
        spec: CalendarSpec,
    ) -> Result<StoredCalendar> {
        ctx.actor().require_manage("update calendar")?;
        let old = self.get(ctx, id).await?;
        let mut errs = ValidationErrors::new();
        check_name(&mut errs, name);
        let cal = check_calendar(&mut errs, spec);
        errs.into_result()?;
        let Some(calendar) = cal else {
            return Err(Error::validation("calendar", "invalid"));
        };
        service::check_version(id, expected_version, old.version)?;
        let mut new = old.clone();
        new.name = name.to_owned();
        new.calendar = calendar;
        let row = |c: &StoredCalendar| Ok(calendar_row(c));
        service::update_record(self.store(), ctx, old, new, "sla_calendar.updated", row).await
    }

    /// The tenant's stored calendars, by name (then id).
    pub async fn all(&self, ctx: &Ctx) -> Result<Vec<StoredCalendar>> {
        let by = ["name", "id"];
        select_sorted(
            self.store(),
            ctx,
            CALENDAR_TABLE,
            Cond::True,
            &by,
            decode_calendar,
        )
        .await
    }
}

crmkit_core::record_verbs! {
    SlaCalendars: StoredCalendar, CalendarId;
    /// A stored calendar of the tenant (NotFound otherwise).
    config_get(decode_calendar);
    /// A page of the tenant's stored calendars (every user may read them): filter and
    /// sort on [`CALENDAR_FIELDS`], keyset-paged. Calendars are never deleted, so
    /// [`Query::include_deleted`](crmkit_core::Query::include_deleted) changes nothing.
    config_list(CALENDAR_FIELDS, decode_calendar);
    /// The audit trail of a stored calendar of the tenant, oldest first.
    config_audit;
}

/// The SLA policies API: which targets apply to which tickets (configuration: every user
/// reads them, Admin and Manager write). Made by `Crm::sla_policies`,
/// [`SlaPolicies::new`] or [`Tickets::sla_policies`].
#[derive(Clone, Debug)]
pub struct SlaPolicies {
    tickets: Tickets,
}

impl SlaPolicies {
    /// The API over a store composed with the tickets module.
    pub fn new(store: &crmkit_core::Store) -> Result<Self> {
        Ok(SlaPolicies {
            tickets: Tickets::new(store)?,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &crmkit_core::Store {
        self.tickets.store()
    }

    async fn check_policy(&self, ctx: &Ctx, p: &NewSlaPolicy) -> Result<()> {
        let mut errs = ValidationErrors::new();
        check_name(&mut errs, &p.name);
        p.targets.check(&mut errs);
        if let Some((key, _)) = &p.conditions.custom
            && key.trim().is_empty()
        {
            errs.push("conditions.custom", "needs a custom field key");
        }
        // References obey the one rule (`Records::visible`): a calendar or organization
        // that does not exist, belongs to another tenant, is deleted or hidden from the
        // actor gives the same error.
        let records = self.store().records();
        if !records.visible(ctx, &RecordRef::from(p.calendar)).await? {
            errs.push("calendar", reference_reason(&CalendarId::kind()));
        }
        for (i, o) in p.conditions.organizations.iter().enumerate() {
            if !records.visible(ctx, &RecordRef::from(*o)).await? {
                errs.push(
                    format!("conditions.organizations[{i}]"),
                    reference_reason(&RecordKind::ORGANIZATION),
                );
            }
        }
        errs.into_result()
    }

    /// Stores a new SLA policy (Admin or Manager; PermissionDenied otherwise). Validation
    /// errors: an empty or over-long `name`; `targets.first_response`,
    /// `targets.next_response`, `targets.resolution` set but not positive; a `calendar`
    /// that is not a stored calendar of the tenant; an organization condition
    /// (`conditions.organizations[i]`) that is not a live organization of the tenant
    /// visible to the actor; a custom-field condition without a key (`conditions.custom`).
    /// References follow [`crmkit_core::record::Records::visible`]: a missing, deleted,
    /// hidden or another tenant's record gives the same error. Existing tickets keep the targets they were given; new and
    /// re-evaluated tickets see the policy (re-evaluate open tickets with
    /// [`recompute_sla`](Tickets::recompute_sla)).
    pub async fn create(&self, ctx: &Ctx, input: NewSlaPolicy) -> Result<SlaPolicy> {
        ctx.actor().require_manage("create SLA policy")?;
        self.check_policy(ctx, &input).await?;
        let now = ctx.now();
        let p = SlaPolicy {
            id: SlaPolicyId::new(),
            name: input.name,
            position: input.position,
            conditions: input.conditions,
            calendar: input.calendar,
            targets: input.targets,
            active: input.active,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let row = policy_row(&p);
        service::insert_record(self.store(), ctx, p, row).await
    }

    /// Replaces every field of a policy whose version is `expected_version` (Conflict
    /// otherwise). Validation as in [`create`](Self::create). Existing
    /// tickets keep the targets they were given until the host calls
    /// [`recompute_sla`](Tickets::recompute_sla) (or a field a policy matches on changes).
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: SlaPolicyId,
        expected_version: u64,
        input: NewSlaPolicy,
    ) -> Result<SlaPolicy> {
        ctx.actor().require_manage("update SLA policy")?;
        let old = self.get(ctx, id).await?;
        self.check_policy(ctx, &input).await?;
        service::check_version(id, expected_version, old.version)?;
        let new = SlaPolicy {
            name: input.name,
            position: input.position,
            conditions: input.conditions,
            calendar: input.calendar,
            targets: input.targets,
            active: input.active,
            ..old.clone()
        };
        let row = |p: &SlaPolicy| Ok(policy_row(p));
        service::update_record(self.store(), ctx, old, new, "sla_policy.updated", row).await
    }

    /// The tenant's policies in evaluation order (position, then id), inactive ones
    /// included.
    pub async fn all(&self, ctx: &Ctx) -> Result<Vec<SlaPolicy>> {
        let by = ["position", "id"];
        select_sorted(
            self.store(),
            ctx,
            POLICY_TABLE,
            Cond::True,
            &by,
            decode_policy,
        )
        .await
    }
}

crmkit_core::record_verbs! {
    SlaPolicies: SlaPolicy, SlaPolicyId;
    /// A policy of the tenant (NotFound otherwise).
    config_get(decode_policy);
    /// A page of the tenant's SLA policies (every user may read them): filter and sort on
    /// [`POLICY_FIELDS`], keyset-paged. Policies are never deleted (deactivate them), so
    /// [`Query::include_deleted`](crmkit_core::Query::include_deleted) changes nothing.
    config_list(POLICY_FIELDS, decode_policy);
    /// The audit trail of an SLA policy of the tenant, oldest first.
    config_audit;
}

impl Tickets {
    /// The SLA calendars API over the same store.
    pub fn sla_calendars(&self) -> SlaCalendars {
        SlaCalendars {
            tickets: self.clone(),
        }
    }

    /// The SLA policies API over the same store.
    pub fn sla_policies(&self) -> SlaPolicies {
        SlaPolicies {
            tickets: self.clone(),
        }
    }
}

impl Tickets {
    /// The policy that applies to a ticket: the first active one in evaluation order
    /// whose conditions match (see [`policy_for`]).
    pub async fn policy_for(&self, ctx: &Ctx, t: &Ticket) -> Result<Option<SlaPolicy>> {
        let all = self.sla_policies().all(ctx).await?;
        Ok(policy_for(&all, t).cloned())
    }

    async fn business_calendar(
        &self,
        ctx: &Ctx,
        cache: &mut HashMap<CalendarId, BusinessCalendar>,
        id: Option<CalendarId>,
    ) -> Result<BusinessCalendar> {
        let Some(id) = id else {
            return always();
        };
        if let Some(c) = cache.get(&id) {
            return Ok(c.clone());
        }
        let c = match self.sla_calendars().get(ctx, id).await {
            Ok(c) => c.calendar,
            Err(Error::NotFound { .. }) => return Err(no_calendar()),
            Err(e) => return Err(e),
        };
        cache.insert(id, c.clone());
        Ok(c)
    }

    // ----- per-ticket state -----

    /// The SLA of a ticket visible to the actor (`None`: it never had a policy).
    pub async fn sla(&self, ctx: &Ctx, id: TicketId) -> Result<Option<TicketSla>> {
        self.get(ctx, id).await?;
        let row = self
            .store()
            .backend()
            .get(ctx.tenant(), SLA_TABLE, &[Value::Uuid(id.as_uuid())])
            .await?;
        row.as_ref().map(decode_sla).transpose()
    }

    /// The SLA rows of tickets the caller has already found visible, by ticket (tickets
    /// without a row are absent).
    pub(crate) async fn sla_rows(
        &self,
        ctx: &Ctx,
        ids: &[TicketId],
    ) -> Result<HashMap<TicketId, TicketSla>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let s = Select::new(
            SLA_TABLE,
            Cond::In(
                "ticket_id".into(),
                ids.iter().map(|t| Value::Uuid(t.as_uuid())).collect(),
            ),
        );
        let rows = service::select_rows(self.store(), ctx, &s, |r| decode_sla(&r)).await?;
        Ok(rows.into_iter().map(|t| (t.ticket, t)).collect())
    }

    /// **The SLA extension point.** Every command that writes a ticket calls this with the
    /// ticket before (`None` when it is being created) and after the change, and what
    /// triggered it (a field change, a public agent reply, a requester message), while the
    /// command's changeset is still being built, so that the SLA state the change implies
    /// (see [`crate::sla`]) is committed atomically with it: the policy is picked on
    /// creation and re-evaluated when a field a policy matches on changes (priority,
    /// channel, organization, custom values); clocks start, pause, resume, are met and
    /// stop by the rules of [`crate::sla`]; newly recorded breaches emit
    /// `ticket.sla_breached`. The per-ticket SLA row is written with a versioned update
    /// (a concurrent sweep makes the command fail with a Conflict, which `comment`
    /// retries).
    ///
    /// It also keeps the ticket's satisfaction ratings in step: when the assignee, the
    /// queue or the deletion changes, every rating row of the ticket gets the new values
    /// (one `UpdateWhere` on the ticket's ratings, keyed by ticket), so that the
    /// satisfaction statistics are scoped like the ticket (see [`crate::rows`]).
    pub(crate) async fn stage_sla(
        &self,
        ctx: &Ctx,
        cs: &mut Changeset,
        old: Option<&Ticket>,
        new: &Ticket,
        trigger: SlaTrigger,
    ) -> Result<()> {
        if let Some(o) = old
            && new.solve_count > 0
            && (o.assignee != new.assignee
                || o.queue != new.queue
                || o.deleted_at != new.deleted_at)
        {
            cs.writes.push(Write::UpdateWhere {
                table: SATISFACTION_TABLE,
                cond: Cond::eq("ticket_id", new.id.as_uuid()),
                set: crate::rows::rating_scope(new),
            });
        }
        let now = ctx.now();
        let b = self.store().backend();
        let existing = b
            .get(ctx.tenant(), SLA_TABLE, &[Value::Uuid(new.id.as_uuid())])
            .await?
            .as_ref()
            .map(decode_sla)
            .transpose()?;
        let mut events = vec![];
        let mut state = match (&existing, old) {
            (Some(e), _) => e.state.clone(),
            (None, Some(o)) => SlaState {
                status: o.status,
                deleted: o.deleted_at.is_some(),
                responded: o.first_response_at.is_some(),
                ..SlaState::default()
            },
            (None, None) => SlaState::default(),
        };
        match old {
            None => {
                let p = self.policy_for(ctx, new).await?;
                events.push(SlaEvent::Created {
                    policy: p.as_ref().map(|p| p.id),
                    calendar: p.as_ref().map(|p| p.calendar),
                    targets: p.map(|p| p.targets).unwrap_or_default(),
                });
            }
            Some(o) => {
                if o.deleted_at.is_some() != new.deleted_at.is_some() {
                    events.push(if new.deleted_at.is_some() {
                        SlaEvent::Deleted
                    } else {
                        SlaEvent::Restored
                    });
                }
                if policy_fields_changed(o, new) {
                    let p = self.policy_for(ctx, new).await?;
                    events.push(SlaEvent::Retarget {
                        policy: p.as_ref().map(|p| p.id),
                        calendar: p.as_ref().map(|p| p.calendar),
                        targets: p.map(|p| p.targets).unwrap_or_default(),
                    });
                }
                if o.status != new.status {
                    events.push(SlaEvent::Status(new.status));
                }
            }
        }
        match trigger {
            SlaTrigger::Change => {}
            SlaTrigger::AgentReply => events.push(SlaEvent::AgentReply),
            SlaTrigger::CustomerMessage => events.push(SlaEvent::CustomerMessage),
        }
        let mut cache = HashMap::new();
        let before = state.clone();
        let mut cal = self
            .business_calendar(ctx, &mut cache, state.calendar)
            .await?;
        for e in &events {
            if let SlaEvent::Retarget { calendar, .. } | SlaEvent::Created { calendar, .. } = e {
                // Validates the new calendar before the event is applied.
                self.business_calendar(ctx, &mut cache, *calendar).await?;
            }
            state.apply(&cal, e, now)?;
            if let SlaEvent::Retarget { .. } | SlaEvent::Created { .. } = e {
                cal = self
                    .business_calendar(ctx, &mut cache, state.calendar)
                    .await?;
            }
        }
        let mirror_changed = existing.is_some()
            && old.is_some_and(|o| {
                o.assignee != new.assignee || o.queue != new.queue || o.deleted_at != new.deleted_at
            });
        if state == before && !mirror_changed {
            return Ok(());
        }
        if existing.is_none() && state.policy.is_none() {
            return Ok(());
        }
        let record = RecordRef::from(new.id);
        for k in SlaTargetKind::ALL {
            let was = before.target(k).and_then(|t| t.breached_at);
            if let Some(t) = state.target(k)
                && t.breached_at.is_some()
                && was.is_none()
            {
                cs.events.push(NewEvent::new(
                    "ticket.sla_breached",
                    record.clone(),
                    vec!["sla".into()],
                    serde_json::json!({ "target": k.as_str(), "breached_at": t.breached_at, "policy": state.policy }),
                ));
            }
        }
        let cal_ref = state.calendar.map(|_| &cal);
        match &existing {
            None => cs.writes.push(Write::Insert {
                table: SLA_TABLE,
                row: sla_row(new, &state, cal_ref, 1),
            }),
            Some(e) => {
                let def = b.schema().table(SLA_TABLE)?;
                let old_row = sla_row(old.unwrap_or(new), &e.state, cal_ref, e.version);
                let mut set = crmkit_core::service::changed_columns(
                    def,
                    &old_row,
                    &sla_row(new, &state, cal_ref, e.version),
                );
                // The stored due columns may have been computed on another calendar
                // version: always rewrite them.
                let fresh = sla_row(new, &state, cal_ref, e.version);
                for (i, c) in def.columns.iter().enumerate() {
                    // `created_at` too: rows written before migration 3 lack it.
                    let always = c.name.ends_with("due_at") || c.name == "created_at";
                    if always && !set.iter().any(|(n, _)| *n == c.name) {
                        set.push((c.name, fresh[i].clone()));
                    }
                }
                cs.writes.push(Write::Update {
                    table: SLA_TABLE,
                    key: vec![Value::Uuid(new.id.as_uuid())],
                    set,
                    expect_version: Some(e.version),
                    record: record.clone(),
                });
            }
        }
        if state != before {
            cs.audit.push(AuditChange {
                record,
                field: "sla".into(),
                old: existing
                    .as_ref()
                    .map(|_| crmkit_core::service::json_text(&before)),
                new: Some(crmkit_core::service::json_text(&state)),
            });
        }
        Ok(())
    }

    // ----- queries -----

    async fn due_page(
        &self,
        ctx: &Ctx,
        cond: Cond,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<TicketSla>> {
        crmkit_core::query::check_limit(limit)?;
        let mut s = Select::new(SLA_TABLE, visibility_scope(ctx, false).and(cond));
        s.order = vec![OrderKey::asc("next_due_at"), OrderKey::asc("ticket_id")];
        if let Some(c) = &cursor {
            s.after = Some(decode_cursor(c)?);
        }
        let decode = |r: Row| decode_sla(&r);
        let cursor_of = |t: &TicketSla| Some(encode_cursor(t.next_due_at?, t.ticket.as_uuid()));
        service::select_page(self.store(), ctx, s, limit, decode, cursor_of).await
    }

    /// Tickets visible to the actor (and not deleted) with a running, unmet SLA target due
    /// at or before `now` (so exceeded, or reached exactly at `now`), by due instant then
    /// ticket id, keyset-paged (`cursor`: a previous page's `next_cursor`; `limit` 1 to
    /// [`crmkit_core::query::MAX_LIMIT`]). A range of the `(next_due_at, ticket_id)` index.
    pub async fn breached(
        &self,
        ctx: &Ctx,
        now: DateTime<Utc>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<TicketSla>> {
        let cond = Cond::Cmp("next_due_at".into(), CmpOp::Lte, Value::timestamp(now));
        self.due_page(ctx, cond, cursor, limit).await
    }

    /// Tickets visible to the actor whose earliest running, unmet target is due in
    /// `(now, now + window]`, by due instant then ticket id, keyset-paged as
    /// [`breached`](Self::breached). A negative `window` is a Validation error (`window`).
    pub async fn at_risk(
        &self,
        ctx: &Ctx,
        now: DateTime<Utc>,
        window: TimeDelta,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<TicketSla>> {
        let until = window_end(now, window)?;
        let cond = Cond::Cmp("next_due_at".into(), CmpOp::Gt, Value::timestamp(now)).and(
            Cond::Cmp("next_due_at".into(), CmpOp::Lte, Value::timestamp(until)),
        );
        self.due_page(ctx, cond, cursor, limit).await
    }

    /// Records breaches and warnings as of `now`, each exactly once: every unmet target
    /// whose clock passed its due instant before `now` gets `breached_at` and one
    /// `ticket.sla_breached` event; every unmet, unbreached, unwarned running target due
    /// in `(now, now + window]` gets `warned_at = now` and one `ticket.sla_warning` event.
    ///
    /// A system task over every ticket of the tenant (visibility does not apply; the
    /// actor must be allowed to write). Each ticket is committed on its own with a
    /// versioned update of its SLA row: when a concurrent sweep or command changed it
    /// first, that ticket is skipped (counted in [`SweepReport::conflicts`]; whatever
    /// was left to record is recorded by the next sweep or the next command). A target a
    /// reply met before its due instant is never reported.
    pub async fn sweep(
        &self,
        ctx: &Ctx,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) -> Result<SweepReport> {
        ctx.actor().require_write("sweep SLA")?;
        let until = window_end(now, window)?;
        let b = self.store().backend();
        let mut report = SweepReport::default();
        let mut cache = HashMap::new();
        let mut after: Option<Vec<Value>> = None;
        loop {
            let mut s = Select::new(
                SLA_TABLE,
                Cond::IsNull("deleted_at".into()).and(Cond::Cmp(
                    "next_due_at".into(),
                    CmpOp::Lte,
                    Value::timestamp(until),
                )),
            );
            s.order = vec![OrderKey::asc("next_due_at"), OrderKey::asc("ticket_id")];
            s.after = after.clone();
            s.limit = Some(200);
            let rows = b.select(ctx.tenant(), &s).await?;
            let Some(last) = rows.last() else { break };
            after = Some(vec![last[6].clone(), last[0].clone()]);
            let full = rows.len() == 200;
            for r in &rows {
                let sla = decode_sla(r)?;
                let cal = self
                    .business_calendar(ctx, &mut cache, sla.state.calendar)
                    .await?;
                let mut state = sla.state.clone();
                let breached = state.settle(&cal, now);
                let mut warned = vec![];
                for k in SlaTargetKind::ALL {
                    if let Some(t) = state.target_mut(k)
                        && t.breached_at.is_none()
                        && t.warned_at.is_none()
                        && t.due_at(&cal).is_some_and(|d| d > now && d <= until)
                    {
                        t.warned_at = Some(now);
                        warned.push(k);
                    }
                }
                if breached.is_empty() && warned.is_empty() {
                    continue;
                }
                let record = RecordRef::from(sla.ticket);
                let mut cs = Changeset::new(ctx);
                let def = b.schema().table(SLA_TABLE)?;
                let mut new_row = r.clone();
                new_row[5] = json(&state);
                for (i, k) in SlaTargetKind::ALL.into_iter().enumerate() {
                    new_row[SLA_COLS_BEFORE_TARGETS + 3 * i + 2] =
                        Value::opt_timestamp(state.target(k).and_then(|t| t.breached_at));
                }
                cs.writes.push(Write::Update {
                    table: SLA_TABLE,
                    key: vec![Value::Uuid(sla.ticket.as_uuid())],
                    set: crmkit_core::service::changed_columns(def, r, &new_row),
                    expect_version: Some(sla.version),
                    record: record.clone(),
                });
                for k in &breached {
                    let at = state.target(*k).and_then(|t| t.breached_at);
                    cs.events.push(NewEvent::new(
                        "ticket.sla_breached",
                        record.clone(),
                        vec!["sla".into()],
                        serde_json::json!({ "target": k.as_str(), "breached_at": at, "policy": state.policy }),
                    ));
                }
                for k in &warned {
                    let due = state.target(*k).and_then(|t| t.due_at(&cal));
                    cs.events.push(NewEvent::new(
                        "ticket.sla_warning",
                        record.clone(),
                        vec!["sla".into()],
                        serde_json::json!({ "target": k.as_str(), "due_at": due, "policy": state.policy }),
                    ));
                }
                cs.audit.push(AuditChange {
                    record,
                    field: "sla".into(),
                    old: Some(crmkit_core::service::json_text(&sla.state)),
                    new: Some(crmkit_core::service::json_text(&state)),
                });
                match self.store().commit(cs).await {
                    Ok(_) => {
                        report.breaches += breached.len() as u32;
                        report.warnings += warned.len() as u32;
                    }
                    Err(Error::Conflict { .. }) => report.conflicts += 1,
                    Err(e) => return Err(e),
                }
            }
            if !full {
                break;
            }
        }
        Ok(report)
    }
}

fn window_end(now: DateTime<Utc>, window: TimeDelta) -> Result<DateTime<Utc>> {
    if window < TimeDelta::zero() {
        return Err(Error::validation("window", "must not be negative"));
    }
    now.checked_add_signed(window)
        .ok_or_else(|| Error::validation("window", "is too large"))
}

/// `status IN (unsolved) AND deleted_at IS NULL` on [`TICKET_TABLE`].
pub(crate) fn open_tickets() -> Cond {
    Cond::In(
        "status".into(),
        TicketStatus::UNSOLVED
            .iter()
            .map(|s| Value::Text(s.as_str().into()))
            .collect(),
    )
    .and(Cond::IsNull("deleted_at".into()))
}

/// The writes, events and audit entries of one ticket's recomputed SLA.
struct Staged {
    record: RecordRef,
    insert: bool,
    write: Write,
    events: Vec<NewEvent>,
    audit: Option<AuditChange>,
}

impl Tickets {
    /// Re-evaluates the SLA of one page of open tickets against the current policies and
    /// calendars (Admin or Manager; PermissionDenied otherwise). A host calls it, page
    /// after page, after editing a policy or a calendar: [`SlaPolicies::update`]
    /// and [`SlaCalendars::update`] do not touch existing tickets.
    ///
    /// Pages are keyset-paged by ticket id: with `policy` `None` over every open (unsolved,
    /// not deleted) ticket of the tenant (the tickets table's primary key); with
    /// `Some(p)` over the tickets whose SLA row is currently under `p` (the
    /// `(policy_id, ticket_id)` index of [`SLA_TABLE`]; solved ones on the page are
    /// skipped). `cursor` is a previous page's [`RecomputeReport::next_cursor`]; `limit`
    /// is 1 to [`crmkit_core::query::MAX_LIMIT`] (Validation errors on `limit`, `cursor`).
    ///
    /// Each ticket gets the rule a priority change applies ([`SlaEvent::Retarget`] with
    /// [`policy_for`]'s answer): a target kind kept keeps the business time consumed with
    /// the new target ([`crate::clock::SlaClock::retarget`]), a new kind starts now, a
    /// dropped kind is removed; due instants are recomputed on the current calendar.
    /// Solved, closed and deleted tickets are never touched. Only rows that change are
    /// written (versioned), with their `sla` audit entry and a `ticket.sla_breached`
    /// event per target the re-evaluation found breached, all in one changeset per page.
    /// A row another command changed meanwhile is skipped and counted in
    /// [`RecomputeReport::conflicts`] (the rest of the page is committed). Running it
    /// again with nothing changed updates nothing.
    pub async fn recompute_sla(
        &self,
        ctx: &Ctx,
        policy: Option<SlaPolicyId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<RecomputeReport> {
        ctx.actor().require_manage("recompute SLA")?;
        crmkit_core::query::check_limit(limit)?;
        let after = cursor
            .as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| Error::validation("cursor", "is not a recompute cursor"))?;
        let b = self.store().backend();
        let (tickets, next_cursor) = match policy {
            None => {
                let mut s = Select::new(TICKET_TABLE, open_tickets());
                s.order = vec![OrderKey::asc("id")];
                s.after = after.map(|u| vec![Value::Uuid(u)]);
                let cursor_of = |t: &Ticket| Some(t.id.as_uuid().to_string());
                let page = service::select_page(
                    self.store(),
                    ctx,
                    s,
                    limit,
                    crate::rows::decode_ticket,
                    cursor_of,
                )
                .await?;
                (page.items, page.next_cursor)
            }
            Some(p) => {
                let mut s = Select::new(
                    SLA_TABLE,
                    Cond::eq("policy_id", p.as_uuid()).and(Cond::IsNull("deleted_at".into())),
                );
                s.order = vec![OrderKey::asc("ticket_id")];
                s.after = after.map(|u| vec![Value::Uuid(u)]);
                let first = |mut r: Row| Ok(std::mem::replace(&mut r[0], Value::Null));
                let cursor_of = |id: &Value| id.as_uuid().map(|u| u.to_string());
                let page =
                    service::select_page(self.store(), ctx, s, limit, first, cursor_of).await?;
                let (ids, next) = (page.items, page.next_cursor);
                let mut tickets = if ids.is_empty() {
                    vec![]
                } else {
                    let s =
                        Select::new(TICKET_TABLE, Cond::In("id".into(), ids).and(open_tickets()));
                    b.select(ctx.tenant(), &s)
                        .await?
                        .into_iter()
                        .map(crate::rows::decode_ticket)
                        .collect::<Result<Vec<_>>>()?
                };
                tickets.sort_by_key(|t| t.id.as_uuid());
                (tickets, next)
            }
        };
        let mut report = RecomputeReport {
            examined: tickets.len() as u32,
            next_cursor,
            ..RecomputeReport::default()
        };
        if tickets.is_empty() {
            return Ok(report);
        }
        let ids: Vec<Value> = tickets
            .iter()
            .map(|t| Value::Uuid(t.id.as_uuid()))
            .collect();
        let stored: HashMap<Uuid, Row> = b
            .select(
                ctx.tenant(),
                &Select::new(SLA_TABLE, Cond::In("ticket_id".into(), ids)),
            )
            .await?
            .into_iter()
            .filter_map(|r| Some((r[0].as_uuid()?, r)))
            .collect();
        let policies = self.sla_policies().all(ctx).await?;
        let def = b.schema().table(SLA_TABLE)?;
        let now = ctx.now();
        let mut cache = HashMap::new();
        let mut staged = vec![];
        for t in &tickets {
            let row = stored.get(&t.id.as_uuid());
            let existing = row.map(decode_sla).transpose()?;
            let p = policy_for(&policies, t);
            let mut state = match &existing {
                Some(e) => e.state.clone(),
                None if p.is_none() => continue,
                None => SlaState {
                    status: t.status,
                    deleted: false,
                    responded: t.first_response_at.is_some(),
                    ..SlaState::default()
                },
            };
            let before = state.clone();
            let old_cal = self
                .business_calendar(ctx, &mut cache, state.calendar)
                .await?;
            // Validates the new calendar before the event is applied.
            self.business_calendar(ctx, &mut cache, p.map(|p| p.calendar))
                .await?;
            state.apply(
                &old_cal,
                &SlaEvent::Retarget {
                    policy: p.map(|p| p.id),
                    calendar: p.map(|p| p.calendar),
                    targets: p.map(|p| p.targets).unwrap_or_default(),
                },
                now,
            )?;
            let cal = self
                .business_calendar(ctx, &mut cache, state.calendar)
                .await?;
            let cal_ref = state.calendar.map(|_| &cal);
            let record = RecordRef::from(t.id);
            let (insert, write) = match (&existing, row) {
                (Some(e), Some(r)) => {
                    let new_row = sla_row(t, &state, cal_ref, e.version);
                    let set = crmkit_core::service::changed_columns(def, r, &new_row);
                    if set.is_empty() {
                        continue;
                    }
                    (
                        false,
                        Write::Update {
                            table: SLA_TABLE,
                            key: vec![Value::Uuid(t.id.as_uuid())],
                            set,
                            expect_version: Some(e.version),
                            record: record.clone(),
                        },
                    )
                }
                _ => (
                    true,
                    Write::Insert {
                        table: SLA_TABLE,
                        row: sla_row(t, &state, cal_ref, 1),
                    },
                ),
            };
            let mut events = vec![];
            for k in SlaTargetKind::ALL {
                let was = before.target(k).and_then(|t| t.breached_at);
                if let Some(target) = state.target(k)
                    && target.breached_at.is_some()
                    && was.is_none()
                {
                    events.push(NewEvent::new(
                        "ticket.sla_breached",
                        record.clone(),
                        vec!["sla".into()],
                        serde_json::json!({ "target": k.as_str(), "breached_at": target.breached_at, "policy": state.policy }),
                    ));
                }
            }
            let audit = (state != before).then(|| AuditChange {
                record: record.clone(),
                field: "sla".into(),
                old: existing
                    .as_ref()
                    .map(|_| crmkit_core::service::json_text(&before)),
                new: Some(crmkit_core::service::json_text(&state)),
            });
            staged.push(Staged {
                record,
                insert,
                write,
                events,
                audit,
            });
        }
        // One changeset for the page; a ticket whose row changed meanwhile is dropped from
        // it and the rest is committed again.
        while !staged.is_empty() {
            let mut cs = Changeset::new(ctx);
            for s in &staged {
                cs.writes.push(s.write.clone());
                cs.events.extend(s.events.iter().cloned());
                cs.audit.extend(s.audit.iter().cloned());
            }
            match self.store().commit(cs).await {
                Ok(_) => {
                    report.updated = staged.len() as u32;
                    break;
                }
                Err(Error::Conflict { record, .. })
                    if staged.iter().any(|s| !s.insert && s.record == record) =>
                {
                    staged.retain(|s| s.insert || s.record != record);
                    report.conflicts += 1;
                }
                // A concurrent command inserted a row this page meant to insert: skip the
                // inserts (the command evaluated the current policies itself).
                Err(Error::Duplicate { .. }) if staged.iter().any(|s| s.insert) => {
                    report.conflicts += staged.iter().filter(|s| s.insert).count() as u32;
                    staged.retain(|s| !s.insert);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
