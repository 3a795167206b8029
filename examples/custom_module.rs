//! A third-party module built only on crmkit's public APIs: notes on organizations
//! (`examples/custom_module/org_notes.rs`), with its own table and migrations, a typed API
//! (create, get, list with keyset paging, versioned update, soft delete, restore, audit),
//! record-level access like the built-in records, its organization reference checked by
//! crmkit's one reference rule, and its `org_note` kind declared to the generic record
//! API, and an automation action kind (`org_note.add`) that rules saved through
//! `crm.automation()` may use, while its kind triggers rules like a built-in one, on the
//! in-memory backend and on SQLite.
//!
//! Run with `cargo run --example custom_module`.

#[path = "custom_module/org_notes.rs"]
mod org_notes;

use crmkit::automation::{Action, NewRule, Trigger};
use crmkit::contacts::NewOrganization;
use crmkit::serde_json::{self, json};
use crmkit::{
    Actor, Crm, Ctx, Error, Filter, Query, Role, TeamId, TenantId, UserId, UserInput, Uuid,
};
use org_notes::{ADD_NOTE_ACTION, NewOrgNote, OrgNoteId, OrgNotePatch, OrgNotes, OrgNotesModule};

async fn put_user(
    crm: &Crm,
    admin: &Ctx,
    id: UserId,
    name: &str,
    role: Role,
    teams: Vec<TeamId>,
) -> crmkit::Result<()> {
    crm.directory()
        .put_user(
            admin,
            UserInput {
                id,
                name: name.into(),
                email: format!("{}@example.com", name.to_lowercase()),
                roles: vec![role],
                teams,
                active: true,
                time_zone: "UTC".into(),
            },
        )
        .await?;
    Ok(())
}

async fn demo(url: &str, describe: bool) -> crmkit::Result<()> {
    println!("-- backend {url}");
    // The host composes the built-in modules and its own.
    let crm = Crm::builder().module(OrgNotesModule).open(url).await?;
    let notes = OrgNotes::new(crm.store())?;
    let tenant = TenantId::new();
    let (me, rhea, team) = (UserId::new(), UserId::new(), TeamId::new());
    // Bootstrap: `Ctx::new` trusts the host; the admin puts itself and the team's rep into
    // the directory, and request contexts come from `ctx_for` from then on.
    let bootstrap = Ctx::new(tenant, Actor::new(me, [Role::Admin], []))?;
    crm.directory().put_team(&bootstrap, team, "EMEA").await?;
    put_user(&crm, &bootstrap, me, "Ada", Role::Admin, vec![]).await?;
    put_user(&crm, &bootstrap, rhea, "Rhea", Role::Rep, vec![team]).await?;
    let ctx = crm.directory().ctx_for(tenant, me).await?;
    let rep = crm.directory().ctx_for(tenant, rhea).await?;

    let org = crm
        .organizations()
        .create(&ctx, NewOrganization::named("Initech"))
        .await?;

    // The typed API.
    let renewal = notes
        .create(
            &ctx,
            NewOrgNote::new(org.id, "Renewal", "Renewal talks start in March."),
        )
        .await?;
    notes
        .create(
            &ctx,
            NewOrgNote::new(
                org.id,
                "Calling hours",
                "Prefers email; never call before 10:00.",
            )
            .pinned(),
        )
        .await?;
    let renewal = notes
        .update(
            &ctx,
            renewal.id,
            renewal.version,
            OrgNotePatch {
                body: Some("Renewal talks start in April.".into()),
                ..Default::default()
            },
        )
        .await?;
    match notes
        .update(&ctx, renewal.id, 1, OrgNotePatch::default())
        .await
    {
        Err(Error::Conflict {
            expected, actual, ..
        }) => println!("  a stale update is a Conflict (based on v{expected}, now v{actual})"),
        other => panic!("expected a Conflict, got {other:?}"),
    }
    // Keyset paging: one note per page, pinned first.
    let mut q = Query::new()
        .filter(Filter::eq("organization", org.id.as_uuid()))
        .sort_desc("pinned")
        .sort_asc("title")
        .limit(1);
    loop {
        let page = notes.list(&ctx, &q).await?;
        for n in &page.items {
            println!(
                "  [{}] {} v{}: {}",
                if n.pinned { "pinned" } else { "      " },
                n.title,
                n.version,
                n.body
            );
        }
        match page.next_cursor {
            Some(c) => q = q.after(c),
            None => break,
        }
    }
    let deleted = notes.delete(&ctx, renewal.id, renewal.version).await?;
    let restored = notes.restore(&ctx, renewal.id, deleted.version).await?;
    println!(
        "  deleted and restored; the audit trail has {} entries",
        notes.audit(&ctx, restored.id).await?.len()
    );

    // Access: Rhea (a rep in another team) cannot see Ada's note, nor refer to Ada's
    // organization; both look exactly as if they did not exist.
    let hidden = notes.get(&rep, renewal.id).await.unwrap_err();
    let missing = notes.get(&rep, OrgNoteId::new()).await.unwrap_err();
    assert!(matches!(
        (&hidden, &missing),
        (Error::NotFound { .. }, Error::NotFound { .. })
    ));
    println!("  a hidden note is NotFound, like a missing one");
    match notes
        .create(
            &rep,
            NewOrgNote::new(org.id, "Mine", "On a hidden organization"),
        )
        .await
    {
        Err(Error::Validation(v)) if v.has("organization") => println!("  {v}"),
        other => panic!("expected a Validation error on organization, got {other:?}"),
    }

    // The generic record API, by kind name.
    let records = crm.records();
    if describe {
        let d = records.describe(&ctx, "org_note").await?;
        println!(
            "  the org_note kind, described:\n{}",
            serde_json::to_string_pretty(&d).expect("descriptions serialize")
        );
    }
    let created = records
        .create(
            &ctx,
            "org_note",
            json!({"organization": org.id, "title": "Budget", "body": "Budget is approved."}),
        )
        .await?;
    let id = created.id().expect("an id");
    let patched = records
        .patch(
            &ctx,
            "org_note",
            id,
            created.version().expect("a version"),
            json!({"pinned": true, "title": "Budget approved"}),
        )
        .await?;
    println!("  generic patch: {}", patched["title"]);
    let page = records
        .list(
            &ctx,
            "org_note",
            &Query::new()
                .filter(Filter::contains("title", "BUDGET"))
                .limit(10),
        )
        .await?;
    println!(
        "  generic list of titles containing \"budget\": {} note(s)",
        page.items.len()
    );
    // A bad body is a Validation error naming each bad field and the kind; nothing is
    // written.
    match records
        .create(
            &ctx,
            "org_note",
            json!({"organization": org.id, "title": 42, "body": "x", "colour": "red"}),
        )
        .await
    {
        Err(Error::Validation(v)) if v.has("title") && v.has("colour") => {
            println!("  bad body: {v}")
        }
        other => panic!("expected a Validation error, got {other:?}"),
    }
    match records
        .patch(
            &ctx,
            "org_note",
            id,
            patched["version"].as_u64().expect("a version"),
            json!({"body": "x".repeat(10_001)}),
        )
        .await
    {
        Err(Error::Validation(v)) if v.has("body") => println!("  bad patch: {v}"),
        other => panic!("expected a Validation error, got {other:?}"),
    }

    // Automation: the module's `org_note.add` action kind reaches `crm.automation()` like
    // the built-in ones; its parameters are validated on save by the module.
    let rule = NewRule::new(
        "Note new organizations",
        Trigger::RecordCreated {
            record_kind: "organization".into(),
        },
    )
    .action(Action::Custom {
        kind: ADD_NOTE_ACTION.into(),
        params: json!({"title": "Welcome", "text": "New organization {{name}}: call within a week."}),
    });
    let saved = crm.automation().create(&ctx, rule.clone()).await?;
    println!(
        "  rule {:?} saved with action kind {ADD_NOTE_ACTION}",
        saved.name
    );
    let mut bad = rule;
    bad.actions = vec![Action::Custom {
        kind: ADD_NOTE_ACTION.into(),
        params: json!({"text": ""}),
    }];
    match crm.automation().create(&ctx, bad).await {
        Err(Error::Validation(v)) if v.has("actions[0].params.text") => {
            println!("  bad action params: {v}")
        }
        other => panic!("expected a Validation error on the action's text, got {other:?}"),
    }

    // The module's own kind is a trigger like any other: a rule on new org notes marks
    // their title through the generic record API (the module's own patch command).
    crm.automation()
        .create(
            &ctx,
            NewRule::new(
                "Mark new notes",
                Trigger::RecordCreated {
                    record_kind: "org_note".into(),
                },
            )
            .action(Action::SetFields {
                fields: [("title".to_owned(), json!("[new] {{title}}"))].into(),
            }),
        )
        .await?;

    // The engine runs them: a new organization gets its note, written by the module's own
    // command as the rule's owner, and the note's creation starts the second rule.
    let acme = crm
        .organizations()
        .create(&ctx, NewOrganization::named("Acme"))
        .await?;
    let engine = crm.automation_engine();
    while engine.run_pending(tenant, 100).await?.events > 0 {}
    let written = notes
        .list(
            &ctx,
            &Query::new().filter(Filter::eq("organization", acme.id.as_uuid())),
        )
        .await?;
    println!(
        "  the engine ran {ADD_NOTE_ACTION}: {:?}",
        written
            .items
            .iter()
            .map(|n| (n.title.as_str(), n.body.as_str()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        written.items[0].body,
        "New organization Acme: call within a week."
    );
    assert_eq!(written.items[0].title, "[new] Welcome");

    let feed = crm.events_since(&ctx, 0, 100).await?;
    println!(
        "  feed: {:?}",
        feed.iter()
            .map(|e| e.kind.as_str())
            .filter(|k| k.starts_with("org_note."))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> crmkit::Result<()> {
    demo("memory:", true).await?;
    let path = std::env::temp_dir().join(format!("crmkit-custom-module-{}.db", Uuid::now_v7()));
    let outcome = demo(&format!("sqlite://{}", path.display()), false).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    outcome
}
