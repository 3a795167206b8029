//! The contacts scenarios and the contacts model-based test, on every backend.

use crmkit_core::Error;
use crmkit_testkit::contacts;
use crmkit_testkit::run_sync_on_all;

store_suite!(contacts, contacts::modules, contacts_check_names);

#[test]
fn contacts_model_based() {
    run_sync_on_all("contacts::model_based", |b| {
        contacts::model_based(move || crate::store(b, contacts::modules))
            .map_err(|f| Error::storage(f.message))
    });
}
