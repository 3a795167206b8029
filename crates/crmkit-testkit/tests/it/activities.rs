//! The activity scenarios on every backend.

use crmkit_core::{Error, Store};
use crmkit_testkit::activities::{self, CheckFn};
use crmkit_testkit::{TestBackend, open, run_on_all};

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = activities::modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: CheckFn = activities::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no activity check named {name}"));
    run_on_all(&format!("activities::{name}"), |b| async move {
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
        fn every_activity_check_has_a_test() {
            let mut listed: Vec<&str> = activities::checks().iter().map(|c| c.0).collect();
            let mut tested = vec![$(stringify!($name)),*];
            listed.sort();
            tested.sort();
            assert_eq!(listed, tested, "tests/it/activities.rs must run every activity check");
        }
    };
}

checks![
    crud_round_trip,
    bad_input,
    call_auto_linking,
    recurrence,
    reminder_delivered_once,
    follow_up_tracking,
    follow_up_lists,
    concurrent_follow_up,
    timeline,
    work_lists,
    agenda_paging,
    visibility_and_tenants,
    atomicity,
    batch_create,
    other_kinds_and_staging,
    hidden_like_nonexistent,
    reps_remind_and_sign_as_themselves,
];
