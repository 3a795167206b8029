//! The kernel's own record kinds, `user` and `team`: described and readable through the
//! generic record API, so that `owner` and `team` reference fields point at declared
//! kinds. They are written through [`crate::Directory`] only (Admin), so the generic API
//! offers no create, patch, delete or restore for them.

use std::sync::Arc;

use uuid::Uuid;

use crate::Store;
use crate::ctx::Ctx;
use crate::directory::{TEAMS_TABLE, Team, USERS_TABLE, User, decode_user};
use crate::error::{Error, Result};
use crate::event::AuditEntry;
use crate::id::{RecordKind, RecordRef, TeamId, UserId};
use crate::query::{FieldSpec, FieldType as Q, Page, Query, RecordFields};
use crate::record::{
    FieldDescription, FieldType, KindDescription, KindHandler, Lifecycle, TypedKind, typed,
};
use crate::service::list_page;
use crate::store::{Cond, Value};

const READ_ONLY: Lifecycle = Lifecycle {
    create: false,
    patch: false,
    soft_delete: false,
    restore: false,
    versioned: true,
    audit: true,
};

/// The queryable fields of users.
pub static USER_FIELDS: RecordFields = RecordFields {
    kind: RecordKind::USER,
    table: USERS_TABLE,
    fields: &[
        FieldSpec::new("id", Q::Uuid, false),
        FieldSpec::new("name", Q::Text, false),
        FieldSpec::new("email", Q::Text, false),
        FieldSpec::new("active", Q::Bool, false),
    ],
    custom_column: None,
};

/// The queryable fields of teams.
pub static TEAM_FIELDS: RecordFields = RecordFields {
    kind: RecordKind::TEAM,
    table: TEAMS_TABLE,
    fields: &[
        FieldSpec::new("id", Q::Uuid, false),
        FieldSpec::new("name", Q::Text, false),
    ],
    custom_column: None,
};

/// A user of the tenant's directory (kind `user`), read through the generic record API;
/// written only through [`crate::Directory::put_user`] (Admin). Listing users and reading a
/// user's audit trail need Admin or Manager; one user by id is readable by everyone in the
/// tenant.
///
/// | field | type | required | written by | personal | filter |
/// |---|---|---|---|---|---|
/// | `id` | `id` |  | crmkit |  | `id` |
/// | `name` | `text(200)` |  | crmkit | yes | `name` |
/// | `email` | `text(254)` |  | crmkit | yes | `email` |
/// | `roles` | `list(choice(admin, manager, rep, read_only))` |  | crmkit |  |  |
/// | `teams` | `list(reference(team))` |  | crmkit |  |  |
/// | `active` | `bool` |  | crmkit |  | `active` |
/// | `time_zone` | `text(64)` |  | crmkit |  |  |
/// | `version` | `int` |  | crmkit |  |  |
#[derive(Debug, Clone, Copy, Default)]
pub struct UserKind;

impl TypedKind for UserKind {
    type Record = User;
    type New = ();
    type Patch = ();

    fn describe(&self) -> KindDescription {
        KindDescription::new("user", "User", "Users", "core")
            .doc("A user of the tenant's directory (written through `Directory::put_user`).")
            .events(&["user.created", "user.updated"])
            .lifecycle(READ_ONLY)
            .id_field()
            .field(
                FieldDescription::new("name", FieldType::text(200))
                    .read_only()
                    .personal(),
            )
            .field(
                FieldDescription::new("email", FieldType::text(254))
                    .read_only()
                    .personal(),
            )
            .field(
                FieldDescription::new(
                    "roles",
                    FieldType::list(FieldType::choice(&["admin", "manager", "rep", "read_only"])),
                )
                .read_only(),
            )
            .field(
                FieldDescription::new("teams", FieldType::list(FieldType::reference("team")))
                    .read_only(),
            )
            .field(FieldDescription::new("active", FieldType::Bool).read_only())
            .field(FieldDescription::new("time_zone", FieldType::text(64)).read_only())
            .field(FieldDescription::new("version", FieldType::Int).read_only())
            .queryable(&USER_FIELDS)
    }

    async fn get(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<User> {
        store.directory().user(ctx, UserId::from_uuid(id)).await
    }

    async fn list(&self, store: &Store, ctx: &Ctx, q: &Query) -> Result<Page<User>> {
        // The same rule as `Directory::users`: the list (emails, roles) is for Admin and
        // Manager; one user by id stays readable by everyone in the tenant.
        if !ctx.actor().manages() {
            return Err(Error::PermissionDenied(
                "listing users needs the admin or manager role".into(),
            ));
        }
        if q.include_deleted {
            return Err(Error::validation(
                "include_deleted",
                "users are never deleted",
            ));
        }
        list_page(
            store,
            ctx,
            q,
            &USER_FIELDS,
            Cond::True,
            |r| decode_user(&r),
            |_| None,
        )
        .await
    }

    async fn audit(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<Vec<AuditEntry>> {
        if !ctx.actor().manages() {
            return Err(Error::PermissionDenied(
                "a user's audit trail needs the admin or manager role".into(),
            ));
        }
        self.get(store, ctx, id).await?;
        store
            .audit_unchecked(ctx, &RecordRef::new(RecordKind::USER, id))
            .await
    }
}

fn decode_team(row: Vec<Value>) -> Result<Team> {
    let bad = || Error::storage("malformed team row");
    Ok(Team {
        id: TeamId::from_uuid(row[0].as_uuid().ok_or_else(bad)?),
        name: row[1].as_text().ok_or_else(bad)?.to_owned(),
        version: row[2].as_int().ok_or_else(bad)? as u64,
    })
}

/// A team (kind `team`), read through the generic record API; written only through
/// [`crate::Directory::put_team`] (Admin). Readable by everyone in the tenant.
///
/// | field | type | required | written by | personal | filter |
/// |---|---|---|---|---|---|
/// | `id` | `id` |  | crmkit |  | `id` |
/// | `name` | `text(200)` |  | crmkit |  | `name` |
/// | `version` | `int` |  | crmkit |  |  |
#[derive(Debug, Clone, Copy, Default)]
pub struct TeamKind;

impl TypedKind for TeamKind {
    type Record = Team;
    type New = ();
    type Patch = ();

    fn describe(&self) -> KindDescription {
        KindDescription::new("team", "Team", "Teams", "core")
            .doc("A team, also a work queue (written through `Directory::put_team`).")
            .events(&["team.saved"])
            .lifecycle(READ_ONLY)
            .id_field()
            .field(FieldDescription::new("name", FieldType::text(200)).read_only())
            .field(FieldDescription::new("version", FieldType::Int).read_only())
            .queryable(&TEAM_FIELDS)
    }

    async fn get(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<Team> {
        store.directory().team(ctx, TeamId::from_uuid(id)).await
    }

    async fn list(&self, store: &Store, ctx: &Ctx, q: &Query) -> Result<Page<Team>> {
        if q.include_deleted {
            return Err(Error::validation(
                "include_deleted",
                "teams are never deleted",
            ));
        }
        list_page(store, ctx, q, &TEAM_FIELDS, Cond::True, decode_team, |_| {
            None
        })
        .await
    }

    async fn audit(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<Vec<AuditEntry>> {
        self.get(store, ctx, id).await?;
        store
            .audit_unchecked(ctx, &RecordRef::new(RecordKind::TEAM, id))
            .await
    }
}

/// The kernel's kinds.
pub(crate) fn handlers() -> Vec<Arc<dyn KindHandler>> {
    vec![typed(UserKind), typed(TeamKind)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::check_field_table;

    fn doc_of(src: &str, item: &str) -> String {
        let end = src.find(item).expect("item");
        let before = &src[..end];
        let start = before.rfind("\n\n").unwrap_or(0);
        before[start..]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("///"))
            .map(|l| l.trim_start().to_owned() + "\n")
            .collect()
    }

    #[test]
    fn the_docs_list_every_field() {
        let src = include_str!("kinds.rs");
        check_field_table(&doc_of(src, "pub struct UserKind;"), &UserKind.describe()).unwrap();
        check_field_table(&doc_of(src, "pub struct TeamKind;"), &TeamKind.describe()).unwrap();
    }
}
