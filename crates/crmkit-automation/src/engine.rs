//! The engine: runs a tenant's rules on its change feed, exactly once per (rule, event,
//! action).
//!
//! ## How a run goes
//!
//! [`Engine::run_pending`] reads the events after the tenant's cursor and, for each, the
//! enabled rules whose trigger it matches (rules are indexed by trigger and record kind
//! or event kind, so unrelated rules cost nothing). For each such rule:
//!
//! 1. **Guards.** A change a rule made does not trigger that rule again (the loop guard),
//!    and a change made at the end of a chain of [`EngineConfig::max_depth`] rules
//!    triggers none (the depth limit); a rule never acts on an event older than itself.
//! 2. **Authority.** The rule acts as its owner: a context from the directory with the
//!    owner's current roles and teams ([`crmkit_core::Directory::ctx_for`]); a rule whose
//!    owner is no longer an active user does not act, and a record the owner cannot see
//!    is, for the rule, a record that does not exist.
//! 3. **Trigger and conditions.** The record is loaded through the generic record API
//!    (for a deleted record, the event's payload), a field trigger checks the field
//!    changed (from / to the given values), and the conditions are evaluated
//!    ([`crate::evaluate_conditions`]) on the record as it is when the rule runs.
//! 4. **Actions, in order.** Each runs with a context carrying its [`Cause`] (rule,
//!    occurrence, action index, depth). The automation module's `before_commit` adds the
//!    run-log line keyed `(rule, occurrence, action)` to whatever the action commits, so
//!    the action's writes and the record of its run are one commit: a second run of the
//!    same action (a redelivered event, a crash before the cursor moved, a second engine
//!    on the same database) fails its whole commit on that key and writes nothing. An
//!    action that fails is kept as a failed run ([`Engine::failed`]) and retried with
//!    backoff by [`Engine::tick`]; the rule's later actions wait for it.
//!
//! A rule that does not act leaves a line saying why ([`crate::RunOutcome::Skipped`]); the run
//! log is readable per rule and per record ([`Engine::runs_of_rule`],
//! [`Engine::runs_of_record`]). Notifications and webhook calls are rows of the delivery
//! outbox written in the action's commit, delivered by [`Engine::deliver`] through the
//! host's [`Notifier`] and [`WebhookClient`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use crmkit_core::action::CustomActions;
use crmkit_core::event::{AUDIT_TABLE, EVENTS_TABLE, decode_event};
use crmkit_core::query::check_limit;
use crmkit_core::record::{FieldType, Json, JsonMap};
use crmkit_core::store::{CmpOp, Cond, OrderKey, Select, Value, Write};
use crmkit_core::{
    Cause, Changeset, Clock, Ctx, Error, Event, RecordKind, RecordRef, Result, Role, RuleId, Store,
    SystemClock, TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::eval::{Change, Outcome, evaluate_conditions};
use crate::model::{Action, Rule, Trigger};
use crate::outbox::{
    Delivery, DeliveryStatus, Notification, Notifier, Payload, WebhookCall, WebhookClient, sign,
};
use crate::runlog::{
    self, CURSOR_TABLE, FAILURE_TABLE, FailedRun, OUTBOX_TABLE, RUN_TABLE, RunEntry,
};
use crate::service::{RULE_TABLE, Rules, decode_stored_rule};
use crate::template::{field, render};

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The longest chain of rules triggering rules: a change made at this depth triggers
    /// no rule (the run log says so). Default 5.
    pub max_depth: u32,
    /// How many times a failed action or delivery is tried before it is given up (and
    /// kept, for a host to retry). Default 5.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles with each attempt. Default 30 s.
    pub backoff: TimeDelta,
    /// How long a notifier or webhook call may take before it counts as failed (so one
    /// that hangs never blocks the others). Default 10 s.
    pub delivery_timeout: std::time::Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_depth: 5,
            max_attempts: 5,
            backoff: TimeDelta::seconds(30),
            delivery_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// What one call of the engine did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Events read from the feed.
    pub events: u64,
    /// Rules whose trigger matched an event.
    pub triggered: u64,
    /// Actions applied.
    pub applied: u64,
    /// Actions found already applied (by an earlier or a concurrent run).
    pub already_applied: u64,
    /// Rules that did not act (see the run log for why).
    pub skipped: u64,
    /// Actions that failed (kept for a retry).
    pub failed: u64,
    /// The cursor after the call.
    pub cursor: u64,
}

impl std::ops::AddAssign for RunReport {
    fn add_assign(&mut self, o: RunReport) {
        self.events += o.events;
        self.triggered += o.triggered;
        self.applied += o.applied;
        self.already_applied += o.already_applied;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.cursor = self.cursor.max(o.cursor);
    }
}

/// What one delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Delivered.
    pub delivered: u64,
    /// Failed this time (retried later, or given up).
    pub failed: u64,
    /// Left pending because the host provided no notifier or webhook client.
    pub no_transport: u64,
}

/// The rules of one tenant, indexed for dispatch.
#[derive(Default)]
pub(crate) struct RuleSet {
    pub(crate) by_key: HashMap<String, Vec<Arc<Rule>>>,
    pub(crate) by_id: HashMap<RuleId, Arc<Rule>>,
    /// Rules with a time-relative trigger, by record kind.
    pub(crate) timers: HashMap<String, Vec<Arc<Rule>>>,
    /// The record kinds that rules enrol in sequences (sequence exits are looked for on
    /// their events only).
    pub(crate) enrolled_kinds: HashSet<String>,
}

/// The dispatch key of a trigger (`None` for timers and schedules, which the feed does
/// not start).
fn trigger_key(t: &Trigger) -> Option<String> {
    match t {
        Trigger::RecordCreated { record_kind } => Some(format!("created:{record_kind}")),
        Trigger::RecordUpdated {
            record_kind,
            field: Some(f),
            ..
        } => Some(field_key(record_kind, f)),
        Trigger::RecordUpdated { record_kind, .. } => Some(format!("updated:{record_kind}")),
        Trigger::RecordDeleted { record_kind } => Some(format!("deleted:{record_kind}")),
        Trigger::RecordRestored { record_kind } => Some(format!("restored:{record_kind}")),
        Trigger::Event { event } => Some(format!("event:{event}")),
        Trigger::Relative { .. } | Trigger::Schedule { .. } => None,
    }
}

/// The dispatch key of a field trigger: `updated:<kind>.<field>` (every custom field
/// under `updated:<kind>.custom`, since an event may name custom values as a whole).
fn field_key(kind: &str, field: &str) -> String {
    if field.starts_with("custom") {
        format!("updated:{kind}.custom")
    } else {
        format!("updated:{kind}.{field}")
    }
}

/// The dispatch keys an event matches: its record trigger (when it is the record's
/// `created`, `updated`, `deleted` or `restored` event; for an update, also the field
/// trigger of each changed field) and its event trigger. Rules are found by key, so an
/// event costs the same whatever the number of rules on other kinds, events or fields.
fn event_keys(e: &Event) -> Vec<String> {
    let kind = e.record.kind.as_str();
    let mut keys = vec![format!("event:{}", e.kind)];
    let verb = e
        .kind
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|verb| matches!(*verb, "created" | "updated" | "deleted" | "restored"));
    if let Some(verb) = verb {
        keys.push(format!("{verb}:{kind}"));
        if verb == "updated" {
            let mut fields: Vec<String> = e.changed.iter().map(|f| field_key(kind, f)).collect();
            fields.sort();
            fields.dedup();
            keys.extend(fields);
        }
    }
    keys
}

impl RuleSet {
    pub(crate) fn new(rules: impl IntoIterator<Item = Rule>) -> RuleSet {
        let mut set = RuleSet::default();
        for r in rules {
            let r = Arc::new(r);
            if let Some(k) = trigger_key(&r.trigger) {
                set.by_key.entry(k).or_default().push(r.clone());
            }
            if r.actions
                .iter()
                .any(|a| matches!(a, Action::EnrolSequence { .. }))
                && let Some(k) = r.trigger.record_kind()
            {
                set.enrolled_kinds.insert(k.to_owned());
            }
            if let Trigger::Relative { record_kind, .. } = &r.trigger {
                set.timers
                    .entry(record_kind.clone())
                    .or_default()
                    .push(r.clone());
            }
            set.by_id.insert(r.id, r);
        }
        set
    }

    /// The rules an event triggers, in id order per key.
    pub(crate) fn matching<'a>(&'a self, e: &Event) -> impl Iterator<Item = &'a Arc<Rule>> {
        event_keys(e)
            .into_iter()
            .filter_map(|k| self.by_key.get(&k))
            .flatten()
    }
}

/// Whether dispatching `e` reads its payload: a deleted record's rules and timers act on
/// it, and field triggers compare it.
fn needs_payload(rules: &RuleSet, e: &Event) -> bool {
    e.kind.ends_with(".deleted")
        || crate::enrolments::needs_payload(rules, e)
        || rules
            .matching(e)
            .any(|r| matches!(r.trigger, Trigger::RecordUpdated { field: Some(_), .. }))
}

/// The occurrence key of event `seq`.
fn occurrence_of(seq: u64) -> String {
    format!("e{seq}")
}

fn seq_of(occurrence: &str) -> Option<u64> {
    occurrence.strip_prefix('e')?.parse().ok()
}

/// Whether `field` is among an event's changed fields (a custom value `custom.<key>`
/// also when the event names `custom` as a whole).
fn changed(changed: &[String], field: &str) -> bool {
    changed.iter().any(|c| c == field)
        || (field.starts_with("custom.") && changed.iter().any(|c| c == "custom"))
}

/// A field's value for a trigger's `from`/`to` (`None`: no value).
fn value_at<'a>(record: &'a Json, path: &str) -> Option<&'a Json> {
    field(record, path).filter(|v| !v.is_null())
}

/// What an action does, in words (the run log's detail).
pub(crate) fn describe(a: &Action, record: &Json) -> String {
    match a {
        Action::SetFields { fields } => format!(
            "set {}",
            fields.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        Action::AddTag { tag } => format!("add tag {tag:?}"),
        Action::RemoveTag { tag } => format!("remove tag {tag:?}"),
        Action::CreateActivity {
            activity_type,
            subject,
            ..
        } => format!("create a {activity_type} {:?}", render(subject, record)),
        Action::LogNote { .. } => "log a note".into(),
        Action::CreateTicket { subject, .. } => {
            format!("create a ticket {:?}", render(subject, record))
        }
        Action::Notify { channel, .. } => format!("notify by {channel:?}").to_lowercase(),
        Action::Webhook { url, .. } => format!("call the webhook {url}"),
        Action::Custom { kind, .. } => format!("run {kind}"),
        other => other.type_name().replace('_', " "),
    }
}

/// Runs rules: see the [module documentation](self).
///
/// One engine serves any number of tenants; each call names the tenant. Engines on
/// several processes may run on the same database at once: every effect still happens
/// once.
pub struct Engine {
    pub(crate) store: Store,
    config: EngineConfig,
    pub(crate) clock: Arc<dyn Clock>,
    notifier: Option<Arc<dyn Notifier>>,
    webhooks: Option<Arc<dyn WebhookClient>>,
    actions: Arc<CustomActions>,
    rules: Mutex<HashMap<TenantId, Arc<RuleSet>>>,
    /// Rule owners' contexts, kept for one call of `run_pending`, `fire_timers` or
    /// `retry_due` (so a deactivation takes effect from the next call on).
    owners: Mutex<HashMap<(TenantId, crmkit_core::UserId), std::result::Result<Ctx, String>>>,
    /// Each tenant's lead scoring model, loaded once and again after it changed.
    pub(crate) scoring: crate::scoring::ModelCache,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("notifier", &self.notifier.is_some())
            .field("webhooks", &self.webhooks.is_some())
            .finish()
    }
}

/// The cursor row's name.
const FEED: &str = "feed";

impl Engine {
    /// An engine over a store composed with the automation module, on the system clock,
    /// with the default [`EngineConfig`] and no notifier or webhook client (deliveries
    /// wait in the outbox until an engine that has them delivers).
    pub fn new(store: &Store) -> Result<Engine> {
        store.require_module(crate::MODULE_NAME)?;
        Ok(Engine {
            store: store.clone(),
            config: EngineConfig::default(),
            clock: Arc::new(SystemClock),
            notifier: None,
            webhooks: None,
            actions: store.modules().automation_actions().clone(),
            rules: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            scoring: crate::scoring::ModelCache::default(),
        })
    }

    /// With another configuration.
    pub fn with_config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// On another clock (tests, simulations).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// With the host's notifier.
    pub fn with_notifier(mut self, notifier: impl Notifier) -> Self {
        self.notifier = Some(Arc::new(notifier));
        self
    }

    /// With the host's webhook client.
    pub fn with_webhooks(mut self, client: impl WebhookClient) -> Self {
        self.webhooks = Some(Arc::new(client));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        self.clock.now().trunc_subsecs(6)
    }

    /// A changeset of the engine's own bookkeeping (no actor, no cause).
    pub(crate) fn changeset(&self, tenant: TenantId, writes: Vec<Write>) -> Changeset {
        Changeset {
            tenant,
            actor: None,
            origin: "automation".into(),
            at: self.now(),
            writes,
            audit: vec![],
            events: vec![],
            cause: None,
        }
    }

    /// Commits bookkeeping rows whose key another engine may have written first (a
    /// Duplicate is that, not an error).
    pub(crate) async fn commit_once(&self, tenant: TenantId, writes: Vec<Write>) -> Result<()> {
        match self.store.commit(self.changeset(tenant, writes)).await {
            Ok(_) | Err(Error::Duplicate { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn exists(
        &self,
        tenant: TenantId,
        table: &str,
        key: &[Value],
    ) -> Result<bool> {
        Ok(self
            .store
            .backend()
            .get(tenant, table, key)
            .await?
            .is_some())
    }

    /// The rows `s` selects, decoded.
    pub(crate) async fn select_decoded<T>(
        &self,
        tenant: TenantId,
        s: &Select,
        decode: fn(crmkit_core::store::Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.store
            .backend()
            .select(tenant, s)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// The record as the rule's owner sees it now (`None`: gone or hidden).
    pub(crate) async fn current(&self, ctx: &Ctx, record: &RecordRef) -> Result<Option<Json>> {
        match self
            .store
            .records()
            .get(ctx, record.kind.as_str(), record.id)
            .await
        {
            Ok(r) => Ok(Some(r.into_value())),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tenant's feed cursor: the last event the engine has processed.
    pub async fn cursor(&self, tenant: TenantId) -> Result<u64> {
        let row = self
            .store
            .backend()
            .get(tenant, CURSOR_TABLE, &[Value::Text(FEED.into())])
            .await?;
        Ok(row
            .and_then(|r| r.get(1).and_then(Value::as_int))
            .map_or(0, |v| v.max(0) as u64))
    }

    /// Moves the cursor forward to `seq` (never back: two engines may race).
    async fn advance(&self, tenant: TenantId, seq: u64) -> Result<()> {
        let seq = i64::try_from(seq).map_err(|_| Error::storage("event sequence overflow"))?;
        let insert = Write::Insert {
            table: CURSOR_TABLE,
            row: vec![Value::Text(FEED.into()), Value::Int(seq)],
        };
        match self
            .store
            .commit(self.changeset(tenant, vec![insert]))
            .await
        {
            Ok(_) => return Ok(()),
            Err(Error::Duplicate { .. }) => {}
            Err(e) => return Err(e),
        }
        let update = Write::UpdateWhere {
            table: CURSOR_TABLE,
            cond: Cond::eq("name", FEED).and(Cond::Cmp(
                "last_seq".into(),
                CmpOp::Lt,
                Value::Int(seq),
            )),
            set: vec![("last_seq", Value::Int(seq))],
        };
        self.store
            .commit(self.changeset(tenant, vec![update]))
            .await
            .map(|_| ())
    }

    /// The events after `after`, each with its payload's JSON text: the payload is parsed
    /// only for an event a rule needs it for ([`needs_payload`]).
    async fn events_after(
        &self,
        tenant: TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(Event, String)>> {
        let mut s = Select::new(
            EVENTS_TABLE,
            Cond::Cmp("seq".into(), CmpOp::Gt, Value::Int(after as i64)),
        );
        s.order = vec![OrderKey::asc("seq")];
        s.limit = Some(limit);
        let rows = self.store.backend().select(tenant, &s).await?;
        rows.into_iter()
            .map(|mut r| {
                let text = match r.get_mut(5) {
                    Some(v) => std::mem::replace(v, Value::Text("null".into())),
                    None => Value::Null,
                };
                let e = decode_event(tenant, &r)?;
                Ok((e, text.as_text().unwrap_or("null").to_owned()))
            })
            .collect()
    }

    /// The tenant's enabled rules, loaded once and again after a rule changed.
    pub(crate) async fn rule_set(&self, tenant: TenantId, reload: bool) -> Result<Arc<RuleSet>> {
        if !reload && let Some(s) = self.lock().get(&tenant) {
            return Ok(s.clone());
        }
        let s = Select::new(
            RULE_TABLE,
            Cond::eq("enabled", true).and(Cond::IsNull("deleted_at".into())),
        );
        let rows = self.store.backend().select(tenant, &s).await?;
        let mut rules = rows
            .into_iter()
            .map(decode_stored_rule)
            .collect::<Result<Vec<_>>>()?;
        rules.sort_by_key(|r| r.id);
        let set = Arc::new(RuleSet::new(rules));
        self.lock().insert(tenant, set.clone());
        Ok(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Arc<RuleSet>>> {
        // A panic while holding the lock cannot leave the map half-written (each
        // operation is one insert or get), so a poisoned lock is still usable.
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the rules for up to `limit` (1 to 1000) events after the tenant's cursor and
    /// moves the cursor past them. Call it until it reports no events to catch up.
    pub async fn run_pending(&self, tenant: TenantId, limit: u32) -> Result<RunReport> {
        check_limit(limit)?;
        let cursor = self.cursor(tenant).await?;
        let mut events = self.events_after(tenant, cursor, limit).await?;
        let mut report = RunReport {
            cursor,
            ..RunReport::default()
        };
        let mut rules = self.rule_set(tenant, false).await?;
        let mut done = cursor;
        // A rule change takes effect from the next event on; a burst of rule changes
        // (rules saved one after another) reloads the rules once.
        let mut stale = false;
        self.forget_owners();
        // Rules saved, changed, enabled or restored since the last reload: a timed one
        // arms the timers of the records that already exist.
        let mut changed_rules: Vec<RuleId> = vec![];
        for (e, payload) in &mut events {
            if e.kind.starts_with("automation_rule.") {
                stale = true;
                changed_rules.push(RuleId::from_uuid(e.record.id));
                report.events += 1;
                done = e.seq;
                continue;
            }
            if stale {
                rules = self.rule_set(tenant, true).await?;
                stale = false;
                crate::timers::arm_existing(self, tenant, &rules, &changed_rules).await?;
                changed_rules.clear();
            }
            if needs_payload(&rules, e) {
                e.payload = serde_json::from_str(payload)
                    .map_err(|err| Error::storage_from("event", err))?;
            }
            let outcome = self.dispatch(tenant, &rules, e, &mut report).await;
            if let Err(err) = outcome {
                if done > cursor {
                    self.advance(tenant, done).await?;
                }
                return Err(err);
            }
            report.events += 1;
            done = e.seq;
        }
        if stale {
            let rules = self.rule_set(tenant, true).await?;
            crate::timers::arm_existing(self, tenant, &rules, &changed_rules).await?;
        }
        if done > cursor {
            self.advance(tenant, done).await?;
        }
        report.cursor = done;
        Ok(report)
    }

    async fn dispatch(
        &self,
        tenant: TenantId,
        rules: &RuleSet,
        e: &Event,
        report: &mut RunReport,
    ) -> Result<()> {
        for rule in rules.matching(e) {
            if e.at < rule.created_at {
                continue;
            }
            self.run_rule(tenant, rule, e, report).await?;
        }
        crate::timers::arm_for_event(self, tenant, rules, e).await?;
        crate::enrolments::exit_for_event(self, tenant, rules, e).await?;
        crate::scoring::on_event(self, tenant, e, report).await
    }

    pub(crate) async fn skip(
        &self,
        tenant: TenantId,
        rule: &Rule,
        e: &Event,
        depth: u32,
        why: &str,
        report: &mut RunReport,
    ) -> Result<()> {
        report.skipped += 1;
        let row = runlog::skipped_row(
            rule.id,
            &occurrence_of(e.seq),
            Some(&e.record),
            depth,
            why,
            self.now(),
        );
        self.commit_once(tenant, vec![row]).await
    }

    /// The rule owner's context, or why the rule cannot act.
    pub(crate) async fn owner_ctx(
        &self,
        tenant: TenantId,
        rule: &Rule,
    ) -> Result<std::result::Result<Ctx, String>> {
        let key = (tenant, rule.owner);
        if let Some(c) = self.owner_cache().get(&key) {
            return Ok(c.clone());
        }
        let c = match self.store.directory().ctx_for(tenant, rule.owner).await {
            Ok(ctx) => Ok(ctx.with_clock(self.clock.clone()).with_origin("automation")),
            Err(Error::PermissionDenied(_)) => Err("the rule's owner is not an active user".into()),
            Err(e) => return Err(e),
        };
        self.owner_cache().insert(key, c.clone());
        Ok(c)
    }

    fn owner_cache(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        HashMap<(TenantId, crmkit_core::UserId), std::result::Result<Ctx, String>>,
    > {
        // Each operation is one insert or get: a poisoned lock is still consistent.
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn forget_owners(&self) {
        self.owner_cache().clear();
    }

    /// The record as the owner sees it, or why the rule cannot act on it.
    pub(crate) async fn load(
        &self,
        ctx: &Ctx,
        e: &Event,
    ) -> Result<std::result::Result<Json, String>> {
        let kind = e.record.kind.as_str();
        let records = self.store.records();
        let deleted = e.kind.strip_prefix(kind) == Some(".deleted");
        let found = if deleted {
            records
                .audit(ctx, kind, e.record.id)
                .await
                .map(|_| e.payload.clone())
        } else {
            records
                .get(ctx, kind, e.record.id)
                .await
                .map(|r| r.into_value())
        };
        match found {
            Ok(v) => Ok(Ok(v)),
            Err(Error::NotFound { .. }) => Ok(Err(format!(
                "the {kind} is gone or not visible to the rule's owner"
            ))),
            Err(err) => Err(err),
        }
    }

    /// The record before the event's change: `after` with the changed fields' old values
    /// from the audit entries the change wrote.
    async fn before(&self, tenant: TenantId, e: &Event, after: &Json) -> Result<Json> {
        let s = Select::new(
            AUDIT_TABLE,
            Cond::eq("record_kind", e.record.kind.as_str())
                .and(Cond::eq("record_id", e.record.id))
                .and(Cond::eq("at", Value::timestamp(e.at))),
        );
        let mut before = after.clone();
        for row in self.store.backend().select(tenant, &s).await? {
            let (Some(name), old) = (row[5].as_text(), row[6].as_text()) else {
                continue;
            };
            let old: Json = match old {
                Some(t) => serde_json::from_str(t).unwrap_or(Json::Null),
                None => Json::Null,
            };
            if let Some(obj) = before.as_object_mut() {
                match name.strip_prefix("custom.") {
                    Some(key) => {
                        let custom = obj
                            .entry("custom")
                            .or_insert_with(|| Json::Object(JsonMap::new()));
                        if let Some(c) = custom.as_object_mut() {
                            c.insert(key.to_owned(), old);
                        }
                    }
                    None => {
                        obj.insert(name.to_owned(), old);
                    }
                }
            }
        }
        Ok(before)
    }

    /// Whether a field trigger (`field`, `from`, `to`) matches the event, compared with
    /// the event's payload (the record after the change) and the old values its audit
    /// entries hold; with the record before the change when it was needed. A rule whose
    /// trigger does not match is not started: it leaves no line in the run log.
    async fn field_trigger(
        &self,
        tenant: TenantId,
        rule: &Rule,
        e: &Event,
    ) -> Result<Option<Option<Json>>> {
        let Trigger::RecordUpdated {
            field: Some(f),
            from,
            to,
            ..
        } = &rule.trigger
        else {
            return Ok(Some(None));
        };
        if !changed(&e.changed, f) {
            return Ok(None);
        }
        if let Some(to) = to
            && value_at(&e.payload, f) != to.as_ref()
        {
            return Ok(None);
        }
        let Some(from) = from else {
            return Ok(Some(None));
        };
        let before = self.before(tenant, e, &e.payload).await?;
        Ok((value_at(&before, f) == from.as_ref()).then_some(Some(before)))
    }

    async fn run_rule(
        &self,
        tenant: TenantId,
        rule: &Rule,
        e: &Event,
        report: &mut RunReport,
    ) -> Result<()> {
        let Some(before) = self.field_trigger(tenant, rule, e).await? else {
            return Ok(());
        };
        report.triggered += 1;
        let depth = e.depth + 1;
        if e.rule == Some(rule.id) && !rule.retrigger_on_own_changes {
            let why = "loop guard: the change was made by this rule";
            return self.skip(tenant, rule, e, depth, why, report).await;
        }
        if depth > self.config.max_depth {
            let why = format!(
                "depth limit: the change was made by a chain of {} rules (the limit is {})",
                e.depth, self.config.max_depth
            );
            return self.skip(tenant, rule, e, depth, &why, report).await;
        }
        let ctx = match self.owner_ctx(tenant, rule).await? {
            Ok(c) => c,
            Err(why) => return self.skip(tenant, rule, e, depth, &why, report).await,
        };
        let after = match self.load(&ctx, e).await? {
            Ok(v) => v,
            Err(why) => return self.skip(tenant, rule, e, depth, &why, report).await,
        };
        let needs_before = rule.conditions.changes.iter().any(|c| c.from.is_some());
        let before = match before {
            Some(b) => Some(b),
            None if needs_before => Some(self.before(tenant, e, &after).await?),
            None => None,
        };
        let change = Change {
            fields: e.changed.clone(),
            before,
        };
        let explanation = evaluate_conditions(&rule.conditions, &after, Some(&change));
        if !explanation.holds {
            let why = why_not(&explanation);
            return self.skip(tenant, rule, e, depth, &why, report).await;
        }
        let run = RuleRun {
            tenant,
            rule,
            occurrence: occurrence_of(e.seq),
            depth,
            record: e.record.clone(),
            latest: Mutex::new(Latest::After),
            after,
            event: Some(e),
            retry: false,
        };
        self.run_actions(&ctx, &run, 0, report).await
    }

    /// Runs a rule's actions from `first`, each once, stopping at the first failure.
    pub(crate) async fn run_actions(
        &self,
        ctx: &Ctx,
        run: &RuleRun<'_>,
        first: usize,
        report: &mut RunReport,
    ) -> Result<()> {
        for (i, action) in run.rule.actions.iter().enumerate().skip(first) {
            let index = i as u32;
            // No look-up first: an action already applied (a redelivery, a second
            // engine) fails its commit on the run-log key, which is read below.
            let key = runlog::key(run.rule.id, &run.occurrence, Some(index));
            let cause = Cause {
                rule: run.rule.id,
                occurrence: run.occurrence.clone(),
                action: index,
                depth: run.depth,
                record: Some(run.record.clone()),
                detail: describe(action, &run.after),
                attempt: Uuid::now_v7(),
                // A retry clears its failed run in the same commit.
                writes: if run.retry {
                    vec![Write::Delete {
                        table: FAILURE_TABLE,
                        key: key.clone(),
                    }]
                } else {
                    vec![]
                },
            };
            let actx = ctx.clone().with_cause(cause.clone());
            match self.apply(&actx, run, index, action).await {
                // The action's own commit carried the run-log row: applied, by us.
                Ok(true) => report.applied += 1,
                Ok(false) => {
                    match self.recorded_attempt(run.tenant, &key).await? {
                        Some(a) if a == cause.attempt => {
                            report.applied += 1;
                            continue;
                        }
                        Some(_) => {
                            // A concurrent engine applied it first; ours found nothing
                            // left to do.
                            report.already_applied += 1;
                            continue;
                        }
                        None => {}
                    }
                    // The action committed nothing (the record already was as the rule
                    // wants it): its run is recorded all the same, so it is not redone.
                    let mut cs = self.changeset(run.tenant, vec![]);
                    cs.cause = Some(cause);
                    match self.store.commit(cs).await {
                        Ok(_) => report.applied += 1,
                        Err(Error::Duplicate { .. }) => report.already_applied += 1,
                        Err(e) => return Err(e),
                    }
                }
                Err(err) => {
                    // Another engine may have applied it meanwhile (its commit made ours
                    // fail on the run key, or changed the version we patched).
                    if self.exists(run.tenant, RUN_TABLE, &key).await? {
                        report.already_applied += 1;
                        continue;
                    }
                    if matches!(err, Error::Storage { .. }) && !self.store_answers(run.tenant).await
                    {
                        return Err(err);
                    }
                    report.failed += 1;
                    return self.record_failure(run, index, &err).await;
                }
            }
        }
        Ok(())
    }

    /// The attempt id of the run-log line with this key, if there is one.
    pub(crate) async fn recorded_attempt(
        &self,
        tenant: TenantId,
        key: &[Value],
    ) -> Result<Option<Uuid>> {
        let row = self.store.backend().get(tenant, RUN_TABLE, key).await?;
        Ok(row.map(|r| r.get(9).and_then(Value::as_uuid).unwrap_or_default()))
    }

    /// Whether storage answers at all (a Storage error of an action is then the action's
    /// failure, kept for a retry; otherwise the whole run stops with it).
    pub(crate) async fn store_answers(&self, tenant: TenantId) -> bool {
        self.cursor(tenant).await.is_ok()
    }

    pub(crate) async fn record_failure(
        &self,
        run: &RuleRun<'_>,
        action: u32,
        err: &Error,
    ) -> Result<()> {
        let key = runlog::key(run.rule.id, &run.occurrence, Some(action));
        let now = self.now();
        let old = self
            .store
            .backend()
            .get(run.tenant, FAILURE_TABLE, &key)
            .await?
            .map(FailedRun::decode)
            .transpose()?;
        let attempts = old.as_ref().map_or(0, |f| f.attempts) + 1;
        let f = FailedRun {
            rule: run.rule.id,
            occurrence: run.occurrence.clone(),
            action,
            record: Some(run.record.clone()),
            depth: run.depth,
            attempts,
            next_attempt: self.next_attempt(attempts, now),
            error: err.to_string(),
            first_at: old.map_or(now, |f| f.first_at),
            last_at: now,
        };
        self.commit_once(
            run.tenant,
            vec![
                Write::Delete {
                    table: FAILURE_TABLE,
                    key: key.clone(),
                },
                Write::Insert {
                    table: FAILURE_TABLE,
                    row: f.row(),
                },
            ],
        )
        .await
    }

    /// When attempt `attempts + 1` is due: the backoff doubled per attempt, or never once
    /// the attempts are used up.
    fn next_attempt(&self, attempts: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (attempts < self.config.max_attempts).then(|| {
            let factor = 1i32 << attempts.saturating_sub(1).min(20);
            now + self.config.backoff * factor
        })
    }

    /// Applies one action.
    pub(crate) async fn apply(
        &self,
        ctx: &Ctx,
        run: &RuleRun<'_>,
        index: u32,
        action: &Action,
    ) -> Result<bool> {
        let records = self.store.records();
        let target = &run.record;
        let kind = target.kind.as_str();
        match action {
            Action::SetFields { fields } => {
                let body: JsonMap = fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Json::String(s) if s.contains("{{") => {
                                Json::String(render(s, &run.after))
                            }
                            v => v.clone(),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                self.patch_current(ctx, run, |cur| {
                    let differs = body.iter().any(|(k, v)| cur.get(k) != Some(v));
                    differs.then(|| body.clone())
                })
                .await
            }
            Action::AddTag { tag } | Action::RemoveTag { tag } => {
                let add = matches!(action, Action::AddTag { .. });
                self.patch_current(ctx, run, |cur| {
                    let mut tags: Vec<Json> = cur
                        .get("tags")
                        .and_then(Json::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let has = tags.iter().any(|t| t.as_str() == Some(tag));
                    match (add, has) {
                        (true, false) => tags.push(Json::String(tag.clone())),
                        (false, true) => tags.retain(|t| t.as_str() != Some(tag)),
                        _ => return None,
                    }
                    let mut m = JsonMap::new();
                    m.insert("tags".into(), Json::Array(tags));
                    Some(m)
                })
                .await
            }
            Action::CreateActivity {
                activity_type,
                subject,
                due_in,
            } => {
                let mut details = JsonMap::new();
                if let Some(due) = due_in {
                    let at = crate::timing::after(&self.store, ctx, self.now(), due).await?;
                    details.insert(
                        "due".into(),
                        serde_json::json!({"type": "at", "at": at, "time_zone": "UTC"}),
                    );
                }
                if activity_type == "note" {
                    details.insert("body".into(), Json::String(render(subject, &run.after)));
                    details.insert("author".into(), serde_json::json!(ctx.actor().user));
                }
                let body = serde_json::json!({
                    "type": activity_type,
                    "subject": render(subject, &run.after),
                    "related": [target],
                    "details": details,
                });
                records.create(ctx, "activity", body).await.map(|_| true)
            }
            Action::LogNote { body } => {
                let text = render(body, &run.after);
                let body = serde_json::json!({
                    "type": "note",
                    "related": [target],
                    "details": {"body": text, "author": ctx.actor().user},
                });
                records.create(ctx, "activity", body).await.map(|_| true)
            }
            Action::CreateTicket { subject, priority } => {
                let mut body = JsonMap::new();
                body.insert("subject".into(), Json::String(render(subject, &run.after)));
                if let Some(p) = priority {
                    body.insert("priority".into(), Json::String(p.clone()));
                }
                match kind {
                    "contact" => {
                        body.insert("requester".into(), serde_json::json!(target.id));
                        if let Some(o) = run.after.get("organization").filter(|o| !o.is_null()) {
                            body.insert("organization".into(), o.clone());
                        }
                    }
                    // A ticket's follow-up ticket: the same requester and organization.
                    _ => {
                        for f in ["requester", "requester_phone", "organization"] {
                            if let Some(v) = run.after.get(f).filter(|v| !v.is_null()) {
                                body.insert(f.into(), v.clone());
                            }
                        }
                    }
                }
                records
                    .create(ctx, "ticket", Json::Object(body))
                    .await
                    .map(|_| true)
            }
            Action::Notify {
                channel,
                to,
                to_field,
                subject,
                body,
            } => {
                let to = match (to, to_field) {
                    (Some(u), _) => (*u).into(),
                    (None, Some(f)) => self.recipient(ctx, run, *channel, f).await?,
                    (None, None) => run
                        .after
                        .get("owner")
                        .and_then(Json::as_str)
                        .and_then(|s| Uuid::parse_str(s).ok())
                        .map(|u| crmkit_core::UserId::from_uuid(u).into())
                        .ok_or_else(|| {
                            Error::validation("to", format!("the {kind} has no owner to notify"))
                        })?,
                };
                let payload = Payload::Notification {
                    channel: *channel,
                    to,
                    subject: render(subject, &run.after),
                    body: render(body, &run.after),
                };
                self.enqueue(ctx, run, index, payload).await.map(|()| true)
            }
            Action::Webhook { url, secret } => {
                let delivery = Uuid::now_v7();
                let body = serde_json::json!({
                    "delivery": delivery,
                    "tenant": run.tenant,
                    "rule": run.rule.id,
                    "occurrence": run.occurrence,
                    "event": run.event.map(|e| json!({
                        "seq": e.seq,
                        "kind": e.kind,
                        "changed": e.changed,
                        "at": e.at,
                    })),
                    "record": run.after,
                })
                .to_string();
                let payload = Payload::Webhook {
                    url: url.clone(),
                    signature: sign(secret, &body),
                    body,
                };
                self.enqueue_with_id(ctx, run, index, delivery, payload)
                    .await
                    .map(|()| true)
            }
            Action::Custom { kind: k, params } => {
                let params = render_strings(params, &run.after);
                self.module_action(ctx, k, target, params)
                    .await
                    .map(|()| false)
            }
            Action::AssignOwner {
                strategy,
                team,
                users,
                capacity,
            } => {
                let a = crate::assign::Assignment {
                    rule: run.rule.id,
                    action: index,
                    strategy: *strategy,
                    team: *team,
                    users,
                    capacity: capacity.as_ref(),
                };
                crate::assign::assign(&self.store, ctx, &a, target)
                    .await
                    .map(|_| false)
            }
            Action::EnrolSequence { sequence } => {
                crate::enrolments::enrol(self, ctx, run, *sequence).await
            }
            Action::LeaveSequence { sequence } => {
                crate::enrolments::leave(self, ctx, run, *sequence).await
            }
            Action::MoveDealToStage { stage } => self
                .module_action(ctx, "deal.move_to_stage", target, json!({ "stage": stage }))
                .await
                .map(|()| false),
            Action::SetLeadStatus { status } => self
                .module_action(ctx, "lead.set_status", target, json!({ "status": status }))
                .await
                .map(|()| false),
            Action::SetLeadScore { score } => self
                .module_action(ctx, "lead.set_score", target, json!({ "score": score }))
                .await
                .map(|()| false),
            Action::AddToCampaign { campaign } => {
                let p = json!({ "campaign": campaign });
                self.module_action(ctx, "campaign.add_member", target, p)
                    .await
                    .map(|()| false)
            }
            Action::EscalateTicket { reason } => {
                let p = json!({ "reason": render(reason, &run.after) });
                self.module_action(ctx, "ticket.escalate", target, p)
                    .await
                    .map(|()| false)
            }
        }
    }

    /// Whom the field `field` of the run's record names, for a notification on
    /// `channel`: a user, or a contact (loaded as the rule's owner sees it) with their
    /// first email address or phone number.
    async fn recipient(
        &self,
        ctx: &Ctx,
        run: &RuleRun<'_>,
        channel: crate::Channel,
        field: &str,
    ) -> Result<crate::Recipient> {
        let records = self.store.records();
        let kind = run.record.kind.as_str();
        let d = records.describe(ctx, kind).await?;
        let target = match d.get(field).map(|f| &f.ty) {
            Some(FieldType::Id) if field == "id" && kind == "contact" => RecordKind::CONTACT,
            Some(FieldType::Reference(to)) => to.clone(),
            _ => {
                return Err(Error::validation(
                    "to_field",
                    format!("{field} of a {kind} names no user or contact"),
                ));
            }
        };
        let id = run
            .after
            .get(field)
            .and_then(Json::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| {
                Error::validation("to_field", format!("the {kind} has no {field} to notify"))
            })?;
        if target == RecordKind::USER {
            return Ok(crmkit_core::UserId::from_uuid(id).into());
        }
        if target != RecordKind::CONTACT {
            return Err(Error::validation(
                "to_field",
                format!("{field} of a {kind} names no user or contact"),
            ));
        }
        let contact = if field == "id" {
            run.after.clone()
        } else {
            records.get(ctx, "contact", id).await?.into_value()
        };
        let (list, key, what) = match channel {
            crate::Channel::Email => ("emails", "address", "email address"),
            crate::Channel::Sms => ("phones", "number", "phone number"),
            crate::Channel::Chat => {
                return Err(Error::validation(
                    "channel",
                    "chat notifications go to users only",
                ));
            }
        };
        let address = contact
            .get(list)
            .and_then(Json::as_array)
            .and_then(|l| l.first())
            .and_then(|a| a.get(key))
            .and_then(Json::as_str)
            .ok_or_else(|| Error::validation("to_field", format!("the contact has no {what}")))?;
        let part = |k: &str| contact.get(k).and_then(Json::as_str).unwrap_or_default();
        let name = format!("{} {}", part("first_name"), part("last_name"))
            .trim()
            .to_owned();
        Ok(crate::Recipient::Contact {
            contact: crmkit_core::ContactId::from_uuid(id),
            name,
            address: address.to_owned(),
        })
    }

    /// Runs an action kind a composed module offers (the built-in actions that are
    /// another module's command: moving a deal is the pipeline module's `Deals` command).
    pub(crate) async fn module_action(
        &self,
        ctx: &Ctx,
        kind: &str,
        target: &RecordRef,
        params: Json,
    ) -> Result<()> {
        let a = self.actions.get(kind).ok_or_else(|| {
            Error::Config(format!(
                "no composed module offers the action kind {kind} (is its module composed?)"
            ))
        })?;
        a.run(&self.store, ctx, Some(target), &params)
            .await
            .map(|_| ())
    }

    /// Patches the current version of the run's record with what `body` makes of it
    /// (`None`: nothing to change), again on a concurrent change (up to three times).
    /// Whether it committed.
    async fn patch_current(
        &self,
        ctx: &Ctx,
        run: &RuleRun<'_>,
        body: impl Fn(&Json) -> Option<JsonMap>,
    ) -> Result<bool> {
        let records = self.store.records();
        let target = &run.record;
        let kind = target.kind.as_str();
        let mut attempt = 0;
        // First the record as this run last saw it (loaded when the rule started, or as
        // the rule's previous patch left it); read again only after a concurrent change.
        let mut fresh: Option<crmkit_core::record::Record> = None;
        loop {
            let (b, version) = match &fresh {
                Some(r) => (body(r.value()), r.version()),
                None => match &*run.latest.lock().unwrap_or_else(|p| p.into_inner()) {
                    Latest::After => (
                        body(&run.after),
                        crmkit_core::record::version_of(&run.after),
                    ),
                    Latest::Record(r) => (body(r.value()), r.version()),
                },
            };
            let Some(b) = b else {
                return Ok(false);
            };
            let version =
                version.ok_or_else(|| Error::storage(format!("a {kind} without a version")))?;
            match records
                .patch(ctx, kind, target.id, version, Json::Object(b))
                .await
            {
                Ok(r) => {
                    // A module may find nothing to change after all (a value it
                    // normalises to the same): only a new version is a commit.
                    let committed = r.version().is_some_and(|v| v > version);
                    *run.latest.lock().unwrap_or_else(|p| p.into_inner()) = Latest::Record(r);
                    return Ok(committed);
                }
                Err(Error::Conflict { .. }) if attempt < 2 => {
                    attempt += 1;
                    fresh = Some(records.get(ctx, kind, target.id).await?);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn enqueue(&self, ctx: &Ctx, run: &RuleRun<'_>, index: u32, p: Payload) -> Result<()> {
        self.enqueue_with_id(ctx, run, index, Uuid::now_v7(), p)
            .await
    }

    /// Writes a delivery in the action's commit (the run-log line joins it there).
    async fn enqueue_with_id(
        &self,
        ctx: &Ctx,
        run: &RuleRun<'_>,
        index: u32,
        id: Uuid,
        payload: Payload,
    ) -> Result<()> {
        let now = self.now();
        let d = Delivery {
            id,
            rule: run.rule.id,
            occurrence: run.occurrence.clone(),
            action: index,
            payload,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt: Some(now),
            error: None,
            created_at: now,
            delivered_at: None,
        };
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: OUTBOX_TABLE,
            row: d.row(),
        });
        self.store.commit(cs).await.map(|_| ())
    }

    /// Fires the timers that are due, runs the schedules whose instant has come, retries
    /// the failed actions that are due, runs the sequence steps that are due
    /// ([`Engine::advance_sequences`]), recomputes the decayed lead scores that are due
    /// ([`crate::scoring`]), then delivers what is due in the outbox.
    pub async fn tick(&self, tenant: TenantId) -> Result<(RunReport, DeliveryReport)> {
        let mut runs = self
            .fire_timers(tenant, crmkit_core::query::MAX_LIMIT)
            .await?;
        runs += self.run_schedules(tenant).await?;
        runs += self.retry_due(tenant).await?;
        runs += self.advance_sequences(tenant).await?;
        runs += crate::scoring::decay_due(self, tenant).await?;
        let deliveries = self.deliver(tenant, crmkit_core::query::MAX_LIMIT).await?;
        Ok((runs, deliveries))
    }

    /// Runs again the failed actions whose next attempt is due (and the rule's later
    /// actions after each). The rule's conditions are not evaluated again: it decided to
    /// act when it first ran. A failed run of a rule that is now disabled or deleted stays
    /// failed, given up.
    pub async fn retry_due(&self, tenant: TenantId) -> Result<RunReport> {
        let now = self.now();
        let mut s = Select::new(
            FAILURE_TABLE,
            Cond::Cmp("next_at".into(), CmpOp::Lte, Value::timestamp(now)),
        );
        s.order = vec![OrderKey::asc("next_at")];
        s.limit = Some(crmkit_core::query::MAX_LIMIT);
        let due = self.select_decoded(tenant, &s, FailedRun::decode).await?;
        let mut report = RunReport::default();
        let rules = self.rule_set(tenant, true).await?;
        self.forget_owners();
        for f in due {
            self.retry_one(tenant, &rules, f, &mut report).await?;
        }
        Ok(report)
    }

    pub(crate) async fn give_up(
        &self,
        tenant: TenantId,
        mut f: FailedRun,
        why: &str,
    ) -> Result<()> {
        f.next_attempt = None;
        f.error = why.to_owned();
        f.last_at = self.now();
        let key = runlog::key(f.rule, &f.occurrence, Some(f.action));
        self.commit_once(
            tenant,
            vec![
                Write::Delete {
                    table: FAILURE_TABLE,
                    key,
                },
                Write::Insert {
                    table: FAILURE_TABLE,
                    row: f.row(),
                },
            ],
        )
        .await
    }

    async fn retry_one(
        &self,
        tenant: TenantId,
        rules: &RuleSet,
        f: FailedRun,
        report: &mut RunReport,
    ) -> Result<()> {
        let key = runlog::key(f.rule, &f.occurrence, Some(f.action));
        if self.recorded_attempt(tenant, &key).await?.is_some() {
            // Applied meanwhile (a redelivery of its event): the failed run is stale.
            let w = Write::Delete {
                table: FAILURE_TABLE,
                key,
            };
            return self.commit_once(tenant, vec![w]).await;
        }
        let Some(rule) = rules.by_id.get(&f.rule).cloned() else {
            return self
                .give_up(tenant, f, "the rule is disabled or deleted")
                .await;
        };
        if f.occurrence.starts_with('q') {
            return crate::enrolments::retry(self, tenant, rules, f, report).await;
        }
        if f.occurrence.starts_with('t') || f.occurrence.starts_with('s') {
            return crate::timers::retry(self, tenant, &rule, f, report).await;
        }
        let Some(seq) = seq_of(&f.occurrence) else {
            return self.give_up(tenant, f, "unknown occurrence").await;
        };
        let mut s = Select::new(EVENTS_TABLE, Cond::eq("seq", Value::Int(seq as i64)));
        s.limit = Some(1);
        let Some(row) = self
            .store
            .backend()
            .select(tenant, &s)
            .await?
            .into_iter()
            .next()
        else {
            return self.give_up(tenant, f, "the event is gone").await;
        };
        let e = decode_event(tenant, &row)?;
        let ctx = match self.owner_ctx(tenant, &rule).await? {
            Ok(c) => c,
            Err(why) => return self.give_up(tenant, f, &why).await,
        };
        let after = match self.load(&ctx, &e).await? {
            Ok(v) => v,
            Err(why) => return self.give_up(tenant, f, &why).await,
        };
        let run = RuleRun {
            tenant,
            rule: &rule,
            occurrence: f.occurrence.clone(),
            depth: f.depth,
            record: e.record.clone(),
            latest: Mutex::new(Latest::After),
            after,
            event: Some(&e),
            retry: true,
        };
        self.run_actions(&ctx, &run, f.action as usize, report)
            .await
    }

    /// Delivers up to `limit` due notifications and webhook calls of the outbox, each
    /// within [`EngineConfig::delivery_timeout`]; a failure is tried again with backoff,
    /// then given up (and listed by [`Engine::deliveries`]). Deliveries happen at least
    /// once: a crash between the host's send and its record here sends again, with the
    /// same delivery id. Needs a tokio runtime with the time driver (for the timeout).
    pub async fn deliver(&self, tenant: TenantId, limit: u32) -> Result<DeliveryReport> {
        let now = self.now();
        let mut s = Select::new(
            OUTBOX_TABLE,
            Cond::eq("status", DeliveryStatus::Pending.as_str()).and(Cond::Cmp(
                "next_at".into(),
                CmpOp::Lte,
                Value::timestamp(now),
            )),
        );
        s.order = vec![OrderKey::asc("next_at"), OrderKey::asc("id")];
        s.limit = Some(limit.clamp(1, crmkit_core::query::MAX_LIMIT));
        let due = self.select_decoded(tenant, &s, Delivery::decode).await?;
        let mut report = DeliveryReport::default();
        for d in due {
            let sent = match &d.payload {
                Payload::Notification {
                    channel,
                    to,
                    subject,
                    body,
                } => match &self.notifier {
                    None => None,
                    Some(n) => {
                        let note = Notification {
                            delivery: d.id,
                            tenant,
                            rule: d.rule,
                            channel: *channel,
                            to: to.clone(),
                            subject: subject.clone(),
                            body: body.clone(),
                        };
                        Some(self.timed(n.send(&note)).await)
                    }
                },
                Payload::Webhook {
                    url,
                    body,
                    signature,
                } => match &self.webhooks {
                    None => None,
                    Some(w) => {
                        let call = WebhookCall {
                            delivery: d.id,
                            tenant,
                            rule: d.rule,
                            url: url.clone(),
                            body: body.clone(),
                            signature: signature.clone(),
                        };
                        Some(self.timed(w.post(&call)).await)
                    }
                },
            };
            let Some(sent) = sent else {
                report.no_transport += 1;
                continue;
            };
            let at = self.now();
            let set = match sent {
                Ok(()) => {
                    report.delivered += 1;
                    vec![
                        (
                            "status",
                            Value::Text(DeliveryStatus::Delivered.as_str().into()),
                        ),
                        ("attempts", Value::Int(i64::from(d.attempts) + 1)),
                        ("next_at", Value::Null),
                        ("error", Value::Null),
                        ("delivered_at", Value::timestamp(at)),
                    ]
                }
                Err(why) => {
                    report.failed += 1;
                    let attempts = d.attempts + 1;
                    let next = self.next_attempt(attempts, at);
                    let status = if next.is_some() {
                        DeliveryStatus::Pending
                    } else {
                        DeliveryStatus::Failed
                    };
                    vec![
                        ("status", Value::Text(status.as_str().into())),
                        ("attempts", Value::Int(i64::from(attempts))),
                        ("next_at", Value::opt_timestamp(next)),
                        ("error", Value::Text(why)),
                    ]
                }
            };
            let w = Write::UpdateWhere {
                table: OUTBOX_TABLE,
                cond: Cond::eq("id", d.id),
                set,
            };
            self.store.commit(self.changeset(tenant, vec![w])).await?;
        }
        Ok(report)
    }

    async fn timed(
        &self,
        f: crmkit_core::store::BoxFuture<'_, std::result::Result<(), String>>,
    ) -> std::result::Result<(), String> {
        match tokio::time::timeout(self.config.delivery_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {:?}",
                self.config.delivery_timeout
            )),
        }
    }

    /// Whether the actor manages every rule (Admin, Manager) or only their own.
    fn sees_rule(ctx: &Ctx, owner: crmkit_core::UserId) -> bool {
        Rules::manages_all(ctx) || owner == ctx.actor().user
    }

    /// The run log of a rule the actor can see (a hidden rule is NotFound, like a missing
    /// one), newest first, at most `limit` (1 to 1000) lines.
    pub async fn runs_of_rule(&self, ctx: &Ctx, rule: RuleId, limit: u32) -> Result<Vec<RunEntry>> {
        check_limit(limit)?;
        Rules::new(&self.store)?.get(ctx, rule).await?;
        let mut s = Select::new(RUN_TABLE, Cond::eq("rule_id", rule.as_uuid()));
        s.order = vec![
            OrderKey::desc("at"),
            OrderKey::desc("occurrence"),
            OrderKey::desc("action"),
        ];
        s.limit = Some(limit);
        self.select_decoded(ctx.tenant(), &s, runlog::decode_run)
            .await
    }

    /// The run log of a record the actor can see (a hidden record is NotFound, like a
    /// missing one), newest first, at most `limit` (1 to 1000) lines, of the rules the
    /// actor can see.
    pub async fn runs_of_record(
        &self,
        ctx: &Ctx,
        record: &RecordRef,
        limit: u32,
    ) -> Result<Vec<RunEntry>> {
        check_limit(limit)?;
        let records = self.store.records();
        let kind = record.kind.as_str();
        // Deleted records keep their run log; their audit trail is what the actor may
        // still read of them.
        records.audit(ctx, kind, record.id).await?;
        let owners = self.rule_owners(ctx.tenant()).await?;
        let mut s = Select::new(
            RUN_TABLE,
            Cond::eq("record_kind", kind).and(Cond::eq("record_id", record.id)),
        );
        s.order = vec![
            OrderKey::desc("at"),
            OrderKey::desc("rule_id"),
            OrderKey::desc("occurrence"),
            OrderKey::desc("action"),
        ];
        let mut out = self
            .select_decoded(ctx.tenant(), &s, runlog::decode_run)
            .await?;
        out.retain(|l| Self::sees(ctx, &owners, l.rule));
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Whether the actor may see rule `rule` (of `owners`: every rule's owner).
    fn sees(ctx: &Ctx, owners: &HashMap<RuleId, crmkit_core::UserId>, rule: RuleId) -> bool {
        owners.get(&rule).is_some_and(|o| Self::sees_rule(ctx, *o))
    }

    /// Every rule's owner (deleted rules too), by rule.
    async fn rule_owners(&self, tenant: TenantId) -> Result<HashMap<RuleId, crmkit_core::UserId>> {
        let mut s = Select::new(RULE_TABLE, Cond::True);
        s.omit = vec!["definition".into()];
        let rows = self.store.backend().select(tenant, &s).await?;
        let mut out = HashMap::new();
        for r in rows {
            if let (Some(id), Some(owner)) = (r[0].as_uuid(), r[8].as_uuid()) {
                out.insert(RuleId::from_uuid(id), crmkit_core::UserId::from_uuid(owner));
            }
        }
        Ok(out)
    }

    /// The failed runs of the rules the actor can see (waiting for a retry, or given
    /// up), oldest first.
    pub async fn failed(&self, ctx: &Ctx) -> Result<Vec<FailedRun>> {
        let owners = self.rule_owners(ctx.tenant()).await?;
        let mut s = Select::new(FAILURE_TABLE, Cond::True);
        s.order = vec![
            OrderKey::asc("first_at"),
            OrderKey::asc("rule_id"),
            OrderKey::asc("occurrence"),
            OrderKey::asc("action"),
        ];
        let mut out = self
            .select_decoded(ctx.tenant(), &s, FailedRun::decode)
            .await?;
        out.retain(|f| Self::sees(ctx, &owners, f.rule));
        Ok(out)
    }

    /// Makes a failed run due now (also one the engine gave up), for the next
    /// [`Engine::tick`]. The actor must be able to change the rule (a hidden rule's run is
    /// NotFound, like a missing one).
    pub async fn retry(
        &self,
        ctx: &Ctx,
        rule: RuleId,
        occurrence: &str,
        action: u32,
    ) -> Result<FailedRun> {
        ctx.actor().require_write("retry an automation run")?;
        Rules::new(&self.store)?.get(ctx, rule).await?;
        let key = runlog::key(rule, occurrence, Some(action));
        let not_found = || Error::not_found(crate::RULE_KIND, rule);
        let row = self
            .store
            .backend()
            .get(ctx.tenant(), FAILURE_TABLE, &key)
            .await?
            .ok_or_else(not_found)?;
        let mut f = FailedRun::decode(row)?;
        f.next_attempt = Some(self.now());
        self.store
            .commit(self.changeset(
                ctx.tenant(),
                vec![
                    Write::Delete {
                        table: FAILURE_TABLE,
                        key,
                    },
                    Write::Insert {
                        table: FAILURE_TABLE,
                        row: f.row(),
                    },
                ],
            ))
            .await?;
        Ok(f)
    }

    /// The outbox (Admin and Manager): deliveries with `status`, oldest first, at most
    /// `limit` (1 to 1000).
    pub async fn deliveries(
        &self,
        ctx: &Ctx,
        status: DeliveryStatus,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        check_limit(limit)?;
        if !(ctx.actor().has(Role::Admin) || ctx.actor().has(Role::Manager)) {
            return Err(Error::PermissionDenied(
                "the delivery outbox needs the admin or manager role".into(),
            ));
        }
        let mut s = Select::new(OUTBOX_TABLE, Cond::eq("status", status.as_str()));
        s.order = vec![OrderKey::asc("created_at"), OrderKey::asc("id")];
        s.limit = Some(limit);
        self.select_decoded(ctx.tenant(), &s, Delivery::decode)
            .await
    }

    /// Sends a given-up delivery again at the next [`Engine::deliver`] (Admin and
    /// Manager).
    pub async fn retry_delivery(&self, ctx: &Ctx, id: Uuid) -> Result<()> {
        if !(ctx.actor().has(Role::Admin) || ctx.actor().has(Role::Manager)) {
            return Err(Error::PermissionDenied(
                "the delivery outbox needs the admin or manager role".into(),
            ));
        }
        let row = self
            .store
            .backend()
            .get(ctx.tenant(), OUTBOX_TABLE, &[Value::Uuid(id)])
            .await?;
        let found = row.map(Delivery::decode).transpose()?;
        match found {
            Some(d) if d.status == DeliveryStatus::Failed => {
                let w = Write::UpdateWhere {
                    table: OUTBOX_TABLE,
                    cond: Cond::eq("id", id),
                    set: vec![
                        (
                            "status",
                            Value::Text(DeliveryStatus::Pending.as_str().into()),
                        ),
                        ("next_at", Value::timestamp(self.now())),
                    ],
                };
                self.store
                    .commit(self.changeset(ctx.tenant(), vec![w]))
                    .await
                    .map(|_| ())
            }
            Some(_) => Err(Error::validation(
                "id",
                "only a delivery that was given up can be retried",
            )),
            None => Err(Error::validation("id", "no such delivery")),
        }
    }
}

/// `params` with every string rendered as a template over `record` (a custom action's
/// parameters may use `{{field}}` placeholders like the built-in actions' texts).
fn render_strings(params: &Json, record: &Json) -> Json {
    match params {
        Json::String(s) if s.contains("{{") => Json::String(render(s, record)),
        Json::Array(items) => {
            Json::Array(items.iter().map(|v| render_strings(v, record)).collect())
        }
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render_strings(v, record)))
                .collect(),
        ),
        v => v.clone(),
    }
}

/// Why a rule's conditions did not hold, for the run log.
pub(crate) fn why_not(explanation: &crate::Explanation) -> String {
    let failed: Vec<String> = explanation
        .steps
        .iter()
        .filter(|s| s.outcome != Outcome::Held)
        .map(|s| format!("{}: {}", s.path, s.reason))
        .collect();
    format!("conditions did not hold ({})", failed.join("; "))
}

/// The record as a rule's run last saw it.
pub(crate) enum Latest {
    /// As loaded when the rule started ([`RuleRun::after`]).
    After,
    /// As the run's last patch returned it.
    Record(crmkit_core::record::Record),
}

/// One rule running for one occurrence.
pub(crate) struct RuleRun<'a> {
    pub(crate) tenant: TenantId,
    pub(crate) rule: &'a Rule,
    pub(crate) occurrence: String,
    pub(crate) depth: u32,
    pub(crate) record: RecordRef,
    /// The record as the rule sees it.
    pub(crate) after: Json,
    /// The event that triggered it (`None` for a timer).
    pub(crate) event: Option<&'a Event>,
    /// The record as this run last saw it (`after` until a patch of the run returns a
    /// newer one; parsed only if a later action reads it).
    pub(crate) latest: Mutex<Latest>,
    /// Whether this run retries a failed one (its actions then clear the failed run).
    pub(crate) retry: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_name_record_and_event_triggers() {
        let e = Event {
            tenant: TenantId::new(),
            seq: 1,
            kind: "deal.updated".into(),
            record: RecordRef::new(crmkit_core::RecordKind::new("deal"), Uuid::now_v7()),
            changed: vec![],
            payload: Json::Null,
            actor: None,
            origin: "api".into(),
            at: Utc::now(),
            rule: None,
            depth: 0,
        };
        let e = Event {
            changed: vec!["title".into(), "custom".into(), "amount".into()],
            ..e
        };
        assert_eq!(
            event_keys(&e),
            [
                "event:deal.updated",
                "updated:deal",
                "updated:deal.amount",
                "updated:deal.custom",
                "updated:deal.title"
            ]
        );
        let moved = Event {
            kind: "deal.moved".into(),
            ..e
        };
        assert_eq!(event_keys(&moved), ["event:deal.moved"]);
        assert_eq!(seq_of(&occurrence_of(42)), Some(42));
        assert!(changed(&["custom".into()], "custom.tier"));
        assert!(!changed(&["name".into()], "title"));
    }
}
