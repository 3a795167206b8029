//! Pipeline snapshots, the waterfall and forecast accuracy (crmkit-analytics) against
//! their oracle on every backend.

use crmkit_testkit::analytics_snapshots;

store_suite!(
    analytics_snapshots,
    analytics_snapshots::modules,
    analytics_snapshots_check_names
);
store_property!(analytics_snapshots_random_histories: analytics_snapshots::random_histories, analytics_snapshots::modules);
