//! The SLA scenarios (calendars, policies, per-ticket SLA state) on every backend.

use crmkit_testkit::tickets_sla;

store_suite!(tickets_sla, tickets_sla::modules, tickets_sla_check_names);
