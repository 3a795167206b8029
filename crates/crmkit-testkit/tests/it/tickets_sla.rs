//! The SLA scenarios (calendars, policies, per-ticket SLA state) on every backend.

use crmkit_testkit::tickets_sla;

fn run_check(name: &str) {
    crate::run_check(
        "tickets_sla",
        tickets_sla::modules,
        tickets_sla::checks(),
        name,
    );
}

checks![
    tickets_sla::checks().iter().map(|c| c.0);
    policy_selection,
    responses,
    pause_resume,
    due_queries,
    sweep_once,
    bad_input,
];
