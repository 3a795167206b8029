//! A host that uses crmkit and sqlx side by side: crmkit's SQLite backend (rusqlite) and
//! sqlx's SQLite driver in one binary, plus sqlx's server drivers and type integrations.

use crmkit::chrono::{DateTime, Utc};
use crmkit::{Actor, Crm, Ctx, Role, TenantId, UserId, serde_json};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::types::Json;

/// What a host keeps: the CRM and its own pools.
#[allow(dead_code)]
struct App {
    crm: Crm,
    sqlite: sqlx::SqlitePool,
    postgres: Option<sqlx::PgPool>,
    mysql: Option<sqlx::MySqlPool>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crm = Crm::open("sqlite::memory:").await?;
    let sqlite = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await?;
    let app = App {
        crm,
        sqlite,
        postgres: None,
        mysql: None,
    };

    let tenant = TenantId::new();
    let ctx = Ctx::new(tenant, Actor::new(UserId::new(), [Role::Admin], []))?;
    let events = app.crm.events_since(&ctx, 0, 10).await?;

    // crmkit's re-exported uuid, chrono and serde_json are the crates sqlx encodes.
    let tenant_uuid: sqlx::types::Uuid = tenant.as_uuid();
    let (version, echoed, at, same): (String, Json<serde_json::Value>, DateTime<Utc>, bool) =
        sqlx::query_as("SELECT sqlite_version(), ?, ?, ? = ?")
            .bind(Json(serde_json::json!({ "tenant": tenant_uuid })))
            .bind(Utc::now())
            .bind(tenant_uuid)
            .bind(tenant.as_uuid())
            .fetch_one(&app.sqlite)
            .await?;
    assert!(same);
    println!(
        "sqlx SQLite {version}, crmkit feed {} events, {} at {at}",
        events.len(),
        echoed.0
    );
    Ok(())
}
