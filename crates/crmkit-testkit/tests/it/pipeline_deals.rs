//! The pipeline and deal scenarios and property tests, on every backend.

use crmkit_core::Error;
use crmkit_testkit::pipeline_deals;
use crmkit_testkit::run_sync_on_all;

fn run_check(name: &str) {
    crate::run_check(
        "pipeline_deals",
        pipeline_deals::modules,
        pipeline_deals::checks(),
        name,
    );
}

checks![
    pipeline_deals::checks().iter().map(|c| c.0);
    default_pipeline,
    crud_round_trip,
    bad_input,
    close_and_reopen,
    required_fields,
    pipelines_and_stages,
    visibility,
    analytics_queries,
    atomicity,
    reference_rule,
];

#[test]
fn history_properties() {
    run_sync_on_all("pipeline_deals::history_properties", |b| {
        pipeline_deals::history_properties(move || crate::store(b, pipeline_deals::modules))
            .map_err(|f| Error::storage(f.message))
    });
}

#[test]
fn weighted_totals() {
    run_sync_on_all("pipeline_deals::weighted_totals", |b| {
        pipeline_deals::weighted_totals(move || crate::store(b, pipeline_deals::modules))
            .map_err(|f| Error::storage(f.message))
    });
}
