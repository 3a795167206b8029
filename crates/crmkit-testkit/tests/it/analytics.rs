//! The sales reports (crmkit-analytics) against their oracle on every backend.

use crmkit_testkit::analytics;

store_suite!(analytics, analytics::modules, analytics_check_names);
store_property!(analytics_random_deals: analytics::random_deals, analytics::modules);
