//! # crmkit
//!
//! A headless CRM library: the domain logic of a CRM (contacts and organizations,
//! pipelines, activities, tickets, automation and sales analytics), with
//! no UI.
//! Storage sits behind a trait with two kinds of backend: in memory, and SQL (SQLite
//! embedded by default; PostgreSQL and MySQL/MariaDB as servers), picked at run time from a
//! URL. Host applications compose modules, including their own.
//!
#![cfg_attr(
    feature = "contacts",
    doc = r#"
```
use crmkit::{Crm, Ctx, Actor, Role, TenantId, UserId, UserInput, Query, Filter};
use crmkit::contacts::NewContact;

# tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
let crm = Crm::open("memory:").await?; // or "sqlite://crm.db", "postgres://...", "mysql://..."
let (tenant, me) = (TenantId::new(), UserId::new());
let ctx = Ctx::new(tenant, Actor::new(me, [Role::Admin], []))?;
crm.directory().put_user(&ctx, UserInput::new(me, "Ada", "ada@example.com", Role::Admin)).await?;

let contacts = crm.contacts();
contacts.create(&ctx, NewContact::named("Grace", "Hopper").email("grace@example.com")).await?;
let page = contacts.list(&ctx, &Query::new().filter(Filter::starts_with("name", "gra"))).await?;
assert_eq!(page.items.len(), 1);
# Ok::<(), crmkit::Error>(()) })?;
# Ok::<(), crmkit::Error>(())
```
"#
)]
#![cfg_attr(
    not(feature = "contacts"),
    doc = r#"
```
use crmkit::{Crm, Ctx, Actor, Role, TeamId, TenantId, UserId};

# tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
let crm = Crm::in_memory()?; // only the kernel and your own modules without the module features
let admin = Ctx::new(TenantId::new(), Actor::new(UserId::new(), [Role::Admin], []))?;
let team = crm.directory().put_team(&admin, TeamId::new(), "Sales").await?;
assert_eq!(crm.events_since(&admin, 0, 10).await?[0].record.id, team.id.as_uuid());
# Ok::<(), crmkit::Error>(()) })?;
# Ok::<(), crmkit::Error>(())
```
"#
)]
//!
//! ## What is where
//!
//! - **The root** holds [`Crm`] (open a backend, reach the module APIs) and what a host
//!   names in almost every call: the call context ([`Ctx`], [`Actor`], [`Role`],
//!   [`Visibility`], [`Clock`], [`SystemClock`], [`ManualClock`]), the id of every record
//!   kind ([`TenantId`], [`UserId`], [`TeamId`], [`ContactId`], [`OrganizationId`],
//!   [`LeadId`], [`DealId`], [`PipelineId`], [`StageId`], [`CampaignId`], [`ActivityId`],
//!   [`TicketId`], [`CustomFieldId`], [`AuditId`], with [`RecordKind`] and [`RecordRef`]),
//!   errors ([`Error`], [`Result`], [`ValidationErrors`], [`FieldError`]), queries
//!   ([`Query`], [`Filter`], [`Sort`], [`Page`]), money ([`Money`], [`Currency`],
//!   [`Rounding`]), the directory ([`Directory`], [`User`], [`UserInput`],
//!   [`Team`]), custom fields ([`CustomFields`], [`CustomFieldDef`], [`CustomFieldType`],
//!   [`CustomValue`], [`CustomValues`], [`CustomSchema`]), the change feed and audit
//!   ([`Event`], [`AuditEntry`], [`Commit`]), and the extension points ([`Module`],
//!   [`Store`], [`Backend`], [`BackendKind`]).
//! - **Time, decimals, ids and JSON** in the API are types of the `chrono`, `chrono_tz`,
//!   `rust_decimal`, `uuid` and `serde_json` crates. These crates are re-exported (see
//!   *Re-exports* below), so a host uses exactly the versions crmkit was built with
//!   without depending on them itself (`crmkit::chrono::TimeZone`,
//!   `crmkit::uuid::Uuid::parse_str`, ...), and the types that appear in signatures are at
//!   the root too: `DateTime`, `Utc`, `NaiveDate`, `NaiveTime`, `Weekday`, `TimeDelta`,
//!   `Tz`, `Decimal` (amounts of [`Money`]) and `Uuid` (what every id wraps).
//! - **One module per built-in CRM module**, each the whole crate re-exported (its models,
//!   inputs and API handle), present when its cargo feature is on:
//!
//! | module | what | API handle | feature |
//! |--------|------|------------|---------|
#![cfg_attr(
    feature = "contacts",
    doc = "| [`contacts`] | contacts, organizations, imports | [`Crm::contacts`] | `contacts` |"
)]
#![cfg_attr(
    feature = "pipeline",
    doc = "| [`pipeline`] | leads and conversion, pipelines, deals, campaigns, exchange rates | [`Crm::leads`], [`Crm::deals`], [`Crm::campaigns`], [`Crm::currencies`] | `pipeline` |"
)]
#![cfg_attr(
    feature = "activities",
    doc = "| [`activities`] | tasks, calls, meetings, notes, logged emails, reminders, follow-up, timelines, iCalendar | [`Crm::activities`] | `activities` |"
)]
#![cfg_attr(
    feature = "tickets",
    doc = "| [`tickets`] | tickets, business calendars, SLA policies, the call-centre path, analytics | [`Crm::tickets`] | `tickets` |"
)]
#![cfg_attr(
    feature = "automation",
    doc = "| [`automation`] | automation rules as versioned JSON, validated on save (with every composed module's custom action kinds); dry run on a stored record; the engine that runs them on the change feed, exactly once, with the run log, failed-run retries and the notification/webhook outbox; sequences of steps and waits that rules enrol records in; lead scoring | [`Crm::automation`], [`Crm::automation_sequences`], [`Crm::lead_scoring`], [`Crm::automation_engine`] | `automation` |"
)]
#![cfg_attr(
    feature = "analytics",
    doc = "| [`analytics`] | sales reports computed by the backend (pipeline by stage, forecast, win rate and deal size, sales cycle, velocity; with `activities` / `tickets` also activities done, overdue tasks, follow-up health and the service reports) as typed functions and versioned JSON definitions, in the tenant's time zone and fiscal year | [`Crm::analytics`] | `analytics` |"
)]
//! | [`core`] | the kernel: everything above plus the storage contract ([`core::store`]), the in-memory backend ([`core::memory`]), module composition, events, text rules | [`Crm::store`], [`Crm::directory`], [`Crm::custom_fields`] | always |
//! | [`sql`] | the SQL backends behind the URLs | [`Crm::open`] | always (backends by feature) |
//!
//! ## Cargo features
//!
//! | feature      | default | what it enables                                                   |
//! |--------------|---------|-------------------------------------------------------------------|
//! | `sqlite`     | yes     | `sqlite://path` and `sqlite::memory:` (rusqlite, bundled SQLite)  |
//! | `postgres`   | no      | `postgres://...` (sqlx)                                           |
//! | `mysql`      | no      | `mysql://...` / `mariadb://...` (sqlx)                            |
//! | `contacts`   | yes     | the `contacts` module                                             |
//! | `pipeline`   | yes     | the `pipeline` module (and `contacts`)                            |
//! | `activities` | yes     | the `activities` module (and `pipeline`, `contacts`)              |
//! | `tickets`    | yes     | the `tickets` module (and `activities`, `pipeline`, `contacts`)   |
//! | `automation` | yes     | the `automation` module (rules; needs no other module)            |
//! | `analytics`  | yes     | the `analytics` module (sales reports; and `pipeline`, `contacts`) |
//!
//! `memory:` is always available. [`Crm::builder`] composes exactly the built-in modules
//! that are compiled in ([`Crm::built_in_modules`]), so a host that needs contacts and
//! deals only writes
//! `crmkit = { version = "0.1", default-features = false, features = ["sqlite", "pipeline"] }`
//! and does not compile activities or tickets.

/// Activities (feature `activities`): tasks, calls, meetings, notes, logged emails,
/// reminders, follow-up, timelines and iCalendar export. The whole `crmkit-activities`
/// crate.
#[cfg(feature = "activities")]
#[doc(inline)]
pub use crmkit_activities as activities;
/// Analytics (feature `analytics`): sales reports computed by the backend, report
/// definitions as versioned JSON, reporting settings. The whole `crmkit-analytics` crate.
#[cfg(feature = "analytics")]
#[doc(inline)]
pub use crmkit_analytics as analytics;
/// Automation (feature `automation`): rules as versioned JSON, validated on save, the pure
/// condition evaluator and the engine. The whole `crmkit-automation` crate.
#[cfg(feature = "automation")]
#[doc(inline)]
pub use crmkit_automation as automation;
/// Contacts and organizations (feature `contacts`). The whole `crmkit-contacts` crate.
#[cfg(feature = "contacts")]
#[doc(inline)]
pub use crmkit_contacts as contacts;
/// The kernel: ids, context, money, errors, queries, events, custom fields, the
/// directory, modules and the storage contract with the in-memory backend. The whole
/// `crmkit-core` crate; what hosts use most is also at the crate root.
#[doc(inline)]
pub use crmkit_core as core;
/// Sales (feature `pipeline`): leads and conversion, pipelines and deals, campaigns,
/// exchange rates. The whole `crmkit-pipeline` crate.
#[cfg(feature = "pipeline")]
#[doc(inline)]
pub use crmkit_pipeline as pipeline;
/// The SQL backends (features `sqlite`, `postgres`, `mysql`). The whole `crmkit-sql`
/// crate; [`Crm::open`] picks a backend by URL.
#[doc(inline)]
pub use crmkit_sql as sql;
/// Tickets (feature `tickets`): statuses, comments, business calendars, SLAs, the
/// call-centre path and analytics. The whole `crmkit-tickets` crate.
#[cfg(feature = "tickets")]
#[doc(inline)]
pub use crmkit_tickets as tickets;

pub use crmkit_core::record::{KindDescription, Records};
pub use crmkit_core::{
    ActivityId, Actor, AuditEntry, AuditId, Backend, BackendKind, CalendarId, CampaignId,
    CampaignMemberId, Clock, CommentId, Commit, ContactId, Ctx, Currency, CustomFieldDef,
    CustomFieldId, CustomFieldType, CustomFields, CustomSchema, CustomValue, CustomValues, DealId,
    Directory, Error, Event, ExchangeRateId, FieldError, Filter, LeadId, LostReasonId, ManualClock,
    Module, Money, OrganizationId, Page, PipelineId, Query, RecordKind, RecordRef, ReminderId,
    Result, Role, Rounding, RuleId, SlaPolicyId, Sort, StageId, Store, SystemClock, Team, TeamId,
    TenantId, TicketId, User, UserId, UserInput, ValidationErrors, Visibility,
};

#[doc(no_inline)]
pub use chrono::{self, DateTime, NaiveDate, NaiveTime, TimeDelta, Utc, Weekday};
#[doc(no_inline)]
pub use chrono_tz::{self, Tz};
#[doc(no_inline)]
pub use rust_decimal::{self, Decimal};
#[doc(no_inline)]
pub use serde_json;
#[doc(no_inline)]
pub use uuid::{self, Uuid};

#[cfg(feature = "activities")]
use crmkit_activities::{Activities, ActivitiesModule};
#[cfg(feature = "analytics")]
use crmkit_analytics::{Analytics, AnalyticsModule};
#[cfg(feature = "automation")]
use crmkit_automation::{AutomationModule, Rules};
#[cfg(feature = "contacts")]
use crmkit_contacts::{Contacts, ContactsModule, Organizations};
use crmkit_core::memory::MemoryBackend;
use crmkit_core::{Modules, ModulesBuilder};
#[cfg(feature = "pipeline")]
use crmkit_pipeline::{
    PipelineModule,
    campaign::Campaigns,
    currency::Currencies,
    deal::{Deals, Pipelines},
    lead::Leads,
};
#[cfg(feature = "tickets")]
use crmkit_tickets::{SlaCalendars, SlaPolicies, Tickets, TicketsModule};

/// A CRM: a store (backend + composed modules) and the modules' APIs.
#[derive(Clone, Debug)]
pub struct Crm {
    store: Store,
}

/// Composes modules and opens a [`Crm`]. The built-in modules compiled in are added by
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
    /// A builder with the built-in modules compiled into this build (see
    /// [`Crm::built_in_modules`]): contacts, pipeline, activities, tickets, automation and
    /// analytics with the default features.
    pub fn builder() -> CrmBuilder {
        let modules = Modules::builder();
        #[cfg(feature = "contacts")]
        let modules = modules.add(ContactsModule);
        #[cfg(feature = "pipeline")]
        let modules = modules.add(PipelineModule);
        #[cfg(feature = "activities")]
        let modules = modules.add(ActivitiesModule);
        #[cfg(feature = "tickets")]
        let modules = modules.add(TicketsModule);
        #[cfg(feature = "automation")]
        let modules = modules.add(AutomationModule::new());
        #[cfg(feature = "analytics")]
        let modules = modules.add(AnalyticsModule);
        CrmBuilder { modules }
    }

    /// The names of the built-in modules compiled into this build (by cargo feature), in
    /// the order [`Crm::builder`] composes them.
    pub fn built_in_modules() -> &'static [&'static str] {
        &[
            #[cfg(feature = "contacts")]
            "contacts",
            #[cfg(feature = "pipeline")]
            "pipeline",
            #[cfg(feature = "activities")]
            "activities",
            #[cfg(feature = "tickets")]
            "tickets",
            #[cfg(feature = "automation")]
            "automation",
            #[cfg(feature = "analytics")]
            "analytics",
        ]
    }

    /// Opens the built-in modules on a backend chosen by URL (see [`CrmBuilder::open`]).
    pub async fn open(url: &str) -> Result<Crm> {
        Self::builder().open(url).await
    }

    /// The built-in modules in memory.
    pub fn in_memory() -> Result<Crm> {
        Self::builder().in_memory()
    }

    /// A CRM over an existing store; it must compose the built-in modules compiled into
    /// this build ([`Crm::built_in_modules`]; a Config error otherwise).
    pub fn from_store(store: Store) -> Result<Crm> {
        for name in Self::built_in_modules() {
            store.require_module(name)?;
        }
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
    pub fn custom_fields(&self) -> CustomFields {
        self.store.custom_fields()
    }

    /// Contacts (people). Feature `contacts`.
    #[cfg(feature = "contacts")]
    pub fn contacts(&self) -> Contacts {
        Contacts::from_checked(&self.store)
    }

    /// Organizations (companies). Feature `contacts`.
    #[cfg(feature = "contacts")]
    pub fn organizations(&self) -> Organizations {
        self.contacts().organizations()
    }

    /// Tasks, calls, meetings, notes, logged emails, reminders, follow-up, timeline.
    /// Feature `activities`.
    #[cfg_attr(
        feature = "tickets",
        doc = "\n\nActivities may relate to tickets too (see [`Tickets::activities`])."
    )]
    #[cfg_attr(
        not(feature = "tickets"),
        doc = "\n\nWithout the `tickets` feature, activities relate to contacts, \
               organizations, leads and deals (and to kinds registered with \
               `Activities::with_related`)."
    )]
    #[cfg(feature = "activities")]
    pub fn activities(&self) -> Activities {
        #[cfg(feature = "tickets")]
        let activities = self.tickets().activities();
        #[cfg(not(feature = "tickets"))]
        let activities = Activities::new(&self.store);
        activities.expect("Crm composes the activities module")
    }

    /// Tickets: numbers, statuses, comments, escalation, satisfaction, SLAs, and the
    /// call-centre path ([`Tickets::record_inbound_call`]). Feature `tickets`.
    #[cfg(feature = "tickets")]
    pub fn tickets(&self) -> Tickets {
        Tickets::new(&self.store).expect("Crm composes the tickets module")
    }

    /// Automation rules: rules as versioned JSON, validated on save (custom actions of
    /// every composed module included), with the dry run of a rule on a stored record.
    /// [`Crm::automation_engine`] runs them. Feature `automation`.
    #[cfg(feature = "automation")]
    pub fn automation(&self) -> Rules {
        Rules::new(&self.store).expect("Crm composes the automation module")
    }

    /// Automation sequences: ordered steps (actions and waits) that a rule's
    /// `enrol_sequence` action puts records through, with their enrolments;
    /// [`Crm::automation_engine`] runs them. Feature `automation`.
    #[cfg(feature = "automation")]
    pub fn automation_sequences(&self) -> automation::Sequences {
        automation::Sequences::new(&self.store).expect("Crm composes the automation module")
    }

    /// An engine that runs the rules on the change feed, exactly once per (rule, event,
    /// action), with the default configuration; give it the host's notifier and webhook
    /// client with [`automation::Engine::with_notifier`] and
    /// [`automation::Engine::with_webhooks`]. Feature `automation`.
    #[cfg(feature = "automation")]
    pub fn automation_engine(&self) -> automation::Engine {
        automation::Engine::new(&self.store).expect("Crm composes the automation module")
    }

    /// Lead scoring: the tenant's scoring model, why a lead has its score and the run log
    /// of its score changes; [`Crm::automation_engine`] computes and writes the scores.
    /// Feature `automation`.
    #[cfg(feature = "automation")]
    pub fn lead_scoring(&self) -> automation::Scoring {
        automation::Scoring::new(&self.store).expect("Crm composes the automation module")
    }

    /// Sales reports (pipeline by stage, forecast, win rate, sales cycle, velocity), report
    /// definitions run from JSON, and the tenant's reporting settings. Feature `analytics`.
    #[cfg(feature = "analytics")]
    pub fn analytics(&self) -> Analytics {
        Analytics::new(&self.store).expect("Crm composes the analytics module")
    }

    /// Business calendars the SLA clocks count on. Feature `tickets`.
    #[cfg(feature = "tickets")]
    pub fn sla_calendars(&self) -> SlaCalendars {
        self.tickets().sla_calendars()
    }

    /// SLA policies: which targets apply to which tickets. Feature `tickets`.
    #[cfg(feature = "tickets")]
    pub fn sla_policies(&self) -> SlaPolicies {
        self.tickets().sla_policies()
    }

    /// Leads and their conversion. Feature `pipeline`.
    #[cfg(feature = "pipeline")]
    pub fn leads(&self) -> Leads {
        Leads::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// Deals: stage moves, stage history, summaries, lost reasons. Feature `pipeline`.
    #[cfg(feature = "pipeline")]
    pub fn deals(&self) -> Deals {
        Deals::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// Pipelines and their stages. Feature `pipeline`.
    #[cfg(feature = "pipeline")]
    pub fn pipelines(&self) -> Pipelines {
        self.deals().pipelines()
    }

    /// Campaigns, members and ROI inputs. Feature `pipeline`.
    #[cfg(feature = "pipeline")]
    pub fn campaigns(&self) -> Campaigns {
        Campaigns::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// The base currency and exchange rates. Feature `pipeline`.
    #[cfg(feature = "pipeline")]
    pub fn currencies(&self) -> Currencies {
        Currencies::new(&self.store).expect("Crm composes the pipeline module")
    }

    /// The change feed: events after `cursor` (see [`Store::events_since`]).
    pub async fn events_since(&self, ctx: &Ctx, cursor: u64, limit: u32) -> Result<Vec<Event>> {
        self.store.events_since(ctx, cursor, limit).await
    }
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(all(doctest, feature = "contacts"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
