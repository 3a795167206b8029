//! Queries behave the same on every backend for every input (issue 9, item 6): date
//! bounds, NUL bytes, sums past 64 bits, phone extensions, analytics permission messages.

use crmkit_core::{Error, Store};
use crmkit_testkit::queries::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all, run_sync_on_all};

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = queries::modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = queries::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no queries check named {name}"));
    run_on_all(&format!("queries::{name}"), |b| async move {
        let store = store(b).await?;
        check(&store).await.map_err(|f| Error::storage(f.message))
    });
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_check(stringify!($name));
            }
        )*

        #[test]
        fn every_queries_check_has_a_test() {
            let mut listed: Vec<&str> = queries::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/queries.rs must run every queries check");
        }
    };
}

checks![
    date_bounds,
    nul_bytes,
    wide_pipeline_summary,
    wide_sums,
    phone_extensions,
    analytics_permission_messages,
];

#[test]
fn wide_sums_property() {
    run_sync_on_all("queries::wide_sums_property", |b| {
        queries::wide_sums_property(move || store(b)).map_err(|f| Error::storage(f.message))
    });
}
