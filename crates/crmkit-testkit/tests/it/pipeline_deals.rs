//! The pipeline and deal scenarios and property tests, on every backend.

use crmkit_testkit::pipeline_deals;

store_suite!(
    pipeline_deals,
    pipeline_deals::modules,
    pipeline_deals_check_names
);

store_property!(history_properties: pipeline_deals::history_properties, pipeline_deals::modules);
store_property!(weighted_totals: pipeline_deals::weighted_totals, pipeline_deals::modules);
