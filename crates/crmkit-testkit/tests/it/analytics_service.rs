//! The activity and service reports (crmkit-analytics) against their oracle on every
//! backend.

use crmkit_testkit::analytics_service;

store_suite!(
    analytics_service,
    analytics_service::modules,
    analytics_service_check_names
);
