//! Modules: how functionality plugs into a crmkit host.
//!
//! A module has a name, declares the modules it depends on, and brings versioned
//! migrations (its tables) and the event kinds it emits. The host composes modules with
//! [`Modules::builder`]; a duplicate module or a missing dependency is an error from
//! [`ModulesBuilder::build`], never a panic. The core module is always present, first.

use std::collections::HashSet;
use std::sync::Arc;

use crate::action::{CustomAction, CustomActions, valid_action_kind};
use crate::error::{Error, Result};
use crate::record::{KindHandler, Registry};
use crate::store::{Changeset, Migration, ModuleMigrations, Schema};

/// A module (a plugin). Built-in modules and third-party ones implement it the same way.
pub trait Module: Send + Sync + 'static {
    /// The module's unique name (a lowercase identifier).
    fn name(&self) -> &'static str;

    /// Names of the modules this one needs (they must be composed too).
    fn dependencies(&self) -> Vec<&'static str> {
        vec![]
    }

    /// The module's migrations, versions 1, 2, 3, ... in order.
    fn migrations(&self) -> Vec<Migration>;

    /// The event kinds the module emits (documentation and discovery for consumers).
    fn event_kinds(&self) -> Vec<&'static str> {
        vec![]
    }

    /// The record kinds the module owns, each with the handler that describes it and runs
    /// the generic record API over the module's typed API (see [`crate::record`]). Kinds
    /// must be unique across the composition, and every reference field must point at a
    /// composed kind; [`ModulesBuilder::build`] checks both.
    ///
    /// The default declares none.
    fn record_kinds(&self) -> Vec<Arc<dyn KindHandler>> {
        vec![]
    }

    /// The action kinds the module offers to automation rules (`{"type": "custom",
    /// "kind": .., "params": ..}`; see [`crate::action`]). Kinds must be valid names
    /// (`<module>.<verb>`) and unique across the composition; [`ModulesBuilder::build`]
    /// checks both.
    ///
    /// The default offers none.
    fn automation_actions(&self) -> Vec<Arc<dyn CustomAction>> {
        vec![]
    }

    /// Called with every changeset committed through [`crate::Store::commit`], before the
    /// backend applies it, in module order. A module may add writes derived from what the
    /// changeset does to other modules' records (rows it keeps beside them, such as the
    /// activities module's follow-up row of each contact, lead and deal); they commit
    /// atomically with the rest, or not at all. It must not remove or change what others
    /// staged. An error aborts the commit before anything is written.
    ///
    /// The default adds nothing.
    fn before_commit(&self, changeset: &mut Changeset) -> Result<()> {
        let _ = changeset;
        Ok(())
    }
}

/// The kernel's own tables: events, audit, sequences, lookup index, custom fields and the
/// directory of users and teams.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreModule;

impl Module for CoreModule {
    fn name(&self) -> &'static str {
        "core"
    }

    fn migrations(&self) -> Vec<Migration> {
        let mut tables = crate::event::tables();
        tables.extend(crate::lookup::tables());
        tables.extend(crate::custom::tables());
        tables.extend(crate::directory::tables());
        vec![
            Migration::create_tables(
                1,
                "events, audit, sequences, lookup index, custom fields, directory",
                tables,
            ),
            Migration {
                version: 2,
                description: "events record the automation rule that made a change",
                steps: crate::event::cause_columns()
                    .into_iter()
                    .map(|column| crate::store::SchemaStep::AddColumn {
                        table: crate::event::EVENTS_TABLE,
                        column,
                    })
                    .collect(),
            },
        ]
    }

    fn record_kinds(&self) -> Vec<Arc<dyn KindHandler>> {
        crate::kinds::handlers()
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        vec![
            "user.created",
            "user.updated",
            "team.saved",
            "custom_field.defined",
        ]
    }
}

/// A validated composition of modules, in dependency order, with the schema they make.
#[derive(Clone)]
pub struct Modules {
    // Shared: a `Store` (and so every module API built from one, such as the one the
    // generic record API builds per call) clones the composition without copying it.
    list: Arc<[Arc<dyn Module>]>,
    schema: Arc<Schema>,
    registry: Arc<Registry>,
    actions: Arc<CustomActions>,
}

impl std::fmt::Debug for Modules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|m| m.name()))
            .finish()
    }
}

impl Modules {
    /// A builder with the core module.
    pub fn builder() -> ModulesBuilder {
        ModulesBuilder {
            list: vec![Arc::new(CoreModule)],
        }
    }

    /// The composed modules, in dependency order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Module>> {
        self.list.iter()
    }

    /// Whether a module of this name is composed.
    pub fn contains(&self, name: &str) -> bool {
        self.list.iter().any(|m| m.name() == name)
    }

    /// The schema the modules' migrations make.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The record kinds the modules declare.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The action kinds the modules offer to automation rules, by kind.
    pub fn automation_actions(&self) -> &Arc<CustomActions> {
        &self.actions
    }
}

/// Builds a [`Modules`].
pub struct ModulesBuilder {
    list: Vec<Arc<dyn Module>>,
}

impl ModulesBuilder {
    /// Adds a module.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, module: impl Module) -> Self {
        self.list.push(Arc::new(module));
        self
    }

    /// Adds a shared module.
    pub fn add_arc(mut self, module: Arc<dyn Module>) -> Self {
        self.list.push(module);
        self
    }

    /// Checks the composition: names unique, every dependency present, no cycle; orders the
    /// modules so that each comes after its dependencies, and builds the schema.
    pub fn build(self) -> Result<Modules> {
        let mut names = HashSet::new();
        for m in &self.list {
            if !names.insert(m.name()) {
                return Err(Error::Config(format!("module {} is added twice", m.name())));
            }
        }
        for m in &self.list {
            for d in m.dependencies() {
                if !names.contains(d) {
                    return Err(Error::Config(format!(
                        "module {} depends on {d}, which is not added",
                        m.name()
                    )));
                }
            }
        }
        let mut ordered: Vec<Arc<dyn Module>> = vec![];
        let mut placed: HashSet<&'static str> = HashSet::new();
        let mut rest = self.list;
        while !rest.is_empty() {
            let before = rest.len();
            let mut i = 0;
            while i < rest.len() {
                if rest[i].dependencies().iter().all(|d| placed.contains(d)) {
                    let m = rest.remove(i);
                    placed.insert(m.name());
                    ordered.push(m);
                } else {
                    i += 1;
                }
            }
            if rest.len() == before {
                let names: Vec<_> = rest.iter().map(|m| m.name()).collect();
                return Err(Error::Config(format!(
                    "modules depend on each other in a cycle: {}",
                    names.join(", ")
                )));
            }
        }
        let schema = Schema::build(
            ordered
                .iter()
                .map(|m| ModuleMigrations {
                    module: m.name(),
                    migrations: m.migrations(),
                })
                .collect(),
        )?;
        let registry = Registry::build(ordered.iter().flat_map(|m| m.record_kinds()).collect())?;
        let mut actions = CustomActions::new();
        for m in &ordered {
            for a in m.automation_actions() {
                let kind = a.kind();
                if !valid_action_kind(kind) {
                    return Err(Error::Config(format!(
                        "module {} offers action kind {kind:?}, which is not a valid name \
                         (`<module>.<verb>`, lowercase)",
                        m.name()
                    )));
                }
                if actions.insert(kind, a).is_some() {
                    return Err(Error::Config(format!(
                        "action kind {kind} is offered twice"
                    )));
                }
            }
        }
        Ok(Modules {
            list: ordered.into(),
            schema: Arc::new(schema),
            registry: Arc::new(registry),
            actions: Arc::new(actions),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M(&'static str, Vec<&'static str>);
    impl Module for M {
        fn name(&self) -> &'static str {
            self.0
        }
        fn dependencies(&self) -> Vec<&'static str> {
            self.1.clone()
        }
        fn migrations(&self) -> Vec<Migration> {
            vec![]
        }
    }

    #[test]
    fn composition_errors_are_errors() {
        let dup = Modules::builder()
            .add(M("a", vec![]))
            .add(M("a", vec![]))
            .build();
        assert!(matches!(dup, Err(Error::Config(m)) if m.contains("twice")));
        let missing = Modules::builder().add(M("b", vec!["a"])).build();
        assert!(matches!(missing, Err(Error::Config(m)) if m.contains("depends on a")));
        let cycle = Modules::builder()
            .add(M("a", vec!["b"]))
            .add(M("b", vec!["a"]))
            .build();
        assert!(matches!(cycle, Err(Error::Config(m)) if m.contains("cycle")));
        let ok = Modules::builder()
            .add(M("b", vec!["a"]))
            .add(M("a", vec!["core"]))
            .build()
            .unwrap();
        let order: Vec<_> = ok.iter().map(|m| m.name()).collect();
        assert_eq!(order, ["core", "a", "b"]);
    }

    struct Act(&'static str);
    impl CustomAction for Act {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn validate(&self, _: &serde_json::Value) -> Result<()> {
            Ok(())
        }
    }
    struct Offers(&'static str, &'static str);
    impl Module for Offers {
        fn name(&self) -> &'static str {
            self.0
        }
        fn migrations(&self) -> Vec<Migration> {
            vec![]
        }
        fn automation_actions(&self) -> Vec<Arc<dyn CustomAction>> {
            vec![Arc::new(Act(self.1))]
        }
    }

    #[test]
    fn action_kinds_are_collected_unique_and_well_named() {
        let ok = Modules::builder()
            .add(Offers("a", "a.go"))
            .add(Offers("b", "b.stop"))
            .build()
            .unwrap();
        let kinds: Vec<_> = ok.automation_actions().keys().copied().collect();
        assert_eq!(kinds, ["a.go", "b.stop"]);
        let twice = Modules::builder()
            .add(Offers("a", "x.go"))
            .add(Offers("b", "x.go"))
            .build();
        assert!(matches!(twice, Err(Error::Config(m)) if m.contains("offered twice")));
        let bad = Modules::builder().add(Offers("a", "Go")).build();
        assert!(matches!(bad, Err(Error::Config(m)) if m.contains("not a valid name")));
    }
}
