//! The conformance suite on every configured backend (see `crmkit_testkit::backends`):
//! memory and SQLite always, PostgreSQL and MySQL when their URL variables are set.
//! `CRMKIT_TESTKIT_ONLY=memory` (comma-separated backend names) restricts a run.
//!
//! The harness the suite files share: [`store`] opens a store on one backend, [`run_check`]
//! runs one named store check of a suite on every backend, `checks!` makes one test per
//! named check plus a test that every check of the suite has one, and `store_suite!` makes
//! the tests of a store suite from the suite's own list of check names.

use crmkit_core::{Error, Modules, Store};
use crmkit_testkit::check::CheckFn;
use crmkit_testkit::{TestBackend, open, run_on_all};

/// Opens a store composed of `modules()` on backend `b`.
async fn store(
    b: TestBackend,
    modules: fn() -> crmkit_core::Result<Modules>,
) -> crmkit_core::Result<Store> {
    let modules = modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

/// The check called `name` in `checks`, or a panic naming `suite`.
fn find_check<C>(suite: &str, checks: Vec<(&'static str, C)>, name: &str) -> C {
    checks
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no {suite} check named {name}"))
}

/// Runs the check `name` of `suite` (one of `checks`) on a store of `modules()` on every
/// backend, reported as `suite::name`.
fn run_check(
    suite: &str,
    modules: fn() -> crmkit_core::Result<Modules>,
    checks: Vec<(&'static str, CheckFn)>,
    name: &str,
) {
    let check = find_check(suite, checks, name);
    run_on_all(&format!("{suite}::{name}"), |b| async move {
        let store = store(b, modules).await?;
        check(&store).await.map_err(|f| Error::storage(f.message))
    });
}

/// Fails unless the suite file at `file` tests exactly the checks `listed`.
fn assert_every_check_tested(file: &str, mut listed: Vec<&str>, tested: &[&str]) {
    let mut tested = tested.to_vec();
    listed.sort();
    tested.sort();
    assert_eq!(listed, tested, "{file} must run every check of its suite");
}

/// One `#[test]` per named check, each calling the file's `run_check(name)`, and
/// `every_check_has_a_test`, which compares the names with the file's `listed()` (the
/// names the suite lists).
macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_check(stringify!($name));
            }
        )*

        #[test]
        fn every_check_has_a_test() {
            crate::assert_every_check_tested(file!(), listed(), &[$(stringify!($name)),*]);
        }
    };
}

/// The tests of the store suite `$suite` (a module of crmkit_testkit run on a store of
/// `$modules()`): one per check that the suite's `$names` macro names (such as
/// `crmkit_testkit::activities_check_names!`), plus `every_check_has_a_test`.
macro_rules! store_suite {
    ($suite:ident, $modules:path, $names:ident) => {
        fn run_check(name: &str) {
            crate::run_check(stringify!($suite), $modules, $suite::checks(), name);
        }

        fn listed() -> Vec<&'static str> {
            $suite::checks().iter().map(|c| c.0).collect()
        }

        crmkit_testkit::$names!(checks);
    };
}

/// `#[test] fn $test`, which runs the sync property `$suite::$property` (given a store
/// factory) on a store of `$modules()` on every backend, reported as `suite::property`.
macro_rules! store_property {
    ($test:ident: $suite:ident::$property:ident, $modules:path) => {
        #[test]
        fn $test() {
            let name = concat!(stringify!($suite), "::", stringify!($property));
            crmkit_testkit::run_sync_on_all(name, |b| {
                $suite::$property(move || crate::store(b, $modules))
                    .map_err(|f| crmkit_core::Error::storage(f.message))
            });
        }
    };
}

mod activities;
mod analytics;
mod analytics_funnel;
mod analytics_leads;
mod analytics_service;
mod analytics_snapshots;
mod automation;
mod automation_engine;
mod automation_scoring;
mod automation_sequences;
mod contacts;
mod directory;
mod pipeline_campaigns;
mod pipeline_deals;
mod pipeline_leads;
mod queries;
mod records;
mod self_test;
mod storage;
mod tickets;
mod tickets_analytics;
mod tickets_calls;
mod tickets_sla;
