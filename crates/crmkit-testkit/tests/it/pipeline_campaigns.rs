//! The campaigns and currencies scenarios, on every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::pipeline_campaigns::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all};

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = pipeline_campaigns::modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = pipeline_campaigns::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no campaigns check named {name}"));
    run_on_all(&format!("pipeline_campaigns::{name}"), |b| async move {
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
        fn every_campaigns_check_has_a_test() {
            let mut listed: Vec<&str> = pipeline_campaigns::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/pipeline_campaigns.rs must run every check");
        }
    };
}

checks![
    campaign_crud,
    bad_input,
    rates_by_date,
    conversion_exactness,
    base_currency_changes,
    members,
    visibility_and_isolation,
    roi_inputs,
    atomicity,
    composition,
    member_references,
];
