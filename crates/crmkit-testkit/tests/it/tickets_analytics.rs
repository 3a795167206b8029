//! The ticket analytics, SLA measures and recompute scenarios on every backend.

use crmkit_testkit::tickets_analytics;

store_suite!(
    tickets_analytics,
    tickets_analytics::modules,
    tickets_analytics_check_names
);
