//! The SLA scenarios (calendars, policies, per-ticket SLA state) on every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::tickets_sla::{self as tickets, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all};

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = tickets::modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = tickets::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no SLA check named {name}"));
    run_on_all(&format!("tickets_sla::{name}"), |b| async move {
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
        fn every_sla_check_has_a_test() {
            let mut listed: Vec<&str> = tickets::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/tickets_sla.rs must run every SLA check");
        }
    };
}

checks![
    policy_selection,
    responses,
    pause_resume,
    due_queries,
    sweep_once,
    bad_input,
];
