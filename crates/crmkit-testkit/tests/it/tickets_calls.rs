//! The call-centre scenarios (`Tickets::record_inbound_call`) on every backend.

use crmkit_testkit::{tickets, tickets_calls};

store_suite!(tickets_calls, tickets::modules, tickets_calls_check_names);
