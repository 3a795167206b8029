//! The directory scenarios (users, teams, request contexts, custom field definitions) on
//! every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::directory::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all};

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = directory::modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = directory::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no directory check named {name}"));
    run_on_all(&format!("directory::{name}"), |b| async move {
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
        fn every_directory_check_has_a_test() {
            let mut listed: Vec<&str> = directory::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/directory.rs must run every directory check");
        }
    };
}

checks![
    ctx_for_active_users_only,
    only_admin_manages_users,
    only_admin_manages_teams,
    only_admin_defines_custom_fields,
    user_teams_of_this_tenant,
    no_work_for_inactive_users,
    directory_reads,
];
