//! The tickets API: commands (create, update, status, comments, escalation, satisfaction,
//! delete/restore) and queries.

use chrono::{DateTime, Utc};
use crmkit_contacts::Contacts;
use crmkit_core::custom::CustomSchema;
use crmkit_core::record::reference_reason;
use crmkit_core::service::{
    self, apply_custom_patch, changed_columns, json_text, stage_insert, to_json,
};
use crmkit_core::store::{Cond, OrderKey, Row, Select, Value, Write};
use crmkit_core::text::check_text;
use crmkit_core::{
    AuditChange, Changeset, CommentId, ContactId, Ctx, Error, Filter, NewEvent, OrganizationId,
    Page, Query, RecordKind, RecordRef, Result, Store, TeamId, TicketId, UserId, ValidationErrors,
};

use crate::inputs::*;
use crate::model::*;
use crate::rows::{
    self, COMMENT_TABLE, HISTORY_TABLE, SATISFACTION_TABLE, TICKET, TICKET_FIELDS, TICKET_TABLE,
};
use crate::sla_service::{SlaTrigger, select_sorted};

/// Event kinds this module emits.
pub const EVENT_KINDS: &[&str] = &[
    "ticket.created",
    "ticket.updated",
    "ticket.status_changed",
    "ticket.commented",
    "ticket.escalated",
    "ticket.rated",
    "ticket.deleted",
    "ticket.restored",
    "ticket.sla_breached",
    "ticket.sla_warning",
    "sla_calendar.created",
    "sla_calendar.updated",
    "sla_policy.created",
    "sla_policy.updated",
    "ticket.call_logged",
];

/// Longest subject.
pub const MAX_SUBJECT: usize = 200;
/// Longest free text (descriptions, comment bodies).
pub const MAX_TEXT: usize = 20_000;
/// Most tags of one ticket.
pub const MAX_TAGS: usize = 20;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 50;
/// Most attachments of one comment.
pub const MAX_ATTACHMENTS: usize = 20;
/// Longest escalation reason.
pub const MAX_REASON: usize = 1000;
/// How many times a rating copies its ticket's scope again after a concurrent change.
const SETTLE_ATTEMPTS: usize = 4;

/// Longest satisfaction comment.
pub const MAX_RATING_COMMENT: usize = 2000;
/// Longest requester phone (raw text).
pub const MAX_PHONE: usize = 64;

/// The per-tenant counter ticket numbers are reserved from ([`Backend::reserve`]).
///
/// [`Backend::reserve`]: crmkit_core::Backend::reserve
pub const NUMBER_SEQUENCE: &str = "tickets.number";
/// How many times a comment retries when the ticket changed between its read and commit.
const COMMENT_ATTEMPTS: u32 = 16;

/// A tag as stored: trimmed, inner whitespace collapsed to one space, lower case.
pub fn normalize_tag(tag: &str) -> String {
    tag.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A list filter matching tickets that carry `tag` (normalised with [`normalize_tag`]):
/// `Tickets::list(ctx, &Query::new().filter(tag_filter("billing")))`.
pub fn tag_filter(tag: &str) -> Filter {
    Filter::contains("tags", format!("|{}|", normalize_tag(tag)))
}

fn key(id: TicketId) -> Vec<Value> {
    vec![Value::Uuid(id.as_uuid())]
}

/// Stages the insert of a row beside a ticket (a comment, a rating) with the audit entry
/// that records `value` as new in the ticket's `field`.
fn stage_side_insert<T: serde::Serialize>(
    cs: &mut Changeset,
    record: &RecordRef,
    table: &'static str,
    row: Row,
    field: &str,
    value: &T,
) {
    cs.writes.push(Write::Insert { table, row });
    cs.audit.push(AuditChange {
        record: record.clone(),
        field: field.into(),
        old: None,
        new: Some(json_text(value)),
    });
}

fn invalid(id: TicketId, reason: impl Into<String>) -> Error {
    Error::InvalidTransition {
        record: RecordRef::from(id),
        reason: reason.into(),
    }
}

/// Adds a Validation error of `r` to `errs`; other errors are returned.
fn merge<T>(errs: &mut ValidationErrors, r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Validation(v)) => {
            errs.errors.extend(v.errors);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Validates and normalises tags (`tags`, `tags[i]`).
fn check_tags(errs: &mut ValidationErrors, tags: &[String]) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        errs.push("tags", format!("at most {MAX_TAGS} tags"));
    }
    let mut out: Vec<String> = vec![];
    for (i, t) in tags.iter().enumerate() {
        let field = format!("tags[{i}]");
        let n = normalize_tag(t);
        if n.is_empty() {
            errs.push(field, "must not be empty or whitespace only");
        } else if n.contains('|') || n.chars().any(char::is_control) {
            errs.push(field, "must not contain '|' or control characters");
        } else if n.chars().count() > MAX_TAG_LEN {
            errs.push(field, format!("is longer than {MAX_TAG_LEN} characters"));
        } else if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Validates attachment metadata (`attachments`, `attachments[i].*`).
fn check_attachments(errs: &mut ValidationErrors, attachments: &[Attachment]) {
    if attachments.len() > MAX_ATTACHMENTS {
        errs.push(
            "attachments",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        );
    }
    for (i, a) in attachments.iter().enumerate() {
        let f = |name: &str| format!("attachments[{i}].{name}");
        if check_text(&f("name"), &a.name, 255, true).is_err()
            || a.name.chars().any(char::is_control)
        {
            errs.push(
                f("name"),
                "must be 1 to 255 characters without control characters",
            );
        }
        if a.size < 0 {
            errs.push(f("size"), "must not be negative");
        }
        let ct = a.content_type.as_str();
        let well_formed = ct.len() <= 255
            && ct.split_once('/').is_some_and(|(t, s)| {
                !t.is_empty()
                    && !s.is_empty()
                    && !s.contains('/')
                    && ct.chars().all(|c| c.is_ascii_graphic())
            });
        if !well_formed {
            errs.push(
                f("content_type"),
                "must be a MIME type such as text/plain (at most 255 characters)",
            );
        }
        if check_text(&f("storage_key"), &a.storage_key, 500, true).is_err() {
            errs.push(f("storage_key"), "must be 1 to 500 characters");
        }
    }
}

/// The ticket after a status move (the caller checked that the move is allowed): solving
/// stamps `solved_at` and counts the solve; reopening a solved ticket clears `solved_at`;
/// closing stamps `closed_at`.
fn moved(old: &Ticket, to: TicketStatus, now: DateTime<Utc>) -> Ticket {
    let mut t = old.clone();
    t.status = to;
    match to {
        TicketStatus::Solved => {
            t.solved_at = Some(now);
            t.solve_count += 1;
        }
        TicketStatus::Closed => t.closed_at = Some(now),
        _ => {
            if old.status == TicketStatus::Solved {
                t.solved_at = None;
            }
        }
    }
    t
}

/// A history entry of the change `old` -> `new` (the ticket's new version orders it; the
/// entry's time is the ticket's new `updated_at`).
fn history(
    ctx: &Ctx,
    kind: HistoryKind,
    old: Option<&Ticket>,
    new: &Ticket,
    reason: Option<String>,
) -> HistoryEntry {
    HistoryEntry {
        ticket: new.id,
        version: new.version,
        kind,
        from_status: old.map(|o| o.status),
        to_status: new.status,
        from_priority: old.map(|o| o.priority),
        to_priority: new.priority,
        assignee: new.assignee,
        queue: new.queue,
        reason,
        at: new.updated_at,
        actor: Some(ctx.actor().user),
    }
}

/// The tickets API.
#[derive(Clone, Debug)]
pub struct Tickets {
    store: Store,
    contacts: Contacts,
}

impl Tickets {
    /// The API over a store composed with [`crate::TicketsModule`].
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("tickets")?;
        Ok(Tickets {
            store: store.clone(),
            contacts: Contacts::new(store)?,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    // ----- loading -----

    /// The ticket with this number, if it is visible to the actor and not deleted.
    pub async fn get_by_number(&self, ctx: &Ctx, number: u64) -> Result<Ticket> {
        let n = i64::try_from(number).map_err(|_| Error::not_found(TICKET, number))?;
        let mut s = Select::new(TICKET_TABLE, Cond::eq("number", n));
        s.limit = Some(1);
        let row = self
            .store
            .backend()
            .select(ctx.tenant(), &s)
            .await?
            .pop()
            .ok_or_else(|| Error::not_found(TICKET, number))?;
        let t = rows::decode_ticket(row)?;
        if !ctx.actor().can_see(t.assignee, t.queue) || t.deleted_at.is_some() {
            return Err(Error::not_found(TICKET, number));
        }
        Ok(t)
    }

    async fn custom_schema(&self, ctx: &Ctx) -> Result<CustomSchema> {
        self.store
            .custom_fields()
            .of_kind(ctx, &RecordKind::TICKET)
            .await
    }

    // ----- validation -----

    /// Whether `record` is there for the actor, by the one rule of references
    /// ([`crmkit_core::record::Records::visible`]): a record that does not exist, is
    /// deleted, belongs to another tenant or is hidden from the actor is not. When it is
    /// not, a Validation error on `field` with [`reference_reason`] is added to `errs`.
    pub(crate) async fn check_reference(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        field: &str,
        record: RecordRef,
    ) -> Result<bool> {
        if self.store.records().visible(ctx, &record).await? {
            Ok(true)
        } else {
            errs.push(field, reference_reason(&record.kind));
            Ok(false)
        }
    }

    /// Checks the requester contact (`requester`) by the reference rule; returns its
    /// organization.
    async fn check_requester(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        requester: ContactId,
    ) -> Result<Option<OrganizationId>> {
        if !self
            .check_reference(ctx, errs, "requester", RecordRef::from(requester))
            .await?
        {
            return Ok(None);
        }
        match self.contacts.get(ctx, requester).await {
            Ok(c) => Ok(c.organization),
            // Deleted meanwhile: the same error as any reference that is not there.
            Err(Error::NotFound { .. }) => {
                errs.push("requester", reference_reason(&RecordKind::CONTACT));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Checks the organization (`organization`) by the reference rule.
    async fn check_organization(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        org: OrganizationId,
    ) -> Result<()> {
        self.check_reference(ctx, errs, "organization", RecordRef::from(org))
            .await
            .map(drop)
    }

    /// Checks an assignee (`assignee`: an active user) and a queue (`queue`: a team of the
    /// tenant). Unless `handoff`, a Rep may only assign to themselves and to their own
    /// teams (PermissionDenied otherwise), as for every other record.
    async fn check_assignment(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        assignee: Option<UserId>,
        queue: Option<TeamId>,
        handoff: bool,
    ) -> Result<()> {
        if !handoff && !ctx.actor().manages() {
            if assignee.is_some_and(|a| a != ctx.actor().user) {
                return Err(Error::PermissionDenied(
                    "a rep may only assign tickets to themselves".into(),
                ));
            }
            if queue.is_some_and(|q| !ctx.actor().teams.contains(&q)) {
                return Err(Error::PermissionDenied(
                    "a rep may only put tickets in their own teams' queues".into(),
                ));
            }
        }
        if let Some(a) = assignee {
            self.check_user(ctx, errs, "assignee", a).await?;
        }
        if let Some(q) = queue {
            self.check_reference(ctx, errs, "queue", RecordRef::from(q))
                .await?;
        }
        Ok(())
    }

    /// Checks a user reference held by `field`: a user of the tenant by the reference rule
    /// (`is not a user of this tenant`), and active (`is not an active user of this
    /// tenant`).
    pub(crate) async fn check_user(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        field: &str,
        user: UserId,
    ) -> Result<()> {
        if self
            .check_reference(ctx, errs, field, RecordRef::from(user))
            .await?
        {
            merge(
                errs,
                self.store
                    .directory()
                    .require_active_user(ctx, field, user)
                    .await,
            )?;
        }
        Ok(())
    }

    fn check_phone(errs: &mut ValidationErrors, phone: &mut Option<String>) {
        if let Some(p) = phone {
            let trimmed = p.trim().to_owned();
            if merge(
                errs,
                check_text("requester_phone", &trimmed, MAX_PHONE, true),
            )
            .ok()
            .flatten()
            .is_some()
            {
                *p = trimmed;
            }
        }
    }

    // ----- staging -----

    /// Stages the versioned update of a ticket from `old` to `new` (whose `version` is
    /// already `old.version + 1`): the changed columns, the custom-value index when the
    /// custom values changed, one audit entry per changed field, and the SLA hook. Returns
    /// the changed field names.
    async fn stage_ticket_write(
        &self,
        ctx: &Ctx,
        cs: &mut Changeset,
        old: &Ticket,
        new: &Ticket,
        custom: Option<&CustomSchema>,
        trigger: SlaTrigger,
    ) -> Result<Vec<String>> {
        let record = RecordRef::from(new.id);
        let def = self.store.backend().schema().table(TICKET_TABLE)?;
        cs.writes.push(Write::Update {
            table: TICKET_TABLE,
            key: key(new.id),
            set: changed_columns(def, &rows::ticket_row(old), &rows::ticket_row(new)),
            expect_version: Some(old.version),
            record: record.clone(),
        });
        if let Some(custom) = custom
            && new.custom != old.custom
        {
            cs.writes
                .extend(custom.index_writes(&record, &new.custom, true));
        }
        let changes = service::changes(record, old, new);
        cs.audit.extend(changes.audit);
        self.stage_sla(ctx, cs, Some(old), new, trigger).await?;
        Ok(changes.fields)
    }

    fn stage_history(cs: &mut Changeset, h: &HistoryEntry) {
        cs.writes.push(Write::Insert {
            table: HISTORY_TABLE,
            row: rows::history_row(h),
        });
    }

    /// Stages the move of a live ticket `old` to status `to` (which the caller checked
    /// against [`TicketStatus::can_move_to`]) as the status paths do: the versioned ticket
    /// write with its audit entries and SLA hook, a history entry with `reason`, and a
    /// `ticket.status_changed` event. Returns the ticket after the move. The move counts
    /// as a message from the requester for SLA purposes (the call-centre path reopens a
    /// pending ticket when the customer calls).
    pub(crate) async fn stage_status_move(
        &self,
        ctx: &Ctx,
        cs: &mut Changeset,
        old: &Ticket,
        to: TicketStatus,
        reason: Option<String>,
    ) -> Result<Ticket> {
        let now = ctx.now();
        let mut new = moved(old, to, now);
        new.updated_at = now;
        new.version = old.version + 1;
        let changed = self
            .stage_ticket_write(ctx, cs, old, &new, None, SlaTrigger::CustomerMessage)
            .await?;
        Self::stage_status_changed(ctx, cs, old, &new, reason, changed);
        Ok(new)
    }

    /// Stages what a status move records besides the ticket write: its history entry (with
    /// `reason`) and the `ticket.status_changed` event naming the `changed` fields.
    fn stage_status_changed(
        ctx: &Ctx,
        cs: &mut Changeset,
        old: &Ticket,
        new: &Ticket,
        reason: Option<String>,
        changed: Vec<String>,
    ) {
        Self::stage_history(
            cs,
            &history(ctx, HistoryKind::Status, Some(old), new, reason),
        );
        cs.events.push(NewEvent::new(
            "ticket.status_changed",
            RecordRef::from(new.id),
            changed,
            to_json(new),
        ));
    }

    // ----- commands -----

    /// Creates a ticket with the next number of the tenant, status `new`. Every bad field
    /// is reported at once and nothing is written: an empty or over-long `subject`, an
    /// over-long `description`, a `requester` that is not a visible contact of the
    /// tenant, neither a requester nor a `requester_phone`, a blank or over-long
    /// `requester_phone`, an `organization` that is not a visible organization, an
    /// `assignee` that is not an active user, a `queue` that is not a team, bad `tags[i]`
    /// or too many `tags`, bad `custom.<key>` values.
    ///
    /// The organization defaults to the requester's; when neither an assignee nor a queue
    /// is given, the actor is the assignee. A Rep may only assign to themselves and their
    /// own teams' queues (PermissionDenied).
    ///
    /// Numbering: the number is reserved from the tenant's counter [`NUMBER_SEQUENCE`] in
    /// a short transaction of its own (the counter row is locked only for that), so
    /// concurrent creates never share a number and numbers increase in reservation order;
    /// a create that fails after reserving leaves a gap. A unique index on the number
    /// guards the rule.
    pub async fn create(&self, ctx: &Ctx, input: NewTicket) -> Result<Ticket> {
        let mut cs = Changeset::new(ctx);
        let ticket = self.stage_create(ctx, input, &mut cs).await?;
        self.store.commit(cs).await?;
        Ok(ticket)
    }

    /// Validates a new ticket as [`Tickets::create`] does, reserves its number and stages
    /// its rows, history entry, audit entry, `ticket.created` event and SLA state into a
    /// changeset the caller is building (a command spanning modules, such as
    /// [`Tickets::record_inbound_call`]). Nothing is written until the caller commits
    /// `cs`; a changeset that is never committed leaves a gap in the numbers.
    pub async fn stage_create(
        &self,
        ctx: &Ctx,
        input: NewTicket,
        cs: &mut Changeset,
    ) -> Result<Ticket> {
        ctx.actor().require_write("create ticket")?;
        let mut errs = ValidationErrors::new();
        merge(
            &mut errs,
            check_text("subject", &input.subject, MAX_SUBJECT, true),
        )?;
        if let Some(d) = &input.description {
            merge(&mut errs, check_text("description", d, MAX_TEXT, false))?;
        }
        let mut phone = input.requester_phone;
        Self::check_phone(&mut errs, &mut phone);
        let mut organization = input.organization;
        match input.requester {
            Some(c) => {
                let org = self.check_requester(ctx, &mut errs, c).await?;
                organization = organization.or(org);
            }
            None if phone.is_none() => errs.push(
                "requester",
                "a ticket needs a requester contact or a requester phone",
            ),
            None => {}
        }
        if let Some(o) = input.organization {
            self.check_organization(ctx, &mut errs, o).await?;
        }
        let (assignee, queue) = match (input.assignee, input.queue) {
            (None, None) => (Some(ctx.actor().user), None),
            other => other,
        };
        self.check_assignment(ctx, &mut errs, assignee, queue, false)
            .await?;
        let tags = check_tags(&mut errs, &input.tags);
        let custom = self.custom_schema(ctx).await?;
        merge(&mut errs, custom.validate(&input.custom))?;
        errs.into_result()?;
        let now = ctx.now();
        let mut ticket = Ticket {
            id: TicketId::new(),
            number: 0,
            subject: input.subject,
            description: input.description,
            status: TicketStatus::New,
            priority: input.priority,
            channel: input.channel,
            requester: input.requester,
            requester_phone: phone,
            organization,
            assignee,
            queue,
            tags,
            custom: input.custom,
            first_response_at: None,
            solved_at: None,
            closed_at: None,
            solve_count: 0,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        let record = RecordRef::from(ticket.id);
        ticket.number = self
            .store
            .backend()
            .reserve(ctx.tenant(), NUMBER_SEQUENCE, 1)
            .await?;
        stage_insert(cs, &ticket, rows::ticket_row(&ticket));
        cs.writes
            .extend(custom.index_writes(&record, &ticket.custom, false));
        Self::stage_history(cs, &history(ctx, HistoryKind::Created, None, &ticket, None));
        self.stage_sla(ctx, cs, None, &ticket, SlaTrigger::Change)
            .await?;
        Ok(ticket)
    }

    /// Changes a ticket whose current version is `expected_version` (a stale one is a
    /// Conflict). Validation as in [`Tickets::create`] for the fields given; a ticket
    /// keeps needing a requester or a requester phone, and an assignee or a queue
    /// (`assignee`). A priority change is recorded in the history. Emits
    /// `ticket.updated`; a patch that changes nothing writes nothing.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: TicketId,
        expected_version: u64,
        patch: TicketPatch,
    ) -> Result<Ticket> {
        let old = self.live(ctx, id, "update ticket").await?;
        let mut errs = ValidationErrors::new();
        let mut new = old.clone();
        if let Some(s) = patch.subject {
            merge(&mut errs, check_text("subject", &s, MAX_SUBJECT, true))?;
            new.subject = s;
        }
        if let Some(d) = patch.description {
            if let Some(d) = &d {
                merge(&mut errs, check_text("description", d, MAX_TEXT, false))?;
            }
            new.description = d;
        }
        if let Some(p) = patch.priority {
            new.priority = p;
        }
        if let Some(c) = patch.channel {
            new.channel = c;
        }
        if let Some(mut p) = patch.requester_phone {
            Self::check_phone(&mut errs, &mut p);
            new.requester_phone = p;
        }
        if let Some(r) = patch.requester {
            if let Some(c) = r {
                self.check_requester(ctx, &mut errs, c).await?;
            }
            new.requester = r;
        }
        if new.requester.is_none() && new.requester_phone.is_none() {
            errs.push(
                "requester",
                "a ticket needs a requester contact or a requester phone",
            );
        }
        if let Some(o) = patch.organization {
            if let Some(o) = o {
                self.check_organization(ctx, &mut errs, o).await?;
            }
            new.organization = o;
        }
        if patch.assignee.is_some() || patch.queue.is_some() {
            new.assignee = patch.assignee.unwrap_or(old.assignee);
            new.queue = patch.queue.unwrap_or(old.queue);
            self.check_assignment(
                ctx,
                &mut errs,
                patch.assignee.flatten(),
                patch.queue.flatten(),
                false,
            )
            .await?;
            if new.assignee.is_none() && new.queue.is_none() {
                errs.push("assignee", "a ticket needs an assignee or a queue");
            }
        }
        if let Some(t) = &patch.tags {
            new.tags = check_tags(&mut errs, t);
        }
        let custom = if patch.custom.is_empty() {
            None
        } else {
            let schema = self.custom_schema(ctx).await?;
            new.custom = apply_custom_patch(&old.custom, &patch.custom);
            merge(&mut errs, schema.validate(&new.custom))?;
            Some(schema)
        };
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        if new == old {
            return Ok(old);
        }
        new.updated_at = ctx.now();
        new.version = old.version + 1;
        let mut cs = Changeset::new(ctx);
        let changed = self
            .stage_ticket_write(
                ctx,
                &mut cs,
                &old,
                &new,
                custom.as_ref(),
                SlaTrigger::Change,
            )
            .await?;
        if new.priority != old.priority {
            Self::stage_history(
                &mut cs,
                &history(ctx, HistoryKind::Priority, Some(&old), &new, None),
            );
        }
        cs.events.push(NewEvent::new(
            "ticket.updated",
            RecordRef::from(id),
            changed,
            to_json(&new),
        ));
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// Moves a ticket whose current version is `expected_version` to status `to`, by the
    /// table on [`TicketStatus`]: a refused move (anything out of `closed`, anything into
    /// `new`, `solved` to anything but `open` or `closed`) is InvalidTransition; moving to
    /// the current status changes nothing. Solving stamps `solved_at` and counts the
    /// solve (a new satisfaction rating may follow); reopening clears `solved_at`; closing
    /// stamps `closed_at`. Recorded in the history; emits `ticket.status_changed`.
    pub async fn set_status(
        &self,
        ctx: &Ctx,
        id: TicketId,
        expected_version: u64,
        to: TicketStatus,
    ) -> Result<Ticket> {
        let old = self.live(ctx, id, "change ticket status").await?;
        service::check_version(id, expected_version, old.version)?;
        if old.status == to {
            return Ok(old);
        }
        if !old.status.can_move_to(to) {
            return Err(invalid(
                id,
                format!(
                    "a {} ticket cannot become {}",
                    old.status.as_str(),
                    to.as_str()
                ),
            ));
        }
        let now = ctx.now();
        let mut new = moved(&old, to, now);
        new.updated_at = now;
        new.version = old.version + 1;
        let mut cs = Changeset::new(ctx);
        let changed = self
            .stage_ticket_write(ctx, &mut cs, &old, &new, None, SlaTrigger::Change)
            .await?;
        Self::stage_status_changed(ctx, &mut cs, &old, &new, None, changed);
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// Adds a comment to a live ticket visible to the actor.
    ///
    /// Rules:
    /// - bad input is a Validation error naming every bad field: an empty or over-long
    ///   `body`, bad `attachments[i].name` / `.size` (negative) / `.content_type` /
    ///   `.storage_key`, too many `attachments`, a requester comment that is not `public`,
    ///   a requester comment (`by_requester`) on a ticket without a requester contact;
    /// - a comment on a **closed** ticket is an InvalidTransition error (closed is final:
    ///   nothing is added to it);
    /// - the first public reply by an agent stamps `first_response_at` (once; internal
    ///   notes and requester comments never do), and moves a `new` ticket to `open`;
    /// - a requester comment on a `pending` ticket (waiting on the customer) moves it back
    ///   to `open`; on other statuses (`solved` included) it leaves the status alone;
    /// - otherwise the ticket itself is not written (its version does not change).
    ///
    /// The comment, the ticket change (versioned; when another command changed the
    /// ticket meanwhile, the comment is re-decided on the new state and committed again),
    /// its history entry, audit entries and the `ticket.commented` (and
    /// `ticket.status_changed`) events commit together.
    pub async fn comment(&self, ctx: &Ctx, id: TicketId, input: NewComment) -> Result<Commented> {
        ctx.actor().require_write("comment on ticket")?;
        let mut errs = ValidationErrors::new();
        merge(&mut errs, check_text("body", &input.body, MAX_TEXT, true))?;
        check_attachments(&mut errs, &input.attachments);
        if input.by_requester && !input.public {
            errs.push("public", "a requester's comment is always public");
        }
        let mut attempts = 0;
        loop {
            let old = self.load(ctx, id, Some(false)).await?;
            let mut errs = errs.clone();
            let author = if input.by_requester {
                match old.requester {
                    Some(contact) => Some(CommentAuthor::Requester { contact }),
                    None => {
                        errs.push("by_requester", "the ticket has no requester contact");
                        None
                    }
                }
            } else {
                Some(CommentAuthor::Agent {
                    user: ctx.actor().user,
                })
            };
            errs.into_result()?;
            let Some(author) = author else {
                return Err(Error::validation("by_requester", "no author"));
            };
            if old.status == TicketStatus::Closed {
                return Err(invalid(id, "a closed ticket takes no comments"));
            }
            let now = ctx.now();
            let comment = Comment {
                id: CommentId::new(),
                ticket: id,
                author,
                public: input.public,
                body: input.body.clone(),
                attachments: input.attachments.clone(),
                created_at: now,
            };
            let mut new = old.clone();
            let mut reason = None;
            match author {
                CommentAuthor::Agent { .. } if comment.public => {
                    new.first_response_at.get_or_insert(now);
                    if old.status == TicketStatus::New {
                        new = moved(&new, TicketStatus::Open, now);
                        reason = Some("an agent replied".to_owned());
                    }
                }
                CommentAuthor::Requester { .. } if old.status == TicketStatus::Pending => {
                    new = moved(&new, TicketStatus::Open, now);
                    reason = Some("the requester replied".to_owned());
                }
                _ => {}
            }
            let record = RecordRef::from(id);
            let mut cs = Changeset::new(ctx);
            let row = rows::comment_row(&comment);
            stage_side_insert(&mut cs, &record, COMMENT_TABLE, row, "comments", &comment);
            let trigger = match author {
                CommentAuthor::Agent { .. } if comment.public => SlaTrigger::AgentReply,
                CommentAuthor::Requester { .. } => SlaTrigger::CustomerMessage,
                CommentAuthor::Agent { .. } => SlaTrigger::Change,
            };
            let mut changed = vec![];
            if new != old {
                new.updated_at = now;
                new.version = old.version + 1;
                changed = self
                    .stage_ticket_write(ctx, &mut cs, &old, &new, None, trigger)
                    .await?;
            } else if trigger != SlaTrigger::Change {
                self.stage_sla(ctx, &mut cs, Some(&old), &new, trigger)
                    .await?;
            }
            cs.events.push(NewEvent::new(
                "ticket.commented",
                record.clone(),
                changed.clone(),
                to_json(&comment),
            ));
            if new.status != old.status {
                Self::stage_status_changed(ctx, &mut cs, &old, &new, reason, changed);
            }
            match self.store.commit(cs).await {
                Ok(_) => {
                    return Ok(Commented {
                        ticket: new,
                        comment,
                    });
                }
                Err(Error::Conflict { record: r, .. })
                    if r == record && attempts < COMMENT_ATTEMPTS =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Escalates a live ticket whose current version is `expected_version`: raises its
    /// priority and/or hands it to a queue or a user, with a reason. Handing it to a queue
    /// without naming a user leaves it unassigned in that queue. Unlike create and update,
    /// escalation may hand a ticket to any team and any active user of the tenant (that
    /// is what it is for), so a Rep may lose sight of the ticket afterwards.
    ///
    /// Validation errors: an empty or over-long `reason`; a `priority` not above the
    /// current one; an `assignee` that is not an active user; a `queue` that is not a
    /// team; nothing to do (`escalation`). A closed ticket cannot be escalated
    /// (InvalidTransition). Recorded in the history (kind `escalated`, with the reason);
    /// emits `ticket.escalated`.
    pub async fn escalate(
        &self,
        ctx: &Ctx,
        id: TicketId,
        expected_version: u64,
        e: Escalation,
    ) -> Result<Ticket> {
        let old = self.live(ctx, id, "escalate ticket").await?;
        let mut errs = ValidationErrors::new();
        merge(&mut errs, check_text("reason", &e.reason, MAX_REASON, true))?;
        if e.priority.is_none() && e.queue.is_none() && e.assignee.is_none() {
            errs.push(
                "escalation",
                "raise the priority or hand the ticket to a queue or a user",
            );
        }
        if let Some(p) = e.priority
            && p <= old.priority
        {
            errs.push(
                "priority",
                format!(
                    "must be higher than the current priority ({})",
                    old.priority.as_str()
                ),
            );
        }
        self.check_assignment(ctx, &mut errs, e.assignee, e.queue, true)
            .await?;
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        if old.status == TicketStatus::Closed {
            return Err(invalid(id, "a closed ticket cannot be escalated"));
        }
        let mut new = old.clone();
        if let Some(p) = e.priority {
            new.priority = p;
        }
        if let Some(q) = e.queue {
            new.queue = Some(q);
            new.assignee = e.assignee;
        } else if let Some(a) = e.assignee {
            new.assignee = Some(a);
        }
        new.updated_at = ctx.now();
        new.version = old.version + 1;
        let mut cs = Changeset::new(ctx);
        let changed = self
            .stage_ticket_write(ctx, &mut cs, &old, &new, None, SlaTrigger::Change)
            .await?;
        Self::stage_history(
            &mut cs,
            &history(
                ctx,
                HistoryKind::Escalated,
                Some(&old),
                &new,
                Some(e.reason.clone()),
            ),
        );
        cs.events.push(NewEvent::new(
            "ticket.escalated",
            RecordRef::from(id),
            changed,
            serde_json::json!({ "ticket": to_json(&new), "reason": e.reason }),
        ));
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// Records the requester's satisfaction with the latest solve of a ticket: a `rating`
    /// of 1 to 5 (a Validation error on `rating` otherwise) and an optional `comment` (at
    /// most [`MAX_RATING_COMMENT`] characters). Only a solved ticket, or a closed one
    /// that was solved before closing, can be rated (InvalidTransition otherwise). One
    /// rating per solve: rating the same solve again is a Duplicate error on
    /// `satisfaction` (also when two ratings race: the rating table's key is (ticket,
    /// solve)); reopening and solving again allows a new rating. Emits `ticket.rated`.
    pub async fn rate(
        &self,
        ctx: &Ctx,
        id: TicketId,
        rating: i32,
        comment: Option<String>,
    ) -> Result<Satisfaction> {
        ctx.actor().require_write("rate ticket")?;
        let mut errs = ValidationErrors::new();
        let rating = match u8::try_from(rating) {
            Ok(r) if (1..=5).contains(&r) => r,
            _ => {
                errs.push("rating", "must be 1 to 5");
                0
            }
        };
        if let Some(c) = &comment {
            merge(
                &mut errs,
                check_text("comment", c, MAX_RATING_COMMENT, false),
            )?;
        }
        let t = self.load(ctx, id, Some(false)).await?;
        errs.into_result()?;
        let solved = t.status == TicketStatus::Solved
            || (t.status == TicketStatus::Closed && t.solved_at.is_some());
        if !solved {
            return Err(invalid(id, "only a solved ticket can be rated"));
        }
        let record = RecordRef::from(id);
        let duplicate = || Error::Duplicate {
            kind: TICKET,
            field: "satisfaction".into(),
            existing: Some(record.clone()),
        };
        let pk = [
            Value::Uuid(id.as_uuid()),
            Value::Int(i64::from(t.solve_count)),
        ];
        if self
            .store
            .backend()
            .get(ctx.tenant(), SATISFACTION_TABLE, &pk)
            .await?
            .is_some()
        {
            return Err(duplicate());
        }
        let s = Satisfaction {
            ticket: id,
            solve: t.solve_count,
            rating,
            comment,
            at: ctx.now(),
            recorded_by: Some(ctx.actor().user),
        };
        let mut cs = Changeset::new(ctx);
        let row = rows::satisfaction_row(&s, &t);
        stage_side_insert(
            &mut cs,
            &record,
            SATISFACTION_TABLE,
            row,
            "satisfaction",
            &s,
        );
        cs.events.push(NewEvent::new(
            "ticket.rated",
            record.clone(),
            vec!["satisfaction".into()],
            to_json(&s),
        ));
        match self.store.commit(cs).await {
            Ok(_) => {}
            Err(Error::Duplicate { kind, .. }) if kind.as_str() == SATISFACTION_TABLE => {
                return Err(duplicate());
            }
            Err(e) => return Err(e),
        }
        self.settle_rating_scope(ctx, &t, s.solve).await?;
        Ok(s)
    }

    /// After a rating of `t` committed: when the ticket's assignee, queue or deletion
    /// changed since `t` was read (a concurrent command whose update of the ticket's
    /// ratings did not see this one yet), copies the current ones onto the rating, until
    /// what it wrote is what the ticket has (a change committed after that read updates
    /// the committed rating itself). At most [`SETTLE_ATTEMPTS`] rounds (the rating is
    /// committed: a ticket reassigned that often meanwhile is not an error of the rating;
    /// its next reassignment copies the scope again).
    async fn settle_rating_scope(&self, ctx: &Ctx, t: &Ticket, solve: u32) -> Result<()> {
        let mut written = rows::rating_scope(t);
        for _ in 0..SETTLE_ATTEMPTS {
            let Some(row) = self
                .store
                .backend()
                .get(ctx.tenant(), TICKET_TABLE, &key(t.id))
                .await?
            else {
                return Ok(());
            };
            let now = rows::rating_scope(&rows::decode_ticket(row)?);
            if now == written {
                return Ok(());
            }
            let mut cs = Changeset::new(ctx);
            cs.writes.push(Write::UpdateWhere {
                table: SATISFACTION_TABLE,
                cond: Cond::eq("ticket_id", t.id.as_uuid())
                    .and(Cond::eq("solve", i64::from(solve))),
                set: now.clone(),
            });
            self.store.commit(cs).await?;
            written = now;
        }
        Ok(())
    }

    async fn set_deleted(
        &self,
        ctx: &Ctx,
        id: TicketId,
        expected_version: u64,
        delete: bool,
    ) -> Result<Ticket> {
        let (mut cs, old, new) =
            service::stage_set_deleted::<Ticket>(&self.store, ctx, id, expected_version, delete)
                .await?;
        self.stage_sla(ctx, &mut cs, Some(&old), &new, SlaTrigger::Change)
            .await?;
        self.store.commit(cs).await?;
        Ok(new)
    }

    // ----- queries -----

    /// A requester's unsolved tickets (new, open, pending, on hold), oldest first,
    /// keyset-paged; only those visible to the actor.
    pub async fn requester_open_tickets(
        &self,
        ctx: &Ctx,
        requester: ContactId,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Ticket>> {
        let mut q = Query::new()
            .filter(Filter::eq("requester", requester))
            .filter(Filter::is_in(
                "status",
                TicketStatus::UNSOLVED.map(TicketStatus::as_str),
            ))
            .sort_asc("created_at")
            .limit(limit);
        q.cursor = cursor;
        self.list(ctx, &q).await
    }

    /// The comments of a ticket visible to the actor, oldest first, keyset-paged by
    /// (time, id); internal notes only when `include_internal`. The cursor is the last
    /// comment's id as returned in `next_cursor`; `limit` is 1 to
    /// [`crmkit_core::query::MAX_LIMIT`].
    pub async fn comments(
        &self,
        ctx: &Ctx,
        id: TicketId,
        include_internal: bool,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Comment>> {
        crmkit_core::query::check_limit(limit)?;
        self.load(ctx, id, None).await?;
        let b = self.store.backend();
        let mut cond = Cond::eq("ticket_id", id.as_uuid());
        if !include_internal {
            cond = cond.and(Cond::eq("public", true));
        }
        let mut s = Select::new(COMMENT_TABLE, cond);
        s.order = vec![OrderKey::asc("created_at"), OrderKey::asc("id")];
        if let Some(c) = &cursor {
            let bad = || Error::validation("cursor", "is not a comment cursor of this ticket");
            let after = uuid::Uuid::parse_str(c).map_err(|_| bad())?;
            let row = b
                .get(ctx.tenant(), COMMENT_TABLE, &[Value::Uuid(after)])
                .await?
                .ok_or_else(bad)?;
            let c = rows::decode_comment(row)?;
            if c.ticket != id {
                return Err(bad());
            }
            s.after = Some(vec![
                Value::timestamp(c.created_at),
                Value::Uuid(c.id.as_uuid()),
            ]);
        }
        let cursor_of = |c: &Comment| Some(c.id.to_string());
        service::select_page(&self.store, ctx, s, limit, rows::decode_comment, cursor_of).await
    }

    /// The status and priority history of a ticket visible to the actor, oldest first.
    pub async fn history(&self, ctx: &Ctx, id: TicketId) -> Result<Vec<HistoryEntry>> {
        self.ticket_rows(ctx, id, HISTORY_TABLE, "version", rows::decode_history)
            .await
    }

    /// The satisfaction ratings of a ticket visible to the actor, one per rated solve,
    /// oldest first.
    pub async fn satisfaction(&self, ctx: &Ctx, id: TicketId) -> Result<Vec<Satisfaction>> {
        self.ticket_rows(
            ctx,
            id,
            SATISFACTION_TABLE,
            "solve",
            rows::decode_satisfaction,
        )
        .await
    }

    /// The rows of a ticket's side `table` (history, ratings) ordered by `by`, decoded,
    /// for a ticket visible to the actor (deleted or not).
    async fn ticket_rows<R>(
        &self,
        ctx: &Ctx,
        id: TicketId,
        table: &'static str,
        by: &str,
        decode: fn(Row) -> Result<R>,
    ) -> Result<Vec<R>> {
        self.load(ctx, id, None).await?;
        let cond = Cond::eq("ticket_id", id.as_uuid());
        select_sorted(&self.store, ctx, table, cond, &[by], decode).await
    }
}

crmkit_core::record_verbs! {
    Tickets: Ticket, TicketId;
    /// A ticket visible to the actor; `deleted` restricts it to deleted (`Some(true)`)
    /// or live (`Some(false)`) ones. NotFound otherwise.
    load;
    live;
    /// A ticket visible to the actor and not deleted.
    get;
    /// Soft-deletes a ticket (restorable; its number stays taken).
    delete;
    /// Restores a soft-deleted ticket.
    restore;
    /// Lists tickets: filter, sort, keyset page; only visible ones (Admin and Manager see
    /// all; others the tickets assigned to them or in their teams' queues), deleted ones
    /// only with [`Query::include_deleted`]. Fields: see [`TICKET_FIELDS`], and
    /// `custom.<key>`; filter on a tag with [`tag_filter`].
    list(TICKET_FIELDS, custom);
    /// The audit trail of a ticket visible to the actor (deleted ones included), oldest
    /// first: one entry per changed field of every command, comments and ratings
    /// included.
    audit;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised() {
        let mut errs = ValidationErrors::new();
        let tags = check_tags(
            &mut errs,
            &[
                "  Billing ".into(),
                "billing".into(),
                "Two\tWords".into(),
                "a|b".into(),
                " ".into(),
                "x".repeat(51),
            ],
        );
        assert_eq!(tags, vec!["billing".to_owned(), "two words".into()]);
        assert!(errs.has("tags[3]") && errs.has("tags[4]") && errs.has("tags[5]"));
        assert!(!errs.has("tags[1]"));
    }

    #[test]
    fn attachments_are_checked() {
        let good = Attachment {
            name: "a.pdf".into(),
            size: 0,
            content_type: "application/pdf".into(),
            storage_key: "k/1".into(),
        };
        let mut errs = ValidationErrors::new();
        check_attachments(&mut errs, std::slice::from_ref(&good));
        assert!(errs.is_empty(), "{errs:?}");
        let bad = Attachment {
            name: "".into(),
            size: -1,
            content_type: "pdf".into(),
            storage_key: "".into(),
        };
        check_attachments(&mut errs, &[good, bad]);
        for f in ["name", "size", "content_type", "storage_key"] {
            assert!(errs.has(&format!("attachments[1].{f}")), "{f}");
        }
        assert!(!errs.has("attachments[0].name"));
    }

    #[test]
    fn status_moves_stamp_times() {
        let now = Utc::now();
        let t = Ticket {
            id: TicketId::new(),
            number: 1,
            subject: "s".into(),
            description: None,
            status: TicketStatus::Open,
            priority: TicketPriority::Normal,
            channel: Channel::Api,
            requester: None,
            requester_phone: Some("1".into()),
            organization: None,
            assignee: None,
            queue: None,
            tags: vec![],
            custom: Default::default(),
            first_response_at: None,
            solved_at: None,
            closed_at: None,
            solve_count: 0,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        let s = moved(&t, TicketStatus::Solved, now);
        assert_eq!((s.solved_at, s.solve_count), (Some(now), 1));
        let r = moved(&s, TicketStatus::Open, now);
        assert_eq!((r.solved_at, r.solve_count), (None, 1));
        let c = moved(&s, TicketStatus::Closed, now);
        assert_eq!((c.solved_at, c.closed_at), (Some(now), Some(now)));
    }
}
