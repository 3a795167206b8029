//! Contacts and organizations as [`StoredRecord`]s, so that loading, soft delete, restore
//! and audit run through core's shared service code.

use chrono::{DateTime, Utc};
use crmkit_core::service::StoredRecord;
use crmkit_core::store::Value;
use crmkit_core::{ContactId, OrganizationId, RecordKind, Result, TeamId, UserId};

use crate::model::{Contact, Organization};
use crate::rows::{self, ORG_TABLE, PERSON_TABLE};

macro_rules! stored {
    ($ty:ty, $id:ty, $kind:expr, $table:expr, $decode:path) => {
        impl StoredRecord for $ty {
            type Id = $id;
            const KIND: RecordKind = $kind;
            const TABLE: &'static str = $table;
            fn decode(row: Vec<Value>) -> Result<Self> {
                $decode(row)
            }
            fn access(&self) -> (Option<UserId>, Option<TeamId>) {
                (Some(self.owner), self.team)
            }
            fn deleted_at(&self) -> Option<DateTime<Utc>> {
                self.deleted_at
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn mark_deleted(&mut self, deleted_at: Option<DateTime<Utc>>, now: DateTime<Utc>) {
                self.deleted_at = deleted_at;
                self.updated_at = now;
                self.version += 1;
            }
        }
    };
}

stored!(
    Contact,
    ContactId,
    RecordKind::CONTACT,
    PERSON_TABLE,
    rows::decode_contact
);
stored!(
    Organization,
    OrganizationId,
    RecordKind::ORGANIZATION,
    ORG_TABLE,
    rows::decode_org
);
