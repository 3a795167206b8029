//! The record kind `automation_rule` for the generic record API: every generic call runs
//! the typed command of [`Rules`], so both paths validate, check access and write the
//! same. `enabled` is given on create only; then [`Rules::enable`] and
//! [`Rules::disable`] change it (with their own events).

use crmkit_core::record::{FieldDescription as F, FieldType as T, KindDescription, TypedKind};
use crmkit_core::{Ctx, Result, RuleId, SequenceId, Store};
use uuid::Uuid;

use crate::model::{NewRule, Rule, RulePatch, TRIGGER_KINDS};
use crate::sequences::{NewSequence, SEQUENCE_FIELDS, Sequence, SequencePatch, Sequences};
use crate::service::{RULE_FIELDS, Rules};

/// The `automation_rule` kind.
#[derive(Clone, Copy, Debug, Default)]
#[doc = ""]
#[doc = include_str!("kinds/automation_rule.md")]
pub struct RuleKind;

impl RuleKind {
    fn rules(&self, store: &Store) -> Result<Rules> {
        Rules::new(store)
    }
}

impl TypedKind for RuleKind {
    type Record = Rule;
    type New = NewRule;
    type Patch = RulePatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new("automation_rule", "Automation rule", "Automation rules", "automation")
            .doc("A rule: when its trigger fires and its conditions hold, its actions run, with its owner's authority. Versioned JSON (`format` 1); validated on save.")
            .events(crate::EVENT_KINDS)
            .id_field()
            .field(F::new("format", T::Int).doc("The rule format (1); absent on create means 1."))
            .field(F::new("name", T::text(200)).required())
            .field(
                F::new("enabled", T::Bool)
                    .create_only()
                    .doc("Whether it runs (true when absent); then `Rules::enable` / `Rules::disable`."),
            )
            .field(
                F::new("trigger", T::Object)
                    .required()
                    .doc(&format!("`{{\"kind\": ..}}`, kind one of {}.", TRIGGER_KINDS.join(", "))),
            )
            .field(F::new("conditions", T::Object).doc("`{filter, changes}`."))
            .field(F::new("actions", T::list(T::Object)).required().doc("`{\"type\": ..}` objects, in order. A webhook's `secret` reads as `********`; giving the mask or none keeps the stored one."))
            .field(F::new("retrigger_on_own_changes", T::Bool).doc("Whether it runs again on a change it made itself (false when absent: the loop guard skips it; the engine's depth limit ends a chain either way)."))
            .field(F::new("owner", T::reference("user")).doc("Whose authority it runs with; the actor when absent."))
            .system_fields()
            .queryable(&RULE_FIELDS)
    }

    async fn create(&self, store: &Store, ctx: &Ctx, input: NewRule) -> Result<Rule> {
        self.rules(store)?.create(ctx, input).await
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: RulePatch,
    ) -> Result<Rule> {
        self.rules(store)?
            .update(ctx, RuleId::from_uuid(id), expected_version, patch)
            .await
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Rules::new(store)?, id: RuleId;
        get, list, audit, delete, restore,
    }
}

/// The `automation_sequence` kind: every generic call runs the typed command of
/// [`Sequences`].
#[derive(Clone, Copy, Debug, Default)]
#[doc = ""]
#[doc = include_str!("kinds/automation_sequence.md")]
pub struct SequenceKind;

impl TypedKind for SequenceKind {
    type Record = Sequence;
    type New = NewSequence;
    type Patch = SequencePatch;

    fn describe(&self) -> KindDescription {
        KindDescription::new(
            "automation_sequence",
            "Automation sequence",
            "Automation sequences",
            "automation",
        )
        .doc("A sequence: ordered steps (actions and waits) that a record enrolled by a rule goes through, until it exits. Versioned JSON (`format` 1); validated on save.")
        .events(crate::SEQUENCE_EVENT_KINDS)
        .id_field()
        .field(F::new("format", T::Int).doc("The sequence format (1); absent on create means 1."))
        .field(F::new("name", T::text(200)).required())
        .field(
            F::new("record_kind", T::text(64))
                .required()
                .create_only()
                .doc("The kind of the records it runs on; it never changes."),
        )
        .field(F::new("steps", T::list(T::Object)).required().doc("`{\"type\": \"wait\", \"amount\", \"unit\", \"calendar\"}` or an action object, in order; the last is not a wait."))
        .field(F::new("exit", T::Object).doc("`{filter, activities}`: when an enrolment ends early."))
        .field(F::new("owner", T::reference("user")).doc("Who manages it; the actor when absent."))
        .system_fields()
        .queryable(&SEQUENCE_FIELDS)
    }

    async fn create(&self, store: &Store, ctx: &Ctx, input: NewSequence) -> Result<Sequence> {
        Sequences::new(store)?.create(ctx, input).await
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: SequencePatch,
    ) -> Result<Sequence> {
        Sequences::new(store)?
            .update(ctx, SequenceId::from_uuid(id), expected_version, patch)
            .await
    }

    crmkit_core::forward_typed_kind! {
        api: |store| Sequences::new(store)?, id: SequenceId;
        get, list, audit, delete, restore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_list_every_field() {
        if let Err(e) = crmkit_core::record::check_field_table(
            include_str!("kinds/automation_rule.md"),
            &RuleKind.describe(),
        ) {
            panic!("{e}");
        }
        if let Err(e) = crmkit_core::record::check_field_table(
            include_str!("kinds/automation_sequence.md"),
            &SequenceKind.describe(),
        ) {
            panic!("{e}");
        }
    }
}
