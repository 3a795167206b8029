//! The records of the contacts module and their inputs.

use chrono::{DateTime, Utc};
use crmkit_core::{ContactId, CustomValues, Money, OrganizationId, TeamId, UserId};
use serde::{Deserialize, Serialize};

/// Lifecycle stage of a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    /// Subscribed to content.
    Subscriber,
    /// A lead.
    #[default]
    Lead,
    /// Marketing-qualified lead.
    MarketingQualified,
    /// Sales-qualified lead.
    SalesQualified,
    /// Has an open opportunity.
    Opportunity,
    /// A customer.
    Customer,
    /// A promoter.
    Evangelist,
    /// Anything else.
    Other,
}

impl LifecycleStage {
    /// Every stage, in order.
    pub const ALL: [LifecycleStage; 8] = [
        LifecycleStage::Subscriber,
        LifecycleStage::Lead,
        LifecycleStage::MarketingQualified,
        LifecycleStage::SalesQualified,
        LifecycleStage::Opportunity,
        LifecycleStage::Customer,
        LifecycleStage::Evangelist,
        LifecycleStage::Other,
    ];
    /// Stored names, in the order of [`Self::ALL`].
    pub const NAMES: &'static [&'static str] = &[
        "subscriber",
        "lead",
        "marketing_qualified",
        "sales_qualified",
        "opportunity",
        "customer",
        "evangelist",
        "other",
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
}

/// Marketing consent status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// Not asked.
    #[default]
    Unknown,
    /// Opted in.
    Granted,
    /// Opted out.
    Denied,
    /// Withdrawn after having been granted.
    Withdrawn,
}

impl ConsentStatus {
    /// Stored names.
    pub const NAMES: &'static [&'static str] = &["unknown", "granted", "denied", "withdrawn"];
    const ALL: [ConsentStatus; 4] = [
        ConsentStatus::Unknown,
        ConsentStatus::Granted,
        ConsentStatus::Denied,
        ConsentStatus::Withdrawn,
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
}

/// Marketing consent: status, where it came from, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Consent {
    /// The status.
    pub status: ConsentStatus,
    /// Where it was given or withdrawn (a form, a call, an import), at most 100 characters.
    pub source: Option<String>,
    /// When.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub at: Option<DateTime<Utc>>,
}

/// An email address of a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    /// As given (trimmed).
    pub address: String,
    /// A label such as `work` (at most 32 characters).
    pub label: Option<String>,
}

/// A phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    /// In E.164 (`+4930901820`).
    pub number: String,
    /// A label such as `mobile` (at most 32 characters).
    pub label: Option<String>,
}

/// An email address as entered: the address and an optional label (`work`, at most 32
/// characters). Built from a string (`"ada@example.com".into()`, no label) or with
/// [`EmailInput::labelled`]; in JSON either a string or an `{address, label}` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "EmailInputJson")]
pub struct EmailInput {
    /// As typed.
    pub address: String,
    /// A label.
    pub label: Option<String>,
}

impl EmailInput {
    /// An address without a label.
    pub fn new(address: impl Into<String>) -> Self {
        EmailInput {
            address: address.into(),
            label: None,
        }
    }

    /// An address with a label (`EmailInput::labelled("ada@example.com", "work")`).
    pub fn labelled(address: impl Into<String>, label: impl Into<String>) -> Self {
        EmailInput {
            address: address.into(),
            label: Some(label.into()),
        }
    }
}

impl From<String> for EmailInput {
    fn from(address: String) -> Self {
        EmailInput::new(address)
    }
}

impl From<&str> for EmailInput {
    fn from(address: &str) -> Self {
        EmailInput::new(address)
    }
}

impl From<&String> for EmailInput {
    fn from(address: &String) -> Self {
        EmailInput::new(address.as_str())
    }
}

impl From<EmailAddress> for EmailInput {
    fn from(e: EmailAddress) -> Self {
        EmailInput {
            address: e.address,
            label: e.label,
        }
    }
}

/// The JSON forms of an [`EmailInput`]: a plain address or an `{address, label}` object.
#[derive(Deserialize)]
#[serde(untagged)]
enum EmailInputJson {
    Address(String),
    Object {
        address: String,
        #[serde(default)]
        label: Option<String>,
    },
}

impl From<EmailInputJson> for EmailInput {
    fn from(j: EmailInputJson) -> Self {
        match j {
            EmailInputJson::Address(address) => EmailInput {
                address,
                label: None,
            },
            EmailInputJson::Object { address, label } => EmailInput { address, label },
        }
    }
}

/// A phone number as entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneInput {
    /// As typed.
    pub number: String,
    /// A label.
    pub label: Option<String>,
    /// Region (ISO 3166 alpha-2) for numbers without a country code.
    pub region: Option<String>,
}

impl PhoneInput {
    /// A number with a country code (`+49 30 901820`).
    pub fn new(number: impl Into<String>) -> Self {
        PhoneInput {
            number: number.into(),
            label: None,
            region: None,
        }
    }

    /// A national number read in `region` (`"030 901820"`, `"DE"`).
    pub fn national(number: impl Into<String>, region: impl Into<String>) -> Self {
        PhoneInput {
            number: number.into(),
            label: None,
            region: Some(region.into()),
        }
    }
}

/// A postal address (each line at most 200 characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PostalAddress {
    /// Street and number.
    pub street: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Region or state.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Country (ISO 3166 alpha-2 or a name).
    pub country: Option<String>,
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Id.
    pub id: ContactId,
    /// First name.
    pub first_name: String,
    /// Last name (may be empty when the first name is not).
    pub last_name: String,
    /// Emails; the first is the primary one.
    pub emails: Vec<EmailAddress>,
    /// Phones in E.164; the first is the primary one.
    pub phones: Vec<Phone>,
    /// Job title.
    pub job_title: Option<String>,
    /// The organization the person works for.
    pub organization: Option<OrganizationId>,
    /// The owning user.
    pub owner: UserId,
    /// The owning team.
    pub team: Option<TeamId>,
    /// Lifecycle stage.
    pub lifecycle_stage: LifecycleStage,
    /// Marketing consent.
    pub consent: Consent,
    /// Tags (each at most 50 characters, no duplicates).
    pub tags: Vec<String>,
    /// Custom field values.
    pub custom: CustomValues,
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

impl Contact {
    /// The primary email, if any.
    pub fn primary_email(&self) -> Option<&str> {
        self.emails.first().map(|e| e.address.as_str())
    }

    /// "First Last" ([`full_name`](crmkit_core::text::full_name)).
    pub fn full_name(&self) -> String {
        crmkit_core::text::full_name(&self.first_name, &self.last_name)
    }
}

/// Input for a new contact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewContact {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Emails (the first is primary), each with an optional label.
    pub emails: Vec<EmailInput>,
    /// Phones.
    pub phones: Vec<PhoneInput>,
    /// Job title.
    pub job_title: Option<String>,
    /// Organization.
    pub organization: Option<OrganizationId>,
    /// Owner; the acting user when absent.
    pub owner: Option<UserId>,
    /// Owning team.
    pub team: Option<TeamId>,
    /// Lifecycle stage.
    pub lifecycle_stage: LifecycleStage,
    /// Consent.
    pub consent: Consent,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom values.
    pub custom: CustomValues,
    /// Allow an email that another contact of the tenant already has.
    pub allow_duplicate_email: bool,
}

impl NewContact {
    /// A contact with a name and nothing else.
    pub fn named(first: impl Into<String>, last: impl Into<String>) -> Self {
        NewContact {
            first_name: first.into(),
            last_name: last.into(),
            ..Default::default()
        }
    }

    crmkit_core::setters! {
        /// With an email.
        push email(emails): EmailInput;
        /// With a phone.
        push phone(phones): PhoneInput;
    }
}

/// A change to a contact: only the fields that are `Some` change. Ids, tenant, timestamps
/// and version are not part of it (they cannot be mass-assigned).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactPatch {
    /// New first name.
    pub first_name: Option<String>,
    /// New last name.
    pub last_name: Option<String>,
    /// New emails (replacing all), each with an optional label.
    pub emails: Option<Vec<EmailInput>>,
    /// New phones (replacing all).
    pub phones: Option<Vec<PhoneInput>>,
    /// New job title (`Some(None)` clears it).
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub job_title: Option<Option<String>>,
    /// New organization.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub organization: Option<Option<OrganizationId>>,
    /// New owner (Admin/Manager, or a Rep taking ownership themselves).
    pub owner: Option<UserId>,
    /// New team.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub team: Option<Option<TeamId>>,
    /// New stage.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// New consent.
    pub consent: Option<Consent>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// Custom values to set (`Some`) or remove (`None`), by key.
    pub custom: std::collections::BTreeMap<String, Option<crmkit_core::CustomValue>>,
    /// Allow new emails that another contact already has.
    pub allow_duplicate_email: bool,
}

impl ContactPatch {
    crmkit_core::setters! {
        /// New first name.
        some first_name: String;
        /// New last name.
        some last_name: String;
        /// New emails (replacing all).
        some emails: Vec<EmailInput>;
        /// New phones (replacing all).
        some phones: Vec<PhoneInput>;
        /// New job title (`None` clears it).
        some job_title: Option<String>;
        /// New organization (`None` clears it).
        some organization: Option<OrganizationId>;
        /// New owner.
        some owner: UserId;
        /// New team (`None` clears it).
        some team: Option<TeamId>;
        /// New lifecycle stage.
        some lifecycle_stage: LifecycleStage;
        /// New consent.
        some consent: Consent;
        /// New tags (replacing all).
        some tags: Vec<String>;
        /// Allow new emails that another contact already has.
        set allow_duplicate_email: bool;
    }

    /// Sets (`Some`) or removes (`None`) a custom value.
    pub fn custom(
        mut self,
        key: impl Into<String>,
        value: Option<crmkit_core::CustomValue>,
    ) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Id.
    pub id: OrganizationId,
    /// Name.
    pub name: String,
    /// Web domain, lowercase (`example.com`).
    pub domain: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Number of employees.
    pub employee_count: Option<i64>,
    /// Annual revenue.
    pub annual_revenue: Option<Money>,
    /// Main phone in E.164.
    pub phone: Option<String>,
    /// Website URL.
    pub website: Option<String>,
    /// Postal address.
    pub address: Option<PostalAddress>,
    /// Parent organization.
    pub parent: Option<OrganizationId>,
    /// Owner.
    pub owner: UserId,
    /// Owning team.
    pub team: Option<TeamId>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom values.
    pub custom: CustomValues,
    /// Created.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at.
    #[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version.
    pub version: u64,
}

/// Input for a new organization.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewOrganization {
    /// Name.
    pub name: String,
    /// Domain (`example.com`; a URL's host is accepted and lowercased).
    pub domain: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Employees (not negative).
    pub employee_count: Option<i64>,
    /// Annual revenue (not negative).
    pub annual_revenue: Option<Money>,
    /// Phone.
    pub phone: Option<PhoneInput>,
    /// Website (http or https URL).
    pub website: Option<String>,
    /// Address.
    pub address: Option<PostalAddress>,
    /// Parent organization.
    pub parent: Option<OrganizationId>,
    /// Owner; the acting user when absent.
    pub owner: Option<UserId>,
    /// Team.
    pub team: Option<TeamId>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom values.
    pub custom: CustomValues,
}

impl NewOrganization {
    /// An organization with a name.
    pub fn named(name: impl Into<String>) -> Self {
        NewOrganization {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// A change to an organization: only `Some` fields change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OrganizationPatch {
    /// Name.
    pub name: Option<String>,
    /// Domain.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub domain: Option<Option<String>>,
    /// Industry.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub industry: Option<Option<String>>,
    /// Employees.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub employee_count: Option<Option<i64>>,
    /// Revenue.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub annual_revenue: Option<Option<Money>>,
    /// Phone.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub phone: Option<Option<PhoneInput>>,
    /// Website.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub website: Option<Option<String>>,
    /// Address.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub address: Option<Option<PostalAddress>>,
    /// Parent.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub parent: Option<Option<OrganizationId>>,
    /// Owner.
    pub owner: Option<UserId>,
    /// Team.
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub team: Option<Option<TeamId>>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Custom values to set or remove.
    pub custom: std::collections::BTreeMap<String, Option<crmkit_core::CustomValue>>,
}

impl OrganizationPatch {
    crmkit_core::setters! {
        /// New name.
        some name: String;
        /// New domain (`None` clears it).
        some domain: Option<String>;
        /// New industry (`None` clears it).
        some industry: Option<String>;
        /// New employee count (`None` clears it).
        some employee_count: Option<i64>;
        /// New annual revenue (`None` clears it).
        some annual_revenue: Option<Money>;
        /// New phone (`None` clears it).
        some phone: Option<PhoneInput>;
        /// New website (`None` clears it).
        some website: Option<String>;
        /// New address (`None` clears it).
        some address: Option<PostalAddress>;
        /// New parent organization (`None` clears it).
        some parent: Option<OrganizationId>;
        /// New owner.
        some owner: UserId;
        /// New team (`None` clears it).
        some team: Option<TeamId>;
        /// New tags (replacing all).
        some tags: Vec<String>;
    }

    /// Sets (`Some`) or removes (`None`) a custom value.
    pub fn custom(
        mut self,
        key: impl Into<String>,
        value: Option<crmkit_core::CustomValue>,
    ) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// How a batch import behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// Write the valid rows even when some rows are invalid.
    pub partial: bool,
    /// Allow emails that other contacts already have.
    pub allow_duplicate_emails: bool,
}

/// One bad row of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 0-based index of the row in the input.
    pub row: usize,
    /// The field.
    pub field: String,
    /// Why.
    pub reason: String,
}

/// The outcome of an import.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImportReport {
    /// Ids of the contacts written, in input order of their rows.
    pub created: Vec<ContactId>,
    /// Every bad row (all of them, whether or not anything was written).
    pub errors: Vec<RowError>,
    /// Whether anything was written.
    pub committed: bool,
}

#[cfg(test)]
mod email_input_tests {
    use super::EmailInput;

    #[test]
    fn an_email_input_is_a_string_or_an_object() {
        let from = |j: serde_json::Value| serde_json::from_value::<EmailInput>(j).unwrap();
        assert_eq!(
            from(serde_json::json!("a@b.test")),
            EmailInput::new("a@b.test")
        );
        assert_eq!(
            from(serde_json::json!({"address": "a@b.test", "label": "work"})),
            EmailInput::labelled("a@b.test", "work")
        );
        assert_eq!(
            from(serde_json::json!({"address": "a@b.test"})),
            EmailInput::new("a@b.test")
        );
        let e = EmailInput::labelled("a@b.test", "work");
        let back = serde_json::to_value(&e).unwrap();
        assert_eq!(from(back), e);
    }
}

#[cfg(test)]
mod patch_builder_tests {
    use super::*;

    #[test]
    fn patch_builders_set_what_they_name() {
        let team = TeamId::new();
        let p = ContactPatch::default()
            .first_name("Ada")
            .job_title(None)
            .team(Some(team))
            .emails(vec![EmailInput::new("ada@example.test")])
            .allow_duplicate_email(true)
            .custom("tier", None);
        assert_eq!(p.first_name.as_deref(), Some("Ada"));
        assert_eq!(p.job_title, Some(None));
        assert_eq!(p.team, Some(Some(team)));
        assert_eq!(p.emails, Some(vec![EmailInput::new("ada@example.test")]));
        assert!(p.allow_duplicate_email);
        assert_eq!(p.custom.get("tier"), Some(&None));
        assert_eq!(p.last_name, None, "what is not named stays unchanged");
        let o = OrganizationPatch::default()
            .name("Acme")
            .website(Some("https://acme.test".to_owned()))
            .parent(None);
        assert_eq!(o.name.as_deref(), Some("Acme"));
        assert_eq!(o.website, Some(Some("https://acme.test".to_owned())));
        assert_eq!(o.parent, Some(None));
        assert_eq!(o.domain, None);
    }
}
