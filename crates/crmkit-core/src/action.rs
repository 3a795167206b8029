//! Action kinds modules offer to automation rules.
//!
//! The automation module (`crmkit-automation`) runs rules whose actions are its own
//! (`set_fields`, `notify`, ...) or `{"type": "custom", "kind": .., "params": ..}`
//! actions other modules offer. A module offers such an action kind the way it offers
//! record kinds: [`crate::Module::automation_actions`] returns a [`CustomAction`] per
//! kind, [`crate::ModulesBuilder::build`] collects them (a kind offered twice is a Config
//! error) and [`crate::Modules::automation_actions`] gives them to the rules API, which
//! validates a custom action's parameters on save with the offering module's
//! [`CustomAction::validate`]. The trait lives in the kernel so that a module offers
//! actions without depending on the automation crate.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::id::RecordRef;
use crate::store::BoxFuture;
use crate::{Ctx, Store};

/// An action kind a module offers to rules (`{"type": "custom", "kind": .., "params": ..}`).
/// A module implements it to validate its own parameters on save and offers it from
/// [`crate::Module::automation_actions`].
pub trait CustomAction: Send + Sync + 'static {
    /// The action kind (`<module>.<verb>`, such as `fleet.inspect`).
    fn kind(&self) -> &'static str;

    /// Whether the action can act on a record of `record_kind` (the trigger's; `None`
    /// when the trigger names no record kind). The default: any.
    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        let _ = record_kind;
        true
    }

    /// Checks the parameters: the problems as a Validation error whose field names are
    /// relative to `params` (`url`, `items[2]`); they are reported as
    /// `actions[i].params.<field>`.
    fn validate(&self, params: &Json) -> Result<()>;

    /// Runs the action for a rule on `record` (the triggering record; `None` for a rule
    /// without one) with the saved, validated `params`, and says what it did, in words
    /// (kept in the run log).
    ///
    /// `ctx` acts with the rule owner's authority and carries the run's
    /// [`crate::Cause`]. The action must make its changes in **at most one commit**
    /// through `store` (one module command, or one [`crate::Changeset`] of its own): the
    /// automation module adds the run's record to that commit, which is what makes the
    /// effect happen exactly once under redelivery, crashes and concurrent engines. An
    /// action that commits nothing is recorded as applied all the same. An error leaves
    /// nothing written; the engine retries it with backoff.
    ///
    /// The default refuses to run (an action kind that is only validated).
    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a Json,
    ) -> BoxFuture<'a, Result<String>> {
        let _ = (store, ctx, record, params);
        let kind = self.kind();
        Box::pin(async move {
            Err(Error::Config(format!(
                "the action kind {kind} cannot run (its module only validates it)"
            )))
        })
    }
}

/// What a [`RecordAction`] runs with: the store, the rule owner's context, the triggering
/// record (if any) and the parameters as the action's parser read them.
#[derive(Debug)]
pub struct ActionCall<'a, P> {
    /// The store, to commit through (at most once, see [`CustomAction::run`]).
    pub store: &'a Store,
    /// The rule owner's context, carrying the run's cause.
    pub ctx: &'a Ctx,
    /// The triggering record; `None` for a rule without one.
    pub record: Option<&'a RecordRef>,
    /// The parameters, read by [`RecordAction::params`].
    pub params: P,
}

/// A [`CustomAction`] made of its parts, for the usual action that reads its parameters
/// into a value and runs one command on the triggering record: the parameters are read
/// by one function both on save ([`CustomAction::validate`]) and before each run, so
/// that the two cannot disagree.
pub struct RecordAction<P> {
    /// The action kind ([`CustomAction::kind`]).
    pub kind: &'static str,
    /// The record kinds it acts on ([`CustomAction::applies_to`] is true for these only).
    pub on: &'static [&'static str],
    /// Reads the parameters, or says what is wrong with them (a Validation error whose
    /// field names are relative to the parameters).
    pub params: fn(&Json) -> Result<P>,
    /// Runs the action with the parameters read, and says what it did.
    pub run: for<'a> fn(ActionCall<'a, P>) -> BoxFuture<'a, Result<String>>,
}

impl<P> std::fmt::Debug for RecordAction<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordAction")
            .field("kind", &self.kind)
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

impl<P: 'static> CustomAction for RecordAction<P> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        record_kind.is_some_and(|k| self.on.contains(&k))
    }

    fn validate(&self, params: &Json) -> Result<()> {
        (self.params)(params).map(drop)
    }

    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a Json,
    ) -> BoxFuture<'a, Result<String>> {
        match (self.params)(params) {
            Ok(params) => (self.run)(ActionCall {
                store,
                ctx,
                record,
                params,
            }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

/// The action kinds of a composition, by kind.
pub type CustomActions = BTreeMap<&'static str, Arc<dyn CustomAction>>;

/// Whether `kind` is a valid action kind name: dot-separated lowercase identifiers
/// (`[a-z][a-z0-9_]*`), at least two parts (`<module>.<verb>`).
pub fn valid_action_kind(kind: &str) -> bool {
    let parts: Vec<&str> = kind.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            let mut c = p.chars();
            matches!(c.next(), Some('a'..='z'))
                && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_kind_names() {
        assert!(valid_action_kind("fleet.inspect"));
        assert!(valid_action_kind("org_note.add"));
        assert!(!valid_action_kind("inspect"));
        assert!(!valid_action_kind("Fleet.inspect"));
        assert!(!valid_action_kind("fleet..inspect"));
    }
}
