//! The automation engine scenarios on every backend.

use crmkit_testkit::{automation, automation_engine};

store_suite!(
    automation_engine,
    automation::modules,
    automation_engine_check_names
);
