//! The lead and lead-conversion scenarios on every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::pipeline_leads::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all};

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = pipeline_leads::modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = pipeline_leads::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no lead check named {name}"));
    run_on_all(&format!("pipeline_leads::{name}"), |b| async move {
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
        fn every_lead_check_has_a_test() {
            let mut listed: Vec<&str> = pipeline_leads::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/pipeline_leads.rs must run every lead check");
        }
    };
}

checks![
    crud_round_trip,
    bad_input,
    status_rules,
    filters_and_paging,
    record_access,
    tenant_isolation,
    conversion_creates,
    conversion_links,
    dry_run,
    conversion_transitions,
    conversion_with_deal,
    conversion_atomicity,
    concurrent_conversion,
    conversion_references,
];
