//! The call-centre scenarios (`Tickets::record_inbound_call`) on every backend.

use crmkit_testkit::{tickets, tickets_calls};

fn run_check(name: &str) {
    crate::run_check(
        "tickets_calls",
        tickets::modules,
        tickets_calls::checks(),
        name,
    );
}

checks![
    tickets_calls::checks().iter().map(|c| c.0);
    attach_to_open_ticket,
    new_ticket_for_known_caller,
    pending_reopened,
    unknown_and_unparsable_numbers,
    bad_input,
    atomicity,
    tenants_and_visibility,
];
