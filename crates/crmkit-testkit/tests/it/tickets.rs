//! The ticket scenarios on every backend.

use crmkit_testkit::tickets;

store_suite!(tickets, tickets::modules, tickets_check_names);
