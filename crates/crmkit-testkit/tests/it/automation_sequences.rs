//! The automation sequence scenarios on every backend.

use crmkit_testkit::{automation, automation_sequences};

store_suite!(
    automation_sequences,
    automation::modules,
    automation_sequences_check_names
);
