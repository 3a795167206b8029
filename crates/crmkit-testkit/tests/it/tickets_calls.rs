//! The call-centre scenarios (`Tickets::record_inbound_call`) on every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::tickets;
use crmkit_testkit::tickets_calls::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all};

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = tickets::modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = tickets_calls::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no call-centre check named {name}"));
    run_on_all(&format!("tickets_calls::{name}"), |b| async move {
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
        fn every_call_centre_check_has_a_test() {
            let mut listed: Vec<&str> = tickets_calls::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/tickets_calls.rs must run every call-centre check");
        }
    };
}

checks![
    attach_to_open_ticket,
    new_ticket_for_known_caller,
    pending_reopened,
    unknown_and_unparsable_numbers,
    bad_input,
    atomicity,
    tenants_and_visibility,
];
