//! The contacts scenarios and the contacts model-based test, on every backend.

use crmkit_core::Error;
use crmkit_testkit::contacts;
use crmkit_testkit::run_sync_on_all;

fn run_check(name: &str) {
    crate::run_check("contacts", contacts::modules, contacts::checks(), name);
}

checks![
    contacts::checks().iter().map(|c| c.0);
    crud_round_trip,
    bad_input,
    duplicate_email,
    hidden_holders,
    unique_race,
    lost_update_default,
    tenant_isolation,
    record_access,
    no_tenant_no_context,
    atomicity,
    import_batches,
    filters_and_paging,
    change_feed,
];

#[test]
fn contacts_model_based() {
    run_sync_on_all("contacts::model_based", |b| {
        contacts::model_based(move || crate::store(b, contacts::modules))
            .map_err(|f| Error::storage(f.message))
    });
}
