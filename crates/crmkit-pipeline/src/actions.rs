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

use crmkit_core::action::{ActionCall, CustomAction, RecordAction};
use crmkit_core::store::BoxFuture;
use crmkit_core::{CampaignId, DealId, Error, LeadId, RecordRef, Result, StageId};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::campaign::{Campaigns, MemberStatus};
use crate::deal::Deals;
use crate::lead::{LeadStatus, Leads};

/// The action kinds of this module.
pub fn actions() -> Vec<Arc<dyn CustomAction>> {
    vec![
        Arc::new(RecordAction {
            kind: "deal.move_to_stage",
            on: &["deal"],
            params: |p| param::<StageId>(p, "stage", "a stage id"),
            run: move_deal,
        }),
        Arc::new(RecordAction {
            kind: "lead.set_status",
            on: &["lead"],
            params: |p| param::<LeadStatus>(p, "status", "a lead status"),
            run: set_lead_status,
        }),
        Arc::new(RecordAction {
            kind: "lead.set_score",
            on: &["lead"],
            params: |p| param::<i64>(p, "score", "a whole number"),
            run: set_lead_score,
        }),
        Arc::new(RecordAction {
            kind: "campaign.add_member",
            on: &["lead", "contact"],
            params: |p| param::<CampaignId>(p, "campaign", "a campaign id"),
            run: add_member,
        }),
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

fn move_deal(a: ActionCall<'_, StageId>) -> BoxFuture<'_, Result<String>> {
    Box::pin(async move {
        let stage = a.params;
        let id = DealId::from_uuid(target(a.record, &["deal"])?.id);
        let deals = Deals::new(a.store)?;
        let deal = deals.get(a.ctx, id).await?;
        if deal.stage == stage {
            return Ok("the deal is in the stage already".into());
        }
        deals
            .move_to_stage(a.ctx, id, deal.version, stage, None)
            .await?;
        Ok(format!("moved the deal to stage {stage}"))
    })
}

fn set_lead_status(a: ActionCall<'_, LeadStatus>) -> BoxFuture<'_, Result<String>> {
    Box::pin(async move {
        let status = a.params;
        let id = LeadId::from_uuid(target(a.record, &["lead"])?.id);
        let leads = Leads::new(a.store)?;
        let lead = leads.get(a.ctx, id).await?;
        if lead.status == status {
            return Ok("the lead has the status already".into());
        }
        leads
            .set_status(a.ctx, id, lead.version, status, None)
            .await?;
        Ok(format!("set the lead's status to {status:?}").to_lowercase())
    })
}

fn set_lead_score(a: ActionCall<'_, i64>) -> BoxFuture<'_, Result<String>> {
    Box::pin(async move {
        let score = a.params;
        let id = LeadId::from_uuid(target(a.record, &["lead"])?.id);
        let leads = Leads::new(a.store)?;
        let lead = leads.get(a.ctx, id).await?;
        if lead.score == score {
            return Ok("the lead has the score already".into());
        }
        leads.set_score(a.ctx, id, lead.version, score).await?;
        Ok(format!("set the lead's score to {score}"))
    })
}

fn add_member(a: ActionCall<'_, CampaignId>) -> BoxFuture<'_, Result<String>> {
    Box::pin(async move {
        let campaign = a.params;
        let member = target(a.record, &["lead", "contact"])?;
        let campaigns = Campaigns::new(a.store)?;
        match campaigns
            .add_member(a.ctx, campaign, member.clone(), MemberStatus::Targeted)
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
