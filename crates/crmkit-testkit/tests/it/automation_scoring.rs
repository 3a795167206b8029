//! The lead scoring scenarios on every backend.

use crmkit_testkit::{automation, automation_scoring};

store_suite!(
    automation_scoring,
    automation::modules,
    automation_scoring_check_names
);
