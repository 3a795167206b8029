//! The generic record API over every composed kind, on every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::records;
use crmkit_testkit::run_on_all;

fn listed() -> Vec<&'static str> {
    records::checks().iter().map(|c| c.0).collect()
}

fn run_check(name: &str) {
    let check = crate::find_check("records", records::checks(), name);
    run_on_all(&format!("records::{name}"), |b| async move {
        let store = crate::store(b, records::modules).await?;
        let mut failures = vec![];
        for k in records::all_fixtures() {
            if let Err(f) = check(&store, &k).await {
                failures.push(format!("[{}] {}", k.kind, f.message));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::storage(failures.join("\n")))
        }
    });
}

#[test]
fn describe_all() {
    run_on_all("records::describe_all", |b| async move {
        let store = crate::store(b, records::modules).await?;
        records::describe_all(&store)
            .await
            .map_err(|f| Error::storage(f.message))
    });
}

#[test]
fn every_kind_has_a_fixture() {
    let modules = records::modules().expect("modules");
    let store = Store::new(
        crmkit_core::memory::MemoryBackend::new((**modules.schema()).clone()),
        modules,
    );
    if let Err(f) = records::missing_fixtures(&store, &records::all_fixtures()) {
        panic!("{}", f.message);
    }
}

checks![
    round_trip,
    typed_equals_generic,
    isolation,
    access,
    bad_input,
    references,
];
