//! `org_notes`: a third-party crmkit module built only on crmkit's public APIs (the facade
//! `crmkit::...` and the kernel it re-exports, `crmkit::core::...`). It keeps notes on
//! organizations (`org_note` records) and takes part in crmkit exactly like the built-in
//! modules do:
//!
//! - **Schema**: its own table and versioned migrations (version 2 adds a column, as a
//!   module's later releases do).
//! - **Typed API** ([`OrgNotes`]): create, get, list (the query AST with keyset paging,
//!   through `service::list_page`), update on an expected version, soft delete, restore
//!   and the audit trail. Every change commits one changeset: the row, its audit entries
//!   and its event, atomically on every backend.
//! - **Record-level access, like built-in records**: a note has its own `owner` (the
//!   acting user by default) and optional `team`; Admins and Managers see every note, a
//!   Rep or a ReadOnly user the notes they or their teams own. A note hidden from the
//!   actor is `NotFound`, exactly like a note that does not exist. Notes do *not* inherit
//!   visibility from their organization (the organization may be reassigned, deleted or
//!   restored later without hiding or revealing notes), the same as a contact's
//!   `organization` reference.
//! - **References obey access**: the organization a note is written on (at create, or
//!   when a patch moves the note) must be one the actor may see. It is checked through
//!   `store.records().check_reference`, so a missing, deleted, foreign, hidden or
//!   wrong-kind id all give the one Validation error `organization: is not an
//!   organization of this tenant`.
//! - **The generic record API**: [`OrgNotesModule`] declares the `org_note` kind through
//!   `Module::record_kinds` with a full [`KindDescription`] (fields, query names, events,
//!   lifecycle), served by [`OrgNoteKind`] over the typed API, so `crm.records()` by kind
//!   name validates, checks access and writes exactly as the typed calls do.
//! - **An automation action kind**: [`OrgNotesModule`] offers `org_note.add` (write a note
//!   on the organization a rule fires for) through `Module::automation_actions`, with
//!   its parameters (`text`, required; `title`, optional) validated by [`AddNoteAction`]
//!   when a rule using it is saved, so `crm.automation()` accepts it and names a bad
//!   parameter `actions[i].params.text`.
//!
//! This file is shared by `examples/custom_module.rs` and the facade's
//! `tests/third_party_kinds.rs`, which runs crmkit-testkit's generic conformance checks
//! over `org_note` on every backend.

// The example uses only part of the API; the test uses the rest.
#![allow(dead_code)]

use std::fmt;

use crmkit::core::action::CustomAction;
use crmkit::core::event::decode_timestamp;
use crmkit::core::query::{FieldSpec, FieldType as Q, RecordFields};
use crmkit::core::record::{
    FieldDescription as F, FieldType as T, KindDescription, KindHandler, TypedKind, typed,
};
use crmkit::core::row::{opt_timestamp, take_text, uuid};
use crmkit::core::service::{
    OwnerChecks, SoftDelete, changed_columns, diff, list_page, stage_created, stage_soft_delete,
    to_json, visibility_scope,
};
use crmkit::core::store::{
    ColumnDef, ColumnType, IndexDef, Migration, Row, SchemaStep, TableDef, Value, Write, columns,
};
use crmkit::core::text::{check_text, fold};
use crmkit::core::{Changeset, CustomValues, NewEvent};
use crmkit::{
    AuditEntry, Ctx, DateTime, Error, Module, OrganizationId, Page, Query, RecordKind, RecordRef,
    Result, Store, TeamId, UserId, Utc, Uuid, ValidationErrors,
};
use serde::{Deserialize, Serialize};

/// The module's name.
pub const MODULE: &str = "org_notes";
/// The notes table (prefixed with the module's name, as crmkit's tables are).
pub const NOTES_TABLE: &str = "orgnotes_note";
/// The record kind of a note.
pub const ORG_NOTE: RecordKind = RecordKind::new("org_note");
/// The longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// The longest body, in characters.
pub const MAX_BODY: usize = 10_000;

/// The columns of version 1, in row order; version 2 appends `pinned`.
const NOTE_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("organization_id", Uuid, false),
        ("title", Text(200), false),
        ("title_fold", Text(200), false),
        ("body", LongText, false),
        ("owner_id", Uuid, false),
        ("team_id", Uuid, true),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

/// What a query over notes may filter and sort on (the names of
/// [`KindDescription::query`]).
pub const ORG_NOTE_FIELDS: RecordFields = RecordFields {
    kind: ORG_NOTE,
    table: NOTES_TABLE,
    fields: &[
        FieldSpec::new("id", Q::Uuid, false),
        FieldSpec::new("organization", Q::Uuid, false).in_column("organization_id"),
        FieldSpec::new("title", Q::Text, false).folded("title_fold"),
        FieldSpec::new("pinned", Q::Bool, false),
        FieldSpec::new("owner", Q::Uuid, false).in_column("owner_id"),
        FieldSpec::new("team", Q::Uuid, true).in_column("team_id"),
        FieldSpec::new("created_at", Q::Timestamp, false),
        FieldSpec::new("updated_at", Q::Timestamp, false),
        FieldSpec::new("deleted_at", Q::Timestamp, true),
    ],
    custom_column: None,
};

/// The id of a note (a time-ordered UUID v7, like crmkit's own ids).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgNoteId(Uuid);

impl OrgNoteId {
    /// A new id.
    pub fn new() -> Self {
        OrgNoteId(Uuid::now_v7())
    }
    /// Wraps a UUID.
    pub const fn from_uuid(id: Uuid) -> Self {
        OrgNoteId(id)
    }
    /// The UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for OrgNoteId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrgNoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl From<OrgNoteId> for RecordRef {
    fn from(id: OrgNoteId) -> RecordRef {
        RecordRef::new(ORG_NOTE, id.0)
    }
}

/// A note on an organization. Its JSON is the `org_note` kind's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgNote {
    /// Id.
    pub id: OrgNoteId,
    /// The organization the note is on.
    pub organization: OrganizationId,
    /// A short title (searchable).
    pub title: String,
    /// The note.
    pub body: String,
    /// Pinned notes come first where a host sorts on `pinned`.
    pub pinned: bool,
    /// Owner.
    pub owner: UserId,
    /// Owning team.
    pub team: Option<TeamId>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version (1 on create, +1 per change).
    pub version: u64,
}

/// Input for a new note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrgNote {
    /// The organization (one the actor may see).
    pub organization: OrganizationId,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Pinned.
    #[serde(default)]
    pub pinned: bool,
    /// Owner; the acting user when absent.
    #[serde(default)]
    pub owner: Option<UserId>,
    /// Team.
    #[serde(default)]
    pub team: Option<TeamId>,
}

impl NewOrgNote {
    /// A note with a title and a body on an organization.
    pub fn new(
        organization: OrganizationId,
        title: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        NewOrgNote {
            organization,
            title: title.into(),
            body: body.into(),
            pinned: false,
            owner: None,
            team: None,
        }
    }

    /// The same note, pinned.
    pub fn pinned(mut self) -> Self {
        self.pinned = true;
        self
    }
}

/// A change to a note: only `Some` fields change (`team: Some(None)` clears the team).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrgNotePatch {
    /// Moves the note to another organization (one the actor may see).
    pub organization: Option<OrganizationId>,
    /// Title.
    pub title: Option<String>,
    /// Body.
    pub body: Option<String>,
    /// Pinned.
    pub pinned: Option<bool>,
    /// Owner.
    pub owner: Option<UserId>,
    /// Team.
    #[serde(deserialize_with = "crmkit::core::record::double_option")]
    pub team: Option<Option<TeamId>>,
}

/// The module: a name, a dependency on contacts (notes refer to organizations), versioned
/// migrations, its events and its record kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrgNotesModule;

impl Module for OrgNotesModule {
    fn name(&self) -> &'static str {
        MODULE
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["contacts"]
    }

    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration {
                version: 1,
                description: "notes on organizations",
                steps: vec![SchemaStep::CreateTable(
                    TableDef::new(NOTES_TABLE, columns(NOTE_COLUMNS), ["id"])
                        .index(IndexDef::new(
                            "orgnotes_note_org",
                            ["organization_id", "id"],
                        ))
                        .index(IndexDef::new("orgnotes_note_owner", ["owner_id", "id"]))
                        .index(IndexDef::new("orgnotes_note_team", ["team_id", "id"]))
                        .index(IndexDef::new("orgnotes_note_title", ["title_fold", "id"])),
                )],
            },
            Migration {
                version: 2,
                description: "pinned notes",
                steps: vec![SchemaStep::AddColumn {
                    table: NOTES_TABLE,
                    column: ColumnDef::required("pinned", ColumnType::Bool)
                        .with_default(Value::from(false)),
                }],
            },
        ]
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        vec![
            "org_note.created",
            "org_note.updated",
            "org_note.deleted",
            "org_note.restored",
        ]
    }

    fn record_kinds(&self) -> Vec<std::sync::Arc<dyn KindHandler>> {
        vec![typed(OrgNoteKind)]
    }

    fn automation_actions(&self) -> Vec<std::sync::Arc<dyn CustomAction>> {
        vec![std::sync::Arc::new(AddNoteAction)]
    }
}

/// The action kind `org_note.add`, offered to automation rules: `{"type": "custom",
/// "kind": "org_note.add", "params": {"text": "..", "title": ".."}}` writes a note on the
/// organization the rule fires for, as the rule's owner, in one commit (the engine renders
/// `{{field}}` templates in the parameters first). Only rules on organizations may use it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddNoteAction;

/// The kind name of [`AddNoteAction`].
pub const ADD_NOTE_ACTION: &str = "org_note.add";

impl CustomAction for AddNoteAction {
    fn kind(&self) -> &'static str {
        ADD_NOTE_ACTION
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        record_kind == Some("organization")
    }

    fn validate(&self, params: &crmkit::serde_json::Value) -> Result<()> {
        let mut errs = ValidationErrors::new();
        let Some(map) = params.as_object() else {
            errs.push("text", "is required (params must be an object)");
            return errs.into_result();
        };
        match map.get("text").map(|t| t.as_str()) {
            Some(Some(t)) => {
                errs.check(check_text("text", t, MAX_BODY, true));
            }
            Some(None) => errs.push("text", "must be a string"),
            None => errs.push("text", "is required"),
        }
        match map.get("title").map(|t| t.as_str()) {
            None => {}
            Some(Some(t)) => {
                errs.check(check_text("title", t, MAX_TITLE, false));
            }
            Some(None) => errs.push("title", "must be a string"),
        }
        for k in map.keys().filter(|k| *k != "text" && *k != "title") {
            errs.push(k.clone(), "is not a parameter of org_note.add");
        }
        errs.into_result()
    }

    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a crmkit::serde_json::Value,
    ) -> crmkit::core::store::BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let org = record
                .filter(|r| r.kind.as_str() == "organization")
                .map(|r| OrganizationId::from_uuid(r.id))
                .ok_or_else(|| Error::validation("record", "org_note.add runs on organizations"))?;
            let text = params["text"].as_str().unwrap_or_default();
            let title = params["title"].as_str().unwrap_or("Note");
            // One command, so one commit: the engine's run record joins it.
            let note = OrgNotes::new(store)?
                .create(ctx, NewOrgNote::new(org, title, text))
                .await?;
            Ok(format!("wrote the note {:?}", note.title))
        })
    }
}

fn note_row(n: &OrgNote) -> Row {
    vec![
        Value::Uuid(n.id.as_uuid()),
        Value::Uuid(n.organization.as_uuid()),
        Value::Text(n.title.clone()),
        Value::Text(fold(&n.title)),
        Value::Text(n.body.clone()),
        Value::Uuid(n.owner.as_uuid()),
        Value::opt_uuid(n.team),
        Value::timestamp(n.created_at),
        Value::timestamp(n.updated_at),
        Value::opt_timestamp(n.deleted_at),
        Value::Int(n.version as i64),
        Value::from(n.pinned),
    ]
}

fn decode_note(mut r: Row) -> Result<OrgNote> {
    let bad = |what: &str| Error::storage(format!("malformed {NOTES_TABLE} row: {what}"));
    if r.len() != 12 {
        return Err(bad("column count"));
    }
    Ok(OrgNote {
        id: OrgNoteId::from_uuid(uuid(&r[0])?),
        organization: OrganizationId::from_uuid(uuid(&r[1])?),
        title: take_text(&mut r[2])?,
        body: take_text(&mut r[4])?,
        owner: UserId::from_uuid(uuid(&r[5])?),
        team: r[6].as_uuid().map(TeamId::from_uuid),
        created_at: decode_timestamp(&r[7])?,
        updated_at: decode_timestamp(&r[8])?,
        deleted_at: opt_timestamp(&r[9])?,
        version: u64::try_from(r[10].as_int().ok_or_else(|| bad("version"))?)
            .map_err(|_| bad("version"))?,
        pinned: r[11].as_int().ok_or_else(|| bad("pinned"))? != 0,
    })
}

/// Notes have no custom fields, so list cursors never need custom values.
fn no_custom(_: &OrgNote) -> Option<&CustomValues> {
    None
}

/// The notes API, over a store that composes [`OrgNotesModule`].
#[derive(Debug, Clone)]
pub struct OrgNotes {
    store: Store,
}

impl OrgNotes {
    /// The API over `store`; a Config error if the store does not compose the module.
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module(MODULE)?;
        Ok(OrgNotes {
            store: store.clone(),
        })
    }

    /// A note that exists in the actor's tenant and is visible to the actor, deleted or
    /// not as `deleted` asks (`None`: either). Anything else is `NotFound`, the same for a
    /// note that does not exist, another tenant's (the backend never returns it) and one
    /// hidden from the actor.
    async fn load(&self, ctx: &Ctx, id: OrgNoteId, deleted: Option<bool>) -> Result<OrgNote> {
        let not_found = || Error::not_found(ORG_NOTE, id);
        let row = self
            .store
            .backend()
            .get(ctx.tenant(), NOTES_TABLE, &[Value::Uuid(id.as_uuid())])
            .await?
            .ok_or_else(not_found)?;
        let n = decode_note(row)?;
        if !ctx.actor().can_see(Some(n.owner), n.team)
            || deleted.is_some_and(|d| d != n.deleted_at.is_some())
        {
            return Err(not_found());
        }
        Ok(n)
    }

    /// Checks a note's fields, adding every problem to `errs`: the texts, and (when
    /// `organization` is given) that the organization is one the actor may refer to,
    /// through the one reference rule of `Records::check_reference`.
    async fn check_fields(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        n: &OrgNote,
        organization: Option<OrganizationId>,
    ) -> Result<()> {
        errs.check(check_text("title", &n.title, MAX_TITLE, true));
        errs.check(check_text("body", &n.body, MAX_BODY, true));
        if let Some(org) = organization {
            match self
                .store
                .records()
                .check_reference(ctx, "organization", &RecordRef::from(org))
                .await
            {
                Ok(()) => {}
                Err(Error::Validation(v)) => errs.errors.extend(v.errors),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates a note. Validation errors name every bad field at once; nothing is
    /// written unless the whole note is valid.
    pub async fn create(&self, ctx: &Ctx, input: NewOrgNote) -> Result<OrgNote> {
        ctx.actor().require_write("create org note")?;
        let now = ctx.now();
        let n = OrgNote {
            id: OrgNoteId::new(),
            organization: input.organization,
            title: input.title,
            body: input.body,
            pinned: input.pinned,
            owner: input.owner.unwrap_or(ctx.actor().user),
            team: input.team,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        let mut errs = ValidationErrors::new();
        self.check_fields(ctx, &mut errs, &n, Some(n.organization))
            .await?;
        OwnerChecks::new()
            .check(&self.store, ctx, &mut errs, n.owner, n.team)
            .await?;
        errs.into_result()?;
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: NOTES_TABLE,
            row: note_row(&n),
        });
        stage_created(&mut cs, RecordRef::from(n.id), ORG_NOTE.as_str(), &n);
        self.store.commit(cs).await?;
        Ok(n)
    }

    /// A live note visible to the actor.
    pub async fn get(&self, ctx: &Ctx, id: OrgNoteId) -> Result<OrgNote> {
        self.load(ctx, id, Some(false)).await
    }

    /// A page of the notes visible to the actor: filter, sort and keyset paging on the
    /// names of [`ORG_NOTE_FIELDS`] (deleted notes only with `Query::include_deleted`).
    pub async fn list(&self, ctx: &Ctx, q: &Query) -> Result<Page<OrgNote>> {
        let scope = visibility_scope(ctx, q.include_deleted);
        list_page(
            &self.store,
            ctx,
            q,
            &ORG_NOTE_FIELDS,
            scope,
            decode_note,
            no_custom,
        )
        .await
    }

    /// Changes a note whose current version is `expected_version` (a Conflict
    /// otherwise). A patch that changes nothing writes nothing.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: OrgNoteId,
        expected_version: u64,
        patch: OrgNotePatch,
    ) -> Result<OrgNote> {
        ctx.actor().require_write("update org note")?;
        let old = self.load(ctx, id, Some(false)).await?;
        let mut new = old.clone();
        if let Some(v) = patch.organization {
            new.organization = v;
        }
        if let Some(v) = patch.title {
            new.title = v;
        }
        if let Some(v) = patch.body {
            new.body = v;
        }
        if let Some(v) = patch.pinned {
            new.pinned = v;
        }
        let mut errs = ValidationErrors::new();
        self.check_fields(ctx, &mut errs, &new, patch.organization)
            .await?;
        if patch.owner.is_some() || patch.team.is_some() {
            new.owner = patch.owner.unwrap_or(old.owner);
            new.team = patch.team.unwrap_or(old.team);
            OwnerChecks::new()
                .check(&self.store, ctx, &mut errs, new.owner, new.team)
                .await?;
        }
        errs.into_result()?;
        let record = RecordRef::from(id);
        if old.version != expected_version {
            return Err(Error::Conflict {
                record,
                expected: expected_version,
                actual: old.version,
            });
        }
        new.updated_at = ctx.now();
        new.version = old.version + 1;
        let (audit, changed) = diff(
            &record,
            &to_json(&old),
            &to_json(&new),
            &["updated_at", "version"],
        );
        if changed.is_empty() {
            return Ok(old);
        }
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Update {
            table: NOTES_TABLE,
            key: vec![Value::Uuid(id.as_uuid())],
            set: changed_columns(
                self.store.backend().schema().table(NOTES_TABLE)?,
                &note_row(&old),
                &note_row(&new),
            ),
            expect_version: Some(expected_version),
            record: record.clone(),
        });
        cs.audit = audit;
        cs.events.push(NewEvent::new(
            "org_note.updated",
            record,
            changed,
            to_json(&new),
        ));
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// Soft-deletes a note (restorable).
    pub async fn delete(&self, ctx: &Ctx, id: OrgNoteId, expected_version: u64) -> Result<OrgNote> {
        self.set_deleted(ctx, id, expected_version, true).await
    }

    /// Restores a soft-deleted note.
    pub async fn restore(
        &self,
        ctx: &Ctx,
        id: OrgNoteId,
        expected_version: u64,
    ) -> Result<OrgNote> {
        self.set_deleted(ctx, id, expected_version, false).await
    }

    async fn set_deleted(
        &self,
        ctx: &Ctx,
        id: OrgNoteId,
        expected_version: u64,
        delete: bool,
    ) -> Result<OrgNote> {
        ctx.actor().require_write(if delete {
            "delete org note"
        } else {
            "restore org note"
        })?;
        let old = self.load(ctx, id, Some(!delete)).await?;
        let record = RecordRef::from(id);
        if old.version != expected_version {
            return Err(Error::Conflict {
                record,
                expected: expected_version,
                actual: old.version,
            });
        }
        let now = ctx.now();
        let mut new = old.clone();
        new.deleted_at = delete.then_some(now);
        new.updated_at = now;
        new.version += 1;
        let mut cs = Changeset::new(ctx);
        stage_soft_delete(
            &mut cs,
            SoftDelete {
                table: NOTES_TABLE,
                record,
                expected_version,
                was: old.deleted_at,
                now: new.deleted_at,
                at: now,
                kind: ORG_NOTE.as_str(),
                after: &new,
            },
        );
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// The audit trail of a visible note (deleted or not), oldest first.
    pub async fn audit(&self, ctx: &Ctx, id: OrgNoteId) -> Result<Vec<AuditEntry>> {
        self.load(ctx, id, None).await?;
        self.store.audit_unchecked(ctx, &RecordRef::from(id)).await
    }
}

/// The `org_note` kind for the generic record API: every generic call runs the typed
/// command of [`OrgNotes`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OrgNoteKind;

impl TypedKind for OrgNoteKind {
    type Record = OrgNote;
    type New = NewOrgNote;
    type Patch = OrgNotePatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new(
            "org_note",
            "Organization note",
            "Organization notes",
            MODULE,
        )
        .doc(
            "A note on an organization. Visible like other records: to its owner, its \
                 team, Managers and Admins; the organization must be visible to whoever \
                 writes the note on it.",
        )
        .id_field()
        .field(
            F::new("organization", T::reference("organization"))
                .required()
                .doc("The organization the note is on; a patch may move the note."),
        )
        .field(F::new("title", T::text(MAX_TITLE as u32)).required())
        .field(F::new("body", T::text(MAX_BODY as u32)).required())
        .field(F::new("pinned", T::Bool).doc("Pinned notes are shown first."))
        .owned()
        .system_fields()
        .queryable(&ORG_NOTE_FIELDS)
    }

    async fn get(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<OrgNote> {
        OrgNotes::new(store)?
            .get(ctx, OrgNoteId::from_uuid(id))
            .await
    }

    async fn list(&self, store: &Store, ctx: &Ctx, q: &Query) -> Result<Page<OrgNote>> {
        OrgNotes::new(store)?.list(ctx, q).await
    }

    async fn audit(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<Vec<AuditEntry>> {
        OrgNotes::new(store)?
            .audit(ctx, OrgNoteId::from_uuid(id))
            .await
    }

    async fn create(&self, store: &Store, ctx: &Ctx, input: NewOrgNote) -> Result<OrgNote> {
        OrgNotes::new(store)?.create(ctx, input).await
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: OrgNotePatch,
    ) -> Result<OrgNote> {
        OrgNotes::new(store)?
            .update(ctx, OrgNoteId::from_uuid(id), expected_version, patch)
            .await
    }

    async fn delete(&self, store: &Store, ctx: &Ctx, id: Uuid, v: u64) -> Result<OrgNote> {
        OrgNotes::new(store)?
            .delete(ctx, OrgNoteId::from_uuid(id), v)
            .await
    }

    async fn restore(&self, store: &Store, ctx: &Ctx, id: Uuid, v: u64) -> Result<OrgNote> {
        OrgNotes::new(store)?
            .restore(ctx, OrgNoteId::from_uuid(id), v)
            .await
    }
}
