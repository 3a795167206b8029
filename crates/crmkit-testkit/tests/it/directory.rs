//! The directory scenarios (users, teams, request contexts, custom field definitions) on
//! every backend.

use crmkit_testkit::directory;

fn run_check(name: &str) {
    crate::run_check("directory", directory::modules, directory::checks(), name);
}

checks![
    directory::checks().iter().map(|c| c.0);
    ctx_for_active_users_only,
    only_admin_manages_users,
    only_admin_manages_teams,
    only_admin_defines_custom_fields,
    user_teams_of_this_tenant,
    no_work_for_inactive_users,
    directory_reads,
];
