//! Conformance checks of leads and lead conversion (`crmkit_pipeline::lead`) on any backend.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a store composed with core,
//! [`crmkit_contacts::ContactsModule`] and [`crmkit_pipeline::PipelineModule`] (see
//! [`modules`]). Each check makes its own fresh random tenant(s) with [`setup`] (the
//! contacts fixture plus lead custom fields), so checks can share one database. [`checks`]
//! lists them by name; [`run_all`] runs them one after the other.
//!
//! [`conversion_atomicity`] injects faults into the backend, which affects every commit of
//! that backend: do not run it concurrently with other checks on the same store.
//! [`concurrent_conversion`] spawns tokio tasks: run the suite on a multi-thread runtime.

use crate::check::{
    At, expect_denied, expect_error, expect_not_found, expect_validation, run_checks,
    validation_reasons,
};
use crate::contacts::{UnreachableContacts, all_contacts, all_orgs, every_record};
use crate::pipeline_deals::deals_with_default;
use crate::support::all_pages;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crmkit_contacts::{
    Contact, ContactsModule, NewContact, NewOrganization, Organization, PhoneInput,
};
use crmkit_core::lookup::{self, LookupKind};
use crmkit_core::{
    CampaignId, ContactId, Ctx, CustomFieldDef, CustomFieldType, CustomValue, CustomValues, Error,
    Filter, LeadId, Modules, OrganizationId, Query, RecordKind, RecordRef, Store, TeamId, UserId,
};
use crmkit_pipeline::PipelineModule;
use crmkit_pipeline::campaign::{CampaignKind, Campaigns, NewCampaign};
use crmkit_pipeline::deal::{DealRole, Deals, Source};
use crmkit_pipeline::lead::{
    ContactChoice, ConversionPlan, ConvertDeal, ConvertLead, Lead, LeadPatch, LeadStatus, Leads,
    NewLead, OrganizationChoice, Outcome,
};

pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};

// ---------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------

#[track_caller]
fn expect_transition<T: fmt::Debug>(r: crmkit_core::Result<T>, what: &str) -> CheckResult {
    expect_error(
        r,
        what,
        "InvalidTransition of the lead",
        |e| matches!(e, Error::InvalidTransition { record, .. } if record.kind == RecordKind::LEAD),
    )
}

#[track_caller]
fn expect_conflict<T: fmt::Debug>(r: crmkit_core::Result<T>, what: &str) -> CheckResult {
    expect_error(r, what, "Conflict", |e| matches!(e, Error::Conflict { .. }))
}

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// The modules the checks need: core, contacts and pipeline.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(PipelineModule)
        .build()
}

extended_fixture! {
    /// A fresh tenant: the contacts fixture (users `admin`, `manager`, `rep` and `rep2` in
    /// team X, `rep_y` in team Y, `readonly` in team X) plus the leads API and lead custom
    /// fields `region` (single choice emea/amer/apac) and `budget_k` (number), and a campaign
    /// owned by the admin for leads to refer to.
    Fixture {
        /// The leads API.
        leads: Leads,
        /// A campaign of the admin (visible to the admin and the manager only).
        campaign: CampaignId,
    }
}

/// Makes a fresh tenant with the users, teams and custom fields of [`Fixture`].
pub async fn setup(store: &Store) -> CheckResult<Fixture> {
    let base = crate::contacts::setup(store).await?;
    let fields = store.custom_fields();
    for (key, ty) in [
        (
            "region",
            CustomFieldType::SingleChoice {
                choices: vec!["emea".into(), "amer".into(), "apac".into()],
            },
        ),
        ("budget_k", CustomFieldType::Number),
    ] {
        fields
            .define(
                &base.admin,
                CustomFieldDef {
                    id: crmkit_core::CustomFieldId::new(),
                    record_kind: RecordKind::LEAD,
                    key: key.into(),
                    label: key.to_uppercase(),
                    ty,
                    required: false,
                },
            )
            .await
            .at("define lead custom field")?;
    }
    let campaign = Campaigns::new(store)
        .at("Campaigns::new")?
        .create(
            &base.admin,
            NewCampaign::named("Lead sources", CampaignKind::Event),
        )
        .await
        .at("fixture campaign")?
        .id;
    Ok(Fixture {
        leads: Leads::new(store).at("Leads::new")?,
        base,
        campaign,
    })
}

fn user(ctx: &Ctx) -> UserId {
    ctx.actor().user
}

/// A lead input using every field.
fn full_lead(f: &Fixture, i: usize) -> NewLead {
    let mut custom = CustomValues::new();
    custom.insert("region".into(), CustomValue::Choice("emea".into()));
    custom.insert("budget_k".into(), CustomValue::Number(250));
    NewLead {
        first_name: "Robert'); DROP TABLE pipeline_lead;--".into(),
        last_name: format!("O'Brien émoji 🎉 \u{202E}{i}"),
        job_title: Some("Head of /* ops */".into()),
        company: Some(format!("Acme {i} ' OR 1=1--")),
        domain: Some(format!("https://www.Acme{i}.example/about")),
        website: Some(format!("https://acme{i}.example/")),
        employee_count: Some(120),
        emails: vec![
            format!("Bob.OBrien+{i}@Acme{i}.example"),
            format!("bob{i}@home.example"),
        ],
        phones: vec![
            PhoneInput::new("+49 30 901820"),
            PhoneInput::national("089 1234567", "de"),
        ],
        source: Source::WebForm,
        status: LeadStatus::Contacted,
        disqualified_reason: None,
        owner: Some(user(&f.rep)),
        team: Some(f.team_x),
        campaign: Some(f.campaign),
        score: 42,
        custom,
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn all_leads(l: &Leads, ctx: &Ctx, q: &Query) -> CheckResult<Vec<Lead>> {
    all_pages(q, "list leads", |q| async move { l.list(ctx, &q).await }).await
}

/// What a failed command must leave unchanged: the contacts snapshot and every lead.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    base: crate::contacts::Snapshot,
    leads: Vec<Lead>,
}

async fn snapshot(f: &Fixture) -> CheckResult<Snapshot> {
    Ok(Snapshot {
        base: crate::contacts::snapshot(f).await?,
        leads: all_leads(&f.leads, &f.admin, &every_record()).await?,
    })
}

#[track_caller]
fn same_snapshot(before: &Snapshot, after: &Snapshot, what: &str) -> CheckResult {
    let base = crate::contacts::same_snapshot(&before.base, &after.base, what);
    if before.leads == after.leads {
        return base;
    }
    let also = base.err().map(|f| format!("; {f}")).unwrap_or_default();
    Err(Failure::new(format!(
        "{what}: a failed command changed state: leads changed{also}"
    )))
}

/// Runs `cmd`, which must fail, and checks that it wrote nothing; returns its error.
async fn fails_clean<T: fmt::Debug>(
    f: &Fixture,
    what: &str,
    cmd: impl AsyncFn() -> crmkit_core::Result<T>,
) -> CheckResult<Error> {
    let before = snapshot(f).await?;
    let r = cmd().await;
    let after = snapshot(f).await?;
    same_snapshot(&before, &after, what)?;
    match r {
        Ok(v) => Err(Failure::new(format!(
            "{what}: expected an error, got {v:?}"
        ))),
        Err(e) => Ok(e),
    }
}

async fn lookup_has(f: &Fixture, kind: LookupKind, value: &str, id: LeadId) -> CheckResult<bool> {
    let refs = lookup::find(
        f.store.backend(),
        f.tenant,
        kind,
        value,
        Some(&RecordKind::LEAD),
        100,
    )
    .await
    .at("lookup find")?;
    Ok(refs.contains(&RecordRef::from(id)))
}

// ---------------------------------------------------------------------------------------
// 1. CRUD
// ---------------------------------------------------------------------------------------

/// A lead with every field round-trips byte-exact (SQL metacharacters, emoji, RTL
/// override); emails are kept as given and domains normalised like organizations'; its
/// emails and phones are in the core lookup index (kind `lead`); update bumps the version
/// and writes an audit entry per changed field and one event; a no-op update writes
/// nothing; a stale version is a Conflict; delete hides (and leaves the lookup index),
/// `include_deleted` shows, restore brings back.
pub async fn crud_round_trip(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let input = full_lead(&f, 1);
    let seq0 = f.last_seq().await?;
    let lead = l.create(a, input.clone()).await.at("create lead")?;
    ensure_eq!(lead.version, 1, "first version");
    ensure_eq!(lead.first_name, input.first_name, "first name byte-exact");
    ensure_eq!(lead.last_name, input.last_name, "last name byte-exact");
    ensure_eq!(
        lead.domain.as_deref(),
        Some("acme1.example"),
        "normalised domain"
    );
    ensure_eq!(
        lead.emails
            .iter()
            .map(|e| e.address.as_str())
            .collect::<Vec<_>>(),
        vec!["Bob.OBrien+1@Acme1.example", "bob1@home.example"],
        "emails as given"
    );
    ensure_eq!(
        lead.phones
            .iter()
            .map(|p| p.number.as_str())
            .collect::<Vec<_>>(),
        vec!["+4930901820", "+49891234567"],
        "phones in E.164"
    );
    ensure_eq!(lead.status, LeadStatus::Contacted, "status");
    ensure_eq!(lead.score, 42, "score");
    ensure_eq!(lead.campaign, input.campaign, "campaign stored as given");
    ensure_eq!(lead.custom, input.custom, "custom values");
    ensure_eq!(
        l.get(a, lead.id).await.at("get")?,
        lead,
        "get equals create"
    );
    ensure_eq!(
        l.get(&f.rep, lead.id).await.at("get as owner")?,
        lead,
        "owner sees it"
    );
    ensure!(
        lookup_has(&f, LookupKind::Phone, "+49891234567", lead.id).await?,
        "the lead's phone is in the lookup index"
    );
    ensure!(
        lookup_has(&f, LookupKind::Email, "bob.obrien+1@acme1.example", lead.id).await?,
        "the lead's email key is in the lookup index"
    );
    let events = f.events_after(seq0).await?;
    ensure_eq!(
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.record.clone()))
            .collect::<Vec<_>>(),
        vec![("lead.created", RecordRef::from(lead.id))],
        "one created event"
    );

    // Update.
    let patch = LeadPatch {
        first_name: Some("Roberta".into()),
        company: Some(None),
        emails: Some(vec!["new@acme1.example".into()]),
        phones: Some(vec![]),
        source: Some(Source::Referral),
        custom: BTreeMap::from([
            ("region".to_string(), None),
            ("budget_k".to_string(), Some(CustomValue::Number(7))),
        ]),
        ..Default::default()
    };
    let seq1 = f.last_seq().await?;
    let updated = l
        .update(a, lead.id, 1, patch.clone())
        .await
        .at("update lead")?;
    ensure_eq!(updated.version, 2, "version bumped");
    ensure_eq!(updated.first_name, "Roberta", "first name changed");
    ensure_eq!(updated.company, None, "company cleared");
    ensure_eq!(updated.source, Source::Referral, "source");
    ensure_eq!(
        updated.custom,
        CustomValues::from([("budget_k".to_string(), CustomValue::Number(7))]),
        "custom patched"
    );
    ensure_eq!(l.get(a, lead.id).await.at("get")?, updated, "stored update");
    ensure!(
        !lookup_has(&f, LookupKind::Phone, "+49891234567", lead.id).await?,
        "old phone left the lookup"
    );
    ensure!(
        lookup_has(&f, LookupKind::Email, "new@acme1.example", lead.id).await?,
        "new email in the lookup"
    );
    let audit = l.audit(a, lead.id).await.at("audit")?;
    let fields: BTreeSet<&str> = audit
        .iter()
        .skip(1)
        .map(|e| e.change.field.as_str())
        .collect();
    ensure_eq!(
        fields,
        BTreeSet::from([
            "first_name",
            "company",
            "emails",
            "phones",
            "source",
            "custom"
        ]),
        "an audit entry per changed field"
    );
    ensure_eq!(audit[0].change.field, "*", "the creation entry");
    let events = f.events_after(seq1).await?;
    ensure_eq!(events.len(), 1, "one event per update");
    ensure_eq!(events[0].kind, "lead.updated", "update event");
    // No-op and stale updates.
    let same = l.update(a, lead.id, 2, patch).await.at("no-op update")?;
    ensure_eq!(same.version, 2, "a no-op update keeps the version");
    ensure_eq!(
        f.last_seq().await?,
        seq1 + 1,
        "a no-op update writes no event"
    );
    expect_conflict(
        l.update(a, lead.id, 1, LeadPatch::default().last_name("X"))
            .await,
        "stale update",
    )?;

    // Delete and restore.
    let deleted = l.delete(a, lead.id, 2).await.at("delete")?;
    ensure!(deleted.deleted_at.is_some(), "deleted_at set");
    expect_not_found(l.get(a, lead.id).await, "get a deleted lead")?;
    ensure!(
        all_leads(l, a, &Query::new())
            .await?
            .iter()
            .all(|x| x.id != lead.id),
        "a deleted lead is not listed"
    );
    ensure!(
        all_leads(l, a, &Query::new().include_deleted())
            .await?
            .iter()
            .any(|x| x.id == lead.id),
        "include_deleted lists it"
    );
    ensure!(
        !lookup_has(&f, LookupKind::Email, "new@acme1.example", lead.id).await?,
        "a deleted lead leaves the lookup"
    );
    expect_not_found(l.delete(a, lead.id, 3).await, "delete twice")?;
    let restored = l.restore(a, lead.id, 3).await.at("restore")?;
    ensure_eq!(restored.deleted_at, None, "restored");
    ensure_eq!(restored.version, 4, "restore bumps the version");
    ensure!(
        lookup_has(&f, LookupKind::Email, "new@acme1.example", lead.id).await?,
        "a restored lead is back in the lookup"
    );
    ensure_eq!(l.get(a, lead.id).await.at("get")?, restored, "get restored");
    let kinds: Vec<String> = f
        .events_after(seq0)
        .await?
        .into_iter()
        .map(|e| e.kind)
        .collect();
    ensure_eq!(
        kinds,
        vec![
            "lead.created",
            "lead.updated",
            "lead.deleted",
            "lead.restored"
        ],
        "the lead's events"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Bad input
// ---------------------------------------------------------------------------------------

/// Every bad field of a create or update is a Validation error naming it (all of them at
/// once), and writes nothing; a Rep giving a lead to someone else is PermissionDenied; a
/// ReadOnly user cannot write; unknown or SQL-laden filter and sort fields are Validation
/// errors.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let ok = || NewLead::named("Ada", "Lovelace").email("ada@example.com");
    let cases: Vec<(&str, NewLead)> = vec![
        ("first_name", NewLead::named("", "")),
        ("first_name", NewLead::named(" \t", "")),
        ("first_name", NewLead::named("a\0b", "x")),
        ("last_name", NewLead::named("A", "x".repeat(101))),
        (
            "emails[0]",
            ok().email("x").tap(|n| {
                n.emails.remove(0);
            }),
        ),
        ("emails[1]", ok().email("ADA@example.com")),
        ("emails[1]", ok().email("trailing@dot.com.")),
        (
            "emails",
            NewLead {
                emails: (0..11).map(|i| format!("e{i}@x.example")).collect(),
                ..ok()
            },
        ),
        ("phones[0]", ok().phone(PhoneInput::new("030 901820"))),
        ("phones[0]", ok().phone(PhoneInput::new("not a number"))),
        (
            "phones[0]",
            ok().phone(PhoneInput::national("030 901820", "zz';--")),
        ),
        (
            "job_title",
            NewLead {
                job_title: Some("x".repeat(201)),
                ..ok()
            },
        ),
        (
            "company",
            NewLead {
                company: Some("  ".into()),
                ..ok()
            },
        ),
        (
            "company",
            NewLead {
                company: Some("a\0".into()),
                ..ok()
            },
        ),
        (
            "domain",
            NewLead {
                domain: Some("not a domain".into()),
                ..ok()
            },
        ),
        (
            "domain",
            NewLead {
                domain: Some("x'; DROP TABLE y;--.com".into()),
                ..ok()
            },
        ),
        (
            "website",
            NewLead {
                website: Some("javascript:alert(1)".into()),
                ..ok()
            },
        ),
        (
            "employee_count",
            NewLead {
                employee_count: Some(-1),
                ..ok()
            },
        ),
        (
            "status",
            NewLead {
                status: LeadStatus::Converted,
                ..ok()
            },
        ),
        (
            "disqualified_reason",
            NewLead {
                status: LeadStatus::Disqualified,
                ..ok()
            },
        ),
        (
            "disqualified_reason",
            NewLead {
                status: LeadStatus::Disqualified,
                disqualified_reason: Some(" ".into()),
                ..ok()
            },
        ),
        (
            "disqualified_reason",
            NewLead {
                status: LeadStatus::New,
                disqualified_reason: Some("why".into()),
                ..ok()
            },
        ),
        (
            "custom.nope",
            NewLead {
                custom: CustomValues::from([("nope".to_string(), CustomValue::Number(1))]),
                ..ok()
            },
        ),
        (
            "custom.region",
            NewLead {
                custom: CustomValues::from([(
                    "region".to_string(),
                    CustomValue::Choice("mars".into()),
                )]),
                ..ok()
            },
        ),
        (
            "owner",
            NewLead {
                owner: Some(UserId::new()),
                ..ok()
            },
        ),
        (
            "team",
            NewLead {
                team: Some(TeamId::new()),
                ..ok()
            },
        ),
    ];
    for (field, input) in cases {
        let e = fails_clean(&f, &format!("create with bad {field}"), async || {
            l.create(a, input.clone()).await
        })
        .await?;
        expect_validation::<()>(Err(e), field, &format!("create with bad {field}"))?;
    }
    // Every bad field at once.
    let all_bad = NewLead {
        first_name: String::new(),
        last_name: String::new(),
        emails: vec!["nope".into()],
        phones: vec![PhoneInput::new("12")],
        domain: Some("-bad-.com".into()),
        website: Some("ftp://x".into()),
        employee_count: Some(-5),
        status: LeadStatus::Disqualified,
        ..Default::default()
    };
    let e = fails_clean(&f, "create with every field bad", async || {
        l.create(a, all_bad.clone()).await
    })
    .await?;
    let Error::Validation(v) = e else {
        return Err(Failure::new(format!("expected Validation, got {e:?}")));
    };
    for field in [
        "first_name",
        "emails[0]",
        "phones[0]",
        "domain",
        "website",
        "employee_count",
        "disqualified_reason",
    ] {
        ensure!(
            v.has(field),
            "every bad field is named: {field} missing in {v}"
        );
    }

    // Update with bad fields.
    let lead = l.create(a, ok()).await.at("create")?;
    let bad_patches: Vec<(&str, LeadPatch)> = vec![
        (
            "first_name",
            LeadPatch {
                first_name: Some(String::new()),
                last_name: Some(String::new()),
                ..Default::default()
            },
        ),
        ("emails[0]", LeadPatch::default().emails(vec!["@".into()])),
        (
            "phones[0]",
            LeadPatch::default().phones(vec![PhoneInput::new("+1 555")]),
        ),
        (
            "domain",
            LeadPatch {
                domain: Some(Some("localhost".into())),
                ..Default::default()
            },
        ),
        (
            "employee_count",
            LeadPatch {
                employee_count: Some(Some(-1)),
                ..Default::default()
            },
        ),
        (
            "custom.budget_k",
            LeadPatch {
                custom: BTreeMap::from([(
                    "budget_k".to_string(),
                    Some(CustomValue::Text("x".into())),
                )]),
                ..Default::default()
            },
        ),
        ("owner", LeadPatch::default().owner(UserId::new())),
    ];
    for (field, patch) in bad_patches {
        let e = fails_clean(&f, &format!("update with bad {field}"), async || {
            l.update(a, lead.id, lead.version, patch.clone()).await
        })
        .await?;
        expect_validation::<()>(Err(e), field, &format!("update with bad {field}"))?;
    }
    // Rights.
    let e = fails_clean(&f, "rep gives a lead away", async || {
        l.create(
            &f.rep,
            NewLead {
                owner: Some(user(&f.rep2)),
                ..ok()
            },
        )
        .await
    })
    .await?;
    expect_denied::<()>(Err(e), "a rep creating a lead for someone else")?;
    let e = fails_clean(&f, "rep uses another team", async || {
        l.create(
            &f.rep,
            NewLead {
                team: Some(f.team_y),
                ..ok()
            },
        )
        .await
    })
    .await?;
    expect_denied::<()>(Err(e), "a rep creating a lead in another team")?;
    let e = fails_clean(&f, "readonly creates", async || {
        l.create(&f.readonly, ok()).await
    })
    .await?;
    expect_denied::<()>(Err(e), "a read-only user creating a lead")?;
    // Queries.
    for bad in [
        "nope",
        "name; DROP TABLE pipeline_lead",
        "custom.nope",
        "owner_id",
    ] {
        expect_validation(
            l.list(a, &Query::new().filter(Filter::eq(bad, "x"))).await,
            &format!("filter.{bad}"),
            "unknown filter field",
        )?;
        expect_validation(
            l.list(a, &Query::new().sort_asc(bad)).await,
            &format!("sort.{bad}"),
            "unknown sort field",
        )?;
    }
    expect_validation(
        l.list(a, &Query::new().filter(Filter::eq("status", "won")))
            .await,
        "filter.status",
        "unknown status value",
    )?;
    expect_validation(l.list(a, &Query::new().limit(0)).await, "limit", "limit 0")?;
    expect_not_found(l.get(a, LeadId::new()).await, "a lead that does not exist")?;
    Ok(())
}

/// `tap` for building inputs inline.
trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl<T> Tap for T {}

// ---------------------------------------------------------------------------------------
// 3. Status rules and score
// ---------------------------------------------------------------------------------------

/// Status transitions follow the documented rules: open statuses move freely;
/// disqualified needs a reason (and reopening clears it); converted cannot be set
/// directly; a converted lead's status, score and fields cannot change; the same status
/// is a no-op; each change writes one `lead.status_changed` event and audit entries; the
/// score can be any integer, with a `lead.score_changed` event.
pub async fn status_rules(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let lead = l
        .create(a, NewLead::named("Stat", "Us").email("status@example.com"))
        .await
        .at("create")?;
    ensure_eq!(lead.status, LeadStatus::New, "default status");
    let mut cur = lead.clone();
    for s in [
        LeadStatus::Contacted,
        LeadStatus::Nurturing,
        LeadStatus::Qualified,
        LeadStatus::New,
        LeadStatus::Qualified,
    ] {
        let seq = f.last_seq().await?;
        let next = l
            .set_status(a, cur.id, cur.version, s, None)
            .await
            .at("open transition")?;
        ensure_eq!(next.status, s, "status set");
        ensure_eq!(next.version, cur.version + 1, "version bumped");
        let ev = f.events_after(seq).await?;
        ensure_eq!(
            ev.iter()
                .map(|e| (e.kind.as_str(), e.changed.clone()))
                .collect::<Vec<_>>(),
            vec![("lead.status_changed", vec!["status".to_string()])],
            "one status event"
        );
        cur = next;
    }
    let same = l
        .set_status(a, cur.id, cur.version, LeadStatus::Qualified, None)
        .await
        .at("same status")?;
    ensure_eq!(same.version, cur.version, "the same status changes nothing");
    let e = fails_clean(&f, "disqualify without reason", async || {
        l.set_status(a, cur.id, cur.version, LeadStatus::Disqualified, None)
            .await
    })
    .await?;
    expect_validation::<()>(Err(e), "disqualified_reason", "disqualify without a reason")?;
    let e = fails_clean(&f, "reason with an open status", async || {
        l.set_status(
            a,
            cur.id,
            cur.version,
            LeadStatus::Contacted,
            Some("x".into()),
        )
        .await
    })
    .await?;
    expect_validation::<()>(Err(e), "disqualified_reason", "a reason for an open status")?;
    let e = fails_clean(&f, "set converted", async || {
        l.set_status(a, cur.id, cur.version, LeadStatus::Converted, None)
            .await
    })
    .await?;
    expect_transition::<()>(Err(e), "setting converted directly")?;
    expect_conflict(
        l.set_status(a, cur.id, cur.version - 1, LeadStatus::New, None)
            .await,
        "stale status change",
    )?;
    let dq = l
        .set_status(
            a,
            cur.id,
            cur.version,
            LeadStatus::Disqualified,
            Some("no budget".into()),
        )
        .await
        .at("disqualify")?;
    ensure_eq!(
        dq.disqualified_reason.as_deref(),
        Some("no budget"),
        "reason kept"
    );
    let audit = l.audit(a, cur.id).await.at("audit")?;
    ensure!(
        audit.iter().any(|e| e.change.field == "disqualified_reason"
            && e.change.new.as_deref() == Some("\"no budget\"")),
        "the reason is audited"
    );
    let reopened = l
        .set_status(a, dq.id, dq.version, LeadStatus::Nurturing, None)
        .await
        .at("reopen")?;
    ensure_eq!(
        reopened.disqualified_reason,
        None,
        "reopening clears the reason"
    );

    // Score.
    let seq = f.last_seq().await?;
    let scored = l
        .set_score(a, reopened.id, reopened.version, -7)
        .await
        .at("set score")?;
    ensure_eq!(scored.score, -7, "score");
    let scored = l
        .set_score(a, scored.id, scored.version, i64::MAX)
        .await
        .at("set max score")?;
    ensure_eq!(
        l.get(a, lead.id).await.at("get")?.score,
        i64::MAX,
        "extreme score stored"
    );
    ensure_eq!(
        f.events_after(seq)
            .await?
            .into_iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        vec!["lead.score_changed", "lead.score_changed"],
        "score events"
    );
    expect_conflict(l.set_score(a, lead.id, 1, 3).await, "stale score")?;
    expect_denied(
        l.set_score(&f.readonly, lead.id, scored.version, 3).await,
        "read-only score",
    )?;

    // Converted is final.
    let conv = l
        .convert(a, scored.id, scored.version, ConvertLead::default())
        .await
        .at("convert")?;
    let v = conv.lead.version;
    for s in LeadStatus::ALL {
        let e = fails_clean(&f, "status of a converted lead", async || {
            l.set_status(a, lead.id, v, s, None).await
        })
        .await?;
        expect_transition::<()>(Err(e), &format!("converted -> {}", s.as_str()))?;
    }
    let e = fails_clean(&f, "score of a converted lead", async || {
        l.set_score(a, lead.id, v, 1).await
    })
    .await?;
    expect_transition::<()>(Err(e), "score of a converted lead")?;
    let e = fails_clean(&f, "update a converted lead", async || {
        l.update(a, lead.id, v, LeadPatch::default().first_name("X"))
            .await
    })
    .await?;
    expect_transition::<()>(Err(e), "update of a converted lead")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Lists
// ---------------------------------------------------------------------------------------

/// Filters on every listed field (name, email ignoring case, company, status, source,
/// owner, team, campaign, score, created_at, updated_at, custom fields) and sorts with
/// keyset paging return exactly what the leads say, with exact totals.
pub async fn filters_and_paging(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let campaign = f.campaign;
    let sources = [
        Source::WebForm,
        Source::Referral,
        Source::Event,
        Source::Partner,
    ];
    let mut made = vec![];
    for i in 0..12usize {
        let mut input = NewLead::named(format!("Person{i:02}"), "Lister")
            .email(format!("Person{i}@List.example"));
        input.company = (i % 3 != 0).then(|| format!("Company {}", i % 4));
        input.source = sources[i % 4];
        input.status = [
            LeadStatus::New,
            LeadStatus::Contacted,
            LeadStatus::Qualified,
        ][i % 3];
        input.owner = Some(if i % 2 == 0 {
            user(&f.rep)
        } else {
            user(&f.rep_y)
        });
        input.team = if i % 2 == 0 {
            Some(f.team_x)
        } else {
            Some(f.team_y)
        };
        input.campaign = (i % 4 == 1).then_some(campaign);
        input.score = (i as i64 * 7) % 10 - 3;
        if i % 5 == 0 {
            input
                .custom
                .insert("region".into(), CustomValue::Choice("apac".into()));
        }
        made.push(l.create(a, input).await.at("create")?);
    }
    let ids = |v: &[Lead]| v.iter().map(|x| x.id).collect::<BTreeSet<_>>();
    let want = |p: &dyn Fn(&Lead) -> bool| {
        made.iter()
            .filter(|x| p(x))
            .map(|x| x.id)
            .collect::<BTreeSet<_>>()
    };
    let t0 = made[0].created_at;
    let cases: Vec<(&str, Filter, BTreeSet<LeadId>)> = vec![
        (
            "name",
            Filter::starts_with("name", "PERSON0"),
            want(&|x| x.first_name.starts_with("Person0")),
        ),
        (
            "email",
            Filter::eq("email", "Person3@List.example"),
            want(&|x| x.first_name == "Person03"),
        ),
        (
            "email ignoring case",
            Filter::starts_with("email", "PERSON3@list.EX"),
            want(&|x| x.first_name == "Person03"),
        ),
        (
            "company",
            Filter::contains("company", "company 1"),
            want(&|x| x.company.as_deref() == Some("Company 1")),
        ),
        (
            "company null",
            Filter::is_null("company"),
            want(&|x| x.company.is_none()),
        ),
        (
            "status",
            Filter::eq("status", "qualified"),
            want(&|x| x.status == LeadStatus::Qualified),
        ),
        (
            "source",
            Filter::is_in("source", ["referral", "partner"]),
            want(&|x| matches!(x.source, Source::Referral | Source::Partner)),
        ),
        (
            "owner",
            Filter::eq("owner", user(&f.rep)),
            want(&|x| x.owner == user(&f.rep)),
        ),
        (
            "team",
            Filter::eq("team", f.team_y),
            want(&|x| x.team == Some(f.team_y)),
        ),
        (
            "campaign",
            Filter::eq("campaign", campaign),
            want(&|x| x.campaign == Some(campaign)),
        ),
        ("score", Filter::gt("score", 2i64), want(&|x| x.score > 2)),
        ("created_at", Filter::gte("created_at", t0), want(&|_| true)),
        ("updated_at", Filter::lt("updated_at", t0), want(&|_| false)),
        (
            "custom",
            Filter::eq("custom.region", "apac"),
            want(&|x| x.custom.contains_key("region")),
        ),
    ];
    for (what, filter, expected) in cases {
        let q = Query::new().filter(filter).with_total();
        let page = l.list(a, &q).await.at(what)?;
        ensure_eq!(page.total, Some(expected.len() as u64), "total of {what}");
        let got = all_leads(l, a, &q.clone().limit(2)).await?;
        ensure_eq!(ids(&got), expected, "filter on {what}");
    }
    // Sorted by score descending, then id, two per page.
    let got = all_leads(l, a, &Query::new().sort_desc("score").limit(2)).await?;
    let mut expected = made.clone();
    expected.sort_by(|x, y| y.score.cmp(&x.score).then(x.id.cmp(&y.id)));
    ensure_eq!(
        got.iter().map(|x| x.id).collect::<Vec<_>>(),
        expected.iter().map(|x| x.id).collect::<Vec<_>>(),
        "sorted by score desc with keyset paging"
    );
    let got = all_leads(
        l,
        a,
        &Query::new().sort_asc("company").sort_desc("name").limit(5),
    )
    .await?;
    ensure_eq!(
        got.len(),
        made.len(),
        "sort by a nullable field pages through everything"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Access
// ---------------------------------------------------------------------------------------

fn oracle_sees(ctx: &Ctx, l: &Lead) -> bool {
    let actor = ctx.actor();
    if actor.has(crmkit_core::Role::Admin) || actor.has(crmkit_core::Role::Manager) {
        return true;
    }
    l.owner == actor.user || l.team.is_some_and(|t| actor.teams.contains(&t))
}

/// T3: every actor's get and list return exactly what the owner/team/role oracle says;
/// update, status, score, delete, convert and dry run of a lead the actor cannot see are
/// NotFound and write nothing; a ReadOnly user sees its team's leads but cannot change
/// them; a Rep converting a teammate's lead owns what it creates.
pub async fn record_access(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let owners: Vec<(UserId, Option<TeamId>)> = vec![
        (user(&f.rep), None),
        (user(&f.rep), Some(f.team_x)),
        (user(&f.rep2), Some(f.team_x)),
        (user(&f.rep2), None),
        (user(&f.rep_y), Some(f.team_y)),
        (user(&f.manager), None),
        (user(&f.admin), Some(f.team_x)),
        (user(&f.admin), Some(f.team_y)),
    ];
    let mut made = vec![];
    for (i, (owner, team)) in owners.into_iter().enumerate() {
        let mut input =
            NewLead::named(format!("Access{i}"), "T3").email(format!("access{i}@t3.example"));
        input.owner = Some(owner);
        input.team = team;
        input.company = Some(format!("T3 Co {i}"));
        made.push(l.create(a, input).await.at("create")?);
    }
    for (name, ctx) in f.actors() {
        let listed: BTreeSet<LeadId> = all_leads(l, ctx, &Query::new().limit(3))
            .await?
            .iter()
            .map(|x| x.id)
            .collect();
        let expected: BTreeSet<LeadId> = made
            .iter()
            .filter(|x| oracle_sees(ctx, x))
            .map(|x| x.id)
            .collect();
        ensure_eq!(listed, expected, "{name} lists what the oracle says");
        let total = l
            .list(ctx, &Query::new().with_total())
            .await
            .at("count")?
            .total;
        ensure_eq!(total, Some(expected.len() as u64), "{name}'s count");
        for x in &made {
            let got = l.get(ctx, x.id).await;
            if oracle_sees(ctx, x) {
                ensure!(got.is_ok(), "{name} gets a visible lead: {got:?}");
                ensure!(
                    l.audit(ctx, x.id).await.is_ok(),
                    "{name} reads a visible audit"
                );
            } else {
                expect_not_found(got, &format!("{name} gets an invisible lead"))?;
                expect_not_found(l.audit(ctx, x.id).await, "audit of an invisible lead")?;
                let e = fails_clean(&f, "writes on an invisible lead", async || {
                    let mut out = vec![];
                    out.push(
                        l.update(
                            ctx,
                            x.id,
                            x.version,
                            LeadPatch::default().first_name("Hijack"),
                        )
                        .await
                        .map(|_| ()),
                    );
                    out.push(
                        l.set_status(ctx, x.id, x.version, LeadStatus::Contacted, None)
                            .await
                            .map(|_| ()),
                    );
                    out.push(l.set_score(ctx, x.id, x.version, 99).await.map(|_| ()));
                    out.push(l.delete(ctx, x.id, x.version).await.map(|_| ()));
                    out.push(
                        l.convert_dry_run(ctx, x.id, &ConvertLead::default())
                            .await
                            .map(|_| ()),
                    );
                    out.push(
                        l.convert(ctx, x.id, x.version, ConvertLead::default())
                            .await
                            .map(|_| ()),
                    );
                    for r in out {
                        match r {
                            Err(Error::NotFound { .. }) => {}
                            Err(Error::PermissionDenied(_)) if name == "readonly" => {}
                            other => {
                                return Err(Error::storage(format!(
                                    "{name}: a write on an invisible lead gave {other:?}"
                                )));
                            }
                        }
                    }
                    Err::<(), _>(Error::NotFound {
                        kind: RecordKind::LEAD,
                        id: x.id.to_string(),
                    })
                })
                .await?;
                expect_not_found::<()>(Err(e), "writes on an invisible lead")?;
            }
        }
    }
    // ReadOnly sees team X leads but cannot change them.
    let team_x_lead = &made[2];
    ensure!(
        l.get(&f.readonly, team_x_lead.id).await.is_ok(),
        "readonly sees team X"
    );
    let e = fails_clean(&f, "readonly writes", async || {
        l.update(
            &f.readonly,
            team_x_lead.id,
            1,
            LeadPatch::default().first_name("No"),
        )
        .await
    })
    .await?;
    expect_denied::<()>(Err(e), "readonly update")?;
    let e = fails_clean(&f, "readonly converts", async || {
        l.convert(&f.readonly, team_x_lead.id, 1, ConvertLead::default())
            .await
    })
    .await?;
    expect_denied::<()>(Err(e), "readonly convert")?;
    // A rep may not give a visible lead to someone else.
    let e = fails_clean(&f, "rep reassigns", async || {
        l.update(
            &f.rep,
            team_x_lead.id,
            1,
            LeadPatch::default().owner(user(&f.rep_y)),
        )
        .await
    })
    .await?;
    expect_denied::<()>(Err(e), "rep reassigning a lead")?;
    // A rep converts a teammate's lead: the records are the rep's, in team X.
    let conv = l
        .convert(&f.rep, team_x_lead.id, 1, ConvertLead::default())
        .await
        .at("rep converts a teammate's lead")?;
    ensure_eq!(
        conv.contact.record().owner,
        user(&f.rep),
        "contact owned by the converting rep"
    );
    ensure_eq!(
        conv.contact.record().team,
        Some(f.team_x),
        "contact in the lead's team"
    );
    let org = conv
        .organization
        .as_ref()
        .ok_or_else(|| Failure::new("an organization"))?;
    ensure_eq!(
        org.record().owner,
        user(&f.rep),
        "organization owned by the converting rep"
    );
    ensure_eq!(conv.lead.owner, user(&f.rep2), "the lead keeps its owner");
    // An admin converting keeps the lead's owner.
    let x = &made[4];
    let conv = l
        .convert(a, x.id, x.version, ConvertLead::default())
        .await
        .at("admin converts")?;
    ensure_eq!(
        conv.contact.record().owner,
        x.owner,
        "admin conversion keeps the lead's owner"
    );
    ensure_eq!(conv.contact.record().team, x.team, "and its team");
    Ok(())
}

/// T1: two tenants with colliding data (same emails, domains and names): every read and
/// write of tenant A's API on tenant B's lead is NotFound; lists and conversions of A
/// never see or link B's records.
pub async fn tenant_isolation(store: &Store) -> CheckResult {
    let fa = setup(store).await?;
    let fb = setup(store).await?;
    let input = |f: &Fixture| {
        NewLead::named("Same", "Name")
            .email("same@collide.example")
            .company("Collide", Some("collide.example"))
            .tap(|n| n.owner = Some(user(&f.admin)))
    };
    let la = fa
        .leads
        .create(&fa.admin, input(&fa))
        .await
        .at("create in A")?;
    let lb = fb
        .leads
        .create(&fb.admin, input(&fb))
        .await
        .at("create in B")?;
    let cb = fb
        .contacts
        .create(
            &fb.admin,
            NewContact::named("Same", "Name").email("same@collide.example"),
        )
        .await
        .at("contact in B")?;
    let ob = fb
        .contacts
        .organizations()
        .create(
            &fb.admin,
            NewOrganization {
                domain: Some("collide.example".into()),
                ..NewOrganization::named("Collide")
            },
        )
        .await
        .at("org in B")?;
    let a = &fa.admin;
    let l = &fa.leads;
    let before_b = snapshot(&fb).await?;
    expect_not_found(l.get(a, lb.id).await, "get B's lead")?;
    expect_not_found(l.audit(a, lb.id).await, "audit of B's lead")?;
    expect_not_found(
        l.update(a, lb.id, 1, LeadPatch::default().first_name("X"))
            .await,
        "update B's lead",
    )?;
    expect_not_found(
        l.set_status(a, lb.id, 1, LeadStatus::Contacted, None).await,
        "status of B's lead",
    )?;
    expect_not_found(l.set_score(a, lb.id, 1, 5).await, "score of B's lead")?;
    expect_not_found(l.delete(a, lb.id, 1).await, "delete B's lead")?;
    expect_not_found(l.restore(a, lb.id, 1).await, "restore B's lead")?;
    expect_not_found(
        l.convert_dry_run(a, lb.id, &ConvertLead::default()).await,
        "dry run of B's lead",
    )?;
    expect_not_found(
        l.convert(a, lb.id, 1, ConvertLead::default()).await,
        "convert B's lead",
    )?;
    // Linking B's records from A is refused.
    expect_validation(
        l.convert_dry_run(
            a,
            la.id,
            &ConvertLead {
                contact: ContactChoice::Link(cb.id),
                ..Default::default()
            },
        )
        .await,
        "contact",
        "link B's contact",
    )?;
    expect_validation(
        l.convert_dry_run(
            a,
            la.id,
            &ConvertLead {
                organization: OrganizationChoice::Link(ob.id),
                ..Default::default()
            },
        )
        .await,
        "organization",
        "link B's organization",
    )?;
    let listed = all_leads(
        l,
        a,
        &Query::new().filter(Filter::eq("email", "same@collide.example")),
    )
    .await?;
    ensure_eq!(
        listed.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![la.id],
        "A lists only its lead"
    );
    // A's conversion creates its own contact and organization, never B's.
    let conv = l
        .convert(a, la.id, 1, ConvertLead::default())
        .await
        .at("convert in A")?;
    ensure!(
        conv.contact.is_created(),
        "A's conversion creates a contact (B's is not seen)"
    );
    ensure!(
        conv.organization.as_ref().is_some_and(Outcome::is_created),
        "A's conversion creates an organization"
    );
    ensure!(conv.contact.record().id != cb.id, "not B's contact");
    let after_b = snapshot(&fb).await?;
    same_snapshot(&before_b, &after_b, "tenant B after tenant A's calls")?;
    ensure_eq!(
        fb.leads.get(&fb.admin, lb.id).await.at("B's lead")?,
        lb,
        "B's lead unchanged"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Conversion
// ---------------------------------------------------------------------------------------

/// Conversion of a lead with no matching contact or organization creates both, sets the
/// contact's organization, marks the lead converted with links, and writes the events
/// `organization.created`, `contact.created`, `lead.converted` (consecutive) and audit
/// entries for each record.
pub async fn conversion_creates(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let input = full_lead(&f, 7);
    let lead = l.create(a, input.clone()).await.at("create")?;
    let seq = f.last_seq().await?;
    let conv = l
        .convert(a, lead.id, 1, ConvertLead::default())
        .await
        .at("convert")?;
    let Outcome::Created(contact) = &conv.contact else {
        return Err(Failure::new(format!(
            "expected a created contact: {:?}",
            conv.contact
        )));
    };
    let Some(Outcome::Created(org)) = &conv.organization else {
        return Err(Failure::new(format!(
            "expected a created org: {:?}",
            conv.organization
        )));
    };
    ensure_eq!(conv.deal, None, "no deal asked for");
    ensure_eq!(contact.first_name, lead.first_name, "contact first name");
    ensure_eq!(contact.last_name, lead.last_name, "contact last name");
    ensure_eq!(contact.emails, lead.emails, "contact emails");
    ensure_eq!(
        contact.phones.iter().map(|p| &p.number).collect::<Vec<_>>(),
        lead.phones.iter().map(|p| &p.number).collect::<Vec<_>>(),
        "contact phones"
    );
    ensure_eq!(contact.job_title, lead.job_title, "job title");
    ensure_eq!(
        contact.organization,
        Some(org.id),
        "the new contact works for the new org"
    );
    ensure_eq!(contact.owner, lead.owner, "contact owner");
    ensure_eq!(
        org.name,
        input.company.clone().unwrap_or_default(),
        "org name"
    );
    ensure_eq!(org.domain, lead.domain, "org domain");
    ensure_eq!(org.website, lead.website, "org website");
    ensure_eq!(org.employee_count, lead.employee_count, "org size");
    // Stored.
    ensure_eq!(
        &f.contacts.get(a, contact.id).await.at("get contact")?,
        contact,
        "stored contact"
    );
    ensure_eq!(
        &f.contacts
            .organizations()
            .get(a, org.id)
            .await
            .at("get org")?,
        org,
        "stored org"
    );
    ensure_eq!(
        f.contacts
            .find_by_email(a, "BOB.OBRIEN+7@ACME7.EXAMPLE")
            .await
            .at("find")?
            .map(|c| c.id),
        Some(contact.id),
        "the contact's email is claimed"
    );
    let stored = l.get(a, lead.id).await.at("get lead")?;
    ensure_eq!(stored, conv.lead, "stored lead");
    ensure_eq!(stored.status, LeadStatus::Converted, "converted");
    ensure_eq!(stored.version, 2, "one version bump");
    ensure_eq!(stored.converted_contact, Some(contact.id), "contact link");
    ensure_eq!(stored.converted_organization, Some(org.id), "org link");
    ensure!(stored.converted_at.is_some(), "converted_at");
    let converted = all_leads(
        l,
        a,
        &Query::new().filter(Filter::eq("status", "converted")),
    )
    .await?;
    ensure_eq!(converted.len(), 1, "filterable by status");
    // Events and audit.
    let events = f.events_after(seq).await?;
    ensure_eq!(
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.record.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("organization.created", RecordRef::from(org.id)),
            ("contact.created", RecordRef::from(contact.id)),
            ("lead.converted", RecordRef::from(lead.id)),
        ],
        "the conversion's events"
    );
    ensure!(
        events.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "consecutive sequence numbers"
    );
    ensure_eq!(
        events[1].payload["organization"],
        serde_json::json!(org.id),
        "the contact event carries the organization"
    );
    let lead_audit = l.audit(a, lead.id).await.at("lead audit")?;
    let fields: BTreeSet<&str> = lead_audit
        .iter()
        .skip(1)
        .map(|e| e.change.field.as_str())
        .collect();
    ensure_eq!(
        fields,
        BTreeSet::from([
            "status",
            "converted_contact",
            "converted_organization",
            "converted_at"
        ]),
        "lead audit entries of the conversion"
    );
    let contact_audit = f.contacts.audit(a, contact.id).await.at("contact audit")?;
    ensure_eq!(contact_audit.len(), 1, "one contact audit entry");
    let snap: Contact =
        serde_json::from_str(contact_audit[0].change.new.as_deref().unwrap_or("null"))
            .map_err(|e| Failure::new(format!("contact audit snapshot: {e}")))?;
    ensure_eq!(&snap, contact, "the contact's audit snapshot");
    ensure_eq!(
        f.contacts
            .organizations()
            .audit(a, org.id)
            .await
            .at("org audit")?
            .len(),
        1,
        "one organization audit entry"
    );
    // A lead without a company converts into a contact only.
    let bare = l
        .create(
            a,
            NewLead::named("Solo", "Person").email("solo@person.example"),
        )
        .await
        .at("create")?;
    let conv = l
        .convert(a, bare.id, 1, ConvertLead::default())
        .await
        .at("convert bare")?;
    ensure_eq!(conv.organization, None, "no company, no organization");
    ensure_eq!(conv.lead.converted_organization, None, "no org link");
    ensure_eq!(
        conv.contact.record().organization,
        None,
        "contact without org"
    );
    Ok(())
}

/// Conversion links instead of creating: the contact holding the lead's email (any case)
/// and the organization with the lead's domain (normalised) are linked and left unchanged;
/// explicit links and `OrganizationChoice::None` work; `ContactChoice::Create` over a
/// taken email is a Duplicate naming the holder and writes nothing; bad links and
/// `OrganizationChoice::Create` without a company are Validation errors.
pub async fn conversion_links(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let existing = f
        .contacts
        .create(
            a,
            NewContact::named("Grace", "Existing").email("GRACE@Example.com"),
        )
        .await
        .at("existing contact")?;
    let org = f
        .contacts
        .organizations()
        .create(
            a,
            NewOrganization {
                domain: Some("example.com".into()),
                ..NewOrganization::named("Example Inc")
            },
        )
        .await
        .at("existing org")?;
    let lead = l
        .create(
            a,
            NewLead::named("Grace", "Hopper")
                .email("grace@EXAMPLE.com")
                .company(
                    "Example (new name)",
                    Some("https://www.Example.com/contact"),
                ),
        )
        .await
        .at("create")?;
    let contacts_before = all_contacts(&f.contacts, a, &every_record()).await?.len();
    let orgs_before = all_orgs(&f.contacts, a, &every_record()).await?.len();
    let seq = f.last_seq().await?;
    let conv = l
        .convert(a, lead.id, 1, ConvertLead::default())
        .await
        .at("convert")?;
    ensure_eq!(
        conv.contact,
        Outcome::Linked(existing.clone()),
        "the existing contact is linked"
    );
    ensure_eq!(
        conv.organization,
        Some(Outcome::Linked(org.clone())),
        "the existing org is linked"
    );
    ensure_eq!(
        all_contacts(&f.contacts, a, &every_record()).await?.len(),
        contacts_before,
        "no new contact"
    );
    ensure_eq!(
        all_orgs(&f.contacts, a, &every_record()).await?.len(),
        orgs_before,
        "no new org"
    );
    ensure_eq!(
        f.contacts.get(a, existing.id).await.at("get")?,
        existing,
        "the linked contact is unchanged"
    );
    ensure_eq!(
        conv.lead.converted_contact,
        Some(existing.id),
        "link to the contact"
    );
    ensure_eq!(
        conv.lead.converted_organization,
        Some(org.id),
        "link to the org"
    );
    ensure_eq!(
        f.events_after(seq)
            .await?
            .into_iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        vec!["lead.converted"],
        "only the lead changes"
    );

    // Explicit choices.
    let other = f.person(a, "Other", "Person").await?;
    let lead2 = l
        .create(
            a,
            NewLead::named("Grace", "Again")
                .email("grace@example.com")
                .company("Example", Some("example.com")),
        )
        .await
        .at("create 2")?;
    let conv = l
        .convert(
            a,
            lead2.id,
            1,
            ConvertLead {
                contact: ContactChoice::Link(other.id),
                organization: OrganizationChoice::None,
                ..Default::default()
            },
        )
        .await
        .at("convert with explicit links")?;
    ensure_eq!(
        conv.contact,
        Outcome::Linked(other.clone()),
        "explicit contact"
    );
    ensure_eq!(conv.organization, None, "no organization");

    // A taken email with ContactChoice::Create.
    let lead3 = l
        .create(
            a,
            NewLead::named("Grace", "Third").email("Grace@example.COM"),
        )
        .await
        .at("create 3")?;
    let e = fails_clean(&f, "create a contact over a taken email", async || {
        l.convert(
            a,
            lead3.id,
            1,
            ConvertLead {
                contact: ContactChoice::Create,
                ..Default::default()
            },
        )
        .await
    })
    .await?;
    match e {
        Error::Duplicate {
            kind,
            existing: Some(r),
            ..
        } if kind == RecordKind::CONTACT && r == RecordRef::from(existing.id) => {}
        other => {
            return Err(Failure::new(format!(
                "expected Duplicate naming the holder, got {other:?}"
            )));
        }
    }
    // Bad links.
    for (field, input) in [
        (
            "contact",
            ConvertLead {
                contact: ContactChoice::Link(ContactId::new()),
                ..Default::default()
            },
        ),
        (
            "organization",
            ConvertLead {
                organization: OrganizationChoice::Link(OrganizationId::new()),
                ..Default::default()
            },
        ),
        (
            "organization",
            ConvertLead {
                organization: OrganizationChoice::Create,
                ..Default::default()
            },
        ),
    ] {
        let e = fails_clean(&f, &format!("bad {field}"), async || {
            l.convert(a, lead3.id, 1, input.clone()).await
        })
        .await?;
        expect_validation::<()>(Err(e), field, &format!("convert with a bad {field}"))?;
        expect_validation(
            l.convert_dry_run(a, lead3.id, &input).await,
            field,
            "dry run with a bad link",
        )?;
    }
    // A deleted contact is not linked: a new one is created.
    let gone = f
        .contacts
        .create(
            a,
            NewContact::named("Gone", "Soon").email("gone@example.net"),
        )
        .await
        .at("contact to delete")?;
    f.contacts
        .delete(a, gone.id, gone.version)
        .await
        .at("delete contact")?;
    let lead4 = l
        .create(a, NewLead::named("Gone", "Lead").email("gone@example.net"))
        .await
        .at("create 4")?;
    let conv = l
        .convert(a, lead4.id, 1, ConvertLead::default())
        .await
        .at("convert 4")?;
    ensure!(conv.contact.is_created(), "a deleted contact is not linked");
    Ok(())
}

/// Compares a plan with what a conversion did: the same links, and created records equal
/// but for ids and timestamps.
fn same_plan(
    plan: &ConversionPlan,
    lead: &Lead,
    contact: &Outcome<Contact>,
    org: &Option<Outcome<Organization>>,
) -> CheckResult {
    let norm_contact = |c: &Outcome<Contact>| match c {
        Outcome::Linked(c) => Outcome::Linked(c.clone()),
        Outcome::Created(c) => Outcome::Created(Contact {
            id: ContactId::from_uuid(uuid::Uuid::nil()),
            organization: c
                .organization
                .map(|_| OrganizationId::from_uuid(uuid::Uuid::nil())),
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            ..c.clone()
        }),
    };
    let norm_org = |o: &Option<Outcome<Organization>>| {
        o.as_ref().map(|o| match o {
            Outcome::Linked(o) => Outcome::Linked(o.clone()),
            Outcome::Created(o) => Outcome::Created(Organization {
                id: OrganizationId::from_uuid(uuid::Uuid::nil()),
                created_at: chrono::DateTime::UNIX_EPOCH,
                updated_at: chrono::DateTime::UNIX_EPOCH,
                ..o.clone()
            }),
        })
    };
    let norm_lead = |l: &Lead| Lead {
        converted_contact: None,
        converted_organization: None,
        converted_deal: None,
        converted_at: None,
        updated_at: chrono::DateTime::UNIX_EPOCH,
        ..l.clone()
    };
    ensure_eq!(
        norm_contact(&plan.contact),
        norm_contact(contact),
        "planned contact"
    );
    ensure_eq!(
        norm_org(&plan.organization),
        norm_org(org),
        "planned organization"
    );
    ensure_eq!(norm_lead(&plan.lead), norm_lead(lead), "planned lead");
    ensure_eq!(
        plan.lead.converted_organization.is_some(),
        lead.converted_organization.is_some(),
        "org link planned"
    );
    if let Outcome::Linked(c) = &plan.contact {
        ensure_eq!(
            plan.lead.converted_contact,
            Some(c.id),
            "planned contact link"
        );
    }
    Ok(())
}

/// The dry run returns what conversion then does (which contact and organization it links
/// or creates, the lead as it becomes) and writes nothing, for a lead that links and one
/// that creates; it refuses what conversion refuses.
pub async fn dry_run(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let existing = f
        .contacts
        .create(
            a,
            NewContact::named("Dry", "Existing").email("dry@run.example"),
        )
        .await
        .at("existing contact")?;
    let linking = l
        .create(
            a,
            NewLead::named("Dry", "Run")
                .email("DRY@run.example")
                .company("Dry Run Co", Some("run.example")),
        )
        .await
        .at("create linking lead")?;
    let creating = l
        .create(a, full_lead(&f, 3))
        .await
        .at("create creating lead")?;
    for (what, lead) in [("linking", &linking), ("creating", &creating)] {
        let before = snapshot(&f).await?;
        let plan = l
            .convert_dry_run(a, lead.id, &ConvertLead::default())
            .await
            .at("dry run")?;
        let again = l
            .convert_dry_run(a, lead.id, &ConvertLead::default())
            .await
            .at("dry run again")?;
        let after = snapshot(&f).await?;
        same_snapshot(&before, &after, &format!("dry run of the {what} lead"))?;
        let conv = l
            .convert(a, lead.id, lead.version, ConvertLead::default())
            .await
            .at("convert")?;
        same_plan(&plan, &conv.lead, &conv.contact, &conv.organization)?;
        same_plan(&again, &conv.lead, &conv.contact, &conv.organization)?;
        ensure_eq!(plan.deal, None, "no deal planned");
        if what == "linking" {
            ensure_eq!(
                plan.contact,
                Outcome::Linked(existing.clone()),
                "the plan says it will merge into the existing contact"
            );
        } else {
            ensure!(
                plan.contact.is_created(),
                "the plan says it will create a contact"
            );
        }
    }
    let e = fails_clean(&f, "dry run of a converted lead", async || {
        l.convert_dry_run(a, creating.id, &ConvertLead::default())
            .await
    })
    .await?;
    expect_transition::<()>(Err(e), "dry run of a converted lead")?;
    Ok(())
}

/// Converting twice is an InvalidTransition (with the current version too) and writes
/// nothing; a disqualified lead converts only with `allow_disqualified` (the dry run
/// agrees), which clears its reason.
pub async fn conversion_transitions(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let lead = l
        .create(
            a,
            NewLead::named("Twice", "Converted").email("twice@example.com"),
        )
        .await
        .at("create")?;
    let conv = l
        .convert(a, lead.id, 1, ConvertLead::default())
        .await
        .at("convert")?;
    for v in [1, conv.lead.version] {
        let e = fails_clean(&f, "convert twice", async || {
            l.convert(a, lead.id, v, ConvertLead::default()).await
        })
        .await?;
        expect_transition::<()>(Err(e), &format!("converting twice (version {v})"))?;
    }
    let dq = l
        .create(
            a,
            NewLead {
                status: LeadStatus::Disqualified,
                disqualified_reason: Some("student".into()),
                ..NewLead::named("Dis", "Qualified")
                    .email("dq@example.com")
                    .company("DQ", None)
            },
        )
        .await
        .at("create disqualified")?;
    let e = fails_clean(&f, "convert a disqualified lead", async || {
        l.convert(a, dq.id, 1, ConvertLead::default()).await
    })
    .await?;
    expect_transition::<()>(
        Err(e),
        "converting a disqualified lead without the override",
    )?;
    expect_transition(
        l.convert_dry_run(a, dq.id, &ConvertLead::default()).await,
        "dry run of a disqualified lead",
    )?;
    let allow = ConvertLead {
        allow_disqualified: true,
        ..Default::default()
    };
    let plan = l
        .convert_dry_run(a, dq.id, &allow)
        .await
        .at("dry run with override")?;
    let conv = l
        .convert(a, dq.id, 1, allow)
        .await
        .at("convert with override")?;
    same_plan(&plan, &conv.lead, &conv.contact, &conv.organization)?;
    ensure_eq!(conv.lead.status, LeadStatus::Converted, "converted");
    ensure_eq!(conv.lead.disqualified_reason, None, "reason cleared");
    ensure!(conv.organization.is_some(), "company converted");
    // A deleted lead cannot be converted.
    let del = l
        .create(a, NewLead::named("Del", "Eted"))
        .await
        .at("create")?;
    l.delete(a, del.id, 1).await.at("delete")?;
    expect_not_found(
        l.convert(a, del.id, 2, ConvertLead::default()).await,
        "convert a deleted lead",
    )?;
    // A stale version is a Conflict.
    let stale = l
        .create(a, NewLead::named("Sta", "Le"))
        .await
        .at("create")?;
    let stale = l.set_score(a, stale.id, 1, 5).await.at("score")?;
    let e = fails_clean(&f, "stale conversion", async || {
        l.convert(a, stale.id, 1, ConvertLead::default()).await
    })
    .await?;
    expect_conflict::<()>(Err(e), "converting with a stale version")?;
    Ok(())
}

/// A deal input in the tenant's default pipeline (its second stage, "Proposal", which
/// requires an amount), with an amount.
async fn deal_input(f: &Fixture, title: &str) -> CheckResult<ConvertDeal> {
    let (_, p) = deals_with_default(&f.store, &f.admin).await?;
    let stage = p
        .stages
        .get(1)
        .ok_or_else(|| Failure::new("a second stage"))?;
    Ok(ConvertDeal {
        stage: Some(stage.id),
        amount: Some(crmkit_core::Money::parse("12500.50", "EUR").at("money")?),
        expected_close: chrono::NaiveDate::from_ymd_opt(2030, 2, 28),
        next_step: Some("send the proposal".into()),
        ..ConvertDeal::new(title, p.id)
    })
}

/// Conversion with a deal creates it in the chosen pipeline and stage with the new
/// organization and the contact as decision maker, the lead's source and campaign; the
/// dry run plans the same deal; the lead links it; `deal.created` is among the
/// conversion's events; a bad deal (unknown pipeline, a stage's required field missing,
/// a negative amount) is a Validation error naming `deal.<field>` and writes nothing.
pub async fn conversion_with_deal(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let deals = Deals::new(store).at("Deals::new")?;
    let input = full_lead(&f, 4);
    let lead = l.create(a, input.clone()).await.at("create")?;
    let deal = deal_input(&f, "Acme 4 rollout").await?;
    let convert = ConvertLead {
        deal: Some(deal.clone()),
        ..Default::default()
    };
    // Bad deals first.
    for (field, bad) in [
        (
            "deal.pipeline",
            ConvertDeal {
                pipeline: crmkit_core::PipelineId::new(),
                stage: None,
                ..deal.clone()
            },
        ),
        (
            "deal.amount",
            ConvertDeal {
                amount: None,
                ..deal.clone()
            },
        ),
        (
            "deal.amount",
            ConvertDeal {
                amount: Some(crmkit_core::Money::parse("-1", "EUR").at("money")?),
                ..deal.clone()
            },
        ),
        (
            "deal.title",
            ConvertDeal {
                title: " ".into(),
                ..deal.clone()
            },
        ),
    ] {
        let c = ConvertLead {
            deal: Some(bad),
            ..Default::default()
        };
        let e = fails_clean(&f, &format!("convert with a bad {field}"), async || {
            l.convert(a, lead.id, 1, c.clone()).await
        })
        .await?;
        expect_validation::<()>(Err(e), field, &format!("convert with a bad {field}"))?;
        expect_validation(
            l.convert_dry_run(a, lead.id, &c).await,
            field,
            &format!("dry run with a bad {field}"),
        )?;
    }
    let plan = l
        .convert_dry_run(a, lead.id, &convert)
        .await
        .at("dry run")?;
    let seq = f.last_seq().await?;
    let conv = l
        .convert(a, lead.id, 1, convert)
        .await
        .at("convert with a deal")?;
    same_plan(&plan, &conv.lead, &conv.contact, &conv.organization)?;
    let d = conv.deal.clone().ok_or_else(|| Failure::new("a deal"))?;
    let pd = plan
        .deal
        .clone()
        .ok_or_else(|| Failure::new("a planned deal"))?;
    ensure_eq!(
        (
            &pd.title,
            pd.amount,
            pd.stage,
            pd.pipeline,
            pd.source,
            pd.campaign
        ),
        (
            &d.title, d.amount, d.stage, d.pipeline, d.source, d.campaign
        ),
        "the planned deal"
    );
    let contact = conv.contact.record();
    let org = conv
        .organization
        .as_ref()
        .ok_or_else(|| Failure::new("an organization"))?
        .record();
    ensure_eq!(d.title, "Acme 4 rollout", "deal title");
    ensure_eq!(d.pipeline, deal.pipeline, "deal pipeline");
    ensure_eq!(Some(d.stage), deal.stage, "deal stage");
    ensure_eq!(d.amount, deal.amount, "deal amount");
    ensure_eq!(d.organization, Some(org.id), "deal organization");
    ensure_eq!(
        d.contacts,
        vec![(contact.id, DealRole::DecisionMaker)],
        "the contact is the decision maker"
    );
    ensure_eq!(d.source, lead.source, "deal source from the lead");
    ensure_eq!(d.campaign, lead.campaign, "deal campaign from the lead");
    ensure_eq!(d.owner, lead.owner, "deal owner");
    ensure_eq!(
        conv.lead.converted_deal,
        Some(d.id),
        "the lead links the deal"
    );
    ensure_eq!(
        contact.lifecycle_stage,
        crmkit_contacts::LifecycleStage::Opportunity,
        "a contact with a deal is an opportunity"
    );
    ensure_eq!(
        deals.get(a, d.id).await.at("get deal")?,
        d,
        "the stored deal"
    );
    ensure_eq!(
        l.get(a, lead.id).await.at("get lead")?.converted_deal,
        Some(d.id),
        "stored deal link"
    );
    ensure_eq!(
        deals.audit(a, d.id).await.at("deal audit")?.len(),
        1,
        "the deal's audit entry"
    );
    let events = f.events_after(seq).await?;
    ensure_eq!(
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.record.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("organization.created", RecordRef::from(org.id)),
            ("contact.created", RecordRef::from(contact.id)),
            ("deal.created", RecordRef::from(d.id)),
            ("lead.converted", RecordRef::from(lead.id)),
        ],
        "the conversion's events"
    );
    // A deal with a linked contact and organization.
    let lead2 = l
        .create(
            a,
            NewLead::named("Second", "Deal")
                .email("bob.obrien+4@acme4.example")
                .company("Acme", Some("acme4.example")),
        )
        .await
        .at("create 2")?;
    let conv2 = l
        .convert(
            a,
            lead2.id,
            1,
            ConvertLead {
                deal: Some(deal_input(&f, "Upsell").await?),
                ..Default::default()
            },
        )
        .await
        .at("convert 2")?;
    ensure_eq!(
        conv2.contact,
        Outcome::Linked(contact.clone()),
        "linked contact"
    );
    let d2 = conv2.deal.ok_or_else(|| Failure::new("a second deal"))?;
    ensure_eq!(d2.organization, Some(org.id), "the linked org on the deal");
    ensure_eq!(
        d2.contacts,
        vec![(contact.id, DealRole::DecisionMaker)],
        "the linked contact on the deal"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. Faults and concurrency
// ---------------------------------------------------------------------------------------

/// F2: a fault before any write of a conversion (for every write, the last one included)
/// fails it with a Storage error and leaves no contact, organization, deal, event, audit
/// entry or index row, and the lead unconverted; then the conversion succeeds. Injects
/// faults into the backend: do not run concurrently with other checks on the same store.
pub async fn conversion_atomicity(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let l = &f.leads;
    let a = &f.admin;
    let lead = l.create(a, full_lead(&f, 9)).await.at("create")?;
    let input = ConvertLead {
        deal: Some(deal_input(&f, "Atomic deal").await?),
        ..Default::default()
    };
    let before = snapshot(&f).await?;
    let seq0 = before.base.last_seq;
    let unchanged = async |n| {
        let after = snapshot(&f).await?;
        same_snapshot(&before, &after, &format!("conversion failing at write {n}"))?;
        ensure_eq!(
            l.get(a, lead.id).await.at("get")?,
            lead,
            "the lead is unconverted after a fault at {n}"
        );
        Ok(())
    };
    let (n, conv) =
        crate::support::fail_at_every_write(store, "conversion", unchanged, async || {
            l.convert(a, lead.id, 1, input.clone()).await
        })
        .await?;
    // Rows (lead, org, contact, 2 emails + 2 phones lookup, deal, its contact link and
    // history), audit (5+), sequence, 4 events.
    ensure!(n >= 18, "a conversion made only {n} writes");
    let events = f.events_after(seq0).await?;
    ensure_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec![
            "organization.created",
            "contact.created",
            "deal.created",
            "lead.converted"
        ],
        "exactly the successful conversion's events"
    );
    ensure_eq!(
        l.get(a, lead.id).await.at("get")?,
        conv.lead,
        "converted lead"
    );
    let all = f.events_after(0).await?;
    for (i, e) in all.iter().enumerate() {
        ensure_eq!(e.seq, i as u64 + 1, "gap-free event sequence after faults");
    }
    Ok(())
}

/// Eight tasks convert one lead (with a deal) at once: exactly one succeeds; the others
/// get a Conflict or an InvalidTransition; exactly one contact, organization and deal are
/// created and one `lead.converted` event is written.
pub async fn concurrent_conversion(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.admin;
    let lead = f
        .leads
        .create(
            a,
            NewLead::named("Race", "Lead")
                .email("race@lead.example")
                .company("Race Co", Some("race.example")),
        )
        .await
        .at("create")?;
    let input = ConvertLead {
        deal: Some(deal_input(&f, "Race deal").await?),
        ..Default::default()
    };
    let seq = f.last_seq().await?;
    let mut tasks = vec![];
    for i in 0..8 {
        let l = f.leads.clone();
        let ctx = if i % 2 == 0 {
            f.admin.clone()
        } else {
            f.manager.clone()
        };
        let id = lead.id;
        let input = input.clone();
        tasks.push(tokio::spawn(
            async move { l.convert(&ctx, id, 1, input).await },
        ));
    }
    let mut winners = vec![];
    for t in tasks {
        match t
            .await
            .map_err(|e| Failure::new(format!("task panicked: {e}")))?
        {
            Ok(c) => winners.push(c),
            Err(Error::Conflict { .. }) | Err(Error::InvalidTransition { .. }) => {}
            Err(e) => return Err(Failure::new(format!("a racer got {e:?}"))),
        }
    }
    ensure_eq!(winners.len(), 1, "exactly one conversion succeeds");
    let w = &winners[0];
    ensure_eq!(
        f.leads.get(a, lead.id).await.at("get")?,
        w.lead,
        "the winner's lead"
    );
    let holders: Vec<Contact> = all_contacts(&f.contacts, a, &every_record())
        .await?
        .into_iter()
        .filter(|c| c.emails.iter().any(|e| e.address == "race@lead.example"))
        .collect();
    ensure_eq!(holders.len(), 1, "exactly one contact");
    ensure_eq!(
        all_orgs(&f.contacts, a, &every_record()).await?.len(),
        1,
        "exactly one organization"
    );
    let deals = Deals::new(store)
        .at("Deals::new")?
        .list(a, &Query::new().include_deleted().with_total())
        .await
        .at("list deals")?;
    ensure_eq!(deals.total, Some(1), "exactly one deal");
    let kinds: Vec<String> = f
        .events_after(seq)
        .await?
        .into_iter()
        .map(|e| e.kind)
        .collect();
    ensure_eq!(
        kinds,
        vec![
            "organization.created",
            "contact.created",
            "deal.created",
            "lead.converted"
        ],
        "one conversion's events"
    );
    Ok(())
}

/// The one reference rule in conversion: as a Rep, linking a contact or an organization
/// hidden from the Rep fails exactly like linking one that does not exist, is deleted or
/// is another tenant's (the same Validation error, in the dry run and in the conversion),
/// and writes nothing; linking one the Rep sees works.
pub async fn conversion_references(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = crate::contacts::setup(store).await?;
    let rep = &f.rep_y;
    let c = &f.contacts;
    let lead = f
        .leads
        .create(
            rep,
            NewLead::named("Rhea", "Ference").email("rhea@ref.example"),
        )
        .await
        .at("rep's lead")?;
    let UnreachableContacts {
        hidden: hidden_c,
        gone: gone_c,
        foreign: foreign_c,
    } = f.unreachable_contacts(rep, &other, "Contact").await?;
    let hidden_o = c
        .organizations()
        .create(&f.admin, NewOrganization::named("Hidden Org"))
        .await
        .at("hidden organization")?;
    let gone_o = c
        .organizations()
        .create(rep, NewOrganization::named("Gone Org"))
        .await
        .at("organization")?;
    c.organizations()
        .delete(rep, gone_o.id, gone_o.version)
        .await
        .at("delete organization")?;
    let foreign_o = other.org(&other.admin, "Foreign Org").await?;
    let before = snapshot(&f).await?;
    let contact_links = [
        ("a missing contact", ContactId::new()),
        ("a hidden contact", hidden_c.id),
        ("a deleted contact", gone_c.id),
        ("another tenant's contact", foreign_c.id),
    ];
    let org_links = [
        ("a missing organization", OrganizationId::new()),
        ("a hidden organization", hidden_o.id),
        ("a deleted organization", gone_o.id),
        ("another tenant's organization", foreign_o.id),
    ];
    let mut inputs = vec![];
    for (what, id) in contact_links {
        inputs.push((
            "contact",
            what,
            ConvertLead {
                contact: ContactChoice::Link(id),
                ..Default::default()
            },
        ));
    }
    for (what, id) in org_links {
        inputs.push((
            "organization",
            what,
            ConvertLead {
                organization: OrganizationChoice::Link(id),
                ..Default::default()
            },
        ));
    }
    let mut expected: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (field, what, input) in inputs {
        let dry = f.leads.convert_dry_run(rep, lead.id, &input).await;
        let real = f.leads.convert(rep, lead.id, lead.version, input).await;
        for (how, got) in [
            ("dry run", validation_reasons(&dry)),
            ("conversion", validation_reasons(&real)),
        ] {
            let Some(got) = got else {
                return Err(Failure::new(format!(
                    "{how} linking {what}: expected a Validation error, got {:?}",
                    if how == "dry run" {
                        format!("{dry:?}")
                    } else {
                        format!("{real:?}")
                    }
                )));
            };
            ensure!(
                got.iter().any(|(f, _)| f == field),
                "{how} linking {what}: the error does not name {field}: {got:?}"
            );
            let want = expected.entry(field).or_insert_with(|| got.clone());
            ensure_eq!(&got, want, "{how} linking {what} vs a missing {field}");
        }
    }
    same_snapshot(&before, &snapshot(&f).await?, "refused links")?;
    let mine = c
        .create(rep, NewContact::named("Mine", "Contact"))
        .await
        .at("rep's contact")?;
    let done = f
        .leads
        .convert(
            rep,
            lead.id,
            lead.version,
            ConvertLead {
                contact: ContactChoice::Link(mine.id),
                organization: OrganizationChoice::None,
                ..Default::default()
            },
        )
        .await
        .at("link a visible contact")?;
    ensure_eq!(
        done.lead.converted_contact,
        Some(mine.id),
        "linked the visible contact"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name. [`conversion_atomicity`] injects faults into the
    /// backend: run it alone (not concurrently with other checks on the same store).
    names: pipeline_leads_check_names,
    checks: [
        crud_round_trip,
        bad_input,
        status_rules,
        filters_and_paging,
        record_access,
        tenant_isolation,
        conversion_creates,
        conversion_links,
        dry_run,
        conversion_transitions,
        conversion_with_deal,
        conversion_atomicity,
        concurrent_conversion,
        conversion_references,
    ],
}

/// Runs every check of [`checks`] one after the other on `store` and reports every
/// failure. Needs a multi-thread runtime.
pub async fn run_all(store: &Store) -> CheckResult {
    run_checks(store, checks(), "lead").await
}
