//! A third-party module built only on crmkit's public APIs: notes on organizations, with its
//! own table and migrations, events, audit entries and access checks, on the in-memory
//! backend and on SQLite. Its writes go through the same changeset mechanism as the
//! built-in modules, so they are atomic with their events on every backend.
//!
//! Run with `cargo run --example custom_module`.

use chrono::{DateTime, Utc};
use crmkit::contacts::{Contacts, NewOrganization};
use crmkit::core::event::decode_timestamp;
use crmkit::core::store::{
    ColumnDef, ColumnType, Cond, IndexDef, Migration, OrderKey, SchemaStep, Select, TableDef,
    Value, Write,
};
use crmkit::core::text::check_text;
use crmkit::core::{AuditChange, Changeset, NewEvent};
use crmkit::{
    Actor, Crm, Ctx, Error, Module, OrganizationId, RecordKind, RecordRef, Result, Role, Store,
    TenantId, UserId, UserInput,
};
use uuid::Uuid;

const NOTES: &str = "orgnotes_note";
const NOTE: RecordKind = RecordKind::new("org_note");

/// The module: a name, a dependency on contacts, and versioned migrations.
struct OrgNotesModule;

impl Module for OrgNotesModule {
    fn name(&self) -> &'static str {
        "org_notes"
    }
    fn dependencies(&self) -> Vec<&'static str> {
        vec!["contacts"]
    }
    fn migrations(&self) -> Vec<Migration> {
        use ColumnType::*;
        vec![
            Migration {
                version: 1,
                description: "notes on organizations",
                steps: vec![SchemaStep::CreateTable(
                    TableDef::new(
                        NOTES,
                        [
                            ColumnDef::required("id", Uuid),
                            ColumnDef::required("organization_id", Uuid),
                            ColumnDef::required("body", LongText),
                            ColumnDef::required("author", Uuid),
                            ColumnDef::required("created_at", Timestamp),
                        ],
                        ["id"],
                    )
                    .index(IndexDef::new(
                        "orgnotes_note_org",
                        ["organization_id", "id"],
                    )),
                )],
            },
            Migration {
                version: 2,
                description: "pinned notes",
                steps: vec![SchemaStep::AddColumn {
                    table: NOTES,
                    column: ColumnDef::required("pinned", Bool).with_default(Value::Int(0)),
                }],
            },
        ]
    }
    fn event_kinds(&self) -> Vec<&'static str> {
        vec!["org_note.added"]
    }
}

#[derive(Debug)]
struct Note {
    body: String,
    pinned: bool,
    at: DateTime<Utc>,
}

/// The module's API, built from the host's store.
struct OrgNotes {
    store: Store,
    contacts: Contacts,
}

impl OrgNotes {
    fn new(store: &Store) -> Result<Self> {
        store.require_module("org_notes")?;
        Ok(OrgNotes {
            store: store.clone(),
            contacts: Contacts::new(store)?,
        })
    }

    async fn add(&self, ctx: &Ctx, org: OrganizationId, body: &str, pinned: bool) -> Result<Uuid> {
        ctx.actor().require_write("add note")?;
        check_text("body", body, 10_000, true)?;
        // Access: only on organizations the actor may see (NotFound otherwise).
        self.contacts.get_organization(ctx, org).await?;
        let id = Uuid::now_v7();
        let record = RecordRef::new(NOTE, id);
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: NOTES,
            row: vec![
                Value::Uuid(id),
                Value::Uuid(org.as_uuid()),
                Value::Text(body.into()),
                Value::Uuid(ctx.actor().user.as_uuid()),
                Value::timestamp(ctx.now()),
                Value::from(pinned),
            ],
        });
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "*".into(),
            old: None,
            new: Some(serde_json::json!(body).to_string()),
        });
        cs.events.push(NewEvent::new(
            "org_note.added",
            record,
            vec![],
            serde_json::json!({ "organization": org, "body": body }),
        ));
        self.store.commit(cs).await?;
        Ok(id)
    }

    async fn of(&self, ctx: &Ctx, org: OrganizationId) -> Result<Vec<Note>> {
        self.contacts.get_organization(ctx, org).await?;
        let mut s = Select::new(NOTES, Cond::eq("organization_id", org.as_uuid()));
        s.order = vec![OrderKey {
            column: "id".into(),
            desc: true,
            null_as: None,
            custom: None,
        }];
        let rows = self.store.backend().select(ctx.tenant(), &s).await?;
        rows.iter()
            .map(|r| {
                Ok(Note {
                    body: r[2].as_text().unwrap_or_default().to_owned(),
                    at: decode_timestamp(&r[4])?,
                    pinned: r[5].as_int() == Some(1),
                })
            })
            .collect()
    }
}

async fn demo(url: &str) -> Result<()> {
    println!("-- backend {url}");
    let crm = Crm::builder().module(OrgNotesModule).open(url).await?;
    let notes = OrgNotes::new(crm.store())?;
    let (tenant, me) = (TenantId::new(), UserId::new());
    // Bootstrap: `Ctx::new` trusts the host; the admin puts itself into the directory, and
    // request contexts come from `ctx_for` from then on.
    let bootstrap = Ctx::new(tenant, Actor::new(me, [Role::Admin], []))?;
    crm.directory()
        .put_user(
            &bootstrap,
            UserInput {
                id: me,
                name: "Ada".into(),
                email: "ada@example.com".into(),
                roles: vec![Role::Admin],
                teams: vec![],
                active: true,
                time_zone: "UTC".into(),
            },
        )
        .await?;
    let ctx = crm.directory().ctx_for(tenant, me).await?;
    let org = crm
        .contacts()
        .create_organization(&ctx, NewOrganization::named("Initech"))
        .await?;
    notes
        .add(&ctx, org.id, "Renewal talks start in March.", false)
        .await?;
    notes
        .add(
            &ctx,
            org.id,
            "Prefers email; never call before 10:00.",
            true,
        )
        .await?;
    match notes.add(&ctx, OrganizationId::new(), "lost", false).await {
        Err(Error::NotFound { .. }) => println!("a note on an unknown organization is NotFound"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    for n in notes.of(&ctx, org.id).await? {
        println!(
            "  [{}] {} {}",
            if n.pinned { "pinned" } else { "      " },
            n.at.format("%H:%M:%S"),
            n.body
        );
    }
    let feed = crm.events_since(&ctx, 0, 100).await?;
    println!(
        "  feed: {:?}",
        feed.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    demo("memory:").await?;
    let path = std::env::temp_dir().join(format!("crmkit-custom-module-{}.db", Uuid::now_v7()));
    demo(&format!("sqlite://{}", path.display())).await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
