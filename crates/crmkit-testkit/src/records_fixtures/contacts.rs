//! The [`KindFixture`]s of the contacts module's kinds, for the generic record checks in
//! [`crate::records`].

use crmkit_contacts::{ContactPatch, OrganizationPatch};
use crmkit_core::store::BoxFuture;
use crmkit_core::{ContactId, OrganizationId};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::check::{At, CheckResult};
use crate::contacts::Fixture;
use crate::records::KindFixture;

/// The contacts module's fixtures.
pub fn all() -> Vec<KindFixture> {
    vec![contact(), organization()]
}

/// `contact`: a unique email per body; the patch changes the job title and a tag.
pub fn contact() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "first_name": "Grace",
                "last_name": "Hopper",
                "emails": [{"address": format!("grace.{}@navy.test", Uuid::now_v7().simple())}],
                "phones": [{"number": "+4930901820", "label": "work"}],
                "lifecycle_stage": "customer",
                "tags": ["navy"],
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            f.contacts
                .update(
                    &f.admin,
                    ContactId::from_uuid(id),
                    v,
                    ContactPatch {
                        job_title: Some(Some("Rear Admiral".into())),
                        tags: Some(vec!["navy".into(), "cobol".into()]),
                        ..Default::default()
                    },
                )
                .await
                .at("typed contact patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "contact",
        body,
        patch: || json!({"job_title": "Rear Admiral", "tags": ["navy", "cobol"]}),
        typed_patch: typed,
    }
}

/// `organization`: the patch changes the industry and clears the website.
pub fn organization() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "name": "Initech",
                "industry": "Software",
                "website": "https://initech.test",
                "employee_count": 120,
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            f.contacts
                .organizations()
                .update(
                    &f.admin,
                    OrganizationId::from_uuid(id),
                    v,
                    OrganizationPatch {
                        industry: Some(Some("Consulting".into())),
                        website: Some(None),
                        ..Default::default()
                    },
                )
                .await
                .at("typed organization patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "organization",
        body,
        patch: || json!({"industry": "Consulting", "website": null}),
        typed_patch: typed,
    }
}
