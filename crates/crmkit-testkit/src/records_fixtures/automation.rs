//! The [`KindFixture`] of the automation module's kind (`automation_rule`), for the
//! generic record checks in [`crate::records`].

use crmkit_automation::{RulePatch, Rules};
use crmkit_core::RuleId;
use crmkit_core::store::BoxFuture;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::check::{At, CheckResult};
use crate::contacts::Fixture;
use crate::records::KindFixture;

/// The automation module's fixtures.
pub fn all() -> Vec<KindFixture> {
    vec![rule()]
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
