//! The pipeline and deal scenarios and property tests, on every backend.

use crmkit_core::Error;
use crmkit_testkit::pipeline_deals;
use crmkit_testkit::run_sync_on_all;

store_suite!(
    pipeline_deals,
    pipeline_deals::modules,
    pipeline_deals_check_names
);

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
