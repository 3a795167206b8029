//! The pipeline module's record kinds for the generic record API (see
//! [`crmkit_core::record`]): `lead`, `deal`, `campaign` and `pipeline`. Each generic call
//! runs the typed command of [`Leads`], [`Deals`] or [`Campaigns`], so both paths validate,
//! check access and write the same.
//!
//! What the generic API does not offer is done by the typed API's dedicated commands, and
//! the fields those commands change are read-only in a generic patch:
//!
//! - `lead`: `status`, `disqualified_reason` and `score` are given on create only (then
//!   [`Leads::set_status`], [`Leads::set_score`]); the `converted_*` links are written by
//!   [`Leads::convert`].
//! - `deal`: `pipeline` and `stage` are given on create only (then [`Deals::move_to_stage`] and
//!   [`Deals::move_to_pipeline`]); `won_at`, `lost_at`, `lost_reason`, `lost_reason_id`
//!   and `stage_entered_at` follow the moves; `probability` is computed (the override or
//!   the stage's).
//! - `pipeline`: its `stages` are a field of the pipeline, not a kind of their own. A
//!   stage has no version, audit trail, events or lifecycle of its own: every stage change
//!   ([`Pipelines::add_stage`], [`Pipelines::update_stage`], [`Pipelines::reorder_stages`],
//!   [`Pipelines::remove_stage`]) is a change of its pipeline (one version, one
//!   `pipeline.updated` event), and a stage id only means something within its pipeline.
//!   So `stages` is given on create and changed by those commands only; a generic patch
//!   renames. Pipelines are tenant settings: every actor reads them, Admin and Manager
//!   write them, and they are never deleted.
//! - `campaign`: members are not a field (they are many, paged, and changed by
//!   [`Campaigns::add_member`] and friends).

use crmkit_core::record::{
    FieldDescription as F, FieldType as T, JsonMap, KindDescription, Lifecycle, TypedKind,
};
use crmkit_core::{CampaignId, Ctx, DealId, Error, LeadId, PipelineId, Result, Store};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::campaign::{
    CAMPAIGN_FIELDS, Campaign, CampaignKind, CampaignPatch, CampaignStatus, Campaigns, NewCampaign,
};
use crate::deal::rows::{DEAL_FIELDS, PIPELINE_FIELDS};
use crate::deal::{
    Deal, DealPatch, DealRole, Deals, NewDeal, NewPipeline, Pipeline, Pipelines, REQUIRABLE_FIELDS,
    Source, StageKind,
};
use crate::lead::{LEAD_FIELDS, Lead, LeadPatch, LeadStatus, Leads, NewLead};

/// Emails are `{address, label}` objects in a lead; a body may give them as objects or as
/// plain strings (labels are not kept yet, as for contacts).
fn email_addresses(mut body: JsonMap) -> JsonMap {
    if let Some(serde_json::Value::Array(items)) = body.get_mut("emails") {
        for it in items.iter_mut() {
            if let Some(a) = it.get("address").cloned() {
                *it = a;
            }
        }
    }
    body
}

/// The `lead` kind.
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/lead.md")]
pub struct LeadKind;

impl TypedKind for LeadKind {
    type Record = Lead;
    type New = NewLead;
    type Patch = LeadPatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new("lead", "Lead", "Leads", "pipeline")
            .doc(
                "A prospect before qualification: person and company fields, converted into \
                 a contact, an organization and a deal by `Leads::convert`.",
            )
            .events(crate::lead::EVENT_KINDS)
            .id_field()
            .field(
                F::new("first_name", T::text(100))
                    .personal()
                    .doc("Given name; a lead needs a first or a last name."),
            )
            .field(F::new("last_name", T::text(100)).personal().doc("Family name."))
            .field(F::new("job_title", T::text(200)).nullable())
            .field(F::new("company", T::text(200)).nullable().doc("Company name."))
            .field(
                F::new("domain", T::text(253))
                    .nullable()
                    .doc("Company web domain, normalised (`example.com`)."),
            )
            .field(
                F::new("website", T::text(500))
                    .nullable()
                    .doc("Company website (http or https URL)."),
            )
            .field(F::new("employee_count", T::Int).nullable().doc("Company size."))
            .field(
                F::new("emails", T::list(T::Object))
                    .personal()
                    .doc("`{address, label}` objects, the first is the primary (bodies may give plain strings; a body's labels are not kept yet)."),
            )
            .field(
                F::new("phones", T::list(T::Object))
                    .personal()
                    .doc("`{number, label}` objects (E.164 when read); bodies may add `region` for national numbers."),
            )
            .field(F::new("source", T::choice(Source::NAMES)))
            .field(
                F::new("status", T::choice(LeadStatus::NAMES))
                    .create_only()
                    .doc("Initial status on create (`converted` is refused); then changed by `Leads::set_status` and `Leads::convert`."),
            )
            .field(
                F::new("disqualified_reason", T::text(500))
                    .nullable()
                    .create_only()
                    .doc("Set exactly when the status is `disqualified` (with the status)."),
            )
            .owned()
            .field(
                F::new("campaign", T::reference("campaign"))
                    .nullable()
                    .doc("The campaign that sourced it."),
            )
            .field(
                F::new("score", T::Int)
                    .create_only()
                    .doc("Initial score on create; then changed by `Leads::set_score`."),
            )
            .with_custom()
            .field(
                F::new("converted_contact", T::reference("contact"))
                    .nullable()
                    .read_only()
                    .doc("The contact it was converted into."),
            )
            .field(
                F::new("converted_organization", T::reference("organization"))
                    .nullable()
                    .read_only()
                    .doc("The organization it was converted into."),
            )
            .field(
                F::new("converted_deal", T::reference("deal"))
                    .nullable()
                    .read_only()
                    .doc("The deal it was converted into."),
            )
            .field(F::new("converted_at", T::Timestamp).nullable().read_only())
            .system_fields()
            .queryable(&LEAD_FIELDS)
            .filter_as("emails", "email")
            .filter_as("phones", "phone")
    }

    fn create_body(&self, body: JsonMap) -> JsonMap {
        email_addresses(body)
    }

    fn patch_body(&self, body: JsonMap) -> JsonMap {
        email_addresses(body)
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Leads::new(store)?, id: LeadId;
        get, list, audit, create, patch, delete, restore,
    }
}

/// The `deal` kind.
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/deal.md")]
pub struct DealKind;

/// The typed inputs call a deal's probability override `probability`; the record (and so
/// a generic body) calls it `probability_override`, and its errors name it so.
fn override_named(e: Error) -> Error {
    match e {
        Error::Validation(mut v) => {
            for f in &mut v.errors {
                if f.field == "probability" {
                    f.field = "probability_override".into();
                }
            }
            Error::Validation(v)
        }
        other => other,
    }
}

impl TypedKind for DealKind {
    type Record = Deal;
    type New = NewDeal;
    type Patch = DealPatch;

    fn describe(&self) -> KindDescription {
        let roles = DealRole::NAMES.join(", ");
        let requirable = REQUIRABLE_FIELDS.join(", ");
        KindDescription::new("deal", "Deal", "Deals", "pipeline")
            .doc(&format!(
                "An opportunity in a stage of a pipeline, with an append-only stage history. \
                 A stage may require fields ({requirable} or custom.<key>) that the deal must \
                 have to enter it and keep while in it."
            ))
            .events(&[
                "deal.created",
                "deal.updated",
                "deal.moved",
                "deal.deleted",
                "deal.restored",
            ])
            .id_field()
            .field(F::new("title", T::text(200)).required())
            .field(
                F::new("amount", T::Money)
                    .nullable()
                    .doc("Not negative; in the pipeline's currency when it has one."),
            )
            .field(F::new("expected_close", T::Date).nullable())
            .field(
                F::new("pipeline", T::reference("pipeline"))
                    .required()
                    .create_only()
                    .doc("Then changed by `Deals::move_to_pipeline`."),
            )
            .field(
                F::new("stage", T::Id)
                    .create_only()
                    .doc("The id of a stage of `pipeline` (see the pipeline's `stages`); its first stage when absent on create, never a lost one. Then changed by `Deals::move_to_stage`."),
            )
            .owned()
            .field(F::new("organization", T::reference("organization")).nullable())
            .field(
                F::new("contacts", T::list(T::list(T::text(36))))
                    .doc(&format!(
                        "Contact roles: `[contact id, role]` pairs, role one of {roles}; a contact at most once, at most 100."
                    )),
            )
            .field(F::new("source", T::choice(Source::NAMES)))
            .field(
                F::new("campaign", T::reference("campaign"))
                    .nullable()
                    .doc("The campaign that sourced it."),
            )
            .field(
                F::new("probability_override", T::Int)
                    .nullable()
                    .doc("0 to 100; the stage's probability applies when null."),
            )
            .field(
                F::new("probability", T::Int)
                    .computed()
                    .doc("The effective probability: the override, else the stage's."),
            )
            .field(F::new("next_step", T::text(500)).nullable())
            .field(
                F::new("lost_reason", T::text(500))
                    .nullable()
                    .read_only()
                    .doc("Why it was lost (set by a move to a lost stage)."),
            )
            .field(
                F::new("lost_reason_id", T::Id)
                    .nullable()
                    .read_only()
                    .doc("The managed lost reason (`Deals::lost_reasons`) it was lost for, if one was picked."),
            )
            .field(F::new("won_at", T::Timestamp).nullable().read_only())
            .field(F::new("lost_at", T::Timestamp).nullable().read_only())
            .field(
                F::new("stage_entered_at", T::Timestamp)
                    .read_only()
                    .doc("When it entered its current stage."),
            )
            .with_custom()
            .system_fields()
            .queryable(&DEAL_FIELDS)
    }

    async fn create(&self, store: &Store, ctx: &Ctx, input: NewDeal) -> Result<Deal> {
        Deals::new(store)?
            .create(ctx, input)
            .await
            .map_err(override_named)
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: DealPatch,
    ) -> Result<Deal> {
        Deals::new(store)?
            .update(ctx, DealId::from_uuid(id), expected_version, patch)
            .await
            .map_err(override_named)
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Deals::new(store)?, id: DealId;
        get, list, audit, delete, restore,
    }
}

/// The `campaign` kind (named so beside [`CampaignKind`], the type of a campaign).
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/campaign.md")]
pub struct CampaignRecordKind;

impl TypedKind for CampaignRecordKind {
    type Record = Campaign;
    type New = NewCampaign;
    type Patch = CampaignPatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new("campaign", "Campaign", "Campaigns", "pipeline")
            .doc("A marketing campaign; leads and deals it sourced refer to it, and leads and contacts are its members (`Campaigns::add_member`).")
            .id_field()
            .field(F::new("name", T::text(200)).required())
            .field(F::new("kind", T::choice(CampaignKind::NAMES)).doc("The type of campaign."))
            .field(
                F::new("status", T::choice(CampaignStatus::NAMES))
                    .doc("planned -> active <-> paused -> completed; planned, active or paused -> cancelled; completed and cancelled are final (any status on create)."),
            )
            .field(F::new("start_date", T::Date).nullable())
            .field(
                F::new("end_date", T::Date)
                    .nullable()
                    .doc("Not before the start date."),
            )
            .field(F::new("budget", T::Money).nullable().doc("Not negative."))
            .field(
                F::new("actual_cost", T::Money)
                    .nullable()
                    .doc("Not negative; in the budget's currency when both are set."),
            )
            .field(F::new("expected_revenue", T::Money).nullable().doc("Not negative."))
            .field(F::new("description", T::text(5000)).nullable())
            .owned()
            .with_custom()
            .system_fields()
            .queryable(&CAMPAIGN_FIELDS)
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Campaigns::new(store)?, id: CampaignId;
        get, list, audit, create, patch, delete, restore,
    }
}

/// The `pipeline` kind.
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/pipeline.md")]
pub struct PipelineKind;

/// A change to a pipeline ([`Pipelines::update`]): its name; stages change through their
/// own commands ([`Pipelines::add_stage`], ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelinePatch {
    /// New name.
    pub name: Option<String>,
}

impl TypedKind for PipelineKind {
    type Record = Pipeline;
    type New = NewPipeline;
    type Patch = PipelinePatch;

    fn describe(&self) -> KindDescription {
        let requirable = REQUIRABLE_FIELDS.join(", ");
        KindDescription::new("pipeline", "Pipeline", "Pipelines", "pipeline")
            .doc("A sales pipeline with its ordered stages: a tenant setting every actor reads and Admin and Manager write. Never deleted.")
            .events(&["pipeline.created", "pipeline.updated"])
            .lifecycle(Lifecycle {
                soft_delete: false,
                restore: false,
                ..Lifecycle::default()
            })
            .id_field()
            .field(F::new("name", T::text(100)).required())
            .field(
                F::new("currency", T::Currency)
                    .nullable()
                    .create_only()
                    .doc("The currency every deal amount in it must have, if fixed."),
            )
            .field(
                F::new("is_default", T::Bool)
                    .read_only()
                    .doc("Whether it is the tenant's default pipeline (`Pipelines::ensure_default`)."),
            )
            .field(
                F::new("stages", T::list(T::Object))
                    .required()
                    .create_only()
                    .doc(&format!(
                        "Its live stages in order, part of the pipeline (not a kind of their own): `{{id, pipeline, name, position, probability, kind, rotting_days, required_fields}}` objects, `kind` one of {}, `required_fields` of {requirable} or custom.<key>. A create body gives `{{name, probability, kind, rotting_days, required_fields}}` (at least one open stage, at most 50, names unique); then `Pipelines::add_stage`, `update_stage`, `reorder_stages` and `remove_stage` change them.",
                        StageKind::NAMES.join(", ")
                    )),
            )
            .field(F::new("created_at", T::Timestamp).read_only())
            .field(
                F::new("updated_at", T::Timestamp)
                    .read_only()
                    .doc("Changed also by a change of its stages."),
            )
            .field(
                F::new("version", T::Int)
                    .read_only()
                    .doc("Bumped by every change of the pipeline or its stages."),
            )
            .queryable(&PIPELINE_FIELDS)
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Pipelines::new(store)?, id: PipelineId;
        get, list, audit, create, patch,
    }

    crmkit_core::forward_typed_kind!(never_deleted: crate::deal::PIPELINE_KIND);
}

/// The module's kinds, for [`crate::PipelineModule`]'s `record_kinds`.
pub(crate) fn handlers() -> Vec<std::sync::Arc<dyn crmkit_core::record::KindHandler>> {
    vec![
        crmkit_core::record::typed(LeadKind),
        crmkit_core::record::typed(DealKind),
        crmkit_core::record::typed(CampaignRecordKind),
        crmkit_core::record::typed(PipelineKind),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_describe_themselves() {
        for d in [
            LeadKind.describe(),
            DealKind.describe(),
            CampaignRecordKind.describe(),
            PipelineKind.describe(),
        ] {
            assert!(d.get("id").is_some(), "{}", d.kind);
            let json = serde_json::to_value(&d).expect("describes as JSON");
            assert_eq!(json["kind"], d.kind.as_str());
        }
        let p: DealPatch =
            serde_json::from_value(serde_json::json!({"probability_override": null}))
                .expect("alias");
        assert_eq!(p.probability, Some(None));
        let p: DealPatch = serde_json::from_value(serde_json::json!({})).expect("empty");
        assert_eq!(p, DealPatch::default());
    }

    #[test]
    fn builders_set_what_they_name() {
        use crate::deal::NewStage;
        use crmkit_core::{ContactId, Currency, Money};
        let pipeline = PipelineId::new();
        let contact = ContactId::new();
        let eur = Currency::parse("EUR").expect("EUR");
        let amount = Money::parse("10", "EUR").expect("money");
        let d = NewDeal::new("D", pipeline)
            .amount(amount)
            .probability(40)
            .next_step("Call")
            .contact(contact, DealRole::Champion);
        assert_eq!(d.amount, Some(amount));
        assert_eq!(d.probability, Some(40));
        assert_eq!(d.next_step.as_deref(), Some("Call"));
        assert_eq!(d.contacts, vec![(contact, DealRole::Champion)]);
        let p = DealPatch::default()
            .title("T")
            .amount(None)
            .probability(Some(5));
        assert_eq!(p.title.as_deref(), Some("T"));
        assert_eq!(p.amount, Some(None));
        assert_eq!(p.probability, Some(Some(5)));
        let l = NewLead::named("A", "B")
            .score(3)
            .status(LeadStatus::Qualified);
        assert_eq!((l.score, l.status), (3, LeadStatus::Qualified));
        let c = NewCampaign::named("C", CampaignKind::Email).budget(amount);
        assert_eq!(c.budget, Some(amount));
        let n = NewPipeline::named("P")
            .currency(eur)
            .stage(NewStage::open("Open", 10))
            .stage(NewStage::won("Won"));
        assert_eq!((n.currency, n.stages.len()), (Some(eur), 2));
    }
}

#[cfg(test)]
mod doc_tables {
    use super::*;

    fn check(doc: &str, d: &KindDescription) {
        if let Err(e) = crmkit_core::record::check_field_table(doc, d) {
            panic!("{e}");
        }
    }

    #[test]
    fn the_docs_list_every_field() {
        check(include_str!("kinds/lead.md"), &LeadKind.describe());
        check(include_str!("kinds/deal.md"), &DealKind.describe());
        check(
            include_str!("kinds/campaign.md"),
            &CampaignRecordKind.describe(),
        );
        check(include_str!("kinds/pipeline.md"), &PipelineKind.describe());
    }
}
