//! The contacts module's record kinds, `contact` and `organization`, for the generic
//! record API (see [`crmkit_core::record`]). Each generic call runs the typed command of
//! [`Contacts`], so both paths validate, check access and write the same.

use crmkit_core::record::{
    FieldDescription as F, FieldType as T, JsonMap, KindDescription, TypedKind,
};
use crmkit_core::{ContactId, OrganizationId};

use crate::Contacts;
use crate::model::{
    Contact, ContactPatch, LifecycleStage, NewContact, NewOrganization, Organization,
    OrganizationPatch,
};
use crate::rows::{CONTACT_FIELDS, ORGANIZATION_FIELDS};

#[doc = include_str!("kinds/contact.md")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ContactKind;

impl TypedKind for ContactKind {
    type Record = Contact;
    type New = NewContact;
    type Patch = ContactPatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new("contact", "Contact", "Contacts", "contacts")
            .doc("A person. A second live contact with the same email is a Duplicate.")
            .id_field()
            .field(F::new("first_name", T::text(100)).personal().doc("Given name; a contact needs a first or a last name."))
            .field(F::new("last_name", T::text(100)).personal().doc("Family name."))
            .field(
                F::new("emails", T::list(T::Object))
                    .personal()
                    .doc("`{address, label}` objects (`label` optional, at most 32 characters), the first is the primary."),
            )
            .field(
                F::new("phones", T::list(T::Object))
                    .personal()
                    .doc("`{number, label}` objects (E.164 when read); bodies may add `region` for national numbers."),
            )
            .field(F::new("job_title", T::text(200)).nullable())
            .field(F::new("organization", T::reference("organization")).nullable())
            .owned()
            .field(F::new("lifecycle_stage", T::choice(LifecycleStage::NAMES)))
            .field(F::new("consent", T::Object).personal().doc("`{status, source, at}` marketing consent."))
            .field(F::new("tags", T::list(T::text(50))))
            .with_custom()
            .system_fields()
            .queryable(&CONTACT_FIELDS)
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Contacts::from_checked(store), id: ContactId;
        get, list, audit, create, patch, delete, restore,
    }
}

#[doc = include_str!("kinds/organization.md")]
#[derive(Debug, Clone, Copy, Default)]
pub struct OrganizationKind;

/// An organization's phone is an E.164 string when read; a body may give the string or a
/// `{number, label, region}` object.
fn phone_object(mut body: JsonMap) -> JsonMap {
    if let Some(p) = body.get_mut("phone")
        && let Some(s) = p.as_str()
    {
        *p = serde_json::json!({ "number": s });
    }
    body
}

impl TypedKind for OrganizationKind {
    type Record = Organization;
    type New = NewOrganization;
    type Patch = OrganizationPatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new("organization", "Organization", "Organizations", "contacts")
            .doc("A company or other organization.")
            .id_field()
            .field(F::new("name", T::text(200)).required())
            .field(
                F::new("domain", T::text(253))
                    .nullable()
                    .doc("Web domain, normalised (`example.com`)."),
            )
            .field(F::new("industry", T::text(200)).nullable())
            .field(F::new("employee_count", T::Int).nullable())
            .field(F::new("annual_revenue", T::Money).nullable())
            .field(
                F::new("phone", T::text(32))
                    .nullable()
                    .doc("E.164 when read; bodies may give `{number, region}`."),
            )
            .field(F::new("website", T::text(500)).nullable())
            .field(
                F::new("address", T::Object)
                    .nullable()
                    .doc("`{street, city, region, postal_code, country}`."),
            )
            .field(F::new("parent", T::reference("organization")).nullable())
            .owned()
            .field(F::new("tags", T::list(T::text(50))))
            .with_custom()
            .system_fields()
            .queryable(&ORGANIZATION_FIELDS)
    }

    fn create_body(&self, body: JsonMap) -> JsonMap {
        phone_object(body)
    }

    fn patch_body(&self, body: JsonMap) -> JsonMap {
        phone_object(body)
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Contacts::from_checked(store).organizations(), id: OrganizationId;
        get, list, audit, create, patch, delete, restore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmkit_core::record::check_field_table;

    #[test]
    fn the_docs_list_every_field() {
        check_field_table(include_str!("kinds/contact.md"), &ContactKind.describe()).unwrap();
        check_field_table(
            include_str!("kinds/organization.md"),
            &OrganizationKind.describe(),
        )
        .unwrap();
    }
}
