//! # crmkit-automation
//!
//! Automation rules: "when this happens to a record (or at this time), and these
//! conditions hold, do these actions". This crate is being built in steps; **what exists
//! now** is the first one:
//!
//! - **Rules as data** ([`model`]): a [`Trigger`] (record created / updated — any change,
//!   a field changed, a field changed from A to B — / deleted / restored for any composed
//!   record kind, built-in or third-party; a domain event of a composed module; a time
//!   relative to a date or timestamp field; a schedule), [`Conditions`] (the query AST
//!   over the record's fields plus predicates on what changed) and ordered [`Action`]s
//!   (set fields, tags, assignment by strategy, activities, notes, tickets, deal stage,
//!   lead status and score, campaigns, notifications, webhooks, sequences, and `custom`
//!   actions other modules offer through [`CustomAction`]). Serialised as versioned JSON
//!   (`{"format": 1, ...}`, [`RuleDefinition`]).
//! - **Validation on save**, against the tenant's composed kinds, fields, custom fields,
//!   event kinds, stages, users and records, as the saving actor sees them: every problem
//!   at once in one Validation error naming each part (`trigger.kind`,
//!   `conditions.filter.amount`, `actions[2].fields.amount`, `actions[0].subject`).
//! - **Storage and the API**: [`AutomationModule`] (the `automation_rules` table, events
//!   `automation_rule.*`, record kind `automation_rule` in the generic record API) and the
//!   [`Rules`] handle (`create`, `get`, `list`, `update`, `delete`, `restore`, `audit`,
//!   `enable`, `disable`), versioned, audited, soft-deleted, with record-level access
//!   (see [`Rules`]). Webhook secrets are write-only: stored, but every read path shows
//!   [`WEBHOOK_SECRET_MASK`], and an update that gives no new secret keeps the stored one.
//! - **Pure evaluation of conditions** ([`evaluate_conditions`]): whether a rule's
//!   conditions hold for a record and a change, and why: the dry run of conditions.
//! - **The dry run on a stored record** ([`Rules::dry_run`], [`Rules::dry_run_saved`]):
//!   loads a record the actor can see (a hidden one is NotFound, like a missing one),
//!   checks the trigger is on its kind, evaluates the conditions and returns the
//!   explanation and the actions that would run ([`DryRun`]), writing nothing.
//! - **The engine** ([`Engine`], [`engine`]): runs the rules on each tenant's change
//!   feed from a stored cursor, whatever path wrote the change (typed API, import, the
//!   generic record API). Each action's writes and its run-log line commit together
//!   (through the rule's [`crmkit_core::Cause`] and this module's `before_commit`), so
//!   every effect happens exactly once under redelivery, crashes and concurrent engines.
//!   Rules act with their owner's authority; a rule's own change does not trigger it
//!   again (unless it says `retrigger_on_own_changes`) and chains stop at a depth limit;
//!   field triggers (changed, from, to); failed
//!   actions are retried with backoff and kept for a host to retry; notifications and
//!   signed webhook calls go through a delivery outbox to the host's [`Notifier`] and
//!   [`WebhookClient`] (to a user, or to a contact a record's field names:
//!   [`NewRule::auto_acknowledgement`] answers a ticket opened by email, once); the run
//!   log per rule and per record says what each rule did or why it did not.
//!
//! - **Assignment** (`assign_owner`): round robin, least loaded (fewest open records of
//!   the kind) and weighted, over a team's or a list's active users; the state (position,
//!   what each member was given, per period when members have a [`Capacity`]) is a
//!   versioned row written in the same commit as the record's new owner, so concurrent
//!   assignments spread exactly as the strategy says; the run log says whom and why.
//!
//! - **Timers** ([`timers`]): "N minutes, hours, days or working days before or after a
//!   date or timestamp field", armed for the existing records when the rule is saved,
//!   re-planned and cancelled as the engine sees a record change, fired by [`Engine::fire_timers`] (in [`Engine::tick`]) once per
//!   instant and never before it; days are local days in the owner's time zone.
//!
//! - **Schedules** ([`schedules`]): every day, week or month at a local time in a time
//!   zone, over the records a query selects as the owner sees them; run by
//!   [`Engine::run_schedules`] (in [`Engine::tick`]) once per instant and record, a
//!   missed instant made up once.
//!
//! - **Sequences** ([`sequences`], [`enrolments`]): ordered steps (rule actions and
//!   waits of minutes, hours, calendar days or an SLA calendar's working days) on a record
//!   kind, managed through [`Sequences`] (kind `automation_sequence`, versioned JSON,
//!   validated on save, access like rules). A rule's `enrol_sequence` enrols the record
//!   (in the commit of its run-log line); [`Engine::advance_sequences`] (in
//!   [`Engine::tick`]) runs each due step once, with the enrolling rule's owner's
//!   authority, the enrolment's advance in the step's commit; an enrolment exits when the
//!   record is deleted, its exit filter holds, a reply or a held meeting (or another
//!   listed activity type) is logged on it, or `leave_sequence` takes it out.
//!
//! - **A worker** ([`Engine::spawn`], [`Worker`]): a task on the host's tokio runtime
//!   that runs the feed and the tick for its tenants at an interval, with a graceful
//!   [`Worker::shutdown`].
//!
//! - **Lead scoring** ([`scoring`], [`Scoring`]): one model per tenant, versioned JSON:
//!   points for field rules over the lead and for events (a meeting held, an email
//!   logged) on its related leads, decaying with a half life, clamped; run by the engine
//!   on the feed and in [`Engine::tick`], written through the leads module's
//!   `lead.set_score` exactly once with the hits it counted, explained per lead
//!   ([`Scoring::explain`]) and in the run log.
//!
//! The actions that are another module's command (move a deal, set a lead's status or
//! score, add to a campaign, escalate a ticket) run through the action kinds that module
//! offers (`deal.move_to_stage`, `lead.set_status`, `lead.set_score`,
//! `campaign.add_member`, `ticket.escalate`), as a third-party module's would.
//!
//! ```
//! use crmkit_automation::{Action, AutomationModule, NewRule, Rules, Trigger, evaluate_conditions};
//! use crmkit_core::memory::MemoryBackend;
//! use crmkit_core::{Actor, Ctx, Filter, Modules, Role, Store, TenantId, UserId, UserInput};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let modules = Modules::builder().add(AutomationModule::new()).build()?;
//! let store = Store::new(MemoryBackend::new((**modules.schema()).clone()), modules);
//! let admin = UserId::new();
//! let ctx = Ctx::new(TenantId::new(), Actor::new(admin, [Role::Admin], []))?;
//! store.directory().put_user(&ctx, UserInput::new(admin, "Ada", "ada@example.test", Role::Admin)).await?;
//!
//! // A rule on the kernel's own `user` kind: notify when a user is created.
//! let rule = NewRule::new("Welcome", Trigger::RecordCreated { record_kind: "user".into() })
//!     .filter(Filter::contains("email", "@example.test"))
//!     .action(Action::Notify {
//!         channel: crmkit_automation::Channel::Email,
//!         to: Some(admin),
//!         to_field: None,
//!         subject: "New user {{name}}".into(),
//!         body: "{{email}} joined.".into(),
//!     });
//! let rules = Rules::new(&store)?;
//! let saved = rules.create(&ctx, rule).await?;
//! assert_eq!(saved.version, 1);
//!
//! // The dry run of its conditions on a record.
//! let record = serde_json::json!({"name": "Grace", "email": "grace@EXAMPLE.test"});
//! assert!(evaluate_conditions(&saved.conditions, &record, None).holds);
//!
//! // An unknown placeholder is refused, naming the part.
//! let bad: Vec<Action> = saved.actions.clone().into_iter().map(|a| match a {
//!     Action::Notify { channel, to, to_field, body, .. } =>
//!         Action::Notify { channel, to, to_field, body, subject: "Hi {{nickname}}".into() },
//!     a => a,
//! }).collect();
//! let err = rules
//!     .update(&ctx, saved.id, 1, crmkit_automation::RulePatch::default().actions(bad))
//!     .await
//!     .unwrap_err();
//! assert!(err.validation_errors().unwrap().has("actions[0].subject"));
//! # Ok::<(), crmkit_core::Error>(())
//! # }).unwrap();
//! ```

mod assign;
pub mod engine;
pub mod enrolments;
pub mod eval;
pub mod kinds;
pub mod model;
pub mod outbox;
pub mod runlog;
pub mod schedules;
pub mod scoring;
pub mod sequences;
mod service;
mod template;
pub mod timers;
mod timing;
mod validate;
mod worker;

use std::sync::Arc;

use crmkit_core::{Migration, Module, Result, Store};

pub use crmkit_core::action::CustomAction;
pub use engine::{DeliveryReport, Engine, EngineConfig, RunReport};
pub use enrolments::{ENROLMENT_TABLE, Enrolment, EnrolmentStatus};
pub use eval::{Change, Explanation, Outcome, Step, evaluate_conditions};
pub use model::{
    Action, Capacity, CapacityPeriod, ChangePredicate, Channel, Conditions, Direction, FORMAT,
    NewRule, Offset, PoolMember, Recurrence, Rule, RuleDefinition, RulePatch, Strategy, TimeUnit,
    Trigger,
};
pub use outbox::{
    Delivery, DeliveryStatus, Notification, Notifier, Payload, Recipient, WebhookCall,
    WebhookClient,
};
pub use runlog::{FailedRun, RunEntry, RunOutcome};
pub use scoring::{
    Contribution, ContributionSource, Decay, EventRule, FieldRule, ScoreExplanation, ScoreHit,
    Scoring, ScoringId, ScoringModel, StoredScoring, compute_score,
};
pub use sequences::{
    Exit, MAX_STEPS, NewSequence, SEQUENCE_EVENT_KINDS, SEQUENCE_FIELDS, SEQUENCE_KIND,
    SEQUENCE_TABLE, Sequence, SequenceDefinition, SequencePatch, SequenceStep, Sequences,
};
pub use service::{
    DryRun, EVENT_KINDS, RULE_FIELDS, RULE_KIND, RULE_TABLE, Rules, WEBHOOK_SECRET_MASK,
};
pub use worker::Worker;

/// The module's name.
pub const MODULE_NAME: &str = "automation";

/// The automation module: the rules and sequences tables, the `automation_rule` and
/// `automation_sequence` kinds and their events. It
/// depends on no other module: rules are checked against whatever the composition holds.
///
/// Custom action kinds (`{"type": "custom", "kind": .., "params": ..}`) come from every
/// composed module's [`Module::automation_actions`] (a module offers them the way it
/// offers record kinds; see [`crmkit_core::action`]), so [`Rules::new`], the generic
/// record API and a facade's rules all know them. [`AutomationModule::with_action`]
/// additionally lets a host offer an action kind that no module of its own declares.
#[derive(Clone, Default)]
pub struct AutomationModule {
    actions: Vec<Arc<dyn CustomAction>>,
}

impl std::fmt::Debug for AutomationModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutomationModule")
            .field(
                "actions",
                &self.actions.iter().map(|a| a.kind()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AutomationModule {
    /// The module offering no action kinds of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// With an action kind the host offers through this module (as if the module
    /// declared it in [`Module::automation_actions`]). A kind offered twice in the
    /// composition, here or by another module, makes [`crmkit_core::ModulesBuilder::build`]
    /// fail with a Config error.
    pub fn with_action(mut self, action: impl CustomAction) -> Self {
        self.actions.push(Arc::new(action));
        self
    }

    /// The rules API over a store this module is composed into (the same as
    /// [`Rules::new`]).
    pub fn rules(&self, store: &Store) -> Result<Rules> {
        Rules::new(store)
    }

    /// The sequences API over a store this module is composed into (the same as
    /// [`Sequences::new`]).
    pub fn sequences(&self, store: &Store) -> Result<Sequences> {
        Sequences::new(store)
    }
}

impl Module for AutomationModule {
    fn name(&self) -> &'static str {
        MODULE_NAME
    }

    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration::create_tables(1, "automation rules", service::tables()),
            Migration::create_tables(
                2,
                "the engine: run log, failed runs, feed cursor, delivery outbox, assignment \
                 state",
                runlog::tables()
                    .into_iter()
                    .chain(timers::tables())
                    .chain(schedules::tables()),
            ),
            Migration::create_tables(
                3,
                "sequences and their enrolments",
                sequences::tables().into_iter().chain(enrolments::tables()),
            ),
            Migration::create_tables(
                4,
                "lead scoring: the model, the hits of event rules, the per-lead state",
                scoring::tables(),
            ),
        ]
    }

    /// A changeset made for a rule's action (one whose [`crmkit_core::Cause`] is set) gets
    /// the cause's own writes (assignment state; a retry's removal of its failed run) and
    /// the action's run-log line, keyed `(rule, occurrence, action)`: the action's writes
    /// and the record that it ran commit together, so a second run of the same action
    /// fails on the key and writes nothing.
    fn before_commit(&self, changeset: &mut crmkit_core::Changeset) -> Result<()> {
        if let Some(cause) = &changeset.cause {
            changeset.writes.extend(cause.writes.iter().cloned());
            let row = runlog::applied_row(cause, changeset.at);
            changeset.writes.push(row);
        }
        Ok(())
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        EVENT_KINDS
            .iter()
            .chain(SEQUENCE_EVENT_KINDS)
            .chain(scoring::EVENT_KINDS)
            .copied()
            .collect()
    }

    fn record_kinds(&self) -> Vec<Arc<dyn crmkit_core::record::KindHandler>> {
        vec![
            crmkit_core::record::typed(kinds::RuleKind),
            crmkit_core::record::typed(kinds::SequenceKind),
        ]
    }

    fn automation_actions(&self) -> Vec<Arc<dyn CustomAction>> {
        self.actions.clone()
    }
}
