//! Contacts and organizations as [`StoredRecord`](crmkit_core::service::StoredRecord)s,
//! so that loading, soft delete, restore and audit run through core's shared service code.

use crmkit_core::RecordKind;

use crate::model::{Contact, Organization};
use crate::rows::{self, ORG_TABLE, PERSON_TABLE};

crmkit_core::stored_record!(
    Contact,
    crmkit_core::ContactId,
    RecordKind::CONTACT,
    PERSON_TABLE,
    rows::decode_contact,
    rows: rows::decode_contact_row
);
crmkit_core::stored_record!(
    Organization,
    crmkit_core::OrganizationId,
    RecordKind::ORGANIZATION,
    ORG_TABLE,
    rows::decode_org
);
