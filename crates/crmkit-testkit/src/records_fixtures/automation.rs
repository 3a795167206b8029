//! The [`KindFixture`]s of the automation module's kinds (`automation_rule`,
//! `automation_sequence`), for the generic record checks in [`crate::records`].

use crmkit_automation::{RulePatch, Rules, SequencePatch, Sequences};
use crmkit_core::store::BoxFuture;
use crmkit_core::{RuleId, SequenceId};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::check::{At, CheckResult};
use crate::contacts::Fixture;
use crate::records::KindFixture;

/// The automation module's fixtures.
pub fn all() -> Vec<KindFixture> {
    vec![rule(), sequence()]
}

/// `automation_rule`: a rule tagging new contacts and notifying their owner; the patch
/// renames it.
pub fn rule() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "format": 1,
                "name": "Tag new contacts",
                "trigger": {"kind": "record_created", "record_kind": "contact"},
                "conditions": {"filter": {"Contains": ["last_name", "hopper"]}},
                "actions": [
                    {"type": "add_tag", "tag": "new"},
                    {"type": "notify", "channel": "email", "subject": "New: {{first_name}}", "body": "{{last_name}}"}
                ],
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Rules::new(&f.store)
                .at("Rules::new")?
                .update(
                    &f.admin,
                    RuleId::from_uuid(id),
                    v,
                    RulePatch::default().name("Tag every new contact"),
                )
                .await
                .at("typed rule patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "automation_rule",
        body,
        patch: || json!({"name": "Tag every new contact"}),
        typed_patch: typed,
    }
}

/// `automation_sequence`: a task, a wait of two days and a notification for contacts,
/// ending when a reply is logged; the patch renames it.
pub fn sequence() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "format": 1,
                "name": "Follow up new contacts",
                "record_kind": "contact",
                "steps": [
                    {"type": "create_activity", "activity_type": "task", "subject": "Call {{first_name}}"},
                    {"type": "wait", "amount": 2, "unit": "days"},
                    {"type": "notify", "channel": "email", "subject": "Still no answer from {{last_name}}", "body": ""}
                ],
                "exit": {"activities": ["email"]},
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Sequences::new(&f.store)
                .at("Sequences::new")?
                .update(
                    &f.admin,
                    SequenceId::from_uuid(id),
                    v,
                    SequencePatch::default().name("Follow up every new contact"),
                )
                .await
                .at("typed sequence patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "automation_sequence",
        body,
        patch: || json!({"name": "Follow up every new contact"}),
        typed_patch: typed,
    }
}
