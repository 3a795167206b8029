//! The action kinds the sales module offers to automation rules (see
//! [`crmkit_core::action`]): each runs one typed command, so a rule's change is the same
//! command as a user's (validation, access as the rule's owner, history, events).
//!
//! | kind | params | on | what |
//! |---|---|---|---|
//! | `deal.move_to_stage` | `{"stage": <stage id>}` | deal | [`Deals::move_to_stage`] (nothing when the deal is in the stage) |
//! | `lead.set_status` | `{"status": "qualified"}` | lead | [`Leads::set_status`] (nothing when it has the status) |
//! | `lead.set_score` | `{"score": 40}` | lead | [`Leads::set_score`] (nothing when it has the score) |
//! | `campaign.add_member` | `{"campaign": <campaign id>}` | lead, contact | [`Campaigns::add_member`] as targeted (nothing when a member) |
//!
//! The automation module's built-in `move_deal_to_stage`, `set_lead_status`,
//! `set_lead_score` and `add_to_campaign` actions run through these.

use std::sync::Arc;

use crmkit_core::action::CustomAction;
use crmkit_core::store::BoxFuture;
use crmkit_core::{
    CampaignId, Ctx, DealId, Error, LeadId, RecordRef, Result, StageId, Store, ValidationErrors,
};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::campaign::{Campaigns, MemberStatus};
use crate::deal::Deals;
use crate::lead::{LeadStatus, Leads};

/// The action kinds of this module.
pub fn actions() -> Vec<Arc<dyn CustomAction>> {
    vec![
        Arc::new(MoveDeal),
        Arc::new(LeadStatusAction),
        Arc::new(LeadScore),
        Arc::new(AddMember),
    ]
}

/// Parameter `name` of `params`, as `T`.
fn param<T: DeserializeOwned>(params: &Json, name: &str, what: &str) -> Result<T> {
    match params.get(name) {
        None | Some(Json::Null) => Err(Error::validation(name, "is required")),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| Error::validation(name, format!("must be {what}"))),
    }
}

fn check<T: DeserializeOwned>(params: &Json, name: &str, what: &str) -> Result<()> {
    let mut errs = ValidationErrors::new();
    if let Err(Error::Validation(v)) = param::<T>(params, name, what) {
        errs.errors.extend(v.errors);
    }
    errs.into_result()
}

fn target<'a>(record: Option<&'a RecordRef>, kinds: &[&str]) -> Result<&'a RecordRef> {
    record
        .filter(|r| kinds.contains(&r.kind.as_str()))
        .ok_or_else(|| {
            Error::validation(
                "record",
                format!("the action runs on a record of kind {}", kinds.join(" or ")),
            )
        })
}

struct MoveDeal;

impl CustomAction for MoveDeal {
    fn kind(&self) -> &'static str {
        "deal.move_to_stage"
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        record_kind == Some("deal")
    }

    fn validate(&self, params: &Json) -> Result<()> {
        check::<StageId>(params, "stage", "a stage id")
    }

    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a Json,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let stage: StageId = param(params, "stage", "a stage id")?;
            let id = DealId::from_uuid(target(record, &["deal"])?.id);
            let deals = Deals::new(store)?;
            let deal = deals.get(ctx, id).await?;
            if deal.stage == stage {
                return Ok("the deal is in the stage already".into());
            }
            deals
                .move_to_stage(ctx, id, deal.version, stage, None)
                .await?;
            Ok(format!("moved the deal to stage {stage}"))
        })
    }
}

struct LeadStatusAction;

impl CustomAction for LeadStatusAction {
    fn kind(&self) -> &'static str {
        "lead.set_status"
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        record_kind == Some("lead")
    }

    fn validate(&self, params: &Json) -> Result<()> {
        check::<LeadStatus>(params, "status", "a lead status")
    }

    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a Json,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let status: LeadStatus = param(params, "status", "a lead status")?;
            let id = LeadId::from_uuid(target(record, &["lead"])?.id);
            let leads = Leads::new(store)?;
            let lead = leads.get(ctx, id).await?;
            if lead.status == status {
                return Ok("the lead has the status already".into());
            }
            leads
                .set_status(ctx, id, lead.version, status, None)
                .await?;
            Ok(format!("set the lead's status to {status:?}").to_lowercase())
        })
    }
}

struct LeadScore;

impl CustomAction for LeadScore {
    fn kind(&self) -> &'static str {
        "lead.set_score"
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        record_kind == Some("lead")
    }

    fn validate(&self, params: &Json) -> Result<()> {
        check::<i64>(params, "score", "a whole number")
    }

    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a Json,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let score: i64 = param(params, "score", "a whole number")?;
            let id = LeadId::from_uuid(target(record, &["lead"])?.id);
            let leads = Leads::new(store)?;
            let lead = leads.get(ctx, id).await?;
            if lead.score == score {
                return Ok("the lead has the score already".into());
            }
            leads.set_score(ctx, id, lead.version, score).await?;
            Ok(format!("set the lead's score to {score}"))
        })
    }
}

struct AddMember;

impl CustomAction for AddMember {
    fn kind(&self) -> &'static str {
        "campaign.add_member"
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        matches!(record_kind, Some("lead" | "contact"))
    }

    fn validate(&self, params: &Json) -> Result<()> {
        check::<CampaignId>(params, "campaign", "a campaign id")
    }

    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a Json,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let campaign: CampaignId = param(params, "campaign", "a campaign id")?;
            let member = target(record, &["lead", "contact"])?;
            let campaigns = Campaigns::new(store)?;
            match campaigns
                .add_member(ctx, campaign, member.clone(), MemberStatus::Targeted)
                .await
            {
                Ok(_) => Ok(format!("added the {} to campaign {campaign}", member.kind)),
                // A member already: nothing to do (or a concurrent run won, which the
                // engine tells by the run log).
                Err(Error::Duplicate { .. }) => Ok("a member already".into()),
                Err(e) => Err(e),
            }
        })
    }
}
