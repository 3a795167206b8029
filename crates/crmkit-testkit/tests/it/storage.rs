//! The storage-contract checks and the model-based differential test, on every backend.

use crmkit_testkit::storage::{self, Check};
use crmkit_testkit::{TestBackend, open, run_on_all, run_sync_on_all};

fn listed() -> Vec<&'static str> {
    storage::checks().iter().map(|c| c.name).collect()
}

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

crmkit_testkit::storage_check_names!(checks);

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
