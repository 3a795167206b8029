//! The ticket analytics, SLA measures and recompute scenarios on every backend.

use crmkit_testkit::tickets_analytics;

fn run_check(name: &str) {
    crate::run_check(
        "tickets_analytics",
        tickets_analytics::modules,
        tickets_analytics::checks(),
        name,
    );
}

checks![
    tickets_analytics::checks().iter().map(|c| c.0);
    backlog_counts,
    measured_minutes,
    outcomes,
    satisfaction_average,
    recompute,
    recompute_after_calendar_edit,
    concurrent_recompute,
    permissions,
    matches_brute_force,
];
