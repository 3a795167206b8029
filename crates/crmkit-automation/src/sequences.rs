//! Sequences: ordered steps (rule actions, and waits of minutes, hours, calendar days or
//! working days of an SLA calendar) that a record enrolled by a rule's `enrol_sequence`
//! action goes through one by one, until its last step ran or it leaves.
//!
//! ## The model
//!
//! A [`Sequence`] is a per-tenant record (kind `automation_sequence`, versioned JSON
//! `{"format": 1, "name", "record_kind", "steps", "exit"}`, [`SequenceDefinition`]) with
//! an owner. Its `record_kind` (any composed kind) is fixed when it is made. Each step is
//! `{"type": "wait", "amount": N, "unit": "minutes" | "hours" | "days" | "business_days",
//! "calendar": ..}` ([`SequenceStep::Wait`], an [`Offset`]) or one of the rule [`Action`]s on the
//! enrolled record (`create_activity` (a task), `notify`, `log_note`, `set_fields`,
//! tags, `create_ticket`, the other modules' actions, `custom`); a sequence does not
//! enrol in or leave sequences, call webhooks (their write-only secrets are the rules'
//! business) or assign owners (assignment state is kept per rule action). The last step
//! is not a wait. [`Exit`] says when an enrolment ends early.
//!
//! ## Exit
//!
//! An active enrolment ends as **exited**, with the reason, when
//! - the record is deleted (always), or it is gone or hidden from the enrolling rule's
//!   owner when a step is due;
//! - `exit.filter` (over the record's JSON fields, like rule conditions) holds for the
//!   record as the enrolling rule's owner sees it, checked when the engine sees a change
//!   of the record and before each step (so "the deal reached stage Won");
//! - an activity of a type in `exit.activities` is logged on the record (an activity
//!   created, changed or restored whose `related` records include it). **What counts**: an
//!   `email` only when inbound (a reply logged; the sequence's own outbound mails do not
//!   end it); a `meeting` only once held (its start is at or before the time of the
//!   change that logs or updates it: a meeting booked for next week ends the enrolment
//!   when it is updated after it started, for example with its outcome notes); a `call`
//!   only when connected; a `task` only when done; a `note` always;
//! - a rule's `leave_sequence` action takes it out;
//! - the enrolling rule is disabled or deleted, its owner is no longer active, or the
//!   sequence is deleted (found when a step is due).
//!
//! ## Access
//!
//! Like rules ([`crate::Rules`]): Admin and Manager manage every sequence; a Rep sees and
//! manages only their own and owns only their own; ReadOnly users see their own and
//! change none. A hidden sequence is NotFound, exactly like a missing one, also to a rule
//! naming it on save. The steps run with the authority of the **enrolling rule's owner**.
//! Enrolments are read per record and per sequence ([`Sequences::enrolments_of_record`],
//! [`Sequences::enrolments_of_sequence`]) like the run log: only those of sequences and
//! records the actor may see.
//!
//! How enrolments run is described in [`crate::enrolments`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crmkit_core::action::CustomActions;
use crmkit_core::event::decode_timestamp;
use crmkit_core::query::{FieldSpec, FieldType as Q, RecordFields};
use crmkit_core::row::{opt_timestamp as opt_ts, take_text as text, uuid};
use crmkit_core::service::{self, OwnerChecks, stage_created};
use crmkit_core::store::{ColumnType, Cond, IndexDef, Row, TableDef, Value, Write, columns};
use crmkit_core::text::fold;
use crmkit_core::{
    Changeset, Ctx, Error, Filter, Page, Query, RecordKind, RecordRef, Result, SequenceId, Store,
    UserId, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::model::{ACTION_TYPES, Action, FORMAT, Offset, clean_serde, part};

/// The sequences table.
pub const SEQUENCE_TABLE: &str = "automation_sequences";
/// The record kind of sequences.
pub const SEQUENCE_KIND: RecordKind = RecordKind::new("automation_sequence");
/// Most steps in one sequence.
pub const MAX_STEPS: usize = 50;

/// Event kinds of sequences.
pub const SEQUENCE_EVENT_KINDS: &[&str] = &[
    "automation_sequence.created",
    "automation_sequence.updated",
    "automation_sequence.deleted",
    "automation_sequence.restored",
];

/// One step of a sequence: a wait, or an action on the enrolled record. As JSON, a wait
/// is `{"type": "wait", "amount": .., "unit": .., "calendar": ..}` and an action is the
/// action's own JSON (`{"type": "notify", ..}`).
#[derive(Debug, Clone, PartialEq)]
pub enum SequenceStep {
    /// Wait this long after the previous step (or the enrolment) before the next.
    Wait(Offset),
    /// Run this action on the enrolled record.
    Action(Action),
}

/// The step types' names: `wait` and the action types.
pub fn step_types() -> Vec<&'static str> {
    std::iter::once("wait")
        .chain(ACTION_TYPES.iter().copied())
        .collect()
}

impl Serialize for SequenceStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            SequenceStep::Action(a) => a.serialize(s),
            SequenceStep::Wait(o) => {
                let mut m = serde_json::Map::new();
                m.insert("type".into(), Json::String("wait".into()));
                if let Json::Object(rest) =
                    serde_json::to_value(o).map_err(serde::ser::Error::custom)?
                {
                    m.extend(rest);
                }
                Json::Object(m).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for SequenceStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        step_from_value(v).map_err(serde::de::Error::custom)
    }
}

fn step_from_value(mut v: Json) -> std::result::Result<SequenceStep, serde_json::Error> {
    if v.get("type").and_then(Json::as_str) == Some("wait") {
        if let Some(m) = v.as_object_mut() {
            m.remove("type");
        }
        serde_json::from_value(v).map(SequenceStep::Wait)
    } else {
        serde_json::from_value(v).map(SequenceStep::Action)
    }
}

/// When an enrolment ends early (besides the record's deletion, which always ends it):
/// see [the module documentation](self).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Exit {
    /// A filter over the record's JSON fields; the enrolment ends once it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Activity types (`email`, `meeting`, `call`, `task`, `note`) whose logging on the
    /// record ends the enrolment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub activities: Vec<String>,
}

/// A sequence's definition, without its system fields: what a host's UI builds and
/// stores. As JSON it carries `"format": 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceDefinition {
    /// A name (1 to 200 characters).
    pub name: String,
    /// The kind of the records it runs on.
    pub record_kind: String,
    /// The steps, in order (1 to [`MAX_STEPS`]; the last one is not a wait).
    pub steps: Vec<SequenceStep>,
    /// When an enrolment ends early.
    pub exit: Exit,
}

fn check_format(errs: &mut ValidationErrors, v: Option<&Json>) {
    crate::model::check_document_format(errs, "sequence", v)
}

/// Parses steps one by one, naming `path[i].type` for an unknown type and `path[i]`
/// otherwise.
pub(crate) fn parse_steps(
    errs: &mut ValidationErrors,
    path: &str,
    v: Json,
) -> Option<Vec<SequenceStep>> {
    let types = step_types();
    crate::model::parse_tagged_list(errs, path, v, ("a step", "steps"), &types, step_from_value)
}

impl SequenceDefinition {
    /// A definition from its JSON text: `format` must be [`FORMAT`]; malformed JSON, an
    /// unknown format, an unknown member, an unknown step type and a part of the wrong
    /// shape are one Validation error naming every bad part (`format`, `steps[2].type`,
    /// `exit`, ...). This checks the shape only; saving ([`Sequences::create`]) checks it
    /// against the tenant.
    pub fn from_json(text: &str) -> Result<SequenceDefinition> {
        let v: Json = serde_json::from_str(text)
            .map_err(|e| Error::validation("_", format!("is not JSON: {}", clean_serde(&e))))?;
        Self::from_value(v)
    }

    /// [`Self::from_json`] over a parsed JSON value.
    pub fn from_value(v: Json) -> Result<SequenceDefinition> {
        let mut errs = ValidationErrors::new();
        let Json::Object(mut m) = v else {
            return Err(Error::validation("_", "must be a JSON object"));
        };
        check_format(&mut errs, m.get("format"));
        if !errs.is_empty() {
            return Err(errs.into());
        }
        m.remove("format");
        for k in m.keys() {
            if !["name", "record_kind", "steps", "exit"].contains(&k.as_str()) {
                errs.push(k.clone(), "is not a member of a sequence");
            }
        }
        let mut string = |errs: &mut ValidationErrors, k: &str| match m.remove(k) {
            Some(Json::String(s)) => Some(s),
            Some(_) => {
                errs.push(k, "must be a string");
                None
            }
            None => {
                errs.push(k, "is required");
                None
            }
        };
        let name = string(&mut errs, "name");
        let record_kind = string(&mut errs, "record_kind");
        let steps = match m.remove("steps") {
            Some(s) => parse_steps(&mut errs, "steps", s),
            None => {
                errs.push("steps", "is required");
                None
            }
        };
        let exit = match m.remove("exit") {
            Some(e) => part(&mut errs, "exit", e),
            None => Some(Exit::default()),
        };
        match (name, record_kind, steps, exit) {
            (Some(name), Some(record_kind), Some(steps), Some(exit)) if errs.is_empty() => {
                Ok(SequenceDefinition {
                    name,
                    record_kind,
                    steps,
                    exit,
                })
            }
            _ => Err(errs.into()),
        }
    }

    /// The JSON document, with `"format": 1` first.
    pub fn to_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("format".into(), FORMAT.into());
        if let Json::Object(rest) = service::to_json(self) {
            m.extend(rest);
        }
        Json::Object(m)
    }
}

/// A stored sequence: its definition, its owner and the system fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    /// Id.
    pub id: SequenceId,
    /// The format ([`FORMAT`]).
    pub format: u32,
    /// Name.
    pub name: String,
    /// The kind of the records it runs on (fixed when it is made).
    pub record_kind: String,
    /// The steps, in order.
    pub steps: Vec<SequenceStep>,
    /// When an enrolment ends early.
    pub exit: Exit,
    /// The owner (who manages it; the steps run with the enrolling rule's owner's
    /// authority).
    pub owner: UserId,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version (1 when created, +1 per change).
    pub version: u64,
}

impl Sequence {
    /// The sequence's definition.
    pub fn definition(&self) -> SequenceDefinition {
        SequenceDefinition {
            name: self.name.clone(),
            record_kind: self.record_kind.clone(),
            steps: self.steps.clone(),
            exit: self.exit.clone(),
        }
    }
}

/// Input for a new sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSequence {
    /// The format (absent: [`FORMAT`]; any other value is refused).
    #[serde(default)]
    pub format: Option<u32>,
    /// Name.
    pub name: String,
    /// The kind of the records it runs on.
    pub record_kind: String,
    /// The steps.
    pub steps: Vec<SequenceStep>,
    /// When an enrolment ends early.
    #[serde(default)]
    pub exit: Exit,
    /// Owner; the actor when absent. A Rep may only own sequences themselves.
    #[serde(default)]
    pub owner: Option<UserId>,
}

impl NewSequence {
    /// A sequence on `record_kind` with no steps yet.
    pub fn new(name: impl Into<String>, record_kind: impl Into<String>) -> Self {
        NewSequence {
            format: None,
            name: name.into(),
            record_kind: record_kind.into(),
            steps: vec![],
            exit: Exit::default(),
            owner: None,
        }
    }

    /// From a definition.
    pub fn from_definition(d: SequenceDefinition) -> Self {
        NewSequence {
            format: None,
            name: d.name,
            record_kind: d.record_kind,
            steps: d.steps,
            exit: d.exit,
            owner: None,
        }
    }

    /// With an action step (after the others).
    pub fn action(mut self, a: Action) -> Self {
        self.steps.push(SequenceStep::Action(a));
        self
    }

    /// With a wait step (after the others).
    pub fn wait(mut self, o: Offset) -> Self {
        self.steps.push(SequenceStep::Wait(o));
        self
    }

    crmkit_core::setters! {
        /// Ends early on these conditions.
        set exit: Exit;
        /// Owned by this user.
        some owner: UserId;
    }
}

/// A change to a sequence: `None` leaves a part alone (its record kind never changes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequencePatch {
    /// The format of the parts given (absent: [`FORMAT`]).
    pub format: Option<u32>,
    /// New name.
    pub name: Option<String>,
    /// New steps. Active enrolments go on at the same step index.
    pub steps: Option<Vec<SequenceStep>>,
    /// New exit conditions.
    pub exit: Option<Exit>,
    /// New owner.
    pub owner: Option<UserId>,
}

impl SequencePatch {
    crmkit_core::setters! {
        /// New name.
        some name: String;
        /// New steps.
        some steps: Vec<SequenceStep>;
        /// New exit conditions.
        some exit: Exit;
        /// New owner.
        some owner: UserId;
    }
}

const SEQUENCE_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("name", Text(200), false),
        ("name_fold", Text(200), false),
        ("record_kind", Text(64), false),
        ("definition", LongText, false),
        ("owner_id", Uuid, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(SEQUENCE_TABLE, columns(SEQUENCE_COLUMNS), ["id"])
            .index(IndexDef::new(
                "automation_sequences_owner",
                ["owner_id", "id"],
            ))
            .index(IndexDef::new(
                "automation_sequences_name",
                ["name_fold", "id"],
            )),
    ]
}

/// Queryable sequence fields.
pub const SEQUENCE_FIELDS: RecordFields = RecordFields {
    kind: SEQUENCE_KIND,
    table: SEQUENCE_TABLE,
    fields: &[
        FieldSpec::new("id", Q::Uuid, false),
        FieldSpec::new("name", Q::Text, false).folded("name_fold"),
        FieldSpec::new("record_kind", Q::Text, false),
        FieldSpec::new("owner", Q::Uuid, false).in_column("owner_id"),
        FieldSpec::new("created_at", Q::Timestamp, false),
        FieldSpec::new("updated_at", Q::Timestamp, false),
        FieldSpec::new("deleted_at", Q::Timestamp, true),
    ],
    custom_column: None,
};

/// The stored definition column.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    steps: Vec<SequenceStep>,
    exit: Exit,
}

fn sequence_row(s: &Sequence) -> Result<Row> {
    let def = serde_json::to_string(&Stored {
        format: s.format,
        steps: s.steps.clone(),
        exit: s.exit.clone(),
    })
    .map_err(|e| Error::storage_from("sequence definition", e))?;
    Ok(vec![
        Value::Uuid(s.id.as_uuid()),
        Value::Text(s.name.clone()),
        Value::Text(fold(&s.name)),
        Value::Text(s.record_kind.clone()),
        Value::Text(def),
        Value::Uuid(s.owner.as_uuid()),
        Value::timestamp(s.created_at),
        Value::timestamp(s.updated_at),
        Value::opt_timestamp(s.deleted_at),
        Value::Int(s.version as i64),
    ])
}

/// A sequence row.
pub(crate) fn decode_sequence(mut r: Vec<Value>) -> Result<Sequence> {
    let bad = |w: &str| Error::storage(format!("malformed automation sequence row: {w}"));
    let stored: Stored = serde_json::from_str(r[4].as_text().ok_or_else(|| bad("definition"))?)
        .map_err(|e| Error::storage_from("malformed automation sequence row: definition", e))?;
    Ok(Sequence {
        id: SequenceId::from_uuid(uuid(&r[0])?),
        format: stored.format,
        name: text(&mut r[1])?,
        record_kind: text(&mut r[3])?,
        steps: stored.steps,
        exit: stored.exit,
        owner: UserId::from_uuid(uuid(&r[5])?),
        created_at: decode_timestamp(&r[6])?,
        updated_at: decode_timestamp(&r[7])?,
        deleted_at: opt_ts(&r[8])?,
        version: r[9].as_int().ok_or_else(|| bad("version"))? as u64,
    })
}

crmkit_core::stored_record!(Sequence, SequenceId, SEQUENCE_KIND, SEQUENCE_TABLE, decode_sequence,
    access: |s| (Some(s.owner), None));

/// The sequences API (from [`crate::AutomationModule`] composed into a store). See [the
/// module documentation](self) for the model, exits and access.
#[derive(Clone)]
pub struct Sequences {
    store: Store,
    custom_actions: Arc<CustomActions>,
}

impl std::fmt::Debug for Sequences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequences").finish_non_exhaustive()
    }
}

fn check_patch_format(errs: &mut ValidationErrors, f: Option<u32>) {
    crate::model::check_input_format(errs, "sequence", f)
}

impl Sequences {
    /// The API over a store composed with the automation module.
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module(crate::MODULE_NAME)?;
        Ok(Sequences {
            store: store.clone(),
            custom_actions: store.modules().automation_actions().clone(),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn scope(ctx: &Ctx, include_deleted: bool) -> Cond {
        crate::service::owned_scope(ctx, include_deleted)
    }

    async fn check(&self, ctx: &Ctx, errs: &mut ValidationErrors, s: &Sequence) -> Result<()> {
        crate::validate::check_sequence(
            &self.store,
            ctx,
            &self.custom_actions,
            errs,
            &s.name,
            &s.record_kind,
            &s.steps,
            &s.exit,
        )
        .await
    }

    /// Creates a sequence after validating everything (name, record kind, every step as
    /// a rule's action on that kind is validated, waits, the exit filter and activity
    /// types), every problem at once in one Validation error naming each part; nothing is
    /// written then. Writes the sequence, an audit entry and an
    /// `automation_sequence.created` event.
    pub async fn create(&self, ctx: &Ctx, input: NewSequence) -> Result<Sequence> {
        ctx.actor().require_write("create automation sequence")?;
        let now = ctx.now();
        let s = Sequence {
            id: SequenceId::new(),
            format: FORMAT,
            name: input.name,
            record_kind: input.record_kind,
            steps: input.steps,
            exit: input.exit,
            owner: input.owner.unwrap_or(ctx.actor().user),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        let mut errs = ValidationErrors::new();
        check_patch_format(&mut errs, input.format);
        OwnerChecks::new()
            .check(&self.store, ctx, &mut errs, s.owner, None)
            .await?;
        self.check(ctx, &mut errs, &s).await?;
        errs.into_result()?;
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: SEQUENCE_TABLE,
            row: sequence_row(&s)?,
        });
        stage_created(&mut cs, RecordRef::from(s.id), SEQUENCE_KIND.as_str(), &s);
        self.store.commit(cs).await?;
        Ok(s)
    }

    /// Changes a sequence whose current version is `expected_version` (else Conflict),
    /// validated as by [`Sequences::create`]. An audit entry per changed part and one
    /// `automation_sequence.updated` event; a patch that changes nothing writes nothing.
    /// Active enrolments go on at the step index they are at.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: SequenceId,
        expected_version: u64,
        patch: SequencePatch,
    ) -> Result<Sequence> {
        ctx.actor().require_write("update automation sequence")?;
        let old = self.load(ctx, id, Some(false)).await?;
        let mut new = old.clone();
        crmkit_core::apply_patch!(patch => new; name, steps, exit);
        let mut errs = ValidationErrors::new();
        check_patch_format(&mut errs, patch.format);
        if let Some(o) = patch.owner {
            new.owner = o;
            OwnerChecks::new()
                .check(&self.store, ctx, &mut errs, o, None)
                .await?;
        }
        self.check(ctx, &mut errs, &new).await?;
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        service::update_record(
            &self.store,
            ctx,
            old,
            new,
            "automation_sequence.updated",
            sequence_row,
        )
        .await
    }

    /// Lists the sequences visible to the actor (Admin and Manager: all; others: their
    /// own): filter, sort, keyset page (fields: [`SEQUENCE_FIELDS`]). Deleted ones only
    /// with [`Query::include_deleted`].
    pub async fn list(&self, ctx: &Ctx, q: &Query) -> Result<Page<Sequence>> {
        let scope = Self::scope(ctx, q.include_deleted);
        service::list_page(
            &self.store,
            ctx,
            q,
            &SEQUENCE_FIELDS,
            scope,
            decode_sequence,
            |_| None,
        )
        .await
    }

    /// Whether the actor may see sequences owned by `owner` (Admin, Manager: all; others:
    /// their own).
    pub(crate) fn sees_owner(ctx: &Ctx, owner: UserId) -> bool {
        crate::Rules::manages_all(ctx) || owner == ctx.actor().user
    }

    /// The enrolments of a record the actor can see (a hidden record is NotFound, like a
    /// missing one; a deleted record's enrolments stay readable to whoever may read its
    /// audit trail), in the sequences the actor can see, newest first, at most `limit`
    /// (1 to 1000).
    pub async fn enrolments_of_record(
        &self,
        ctx: &Ctx,
        record: &RecordRef,
        limit: u32,
    ) -> Result<Vec<crate::enrolments::Enrolment>> {
        crmkit_core::query::check_limit(limit)?;
        self.store
            .records()
            .audit(ctx, record.kind.as_str(), record.id)
            .await?;
        let owners = self.owners(ctx).await?;
        let mut out = crate::enrolments::of_record(&self.store, ctx.tenant(), record).await?;
        out.retain(|e| {
            owners
                .get(&e.sequence)
                .is_some_and(|o| Self::sees_owner(ctx, *o))
        });
        out.truncate(limit as usize);
        Ok(out)
    }

    /// The enrolments of a sequence the actor can see (a hidden sequence is NotFound,
    /// like a missing one), of the records the actor can see, newest first, at most
    /// `limit` (1 to 1000).
    pub async fn enrolments_of_sequence(
        &self,
        ctx: &Ctx,
        id: SequenceId,
        limit: u32,
    ) -> Result<Vec<crate::enrolments::Enrolment>> {
        crmkit_core::query::check_limit(limit)?;
        self.load(ctx, id, None).await?;
        let all = crate::enrolments::of_sequence(&self.store, ctx.tenant(), id).await?;
        let records = self.store.records();
        let mut out = vec![];
        for e in all {
            if out.len() >= limit as usize {
                break;
            }
            let visible = match records
                .audit(ctx, e.record.kind.as_str(), e.record.id)
                .await
            {
                Ok(_) => true,
                Err(Error::NotFound { .. } | Error::PermissionDenied(_)) => false,
                Err(err) => return Err(err),
            };
            if visible {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every sequence's owner (deleted ones too), by sequence.
    async fn owners(&self, ctx: &Ctx) -> Result<std::collections::HashMap<SequenceId, UserId>> {
        let mut s = crmkit_core::store::Select::new(SEQUENCE_TABLE, Cond::True);
        s.omit = vec!["definition".into()];
        let rows = self.store.backend().select(ctx.tenant(), &s).await?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            if let (Some(id), Some(owner)) = (r[0].as_uuid(), r[5].as_uuid()) {
                out.insert(SequenceId::from_uuid(id), UserId::from_uuid(owner));
            }
        }
        Ok(out)
    }
}

crmkit_core::record_verbs! {
    Sequences: Sequence, SequenceId;
    load;
    /// A sequence that is visible to the actor and not deleted (NotFound otherwise, the
    /// same for missing, another tenant's and hidden).
    get;
    /// The audit trail of a visible sequence (deleted or not).
    audit;
    /// Soft-deletes a sequence (restorable). Its active enrolments end as exited when
    /// their next step is due.
    delete;
    /// Restores a soft-deleted sequence.
    restore;
    set_deleted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Json {
        json!({
            "format": 1,
            "name": "Nurture",
            "record_kind": "contact",
            "steps": [
                {"type": "create_activity", "activity_type": "task", "subject": "Call {{first_name}}"},
                {"type": "wait", "amount": 2, "unit": "business_days",
                 "calendar": "0190a0a0-0000-7000-8000-000000000001"},
                {"type": "notify", "channel": "email", "subject": "Follow up", "body": ""}
            ],
            "exit": {"activities": ["email", "meeting"],
                     "filter": {"Cmp": ["job_title", "eq", {"Text": "Buyer"}]}}
        })
    }

    fn fields(r: Result<SequenceDefinition>) -> Vec<String> {
        match r {
            Err(Error::Validation(v)) => v.errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a Validation error, got {other:?}"),
        }
    }

    #[test]
    fn documents_round_trip() {
        let d = SequenceDefinition::from_value(doc()).expect("parses");
        assert_eq!(d.steps.len(), 3);
        assert!(matches!(
            d.steps[1],
            SequenceStep::Wait(Offset { amount: 2, .. })
        ));
        let again = SequenceDefinition::from_value(d.to_json()).expect("round trip");
        assert_eq!(again, d);
        assert_eq!(d.to_json()["steps"][1]["type"], "wait");
        assert_eq!(d.to_json()["format"], 1);
    }

    #[test]
    fn bad_documents_name_the_part() {
        assert_eq!(fields(SequenceDefinition::from_json("{nope")), ["_"]);
        let mut d = doc();
        d["format"] = json!(2);
        assert_eq!(fields(SequenceDefinition::from_value(d)), ["format"]);
        let mut d = doc();
        d["steps"][0]["type"] = json!("teleport");
        d["steps"][1] = json!({"type": "wait", "amount": 2});
        d["steps"][2].as_object_mut().unwrap().remove("type");
        d["exit"] = json!({"when": 1});
        d["extra"] = json!(true);
        assert_eq!(
            fields(SequenceDefinition::from_value(d)),
            [
                "extra",
                "steps[0].type",
                "steps[1]",
                "steps[2].type",
                "exit"
            ]
        );
        let mut d = doc();
        d["steps"] = json!({});
        d["name"] = json!(1);
        assert_eq!(fields(SequenceDefinition::from_value(d)), ["name", "steps"]);
    }

    #[test]
    fn a_wait_step_refuses_unknown_members() {
        let v = json!({"type": "wait", "amount": 1, "unit": "days", "every": 2});
        assert!(serde_json::from_value::<SequenceStep>(v).is_err());
        let v = json!({"type": "wait", "amount": 1, "unit": "days"});
        assert_eq!(
            serde_json::from_value::<SequenceStep>(v.clone()).unwrap(),
            SequenceStep::Wait(Offset {
                amount: 1,
                unit: crate::TimeUnit::Days,
                calendar: None
            })
        );
        assert_eq!(
            serde_json::to_value(SequenceStep::Wait(Offset {
                amount: 1,
                unit: crate::TimeUnit::Days,
                calendar: None
            }))
            .unwrap(),
            v
        );
    }

    /// One item of a generated steps list: what it is, for the oracle.
    #[derive(Debug, Clone)]
    enum Item {
        Wait(u32, crate::TimeUnit),
        Tag(String),
        UnknownType,
        NoType,
        BadShape,
    }

    fn item_json(i: &Item) -> Json {
        match i {
            Item::Wait(n, u) => json!({"type": "wait", "amount": n, "unit": u}),
            Item::Tag(t) => json!({"type": "add_tag", "tag": t}),
            Item::UnknownType => json!({"type": "teleport"}),
            Item::NoType => json!({"tag": "x"}),
            Item::BadShape => json!({"type": "wait", "amount": "soon", "unit": "days"}),
        }
    }

    fn items() -> impl proptest::strategy::Strategy<Value = Vec<Item>> {
        use crate::TimeUnit::*;
        use proptest::prelude::*;
        let item = prop_oneof![
            4 => (1u32..100, prop_oneof![Just(Minutes), Just(Hours), Just(Days)])
                .prop_map(|(n, u)| Item::Wait(n, u)),
            4 => "[a-z]{1,8}".prop_map(Item::Tag),
            1 => Just(Item::UnknownType),
            1 => Just(Item::NoType),
            1 => Just(Item::BadShape),
        ];
        proptest::collection::vec(item, 0..12)
    }

    proptest::proptest! {
        /// `parse_steps` names exactly the bad items (by index, `.type` for an unknown or
        /// missing type), and gives back the good ones, which serialise to what was read.
        #[test]
        fn parse_steps_names_exactly_the_bad_items(list in items()) {
            let mut errs = ValidationErrors::new();
            let parsed = parse_steps(&mut errs, "steps", Json::Array(list.iter().map(item_json).collect()));
            let expected: Vec<String> = list
                .iter()
                .enumerate()
                .filter_map(|(i, it)| match it {
                    Item::UnknownType | Item::NoType => Some(format!("steps[{i}].type")),
                    Item::BadShape => Some(format!("steps[{i}]")),
                    _ => None,
                })
                .collect();
            let named: Vec<String> = errs.errors.iter().map(|e| e.field.clone()).collect();
            proptest::prop_assert_eq!(&named, &expected);
            match parsed {
                None => proptest::prop_assert!(!expected.is_empty()),
                Some(steps) => {
                    proptest::prop_assert!(expected.is_empty());
                    proptest::prop_assert_eq!(steps.len(), list.len());
                    for (s, it) in steps.iter().zip(&list) {
                        proptest::prop_assert_eq!(serde_json::to_value(s).unwrap(), item_json(it));
                    }
                }
            }
        }
    }

    #[test]
    fn field_columns_exist() {
        let t = &tables()[0];
        for f in SEQUENCE_FIELDS.fields {
            assert!(t.position(f.column).is_some(), "{}", f.column);
        }
        assert_eq!(t.columns.len(), SEQUENCE_COLUMNS.len());
    }
}
