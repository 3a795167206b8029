//! The [`KindFixture`]s of the pipeline module's kinds (`lead`, `deal`, `campaign`,
//! `pipeline`), for the generic record checks in [`crate::records`].

use crmkit_core::store::BoxFuture;
use crmkit_core::{CampaignId, DealId, LeadId, PipelineId};
use crmkit_pipeline::campaign::{CampaignPatch, CampaignStatus, Campaigns};
use crmkit_pipeline::deal::{DealPatch, Deals};
use crmkit_pipeline::lead::{LeadPatch, Leads};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::check::{At, CheckResult};
use crate::contacts::Fixture;
use crate::records::KindFixture;

/// The pipeline module's fixtures.
pub fn all() -> Vec<KindFixture> {
    vec![lead(), deal(), campaign(), pipeline()]
}

/// `lead`: a fresh email per body; the patch sets the job title and clears the company.
pub fn lead() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "first_name": "Katherine",
                "last_name": "Johnson",
                "emails": [{"address": format!("kj.{}@nasa.test", Uuid::now_v7().simple())}],
                "phones": [{"number": "+4930901820", "label": "work"}],
                "company": "NASA",
                "domain": "nasa.test",
                "employee_count": 1000,
                "source": "referral",
                "status": "contacted",
                "score": 7,
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Leads::new(&f.store)
                .at("Leads::new")?
                .update(
                    &f.admin,
                    LeadId::from_uuid(id),
                    v,
                    LeadPatch {
                        job_title: Some(Some("Mathematician".into())),
                        company: Some(None),
                        ..Default::default()
                    },
                )
                .await
                .at("typed lead patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "lead",
        body,
        patch: || json!({"job_title": "Mathematician", "company": null}),
        typed_patch: typed,
    }
}

/// `deal`: in the tenant's default pipeline; the patch retitles, sets the probability
/// override (which changes the computed probability too) and clears the next step.
pub fn deal() -> KindFixture {
    fn body(f: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            let pipeline = Deals::new(&f.store)
                .at("Deals::new")?
                .pipelines()
                .ensure_default(&f.admin)
                .await
                .at("default pipeline")?;
            Ok(json!({
                "title": "Mainframe upgrade",
                "pipeline": pipeline.id,
                "amount": {"amount": "125000.5", "currency": "EUR"},
                "expected_close": "2031-03-31",
                "source": "web_form",
                "next_step": "Send the proposal",
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Deals::new(&f.store)
                .at("Deals::new")?
                .update(
                    &f.admin,
                    DealId::from_uuid(id),
                    v,
                    DealPatch {
                        title: Some("Mainframe upgrade, phase 2".into()),
                        probability: Some(Some(55)),
                        next_step: Some(None),
                        ..Default::default()
                    },
                )
                .await
                .at("typed deal patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "deal",
        body,
        patch: || {
            json!({
                "title": "Mainframe upgrade, phase 2",
                "probability_override": 55,
                "next_step": null,
            })
        },
        typed_patch: typed,
    }
}

/// `campaign`: the patch activates it and sets a description.
pub fn campaign() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "name": "Spring webinar series",
                "kind": "webinar",
                "start_date": "2030-03-01",
                "end_date": "2030-05-31",
                "budget": {"amount": "5000", "currency": "EUR"},
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Campaigns::new(&f.store)
                .at("Campaigns::new")?
                .update(
                    &f.admin,
                    CampaignId::from_uuid(id),
                    v,
                    CampaignPatch {
                        status: Some(CampaignStatus::Active),
                        description: Some(Some("Three sessions".into())),
                        ..Default::default()
                    },
                )
                .await
                .at("typed campaign patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "campaign",
        body,
        patch: || json!({"status": "active", "description": "Three sessions"}),
        typed_patch: typed,
    }
}

/// `pipeline`: two open stages (one rotting, one requiring an amount), a won and a lost
/// stage; the patch renames it.
pub fn pipeline() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "name": "Enterprise",
                "currency": "EUR",
                "stages": [
                    {"name": "Discovery", "probability": 10, "kind": "open", "rotting_days": 30},
                    {"name": "Proposal", "probability": 50, "kind": "open", "required_fields": ["amount"]},
                    {"name": "Won", "probability": 100, "kind": "won"},
                    {"name": "Lost", "probability": 0, "kind": "lost"},
                ],
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Deals::new(&f.store)
                .at("Deals::new")?
                .pipelines()
                .rename(&f.admin, PipelineId::from_uuid(id), v, "Enterprise (EMEA)")
                .await
                .at("typed pipeline rename")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "pipeline",
        body,
        patch: || json!({"name": "Enterprise (EMEA)"}),
        typed_patch: typed,
    }
}
