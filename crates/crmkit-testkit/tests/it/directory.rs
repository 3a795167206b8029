//! The directory scenarios (users, teams, request contexts, custom field definitions) on
//! every backend.

use crmkit_testkit::directory;

store_suite!(directory, directory::modules, directory_check_names);
