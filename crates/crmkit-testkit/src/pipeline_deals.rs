//! Conformance checks of pipelines, stages and deals (`crmkit_pipeline::deal`) on any
//! backend.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a [`Store`] composed with
//! core, [`crmkit_contacts::ContactsModule`] and [`crmkit_pipeline::PipelineModule`]; each
//! makes its own fresh tenant with [`setup`]. [`checks`] lists them by name. The property
//! tests [`history_properties`] and [`weighted_totals`] are sync (they own a tokio
//! runtime). [`atomicity`] injects faults into the backend: run it alone on its store.

use crate::check::{
    At, CheckResult, Failure, expect_not_found, expect_validation, validation_reasons,
};
pub use crate::check::{CheckFn, CheckFuture};
use crate::support::all_pages;
use crate::support::run_property;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use crmkit_core::{
    Actor, ContactId, Ctx, CustomFieldDef, CustomFieldType, CustomValue, Error, Filter,
    ManualClock, Money, Query, RecordKind, RecordRef, Role, Store, TenantId, UserId,
};
use crmkit_pipeline::campaign::{CampaignKind, Campaigns, NewCampaign};
use crmkit_pipeline::deal::{
    Deal, DealPatch, DealRole, Deals, LostReasonInput, NewDeal, NewPipeline, NewStage, Pipeline,
    StageKind, StagePatch, parse_close_date,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::contacts::{Fixture, UnreachableContacts};

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// The contacts fixture (users in every role, two teams) plus the deals API, the
/// tenant's default pipeline and a deal custom field `tier` (single choice a/b/c).
#[derive(Debug, Clone)]
pub struct DealFixture {
    /// Users, teams and the contacts API.
    pub f: Fixture,
    /// The deals API.
    pub deals: Deals,
    /// The default pipeline.
    pub default: Pipeline,
}

/// The deals service of `store` and the default pipeline of `ctx`'s tenant (made now if
/// the tenant has none).
pub(crate) async fn deals_with_default(store: &Store, ctx: &Ctx) -> CheckResult<(Deals, Pipeline)> {
    let deals = Deals::new(store).at("Deals::new")?;
    let default = deals
        .pipelines()
        .ensure_default(ctx)
        .await
        .at("default pipeline")?;
    Ok((deals, default))
}

/// Makes a fresh tenant for the deal checks.
pub async fn setup(store: &Store) -> CheckResult<DealFixture> {
    let f = crate::contacts::setup(store).await?;
    store
        .custom_fields()
        .define(
            &f.admin,
            CustomFieldDef {
                id: crmkit_core::CustomFieldId::new(),
                record_kind: RecordKind::DEAL,
                key: "tier".into(),
                label: "Tier".into(),
                ty: CustomFieldType::SingleChoice {
                    choices: vec!["a".into(), "b".into(), "c".into()],
                },
                required: false,
            },
        )
        .await
        .at("define deal custom field")?;
    let (deals, default) = deals_with_default(store, &f.admin).await?;
    Ok(DealFixture { f, deals, default })
}

fn eur(s: &str) -> Money {
    Money::parse(s, "EUR").expect("EUR amount")
}

fn usd(s: &str) -> Money {
    Money::parse(s, "USD").expect("USD amount")
}

/// Every deal a query returns, following cursors.
pub(crate) async fn all_deals(d: &Deals, ctx: &Ctx, q: &Query) -> CheckResult<Vec<Deal>> {
    all_pages(q, "list deals", |q| async move { d.list(ctx, &q).await }).await
}

/// The ids of `v`, sorted.
pub(crate) fn ids(v: &[Deal]) -> Vec<crmkit_core::DealId> {
    let mut x: Vec<_> = v.iter().map(|d| d.id).collect();
    x.sort();
    x
}

fn stage_named(p: &Pipeline, name: &str) -> crmkit_core::StageId {
    p.stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name}"))
        .id
}

fn test_pipeline(name: &str) -> NewPipeline {
    NewPipeline {
        name: name.into(),
        currency: None,
        stages: vec![
            NewStage::open("A", 10).rotting(5),
            NewStage::open("B", 50).rotting(10),
            NewStage::won("W"),
            NewStage::lost("L"),
        ],
    }
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// The default pipeline: five stages, created once; 8 concurrent calls on a fresh tenant
/// all return the same pipeline and exactly one exists.
pub async fn default_pipeline(store: &Store) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let deals = Deals::new(store).at("Deals::new")?;
    let mut tasks = vec![];
    for i in 0..8 {
        let deals = deals.clone();
        let ctx = if i % 2 == 0 {
            f.admin.clone()
        } else {
            f.rep.clone()
        };
        tasks.push(tokio::spawn(async move {
            deals.pipelines().ensure_default(&ctx).await
        }));
    }
    let mut got = vec![];
    for t in tasks {
        got.push(
            t.await
                .map_err(|e| Failure::new(format!("task: {e}")))?
                .at("pipelines().ensure_default")?,
        );
    }
    for p in &got {
        ensure_eq!(p.id, got[0].id, "every call returns the same pipeline");
    }
    let again = deals
        .pipelines()
        .ensure_default(&f.admin)
        .await
        .at("again")?;
    ensure_eq!(again, got[0].clone(), "a later call returns it unchanged");
    let all = deals.pipelines().all(&f.admin).await.at("list")?;
    ensure_eq!(all.len(), 1, "exactly one pipeline");
    ensure!(all[0].is_default, "it is the default");
    ensure_eq!(
        all[0]
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.probability, s.kind))
            .collect::<Vec<_>>(),
        vec![
            ("Qualification", 10, StageKind::Open),
            ("Proposal", 40, StageKind::Open),
            ("Negotiation", 70, StageKind::Open),
            ("Won", 100, StageKind::Won),
            ("Lost", 0, StageKind::Lost),
        ],
        "default stages"
    );
    ensure_eq!(
        all[0].stages[1].required_fields,
        vec!["amount".to_string()],
        "Proposal requires an amount"
    );
    Ok(())
}

/// Create, get, update, delete, restore a deal with every field; its history, audit
/// and events; list filters.
pub async fn crud_round_trip(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals, p) = (&d.f, &d.deals, &d.default);
    let a = &f.admin;
    let org = f
        .contacts
        .organizations()
        .create(a, crmkit_contacts::NewOrganization::named("Acme"))
        .await
        .at("org")?;
    let c1 = f.person(a, "Ann", "One").await?;
    let c2 = f.person(a, "Bob", "Two").await?;
    let (_, seq0) = f.rows_and_seq().await?;
    let mut input = NewDeal::new("Big deal", p.id);
    input.amount = Some(eur("12500.50"));
    input.expected_close = Some(parse_close_date("2030-02-28").at("date")?);
    input.stage = Some(stage_named(p, "Proposal"));
    input.team = Some(f.team_x);
    input.organization = Some(org.id);
    input.contacts = vec![
        (c1.id, DealRole::Champion),
        (c2.id, DealRole::DecisionMaker),
    ];
    input.source = crmkit_pipeline::deal::Source::Referral;
    input.next_step = Some("Call".into());
    input
        .custom
        .insert("tier".into(), CustomValue::Choice("b".into()));
    let deal = deals.create(a, input.clone()).await.at("create")?;
    ensure_eq!(deal.probability, 40, "the stage's probability");
    ensure_eq!(deal.status(), StageKind::Open, "open");
    ensure_eq!(
        deals.get(a, deal.id).await.at("get")?,
        deal.clone(),
        "get returns what create returned"
    );
    let h = deals.stage_history(a, deal.id).await.at("history")?;
    ensure_eq!(h.len(), 1, "one history entry");
    ensure_eq!(h[0].from_stage, None, "created: no from stage");
    ensure_eq!(h[0].to_stage, deal.stage, "to the deal's stage");
    ensure_eq!(h[0].amount, Some(eur("12500.50")), "amount at the time");
    let ev = store.events_since(a, seq0, 100).await.at("events")?;
    ensure_eq!(
        ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["deal.created"],
        "one created event"
    );
    let upd = deals
        .update(
            a,
            deal.id,
            deal.version,
            DealPatch {
                title: Some("Bigger deal".into()),
                amount: Some(Some(eur("20000"))),
                probability: Some(Some(55)),
                contacts: Some(vec![(c2.id, DealRole::Influencer)]),
                ..Default::default()
            },
        )
        .await
        .at("update")?;
    ensure_eq!(upd.version, deal.version + 1, "version bump");
    ensure_eq!(upd.probability, 55, "override wins");
    ensure_eq!(
        deals.get(a, deal.id).await.at("get")?,
        upd.clone(),
        "update persisted"
    );
    match deals
        .update(a, deal.id, deal.version, DealPatch::default())
        .await
    {
        Err(Error::Conflict { .. }) => {}
        other => return Err(Failure::new(format!("stale version: {other:?}"))),
    }
    let audit = deals.audit(a, deal.id).await.at("audit")?;
    for field in ["title", "amount", "probability_override", "contacts"] {
        ensure!(
            audit.iter().any(|e| e.change.field == field),
            "audit has {field}"
        );
    }
    // Filters.
    let other = deals
        .create(a, NewDeal::new("Small", p.id))
        .await
        .at("create small")?;
    let q = |flt: Filter| Query::new().filter(flt);
    for (flt, want) in [
        (Filter::contains("title", "BIGGER"), vec![deal.id]),
        (
            Filter::eq("stage", stage_named(p, "Proposal")),
            vec![deal.id],
        ),
        (Filter::eq("organization", org.id), vec![deal.id]),
        (Filter::gt("amount", Decimal::from(19_999)), vec![deal.id]),
        (Filter::eq("currency", "EUR"), vec![deal.id]),
        (Filter::eq("custom.tier", "b"), vec![deal.id]),
        (Filter::eq("source", "referral"), vec![deal.id]),
        (Filter::is_null("amount"), vec![other.id]),
        (
            Filter::lte(
                "expected_close",
                NaiveDate::from_ymd_opt(2030, 3, 1).expect("date"),
            ),
            vec![deal.id],
        ),
        (Filter::eq("status", "open"), {
            let mut v = vec![deal.id, other.id];
            v.sort();
            v
        }),
    ] {
        let got = all_deals(deals, a, &q(flt.clone())).await?;
        ensure_eq!(ids(&got), want, "filter {flt:?}");
    }
    expect_validation(
        deals.list(a, &q(Filter::eq("status", "closed'--"))).await,
        "filter.status",
        "unknown status value",
    )?;
    expect_validation(
        deals
            .list(a, &q(Filter::eq("nope; DROP TABLE x", 1i64)))
            .await,
        "filter.nope; DROP TABLE x",
        "unknown field",
    )?;
    // Paging with a small limit returns everything once.
    let paged = all_deals(deals, a, &Query::new().limit(1).sort_desc("amount")).await?;
    ensure_eq!(paged.len(), 2, "paging");
    // Delete and restore.
    let del = deals.delete(a, upd.id, upd.version).await.at("delete")?;
    expect_not_found(deals.get(a, upd.id).await, "deleted deal")?;
    ensure_eq!(
        ids(&all_deals(deals, a, &Query::new()).await?),
        vec![other.id],
        "deleted deals leave lists"
    );
    let res = deals.restore(a, del.id, del.version).await.at("restore")?;
    ensure_eq!(res.deleted_at, None, "restored");
    ensure_eq!(deals.get(a, res.id).await.at("get")?, res, "restored deal");
    Ok(())
}

async fn rejects<T: fmt::Debug>(
    d: &DealFixture,
    r: impl Future<Output = crmkit_core::Result<T>>,
    field: &str,
    what: &str,
) -> CheckResult {
    let before = d.f.rows_and_seq().await?;
    expect_validation(r.await, field, what)?;
    let after = d.f.rows_and_seq().await?;
    ensure_eq!(before, after, "{what}: a rejected command wrote something");
    Ok(())
}

/// The issue's bad inputs, each a typed error that writes nothing.
pub async fn bad_input(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals, p) = (&d.f, &d.deals, &d.default);
    let a = &f.admin;
    let other = deals
        .pipelines()
        .create(
            a,
            NewPipeline {
                currency: Some(crmkit_core::Currency::parse("EUR").at("EUR")?),
                ..test_pipeline("Euro only")
            },
        )
        .await
        .at("pipeline")?;
    let base = NewDeal::new("Deal", p.id);
    let with = |g: &dyn Fn(&mut NewDeal)| {
        let mut n = base.clone();
        g(&mut n);
        n
    };
    rejects(
        &d,
        deals.create(a, with(&|n| n.probability = Some(101))),
        "probability",
        "probability 101",
    )
    .await?;
    rejects(
        &d,
        deals.pipelines().create(
            a,
            NewPipeline {
                stages: vec![NewStage::open("X", 150)],
                ..test_pipeline("Bad")
            },
        ),
        "stages[0].probability",
        "stage probability 150",
    )
    .await?;
    rejects(
        &d,
        deals.pipelines().update_stage(
            a,
            p.id,
            p.version,
            p.stages[0].id,
            StagePatch {
                probability: Some(200),
                ..Default::default()
            },
        ),
        "probability",
        "update stage probability 200",
    )
    .await?;
    rejects(
        &d,
        deals.create(a, with(&|n| n.stage = Some(other.stages[0].id))),
        "stage",
        "a stage of another pipeline",
    )
    .await?;
    rejects(
        &d,
        deals.create(a, with(&|n| n.amount = Some(eur("-1")))),
        "amount",
        "a negative amount",
    )
    .await?;
    rejects(
        &d,
        deals.create(a, {
            let mut n = NewDeal::new("Deal", other.id);
            n.amount = Some(usd("10"));
            n
        }),
        "amount",
        "a currency other than the pipeline's",
    )
    .await?;
    rejects(
        &d,
        deals.create(a, with(&|n| n.title = "  ".into())),
        "title",
        "a blank title",
    )
    .await?;
    rejects(
        &d,
        deals.create(a, with(&|n| n.title = "x".repeat(201))),
        "title",
        "an over-long title",
    )
    .await?;
    rejects(
        &d,
        deals.create(
            a,
            with(&|n| n.contacts = vec![(crmkit_core::ContactId::new(), DealRole::Other)]),
        ),
        "contacts[0]",
        "an unknown contact",
    )
    .await?;
    rejects(
        &d,
        deals.create(
            a,
            with(&|n| n.organization = Some(crmkit_core::OrganizationId::new())),
        ),
        "organization",
        "an unknown organization",
    )
    .await?;
    rejects(
        &d,
        deals.create(
            a,
            with(&|n| {
                n.custom
                    .insert("tier".into(), CustomValue::Choice("z".into()));
            }),
        ),
        "custom.tier",
        "an unknown custom choice",
    )
    .await?;
    // Several bad fields at once are all named.
    match deals
        .create(
            a,
            with(&|n| {
                n.title = String::new();
                n.amount = Some(eur("-5"));
                n.probability = Some(101);
            }),
        )
        .await
    {
        Err(Error::Validation(v)) => {
            for fld in ["title", "amount", "probability"] {
                ensure!(v.has(fld), "every bad field is named: {fld} missing in {v}");
            }
        }
        other => return Err(Failure::new(format!("several bad fields: {other:?}"))),
    }
    for bad in [
        "2024-02-30",
        "2024-13-01",
        "tomorrow",
        "",
        "2024-02-29'; --",
        "10000-01-01",
    ] {
        expect_validation(parse_close_date(bad), "expected_close", bad)?;
    }
    ensure_eq!(
        parse_close_date("2024-02-29").at("leap day")?,
        NaiveDate::from_ymd_opt(2024, 2, 29).expect("date"),
        "leap day parses"
    );
    expect_validation(DealRole::parse("ceo"), "role", "unknown role")?;
    expect_validation(
        DealRole::contacts_from_json(&format!(
            "[[\"{}\", \"ceo\"]]",
            crmkit_core::ContactId::new()
        )),
        "contacts[0].role",
        "unknown role in JSON",
    )?;
    ensure_eq!(
        "champion".parse::<DealRole>().at("champion")?,
        DealRole::Champion,
        "a known role parses"
    );
    // Moves: a stage of another pipeline; another tenant's deal.
    let deal = deals.create(a, base.clone()).await.at("create")?;
    rejects(
        &d,
        deals.move_to_stage(a, deal.id, deal.version, other.stages[1].id, None),
        "stage",
        "move to a stage of another pipeline",
    )
    .await?;
    let stranger = Ctx::new(
        TenantId::new(),
        Actor::new(UserId::new(), [Role::Admin], []),
    )
    .at("ctx")?;
    let before = f.rows_and_seq().await?;
    expect_not_found(
        deals
            .move_to_stage(&stranger, deal.id, deal.version, p.stages[2].id, None)
            .await,
        "moving another tenant's deal",
    )?;
    expect_not_found(
        deals
            .update(&stranger, deal.id, deal.version, DealPatch::default())
            .await,
        "updating another tenant's deal",
    )?;
    expect_not_found(deals.get(&stranger, deal.id).await, "another tenant's deal")?;
    expect_not_found(
        deals.get(a, crmkit_core::DealId::new()).await,
        "a deal that does not exist",
    )?;
    ensure_eq!(
        before,
        f.rows_and_seq().await?,
        "NotFound commands wrote nothing"
    );
    ensure!(
        deals
            .list(&stranger, &Query::new())
            .await
            .at("list")?
            .items
            .is_empty(),
        "another tenant lists nothing"
    );
    Ok(())
}

/// Won and lost close a deal; lost needs a reason (managed or free text); reopening is
/// recorded; lost reasons are a managed list.
pub async fn close_and_reopen(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals, p) = (&d.f, &d.deals, &d.default);
    let a = &f.admin;
    let price = deals.add_lost_reason(a, "Price").await.at("reason")?;
    match deals.add_lost_reason(a, "PRICE").await {
        Err(Error::Duplicate { .. }) => {}
        other => return Err(Failure::new(format!("duplicate reason: {other:?}"))),
    }
    deals.add_lost_reason(a, "Timing").await.at("reason")?;
    let names: Vec<String> = deals
        .lost_reasons(a)
        .await
        .at("reasons")?
        .into_iter()
        .map(|r| r.name)
        .collect();
    ensure_eq!(
        names,
        vec!["Price".to_string(), "Timing".to_string()],
        "lost reasons"
    );
    match deals.add_lost_reason(&f.rep, "Rep's").await {
        Err(Error::PermissionDenied(_)) => {}
        other => return Err(Failure::new(format!("rep adds reason: {other:?}"))),
    }
    let mut n = NewDeal::new("Closing", p.id);
    n.amount = Some(eur("100"));
    let deal = deals.create(a, n).await.at("create")?;
    let lost = stage_named(p, "Lost");
    let won = stage_named(p, "Won");
    rejects(
        &d,
        deals.move_to_stage(a, deal.id, deal.version, lost, None),
        "lost_reason",
        "lost without a reason",
    )
    .await?;
    rejects(
        &d,
        deals.move_to_stage(
            a,
            deal.id,
            deal.version,
            lost,
            Some(LostReasonInput::Listed(crmkit_core::LostReasonId::new())),
        ),
        "lost_reason",
        "an unknown managed reason",
    )
    .await?;
    rejects(
        &d,
        deals.move_to_stage(
            a,
            deal.id,
            deal.version,
            won,
            Some(LostReasonInput::Text("x".into())),
        ),
        "lost_reason",
        "a reason when winning",
    )
    .await?;
    let l = deals
        .move_to_stage(
            a,
            deal.id,
            deal.version,
            lost,
            Some(LostReasonInput::Listed(price.id)),
        )
        .await
        .at("lose")?;
    ensure!(l.lost_at.is_some() && l.won_at.is_none(), "lost_at set");
    ensure_eq!(l.lost_reason.as_deref(), Some("Price"), "reason text");
    ensure_eq!(l.status(), StageKind::Lost, "lost");
    let lost_list = all_deals(deals, a, &Query::new().filter(Filter::eq("status", "lost"))).await?;
    ensure_eq!(ids(&lost_list), vec![deal.id], "status filter");
    let by_date = all_deals(
        deals,
        a,
        &Query::new().filter(Filter::gte("lost_at", l.lost_at.expect("lost"))),
    )
    .await?;
    ensure_eq!(ids(&by_date), vec![deal.id], "lost_at filter");
    // Reopen, then win.
    let q = stage_named(p, "Qualification");
    let r = deals
        .move_to_stage(a, deal.id, l.version, q, None)
        .await
        .at("reopen")?;
    ensure!(
        r.lost_at.is_none() && r.lost_reason.is_none(),
        "reopened: {r:?}"
    );
    let w = deals
        .move_to_stage(a, deal.id, r.version, won, None)
        .await
        .at("win")?;
    ensure!(w.won_at.is_some(), "won_at set");
    ensure_eq!(w.probability, 100, "won probability");
    let h = deals.stage_history(a, deal.id).await.at("history")?;
    ensure_eq!(
        h.iter().map(|e| e.to_kind).collect::<Vec<_>>(),
        vec![
            StageKind::Open,
            StageKind::Lost,
            StageKind::Open,
            StageKind::Won
        ],
        "history kinds"
    );
    for (i, e) in h.iter().enumerate() {
        ensure_eq!(e.seq, i as u64 + 1, "history seq");
        if i > 0 {
            ensure_eq!(e.from_stage, Some(h[i - 1].to_stage), "contiguous");
        }
    }
    match deals.move_to_stage(a, deal.id, w.version, won, None).await {
        Err(Error::InvalidTransition { .. }) => {}
        other => return Err(Failure::new(format!("move to same stage: {other:?}"))),
    }
    deals
        .remove_lost_reason(a, price.id)
        .await
        .at("remove reason")?;
    ensure_eq!(
        deals.lost_reasons(a).await.at("reasons")?.len(),
        1,
        "removed"
    );
    Ok(())
}

/// A stage's required fields: creating in it, moving into it and clearing them while in
/// it are Validation errors naming the missing fields.
pub async fn required_fields(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals, p) = (&d.f, &d.deals, &d.default);
    let a = &f.admin;
    let proposal = stage_named(p, "Proposal");
    let mut n = NewDeal::new("Needs amount", p.id);
    n.stage = Some(proposal);
    rejects(
        &d,
        deals.create(a, n.clone()),
        "amount",
        "create in Proposal",
    )
    .await?;
    let deal = deals
        .create(a, NewDeal::new("Needs amount", p.id))
        .await
        .at("create")?;
    rejects(
        &d,
        deals.move_to_stage(a, deal.id, deal.version, proposal, None),
        "amount",
        "move into Proposal",
    )
    .await?;
    let p2 = deals
        .pipelines()
        .update_stage(
            a,
            p.id,
            p.version,
            stage_named(p, "Negotiation"),
            StagePatch {
                required_fields: Some(vec!["expected_close".into(), "custom.tier".into()]),
                ..Default::default()
            },
        )
        .await
        .at("require")?;
    match deals
        .move_to_stage(
            a,
            deal.id,
            deal.version,
            stage_named(&p2, "Negotiation"),
            None,
        )
        .await
    {
        Err(Error::Validation(v)) if v.has("expected_close") && v.has("custom.tier") => {}
        other => return Err(Failure::new(format!("both missing fields: {other:?}"))),
    }
    let u = deals
        .update(
            a,
            deal.id,
            deal.version,
            DealPatch {
                amount: Some(Some(eur("5"))),
                ..Default::default()
            },
        )
        .await
        .at("set amount")?;
    let m = deals
        .move_to_stage(a, deal.id, u.version, proposal, None)
        .await
        .at("move")?;
    rejects(
        &d,
        deals.update(
            a,
            deal.id,
            m.version,
            DealPatch {
                amount: Some(None),
                ..Default::default()
            },
        ),
        "amount",
        "clearing a required field",
    )
    .await?;
    rejects(
        &d,
        deals.pipelines().update_stage(
            a,
            p2.id,
            p2.version,
            proposal,
            StagePatch {
                required_fields: Some(vec!["salary".into()]),
                ..Default::default()
            },
        ),
        "required_fields[0]",
        "an unknown required field",
    )
    .await?;
    Ok(())
}

/// Pipelines and stages: create, rename, add, reorder, change probability (deals
/// follow), remove with and without a target, move to another pipeline.
pub async fn pipelines_and_stages(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals) = (&d.f, &d.deals);
    let a = &f.admin;
    match deals.pipelines().create(&f.rep, test_pipeline("Rep")).await {
        Err(Error::PermissionDenied(_)) => {}
        other => return Err(Failure::new(format!("rep creates pipeline: {other:?}"))),
    }
    let p = deals
        .pipelines()
        .create(a, test_pipeline("Enterprise"))
        .await
        .at("create")?;
    let p = deals
        .pipelines()
        .rename(a, p.id, p.version, "Enterprise sales")
        .await
        .at("rename")?;
    match deals.pipelines().rename(a, p.id, p.version - 1, "x").await {
        Err(Error::Conflict { .. }) => {}
        other => return Err(Failure::new(format!("stale rename: {other:?}"))),
    }
    let p = deals
        .pipelines()
        .add_stage(a, p.id, p.version, NewStage::open("C", 80), Some(2))
        .await
        .at("add stage")?;
    ensure_eq!(
        p.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["A", "B", "C", "W", "L"],
        "inserted at 2"
    );
    rejects(
        &d,
        deals
            .pipelines()
            .add_stage(a, p.id, p.version, NewStage::open("b", 1), None),
        "name",
        "a repeated stage name",
    )
    .await?;
    let order = vec![
        p.stages[1].id,
        p.stages[0].id,
        p.stages[2].id,
        p.stages[3].id,
        p.stages[4].id,
    ];
    let p = deals
        .pipelines()
        .reorder_stages(a, p.id, p.version, &order)
        .await
        .at("reorder")?;
    ensure_eq!(
        deals.pipelines().get(a, p.id).await.at("get")?,
        p.clone(),
        "reorder persisted"
    );
    ensure_eq!(p.stages[0].name, "B", "B first");
    rejects(
        &d,
        deals
            .pipelines()
            .reorder_stages(a, p.id, p.version, &order[1..]),
        "order",
        "an incomplete order",
    )
    .await?;
    let (sa, sb, sc) = (
        stage_named(&p, "A"),
        stage_named(&p, "B"),
        stage_named(&p, "C"),
    );
    let mut n = NewDeal::new("In A", p.id);
    n.stage = Some(sa);
    n.amount = Some(eur("1000"));
    let d1 = deals.create(a, n.clone()).await.at("d1")?;
    n.probability = Some(33);
    let d2 = deals.create(a, n).await.at("d2")?;
    let p = deals
        .pipelines()
        .update_stage(
            a,
            p.id,
            p.version,
            sa,
            StagePatch {
                probability: Some(25),
                ..Default::default()
            },
        )
        .await
        .at("probability")?;
    ensure_eq!(
        deals.get(a, d1.id).await.at("get")?.probability,
        25,
        "deal follows its stage"
    );
    ensure_eq!(
        deals.get(a, d2.id).await.at("get")?.probability,
        33,
        "override stays"
    );
    let sum = deals.summary(a, p.id).await.at("summary")?;
    ensure_eq!(sum.lines.len(), 1, "one line");
    ensure_eq!(sum.lines[0].weighted_value, Decimal::from(580), "250 + 330");
    match deals
        .pipelines()
        .update_stage(
            a,
            p.id,
            p.version,
            sa,
            StagePatch {
                kind: Some(StageKind::Won),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::InvalidTransition { .. }) => {}
        other => return Err(Failure::new(format!("kind of a used stage: {other:?}"))),
    }
    // Remove: empty stage, stage with deals (no target, wrong target, target).
    let p = deals
        .pipelines()
        .remove_stage(a, p.id, p.version, sc, None)
        .await
        .at("remove empty")?;
    ensure!(p.stage(sc).is_none(), "C removed");
    rejects(
        &d,
        deals.pipelines().remove_stage(a, p.id, p.version, sa, None),
        "move_to",
        "removing a stage with deals without a target",
    )
    .await?;
    rejects(
        &d,
        deals
            .pipelines()
            .remove_stage(a, p.id, p.version, sa, Some(stage_named(&p, "W"))),
        "move_to",
        "a target of another kind",
    )
    .await?;
    let p = deals
        .pipelines()
        .remove_stage(a, p.id, p.version, sa, Some(sb))
        .await
        .at("remove with target")?;
    for id in [d1.id, d2.id] {
        let x = deals.get(a, id).await.at("get")?;
        ensure_eq!(x.stage, sb, "moved to B");
        let h = deals.stage_history(a, id).await.at("history")?;
        ensure_eq!(
            h.last().map(|e| (e.from_stage, e.to_stage)),
            Some((Some(sa), sb)),
            "history of the move"
        );
    }
    ensure_eq!(
        deals.get(a, d1.id).await.at("get")?.probability,
        50,
        "B's probability"
    );
    // To another pipeline.
    let x = deals.get(a, d1.id).await.at("get")?;
    let def = &d.default;
    let m = deals
        .move_to_pipeline(a, x.id, x.version, def.id, None)
        .await
        .at("move to pipeline")?;
    ensure_eq!(
        (m.pipeline, m.stage),
        (def.id, def.stages[0].id),
        "the first open stage"
    );
    rejects(
        &d,
        deals.move_to_pipeline(a, m.id, m.version, p.id, Some(def.stages[1].id)),
        "stage",
        "a stage not of the target pipeline",
    )
    .await?;
    let euro = deals
        .pipelines()
        .create(
            a,
            NewPipeline {
                currency: Some(crmkit_core::Currency::parse("USD").at("USD")?),
                ..test_pipeline("Dollars")
            },
        )
        .await
        .at("usd pipeline")?;
    rejects(
        &d,
        deals.move_to_pipeline(a, m.id, m.version, euro.id, None),
        "amount",
        "a currency the target pipeline does not take",
    )
    .await?;
    Ok(())
}

/// Record-level visibility: a Rep sees the deals they or their team own, in get, lists,
/// summaries and the analytics queries; writes outside it are NotFound.
pub async fn visibility(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals, p) = (&d.f, &d.deals, &d.default);
    let a = &f.admin;
    let rep_user = f.rep.actor().user;
    let rep_y_user = f.rep_y.actor().user;
    let close = NaiveDate::from_ymd_opt(2031, 1, 15).expect("date");
    let mk = |title: &str, owner: UserId, team, amount: &str| {
        let mut n = NewDeal::new(title, p.id);
        n.owner = Some(owner);
        n.team = team;
        n.amount = Some(eur(amount));
        n.expected_close = Some(close);
        n
    };
    let own = deals
        .create(&f.rep, mk("rep's", rep_user, None, "100"))
        .await
        .at("rep's")?;
    let team = deals
        .create(
            a,
            mk("team X's", f.admin.actor().user, Some(f.team_x), "200"),
        )
        .await
        .at("team's")?;
    let other = deals
        .create(a, mk("rep Y's", rep_y_user, Some(f.team_y), "400"))
        .await
        .at("other's")?;
    match deals
        .create(&f.rep, mk("for y", rep_y_user, None, "1"))
        .await
    {
        Err(Error::PermissionDenied(_)) => {}
        other => return Err(Failure::new(format!("rep gives deal away: {other:?}"))),
    }
    let mut visible_rep = vec![own.id, team.id];
    visible_rep.sort();
    let all = ids(&[own.clone(), team.clone(), other.clone()]);
    for (ctx, want) in [
        (&f.admin, all.clone()),
        (&f.manager, all.clone()),
        (&f.rep, visible_rep.clone()),
        (&f.rep2, vec![team.id]),
        (&f.readonly, vec![team.id]),
        (&f.rep_y, vec![other.id]),
    ] {
        ensure_eq!(
            ids(&all_deals(deals, ctx, &Query::new()).await?),
            want,
            "list as {:?}",
            ctx.actor().roles
        );
        let total: u64 = deals
            .summary(ctx, p.id)
            .await
            .at("summary")?
            .lines
            .iter()
            .map(|l| l.open_deals)
            .sum();
        ensure_eq!(total, want.len() as u64, "summary count");
        let closing = deals
            .closing_between(ctx, close, close, &Query::new())
            .await
            .at("closing")?;
        ensure_eq!(ids(&closing.items), want, "closing_between");
        let idle = deals
            .idle(ctx, Utc::now(), &Query::new())
            .await
            .at("idle")?;
        ensure!(idle.items.is_empty(), "nothing idle without thresholds");
    }
    let sum = deals.summary(&f.rep, p.id).await.at("summary")?;
    ensure_eq!(
        sum.lines.iter().map(|l| l.open_value).sum::<Decimal>(),
        Decimal::from(300),
        "rep's open value"
    );
    expect_not_found(deals.get(&f.rep, other.id).await, "rep gets Y's deal")?;
    expect_not_found(
        deals
            .move_to_stage(&f.rep, other.id, other.version, p.stages[2].id, None)
            .await,
        "rep moves Y's deal",
    )?;
    expect_not_found(
        deals.stage_history(&f.rep, other.id).await,
        "rep reads Y's history",
    )?;
    match deals
        .move_to_stage(&f.readonly, team.id, team.version, p.stages[2].id, None)
        .await
    {
        Err(Error::PermissionDenied(_)) => {}
        other => return Err(Failure::new(format!("read-only moves: {other:?}"))),
    }
    Ok(())
}

/// Analytics queries with a manual clock: closing_between, idle per stage
/// threshold, summary per stage and currency.
pub async fn analytics_queries(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals) = (&d.f, &d.deals);
    let t0 = Utc
        .with_ymd_and_hms(2030, 1, 1, 9, 0, 0)
        .single()
        .expect("t0");
    let clock = Arc::new(ManualClock::new(t0));
    let a = f.admin.clone().with_clock(clock.clone());
    let p = deals
        .pipelines()
        .create(&a, test_pipeline("Clocked"))
        .await
        .at("pipeline")?;
    let (sa, sb) = (stage_named(&p, "A"), stage_named(&p, "B"));
    let mut n = NewDeal::new("one", p.id);
    n.amount = Some(eur("10.01"));
    n.expected_close = Some(NaiveDate::from_ymd_opt(2030, 3, 1).expect("d"));
    let d1 = deals.create(&a, n.clone()).await.at("d1")?;
    n.amount = Some(usd("3.3333"));
    n.stage = Some(sb);
    n.expected_close = Some(NaiveDate::from_ymd_opt(2030, 4, 1).expect("d"));
    let d2 = deals.create(&a, n.clone()).await.at("d2")?;
    n.amount = None;
    n.stage = Some(sa);
    n.expected_close = None;
    let d3 = deals.create(&a, n).await.at("d3")?;
    clock.advance(Duration::days(6));
    let idle = deals.idle(&a, a.now(), &Query::new()).await.at("idle")?;
    ensure_eq!(
        ids(&idle.items),
        ids(&[d1.clone(), d3.clone()]),
        "A rots after 5 days"
    );
    clock.advance(Duration::days(5));
    let idle = deals.idle(&a, a.now(), &Query::new()).await.at("idle")?;
    ensure_eq!(
        ids(&idle.items),
        ids(&[d1.clone(), d2.clone(), d3.clone()]),
        "B after 10"
    );
    let m = deals
        .move_to_stage(&a, d1.id, d1.version, sb, None)
        .await
        .at("move")?;
    let h = deals.stage_history(&a, d1.id).await.at("history")?;
    ensure_eq!(
        h[1].seconds_in_previous,
        Some(11 * 86_400),
        "seconds in the previous stage"
    );
    let idle = deals.idle(&a, a.now(), &Query::new()).await.at("idle")?;
    ensure_eq!(
        ids(&idle.items),
        ids(&[d2.clone(), d3.clone()]),
        "a move resets the clock"
    );
    let won = deals
        .move_to_stage(&a, d2.id, d2.version, stage_named(&p, "W"), None)
        .await
        .at("win")?;
    ensure!(won.won_at == Some(a.now()), "won_at is now");
    let closing = deals
        .closing_between(
            &a,
            NaiveDate::from_ymd_opt(2030, 2, 1).expect("d"),
            NaiveDate::from_ymd_opt(2030, 12, 31).expect("d"),
            &Query::new(),
        )
        .await
        .at("closing")?;
    ensure_eq!(
        ids(&closing.items),
        vec![m.id],
        "open deals closing in range"
    );
    let sum = deals.summary(&a, p.id).await.at("summary")?;
    ensure_eq!(
        sum.lines
            .iter()
            .map(|l| (
                l.stage,
                l.currency.map(|c| c.code()),
                l.open_deals,
                l.open_value,
                l.weighted_value
            ))
            .collect::<Vec<_>>(),
        vec![
            (sa, None, 1, Decimal::ZERO, Decimal::ZERO),
            (
                sb,
                Some("EUR"),
                1,
                Decimal::new(1001, 2),
                Decimal::new(5005, 3)
            ),
        ],
        "summary lines"
    );
    Ok(())
}

/// F2 atomicity: a fault before any write of create and move_to_stage leaves nothing.
pub async fn atomicity(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let (f, deals, p) = (&d.f, &d.deals, &d.default);
    let a = &f.admin;
    let c = f.person(a, "At", "Om").await?;
    let mut n = NewDeal::new("Atomic", p.id);
    n.amount = Some(eur("99"));
    n.contacts = vec![(c.id, DealRole::Champion)];
    n.custom
        .insert("tier".into(), CustomValue::Choice("a".into()));
    let created = fail_at_every_write(&d, "deals().create", async || {
        deals.create(a, n.clone()).await
    })
    .await?;
    let moved = fail_at_every_write(&d, "deals().move_to_stage", async || {
        deals
            .move_to_stage(
                a,
                created.id,
                created.version,
                stage_named(p, "Lost"),
                Some(LostReasonInput::Text("budget".into())),
            )
            .await
    })
    .await?;
    ensure_eq!(
        deals.stage_history(a, moved.id).await.at("history")?.len(),
        2,
        "one history entry per successful command"
    );
    Ok(())
}

async fn fail_at_every_write<T: fmt::Debug>(
    d: &DealFixture,
    what: &str,
    cmd: impl AsyncFn() -> crmkit_core::Result<T>,
) -> CheckResult<T> {
    let (n, v) = d.f.fail_at_every_write_no_trace(what, cmd).await?;
    ensure!(n >= 4, "{what}: succeeded after only {n} writes");
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

/// A command of [`history_properties`].
#[derive(Debug, Clone)]
pub enum MoveCmd {
    /// Move to stage `n` of the 8 stages of the two pipelines (another pipeline's stage
    /// goes through `move_to_pipeline`).
    Move(usize),
    /// Move to the other pipeline, letting it pick the stage.
    OtherPipeline,
    /// Advance the clock by this many seconds.
    Wait(u32),
    /// Set the amount (cents).
    Amount(u32),
}

fn move_cmd() -> impl Strategy<Value = MoveCmd> {
    prop_oneof![
        4 => (0usize..8).prop_map(MoveCmd::Move),
        1 => Just(MoveCmd::OtherPipeline),
        3 => (1u32..200_000).prop_map(MoveCmd::Wait),
        1 => (0u32..10_000_000).prop_map(MoveCmd::Amount),
    ]
}

/// One case of [`history_properties`]: runs the commands on a deal and checks that its
/// history is contiguous, that the time in stages sums to its lifetime, and that its
/// stage belongs to its pipeline after every command.
pub async fn history_case(store: &Store, cmds: &[MoveCmd]) -> CheckResult {
    let d = setup(store).await?;
    let deals = &d.deals;
    let t0 = Utc
        .with_ymd_and_hms(2030, 6, 1, 0, 0, 0)
        .single()
        .expect("t0");
    let clock = Arc::new(ManualClock::new(t0));
    let a = d.f.admin.clone().with_clock(clock.clone());
    let p1 = deals
        .pipelines()
        .create(&a, test_pipeline("P1"))
        .await
        .at("p1")?;
    let p2 = deals
        .pipelines()
        .create(&a, test_pipeline("P2"))
        .await
        .at("p2")?;
    let stages: Vec<_> = p1.stages.iter().chain(&p2.stages).cloned().collect();
    let mut n = NewDeal::new("Moving", p1.id);
    n.amount = Some(eur("10"));
    let mut deal = deals.create(&a, n).await.at("create")?;
    for cmd in cmds {
        let r = match cmd {
            MoveCmd::Wait(s) => {
                clock.advance(Duration::seconds(i64::from(*s)));
                continue;
            }
            MoveCmd::Amount(c) => {
                deals
                    .update(
                        &a,
                        deal.id,
                        deal.version,
                        DealPatch {
                            amount: Some(Some(
                                Money::new(
                                    Decimal::new(i64::from(*c), 2),
                                    crmkit_core::Currency::parse("EUR").at("EUR")?,
                                )
                                .at("money")?,
                            )),
                            ..Default::default()
                        },
                    )
                    .await
            }
            MoveCmd::Move(i) => {
                let s = &stages[*i];
                let reason = (s.kind == StageKind::Lost).then(|| LostReasonInput::Text("r".into()));
                if s.pipeline == deal.pipeline {
                    deals
                        .move_to_stage(&a, deal.id, deal.version, s.id, reason)
                        .await
                } else {
                    deals
                        .move_to_pipeline(&a, deal.id, deal.version, s.pipeline, Some(s.id))
                        .await
                }
            }
            MoveCmd::OtherPipeline => {
                let to = if deal.pipeline == p1.id { p2.id } else { p1.id };
                deals
                    .move_to_pipeline(&a, deal.id, deal.version, to, None)
                    .await
            }
        };
        match r {
            Ok(x) => deal = x,
            Err(Error::InvalidTransition { .. }) | Err(Error::Validation(_)) => {
                ensure_eq!(
                    deals.get(&a, deal.id).await.at("get")?,
                    deal.clone(),
                    "a rejected {cmd:?} changed the deal"
                );
            }
            Err(e) => return Err(Failure::new(format!("{cmd:?}: {e:?}"))),
        }
        let stored = deals.get(&a, deal.id).await.at("get")?;
        ensure_eq!(stored, deal.clone(), "stored deal after {cmd:?}");
        let pipe = if deal.pipeline == p1.id { &p1 } else { &p2 };
        ensure!(
            pipe.stage(deal.stage).is_some(),
            "stage {:?} is not of pipeline {:?}",
            deal.stage,
            deal.pipeline
        );
        ensure_eq!(
            deal.status(),
            pipe.stage(deal.stage).map(|s| s.kind).expect("stage"),
            "status follows the stage kind"
        );
    }
    let h = deals.stage_history(&a, deal.id).await.at("history")?;
    ensure_eq!(h[0].from_stage, None, "first entry");
    ensure_eq!(h[0].at, deal.created_at, "first entry at creation");
    let mut secs = 0i64;
    for (i, e) in h.iter().enumerate() {
        ensure_eq!(e.seq, i as u64 + 1, "seq");
        let pipe = if e.pipeline == p1.id { &p1 } else { &p2 };
        ensure!(
            pipe.stage(e.to_stage).is_some(),
            "history stage of its pipeline"
        );
        ensure_eq!(
            Some(e.to_kind),
            pipe.stage(e.to_stage).map(|s| s.kind),
            "kind at the time"
        );
        if i > 0 {
            ensure_eq!(e.from_stage, Some(h[i - 1].to_stage), "contiguous at {i}");
            ensure_eq!(
                e.seconds_in_previous,
                Some((e.at - h[i - 1].at).num_seconds()),
                "time in the previous stage"
            );
            secs += e.seconds_in_previous.unwrap_or(0);
        }
    }
    let last = h.last().expect("entries");
    ensure_eq!(last.to_stage, deal.stage, "ends at the current stage");
    ensure_eq!(last.at, deal.stage_entered_at, "entered at the last move");
    secs += (a.now() - deal.stage_entered_at).num_seconds();
    ensure_eq!(
        secs,
        (a.now() - deal.created_at).num_seconds(),
        "time in stages sums to the lifetime"
    );
    Ok(())
}

/// Property: after random sequences of moves, pipeline changes, waits and amount
/// changes, a deal's stage history is contiguous, its time in stages sums to its
/// lifetime, and its stage belongs to its pipeline (proptest, 12 cases).
pub fn history_properties<F, Fut>(factory: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = crmkit_core::Result<Store>>,
{
    run_property(
        "property",
        factory,
        proptest::collection::vec(move_cmd(), 1..25),
        (12, 50),
        |s, cmds| Box::pin(async move { history_case(s, &cmds).await }),
    )
}

/// A deal of [`weighted_totals`]: amount in 10^-4 units (none when negative), USD or
/// EUR, open stage 0 or 1 (2: won), probability override.
pub type DealSpec = (i64, bool, usize, Option<u8>);

/// One case of [`weighted_totals`].
pub async fn weighted_case(store: &Store, specs: &[DealSpec]) -> CheckResult {
    let d = setup(store).await?;
    let (a, deals) = (&d.f.admin, &d.deals);
    let p = deals
        .pipelines()
        .create(a, test_pipeline("Sum"))
        .await
        .at("p")?;
    type Key = (usize, Option<&'static str>);
    let mut want: BTreeMap<Key, (u64, Decimal, Decimal)> = BTreeMap::new();
    for (units, usd_cur, stage, prob) in specs {
        let cur = if *usd_cur { "USD" } else { "EUR" };
        let amount = (*units >= 0).then(|| {
            Money::new(
                Decimal::new(*units, 4),
                crmkit_core::Currency::parse(cur).expect("currency"),
            )
            .expect("money")
        });
        let mut n = NewDeal::new("w", p.id);
        n.amount = amount;
        n.probability = *prob;
        n.stage = Some(p.stages[*stage].id);
        deals.create(a, n).await.at("create")?;
        if *stage == 2 {
            continue;
        }
        let e = want
            .entry((*stage, amount.map(|m| m.currency().code())))
            .or_default();
        e.0 += 1;
        if let Some(m) = amount {
            let pr = prob.unwrap_or(p.stages[*stage].probability);
            e.1 += m.amount();
            e.2 += m.amount() * Decimal::from(pr) / Decimal::from(100);
        }
    }
    let sum = deals.summary(a, p.id).await.at("summary")?;
    let got: BTreeMap<Key, (u64, Decimal, Decimal)> = sum
        .lines
        .iter()
        .map(|l| {
            let i = p
                .stages
                .iter()
                .position(|s| s.id == l.stage)
                .expect("stage");
            (
                (i, l.currency.map(|c| c.code())),
                (l.open_deals, l.open_value, l.weighted_value),
            )
        })
        .collect();
    let norm =
        |m: BTreeMap<Key, (u64, Decimal, Decimal)>| -> BTreeMap<Key, (u64, Decimal, Decimal)> {
            m.into_iter()
                .map(|(k, (c, v, w))| (k, (c, v.normalize(), w.normalize())))
                .collect()
        };
    ensure_eq!(norm(got), norm(want), "summary equals the exact Rust sums");
    Ok(())
}

/// Property: the pipeline summary's open and weighted values equal the exact Decimal
/// sums computed in Rust (proptest, 10 cases of up to 30 deals).
pub fn weighted_totals<F, Fut>(factory: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = crmkit_core::Result<Store>>,
{
    let spec = (
        prop_oneof![1 => Just(-1i64), 6 => 0i64..9_999_999_999_999_999],
        any::<bool>(),
        0usize..3,
        proptest::option::of(0u8..=100),
    );
    run_property(
        "property",
        factory,
        proptest::collection::vec(spec, 1..30),
        (10, 50),
        |s, specs| Box::pin(async move { weighted_case(s, &specs).await }),
    )
}

// ---------------------------------------------------------------------------------------
// Composition
// ---------------------------------------------------------------------------------------

/// The modules the checks need: core, contacts and pipeline.
pub fn modules() -> crmkit_core::Result<crmkit_core::Modules> {
    crate::pipeline_leads::modules()
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every async check of this module by name. [`atomicity`] injects faults: run it alone
    /// on its store. The property tests are separate (sync).
    names: pipeline_deals_check_names,
    checks: [
        default_pipeline,
        crud_round_trip,
        bad_input,
        close_and_reopen,
        required_fields,
        pipelines_and_stages,
        visibility,
        analytics_queries,
        atomicity,
        reference_rule,
    ],
}

/// The one reference rule for a deal's references, typed: as a Rep, a deal whose contact
/// roles name a contact hidden from the Rep, a deleted one or another tenant's fails with
/// exactly the error of one naming a contact that does not exist, on create and on
/// update; so does an organization or a campaign hidden from the Rep. Nothing is written;
/// records the Rep sees are accepted.
pub async fn reference_rule(store: &Store) -> CheckResult {
    let d = setup(store).await?;
    let f = &d.f;
    let other = crate::contacts::setup(store).await?;
    let rep = &f.rep_y;
    let campaigns = Campaigns::new(store).at("Campaigns::new")?;
    let UnreachableContacts {
        hidden,
        gone,
        foreign,
    } = f.unreachable_contacts(rep, &other, "Ref").await?;
    let mine = f.person(rep, "Mine", "Ref").await?;
    let hidden_org = f.org(&f.admin, "Hidden Org").await?;
    let hidden_campaign = campaigns
        .create(&f.admin, NewCampaign::named("Hidden", CampaignKind::Email))
        .await
        .at("hidden campaign")?;
    let deal = d
        .deals
        .create(rep, NewDeal::new("Rep's deal", d.default.id))
        .await
        .at("rep's deal")?;
    let with_contact = |c: ContactId| {
        let mut n = NewDeal::new("Roles", d.default.id);
        n.contacts = vec![(mine.id, DealRole::Champion), (c, DealRole::DecisionMaker)];
        n
    };
    let roles_patch = |c: ContactId| DealPatch {
        contacts: Some(vec![
            (mine.id, DealRole::Champion),
            (c, DealRole::DecisionMaker),
        ]),
        ..Default::default()
    };
    let before = f.rows_and_seq().await?;
    let missing = ContactId::new();
    let none_create = validation_reasons(&d.deals.create(rep, with_contact(missing)).await);
    let none_update = validation_reasons(
        &d.deals
            .update(rep, deal.id, deal.version, roles_patch(missing))
            .await,
    );
    ensure!(
        none_create
            .as_ref()
            .is_some_and(|v| v.iter().any(|(f, _)| f == "contacts[1]")),
        "a missing contact in the roles: {none_create:?}"
    );
    ensure!(
        none_update.is_some(),
        "a missing contact in updated roles: {none_update:?}"
    );
    for (what, id) in [
        ("hidden", hidden.id),
        ("deleted", gone.id),
        ("another tenant's", foreign.id),
    ] {
        let got = validation_reasons(&d.deals.create(rep, with_contact(id)).await);
        ensure_eq!(
            got,
            none_create,
            "create with a {what} contact in the roles vs a missing one"
        );
        let got = validation_reasons(
            &d.deals
                .update(rep, deal.id, deal.version, roles_patch(id))
                .await,
        );
        ensure_eq!(
            got,
            none_update,
            "update with a {what} contact in the roles vs a missing one"
        );
    }
    for (field, hidden_one, missing_one) in [
        (
            "organization",
            NewDeal {
                organization: Some(hidden_org.id),
                ..NewDeal::new("Org", d.default.id)
            },
            NewDeal {
                organization: Some(crmkit_core::OrganizationId::new()),
                ..NewDeal::new("Org", d.default.id)
            },
        ),
        (
            "campaign",
            NewDeal {
                campaign: Some(hidden_campaign.id),
                ..NewDeal::new("Campaign", d.default.id)
            },
            NewDeal {
                campaign: Some(crmkit_core::CampaignId::new()),
                ..NewDeal::new("Campaign", d.default.id)
            },
        ),
    ] {
        let none = validation_reasons(&d.deals.create(rep, missing_one).await);
        ensure!(
            none.as_ref()
                .is_some_and(|v| v.iter().any(|(f, _)| f == field)),
            "a missing {field}: {none:?}"
        );
        let got = validation_reasons(&d.deals.create(rep, hidden_one).await);
        ensure_eq!(got, none, "a hidden {field} vs a missing one");
    }
    ensure_eq!(
        f.rows_and_seq().await?,
        before,
        "refused references wrote nothing"
    );
    d.deals
        .update(
            rep,
            deal.id,
            deal.version,
            roles_patch(f.person(rep, "Also mine", "Ref").await?.id),
        )
        .await
        .at("roles the rep sees")?;
    Ok(())
}

/// The events a record got, for debugging failed checks.
pub async fn events_of(store: &Store, ctx: &Ctx, record: &RecordRef) -> CheckResult<Vec<String>> {
    let ev = store.events_since(ctx, 0, 1000).await.at("events")?;
    Ok(ev
        .into_iter()
        .filter(|e| e.record == *record)
        .map(|e| e.kind)
        .collect())
}
