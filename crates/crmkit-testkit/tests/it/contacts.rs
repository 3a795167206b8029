//! The contacts scenarios and the contacts model-based test, on every backend.

use crmkit_core::{Error, Modules, Store};
use crmkit_testkit::contacts::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all, run_sync_on_all};

fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(crmkit_contacts::ContactsModule)
        .build()
}

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = contacts::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no contacts check named {name}"));
    run_on_all(&format!("contacts::{name}"), |b| async move {
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
        fn every_contacts_check_has_a_test() {
            let mut listed: Vec<&str> = contacts::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/contacts.rs must run every contacts check");
        }
    };
}

checks![
    crud_round_trip,
    bad_input,
    duplicate_email,
    hidden_holders,
    unique_race,
    lost_update_default,
    tenant_isolation,
    record_access,
    no_tenant_no_context,
    atomicity,
    import_batches,
    filters_and_paging,
    change_feed,
];

#[test]
fn contacts_model_based() {
    run_sync_on_all("contacts::model_based", |b| {
        contacts::model_based(move || store(b)).map_err(|f| Error::storage(f.message))
    });
}
