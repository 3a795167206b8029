//! The lead funnel by source and campaign ROI against their oracle on every backend.

use crmkit_testkit::analytics_leads;

store_suite!(
    analytics_leads,
    analytics_leads::modules,
    analytics_leads_check_names
);
