//! The automation rule scenarios on every backend.

use crmkit_testkit::automation;

store_suite!(automation, automation::modules, automation_check_names);
