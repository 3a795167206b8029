//! Conformance checks of the directory (users, teams, request contexts) and of custom
//! field definitions on any backend: who may manage them, who may read them, and that no
//! work goes to a deactivated user.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a store composed with core,
//! contacts, pipeline, activities and tickets (see [`modules`]), working through the public
//! API only. Each makes its own fresh random tenant(s) with [`crate::contacts::setup`], so
//! checks can share one database. [`checks`] lists them by name for a harness to iterate.
//!
//! The rules checked (see `crmkit_core::directory`):
//! - only an Admin puts users and teams and defines custom fields: a Manager, a Rep or a
//!   ReadOnly user gets PermissionDenied, and nothing is written (no row, no event);
//! - [`Directory::ctx_for`] gives a context only to an active user of the tenant: a
//!   deactivated, unknown or other tenant's user is PermissionDenied;
//! - owners and assignees must be active users of the tenant (Validation on `owner` /
//!   `assignee`), on create and on update, in every module;
//! - a user's teams must be teams of the tenant (Validation on `teams[i]`);
//! - listing users is for Admin and Manager; a user or team read by id is open to every
//!   actor of the tenant and never shows another tenant's.

use crmkit_activities::{Activities, ActivityDetails, ActivityPatch, NewActivity, Note};
use crmkit_contacts::{ContactPatch, NewContact};
use crmkit_core::{
    CustomFieldDef, CustomFieldId, CustomFieldType, Directory, Error, Modules, Query, RecordKind,
    Role, Store, TeamId, TenantId, User, UserId, UserInput,
};
use crmkit_tickets::{NewTicket, TicketPatch, Tickets};

use crate::check::{At, expect_denied, expect_not_found, expect_validation};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::contacts::{Fixture, setup};

/// The modules the checks need: core, contacts, pipeline, activities and tickets.
pub fn modules() -> crmkit_core::Result<Modules> {
    crate::tickets::modules()
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The input that puts `u` back as it is.
fn input_of(u: &User) -> UserInput {
    UserInput {
        id: u.id,
        name: u.name.clone(),
        email: u.email.clone(),
        roles: u.roles.clone(),
        teams: u.teams.clone(),
        active: u.active,
        time_zone: u.time_zone.clone(),
    }
}

/// A new user's input (Rep, active, no teams).
fn new_user(id: UserId, name: &str) -> UserInput {
    UserInput {
        id,
        name: name.into(),
        email: format!("{}@crmkit.test", name.to_lowercase().replace(' ', ".")),
        roles: vec![Role::Rep],
        teams: vec![],
        active: true,
        time_zone: "Europe/Berlin".into(),
    }
}

/// What the directory and the change feed hold, to show that a refused call wrote nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    users: Vec<User>,
    teams: Vec<(TeamId, String, u64)>,
    events: usize,
}

async fn snapshot(f: &Fixture) -> CheckResult<Snapshot> {
    let dir = f.store.directory();
    let mut teams = vec![];
    for t in [f.team_x, f.team_y] {
        let team = dir.team(&f.admin, t).await.at("read team")?;
        teams.push((team.id, team.name, team.version));
    }
    Ok(Snapshot {
        users: dir.users(&f.admin).await.at("list users")?,
        teams,
        events: f
            .store
            .events_since(&f.admin, 0, 1000)
            .await
            .at("change feed")?
            .len(),
    })
}

/// Deactivates user `id` (as the fixture's admin).
async fn set_active(f: &Fixture, id: UserId, active: bool) -> CheckResult<User> {
    let dir = f.store.directory();
    let mut input = input_of(&dir.user(&f.admin, id).await.at("read user")?);
    input.active = active;
    dir.put_user(&f.admin, input).await.at("(de)activate user")
}

/// The fixture's non-admin actors: every one of them is refused directory writes.
fn non_admins(f: &Fixture) -> Vec<(&'static str, &crmkit_core::Ctx)> {
    vec![
        ("manager", &f.manager),
        ("rep", &f.rep),
        ("readonly", &f.readonly),
    ]
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// [`Directory::ctx_for`] gives a context only to an active user of the tenant, with the
/// roles and teams the directory holds now: a deactivated user, an unknown id and another
/// tenant's user are all PermissionDenied (one error, so no existence oracle); a
/// reactivated user gets contexts again.
pub async fn ctx_for_active_users_only(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = setup(store).await?;
    let dir = store.directory();
    for (name, ctx) in f.actors() {
        let user = dir.user(&f.admin, ctx.actor().user).await.at("read user")?;
        let got = dir.ctx_for(f.tenant, user.id).await.at("ctx_for")?;
        ensure_eq!(got.tenant(), f.tenant, "{name}: the context's tenant");
        ensure_eq!(
            got.actor(),
            &user.actor(),
            "{name}: roles and teams from the directory"
        );
    }

    // A role or team change shows in the next context.
    let rep = f.rep.actor().user;
    let mut input = input_of(&dir.user(&f.admin, rep).await.at("read rep")?);
    input.roles = vec![Role::Manager];
    input.teams = vec![f.team_y];
    dir.put_user(&f.admin, input).await.at("promote rep")?;
    let got = dir
        .ctx_for(f.tenant, rep)
        .await
        .at("ctx_for promoted rep")?;
    ensure_eq!(
        got.actor().roles,
        vec![Role::Manager],
        "roles after the change"
    );
    ensure_eq!(got.actor().teams, vec![f.team_y], "teams after the change");

    // Deactivated: refused.
    let rep2 = f.rep2.actor().user;
    set_active(&f, rep2, false).await?;
    expect_denied(
        dir.ctx_for(f.tenant, rep2).await,
        "ctx_for a deactivated user",
    )?;
    // Unknown, and another tenant's user (in this tenant, and a nil tenant): refused alike.
    expect_denied(
        dir.ctx_for(f.tenant, UserId::new()).await,
        "ctx_for an unknown user",
    )?;
    expect_denied(
        dir.ctx_for(f.tenant, other.rep.actor().user).await,
        "ctx_for another tenant's user",
    )?;
    expect_denied(
        dir.ctx_for(TenantId::from_uuid(uuid::Uuid::nil()), rep2)
            .await,
        "ctx_for with the nil tenant",
    )?;
    // The other tenant's user still gets a context in their own tenant.
    dir.ctx_for(other.tenant, other.rep.actor().user)
        .await
        .at("ctx_for in the user's own tenant")?;

    // Reactivated: contexts again.
    set_active(&f, rep2, true).await?;
    let got = dir
        .ctx_for(f.tenant, rep2)
        .await
        .at("ctx_for reactivated")?;
    ensure_eq!(got.actor().user, rep2, "the reactivated user's context");
    Ok(())
}

/// Only an Admin puts users: a Manager, a Rep and a ReadOnly user are refused when they
/// make themselves Admin, deactivate the admin, change a colleague or create a user, and
/// nothing is written (users, teams and the change feed are as before).
pub async fn only_admin_manages_users(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let dir = store.directory();
    let before = snapshot(&f).await?;
    let admin_user = dir
        .user(&f.admin, f.admin.actor().user)
        .await
        .at("read admin")?;
    for (name, ctx) in non_admins(&f) {
        let me = dir.user(ctx, ctx.actor().user).await.at("read self")?;
        let mut promote = input_of(&me);
        promote.roles = vec![Role::Admin];
        expect_denied(
            dir.put_user(ctx, promote).await,
            &format!("{name} makes themselves admin"),
        )?;
        let mut join = input_of(&me);
        join.teams = vec![f.team_x, f.team_y];
        expect_denied(
            dir.put_user(ctx, join).await,
            &format!("{name} joins every team"),
        )?;
        let mut depose = input_of(&admin_user);
        depose.active = false;
        expect_denied(
            dir.put_user(ctx, depose).await,
            &format!("{name} deactivates the admin"),
        )?;
        let fresh = UserId::new();
        let mut sock = new_user(fresh, "Sock Puppet");
        sock.roles = vec![Role::Admin];
        expect_denied(
            dir.put_user(ctx, sock).await,
            &format!("{name} creates an admin"),
        )?;
        match dir.user(&f.admin, fresh).await {
            Err(Error::NotFound { .. }) => {}
            other => return Err(Failure::new(format!("{name}'s refused user: {other:?}"))),
        }
        // Still what the directory says.
        let again = dir
            .ctx_for(f.tenant, me.id)
            .await
            .at("ctx_for after refusal")?;
        ensure_eq!(
            again.actor(),
            &me.actor(),
            "{name}'s roles after the refusals"
        );
    }
    ensure_eq!(
        snapshot(&f).await?,
        before,
        "the directory and the change feed after refused user writes"
    );
    // The admin may.
    let mut input = input_of(&dir.user(&f.admin, f.rep.actor().user).await.at("rep")?);
    input.name = "Rep Renamed".into();
    let put = dir
        .put_user(&f.admin, input)
        .await
        .at("admin renames rep")?;
    ensure_eq!(put.name, "Rep Renamed", "the admin's change");
    Ok(())
}

/// Only an Admin puts teams: a Manager, a Rep and a ReadOnly user are refused when they
/// create a team or rename one, and nothing is written.
pub async fn only_admin_manages_teams(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let dir = store.directory();
    let before = snapshot(&f).await?;
    for (name, ctx) in non_admins(&f) {
        let fresh = TeamId::new();
        expect_denied(
            dir.put_team(ctx, fresh, "Shadow team").await,
            &format!("{name} creates a team"),
        )?;
        match dir.team(&f.admin, fresh).await {
            Err(Error::NotFound { .. }) => {}
            other => return Err(Failure::new(format!("{name}'s refused team: {other:?}"))),
        }
        expect_denied(
            dir.put_team(ctx, f.team_x, "Renamed by a non-admin").await,
            &format!("{name} renames team X"),
        )?;
    }
    ensure_eq!(
        snapshot(&f).await?,
        before,
        "the directory and the change feed after refused team writes"
    );
    let t = dir
        .put_team(&f.admin, f.team_x, "Team X2")
        .await
        .at("admin renames team X")?;
    ensure_eq!(
        (t.name.as_str(), t.version),
        ("Team X2", 2),
        "the admin's rename"
    );
    Ok(())
}

/// Only an Admin defines custom fields: a Manager, a Rep and a ReadOnly user are refused,
/// and the kind's definitions and the change feed are as before.
pub async fn only_admin_defines_custom_fields(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let fields = store.custom_fields();
    let keys = |s: crmkit_core::CustomSchema| {
        let mut k: Vec<String> = s.defs().map(|d| d.key.clone()).collect();
        k.sort();
        k
    };
    let before = keys(
        fields
            .of_kind(&f.admin, &RecordKind::CONTACT)
            .await
            .at("definitions")?,
    );
    let events = snapshot(&f).await?.events;
    let def = |key: &str| CustomFieldDef {
        id: CustomFieldId::new(),
        record_kind: RecordKind::CONTACT,
        key: key.into(),
        label: key.into(),
        ty: CustomFieldType::Text { max_len: 20 },
        required: false,
    };
    for (name, ctx) in non_admins(&f) {
        expect_denied(
            fields.define(ctx, def("shadow")).await,
            &format!("{name} defines a custom field"),
        )?;
        // Readable by every actor (forms need it), unchanged.
        ensure_eq!(
            keys(
                fields
                    .of_kind(ctx, &RecordKind::CONTACT)
                    .await
                    .at("definitions")?
            ),
            before,
            "{name}: contact custom fields after the refusal"
        );
    }
    ensure_eq!(snapshot(&f).await?.events, events, "events after refusals");
    fields
        .define(&f.admin, def("shadow"))
        .await
        .at("the admin defines it")?;
    Ok(())
}

/// A user's teams must be teams of the tenant: a nonexistent team and another tenant's
/// team are Validation errors naming `teams[i]`, on create and on replace, and nothing is
/// written. Bad names, emails, time zones and empty roles are Validation errors naming the
/// field.
pub async fn user_teams_of_this_tenant(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = setup(store).await?;
    let dir = store.directory();
    let before = snapshot(&f).await?;
    let fresh = UserId::new();
    for (teams, field, what) in [
        (vec![TeamId::new()], "teams[0]", "a nonexistent team"),
        (vec![other.team_x], "teams[0]", "another tenant's team"),
        (
            vec![f.team_x, other.team_y],
            "teams[1]",
            "a second team of another tenant",
        ),
    ] {
        let mut input = new_user(fresh, "New User");
        input.teams = teams.clone();
        expect_validation(
            dir.put_user(&f.admin, input).await,
            field,
            &format!("a new user in {what}"),
        )?;
        let mut input = input_of(&dir.user(&f.admin, f.rep.actor().user).await.at("rep")?);
        input.teams = teams;
        expect_validation(
            dir.put_user(&f.admin, input).await,
            field,
            &format!("the rep moved into {what}"),
        )?;
    }
    for (field, change) in [
        (
            "name",
            (|u: &mut UserInput| u.name = " ".into()) as fn(&mut UserInput),
        ),
        ("email", |u| u.email = "not an email".into()),
        ("time_zone", |u| u.time_zone = "Mars/Olympus'; --".into()),
        ("roles", |u| u.roles.clear()),
    ] {
        let mut input = new_user(fresh, "New User");
        change(&mut input);
        expect_validation(
            dir.put_user(&f.admin, input).await,
            field,
            &format!("a new user with a bad {field}"),
        )?;
    }
    ensure_eq!(
        snapshot(&f).await?,
        before,
        "the directory and the change feed after refused user writes"
    );
    match dir.user(&f.admin, fresh).await {
        Err(Error::NotFound { .. }) => {}
        other => return Err(Failure::new(format!("the refused new user: {other:?}"))),
    }
    let mut input = new_user(fresh, "New User");
    input.teams = vec![f.team_x, f.team_y];
    dir.put_user(&f.admin, input)
        .await
        .at("a new user in both teams")?;
    Ok(())
}

/// No work goes to a deactivated user (or an unknown one): contacts (create and update),
/// activities (create and update) and tickets (create and update) refuse such an owner or
/// assignee with a Validation error naming `owner` / `assignee`, and the record is
/// unchanged. A stale context of the deactivated user cannot create records it would own.
/// Reactivated, the user may be given work again.
pub async fn no_work_for_inactive_users(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let activities = Activities::new(store).at("Activities::new")?;
    let tickets = Tickets::new(store).at("Tickets::new")?;
    let gone = f.rep2.actor().user;
    let manager = f.manager.actor().user;
    let note = |author: UserId| {
        ActivityDetails::Note(Note {
            body: "call back".into(),
            pinned: false,
            author,
        })
    };

    // Records made while everyone is active.
    let contact = f.person(&f.manager, "Ada", "Lovelace").await?;
    let activity = activities
        .create(&f.manager, NewActivity::new("Follow up", note(manager)))
        .await
        .at("create activity")?;
    let ticket = tickets
        .create(
            &f.manager,
            NewTicket::new("Broken", contact.id).assignee(manager),
        )
        .await
        .at("create ticket")?;

    set_active(&f, gone, false).await?;
    let contacts_before = f
        .contacts
        .list(&f.admin, &Query::new().limit(100))
        .await
        .at("list contacts")?
        .items;

    // Contacts.
    for (what, owner) in [("deactivated", gone), ("unknown", UserId::new())] {
        for (who, ctx) in [("admin", &f.admin), ("manager", &f.manager)] {
            let mut input = NewContact::named("Owned", "Elsewhere");
            input.owner = Some(owner);
            expect_validation(
                f.contacts.create(ctx, input).await,
                "owner",
                &format!("{who} creates a contact owned by a {what} user"),
            )?;
            expect_validation(
                f.contacts
                    .update(
                        ctx,
                        contact.id,
                        contact.version,
                        ContactPatch {
                            owner: Some(owner),
                            ..Default::default()
                        },
                    )
                    .await,
                "owner",
                &format!("{who} gives a contact to a {what} user"),
            )?;
        }
    }
    // A context the deactivated user was given earlier: records it makes are its own.
    expect_validation(
        f.contacts
            .create(&f.rep2, NewContact::named("Stale", "Context"))
            .await,
        "owner",
        "a deactivated user's stale context creates a contact",
    )?;
    ensure_eq!(
        f.contacts
            .list(&f.admin, &Query::new().limit(100))
            .await
            .at("list contacts")?
            .items,
        contacts_before,
        "contacts after refused owners"
    );

    // Activities.
    expect_validation(
        activities
            .create(
                &f.manager,
                NewActivity::new("For nobody", note(manager)).owner(gone),
            )
            .await,
        "owner",
        "an activity owned by a deactivated user",
    )?;
    expect_validation(
        activities
            .update(
                &f.manager,
                activity.id,
                activity.version,
                ActivityPatch::default().owner(gone),
            )
            .await,
        "owner",
        "an activity given to a deactivated user",
    )?;
    ensure_eq!(
        activities.get(&f.admin, activity.id).await.at("activity")?,
        activity,
        "the activity after the refused owner"
    );

    // Tickets.
    expect_validation(
        tickets
            .create(
                &f.manager,
                NewTicket::new("For nobody", contact.id).assignee(gone),
            )
            .await,
        "assignee",
        "a ticket assigned to a deactivated user",
    )?;
    expect_validation(
        tickets
            .update(
                &f.manager,
                ticket.id,
                ticket.version,
                TicketPatch {
                    assignee: Some(Some(gone)),
                    ..Default::default()
                },
            )
            .await,
        "assignee",
        "a ticket reassigned to a deactivated user",
    )?;
    ensure_eq!(
        tickets.get(&f.admin, ticket.id).await.at("ticket")?,
        ticket,
        "the ticket after the refused assignee"
    );

    // Reactivated: work may go to them again.
    set_active(&f, gone, true).await?;
    let mut input = NewContact::named("Owned", "Again");
    input.owner = Some(gone);
    f.contacts
        .create(&f.manager, input)
        .await
        .at("a contact owned by the reactivated user")?;
    tickets
        .update(
            &f.manager,
            ticket.id,
            ticket.version,
            TicketPatch {
                assignee: Some(Some(gone)),
                ..Default::default()
            },
        )
        .await
        .at("a ticket reassigned to the reactivated user")?;
    Ok(())
}

/// Who reads the directory: listing users is for Admin and Manager (a Rep and a ReadOnly
/// user get PermissionDenied); a user or a team read by id is open to every actor of the
/// tenant; neither ever shows another tenant's users or teams (NotFound, as for a
/// nonexistent id). Deactivated users stay listed (an admin reactivates them from there).
pub async fn directory_reads(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = setup(store).await?;
    let dir: Directory = store.directory();
    let mut ids: Vec<UserId> = f.actors().iter().map(|(_, c)| c.actor().user).collect();
    ids.sort();
    set_active(&f, f.rep2.actor().user, false).await?;
    for (name, ctx) in [("admin", &f.admin), ("manager", &f.manager)] {
        let listed: Vec<UserId> = dir
            .users(ctx)
            .await
            .at("list users")?
            .iter()
            .map(|u| u.id)
            .collect();
        ensure_eq!(
            listed,
            ids,
            "{name} lists exactly this tenant's users, by id"
        );
    }
    for (name, ctx) in [("rep", &f.rep), ("readonly", &f.readonly)] {
        expect_denied(dir.users(ctx).await, &format!("{name} lists users"))?;
    }
    for (name, ctx) in f.actors() {
        let admin = dir
            .user(ctx, f.admin.actor().user)
            .await
            .at("read a colleague")?;
        ensure_eq!(
            admin.id,
            f.admin.actor().user,
            "{name} reads the admin by id"
        );
        dir.team(ctx, f.team_y).await.at("read a team")?;
        match dir.user(ctx, other.admin.actor().user).await {
            Err(Error::NotFound { kind, .. }) if kind == RecordKind::USER => {}
            r => {
                return Err(Failure::new(format!(
                    "{name} reads another tenant's user: {r:?}"
                )));
            }
        }
        match dir.team(ctx, other.team_x).await {
            Err(Error::NotFound { kind, .. }) if kind == RecordKind::TEAM => {}
            r => {
                return Err(Failure::new(format!(
                    "{name} reads another tenant's team: {r:?}"
                )));
            }
        }
        match dir.user(ctx, UserId::new()).await {
            Err(Error::NotFound { kind, .. }) if kind == RecordKind::USER => {}
            r => return Err(Failure::new(format!("{name} reads an unknown user: {r:?}"))),
        }
        // The generic record API follows the same rules as the directory: the user list
        // and a user's audit trail for Admin and Manager, one user by id for everyone,
        // never another tenant's.
        let records = store.records();
        let manages = ctx.actor().has(Role::Admin) || ctx.actor().has(Role::Manager);
        let listed = records
            .list(ctx, "user", &crmkit_core::Query::new().limit(1000))
            .await;
        let audit = records
            .audit(ctx, "user", f.admin.actor().user.as_uuid())
            .await;
        if manages {
            let page = listed.at("records list users")?;
            ensure!(
                page.items.len() >= 6,
                "{name} lists {} users through the generic API",
                page.items.len()
            );
            audit.at("records user audit")?;
        } else {
            ensure!(
                matches!(listed, Err(Error::PermissionDenied(_))),
                "{name} lists users through the generic API: {listed:?}"
            );
            ensure!(
                matches!(audit, Err(Error::PermissionDenied(_))),
                "{name} reads a user's audit trail through the generic API: {audit:?}"
            );
        }
        records
            .get(ctx, "user", f.admin.actor().user.as_uuid())
            .await
            .at("records get user")?;
        expect_not_found(
            records
                .get(ctx, "user", other.admin.actor().user.as_uuid())
                .await,
            &format!("{name} reads another tenant's user through the generic API"),
        )?;
    }
    Ok(())
}

/// No write leaves a tenant without an active Admin: the last active Admin demoting or
/// deactivating themself, or another Admin doing it to them, is a Validation error naming
/// `role` or `active` ("the tenant's last active admin") and nothing is written; with a
/// second active Admin, either may be demoted; a fresh tenant's bootstrap (a `Ctx::new`
/// Admin putting the first Admin) still works.
pub async fn last_active_admin_stays(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let dir = store.directory();
    let admin_id = f.admin.actor().user;
    let me = dir.user(&f.admin, admin_id).await.at("read admin")?;
    let expect_last = |r: crmkit_core::Result<User>, field: &str, what: &str| -> CheckResult {
        expect_validation(r.map(|_| ()), field, what)?;
        Ok(())
    };
    let before = snapshot(&f).await?;
    let mut demote = input_of(&me);
    demote.roles = vec![Role::Manager];
    let r = dir.put_user(&f.admin, demote.clone()).await;
    let reasons = crate::check::validation_reasons(&r).unwrap_or_default();
    ensure!(
        reasons
            .iter()
            .any(|(f, why)| f == "role" && why.contains("the tenant's last active admin")),
        "the last admin demoting themself: {r:?}"
    );
    let mut deactivate = input_of(&me);
    deactivate.active = false;
    expect_last(
        dir.put_user(&f.admin, deactivate.clone()).await,
        "active",
        "the last admin deactivating themself",
    )?;
    let mut both = input_of(&me);
    both.active = false;
    both.roles = vec![Role::Rep];
    expect_last(
        dir.put_user(&f.admin, both.clone()).await,
        "role",
        "the last admin demoted and deactivated (role)",
    )?;
    expect_last(
        dir.put_user(&f.admin, both).await,
        "active",
        "the last admin demoted and deactivated (active)",
    )?;
    ensure_eq!(
        snapshot(&f).await?,
        before,
        "the directory and the change feed after refused last-admin changes"
    );
    // Renaming the last admin is fine.
    let mut rename = input_of(&me);
    rename.name = "Admin Renamed".into();
    let me = dir
        .put_user(&f.admin, rename)
        .await
        .at("rename last admin")?;

    // A second admin (promoted manager): now either may go, but not both.
    let manager_id = f.manager.actor().user;
    let mut promote = input_of(&dir.user(&f.admin, manager_id).await.at("read manager")?);
    promote.roles = vec![Role::Admin];
    let second = dir
        .put_user(&f.admin, promote)
        .await
        .at("promote manager")?;
    let second_ctx = dir
        .ctx_for(f.tenant, second.id)
        .await
        .at("second admin ctx")?;
    let mut demote_me = input_of(&me);
    demote_me.roles = vec![Role::Manager];
    dir.put_user(&second_ctx, demote_me)
        .await
        .at("demote one of two admins")?;
    // The remaining admin is the last one again, also when an inactive admin exists.
    let mut deactivate_second = input_of(&second);
    deactivate_second.active = false;
    expect_last(
        dir.put_user(&second_ctx, deactivate_second).await,
        "active",
        "deactivating the remaining admin",
    )?;
    // An inactive admin does not count: the first one, reactivated as admin then
    // deactivated, leaves `second` the only active one.
    let me = dir.user(&second_ctx, me.id).await.at("read first admin")?;
    let mut back = input_of(&me);
    back.roles = vec![Role::Admin];
    back.active = false;
    dir.put_user(&second_ctx, back)
        .await
        .at("make the first an inactive admin")?;
    let mut demote_second = input_of(&second);
    demote_second.roles = vec![Role::Rep];
    expect_last(
        dir.put_user(&second_ctx, demote_second).await,
        "role",
        "demoting the only active admin beside an inactive one",
    )?;

    // Bootstrap of a fresh tenant: the first admin, then a second, still work.
    let tenant = TenantId::new();
    let boot_id = UserId::new();
    let boot = crmkit_core::Ctx::new(tenant, crmkit_core::Actor::new(boot_id, [Role::Admin], []))
        .at("bootstrap ctx")?;
    let mut first = new_user(boot_id, "Boot Admin");
    first.roles = vec![Role::Admin];
    dir.put_user(&boot, first)
        .await
        .at("bootstrap the first admin")?;
    dir.ctx_for(tenant, boot_id)
        .await
        .at("ctx_for the bootstrap admin")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name.
    names: directory_check_names,
    checks: [
        ctx_for_active_users_only,
        only_admin_manages_users,
        only_admin_manages_teams,
        only_admin_defines_custom_fields,
        user_teams_of_this_tenant,
        no_work_for_inactive_users,
        directory_reads,
        last_active_admin_stays,
    ],
}
