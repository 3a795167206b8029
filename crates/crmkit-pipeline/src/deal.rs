//! Pipelines, stages and deals with their stage history.

use chrono::{DateTime, NaiveDate, Utc};
use crmkit_core::store::TableDef;
use crmkit_core::{
    CampaignId, Changeset, ContactId, Ctx, CustomValues, DealId, Error, Money, OrganizationId,
    PipelineId, Result, StageId, Store, TeamId, UserId,
};
use serde::{Deserialize, Serialize};

/// Event kinds this part emits.
pub const EVENT_KINDS: &[&str] = &[];

pub(crate) fn tables() -> Vec<TableDef> {
    vec![]
}

/// The role a contact plays in a deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealRole {
    /// Signs off.
    DecisionMaker,
    /// Sells for us inside the customer.
    Champion,
    /// Shapes the decision.
    Influencer,
    /// Anything else.
    Other,
}

/// Where a deal or lead came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A web form.
    WebForm,
    /// A campaign.
    Campaign,
    /// A referral.
    Referral,
    /// An import.
    Import,
    /// An inbound call.
    InboundCall,
    /// An event.
    Event,
    /// A partner.
    Partner,
    /// Anything else.
    #[default]
    Other,
}

/// Input for a new deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeal {
    /// Title.
    pub title: String,
    /// Amount (not negative).
    pub amount: Option<Money>,
    /// Expected close date.
    pub expected_close: Option<NaiveDate>,
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The stage (of that pipeline); its first stage when absent.
    pub stage: Option<StageId>,
    /// Owner; the actor when absent.
    pub owner: Option<UserId>,
    /// Owning team.
    pub team: Option<TeamId>,
    /// The customer organization.
    pub organization: Option<OrganizationId>,
    /// Contacts and their roles.
    pub contacts: Vec<(ContactId, DealRole)>,
    /// Source.
    pub source: Source,
    /// The campaign that sourced it.
    pub campaign: Option<CampaignId>,
    /// Probability override (0-100); the stage's when absent.
    pub probability: Option<u8>,
    /// Next step.
    pub next_step: Option<String>,
    /// Custom values.
    pub custom: CustomValues,
}

/// A deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// Id.
    pub id: DealId,
    /// Title.
    pub title: String,
    /// Amount.
    pub amount: Option<Money>,
    /// Expected close date.
    pub expected_close: Option<NaiveDate>,
    /// Pipeline.
    pub pipeline: PipelineId,
    /// Current stage.
    pub stage: StageId,
    /// Owner.
    pub owner: UserId,
    /// Team.
    pub team: Option<TeamId>,
    /// Organization.
    pub organization: Option<OrganizationId>,
    /// Contacts and roles.
    pub contacts: Vec<(ContactId, DealRole)>,
    /// Source.
    pub source: Source,
    /// Campaign.
    pub campaign: Option<CampaignId>,
    /// Probability override.
    pub probability_override: Option<u8>,
    /// Effective probability (the override or the stage's).
    pub probability: u8,
    /// Next step.
    pub next_step: Option<String>,
    /// Lost reason (when lost).
    pub lost_reason: Option<String>,
    /// When it was won.
    pub won_at: Option<DateTime<Utc>>,
    /// When it was lost.
    pub lost_at: Option<DateTime<Utc>>,
    /// When it entered its current stage.
    pub stage_entered_at: DateTime<Utc>,
    /// Custom values.
    pub custom: CustomValues,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Changed.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version.
    pub version: u64,
}

/// The deals API.
#[derive(Clone, Debug)]
pub struct Deals {
    store: Store,
}

impl Deals {
    /// The API over a store composed with the pipeline module.
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("pipeline")?;
        Ok(Deals {
            store: store.clone(),
        })
    }

    /// Validates a new deal and adds its writes to `cs` without committing (lead
    /// conversion uses it). Contacts and the organization may be staged in the same
    /// changeset: pass their ids, and list them in `staged` so that existence checks
    /// accept them.
    pub async fn stage_deal(
        &self,
        ctx: &Ctx,
        input: &NewDeal,
        staged: &[crmkit_core::RecordRef],
        cs: &mut Changeset,
    ) -> Result<Deal> {
        let _ = (ctx, input, staged, cs, &self.store);
        Err(Error::Config("deals are being written".into()))
    }
}
