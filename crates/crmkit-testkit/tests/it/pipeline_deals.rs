//! The pipeline and deal scenarios and property tests, on every backend.

use crmkit_core::{Error, Modules, Store};
use crmkit_testkit::pipeline_deals::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all, run_sync_on_all};

fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(crmkit_contacts::ContactsModule)
        .add(crmkit_pipeline::PipelineModule)
        .build()
}

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = pipeline_deals::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no pipeline_deals check named {name}"));
    run_on_all(&format!("pipeline_deals::{name}"), |b| async move {
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
        fn every_pipeline_deals_check_has_a_test() {
            let mut listed: Vec<&str> = pipeline_deals::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/pipeline_deals.rs must run every check");
        }
    };
}

checks![
    default_pipeline,
    crud_round_trip,
    bad_input,
    close_and_reopen,
    required_fields,
    pipelines_and_stages,
    visibility,
    analytics_queries,
    atomicity,
    reference_rule,
];

#[test]
fn history_properties() {
    run_sync_on_all("pipeline_deals::history_properties", |b| {
        pipeline_deals::history_properties(move || store(b)).map_err(|f| Error::storage(f.message))
    });
}

#[test]
fn weighted_totals() {
    run_sync_on_all("pipeline_deals::weighted_totals", |b| {
        pipeline_deals::weighted_totals(move || store(b)).map_err(|f| Error::storage(f.message))
    });
}
