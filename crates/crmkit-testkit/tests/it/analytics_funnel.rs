//! The deal progress reports (stage funnel, time in stage, lost reasons, slipped deals)
//! and the close-date history against their oracle on every backend.

use crmkit_testkit::analytics_funnel;

store_suite!(
    analytics_funnel,
    analytics_funnel::modules,
    analytics_funnel_check_names
);
store_property!(analytics_funnel_random_histories: analytics_funnel::random_histories, analytics_funnel::modules);
