//! The organizations API: companies, their parents, phones and web domains.

use crmkit_core::lookup::{self, LookupKind};
use crmkit_core::record::reference_reason;
use crmkit_core::service::{self, OwnerChecks, apply_custom_patch, stage_insert};
use crmkit_core::store::{Value, Write};
use crmkit_core::{
    Changeset, Ctx, CustomSchema, Filter, OrganizationId, Query, RecordKind, RecordRef, Result,
    Store, ValidationErrors,
};

use crate::rows::{self, ORG_TABLE, ORGANIZATION_FIELDS};
use crate::{Contacts, NewOrganization, Organization, OrganizationPatch, PhoneInput, validate};

/// The organizations API (companies). Made by `Crm::organizations`,
/// [`Organizations::new`] or [`Contacts::organizations`]; it shares the contacts
/// module's tables and rules.
#[derive(Clone, Debug)]
pub struct Organizations {
    contacts: Contacts,
}

impl Organizations {
    /// The API over a store composed with [`crate::ContactsModule`].
    pub fn new(store: &Store) -> Result<Self> {
        Ok(Organizations {
            contacts: Contacts::new(store)?,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.contacts.store
    }

    async fn build_fields(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        o: &mut Organization,
        phone: Option<&PhoneInput>,
        custom: &CustomSchema,
    ) -> Result<()> {
        errs.check(crmkit_core::text::check_text("name", &o.name, 200, true));
        if let Some(d) = &o.domain {
            o.domain = errs.check(validate::domain("domain", d));
        }
        validate::opt_text(errs, "industry", &o.industry, 100);
        if o.employee_count.is_some_and(|n| n < 0) {
            errs.push("employee_count", "must not be negative");
        }
        if o.annual_revenue.is_some_and(|m| m.is_negative()) {
            errs.push("annual_revenue", "must not be negative");
        }
        if let Some(p) = phone {
            o.phone = validate::phone(errs, "phone", p).map(|p| p.number);
        }
        if let Some(w) = &o.website {
            validate::website(errs, w);
        }
        if let Some(a) = &o.address {
            validate::address(errs, a);
        }
        validate::tags(errs, &o.tags);
        errs.check(custom.validate(&o.custom));
        if let Some(p) = o.parent {
            if p == o.id {
                errs.push("parent", "an organization cannot be its own parent");
            } else if !self.contacts.org_exists(ctx, p).await? {
                errs.push("parent", reference_reason(&RecordKind::ORGANIZATION));
            } else {
                // Walk up from the new parent: reaching `o` again would make a cycle.
                let mut cur = Some(p);
                let mut depth = 0;
                while let Some(c) = cur {
                    if c == o.id || depth > 64 {
                        errs.push("parent", "would make a cycle of parents");
                        break;
                    }
                    let row = self
                        .store()
                        .backend()
                        .get(ctx.tenant(), ORG_TABLE, &[Value::Uuid(c.as_uuid())])
                        .await?;
                    cur = row
                        .and_then(|r| r[12].as_uuid())
                        .map(OrganizationId::from_uuid);
                    depth += 1;
                }
            }
        }
        Ok(())
    }

    /// The phone lookup rows of an organization.
    fn phone_writes(o: &Organization, replace: bool) -> Vec<Write> {
        let numbers: Vec<String> = o.phone.iter().cloned().collect();
        let record = RecordRef::from(o.id);
        lookup::index_writes(&record, LookupKind::Phone, &numbers, false, replace)
    }

    /// Creates an organization.
    pub async fn create(&self, ctx: &Ctx, input: NewOrganization) -> Result<Organization> {
        let mut cs = Changeset::new(ctx);
        let o = self.stage_create(ctx, input, &mut cs).await?;
        self.contacts.store.commit(cs).await?;
        Ok(o)
    }

    /// Validates a new organization and adds its writes to `cs` without committing (see
    /// [`Contacts::stage_create`]).
    pub async fn stage_create(
        &self,
        ctx: &Ctx,
        input: NewOrganization,
        cs: &mut Changeset,
    ) -> Result<Organization> {
        ctx.actor().require_write("create organization")?;
        let custom = self
            .contacts
            .custom_schema(ctx, &RecordKind::ORGANIZATION)
            .await?;
        let now = ctx.now();
        let mut o = Organization {
            id: OrganizationId::new(),
            name: input.name,
            domain: input.domain,
            industry: input.industry,
            employee_count: input.employee_count,
            annual_revenue: input.annual_revenue,
            phone: None,
            website: input.website,
            address: input.address,
            parent: input.parent,
            owner: input.owner.unwrap_or(ctx.actor().user),
            team: input.team,
            tags: input.tags,
            custom: input.custom,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        let mut errs = ValidationErrors::new();
        self.build_fields(ctx, &mut errs, &mut o, input.phone.as_ref(), &custom)
            .await?;
        OwnerChecks::new()
            .check(&self.contacts.store, ctx, &mut errs, o.owner, o.team)
            .await?;
        errs.into_result()?;
        let record = RecordRef::from(o.id);
        stage_insert(cs, &o, rows::org_row(&o)?);
        cs.writes.extend(Self::phone_writes(&o, false));
        cs.writes
            .extend(custom.index_writes(&record, &o.custom, false));
        Ok(o)
    }

    /// The live organization (visible to the actor) with this web domain, oldest first.
    /// The domain is normalised as on input (`https://www.Example.com/x` is `example.com`).
    pub async fn find_by_domain(&self, ctx: &Ctx, domain: &str) -> Result<Option<Organization>> {
        let d = validate::domain("domain", domain)?;
        let page = self
            .list(ctx, &Query::new().filter(Filter::eq("domain", d)).limit(1))
            .await?;
        Ok(page.items.into_iter().next())
    }

    /// Changes an organization whose current version is `expected_version`.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: OrganizationId,
        expected_version: u64,
        patch: OrganizationPatch,
    ) -> Result<Organization> {
        let old = self.live(ctx, id, "update organization").await?;
        let custom = self
            .contacts
            .custom_schema(ctx, &RecordKind::ORGANIZATION)
            .await?;
        let mut new = old.clone();
        let owner = (patch.owner, patch.team);
        crmkit_core::apply_patch!(patch => new; name, domain, industry, employee_count,
            annual_revenue, website, address, parent, tags);
        if !patch.custom.is_empty() {
            new.custom = apply_custom_patch(&old.custom, &patch.custom);
        }
        let phone_input = match &patch.phone {
            Some(Some(p)) => Some(p),
            Some(None) => {
                new.phone = None;
                None
            }
            None => None,
        };
        let mut errs = ValidationErrors::new();
        self.build_fields(ctx, &mut errs, &mut new, phone_input, &custom)
            .await?;
        service::reassign(&self.contacts.store, ctx, &mut errs, &mut new, owner).await?;
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        let mut cs = Changeset::new(ctx);
        let event = "organization.updated";
        let Some((record, _)) = service::stage_record_update(
            self.store(),
            &mut cs,
            &old,
            &mut new,
            event,
            rows::org_row,
        )?
        else {
            return Ok(old);
        };
        if new.phone != old.phone {
            cs.writes.extend(Self::phone_writes(&new, true));
        }
        cs.writes
            .extend(custom.changed_index_writes(&record, &old.custom, &new.custom));
        self.contacts.store.commit(cs).await?;
        Ok(new)
    }
}

crmkit_core::record_verbs! {
    Organizations: Organization, OrganizationId;
    load;
    live;
    /// An organization visible to the actor and not deleted.
    get;
    /// Lists organizations (see [`rows::ORGANIZATION_FIELDS`] and `custom.<key>`).
    list(ORGANIZATION_FIELDS, custom);
    /// The audit trail of a visible organization.
    audit;
    /// Soft-deletes an organization.
    delete;
    /// Restores a soft-deleted organization.
    restore;
    set_deleted(service::lookup_follows(|o: &Organization| Organizations::phone_writes(o, true)));
}

impl Organizations {
    pub(crate) fn from_contacts(contacts: Contacts) -> Self {
        Organizations { contacts }
    }
}
