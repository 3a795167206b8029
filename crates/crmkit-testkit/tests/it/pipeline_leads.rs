//! The lead and lead-conversion scenarios on every backend.

use crmkit_testkit::pipeline_leads;

store_suite!(
    pipeline_leads,
    pipeline_leads::modules,
    pipeline_leads_check_names
);
