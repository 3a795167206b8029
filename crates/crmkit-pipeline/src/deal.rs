//! Pipelines, stages and deals with their stage history.
//!
//! A tenant has one or more [`Pipeline`]s, each with ordered [`Stage`]s (a win probability
//! 0-100, a kind open / won / lost, an optional "rotting" threshold in days, and fields a
//! deal must have before it may enter). A [`Deal`] sits in one stage of one pipeline;
//! every move appends a [`StageChange`] to its append-only stage history, in the same
//! changeset as the deal's update, its audit entries and its event.
//!
//! Money stays exact: a deal's amount is stored as an integer count of 10^-4 units, and a
//! denormalised `weighted_x100` column holds amount units × effective probability, kept in
//! step in every changeset that changes either. So the open and weighted values of
//! [`Deals::summary`] are plain SQL sums of integers, exact on every backend:
//! the weighted value is `Σ weighted_x100 / 10^6`, with no rounding at all (it has at most
//! six digits after the decimal point; round it to the currency with
//! [`crmkit_core::Money::round`] for display).
//!
//! Reads follow the contacts rules: Admin and Manager see every deal, a Rep and a ReadOnly
//! user the deals they own or their team owns, in lists and summaries too; anything not
//! visible is [`Error::NotFound`]. Pipelines are tenant settings: everybody reads them,
//! Admin and Manager change them.

mod pipelines;
pub use crate::kinds::PipelinePatch;
pub use pipelines::{Pipelines, REQUIRABLE_FIELDS};
pub mod rows;

use crmkit_core::service::{
    self, OwnerChecks, apply_custom_patch, changed_columns, json_text, stage_insert, stage_update,
    to_json, visibility_scope,
};
use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use crmkit_core::record::reference_reason;
use crmkit_core::store::{Cond, OrderKey, Select, TableDef, Value, Write};
use crmkit_core::{
    AuditChange, CampaignId, Changeset, ContactId, Ctx, CustomSchema, CustomValue, CustomValues,
    DealId, Error, Filter, LostReasonId, Money, NewEvent, OrganizationId, Page, PipelineId, Query,
    RecordKind, RecordRef, Result, StageId, Store, TeamId, UserId, ValidationErrors,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use rows::{
    CLOSE_HISTORY_TABLE, DEAL_CONTACT_TABLE, DEAL_FIELDS, DEAL_TABLE, HISTORY_TABLE,
    LOST_REASON_TABLE,
};

/// Event kinds this part emits.
pub const EVENT_KINDS: &[&str] = &[
    "deal.created",
    "deal.updated",
    "deal.moved",
    "deal.deleted",
    "deal.restored",
    "pipeline.created",
    "pipeline.updated",
    "lost_reason.added",
    "lost_reason.removed",
];

pub(crate) fn tables() -> Vec<TableDef> {
    rows::tables()
}

/// The record kind of pipelines (their ids are [`PipelineId`]s).
pub const PIPELINE_KIND: RecordKind = RecordKind::new("pipeline");
/// The record kind of stages.
pub const STAGE_KIND: RecordKind = RecordKind::new("stage");
/// The record kind of managed lost reasons.
pub const LOST_REASON_KIND: RecordKind = RecordKind::new("lost_reason");

/// The largest deal amount (below 10^12 units of its currency), so that amount × 100 in
/// storage units fits a 64-bit integer.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Longest deal title.
pub const MAX_TITLE: usize = 200;
/// Most stages a pipeline may have.
pub const MAX_STAGES: usize = 50;

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

impl DealRole {
    /// Every role's name.
    pub const NAMES: &'static [&'static str] =
        &["decision_maker", "champion", "influencer", "other"];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DealRole::DecisionMaker => "decision_maker",
            DealRole::Champion => "champion",
            DealRole::Influencer => "influencer",
            DealRole::Other => "other",
        }
    }

    /// Parses a role name; anything else is a Validation error on `role`.
    pub fn parse(s: &str) -> Result<DealRole> {
        Ok(match s {
            "decision_maker" => DealRole::DecisionMaker,
            "champion" => DealRole::Champion,
            "influencer" => DealRole::Influencer,
            "other" => DealRole::Other,
            _ => {
                return Err(Error::validation(
                    "role",
                    format!("{s:?} is not one of {}", Self::NAMES.join(", ")),
                ));
            }
        })
    }

    /// Reads contact roles from JSON (`[["<contact id>", "champion"], ...]`, as
    /// [`NewDeal::contacts`] serialises); an unknown role or malformed id is a Validation
    /// error naming the entry.
    pub fn contacts_from_json(json: &str) -> Result<Vec<(ContactId, DealRole)>> {
        let raw: Vec<(String, String)> = serde_json::from_str(json)
            .map_err(|e| Error::validation("contacts", format!("is not a list of pairs: {e}")))?;
        let mut errs = ValidationErrors::new();
        let mut out = vec![];
        for (i, (c, r)) in raw.iter().enumerate() {
            let id = errs.check(ContactId::parse(&format!("contacts[{i}].contact"), c));
            let role = match DealRole::parse(r) {
                Ok(r) => Some(r),
                Err(_) => {
                    errs.push(
                        format!("contacts[{i}].role"),
                        format!("{r:?} is not a role"),
                    );
                    None
                }
            };
            if let (Some(id), Some(role)) = (id, role) {
                out.push((id, role));
            }
        }
        errs.into_result()?;
        Ok(out)
    }
}

impl std::str::FromStr for DealRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DealRole::parse(s)
    }
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

impl Source {
    /// Every source's stored name.
    pub const NAMES: &'static [&'static str] = &[
        "web_form",
        "campaign",
        "referral",
        "import",
        "inbound_call",
        "event",
        "partner",
        "other",
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::WebForm => "web_form",
            Source::Campaign => "campaign",
            Source::Referral => "referral",
            Source::Import => "import",
            Source::InboundCall => "inbound_call",
            Source::Event => "event",
            Source::Partner => "partner",
            Source::Other => "other",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Source> {
        Some(match s {
            "web_form" => Source::WebForm,
            "campaign" => Source::Campaign,
            "referral" => Source::Referral,
            "import" => Source::Import,
            "inbound_call" => Source::InboundCall,
            "event" => Source::Event,
            "partner" => Source::Partner,
            "other" => Source::Other,
            _ => return None,
        })
    }
}

/// Input for a new deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeal {
    /// Title.
    pub title: String,
    /// Amount (not negative).
    #[serde(default)]
    pub amount: Option<Money>,
    /// Expected close date.
    #[serde(default)]
    pub expected_close: Option<NaiveDate>,
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The stage (of that pipeline); its first stage when absent.
    #[serde(default)]
    pub stage: Option<StageId>,
    /// Owner; the actor when absent.
    #[serde(default)]
    pub owner: Option<UserId>,
    /// Owning team.
    #[serde(default)]
    pub team: Option<TeamId>,
    /// The customer organization.
    #[serde(default)]
    pub organization: Option<OrganizationId>,
    /// Contacts and their roles.
    #[serde(default)]
    pub contacts: Vec<(ContactId, DealRole)>,
    /// Source.
    #[serde(default)]
    pub source: Source,
    /// The campaign that sourced it.
    #[serde(default)]
    pub campaign: Option<CampaignId>,
    /// Probability override (0-100; the record's `probability_override`); the stage's
    /// when absent.
    #[serde(default, alias = "probability_override")]
    pub probability: Option<u8>,
    /// Next step.
    #[serde(default)]
    pub next_step: Option<String>,
    /// Custom values.
    #[serde(default)]
    pub custom: CustomValues,
}

impl NewDeal {
    /// A deal with a title in a pipeline's first stage, everything else empty.
    pub fn new(title: impl Into<String>, pipeline: PipelineId) -> Self {
        NewDeal {
            title: title.into(),
            amount: None,
            expected_close: None,
            pipeline,
            stage: None,
            owner: None,
            team: None,
            organization: None,
            contacts: vec![],
            source: Source::Other,
            campaign: None,
            probability: None,
            next_step: None,
            custom: CustomValues::new(),
        }
    }

    crmkit_core::setters! {
        /// With an amount (not negative).
        some amount: Money;
        /// With an expected close date.
        some expected_close: NaiveDate;
        /// In this stage of the pipeline (not a lost one).
        some stage: StageId;
        /// Owned by this user.
        some owner: UserId;
        /// Owned by this team.
        some team: TeamId;
        /// For this organization.
        some organization: OrganizationId;
        /// From this source.
        set source: Source;
        /// Sourced by this campaign.
        some campaign: CampaignId;
        /// With a probability override (0-100).
        some probability: u8;
        /// With a next step.
        some next_step: String;
    }

    /// With a contact in a role (added to the contact roles).
    pub fn contact(mut self, contact: ContactId, role: DealRole) -> Self {
        self.contacts.push((contact, role));
        self
    }

    /// With a custom value.
    pub fn custom(mut self, key: impl Into<String>, value: CustomValue) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
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
    /// The managed lost reason it was lost for, when one was picked from the list.
    pub lost_reason_id: Option<LostReasonId>,
    /// When it was won.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub won_at: Option<DateTime<Utc>>,
    /// When it was lost.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub lost_at: Option<DateTime<Utc>>,
    /// When it entered its current stage.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub stage_entered_at: DateTime<Utc>,
    /// Custom values.
    pub custom: CustomValues,
    /// Created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// Changed.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version.
    pub version: u64,
}

impl Deal {
    /// Open, won or lost.
    pub fn status(&self) -> StageKind {
        if self.won_at.is_some() {
            StageKind::Won
        } else if self.lost_at.is_some() {
            StageKind::Lost
        } else {
            StageKind::Open
        }
    }
}

/// The kind of a stage, and so the status of the deals in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// The deal is being worked on.
    Open,
    /// The deal is won (closed).
    Won,
    /// The deal is lost (closed).
    Lost,
}

impl StageKind {
    /// Every kind's name.
    pub const NAMES: &'static [&'static str] = &["open", "won", "lost"];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Open => "open",
            StageKind::Won => "won",
            StageKind::Lost => "lost",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<StageKind> {
        Some(match s {
            "open" => StageKind::Open,
            "won" => StageKind::Won,
            "lost" => StageKind::Lost,
            _ => return None,
        })
    }
}

/// A stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Id.
    pub id: StageId,
    /// The pipeline.
    pub pipeline: PipelineId,
    /// Name (unique within the pipeline).
    pub name: String,
    /// Position in the pipeline, 0 first.
    pub position: u32,
    /// Win probability, 0-100.
    pub probability: u8,
    /// Open, won or lost.
    pub kind: StageKind,
    /// Days after which a deal in this stage counts as idle.
    pub rotting_days: Option<u32>,
    /// Deal fields a deal must have to enter this stage: `amount`, `expected_close`,
    /// `organization`, `contacts`, `next_step`, `campaign` or `custom.<key>`.
    pub required_fields: Vec<String>,
}

/// A pipeline and its live stages in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Id.
    pub id: PipelineId,
    /// Name.
    pub name: String,
    /// The currency every deal amount in it must have, if fixed.
    pub currency: Option<crmkit_core::Currency>,
    /// Whether this is the tenant's default pipeline.
    pub is_default: bool,
    /// Its stages, by position.
    pub stages: Vec<Stage>,
    /// Created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// Changed (also by a change of its stages).
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Version (bumped by every change of the pipeline or its stages).
    pub version: u64,
}

impl Pipeline {
    /// The live stage with this id.
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// Input for a new stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewStage {
    /// Name.
    pub name: String,
    /// Win probability, 0-100.
    pub probability: u8,
    /// Kind.
    pub kind: StageKind,
    /// Rotting threshold in days (1 to 3650).
    #[serde(default)]
    pub rotting_days: Option<u32>,
    /// Required fields (see [`Stage::required_fields`]).
    #[serde(default)]
    pub required_fields: Vec<String>,
}

impl NewStage {
    /// An open stage.
    pub fn open(name: impl Into<String>, probability: u8) -> Self {
        NewStage {
            name: name.into(),
            probability,
            kind: StageKind::Open,
            rotting_days: None,
            required_fields: vec![],
        }
    }

    /// A won stage (probability 100).
    pub fn won(name: impl Into<String>) -> Self {
        NewStage {
            kind: StageKind::Won,
            ..NewStage::open(name, 100)
        }
    }

    /// A lost stage (probability 0).
    pub fn lost(name: impl Into<String>) -> Self {
        NewStage {
            kind: StageKind::Lost,
            ..NewStage::open(name, 0)
        }
    }

    /// With a rotting threshold.
    pub fn rotting(mut self, days: u32) -> Self {
        self.rotting_days = Some(days);
        self
    }

    /// With required fields.
    pub fn requires(mut self, fields: &[&str]) -> Self {
        self.required_fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// Input for a new pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPipeline {
    /// Name.
    pub name: String,
    /// A currency every deal amount must have, if any.
    #[serde(default)]
    pub currency: Option<crmkit_core::Currency>,
    /// Stages in order (at least one open stage).
    pub stages: Vec<NewStage>,
}

impl NewPipeline {
    /// A pipeline with a name and no stages yet (add them with [`Self::stage`]).
    pub fn named(name: impl Into<String>) -> Self {
        NewPipeline {
            name: name.into(),
            currency: None,
            stages: vec![],
        }
    }

    crmkit_core::setters! {
        /// With a currency every deal amount must have.
        some currency: crmkit_core::Currency;
    }

    crmkit_core::setters! {
        /// With a stage after the ones given so far.
        push stage(stages): NewStage;
    }
}

/// Changes to a stage (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StagePatch {
    /// New name.
    pub name: Option<String>,
    /// New probability (0-100); deals in the stage without an override follow it.
    pub probability: Option<u8>,
    /// New kind (only for a stage that holds no deals).
    pub kind: Option<StageKind>,
    /// New rotting threshold.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub rotting_days: Option<Option<u32>>,
    /// New required fields.
    pub required_fields: Option<Vec<String>>,
}

/// Changes to a deal (`None`: unchanged; `Some(None)`: cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DealPatch {
    /// Title.
    pub title: Option<String>,
    /// Amount.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub amount: Option<Option<Money>>,
    /// Expected close date.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub expected_close: Option<Option<NaiveDate>>,
    /// Owner.
    pub owner: Option<UserId>,
    /// Team.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub team: Option<Option<TeamId>>,
    /// Organization.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub organization: Option<Option<OrganizationId>>,
    /// Contacts and roles (replacing the list).
    pub contacts: Option<Vec<(ContactId, DealRole)>>,
    /// Source.
    pub source: Option<Source>,
    /// Campaign.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub campaign: Option<Option<CampaignId>>,
    /// Probability override (0-100; the record's `probability_override`).
    #[serde(
        alias = "probability_override",
        deserialize_with = "crmkit_core::record::double_option"
    )]
    pub probability: Option<Option<u8>>,
    /// Next step.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub next_step: Option<Option<String>>,
    /// Custom values to set (`Some`) or remove (`None`).
    pub custom: BTreeMap<String, Option<CustomValue>>,
}

impl DealPatch {
    crmkit_core::setters! {
        /// New title.
        some title: String;
        /// New amount (`None` clears it).
        some amount: Option<Money>;
        /// New expected close date (`None` clears it).
        some expected_close: Option<NaiveDate>;
        /// New owner.
        some owner: UserId;
        /// New team (`None` clears it).
        some team: Option<TeamId>;
        /// New organization (`None` clears it).
        some organization: Option<OrganizationId>;
        /// New contact roles (replacing the list).
        some contacts: Vec<(ContactId, DealRole)>;
        /// New source.
        some source: Source;
        /// New campaign (`None` clears it).
        some campaign: Option<CampaignId>;
        /// New probability override (`None` clears it).
        some probability: Option<u8>;
        /// New next step (`None` clears it).
        some next_step: Option<String>;
    }

    /// Sets (`Some`) or removes (`None`) a custom value.
    pub fn custom(mut self, key: impl Into<String>, value: Option<CustomValue>) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// Why a deal was lost: one of the tenant's managed reasons, or free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostReasonInput {
    /// A reason of [`Deals::lost_reasons`].
    Listed(LostReasonId),
    /// Free text (1 to 500 characters).
    Text(String),
}

/// A managed lost reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostReason {
    /// Id.
    pub id: LostReasonId,
    /// Name (unique per tenant, ignoring case).
    pub name: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// One entry of a deal's append-only stage history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageChange {
    /// The deal.
    pub deal: DealId,
    /// Position in the deal's history, 1 first (its creation).
    pub seq: u64,
    /// The pipeline of `to_stage`.
    pub pipeline: PipelineId,
    /// The stage it left (none for the creation).
    pub from_stage: Option<StageId>,
    /// The stage it entered.
    pub to_stage: StageId,
    /// The kind of `to_stage` at the time.
    pub to_kind: StageKind,
    /// The amount at the time.
    pub amount: Option<Money>,
    /// The expected close date at the time.
    pub expected_close: Option<NaiveDate>,
    /// When.
    pub at: DateTime<Utc>,
    /// By whom.
    pub by: Option<UserId>,
    /// Whole seconds spent in `from_stage` (none for the creation).
    pub seconds_in_previous: Option<i64>,
}

/// One entry of a deal's append-only history of expected close date changes.
///
/// Every change of a deal's `expected_close` (set, moved or cleared) appends one, in the
/// same changeset as the deal's update, through the one write path every deal update
/// takes: [`Deals::update`], and so the generic record patch and automation's field
/// actions, which run it. The history is recorded **from the pipeline module's migration 2
/// on**: changes made before a database was upgraded to it are not in it, and the close
/// date a deal was created with is not a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseDateChange {
    /// The deal.
    pub deal: DealId,
    /// The deal's version after the change (the entry's key within the deal).
    pub version: u64,
    /// The deal's pipeline at the time.
    pub pipeline: PipelineId,
    /// The deal's owner at the time.
    pub owner: UserId,
    /// The deal's team at the time.
    pub team: Option<TeamId>,
    /// The close date before (none: it had none).
    pub from: Option<NaiveDate>,
    /// The close date after (none: cleared).
    pub to: Option<NaiveDate>,
    /// `to - from` in days when both are set (positive: moved later, a slip; negative:
    /// pulled in); none otherwise.
    pub days_later: Option<i64>,
    /// When.
    pub at: DateTime<Utc>,
    /// By whom.
    pub by: Option<UserId>,
}

/// Open deals of one stage in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryLine {
    /// The stage.
    pub stage: StageId,
    /// The currency (none for deals without an amount).
    pub currency: Option<crmkit_core::Currency>,
    /// Number of open deals.
    pub open_deals: u64,
    /// Exact sum of their amounts.
    pub open_value: Decimal,
    /// Exact sum of amount × probability / 100 (at most 6 decimal places, unrounded).
    pub weighted_value: Decimal,
}

/// Open value and weighted value of a pipeline per stage and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSummary {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// Lines by stage position, then currency code (deals without amount first).
    pub lines: Vec<SummaryLine>,
}

/// Parses an expected close date (`YYYY-MM-DD`, years 1 to 9999); anything else is a
/// Validation error on `expected_close`.
pub fn parse_close_date(s: &str) -> Result<NaiveDate> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        Error::validation(
            "expected_close",
            format!("{s:?} is not a date (YYYY-MM-DD)"),
        )
    })?;
    crmkit_core::text::check_date(d).map_err(|r| Error::validation("expected_close", r))?;
    Ok(d)
}

/// The deals API (pipelines, stages, deals, stage history, lost reasons).
#[derive(Clone, Debug)]
pub struct Deals {
    store: Store,
}

/// A deal as loaded, with the sequence of its last history entry.
struct Loaded {
    deal: Deal,
    seq: i64,
}

impl Deals {
    /// The API over a store composed with the pipeline module.
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("pipeline")?;
        Ok(Deals {
            store: store.clone(),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The pipelines API over the same store.
    pub fn pipelines(&self) -> Pipelines {
        Pipelines::from_deals(self.clone())
    }

    async fn custom_schema(&self, ctx: &Ctx) -> Result<CustomSchema> {
        self.store
            .custom_fields()
            .of_kind(ctx, &RecordKind::DEAL)
            .await
    }

    /// Whether the actor may refer to `r`: staged in the same changeset, or live and
    /// visible ([`crmkit_core::record::Records::visible`], the one reference rule: a
    /// missing, deleted, another tenant's or hidden record are all refused alike).
    async fn may_refer(&self, ctx: &Ctx, r: &RecordRef, staged: &[RecordRef]) -> Result<bool> {
        Ok(staged.contains(r) || self.store.records().visible(ctx, r).await?)
    }

    /// Checks the organization, contacts and campaign of a deal (each visible to the
    /// actor, unless staged in the same changeset; no contact twice).
    async fn check_links(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        organization: Option<OrganizationId>,
        contacts: &[(ContactId, DealRole)],
        campaign: Option<CampaignId>,
        staged: &[RecordRef],
    ) -> Result<()> {
        if let Some(o) = organization
            && !self.may_refer(ctx, &RecordRef::from(o), staged).await?
        {
            errs.push("organization", reference_reason(&RecordKind::ORGANIZATION));
        }
        if let Some(c) = campaign
            && !self.may_refer(ctx, &RecordRef::from(c), staged).await?
        {
            errs.push("campaign", reference_reason(&CampaignId::kind()));
        }
        if contacts.len() > 100 {
            errs.push("contacts", "at most 100 contacts per deal");
            return Ok(());
        }
        let mut seen = HashSet::new();
        for (i, (c, _)) in contacts.iter().enumerate() {
            if !seen.insert(*c) {
                errs.push(format!("contacts[{i}]"), "is listed twice");
                continue;
            }
            if !self.may_refer(ctx, &RecordRef::from(*c), staged).await? {
                errs.push(
                    format!("contacts[{i}]"),
                    reference_reason(&RecordKind::CONTACT),
                );
            }
        }
        Ok(())
    }

    /// Title, amount, probability, next step and custom values of a deal in `pipeline`.
    fn check_fields(
        errs: &mut ValidationErrors,
        d: &Deal,
        pipeline: &Pipeline,
        custom: &CustomSchema,
    ) {
        errs.check(crmkit_core::text::check_text(
            "title", &d.title, MAX_TITLE, true,
        ));
        if let Some(m) = &d.amount {
            if m.is_negative() {
                errs.push("amount", "must not be negative");
            } else if m.amount() >= Decimal::from(MAX_AMOUNT) {
                errs.push("amount", format!("must be below {MAX_AMOUNT}"));
            }
            if let Some(c) = pipeline.currency
                && m.currency() != c
            {
                errs.push(
                    "amount",
                    format!(
                        "must be in {c}, the currency of pipeline {:?}, not {}",
                        pipeline.name,
                        m.currency()
                    ),
                );
            }
        }
        if let Some(p) = d.probability_override
            && p > 100
        {
            errs.push("probability", "must be 0 to 100");
        }
        if let Some(s) = &d.next_step {
            errs.check(crmkit_core::text::check_text("next_step", s, 500, true));
        }
        if let Some(dt) = d.expected_close
            && let Err(r) = crmkit_core::text::check_date(dt)
        {
            errs.push("expected_close", r);
        }
        errs.check(custom.validate(&d.custom));
    }

    /// The fields a stage requires that the deal lacks, as Validation errors.
    fn check_required(errs: &mut ValidationErrors, d: &Deal, stage: &Stage) {
        for f in &stage.required_fields {
            let has = match f.as_str() {
                "amount" => d.amount.is_some(),
                "expected_close" => d.expected_close.is_some(),
                "organization" => d.organization.is_some(),
                "contacts" => !d.contacts.is_empty(),
                "next_step" => d.next_step.is_some(),
                "campaign" => d.campaign.is_some(),
                other => match other.strip_prefix("custom.") {
                    Some(k) => d.custom.contains_key(k),
                    None => true,
                },
            };
            if !has {
                errs.push(
                    f.clone(),
                    format!("is required to enter stage {:?}", stage.name),
                );
            }
        }
    }

    fn effective_probability(d: &Deal, stage: &Stage) -> u8 {
        d.probability_override.unwrap_or(stage.probability)
    }

    fn history_entry(
        ctx: &Ctx,
        d: &Deal,
        seq: i64,
        from: Option<(StageId, DateTime<Utc>)>,
        to: &Stage,
    ) -> StageChange {
        let now = ctx.now();
        StageChange {
            deal: d.id,
            seq: seq as u64,
            pipeline: to.pipeline,
            from_stage: from.map(|f| f.0),
            to_stage: to.id,
            to_kind: to.kind,
            amount: d.amount,
            expected_close: d.expected_close,
            at: now,
            by: Some(ctx.actor().user),
            seconds_in_previous: from.map(|f| (now - f.1).num_seconds().max(0)),
        }
    }

    // ----- deals -----

    /// Validates a new deal and adds its writes to `cs` without committing (lead
    /// conversion uses it). Contacts and the organization may be staged in the same
    /// changeset: pass their ids, and list them in `staged` so that the reference checks
    /// accept them (conversion also lists the lead's campaign, which the deal inherits as
    /// the lead has it). Every other reference must be visible to the actor
    /// ([`crmkit_core::record::Records::visible`]).
    pub async fn stage_create(
        &self,
        ctx: &Ctx,
        input: &NewDeal,
        staged: &[RecordRef],
        cs: &mut Changeset,
    ) -> Result<Deal> {
        ctx.actor().require_write("create deal")?;
        let custom = self.custom_schema(ctx).await?;
        let mut errs = ValidationErrors::new();
        let pipeline = match self.load_pipeline(ctx, input.pipeline).await {
            Ok(p) => Some(p),
            Err(Error::NotFound { .. }) => {
                errs.push("pipeline", reference_reason(&PIPELINE_KIND));
                None
            }
            Err(e) => return Err(e),
        };
        let stage = pipeline.as_ref().and_then(|p| match input.stage {
            Some(s) => {
                let st = p.stage(s).cloned();
                if st.is_none() {
                    errs.push("stage", "is not a stage of the pipeline");
                }
                st
            }
            None => p.stages.first().cloned(),
        });
        if let Some(s) = &stage
            && s.kind == StageKind::Lost
        {
            errs.push(
                "stage",
                "a deal cannot be created lost; create it open and move it with a lost reason",
            );
        }
        let now = ctx.now();
        let owner = input.owner.unwrap_or(ctx.actor().user);
        let mut deal = Deal {
            id: DealId::new(),
            title: input.title.clone(),
            amount: input.amount,
            expected_close: input.expected_close,
            pipeline: input.pipeline,
            stage: stage
                .as_ref()
                .map(|s| s.id)
                .unwrap_or(StageId::from_uuid(Uuid::nil())),
            owner,
            team: input.team,
            organization: input.organization,
            contacts: input.contacts.clone(),
            source: input.source,
            campaign: input.campaign,
            probability_override: input.probability,
            probability: 0,
            next_step: input.next_step.clone(),
            lost_reason: None,
            lost_reason_id: None,
            won_at: None,
            lost_at: None,
            stage_entered_at: now,
            custom: input.custom.clone(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        if let Some(p) = &pipeline {
            Self::check_fields(&mut errs, &deal, p, &custom);
        }
        if let Some(s) = &stage {
            Self::check_required(&mut errs, &deal, s);
        }
        OwnerChecks::new()
            .check(&self.store, ctx, &mut errs, owner, input.team)
            .await?;
        self.check_links(
            ctx,
            &mut errs,
            deal.organization,
            &deal.contacts,
            deal.campaign,
            staged,
        )
        .await?;
        errs.into_result()?;
        let stage = stage.expect("validated");
        deal.probability = Self::effective_probability(&deal, &stage);
        if stage.kind == StageKind::Won {
            deal.won_at = Some(now);
        }
        let record = RecordRef::from(deal.id);
        stage_insert(cs, &deal, rows::deal_row(&deal, 1)?);
        for (c, role) in &deal.contacts {
            cs.writes.push(Write::Insert {
                table: DEAL_CONTACT_TABLE,
                row: rows::contact_link_row(deal.id, *c, *role),
            });
        }
        cs.writes.push(Write::Insert {
            table: HISTORY_TABLE,
            row: rows::history_row(&Self::history_entry(ctx, &deal, 1, None, &stage))?,
        });
        cs.writes
            .extend(custom.index_writes(&record, &deal.custom, false));
        Ok(deal)
    }

    /// Creates a deal.
    pub async fn create(&self, ctx: &Ctx, input: NewDeal) -> Result<Deal> {
        let mut cs = Changeset::new(ctx);
        let deal = self.stage_create(ctx, &input, &[], &mut cs).await?;
        self.store.commit(cs).await?;
        Ok(deal)
    }

    /// The live deal `id` the actor may see, for a change named `action` (the write-rights
    /// check first).
    async fn live_deal(&self, ctx: &Ctx, id: DealId, action: &str) -> Result<Loaded> {
        ctx.actor().require_write(action)?;
        self.load_deal(ctx, id, Some(false)).await
    }

    async fn load_deal(&self, ctx: &Ctx, id: DealId, deleted: Option<bool>) -> Result<Loaded> {
        let row = service::row_by_id(&self.store, ctx, DEAL_TABLE, RecordKind::DEAL, id).await?;
        let (deal, seq) = rows::decode_deal(row)?;
        if !ctx.actor().can_see(Some(deal.owner), deal.team)
            || deleted.is_some_and(|d| d != deal.deleted_at.is_some())
        {
            return Err(Error::not_found(RecordKind::DEAL, id));
        }
        Ok(Loaded { deal, seq })
    }

    /// Writes the change from `old` to `new` (rows, links, custom index, audit, event).
    #[allow(clippy::too_many_arguments)]
    fn update_writes(
        &self,
        cs: &mut Changeset,
        old: &Deal,
        new: &Deal,
        old_seq: i64,
        new_seq: i64,
        custom: Option<&CustomSchema>,
        kind: &str,
    ) -> Result<bool> {
        let changes = service::changes(new.id, old, new);
        if changes.is_empty() {
            return Ok(false);
        }
        let record = changes.record.clone();
        if new.expected_close != old.expected_close {
            // Every deal update comes through here, so a close date never moves unrecorded.
            let change = CloseDateChange {
                deal: new.id,
                version: new.version,
                pipeline: new.pipeline,
                owner: new.owner,
                team: new.team,
                from: old.expected_close,
                to: new.expected_close,
                days_later: match (old.expected_close, new.expected_close) {
                    (Some(a), Some(b)) => Some((b - a).num_days()),
                    _ => None,
                },
                at: cs.at,
                by: cs.actor,
            };
            cs.writes.push(Write::Insert {
                table: CLOSE_HISTORY_TABLE,
                row: rows::close_history_row(&change),
            });
        }
        let def = self.store.backend().schema().table(DEAL_TABLE)?;
        let (o, n) = (rows::deal_row(old, old_seq)?, rows::deal_row(new, new_seq)?);
        let set = changed_columns(def, &o, &n);
        stage_update(
            cs,
            changes,
            DEAL_TABLE,
            set,
            old.version,
            kind,
            to_json(new),
        );
        if new.contacts != old.contacts {
            cs.writes.push(Write::DeleteWhere {
                table: DEAL_CONTACT_TABLE,
                cond: Cond::eq("deal_id", new.id.as_uuid()),
            });
            for (c, role) in &new.contacts {
                cs.writes.push(Write::Insert {
                    table: DEAL_CONTACT_TABLE,
                    row: rows::contact_link_row(new.id, *c, *role),
                });
            }
        }
        if let Some(custom) = custom
            && new.custom != old.custom
        {
            cs.writes
                .extend(custom.index_writes(&record, &new.custom, true));
        }
        Ok(true)
    }

    /// Changes a deal whose current version is `expected_version`. The fields its current
    /// stage requires must stay set.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: DealId,
        expected_version: u64,
        patch: DealPatch,
    ) -> Result<Deal> {
        let Loaded { deal: old, seq } = self.live_deal(ctx, id, "update deal").await?;
        let custom = self.custom_schema(ctx).await?;
        let pipeline = self.load_pipeline(ctx, old.pipeline).await?;
        let stage = self.stage_by_id(ctx, old.stage).await?;
        let mut new = old.clone();
        let owner = (patch.owner, patch.team);
        crmkit_core::apply_patch!(patch => new; amount, expected_close, organization, source,
            campaign);
        if let Some(v) = &patch.title {
            new.title = v.clone();
        }
        if let Some(v) = &patch.contacts {
            new.contacts = v.clone();
        }
        if let Some(v) = patch.probability {
            new.probability_override = v;
        }
        if let Some(v) = &patch.next_step {
            new.next_step = v.clone();
        }
        new.custom = apply_custom_patch(&old.custom, &patch.custom);
        let mut errs = ValidationErrors::new();
        Self::check_fields(&mut errs, &new, &pipeline, &custom);
        Self::check_required(&mut errs, &new, &stage);
        service::reassign(&self.store, ctx, &mut errs, &mut new, owner).await?;
        if patch.organization.is_some() || patch.contacts.is_some() || patch.campaign.is_some() {
            // Only new references are checked: a link the deal already has stays valid.
            let orgs = if new.organization != old.organization {
                new.organization
            } else {
                None
            };
            let campaign = if new.campaign != old.campaign {
                new.campaign
            } else {
                None
            };
            let contacts: Vec<_> = new
                .contacts
                .iter()
                .filter(|(c, _)| !old.contacts.iter().any(|(o, _)| o == c))
                .copied()
                .collect();
            let mut dup = HashSet::new();
            for (i, (c, _)) in new.contacts.iter().enumerate() {
                if !dup.insert(*c) {
                    errs.push(format!("contacts[{i}]"), "is listed twice");
                }
            }
            self.check_links(ctx, &mut errs, orgs, &contacts, campaign, &[])
                .await?;
        }
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        new.probability = Self::effective_probability(&new, &stage);
        new.updated_at = ctx.now();
        new.version = old.version + 1;
        let mut cs = Changeset::new(ctx);
        if !self.update_writes(&mut cs, &old, &new, seq, seq, Some(&custom), "deal.updated")? {
            return Ok(old);
        }
        self.store.commit(cs).await?;
        Ok(new)
    }

    async fn lost_reason_of(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        r: &LostReasonInput,
    ) -> Result<Option<(String, Option<LostReasonId>)>> {
        match r {
            LostReasonInput::Text(t) => {
                if errs
                    .check(crmkit_core::text::check_text("lost_reason", t, 500, true))
                    .is_some()
                {
                    Ok(Some((t.clone(), None)))
                } else {
                    Ok(None)
                }
            }
            LostReasonInput::Listed(id) => {
                let row = self
                    .store
                    .backend()
                    .get(
                        ctx.tenant(),
                        LOST_REASON_TABLE,
                        &[Value::Uuid(id.as_uuid())],
                    )
                    .await?;
                match row {
                    Some(r) => {
                        let l = rows::decode_lost_reason(r)?;
                        Ok(Some((l.name, Some(l.id))))
                    }
                    None => {
                        errs.push("lost_reason", reference_reason(&LOST_REASON_KIND));
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Moves `old` into `to` (of `pipeline`), appending a history entry. Shared by
    /// [`Deals::move_to_stage`], [`Deals::move_to_pipeline`] and stage removal.
    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        ctx: &Ctx,
        cs: &mut Changeset,
        old: &Deal,
        seq: i64,
        pipeline: &Pipeline,
        to: &Stage,
        lost_reason: Option<&LostReasonInput>,
        check: bool,
    ) -> Result<Deal> {
        let mut errs = ValidationErrors::new();
        let mut new = old.clone();
        new.pipeline = pipeline.id;
        new.stage = to.id;
        let now = ctx.now();
        match (to.kind, lost_reason) {
            (StageKind::Lost, Some(r)) => {
                if let Some((text, id)) = self.lost_reason_of(ctx, &mut errs, r).await? {
                    new.lost_reason = Some(text);
                    new.lost_reason_id = id;
                }
            }
            (StageKind::Lost, None) => {
                // A lost deal moving between lost stages keeps its reason.
                if check && old.lost_reason.is_none() {
                    errs.push("lost_reason", "is required to move a deal to a lost stage");
                }
            }
            (_, Some(_)) => errs.push(
                "lost_reason",
                "may only be given when moving to a lost stage",
            ),
            (_, None) => {
                new.lost_reason = None;
                new.lost_reason_id = None;
            }
        }
        if check {
            if let Some(c) = pipeline.currency
                && let Some(m) = &new.amount
                && m.currency() != c
            {
                errs.push(
                    "amount",
                    format!(
                        "must be in {c}, the currency of pipeline {:?}",
                        pipeline.name
                    ),
                );
            }
            Self::check_required(&mut errs, &new, to);
        }
        errs.into_result()?;
        let entered_old = old.stage_entered_at;
        // A closed deal moving between stages of its kind keeps the time it closed.
        if old.status() != to.kind {
            new.won_at = None;
            new.lost_at = None;
            match to.kind {
                StageKind::Won => new.won_at = Some(now),
                StageKind::Lost => new.lost_at = Some(now),
                StageKind::Open => {}
            }
        }
        new.probability = Self::effective_probability(&new, to);
        new.stage_entered_at = now;
        new.updated_at = now;
        new.version = old.version + 1;
        let entry = Self::history_entry(ctx, &new, seq + 1, Some((old.stage, entered_old)), to);
        self.update_writes(cs, old, &new, seq, seq + 1, None, "deal.moved")?;
        cs.writes.push(Write::Insert {
            table: HISTORY_TABLE,
            row: rows::history_row(&entry)?,
        });
        Ok(new)
    }

    /// Moves a deal to another stage of its pipeline. Moving to a won or lost stage closes
    /// it (sets `won_at` / `lost_at`); a lost stage needs a lost reason; moving a closed
    /// deal to an open stage reopens it. The target stage's required fields must be set.
    /// Appends a stage-history entry.
    pub async fn move_to_stage(
        &self,
        ctx: &Ctx,
        id: DealId,
        expected_version: u64,
        to_stage: StageId,
        lost_reason: Option<LostReasonInput>,
    ) -> Result<Deal> {
        let Loaded { deal: old, seq } = self.live_deal(ctx, id, "move deal").await?;
        let pipeline = self.load_pipeline(ctx, old.pipeline).await?;
        let Some(to) = pipeline.stage(to_stage).cloned() else {
            return Err(Error::validation(
                "stage",
                "is not a stage of the deal's pipeline",
            ));
        };
        check_move(&old, &to, expected_version)?;
        let mut cs = Changeset::new(ctx);
        let new = self
            .transition(
                ctx,
                &mut cs,
                &old,
                seq,
                &pipeline,
                &to,
                lost_reason.as_ref(),
                true,
            )
            .await?;
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// Moves a deal to another pipeline, into `stage` of it, or when `None` into its
    /// first stage of the deal's current kind (open, won or lost). Its amount must suit
    /// the pipeline's currency and the stage's required fields. Appends a history entry.
    pub async fn move_to_pipeline(
        &self,
        ctx: &Ctx,
        id: DealId,
        expected_version: u64,
        pipeline: PipelineId,
        stage: Option<StageId>,
    ) -> Result<Deal> {
        let Loaded { deal: old, seq } = self.live_deal(ctx, id, "move deal").await?;
        let target = match self.load_pipeline(ctx, pipeline).await {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => {
                return Err(Error::validation(
                    "pipeline",
                    reference_reason(&PIPELINE_KIND),
                ));
            }
            Err(e) => return Err(e),
        };
        let to = match stage {
            Some(s) => target.stage(s).cloned().ok_or_else(|| {
                Error::validation("stage", "is not a stage of the target pipeline")
            })?,
            None => {
                let kind = old.status();
                target
                    .stages
                    .iter()
                    .find(|s| s.kind == kind)
                    .cloned()
                    .ok_or_else(|| {
                        Error::validation(
                            "stage",
                            format!("the target pipeline has no {} stage", kind.as_str()),
                        )
                    })?
            }
        };
        check_move(&old, &to, expected_version)?;
        let mut cs = Changeset::new(ctx);
        let new = self
            .transition(ctx, &mut cs, &old, seq, &target, &to, None, true)
            .await?;
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// The stage history of a visible deal, oldest first.
    pub async fn stage_history(&self, ctx: &Ctx, id: DealId) -> Result<Vec<StageChange>> {
        self.load_deal(ctx, id, None).await?;
        let mut s = Select::new(HISTORY_TABLE, Cond::eq("deal_id", id.as_uuid()));
        s.order = vec![OrderKey::asc("seq")];
        service::select_rows(&self.store, ctx, &s, rows::decode_history).await
    }

    /// The close-date history of a visible deal (deleted ones too), oldest first (see
    /// [`CloseDateChange`]; recorded from the pipeline module's migration 2 on).
    pub async fn close_history(&self, ctx: &Ctx, id: DealId) -> Result<Vec<CloseDateChange>> {
        self.load_deal(ctx, id, None).await?;
        let mut s = Select::new(CLOSE_HISTORY_TABLE, Cond::eq("deal_id", id.as_uuid()));
        s.order = vec![OrderKey::asc("deal_version")];
        service::select_rows(&self.store, ctx, &s, rows::decode_close_history).await
    }

    // ----- queries for analytics -----

    /// Open deals (visible, not deleted) of a pipeline per stage and currency: count,
    /// exact open value and exact weighted value, computed by one grouped SQL aggregate.
    pub async fn summary(&self, ctx: &Ctx, pipeline: PipelineId) -> Result<PipelineSummary> {
        let p = self.load_pipeline(ctx, pipeline).await?;
        let agg = crmkit_core::store::Aggregate {
            table: DEAL_TABLE,
            cond: Cond::eq("pipeline_id", pipeline.as_uuid())
                .and(Cond::eq("status", "open"))
                .and(visibility_scope(ctx, false)),
            group_by: vec!["stage_id".into(), "currency".into()],
            measures: vec![
                crmkit_core::store::Measure::Count,
                crmkit_core::store::Measure::Sum("amount".into()),
                crmkit_core::store::Measure::Sum("weighted_x100".into()),
            ],
            buckets: None,
        };
        let rows = self.store.backend().aggregate(ctx.tenant(), &agg).await?;
        let mut lines = vec![];
        for r in rows {
            let bad = || Error::storage("malformed aggregate row");
            let stage = StageId::from_uuid(r[0].as_uuid().ok_or_else(bad)?);
            let currency = match r[1].as_text() {
                Some(c) => Some(crmkit_core::Currency::parse(c)?),
                None => None,
            };
            lines.push(SummaryLine {
                stage,
                currency,
                open_deals: r[2].as_int().ok_or_else(bad)? as u64,
                // Sums are exact and 128-bit wide (ten deals near the amount cap at 100%
                // already pass 2^63 in `weighted_x100`).
                open_value: Decimal::try_from_i128_with_scale(r[3].as_sum().ok_or_else(bad)?, 4)
                    .map_err(|_| Error::storage("open value exceeds 28 digits"))?
                    .normalize(),
                weighted_value: Decimal::try_from_i128_with_scale(
                    r[4].as_sum().ok_or_else(bad)?,
                    6,
                )
                .map_err(|_| Error::storage("weighted value exceeds 28 digits"))?
                .normalize(),
            });
        }
        let pos = |s: StageId| {
            p.stages
                .iter()
                .find(|x| x.id == s)
                .map(|x| x.position)
                .unwrap_or(u32::MAX)
        };
        lines.sort_by(|a, b| {
            (pos(a.stage), a.currency.map(|c| c.code()))
                .cmp(&(pos(b.stage), b.currency.map(|c| c.code())))
        });
        Ok(PipelineSummary { pipeline, lines })
    }

    /// Open deals (visible, not deleted) expected to close between `from` and `to`
    /// (inclusive), and-ed with `q` (its filter, sort and page).
    pub async fn closing_between(
        &self,
        ctx: &Ctx,
        from: NaiveDate,
        to: NaiveDate,
        q: &Query,
    ) -> Result<Page<Deal>> {
        let f = Filter::eq("status", "open")
            .and(Filter::gte("expected_close", from))
            .and(Filter::lte("expected_close", to));
        self.list(ctx, &q.clone().filter(f)).await
    }

    /// Open deals (visible, not deleted) that have been in their current stage longer
    /// than its rotting threshold at `now`, and-ed with `q`: one condition per stage with
    /// a threshold, pushed down into the query.
    pub async fn idle(&self, ctx: &Ctx, now: DateTime<Utc>, q: &Query) -> Result<Page<Deal>> {
        let stages = self.all_stages(ctx).await?;
        let mut any = vec![];
        for s in stages {
            if let (Some(days), StageKind::Open) = (s.rotting_days, s.kind) {
                let cutoff = now - chrono::Duration::days(i64::from(days));
                any.push(Filter::eq("stage", s.id).and(Filter::lt("stage_entered_at", cutoff)));
            }
        }
        let f = Filter::eq("status", "open").and(Filter::Or(any));
        self.list(ctx, &q.clone().filter(f)).await
    }

    // ----- lost reasons -----

    /// Adds a managed lost reason (Admin or Manager). A name already used (ignoring case)
    /// is a Duplicate.
    pub async fn add_lost_reason(&self, ctx: &Ctx, name: &str) -> Result<LostReason> {
        ctx.actor().require_manage("add lost reason")?;
        crmkit_core::text::check_text("name", name, 200, true)?;
        let l = LostReason {
            id: LostReasonId::new(),
            name: name.trim().to_owned(),
            created_at: ctx.now(),
        };
        let record = RecordRef::from(l.id);
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: LOST_REASON_TABLE,
            row: rows::lost_reason_row(&l),
        });
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "*".into(),
            old: None,
            new: Some(json_text(&l)),
        });
        cs.events.push(NewEvent::new(
            "lost_reason.added",
            record,
            vec![],
            to_json(&l),
        ));
        match self.store.commit(cs).await {
            Err(Error::Duplicate { .. }) => {
                let existing = self
                    .lost_reasons(ctx)
                    .await?
                    .into_iter()
                    .find(|x| crmkit_core::text::fold(&x.name) == crmkit_core::text::fold(&l.name))
                    .map(|x| RecordRef::from(x.id));
                Err(Error::Duplicate {
                    kind: LOST_REASON_KIND,
                    field: "name".into(),
                    existing,
                })
            }
            other => other.map(|_| l),
        }
    }

    /// The tenant's managed lost reasons, by name.
    pub async fn lost_reasons(&self, ctx: &Ctx) -> Result<Vec<LostReason>> {
        let mut s = Select::new(LOST_REASON_TABLE, Cond::True);
        s.order = vec![OrderKey::asc("name_fold"), OrderKey::asc("id")];
        service::select_rows(&self.store, ctx, &s, rows::decode_lost_reason).await
    }

    /// Removes a managed lost reason (Admin or Manager). Deals lost for it keep its text.
    pub async fn remove_lost_reason(&self, ctx: &Ctx, id: LostReasonId) -> Result<()> {
        ctx.actor().require_manage("remove lost reason")?;
        let row =
            service::row_by_id(&self.store, ctx, LOST_REASON_TABLE, LOST_REASON_KIND, id).await?;
        let l = rows::decode_lost_reason(row)?;
        let record = RecordRef::from(id);
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Delete {
            table: LOST_REASON_TABLE,
            key: vec![Value::Uuid(id.as_uuid())],
        });
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "*".into(),
            old: Some(json_text(&l)),
            new: None,
        });
        cs.events.push(NewEvent::new(
            "lost_reason.removed",
            record,
            vec![],
            to_json(&l),
        ));
        self.store.commit(cs).await?;
        Ok(())
    }
}

crmkit_core::record_verbs! {
    Deals: Deal, DealId;
    /// A deal visible to the actor and not deleted.
    get;
    /// Lists deals: filter, sort, keyset page over [`rows::DEAL_FIELDS`] and
    /// `custom.<key>`. Only visible deals; deleted ones only with
    /// [`Query::include_deleted`].
    list(DEAL_FIELDS, custom);
    /// The audit trail of a visible deal.
    audit;
    /// Soft-deletes a deal (restorable; it leaves lists and summaries).
    delete;
    /// Restores a soft-deleted deal.
    restore;
    set_deleted;
}

/// Refuses a move of `old` to the stage it is already in (InvalidTransition) and one at a
/// stale `expected_version` (Conflict).
fn check_move(old: &Deal, to: &Stage, expected_version: u64) -> Result<()> {
    if to.id == old.stage {
        return Err(Error::InvalidTransition {
            record: RecordRef::from(old.id),
            reason: "the deal is already in this stage".into(),
        });
    }
    service::check_version(old.id, expected_version, old.version)
}
