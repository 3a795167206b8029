//! # crmkit-core
//!
//! The kernel of crmkit, for module and backend authors: typed ids, the call context
//! (tenant, actor, clock), money, the error type, the query AST, domain events and audit,
//! custom fields, the directory of users and teams, the [`Module`] trait, and the storage
//! contract ([`Backend`]) with its in-memory reference implementation.
//!
//! The main design decision: **a command is decided in Rust and written as one
//! [`Changeset`]**. A service reads what it needs, validates, and produces every row it
//! writes (across modules), its audit entries and its events; the backend applies the
//! changeset atomically and numbers the events inside the same transaction. Optimistic
//! versions and unique indexes catch concurrent changes. So the same domain code runs on
//! every backend, a command that spans modules is atomic everywhere, and a third-party
//! module's writes join the same transaction simply by being in the same changeset.
//!
//! crmkit-core knows nothing about SQL.
//!
//! **Trust model.** crmkit does no login: the host authenticates callers. [`Ctx::new`]
//! builds any actor the host asks for, so use it only to bootstrap a tenant (an Admin
//! context that puts the users and teams into the [`Directory`]) and in tests; build each
//! request's context with [`Directory::ctx_for`], which takes the roles and teams from the
//! directory and refuses deactivated users. Only an Admin manages users, teams and custom
//! fields.
//!
//! ```
//! use crmkit_core::{Actor, Ctx, Modules, Role, Store, TenantId, UserId};
//! use crmkit_core::memory::MemoryBackend;
//!
//! # tokio_test_block(async {
//! let modules = Modules::builder().build()?;
//! let store = Store::new(MemoryBackend::new((**modules.schema()).clone()), modules);
//! let admin = Ctx::new(TenantId::new(), Actor::new(UserId::new(), [Role::Admin], []))?;
//! let team = store.directory().put_team(&admin, crmkit_core::TeamId::new(), "Sales").await?;
//! let feed = store.events_since(&admin, 0, 100).await?;
//! assert_eq!(feed[0].kind, "team.saved");
//! assert_eq!(feed[0].record.id, team.id.as_uuid());
//! # Ok::<(), crmkit_core::Error>(()) });
//! # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

pub mod action;
pub mod ctx;
pub mod custom;
pub mod directory;
pub mod error;
pub mod event;
pub mod id;
pub mod input;
pub mod kinds;
pub mod lookup;
pub mod memory;
pub mod module;
pub mod money;
pub mod query;
pub mod record;
pub mod row;
pub mod service;
pub mod store;
pub mod text;

use std::sync::Arc;

pub use ctx::{Actor, Clock, Ctx, ManualClock, Role, SystemClock, Visibility};
pub use custom::{CustomFieldDef, CustomFieldType, CustomSchema, CustomValue, CustomValues};
pub use directory::{Directory, Team, User, UserInput};
pub use error::{Error, FieldError, Result, ValidationErrors};
pub use event::{AuditChange, AuditEntry, Cause, Event, NewEvent};
pub use id::*;
pub use module::{CoreModule, Module, Modules, ModulesBuilder};
pub use money::{Currency, Money, Rounding};
pub use query::{Filter, Page, Query, Sort};
pub use store::{Backend, BackendKind, Changeset, Commit, Fault, Migration};

use store::{Cond, OrderKey, Select, Value, Write};

/// The handle every module's API works through: a backend and the composed modules.
/// Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    modules: Modules,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.kind())
            .field("modules", &self.modules)
            .finish()
    }
}

impl Store {
    /// A store over a backend opened for `modules`' schema.
    pub fn new(backend: impl Backend, modules: Modules) -> Self {
        Store {
            backend: Arc::new(backend),
            modules,
        }
    }

    /// A store over a shared backend.
    pub fn from_arc(backend: Arc<dyn Backend>, modules: Modules) -> Self {
        Store { backend, modules }
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// A grouped aggregate over `table`'s rows in the context's tenant that match `cond`
    /// ([`Backend::aggregate`]; the caller adds the actor's visibility scope to `cond`).
    pub async fn aggregate(
        &self,
        ctx: &Ctx,
        table: &'static str,
        cond: store::Cond,
        group_by: &[&str],
        measures: Vec<store::Measure>,
    ) -> Result<Vec<store::Row>> {
        let agg = store::Aggregate {
            table,
            cond,
            group_by: group_by.iter().map(|c| (*c).to_owned()).collect(),
            measures,
            buckets: None,
        };
        self.backend.aggregate(ctx.tenant(), &agg).await
    }

    /// The composed modules.
    pub fn modules(&self) -> &Modules {
        &self.modules
    }

    /// Fails with a Config error unless module `name` is composed.
    pub fn require_module(&self, name: &str) -> Result<()> {
        if self.modules.contains(name) {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "module {name} is not composed into this store"
            )))
        }
    }

    /// Commits a changeset atomically (see [`Backend::commit`]), after each composed
    /// module's [`Module::before_commit`] has added its derived writes.
    pub async fn commit(&self, mut changeset: Changeset) -> Result<Commit> {
        for m in self.modules.iter() {
            m.before_commit(&mut changeset)?;
        }
        self.backend.commit(changeset).await
    }

    /// The directory of users and teams.
    pub fn directory(&self) -> Directory {
        Directory::new(self.clone())
    }

    /// The generic record API: every composed record kind by name, with JSON values.
    pub fn records(&self) -> record::Records {
        record::Records::new(self.clone())
    }

    /// Custom field definitions.
    pub fn custom_fields(&self) -> CustomFields {
        CustomFields {
            store: self.clone(),
        }
    }

    /// The change feed: up to `limit` (1 to 1000) events after sequence `after`, in order.
    /// Readable by Admin and Manager (a sync service acts as one).
    pub async fn events_since(
        &self,
        ctx: &Ctx,
        after: u64,
        limit: u32,
    ) -> Result<Vec<event::Event>> {
        if !ctx.actor().manages() {
            return Err(Error::PermissionDenied(
                "the change feed needs the admin or manager role".into(),
            ));
        }
        query::check_limit(limit)?;
        let after = i64::try_from(after).map_err(|_| Error::validation("after", "is too large"))?;
        let mut s = Select::new(
            event::EVENTS_TABLE,
            Cond::Cmp("seq".into(), store::CmpOp::Gt, Value::Int(after)),
        );
        s.order = vec![OrderKey::asc("seq")];
        s.limit = Some(limit);
        let rows = self.backend.select(ctx.tenant(), &s).await?;
        rows.iter()
            .map(|r| event::decode_event(ctx.tenant(), r))
            .collect()
    }

    /// The audit trail of a record, oldest first, **without any access check**: a building
    /// block for module authors whose own `audit` has already checked that the actor may
    /// see the record (as [`service::audit_trail`] does). Hosts read audit trails through
    /// the kind's handle (`crm.contacts().audit(..)`) or [`record::Records::audit`], which
    /// refuse a hidden record exactly like a missing one.
    pub async fn audit_unchecked(&self, ctx: &Ctx, record: &RecordRef) -> Result<Vec<AuditEntry>> {
        let mut s = Select::new(
            event::AUDIT_TABLE,
            Cond::eq("record_kind", record.kind.as_str()).and(Cond::eq("record_id", record.id)),
        );
        s.order = vec![OrderKey::asc("id")];
        let rows = self.backend.select(ctx.tenant(), &s).await?;
        rows.iter().map(event::decode_audit).collect()
    }
}

/// Custom field definitions of a tenant.
#[derive(Clone)]
pub struct CustomFields {
    store: Store,
}

impl CustomFields {
    /// Defines a new custom field (Admin only: anyone else gets PermissionDenied and nothing
    /// is written). Its key must be unique for the record kind.
    pub async fn define(&self, ctx: &Ctx, def: CustomFieldDef) -> Result<CustomFieldDef> {
        ctx.actor().require_admin("define custom field")?;
        custom::check_def(&def)?;
        let record = RecordRef::new(RecordKind::CUSTOM_FIELD, def.id.as_uuid());
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: custom::DEFS_TABLE,
            row: custom::def_row(&def)?,
        });
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "*".into(),
            old: None,
            new: Some(
                serde_json::to_string(&def).map_err(|e| Error::storage_from("custom field", e))?,
            ),
        });
        cs.events.push(NewEvent::new(
            "custom_field.defined",
            record,
            vec![],
            serde_json::to_value(&def).map_err(|e| Error::storage_from("custom field", e))?,
        ));
        match self.store.commit(cs).await {
            Err(Error::Duplicate { .. }) => Err(Error::Duplicate {
                kind: RecordKind::CUSTOM_FIELD,
                field: "key".into(),
                existing: self
                    .of_kind(ctx, &def.record_kind)
                    .await?
                    .get(&def.key)
                    .map(|d| RecordRef::new(RecordKind::CUSTOM_FIELD, d.id.as_uuid())),
            }),
            other => other.map(|_| def),
        }
    }

    /// The definitions of a record kind (readable by every actor of the tenant: forms and
    /// validation need them).
    pub async fn of_kind(&self, ctx: &Ctx, kind: &RecordKind) -> Result<CustomSchema> {
        let s = Select::new(custom::DEFS_TABLE, Cond::eq("record_kind", kind.as_str()));
        let rows = self.store.backend.select(ctx.tenant(), &s).await?;
        let defs = rows
            .iter()
            .map(|r| custom::decode_def(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(CustomSchema::new(kind.clone(), defs))
    }
}
