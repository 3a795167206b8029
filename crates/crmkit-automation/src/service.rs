//! The rules table, its rows, and the [`Rules`] API.

use std::sync::Arc;

use crmkit_core::event::decode_timestamp;
use crmkit_core::query::{FieldSpec, FieldType as Q, RecordFields};
use crmkit_core::row::{opt_timestamp as opt_ts, take_text as text, uuid};
use crmkit_core::service::{self, OwnerChecks, stage_created};
use crmkit_core::store::{ColumnType, Cond, IndexDef, Row, TableDef, Value, Write, columns};
use crmkit_core::text::fold;
use crmkit_core::{
    Changeset, Ctx, Error, Page, Query, RecordKind, RecordRef, Result, Role, RuleId, Store, UserId,
    ValidationErrors, Visibility,
};
use serde::{Deserialize, Serialize};

use crate::eval::{Change, Explanation, evaluate_conditions};
use crate::model::{Action, Conditions, FORMAT, NewRule, Rule, RuleDefinition, RulePatch, Trigger};
use crate::validate::check_rule;
use crmkit_core::action::CustomActions;

/// The rules table.
pub const RULE_TABLE: &str = "automation_rules";
/// The record kind of rules.
pub const RULE_KIND: RecordKind = RecordKind::new("automation_rule");

/// Event kinds the module emits.
pub const EVENT_KINDS: &[&str] = &[
    "automation_rule.created",
    "automation_rule.updated",
    "automation_rule.deleted",
    "automation_rule.restored",
    "automation_rule.enabled",
    "automation_rule.disabled",
];

const RULE_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("name", Text(200), false),
        ("name_fold", Text(200), false),
        ("enabled", Bool, false),
        ("trigger_kind", Text(32), false),
        ("record_kind", Text(64), true),
        ("event_kind", Text(128), true),
        ("definition", LongText, false),
        ("owner_id", Uuid, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(RULE_TABLE, columns(RULE_COLUMNS), ["id"])
            .index(IndexDef::new("automation_rules_owner", ["owner_id", "id"]))
            .index(IndexDef::new(
                "automation_rules_dispatch",
                ["enabled", "trigger_kind", "record_kind", "id"],
            ))
            .index(IndexDef::new(
                "automation_rules_event",
                ["enabled", "event_kind", "id"],
            ))
            .index(IndexDef::new("automation_rules_name", ["name_fold", "id"])),
    ]
}

/// Queryable rule fields.
pub const RULE_FIELDS: RecordFields = RecordFields {
    kind: RULE_KIND,
    table: RULE_TABLE,
    fields: &[
        FieldSpec::new("id", Q::Uuid, false),
        FieldSpec::new("name", Q::Text, false).folded("name_fold"),
        FieldSpec::new("enabled", Q::Bool, false),
        FieldSpec::new("trigger_kind", Q::Enum(crate::model::TRIGGER_KINDS), false),
        FieldSpec::new("record_kind", Q::Text, true),
        FieldSpec::new("event_kind", Q::Text, true),
        FieldSpec::new("owner", Q::Uuid, false).in_column("owner_id"),
        FieldSpec::new("created_at", Q::Timestamp, false),
        FieldSpec::new("updated_at", Q::Timestamp, false),
        FieldSpec::new("deleted_at", Q::Timestamp, true),
    ],
    custom_column: None,
};

/// The stored definition column: trigger, conditions and actions.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    trigger: Trigger,
    conditions: Conditions,
    actions: Vec<Action>,
    #[serde(default)]
    retrigger_on_own_changes: bool,
}

fn rule_row(r: &Rule) -> Result<Row> {
    let def = serde_json::to_string(&Stored {
        format: r.format,
        trigger: r.trigger.clone(),
        conditions: r.conditions.clone(),
        actions: r.actions.clone(),
        retrigger_on_own_changes: r.retrigger_on_own_changes,
    })
    .map_err(|e| Error::storage_from("rule definition", e))?;
    let event = match &r.trigger {
        Trigger::Event { event } => Some(event.clone()),
        _ => None,
    };
    let record_kind = match &r.trigger {
        Trigger::Event { .. } => None,
        t => t.record_kind().map(str::to_owned),
    };
    Ok(vec![
        Value::Uuid(r.id.as_uuid()),
        Value::Text(r.name.clone()),
        Value::Text(fold(&r.name)),
        Value::from(r.enabled),
        Value::Text(r.trigger.kind_name().into()),
        Value::opt_text(record_kind),
        Value::opt_text(event),
        Value::Text(def),
        Value::Uuid(r.owner.as_uuid()),
        Value::timestamp(r.created_at),
        Value::timestamp(r.updated_at),
        Value::opt_timestamp(r.deleted_at),
        Value::Int(r.version as i64),
    ])
}

/// What a webhook action's secret reads as, everywhere (typed get and list, the generic
/// record API, audit entries, event payloads, dry runs). Shorter than any valid secret, so
/// it is never mistaken for one.
pub const WEBHOOK_SECRET_MASK: &str = "********";

/// Masks the webhook secrets of `actions`.
fn redact(actions: &mut [Action]) {
    for a in actions {
        if let Action::Webhook { secret, .. } = a {
            *secret = WEBHOOK_SECRET_MASK.into();
        }
    }
}

/// The rule as it reads: webhook secrets masked.
fn shown(mut r: Rule) -> Rule {
    redact(&mut r.actions);
    r
}

/// Gives each webhook action of `actions` whose secret is absent (empty) or the mask the
/// stored secret it keeps: the one of the stored webhook action at the same position,
/// else of the stored webhook action with the same URL. One with neither keeps its
/// mask (and is refused on validation).
fn keep_secrets(actions: &mut [Action], stored: &[Action]) {
    fn webhook(a: &Action) -> Option<(&String, &String)> {
        match a {
            Action::Webhook { url, secret } => Some((url, secret)),
            _ => None,
        }
    }
    for (i, a) in actions.iter_mut().enumerate() {
        let Action::Webhook { url, secret } = a else {
            continue;
        };
        if !secret.is_empty() && secret != WEBHOOK_SECRET_MASK {
            continue;
        }
        let kept = stored
            .get(i)
            .and_then(webhook)
            .or_else(|| stored.iter().filter_map(webhook).find(|(u, _)| *u == url));
        if let Some((_, s)) = kept {
            *secret = s.clone();
        }
    }
}

/// A rule row as it reads (webhook secrets masked).
fn decode_rule(r: Vec<Value>) -> Result<Rule> {
    decode_stored_rule(r).map(shown)
}

/// A rule row as stored, webhook secrets included: never returned to a caller.
pub(crate) fn decode_stored_rule(mut r: Vec<Value>) -> Result<Rule> {
    let bad = |w: &str| Error::storage(format!("malformed automation rule row: {w}"));
    let stored: Stored = serde_json::from_str(r[7].as_text().ok_or_else(|| bad("definition"))?)
        .map_err(|e| Error::storage_from("malformed automation rule row: definition", e))?;
    Ok(Rule {
        id: RuleId::from_uuid(uuid(&r[0])?),
        format: stored.format,
        name: text(&mut r[1])?,
        enabled: r[3].as_int().ok_or_else(|| bad("enabled"))? != 0,
        trigger: stored.trigger,
        conditions: stored.conditions,
        actions: stored.actions,
        retrigger_on_own_changes: stored.retrigger_on_own_changes,
        owner: UserId::from_uuid(uuid(&r[8])?),
        created_at: decode_timestamp(&r[9])?,
        updated_at: decode_timestamp(&r[10])?,
        deleted_at: opt_ts(&r[11])?,
        version: r[12].as_int().ok_or_else(|| bad("version"))? as u64,
    })
}

crmkit_core::stored_record!(Rule, RuleId, RULE_KIND, RULE_TABLE, decode_rule,
    access: |r| (Some(r.owner), None));

/// The result of [`Rules::dry_run`]: what the rule would do on a record, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRun {
    /// The record it ran on.
    pub record: RecordRef,
    /// Whether the conditions hold, and each condition's result.
    pub explanation: Explanation,
    /// The actions that would run, in order: the rule's when the conditions hold, none
    /// otherwise.
    pub actions: Vec<Action>,
}

/// The rules API (from [`crate::AutomationModule`] composed into a store).
///
/// ## Access
///
/// - Admin and Manager see and manage every rule of the tenant.
/// - A Rep sees and manages only the rules they own, and can only own rules themselves
///   (giving a rule to someone else is PermissionDenied). A rule owned by someone else is,
///   for a Rep, exactly like a rule that does not exist (NotFound, never listed).
/// - ReadOnly users see the rules they own and change none (PermissionDenied).
/// - **A rule runs with its owner's authority**: when the engine runs a
///   rule, its reads and writes are those of its owner's current roles and teams, and a
///   rule whose owner is no longer an active user does not run. Saving checks the rule
///   as the saving actor sees the tenant: a Rep cannot name records they cannot see
///   (campaigns, references in `set_fields`, calendars).
///
/// ## Webhook secrets are write-only
///
/// A webhook action's `secret` is stored (the outbox signs bodies with it)
/// but never read back: every rule this API returns ([`Rules::get`], [`Rules::list`],
/// what `create` and `update` return, the generic record API, audit entries, event
/// payloads, [`Rules::dry_run`]) shows [`WEBHOOK_SECRET_MASK`] (`"********"`, shorter than
/// any valid secret) in its place. A fixed mask rather than `null` keeps the action's
/// shape, so a rule read back can be given back unchanged: on update, a webhook action
/// whose secret is the mask or absent keeps the stored secret of the webhook action at
/// the same position (else of the stored one with the same URL); a new webhook action
/// must give its secret. An update that changes only a secret is a new version with an
/// `automation_rule.updated` event (`changed: ["actions"]`) and an audit entry per
/// changed secret, `actions[i].secret`, with masked values.
#[derive(Clone)]
pub struct Rules {
    store: Store,
    custom_actions: Arc<CustomActions>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field(
                "custom_actions",
                &self.custom_actions.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn check_format(errs: &mut ValidationErrors, f: Option<u32>) {
    crate::model::check_input_format(errs, "rule", f)
}

/// What an actor sees of rule-like configuration (rules, sequences): Admin, Manager all;
/// others only what they own; soft-deleted rows only when asked for.
pub(crate) fn owned_scope(ctx: &Ctx, include_deleted: bool) -> Cond {
    let mut c = Cond::True;
    if !include_deleted {
        c = c.and(Cond::IsNull("deleted_at".into()));
    }
    if let Visibility::Owned { user, .. } = ctx.actor().visibility() {
        c = c.and(Cond::eq("owner_id", user.as_uuid()));
    }
    c
}

impl Rules {
    /// The API over a store composed with the automation module. It knows the custom
    /// action kinds every composed module offers ([`crmkit_core::Module::automation_actions`]);
    /// a `custom` action of any other kind is refused on save.
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module(crate::MODULE_NAME)?;
        Ok(Rules {
            store: store.clone(),
            custom_actions: store.modules().automation_actions().clone(),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn scope(ctx: &Ctx, include_deleted: bool) -> Cond {
        owned_scope(ctx, include_deleted)
    }

    /// A Rep may only own rules themselves; the owner must be an active user.
    async fn check_owner(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        owner: UserId,
    ) -> Result<()> {
        OwnerChecks::new()
            .check(&self.store, ctx, errs, owner, None)
            .await
    }

    async fn check(&self, ctx: &Ctx, errs: &mut ValidationErrors, r: &Rule) -> Result<()> {
        check_rule(
            &self.store,
            ctx,
            &self.custom_actions,
            errs,
            &r.name,
            &r.trigger,
            &r.conditions,
            &r.actions,
        )
        .await
    }

    /// Creates a rule after validating everything (see the crate docs for the list),
    /// every problem at once in one Validation error naming each part; nothing is written
    /// then. Writes the rule, an audit entry and an `automation_rule.created` event.
    pub async fn create(&self, ctx: &Ctx, input: NewRule) -> Result<Rule> {
        ctx.actor().require_write("create automation rule")?;
        let now = ctx.now();
        let r = Rule {
            id: RuleId::new(),
            format: FORMAT,
            name: input.name,
            enabled: input.enabled,
            trigger: input.trigger,
            conditions: input.conditions,
            actions: input.actions,
            retrigger_on_own_changes: input.retrigger_on_own_changes,
            owner: input.owner.unwrap_or(ctx.actor().user),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        let mut errs = ValidationErrors::new();
        check_format(&mut errs, input.format);
        self.check_owner(ctx, &mut errs, r.owner).await?;
        self.check(ctx, &mut errs, &r).await?;
        errs.into_result()?;
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: RULE_TABLE,
            row: rule_row(&r)?,
        });
        let r = shown(r);
        stage_created(&mut cs, RecordRef::from(r.id), RULE_KIND.as_str(), &r);
        self.store.commit(cs).await?;
        Ok(r)
    }

    /// The stored actions of a rule the caller has loaded (so may see), webhook secrets
    /// included.
    async fn stored_actions(&self, ctx: &Ctx, id: RuleId) -> Result<Vec<Action>> {
        let row = service::row_by_id(&self.store, ctx, RULE_TABLE, RULE_KIND, id).await?;
        Ok(decode_stored_rule(row)?.actions)
    }

    /// Changes a rule whose current version is `expected_version` (else Conflict). The
    /// result is validated as by [`Rules::create`]. An audit entry per changed part and
    /// one `automation_rule.updated` event; a patch that changes nothing writes nothing.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: RuleId,
        expected_version: u64,
        patch: RulePatch,
    ) -> Result<Rule> {
        ctx.actor().require_write("update automation rule")?;
        let old = self.load(ctx, id, Some(false)).await?;
        let stored = self.stored_actions(ctx, id).await?;
        let mut new = old.clone();
        crmkit_core::apply_patch!(patch => new; name, trigger, conditions, actions, retrigger_on_own_changes);
        // `new.actions` with the secrets it keeps (or gives): what is validated and stored.
        keep_secrets(&mut new.actions, &stored);
        let mut errs = ValidationErrors::new();
        check_format(&mut errs, patch.format);
        if let Some(o) = patch.owner {
            new.owner = o;
            self.check_owner(ctx, &mut errs, o).await?;
        }
        self.check(ctx, &mut errs, &new).await?;
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        let new_actions = std::mem::take(&mut new.actions);
        let mut new = Rule {
            actions: new_actions.clone(),
            ..new
        };
        redact(&mut new.actions);
        // Rows as stored: `old` with its stored secrets, `new` with its own. Audit
        // entries and the event payload come from `old` and `new` as they read.
        let old_version = old.version;
        let row = |r: &Rule| {
            let mut r = r.clone();
            r.actions = if r.version == old_version {
                stored.clone()
            } else {
                new_actions.clone()
            };
            rule_row(&r)
        };
        let mut cs = Changeset::new(ctx);
        let staged = service::stage_record_update(
            &self.store,
            &mut cs,
            &old,
            &mut new,
            "automation_rule.updated",
            row,
        )?;
        if staged.is_none() {
            if new_actions == stored {
                return Ok(old);
            }
            // Only secrets changed, which the reading form does not show: the
            // definition is written, with one audit entry per changed secret (masked
            // values) and an `automation_rule.updated` event naming `actions`.
            let def = self.store.backend().schema().table(RULE_TABLE)?;
            let set = service::changed_columns(def, &row(&old)?, &row(&new)?);
            let record = RecordRef::from(id);
            let mask = Some(format!("{WEBHOOK_SECRET_MASK:?}"));
            let audit = new_actions
                .iter()
                .enumerate()
                .filter(|(i, a)| stored.get(*i) != Some(*a))
                .map(|(i, _)| crmkit_core::AuditChange {
                    record: record.clone(),
                    field: format!("actions[{i}].secret"),
                    old: mask.clone(),
                    new: mask.clone(),
                })
                .collect();
            service::stage_update(
                &mut cs,
                service::Changes {
                    record,
                    audit,
                    fields: vec!["actions".into()],
                },
                RULE_TABLE,
                set,
                old.version,
                "automation_rule.updated",
                service::to_json(&new),
            );
        }
        self.store.commit(cs).await?;
        Ok(new)
    }

    async fn set_enabled(
        &self,
        ctx: &Ctx,
        id: RuleId,
        expected_version: u64,
        enabled: bool,
    ) -> Result<Rule> {
        let verb = if enabled { "enable" } else { "disable" };
        ctx.actor()
            .require_write(&format!("{verb} automation rule"))?;
        let old = self.load(ctx, id, Some(false)).await?;
        service::check_version(id, expected_version, old.version)?;
        if old.enabled == enabled {
            return Ok(old);
        }
        if enabled {
            // A rule is enabled only while it is still valid (a stage, user or field it
            // names may have gone since it was saved).
            let mut errs = ValidationErrors::new();
            let mut full = old.clone();
            full.actions = self.stored_actions(ctx, id).await?;
            self.check(ctx, &mut errs, &full).await?;
            errs.into_result()?;
        }
        let mut new = old.clone();
        new.enabled = enabled;
        let event = if enabled {
            "automation_rule.enabled"
        } else {
            "automation_rule.disabled"
        };
        service::update_record(&self.store, ctx, old, new, event, rule_row).await
    }

    /// Enables a rule (validated again first, as on save). Emits `automation_rule.enabled`;
    /// enabling an enabled rule writes nothing.
    pub async fn enable(&self, ctx: &Ctx, id: RuleId, expected_version: u64) -> Result<Rule> {
        self.set_enabled(ctx, id, expected_version, true).await
    }

    /// Disables a rule. Emits `automation_rule.disabled`; disabling a disabled rule writes
    /// nothing.
    pub async fn disable(&self, ctx: &Ctx, id: RuleId, expected_version: u64) -> Result<Rule> {
        self.set_enabled(ctx, id, expected_version, false).await
    }

    /// Lists the rules visible to the actor (Admin and Manager: all; others: their own):
    /// filter, sort, keyset page (fields: [`RULE_FIELDS`]). Deleted ones only with
    /// [`Query::include_deleted`].
    pub async fn list(&self, ctx: &Ctx, q: &Query) -> Result<Page<Rule>> {
        let scope = Self::scope(ctx, q.include_deleted);
        service::list_page(
            &self.store,
            ctx,
            q,
            &RULE_FIELDS,
            scope,
            decode_rule,
            |_| None,
        )
        .await
    }

    /// The dry run of `rule` on a stored record: loads `record` through the generic
    /// record API as the actor (a record hidden from the actor is NotFound, exactly like
    /// a missing one), checks that the rule's trigger is on the record's kind (else a
    /// Validation error on `record.kind`), evaluates the conditions on the record as it
    /// is now and `change` (what changed; `None` when the rule was not started by a
    /// change, so change predicates do not hold) with [`evaluate_conditions`], and returns
    /// the explanation and the actions that would run (all of the rule's when the
    /// conditions hold, none otherwise; webhook secrets masked). Writes nothing: no row, audit entry or event;
    /// runs nothing.
    ///
    /// The rule need not be saved (nor valid: nothing of it but its trigger's kind and
    /// its conditions is looked at); [`Rules::dry_run_saved`] runs a saved one. Any role
    /// may dry-run, on the records it can see.
    pub async fn dry_run(
        &self,
        ctx: &Ctx,
        rule: &RuleDefinition,
        record: RecordRef,
        change: Option<Change>,
    ) -> Result<DryRun> {
        match rule.trigger.record_kind() {
            Some(k) if k == record.kind.as_str() => {}
            Some(k) => {
                return Err(Error::validation(
                    "record.kind",
                    format!("the rule's trigger is on {k} records, not {}", record.kind),
                ));
            }
            None => {
                return Err(Error::validation(
                    "record.kind",
                    "the rule's trigger names no record kind",
                ));
            }
        }
        let json = self
            .store
            .records()
            .get(ctx, record.kind.as_str(), record.id)
            .await?
            .into_value();
        let explanation = evaluate_conditions(&rule.conditions, &json, change.as_ref());
        let mut actions = if explanation.holds {
            rule.actions.clone()
        } else {
            vec![]
        };
        redact(&mut actions);
        Ok(DryRun {
            record,
            explanation,
            actions,
        })
    }

    /// [`Rules::dry_run`] of a saved rule the actor can see (NotFound otherwise, as
    /// [`Rules::get`]).
    pub async fn dry_run_saved(
        &self,
        ctx: &Ctx,
        id: RuleId,
        record: RecordRef,
        change: Option<Change>,
    ) -> Result<DryRun> {
        let rule = self.get(ctx, id).await?;
        self.dry_run(ctx, &rule.definition(), record, change).await
    }

    /// Whether the actor manages every rule (Admin, Manager).
    pub fn manages_all(ctx: &Ctx) -> bool {
        ctx.actor().has(Role::Admin) || ctx.actor().has(Role::Manager)
    }
}

crmkit_core::record_verbs! {
    Rules: Rule, RuleId;
    load;
    /// A rule that is visible to the actor and not deleted (NotFound otherwise, the same
    /// for missing, another tenant's and hidden).
    get;
    /// The audit trail of a visible rule (deleted or not).
    audit;
    /// Soft-deletes a rule (restorable; a deleted rule does not run).
    delete;
    /// Restores a soft-deleted rule (as it was, enabled or not).
    restore;
    set_deleted;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_columns_exist() {
        let t = &tables()[0];
        for f in RULE_FIELDS.fields {
            assert!(t.position(f.column).is_some(), "{}", f.column);
        }
        assert_eq!(t.columns.len(), RULE_COLUMNS.len());
    }
}
