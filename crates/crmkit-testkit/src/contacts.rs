//! Conformance checks of the contacts module (`crmkit-contacts`) on any backend.
//!
//! Every check is an `async fn(&Store) -> CheckResult` that works through the public API
//! of the [`Store`] it is given (composed with core and [`ContactsModule`]). Each check
//! makes its own fresh random tenant(s) and users with [`setup`], so checks can share one
//! database. [`checks`] lists them by name for a harness to iterate; [`run_all`] runs
//! them one after the other. [`model_based`] is the proptest model-based test (sync: it
//! owns a tokio runtime).
//!
//! The atomicity check ([`atomicity`]) injects faults into the backend with
//! [`Backend::inject_fault`](crmkit_core::Backend::inject_fault), which affects every
//! commit of that backend: do not run it concurrently with other checks on the same
//! store. The concurrency checks ([`unique_race`], [`lost_update`]) spawn tokio tasks, so
//! run the suite on a multi-thread runtime.

use crate::check::{At, expect_denied, expect_error, expect_validation, run_checks};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::all_pages;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{NaiveDate, TimeZone, Utc};
use crmkit_contacts::{
    Consent, ConsentStatus, Contact, ContactPatch, Contacts, ContactsModule, EmailAddress,
    EmailInput, ImportOptions, ImportReport, LifecycleStage, NewContact, NewOrganization,
    Organization, OrganizationPatch, PhoneInput, PostalAddress,
};
use crmkit_core::memory::MemoryBackend;
use crmkit_core::query::FieldValue;
use crmkit_core::store::{CmpOp, Cond};
use crmkit_core::text::fold;
use crmkit_core::{
    Actor, ContactId, Ctx, CustomFieldDef, CustomFieldType, CustomValue, CustomValues, Error,
    Filter, Modules, Money, OrganizationId, Query, RecordKind, RecordRef, Role, Store, TeamId,
    TenantId, UserId, UserInput,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Failures and assertions
// ---------------------------------------------------------------------------------------

/// A short name of an error's variant (with the fields that are comparable across
/// stores), for messages and for comparing outcomes.
pub fn error_variant(e: &Error) -> String {
    match e {
        Error::NotFound { kind, .. } => format!("NotFound({kind})"),
        Error::Conflict {
            expected, actual, ..
        } => format!("Conflict({expected}->{actual})"),
        Error::Duplicate { kind, field, .. } => format!("Duplicate({kind}.{field})"),
        Error::Validation(v) => format!(
            "Validation({})",
            v.errors
                .iter()
                .map(|e| e.field.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Error::PermissionDenied(_) => "PermissionDenied".into(),
        Error::InvalidTransition { .. } => "InvalidTransition".into(),
        Error::CurrencyMismatch { .. } => "CurrencyMismatch".into(),
        Error::Config(_) => "Config".into(),
        Error::SchemaTooNew { .. } => "SchemaTooNew".into(),
        Error::Storage { .. } => "Storage".into(),
        _ => format!("{e:?}"),
    }
}

#[track_caller]
fn expect_not_found<T: fmt::Debug>(
    r: crmkit_core::Result<T>,
    kind: &RecordKind,
    what: &str,
) -> CheckResult {
    let expected = format!("NotFound({kind})");
    expect_error(
        r,
        what,
        &expected,
        |e| matches!(e, Error::NotFound { kind: k, .. } if k == kind),
    )
}

#[track_caller]
fn expect_conflict<T: fmt::Debug>(
    r: crmkit_core::Result<T>,
    expected: u64,
    actual: u64,
    what: &str,
) -> CheckResult {
    let want = format!("Conflict {{ expected: {expected}, actual: {actual} }}");
    expect_error(
        r,
        what,
        &want,
        |e| matches!(e, Error::Conflict { expected: x, actual: y, .. } if *x == expected && *y == actual),
    )
}

/// Expects a Duplicate error on a contact's emails; returns the record it names.
#[track_caller]
fn expect_duplicate<T: fmt::Debug>(
    r: crmkit_core::Result<T>,
    what: &str,
) -> CheckResult<Option<RecordRef>> {
    match r {
        Err(Error::Duplicate {
            kind,
            field,
            existing,
        }) if kind == RecordKind::CONTACT && field == "emails" => Ok(existing),
        other => Err(Failure::new(format!(
            "{what}: expected Duplicate on contact emails, got {other:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// Contacts a rep may not reference (see [`Fixture::unreachable_contacts`]).
#[derive(Debug, Clone)]
pub(crate) struct UnreachableContacts {
    /// Made by the admin, hidden from the rep.
    pub hidden: Contact,
    /// Made by the rep and deleted.
    pub gone: Contact,
    /// Of another tenant.
    pub foreign: Contact,
}

/// A fresh tenant with users in every role, two teams and custom fields.
///
/// Users: `admin` (Admin), `manager` (Manager), `rep` and `rep2` (Rep in team X), `rep_y`
/// (Rep in team Y) and `readonly` (ReadOnly in team X). Contact custom fields: `tier`
/// (single choice gold/silver/bronze), `score` (number), `vip` (bool), `since` (date),
/// `note` (text, 50), `budget` (money, EUR), `ratio` (decimal). Organization custom
/// fields: `segment` (single choice smb/mid/enterprise), `rating` (number).
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The store.
    pub store: Store,
    /// The contacts API over it.
    pub contacts: Contacts,
    /// The tenant.
    pub tenant: TenantId,
    /// An Admin.
    pub admin: Ctx,
    /// A Manager.
    pub manager: Ctx,
    /// A Rep in team X.
    pub rep: Ctx,
    /// A second Rep in team X.
    pub rep2: Ctx,
    /// A Rep in team Y.
    pub rep_y: Ctx,
    /// A ReadOnly user in team X.
    pub readonly: Ctx,
    /// Team X.
    pub team_x: TeamId,
    /// Team Y.
    pub team_y: TeamId,
}

impl Fixture {
    /// Every actor of the fixture with a name, in a fixed order.
    pub fn actors(&self) -> Vec<(&'static str, &Ctx)> {
        vec![
            ("admin", &self.admin),
            ("manager", &self.manager),
            ("rep", &self.rep),
            ("rep2", &self.rep2),
            ("rep_y", &self.rep_y),
            ("readonly", &self.readonly),
        ]
    }
}

/// Choices of the contact custom field `tier`.
pub const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

fn custom_def(kind: RecordKind, key: &str, ty: CustomFieldType) -> CustomFieldDef {
    CustomFieldDef {
        id: crmkit_core::CustomFieldId::new(),
        record_kind: kind,
        key: key.into(),
        label: key.to_uppercase(),
        ty,
        required: false,
    }
}

impl Fixture {
    /// Every event the admin reads from the change feed after sequence `after`, in order.
    pub(crate) async fn events_after(&self, after: u64) -> CheckResult<Vec<crmkit_core::Event>> {
        crate::support::events_after(&self.store, &self.admin, after).await
    }

    /// The sequence of the tenant's last event (`0` when none).
    pub(crate) async fn last_seq(&self) -> CheckResult<u64> {
        crate::support::last_seq(&self.store, &self.admin).await
    }

    /// The number of rows of the tenant in every table.
    pub(crate) async fn row_counts(&self) -> CheckResult<BTreeMap<&'static str, u64>> {
        crate::support::all_row_counts(&self.store, &self.admin).await
    }

    /// Creates organization `name` as `ctx`.
    pub(crate) async fn org(&self, ctx: &Ctx, name: &str) -> CheckResult<Organization> {
        self.contacts
            .organizations()
            .create(ctx, NewOrganization::named(name))
            .await
            .at(&format!("create organization {name:?}"))
    }

    /// Creates contact `first` `last` as `ctx`.
    pub(crate) async fn person(&self, ctx: &Ctx, first: &str, last: &str) -> CheckResult<Contact> {
        self.contacts
            .create(ctx, NewContact::named(first, last))
            .await
            .at(&format!("create contact {first} {last}"))
    }

    /// Three contacts `rep` may not reference, each named after why, with last name
    /// `last`: one the admin made (hidden from a rep), one `rep` made and deleted, and one
    /// of `other`'s tenant.
    pub(crate) async fn unreachable_contacts(
        &self,
        rep: &Ctx,
        other: &Fixture,
        last: &str,
    ) -> CheckResult<UnreachableContacts> {
        let hidden = self.person(&self.admin, "Hidden", last).await?;
        let gone = self.person(rep, "Gone", last).await?;
        self.contacts
            .delete(rep, gone.id, gone.version)
            .await
            .at("delete contact")?;
        let foreign = other.person(&other.admin, "Foreign", last).await?;
        Ok(UnreachableContacts {
            hidden,
            gone,
            foreign,
        })
    }

    /// Creates contact Grace Hopper in team X as `ctx`, after `edit` (such as adding a
    /// phone or an organization).
    pub(crate) async fn team_x_contact(
        &self,
        ctx: &Ctx,
        edit: impl FnOnce(NewContact) -> NewContact,
    ) -> CheckResult<ContactId> {
        let mut c = edit(NewContact::named("Grace", "Hopper"));
        c.team = Some(self.team_x);
        Ok(self.contacts.create(ctx, c).await.at("create contact")?.id)
    }

    /// [`Fixture::row_counts`] and [`Fixture::last_seq`]: what a refused command must
    /// leave unchanged.
    pub(crate) async fn rows_and_seq(&self) -> CheckResult<(BTreeMap<&'static str, u64>, u64)> {
        Ok((self.row_counts().await?, self.last_seq().await?))
    }

    /// [`crate::support::fail_at_every_write`] where every failing run must leave
    /// [`Fixture::rows_and_seq`] as it was before the first run.
    pub(crate) async fn fail_at_every_write_no_trace<T>(
        &self,
        what: &str,
        cmd: impl AsyncFn() -> crmkit_core::Result<T>,
    ) -> CheckResult<(usize, T)> {
        let before = self.rows_and_seq().await?;
        let unchanged = async |n| {
            ensure_eq!(
                self.rows_and_seq().await?,
                before,
                "{what} failing at write {n} left a trace"
            );
            Ok(())
        };
        crate::support::fail_at_every_write(&self.store, what, unchanged, cmd).await
    }
}

/// Makes a fresh tenant with the users, teams and custom fields of [`Fixture`].
pub async fn setup(store: &Store) -> CheckResult<Fixture> {
    let tenant = TenantId::new();
    let admin_id = UserId::new();
    let admin = Ctx::new(tenant, Actor::new(admin_id, [Role::Admin], [])).at("admin context")?;
    let dir = store.directory();
    let team_x = dir
        .put_team(&admin, TeamId::new(), "Team X")
        .await
        .at("put team X")?
        .id;
    let team_y = dir
        .put_team(&admin, TeamId::new(), "Team Y")
        .await
        .at("put team Y")?
        .id;
    let mut ctxs = vec![];
    for (i, (name, role, teams)) in [
        ("Admin", Role::Admin, vec![]),
        ("Manager", Role::Manager, vec![]),
        ("Rep", Role::Rep, vec![team_x]),
        ("Rep Two", Role::Rep, vec![team_x]),
        ("Rep Y", Role::Rep, vec![team_y]),
        ("Reader", Role::ReadOnly, vec![team_x]),
    ]
    .into_iter()
    .enumerate()
    {
        let id = if i == 0 { admin_id } else { UserId::new() };
        let user = dir
            .put_user(
                &admin,
                UserInput {
                    id,
                    name: name.into(),
                    email: format!("user{i}@crmkit.test"),
                    roles: vec![role],
                    teams,
                    active: true,
                    time_zone: "Europe/Berlin".into(),
                },
            )
            .await
            .at("put user")?;
        // Request contexts come from the directory (the trust model: Ctx::new only for
        // the bootstrap admin above).
        ctxs.push(dir.ctx_for(tenant, user.id).await.at("user context")?);
    }
    let fields = store.custom_fields();
    for def in [
        custom_def(
            RecordKind::CONTACT,
            "tier",
            CustomFieldType::SingleChoice {
                choices: TIERS.iter().map(|s| s.to_string()).collect(),
            },
        ),
        custom_def(RecordKind::CONTACT, "score", CustomFieldType::Number),
        custom_def(RecordKind::CONTACT, "vip", CustomFieldType::Bool),
        custom_def(RecordKind::CONTACT, "since", CustomFieldType::Date),
        custom_def(
            RecordKind::CONTACT,
            "note",
            CustomFieldType::Text { max_len: 50 },
        ),
        custom_def(
            RecordKind::CONTACT,
            "budget",
            CustomFieldType::Money {
                currency: crmkit_core::Currency::parse("EUR").at("EUR")?,
            },
        ),
        custom_def(RecordKind::CONTACT, "ratio", CustomFieldType::Decimal),
        custom_def(
            RecordKind::ORGANIZATION,
            "segment",
            CustomFieldType::SingleChoice {
                choices: vec!["smb".into(), "mid".into(), "enterprise".into()],
            },
        ),
        custom_def(RecordKind::ORGANIZATION, "rating", CustomFieldType::Number),
    ] {
        fields.define(&admin, def).await.at("define custom field")?;
    }
    let mut it = ctxs.into_iter();
    let mut next = || it.next().expect("six users");
    Ok(Fixture {
        store: store.clone(),
        contacts: Contacts::new(store).at("Contacts::new")?,
        tenant,
        admin: next(),
        manager: next(),
        rep: next(),
        rep2: next(),
        rep_y: next(),
        readonly: next(),
        team_x,
        team_y,
    })
}

/// The modules the checks need: core and contacts.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder().add(ContactsModule).build()
}

/// A memory store composed with core and the contacts module (the model of
/// [`model_based`], and a convenient store for tests).
pub fn memory_store() -> crmkit_core::Result<Store> {
    let modules = modules()?;
    Ok(Store::new(
        MemoryBackend::new((**modules.schema()).clone()),
        modules,
    ))
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Every contact a query returns, following cursors.
pub(crate) async fn all_contacts(c: &Contacts, ctx: &Ctx, q: &Query) -> CheckResult<Vec<Contact>> {
    all_pages(q, "list contacts", |q| async move { c.list(ctx, &q).await }).await
}

/// Every organization a query returns, following cursors.
pub(crate) async fn all_orgs(c: &Contacts, ctx: &Ctx, q: &Query) -> CheckResult<Vec<Organization>> {
    all_pages(q, "list organizations", |q| async move {
        c.organizations().list(ctx, &q).await
    })
    .await
}

/// What a failed command must leave unchanged: the row count of every table of the
/// tenant, the last event sequence, and every contact and organization.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    rows: BTreeMap<&'static str, u64>,
    pub(crate) last_seq: u64,
    contacts: Vec<Contact>,
    orgs: Vec<Organization>,
}

/// A query for every record, deleted ones too, 1000 a page.
pub(crate) fn every_record() -> Query {
    Query::new().include_deleted().limit(1000)
}

pub(crate) async fn snapshot(f: &Fixture) -> CheckResult<Snapshot> {
    let all = every_record();
    Ok(Snapshot {
        rows: f.row_counts().await?,
        last_seq: f.last_seq().await?,
        contacts: all_contacts(&f.contacts, &f.admin, &all).await?,
        orgs: all_orgs(&f.contacts, &f.admin, &all).await?,
    })
}

/// Passes when nothing `before` and `after` compare changed; else fails naming what did.
#[track_caller]
pub(crate) fn same_snapshot(before: &Snapshot, after: &Snapshot, what: &str) -> CheckResult {
    if before == after {
        return Ok(());
    }
    let mut diffs = vec![];
    for (t, n) in &before.rows {
        let m = after.rows.get(t).copied().unwrap_or(0);
        if *n != m {
            diffs.push(format!("{t}: {n} -> {m} rows"));
        }
    }
    if before.last_seq != after.last_seq {
        diffs.push(format!(
            "last event seq {} -> {}",
            before.last_seq, after.last_seq
        ));
    }
    if before.contacts != after.contacts {
        diffs.push("contacts changed".into());
    }
    if before.orgs != after.orgs {
        diffs.push("organizations changed".into());
    }
    Err(Failure::new(format!(
        "{what}: a failed command changed state: {}",
        diffs.join("; ")
    )))
}

fn tricky_texts() -> Vec<String> {
    vec![
        "O'Brien \"the\" ; -- ' OR 1=1--".into(),
        "Robert'); DROP TABLE contacts_person;--".into(),
        "émoji 🎉👩‍👩‍👧 \u{202E}evil\u{202C} e\u{0301}".into(),
        "/* comment */ \\ back\\slash pg_sleep(5)".into(),
        "İstanbul straße ΣΊΣΥΦΟΣ".into(),
    ]
}

fn eur(amount: &str) -> CheckResult<Money> {
    Money::parse(amount, "EUR").at("Money::parse")
}

/// A contact input using every field.
fn full_contact(f: &Fixture, i: usize, org: Option<OrganizationId>) -> CheckResult<NewContact> {
    let t = tricky_texts();
    let mut custom = CustomValues::new();
    custom.insert("tier".into(), CustomValue::Choice("gold".into()));
    custom.insert("score".into(), CustomValue::Number(-42));
    custom.insert("vip".into(), CustomValue::Bool(true));
    custom.insert(
        "since".into(),
        CustomValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).expect("a date")),
    );
    custom.insert("note".into(), CustomValue::Text(t[0].clone()));
    custom.insert("budget".into(), CustomValue::Money(eur("1234.56")?));
    custom.insert(
        "ratio".into(),
        CustomValue::Decimal(Decimal::new(-12345, 4)),
    );
    Ok(NewContact {
        first_name: t[1].chars().take(100).collect(),
        last_name: t[2].clone(),
        emails: vec![
            format!("O'Brien+tag{i}@Example.COM").into(),
            format!("second{i}@example.org").into(),
        ],
        phones: vec![
            PhoneInput {
                number: "+49 30 901820".into(),
                label: Some("work; --".into()),
                region: None,
            },
            PhoneInput::national("089 1234567", "de"),
        ],
        job_title: Some(t[3].clone()),
        organization: org,
        owner: Some(f.rep.actor().user),
        team: Some(f.team_x),
        lifecycle_stage: LifecycleStage::Customer,
        consent: Consent {
            status: ConsentStatus::Granted,
            source: Some(t[4].clone()),
            at: Some(
                Utc.timestamp_micros(1_700_000_000_123_456)
                    .single()
                    .expect("an instant"),
            ),
        },
        tags: vec!["vip".into(), t[0].chars().take(50).collect()],
        custom,
        allow_duplicate_email: false,
    })
}

/// An organization input using every field.
fn full_org(f: &Fixture, parent: Option<OrganizationId>) -> CheckResult<NewOrganization> {
    let t = tricky_texts();
    let mut custom = CustomValues::new();
    custom.insert("segment".into(), CustomValue::Choice("enterprise".into()));
    custom.insert("rating".into(), CustomValue::Number(5));
    Ok(NewOrganization {
        name: t[2].clone(),
        domain: Some("https://www.Example.COM/path?q=1".into()),
        industry: Some(t[0].clone()),
        employee_count: Some(1200),
        annual_revenue: Some(eur("98765432.10")?),
        phone: Some(PhoneInput::national("030 901820", "DE")),
        website: Some("https://example.com/?q='%20OR%201=1--;".into()),
        address: Some(PostalAddress {
            street: Some(t[1].clone()),
            city: Some("Zürich".into()),
            region: Some(t[3].clone()),
            postal_code: Some("8001".into()),
            country: Some("CH".into()),
        }),
        parent,
        owner: Some(f.rep.actor().user),
        team: Some(f.team_x),
        tags: vec!["key account".into()],
        custom,
    })
}

// ---------------------------------------------------------------------------------------
// 1. CRUD round trip
// ---------------------------------------------------------------------------------------

/// Contacts and organizations with every field round-trip byte-exact (SQL metacharacters,
/// emoji, RTL override, combining characters); updates bump the version; a stale version
/// is a Conflict naming both versions; delete hides, `include_deleted` shows, restore
/// brings back.
pub async fn crud_round_trip(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let parent = c
        .organizations()
        .create(&f.admin, NewOrganization::named("Parent ' OR 1=1--"))
        .await
        .at("create parent organization")?;
    let input = full_org(&f, Some(parent.id))?;
    let org = c
        .organizations()
        .create(&f.admin, input.clone())
        .await
        .at("create organization")?;
    ensure_eq!(org.name, input.name, "organization name is byte-exact");
    ensure_eq!(
        org.domain.as_deref(),
        Some("example.com"),
        "domain normalised"
    );
    ensure_eq!(org.industry, input.industry, "industry");
    ensure_eq!(org.employee_count, Some(1200), "employee count");
    ensure_eq!(org.annual_revenue, input.annual_revenue, "revenue");
    ensure_eq!(org.phone.as_deref(), Some("+4930901820"), "phone in E.164");
    ensure_eq!(org.website, input.website, "website");
    ensure_eq!(org.address, input.address, "address");
    ensure_eq!(org.parent, Some(parent.id), "parent");
    ensure_eq!(org.owner, f.rep.actor().user, "owner");
    ensure_eq!(org.team, Some(f.team_x), "team");
    ensure_eq!(org.tags, input.tags, "tags");
    ensure_eq!(org.custom, input.custom, "custom values");
    ensure_eq!(org.version, 1, "a new organization's version");
    let got = c
        .organizations()
        .get(&f.admin, org.id)
        .await
        .at("get org")?;
    ensure_eq!(got, org, "organization read back");

    let input = full_contact(&f, 0, Some(org.id))?;
    let contact = c
        .create(&f.admin, input.clone())
        .await
        .at("create contact")?;
    ensure_eq!(
        contact.first_name,
        input.first_name,
        "first name byte-exact"
    );
    ensure_eq!(contact.last_name, input.last_name, "last name byte-exact");
    ensure_eq!(
        contact
            .emails
            .iter()
            .map(|e| e.address.clone())
            .collect::<Vec<_>>(),
        input
            .emails
            .iter()
            .map(|e| e.address.clone())
            .collect::<Vec<_>>(),
        "emails stored as given"
    );
    ensure_eq!(
        contact
            .phones
            .iter()
            .map(|p| (p.number.as_str(), p.label.as_deref()))
            .collect::<Vec<_>>(),
        vec![("+4930901820", Some("work; --")), ("+49891234567", None)],
        "phones in E.164 with labels"
    );
    ensure_eq!(contact.job_title, input.job_title, "job title");
    ensure_eq!(contact.organization, Some(org.id), "organization");
    ensure_eq!(contact.owner, f.rep.actor().user, "owner");
    ensure_eq!(contact.team, Some(f.team_x), "team");
    ensure_eq!(contact.lifecycle_stage, LifecycleStage::Customer, "stage");
    ensure_eq!(contact.consent, input.consent, "consent");
    ensure_eq!(contact.tags, input.tags, "tags");
    ensure_eq!(contact.custom, input.custom, "custom values");
    ensure_eq!(contact.version, 1, "a new contact's version");
    ensure!(contact.deleted_at.is_none(), "a new contact is not deleted");
    let got = c.get(&f.admin, contact.id).await.at("get contact")?;
    ensure_eq!(got, contact, "contact read back");
    let listed = all_contacts(c, &f.admin, &Query::new()).await?;
    ensure_eq!(listed, vec![contact.clone()], "contact listed");
    let by_email = c
        .find_by_email(&f.admin, "o'brien+TAG0@example.com")
        .await
        .at("find_by_email")?;
    ensure_eq!(
        by_email,
        Some(contact.clone()),
        "found by email ignoring case"
    );
    let by_phone = c
        .find_by_phone(&f.admin, "+4930901820")
        .await
        .at("find_by_phone")?;
    ensure_eq!(
        by_phone.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([RecordRef::from(contact.id), RecordRef::from(org.id)]),
        "found by phone"
    );

    // Update with the right version.
    let patch = ContactPatch {
        first_name: Some(tricky_texts()[4].clone()),
        job_title: Some(None),
        lifecycle_stage: Some(LifecycleStage::Evangelist),
        custom: BTreeMap::from([
            ("score".to_string(), Some(CustomValue::Number(7))),
            ("vip".to_string(), None),
        ]),
        ..Default::default()
    };
    let updated = c
        .update(&f.admin, contact.id, 1, patch.clone())
        .await
        .at("update contact")?;
    ensure_eq!(updated.version, 2, "version after an update");
    ensure_eq!(updated.first_name, tricky_texts()[4], "updated first name");
    ensure_eq!(updated.job_title, None, "job title cleared");
    ensure!(
        !updated.custom.contains_key("vip"),
        "custom value removed by the patch"
    );
    ensure_eq!(
        updated.custom.get("score"),
        Some(&CustomValue::Number(7)),
        "custom value set by the patch"
    );
    ensure_eq!(updated.emails, contact.emails, "emails untouched");
    let got = c.get(&f.admin, contact.id).await.at("get")?;
    ensure_eq!(got, updated, "updated contact read back");
    expect_conflict(
        c.update(&f.admin, contact.id, 1, patch).await,
        1,
        2,
        "update with a stale version",
    )?;
    let got = c.get(&f.admin, contact.id).await.at("get")?;
    ensure_eq!(got, updated, "a conflicting update changes nothing");

    let org2 = c
        .organizations()
        .update(
            &f.admin,
            org.id,
            1,
            OrganizationPatch {
                employee_count: Some(Some(1201)),
                annual_revenue: Some(None),
                ..Default::default()
            },
        )
        .await
        .at("update organization")?;
    ensure_eq!(org2.version, 2, "organization version after an update");
    ensure_eq!(org2.annual_revenue, None, "revenue cleared");
    expect_conflict(
        c.organizations()
            .update(&f.admin, org.id, 1, OrganizationPatch::default())
            .await,
        1,
        2,
        "organization update with a stale version",
    )?;
    ensure_eq!(
        c.organizations()
            .get(&f.admin, org.id)
            .await
            .at("get org")?,
        org2,
        "organization read back after update"
    );

    // Delete, list, restore.
    expect_conflict(
        c.delete(&f.admin, contact.id, 1).await,
        1,
        2,
        "delete with a stale version",
    )?;
    let deleted = c
        .delete(&f.admin, contact.id, 2)
        .await
        .at("delete contact")?;
    ensure_eq!(deleted.version, 3, "version after delete");
    ensure!(deleted.deleted_at.is_some(), "deleted_at is set");
    expect_not_found(
        c.get(&f.admin, contact.id).await,
        &RecordKind::CONTACT,
        "get of a deleted contact",
    )?;
    ensure!(
        all_contacts(c, &f.admin, &Query::new()).await?.is_empty(),
        "a deleted contact is not listed"
    );
    let with_deleted = all_contacts(c, &f.admin, &Query::new().include_deleted()).await?;
    ensure_eq!(
        with_deleted,
        vec![deleted.clone()],
        "include_deleted lists it"
    );
    ensure_eq!(
        c.find_by_email(&f.admin, "o'brien+tag0@example.com")
            .await
            .at("find_by_email")?,
        None,
        "a deleted contact is not found by email"
    );
    ensure!(
        c.audit(&f.admin, contact.id)
            .await
            .at("audit of a deleted contact")?
            .len()
            >= 3,
        "audit entries of create, update and delete"
    );
    let restored = c
        .restore(&f.admin, contact.id, 3)
        .await
        .at("restore contact")?;
    ensure_eq!(restored.version, 4, "version after restore");
    ensure!(restored.deleted_at.is_none(), "restored is live");
    ensure_eq!(
        c.get(&f.admin, contact.id).await.at("get restored")?,
        restored,
        "restored contact read back"
    );
    ensure_eq!(
        c.find_by_email(&f.admin, "O'BRIEN+tag0@example.com")
            .await
            .at("find_by_email")?
            .map(|c| c.id),
        Some(contact.id),
        "a restored contact is found by email again"
    );

    let od = c
        .organizations()
        .delete(&f.admin, org.id, 2)
        .await
        .at("delete organization")?;
    expect_not_found(
        c.organizations().get(&f.admin, org.id).await,
        &RecordKind::ORGANIZATION,
        "get of a deleted organization",
    )?;
    let listed = all_orgs(c, &f.admin, &Query::new().include_deleted()).await?;
    ensure!(
        listed
            .iter()
            .any(|o| o.id == org.id && o.deleted_at.is_some()),
        "include_deleted lists the deleted organization"
    );
    let or = c
        .organizations()
        .restore(&f.admin, org.id, od.version)
        .await
        .at("restore organization")?;
    ensure_eq!(or.version, 4, "organization version after restore");
    ensure_eq!(
        c.organizations()
            .get(&f.admin, org.id)
            .await
            .at("get org")?,
        or,
        "restored organization read back"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Bad input
// ---------------------------------------------------------------------------------------

/// Runs a command that must fail with a Validation error naming `field`, and checks that
/// it wrote nothing (row counts of every table, the change feed, contacts and
/// organizations are unchanged).
async fn rejects<T: fmt::Debug>(
    f: &Fixture,
    field: &str,
    what: &str,
    cmd: impl Future<Output = crmkit_core::Result<T>>,
) -> CheckResult {
    let before = snapshot(f).await?;
    let r = cmd.await;
    expect_validation(r, field, what)?;
    let after = snapshot(f).await?;
    same_snapshot(&before, &after, what)
}

/// Bad input is a Validation error naming the field and writes nothing: empty and
/// whitespace names, over-long text, invalid emails and phones, unknown currencies,
/// negative numbers, wrong custom values, unknown filter and sort fields (also carrying
/// SQL), limits out of range, foreign or tampered cursors, references to another tenant's
/// organizations. Ids of another tenant, nonexistent and soft-deleted ids are all the same
/// NotFound.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let a = &f.admin;
    let keep = c
        .create(a, NewContact::named("Keep", "Me").email("keep@example.com"))
        .await
        .at("create")?;
    c.create(a, NewContact::named("Other", "One"))
        .await
        .at("create")?;
    let org = c
        .organizations()
        .create(a, NewOrganization::named("Org"))
        .await
        .at("create org")?;

    // Names.
    for (first, last, field) in [
        ("", "", "first_name"),
        ("  ", "\t\n", "first_name"),
        ("Ann", "   ", "last_name"),
        ("\u{3000}", "", "first_name"),
    ] {
        rejects(
            &f,
            field,
            &format!("name {first:?} {last:?}"),
            c.create(a, NewContact::named(first, last)),
        )
        .await?;
    }
    let long = "x".repeat(101);
    rejects(
        &f,
        "first_name",
        "first name of 101 characters",
        c.create(a, NewContact::named(long.clone(), "L")),
    )
    .await?;
    rejects(
        &f,
        "last_name",
        "last name of 101 characters",
        c.create(a, NewContact::named("F", long.clone())),
    )
    .await?;
    rejects(
        &f,
        "first_name",
        "a NUL in a name",
        c.create(a, NewContact::named("a\0b", "c")),
    )
    .await?;
    // 100 characters (emoji: 4 bytes each) is fine.
    let hundred = "🎉".repeat(100);
    let ok = c
        .create(a, NewContact::named(hundred.clone(), "x"))
        .await
        .at("a name of exactly 100 characters")?;
    ensure_eq!(ok.first_name, hundred, "100 emoji stored byte-exact");
    rejects(
        &f,
        "job_title",
        "job title of 201 characters",
        c.create(
            a,
            NewContact {
                job_title: Some("j".repeat(201)),
                ..NewContact::named("J", "T")
            },
        ),
    )
    .await?;
    rejects(
        &f,
        "name",
        "organization name of 201 characters",
        c.organizations()
            .create(a, NewOrganization::named("o".repeat(201))),
    )
    .await?;
    rejects(
        &f,
        "name",
        "empty organization name",
        c.organizations().create(a, NewOrganization::named(" ")),
    )
    .await?;
    rejects(
        &f,
        "first_name",
        "update to an empty name",
        c.update(
            a,
            keep.id,
            keep.version,
            ContactPatch {
                first_name: Some(" ".into()),
                last_name: Some(String::new()),
                ..Default::default()
            },
        ),
    )
    .await?;

    // Emails and phones.
    for bad in [
        "not-an-email",
        "a@example.com.",
        "a@@example.com",
        "a@example",
        "trailing@dot.org.",
        "",
    ] {
        rejects(
            &f,
            "emails[0]",
            &format!("email {bad:?}"),
            c.create(a, NewContact::named("E", "M").email(bad)),
        )
        .await?;
    }
    rejects(
        &f,
        "emails[1]",
        "second email invalid",
        c.create(
            a,
            NewContact::named("E", "M")
                .email("fine@example.com")
                .email("bad email@example.com"),
        ),
    )
    .await?;
    for (bad, field) in [
        (PhoneInput::new("12345"), "phones[0]"),
        (PhoneInput::new("030 901820"), "phones[0]"),
        (PhoneInput::new("not a phone"), "phones[0]"),
        (PhoneInput::national("030 901820", "ZZ';--"), "phones[0]"),
    ] {
        rejects(
            &f,
            field,
            &format!("phone {bad:?}"),
            c.create(a, NewContact::named("P", "H").phone(bad)),
        )
        .await?;
    }
    rejects(
        &f,
        "phone",
        "organization phone without a country code",
        c.organizations().create(
            a,
            NewOrganization {
                phone: Some(PhoneInput::new("030 901820")),
                ..NewOrganization::named("P")
            },
        ),
    )
    .await?;

    // Money and numbers.
    for code in ["XXY", "eu", "EUR'; --", ""] {
        expect_validation(
            Money::parse("10", code),
            "currency",
            &format!("currency {code:?}"),
        )?;
    }
    rejects(
        &f,
        "employee_count",
        "negative employee count",
        c.organizations().create(
            a,
            NewOrganization {
                employee_count: Some(-1),
                ..NewOrganization::named("N")
            },
        ),
    )
    .await?;
    rejects(
        &f,
        "annual_revenue",
        "negative revenue",
        c.organizations().create(
            a,
            NewOrganization {
                annual_revenue: Some(eur("-0.01")?),
                ..NewOrganization::named("N")
            },
        ),
    )
    .await?;
    rejects(
        &f,
        "employee_count",
        "update to a negative employee count",
        c.organizations().update(
            a,
            org.id,
            org.version,
            OrganizationPatch {
                employee_count: Some(Some(-5)),
                ..Default::default()
            },
        ),
    )
    .await?;

    // Custom values.
    for (key, value) in [
        ("score", CustomValue::Text("12".into())),
        ("tier", CustomValue::Choice("platinum".into())),
        ("tier", CustomValue::Text("gold".into())),
        ("nope", CustomValue::Number(1)),
        (
            "budget",
            CustomValue::Money(Money::parse("1", "USD").at("USD")?),
        ),
        ("note", CustomValue::Text("n".repeat(51))),
    ] {
        let field = format!("custom.{key}");
        rejects(
            &f,
            &field,
            &format!("custom {key} = {value:?}"),
            c.create(
                a,
                NewContact {
                    custom: CustomValues::from([(key.to_string(), value.clone())]),
                    ..NewContact::named("C", "V")
                },
            ),
        )
        .await?;
        rejects(
            &f,
            &field,
            &format!("update custom {key} = {value:?}"),
            c.update(
                a,
                keep.id,
                keep.version,
                ContactPatch {
                    custom: BTreeMap::from([(key.to_string(), Some(value))]),
                    ..Default::default()
                },
            ),
        )
        .await?;
    }

    // Ids: another tenant's, nonexistent, soft-deleted: all the same NotFound.
    let other = setup(store).await?;
    let foreign = other.person(&other.admin, "Foreign", "Person").await?;
    let foreign_org = other.org(&other.admin, "Foreign Org").await?;
    let gone = c
        .create(a, NewContact::named("Gone", "Soon"))
        .await
        .at("create")?;
    let gone = c.delete(a, gone.id, 1).await.at("delete")?;
    let gone_org = c
        .organizations()
        .create(a, NewOrganization::named("Gone Org"))
        .await
        .at("create org")?;
    let gone_org = c
        .organizations()
        .delete(a, gone_org.id, 1)
        .await
        .at("delete org")?;
    let before = snapshot(&f).await?;
    for (label, id) in [
        ("another tenant's", foreign.id),
        ("a nonexistent", ContactId::new()),
        ("the nil", ContactId::from_uuid(Uuid::nil())),
        ("a soft-deleted", gone.id),
    ] {
        let k = &RecordKind::CONTACT;
        expect_not_found(c.get(a, id).await, k, &format!("get {label} id"))?;
        expect_not_found(
            c.update(
                a,
                id,
                1,
                ContactPatch {
                    first_name: Some("X".into()),
                    ..Default::default()
                },
            )
            .await,
            k,
            &format!("update {label} id"),
        )?;
        if label == "a soft-deleted" {
            c.audit(a, id)
                .await
                .at("the audit of a soft-deleted contact stays readable")?;
        } else {
            expect_not_found(c.audit(a, id).await, k, &format!("audit of {label} id"))?;
        }
        if label != "a soft-deleted" {
            expect_not_found(c.delete(a, id, 1).await, k, &format!("delete {label} id"))?;
            expect_not_found(c.restore(a, id, 1).await, k, &format!("restore {label} id"))?;
        }
    }
    for (label, id) in [
        ("another tenant's", foreign_org.id),
        ("a nonexistent", OrganizationId::new()),
        ("a soft-deleted", gone_org.id),
    ] {
        let k = &RecordKind::ORGANIZATION;
        expect_not_found(
            c.organizations().get(a, id).await,
            k,
            &format!("get {label} org id"),
        )?;
        expect_not_found(
            c.organizations()
                .update(a, id, 1, OrganizationPatch::default())
                .await,
            k,
            &format!("update {label} org id"),
        )?;
    }
    same_snapshot(&before, &snapshot(&f).await?, "operations on invisible ids")?;
    ensure!(
        other.contacts.get(&other.admin, foreign.id).await.is_ok(),
        "tenant B's contact is untouched"
    );

    // References to another tenant's organization.
    rejects(
        &f,
        "organization",
        "contact in another tenant's organization",
        c.create(
            a,
            NewContact {
                organization: Some(foreign_org.id),
                ..NewContact::named("Cross", "Tenant")
            },
        ),
    )
    .await?;
    rejects(
        &f,
        "organization",
        "contact moved to another tenant's organization",
        c.update(
            a,
            keep.id,
            keep.version,
            ContactPatch {
                organization: Some(Some(foreign_org.id)),
                ..Default::default()
            },
        ),
    )
    .await?;
    rejects(
        &f,
        "organization",
        "contact in a soft-deleted organization",
        c.create(
            a,
            NewContact {
                organization: Some(gone_org.id),
                ..NewContact::named("Cross", "Deleted")
            },
        ),
    )
    .await?;
    rejects(
        &f,
        "parent",
        "organization under another tenant's organization",
        c.organizations().create(
            a,
            NewOrganization {
                parent: Some(foreign_org.id),
                ..NewOrganization::named("Child")
            },
        ),
    )
    .await?;

    // Filters and sorts on unknown fields, also carrying SQL.
    for name in [
        "nope",
        "name; DROP TABLE contacts_person",
        "\"x\" OR 1=1",
        "name' OR '1'='1",
        "custom.nope",
        "custom.score; DELETE FROM crm_custom_values",
        "tenant_id",
        "first_fold",
    ] {
        for (label, q) in [
            ("eq", Query::new().filter(Filter::eq(name, "x"))),
            ("is_null", Query::new().filter(Filter::is_null(name))),
            ("contains", Query::new().filter(Filter::contains(name, "x"))),
            (
                "nested",
                Query::new().filter(
                    Filter::eq("first_name", "Keep").and(Filter::is_in(name, ["a", "b"]).not()),
                ),
            ),
        ] {
            rejects(
                &f,
                &format!("filter.{name}"),
                &format!("{label} filter on {name:?}"),
                c.list(a, &q),
            )
            .await?;
        }
        rejects(
            &f,
            &format!("sort.{name}"),
            &format!("sort on {name:?}"),
            c.list(a, &Query::new().sort_asc(name)),
        )
        .await?;
        rejects(
            &f,
            &format!("sort.{name}"),
            &format!("organization sort on {name:?}"),
            c.organizations().list(a, &Query::new().sort_desc(name)),
        )
        .await?;
    }
    // A value carrying SQL is just a value.
    let q = Query::new().filter(Filter::eq("first_name", "' OR 1=1--"));
    ensure!(
        all_contacts(c, a, &q).await?.is_empty(),
        "a value carrying SQL matches nothing"
    );
    rejects(
        &f,
        "filter.custom.score",
        "custom filter with a value of the wrong type",
        c.list(
            a,
            &Query::new().filter(Filter::eq("custom.score", "' OR 1=1--")),
        ),
    )
    .await?;
    rejects(
        &f,
        "filter.custom.tier",
        "custom filter with an unknown choice",
        c.list(
            a,
            &Query::new().filter(Filter::eq("custom.tier", "gold' OR 1=1--")),
        ),
    )
    .await?;
    rejects(
        &f,
        "filter.lifecycle_stage",
        "an unknown enum value",
        c.list(
            a,
            &Query::new().filter(Filter::eq("lifecycle_stage", "lead' OR 1=1--")),
        ),
    )
    .await?;

    // Limits.
    for limit in [0, 1001, u32::MAX] {
        rejects(
            &f,
            "limit",
            &format!("limit {limit}"),
            c.list(a, &Query::new().limit(limit)),
        )
        .await?;
        rejects(
            &f,
            "limit",
            &format!("organization limit {limit}"),
            c.organizations().list(a, &Query::new().limit(limit)),
        )
        .await?;
        rejects(
            &f,
            "limit",
            &format!("events_since limit {limit}"),
            f.store.events_since(a, 0, limit),
        )
        .await?;
    }
    c.list(a, &Query::new().limit(1000))
        .await
        .at("limit 1000")?;
    c.list(a, &Query::new().limit(1)).await.at("limit 1")?;

    // Cursors.
    let q = Query::new().sort_asc("name").limit(1);
    let cursor = c
        .list(a, &q)
        .await
        .at("first page")?
        .next_cursor
        .ok_or_else(|| Failure::new("a first page of 1 of several has a cursor"))?;
    c.list(a, &q.clone().after(cursor.clone()))
        .await
        .at("the cursor works for its own query")?;
    let mut tampered = vec![
        "garbage".to_string(),
        String::new(),
        format!("{cursor}00"),
        cursor[..cursor.len() - 2].to_string(),
        cursor.replacen("c1", "c2", 1),
        format!("{}zz", &cursor[..cursor.len() - 2]),
    ];
    // Flip a hex digit of the body (the fingerprint or a key).
    for pos in [4, cursor.len() / 2, cursor.len() - 6] {
        let mut b = cursor.clone().into_bytes();
        b[pos] = if b[pos] == b'0' { b'1' } else { b'0' };
        tampered.push(String::from_utf8(b).expect("ascii"));
    }
    for t in tampered {
        let r = c.list(a, &q.clone().after(t.clone())).await;
        match r {
            Err(Error::Validation(v)) if v.has("cursor") => {}
            // A flipped digit may still decode to another valid position of the same
            // query: never an error other than Validation, never another tenant's row.
            Ok(p) if p.items.iter().all(|x| x.owner == keep.owner) => {}
            other => {
                return Err(Failure::new(format!(
                    "tampered cursor {t:?}: expected Validation on cursor, got {other:?}"
                )));
            }
        }
    }
    for t in retyped_cursors(&cursor) {
        rejects(
            &f,
            "cursor",
            &format!("a cursor with a key of the wrong type {t:?}"),
            c.list(a, &q.clone().after(t.clone())),
        )
        .await?;
    }
    for (label, other_q) in [
        ("another sort", Query::new().sort_desc("name").limit(1)),
        (
            "another filter",
            Query::new()
                .sort_asc("name")
                .filter(Filter::starts_with("name", "k"))
                .limit(1),
        ),
        ("include_deleted", q.clone().include_deleted()),
    ] {
        rejects(
            &f,
            "cursor",
            &format!("a cursor of another query ({label})"),
            c.list(a, &other_q.after(cursor.clone())),
        )
        .await?;
    }
    rejects(
        &f,
        "cursor",
        "a contact cursor used for organizations",
        c.organizations().list(a, &q.clone().after(cursor.clone())),
    )
    .await?;
    rejects(
        &f,
        "cursor",
        "a cursor of another tenant",
        other
            .contacts
            .list(&other.admin, &q.clone().after(cursor.clone())),
    )
    .await?;
    rejects(
        &f,
        "cursor",
        "a cursor of another actor's visibility",
        c.list(&f.rep, &q.clone().after(cursor.clone())),
    )
    .await?;
    Ok(())
}

/// Cursors with the same fingerprint whose key values have the wrong type: an integer
/// for a text key, text for the id. A backend must reject them as a Validation error on
/// `cursor`, not fail in SQL.
fn retyped_cursors(cursor: &str) -> Vec<String> {
    let Some(hex) = cursor.strip_prefix("c1") else {
        return vec![];
    };
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let Some(Ok(mut body)) = bytes.map(|b| serde_json::from_slice::<serde_json::Value>(&b)) else {
        return vec![];
    };
    let Some(keys) = body.get("k").and_then(|k| k.as_array()).cloned() else {
        return vec![];
    };
    let mut out = vec![];
    for (i, replacement) in [
        (0, serde_json::json!({"I": 5})),
        (0, serde_json::json!({"U": Uuid::nil()})),
        (keys.len() - 1, serde_json::json!({"T": "x"})),
        (keys.len() - 1, serde_json::json!({"I": 1})),
    ] {
        let mut k = keys.clone();
        k[i] = replacement;
        body["k"] = serde_json::Value::Array(k);
        let json = serde_json::to_vec(&body).expect("json");
        out.push(format!(
            "c1{}",
            json.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
    }
    out
}

/// Lookups and errors never reveal a contact the actor cannot see: a Duplicate caused by
/// a hidden holder names no record (a visible holder is named), an import row says
/// "another contact", and `find_by_phone` / `find_by_email` return only visible records.
pub async fn hidden_holders(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let email = format!("secret.{}@example.com", Uuid::now_v7().simple());
    let hidden = c
        .create(
            &f.admin,
            NewContact::named("Hidden", "Holder")
                .email(email.clone())
                .phone(PhoneInput::new("+49 30 901820")),
        )
        .await
        .at("admin's contact")?;
    match c
        .create(
            &f.rep_y,
            NewContact::named("Rep", "Copy").email(email.clone()),
        )
        .await
    {
        Err(Error::Duplicate { existing: None, .. }) => {}
        other => {
            return Err(Failure::new(format!(
                "a rep's duplicate of a hidden contact's email: {other:?}"
            )));
        }
    }
    match c
        .create(
            &f.admin,
            NewContact::named("Admin", "Copy").email(email.clone()),
        )
        .await
    {
        Err(Error::Duplicate {
            existing: Some(r), ..
        }) if r == RecordRef::from(hidden.id) => {}
        other => {
            return Err(Failure::new(format!(
                "an admin's duplicate names the holder: {other:?}"
            )));
        }
    }
    let mine = c
        .create(&f.rep_y, NewContact::named("Rep", "Own"))
        .await
        .at("rep's contact")?;
    match c
        .update(
            &f.rep_y,
            mine.id,
            mine.version,
            ContactPatch {
                emails: Some(vec![email.clone().into()]),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Duplicate { existing: None, .. }) => {}
        other => {
            return Err(Failure::new(format!(
                "a rep's update to a hidden contact's email: {other:?}"
            )));
        }
    }
    let report = c
        .import(
            &f.rep_y,
            vec![NewContact::named("Imported", "Copy").email(email.clone())],
            ImportOptions::default(),
        )
        .await
        .at("import")?;
    ensure!(
        report.errors.len() == 1 && !report.errors[0].reason.contains(&hidden.id.to_string()),
        "an import row names a hidden holder: {:?}",
        report.errors
    );
    ensure!(
        c.find_by_phone(&f.rep_y, "+4930901820")
            .await
            .at("find_by_phone")?
            .is_empty(),
        "find_by_phone returns a hidden contact"
    );
    ensure_eq!(
        c.find_by_phone(&f.admin, "+4930901820")
            .await
            .at("find_by_phone")?,
        vec![RecordRef::from(hidden.id)],
        "find_by_phone as admin"
    );
    ensure!(
        c.find_by_email(&f.rep_y, &email)
            .await
            .at("find_by_email")?
            .is_none(),
        "find_by_email returns a hidden contact"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Duplicate email
// ---------------------------------------------------------------------------------------

/// A second contact with an email a live contact has (ignoring case) is a Duplicate
/// naming the first; `allow_duplicate_email` lets it through; after deleting the holder
/// the email is free again; updates are checked too.
pub async fn duplicate_email(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let a = &f.admin;
    let first = c
        .create(
            a,
            NewContact::named("First", "Holder").email("Dup@Example.com"),
        )
        .await
        .at("create first")?;
    let before = snapshot(&f).await?;
    let existing = expect_duplicate(
        c.create(
            a,
            NewContact::named("Second", "Try").email("dup@example.COM"),
        )
        .await,
        "same email in other case",
    )?;
    ensure_eq!(
        existing,
        Some(RecordRef::from(first.id)),
        "the Duplicate names the first contact"
    );
    let existing = expect_duplicate(
        c.create(
            a,
            NewContact::named("Third", "Try")
                .email("new@example.com")
                .email(" DUP@EXAMPLE.COM "),
        )
        .await,
        "a second email that is taken",
    )?;
    ensure_eq!(existing, Some(RecordRef::from(first.id)), "names the first");
    same_snapshot(&before, &snapshot(&f).await?, "a duplicate create")?;

    // An update to a taken email.
    let other = c
        .create(
            a,
            NewContact::named("Other", "Person").email("other@example.com"),
        )
        .await
        .at("create other")?;
    let before = snapshot(&f).await?;
    let existing = expect_duplicate(
        c.update(
            a,
            other.id,
            other.version,
            ContactPatch {
                emails: Some(vec!["DUP@example.com".into()]),
                ..Default::default()
            },
        )
        .await,
        "update to a taken email",
    )?;
    ensure_eq!(existing, Some(RecordRef::from(first.id)), "names the first");
    same_snapshot(&before, &snapshot(&f).await?, "a duplicate update")?;
    // Keeping one's own email is not a duplicate.
    c.update(
        a,
        first.id,
        first.version,
        ContactPatch {
            emails: Some(vec!["dup@example.com".into(), "dup2@example.com".into()]),
            ..Default::default()
        },
    )
    .await
    .at("a contact keeps its own email in other case")?;

    // Import checks the same rule.
    let report = c
        .import(
            a,
            vec![NewContact::named("Imp", "Orted").email("dUp@example.com")],
            ImportOptions::default(),
        )
        .await
        .at("import")?;
    ensure!(
        !report.committed
            && report
                .errors
                .iter()
                .any(|e| e.row == 0 && e.field == "emails"),
        "import of a taken email reports row 0 emails: {report:?}"
    );

    // Delete frees the email.
    let first = c.get(a, first.id).await.at("get")?;
    c.delete(a, first.id, first.version)
        .await
        .at("delete first")?;
    let again = c
        .create(
            a,
            NewContact::named("Again", "Holder").email("dup@EXAMPLE.com"),
        )
        .await
        .at("the email is free after deleting its holder")?;
    ensure_eq!(
        c.find_by_email(a, "dup@example.com")
            .await
            .at("find")?
            .map(|c| c.id),
        Some(again.id),
        "find_by_email finds the new holder"
    );

    // allow_duplicate_email.
    let shared = c
        .create(
            a,
            NewContact {
                allow_duplicate_email: true,
                ..NewContact::named("Shared", "Holder").email("DUP@example.com")
            },
        )
        .await
        .at("allow_duplicate_email")?;
    ensure_eq!(
        shared.primary_email(),
        Some("DUP@example.com"),
        "email stored as given"
    );
    let existing = expect_duplicate(
        c.create(
            a,
            NewContact::named("Fourth", "Try").email("dup@example.com"),
        )
        .await,
        "a third holder without allow",
    )?;
    ensure!(
        existing
            .as_ref()
            .is_some_and(|e| *e == RecordRef::from(again.id) || *e == RecordRef::from(shared.id)),
        "the Duplicate names a live holder, got {existing:?}"
    );
    // Restoring the first holder is allowed (its email becomes shared).
    let first = c
        .restore(a, first.id, first.version + 1)
        .await
        .at("restore the first holder")?;
    ensure!(first.deleted_at.is_none(), "restored");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. F6 unique race
// ---------------------------------------------------------------------------------------

/// Holds every commit until `racers` commits are waiting, then lets them all go at once
/// (or, if they never all arrive, after [`GATE_TIMEOUT`]). A race through it is a real
/// race on every backend: each racer has done its reads (the duplicate pre-check) before
/// any racer commits, so only the backend's unique claim can keep the losers out. Without
/// it, the in-memory backend and SQLite answer each racer's reads and commit without
/// ever yielding in between, so the racers run one after the other and the pre-check
/// alone catches every duplicate (a broken claim went unnoticed there).
struct CommitGate {
    inner: Store,
    racers: usize,
    arrived: tokio::sync::watch::Sender<usize>,
}

/// How long [`CommitGate`] waits for the last racer.
const GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl CommitGate {
    /// A store over `store`'s backend whose commits wait for `racers` of them.
    fn store(store: &Store, racers: usize) -> (Store, tokio::sync::watch::Receiver<usize>) {
        let (arrived, rx) = tokio::sync::watch::channel(0);
        let gate = CommitGate {
            inner: store.clone(),
            racers,
            arrived,
        };
        (
            Store::from_arc(std::sync::Arc::new(gate), store.modules().clone()),
            rx,
        )
    }
}

impl crmkit_core::Backend for CommitGate {
    fn kind(&self) -> crmkit_core::BackendKind {
        self.inner.backend().kind()
    }

    fn schema(&self) -> &crmkit_core::store::Schema {
        self.inner.backend().schema()
    }

    fn get<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        key: &'a [crmkit_core::store::Value],
    ) -> crmkit_core::store::BoxFuture<'a, crmkit_core::Result<Option<crmkit_core::store::Row>>>
    {
        self.inner.backend().get(tenant, table, key)
    }

    fn select<'a>(
        &'a self,
        tenant: TenantId,
        select: &'a crmkit_core::store::Select,
    ) -> crmkit_core::store::BoxFuture<'a, crmkit_core::Result<Vec<crmkit_core::store::Row>>> {
        self.inner.backend().select(tenant, select)
    }

    fn count<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        cond: &'a Cond,
    ) -> crmkit_core::store::BoxFuture<'a, crmkit_core::Result<u64>> {
        self.inner.backend().count(tenant, table, cond)
    }

    fn aggregate<'a>(
        &'a self,
        tenant: TenantId,
        agg: &'a crmkit_core::store::Aggregate,
    ) -> crmkit_core::store::BoxFuture<'a, crmkit_core::Result<Vec<crmkit_core::store::Row>>> {
        self.inner.backend().aggregate(tenant, agg)
    }

    fn commit(
        &self,
        changeset: crmkit_core::Changeset,
    ) -> crmkit_core::store::BoxFuture<'_, crmkit_core::Result<crmkit_core::Commit>> {
        Box::pin(async move {
            let mut rx = self.arrived.subscribe();
            self.arrived.send_modify(|n| *n += 1);
            let _ = tokio::time::timeout(GATE_TIMEOUT, rx.wait_for(|n| *n >= self.racers)).await;
            // The store's hooks ran on the gated store; commit on the backend directly.
            self.inner.backend().commit(changeset).await
        })
    }

    fn reserve<'a>(
        &'a self,
        tenant: TenantId,
        sequence: &'a str,
        n: u64,
    ) -> crmkit_core::store::BoxFuture<'a, crmkit_core::Result<u64>> {
        self.inner.backend().reserve(tenant, sequence, n)
    }

    fn inject_fault(&self, fault: Option<crmkit_core::Fault>) {
        self.inner.backend().inject_fault(fault)
    }
}

/// Fails unless all `racers` reached the commit gate (so the race really happened).
fn all_raced(rx: &tokio::sync::watch::Receiver<usize>, racers: usize) -> CheckResult {
    // A losing import may commit again without its rejected row, so count at least.
    let arrived = *rx.borrow();
    ensure!(
        arrived >= racers,
        "only {arrived} of {racers} racers passed the duplicate pre-check and reached the \
         commit together"
    );
    Ok(())
}

/// F6: 32 tasks create a contact with the same email (in varying case) at once: exactly
/// one succeeds, every other gets a Duplicate. Then 8 concurrent imports of one email:
/// exactly one contact has it. Needs a multi-thread runtime.
///
/// The racers commit through a gate that holds every commit until all of them have done
/// their reads, so on every backend (the in-memory one and SQLite included, whose calls
/// otherwise never interleave) all of them pass the duplicate pre-check and only the
/// backend's unique email claim decides the winner.
pub async fn unique_race(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    const RACERS: usize = 32;
    let (gated, arrived) = CommitGate::store(store, RACERS);
    let contacts = Contacts::new(&gated).at("Contacts::new")?;
    let mut tasks = vec![];
    for i in 0..RACERS {
        let c = contacts.clone();
        let ctx = if i % 2 == 0 {
            f.admin.clone()
        } else {
            f.manager.clone()
        };
        let email = if i % 3 == 0 {
            "Race@Example.com".to_string()
        } else {
            "race@example.COM".to_string()
        };
        tasks.push(tokio::spawn(async move {
            c.create(
                &ctx,
                NewContact::named(format!("Racer {i}"), "R").email(email),
            )
            .await
        }));
    }
    let mut winners = vec![];
    for t in tasks {
        match t
            .await
            .map_err(|e| Failure::new(format!("task panicked: {e}")))?
        {
            Ok(c) => winners.push(c.id),
            Err(Error::Duplicate { kind, field, .. })
                if kind == RecordKind::CONTACT && field == "emails" => {}
            Err(e) => return Err(Failure::new(format!("a racer got {e:?}, not Duplicate"))),
        }
    }
    all_raced(&arrived, RACERS)?;
    ensure_eq!(winners.len(), 1, "exactly one racer creates the contact");
    let live = all_contacts(&f.contacts, &f.admin, &Query::new().limit(1000)).await?;
    ensure_eq!(
        live.iter().map(|c| c.id).collect::<Vec<_>>(),
        winners,
        "exactly one contact exists"
    );

    // Concurrent imports of one email, through a gate of their own.
    const IMPORTERS: usize = 8;
    let (gated, arrived) = CommitGate::store(store, IMPORTERS);
    let contacts = Contacts::new(&gated).at("Contacts::new")?;
    let mut tasks = vec![];
    for i in 0..IMPORTERS {
        let c = contacts.clone();
        let ctx = f.admin.clone();
        tasks.push(tokio::spawn(async move {
            c.import(
                &ctx,
                vec![NewContact::named(format!("Importer {i}"), "I").email("IMPORT@example.com")],
                ImportOptions::default(),
            )
            .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t
            .await
            .map_err(|e| Failure::new(format!("task panicked: {e}")))?
        {
            Ok(ImportReport {
                created: ids,
                errors,
                committed,
            }) => {
                if committed {
                    ensure!(
                        ids.len() == 1 && errors.is_empty(),
                        "a committed import: {ids:?} {errors:?}"
                    );
                    created += 1;
                } else {
                    ensure!(
                        errors.iter().any(|e| e.field == "emails"),
                        "an import that lost reports the email: {errors:?}"
                    );
                }
            }
            Err(Error::Duplicate { .. }) => {}
            Err(e) => return Err(Failure::new(format!("an import got {e:?}"))),
        }
    }
    all_raced(&arrived, IMPORTERS)?;
    ensure_eq!(created, 1, "exactly one import commits");
    let holders: Vec<Contact> = all_contacts(&f.contacts, &f.admin, &Query::new().limit(1000))
        .await?
        .into_iter()
        .filter(|c| {
            c.emails
                .iter()
                .any(|e| fold(&e.address) == "import@example.com")
        })
        .collect();
    ensure_eq!(
        holders.len(),
        1,
        "exactly one contact holds the imported email"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. F4 lost update
// ---------------------------------------------------------------------------------------

/// Read-modify-write rounds per task in [`lost_update`] when run from [`checks`].
/// RELIABILITY F4 asks for 500; 40 keeps server backends fast.
pub const LOST_UPDATE_ROUNDS: usize = 40;

/// F4 with [`LOST_UPDATE_ROUNDS`] rounds per task.
pub async fn lost_update_default(store: &Store) -> CheckResult {
    lost_update(store, LOST_UPDATE_ROUNDS).await
}

/// F4: 16 tasks each do `rounds` acknowledged read-modify-write increments of one
/// organization's employee count (get, then update with the version read; retry on
/// Conflict). The final count equals the number of acknowledged increments, and every
/// rejected write is a Conflict. Needs a multi-thread runtime.
pub async fn lost_update(store: &Store, rounds: usize) -> CheckResult {
    let f = setup(store).await?;
    let org = f
        .contacts
        .organizations()
        .create(
            &f.admin,
            NewOrganization {
                employee_count: Some(0),
                ..NewOrganization::named("Counter")
            },
        )
        .await
        .at("create counter")?;
    let mut tasks = vec![];
    for i in 0..16 {
        let c = f.contacts.clone();
        let ctx = if i % 2 == 0 {
            f.manager.clone()
        } else {
            f.admin.clone()
        };
        let id = org.id;
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut conflicts) = (0usize, 0usize);
            while acked < rounds {
                let o = c
                    .organizations()
                    .get(&ctx, id)
                    .await
                    .map_err(|e| format!("get: {e:?}"))?;
                let n = o.employee_count.unwrap_or(0);
                match c
                    .organizations()
                    .update(
                        &ctx,
                        id,
                        o.version,
                        OrganizationPatch {
                            employee_count: Some(Some(n + 1)),
                            ..Default::default()
                        },
                    )
                    .await
                {
                    Ok(_) => acked += 1,
                    Err(Error::Conflict { .. }) => conflicts += 1,
                    Err(e) => {
                        return Err(format!("a rejected write that is not a Conflict: {e:?}"));
                    }
                }
                if conflicts > rounds * 10_000 {
                    return Err("too many conflicts".into());
                }
            }
            Ok::<_, String>(acked)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| Failure::new(format!("task panicked: {e}")))?
            .map_err(Failure::new)?;
    }
    let o = f
        .contacts
        .organizations()
        .get(&f.admin, org.id)
        .await
        .at("get")?;
    ensure_eq!(
        o.employee_count,
        Some(total as i64),
        "final count equals acknowledged increments"
    );
    ensure_eq!(
        o.version,
        1 + total as u64,
        "one version per acknowledged update"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. T1 differential tenant isolation
// ---------------------------------------------------------------------------------------

/// Colliding data: the same names, emails and phone numbers in every tenant.
async fn colliding_data(f: &Fixture) -> CheckResult<(Vec<Contact>, Vec<Organization>)> {
    let c = &f.contacts;
    let mut orgs = vec![];
    for (i, name) in ["Acme", "acme", "Globex"].iter().enumerate() {
        orgs.push(
            c.organizations()
                .create(
                    &f.admin,
                    NewOrganization {
                        phone: Some(PhoneInput::new("+49 30 901820")),
                        employee_count: Some(i as i64 * 10),
                        team: Some(f.team_x),
                        ..NewOrganization::named(*name)
                    },
                )
                .await
                .at("create org")?,
        );
    }
    let mut contacts = vec![];
    for (i, (first, last, email)) in [
        ("Alice", "Smith", "alice@example.com"),
        ("alice", "smith", "alice2@example.com"),
        ("Bob", "Jones", "bob@example.com"),
        ("Zoë", "Ünal", "zoe@example.com"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut input = NewContact::named(first, last)
            .email(email)
            .phone(PhoneInput::new("+49 30 901820"));
        input.organization = Some(orgs[i % orgs.len()].id);
        input.team = if i % 2 == 0 { Some(f.team_x) } else { None };
        input.custom = CustomValues::from([
            ("tier".to_string(), CustomValue::Choice(TIERS[i % 3].into())),
            ("score".to_string(), CustomValue::Number(i as i64)),
        ]);
        contacts.push(c.create(&f.admin, input).await.at("create contact")?);
    }
    let c0 = &contacts[0];
    let updated = c
        .update(
            &f.admin,
            c0.id,
            c0.version,
            ContactPatch {
                job_title: Some(Some("CEO".into())),
                ..Default::default()
            },
        )
        .await
        .at("update")?;
    contacts[0] = updated;
    Ok((contacts, orgs))
}

/// Every public read of the contacts module as one actor, as text.
async fn observe(
    f: &Fixture,
    ctx: &Ctx,
    contacts: &[Contact],
    orgs: &[Organization],
) -> CheckResult<Vec<String>> {
    let c = &f.contacts;
    let mut out = vec![];
    for x in contacts {
        out.push(format!("{:?}", c.get(ctx, x.id).await));
        out.push(format!("{:?}", c.audit(ctx, x.id).await));
    }
    for o in orgs {
        out.push(format!("{:?}", c.organizations().get(ctx, o.id).await));
        out.push(format!("{:?}", c.organizations().audit(ctx, o.id).await));
    }
    let queries = [
        Query::new(),
        Query::new().include_deleted().with_total(),
        Query::new().sort_asc("name").limit(2),
        Query::new().sort_desc("email").limit(3),
        Query::new().filter(Filter::eq("email", "alice@example.com")),
        Query::new().filter(Filter::contains("name", "ali")),
        Query::new().filter(Filter::eq("phone", "+4930901820")),
        Query::new().filter(Filter::eq("custom.tier", "gold")),
        Query::new().sort_desc("custom.score").limit(1),
        Query::new().filter(Filter::is_null("team")),
        Query::new()
            .filter(Filter::eq("lifecycle_stage", "lead"))
            .with_total(),
    ];
    for q in &queries {
        out.push(format!("{q:?} -> {:?}", all_contacts(c, ctx, q).await));
        out.push(format!("{q:?} -> {:?}", c.list(ctx, q).await));
    }
    for q in [
        Query::new().sort_asc("name"),
        Query::new().filter(Filter::starts_with("name", "acme")),
        Query::new().filter(Filter::gte("employee_count", 10i64)),
    ] {
        out.push(format!("{q:?} -> {:?}", all_orgs(c, ctx, &q).await));
    }
    for s in ["ali", "a", "BOB", "zo", ""] {
        out.push(format!("search {s}: {:?}", c.search(ctx, s, 50).await));
    }
    out.push(format!("{:?}", c.find_by_phone(ctx, "+4930901820").await));
    for e in [
        "alice@example.com",
        "ALICE2@example.com",
        "nobody@example.com",
    ] {
        out.push(format!("{:?}", c.find_by_email(ctx, e).await));
    }
    out.push(format!("{:?}", f.store.events_since(ctx, 0, 1000).await));
    // Import dedup reads the tenant's emails (and writes nothing: every row is taken).
    out.push(format!(
        "{:?}",
        c.import(
            ctx,
            vec![
                NewContact::named("X", "Y").email("alice@example.com"),
                NewContact::named("X", "Z").email("BOB@example.com"),
            ],
            ImportOptions::default(),
        )
        .await
    ));
    Ok(out)
}

/// T1: two tenants with colliding data. Every public read as tenant A (get, list with
/// filters and sorts, search, find by phone and email, audit, the change feed, import
/// dedup) gives the same output before and after tenant B's data changes; tenant A can
/// never read or change B's records (NotFound).
pub async fn tenant_isolation(store: &Store) -> CheckResult {
    let a = setup(store).await?;
    let b = setup(store).await?;
    let (ac, ao) = colliding_data(&a).await?;
    let (bc, bo) = colliding_data(&b).await?;
    let mut before = vec![];
    for ctx in [&a.admin, &a.rep, &a.readonly] {
        before.push(observe(&a, ctx, &ac, &ao).await?);
    }
    // Mutate B: create, update, delete, restore, import.
    let c = &b.contacts;
    c.create(
        &b.admin,
        NewContact::named("Alice", "Smith").email("new@example.com"),
    )
    .await
    .at("B create")?;
    c.update(
        &b.admin,
        bc[1].id,
        bc[1].version,
        ContactPatch {
            first_name: Some("Alicia".into()),
            emails: Some(vec!["bob2@example.com".into()]),
            custom: BTreeMap::from([(
                "tier".to_string(),
                Some(CustomValue::Choice("gold".into())),
            )]),
            ..Default::default()
        },
    )
    .await
    .at("B update")?;
    c.delete(&b.admin, bc[0].id, bc[0].version)
        .await
        .at("B delete")?;
    let d = c
        .delete(&b.admin, bc[2].id, bc[2].version)
        .await
        .at("B delete")?;
    c.restore(&b.admin, bc[2].id, d.version)
        .await
        .at("B restore")?;
    c.organizations()
        .update(
            &b.admin,
            bo[0].id,
            bo[0].version,
            OrganizationPatch {
                name: Some("Acme B".into()),
                employee_count: Some(Some(99)),
                ..Default::default()
            },
        )
        .await
        .at("B org update")?;
    c.import(
        &b.admin,
        vec![NewContact::named("Alice", "Import").email("alice@example.com")],
        ImportOptions {
            partial: true,
            allow_duplicate_emails: true,
        },
    )
    .await
    .at("B import")?;
    let mut after = vec![];
    for ctx in [&a.admin, &a.rep, &a.readonly] {
        after.push(observe(&a, ctx, &ac, &ao).await?);
    }
    for (x, y) in before.iter().zip(&after) {
        for (i, (l, r)) in x.iter().zip(y).enumerate() {
            ensure_eq!(
                l,
                r,
                "tenant A's read #{i} changed when tenant B's data changed"
            );
        }
        ensure_eq!(x.len(), y.len(), "same number of reads");
    }
    // A cannot touch B's records.
    let k = &RecordKind::CONTACT;
    for x in &bc {
        expect_not_found(
            a.contacts.get(&a.admin, x.id).await,
            k,
            "A gets B's contact",
        )?;
        expect_not_found(
            a.contacts
                .update(&a.admin, x.id, x.version, ContactPatch::default())
                .await,
            k,
            "A updates B's contact",
        )?;
        expect_not_found(
            a.contacts.delete(&a.admin, x.id, x.version).await,
            k,
            "A deletes B's contact",
        )?;
        expect_not_found(
            a.contacts.audit(&a.admin, x.id).await,
            k,
            "A reads B's audit",
        )?;
        let q = Query::new()
            .filter(Filter::eq("id", x.id.as_uuid()))
            .include_deleted();
        ensure!(
            all_contacts(&a.contacts, &a.admin, &q).await?.is_empty(),
            "A lists B's contact by id"
        );
    }
    for o in &bo {
        expect_not_found(
            a.contacts.organizations().get(&a.admin, o.id).await,
            &RecordKind::ORGANIZATION,
            "A gets B's org",
        )?;
        expect_not_found(
            a.contacts
                .organizations()
                .delete(&a.admin, o.id, o.version)
                .await,
            &RecordKind::ORGANIZATION,
            "A deletes B's org",
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. T3 record-level access
// ---------------------------------------------------------------------------------------

fn oracle_sees(actor: &Actor, owner: UserId, team: Option<TeamId>) -> bool {
    actor.has(Role::Admin)
        || actor.has(Role::Manager)
        || owner == actor.user
        || team.is_some_and(|t| actor.teams.contains(&t))
}

/// T3: records owned by every user and team; for every actor, list (all pages), search,
/// find by email and get return exactly what the owner/team/role oracle allows (else
/// NotFound); update and delete succeed iff visible and the role writes; ReadOnly gets
/// PermissionDenied on every write; a Rep cannot give a record to someone else or to
/// another team; the change feed needs Admin or Manager.
pub async fn record_access(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let owners: Vec<UserId> = f.actors().iter().map(|(_, x)| x.actor().user).collect();
    let mut records = vec![];
    let mut orgs = vec![];
    let mut n = 0;
    for owner in &owners {
        for team in [None, Some(f.team_x), Some(f.team_y)] {
            n += 1;
            let rec = c
                .create(
                    &f.admin,
                    NewContact {
                        owner: Some(*owner),
                        team,
                        ..NewContact::named(format!("Acc {n:02}"), "Person")
                            .email(format!("acc{n}@example.com"))
                    },
                )
                .await
                .at("create")?;
            records.push(rec);
            if n % 2 == 0 {
                orgs.push(
                    c.organizations()
                        .create(
                            &f.manager,
                            NewOrganization {
                                owner: Some(*owner),
                                team,
                                ..NewOrganization::named(format!("Org {n:02}"))
                            },
                        )
                        .await
                        .at("create org")?,
                );
            }
        }
    }
    for (name, ctx) in f.actors() {
        let actor = ctx.actor();
        let want: BTreeSet<ContactId> = records
            .iter()
            .filter(|r| oracle_sees(actor, r.owner, r.team))
            .map(|r| r.id)
            .collect();
        let listed = all_contacts(c, ctx, &Query::new().limit(7)).await?;
        let got: BTreeSet<ContactId> = listed.iter().map(|r| r.id).collect();
        ensure_eq!(got, want, "{name}: listed contacts equal the oracle");
        ensure_eq!(got.len(), listed.len(), "{name}: no contact listed twice");
        let total = c
            .list(ctx, &Query::new().limit(1).with_total())
            .await
            .at("total")?
            .total;
        ensure_eq!(
            total,
            Some(want.len() as u64),
            "{name}: total equals the oracle"
        );
        let searched: BTreeSet<ContactId> = c
            .search(ctx, "acc", 1000)
            .await
            .at("search")?
            .iter()
            .map(|r| r.id)
            .collect();
        ensure_eq!(searched, want, "{name}: search equals the oracle");
        let want_orgs: BTreeSet<OrganizationId> = orgs
            .iter()
            .filter(|o| oracle_sees(actor, o.owner, o.team))
            .map(|o| o.id)
            .collect();
        let got_orgs: BTreeSet<OrganizationId> = all_orgs(c, ctx, &Query::new().limit(3))
            .await?
            .iter()
            .map(|o| o.id)
            .collect();
        ensure_eq!(
            got_orgs,
            want_orgs,
            "{name}: listed organizations equal the oracle"
        );
        for (i, r) in records.iter().enumerate() {
            let visible = want.contains(&r.id);
            let got = c.get(ctx, r.id).await;
            if visible {
                got.at(&format!("{name} gets visible contact {i}"))?;
            } else {
                expect_not_found(
                    got,
                    &RecordKind::CONTACT,
                    &format!("{name} gets hidden {i}"),
                )?;
            }
            let by_email = c
                .find_by_email(ctx, &format!("ACC{}@example.com", i + 1))
                .await
                .at("find_by_email")?;
            ensure_eq!(
                by_email.is_some(),
                visible,
                "{name}: find_by_email of contact {i}"
            );
            let audit = c.audit(ctx, r.id).await;
            if !visible {
                expect_not_found(audit, &RecordKind::CONTACT, "audit of a hidden contact")?;
            }
        }
        for o in &orgs {
            let visible = want_orgs.contains(&o.id);
            let got = c.organizations().get(ctx, o.id).await;
            if visible {
                got.at(&format!("{name} gets a visible organization"))?;
            } else {
                expect_not_found(got, &RecordKind::ORGANIZATION, "hidden organization")?;
            }
        }
    }
    // Writes.
    for (name, ctx) in f.actors() {
        let actor = ctx.actor();
        for (i, r) in records.iter().enumerate() {
            let current = c.get(&f.admin, r.id).await.at("admin get")?;
            let visible = oracle_sees(actor, r.owner, r.team);
            let what = format!("{name} updates contact {i}");
            let upd = c
                .update(
                    ctx,
                    r.id,
                    current.version,
                    ContactPatch {
                        job_title: Some(Some(format!("by {name}"))),
                        ..Default::default()
                    },
                )
                .await;
            if !actor.can_write() {
                expect_denied(upd, &what)?;
            } else if visible {
                upd.at(&what)?;
            } else {
                expect_not_found(upd, &RecordKind::CONTACT, &what)?;
            }
            let current = c.get(&f.admin, r.id).await.at("admin get")?;
            let what = format!("{name} deletes contact {i}");
            let del = c.delete(ctx, r.id, current.version).await;
            if !actor.can_write() {
                expect_denied(del, &what)?;
            } else if visible {
                let d = del.at(&what)?;
                c.restore(ctx, r.id, d.version)
                    .await
                    .at(&format!("{name} restores contact {i}"))?;
            } else {
                expect_not_found(del, &RecordKind::CONTACT, &what)?;
            }
        }
        for o in &orgs {
            let current = c
                .organizations()
                .get(&f.admin, o.id)
                .await
                .at("admin get")?;
            let visible = oracle_sees(actor, o.owner, o.team);
            let upd = c
                .organizations()
                .update(
                    ctx,
                    o.id,
                    current.version,
                    OrganizationPatch {
                        industry: Some(Some(format!("by {name}"))),
                        ..Default::default()
                    },
                )
                .await;
            let what = format!("{name} updates an organization");
            if !actor.can_write() {
                expect_denied(upd, &what)?;
            } else if visible {
                upd.at(&what)?;
            } else {
                expect_not_found(upd, &RecordKind::ORGANIZATION, &what)?;
            }
        }
    }
    // ReadOnly writes nothing, even its own records.
    let ro = &f.readonly;
    let before = snapshot(&f).await?;
    expect_denied(
        c.create(ro, NewContact::named("Read", "Only")).await,
        "ReadOnly creates a contact",
    )?;
    expect_denied(
        c.organizations()
            .create(ro, NewOrganization::named("RO"))
            .await,
        "ReadOnly creates an organization",
    )?;
    expect_denied(
        c.import(
            ro,
            vec![NewContact::named("R", "O")],
            ImportOptions::default(),
        )
        .await,
        "ReadOnly imports",
    )?;
    let own = records
        .iter()
        .find(|r| r.owner == ro.actor().user)
        .ok_or_else(|| Failure::new("a record owned by the ReadOnly user"))?;
    let cur = c.get(ro, own.id).await.at("ReadOnly reads its own")?;
    expect_denied(
        c.restore(ro, own.id, cur.version).await,
        "ReadOnly restores",
    )?;
    same_snapshot(&before, &snapshot(&f).await?, "ReadOnly writes")?;

    // A Rep cannot give records away.
    let rep = &f.rep;
    let rep2 = rep2_user(&f);
    expect_denied(
        c.create(
            rep,
            NewContact {
                owner: Some(rep2),
                ..NewContact::named("Give", "Away")
            },
        )
        .await,
        "a Rep creates a contact owned by another user",
    )?;
    expect_denied(
        c.create(
            rep,
            NewContact {
                team: Some(f.team_y),
                ..NewContact::named("Other", "Team")
            },
        )
        .await,
        "a Rep creates a contact in another team",
    )?;
    let mine = c
        .create(rep, NewContact::named("Mine", "Own"))
        .await
        .at("a Rep creates its own contact")?;
    ensure_eq!(mine.owner, rep.actor().user, "a Rep owns what it creates");
    expect_denied(
        c.update(
            rep,
            mine.id,
            mine.version,
            ContactPatch {
                owner: Some(rep2),
                ..Default::default()
            },
        )
        .await,
        "a Rep assigns its contact to another user",
    )?;
    expect_denied(
        c.update(
            rep,
            mine.id,
            mine.version,
            ContactPatch {
                team: Some(Some(f.team_y)),
                ..Default::default()
            },
        )
        .await,
        "a Rep moves its contact to another team",
    )?;
    expect_denied(
        c.organizations()
            .create(
                rep,
                NewOrganization {
                    owner: Some(rep2),
                    ..NewOrganization::named("Give Away")
                },
            )
            .await,
        "a Rep creates an organization owned by another user",
    )?;
    ensure_eq!(
        c.get(rep, mine.id).await.at("get")?,
        mine,
        "refused assignments change nothing"
    );
    // The change feed.
    for (name, ctx) in [
        ("rep", &f.rep),
        ("rep_y", &f.rep_y),
        ("readonly", &f.readonly),
    ] {
        expect_denied(
            f.store.events_since(ctx, 0, 10).await,
            &format!("events_since as {name}"),
        )?;
    }
    f.store
        .events_since(&f.manager, 0, 10)
        .await
        .at("events_since as manager")?;
    Ok(())
}

fn rep2_user(f: &Fixture) -> UserId {
    f.rep2.actor().user
}

// ---------------------------------------------------------------------------------------
// 8. T5 context
// ---------------------------------------------------------------------------------------

/// T5: a context cannot be made for the nil tenant (it is an error, never "all
/// tenants"); an unknown user of a tenant gets no context from the directory.
pub async fn no_tenant_no_context(store: &Store) -> CheckResult {
    let r = Ctx::new(
        TenantId::from_uuid(Uuid::nil()),
        Actor::new(UserId::new(), [Role::Admin], []),
    );
    expect_validation(r, "tenant", "Ctx::new with the nil tenant")?;
    let f = setup(store).await?;
    expect_denied(
        store.directory().ctx_for(f.tenant, UserId::new()).await,
        "ctx_for an unknown user",
    )?;
    let other = setup(store).await?;
    expect_denied(
        store
            .directory()
            .ctx_for(other.tenant, f.admin.actor().user)
            .await,
        "ctx_for a user of another tenant",
    )?;
    let ctx = store
        .directory()
        .ctx_for(f.tenant, f.rep.actor().user)
        .await
        .at("ctx_for a user")?;
    ensure_eq!(ctx.actor(), f.rep.actor(), "ctx_for reads roles and teams");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 9. F2 atomicity
// ---------------------------------------------------------------------------------------

/// Runs `cmd` with a fault before its n-th write for n = 0, 1, ... until it succeeds.
/// Every failing run must be a Storage error leaving the tenant exactly as before (no
/// row, lookup or custom-value row, audit entry or event of it). Returns the number of
/// failing steps and the successful result.
async fn fail_at_every_write<T: fmt::Debug>(
    f: &Fixture,
    what: &str,
    cmd: impl AsyncFn() -> crmkit_core::Result<T>,
) -> CheckResult<(usize, T)> {
    let before = snapshot(f).await?;
    let unchanged = async |n| {
        let after = snapshot(f).await?;
        same_snapshot(&before, &after, &format!("{what} failing at write {n}"))
    };
    crate::support::fail_at_every_write(&f.store, what, unchanged, cmd).await
}

/// F2: a fault before any write of contacts().create (with emails, phones and custom
/// fields), update, delete and import fails the command with a Storage
/// error and leaves no trace: no record without its event, no event without its record,
/// no lookup or custom-value rows, no audit entries. With the fault cleared, the command
/// succeeds. Injects faults into the backend: do not run concurrently with other checks on
/// the same store.
pub async fn atomicity(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let a = &f.admin;
    let org = c
        .organizations()
        .create(a, NewOrganization::named("Atomic Org"))
        .await
        .at("create org")?;
    let input = full_contact(&f, 1, Some(org.id))?;
    let seq0 = f.last_seq().await?;
    let (steps, created) = fail_at_every_write(&f, "contacts().create", async || {
        c.create(a, input.clone()).await
    })
    .await?;
    ensure!(steps >= 5, "contacts().create made only {steps} writes");
    let events = f.events_after(seq0).await?;
    ensure_eq!(
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.record.clone()))
            .collect::<Vec<_>>(),
        vec![("contact.created", RecordRef::from(created.id))],
        "exactly one event of the successful create"
    );
    ensure_eq!(
        c.get(a, created.id).await.at("get")?,
        created,
        "the created contact"
    );
    ensure_eq!(
        c.find_by_email(a, &input.emails[1].address)
            .await
            .at("find")?
            .map(|x| x.id),
        Some(created.id),
        "the email lookup row"
    );

    let patch = ContactPatch {
        first_name: Some("Changed".into()),
        emails: Some(vec!["changed@example.com".into()]),
        phones: Some(vec![PhoneInput::new("+33 1 42 68 53 00")]),
        custom: BTreeMap::from([
            ("score".to_string(), Some(CustomValue::Number(99))),
            ("tier".to_string(), None),
        ]),
        ..Default::default()
    };
    let (_, updated) = fail_at_every_write(&f, "contacts().update", async || {
        c.update(a, created.id, created.version, patch.clone())
            .await
    })
    .await?;
    ensure_eq!(updated.version, created.version + 1, "one version bump");
    ensure_eq!(
        c.find_by_email(a, &input.emails[1].address)
            .await
            .at("find")?,
        None,
        "the old email left the lookup"
    );
    let (_, deleted) = fail_at_every_write(&f, "contacts().delete", async || {
        c.delete(a, updated.id, updated.version).await
    })
    .await?;
    fail_at_every_write(&f, "contacts().restore", async || {
        c.restore(a, deleted.id, deleted.version).await
    })
    .await?;
    let rows = vec![
        NewContact::named("Imp", "One").email("imp1@example.com"),
        NewContact::named("Imp", "Two")
            .email("imp2@example.com")
            .phone(PhoneInput::new("+49 30 901820")),
    ];
    let (_, report) = fail_at_every_write(&f, "contacts().import", async || {
        c.import(a, rows.clone(), ImportOptions::default()).await
    })
    .await?;
    ensure_eq!(report.created.len(), 2, "the import created both rows");
    fail_at_every_write(&f, "organizations().create", async || {
        c.organizations()
            .create(a, full_org(&f, Some(org.id)).expect("input"))
            .await
    })
    .await?;
    // The feed is still gap-free.
    let events = f.events_after(0).await?;
    for (i, e) in events.iter().enumerate() {
        ensure_eq!(
            e.seq,
            i as u64 + 1,
            "event sequence is gap-free after faults"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 10. Import
// ---------------------------------------------------------------------------------------

/// Import with bad rows (bad email, empty name, an email repeated within the batch, an
/// email of an existing contact): without `partial` nothing is written and the report
/// names every bad row and field; with `partial` exactly the valid rows are written.
pub async fn import_batches(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let a = &f.admin;
    let existing = c
        .create(
            a,
            NewContact::named("Existing", "One").email("taken@example.com"),
        )
        .await
        .at("create")?;
    let rows = vec![
        NewContact::named("Valid", "Zero").email("v0@example.com"),
        NewContact::named("Bad", "Email").email("not-an-email"),
        NewContact::named(" ", ""),
        NewContact::named("Valid", "Three")
            .email("v3@example.com")
            .phone(PhoneInput::national("030 901820", "DE")),
        NewContact::named("Repeat", "Three").email("V3@EXAMPLE.COM"),
        NewContact::named("Taken", "Five").email("Taken@Example.com"),
        NewContact {
            custom: CustomValues::from([("tier".to_string(), CustomValue::Choice("gold".into()))]),
            ..NewContact::named("Valid", "Six")
        },
        NewContact {
            custom: CustomValues::from([("tier".to_string(), CustomValue::Choice("tin".into()))]),
            ..NewContact::named("Bad", "Custom")
        },
    ];
    let want_errors: BTreeSet<(usize, &str)> = [
        (1, "emails[0]"),
        (2, "first_name"),
        (4, "emails"),
        (5, "emails"),
        (7, "custom.tier"),
    ]
    .into();
    let check_report = |r: &ImportReport| -> CheckResult {
        let got: BTreeSet<(usize, &str)> =
            r.errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        ensure_eq!(got, want_errors, "the report names every bad row and field");
        let mut rows: Vec<usize> = r.errors.iter().map(|e| e.row).collect();
        let sorted = {
            let mut s = rows.clone();
            s.sort();
            s
        };
        ensure_eq!(rows, sorted, "errors are in row order");
        rows.dedup();
        Ok(())
    };
    let before = snapshot(&f).await?;
    let report = c
        .import(a, rows.clone(), ImportOptions::default())
        .await
        .at("import, not partial")?;
    check_report(&report)?;
    ensure!(
        !report.committed && report.created.is_empty(),
        "nothing written without partial: {report:?}"
    );
    same_snapshot(&before, &snapshot(&f).await?, "an import with bad rows")?;

    let seq0 = f.last_seq().await?;
    let report = c
        .import(
            a,
            rows.clone(),
            ImportOptions {
                partial: true,
                ..Default::default()
            },
        )
        .await
        .at("import, partial")?;
    check_report(&report)?;
    ensure!(report.committed, "a partial import commits");
    ensure_eq!(report.created.len(), 3, "three valid rows written");
    let listed = all_contacts(c, a, &Query::new()).await?;
    let mut names: Vec<(String, String)> = listed
        .iter()
        .filter(|x| x.id != existing.id)
        .map(|x| (x.first_name.clone(), x.last_name.clone()))
        .collect();
    names.sort();
    ensure_eq!(
        names,
        vec![
            ("Valid".to_string(), "Six".to_string()),
            ("Valid".to_string(), "Three".to_string()),
            ("Valid".to_string(), "Zero".to_string()),
        ],
        "exactly the valid rows exist"
    );
    for (id, row) in report.created.iter().zip([0usize, 3, 6]) {
        let got = c.get(a, *id).await.at("get imported")?;
        ensure_eq!(
            got.last_name,
            rows[row].last_name,
            "created ids follow row order"
        );
    }
    let events = f.events_after(seq0).await?;
    ensure_eq!(
        events.iter().map(|e| e.record.id).collect::<Vec<_>>(),
        report
            .created
            .iter()
            .map(|i| i.as_uuid())
            .collect::<Vec<_>>(),
        "one contact.created event per imported row"
    );
    // allow_duplicate_emails lets the repeated and the taken email through.
    let report = c
        .import(
            a,
            vec![
                NewContact::named("Dup", "A").email("taken@example.com"),
                NewContact::named("Dup", "B").email("TAKEN@example.com"),
            ],
            ImportOptions {
                partial: false,
                allow_duplicate_emails: true,
            },
        )
        .await
        .at("import allowing duplicates")?;
    ensure!(
        report.committed && report.created.len() == 2 && report.errors.is_empty(),
        "allow_duplicate_emails imports both: {report:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 11. Filters and paging against a model
// ---------------------------------------------------------------------------------------

/// A value in the Rust model of the query semantics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Mv {
    Null,
    Int(i64),
    Text(String),
    Uuid(Uuid),
}

fn mv_of(v: &FieldValue) -> Mv {
    match v {
        FieldValue::Null => Mv::Null,
        FieldValue::Int(i) => Mv::Int(*i),
        FieldValue::Text(s) => Mv::Text(s.clone()),
        FieldValue::Uuid(u) => Mv::Uuid(*u),
        other => Mv::Text(format!("{other:?}")),
    }
}

/// A built-in contact field as stored (value, folded text).
fn model_field(c: &Contact, name: &str) -> (Mv, Option<String>) {
    let text = |s: &str| (Mv::Text(s.to_owned()), Some(fold(s)));
    let opt = |s: Option<&str>| match s {
        Some(s) => text(s),
        None => (Mv::Null, None),
    };
    match name {
        "id" => (Mv::Uuid(c.id.as_uuid()), None),
        "first_name" => text(&c.first_name),
        "last_name" => text(&c.last_name),
        "name" => text(&fold(&format!("{} {}", c.first_name, c.last_name))),
        "email" => opt(c.primary_email()),
        "phone" => (
            c.phones
                .first()
                .map(|p| Mv::Text(p.number.clone()))
                .unwrap_or(Mv::Null),
            None,
        ),
        "job_title" => opt(c.job_title.as_deref()),
        "lifecycle_stage" => (Mv::Text(c.lifecycle_stage.as_str().into()), None),
        "team" => (
            c.team.map(|t| Mv::Uuid(t.as_uuid())).unwrap_or(Mv::Null),
            None,
        ),
        "owner" => (Mv::Uuid(c.owner.as_uuid()), None),
        other => panic!("the model does not know field {other}"),
    }
}

fn model_custom(c: &Contact, key: &str) -> Vec<Mv> {
    match c.custom.get(key) {
        None => vec![],
        Some(CustomValue::Number(n)) => vec![Mv::Int(*n)],
        Some(CustomValue::Choice(s)) | Some(CustomValue::Text(s)) => vec![Mv::Text(s.clone())],
        Some(other) => panic!("the model does not know custom value {other:?}"),
    }
}

/// SQL three-valued evaluation of a filter on a contact, per the documented semantics.
fn model_eval(f: &Filter, c: &Contact) -> Option<bool> {
    let custom = |name: &str| name.strip_prefix("custom.").map(|k| model_custom(c, k));
    match f {
        Filter::Cmp(name, op, v) => {
            let x = mv_of(v);
            let op = CmpOp::from(*op);
            if let Some(vals) = custom(name) {
                return Some(x != Mv::Null && vals.iter().any(|a| op.holds(a.cmp(&x))));
            }
            let (a, _) = model_field(c, name);
            if a == Mv::Null || x == Mv::Null {
                None
            } else {
                Some(op.holds(a.cmp(&x)))
            }
        }
        Filter::In(name, vs) => {
            let xs: Vec<Mv> = vs.iter().map(mv_of).collect();
            if let Some(vals) = custom(name) {
                return Some(vals.iter().any(|a| xs.contains(a)));
            }
            let (a, _) = model_field(c, name);
            if xs.is_empty() {
                Some(false)
            } else if a == Mv::Null {
                None
            } else if xs.contains(&a) {
                Some(true)
            } else if xs.contains(&Mv::Null) {
                None
            } else {
                Some(false)
            }
        }
        Filter::IsNull(name) => match custom(name) {
            Some(vals) => Some(vals.is_empty()),
            None => Some(model_field(c, name).0 == Mv::Null),
        },
        Filter::Contains(name, t) | Filter::StartsWith(name, t) => {
            let needle = fold(t);
            let starts = matches!(f, Filter::StartsWith(..));
            let test = |s: &str| {
                if starts {
                    s.starts_with(&needle)
                } else {
                    s.contains(&needle)
                }
            };
            if let Some(vals) = custom(name) {
                return Some(vals.iter().any(|v| match v {
                    Mv::Text(s) => test(&fold(s)),
                    _ => false,
                }));
            }
            model_field(c, name).1.map(|s| test(&s))
        }
        Filter::And(fs) => {
            let mut acc = Some(true);
            for f in fs {
                match model_eval(f, c) {
                    Some(false) => return Some(false),
                    None => acc = None,
                    Some(true) => {}
                }
            }
            acc
        }
        Filter::Or(fs) => {
            let mut acc = Some(false);
            for f in fs {
                match model_eval(f, c) {
                    Some(true) => return Some(true),
                    None => acc = None,
                    Some(false) => {}
                }
            }
            acc
        }
        Filter::Not(f) => model_eval(f, c).map(|b| !b),
    }
}

/// The sort key of a contact for a field: NULL sorts as the minimum of its type.
fn model_sort_key(c: &Contact, field: &str) -> Mv {
    if let Some(key) = field.strip_prefix("custom.") {
        return match (key, model_custom(c, key).into_iter().next()) {
            ("score", None) => Mv::Int(i64::MIN),
            (_, None) => Mv::Text(String::new()),
            (_, Some(v)) => v,
        };
    }
    match model_field(c, field).0 {
        Mv::Null if matches!(field, "team" | "organization") => Mv::Uuid(Uuid::nil()),
        Mv::Null => Mv::Text(String::new()),
        v => v,
    }
}

fn model_query(all: &[Contact], q: &Query) -> Vec<ContactId> {
    let mut hits: Vec<&Contact> = all
        .iter()
        .filter(|c| {
            q.filter
                .as_ref()
                .is_none_or(|f| model_eval(f, c) == Some(true))
        })
        .collect();
    hits.sort_by(|a, b| {
        for s in &q.sort {
            let o = model_sort_key(a, &s.field).cmp(&model_sort_key(b, &s.field));
            let o = if s.desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        a.id.cmp(&b.id)
    });
    hits.into_iter().map(|c| c.id).collect()
}

/// Contacts with varied fields for [`filters_and_paging`]: NULL job titles and emails,
/// mixed-case and unicode names, custom number and single-choice values, three teams.
async fn varied_contacts(f: &Fixture, n: usize) -> CheckResult<Vec<Contact>> {
    const FIRST: [&str; 12] = [
        "alice", "Alice", "ALICE", "Émile", "émile", "Zoë", "Øyvind", "İlker", "straße", "bob",
        "Bob", "Li",
    ];
    const LAST: [&str; 7] = ["Smith", "smith", "Özdemir", "özil", "Ünal", "O'Neil", "李"];
    const TITLES: [&str; 4] = ["Engineer", "engineer", "CEO", "Über-Chef"];
    let mut out = vec![];
    for i in 0..n {
        let mut input = NewContact::named(FIRST[i % FIRST.len()], LAST[(i * 5) % LAST.len()]);
        if i % 4 != 3 {
            let (user, domain) = [
                ("user", "example.org"),
                ("User", "Example.ORG"),
                ("USER", "example.com"),
            ][i % 3];
            input.emails.push(format!("{user}{i}@{domain}").into());
        }
        input.job_title = (i % 3 != 0).then(|| TITLES[i % TITLES.len()].to_string());
        input.lifecycle_stage = LifecycleStage::ALL[i % 4];
        input.team = [None, Some(f.team_x), Some(f.team_y)][i % 3];
        if i % 5 != 0 {
            input.custom.insert(
                "score".into(),
                CustomValue::Number(((i * 37) % 100) as i64 - 20),
            );
        }
        if i % 4 != 1 {
            input
                .custom
                .insert("tier".into(), CustomValue::Choice(TIERS[i % 3].into()));
        }
        out.push(f.contacts.create(&f.admin, input).await.at("create")?);
    }
    Ok(out)
}

/// Queries of [`filters_and_paging`].
fn model_queries(f: &Fixture) -> Vec<Query> {
    let q = Query::new;
    vec![
        q(),
        q().filter(Filter::eq("lifecycle_stage", "customer")),
        q().filter(Filter::ne("lifecycle_stage", "lead"))
            .sort_desc("name"),
        q().filter(Filter::is_in("team", [f.team_x, f.team_y]))
            .sort_asc("job_title"),
        q().filter(Filter::is_null("job_title")),
        q().filter(Filter::is_null("job_title").not())
            .sort_desc("job_title"),
        q().filter(Filter::eq("job_title", "Engineer")),
        q().filter(Filter::ne("job_title", "Engineer"))
            .sort_asc("job_title"),
        q().filter(Filter::eq("job_title", "Engineer").not()),
        q().filter(Filter::is_in("job_title", ["CEO", "engineer"])),
        q().filter(Filter::contains("name", "LI")),
        q().filter(Filter::starts_with("first_name", "É")),
        q().filter(Filter::starts_with("last_name", "ÖZ"))
            .sort_asc("first_name"),
        q().filter(Filter::contains("email", "EXAMPLE.ORG"))
            .sort_asc("email"),
        q().filter(Filter::contains("job_title", "über")),
        q().filter(Filter::starts_with("name", "İ")),
        q().filter(
            Filter::contains("name", "a")
                .and(Filter::eq("lifecycle_stage", "lead").or(Filter::is_null("job_title"))),
        ),
        q().filter(
            Filter::eq("team", f.team_x)
                .or(Filter::is_null("team"))
                .not(),
        ),
        q().filter(Filter::eq("email", "user0@example.org").not()),
        q().filter(Filter::gt("custom.score", 50i64))
            .sort_desc("custom.score"),
        q().filter(Filter::lte("custom.score", 10i64))
            .sort_asc("custom.score"),
        q().filter(Filter::eq("custom.tier", "gold")),
        q().filter(Filter::eq("custom.tier", "gold").not())
            .sort_desc("custom.tier"),
        q().filter(Filter::is_null("custom.tier"))
            .sort_asc("custom.score"),
        q().filter(Filter::is_in("custom.tier", ["gold", "silver"])),
        q().filter(Filter::ne("custom.score", 17i64).not()),
        q().sort_asc("custom.tier").sort_desc("last_name"),
        q().sort_asc("name"),
        q().sort_desc("email").sort_asc("first_name"),
        q().sort_asc("team").sort_desc("custom.score"),
        q().sort_desc("lifecycle_stage").sort_asc("custom.tier"),
    ]
}

/// About 40 contacts with varied fields; for a list of queries (eq, ne, in, is_null,
/// case-insensitive contains and starts_with, and/or/not, custom fields, sorts on
/// nullable and custom fields), the ids of all pages concatenated (page sizes 1, 3, 7 and
/// 50) equal the same query evaluated in Rust with the documented semantics: a
/// comparison with NULL is never true (`ne` and `not(eq)` exclude NULL rows), text
/// compares byte-wise, NULLs sort first ascending, custom filters mean "has a value
/// matching" and `not(custom ...)` includes records without the field.
pub async fn filters_and_paging(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let all = varied_contacts(&f, 40).await?;
    for (i, q) in model_queries(&f).into_iter().enumerate() {
        let want = model_query(&all, &q);
        for limit in [1, 3, 7, 50] {
            let q = q.clone().limit(limit);
            let got: Vec<ContactId> = all_contacts(&f.contacts, &f.admin, &q)
                .await?
                .iter()
                .map(|c| c.id)
                .collect();
            if got != want {
                let names = |ids: &[ContactId]| {
                    ids.iter()
                        .map(|id| {
                            let c = all.iter().find(|c| c.id == *id).expect("known");
                            format!("{} {}", c.first_name, c.last_name)
                        })
                        .collect::<Vec<_>>()
                };
                return Err(Failure::new(format!(
                    "query #{i} {:?} sort {:?} limit {limit}:\n  got:  {:?}\n  want: {:?}",
                    q.filter,
                    q.sort,
                    names(&got),
                    names(&want)
                )));
            }
        }
        let total = f
            .contacts
            .list(&f.admin, &q.clone().limit(2).with_total())
            .await
            .at("with_total")?
            .total;
        ensure_eq!(total, Some(want.len() as u64), "query #{i}: total");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 12. Change feed
// ---------------------------------------------------------------------------------------

/// The change feed returns contact.created/updated/deleted/restored (and organization
/// events) with gap-free sequence numbers in order, payloads carrying the record, and
/// paging by cursor gives the same events.
pub async fn change_feed(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let a = &f.admin;
    let seq0 = f.last_seq().await?;
    let x = c
        .create(a, NewContact::named("Feed", "Me").email("feed@example.com"))
        .await
        .at("create")?;
    let x2 = c
        .update(
            a,
            x.id,
            1,
            ContactPatch {
                last_name: Some("You".into()),
                ..Default::default()
            },
        )
        .await
        .at("update")?;
    let x3 = c.delete(a, x.id, 2).await.at("delete")?;
    let x4 = c.restore(a, x.id, 3).await.at("restore")?;
    let o = c
        .organizations()
        .create(&f.manager, NewOrganization::named("Feed Org"))
        .await
        .at("create org")?;
    let o2 = c
        .organizations()
        .update(
            &f.manager,
            o.id,
            1,
            OrganizationPatch {
                employee_count: Some(Some(3)),
                ..Default::default()
            },
        )
        .await
        .at("update org")?;
    let events = f.events_after(seq0).await?;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    ensure_eq!(
        kinds,
        vec![
            "contact.created",
            "contact.updated",
            "contact.deleted",
            "contact.restored",
            "organization.created",
            "organization.updated",
        ],
        "event kinds in order"
    );
    for (i, e) in events.iter().enumerate() {
        ensure_eq!(e.seq, seq0 + 1 + i as u64, "gap-free sequence");
        ensure_eq!(e.tenant, f.tenant, "event tenant");
    }
    for (e, want) in events[..4].iter().zip([&x, &x2, &x3, &x4]) {
        ensure_eq!(e.record, RecordRef::from(x.id), "event record");
        let payload: Contact = serde_json::from_value(e.payload.clone())
            .map_err(|err| Failure::new(format!("payload is a contact: {err}")))?;
        ensure_eq!(&payload, want, "{} payload carries the record", e.kind);
        ensure_eq!(e.actor, Some(a.actor().user), "event actor");
    }
    ensure!(
        events[1].changed.contains(&"last_name".to_string()),
        "the update names the changed field: {:?}",
        events[1].changed
    );
    let payload: Organization = serde_json::from_value(events[5].payload.clone())
        .map_err(|err| Failure::new(format!("payload is an organization: {err}")))?;
    ensure_eq!(payload, o2, "organization payload");
    // The whole feed from 0 is gap-free, and paging by 1 and 2 gives the same events.
    let whole = f.events_after(0).await?;
    for (i, e) in whole.iter().enumerate() {
        ensure_eq!(e.seq, i as u64 + 1, "the whole feed is gap-free");
    }
    for page in [1, 2, 5] {
        let mut got = vec![];
        let mut after = 0;
        loop {
            let batch = f
                .store
                .events_since(a, after, page)
                .await
                .at("events_since page")?;
            ensure!(batch.len() <= page as usize, "a page larger than its limit");
            let Some(last) = batch.last() else { break };
            after = last.seq;
            got.extend(batch.into_iter().map(|e| (e.seq, e.kind)));
        }
        ensure_eq!(
            got,
            whole
                .iter()
                .map(|e| (e.seq, e.kind.clone()))
                .collect::<Vec<_>>(),
            "paging by {page}"
        );
    }
    ensure!(
        f.store
            .events_since(a, u64::MAX / 2, 10)
            .await
            .at("after the end")?
            .is_empty(),
        "nothing after the end"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 13. Model-based property test
// ---------------------------------------------------------------------------------------

const MODEL_NAMES: [&str; 7] = ["Ada", "ada", "Émile", "", "  ", "Zoë", "Grace"];
const MODEL_EMAILS: [&str; 5] = ["a@x.io", "A@X.io", "b@x.io", "bad@", "c@y.org"];

/// A command of [`model_based`]. Targets index the contacts created so far (modulo their
/// number).
#[derive(Debug, Clone)]
pub enum ModelCmd {
    /// Create a contact with names and an email from small pools (so duplicates and
    /// invalid input happen).
    Create {
        /// First name index.
        first: usize,
        /// Last name index.
        last: usize,
        /// Email index, if any.
        email: Option<usize>,
        /// Allow a duplicate email.
        allow_dup: bool,
    },
    /// Rename a contact.
    Rename {
        /// Target.
        target: usize,
        /// First name index.
        first: usize,
        /// Use a stale version.
        stale: bool,
    },
    /// Change a contact's stage.
    Stage {
        /// Target.
        target: usize,
        /// Stage index.
        stage: usize,
        /// Use a stale version.
        stale: bool,
    },
    /// Change a contact's email.
    Email {
        /// Target.
        target: usize,
        /// Email index.
        email: usize,
        /// Use a stale version.
        stale: bool,
    },
    /// Delete a contact.
    Delete {
        /// Target.
        target: usize,
        /// Use a stale version.
        stale: bool,
    },
    /// Restore a contact.
    Restore {
        /// Target.
        target: usize,
        /// Use a stale version.
        stale: bool,
    },
}

fn model_cmd() -> impl Strategy<Value = ModelCmd> {
    let n = MODEL_NAMES.len();
    let e = MODEL_EMAILS.len();
    prop_oneof![
        3 => (0..n, 0..n, proptest::option::of(0..e), proptest::bool::weighted(0.2)).prop_map(
            |(first, last, email, allow_dup)| ModelCmd::Create { first, last, email, allow_dup }
        ),
        2 => (0..32usize, 0..n, proptest::bool::weighted(0.25))
            .prop_map(|(target, first, stale)| ModelCmd::Rename { target, first, stale }),
        2 => (0..32usize, 0..8usize, proptest::bool::weighted(0.25))
            .prop_map(|(target, stage, stale)| ModelCmd::Stage { target, stage, stale }),
        1 => (0..32usize, 0..e, proptest::bool::weighted(0.25))
            .prop_map(|(target, email, stale)| ModelCmd::Email { target, email, stale }),
        2 => (0..32usize, proptest::bool::weighted(0.2))
            .prop_map(|(target, stale)| ModelCmd::Delete { target, stale }),
        1 => (0..32usize, proptest::bool::weighted(0.2))
            .prop_map(|(target, stale)| ModelCmd::Restore { target, stale }),
    ]
}

/// One side of the model-based comparison: a fixture and the contacts created so far
/// with their last known versions.
struct Side {
    f: Fixture,
    ids: Vec<(ContactId, u64)>,
}

fn summary(c: &Contact) -> String {
    format!(
        "{:?} {:?} {:?} {} v{} deleted={}",
        c.first_name,
        c.last_name,
        c.emails.iter().map(|e| &e.address).collect::<Vec<_>>(),
        c.lifecycle_stage.as_str(),
        c.version,
        c.deleted_at.is_some()
    )
}

impl Side {
    async fn apply(&mut self, cmd: &ModelCmd) -> String {
        let c = &self.f.contacts;
        let ctx = &self.f.admin;
        let version = |known: u64, stale: bool| {
            if !stale {
                known
            } else if known > 1 {
                known - 1
            } else {
                known + 1
            }
        };
        let pick = |ids: &[(ContactId, u64)], t: usize| {
            (!ids.is_empty()).then(|| (t % ids.len(), ids[t % ids.len()]))
        };
        let r = match cmd {
            ModelCmd::Create {
                first,
                last,
                email,
                allow_dup,
            } => {
                let mut input = NewContact::named(MODEL_NAMES[*first], MODEL_NAMES[*last]);
                if let Some(e) = email {
                    input.emails.push(MODEL_EMAILS[*e].into());
                }
                input.allow_duplicate_email = *allow_dup;
                let r = c.create(ctx, input).await;
                if let Ok(x) = &r {
                    self.ids.push((x.id, x.version));
                }
                r.map(|x| (None, x))
            }
            ModelCmd::Rename { target, stale, .. }
            | ModelCmd::Stage { target, stale, .. }
            | ModelCmd::Email { target, stale, .. } => {
                let Some((i, (id, v))) = pick(&self.ids, *target) else {
                    return "skip".into();
                };
                let patch = match cmd {
                    ModelCmd::Rename { first, .. } => ContactPatch {
                        first_name: Some(MODEL_NAMES[*first].into()),
                        ..Default::default()
                    },
                    ModelCmd::Stage { stage, .. } => ContactPatch {
                        lifecycle_stage: Some(LifecycleStage::ALL[*stage]),
                        ..Default::default()
                    },
                    ModelCmd::Email { email, .. } => ContactPatch {
                        emails: Some(vec![MODEL_EMAILS[*email].into()]),
                        ..Default::default()
                    },
                    _ => unreachable!("matched above"),
                };
                c.update(ctx, id, version(v, *stale), patch)
                    .await
                    .map(|x| (Some(i), x))
            }
            ModelCmd::Delete { target, stale } | ModelCmd::Restore { target, stale } => {
                let Some((i, (id, v))) = pick(&self.ids, *target) else {
                    return "skip".into();
                };
                let r = if matches!(cmd, ModelCmd::Delete { .. }) {
                    c.delete(ctx, id, version(v, *stale)).await
                } else {
                    c.restore(ctx, id, version(v, *stale)).await
                };
                r.map(|x| (Some(i), x))
            }
        };
        match r {
            Ok((i, x)) => {
                if let Some(i) = i {
                    self.ids[i].1 = x.version;
                }
                format!("Ok({})", summary(&x))
            }
            Err(e) => error_variant(&e),
        }
    }

    async fn final_lists(&self) -> CheckResult<Vec<Vec<String>>> {
        let mut out = vec![];
        for q in [
            Query::new().include_deleted().sort_asc("name"),
            Query::new(),
            Query::new().filter(Filter::eq("lifecycle_stage", "customer")),
            Query::new()
                .filter(Filter::starts_with("name", "a"))
                .sort_desc("email"),
            Query::new()
                .filter(Filter::contains("email", "X.IO"))
                .limit(2),
            Query::new()
                .include_deleted()
                .filter(Filter::is_null("deleted_at").not()),
        ] {
            out.push(
                all_contacts(&self.f.contacts, &self.f.admin, &q)
                    .await?
                    .iter()
                    .map(summary)
                    .collect(),
            );
        }
        for e in MODEL_EMAILS {
            out.push(vec![format!(
                "{:?}",
                self.f
                    .contacts
                    .find_by_email(&self.f.admin, e)
                    .await
                    .map(|x| x.map(|x| summary(&x)))
                    .map_err(|e| error_variant(&e))
            )]);
        }
        Ok(out)
    }
}

/// Runs one command sequence on a fresh memory model and on `store`; every outcome and
/// the final lists must be the same.
pub async fn model_case(store: &Store, cmds: &[ModelCmd]) -> CheckResult {
    let model = memory_store().at("memory store")?;
    let mut m = Side {
        f: setup(&model).await?,
        ids: vec![],
    };
    let mut s = Side {
        f: setup(store).await?,
        ids: vec![],
    };
    for (i, cmd) in cmds.iter().enumerate() {
        let want = m.apply(cmd).await;
        let got = s.apply(cmd).await;
        ensure_eq!(
            got,
            want,
            "command #{i} {cmd:?}: outcome differs from the model"
        );
    }
    let want = m.final_lists().await?;
    let got = s.final_lists().await?;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        ensure_eq!(g, w, "final list #{i} differs from the model");
    }
    Ok(())
}

/// Cases and sequence length of [`model_based`].
#[derive(Debug, Clone, Copy)]
pub struct ModelConfig {
    /// Number of random command sequences.
    pub cases: u32,
    /// Longest sequence.
    pub max_len: usize,
    /// Most shrinking steps after a failure.
    pub max_shrink_iters: u32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            cases: 20,
            max_len: 25,
            max_shrink_iters: 64,
        }
    }
}

/// The model-based property test with [`ModelConfig::default`] (20 cases of at most 25
/// commands, modest so server backends stay fast).
///
/// Random sequences of commands (create with names and emails from a small pool, so
/// duplicates and invalid input happen; rename, change stage or email with the right or a
/// stale version; delete; restore) run on a fresh in-memory store (the model) and on the
/// store `factory` makes: every command's outcome (the record, or the error variant) is
/// the same, and so are the final lists for a few fixed queries (compared by names,
/// emails, stages and versions, since ids differ). Proptest is sync, so this owns a
/// multi-thread tokio runtime: call it from a plain `#[test]`, not from inside a runtime.
/// `factory` runs inside that runtime (once; each case uses fresh tenants).
pub fn model_based<F, Fut>(factory: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = crmkit_core::Result<Store>>,
{
    model_based_with(factory, ModelConfig::default())
}

/// [`model_based`] with an explicit configuration.
pub fn model_based_with<F, Fut>(factory: F, config: ModelConfig) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = crmkit_core::Result<Store>>,
{
    let strategy = proptest::collection::vec(model_cmd(), 1..=config.max_len.max(1));
    crate::support::run_property(
        "model-based test",
        factory,
        strategy,
        (config.cases, config.max_shrink_iters),
        |s, cmds| Box::pin(async move { model_case(s, &cmds).await }),
    )
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

/// A contact's email labels survive both paths alike: a labelled email created through
/// the generic record API (`{"address", "label"}` objects, one without a label) reads back with its label through the generic and the typed API, exactly as
/// the same emails created through the typed API; a generic patch replacing the emails
/// keeps the new labels; a label longer than 32 characters is a Validation error on
/// `emails[i].label` on both paths.
pub async fn email_labels(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = &f.contacts;
    let records = store.records();
    let tag = Uuid::now_v7().simple().to_string();
    let work = format!("work.{tag}@crmkit.test");
    let home = format!("home.{tag}@crmkit.test");
    let other = format!("other.{tag}@crmkit.test");
    let labelled = |addrs: &[(&str, Option<&str>)]| -> Vec<EmailAddress> {
        addrs
            .iter()
            .map(|(a, l)| EmailAddress {
                address: a.to_string(),
                label: l.map(str::to_owned),
            })
            .collect()
    };
    let body = serde_json::json!({
        "first_name": "Grace",
        "last_name": "Hopper",
        "emails": [{"address": work, "label": "work"}, {"address": home}],
    });
    let created = records
        .create(&f.admin, "contact", body)
        .await
        .at("generic create with a labelled email")?;
    let want = labelled(&[(&work, Some("work")), (&home, None)]);
    let id = ContactId::from_uuid(created.id().ok_or_else(|| Failure::new("no id"))?);
    ensure_eq!(
        c.get(&f.admin, id).await.at("typed get")?.emails,
        want,
        "a generic create's emails read through the typed API"
    );
    let got: Vec<EmailAddress> =
        serde_json::from_value(created.get("emails").cloned().unwrap_or_default())
            .map_err(|e| Failure::new(format!("emails of the generic record: {e}")))?;
    ensure_eq!(got, want, "a generic create's emails in the generic record");

    // The typed path gives the same emails for the same input.
    let typed = c
        .create(
            &f.admin,
            NewContact::named("Grace", "Typed")
                .email(EmailInput::labelled(format!("t.{work}"), "work"))
                .email(format!("t.{home}")),
        )
        .await
        .at("typed create with a labelled email")?;
    ensure_eq!(
        typed.emails,
        labelled(&[
            (&format!("t.{work}"), Some("work")),
            (&format!("t.{home}"), None)
        ]),
        "a typed create's emails"
    );

    // A generic patch replacing the emails keeps the new labels.
    let patched = records
        .patch(
            &f.admin,
            "contact",
            id.as_uuid(),
            created.version().unwrap_or_default(),
            serde_json::json!({"emails": [{"address": other, "label": "private"}]}),
        )
        .await
        .at("generic patch of the emails")?;
    ensure_eq!(
        c.get(&f.admin, id).await.at("typed get")?.emails,
        labelled(&[(&other, Some("private"))]),
        "a generic patch's emails"
    );

    // Too long a label: the same Validation error on both paths, nothing written.
    let long = "x".repeat(33);
    let generic = records
        .create(
            &f.admin,
            "contact",
            serde_json::json!({
                "first_name": "Long",
                "emails": [{"address": format!("long.{work}"), "label": long}],
            }),
        )
        .await;
    expect_validation(
        generic,
        "emails[0].label",
        "generic create, a 33-character label",
    )?;
    let typed = c
        .create(
            &f.admin,
            NewContact::named("Long", "")
                .email(EmailInput::labelled(format!("long.{work}"), long.clone())),
        )
        .await;
    expect_validation(
        typed,
        "emails[0].label",
        "typed create, a 33-character label",
    )?;
    ensure_eq!(
        c.find_by_email(&f.admin, &format!("long.{work}"))
            .await
            .at("find")?
            .map(|x| x.id),
        None,
        "no contact from the refused creates"
    );
    ensure_eq!(
        patched.version(),
        Some(c.get(&f.admin, id).await.at("get")?.version),
        "the patched version"
    );
    Ok(())
}

suite_checks! {
    /// Every async check of this module by name, in a sensible order. [`atomicity`] injects
    /// faults into the backend: run it alone (not concurrently with other checks on the same
    /// store). [`model_based`] is not in the list (it is sync and owns its runtime).
    names: contacts_check_names,
    checks: [
        crud_round_trip,
        bad_input,
        duplicate_email,
        hidden_holders,
        unique_race,
        lost_update_default,
        tenant_isolation,
        record_access,
        no_tenant_no_context,
        atomicity,
        import_batches,
        filters_and_paging,
        change_feed,
        email_labels,
    ],
}

/// Runs every check of [`checks`] one after the other on `store` and reports every
/// failure (not just the first). Needs a multi-thread runtime.
pub async fn run_all(store: &Store) -> CheckResult {
    run_checks(store, checks(), "contacts").await
}
