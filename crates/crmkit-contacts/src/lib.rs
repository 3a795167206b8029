//! # crmkit-contacts
//!
//! People ([`Contact`]) and companies ([`Organization`]): the first crmkit module, and the
//! pattern every other module follows.
//!
//! A command validates its input (every bad field at once), checks record-level access,
//! builds a [`Changeset`] with the record's row, its lookup-index rows (emails and phones,
//! in core), its custom-field index rows, an audit entry per changed field and a domain
//! event, and commits it atomically. Reads are scoped by tenant in the backend and by
//! visibility here: Admin and Manager see every record, a Rep and a ReadOnly user the
//! records they own or their team owns. Anything not visible is [`Error::NotFound`], the
//! same as a record that does not exist.
//!
//! A second contact with an email that a live contact already has is an
//! [`Error::Duplicate`] naming that contact, unless the input allows it. Concurrent creates
//! of one email give exactly one contact: emails are claimed in a unique index.
//!
//! ```
//! use crmkit_contacts::{Contacts, ContactsModule, NewContact};
//! use crmkit_core::{Actor, Ctx, Modules, Role, Store, TenantId, UserId, UserInput};
//! use crmkit_core::memory::MemoryBackend;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let modules = Modules::builder().add(ContactsModule).build()?;
//! let store = Store::new(MemoryBackend::new((**modules.schema()).clone()), modules);
//! let tenant = TenantId::new();
//! let me = UserId::new();
//! let admin = Ctx::new(tenant, Actor::new(me, [Role::Admin], []))?;
//! store.directory().put_user(&admin, UserInput::new(me, "Ada", "ada@example.com", Role::Admin)).await?;
//!
//! let contacts = Contacts::new(&store)?;
//! let grace = contacts.create(&admin, NewContact::named("Grace", "Hopper").email("grace@navy.mil")).await?;
//! let again = contacts.create(&admin, NewContact::named("G.", "Hopper").email("GRACE@navy.mil")).await;
//! assert!(matches!(again, Err(crmkit_core::Error::Duplicate { .. })));
//! assert_eq!(contacts.get(&admin, grace.id).await?.full_name(), "Grace Hopper");
//! # Ok::<(), crmkit_core::Error>(()) })?;
//! # Ok::<(), crmkit_core::Error>(())
//! ```

pub mod kinds;
pub mod model;
mod organizations;
pub mod rows;
mod stored;
pub mod validate;

use crmkit_core::service::{self, OwnerChecks, apply_custom_patch, stage_insert};
use std::collections::HashMap;

use crmkit_core::lookup::{self, LookupKind};
use crmkit_core::record::reference_reason;
use crmkit_core::store::{Cond, Select, Value, Write};
use crmkit_core::{
    Changeset, ContactId, Ctx, CustomSchema, Error, Filter, Migration, Module, OrganizationId,
    Query, RecordKind, RecordRef, Result, Store, ValidationErrors,
};

pub use model::*;
pub use organizations::Organizations;
pub use validate::{MAX_CONTACT_POINTS, MAX_TAGS};

use rows::CONTACT_FIELDS;

/// The contacts module: tables for contacts and organizations.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContactsModule;

impl Module for ContactsModule {
    fn name(&self) -> &'static str {
        "contacts"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["core"]
    }

    fn migrations(&self) -> Vec<Migration> {
        vec![Migration::create_tables(
            1,
            "contacts and organizations",
            rows::tables(),
        )]
    }

    fn record_kinds(&self) -> Vec<std::sync::Arc<dyn crmkit_core::record::KindHandler>> {
        vec![
            crmkit_core::record::typed(kinds::ContactKind),
            crmkit_core::record::typed(kinds::OrganizationKind),
        ]
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        vec![
            "contact.created",
            "contact.updated",
            "contact.deleted",
            "contact.restored",
            "organization.created",
            "organization.updated",
            "organization.deleted",
            "organization.restored",
        ]
    }
}

/// Rows per changeset in [`Contacts::import`]: each chunk commits atomically.
pub const IMPORT_CHUNK: usize = 1000;
/// Most rows one import call takes.
pub const MAX_IMPORT_ROWS: usize = 1_000_000;

/// The contacts API.
#[derive(Clone, Debug)]
pub struct Contacts {
    store: Store,
}

impl Contacts {
    /// The API over a store composed with [`ContactsModule`].
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("contacts")?;
        Ok(Contacts {
            store: store.clone(),
        })
    }

    /// The API over a store the caller has checked composes [`ContactsModule`] (the
    /// facade does so when it opens); using it on another store fails at the first call
    /// with a Config error for the missing tables.
    pub fn from_checked(store: &Store) -> Self {
        Contacts {
            store: store.clone(),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The organizations API over the same store.
    pub fn organizations(&self) -> Organizations {
        Organizations::from_contacts(self.clone())
    }

    // ----- shared checks -----

    async fn custom_schema(&self, ctx: &Ctx, kind: &RecordKind) -> Result<CustomSchema> {
        self.store.custom_fields().of_kind(ctx, kind).await
    }

    /// Whether `id` is an organization the actor may refer to: the one reference rule of
    /// [`crmkit_core::record::Records::visible`] (missing, deleted, another tenant's and
    /// hidden organizations are all refused alike).
    async fn org_exists(&self, ctx: &Ctx, id: OrganizationId) -> Result<bool> {
        self.store
            .records()
            .visible(ctx, &RecordRef::from(id))
            .await
    }

    /// Lookup holders of email keys among contacts, other than `except`.
    async fn email_holders(
        &self,
        ctx: &Ctx,
        keys: &[String],
        except: Option<ContactId>,
    ) -> Result<HashMap<String, RecordRef>> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(500) {
            let cond = Cond::eq("kind", "email")
                .and(Cond::eq("record_kind", RecordKind::CONTACT.as_str()))
                .and(Cond::In(
                    "value".into(),
                    chunk.iter().map(|k| Value::Text(k.clone())).collect(),
                ));
            let rows = self
                .store
                .backend()
                .select(ctx.tenant(), &Select::new(lookup::TABLE, cond))
                .await?;
            for r in rows {
                let (Some(v), Some(id)) = (r[1].as_text(), r[3].as_uuid()) else {
                    continue;
                };
                if Some(id) == except.map(|e| e.as_uuid()) {
                    continue;
                }
                out.entry(v.to_owned())
                    .or_insert_with(|| RecordRef::new(RecordKind::CONTACT, id));
            }
        }
        Ok(out)
    }

    /// The lookup writes that index a contact's phone numbers (`replace`: replacing what
    /// it had).
    fn phone_writes(c: &Contact, replace: bool) -> Vec<Write> {
        let numbers: Vec<String> = c.phones.iter().map(|p| p.number.clone()).collect();
        let record = RecordRef::from(c.id);
        lookup::index_writes(&record, LookupKind::Phone, &numbers, false, replace)
    }

    /// Email lookup writes for a contact: exclusive claims where nobody else holds the key.
    fn email_writes(
        record: &RecordRef,
        keys: &[String],
        holders: &HashMap<String, RecordRef>,
        replace: bool,
    ) -> Vec<Write> {
        let (shared, own): (Vec<String>, Vec<String>) =
            keys.iter().cloned().partition(|k| holders.contains_key(k));
        let mut w = lookup::index_writes(record, LookupKind::Email, &own, true, replace);
        w.extend(lookup::index_writes(
            record,
            LookupKind::Email,
            &shared,
            false,
            false,
        ));
        w
    }

    /// The Duplicate error for an email held by `existing`. It names the holder only when
    /// the actor may see it: a hidden contact must not be revealed by an error.
    async fn duplicate_email(&self, ctx: &Ctx, existing: Option<RecordRef>) -> Result<Error> {
        let existing = match existing {
            Some(r) if self.store.records().visible(ctx, &r).await? => Some(r),
            _ => None,
        };
        Ok(Error::Duplicate {
            kind: RecordKind::CONTACT,
            field: "emails".into(),
            existing,
        })
    }

    /// Commits, turning a lost email-claim race into a Duplicate naming the winner.
    async fn commit_contact(
        &self,
        ctx: &Ctx,
        cs: Changeset,
        keys: &[String],
        me: Option<ContactId>,
    ) -> Result<crmkit_core::Commit> {
        match self.store.commit(cs).await {
            Err(Error::Duplicate { field, .. }) if field == "crm_lookup_claim" => {
                let holders = self.email_holders(ctx, keys, me).await?;
                Err(self
                    .duplicate_email(ctx, holders.into_values().next())
                    .await?)
            }
            other => other,
        }
    }

    // ----- contacts -----

    /// Validates a new contact and builds it (without checking email duplicates).
    async fn build_contact(
        &self,
        ctx: &Ctx,
        input: &NewContact,
        custom: &CustomSchema,
        owners: &mut OwnerChecks,
        orgs: &mut HashMap<OrganizationId, bool>,
    ) -> Result<(Contact, Vec<String>)> {
        let mut errs = ValidationErrors::new();
        validate::names(&mut errs, &input.first_name, &input.last_name);
        let (emails, keys) = validate::emails(&mut errs, &input.emails);
        let phones = validate::phones(&mut errs, &input.phones);
        validate::opt_text(&mut errs, "job_title", &input.job_title, 200);
        validate::tags(&mut errs, &input.tags);
        validate::consent(&mut errs, &input.consent);
        errs.check(custom.validate(&input.custom));
        let owner = input.owner.unwrap_or(ctx.actor().user);
        owners
            .check(&self.store, ctx, &mut errs, owner, input.team)
            .await?;
        if let Some(org) = input.organization {
            let ok = match orgs.get(&org) {
                Some(ok) => *ok,
                None => {
                    let ok = self.org_exists(ctx, org).await?;
                    orgs.insert(org, ok);
                    ok
                }
            };
            if !ok {
                errs.push("organization", reference_reason(&RecordKind::ORGANIZATION));
            }
        }
        errs.into_result()?;
        let now = ctx.now();
        Ok((
            Contact {
                id: ContactId::new(),
                first_name: input.first_name.clone(),
                last_name: input.last_name.clone(),
                emails,
                phones,
                job_title: input.job_title.clone(),
                organization: input.organization,
                owner,
                team: input.team,
                lifecycle_stage: input.lifecycle_stage,
                consent: input.consent.clone(),
                tags: input.tags.clone(),
                custom: input.custom.clone(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
                version: 1,
            },
            keys,
        ))
    }

    fn create_writes(
        cs: &mut Changeset,
        c: &Contact,
        keys: &[String],
        holders: &HashMap<String, RecordRef>,
        custom: &CustomSchema,
    ) {
        let record = RecordRef::from(c.id);
        stage_insert(cs, c, rows::contact_row(c));
        cs.writes
            .extend(Self::email_writes(&record, keys, holders, false));
        cs.writes.extend(Self::phone_writes(c, false));
        cs.writes
            .extend(custom.index_writes(&record, &c.custom, false));
    }

    /// Creates a contact.
    pub async fn create(&self, ctx: &Ctx, input: NewContact) -> Result<Contact> {
        let mut cs = Changeset::new(ctx);
        let contact = self.stage_create(ctx, &input, &[], &mut cs).await?;
        self.commit(ctx, cs).await?;
        Ok(contact)
    }

    /// Validates a new contact and adds its writes (row, lookup and custom-value index
    /// rows, audit entry, event) to `cs` without committing, so that a command of another
    /// module (lead conversion) can create it atomically with its own writes. Commit with
    /// [`Contacts::commit`] (or [`Store::commit`]). `staged` lists records created earlier
    /// in the same changeset (an organization the contact belongs to), which existence
    /// checks then accept.
    pub async fn stage_create(
        &self,
        ctx: &Ctx,
        input: &NewContact,
        staged: &[RecordRef],
        cs: &mut Changeset,
    ) -> Result<Contact> {
        ctx.actor().require_write("create contact")?;
        let custom = self.custom_schema(ctx, &RecordKind::CONTACT).await?;
        let mut orgs: HashMap<OrganizationId, bool> = staged
            .iter()
            .filter(|r| r.kind == RecordKind::ORGANIZATION)
            .map(|r| (OrganizationId::from_uuid(r.id), true))
            .collect();
        let (contact, keys) = self
            .build_contact(ctx, input, &custom, &mut OwnerChecks::new(), &mut orgs)
            .await?;
        let holders = self.email_holders(ctx, &keys, None).await?;
        if !input.allow_duplicate_email
            && let Some(existing) = keys.iter().find_map(|k| holders.get(k))
        {
            return Err(self.duplicate_email(ctx, Some(existing.clone())).await?);
        }
        Self::create_writes(cs, &contact, &keys, &holders, &custom);
        Ok(contact)
    }

    /// Commits a changeset that may claim contact emails (from [`Contacts::stage_create`]):
    /// losing a concurrent claim is a Duplicate naming the contact that won it.
    pub async fn commit(&self, ctx: &Ctx, cs: Changeset) -> Result<crmkit_core::Commit> {
        let keys: Vec<String> = cs
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Insert { table, row }
                    if *table == lookup::TABLE && row[0].as_text() == Some("email") =>
                {
                    row[4].as_text().map(str::to_owned)
                }
                _ => None,
            })
            .collect();
        self.commit_contact(ctx, cs, &keys, None).await
    }

    /// Changes a contact whose current version is `expected_version`.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: ContactId,
        expected_version: u64,
        patch: ContactPatch,
    ) -> Result<Contact> {
        let old = self.live(ctx, id, "update contact").await?;
        let custom = self.custom_schema(ctx, &RecordKind::CONTACT).await?;
        let mut errs = ValidationErrors::new();
        let mut new = old.clone();
        let owner = (patch.owner, patch.team);
        crmkit_core::apply_patch!(patch => new; first_name, last_name, lifecycle_stage);
        validate::names(&mut errs, &new.first_name, &new.last_name);
        let mut keys = None;
        if let Some(v) = &patch.emails {
            let (e, k) = validate::emails(&mut errs, v);
            new.emails = e;
            keys = Some(k);
        }
        if let Some(v) = &patch.phones {
            new.phones = validate::phones(&mut errs, v);
        }
        if let Some(v) = &patch.job_title {
            validate::opt_text(&mut errs, "job_title", v, 200);
            new.job_title = v.clone();
        }
        if let Some(v) = &patch.tags {
            validate::tags(&mut errs, v);
            new.tags = v.clone();
        }
        if let Some(v) = &patch.consent {
            validate::consent(&mut errs, v);
            new.consent = v.clone();
        }
        if let Some(org) = patch.organization {
            if let Some(o) = org
                && !self.org_exists(ctx, o).await?
            {
                errs.push("organization", reference_reason(&RecordKind::ORGANIZATION));
            }
            new.organization = org;
        }
        service::reassign(&self.store, ctx, &mut errs, &mut new, owner).await?;
        if !patch.custom.is_empty() {
            new.custom = apply_custom_patch(&old.custom, &patch.custom);
            errs.check(custom.validate(&new.custom));
        }
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        let mut cs = Changeset::new(ctx);
        let row = |c: &Contact| Ok(rows::contact_row(c));
        let event = "contact.updated";
        let Some((record, _)) =
            service::stage_record_update(&self.store, &mut cs, &old, &mut new, event, row)?
        else {
            return Ok(old);
        };
        let email_keys = match &keys {
            Some(k) if new.emails != old.emails => {
                let holders = self.email_holders(ctx, k, Some(id)).await?;
                if !patch.allow_duplicate_email
                    && let Some(existing) = k.iter().find_map(|k| holders.get(k))
                {
                    return Err(self.duplicate_email(ctx, Some(existing.clone())).await?);
                }
                cs.writes
                    .extend(Self::email_writes(&record, k, &holders, true));
                k.clone()
            }
            _ => vec![],
        };
        if new.phones != old.phones {
            cs.writes.extend(Self::phone_writes(&new, true));
        }
        cs.writes
            .extend(custom.changed_index_writes(&record, &old.custom, &new.custom));
        self.commit_contact(ctx, cs, &email_keys, Some(id)).await?;
        Ok(new)
    }

    async fn set_deleted(
        &self,
        ctx: &Ctx,
        id: ContactId,
        expected_version: u64,
        delete: bool,
    ) -> Result<Contact> {
        let (mut cs, _, new) =
            service::stage_set_deleted::<Contact>(&self.store, ctx, id, expected_version, delete)
                .await?;
        let record = RecordRef::from(id);
        let mut keys = vec![];
        if delete {
            cs.writes.push(lookup::remove_writes(&record));
        } else {
            keys = new
                .emails
                .iter()
                .map(|e| crmkit_core::text::fold(&e.address))
                .collect();
            let holders = self.email_holders(ctx, &keys, Some(id)).await?;
            cs.writes
                .extend(Self::email_writes(&record, &keys, &holders, true));
            cs.writes.extend(Self::phone_writes(&new, true));
        }
        self.commit_contact(ctx, cs, &keys, Some(id)).await?;
        Ok(new)
    }

    /// Contacts whose name, last name or primary email starts with `text` (ignoring case),
    /// by name.
    pub async fn search(&self, ctx: &Ctx, text: &str, limit: u32) -> Result<Vec<Contact>> {
        let f = Filter::starts_with("name", text)
            .or(Filter::starts_with("last_name", text))
            .or(Filter::starts_with("email", text));
        Ok(self
            .list(ctx, &Query::new().filter(f).sort_asc("name").limit(limit))
            .await?
            .items)
    }

    /// Creates many contacts at once (an import). Every row is validated first (including
    /// emails repeated within the batch or held by existing contacts); the report lists
    /// every bad row. If any row is bad, nothing is written unless `options.partial`, in
    /// which case the valid rows are. Rows are written in atomic chunks of
    /// [`IMPORT_CHUNK`].
    pub async fn import(
        &self,
        ctx: &Ctx,
        rows: Vec<NewContact>,
        options: ImportOptions,
    ) -> Result<ImportReport> {
        ctx.actor().require_write("import contacts")?;
        if rows.len() > MAX_IMPORT_ROWS {
            return Err(Error::validation(
                "rows",
                format!("at most {MAX_IMPORT_ROWS} rows per import"),
            ));
        }
        let custom = self.custom_schema(ctx, &RecordKind::CONTACT).await?;
        let mut report = ImportReport::default();
        let mut owners = OwnerChecks::new();
        let mut orgs = HashMap::new();
        let mut built: Vec<Option<(Contact, Vec<String>)>> = Vec::with_capacity(rows.len());
        let push_err = |report: &mut ImportReport, row: usize, e: Error| match e {
            Error::Validation(v) => {
                for fe in v.errors {
                    report.errors.push(RowError {
                        row,
                        field: fe.field,
                        reason: fe.reason,
                    });
                }
            }
            other => report.errors.push(RowError {
                row,
                field: "_".into(),
                reason: other.to_string(),
            }),
        };
        for (i, input) in rows.iter().enumerate() {
            match self
                .build_contact(ctx, input, &custom, &mut owners, &mut orgs)
                .await
            {
                Ok(b) => built.push(Some(b)),
                Err(e @ Error::Validation(_)) => {
                    push_err(&mut report, i, e);
                    built.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        // Emails repeated within the batch, then emails held by existing contacts.
        let allow = options.allow_duplicate_emails;
        let mut first_holder: HashMap<String, usize> = HashMap::new();
        let mut all_keys = vec![];
        for (i, b) in built.iter_mut().enumerate() {
            let Some((_, keys)) = b else { continue };
            let mut bad = None;
            for k in keys.iter() {
                if let Some(&j) = first_holder.get(k)
                    && !allow
                    && !rows[i].allow_duplicate_email
                {
                    bad = Some(format!("repeats the email of row {j}"));
                }
            }
            match bad {
                Some(reason) => {
                    report.errors.push(RowError {
                        row: i,
                        field: "emails".into(),
                        reason,
                    });
                    *b = None;
                }
                None => {
                    for k in keys.iter() {
                        first_holder.entry(k.clone()).or_insert(i);
                        all_keys.push(k.clone());
                    }
                }
            }
        }
        let holders = self.email_holders(ctx, &all_keys, None).await?;
        if !holders.is_empty() {
            // Holders the actor cannot see are not named (an import must not reveal them).
            let mut seen: HashMap<RecordRef, bool> = HashMap::new();
            for (i, b) in built.iter_mut().enumerate() {
                let Some((_, keys)) = b else { continue };
                if allow || rows[i].allow_duplicate_email {
                    continue;
                }
                if let Some(h) = keys.iter().find_map(|k| holders.get(k)) {
                    let visible = match seen.get(h) {
                        Some(v) => *v,
                        None => {
                            let v = self.store.records().visible(ctx, h).await?;
                            seen.insert(h.clone(), v);
                            v
                        }
                    };
                    report.errors.push(RowError {
                        row: i,
                        field: "emails".into(),
                        reason: if visible {
                            format!("already used by {h}")
                        } else {
                            "already used by another contact".into()
                        },
                    });
                    *b = None;
                }
            }
        }
        report.errors.sort_by_key(|e| e.row);
        if !report.errors.is_empty() && !options.partial {
            return Ok(report);
        }
        let valid: Vec<(Contact, Vec<String>)> = built.into_iter().flatten().collect();
        let mut claimed: HashMap<String, RecordRef> = holders;
        for chunk in valid.chunks(IMPORT_CHUNK) {
            let mut cs = Changeset::new(ctx);
            for (c, keys) in chunk {
                Self::create_writes(&mut cs, c, keys, &claimed, &custom);
                for k in keys {
                    claimed
                        .entry(k.clone())
                        .or_insert_with(|| RecordRef::from(c.id));
                }
            }
            let keys: Vec<String> = chunk.iter().flat_map(|(_, k)| k.iter().cloned()).collect();
            self.commit_contact(ctx, cs, &keys, None).await?;
            report.created.extend(chunk.iter().map(|(c, _)| c.id));
            report.committed = true;
        }
        Ok(report)
    }

    /// Live contacts and organizations (visible to the actor) with this phone number in
    /// E.164, through the core lookup index.
    pub async fn find_by_phone(&self, ctx: &Ctx, e164: &str) -> Result<Vec<RecordRef>> {
        let refs = lookup::find(
            self.store.backend(),
            ctx.tenant(),
            LookupKind::Phone,
            e164,
            None,
            100,
        )
        .await?;
        // Every kind a number may belong to (leads too) passes the one visibility rule.
        self.store.records().retain_visible(ctx, refs).await
    }

    /// The live contact (visible to the actor) holding this email, if any.
    pub async fn find_by_email(&self, ctx: &Ctx, email: &str) -> Result<Option<Contact>> {
        let key = crmkit_core::text::parse_email("email", email)?.key;
        let refs = lookup::find(
            self.store.backend(),
            ctx.tenant(),
            LookupKind::Email,
            &key,
            Some(&RecordKind::CONTACT),
            10,
        )
        .await?;
        for r in refs {
            if let Ok(c) = self.get(ctx, ContactId::from_uuid(r.id)).await {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

crmkit_core::record_verbs! {
    Contacts: Contact, ContactId;
    load;
    live;
    /// A contact that is visible to the actor and not deleted.
    get;
    /// Lists contacts: filter, sort, keyset page. Only visible contacts; deleted ones only
    /// with [`Query::include_deleted`]. Filterable fields: see [`rows::CONTACT_FIELDS`]
    /// and `custom.<key>`.
    list(CONTACT_FIELDS, custom);
    /// The audit trail of a visible contact.
    audit;
    /// Soft-deletes a contact (restorable). Its emails and phones leave the lookup index.
    delete;
    /// Restores a soft-deleted contact. Its emails are claimed again where no other live
    /// contact holds them, and shared otherwise.
    restore;
}
