//! Conformance checks of automation rules (`crmkit_automation`) on any backend.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a store composed with core,
//! contacts, pipeline, activities, tickets and [`AutomationModule`] (see [`modules`]);
//! each makes its own fresh tenant with [`setup`]. [`checks`] lists them by name.

use crmkit_automation::{
    Action, AutomationModule, ChangePredicate, Channel, NewRule, Rule, RulePatch, Rules, Trigger,
};
use crmkit_core::{Error, Filter, Modules, Query, Role, RuleId, Store, UserId, UserInput};
use crmkit_pipeline::deal::Deals;
use serde_json::json;

use crate::check::{At, expect_denied, expect_not_found};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::{record_event_kinds, user};

/// The modules the checks need: those of [`crate::tickets::modules`] and automation.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(crmkit_contacts::ContactsModule)
        .add(crmkit_pipeline::PipelineModule)
        .add(crmkit_activities::ActivitiesModule)
        .add(crmkit_tickets::TicketsModule)
        .add(AutomationModule::new())
        .add(ProbeModule)
        .build()
}

/// The action kind [`ProbeModule`] offers: `{"label": <1 to 40 characters>}`, on deals
/// and contacts only.
pub const PROBE_ACTION: &str = "probe.flag";

/// A module with no tables that offers one automation action kind ([`PROBE_ACTION`])
/// through [`crmkit_core::Module::automation_actions`], as a third-party module would.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeModule;

struct ProbeFlag;

impl crmkit_core::action::CustomAction for ProbeFlag {
    fn kind(&self) -> &'static str {
        PROBE_ACTION
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        matches!(record_kind, Some("deal" | "contact"))
    }

    fn validate(&self, params: &serde_json::Value) -> crmkit_core::Result<()> {
        let n = params["label"].as_str().map(|s| s.chars().count());
        match n {
            Some(1..=40) => Ok(()),
            _ => Err(Error::validation(
                "label",
                "must be a text of 1 to 40 characters",
            )),
        }
    }

    /// Tags the record with the label through the generic record API (one commit), or
    /// fails when the label is `fail`.
    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a crmkit_core::Ctx,
        record: Option<&'a crmkit_core::RecordRef>,
        params: &'a serde_json::Value,
    ) -> crmkit_core::store::BoxFuture<'a, crmkit_core::Result<String>> {
        Box::pin(async move {
            let label = params["label"].as_str().unwrap_or_default();
            if label == "fail" {
                return Err(Error::validation("label", "the probe refuses \"fail\""));
            }
            let record =
                record.ok_or_else(|| Error::validation("record", "the probe needs a record"))?;
            let kind = record.kind.as_str();
            let cur = store.records().get(ctx, kind, record.id).await?;
            let mut tags = cur["tags"].as_array().cloned().unwrap_or_default();
            tags.push(json!(label));
            let version = cur.version().unwrap_or_default();
            store
                .records()
                .patch(ctx, kind, record.id, version, json!({ "tags": tags }))
                .await?;
            Ok(format!("flagged {label}"))
        })
    }
}

impl crmkit_core::Module for ProbeModule {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn migrations(&self) -> Vec<crmkit_core::Migration> {
        vec![]
    }

    fn automation_actions(&self) -> Vec<std::sync::Arc<dyn crmkit_core::action::CustomAction>> {
        vec![std::sync::Arc::new(ProbeFlag)]
    }
}

extended_fixture! {
    /// A fresh tenant: the contacts fixture and the rules API.
    Fixture {
        /// The rules API.
        rules: Rules,
    }
}

/// Makes a fresh tenant with the users and teams of the contacts fixture.
pub async fn setup(store: &Store) -> CheckResult<Fixture> {
    let base = crate::contacts::setup(store).await?;
    Ok(Fixture {
        rules: Rules::new(store).at("Rules::new")?,
        base,
    })
}

/// A valid rule: when a deal is won (`won_at` gets a value), if its title mentions "mainframe", create a
/// follow-up task and notify its owner.
pub fn deal_rule(name: &str) -> NewRule {
    NewRule::new(
        name,
        Trigger::RecordUpdated {
            record_kind: "deal".into(),
            field: Some("won_at".into()),
            from: Some(None),
            to: None,
        },
    )
    .filter(Filter::contains("title", "mainframe"))
    .change(ChangePredicate::changed("won_at").from(json!(null)))
    .action(Action::CreateActivity {
        activity_type: "task".into(),
        subject: "Thank you call for {{title}}".into(),
        due_in: None,
    })
    .action(Action::Notify {
        channel: Channel::Email,
        to: None,
        to_field: None,
        subject: "{{title}} won".into(),
        body: "Amount {{amount}}".into(),
    })
}

/// A valid rule on contacts (used by the generic record fixture too).
pub fn contact_rule(name: &str) -> NewRule {
    NewRule::new(
        name,
        Trigger::RecordCreated {
            record_kind: "contact".into(),
        },
    )
    .action(Action::AddTag { tag: "new".into() })
}

async fn events_of(f: &Fixture, id: RuleId) -> CheckResult<Vec<String>> {
    record_event_kinds(&f.store, &f.admin, id).await
}

/// Create, get, list, update with versions (a stale version is a Conflict), enable and
/// disable, delete and restore; the audit trail and the events.
pub async fn crud_round_trip(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let r = &f.rules;
    let pipeline = Deals::new(store)
        .at("Deals::new")?
        .pipelines()
        .ensure_default(&f.admin)
        .await
        .at("default pipeline")?;
    let stage = pipeline.stages[1].id;
    let created = r
        .create(
            &f.admin,
            deal_rule("Won mainframes").action(Action::MoveDealToStage { stage }),
        )
        .await
        .at("create")?;
    ensure_eq!(created.version, 1, "version");
    ensure_eq!(created.owner, user(&f.admin), "owner defaults to the actor");
    ensure!(created.enabled, "enabled by default");
    ensure_eq!(
        r.get(&f.admin, created.id).await.at("get")?,
        created,
        "get returns what create did"
    );
    let page = r
        .list(
            &f.admin,
            &Query::new().filter(Filter::eq("record_kind", "deal")),
        )
        .await
        .at("list")?;
    ensure!(page.items.contains(&created), "listed: {page:?}");
    let json = created.definition().to_json();
    let back = crmkit_automation::RuleDefinition::from_value(json).at("definition JSON")?;
    ensure_eq!(
        back,
        created.definition(),
        "the definition round-trips as JSON"
    );
    let updated = r
        .update(
            &f.admin,
            created.id,
            1,
            RulePatch::default().name("Won big mainframes"),
        )
        .await
        .at("update")?;
    ensure_eq!(updated.version, 2, "update bumps the version");
    match r
        .update(&f.admin, created.id, 1, RulePatch::default().name("stale"))
        .await
    {
        Err(Error::Conflict {
            expected: 1,
            actual: 2,
            ..
        }) => {}
        other => return Err(Failure::new(format!("stale update: {other:?}"))),
    }
    let disabled = r.disable(&f.admin, created.id, 2).await.at("disable")?;
    ensure!(
        !disabled.enabled && disabled.version == 3,
        "disabled: {disabled:?}"
    );
    let again = r
        .disable(&f.admin, created.id, 3)
        .await
        .at("disable again")?;
    ensure_eq!(again.version, 3, "disabling a disabled rule writes nothing");
    let enabled = r.enable(&f.admin, created.id, 3).await.at("enable")?;
    ensure!(
        enabled.enabled && enabled.version == 4,
        "enabled: {enabled:?}"
    );
    let deleted = r.delete(&f.admin, created.id, 4).await.at("delete")?;
    expect_not_found(r.get(&f.admin, created.id).await, "get a deleted rule")?;
    ensure!(
        !r.list(&f.admin, &Query::new())
            .await
            .at("list")?
            .items
            .iter()
            .any(|x| x.id == created.id),
        "a deleted rule is not listed"
    );
    ensure!(
        r.list(&f.admin, &Query::new().include_deleted())
            .await
            .at("list deleted")?
            .items
            .iter()
            .any(|x| x.id == created.id),
        "a deleted rule is listed with include_deleted"
    );
    let restored = r
        .restore(&f.admin, created.id, deleted.version)
        .await
        .at("restore")?;
    ensure!(
        restored.deleted_at.is_none() && restored.enabled,
        "restored: {restored:?}"
    );
    let audit = r.audit(&f.admin, created.id).await.at("audit")?;
    ensure!(audit.len() >= 6, "every change is audited: {audit:?}");
    ensure_eq!(
        events_of(&f, created.id).await?,
        vec![
            "automation_rule.created".to_owned(),
            "automation_rule.updated".into(),
            "automation_rule.disabled".into(),
            "automation_rule.enabled".into(),
            "automation_rule.deleted".into(),
            "automation_rule.restored".into(),
        ],
        "events"
    );
    // The same rule through the generic record API.
    let g = store
        .records()
        .get(&f.admin, "automation_rule", created.id.as_uuid())
        .await
        .at("generic get")?;
    ensure_eq!(g["format"], json!(1), "the record carries its format");
    Ok(())
}

/// T1: another tenant's rules are NotFound for every operation and never listed.
pub async fn isolation(store: &Store) -> CheckResult {
    let a = setup(store).await?;
    let b = setup(store).await?;
    let rule = a
        .rules
        .create(&a.admin, contact_rule("A's"))
        .await
        .at("create")?;
    let r = &b.rules;
    expect_not_found(r.get(&b.admin, rule.id).await, "get")?;
    expect_not_found(
        r.update(&b.admin, rule.id, 1, RulePatch::default().name("x"))
            .await,
        "update",
    )?;
    expect_not_found(r.disable(&b.admin, rule.id, 1).await, "disable")?;
    expect_not_found(r.delete(&b.admin, rule.id, 1).await, "delete")?;
    expect_not_found(r.audit(&b.admin, rule.id).await, "audit")?;
    ensure!(
        r.list(&b.admin, &Query::new().include_deleted())
            .await
            .at("list")?
            .items
            .is_empty(),
        "another tenant lists no rule"
    );
    ensure_eq!(
        a.rules
            .get(&a.admin, rule.id)
            .await
            .at("still there")?
            .version,
        1,
        "unchanged"
    );
    Ok(())
}

fn comparable(r: crmkit_core::Result<Rule>) -> Option<String> {
    r.err().map(|e| crate::contacts::error_variant(&e))
}

/// T3: Admin and Manager manage every rule; a Rep sees and manages only their own (any
/// other rule is exactly like a nonexistent one) and cannot give a rule to someone else;
/// ReadOnly changes nothing.
pub async fn access(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let r = &f.rules;
    let admins = r
        .create(&f.admin, contact_rule("admin's"))
        .await
        .at("admin creates")?;
    let reps = r
        .create(&f.rep, contact_rule("rep's"))
        .await
        .at("rep creates")?;
    ensure_eq!(reps.owner, user(&f.rep), "a rep owns what they create");
    let ghost = RuleId::new();
    for (what, hidden, none) in [
        (
            "get",
            comparable(r.get(&f.rep, admins.id).await),
            comparable(r.get(&f.rep, ghost).await),
        ),
        (
            "update",
            comparable(
                r.update(&f.rep, admins.id, 1, RulePatch::default().name("x"))
                    .await,
            ),
            comparable(
                r.update(&f.rep, ghost, 1, RulePatch::default().name("x"))
                    .await,
            ),
        ),
        (
            "disable",
            comparable(r.disable(&f.rep, admins.id, 1).await),
            comparable(r.disable(&f.rep, ghost, 1).await),
        ),
        (
            "delete",
            comparable(r.delete(&f.rep, admins.id, 1).await),
            comparable(r.delete(&f.rep, ghost, 1).await),
        ),
    ] {
        ensure!(
            hidden.is_some(),
            "a rep's {what} of another's rule succeeded"
        );
        ensure_eq!(hidden, none, "{what}: hidden vs nonexistent");
    }
    match r.audit(&f.rep2, reps.id).await {
        Err(Error::NotFound { .. }) => {}
        other => {
            return Err(Failure::new(format!(
                "a teammate audits a rep's rule: {other:?}"
            )));
        }
    }
    let listed = r
        .list(&f.rep, &Query::new().include_deleted())
        .await
        .at("rep lists")?;
    ensure_eq!(
        listed.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![reps.id],
        "a rep lists only their own rules"
    );
    ensure_eq!(
        r.list(&f.manager, &Query::new())
            .await
            .at("manager lists")?
            .items
            .len(),
        2,
        "a manager lists every rule"
    );
    expect_denied(
        r.create(&f.rep, contact_rule("for the admin").owner(user(&f.admin)))
            .await,
        "a rep gives a new rule to someone else",
    )?;
    expect_denied(
        r.update(
            &f.rep,
            reps.id,
            1,
            RulePatch::default().owner(user(&f.rep2)),
        )
        .await,
        "a rep gives their rule to someone else",
    )?;
    let moved = r
        .update(
            &f.manager,
            reps.id,
            1,
            RulePatch::default().name("renamed by manager"),
        )
        .await
        .at("a manager changes a rep's rule")?;
    r.disable(&f.rep, reps.id, moved.version)
        .await
        .at("a rep disables their rule")?;
    let before = f.last_seq().await?;
    expect_denied(
        r.create(&f.readonly, contact_rule("ro")).await,
        "read-only creates",
    )?;
    let ro_own = r.get(&f.readonly, admins.id).await;
    expect_not_found(ro_own, "read-only reads another's rule")?;
    let given = r
        .create(&f.admin, contact_rule("for ro").owner(user(&f.readonly)))
        .await
        .at("admin gives a rule to the read-only user")?;
    expect_denied(
        r.update(&f.readonly, given.id, 1, RulePatch::default().name("x"))
            .await,
        "read-only updates",
    )?;
    expect_denied(
        r.disable(&f.readonly, given.id, 1).await,
        "read-only disables",
    )?;
    expect_denied(
        r.delete(&f.readonly, given.id, 1).await,
        "read-only deletes",
    )?;
    ensure_eq!(
        f.events_after(before).await?.len(),
        1,
        "refused writes wrote nothing (only the admin's create)"
    );
    Ok(())
}

/// Runs `input` through create as the admin and expects a Validation error naming
/// every field of `fields`.
async fn refused(f: &Fixture, what: &str, input: NewRule, fields: &[&str]) -> CheckResult {
    match f.rules.create(&f.admin, input).await {
        Err(Error::Validation(v)) if fields.iter().all(|x| v.has(x)) => Ok(()),
        other => Err(Failure::new(format!(
            "{what}: expected a Validation error naming {fields:?}, got {other:?}"
        ))),
    }
}

/// Bad input on save: every problem is a Validation error naming the part, all at once,
/// and nothing is written.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let gone = UserId::new();
    store
        .directory()
        .put_user(
            &f.admin,
            UserInput::new(gone, "Gone", format!("gone.{}@x.test", gone), Role::Rep).active(false),
        )
        .await
        .at("inactive user")?;
    let before = f.last_seq().await?;
    let on = |kind: &str| Trigger::RecordCreated {
        record_kind: kind.into(),
    };
    let tag = Action::AddTag { tag: "t".into() };
    refused(
        &f,
        "unknown record kind",
        NewRule::new("r", on("spaceship")).action(tag.clone()),
        &["trigger.record_kind"],
    )
    .await?;
    refused(
        &f,
        "unknown condition field",
        NewRule::new("r", on("contact"))
            .action(tag.clone())
            .filter(Filter::eq("shoe_size", 42i64)),
        &["conditions.filter.shoe_size"],
    )
    .await?;
    refused(
        &f,
        "wrong condition value type",
        NewRule::new("r", on("deal"))
            .action(tag.clone())
            .filter(Filter::eq("amount", "lots")),
        &["conditions.filter.amount"],
    )
    .await?;
    let set = |fields: serde_json::Value| Action::SetFields {
        fields: serde_json::from_value(fields).expect("object"),
    };
    refused(
        &f,
        "set_fields: wrong type, read-only, unknown field, unknown placeholder",
        NewRule::new("r", on("deal"))
            .action(tag.clone())
            .action(set(json!({"next_step": "Call {{nobody}}"})))
            .action(set(
                json!({"amount": "a lot", "won_at": "2030-01-01T00:00:00Z", "nope": 1}),
            )),
        &[
            "actions[0].type",
            "actions[1].fields.next_step",
            "actions[2].fields.amount",
            "actions[2].fields.won_at",
            "actions[2].fields.nope",
        ],
    )
    .await?;
    refused(
        &f,
        "unknown stage, move deal on a contact, unknown and inactive users, bad template",
        NewRule::new("r", on("contact"))
            .action(Action::MoveDealToStage {
                stage: crmkit_core::StageId::new(),
            })
            .action(Action::Notify {
                channel: Channel::Sms,
                to: Some(UserId::new()),
                to_field: None,
                subject: "Hi {{first_name}} {{unknown_thing}}".into(),
                body: "{{broken".into(),
            })
            .action(Action::Notify {
                channel: Channel::Chat,
                to: Some(gone),
                to_field: None,
                subject: "x".into(),
                body: "y".into(),
            }),
        &[
            "actions[0].type",
            "actions[1].to",
            "actions[1].subject",
            "actions[1].body",
            "actions[2].to",
        ],
    )
    .await?;
    refused(
        &f,
        "unknown stage on a deal rule",
        NewRule::new("r", on("deal")).action(Action::MoveDealToStage {
            stage: crmkit_core::StageId::new(),
        }),
        &["actions[0].stage"],
    )
    .await?;
    refused(
        &f,
        "unknown event kind",
        NewRule::new(
            "r",
            Trigger::Event {
                event: "deal.stage_teleported".into(),
            },
        )
        .action(Action::Webhook {
            url: "https://example.test/h".into(),
            secret: "0123456789abcdef".into(),
        }),
        &["trigger.event"],
    )
    .await?;
    refused(
        &f,
        "bad schedule: time zone, time, day; bad webhook",
        NewRule::new(
            "r",
            Trigger::Schedule {
                record_kind: "deal".into(),
                every: crmkit_automation::Recurrence::Monthly { day: 31 },
                at: "25:00".into(),
                time_zone: "Mars/Olympus".into(),
                filter: Some(Filter::eq("no_such_query_field", 1i64)),
            },
        )
        .action(Action::Webhook {
            url: "ftp://x".into(),
            secret: "short".into(),
        }),
        &[
            "trigger.every.day",
            "trigger.at",
            "trigger.time_zone",
            "trigger.filter.no_such_query_field",
            "actions[0].url",
            "actions[0].secret",
        ],
    )
    .await?;
    refused(
        &f,
        "relative trigger on a text field, business days without a calendar",
        NewRule::new(
            "r",
            Trigger::Relative {
                record_kind: "deal".into(),
                field: "title".into(),
                offset: crmkit_automation::Offset {
                    amount: 0,
                    unit: crmkit_automation::TimeUnit::BusinessDays,
                    calendar: None,
                },
                direction: crmkit_automation::Direction::Before,
            },
        )
        .action(tag.clone()),
        &[
            "trigger.field",
            "trigger.offset.amount",
            "trigger.offset.calendar",
            "actions[0].type",
        ],
    )
    .await?;
    let mut bad_format = contact_rule("r");
    bad_format.format = Some(2);
    refused(&f, "unknown format", bad_format, &["format"]).await?;
    refused(
        &f,
        "no actions, no name",
        NewRule::new("", on("contact")),
        &["name", "actions"],
    )
    .await?;
    // The generic record API names the same parts, and a malformed body the member.
    let g = store
        .records()
        .create(
            &f.admin,
            "automation_rule",
            json!({"name": "g", "trigger": {"kind": "record_exploded"}, "actions": []}),
        )
        .await;
    ensure!(
        matches!(&g, Err(Error::Validation(v)) if v.has("trigger")),
        "generic malformed trigger: {g:?}"
    );
    ensure_eq!(f.last_seq().await?, before, "refused rules wrote nothing");
    ensure!(
        f.rules
            .list(&f.admin, &Query::new().include_deleted())
            .await
            .at("list")?
            .items
            .is_empty(),
        "no rule was stored"
    );
    // Updates are validated the same way, and a refused update changes nothing.
    let ok = f
        .rules
        .create(&f.admin, contact_rule("ok"))
        .await
        .at("create")?;
    match f
        .rules
        .update(
            &f.admin,
            ok.id,
            1,
            RulePatch::default().actions(vec![Action::SetLeadScore { score: 3 }]),
        )
        .await
    {
        Err(Error::Validation(v)) if v.has("actions[0].type") => {}
        other => {
            return Err(Failure::new(format!(
                "set lead score on a contact rule: {other:?}"
            )));
        }
    }
    ensure_eq!(
        f.rules.get(&f.admin, ok.id).await.at("get")?,
        ok,
        "unchanged"
    );
    Ok(())
}

/// A composed module's custom action kind ([`ProbeModule`]'s [`PROBE_ACTION`]) is known
/// to [`Rules::new`] and the generic record API: accepted with good parameters, refused
/// with bad ones naming `actions[i].params.<name>`, refused on a kind it does not apply
/// to; an unknown kind is refused naming `actions[i].kind`.
pub async fn custom_actions(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let probe = |label: serde_json::Value| Action::Custom {
        kind: PROBE_ACTION.into(),
        params: json!({ "label": label }),
    };
    let ok = f
        .rules
        .create(&f.admin, contact_rule("probe").action(probe(json!("vip"))))
        .await
        .at("create with a composed module's action")?;
    ensure_eq!(ok.actions.len(), 2, "both actions kept");
    f.rules
        .create(
            &f.admin,
            contact_rule("probe").action(probe(json!("hi {{first_name}}"))),
        )
        .await
        .at("a parameter with a known placeholder")?;
    let before = f.last_seq().await?;
    refused(
        &f,
        "bad params",
        contact_rule("probe").action(probe(json!(""))),
        &["actions[1].params.label"],
    )
    .await?;
    refused(
        &f,
        "a parameter with an unknown placeholder (parameters are templates)",
        contact_rule("probe").action(probe(json!("hi {{nickname}}"))),
        &["actions[1].params.label"],
    )
    .await?;
    refused(
        &f,
        "params of the wrong type",
        contact_rule("probe").action(probe(json!(7))),
        &["actions[1].params.label"],
    )
    .await?;
    refused(
        &f,
        "unknown action kind",
        contact_rule("probe").action(Action::Custom {
            kind: "probe.unknown".into(),
            params: json!({}),
        }),
        &["actions[1].kind"],
    )
    .await?;
    refused(
        &f,
        "a kind the action does not apply to",
        NewRule::new(
            "probe",
            Trigger::RecordCreated {
                record_kind: "ticket".into(),
            },
        )
        .action(probe(json!("vip"))),
        &["actions[0].kind"],
    )
    .await?;
    // The generic record API knows the same actions.
    let body = |label: &str| {
        json!({
            "name": "generic probe",
            "trigger": {"kind": "record_created", "record_kind": "contact"},
            "actions": [{"type": "custom", "kind": PROBE_ACTION, "params": {"label": label}}],
        })
    };
    let g = store
        .records()
        .create(&f.admin, "automation_rule", body(""))
        .await;
    ensure!(
        matches!(&g, Err(Error::Validation(v)) if v.has("actions[0].params.label")),
        "generic bad params: {g:?}"
    );
    ensure_eq!(f.last_seq().await?, before, "refused rules wrote nothing");
    store
        .records()
        .create(&f.admin, "automation_rule", body("vip"))
        .await
        .at("generic create with a composed module's action")?;
    Ok(())
}

/// The dry run on a stored record: it explains which conditions held and which failed
/// and lists the actions that would run (none when the conditions fail); a record hidden
/// from the actor is NotFound exactly like a missing one; a trigger on another kind is a
/// Validation error on `record.kind`; a saved rule dry-runs the same; nothing is written
/// (row counts and the event sequence unchanged).
pub async fn dry_run(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let grace = f.person(&f.rep, "Grace", "Hopper").await?;
    let at = crmkit_core::RecordRef::from(grace.id);
    let holding = contact_rule("grace").filter(Filter::eq("first_name", "Grace"));
    let failing = contact_rule("grace, not hopper")
        .filter(Filter::eq("first_name", "Grace").and(Filter::contains("last_name", "lovelace")));
    let saved = f
        .rules
        .create(&f.rep, holding.clone())
        .await
        .at("save a rule")?;
    let rows = f.row_counts().await?;
    let seq = f.last_seq().await?;
    let def = |r: &NewRule| crmkit_automation::RuleDefinition {
        name: r.name.clone(),
        enabled: r.enabled,
        trigger: r.trigger.clone(),
        conditions: r.conditions.clone(),
        actions: r.actions.clone(),
        retrigger_on_own_changes: r.retrigger_on_own_changes,
    };
    for ctx in [&f.admin, &f.rep] {
        let run = f
            .rules
            .dry_run(ctx, &def(&holding), at.clone(), None)
            .await
            .at("dry run of a holding rule")?;
        ensure!(run.explanation.holds, "holds: {run:?}");
        ensure_eq!(run.record, at, "the record it ran on");
        ensure_eq!(run.actions, holding.actions, "the actions that would run");
        let run = f
            .rules
            .dry_run(ctx, &def(&failing), at.clone(), None)
            .await
            .at("dry run of a failing rule")?;
        ensure!(!run.explanation.holds, "fails: {run:?}");
        ensure!(run.actions.is_empty(), "no action would run: {run:?}");
        let outcomes: Vec<_> = run.explanation.steps.iter().map(|s| s.outcome).collect();
        ensure_eq!(
            outcomes,
            vec![
                crmkit_automation::Outcome::Held,
                crmkit_automation::Outcome::Failed
            ],
            "the explanation names the held and the failed condition"
        );
    }
    let run = f
        .rules
        .dry_run_saved(&f.rep, saved.id, at.clone(), None)
        .await
        .at("dry run of a saved rule")?;
    ensure!(run.explanation.holds, "saved rule holds: {run:?}");
    // Hidden is exactly like missing.
    let missing =
        crmkit_core::RecordRef::new(crmkit_core::RecordKind::CONTACT, uuid::Uuid::now_v7());
    for (what, ctx, r) in [
        ("hidden record", &f.rep_y, at.clone()),
        ("missing record", &f.rep_y, missing.clone()),
        ("missing record (admin)", &f.admin, missing),
    ] {
        let got = f.rules.dry_run(ctx, &def(&holding), r, None).await;
        expect_not_found(got, what)?;
    }
    expect_not_found(
        f.rules
            .dry_run_saved(&f.rep_y, saved.id, at.clone(), None)
            .await,
        "a hidden saved rule",
    )?;
    let on_deals = def(&deal_rule("deals"));
    match f.rules.dry_run(&f.admin, &on_deals, at.clone(), None).await {
        Err(Error::Validation(v)) if v.has("record.kind") => {}
        other => {
            return Err(Failure::new(format!(
                "a rule on deals over a contact: {other:?}"
            )));
        }
    }
    ensure_eq!(f.row_counts().await?, rows, "a dry run writes no row");
    ensure_eq!(f.last_seq().await?, seq, "a dry run emits no event");
    Ok(())
}

/// The stored definition text of a rule, read below the API (the check needs to see
/// that a secret is kept without any read path showing it).
async fn stored_definition(f: &Fixture, id: RuleId) -> CheckResult<String> {
    let row = f
        .store
        .backend()
        .get(
            f.tenant,
            crmkit_automation::RULE_TABLE,
            &[crmkit_core::store::Value::Uuid(id.as_uuid())],
        )
        .await
        .at("read the rule row")?
        .ok_or_else(|| Failure::new("the rule row is missing"))?;
    let pos = f
        .store
        .backend()
        .schema()
        .table(crmkit_automation::RULE_TABLE)
        .at("rules table")?
        .position("definition")
        .ok_or_else(|| Failure::new("no definition column"))?;
    row[pos]
        .as_text()
        .map(str::to_owned)
        .ok_or_else(|| Failure::new("the definition is not text"))
}

/// A webhook action's secret is stored but never read back: typed get and list, the
/// generic get and list, the audit trail and the change feed show
/// [`crmkit_automation::WEBHOOK_SECRET_MASK`]; an update that gives no new secret (the
/// mask, or none) keeps the stored one; an update that gives only a new secret writes it
/// (a new version, an event, masked audit entries); a new webhook without a secret is
/// refused naming `actions[i].secret`.
pub async fn webhook_secrets(store: &Store) -> CheckResult {
    use crmkit_automation::WEBHOOK_SECRET_MASK as MASK;
    let f = setup(store).await?;
    let secret = format!("first-secret-{}", uuid::Uuid::now_v7().simple());
    let rotated = format!("second-secret-{}", uuid::Uuid::now_v7().simple());
    let hook = |s: &str| Action::Webhook {
        url: "https://example.test/hook".into(),
        secret: s.into(),
    };
    let seq = f.last_seq().await?;
    let created = f
        .rules
        .create(&f.admin, contact_rule("hook").action(hook(&secret)))
        .await
        .at("create with a webhook")?;
    ensure_eq!(created.actions[1], hook(MASK), "create returns the mask");
    ensure!(
        stored_definition(&f, created.id).await?.contains(&secret),
        "the secret is stored"
    );
    // No new secret (the mask read back, or none at all) keeps the stored one.
    let kept = f
        .rules
        .update(
            &f.admin,
            created.id,
            1,
            RulePatch::default().name("hook 2").actions(vec![
                Action::AddTag {
                    tag: "hooked".into(),
                },
                hook(MASK),
            ]),
        )
        .await
        .at("update with the mask")?;
    ensure_eq!(kept.version, 2, "updated");
    ensure!(
        stored_definition(&f, created.id).await?.contains(&secret),
        "an update giving the mask keeps the secret"
    );
    let generic = store
        .records()
        .patch(
            &f.admin,
            "automation_rule",
            created.id.as_uuid(),
            2,
            json!({"actions": [
                {"type": "add_tag", "tag": "new"},
                {"type": "webhook", "url": "https://example.test/hook"},
            ]}),
        )
        .await
        .at("generic patch without a secret")?;
    ensure_eq!(generic["version"], json!(3), "generic patch applied");
    ensure!(
        stored_definition(&f, created.id).await?.contains(&secret),
        "an update giving no secret keeps it"
    );
    // Disable, enable (validated again with the stored secret), delete, restore.
    let d = f
        .rules
        .disable(&f.admin, created.id, 3)
        .await
        .at("disable")?;
    let e = f
        .rules
        .enable(&f.admin, created.id, d.version)
        .await
        .at("enable")?;
    let del = f
        .rules
        .delete(&f.admin, created.id, e.version)
        .await
        .at("delete")?;
    let res = f
        .rules
        .restore(&f.admin, created.id, del.version)
        .await
        .at("restore")?;
    ensure!(
        stored_definition(&f, created.id).await?.contains(&secret),
        "enable, disable, delete and restore keep the secret"
    );
    // Only a new secret: written, with a new version and an event.
    let before_rotation = f.last_seq().await?;
    let r = f
        .rules
        .update(
            &f.admin,
            created.id,
            res.version,
            RulePatch::default()
                .actions(vec![Action::AddTag { tag: "new".into() }, hook(&rotated)]),
        )
        .await
        .at("rotate the secret")?;
    ensure_eq!(
        r.version,
        res.version + 1,
        "rotating the secret is a new version"
    );
    ensure_eq!(r.actions[1], hook(MASK), "the update returns the mask");
    let def = stored_definition(&f, created.id).await?;
    ensure!(
        def.contains(&rotated) && !def.contains(&secret),
        "the new secret replaces the old"
    );
    ensure!(
        f.last_seq().await? > before_rotation,
        "rotating the secret emits an event"
    );
    // No read path shows either secret.
    let mut seen: Vec<(&str, String)> = vec![];
    // Anything serialisable, as JSON text (to search every read path alike).
    macro_rules! show {
        ($e:expr $(,)?) => {
            serde_json::to_string($e).unwrap_or_else(|e| format!("<{e}>"))
        };
    }
    seen.push((
        "get",
        show!(&f.rules.get(&f.admin, created.id).await.at("get")?),
    ));
    seen.push((
        "list",
        show!(
            &f.rules
                .list(&f.admin, &Query::new().include_deleted())
                .await
                .at("list")?
                .items,
        ),
    ));
    seen.push((
        "generic get",
        store
            .records()
            .get(&f.admin, "automation_rule", created.id.as_uuid())
            .await
            .at("generic get")?
            .json()
            .to_owned(),
    ));
    seen.push((
        "generic list",
        show!(
            &store
                .records()
                .list(&f.admin, "automation_rule", &Query::new())
                .await
                .at("generic list")?
                .items,
        ),
    ));
    seen.push((
        "audit",
        show!(&f.rules.audit(&f.admin, created.id).await.at("audit")?),
    ));
    seen.push((
        "generic audit",
        show!(
            &store
                .records()
                .audit(&f.admin, "automation_rule", created.id.as_uuid())
                .await
                .at("generic audit")?,
        ),
    ));
    seen.push((
        "events_since",
        show!(
            &store
                .events_since(&f.admin, seq, 1000)
                .await
                .at("events_since")?,
        ),
    ));
    let run = f
        .rules
        .dry_run_saved(
            &f.admin,
            created.id,
            f.person(&f.admin, "Ann", "Hook").await?.id.into(),
            None,
        )
        .await
        .at("dry run")?;
    seen.push(("dry run", show!(&run)));
    for (what, text) in &seen {
        ensure!(
            !text.contains(&secret) && !text.contains(&rotated),
            "{what} shows a webhook secret: {text}"
        );
    }
    ensure!(
        seen[0].1.contains(MASK),
        "get shows the mask: {}",
        seen[0].1
    );
    // A new webhook gives its secret.
    refused(
        &f,
        "a new webhook with the mask",
        contact_rule("hook").action(hook(MASK)),
        &["actions[1].secret"],
    )
    .await?;
    Ok(())
}

suite_checks! {
    /// The automation checks, by name.
    names: automation_check_names,
    checks: [crud_round_trip, isolation, access, bad_input, custom_actions, dry_run, webhook_secrets],
}
