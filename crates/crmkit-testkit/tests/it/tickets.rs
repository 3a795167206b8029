//! The ticket scenarios on every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::tickets::{self, CheckFn};
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
        .unwrap_or_else(|| panic!("no ticket check named {name}"));
    run_on_all(&format!("tickets::{name}"), |b| async move {
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
        fn every_ticket_check_has_a_test() {
            let mut listed: Vec<&str> = tickets::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/tickets.rs must run every ticket check");
        }
    };
}

checks![
    crud_round_trip,
    bad_input,
    transition_table,
    concurrent_numbering,
    first_response,
    comment_rules,
    satisfaction_rules,
    escalation,
    visibility_and_tenants,
    atomicity,
    reference_rule,
];
