//! Conformance checks of the generic record API ([`crmkit_core::record`]) over every
//! record kind a store composes, on any backend.
//!
//! Each kind that the generic API can create has a [`KindFixture`]: how to make a valid
//! create body (creating whatever the record needs first), a patch body, and the same
//! patch made through the kind's typed API. The checks run every scenario over every
//! fixture: round trips, the typed and the generic path giving the same change, tenant
//! isolation (T1), record-level access (T3), bad input, and the reference rule (a
//! reference to a hidden, deleted, foreign or wrong-kind record fails exactly like one to
//! a record that does not exist). [`missing_fixtures`] fails when a composed kind has
//! none, so a new kind cannot skip the suite.

use std::collections::BTreeMap;

use crmkit_core::record::{FieldAccess, FieldType, Json, KindDescription, Record};
use crmkit_core::store::BoxFuture;
use crmkit_core::{Ctx, Error, Query, Store};
use serde_json::json;
use uuid::Uuid;

use crate::check::{At, CheckResult, Failure};
use crate::contacts::{Fixture, error_variant, setup};
use crate::support::all_pages;

/// Makes a valid create body for a kind (as the fixture's admin; records it needs are
/// created first, and may be shared between calls). Every call gives a body that can be
/// created again (unique values are fresh).
pub type BodyFn = for<'a> fn(&'a Fixture) -> BoxFuture<'a, CheckResult<Json>>;
/// Makes the change of [`KindFixture::patch`] through the kind's typed API, as the admin.
pub type TypedPatchFn = for<'a> fn(&'a Fixture, Uuid, u64) -> BoxFuture<'a, CheckResult<()>>;

/// How the suite makes records of one kind.
#[derive(Clone, Copy)]
pub struct KindFixture {
    /// The kind's name.
    pub kind: &'static str,
    /// A valid create body.
    pub body: BodyFn,
    /// A patch body changing at least one field.
    pub patch: fn() -> Json,
    /// The same patch through the typed API.
    pub typed_patch: TypedPatchFn,
}

impl std::fmt::Debug for KindFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindFixture")
            .field("kind", &self.kind)
            .finish()
    }
}

/// The modules whose kinds the suite covers: core, contacts, pipeline, activities,
/// tickets and automation.
pub fn modules() -> crmkit_core::Result<crmkit_core::Modules> {
    crate::automation::modules()
}

/// A check over one kind.
pub type KindCheck = for<'a> fn(&'a Store, &'a KindFixture) -> BoxFuture<'a, CheckResult>;

/// The per-kind checks, by name.
pub fn checks() -> Vec<(&'static str, KindCheck)> {
    vec![
        ("round_trip", |s, k| Box::pin(round_trip(s, k))),
        ("typed_equals_generic", |s, k| {
            Box::pin(typed_equals_generic(s, k))
        }),
        ("isolation", |s, k| Box::pin(isolation(s, k))),
        ("access", |s, k| Box::pin(access(s, k))),
        ("bad_input", |s, k| Box::pin(bad_input(s, k))),
        ("references", |s, k| Box::pin(references(s, k))),
    ]
}

/// Fails naming every composed kind that the generic API can create and that has no
/// fixture, and every fixture of a kind that is not composed.
pub fn missing_fixtures(store: &Store, fixtures: &[KindFixture]) -> CheckResult {
    let kinds = store.records().kinds();
    let missing: Vec<_> = kinds
        .iter()
        .filter(|d| d.lifecycle.create && !fixtures.iter().any(|f| f.kind == d.kind.as_str()))
        .map(|d| d.kind.to_string())
        .collect();
    ensure!(missing.is_empty(), "kinds without a fixture: {missing:?}");
    let stray: Vec<_> = fixtures
        .iter()
        .filter(|f| !kinds.iter().any(|d| d.kind.as_str() == f.kind))
        .map(|f| f.kind)
        .collect();
    ensure!(
        stray.is_empty(),
        "fixtures of kinds not composed: {stray:?}"
    );
    Ok(())
}

/// Every kind describes itself as JSON, names composed kinds in its references, takes
/// every query name it lists as a sort key, and an unknown kind is a Validation error.
pub async fn describe_all(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let records = store.records();
    let kinds = records.kinds();
    ensure!(!kinds.is_empty(), "no record kinds are composed");
    for d in &kinds {
        let full = records
            .describe(&f.admin, d.kind.as_str())
            .await
            .at("describe")?;
        let text = serde_json::to_string(&full).map_err(|e| Failure::new(e.to_string()))?;
        let back: KindDescription =
            serde_json::from_str(&text).map_err(|e| Failure::new(e.to_string()))?;
        ensure_eq!(
            back,
            full,
            "{} description round-trips through JSON",
            d.kind
        );
        for q in &d.query {
            records
                .list(
                    &f.admin,
                    d.kind.as_str(),
                    &Query::new().sort_desc(q.name.clone()).limit(5),
                )
                .await
                .at(&format!("{} sorted by {}", d.kind, q.name))?;
        }
        for fd in &d.fields {
            if let FieldType::Reference(to) = &fd.ty {
                ensure!(
                    kinds.iter().any(|o| &o.kind == to),
                    "{}.{} refers to {to}, not composed",
                    d.kind,
                    fd.name
                );
                let target = kinds.iter().find(|o| &o.kind == to).expect("checked");
                ensure!(
                    target
                        .relations
                        .iter()
                        .any(|r| r.kind == d.kind && r.field == fd.name),
                    "{to} does not list {}.{} among its relations",
                    d.kind,
                    fd.name
                );
            }
        }
    }
    for bad in ["nope", "contact'; DROP TABLE crm_events;--", ""] {
        match records.get(&f.admin, bad, Uuid::now_v7()).await {
            Err(Error::Validation(v)) if v.has("kind") => {}
            other => return Err(Failure::new(format!("kind {bad:?}: {other:?}"))),
        }
    }
    Ok(())
}

fn id_of(v: &Record) -> CheckResult<Uuid> {
    v.id()
        .ok_or_else(|| Failure::new(format!("record without an id: {v}")))
}

fn version_of(v: &Record) -> CheckResult<u64> {
    v.version()
        .ok_or_else(|| Failure::new(format!("record without a version: {v}")))
}

async fn create(store: &Store, k: &KindFixture, f: &Fixture, ctx: &Ctx) -> CheckResult<Record> {
    let body = (k.body)(f).await?;
    store
        .records()
        .create(ctx, k.kind, body)
        .await
        .at(&format!("create {}", k.kind))
}

fn in_page(page: &crmkit_core::Page<Record>, id: Uuid) -> bool {
    page.items.iter().any(|r| id_of(r).ok() == Some(id))
}

async fn list_all(store: &Store, ctx: &Ctx, kind: &str, deleted: bool) -> CheckResult<Vec<Record>> {
    let mut q = Query::new().limit(1000);
    if deleted {
        q = q.include_deleted();
    }
    all_pages(&q, "list", |q| async move {
        store.records().list(ctx, kind, &q).await
    })
    .await
}

/// Create, get, list, patch (and a stale patch), delete, list with and without deleted
/// records, restore, audit: all through the generic API.
pub async fn round_trip(store: &Store, k: &KindFixture) -> CheckResult {
    let f = setup(store).await?;
    let r = store.records();
    let created = create(store, k, &f, &f.admin).await?;
    let id = id_of(&created)?;
    let got = r.get(&f.admin, k.kind, id).await.at("get")?;
    ensure_eq!(got, created, "{}: get returns what create returned", k.kind);
    let listed = list_all(store, &f.admin, k.kind, false).await?;
    ensure!(
        listed.iter().any(|x| x == &created),
        "{}: the new record is listed as created",
        k.kind
    );
    let v = version_of(&created)?;
    let patched = r
        .patch(&f.admin, k.kind, id, v, (k.patch)())
        .await
        .at("patch")?;
    ensure!(
        version_of(&patched)? > v,
        "{}: patch bumps the version",
        k.kind
    );
    for (field, value) in (k.patch)().as_object().expect("patch is an object") {
        if field != "custom" {
            ensure_eq!(
                patched.get(field),
                Some(value),
                "{}: patched field {field}",
                k.kind
            );
        }
    }
    ensure_eq!(
        r.get(&f.admin, k.kind, id).await.at("get after patch")?,
        patched,
        "{}: get after patch",
        k.kind
    );
    match r.patch(&f.admin, k.kind, id, v, (k.patch)()).await {
        Err(Error::Conflict {
            expected, actual, ..
        }) if expected == v && actual == version_of(&patched)? => {}
        other => return Err(Failure::new(format!("{}: stale patch: {other:?}", k.kind))),
    }
    let d = store
        .records()
        .describe(&f.admin, k.kind)
        .await
        .at("describe")?;
    if d.lifecycle.soft_delete {
        let vp = version_of(&patched)?;
        let deleted = r.delete(&f.admin, k.kind, id, vp).await.at("delete")?;
        match r.get(&f.admin, k.kind, id).await {
            Err(Error::NotFound { kind, .. }) if kind.as_str() == k.kind => {}
            other => return Err(Failure::new(format!("{}: get deleted: {other:?}", k.kind))),
        }
        ensure!(
            !list_all(store, &f.admin, k.kind, false)
                .await?
                .iter()
                .any(|x| id_of(x).ok() == Some(id)),
            "{}: a deleted record is not listed",
            k.kind
        );
        ensure!(
            list_all(store, &f.admin, k.kind, true)
                .await?
                .iter()
                .any(|x| id_of(x).ok() == Some(id)),
            "{}: a deleted record is listed with include_deleted",
            k.kind
        );
        if d.lifecycle.restore {
            let restored = r
                .restore(&f.admin, k.kind, id, version_of(&deleted)?)
                .await
                .at("restore")?;
            ensure!(
                restored.get("deleted_at").is_none_or(Json::is_null),
                "{}: restored",
                k.kind
            );
            r.get(&f.admin, k.kind, id).await.at("get restored")?;
        }
    }
    let audit = r.audit(&f.admin, k.kind, id).await.at("audit")?;
    ensure!(
        audit.len() >= 2,
        "{}: create and patch are audited, got {audit:?}",
        k.kind
    );
    Ok(())
}

/// What a change did to a record, comparable across two records: the changed fields of
/// its JSON (without ids and times), the audit entries it added and its last event.
#[derive(Debug, PartialEq)]
struct Change {
    fields: BTreeMap<String, (Json, Json)>,
    audit: Vec<(String, Option<String>, Option<String>)>,
    event: (String, Vec<String>),
}

async fn change_of(
    store: &Store,
    f: &Fixture,
    k: &KindFixture,
    before: &Record,
    audit_before: usize,
    seq_before: u64,
) -> CheckResult<Change> {
    let id = id_of(before)?;
    let r = store.records();
    let after = r.get(&f.admin, k.kind, id).await.at("get after change")?;
    let mut fields = BTreeMap::new();
    for (key, av) in after.fields() {
        if key == "updated_at" {
            continue;
        }
        let bv = before.get(key).cloned().unwrap_or(Json::Null);
        if &bv != av {
            fields.insert(key.clone(), (bv, av.clone()));
        }
    }
    let audit = r
        .audit(&f.admin, k.kind, id)
        .await
        .at("audit")?
        .into_iter()
        .skip(audit_before)
        .map(|e| (e.change.field, e.change.old, e.change.new))
        .collect();
    let events = store
        .events_since(&f.admin, seq_before, 1000)
        .await
        .at("events")?;
    let e = events
        .iter()
        .rev()
        .find(|e| e.record.id == id)
        .ok_or_else(|| Failure::new(format!("{}: the change emitted no event", k.kind)))?;
    let mut changed = e.changed.clone();
    changed.sort();
    Ok(Change {
        fields,
        audit,
        event: (e.kind.clone(), changed),
    })
}

/// The same patch through the generic API and through the typed API changes the same
/// fields from the same values to the same values, with the same audit entries and the
/// same event.
pub async fn typed_equals_generic(store: &Store, k: &KindFixture) -> CheckResult {
    let f = setup(store).await?;
    let a = create(store, k, &f, &f.admin).await?;
    let b = create(store, k, &f, &f.admin).await?;
    let (ida, idb) = (id_of(&a)?, id_of(&b)?);
    let r = store.records();
    let audit_a = r.audit(&f.admin, k.kind, ida).await.at("audit")?.len();
    let seq = f.last_seq().await?;
    r.patch(&f.admin, k.kind, ida, version_of(&a)?, (k.patch)())
        .await
        .at("generic patch")?;
    let generic = change_of(store, &f, k, &a, audit_a, seq).await?;
    let audit_b = r.audit(&f.admin, k.kind, idb).await.at("audit")?.len();
    let seq = f.last_seq().await?;
    (k.typed_patch)(&f, idb, version_of(&b)?).await?;
    let typed = change_of(store, &f, k, &b, audit_b, seq).await?;
    ensure!(
        !generic.fields.is_empty(),
        "{}: the patch changed nothing",
        k.kind
    );
    ensure_eq!(generic, typed, "{}: generic and typed patch", k.kind);
    Ok(())
}

/// T1: another tenant's records are NotFound for every generic operation and never
/// listed.
pub async fn isolation(store: &Store, k: &KindFixture) -> CheckResult {
    let a = setup(store).await?;
    let b = setup(store).await?;
    let rec = create(store, k, &a, &a.admin).await?;
    let id = id_of(&rec)?;
    let v = version_of(&rec)?;
    let r = store.records();
    let kind = |e: &Error| matches!(e, Error::NotFound { kind, .. } if kind.as_str() == k.kind);
    let outcomes = [
        ("get", r.get(&b.admin, k.kind, id).await.err()),
        (
            "patch",
            r.patch(&b.admin, k.kind, id, v, (k.patch)()).await.err(),
        ),
        ("delete", r.delete(&b.admin, k.kind, id, v).await.err()),
        ("audit", r.audit(&b.admin, k.kind, id).await.err()),
    ];
    for (what, e) in outcomes {
        ensure!(
            e.as_ref().is_some_and(kind),
            "{}: {what} from another tenant: {e:?}",
            k.kind
        );
    }
    ensure!(
        !list_all(store, &b.admin, k.kind, true)
            .await?
            .iter()
            .any(|x| id_of(x).ok() == Some(id)),
        "{}: another tenant lists it",
        k.kind
    );
    r.get(&a.admin, k.kind, id).await.at("still there")?;
    Ok(())
}

/// The kinds that are tenant configuration rather than owned records: every user of the
/// tenant reads their records (nothing is hidden), and only Admins and Managers create and
/// change them. [`access`] checks that rule for them instead of record-level hiding, and
/// [`references`] makes records of them as the admin.
pub fn configuration_kinds() -> Vec<&'static str> {
    crate::records_fixtures::configuration_kinds()
}

fn is_configuration(kind: &str) -> bool {
    configuration_kinds().contains(&kind)
}

/// T3: a record hidden from a rep gives that rep exactly the errors a nonexistent id
/// gives, and is not listed; a read-only user cannot create. Records of a kind without an
/// `owner` (tenant settings such as pipelines, which every actor reads) are never hidden:
/// for them only the read-only user's create is checked. For a configuration kind
/// ([`configuration_kinds`]) see [`access_configuration`].
pub async fn access(store: &Store, k: &KindFixture) -> CheckResult {
    if is_configuration(k.kind) {
        return access_configuration(store, k).await;
    }
    let f = setup(store).await?;
    let rec = create(store, k, &f, &f.admin).await?;
    let id = id_of(&rec)?;
    let v = version_of(&rec)?;
    let r = store.records();
    let d = r.describe(&f.admin, k.kind).await.at("describe")?;
    if !has_owner(&d) {
        return readonly_cannot_create(store, k, &f).await;
    }
    let ghost = Uuid::now_v7();
    let norm = |e: Option<Error>| e.map(|e| error_variant(&e));
    for (what, hidden, none) in [
        (
            "get",
            norm(r.get(&f.rep_y, k.kind, id).await.err()),
            norm(r.get(&f.rep_y, k.kind, ghost).await.err()),
        ),
        (
            "patch",
            norm(r.patch(&f.rep_y, k.kind, id, v, (k.patch)()).await.err()),
            norm(r.patch(&f.rep_y, k.kind, ghost, v, (k.patch)()).await.err()),
        ),
        (
            "delete",
            norm(r.delete(&f.rep_y, k.kind, id, v).await.err()),
            norm(r.delete(&f.rep_y, k.kind, ghost, v).await.err()),
        ),
        (
            "audit",
            norm(r.audit(&f.rep_y, k.kind, id).await.err()),
            norm(r.audit(&f.rep_y, k.kind, ghost).await.err()),
        ),
    ] {
        ensure!(
            hidden.is_some(),
            "{}: {what} of a hidden record succeeded",
            k.kind
        );
        ensure_eq!(hidden, none, "{}: {what} hidden vs nonexistent", k.kind);
    }
    let page = r
        .list(
            &f.rep_y,
            k.kind,
            &Query::new().limit(1000).include_deleted(),
        )
        .await
        .at("list")?;
    ensure!(
        !in_page(&page, id),
        "{}: a rep lists a hidden record",
        k.kind
    );
    readonly_cannot_create(store, k, &f).await
}

/// Whether records of a kind have an owner, and so can be hidden from an actor.
fn has_owner(d: &KindDescription) -> bool {
    d.get("owner").is_some()
}

async fn readonly_cannot_create(store: &Store, k: &KindFixture, f: &Fixture) -> CheckResult {
    let r = store.records();
    let body = (k.body)(f).await?;
    match r.create(&f.readonly, k.kind, body).await {
        Err(Error::PermissionDenied(_)) => {}
        other => {
            return Err(Failure::new(format!(
                "{}: a read-only user creates: {other:?}",
                k.kind
            )));
        }
    }
    Ok(())
}

/// T3 for a configuration kind: every user of the tenant (rep, rep Y, read-only) gets and
/// lists the admin's record as the admin does, and a nonexistent id is NotFound; a rep
/// and a read-only user cannot create, patch, delete or restore (PermissionDenied, nothing
/// written); a manager may create and patch.
pub async fn access_configuration(store: &Store, k: &KindFixture) -> CheckResult {
    let f = setup(store).await?;
    let rec = create(store, k, &f, &f.admin).await?;
    let id = id_of(&rec)?;
    let v = version_of(&rec)?;
    let r = store.records();
    for (who, ctx) in [
        ("rep", &f.rep),
        ("rep_y", &f.rep_y),
        ("readonly", &f.readonly),
    ] {
        ensure_eq!(
            r.get(ctx, k.kind, id).await.at(&format!("get as {who}"))?,
            rec,
            "{}: {who} reads the configuration record",
            k.kind
        );
        let page = r
            .list(ctx, k.kind, &Query::new().limit(1000).include_deleted())
            .await
            .at("list")?;
        ensure!(in_page(&page, id), "{}: {who} lists it", k.kind);
        match r.get(ctx, k.kind, Uuid::now_v7()).await {
            Err(Error::NotFound { kind, .. }) if kind.as_str() == k.kind => {}
            other => {
                return Err(Failure::new(format!(
                    "{}: {who} gets a nonexistent id: {other:?}",
                    k.kind
                )));
            }
        }
    }
    let before = f.events_after(0).await?.len();
    for (who, ctx) in [("rep_y", &f.rep_y), ("readonly", &f.readonly)] {
        let body = (k.body)(&f).await?;
        for (what, out) in [
            ("create", r.create(ctx, k.kind, body).await),
            ("patch", r.patch(ctx, k.kind, id, v, (k.patch)()).await),
            ("delete", r.delete(ctx, k.kind, id, v).await),
            ("restore", r.restore(ctx, k.kind, id, v).await),
        ] {
            ensure!(
                matches!(out, Err(Error::PermissionDenied(_))),
                "{}: {what} as {who}: {out:?}",
                k.kind
            );
        }
    }
    ensure_eq!(
        f.events_after(0).await?.len(),
        before,
        "{}: refused writes wrote events",
        k.kind
    );
    ensure_eq!(
        r.get(&f.admin, k.kind, id).await.at("unchanged")?,
        rec,
        "{}: refused writes changed the record",
        k.kind
    );
    r.patch(&f.manager, k.kind, id, v, (k.patch)())
        .await
        .at("patch as manager")?;
    create(store, k, &f, &f.manager).await?;
    Ok(())
}

/// A JSON value of the wrong type for a field type.
fn wrong_value(ty: &FieldType) -> Json {
    match ty {
        FieldType::Text { .. } | FieldType::Choice(_) => json!(12345),
        FieldType::Int => json!("twelve"),
        FieldType::Decimal => json!(true),
        FieldType::Money => json!("12 EUR"),
        FieldType::Currency => json!("EURO"),
        FieldType::Bool => json!("yes"),
        FieldType::Date => json!("2024-02-30"),
        FieldType::Timestamp => json!("yesterday"),
        FieldType::Id | FieldType::Reference(_) => json!("not-an-id"),
        FieldType::AnyReference(_) => json!({"kind": "contact"}),
        FieldType::List(_) => json!({"not": "a list"}),
        FieldType::Object | FieldType::Custom => json!([1, 2]),
    }
}

/// Bad bodies: an unknown field, each read-only or computed field, a wrong JSON type for
/// each writable field, a body that is not an object. Each is a Validation error naming
/// the field and the kind, and nothing is written.
pub async fn bad_input(store: &Store, k: &KindFixture) -> CheckResult {
    let f = setup(store).await?;
    let r = store.records();
    let d = r.describe(&f.admin, k.kind).await.at("describe")?;
    let rec = create(store, k, &f, &f.admin).await?;
    let id = id_of(&rec)?;
    let v = version_of(&rec)?;
    let mut cases: Vec<(String, Json)> = vec![
        ("no_such_field".into(), json!(1)),
        ("'; DROP TABLE crm_events; --".into(), json!("x")),
    ];
    for fd in &d.fields {
        cases.push((fd.name.clone(), wrong_value(&fd.ty)));
        if matches!(fd.access, FieldAccess::ReadOnly | FieldAccess::Computed) {
            let current = rec.get(&fd.name).cloned().unwrap_or(json!(null));
            cases.push((fd.name.clone(), current));
        }
    }
    // Bodies are made first: making one may create the records it refers to.
    let mut bodies = vec![];
    for _ in 0..=cases.len() {
        bodies.push((k.body)(&f).await?);
    }
    let before = f.events_after(0).await?.len();
    for ((field, value), mut body) in cases.into_iter().zip(bodies) {
        body.as_object_mut()
            .expect("bodies are objects")
            .insert(field.clone(), value.clone());
        let mut patch = serde_json::Map::new();
        patch.insert(field.clone(), value.clone());
        for (what, out) in [
            ("create", r.create(&f.admin, k.kind, body).await),
            (
                "patch",
                r.patch(&f.admin, k.kind, id, v, Json::Object(patch)).await,
            ),
        ] {
            match out {
                Err(Error::Validation(e))
                    if e.has(&field) && e.kind.as_ref().is_some_and(|x| x.as_str() == k.kind) => {}
                other => {
                    return Err(Failure::new(format!(
                        "{}: {what} with {field} = {value}: expected a Validation error naming \
                         the kind and {field:?}, got {other:?}",
                        k.kind
                    )));
                }
            }
        }
    }
    match r
        .create(&f.admin, k.kind, json!(["not", "an", "object"]))
        .await
    {
        Err(Error::Validation(_)) => {}
        other => return Err(Failure::new(format!("{}: array body: {other:?}", k.kind))),
    }
    ensure_eq!(
        f.events_after(0).await?.len(),
        before,
        "{}: refused bodies wrote events",
        k.kind
    );
    ensure_eq!(
        r.get(&f.admin, k.kind, id).await.at("unchanged")?,
        rec,
        "{}: refused patches changed the record",
        k.kind
    );
    Ok(())
}

/// The reference rule, for every writable reference field of the kind whose target kind
/// has a fixture (`{kind, id}` fields and lists of them too): as
/// a rep, a reference to a record hidden from the rep, to a deleted
/// one, to another tenant's, and to a record of another kind all fail with exactly the
/// error of a reference to an id that does not exist, on create and on patch (on create
/// only for a field given on create only; no hidden target when the target kind has no
/// owner, as every actor sees its records). Records of a configuration kind
/// ([`configuration_kinds`]) are made by the admin, who sees every record: there is no
/// hidden target then either.
pub async fn references(store: &Store, k: &KindFixture) -> CheckResult {
    let fixtures = all_fixtures();
    let a = setup(store).await?;
    let other = setup(store).await?;
    let r = store.records();
    let d = r.describe(&a.admin, k.kind).await.at("describe")?;
    let actor = if is_configuration(k.kind) {
        &a.admin
    } else {
        &a.rep_y
    };
    for fd in &d.fields {
        let FieldType::Reference(to) = &fd.ty else {
            continue;
        };
        if !fd.writable_on_create() {
            continue;
        }
        let Some(tf) = fixtures.iter().find(|x| x.kind == to.as_str()) else {
            continue;
        };
        // Targets: hidden from rep_y (the admin owns it), deleted, another tenant's, of
        // another kind (a visible record of the referring kind itself, or of `contact`).
        let hidden = id_of(&create(store, tf, &a, &a.admin).await?)?;
        let gone = create(store, tf, &a, &a.admin).await?;
        let tdesc = r.describe(&a.admin, to.as_str()).await.at("describe")?;
        let gone_id = id_of(&gone)?;
        let mut targets = vec![(
            "foreign",
            id_of(&create(store, tf, &other, &other.admin).await?)?,
        )];
        if has_owner(&tdesc) && !is_configuration(k.kind) && !is_configuration(to.as_str()) {
            targets.push(("hidden", hidden));
        }
        if tdesc.lifecycle.soft_delete {
            r.delete(&a.admin, to.as_str(), gone_id, version_of(&gone)?)
                .await
                .at("delete target")?;
            targets.push(("deleted", gone_id));
        }
        let wrong_kind = fixtures
            .iter()
            .find(|x| x.kind != to.as_str())
            .expect("more than one fixture");
        let wrong = id_of(&create(store, wrong_kind, &a, &a.rep_y).await?)?;
        targets.push(("wrong kind", wrong));
        let expected_of = |out: crmkit_core::Result<Record>| match out {
            Err(Error::Validation(v)) => Ok(v
                .errors
                .iter()
                .filter(|e| e.field == fd.name)
                .map(|e| e.reason.clone())
                .collect::<Vec<_>>()),
            other => Err(other),
        };
        let with = |mut body: Json, id: Uuid| {
            body.as_object_mut()
                .expect("bodies are objects")
                .insert(fd.name.clone(), json!(id));
            body
        };
        let none = expected_of(
            r.create(actor, k.kind, with((k.body)(&a).await?, Uuid::now_v7()))
                .await,
        )
        .map_err(|o| {
            Failure::new(format!(
                "{}.{}: a nonexistent reference: {o:?}",
                k.kind, fd.name
            ))
        })?;
        ensure!(
            !none.is_empty(),
            "{}.{}: a nonexistent reference is not named",
            k.kind,
            fd.name
        );
        let mine = create(store, k, &a, actor).await?;
        for (what, target) in &targets {
            let got = expected_of(
                r.create(actor, k.kind, with((k.body)(&a).await?, *target))
                    .await,
            );
            ensure_eq!(
                got.as_ref().ok(),
                Some(&none),
                "{}.{}: create referring to a {what} {to} vs a nonexistent one (got {got:?})",
                k.kind,
                fd.name
            );
            if fd.access != FieldAccess::ReadWrite {
                continue;
            }
            let mut patch = serde_json::Map::new();
            patch.insert(fd.name.clone(), json!(target));
            let got = expected_of(
                r.patch(
                    actor,
                    k.kind,
                    id_of(&mine)?,
                    version_of(&mine)?,
                    Json::Object(patch),
                )
                .await,
            );
            ensure_eq!(
                got.as_ref().ok(),
                Some(&none),
                "{}.{}: patch referring to a {what} {to} vs a nonexistent one (got {got:?})",
                k.kind,
                fd.name
            );
        }
    }
    any_references(store, k, &fixtures, &a, &other).await
}

/// The kinds a `{kind, id}` reference field takes and whether it holds a list of them.
fn any_reference(ty: &FieldType) -> Option<(&[crmkit_core::RecordKind], bool)> {
    match ty {
        FieldType::AnyReference(kinds) => Some((kinds, false)),
        FieldType::List(of) => match &**of {
            FieldType::AnyReference(kinds) => Some((kinds, true)),
            _ => None,
        },
        _ => None,
    }
}

/// The reference rule for writable `{kind, id}` fields (and lists of them): as a rep, a
/// reference to a record hidden from the rep, deleted, another tenant's, or the id of a
/// record of another kind given as a record of an allowed kind fails exactly like a
/// reference to a nonexistent record of that kind; a record of a kind the field does not
/// take fails exactly like a nonexistent record of that kind. Errors are compared by
/// every field they name under the field (`related`, `related[0]`).
async fn any_references(
    store: &Store,
    k: &KindFixture,
    fixtures: &[KindFixture],
    a: &Fixture,
    other: &Fixture,
) -> CheckResult {
    let r = store.records();
    let d = r.describe(&a.admin, k.kind).await.at("describe")?;
    for fd in &d.fields {
        let Some((kinds, list)) = any_reference(&fd.ty) else {
            continue;
        };
        if !fd.writable_on_create() {
            continue;
        }
        let value = |kind: &str, id: Uuid| {
            let one = json!({"kind": kind, "id": id});
            if list { json!([one]) } else { one }
        };
        let named = |out: crmkit_core::Result<Record>| match out {
            Err(Error::Validation(v)) => Ok(v
                .errors
                .iter()
                .filter(|e| {
                    e.field == fd.name
                        || e.field.starts_with(&format!("{}[", fd.name))
                        || e.field.starts_with(&format!("{}.", fd.name))
                })
                .map(|e| (e.field.clone(), e.reason.clone()))
                .collect::<Vec<_>>()),
            other => Err(other),
        };
        let with = |mut body: Json, v: Json| {
            body.as_object_mut()
                .expect("bodies are objects")
                .insert(fd.name.clone(), v);
            body
        };
        let mine = create(store, k, a, &a.rep_y).await?;
        // Compares a reference to `target` with one to a fresh id, of kind `as_kind`.
        let compare = async |what: &str, as_kind: &str, target: Uuid| -> CheckResult {
            let none = named(
                r.create(
                    &a.rep_y,
                    k.kind,
                    with((k.body)(a).await?, value(as_kind, Uuid::now_v7())),
                )
                .await,
            )
            .map_err(|o| {
                Failure::new(format!(
                    "{}.{}: a nonexistent {as_kind}: {o:?}",
                    k.kind, fd.name
                ))
            })?;
            ensure!(
                !none.is_empty(),
                "{}.{}: a nonexistent {as_kind} is not named",
                k.kind,
                fd.name
            );
            let got = named(
                r.create(
                    &a.rep_y,
                    k.kind,
                    with((k.body)(a).await?, value(as_kind, target)),
                )
                .await,
            );
            ensure_eq!(
                got.as_ref().ok(),
                Some(&none),
                "{}.{}: create referring to {what} vs a nonexistent {as_kind} (got {got:?})",
                k.kind,
                fd.name
            );
            let mut patch = serde_json::Map::new();
            patch.insert(fd.name.clone(), value(as_kind, Uuid::now_v7()));
            let none = named(
                r.patch(
                    &a.rep_y,
                    k.kind,
                    id_of(&mine)?,
                    version_of(&mine)?,
                    Json::Object(patch.clone()),
                )
                .await,
            )
            .map_err(|o| {
                Failure::new(format!(
                    "{}.{}: patch to a nonexistent {as_kind}: {o:?}",
                    k.kind, fd.name
                ))
            })?;
            patch.insert(fd.name.clone(), value(as_kind, target));
            let got = named(
                r.patch(
                    &a.rep_y,
                    k.kind,
                    id_of(&mine)?,
                    version_of(&mine)?,
                    Json::Object(patch),
                )
                .await,
            );
            ensure_eq!(
                got.as_ref().ok(),
                Some(&none),
                "{}.{}: patch referring to {what} vs a nonexistent {as_kind} (got {got:?})",
                k.kind,
                fd.name
            );
            Ok(())
        };
        for to in kinds {
            let Some(tf) = fixtures.iter().find(|x| x.kind == to.as_str()) else {
                continue;
            };
            let hidden = id_of(&create(store, tf, a, &a.admin).await?)?;
            compare(&format!("a hidden {to}"), to.as_str(), hidden).await?;
            let foreign = id_of(&create(store, tf, other, &other.admin).await?)?;
            compare(&format!("another tenant's {to}"), to.as_str(), foreign).await?;
            let tdesc = r.describe(&a.admin, to.as_str()).await.at("describe")?;
            if tdesc.lifecycle.soft_delete {
                let gone = create(store, tf, a, &a.admin).await?;
                r.delete(&a.admin, to.as_str(), id_of(&gone)?, version_of(&gone)?)
                    .await
                    .at("delete target")?;
                compare(&format!("a deleted {to}"), to.as_str(), id_of(&gone)?).await?;
            }
            let wrong = fixtures
                .iter()
                .find(|x| x.kind != to.as_str())
                .expect("more than one fixture");
            let visible = id_of(&create(store, wrong, a, &a.rep_y).await?)?;
            compare(
                &format!("a visible {} given as a {to}", wrong.kind),
                to.as_str(),
                visible,
            )
            .await?;
        }
        // A kind the field does not take: a record of it the rep sees fails like none.
        if !kinds.is_empty()
            && let Some(wrong) = fixtures
                .iter()
                .find(|x| !kinds.iter().any(|t| t.as_str() == x.kind))
        {
            let visible = id_of(&create(store, wrong, a, &a.rep_y).await?)?;
            compare(
                &format!("a visible {} (a kind it does not take)", wrong.kind),
                wrong.kind,
                visible,
            )
            .await?;
        }
    }
    Ok(())
}

/// The fixtures of every built-in kind.
pub fn all_fixtures() -> Vec<KindFixture> {
    crate::records_fixtures::all()
}
