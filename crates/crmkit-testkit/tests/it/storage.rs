//! The storage-contract checks and the model-based differential test, on every backend.

use crmkit_testkit::storage::{self, Check};
use crmkit_testkit::{TestBackend, open, run_on_all, run_sync_on_all};

fn run_check(name: &str) {
    let check: Check = storage::checks()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no storage check named {name}"));
    run_on_all(name, |b| async move {
        let backend = open(b, &storage::modules()?).await?;
        (check.run)(backend).await
    });
}

checks![
    storage::checks().iter().map(|c| c.name);
    round_trip,
    versions_and_deletes,
    reserve_sequences,
    unique_and_primary_keys,
    atomicity_under_faults,
    event_sequence,
    concurrent_event_sequence,
    tenant_isolation,
    three_valued_logic,
    text_matching,
    text_order,
    keyset_paging,
    limit_and_count,
    aggregates,
    unknown_names,
    custom_fields,
];

#[test]
fn model_differential() {
    run_sync_on_all("model_differential", |b| {
        // Modest on servers (every case is a few dozen round trips); more where it is cheap.
        let cases = match b {
            TestBackend::Postgres | TestBackend::Mysql => 32,
            _ => 128,
        };
        storage::model_differential(|| async move { open(b, &storage::modules()?).await }, cases)
    });
}
