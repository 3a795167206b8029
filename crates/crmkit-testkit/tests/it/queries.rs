//! Queries behave the same on every backend for every input (issue 9, item 6): date
//! bounds, NUL bytes, sums past 64 bits, phone extensions, analytics permission messages.

use crmkit_core::Error;
use crmkit_testkit::queries;
use crmkit_testkit::run_sync_on_all;

store_suite!(queries, queries::modules, queries_check_names);

#[test]
fn wide_sums_property() {
    run_sync_on_all("queries::wide_sums_property", |b| {
        queries::wide_sums_property(move || crate::store(b, queries::modules))
            .map_err(|f| Error::storage(f.message))
    });
}
