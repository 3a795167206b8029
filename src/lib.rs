//! # crmkit
//!
//! A headless CRM library: the domain logic of a CRM (contacts and organizations,
//! pipelines, activities and tickets today; automation and analytics as they land), with
//! no UI.
//! Storage sits behind a trait with two kinds of backend: in memory, and SQL (SQLite
//! embedded by default; PostgreSQL and MySQL/MariaDB as servers), picked at run time from a
//! URL. Host applications compose modules, including their own.
//!
//! ```
//! use crmkit::{Crm, Ctx, Actor, Role, TenantId, UserId, UserInput, Query, Filter};
//! use crmkit::contacts::NewContact;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let crm = Crm::open("sqlite::memory:").await?;
//! let (tenant, me) = (TenantId::new(), UserId::new());
//! let ctx = Ctx::new(tenant, Actor::new(me, [Role::Admin], []))?;
//! crm.directory().put_user(&ctx, UserInput {
//!     id: me, name: "Ada".into(), email: "ada@example.com".into(), roles: vec![Role::Admin],
//!     teams: vec![], active: true, time_zone: "UTC".into(),
//! }).await?;
//!
//! let contacts = crm.contacts();
//! contacts.create_contact(&ctx, NewContact::named("Grace", "Hopper").email("grace@example.com")).await?;
//! let page = contacts.list_contacts(&ctx, &Query::new().filter(Filter::starts_with("name", "gra"))).await?;
//! assert_eq!(page.items.len(), 1);
//! # Ok::<(), crmkit::Error>(()) })?;
//! # Ok::<(), crmkit::Error>(())
//! ```
//!
//! | feature    | default | what it enables                                  |
//! |------------|---------|--------------------------------------------------|
//! | `sqlite`   | yes     | `sqlite://path` and `sqlite::memory:` (rusqlite, bundled SQLite) |
//! | `postgres` | no      | `postgres://...` (sqlx)                          |
//! | `mysql`    | no      | `mysql://...` / `mariadb://...` (sqlx)           |

pub use crmkit_activities as activities;
pub use crmkit_contacts as contacts;
pub use crmkit_core as core;
pub use crmkit_pipeline as pipeline;
pub use crmkit_sql as sql;
pub use crmkit_tickets as tickets;

pub use crmkit_core::{
    Actor, AuditEntry, Backend, BackendKind, CampaignId, ContactId, Ctx, Currency, CustomFieldDef,
    CustomFieldType, CustomValue, DealId, Error, Event, Filter, LeadId, ManualClock, Module, Money,
    OrganizationId, Page, PipelineId, Query, RecordKind, RecordRef, Result, Role, StageId, Store,
    TeamId, TenantId, User, UserId, UserInput,
};

use crmkit_activities::{Activities, ActivitiesModule};
use crmkit_contacts::{Contacts, ContactsModule};
use crmkit_core::memory::MemoryBackend;
use crmkit_core::{Directory, Modules, ModulesBuilder};
use crmkit_pipeline::PipelineModule;
use crmkit_pipeline::campaign::Campaigns;
use crmkit_pipeline::currency::Currencies;
use crmkit_pipeline::deal::Deals;
use crmkit_pipeline::lead::Leads;
use crmkit_tickets::{Tickets, TicketsModule};

/// A CRM: a store (backend + composed modules) and the modules' APIs.
#[derive(Clone, Debug)]
pub struct Crm {
    store: Store,
}

/// Composes modules and opens a [`Crm`]. The built-in modules are added by
/// [`Crm::builder`]; add your own with [`CrmBuilder::module`].
pub struct CrmBuilder {
    modules: ModulesBuilder,
}

impl CrmBuilder {
    /// Adds a module (a plugin).
    pub fn module(mut self, module: impl Module) -> Self {
        self.modules = self.modules.add(module);
        self
    }

    /// Opens the CRM on a backend chosen by URL: `memory:`, `sqlite://path`,
    /// `sqlite::memory:`, `postgres://...`, `mysql://...`. Pending migrations are applied.
    pub async fn open(self, url: &str) -> Result<Crm> {
        let modules = self.modules.build()?;
        if url == "memory:" {
            return Crm::from_store(Store::new(
                MemoryBackend::new((**modules.schema()).clone()),
                modules,
            ));
        }
        let backend = crmkit_sql::open(url, &modules).await?;
        Crm::from_store(Store::from_arc(backend, modules))
    }

    /// Opens the CRM in memory.
    pub fn in_memory(self) -> Result<Crm> {
        let modules = self.modules.build()?;
        Crm::from_store(Store::new(
            MemoryBackend::new((**modules.schema()).clone()),
            modules,
        ))
    }
}

impl Crm {
    /// A builder with the built-in modules (core, contacts, pipeline, activities,
    /// tickets).
    pub fn builder() -> CrmBuilder {
        CrmBuilder {
            modules: Modules::builder()
                .add(ContactsModule)
                .add(PipelineModule)
                .add(ActivitiesModule)
                .add(TicketsModule),
        }
    }

    /// Opens the built-in modules on a backend chosen by URL (see [`CrmBuilder::open`]).
    pub async fn open(url: &str) -> Result<Crm> {
        Self::builder().open(url).await
    }

    /// The built-in modules in memory.
    pub fn in_memory() -> Result<Crm> {
        Self::builder().in_memory()
    }

    /// A CRM over an existing store; it must compose the built-in modules (a Config error
    /// otherwise).
    pub fn from_store(store: Store) -> Result<Crm> {
        store.require_module("contacts")?;
        store.require_module("pipeline")?;
        store.require_module("activities")?;
        store.require_module("tickets")?;
        Ok(Crm { store })
    }

    /// The store: the handle module APIs (built-in or your own) are made from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The generic record API: every composed record kind (the built-in ones and your
    /// modules') by name, described, with JSON values. See [`crmkit_core::record`].
    pub fn records(&self) -> crmkit_core::record::Records {
        self.store.records()
    }

    /// The directory of users and teams.
    pub fn directory(&self) -> Directory {
        self.store.directory()
    }

    /// Custom field definitions.
    pub fn custom_fields(&self) -> crmkit_core::CustomFields {
        self.store.custom_fields()
    }

    /// Contacts and organizations.
    pub fn contacts(&self) -> Contacts {
        Contacts::from_checked(&self.store)
    }

    /// Tasks, calls, meetings, notes, logged emails, reminders, follow-up, timeline;
    /// activities may relate to tickets too (see [`Tickets::activities`]).
    pub fn activities(&self) -> Activities {
        self.tickets()
            .activities()
            .expect("Crm composes the activities module")
    }

    /// Tickets: numbers, statuses, comments, escalation, satisfaction, and the
    /// call-centre path ([`Tickets::record_inbound_call`]).
    pub fn tickets(&self) -> Tickets {
        Tickets::new(&self.store).expect("Crm composes the tickets module")
    }

    /// Leads and their conversion.
    pub fn leads(&self) -> Leads {
        Leads::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// Pipelines, stages and deals.
    pub fn deals(&self) -> Deals {
        Deals::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// Campaigns, members and ROI inputs.
    pub fn campaigns(&self) -> Campaigns {
        Campaigns::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// The base currency and exchange rates.
    pub fn currencies(&self) -> Currencies {
        Currencies::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// The change feed: events after `cursor` (see [`Store::events_since`]).
    pub async fn events_since(&self, ctx: &Ctx, cursor: u64, limit: u32) -> Result<Vec<Event>> {
        self.store.events_since(ctx, cursor, limit).await
    }
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
