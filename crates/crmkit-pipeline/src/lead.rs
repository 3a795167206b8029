//! Leads: prospects captured before qualification, and their conversion.
//!
//! A lead carries person fields (name, job title), company fields (company name, domain,
//! website, size), emails and phones (validated and normalised exactly as a contact's, and
//! indexed in core's lookup index under the record kind `lead`, without claiming them, so
//! the call-centre path finds leads by phone), a [`Source`](crate::deal::Source), a
//! [`LeadStatus`], an owner and team (the directory rules of contacts), a campaign, a
//! score and custom fields (record kind `lead`).
//!
//! Every command follows crmkit-contacts: it validates every field at once (a Validation
//! error naming each bad field, nothing written), checks record-level access (Admin and
//! Manager see every lead; a Rep or ReadOnly user the leads they or their teams own;
//! anything else is NotFound), and commits one changeset with the row, its index rows, an
//! audit entry per changed field and one event. Updates carry the version they are based
//! on; a stale one is a Conflict.
//!
//! Status rules are documented on [`LeadStatus`]. A converted lead is final: updating it,
//! changing its status or its score is an InvalidTransition (it can still be deleted and
//! restored).
//!
//! [`Leads::convert`] turns a lead into a contact (linked when one with the lead's email
//! exists), an organization (linked by domain when one exists) and optionally a deal, and
//! marks the lead converted — one atomic changeset with every record's events and audit
//! entries. [`Leads::convert_dry_run`] returns the same plan without writing.
//!
//! ```
//! use crmkit_contacts::ContactsModule;
//! use crmkit_core::memory::MemoryBackend;
//! use crmkit_core::{Actor, Ctx, Modules, Role, Store, TenantId, UserId, UserInput};
//! use crmkit_pipeline::PipelineModule;
//! use crmkit_pipeline::lead::{ConvertLead, LeadStatus, Leads, NewLead};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let modules = Modules::builder().add(ContactsModule).add(PipelineModule).build()?;
//! let store = Store::new(MemoryBackend::new((**modules.schema()).clone()), modules);
//! let me = UserId::new();
//! let admin = Ctx::new(TenantId::new(), Actor::new(me, [Role::Admin], []))?;
//! store.directory().put_user(&admin, UserInput {
//!     id: me, name: "Ada".into(), email: "ada@example.com".into(), roles: vec![Role::Admin],
//!     teams: vec![], active: true, time_zone: "Europe/London".into(),
//! }).await?;
//!
//! let leads = Leads::new(&store)?;
//! let lead = leads
//!     .create(&admin, NewLead::named("Grace", "Hopper").email("grace@navy.mil").company("Navy", Some("navy.mil")))
//!     .await?;
//! let plan = leads.convert_dry_run(&admin, lead.id, &ConvertLead::default()).await?;
//! assert!(plan.contact.is_created());
//! let done = leads.convert(&admin, lead.id, lead.version, ConvertLead::default()).await?;
//! assert_eq!(done.lead.status, LeadStatus::Converted);
//! assert_eq!(done.lead.converted_contact, Some(done.contact.record().id));
//! # Ok::<(), crmkit_core::Error>(()) })?;
//! # Ok::<(), crmkit_core::Error>(())
//! ```

mod convert;
pub mod model;
pub mod rows;
use crmkit_contacts::validate;

/// A lead's emails (plain addresses, no labels) as contact email inputs.
fn email_inputs(emails: &[String]) -> Vec<crmkit_contacts::EmailInput> {
    emails
        .iter()
        .map(crmkit_contacts::EmailInput::from)
        .collect()
}
use crmkit_core::service::{self, OwnerChecks, apply_custom_patch, stage_insert};

use crmkit_contacts::Contacts;
use crmkit_core::lookup::{self, LookupKind};
use crmkit_core::record::reference_reason;
use crmkit_core::store::{TableDef, Write};
use crmkit_core::text::{check_text, fold};
use crmkit_core::{
    CampaignId, Changeset, Ctx, CustomSchema, Error, LeadId, RecordKind, RecordRef, Result, Store,
    ValidationErrors,
};

pub use model::*;
pub use rows::{LEAD_FIELDS, LEAD_TABLE};

/// Event kinds this part emits.
pub const EVENT_KINDS: &[&str] = &[
    "lead.created",
    "lead.updated",
    "lead.status_changed",
    "lead.score_changed",
    "lead.deleted",
    "lead.restored",
    "lead.converted",
];

/// Longest disqualification reason.
pub const MAX_REASON: usize = 500;

pub(crate) fn tables() -> Vec<TableDef> {
    rows::tables()
}

fn converted_is_final(id: LeadId) -> Error {
    Error::InvalidTransition {
        record: RecordRef::from(id),
        reason: "the lead is converted, which is final".into(),
    }
}

/// The fields every lead command validates: names, job title, company fields (the domain
/// is normalised in place) and the disqualification reason against the status.
fn check_fields(errs: &mut ValidationErrors, l: &mut Lead) {
    validate::names(errs, &l.first_name, &l.last_name);
    validate::opt_text(errs, "job_title", &l.job_title, 200);
    validate::opt_text(errs, "company", &l.company, 200);
    if let Some(d) = &l.domain {
        l.domain = errs.check(validate::domain("domain", d));
    }
    if let Some(w) = &l.website {
        validate::website(errs, w);
    }
    if l.employee_count.is_some_and(|n| n < 0) {
        errs.push("employee_count", "must not be negative");
    }
    check_reason(errs, l.status, &l.disqualified_reason);
}

fn check_reason(errs: &mut ValidationErrors, status: LeadStatus, reason: &Option<String>) {
    match (status, reason) {
        (LeadStatus::Disqualified, None) => {
            errs.push("disqualified_reason", "a disqualified lead needs a reason")
        }
        (LeadStatus::Disqualified, Some(r)) => {
            errs.check(check_text("disqualified_reason", r, MAX_REASON, true));
        }
        (_, Some(_)) => errs.push(
            "disqualified_reason",
            "only a disqualified lead has a reason",
        ),
        (_, None) => {}
    }
}

/// The lookup-index writes of a lead's emails and phones (shared, never claimed).
fn index_writes(l: &Lead, replace: bool) -> Vec<Write> {
    let record = RecordRef::from(l.id);
    let keys: Vec<String> = l.emails.iter().map(|e| fold(&e.address)).collect();
    let numbers: Vec<String> = l.phones.iter().map(|p| p.number.clone()).collect();
    let mut w = lookup::index_writes(&record, LookupKind::Email, &keys, false, replace);
    w.extend(lookup::index_writes(
        &record,
        LookupKind::Phone,
        &numbers,
        false,
        replace,
    ));
    w
}

/// The leads API.
#[derive(Clone, Debug)]
pub struct Leads {
    store: Store,
    contacts: Contacts,
}

impl Leads {
    /// The API over a store composed with [`crate::PipelineModule`] (and so with
    /// crmkit-contacts' module).
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("pipeline")?;
        Ok(Leads {
            store: store.clone(),
            contacts: Contacts::new(store)?,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    // ----- shared checks -----

    async fn custom_schema(&self, ctx: &Ctx) -> Result<CustomSchema> {
        self.store
            .custom_fields()
            .of_kind(ctx, &RecordKind::LEAD)
            .await
    }

    /// The versioned update of `old` into `new` (marked changed here) with an audit entry
    /// per changed field and one event of `kind`, added to `cs`, with the lookup and
    /// custom-value index rows that change with it. Returns the changed field names
    /// (empty: nothing to write).
    fn change_writes(
        &self,
        cs: &mut Changeset,
        old: &Lead,
        new: &mut Lead,
        kind: &str,
        custom: Option<&CustomSchema>,
    ) -> Result<Vec<String>> {
        let row = |l: &Lead| Ok(rows::lead_row(l));
        let Some((record, changed)) =
            service::stage_record_update(&self.store, cs, old, new, kind, row)?
        else {
            return Ok(vec![]);
        };
        if new.emails != old.emails || new.phones != old.phones {
            cs.writes.extend(index_writes(new, true));
        }
        if let Some(custom) = custom {
            cs.writes
                .extend(custom.changed_index_writes(&record, &old.custom, &new.custom));
        }
        Ok(changed)
    }

    /// Commits the change of `old` into `new` (already validated) as of `expected_version`.
    async fn commit_change(
        &self,
        ctx: &Ctx,
        old: Lead,
        mut new: Lead,
        expected_version: u64,
        kind: &str,
        custom: Option<&CustomSchema>,
    ) -> Result<Lead> {
        service::check_version(old.id, expected_version, old.version)?;
        let mut cs = Changeset::new(ctx);
        if self
            .change_writes(&mut cs, &old, &mut new, kind, custom)?
            .is_empty()
        {
            return Ok(old);
        }
        self.store.commit(cs).await?;
        Ok(new)
    }

    /// Whether the actor may refer to `r`: the one reference rule of
    /// [`crmkit_core::record::Records::visible`] (missing, deleted, another tenant's and
    /// hidden records are refused alike).
    pub(crate) async fn may_refer(&self, ctx: &Ctx, r: &RecordRef) -> Result<bool> {
        self.store.records().visible(ctx, r).await
    }

    /// Pushes the reference error of `campaign` unless the actor may refer to it.
    async fn check_campaign(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        campaign: Option<CampaignId>,
    ) -> Result<()> {
        if let Some(c) = campaign
            && !self.may_refer(ctx, &RecordRef::from(c)).await?
        {
            errs.push("campaign", reference_reason(&CampaignId::kind()));
        }
        Ok(())
    }

    // ----- commands -----

    /// Creates a lead. Every bad field is reported at once; a `converted` status is
    /// refused (conversion is [`Leads::convert`]), a `disqualified` one needs a reason.
    /// The campaign must be one the actor can see (a hidden, deleted or missing campaign
    /// is the same Validation error on `campaign`).
    pub async fn create(&self, ctx: &Ctx, input: NewLead) -> Result<Lead> {
        ctx.actor().require_write("create lead")?;
        let custom = self.custom_schema(ctx).await?;
        let mut errs = ValidationErrors::new();
        let (emails, _) = validate::emails(&mut errs, &email_inputs(&input.emails));
        let phones = validate::phones(&mut errs, &input.phones);
        let now = ctx.now();
        let mut lead = Lead {
            id: LeadId::new(),
            first_name: input.first_name,
            last_name: input.last_name,
            job_title: input.job_title,
            company: input.company,
            domain: input.domain,
            website: input.website,
            employee_count: input.employee_count,
            emails,
            phones,
            source: input.source,
            status: input.status,
            disqualified_reason: input.disqualified_reason,
            owner: input.owner.unwrap_or(ctx.actor().user),
            team: input.team,
            campaign: input.campaign,
            score: input.score,
            custom: input.custom,
            converted_contact: None,
            converted_organization: None,
            converted_deal: None,
            converted_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        check_fields(&mut errs, &mut lead);
        if lead.status == LeadStatus::Converted {
            errs.push("status", "a lead becomes converted only through conversion");
        }
        errs.check(custom.validate(&lead.custom));
        self.check_campaign(ctx, &mut errs, lead.campaign).await?;
        OwnerChecks::new()
            .check(&self.store, ctx, &mut errs, lead.owner, lead.team)
            .await?;
        errs.into_result()?;
        let record = RecordRef::from(lead.id);
        let mut cs = Changeset::new(ctx);
        stage_insert(&mut cs, &lead, rows::lead_row(&lead));
        cs.writes.extend(index_writes(&lead, false));
        cs.writes
            .extend(custom.index_writes(&record, &lead.custom, false));
        self.store.commit(cs).await?;
        Ok(lead)
    }

    /// Changes a lead whose current version is `expected_version`. A converted lead is
    /// final (InvalidTransition).
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: LeadId,
        expected_version: u64,
        patch: LeadPatch,
    ) -> Result<Lead> {
        let old = self.open_lead(ctx, id, "update lead").await?;
        let custom = self.custom_schema(ctx).await?;
        let mut errs = ValidationErrors::new();
        let mut new = old.clone();
        let owner = (patch.owner, patch.team);
        crmkit_core::apply_patch!(patch => new; first_name, last_name, job_title, company,
            domain, website, employee_count);
        if let Some(v) = &patch.emails {
            new.emails = validate::emails(&mut errs, &email_inputs(v)).0;
        }
        if let Some(v) = &patch.phones {
            new.phones = validate::phones(&mut errs, v);
        }
        crmkit_core::apply_patch!(patch => new; source);
        if let Some(v) = patch.campaign
            && v != old.campaign
        {
            // Only a new campaign is checked: the one the lead has stays valid.
            self.check_campaign(ctx, &mut errs, v).await?;
            new.campaign = v;
        }
        check_fields(&mut errs, &mut new);
        if !patch.custom.is_empty() {
            new.custom = apply_custom_patch(&old.custom, &patch.custom);
            errs.check(custom.validate(&new.custom));
        }
        service::reassign(&self.store, ctx, &mut errs, &mut new, owner).await?;
        errs.into_result()?;
        self.commit_change(
            ctx,
            old,
            new,
            expected_version,
            "lead.updated",
            Some(&custom),
        )
        .await
    }

    /// Moves a lead to another status (see [`LeadStatus`] for the rules): `reason` is
    /// required for `disqualified` and refused otherwise. Setting the status it has (and
    /// the same reason) changes nothing.
    pub async fn set_status(
        &self,
        ctx: &Ctx,
        id: LeadId,
        expected_version: u64,
        status: LeadStatus,
        reason: Option<String>,
    ) -> Result<Lead> {
        let old = self.open_lead(ctx, id, "set lead status").await?;
        if status == LeadStatus::Converted {
            return Err(Error::InvalidTransition {
                record: RecordRef::from(id),
                reason: "a lead becomes converted only through conversion (Leads::convert)".into(),
            });
        }
        let mut errs = ValidationErrors::new();
        check_reason(&mut errs, status, &reason);
        errs.into_result()?;
        let mut new = old.clone();
        new.status = status;
        new.disqualified_reason = reason;
        self.commit_change(ctx, old, new, expected_version, "lead.status_changed", None)
            .await
    }

    /// Sets a lead's score (any integer; the host or automation decides what it means).
    /// A converted lead is final (InvalidTransition).
    pub async fn set_score(
        &self,
        ctx: &Ctx,
        id: LeadId,
        expected_version: u64,
        score: i64,
    ) -> Result<Lead> {
        let old = self.open_lead(ctx, id, "set lead score").await?;
        let mut new = old.clone();
        new.score = score;
        self.commit_change(ctx, old, new, expected_version, "lead.score_changed", None)
            .await
    }

    /// The live lead `id` the actor may see, for a change named `action`: the write-rights
    /// check, then [`load`](Self::load); a converted lead is final (InvalidTransition).
    async fn open_lead(&self, ctx: &Ctx, id: LeadId, action: &str) -> Result<Lead> {
        let old = self.live(ctx, id, action).await?;
        if old.status == LeadStatus::Converted {
            return Err(converted_is_final(id));
        }
        Ok(old)
    }
}

crmkit_core::record_verbs! {
    Leads: Lead, LeadId;
    load;
    live;
    /// A lead that is visible to the actor and not deleted.
    get;
    /// Lists leads: filter, sort, keyset page. Only visible leads; deleted ones only with
    /// [`Query::include_deleted`](crmkit_core::Query::include_deleted). Fields: see [`LEAD_FIELDS`] (`name`, `email`,
    /// `company`, `status`, `source`, `owner`, `team`, `campaign`, `score`, `created_at`,
    /// `updated_at`, ...) and `custom.<key>`.
    list(LEAD_FIELDS, custom);
    /// The audit trail of a visible lead (deleted or not), oldest first.
    audit;
    /// Soft-deletes a lead (restorable). Its emails and phones leave the lookup index.
    delete;
    /// Restores a soft-deleted lead (and its lookup entries).
    restore;
    set_deleted(service::lookup_follows(|l: &Lead| index_writes(l, true)));
}
