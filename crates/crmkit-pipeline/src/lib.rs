//! # crmkit-pipeline
//!
//! The sales module: leads and their conversion ([`lead`]), pipelines with ordered stages
//! and deals with an append-only stage history ([`deal`]), campaigns and attribution
//! ([`campaign`]), and the tenant's base currency with exchange rates ([`currency`]).
//!
//! It follows the pattern of crmkit-contacts: every command validates its input, checks
//! record-level access, and writes one changeset (rows, audit entries, events). Lead
//! conversion stages the contact, the organization and the deal it creates into one
//! changeset with the lead's own update, so it is atomic on every backend.
//!
//! The record kinds `lead`, `deal`, `campaign` and `pipeline` are declared for the
//! generic record API ([`kinds`]; a pipeline's stages are a field of the pipeline).

pub mod actions;
pub mod campaign;
pub mod currency;
pub mod deal;
pub mod kinds;
pub mod lead;

use crmkit_core::store::SchemaStep;
use crmkit_core::{Migration, Module};

/// The sales module.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineModule;

impl Module for PipelineModule {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["contacts"]
    }

    fn migrations(&self) -> Vec<Migration> {
        let mut tables = deal::tables();
        tables.extend(lead::tables());
        tables.extend(campaign::tables());
        tables.extend(currency::tables());
        vec![
            Migration::create_tables(
                1,
                "pipelines, stages, deals, stage history, leads, campaigns, exchange rates",
                tables,
            ),
            // Never change a released migration: new tables come in new versions.
            Migration::create_tables(
                2,
                "history of deals' expected close date changes (recorded from here on)",
                [deal::rows::close_history_table()],
            ),
            Migration {
                version: 3,
                description: "indexes of deals by status and won / lost instant (win rates, \
                              forecasts and cycle lengths read a period's closed deals as a \
                              range)",
                steps: deal::rows::closed_indexes()
                    .into_iter()
                    .map(|index| SchemaStep::CreateIndex {
                        table: deal::rows::DEAL_TABLE,
                        index,
                    })
                    .collect(),
            },
        ]
    }

    fn record_kinds(&self) -> Vec<std::sync::Arc<dyn crmkit_core::record::KindHandler>> {
        kinds::handlers()
    }

    fn automation_actions(&self) -> Vec<std::sync::Arc<dyn crmkit_core::action::CustomAction>> {
        actions::actions()
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        let mut k = deal::EVENT_KINDS.to_vec();
        k.extend_from_slice(lead::EVENT_KINDS);
        k.extend_from_slice(campaign::EVENT_KINDS);
        k.extend_from_slice(currency::EVENT_KINDS);
        k
    }
}
