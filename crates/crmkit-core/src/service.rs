//! Building blocks of a module's service layer, shared by every module so that the rules
//! are the same everywhere: visibility pushed into queries, owner and team checks against
//! the directory, per-field audit diffs, changed columns of an update, custom-value patches.
//!
//! They assume the record conventions of crmkit's tables: an `owner_id` (UUID) and a
//! nullable `team_id` column for record-level access, and a nullable `deleted_at` for soft
//! deletes.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::Store;
use crate::ctx::{Ctx, Visibility};
use crate::custom::{CustomValue, CustomValues};
use crate::error::{Error, Result, ValidationErrors};
use crate::event::AuditChange;
use crate::id::{RecordKind, RecordRef, TeamId, UserId};
use crate::store::{Cond, Row, RowRef, TableDef, Value};

/// The condition a list query is and-ed with: not soft-deleted (unless asked), and
/// visible to the actor (Admin and Manager see all; others their own and their teams').
pub fn visibility_scope(ctx: &Ctx, include_deleted: bool) -> Cond {
    let mut c = Cond::True;
    if !include_deleted {
        c = c.and(Cond::IsNull("deleted_at".into()));
    }
    if let Visibility::Owned { user, teams } = ctx.actor().visibility() {
        let mut any = vec![Cond::eq("owner_id", user.as_uuid())];
        if !teams.is_empty() {
            any.push(Cond::In(
                "team_id".into(),
                teams.iter().map(|t| Value::Uuid(t.as_uuid())).collect(),
            ));
        }
        c = c.and(Cond::Or(any));
    }
    c
}

/// Owner checks made during one command (an import checks many rows with few owners).
#[derive(Debug, Default)]
pub struct OwnerChecks {
    done: HashMap<(UserId, Option<TeamId>), Vec<FieldProblem>>,
}

/// A field and what is wrong with it.
type FieldProblem = (String, String);

impl OwnerChecks {
    /// No checks made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks who a record is given to: a Rep (or ReadOnly) may only give records to
    /// themselves and their own teams (PermissionDenied otherwise); the owner must be an
    /// active user of the tenant and the team a team of the tenant (Validation errors on
    /// `owner` / `team`, added to `errs`).
    pub async fn check(
        &mut self,
        store: &Store,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        owner: UserId,
        team: Option<TeamId>,
    ) -> Result<()> {
        let manages = ctx.actor().manages();
        if !manages && owner != ctx.actor().user {
            return Err(Error::PermissionDenied(
                "a rep may only give records to themselves".into(),
            ));
        }
        if let Some(t) = team
            && !manages
            && !ctx.actor().teams.contains(&t)
        {
            return Err(Error::PermissionDenied(
                "a rep may only give records to their own teams".into(),
            ));
        }
        if let Some(found) = self.done.get(&(owner, team)) {
            for (f, r) in found {
                errs.push(f.clone(), r.clone());
            }
            return Ok(());
        }
        let mut found = vec![];
        let dir = store.directory();
        match dir.require_active_user(ctx, "owner", owner).await {
            Ok(_) => {}
            Err(Error::Validation(v)) => {
                found.extend(v.errors.into_iter().map(|e| (e.field, e.reason)))
            }
            Err(e) => return Err(e),
        }
        if let Some(t) = team {
            match dir.team(ctx, t).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    found.push(("team".into(), "is not a team of this tenant".into()))
                }
                Err(e) => return Err(e),
            }
        }
        for (f, r) in &found {
            errs.push(f.clone(), r.clone());
        }
        self.done.insert((owner, team), found);
        Ok(())
    }
}

/// A record with crmkit's usual `owner` and `team` fields, which a patch may change
/// ([`reassign`]); [`stored_record!`](crate::stored_record) implements it for kinds whose
/// access is their owner and team.
pub trait Owned {
    /// Its owner and its team, to change in place.
    fn owner_and_team(&mut self) -> (&mut UserId, &mut Option<TeamId>);
}

/// Applies the owner and team of a patch (`None`: unchanged) to a record's `owner` and
/// `team`; when the patch gives either, checks the result as [`OwnerChecks::check`] does.
pub async fn reassign(
    store: &Store,
    ctx: &Ctx,
    errs: &mut ValidationErrors,
    record: &mut impl Owned,
    (owner, team): (Option<UserId>, Option<Option<TeamId>>),
) -> Result<()> {
    if owner.is_none() && team.is_none() {
        return Ok(());
    }
    let (record_owner, record_team) = record.owner_and_team();
    if let Some(o) = owner {
        *record_owner = o;
    }
    if let Some(t) = team {
        *record_team = t;
    }
    OwnerChecks::new()
        .check(store, ctx, errs, *record_owner, *record_team)
        .await
}

/// A record as JSON (event payloads, audit snapshots, diffs). Records are plain data, so
/// serialisation cannot fail.
pub fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("records serialize to JSON")
}

/// A record as JSON text.
pub fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize to JSON")
}

/// Per-field audit entries and the changed field names between two JSON snapshots of a
/// record (fields in `skip`, such as `updated_at` and `version`, are left out).
pub fn diff(
    record: &RecordRef,
    old: &serde_json::Value,
    new: &serde_json::Value,
    skip: &[&str],
) -> (Vec<AuditChange>, Vec<String>) {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return (vec![], vec![]);
    };
    let mut audit = vec![];
    let mut changed = vec![];
    for (k, nv) in n {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let ov = o.get(k).unwrap_or(&serde_json::Value::Null);
        if ov != nv {
            changed.push(k.clone());
            audit.push(AuditChange {
                record: record.clone(),
                field: k.clone(),
                old: (!ov.is_null()).then(|| ov.to_string()),
                new: (!nv.is_null()).then(|| nv.to_string()),
            });
        }
    }
    (audit, changed)
}

/// What changed between two versions of a record: an audit entry per changed field and the
/// changed field names, from [`changes`]; staged by [`stage_update`].
#[derive(Debug)]
pub struct Changes {
    /// The record.
    pub record: RecordRef,
    /// One audit entry per changed field.
    pub audit: Vec<AuditChange>,
    /// The changed field names.
    pub fields: Vec<String>,
}

impl Changes {
    /// Whether nothing changed (a command then writes nothing).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// The [`diff`] of two versions of a record, `updated_at` and `version` left out (every
/// versioned update bumps them).
pub fn changes<T: Serialize>(record: impl Into<RecordRef>, old: &T, new: &T) -> Changes {
    let record = record.into();
    let (audit, fields) = diff(
        &record,
        &to_json(old),
        &to_json(new),
        &["updated_at", "version"],
    );
    Changes {
        record,
        audit,
        fields,
    }
}

/// Adds a versioned update to `cs`: the update of the columns `set` of the record's row in
/// `table` (expecting `expected_version`), the audit entries of `changes` and one event of
/// kind `event` naming the changed fields, with `payload` (the record after the change).
/// Returns the changed field names. The caller stages what the kind needs besides (index
/// rows, links, ...).
pub fn stage_update(
    cs: &mut crate::Changeset,
    changes: Changes,
    table: &'static str,
    set: Vec<(&'static str, Value)>,
    expected_version: u64,
    event: &str,
    payload: serde_json::Value,
) -> Vec<String> {
    let Changes {
        record,
        audit,
        fields,
    } = changes;
    cs.writes.push(crate::store::Write::Update {
        table,
        key: vec![Value::Uuid(record.id)],
        set,
        expect_version: Some(expected_version),
        record: record.clone(),
    });
    cs.audit.extend(audit);
    cs.events
        .push(crate::NewEvent::new(event, record, fields.clone(), payload));
    fields
}

/// The columns whose values differ between two full rows of `table` (the key and the
/// `version` column excluded: a versioned update bumps the version itself).
pub fn changed_columns(
    table: &TableDef,
    old: &[Value],
    new: &[Value],
) -> Vec<(&'static str, Value)> {
    table
        .columns
        .iter()
        .zip(old.iter().zip(new))
        .filter(|(c, (o, n))| o != n && c.name != "version" && !table.primary_key.contains(&c.name))
        .map(|(c, (_, n))| (c.name, n.clone()))
        .collect()
}

/// Custom values after a patch: `Some` sets a key, `None` removes it.
pub fn apply_custom_patch(
    current: &CustomValues,
    patch: &BTreeMap<String, Option<CustomValue>>,
) -> CustomValues {
    let mut out = current.clone();
    for (k, v) in patch {
        match v {
            Some(v) => {
                out.insert(k.clone(), v.clone());
            }
            None => {
                out.remove(k);
            }
        }
    }
    out
}

/// A soft delete or restore of one record, for [`stage_soft_delete`].
#[derive(Debug)]
pub struct SoftDelete<'a, T: Serialize> {
    /// The record's table (with `deleted_at`, `updated_at` and `version` columns).
    pub table: &'static str,
    /// The record (its id is the table's key).
    pub record: RecordRef,
    /// The version the caller based the change on.
    pub expected_version: u64,
    /// `deleted_at` before.
    pub was: Option<chrono::DateTime<chrono::Utc>>,
    /// `deleted_at` after (`Some` deletes, `None` restores).
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// When (the new `updated_at`).
    pub at: chrono::DateTime<chrono::Utc>,
    /// The record kind's event prefix: events are `<kind>.deleted` / `<kind>.restored`.
    pub kind: &'a str,
    /// The record after the change (the event's payload).
    pub after: &'a T,
}

/// Adds a soft delete or restore to `cs`: the versioned update of `deleted_at` and
/// `updated_at`, its audit entry and its event.
pub fn stage_soft_delete<T: Serialize>(cs: &mut crate::Changeset, d: SoftDelete<'_, T>) {
    cs.writes.push(crate::store::Write::Update {
        table: d.table,
        key: vec![Value::Uuid(d.record.id)],
        set: vec![
            ("deleted_at", Value::opt_timestamp(d.now)),
            ("updated_at", Value::timestamp(d.at)),
        ],
        expect_version: Some(d.expected_version),
        record: d.record.clone(),
    });
    cs.audit.push(AuditChange {
        record: d.record.clone(),
        field: "deleted_at".into(),
        old: d.was.map(|t| json_text(&t)),
        new: d.now.map(|t| json_text(&t)),
    });
    let verb = if d.now.is_some() {
        "deleted"
    } else {
        "restored"
    };
    cs.events.push(crate::NewEvent::from_json(
        format!("{}.{verb}", d.kind),
        d.record,
        vec!["deleted_at".into()],
        json_text(d.after),
    ));
}

/// One keyset page of a record kind: compiles `q` against `fields` (loading the custom
/// field definitions only when the query names a custom field), and-ed with `scope`
/// (usually [`visibility_scope`]); runs it; decodes the rows; builds the next cursor from
/// the last row; counts every match when the query asks for a total.
///
/// `custom_of` gives a decoded record's custom values (for cursors on custom sort keys);
/// kinds without custom fields return `None`.
pub async fn list_page<T: Send>(
    store: &Store,
    ctx: &Ctx,
    q: &crate::query::Query,
    fields: &crate::query::RecordFields,
    scope: Cond,
    decode: impl Fn(Vec<Value>) -> Result<T> + Send,
    custom_of: impl Fn(&T) -> Option<&CustomValues>,
) -> Result<crate::query::Page<T>> {
    list_rows(
        store,
        ctx,
        q,
        fields,
        scope,
        move |row| decode(row.into_row()),
        custom_of,
    )
    .await
}

/// [`list_page`] with rows decoded as the backend hands them over ([`RowRef`]): a kind
/// that decodes borrowed cells reads a page without a `String` per text cell.
async fn list_rows<T: Send>(
    store: &Store,
    ctx: &Ctx,
    q: &crate::query::Query,
    fields: &crate::query::RecordFields,
    scope: Cond,
    decode: impl Fn(RowRef<'_>) -> Result<T> + Send,
    custom_of: impl Fn(&T) -> Option<&CustomValues>,
) -> Result<crate::query::Page<T>> {
    let custom = if q.mentions_custom() && fields.custom_column.is_some() {
        store.custom_fields().of_kind(ctx, &fields.kind).await?
    } else {
        crate::custom::CustomSchema::new(fields.kind.clone(), [])
    };
    let table = store.backend().schema().table(fields.table)?;
    let compiled = fields.compile(table, ctx.tenant(), q, &custom, scope)?;
    let limit = compiled.limit as usize;
    // The select asks for one row more than the page: it is counted, not decoded. The
    // page's last row is kept (copied) for the next cursor, which is built from its sort
    // values (and, for custom sort keys, the decoded record's custom values).
    let mut items: Vec<T> = Vec::with_capacity(limit.min(64));
    let mut last_row: Option<Row> = None;
    let mut more = false;
    {
        let (items, last_row, more) = (&mut items, &mut last_row, &mut more);
        let mut sink = move |row: RowRef<'_>| -> Result<()> {
            if items.len() >= limit {
                *more = true;
                return Ok(());
            }
            if items.len() + 1 == limit {
                *last_row = Some(row.to_row());
            }
            items.push(decode(row)?);
            Ok(())
        };
        store
            .backend()
            .select_with(ctx.tenant(), &compiled.select, &mut sink)
            .await?;
    }
    let empty = CustomValues::new();
    let next_cursor = match (more, &last_row, items.last()) {
        (true, Some(row), Some(last)) => {
            Some(fields.cursor_after(&compiled, row, custom_of(last).unwrap_or(&empty)))
        }
        _ => None,
    };
    let total = if q.with_total {
        Some(
            store
                .backend()
                .count(ctx.tenant(), fields.table, &compiled.select.cond)
                .await?,
        )
    } else {
        None
    };
    Ok(crate::query::Page {
        items,
        next_cursor,
        total,
    })
}

/// The rows `s` selects in the actor's tenant, each decoded with `decode`, in the order
/// the select gives them.
pub async fn select_rows<T>(
    store: &Store,
    ctx: &Ctx,
    s: &crate::store::Select,
    decode: impl FnMut(Row) -> Result<T>,
) -> Result<Vec<T>> {
    let rows = store.backend().select(ctx.tenant(), s).await?;
    rows.into_iter().map(decode).collect()
}

/// The page of `found`, rows read for a page of `limit` with one more asked for (a
/// select's `limit` of `limit + 1`, which tells whether more follow): the first `limit`
/// decoded (the extra one is not), and when there were more, the next cursor `cursor_of`
/// makes from the page's last item. No total.
pub fn page_of<R, T>(
    mut found: Vec<R>,
    limit: u32,
    decode: impl FnMut(R) -> Result<T>,
    cursor_of: impl FnOnce(&T) -> Option<String>,
) -> Result<crate::query::Page<T>> {
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let items = found.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
    let next_cursor = if more {
        items.last().and_then(cursor_of)
    } else {
        None
    };
    Ok(crate::query::Page {
        items,
        next_cursor,
        total: None,
    })
}

/// One keyset page of `s` in the actor's tenant, for lists whose cursor is not a
/// [`Query`](crate::Query)'s: selects one row more than `limit` and makes the page with
/// [`page_of`].
pub async fn select_page<T>(
    store: &Store,
    ctx: &Ctx,
    mut s: crate::store::Select,
    limit: u32,
    decode: impl FnMut(Row) -> Result<T>,
    cursor_of: impl FnOnce(&T) -> Option<String>,
) -> Result<crate::query::Page<T>> {
    s.limit = Some(limit + 1);
    let found = store.backend().select(ctx.tenant(), &s).await?;
    page_of(found, limit, decode, cursor_of)
}

/// One page of the records of kind `R` the actor may see: [`list_page`] over `fields`
/// and-ed with [`visibility_scope`] (deleted records only with `q.include_deleted`), rows
/// decoded by [`StoredRecord::decode`]. `custom_of` as for [`list_page`].
pub async fn list_visible<R: StoredRecord>(
    store: &Store,
    ctx: &Ctx,
    q: &crate::query::Query,
    fields: &crate::query::RecordFields,
    custom_of: impl Fn(&R) -> Option<&CustomValues>,
) -> Result<crate::query::Page<R>> {
    let scope = visibility_scope(ctx, q.include_deleted);
    list_rows(store, ctx, q, fields, scope, R::decode_row, custom_of).await
}

/// Adds the audit entry (`*`, the whole record as its new value) and the
/// `<kind>.created` event of a new record to `cs`; the record is serialised once for both.
pub fn stage_created<T: Serialize>(
    cs: &mut crate::Changeset,
    record: RecordRef,
    kind: &str,
    created: &T,
) {
    let snapshot = json_text(created);
    cs.audit.push(AuditChange {
        record: record.clone(),
        field: "*".into(),
        old: None,
        new: Some(snapshot.clone()),
    });
    cs.events.push(crate::NewEvent::from_json(
        format!("{kind}.created"),
        record,
        vec![],
        snapshot,
    ));
}

/// Stages a new record: the insert of its `row` into its table, and its audit entry and
/// `<kind>.created` event as [`stage_created`] writes them.
pub fn stage_insert<R: VersionedRecord>(cs: &mut crate::Changeset, record: &R, row: Row) {
    cs.writes.push(crate::store::Write::Insert {
        table: R::TABLE,
        row,
    });
    let kind = R::KIND;
    stage_created(cs, record.record_id().into(), kind.as_str(), record);
}

/// Creates a record that needs no other writes: [`stage_insert`] of it and its `row`,
/// committed as one changeset.
pub async fn insert_record<R: VersionedRecord>(
    store: &Store,
    ctx: &Ctx,
    record: R,
    row: Row,
) -> Result<R> {
    let mut cs = crate::Changeset::new(ctx);
    stage_insert(&mut cs, &record, row);
    store.commit(cs).await?;
    Ok(record)
}

/// A record kind stored as one versioned row: what [`stage_record_update`] needs to
/// stage an update of it (configuration kinds such as SLA calendars implement it with
/// [`versioned_record!`](crate::versioned_record); [`StoredRecord`]s have it from
/// [`stored_record!`](crate::stored_record)).
pub trait VersionedRecord: Serialize + Clone + Send + Sync {
    /// The record's typed id.
    type Id: Copy + Into<RecordRef> + Into<uuid::Uuid> + std::fmt::Display + Send + Sync;
    /// Its kind.
    const KIND: RecordKind;
    /// Its table.
    const TABLE: &'static str;
    /// Its id.
    fn record_id(&self) -> Self::Id;
    /// Its version.
    fn version(&self) -> u64;
    /// Marks it changed at `now`: sets `updated_at` and bumps the version.
    fn touch(&mut self, now: chrono::DateTime<chrono::Utc>);
}

/// A record kind stored in one table under crmkit's record conventions (an `id` key, an
/// owner and a team for record-level access, `deleted_at`, `updated_at` and `version`):
/// what [`load`], [`stage_set_deleted`], [`audit_trail`] and [`check_version`] need, so that
/// every module gets, deletes, restores and audits its records with the same code.
pub trait StoredRecord: VersionedRecord {
    /// Decodes a full row of [`VersionedRecord::TABLE`].
    fn decode(row: Vec<Value>) -> Result<Self>;
    /// Decodes a full row as a backend hands it over ([`RowRef`]); kinds that can decode
    /// borrowed cells without building a row first override it.
    fn decode_row(row: RowRef<'_>) -> Result<Self> {
        Self::decode(row.into_row())
    }
    /// Its owner and team, for record-level access.
    fn access(&self) -> (Option<UserId>, Option<TeamId>);
    /// When it was soft-deleted.
    fn deleted_at(&self) -> Option<chrono::DateTime<chrono::Utc>>;
    /// Marks it deleted (`Some`) or restored (`None`) at `now`: sets `deleted_at` and
    /// `updated_at` and bumps the version.
    fn mark_deleted(
        &mut self,
        deleted_at: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    );
}

/// The row of `table` keyed by `id` in the actor's tenant, or NotFound (as a record of
/// `kind`) when there is none.
pub async fn row_by_id(
    store: &Store,
    ctx: &Ctx,
    table: &'static str,
    kind: RecordKind,
    id: impl Into<uuid::Uuid> + std::fmt::Display + Copy,
) -> Result<crate::store::Row> {
    store
        .backend()
        .get(ctx.tenant(), table, &[Value::Uuid(id.into())])
        .await?
        .ok_or_else(|| Error::not_found(kind, id))
}

/// A record of kind `R` that the actor may see, or NotFound (the same error for missing,
/// another tenant's and hidden). `deleted`: `Some(false)` only live records, `Some(true)`
/// only deleted ones, `None` both.
pub async fn load<R: StoredRecord>(
    store: &Store,
    ctx: &Ctx,
    id: R::Id,
    deleted: Option<bool>,
) -> Result<R> {
    // The row is decoded as the backend hands it over (see `StoredRecord::decode_row`).
    let key = [Value::Uuid(id.into())];
    let mut found: Option<R> = None;
    {
        let found = &mut found;
        let mut sink = move |row: RowRef<'_>| -> Result<()> {
            *found = Some(R::decode_row(row)?);
            Ok(())
        };
        store
            .backend()
            .get_with(ctx.tenant(), R::TABLE, &key, &mut sink)
            .await?;
    }
    let r = found.ok_or_else(|| Error::not_found(R::KIND, id))?;
    let (owner, team) = r.access();
    if !ctx.actor().can_see(owner, team) || deleted.is_some_and(|d| d != r.deleted_at().is_some()) {
        return Err(Error::not_found(R::KIND, id));
    }
    Ok(r)
}

/// `Ok` when the record is at `expected` version, else the Conflict error.
pub fn check_version(record: impl Into<RecordRef>, expected: u64, actual: u64) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::conflict(record, expected, actual))
    }
}

/// Stages the soft delete (`delete`) or restore of a record whose version is
/// `expected_version`: the write-rights check, [`load`] (a live record to delete, a deleted
/// one to restore), the version check, then a changeset with the versioned update, its
/// audit entry and its `<kind>.deleted` / `<kind>.restored` event. The caller adds what
/// the kind needs besides (lookup index rows, ...) and commits; [`set_deleted`] commits
/// as it is. Returns the changeset and the record before and after the change.
pub async fn stage_set_deleted<R: StoredRecord>(
    store: &Store,
    ctx: &Ctx,
    id: R::Id,
    expected_version: u64,
    delete: bool,
) -> Result<(crate::Changeset, R, R)> {
    let verb = if delete { "delete" } else { "restore" };
    ctx.actor()
        .require_write(&format!("{verb} {}", R::KIND.as_str().replace('_', " ")))?;
    let old: R = load(store, ctx, id, Some(!delete)).await?;
    check_version(id, expected_version, old.version())?;
    let now = ctx.now();
    let mut new = old.clone();
    new.mark_deleted(delete.then_some(now), now);
    let mut cs = crate::Changeset::new(ctx);
    stage_soft_delete(
        &mut cs,
        SoftDelete {
            table: R::TABLE,
            record: id.into(),
            expected_version,
            was: old.deleted_at(),
            now: new.deleted_at(),
            at: now,
            kind: R::KIND.as_str(),
            after: &new,
        },
    );
    Ok((cs, old, new))
}

/// [`stage_set_deleted`] and commit.
pub async fn set_deleted<R: StoredRecord>(
    store: &Store,
    ctx: &Ctx,
    id: R::Id,
    expected_version: u64,
    delete: bool,
) -> Result<R> {
    set_deleted_with::<R>(store, ctx, id, expected_version, delete, |_, _, _| {}).await
}

/// [`stage_set_deleted`], then `extra` adds what the kind writes besides (given the
/// changeset, the record after the change and whether it is a delete: lookup index rows
/// leaving or coming back, ...), then commit.
pub async fn set_deleted_with<R: StoredRecord>(
    store: &Store,
    ctx: &Ctx,
    id: R::Id,
    expected_version: u64,
    delete: bool,
    extra: impl FnOnce(&mut crate::Changeset, &R, bool),
) -> Result<R> {
    let (mut cs, _, new) = stage_set_deleted::<R>(store, ctx, id, expected_version, delete).await?;
    extra(&mut cs, &new, delete);
    store.commit(cs).await?;
    Ok(new)
}

/// The hook of [`set_deleted_with`] for a kind whose records are in core's lookup index
/// (emails, phones): a delete takes the record's rows out of the index, a restore writes
/// `index(record)` back.
pub fn lookup_follows<R: StoredRecord>(
    index: impl FnOnce(&R) -> Vec<crate::store::Write>,
) -> impl FnOnce(&mut crate::Changeset, &R, bool) {
    move |cs, r, delete| {
        if delete {
            cs.writes
                .push(crate::lookup::remove_writes(&r.record_id().into()));
        } else {
            cs.writes.extend(index(r));
        }
    }
}

/// Stages the versioned update of a record from `old` to `new` (validated, and its
/// version checked, by the caller) in `cs`: marks `new` changed at the changeset's time
/// ([`VersionedRecord::touch`]); when no field but `updated_at` and `version` differs,
/// stages nothing and returns `None`. Otherwise stages, with [`stage_update`], the update
/// of the columns whose cells differ between `row(old)` and `row(new)` (expecting `old`'s
/// version), an audit entry per changed field and one event of kind `event` with `new` as
/// its payload, and returns the [`Changes`] record and field names. The caller stages what
/// the kind needs besides (index rows, links, ...) and commits.
pub fn stage_record_update<R: VersionedRecord>(
    store: &Store,
    cs: &mut crate::Changeset,
    old: &R,
    new: &mut R,
    event: &str,
    row: impl Fn(&R) -> Result<Vec<Value>>,
) -> Result<Option<(RecordRef, Vec<String>)>> {
    new.touch(cs.at);
    let changes = changes(old.record_id(), old, &*new);
    if changes.is_empty() {
        return Ok(None);
    }
    let record = changes.record.clone();
    let def = store.backend().schema().table(R::TABLE)?;
    let set = changed_columns(def, &row(old)?, &row(new)?);
    let fields = stage_update(
        cs,
        changes,
        R::TABLE,
        set,
        old.version(),
        event,
        to_json(&*new),
    );
    Ok(Some((record, fields)))
}

/// The audit trail of a record the actor may see (deleted ones included), oldest first.
pub async fn audit_trail<R: StoredRecord>(
    store: &Store,
    ctx: &Ctx,
    id: R::Id,
) -> Result<Vec<crate::AuditEntry>> {
    load::<R>(store, ctx, id, None).await?;
    store.audit_unchecked(ctx, &id.into()).await
}

/// [`stage_record_update`] in a changeset of its own, committed. Returns the record after
/// the change, or `old` when nothing changed (and nothing is written).
pub async fn update_record<R: VersionedRecord>(
    store: &Store,
    ctx: &Ctx,
    old: R,
    mut new: R,
    event: &str,
    row: impl Fn(&R) -> Result<Vec<Value>>,
) -> Result<R> {
    let mut cs = crate::Changeset::new(ctx);
    if stage_record_update(store, &mut cs, &old, &mut new, event, row)?.is_none() {
        return Ok(old);
    }
    store.commit(cs).await?;
    Ok(new)
}

/// Implements [`VersionedRecord`] for a record struct with crmkit's usual `id`,
/// `updated_at` and `version` fields:
///
/// ```ignore
/// crmkit_core::versioned_record!(StoredCalendar, CalendarId, CALENDAR, CALENDAR_TABLE);
/// ```
///
/// The crate using it must depend on `chrono`.
#[macro_export]
macro_rules! versioned_record {
    ($ty:ty, $id:ty, $kind:expr, $table:expr) => {
        impl $crate::service::VersionedRecord for $ty {
            type Id = $id;
            const KIND: $crate::RecordKind = $kind;
            const TABLE: &'static str = $table;
            fn record_id(&self) -> $id {
                self.id
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn touch(&mut self, now: ::chrono::DateTime<::chrono::Utc>) {
                self.updated_at = now;
                self.version += 1;
            }
        }
    };
}

/// Implements [`StoredRecord`] (and [`VersionedRecord`]) for a record struct with
/// crmkit's usual fields (`id`, `deleted_at`, `updated_at`, `version`, and by default
/// `owner` and `team` for access, which also makes it [`Owned`]):
///
/// ```ignore
/// crmkit_core::stored_record!(Lead, LeadId, RecordKind::LEAD, LEAD_TABLE, rows::decode_lead);
/// // a kind whose access fields have other names:
/// crmkit_core::stored_record!(Ticket, TicketId, TICKET, TICKET_TABLE, rows::decode_ticket,
///     access: |t| (t.assignee, t.queue));
/// ```
///
/// `decode` is any expression callable with a full row (a function path or a closure).
/// The crate using it must depend on `chrono`.
#[macro_export]
macro_rules! stored_record {
    ($ty:ty, $id:ty, $kind:expr, $table:expr, $decode:expr $(, rows: $rows:expr)?) => {
        $crate::stored_record!($ty, $id, $kind, $table, $decode,
            access: |r| (Some(r.owner), r.team) $(, rows: $rows)?);
        impl $crate::service::Owned for $ty {
            fn owner_and_team(&mut self) -> (&mut $crate::UserId, &mut Option<$crate::TeamId>) {
                (&mut self.owner, &mut self.team)
            }
        }
    };
    ($ty:ty, $id:ty, $kind:expr, $table:expr, $decode:expr, access: |$r:ident| $access:expr
        $(, rows: $rows:expr)?) => {
        $crate::versioned_record!($ty, $id, $kind, $table);
        impl $crate::service::StoredRecord for $ty {
            fn decode(row: ::std::vec::Vec<$crate::store::Value>) -> $crate::Result<Self> {
                ($decode)(row)
            }
            $(
                fn decode_row(row: $crate::store::RowRef<'_>) -> $crate::Result<Self> {
                    ($rows)(row)
                }
            )?
            fn access(&self) -> (Option<$crate::UserId>, Option<$crate::TeamId>) {
                let $r = self;
                $access
            }
            fn deleted_at(&self) -> Option<::chrono::DateTime<::chrono::Utc>> {
                self.deleted_at
            }
            fn mark_deleted(
                &mut self,
                deleted_at: Option<::chrono::DateTime<::chrono::Utc>>,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) {
                self.deleted_at = deleted_at;
                self.updated_at = now;
                self.version += 1;
            }
        }
    };
}

/// Writes the verbs every record kind's handle has in common, over this module's
/// helpers, as inherent methods of the handle, so that each handle states only what
/// differs. The handle must have a `store(&self) -> &Store` method; the record type must
/// be a [`StoredRecord`]. Each verb takes the rustdoc written above it:
///
/// ```ignore
/// crmkit_core::record_verbs! {
///     Leads: Lead, LeadId;
///     /// A lead that is visible to the actor and not deleted.
///     get;
///     load;                        // private: `load(ctx, id, deleted)`, see [`load`]
///     live;                        // private: `live(ctx, id, action)`, the write-rights
///                                  // check naming `action`, then [`load`] of a live record
///     /// Lists leads ...
///     list(LEAD_FIELDS, custom);   // `custom`: the records have custom values
///     /// The audit trail of a visible lead.
///     audit;
///     /// Soft-deletes a lead.
///     delete;                      // both call `self.set_deleted(ctx, id, version, delete)`
///     /// Restores a soft-deleted lead.
///     restore;
///     set_deleted(index_hook);     // private: [`set_deleted_with`] and this hook;
///                                  // `set_deleted;` for [`set_deleted`] as it is
/// }
/// ```
///
/// - `get(ctx, id)`: [`load`] of a live record.
/// - `list(ctx, q)`: [`list_visible`] over the given fields.
/// - `audit(ctx, id)`: [`audit_trail`].
/// - `delete` / `restore(ctx, id, expected_version)`: the handle's `set_deleted`, written
///   by hand when the kind's extra writes need reads or its own commit, or generated.
///
/// Configuration kinds (every user of the tenant reads them; no owner, never deleted;
/// a [`VersionedRecord`]) take `config_get(decode)` (the row by id, decoded),
/// `config_list(FIELDS, decode)` ([`list_page`] of the tenant's records) and
/// `config_audit` (the audit trail of a record `get` finds) instead.
#[macro_export]
macro_rules! record_verbs {
    (@get [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $($doc)*
        pub async fn get(&self, ctx: &$crate::Ctx, id: $id) -> $crate::Result<$rec> {
            $crate::service::load::<$rec>(self.store(), ctx, id, Some(false)).await
        }
    };
    (@load [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $($doc)*
        async fn load(
            &self,
            ctx: &$crate::Ctx,
            id: $id,
            deleted: Option<bool>,
        ) -> $crate::Result<$rec> {
            $crate::service::load::<$rec>(self.store(), ctx, id, deleted).await
        }
    };
    (@live [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $($doc)*
        async fn live(&self, ctx: &$crate::Ctx, id: $id, action: &str) -> $crate::Result<$rec> {
            ctx.actor().require_write(action)?;
            $crate::service::load::<$rec>(self.store(), ctx, id, Some(false)).await
        }
    };
    (@list [$($doc:tt)*] $rec:ty, $id:ty; $fields:expr, custom) => {
        $crate::record_verbs!(@list_of [$($doc)*] $rec; $fields, |r: &$rec| Some(&r.custom));
    };
    (@list [$($doc:tt)*] $rec:ty, $id:ty; $fields:expr) => {
        $crate::record_verbs!(@list_of [$($doc)*] $rec; $fields, |_: &$rec| None);
    };
    (@list_of [$($doc:tt)*] $rec:ty; $fields:expr, $custom_of:expr) => {
        $($doc)*
        pub async fn list(
            &self,
            ctx: &$crate::Ctx,
            q: &$crate::Query,
        ) -> $crate::Result<$crate::Page<$rec>> {
            $crate::service::list_visible(self.store(), ctx, q, &$fields, $custom_of).await
        }
    };
    (@audit [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $($doc)*
        pub async fn audit(
            &self,
            ctx: &$crate::Ctx,
            id: $id,
        ) -> $crate::Result<::std::vec::Vec<$crate::AuditEntry>> {
            $crate::service::audit_trail::<$rec>(self.store(), ctx, id).await
        }
    };
    (@config_get [$($doc:tt)*] $rec:ty, $id:ty; $decode:expr) => {
        $($doc)*
        pub async fn get(&self, ctx: &$crate::Ctx, id: $id) -> $crate::Result<$rec> {
            use $crate::service::VersionedRecord as _;
            let row =
                $crate::service::row_by_id(self.store(), ctx, <$rec>::TABLE, <$rec>::KIND, id)
                    .await?;
            ($decode)(row)
        }
    };
    (@config_list [$($doc:tt)*] $rec:ty, $id:ty; $fields:expr, $decode:expr) => {
        $($doc)*
        pub async fn list(
            &self,
            ctx: &$crate::Ctx,
            q: &$crate::Query,
        ) -> $crate::Result<$crate::Page<$rec>> {
            let scope = $crate::store::Cond::True;
            $crate::service::list_page(self.store(), ctx, q, &$fields, scope, $decode, |_| None)
                .await
        }
    };
    (@config_audit [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $($doc)*
        pub async fn audit(
            &self,
            ctx: &$crate::Ctx,
            id: $id,
        ) -> $crate::Result<::std::vec::Vec<$crate::AuditEntry>> {
            self.get(ctx, id).await?;
            self.store().audit_unchecked(ctx, &$crate::RecordRef::from(id)).await
        }
    };
    (@delete [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $crate::record_verbs!(@soft_delete [$($doc)*] delete, true, $rec, $id);
    };
    (@restore [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $crate::record_verbs!(@soft_delete [$($doc)*] restore, false, $rec, $id);
    };
    (@soft_delete [$($doc:tt)*] $verb:ident, $delete:literal, $rec:ty, $id:ty) => {
        $($doc)*
        pub async fn $verb(
            &self,
            ctx: &$crate::Ctx,
            id: $id,
            expected_version: u64,
        ) -> $crate::Result<$rec> {
            self.set_deleted(ctx, id, expected_version, $delete).await
        }
    };
    (@set_deleted [$($doc:tt)*] $rec:ty, $id:ty;) => {
        $crate::record_verbs!(@set_deleted [$($doc)*] $rec, $id; |_, _, _| {});
    };
    (@set_deleted [$($doc:tt)*] $rec:ty, $id:ty; $hook:expr) => {
        $($doc)*
        async fn set_deleted(
            &self,
            ctx: &$crate::Ctx,
            id: $id,
            expected_version: u64,
            delete: bool,
        ) -> $crate::Result<$rec> {
            $crate::service::set_deleted_with::<$rec>(
                self.store(),
                ctx,
                id,
                expected_version,
                delete,
                $hook,
            )
            .await
        }
    };
    // The entry point (last, so that the `@verb` rules above match first).
    ($handle:ty: $rec:ty, $id:ty; $($(#[$doc:meta])* $verb:ident $(($($arg:tt)*))?;)*) => {
        impl $handle {
            $($crate::record_verbs!(@$verb [$(#[$doc])*] $rec, $id; $($($arg)*)?);)*
        }
    };
}
