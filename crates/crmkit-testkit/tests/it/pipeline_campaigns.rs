//! The campaigns and currencies scenarios, on every backend.

use crmkit_testkit::pipeline_campaigns;

fn run_check(name: &str) {
    crate::run_check(
        "pipeline_campaigns",
        pipeline_campaigns::modules,
        pipeline_campaigns::checks(),
        name,
    );
}

checks![
    pipeline_campaigns::checks().iter().map(|c| c.0);
    campaign_crud,
    bad_input,
    rates_by_date,
    conversion_exactness,
    base_currency_changes,
    members,
    visibility_and_isolation,
    roi_inputs,
    atomicity,
    composition,
    member_references,
];
