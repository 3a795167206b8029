//! Marketing campaigns, their members (leads and contacts), and the inputs of a campaign
//! ROI report.
//!
//! A campaign has a name, a [`CampaignKind`], a [`CampaignStatus`], optional start and end
//! dates (the end on or after the start), a budget and an actual cost (not negative, in
//! one currency), an expected revenue (not negative), an owner and team (the directory
//! rules of crmkit-contacts: a Rep only gives campaigns to themselves and their teams),
//! custom fields (record kind `campaign`), a version and soft delete. Visibility is the
//! contacts rule (Admin and Manager see all; Rep and ReadOnly see their own and their
//! teams'), pushed into list queries; anything not visible is NotFound.
//!
//! ## Status transitions
//!
//! ```text
//! planned ──► active ◄──► paused
//!    │          │           │
//!    │          ├──► completed ◄┘
//!    └──────────┴──► cancelled ◄ (from planned, active or paused)
//! ```
//!
//! `completed` and `cancelled` are final. Any other change of status is an
//! [`Error::InvalidTransition`]. A new campaign may start in any status (so that past
//! campaigns can be recorded).
//!
//! ## Members
//!
//! Leads and contacts join a campaign with a [`MemberStatus`] (targeted, sent, responded,
//! converted; any status may be set at any time, so a host can correct one). A member must
//! be a live lead or contact of the tenant visible to the actor, checked by the one
//! reference rule of [`crmkit_core::record::Records::visible`]: a hidden member is refused
//! exactly like one that is deleted, another tenant's or does not exist. Adding a member twice is a Duplicate. Removing a member deletes the
//! membership row; its audit entry keeps what it was.
//!
//! ## ROI inputs
//!
//! A deal or lead is **attributed** to a campaign when its `campaign` field is that
//! campaign (a deal made by lead conversion inherits the lead's campaign).
//! [`Campaigns::attribution`] aggregates, in the database and for many campaigns at once
//! (one grouped SUM/COUNT per table, grouped by `campaign_id`), the deals
//! (`pipeline_deal`: columns `campaign_id`, `amount` in 10^-4 units, `currency`, `status`
//! open/won/lost, `deleted_at`) and leads (`pipeline_lead`: `campaign_id`, `deleted_at`)
//! attributed to each. Deleted deals and leads do not count; for a Rep or ReadOnly actor
//! only the deals and leads they could see count (`owner_id` / `team_id`, when the table
//! has them). While a table is not part of the composed schema, its part is zero / empty.
//! Amount totals are [`CurrencyTotal`]s: exact 128-bit sums of storage units, so a total
//! of many amounts never overflows (a single [`Money`] holds at most 922337203685477.5807).
//! [`Campaigns::roi_inputs`] is one visible campaign's cost, budget and expected revenue
//! with its attribution and members.

mod rows;

use crmkit_core::service::{
    self, OwnerChecks, apply_custom_patch, json_text, list_page, stage_insert, to_json,
};
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use crmkit_core::record::reference_reason;
use crmkit_core::store::{Aggregate, Cond, Measure, Select, TableDef, Value, Write};
use crmkit_core::{
    AuditChange, CampaignId, CampaignMemberId, Changeset, Ctx, Currency, CustomSchema, CustomValue,
    CustomValues, Error, Money, NewEvent, Page, Query, RecordKind, RecordRef, Result, Store,
    TeamId, UserId, ValidationErrors, Visibility,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use rows::{
    CAMPAIGN, CAMPAIGN_FIELDS, CAMPAIGN_MEMBER, CAMPAIGN_TABLE, MEMBER_FIELDS, MEMBER_TABLE,
};

pub(crate) use rows::tables;

/// Event kinds this part emits.
pub const EVENT_KINDS: &[&str] = &[
    "campaign.created",
    "campaign.updated",
    "campaign.deleted",
    "campaign.restored",
    "campaign.member_added",
    "campaign.member_updated",
    "campaign.member_removed",
];

/// The deal table the ROI inputs aggregate (built by the deals part of this module).
pub const DEAL_TABLE: &str = crate::deal::rows::DEAL_TABLE;
/// The lead table the ROI inputs aggregate and lead members are checked against.
pub const LEAD_TABLE: &str = "pipeline_lead";

/// Longest campaign name.
pub const MAX_NAME: usize = 200;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 5000;

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),*
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// Stored names, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($text),*];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// From a stored name.
            pub fn parse(s: &str) -> Option<Self> {
                Self::NAMES.iter().position(|n| *n == s).map(|i| Self::ALL[i])
            }
        }
    };
}

named_enum!(
    /// The type of a campaign.
    CampaignKind {
        /// Email marketing.
        Email = "email",
        /// An event (trade show, conference).
        Event = "event",
        /// A webinar.
        Webinar = "webinar",
        /// Paid advertising.
        Advertising = "advertising",
        /// A referral programme.
        Referral = "referral",
        /// A partner programme.
        Partner = "partner",
        /// Anything else.
        #[default]
        Other = "other",
    }
);

named_enum!(
    /// The status of a campaign (see the module docs for the transitions).
    CampaignStatus {
        /// Being prepared.
        #[default]
        Planned = "planned",
        /// Running.
        Active = "active",
        /// Stopped for now.
        Paused = "paused",
        /// Finished (final).
        Completed = "completed",
        /// Called off (final).
        Cancelled = "cancelled",
    }
);

named_enum!(
    /// Where a member stands in a campaign.
    MemberStatus {
        /// Chosen as an audience.
        #[default]
        Targeted = "targeted",
        /// Reached (mail sent, invitation out).
        Sent = "sent",
        /// Responded (opened, registered, replied).
        Responded = "responded",
        /// Converted (became an opportunity or customer).
        Converted = "converted",
    }
);

impl CampaignStatus {
    /// Whether a campaign in this status may move to `next` (the same status is allowed:
    /// it changes nothing).
    pub fn can_become(self, next: CampaignStatus) -> bool {
        use CampaignStatus::*;
        self == next
            || matches!(
                (self, next),
                (Planned, Active)
                    | (Planned, Cancelled)
                    | (Active, Paused)
                    | (Active, Completed)
                    | (Active, Cancelled)
                    | (Paused, Active)
                    | (Paused, Completed)
                    | (Paused, Cancelled)
            )
    }

    /// Whether no transition leaves this status.
    pub fn is_final(self) -> bool {
        matches!(self, CampaignStatus::Completed | CampaignStatus::Cancelled)
    }
}

/// A campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// Id.
    pub id: CampaignId,
    /// Name (1 to [`MAX_NAME`] characters).
    pub name: String,
    /// Type.
    pub kind: CampaignKind,
    /// Status.
    pub status: CampaignStatus,
    /// First day.
    pub start_date: Option<NaiveDate>,
    /// Last day (not before the first).
    pub end_date: Option<NaiveDate>,
    /// Budget (not negative).
    pub budget: Option<Money>,
    /// Actual cost so far (not negative; in the budget's currency when both are set).
    pub actual_cost: Option<Money>,
    /// Expected revenue (not negative).
    pub expected_revenue: Option<Money>,
    /// Description (at most [`MAX_DESCRIPTION`] characters).
    pub description: Option<String>,
    /// Owner.
    pub owner: UserId,
    /// Owning team.
    pub team: Option<TeamId>,
    /// Custom values (record kind `campaign`).
    pub custom: CustomValues,
    /// Created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version (1 when created, +1 per change).
    pub version: u64,
}

/// Input for a new campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NewCampaign {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: CampaignKind,
    /// Initial status (any; planned by default).
    pub status: CampaignStatus,
    /// First day.
    pub start_date: Option<NaiveDate>,
    /// Last day.
    pub end_date: Option<NaiveDate>,
    /// Budget.
    pub budget: Option<Money>,
    /// Actual cost.
    pub actual_cost: Option<Money>,
    /// Expected revenue.
    pub expected_revenue: Option<Money>,
    /// Description.
    pub description: Option<String>,
    /// Owner; the actor when absent.
    pub owner: Option<UserId>,
    /// Owning team.
    pub team: Option<TeamId>,
    /// Custom values.
    pub custom: CustomValues,
}

impl NewCampaign {
    /// A planned campaign of a kind with a name.
    pub fn named(name: impl Into<String>, kind: CampaignKind) -> Self {
        NewCampaign {
            name: name.into(),
            kind,
            ..Default::default()
        }
    }

    crmkit_core::setters! {
        /// In this initial status.
        set status: CampaignStatus;
        /// With a first day.
        some start_date: NaiveDate;
        /// With a last day (not before the first).
        some end_date: NaiveDate;
        /// With a budget.
        some budget: Money;
        /// With an actual cost (in the budget's currency).
        some actual_cost: Money;
        /// With an expected revenue.
        some expected_revenue: Money;
        /// With a description.
        some description: String;
        /// Owned by this user.
        some owner: UserId;
        /// Owned by this team.
        some team: TeamId;
    }

    /// With a custom value.
    pub fn custom(mut self, key: impl Into<String>, value: CustomValue) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// A change to a campaign: `None` leaves a field alone; `Some(None)` clears an optional one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CampaignPatch {
    /// New name.
    pub name: Option<String>,
    /// New type.
    pub kind: Option<CampaignKind>,
    /// New status (see the transitions in the module docs).
    pub status: Option<CampaignStatus>,
    /// New first day.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub start_date: Option<Option<NaiveDate>>,
    /// New last day.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub end_date: Option<Option<NaiveDate>>,
    /// New budget.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub budget: Option<Option<Money>>,
    /// New actual cost.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub actual_cost: Option<Option<Money>>,
    /// New expected revenue.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub expected_revenue: Option<Option<Money>>,
    /// New description.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub description: Option<Option<String>>,
    /// New owner.
    pub owner: Option<UserId>,
    /// New team.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub team: Option<Option<TeamId>>,
    /// Custom values to set (`Some`) or remove (`None`), by key.
    pub custom: BTreeMap<String, Option<CustomValue>>,
}

impl CampaignPatch {
    crmkit_core::setters! {
        /// New name.
        some name: String;
        /// New type.
        some kind: CampaignKind;
        /// New status (see the transitions in the module docs).
        some status: CampaignStatus;
        /// New first day (`None` clears it).
        some start_date: Option<NaiveDate>;
        /// New last day (`None` clears it).
        some end_date: Option<NaiveDate>;
        /// New budget (`None` clears it).
        some budget: Option<Money>;
        /// New actual cost (`None` clears it).
        some actual_cost: Option<Money>;
        /// New expected revenue (`None` clears it).
        some expected_revenue: Option<Money>;
        /// New description (`None` clears it).
        some description: Option<String>;
        /// New owner.
        some owner: UserId;
        /// New team (`None` clears it).
        some team: Option<TeamId>;
    }

    /// Sets (`Some`) or removes (`None`) a custom value.
    pub fn custom(mut self, key: impl Into<String>, value: Option<CustomValue>) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// A lead or contact in a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignMember {
    /// The membership's id.
    pub id: CampaignMemberId,
    /// The campaign.
    pub campaign: CampaignId,
    /// The lead or contact.
    pub member: RecordRef,
    /// Its status in the campaign.
    pub status: MemberStatus,
    /// When it was added.
    pub added_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
    /// Version (1 when added, +1 per change).
    pub version: u64,
}

/// Counts of attributed deals by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttributedDeals {
    /// Open deals.
    pub open: u64,
    /// Won deals.
    pub won: u64,
    /// Lost deals.
    pub lost: u64,
}

/// An exact total of amounts in one currency, in storage units (10^-4 of the currency):
/// 128 bits wide, so the total of any number of stored amounts fits (one [`Money`] holds
/// at most 2^63 - 1 units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyTotal {
    /// The currency.
    pub currency: Currency,
    /// The total in 10^-4 units of the currency.
    pub units: i128,
}

impl CurrencyTotal {
    /// The total of one amount.
    pub fn of(m: &Money) -> Result<CurrencyTotal> {
        Ok(CurrencyTotal {
            currency: m.currency(),
            units: i128::from(m.to_storage_units()?),
        })
    }

    /// The total as a decimal (`None` beyond the 28 digits a decimal holds).
    pub fn amount(&self) -> Option<Decimal> {
        Decimal::try_from_i128_with_scale(self.units, Money::STORAGE_SCALE)
            .ok()
            .map(|d| d.normalize())
    }
}

/// The deals and leads attributed to one campaign, aggregated in the database (see the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attribution {
    /// Amounts of open attributed deals, one total per currency (by code).
    pub pipeline: Vec<CurrencyTotal>,
    /// Amounts of won attributed deals, one total per currency (by code).
    pub won: Vec<CurrencyTotal>,
    /// Attributed deals by state.
    pub deals: AttributedDeals,
    /// Attributed leads.
    pub leads: u64,
}

/// What a campaign ROI report needs, computed in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoiInputs {
    /// The campaign.
    pub campaign: CampaignId,
    /// Actual cost (when recorded).
    pub cost: Option<Money>,
    /// Budget (when set).
    pub budget: Option<Money>,
    /// Expected revenue (when set).
    pub expected_revenue: Option<Money>,
    /// Amounts of open attributed deals, one exact total per currency (by code).
    pub attributed_pipeline: Vec<CurrencyTotal>,
    /// Amounts of won attributed deals, one exact total per currency (by code).
    pub attributed_won: Vec<CurrencyTotal>,
    /// Attributed deals by state.
    pub attributed_deals: AttributedDeals,
    /// Attributed leads.
    pub attributed_leads: u64,
    /// Members by status (every status, in order).
    pub members: Vec<(MemberStatus, u64)>,
}

/// Field checks shared by create and update; every bad field is reported.
fn check_fields(errs: &mut ValidationErrors, c: &Campaign, custom: &CustomSchema) {
    errs.check(crmkit_core::text::check_text(
        "name", &c.name, MAX_NAME, true,
    ));
    if let Some(d) = &c.description {
        errs.check(crmkit_core::text::check_text(
            "description",
            d,
            MAX_DESCRIPTION,
            false,
        ));
    }
    for (field, d) in [("start_date", c.start_date), ("end_date", c.end_date)] {
        if let Some(d) = d
            && let Err(reason) = crmkit_core::text::check_date(d)
        {
            errs.push(field, reason);
        }
    }
    if let (Some(s), Some(e)) = (c.start_date, c.end_date)
        && e < s
    {
        errs.push("end_date", format!("{e} is before the start date {s}"));
    }
    for (field, m) in [
        ("budget", &c.budget),
        ("actual_cost", &c.actual_cost),
        ("expected_revenue", &c.expected_revenue),
    ] {
        if let Some(m) = m {
            if m.is_negative() {
                errs.push(field, "must not be negative");
            } else if m.to_storage_units().is_err() {
                errs.push(
                    field,
                    "does not fit storage (at most 4 fractional digits and 922337203685477)",
                );
            }
        }
    }
    if let (Some(b), Some(a)) = (&c.budget, &c.actual_cost)
        && b.currency() != a.currency()
    {
        errs.push(
            "actual_cost",
            format!(
                "is in {} but the budget is in {}; they must be in one currency",
                a.currency(),
                b.currency()
            ),
        );
    }
    errs.check(custom.validate(&c.custom));
}

/// The campaigns API.
#[derive(Clone, Debug)]
pub struct Campaigns {
    store: Store,
}

impl Campaigns {
    /// The API over a store composed with the pipeline module.
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("pipeline")?;
        Ok(Campaigns {
            store: store.clone(),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The visibility condition for another module's table: applied only when the actor
    /// is restricted and the table has an `owner_id` column.
    fn foreign_visibility(ctx: &Ctx, table: &TableDef) -> Cond {
        match ctx.actor().visibility() {
            Visibility::All => Cond::True,
            Visibility::Owned { user, teams } => {
                if table.column("owner_id").is_none() {
                    return Cond::True;
                }
                let mut any = vec![Cond::eq("owner_id", user.as_uuid())];
                if !teams.is_empty() && table.column("team_id").is_some() {
                    any.push(Cond::In(
                        "team_id".into(),
                        teams.iter().map(|t| Value::Uuid(t.as_uuid())).collect(),
                    ));
                }
                Cond::Or(any)
            }
        }
    }

    async fn custom_schema(&self, ctx: &Ctx) -> Result<CustomSchema> {
        self.store.custom_fields().of_kind(ctx, &CAMPAIGN).await
    }

    // ----- campaigns -----

    /// Creates a campaign. Bad input is a Validation error naming every bad field
    /// (`name`, `description`, `start_date`, `end_date` before the start, `budget` /
    /// `actual_cost` / `expected_revenue` negative, `actual_cost` in another currency
    /// than `budget`, `owner`, `team`, `custom.<key>`), and nothing is written.
    pub async fn create(&self, ctx: &Ctx, input: NewCampaign) -> Result<Campaign> {
        ctx.actor().require_write("create campaign")?;
        let custom = self.custom_schema(ctx).await?;
        let now = ctx.now();
        let c = Campaign {
            id: CampaignId::new(),
            name: input.name,
            kind: input.kind,
            status: input.status,
            start_date: input.start_date,
            end_date: input.end_date,
            budget: input.budget,
            actual_cost: input.actual_cost,
            expected_revenue: input.expected_revenue,
            description: input.description,
            owner: input.owner.unwrap_or(ctx.actor().user),
            team: input.team,
            custom: input.custom,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        let mut errs = ValidationErrors::new();
        check_fields(&mut errs, &c, &custom);
        OwnerChecks::new()
            .check(&self.store, ctx, &mut errs, c.owner, c.team)
            .await?;
        errs.into_result()?;
        let record = RecordRef::from(c.id);
        let mut cs = Changeset::new(ctx);
        stage_insert(&mut cs, &c, rows::campaign_row(&c)?);
        cs.writes
            .extend(custom.index_writes(&record, &c.custom, false));
        self.store.commit(cs).await?;
        Ok(c)
    }

    /// Changes a campaign whose current version is `expected_version` (else Conflict). A
    /// status change must follow the transitions (else InvalidTransition); bad fields are
    /// reported as by [`Campaigns::create`]. An audit entry per changed field and one
    /// `campaign.updated` event; a patch that changes nothing writes nothing.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: CampaignId,
        expected_version: u64,
        patch: CampaignPatch,
    ) -> Result<Campaign> {
        let old = self.live(ctx, id, "update campaign").await?;
        let custom = self.custom_schema(ctx).await?;
        let mut new = old.clone();
        let owner = (patch.owner, patch.team);
        crmkit_core::apply_patch!(patch => new; name, kind, status, start_date, end_date,
            budget, actual_cost, expected_revenue, description);
        new.custom = apply_custom_patch(&old.custom, &patch.custom);
        let mut errs = ValidationErrors::new();
        check_fields(&mut errs, &new, &custom);
        service::reassign(&self.store, ctx, &mut errs, &mut new, owner).await?;
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        if !old.status.can_become(new.status) {
            return Err(Error::InvalidTransition {
                record: RecordRef::from(id),
                reason: format!(
                    "a {} campaign cannot become {}",
                    old.status.as_str(),
                    new.status.as_str()
                ),
            });
        }
        let mut cs = Changeset::new(ctx);
        let event = "campaign.updated";
        let Some((record, _)) = service::stage_record_update(
            &self.store,
            &mut cs,
            &old,
            &mut new,
            event,
            rows::campaign_row,
        )?
        else {
            return Ok(old);
        };
        cs.writes
            .extend(custom.changed_index_writes(&record, &old.custom, &new.custom));
        self.store.commit(cs).await?;
        Ok(new)
    }

    // ----- members -----

    /// Checks that `member` is a live lead or contact of the tenant visible to the actor
    /// (the one reference rule, [`crmkit_core::record::Records::visible`]: a missing,
    /// deleted, another tenant's and a hidden record give the same error); pushes a
    /// Validation error on `member` otherwise.
    async fn check_member(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        member: &RecordRef,
    ) -> Result<()> {
        if member.kind == RecordKind::CONTACT || member.kind == RecordKind::LEAD {
            if !self.store.records().visible(ctx, member).await? {
                errs.push("member", reference_reason(&member.kind));
            }
        } else {
            errs.push(
                "member",
                format!("must be a lead or a contact, not a {}", member.kind),
            );
        }
        Ok(())
    }

    async fn find_member(
        &self,
        ctx: &Ctx,
        campaign: CampaignId,
        member: &RecordRef,
    ) -> Result<Option<CampaignMember>> {
        let cond = Cond::eq("campaign_id", campaign.as_uuid())
            .and(Cond::eq("member_kind", member.kind.as_str()))
            .and(Cond::eq("member_id", member.id));
        let rows = self
            .store
            .backend()
            .select(ctx.tenant(), &Select::new(MEMBER_TABLE, cond))
            .await?;
        rows.into_iter().next().map(rows::decode_member).transpose()
    }

    /// The campaign for a member command: visible, not deleted, and the actor may write.
    async fn campaign_for_members(&self, ctx: &Ctx, id: CampaignId, action: &str) -> Result<()> {
        self.live(ctx, id, action).await.map(|_| ())
    }

    /// Adds a lead or contact (`RecordRef` of kind `lead` or `contact`) to a campaign. A
    /// member that is not a live lead or contact of the tenant visible to the actor is a
    /// Validation error on `member`; one already in the campaign is a Duplicate (field
    /// `member`, naming the membership).
    pub async fn add_member(
        &self,
        ctx: &Ctx,
        campaign: CampaignId,
        member: RecordRef,
        status: MemberStatus,
    ) -> Result<CampaignMember> {
        self.campaign_for_members(ctx, campaign, "add campaign member")
            .await?;
        let mut errs = ValidationErrors::new();
        self.check_member(ctx, &mut errs, &member).await?;
        errs.into_result()?;
        let duplicate = |existing: Option<CampaignMemberId>| Error::Duplicate {
            kind: CAMPAIGN_MEMBER,
            field: "member".into(),
            existing: existing.map(RecordRef::from),
        };
        if let Some(m) = self.find_member(ctx, campaign, &member).await? {
            return Err(duplicate(Some(m.id)));
        }
        let now = ctx.now();
        let m = CampaignMember {
            id: CampaignMemberId::new(),
            campaign,
            member,
            status,
            added_at: now,
            updated_at: now,
            version: 1,
        };
        let record = RecordRef::from(m.id);
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: MEMBER_TABLE,
            row: rows::member_row(&m),
        });
        let snapshot = json_text(&m);
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "*".into(),
            old: None,
            new: Some(snapshot.clone()),
        });
        cs.events.push(NewEvent::from_json(
            "campaign.member_added",
            record,
            vec![],
            snapshot,
        ));
        match self.store.commit(cs).await {
            Err(Error::Duplicate { .. }) => {
                let existing = self.find_member(ctx, campaign, &m.member).await?;
                Err(duplicate(existing.map(|e| e.id)))
            }
            other => other.map(|_| m),
        }
    }

    /// A member of a visible campaign; NotFound (`campaign_member`) when it is not one.
    pub async fn get_member(
        &self,
        ctx: &Ctx,
        campaign: CampaignId,
        member: &RecordRef,
    ) -> Result<CampaignMember> {
        self.load(ctx, campaign, Some(false)).await?;
        self.find_member(ctx, campaign, member)
            .await?
            .ok_or_else(|| Error::not_found(CAMPAIGN_MEMBER, member))
    }

    /// Sets a member's status (NotFound when it is not a member). Guarded by the
    /// membership's version, so a concurrent change is a Conflict, not a lost update.
    pub async fn update_member(
        &self,
        ctx: &Ctx,
        campaign: CampaignId,
        member: &RecordRef,
        status: MemberStatus,
    ) -> Result<CampaignMember> {
        self.campaign_for_members(ctx, campaign, "update campaign member")
            .await?;
        let old = self
            .find_member(ctx, campaign, member)
            .await?
            .ok_or_else(|| Error::not_found(CAMPAIGN_MEMBER, member))?;
        if old.status == status {
            return Ok(old);
        }
        let now = ctx.now();
        let new = CampaignMember {
            status,
            updated_at: now,
            version: old.version + 1,
            ..old.clone()
        };
        let record = RecordRef::from(old.id);
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Update {
            table: MEMBER_TABLE,
            key: vec![Value::Uuid(old.id.as_uuid())],
            set: vec![
                ("status", Value::Text(status.as_str().into())),
                ("updated_at", Value::timestamp(now)),
            ],
            expect_version: Some(old.version),
            record: record.clone(),
        });
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "status".into(),
            old: Some(json_text(&old.status)),
            new: Some(json_text(&new.status)),
        });
        cs.events.push(NewEvent::new(
            "campaign.member_updated",
            record,
            vec!["status".into()],
            to_json(&new),
        ));
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// Removes a member from a campaign (NotFound when it is not one). The membership row
    /// is deleted; its audit entry and event keep what it was.
    pub async fn remove_member(
        &self,
        ctx: &Ctx,
        campaign: CampaignId,
        member: &RecordRef,
    ) -> Result<CampaignMember> {
        self.campaign_for_members(ctx, campaign, "remove campaign member")
            .await?;
        let old = self
            .find_member(ctx, campaign, member)
            .await?
            .ok_or_else(|| Error::not_found(CAMPAIGN_MEMBER, member))?;
        let record = RecordRef::from(old.id);
        let mut cs = Changeset::new(ctx);
        // The version-guarded update makes a concurrent change a Conflict before the delete.
        cs.writes.push(Write::Update {
            table: MEMBER_TABLE,
            key: vec![Value::Uuid(old.id.as_uuid())],
            set: vec![("updated_at", Value::timestamp(ctx.now()))],
            expect_version: Some(old.version),
            record: record.clone(),
        });
        cs.writes.push(Write::Delete {
            table: MEMBER_TABLE,
            key: vec![Value::Uuid(old.id.as_uuid())],
        });
        let snapshot = json_text(&old);
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "*".into(),
            old: Some(snapshot.clone()),
            new: None,
        });
        cs.events.push(NewEvent::from_json(
            "campaign.member_removed",
            record,
            vec![],
            snapshot,
        ));
        self.store.commit(cs).await?;
        Ok(old)
    }

    /// The members of a visible campaign, keyset paged (fields: [`MEMBER_FIELDS`]; in the
    /// order they were added unless sorted). A cursor of another campaign's list is a
    /// Validation error on `cursor`.
    pub async fn list_members(
        &self,
        ctx: &Ctx,
        campaign: CampaignId,
        q: &Query,
    ) -> Result<Page<CampaignMember>> {
        self.load(ctx, campaign, Some(false)).await?;
        list_page(
            &self.store,
            ctx,
            q,
            &MEMBER_FIELDS,
            Cond::eq("campaign_id", campaign.as_uuid()),
            rows::decode_member,
            |_| None,
        )
        .await
    }

    // ----- ROI inputs -----

    /// How many campaign ids one attribution aggregate names (`campaign_id IN (..)`).
    pub const ATTRIBUTION_CHUNK: usize = 500;

    /// The deals and leads attributed to campaigns (see the [module docs](self)),
    /// aggregated in the database: `campaigns` only (in aggregates of at most
    /// [`Self::ATTRIBUTION_CHUNK`] ids), or, when `None`, every campaign that has attributed
    /// deals or leads the actor sees. Campaign visibility is not checked here: a caller
    /// that reports on campaigns picks the ones the actor sees (as
    /// [`Campaigns::roi_inputs`] does); the figures count only live deals and leads the
    /// actor sees. A campaign without attributed deals or leads has no entry.
    pub async fn attribution(
        &self,
        ctx: &Ctx,
        campaigns: Option<&[CampaignId]>,
    ) -> Result<BTreeMap<CampaignId, Attribution>> {
        let mut out = BTreeMap::new();
        match campaigns {
            None => {
                let any = Cond::Not(Box::new(Cond::IsNull("campaign_id".into())));
                self.attribution_of(ctx, any, &mut out).await?;
            }
            Some(ids) => {
                for chunk in ids.chunks(Self::ATTRIBUTION_CHUNK) {
                    let these = Cond::In(
                        "campaign_id".into(),
                        chunk.iter().map(|c| Value::Uuid(c.as_uuid())).collect(),
                    );
                    self.attribution_of(ctx, these, &mut out).await?;
                }
            }
        }
        Ok(out)
    }

    /// [`Campaigns::attribution`] of the campaigns `which` selects, added to `out`.
    async fn attribution_of(
        &self,
        ctx: &Ctx,
        which: Cond,
        out: &mut BTreeMap<CampaignId, Attribution>,
    ) -> Result<()> {
        let backend = self.store.backend();
        let schema = backend.schema();
        let live = which.and(Cond::IsNull("deleted_at".into()));
        let bad = || Error::storage("malformed attribution aggregate row");
        let campaign_of = |v: &Value| v.as_uuid().map(CampaignId::from_uuid).ok_or_else(bad);
        if let Ok(deals) = schema.table(DEAL_TABLE) {
            let agg = Aggregate {
                table: DEAL_TABLE,
                cond: live.clone().and(Self::foreign_visibility(ctx, deals)),
                group_by: vec!["campaign_id".into(), "currency".into(), "status".into()],
                measures: vec![Measure::Sum("amount".into()), Measure::Count],
                buckets: None,
            };
            // (campaign, open?) -> currency -> units.
            let mut sums: BTreeMap<(CampaignId, bool), BTreeMap<Currency, i128>> = BTreeMap::new();
            for r in backend.aggregate(ctx.tenant(), &agg).await? {
                let campaign = campaign_of(&r[0])?;
                let status = r[2].as_text().ok_or_else(bad)?;
                let sum = r[3].as_sum().ok_or_else(bad)?;
                let n = r[4].as_int().ok_or_else(bad)? as u64;
                let currency = match &r[1] {
                    Value::Text(code) => Some(Currency::parse(code).map_err(|_| {
                        Error::storage(format!("deal currency {code:?} is not ISO 4217"))
                    })?),
                    _ => None,
                };
                let a = out.entry(campaign).or_default();
                let open = match status {
                    "open" => {
                        a.deals.open += n;
                        Some(true)
                    }
                    "won" => {
                        a.deals.won += n;
                        Some(false)
                    }
                    "lost" => {
                        a.deals.lost += n;
                        None
                    }
                    other => {
                        return Err(Error::storage(format!("unknown deal status {other:?}")));
                    }
                };
                if let (Some(open), Some(cur)) = (open, currency) {
                    let e = sums
                        .entry((campaign, open))
                        .or_default()
                        .entry(cur)
                        .or_insert(0);
                    *e = e
                        .checked_add(sum)
                        .ok_or_else(|| Error::storage("attributed amount overflows 128 bits"))?;
                }
            }
            for ((campaign, open), by_currency) in sums {
                let totals = by_currency
                    .into_iter()
                    .map(|(currency, units)| CurrencyTotal { currency, units })
                    .collect();
                let a = out.entry(campaign).or_default();
                if open {
                    a.pipeline = totals;
                } else {
                    a.won = totals;
                }
            }
        }
        if let Ok(leads) = schema.table(LEAD_TABLE) {
            let agg = Aggregate {
                table: LEAD_TABLE,
                cond: live.and(Self::foreign_visibility(ctx, leads)),
                group_by: vec!["campaign_id".into()],
                measures: vec![Measure::Count],
                buckets: None,
            };
            for r in backend.aggregate(ctx.tenant(), &agg).await? {
                out.entry(campaign_of(&r[0])?).or_default().leads +=
                    r[1].as_int().ok_or_else(bad)? as u64;
            }
        }
        Ok(())
    }

    /// The inputs of a campaign's ROI report (see the module docs): the campaign's cost,
    /// budget and expected revenue, its [`Campaigns::attribution`] (open and won amounts
    /// per currency, exact, and the counts of attributed deals and leads), and the members
    /// by status. A campaign the actor does not see is NotFound.
    pub async fn roi_inputs(&self, ctx: &Ctx, id: CampaignId) -> Result<RoiInputs> {
        let c = self.load(ctx, id, Some(false)).await?;
        let attributed = self
            .attribution(ctx, Some(&[id]))
            .await?
            .remove(&id)
            .unwrap_or_default();
        let agg = Aggregate {
            table: MEMBER_TABLE,
            cond: Cond::eq("campaign_id", id.as_uuid()),
            group_by: vec!["status".into()],
            measures: vec![Measure::Count],
            buckets: None,
        };
        let mut by_status: BTreeMap<MemberStatus, u64> =
            MemberStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for r in self.store.backend().aggregate(ctx.tenant(), &agg).await? {
            let s = r[0]
                .as_text()
                .and_then(MemberStatus::parse)
                .ok_or_else(|| Error::storage("malformed member aggregate row"))?;
            by_status.insert(s, r[1].as_int().unwrap_or(0) as u64);
        }
        Ok(RoiInputs {
            campaign: id,
            cost: c.actual_cost,
            budget: c.budget,
            expected_revenue: c.expected_revenue,
            attributed_pipeline: attributed.pipeline,
            attributed_won: attributed.won,
            attributed_deals: attributed.deals,
            attributed_leads: attributed.leads,
            members: by_status.into_iter().collect(),
        })
    }
}

crmkit_core::record_verbs! {
    Campaigns: Campaign, CampaignId;
    load;
    live;
    /// A campaign that is visible to the actor and not deleted.
    get;
    /// Lists campaigns visible to the actor: filter, sort, keyset page (fields:
    /// [`CAMPAIGN_FIELDS`] and `custom.<key>`). Deleted ones only with
    /// [`Query::include_deleted`].
    list(CAMPAIGN_FIELDS, custom);
    /// The audit trail of a visible campaign (deleted or not).
    audit;
    /// Soft-deletes a campaign (restorable; its members stay).
    delete;
    /// Restores a soft-deleted campaign.
    restore;
    set_deleted;
}
