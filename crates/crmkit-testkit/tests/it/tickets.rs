//! The ticket scenarios on every backend.

use crmkit_testkit::tickets;

fn run_check(name: &str) {
    crate::run_check("tickets", tickets::modules, tickets::checks(), name);
}

checks![
    tickets::checks().iter().map(|c| c.0);
    crud_round_trip,
    bad_input,
    transition_table,
    concurrent_numbering,
    first_response,
    comment_rules,
    satisfaction_rules,
    escalation,
    visibility_and_tenants,
    atomicity,
    reference_rule,
];
