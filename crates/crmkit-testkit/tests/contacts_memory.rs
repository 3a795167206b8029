//! Runs the contacts conformance suite on the in-memory backend.

use crmkit_testkit::contacts;

fn store() -> crmkit_core::Store {
    let modules = crmkit_core::Modules::builder()
        .add(crmkit_contacts::ContactsModule)
        .build()
        .expect("modules compose");
    crmkit_core::Store::new(
        crmkit_core::memory::MemoryBackend::new((**modules.schema()).clone()),
        modules,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crud_round_trip() {
    contacts::crud_round_trip(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input() {
    contacts::bad_input(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_email() {
    contacts::duplicate_email(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_race() {
    contacts::unique_race(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_update() {
    contacts::lost_update(&store(), 100).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_isolation() {
    contacts::tenant_isolation(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_access() {
    contacts::record_access(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_tenant_no_context() {
    contacts::no_tenant_no_context(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn atomicity() {
    // Own store: fault injection affects every commit of a backend.
    contacts::atomicity(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_batches() {
    contacts::import_batches(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_and_paging() {
    contacts::filters_and_paging(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_feed() {
    contacts::change_feed(&store()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_on_one_store() {
    // Every check shares one database, as a harness would run them.
    contacts::run_all(&store()).await.unwrap();
}

#[test]
fn model_based() {
    contacts::model_based(|| async { Ok(store()) }).unwrap();
}
