//! The lead and lead-conversion scenarios on every backend.

use crmkit_testkit::pipeline_leads;

fn run_check(name: &str) {
    crate::run_check(
        "pipeline_leads",
        pipeline_leads::modules,
        pipeline_leads::checks(),
        name,
    );
}

checks![
    pipeline_leads::checks().iter().map(|c| c.0);
    crud_round_trip,
    bad_input,
    status_rules,
    filters_and_paging,
    record_access,
    tenant_isolation,
    conversion_creates,
    conversion_links,
    dry_run,
    conversion_transitions,
    conversion_with_deal,
    conversion_atomicity,
    concurrent_conversion,
    conversion_references,
];
