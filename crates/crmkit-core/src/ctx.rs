//! The context every call carries: tenant, actor and clock.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{TeamId, TenantId, UserId};

/// A source of the current time. Inject [`ManualClock`] in tests instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant. crmkit stores microsecond precision.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(at.trunc_subsecs(6)),
        }
    }

    /// Moves the clock to `at` (backwards too).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = at.trunc_subsecs(6);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A role of a user. Roles decide record-level visibility and write rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees and changes everything in the tenant, including the directory and settings.
    Admin,
    /// Sees and changes every record of the tenant.
    Manager,
    /// Sees and changes the records they own or their team owns.
    Rep,
    /// Sees what a Rep would see; changes nothing.
    ReadOnly,
}

impl Role {
    /// The stored name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Rep => "rep",
            Role::ReadOnly => "read_only",
        }
    }

    /// Parses a stored role name.
    pub fn parse(s: &str) -> Result<Role> {
        Ok(match s {
            "admin" => Role::Admin,
            "manager" => Role::Manager,
            "rep" => Role::Rep,
            "read_only" => Role::ReadOnly,
            _ => return Err(Error::validation("roles", format!("unknown role {s:?}"))),
        })
    }
}

/// Who is acting: a user of the tenant with roles and team memberships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user: UserId,
    /// The user's roles.
    pub roles: Vec<Role>,
    /// Teams the user belongs to.
    pub teams: Vec<TeamId>,
}

/// Which records an actor may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every record of the tenant.
    All,
    /// Records owned by the user or by one of the teams.
    Owned {
        /// The user.
        user: UserId,
        /// The user's teams.
        teams: Vec<TeamId>,
    },
}

impl Actor {
    /// An actor with roles and teams.
    pub fn new(user: UserId, roles: impl Into<Vec<Role>>, teams: impl Into<Vec<TeamId>>) -> Self {
        Actor {
            user,
            roles: roles.into(),
            teams: teams.into(),
        }
    }

    /// Whether the actor has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the actor is an Admin or a Manager: they see every record and manage the
    /// tenant's configuration.
    pub fn manages(&self) -> bool {
        self.has(Role::Admin) || self.has(Role::Manager)
    }

    /// Fails with PermissionDenied, naming `action`, unless the actor is an Admin or a
    /// Manager ([`manages`](Self::manages)).
    pub fn require_manage(&self, action: &str) -> Result<()> {
        allowed(self.manages(), action, "requires the admin or manager role")
    }

    /// Record-level visibility: Admin and Manager see all; others see their own and their
    /// teams' records.
    pub fn visibility(&self) -> Visibility {
        if self.manages() {
            Visibility::All
        } else {
            Visibility::Owned {
                user: self.user,
                teams: self.teams.clone(),
            }
        }
    }

    /// Whether the actor may see a record with this owner and owning team.
    pub fn can_see(&self, owner: Option<UserId>, team: Option<TeamId>) -> bool {
        match self.visibility() {
            Visibility::All => true,
            Visibility::Owned { user, teams } => {
                owner == Some(user) || team.is_some_and(|t| teams.contains(&t))
            }
        }
    }

    /// Whether the actor may change records at all (ReadOnly, or no role, may not).
    pub fn can_write(&self) -> bool {
        self.has(Role::Admin) || self.has(Role::Manager) || self.has(Role::Rep)
    }

    /// Fails with PermissionDenied unless the actor may write.
    pub fn require_write(&self, action: &str) -> Result<()> {
        allowed(
            self.can_write(),
            action,
            "the actor's roles do not allow changes",
        )
    }

    /// Fails with PermissionDenied unless the actor is an Admin.
    pub fn require_admin(&self, action: &str) -> Result<()> {
        allowed(self.has(Role::Admin), action, "requires the admin role")
    }
}

/// `Ok` when `ok`, else PermissionDenied naming `action` and why (`{action}: {why}`).
fn allowed(ok: bool, action: &str, why: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!("{action}: {why}")))
    }
}

/// The context of a call: tenant, actor, clock and origin (which channel the call came
/// from, recorded on events). A `Ctx` cannot be built without a tenant.
#[derive(Clone)]
pub struct Ctx {
    tenant: TenantId,
    actor: Actor,
    clock: Arc<dyn Clock>,
    origin: String,
    cause: Option<Arc<crate::event::Cause>>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("tenant", &self.tenant)
            .field("actor", &self.actor)
            .field("origin", &self.origin)
            .field("cause", &self.cause)
            .finish()
    }
}

impl Ctx {
    /// A context on the system clock with origin `api`. The nil UUID is not a tenant.
    ///
    /// **Trust model:** `Ctx::new` builds whatever actor the host asks for (any user id,
    /// any roles and teams), without looking at the directory: it trusts the host, which
    /// authenticated the caller. Use it to bootstrap a tenant (the first Admin putting the
    /// users and teams) and in tests. A request context should come from
    /// [`Directory::ctx_for`](crate::Directory::ctx_for), which takes roles and teams from
    /// the directory and refuses deactivated and unknown users.
    pub fn new(tenant: TenantId, actor: Actor) -> Result<Self> {
        if tenant.as_uuid().is_nil() {
            return Err(Error::validation(
                "tenant",
                "a call needs a tenant; the nil id is none",
            ));
        }
        Ok(Ctx {
            tenant,
            actor,
            clock: Arc::new(SystemClock),
            origin: "api".into(),
            cause: None,
        })
    }

    /// The same context on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same context with another origin (`import`, `automation`, `sync`, ...).
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// The same context making changes for an automation rule's run (see
    /// [`crate::event::Cause`]): every changeset committed with it carries the cause.
    pub fn with_cause(mut self, cause: crate::event::Cause) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The rule run this context makes changes for, if any.
    pub fn cause(&self) -> Option<&crate::event::Cause> {
        self.cause.as_deref()
    }

    /// The same context acting as another actor (trusted like [`Ctx::new`]).
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// The tenant.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The actor.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The current time, truncated to microseconds (what every backend stores).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn no_tenant_no_context() {
        let actor = Actor::new(UserId::new(), [Role::Admin], []);
        assert!(Ctx::new(TenantId::from_uuid(Uuid::nil()), actor.clone()).is_err());
        assert!(Ctx::new(TenantId::new(), actor).is_ok());
    }

    #[test]
    fn visibility_follows_roles() {
        let me = UserId::new();
        let team = TeamId::new();
        let rep = Actor::new(me, [Role::Rep], [team]);
        assert!(rep.can_see(Some(me), None));
        assert!(rep.can_see(Some(UserId::new()), Some(team)));
        assert!(!rep.can_see(Some(UserId::new()), Some(TeamId::new())));
        assert!(Actor::new(me, [Role::Manager], []).can_see(None, None));
        assert!(!Actor::new(me, [Role::ReadOnly], []).can_write());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let t0 = c.now();
        c.advance(Duration::minutes(5));
        assert_eq!(c.now() - t0, Duration::minutes(5));
    }
}
