//! The generic record API over every composed kind, on every backend.

use crmkit_core::{Error, Modules, Store};
use crmkit_testkit::records::{self, KindCheck};
use crmkit_testkit::{TestBackend, open, run_on_all};

fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(crmkit_contacts::ContactsModule)
        .add(crmkit_pipeline::PipelineModule)
        .add(crmkit_activities::ActivitiesModule)
        .add(crmkit_tickets::TicketsModule)
        .build()
}

async fn store(b: TestBackend) -> crmkit_core::Result<Store> {
    let modules = modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

fn run_check(name: &str) {
    let check: KindCheck = records::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no records check named {name}"));
    run_on_all(&format!("records::{name}"), |b| async move {
        let store = store(b).await?;
        let mut failures = vec![];
        for k in records::all_fixtures() {
            if let Err(f) = check(&store, &k).await {
                failures.push(format!("[{}] {}", k.kind, f.message));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::storage(failures.join("\n")))
        }
    });
}

#[test]
fn describe_all() {
    run_on_all("records::describe_all", |b| async move {
        let store = store(b).await?;
        records::describe_all(&store)
            .await
            .map_err(|f| Error::storage(f.message))
    });
}

#[test]
fn every_kind_has_a_fixture() {
    let modules = modules().expect("modules");
    let store = Store::new(
        crmkit_core::memory::MemoryBackend::new((**modules.schema()).clone()),
        modules,
    );
    if let Err(f) = records::missing_fixtures(&store, &records::all_fixtures()) {
        panic!("{}", f.message);
    }
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_check(stringify!($name));
            }
        )*
    };
}

checks!(
    round_trip,
    typed_equals_generic,
    isolation,
    access,
    bad_input,
    references
);
