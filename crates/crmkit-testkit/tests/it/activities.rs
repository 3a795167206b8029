//! The activity scenarios on every backend.

use crmkit_testkit::activities;

store_suite!(activities, activities::modules, activities_check_names);
