//! The per-tenant directory of users and teams.
//!
//! The host keeps it in step with its own authentication (crmkit does no login). Owners
//! and assignees must be active users of the tenant; record-level access reads roles and
//! team memberships from here through [`Directory::ctx_for`].
//!
//! ## Who may do what
//!
//! - **Writes** ([`Directory::put_user`], [`Directory::put_team`], and so also making
//!   someone an Admin or deactivating them) need the Admin role; a Manager, a Rep or a
//!   ReadOnly user gets `PermissionDenied` and nothing is written. No write may leave a
//!   tenant without an active Admin (a Validation error on `role` or `active`).
//! - **Listing** every user ([`Directory::users`]: names, emails, roles, teams, active
//!   flags) needs the Admin or Manager role, the ones who assign work to others; a Rep or
//!   a ReadOnly user gets `PermissionDenied` (a Rep may only give records to themselves,
//!   so has no use for the list, and it would hand every colleague's email and role to
//!   anyone with a login).
//! - **Point reads** by id ([`Directory::user`], [`Directory::team`]) are open to every
//!   actor of the tenant: modules need them while serving any actor (an owner's time zone,
//!   whether an assignee is active), and a caller only has an id from a record it could
//!   see. Another tenant's user or team is `NotFound`, like a nonexistent one.
//! - **Contexts** ([`Directory::ctx_for`]) are given only to active users of the tenant;
//!   anyone else is `PermissionDenied`.
//!
//! ## Trust model
//!
//! [`Ctx::new`] builds whatever actor the host asks for: it trusts the host, which has
//! authenticated the caller. After bootstrap (the first Admin context, built with
//! `Ctx::new`, putting the tenant's users), a host should build every request's context
//! with [`Directory::ctx_for`], so that roles and teams come from the directory and a
//! deactivated user can no longer act. A context is a snapshot: build one per request,
//! not once per session.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::Store;
use crate::ctx::{Actor, Ctx, Role};
use crate::error::{Error, Result, ValidationErrors};
use crate::event::{AuditChange, NewEvent};
use crate::id::{RecordKind, RecordRef, TeamId, TenantId, UserId};
use crate::store::{
    Changeset, CmpOp, ColumnDef, ColumnType, Cond, OrderKey, Select, TableDef, Value, Write,
};
use crate::text::{check_text, parse_email};

/// The users table.
pub const USERS_TABLE: &str = "crm_users";
/// The teams table.
pub const TEAMS_TABLE: &str = "crm_teams";

/// A user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id (the host's id for the user, or a new one).
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Team memberships.
    pub teams: Vec<TeamId>,
    /// Whether the user may own and be assigned work.
    pub active: bool,
    /// IANA time zone name (`Europe/Berlin`).
    pub time_zone: String,
    /// Version for optimistic concurrency.
    pub version: u64,
}

impl User {
    /// The actor this user acts as.
    pub fn actor(&self) -> Actor {
        Actor::new(self.id, self.roles.clone(), self.teams.clone())
    }
}

/// A team (also a work queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// The team's id.
    pub id: TeamId,
    /// Its name.
    pub name: String,
    /// Version for optimistic concurrency.
    pub version: u64,
}

/// Input for creating or replacing a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInput {
    /// The id (the host's).
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Teams; each must exist.
    pub teams: Vec<TeamId>,
    /// Active or not.
    pub active: bool,
    /// IANA time zone.
    pub time_zone: String,
}

impl UserInput {
    /// An active user with one role, no teams, in UTC:
    /// `UserInput::new(id, "Ada", "ada@example.com", Role::Admin).time_zone("Europe/London")`.
    pub fn new(id: UserId, name: impl Into<String>, email: impl Into<String>, role: Role) -> Self {
        UserInput {
            id,
            name: name.into(),
            email: email.into(),
            roles: vec![role],
            teams: vec![],
            active: true,
            time_zone: "UTC".into(),
        }
    }

    /// Adds a role.
    pub fn role(mut self, role: Role) -> Self {
        self.roles.push(role);
        self
    }

    /// Adds a team membership.
    pub fn team(mut self, team: TeamId) -> Self {
        self.teams.push(team);
        self
    }

    /// Sets the time zone (an IANA name, checked when the user is put).
    pub fn time_zone(mut self, tz: impl Into<String>) -> Self {
        self.time_zone = tz.into();
        self
    }

    /// Sets whether the user is active.
    pub fn active(mut self, active: bool) -> Self {
        self.active = active;
        self
    }
}

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            USERS_TABLE,
            [
                ColumnDef::required("id", Uuid),
                ColumnDef::required("name", Text(200)),
                ColumnDef::required("email", Text(254)),
                ColumnDef::required("roles", Text(100)),
                ColumnDef::required("teams", LongText),
                ColumnDef::required("active", Bool),
                ColumnDef::required("time_zone", Text(64)),
                ColumnDef::required("version", Int),
            ],
            ["id"],
        ),
        TableDef::new(
            TEAMS_TABLE,
            [
                ColumnDef::required("id", Uuid),
                ColumnDef::required("name", Text(200)),
                ColumnDef::required("version", Int),
            ],
            ["id"],
        ),
    ]
}

pub(crate) fn decode_user(row: &[Value]) -> Result<User> {
    let bad = || Error::storage("malformed user row");
    let roles = row[3]
        .as_text()
        .ok_or_else(bad)?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(Role::parse)
        .collect::<Result<Vec<_>>>()?;
    Ok(User {
        id: UserId::from_uuid(row[0].as_uuid().ok_or_else(bad)?),
        name: row[1].as_text().ok_or_else(bad)?.to_owned(),
        email: row[2].as_text().ok_or_else(bad)?.to_owned(),
        roles,
        teams: serde_json::from_str(row[4].as_text().ok_or_else(bad)?)
            .map_err(|e| Error::storage_from("user", e))?,
        active: row[5].as_int() == Some(1),
        time_zone: row[6].as_text().ok_or_else(bad)?.to_owned(),
        version: row[7].as_int().ok_or_else(bad)? as u64,
    })
}

/// Whether `u` is an active Admin.
fn is_active_admin(u: &User) -> bool {
    u.active && u.roles.contains(&Role::Admin)
}

/// Validates an IANA time zone name.
pub fn parse_time_zone(field: &str, s: &str) -> Result<Tz> {
    s.parse::<Tz>()
        .map_err(|_| Error::validation(field, format!("{s:?} is not an IANA time zone name")))
}

/// The directory API.
#[derive(Clone)]
pub struct Directory {
    store: Store,
}

impl Directory {
    pub(crate) fn new(store: Store) -> Self {
        Directory { store }
    }

    /// Creates or replaces a user (Admin only: anyone else gets PermissionDenied, so a Rep
    /// cannot make themselves an Admin). Teams must be teams of this tenant (a nonexistent
    /// team or another tenant's is a Validation error on `teams[i]`); the email must be an
    /// address and the time zone an IANA name; at least one role. A change that would leave
    /// the tenant without an active Admin (demoting or deactivating its last active Admin,
    /// the caller included) is a Validation error on `role` and/or `active` ("the tenant's
    /// last active admin"); creating users never is, so bootstrap (the first Admin, put
    /// with a [`Ctx::new`] context) works. Nothing is written on error.
    ///
    /// The last-admin check reads the other users before the commit; two Admins demoting
    /// each other at the same moment are not serialised against each other.
    pub async fn put_user(&self, ctx: &Ctx, input: UserInput) -> Result<User> {
        ctx.actor().require_admin("put user")?;
        let mut errs = ValidationErrors::new();
        errs.check(check_text("name", &input.name, 200, true));
        errs.check(parse_email("email", &input.email));
        errs.check(parse_time_zone("time_zone", &input.time_zone));
        if input.roles.is_empty() {
            errs.push("roles", "needs at least one role");
        }
        for (i, t) in input.teams.iter().enumerate() {
            if self.team(ctx, *t).await.is_err() {
                errs.push(format!("teams[{i}]"), "is not a team of this tenant");
            }
        }
        let existing = self.user(ctx, input.id).await.ok();
        if let Some(old) = existing.as_ref().filter(|u| is_active_admin(u)) {
            let stays_admin = input.roles.contains(&Role::Admin);
            let removes_admin = !stays_admin || !input.active;
            if removes_admin && !self.other_active_admin(ctx, old.id).await? {
                let reason = "would remove the tenant's last active admin";
                if !stays_admin {
                    errs.push("role", reason);
                }
                if !input.active {
                    errs.push("active", reason);
                }
            }
        }
        errs.into_result()?;
        let version = existing.as_ref().map(|u| u.version + 1).unwrap_or(1);
        let user = User {
            id: input.id,
            name: input.name,
            email: input.email.trim().to_owned(),
            roles: input.roles,
            teams: input.teams,
            active: input.active,
            time_zone: input.time_zone,
            version,
        };
        let row = vec![
            Value::Uuid(user.id.as_uuid()),
            Value::Text(user.name.clone()),
            Value::Text(user.email.clone()),
            Value::Text(
                user.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Value::Text(serde_json::to_string(&user.teams).expect("ids serialize")),
            Value::from(user.active),
            Value::Text(user.time_zone.clone()),
            Value::Int(version as i64),
        ];
        let record = RecordRef::new(RecordKind::USER, user.id.as_uuid());
        let mut cs = Changeset::new(ctx);
        match &existing {
            Some(old) => {
                let t = self.store.backend().schema().table(USERS_TABLE)?;
                let set = t
                    .columns
                    .iter()
                    .zip(row)
                    .skip(1)
                    .filter(|(c, _)| c.name != "version")
                    .map(|(c, v)| (c.name, v))
                    .collect();
                cs.writes.push(Write::Update {
                    table: USERS_TABLE,
                    key: vec![Value::Uuid(user.id.as_uuid())],
                    set,
                    expect_version: Some(old.version),
                    record: record.clone(),
                });
            }
            None => cs.writes.push(Write::Insert {
                table: USERS_TABLE,
                row,
            }),
        }
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "*".into(),
            old: existing
                .as_ref()
                .map(|u| serde_json::to_string(u).expect("serializes")),
            new: Some(serde_json::to_string(&user).expect("serializes")),
        });
        cs.events.push(NewEvent::new(
            if existing.is_some() {
                "user.updated"
            } else {
                "user.created"
            },
            record,
            vec![],
            serde_json::to_value(&user).expect("serializes"),
        ));
        self.store.commit(cs).await?;
        Ok(user)
    }

    /// Whether the tenant has an active Admin other than `except`.
    async fn other_active_admin(&self, ctx: &Ctx, except: UserId) -> Result<bool> {
        let s = Select::new(
            USERS_TABLE,
            Cond::Cmp("active".into(), CmpOp::Eq, Value::from(true)),
        );
        let rows = self.store.backend().select(ctx.tenant(), &s).await?;
        for r in &rows {
            let u = decode_user(r)?;
            if u.id != except && is_active_admin(&u) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Creates or renames a team (Admin only: anyone else gets PermissionDenied and nothing
    /// is written).
    pub async fn put_team(&self, ctx: &Ctx, id: TeamId, name: &str) -> Result<Team> {
        ctx.actor().require_admin("put team")?;
        check_text("name", name, 200, true)?;
        let existing = self.team(ctx, id).await.ok();
        let record = RecordRef::new(RecordKind::TEAM, id.as_uuid());
        let mut cs = Changeset::new(ctx);
        let team = Team {
            id,
            name: name.to_owned(),
            version: existing.as_ref().map(|t| t.version + 1).unwrap_or(1),
        };
        match &existing {
            Some(old) => cs.writes.push(Write::Update {
                table: TEAMS_TABLE,
                key: vec![Value::Uuid(id.as_uuid())],
                set: vec![("name", Value::Text(name.to_owned()))],
                expect_version: Some(old.version),
                record: record.clone(),
            }),
            None => cs.writes.push(Write::Insert {
                table: TEAMS_TABLE,
                row: vec![
                    Value::Uuid(id.as_uuid()),
                    Value::Text(name.to_owned()),
                    Value::Int(1),
                ],
            }),
        }
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "name".into(),
            old: existing
                .as_ref()
                .map(|t| serde_json::to_string(&t.name).expect("serializes")),
            new: Some(serde_json::to_string(name).expect("serializes")),
        });
        cs.events.push(NewEvent::new(
            "team.saved",
            record,
            vec!["name".into()],
            serde_json::to_value(&team).expect("serializes"),
        ));
        self.store.commit(cs).await?;
        Ok(team)
    }

    /// A user of the context's tenant, readable by every actor of the tenant (see the
    /// module docs). A nonexistent user and another tenant's are both NotFound.
    pub async fn user(&self, ctx: &Ctx, id: UserId) -> Result<User> {
        self.user_of(ctx.tenant(), id).await
    }

    async fn user_of(&self, tenant: TenantId, id: UserId) -> Result<User> {
        let row = self
            .store
            .backend()
            .get(tenant, USERS_TABLE, &[Value::Uuid(id.as_uuid())])
            .await?;
        row.map(|r| decode_user(&r))
            .transpose()?
            .ok_or_else(|| Error::not_found(RecordKind::USER, id))
    }

    /// A team of the context's tenant, readable by every actor of the tenant. A nonexistent
    /// team and another tenant's are both NotFound.
    pub async fn team(&self, ctx: &Ctx, id: TeamId) -> Result<Team> {
        let row = self
            .store
            .backend()
            .get(ctx.tenant(), TEAMS_TABLE, &[Value::Uuid(id.as_uuid())])
            .await?;
        let bad = || Error::storage("malformed team row");
        match row {
            None => Err(Error::not_found(RecordKind::TEAM, id)),
            Some(r) => Ok(Team {
                id,
                name: r[1].as_text().ok_or_else(bad)?.to_owned(),
                version: r[2].as_int().ok_or_else(bad)? as u64,
            }),
        }
    }

    /// Every user of the tenant, by id. Admin and Manager only (PermissionDenied for a Rep
    /// or a ReadOnly user: see the module docs).
    pub async fn users(&self, ctx: &Ctx) -> Result<Vec<User>> {
        if !ctx.actor().manages() {
            return Err(Error::PermissionDenied(
                "listing users needs the admin or manager role".into(),
            ));
        }
        let mut s = Select::new(USERS_TABLE, Cond::True);
        s.order = vec![OrderKey::asc("id")];
        let rows = self.store.backend().select(ctx.tenant(), &s).await?;
        rows.iter().map(|r| decode_user(r)).collect()
    }

    /// The user `id` if active in the tenant; otherwise a Validation error on `field`.
    pub async fn require_active_user(&self, ctx: &Ctx, field: &str, id: UserId) -> Result<User> {
        match self.user(ctx, id).await {
            Ok(u) if u.active => Ok(u),
            Ok(_) => Err(Error::validation(
                field,
                "is not an active user of this tenant",
            )),
            Err(Error::NotFound { .. }) => {
                Err(Error::validation(field, "is not a user of this tenant"))
            }
            Err(e) => Err(e),
        }
    }

    /// A context for `user` of `tenant`, with the roles and teams the directory holds: how a
    /// host should build every request's context after bootstrap (see the module docs).
    ///
    /// A deactivated user, an unknown one and another tenant's user are all
    /// `PermissionDenied` (not `NotFound`): the call is a refusal to let someone act, not a
    /// read of a record, and one error for all three tells a caller nothing about which
    /// user ids exist.
    pub async fn ctx_for(&self, tenant: TenantId, user: UserId) -> Result<Ctx> {
        match self.user_of(tenant, user).await {
            Ok(u) if u.active => Ctx::new(tenant, u.actor()),
            Ok(_) | Err(Error::NotFound { .. }) => Err(Error::PermissionDenied(
                "the user is not an active user of this tenant".into(),
            )),
            Err(e) => Err(e),
        }
    }
}
