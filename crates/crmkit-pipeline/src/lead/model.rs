//! The lead record, its inputs, and the inputs and outcomes of conversion.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use crmkit_contacts::{Contact, EmailAddress, Organization, Phone, PhoneInput};
use crmkit_core::{
    CampaignId, ContactId, CustomValue, CustomValues, DealId, LeadId, Money, OrganizationId,
    PipelineId, StageId, TeamId, UserId,
};
use serde::{Deserialize, Serialize};

use crate::deal::{Deal, Source};

/// Where a lead is in qualification.
///
/// Transition rules (enforced by [`crate::lead::Leads::set_status`]):
/// - `new`, `contacted`, `nurturing` and `qualified` are open: any open status may move to
///   any other open status or to `disqualified`.
/// - `disqualified` needs a reason; a disqualified lead may be reopened (moved to an open
///   status, which clears the reason).
/// - `converted` is terminal and only reachable through
///   [`crate::lead::Leads::convert`]: setting it directly, or changing the status of a
///   converted lead, is an [`crmkit_core::Error::InvalidTransition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    /// Just captured.
    #[default]
    New,
    /// Someone reached out.
    Contacted,
    /// Being nurtured (not ready to buy yet).
    Nurturing,
    /// Qualified: ready to convert.
    Qualified,
    /// Not a fit (with a reason).
    Disqualified,
    /// Converted into a contact (and maybe an organization and a deal). Terminal.
    Converted,
}

impl LeadStatus {
    /// Every status, in order.
    pub const ALL: [LeadStatus; 6] = [
        LeadStatus::New,
        LeadStatus::Contacted,
        LeadStatus::Nurturing,
        LeadStatus::Qualified,
        LeadStatus::Disqualified,
        LeadStatus::Converted,
    ];
    /// Stored names, in the order of [`Self::ALL`].
    pub const NAMES: &'static [&'static str] = &[
        "new",
        "contacted",
        "nurturing",
        "qualified",
        "disqualified",
        "converted",
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// From a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }

    /// Whether the lead is still being worked (not disqualified, not converted).
    pub fn is_open(self) -> bool {
        !matches!(self, LeadStatus::Disqualified | LeadStatus::Converted)
    }
}

/// A prospect captured before qualification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    /// Id.
    pub id: LeadId,
    /// First name.
    pub first_name: String,
    /// Last name (may be empty when the first name is not).
    pub last_name: String,
    /// Job title.
    pub job_title: Option<String>,
    /// Company name.
    pub company: Option<String>,
    /// Company web domain, normalised like an organization's (`example.com`).
    pub domain: Option<String>,
    /// Company website (http or https URL).
    pub website: Option<String>,
    /// Company size.
    pub employee_count: Option<i64>,
    /// Emails; the first is the primary one.
    pub emails: Vec<EmailAddress>,
    /// Phones in E.164; the first is the primary one.
    pub phones: Vec<Phone>,
    /// Where the lead came from.
    pub source: Source,
    /// Qualification status.
    pub status: LeadStatus,
    /// Why it was disqualified (set exactly when the status is `disqualified`).
    pub disqualified_reason: Option<String>,
    /// The owning user.
    pub owner: UserId,
    /// The owning team.
    pub team: Option<TeamId>,
    /// The campaign that sourced it (one the actor could see when it was set).
    pub campaign: Option<CampaignId>,
    /// A score the host or automation sets.
    pub score: i64,
    /// Custom field values (record kind `lead`).
    pub custom: CustomValues,
    /// The contact it was converted into.
    pub converted_contact: Option<ContactId>,
    /// The organization it was converted into.
    pub converted_organization: Option<OrganizationId>,
    /// The deal it was converted into.
    pub converted_deal: Option<DealId>,
    /// When it was converted.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub converted_at: Option<DateTime<Utc>>,
    /// Created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version for optimistic concurrency (1 on creation).
    pub version: u64,
}

impl Lead {
    /// The primary email, if any.
    pub fn primary_email(&self) -> Option<&str> {
        self.emails.first().map(|e| e.address.as_str())
    }

    /// "First Last" ([`full_name`](crmkit_core::text::full_name)).
    pub fn full_name(&self) -> String {
        crmkit_core::text::full_name(&self.first_name, &self.last_name)
    }
}

/// Input for a new lead.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewLead {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Job title (at most 200 characters).
    pub job_title: Option<String>,
    /// Company name (at most 200 characters).
    pub company: Option<String>,
    /// Company domain (`example.com`; a URL's host is accepted and lowercased).
    pub domain: Option<String>,
    /// Company website (http or https URL).
    pub website: Option<String>,
    /// Company size (not negative).
    pub employee_count: Option<i64>,
    /// Emails (the first is primary), validated as a contact's.
    pub emails: Vec<String>,
    /// Phones, validated as a contact's.
    pub phones: Vec<PhoneInput>,
    /// Source.
    pub source: Source,
    /// Initial status (`new` by default; `converted` is refused).
    pub status: LeadStatus,
    /// The reason, when the initial status is `disqualified`.
    pub disqualified_reason: Option<String>,
    /// Owner; the acting user when absent.
    pub owner: Option<UserId>,
    /// Owning team.
    pub team: Option<TeamId>,
    /// Campaign.
    pub campaign: Option<CampaignId>,
    /// Initial score.
    pub score: i64,
    /// Custom values.
    pub custom: CustomValues,
}

impl NewLead {
    /// A lead with a name and nothing else.
    pub fn named(first: impl Into<String>, last: impl Into<String>) -> Self {
        NewLead {
            first_name: first.into(),
            last_name: last.into(),
            ..Default::default()
        }
    }

    crmkit_core::setters! {
        /// With an email.
        push email(emails): String;
        /// With a phone.
        push phone(phones): PhoneInput;
    }

    /// With a company name and domain.
    pub fn company(mut self, name: impl Into<String>, domain: Option<&str>) -> Self {
        self.company = Some(name.into());
        self.domain = domain.map(str::to_owned);
        self
    }

    crmkit_core::setters! {
        /// With a job title.
        some job_title: String;
        /// With a company website.
        some website: String;
        /// With a company size.
        some employee_count: i64;
        /// From this source.
        set source: Source;
        /// In this initial status (`disqualified` needs [`Self::disqualified_reason`]).
        set status: LeadStatus;
        /// With the reason of an initial `disqualified` status.
        some disqualified_reason: String;
        /// Owned by this user.
        some owner: UserId;
        /// Owned by this team.
        some team: TeamId;
        /// Sourced by this campaign (one the actor can see).
        some campaign: CampaignId;
        /// With an initial score.
        set score: i64;
    }

    /// With a custom value.
    pub fn custom(mut self, key: impl Into<String>, value: CustomValue) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// A change to a lead: only `Some` fields change. Status, score, conversion links, ids,
/// timestamps and version are not part of it (status and score have their own commands).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LeadPatch {
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Job title (`Some(None)` clears it).
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub job_title: Option<Option<String>>,
    /// Company name.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub company: Option<Option<String>>,
    /// Company domain.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub domain: Option<Option<String>>,
    /// Company website.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub website: Option<Option<String>>,
    /// Company size.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub employee_count: Option<Option<i64>>,
    /// Emails (replacing all).
    pub emails: Option<Vec<String>>,
    /// Phones (replacing all).
    pub phones: Option<Vec<PhoneInput>>,
    /// Source.
    pub source: Option<Source>,
    /// Owner (Admin/Manager, or a Rep taking ownership themselves).
    pub owner: Option<UserId>,
    /// Team.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub team: Option<Option<TeamId>>,
    /// Campaign.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub campaign: Option<Option<CampaignId>>,
    /// Custom values to set (`Some`) or remove (`None`), by key.
    pub custom: BTreeMap<String, Option<CustomValue>>,
}

impl LeadPatch {
    crmkit_core::setters! {
        /// New first name.
        some first_name: String;
        /// New last name.
        some last_name: String;
        /// New job title (`None` clears it).
        some job_title: Option<String>;
        /// New company name (`None` clears it).
        some company: Option<String>;
        /// New company domain (`None` clears it).
        some domain: Option<String>;
        /// New website (`None` clears it).
        some website: Option<String>;
        /// New company size (`None` clears it).
        some employee_count: Option<i64>;
        /// New emails (replacing all).
        some emails: Vec<String>;
        /// New phones (replacing all).
        some phones: Vec<PhoneInput>;
        /// New source.
        some source: Source;
        /// New owner.
        some owner: UserId;
        /// New team (`None` clears it).
        some team: Option<TeamId>;
        /// New campaign (`None` clears it).
        some campaign: Option<CampaignId>;
    }

    /// Sets (`Some`) or removes (`None`) a custom value.
    pub fn custom(mut self, key: impl Into<String>, value: Option<CustomValue>) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// Which contact a conversion links or creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactChoice {
    /// Link the live contact (visible to the actor) holding the lead's primary email,
    /// matched ignoring case; create one when there is none.
    #[default]
    Auto,
    /// Link this contact (it must be live and visible to the actor).
    Link(ContactId),
    /// Always create a new contact (a Duplicate error if another contact has its email).
    Create,
}

/// Which organization a conversion links or creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationChoice {
    /// When the lead has a domain, link the live organization (visible to the actor) with
    /// that domain; otherwise, or when there is none, create one from the lead's company
    /// when it has a company name; else no organization.
    #[default]
    Auto,
    /// Link this organization (it must be live and visible to the actor).
    Link(OrganizationId),
    /// Always create one from the lead's company (which must then have a name).
    Create,
    /// No organization.
    None,
}

/// The deal a conversion creates: a [`crate::deal::NewDeal`] without what conversion fills
/// in (organization, contacts, source and campaign come from the conversion and the lead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertDeal {
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
    /// Probability override (0-100).
    pub probability: Option<u8>,
    /// Next step.
    pub next_step: Option<String>,
    /// Custom values (record kind `deal`).
    pub custom: CustomValues,
}

impl ConvertDeal {
    /// A deal with a title in a pipeline's first stage.
    pub fn new(title: impl Into<String>, pipeline: PipelineId) -> Self {
        ConvertDeal {
            title: title.into(),
            amount: None,
            expected_close: None,
            pipeline,
            stage: None,
            probability: None,
            next_step: None,
            custom: CustomValues::new(),
        }
    }
}

/// What to do in a conversion.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConvertLead {
    /// The contact to link or create.
    pub contact: ContactChoice,
    /// The organization to link or create.
    pub organization: OrganizationChoice,
    /// The deal to create, if any.
    pub deal: Option<ConvertDeal>,
    /// Owner of the records created; see [`crate::lead::Leads::convert`] for the default.
    pub owner: Option<UserId>,
    /// Convert a disqualified lead (otherwise an InvalidTransition).
    pub allow_disqualified: bool,
}

/// Whether conversion links an existing record or creates a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    /// An existing record, linked as it is.
    Linked(T),
    /// A new record (in a dry run: as it would be created, with an id that is not kept).
    Created(T),
}

impl<T> Outcome<T> {
    /// The record.
    pub fn record(&self) -> &T {
        match self {
            Outcome::Linked(t) | Outcome::Created(t) => t,
        }
    }

    /// Whether it is created.
    pub fn is_created(&self) -> bool {
        matches!(self, Outcome::Created(_))
    }
}

/// What a conversion would do, from [`crate::lead::Leads::convert_dry_run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionPlan {
    /// The lead as it would be after conversion.
    pub lead: Lead,
    /// The contact that would be linked or created.
    pub contact: Outcome<Contact>,
    /// The organization that would be linked or created, if any.
    pub organization: Option<Outcome<Organization>>,
    /// The deal that would be created, if any.
    pub deal: Option<Deal>,
}

/// What a conversion did, from [`crate::lead::Leads::convert`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    /// The converted lead.
    pub lead: Lead,
    /// The contact linked or created.
    pub contact: Outcome<Contact>,
    /// The organization linked or created, if any.
    pub organization: Option<Outcome<Organization>>,
    /// The deal created, if any.
    pub deal: Option<Deal>,
}
