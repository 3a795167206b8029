//! Lead conversion: one changeset with the lead's update and every record it creates.

use crmkit_contacts::{LifecycleStage, NewContact, NewOrganization, PhoneInput};
use crmkit_core::record::reference_reason;
use crmkit_core::store::Write;
use crmkit_core::{Changeset, Ctx, Error, LeadId, RecordKind, RecordRef, Result, ValidationErrors};

use super::{LEAD_TABLE, Leads, converted_is_final};
use crate::deal::{DealRole, Deals, NewDeal};
use crate::lead::model::{
    ContactChoice, Conversion, ConversionPlan, ConvertLead, LeadStatus, OrganizationChoice, Outcome,
};

/// Records a validation error of a staged part under `prefix`, or passes other errors on.
/// A part (organization, contact, deal) of a conversion, staged: `Some` when `staged` is
/// a success; `None` when it is a Validation error, whose fields go to `errs` under
/// `prefix`; any other error fails the conversion.
fn part<T>(errs: &mut ValidationErrors, prefix: &str, staged: Result<T>) -> Result<Option<T>> {
    match staged {
        Ok(t) => Ok(Some(t)),
        Err(Error::Validation(v)) => {
            errs.extend_prefixed(prefix, v);
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

impl Leads {
    /// Converts a lead whose current version is `expected_version` into a contact, an
    /// organization (optional) and a deal (optional), atomically.
    ///
    /// - Contact ([`ContactChoice`]): by default the live contact visible to the actor
    ///   holding one of the lead's emails (ignoring case) is linked; otherwise a contact is
    ///   created from the lead's name, emails, phones and job title, with lifecycle stage
    ///   `opportunity` when a deal is created and `sales_qualified` otherwise.
    /// - Organization ([`OrganizationChoice`]): by default the live organization visible
    ///   to the actor with the lead's domain is linked; otherwise one is created from the
    ///   lead's company (name, domain, website, size) when it has a company name. A new
    ///   contact gets the organization.
    /// - Deal: created in the given pipeline and stage with the organization and the
    ///   contact (role decision maker), the lead's source and campaign.
    /// - Records created are owned by `input.owner`, by default the lead's owner when the
    ///   actor is an Admin or Manager or owns the lead, else the actor; they get the lead's
    ///   team when the actor may give records to it.
    ///
    /// The lead becomes `converted` with links to the contact, organization and deal. All
    /// of it — rows, index rows, audit entries and events (`organization.created`,
    /// `contact.created`, the deal's, `lead.converted`) — is one changeset: a failure
    /// leaves nothing behind.
    ///
    /// Errors: NotFound for a lead the actor cannot see; InvalidTransition when the lead is
    /// already converted, or disqualified without `allow_disqualified`; Validation naming
    /// every bad field (the parts' fields prefixed `contact.`, `organization.`, `deal.`);
    /// Duplicate when a contact would be created with an email another contact holds;
    /// Conflict on a stale version (also when a concurrent conversion won).
    pub async fn convert(
        &self,
        ctx: &Ctx,
        id: LeadId,
        expected_version: u64,
        input: ConvertLead,
    ) -> Result<Conversion> {
        let staged = match self
            .stage_conversion(ctx, id, Some(expected_version), &input)
            .await
        {
            Ok((cs, plan)) => self.contacts.commit(ctx, cs).await.map(|_| plan),
            Err(e) => Err(e),
        };
        let plan = match staged {
            Ok(plan) => plan,
            // A concurrent conversion of this lead may have created the contact between
            // this one's lookups: report the lead's change, not its side effect.
            Err(e @ Error::Duplicate { .. }) => {
                return Err(match self.load(ctx, id, None).await {
                    Ok(now) if now.status == LeadStatus::Converted => converted_is_final(id),
                    Ok(now) if now.version != expected_version => {
                        Error::conflict(id, expected_version, now.version)
                    }
                    _ => e,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(Conversion {
            lead: plan.lead,
            contact: plan.contact,
            organization: plan.organization,
            deal: plan.deal,
        })
    }

    /// What [`Leads::convert`] would do, without writing anything: which contact and
    /// organization it would link (so an application can show "will merge into X") or
    /// create, the deal it would create, and the lead as it would become. The same checks
    /// and errors as `convert` (except the version). Ids of records it would create are not
    /// kept: `convert` makes new ones.
    pub async fn convert_dry_run(
        &self,
        ctx: &Ctx,
        id: LeadId,
        input: &ConvertLead,
    ) -> Result<ConversionPlan> {
        Ok(self.stage_conversion(ctx, id, None, input).await?.1)
    }

    async fn stage_conversion(
        &self,
        ctx: &Ctx,
        id: LeadId,
        expected_version: Option<u64>,
        input: &ConvertLead,
    ) -> Result<(Changeset, ConversionPlan)> {
        let old = self.live(ctx, id, "convert lead").await?;
        match old.status {
            LeadStatus::Converted => return Err(converted_is_final(id)),
            LeadStatus::Disqualified if !input.allow_disqualified => {
                return Err(Error::InvalidTransition {
                    record: RecordRef::from(id),
                    reason: "the lead is disqualified; convert it with allow_disqualified".into(),
                });
            }
            _ => {}
        }
        let actor = ctx.actor();
        let manages = actor.manages();
        let owner = input
            .owner
            .unwrap_or(if manages || old.owner == actor.user {
                old.owner
            } else {
                actor.user
            });
        let team = old.team.filter(|t| manages || actor.teams.contains(t));

        let mut errs = ValidationErrors::new();
        let mut cs = Changeset::new(ctx);
        let mut staged: Vec<RecordRef> = vec![];

        // The organization.
        let org_to_create = match input.organization {
            OrganizationChoice::None => None,
            OrganizationChoice::Link(oid) => {
                if self.may_refer(ctx, &RecordRef::from(oid)).await? {
                    Some(Outcome::Linked(
                        self.contacts.organizations().get(ctx, oid).await?,
                    ))
                } else {
                    errs.push("organization", reference_reason(&RecordKind::ORGANIZATION));
                    None
                }
            }
            OrganizationChoice::Auto | OrganizationChoice::Create => {
                let linked = match (&input.organization, &old.domain) {
                    (OrganizationChoice::Auto, Some(d)) => {
                        self.contacts.organizations().find_by_domain(ctx, d).await?
                    }
                    _ => None,
                };
                match (linked, &old.company) {
                    (Some(o), _) => Some(Outcome::Linked(o)),
                    (None, Some(name)) => {
                        let new_org = NewOrganization {
                            name: name.clone(),
                            domain: old.domain.clone(),
                            website: old.website.clone(),
                            employee_count: old.employee_count,
                            owner: Some(owner),
                            team,
                            ..Default::default()
                        };
                        let r = self
                            .contacts
                            .organizations()
                            .stage_create(ctx, new_org, &mut cs)
                            .await;
                        let o = part(&mut errs, "organization.", r)?;
                        staged.extend(o.as_ref().map(|o| RecordRef::from(o.id)));
                        o.map(Outcome::Created)
                    }
                    (None, None) => {
                        if input.organization == OrganizationChoice::Create {
                            errs.push(
                                "organization",
                                "the lead has no company name to create an organization from",
                            );
                        }
                        None
                    }
                }
            }
        };
        let org_id = org_to_create.as_ref().map(|o| o.record().id);

        // The contact.
        let mut linked_contact = None;
        match input.contact {
            ContactChoice::Link(cid) => {
                if self.may_refer(ctx, &RecordRef::from(cid)).await? {
                    linked_contact = Some(self.contacts.get(ctx, cid).await?);
                } else {
                    errs.push("contact", reference_reason(&RecordKind::CONTACT));
                }
            }
            ContactChoice::Auto => {
                for e in &old.emails {
                    if let Some(c) = self.contacts.find_by_email(ctx, &e.address).await? {
                        linked_contact = Some(c);
                        break;
                    }
                }
            }
            ContactChoice::Create => {}
        }
        let contact = match (linked_contact, input.contact) {
            (Some(c), _) => Some(Outcome::Linked(c)),
            (None, ContactChoice::Link(_)) => None,
            (None, _) => {
                let new_contact = NewContact {
                    first_name: old.first_name.clone(),
                    last_name: old.last_name.clone(),
                    emails: old.emails.iter().cloned().map(Into::into).collect(),
                    phones: old
                        .phones
                        .iter()
                        .map(|p| PhoneInput::new(p.number.clone()))
                        .collect(),
                    job_title: old.job_title.clone(),
                    organization: org_id,
                    owner: Some(owner),
                    team,
                    lifecycle_stage: if input.deal.is_some() {
                        LifecycleStage::Opportunity
                    } else {
                        LifecycleStage::SalesQualified
                    },
                    ..Default::default()
                };
                let r = self
                    .contacts
                    .stage_create(ctx, &new_contact, &staged, &mut cs)
                    .await;
                let c = part(&mut errs, "contact.", r)?;
                staged.extend(c.as_ref().map(|c| RecordRef::from(c.id)));
                c.map(Outcome::Created)
            }
        };

        // The deal.
        let deal = match &input.deal {
            None => None,
            Some(d) => {
                let new_deal = NewDeal {
                    title: d.title.clone(),
                    amount: d.amount,
                    expected_close: d.expected_close,
                    pipeline: d.pipeline,
                    stage: d.stage,
                    owner: Some(owner),
                    team,
                    organization: org_id,
                    contacts: contact
                        .iter()
                        .map(|c| (c.record().id, DealRole::DecisionMaker))
                        .collect(),
                    source: old.source,
                    campaign: old.campaign,
                    probability: d.probability,
                    next_step: d.next_step.clone(),
                    custom: d.custom.clone(),
                };
                // The deal inherits the lead's campaign as the lead has it.
                let mut vouched = staged.clone();
                vouched.extend(old.campaign.map(RecordRef::from));
                let r = Deals::new(&self.store)?
                    .stage_create(ctx, &new_deal, &vouched, &mut cs)
                    .await;
                part(&mut errs, "deal.", r)?
            }
        };
        errs.into_result()?;
        let contact = contact.ok_or_else(|| Error::storage("conversion staged no contact"))?;
        if let Some(v) = expected_version
            && v != old.version
        {
            return Err(Error::conflict(id, v, old.version));
        }

        // The lead: its versioned update goes first, so that of concurrent conversions
        // all but one fail on it (a Conflict) before touching anything else.
        let mut lead_cs = Changeset::new(ctx);
        let mut new = old.clone();
        new.status = LeadStatus::Converted;
        new.disqualified_reason = None;
        new.converted_contact = Some(contact.record().id);
        new.converted_organization = org_id;
        new.converted_deal = deal.as_ref().map(|d| d.id);
        new.converted_at = Some(lead_cs.at);
        self.change_writes(&mut lead_cs, &old, &mut new, "lead.converted", None)?;
        let mut writes = lead_cs.writes;
        writes.append(&mut cs.writes);
        cs.writes = writes;
        cs.audit.append(&mut lead_cs.audit);
        cs.events.append(&mut lead_cs.events);
        debug_assert!(matches!(&cs.writes[0], Write::Update { table, .. } if *table == LEAD_TABLE));
        Ok((
            cs,
            ConversionPlan {
                lead: new,
                contact,
                organization: org_to_create,
                deal,
            },
        ))
    }
}
