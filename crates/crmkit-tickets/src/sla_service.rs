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

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use crmkit_core::row::{from_json, int, json, opt_timestamp, take_text, timestamp, uuid};
use crmkit_core::service::{diff, stage_created, to_json, visibility_scope};
use crmkit_core::store::{
    CmpOp, ColumnType, Cond, IndexDef, OrderKey, Row, Select, TableDef, Value, Write, columns,
};
use crmkit_core::text::check_text;
use crmkit_core::{
    AuditChange, Changeset, Ctx, Error, NewEvent, Page, RecordKind, RecordRef, Result, Role,
    TicketId, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::calendar::{BusinessCalendar, CalendarSpec, Interval};
use crate::model::Ticket;
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

/// Record kind of stored calendars (audit, events, errors).
pub const CALENDAR: RecordKind = RecordKind::new("sla_calendar");
/// Record kind of SLA policies.
pub const POLICY: RecordKind = RecordKind::new("sla_policy");

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

fn order(column: &str) -> OrderKey {
    OrderKey {
        column: column.into(),
        desc: false,
        null_as: None,
        custom: None,
    }
}

fn opt_int(v: &Value) -> Option<i64> {
    v.as_int()
}

fn manages(ctx: &Ctx) -> Result<()> {
    if ctx.actor().has(Role::Admin) || ctx.actor().has(Role::Manager) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            "only admins and managers change calendars and SLA policies".into(),
        ))
    }
}

fn calendar_row(c: &StoredCalendar) -> Row {
    vec![
        Value::Uuid(c.id),
        Value::Text(c.name.clone()),
        json(&c.calendar),
        Value::timestamp(c.created_at),
        Value::timestamp(c.updated_at),
        Value::Int(c.version as i64),
    ]
}

fn decode_calendar(mut r: Row) -> Result<StoredCalendar> {
    Ok(StoredCalendar {
        id: uuid(&r[0])?,
        name: take_text(&mut r[1])?,
        calendar: from_json(&r[2])?,
        created_at: timestamp(&r[3])?,
        updated_at: timestamp(&r[4])?,
        version: int(&r[5])? as u64,
    })
}

fn policy_row(p: &SlaPolicy) -> Row {
    vec![
        Value::Uuid(p.id),
        Value::Text(p.name.clone()),
        Value::Int(p.position),
        json(&p.conditions),
        Value::Uuid(p.calendar),
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
        id: uuid(&r[0])?,
        name: take_text(&mut r[1])?,
        position: int(&r[2])?,
        conditions: from_json(&r[3])?,
        calendar: uuid(&r[4])?,
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
    pub due_at: Option<DateTime<Utc>>,
    /// When it was met.
    pub achieved_at: Option<DateTime<Utc>>,
    /// When it was exceeded, once recorded.
    pub breached_at: Option<DateTime<Utc>>,
    /// When the sweep warned about it.
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
    pub policy: Option<Uuid>,
    /// The earliest due instant among running, unmet targets.
    pub next_due_at: Option<DateTime<Utc>>,
    /// The targets the ticket has (first response, next response, resolution order).
    pub targets: Vec<TargetView>,
    /// The full state.
    pub state: SlaState,
    /// The SLA row's version (changes on every SLA change, independently of the ticket's).
    pub version: u64,
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
        policy: r[1].as_uuid(),
        next_due_at: opt_timestamp(&r[6])?,
        targets,
        state,
        version: int(&r[SLA_COLS_BEFORE_TARGETS + 9])? as u64,
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

impl Tickets {
    // ----- calendars -----

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

    /// Stores a new business calendar of the tenant (Admin or Manager; PermissionDenied
    /// otherwise). Validation errors: an empty or over-long `name`, and every error of
    /// [`BusinessCalendar::new`] on the spec (`time_zone`, `hours.<day>[i]`, ...).
    pub async fn create_calendar(
        &self,
        ctx: &Ctx,
        name: &str,
        spec: CalendarSpec,
    ) -> Result<StoredCalendar> {
        manages(ctx)?;
        let mut errs = ValidationErrors::new();
        Self::check_name(&mut errs, name);
        let cal = Self::check_calendar(&mut errs, spec);
        errs.into_result()?;
        let Some(calendar) = cal else {
            return Err(Error::validation("calendar", "invalid"));
        };
        let now = ctx.now();
        let c = StoredCalendar {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            calendar,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: CALENDAR_TABLE,
            row: calendar_row(&c),
        });
        stage_created(&mut cs, RecordRef::new(CALENDAR, c.id), "sla_calendar", &c);
        self.store().commit(cs).await?;
        Ok(c)
    }

    /// Replaces the name and spec of a stored calendar whose version is
    /// `expected_version` (Conflict otherwise). Validation as in
    /// [`create_calendar`](Self::create_calendar). Tickets whose clocks count on it count
    /// on the new hours from now on (their consumed time is kept).
    pub async fn update_calendar(
        &self,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        name: &str,
        spec: CalendarSpec,
    ) -> Result<StoredCalendar> {
        manages(ctx)?;
        let old = self.calendar(ctx, id).await?;
        let mut errs = ValidationErrors::new();
        Self::check_name(&mut errs, name);
        let cal = Self::check_calendar(&mut errs, spec);
        errs.into_result()?;
        let Some(calendar) = cal else {
            return Err(Error::validation("calendar", "invalid"));
        };
        let record = RecordRef::new(CALENDAR, id);
        if old.version != expected_version {
            return Err(Error::Conflict {
                record,
                expected: expected_version,
                actual: old.version,
            });
        }
        let mut new = old.clone();
        new.name = name.to_owned();
        new.calendar = calendar;
        if new == old {
            return Ok(old);
        }
        new.updated_at = ctx.now();
        new.version += 1;
        let def = self.store().backend().schema().table(CALENDAR_TABLE)?;
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Update {
            table: CALENDAR_TABLE,
            key: vec![Value::Uuid(id)],
            set: crmkit_core::service::changed_columns(
                def,
                &calendar_row(&old),
                &calendar_row(&new),
            ),
            expect_version: Some(old.version),
            record: record.clone(),
        });
        let (audit, changed) = diff(
            &record,
            &to_json(&old),
            &to_json(&new),
            &["updated_at", "version"],
        );
        cs.audit.extend(audit);
        cs.events.push(NewEvent::new(
            "sla_calendar.updated",
            record,
            changed,
            to_json(&new),
        ));
        self.store().commit(cs).await?;
        Ok(new)
    }

    /// A stored calendar of the tenant (NotFound otherwise).
    pub async fn calendar(&self, ctx: &Ctx, id: Uuid) -> Result<StoredCalendar> {
        let row = self
            .store()
            .backend()
            .get(ctx.tenant(), CALENDAR_TABLE, &[Value::Uuid(id)])
            .await?
            .ok_or_else(|| Error::not_found(CALENDAR, id))?;
        decode_calendar(row)
    }

    /// The tenant's stored calendars, by name (then id).
    pub async fn calendars(&self, ctx: &Ctx) -> Result<Vec<StoredCalendar>> {
        let mut s = Select::new(CALENDAR_TABLE, Cond::True);
        s.order = vec![order("name"), order("id")];
        self.store()
            .backend()
            .select(ctx.tenant(), &s)
            .await?
            .into_iter()
            .map(decode_calendar)
            .collect()
    }

    // ----- policies -----

    async fn check_policy(&self, ctx: &Ctx, p: &NewSlaPolicy) -> Result<()> {
        let mut errs = ValidationErrors::new();
        Self::check_name(&mut errs, &p.name);
        p.targets.check(&mut errs);
        if let Some((key, _)) = &p.conditions.custom
            && key.trim().is_empty()
        {
            errs.push("conditions.custom", "needs a custom field key");
        }
        match self.calendar(ctx, p.calendar).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {
                errs.push("calendar", "is not a stored calendar of this tenant")
            }
            Err(e) => return Err(e),
        }
        errs.into_result()
    }

    /// Stores a new SLA policy (Admin or Manager; PermissionDenied otherwise). Validation
    /// errors: an empty or over-long `name`; `targets.first_response`,
    /// `targets.next_response`, `targets.resolution` set but not positive; a `calendar`
    /// that is not a stored calendar of the tenant; a custom-field condition without a key
    /// (`conditions.custom`). Existing tickets keep the targets they were given; new and
    /// re-evaluated tickets see the policy.
    pub async fn create_policy(&self, ctx: &Ctx, input: NewSlaPolicy) -> Result<SlaPolicy> {
        manages(ctx)?;
        self.check_policy(ctx, &input).await?;
        let now = ctx.now();
        let p = SlaPolicy {
            id: Uuid::now_v7(),
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
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: POLICY_TABLE,
            row: policy_row(&p),
        });
        stage_created(&mut cs, RecordRef::new(POLICY, p.id), "sla_policy", &p);
        self.store().commit(cs).await?;
        Ok(p)
    }

    /// Replaces every field of a policy whose version is `expected_version` (Conflict
    /// otherwise). Validation as in [`create_policy`](Self::create_policy).
    pub async fn update_policy(
        &self,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        input: NewSlaPolicy,
    ) -> Result<SlaPolicy> {
        manages(ctx)?;
        let old = self.policy(ctx, id).await?;
        self.check_policy(ctx, &input).await?;
        let record = RecordRef::new(POLICY, id);
        if old.version != expected_version {
            return Err(Error::Conflict {
                record,
                expected: expected_version,
                actual: old.version,
            });
        }
        let mut new = SlaPolicy {
            name: input.name,
            position: input.position,
            conditions: input.conditions,
            calendar: input.calendar,
            targets: input.targets,
            active: input.active,
            ..old.clone()
        };
        if new == old {
            return Ok(old);
        }
        new.updated_at = ctx.now();
        new.version += 1;
        let def = self.store().backend().schema().table(POLICY_TABLE)?;
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Update {
            table: POLICY_TABLE,
            key: vec![Value::Uuid(id)],
            set: crmkit_core::service::changed_columns(def, &policy_row(&old), &policy_row(&new)),
            expect_version: Some(old.version),
            record: record.clone(),
        });
        let (audit, changed) = diff(
            &record,
            &to_json(&old),
            &to_json(&new),
            &["updated_at", "version"],
        );
        cs.audit.extend(audit);
        cs.events.push(NewEvent::new(
            "sla_policy.updated",
            record,
            changed,
            to_json(&new),
        ));
        self.store().commit(cs).await?;
        Ok(new)
    }

    /// A policy of the tenant (NotFound otherwise).
    pub async fn policy(&self, ctx: &Ctx, id: Uuid) -> Result<SlaPolicy> {
        let row = self
            .store()
            .backend()
            .get(ctx.tenant(), POLICY_TABLE, &[Value::Uuid(id)])
            .await?
            .ok_or_else(|| Error::not_found(POLICY, id))?;
        decode_policy(row)
    }

    /// The tenant's policies in evaluation order (position, then id), inactive ones
    /// included.
    pub async fn policies(&self, ctx: &Ctx) -> Result<Vec<SlaPolicy>> {
        let mut s = Select::new(POLICY_TABLE, Cond::True);
        s.order = vec![order("position"), order("id")];
        self.store()
            .backend()
            .select(ctx.tenant(), &s)
            .await?
            .into_iter()
            .map(decode_policy)
            .collect()
    }

    /// The policy that applies to a ticket: the first active one in evaluation order
    /// whose conditions match (see [`policy_for`]).
    pub async fn policy_for(&self, ctx: &Ctx, t: &Ticket) -> Result<Option<SlaPolicy>> {
        let all = self.policies(ctx).await?;
        Ok(policy_for(&all, t).cloned())
    }

    async fn business_calendar(
        &self,
        ctx: &Ctx,
        cache: &mut HashMap<Uuid, BusinessCalendar>,
        id: Option<Uuid>,
    ) -> Result<BusinessCalendar> {
        let Some(id) = id else {
            return always();
        };
        if let Some(c) = cache.get(&id) {
            return Ok(c.clone());
        }
        let c = match self.calendar(ctx, id).await {
            Ok(c) => c.calendar,
            Err(Error::NotFound { .. }) => return Err(no_calendar(id)),
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

    /// Stages the SLA consequences of a ticket write (see `Tickets::stage_sla`).
    pub(crate) async fn stage_sla_state(
        &self,
        ctx: &Ctx,
        cs: &mut Changeset,
        old: Option<&Ticket>,
        new: &Ticket,
        trigger: SlaTrigger,
    ) -> Result<()> {
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
                    if c.name.ends_with("due_at") && !set.iter().any(|(n, _)| *n == c.name) {
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
        if limit == 0 || limit > crmkit_core::query::MAX_LIMIT {
            return Err(Error::validation(
                "limit",
                format!("must be 1 to {}", crmkit_core::query::MAX_LIMIT),
            ));
        }
        let mut s = Select::new(SLA_TABLE, visibility_scope(ctx, false).and(cond));
        s.order = vec![order("next_due_at"), order("ticket_id")];
        if let Some(c) = &cursor {
            s.after = Some(decode_cursor(c)?);
        }
        s.limit = Some(limit + 1);
        let mut found = self.store().backend().select(ctx.tenant(), &s).await?;
        let more = found.len() > limit as usize;
        found.truncate(limit as usize);
        let items = found.iter().map(decode_sla).collect::<Result<Vec<_>>>()?;
        let next_cursor = if more {
            items
                .last()
                .and_then(|t| Some(encode_cursor(t.next_due_at?, t.ticket.as_uuid())))
        } else {
            None
        };
        Ok(Page {
            items,
            next_cursor,
            total: None,
        })
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
            s.order = vec![order("next_due_at"), order("ticket_id")];
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
