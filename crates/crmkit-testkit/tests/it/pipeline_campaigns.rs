//! The campaigns and currencies scenarios, on every backend.

use crmkit_testkit::pipeline_campaigns;

store_suite!(
    pipeline_campaigns,
    pipeline_campaigns::modules,
    pipeline_campaigns_check_names
);
