//! Quickstart: open a SQLite file, create an organization and contacts, list and filter
//! them, show a stale update being refused, patch a contact through the generic record
//! API, and print the change feed.
//!
//! Run with `cargo run --example quickstart`.

use crmkit::contacts::{ContactPatch, LifecycleStage, NewContact, NewOrganization, PhoneInput};
use crmkit::{
    Actor, Crm, Ctx, Error, Filter, Money, Query, Role, TeamId, TenantId, UserId, UserInput,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let path = std::env::temp_dir().join("crmkit-quickstart.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = format!("sqlite://{}", path.display());
    println!("opening {url}");
    let crm = Crm::open(&url).await?;

    // The host keeps crmkit's directory in step with its own users. Bootstrap: the host's
    // first admin (`Ctx::new` trusts the host) puts the team and the users; every request
    // context after that comes from the directory (`ctx_for`), which refuses deactivated
    // users.
    let tenant = TenantId::new();
    let (admin_id, rep_id, team) = (UserId::new(), UserId::new(), TeamId::new());
    let bootstrap = Ctx::new(tenant, Actor::new(admin_id, [Role::Admin], []))?;
    crm.directory()
        .put_team(&bootstrap, team, "EMEA sales")
        .await?;
    for (id, name, role) in [
        (admin_id, "Ada Admin", Role::Admin),
        (rep_id, "Rhea Rep", Role::Rep),
    ] {
        crm.directory()
            .put_user(
                &bootstrap,
                UserInput::new(
                    id,
                    name,
                    format!(
                        "{}@example.com",
                        name.split(' ').next().unwrap().to_lowercase()
                    ),
                    role,
                )
                .team(team)
                .time_zone("Europe/Berlin"),
            )
            .await?;
    }
    let admin = crm.directory().ctx_for(tenant, admin_id).await?;
    let rep = crm.directory().ctx_for(tenant, rep_id).await?;

    let contacts = crm.contacts();
    let acme = crm
        .organizations()
        .create(
            &rep,
            NewOrganization {
                domain: Some("https://www.acme.example/about".into()),
                employee_count: Some(250),
                annual_revenue: Some(Money::parse("12500000.00", "EUR")?),
                team: Some(team),
                ..NewOrganization::named("ACME GmbH")
            },
        )
        .await?;
    println!(
        "organization {} ({:?}) owned by {}",
        acme.name, acme.domain, acme.owner
    );

    for (first, last, email, stage) in [
        (
            "Grace",
            "Hopper",
            "grace@acme.example",
            LifecycleStage::Customer,
        ),
        (
            "Alan",
            "Turing",
            "alan@acme.example",
            LifecycleStage::SalesQualified,
        ),
        (
            "Émilie",
            "du Châtelet",
            "emilie@acme.example",
            LifecycleStage::Lead,
        ),
    ] {
        let mut c = NewContact::named(first, last)
            .email(email)
            .phone(PhoneInput::national("030 901820", "DE"));
        c.organization = Some(acme.id);
        c.lifecycle_stage = stage;
        c.team = Some(team);
        let c = contacts.create(&rep, c).await?;
        println!(
            "contact {} <{}> {:?}",
            c.full_name(),
            c.primary_email().unwrap_or("-"),
            c.phones[0].number
        );
    }

    let qualified = contacts
        .list(
            &rep,
            &Query::new()
                .filter(Filter::is_in(
                    "lifecycle_stage",
                    ["customer", "sales_qualified"],
                ))
                .sort_asc("last_name")
                .with_total(),
        )
        .await?;
    println!("{} qualified contacts:", qualified.total.unwrap_or(0));
    for c in &qualified.items {
        println!("  {} ({:?})", c.full_name(), c.lifecycle_stage);
    }
    let search = contacts.search(&rep, "émi", 10).await?;
    println!(
        "search \"émi\": {:?}",
        search.iter().map(|c| c.full_name()).collect::<Vec<_>>()
    );

    // Two people edit the same contact; the second one's version is stale.
    let grace = contacts
        .find_by_email(&rep, "GRACE@acme.example")
        .await?
        .expect("just created");
    let patch = ContactPatch {
        job_title: Some(Some("Rear Admiral".into())),
        ..Default::default()
    };
    let updated = contacts
        .update(&rep, grace.id, grace.version, patch.clone())
        .await?;
    println!(
        "updated {} to version {}",
        updated.full_name(),
        updated.version
    );
    match contacts.update(&rep, grace.id, grace.version, patch).await {
        Err(Error::Conflict {
            expected, actual, ..
        }) => {
            println!("stale update refused: expected version {expected}, found {actual}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // The same records, generically: every kind is described (fields, types, query names)
    // and reachable by name with JSON values, through the same validation, access rules
    // and events as the typed API.
    let records = crm.records();
    let kind = records.describe(&rep, "contact").await?;
    println!(
        "kind {}: fields {:?}",
        kind.kind,
        kind.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
    );
    let again = records
        .patch(
            &rep,
            "contact",
            grace.id.as_uuid(),
            updated.version,
            serde_json::json!({ "tags": ["navy", "cobol"], "job_title": null }),
        )
        .await?;
    println!(
        "generic patch: tags {} version {}",
        again["tags"], again["version"]
    );
    match records
        .patch(
            &rep,
            "contact",
            grace.id.as_uuid(),
            2,
            serde_json::json!({ "lifecycle_stage": "astronaut", "version": 9 }),
        )
        .await
    {
        Err(Error::Validation(v)) => println!("bad body refused: {v}"),
        other => panic!("expected a validation error, got {other:?}"),
    }

    println!("change feed:");
    for e in crm.events_since(&admin, 0, 100).await? {
        println!(
            "  #{:<3} {:<22} {} by {:?}",
            e.seq,
            e.kind,
            e.record,
            e.actor.map(|a| a.to_string())
        );
    }
    Ok(())
}
