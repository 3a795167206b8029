//! Queries behave the same on every backend for every input (issue 9, item 6): date
//! bounds, NUL bytes, sums past 64 bits, phone extensions, analytics permission messages.

use crmkit_testkit::queries;

store_suite!(queries, queries::modules, queries_check_names);

store_property!(wide_sums_property: queries::wide_sums_property, queries::modules);
