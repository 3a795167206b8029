//! The activity scenarios on every backend.

use crmkit_testkit::activities;

fn run_check(name: &str) {
    crate::run_check(
        "activities",
        activities::modules,
        activities::checks(),
        name,
    );
}

checks![
    activities::checks().iter().map(|c| c.0);
    crud_round_trip,
    bad_input,
    call_auto_linking,
    recurrence,
    reminder_delivered_once,
    follow_up_tracking,
    follow_up_lists,
    concurrent_follow_up,
    timeline,
    work_lists,
    agenda_paging,
    visibility_and_tenants,
    atomicity,
    batch_create,
    other_kinds_and_staging,
    hidden_like_nonexistent,
    reps_remind_and_sign_as_themselves,
];
