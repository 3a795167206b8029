//! A sales pipeline end to end: capture leads, show what converting one would do (the dry
//! run), convert it into a contact, an organization and a deal, move the deal through the
//! stages to won, and print the pipeline summary and the deal's stage history.
//!
//! Run with `cargo run --example sales_pipeline`.

use crmkit::contacts::{NewContact, PhoneInput};
use crmkit::pipeline::deal::{LostReasonInput, NewDeal, StageKind};
use crmkit::pipeline::lead::{
    ContactChoice, ConvertDeal, ConvertLead, NewLead, OrganizationChoice, Outcome,
};
use crmkit::{Actor, Crm, Ctx, Error, Money, Role, TenantId, UserId, UserInput};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let path = std::env::temp_dir().join("crmkit-sales-pipeline.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let crm = Crm::open(&format!("sqlite://{}", path.display())).await?;
    println!("opened {}", path.display());

    let (tenant, admin, me) = (TenantId::new(), UserId::new(), UserId::new());
    // Bootstrap: the host's first admin (`Ctx::new` trusts the host) puts the users; every
    // request context after that comes from the directory (`ctx_for`).
    let bootstrap = Ctx::new(tenant, Actor::new(admin, [Role::Admin], []))?;
    for (id, name, email, role) in [
        (admin, "Alex Admin", "alex@example.com", Role::Admin),
        (me, "Sam Seller", "sam@example.com", Role::Manager),
    ] {
        crm.directory()
            .put_user(
                &bootstrap,
                UserInput::new(id, name, email, role).time_zone("Europe/Paris"),
            )
            .await?;
    }
    let ctx = crm.directory().ctx_for(tenant, me).await?;

    // An existing customer contact: converting a lead with the same email links to it.
    crm.contacts()
        .create(
            &ctx,
            NewContact::named("Ada", "Lovelace").email("ada@analytical.example"),
        )
        .await?;

    // Capture leads.
    let leads = crm.leads();
    let ada = leads
        .create(
            &ctx,
            NewLead::named("Ada", "Lovelace")
                .email("ADA@analytical.example")
                .phone(PhoneInput::new("+44 20 7946 0958"))
                .company("Analytical Engines Ltd", Some("analytical.example")),
        )
        .await?;
    let charles = leads
        .create(
            &ctx,
            NewLead::named("Charles", "Babbage").email("charles@difference.example"),
        )
        .await?;
    println!(
        "captured leads: {} {}, {} {}",
        ada.first_name, ada.last_name, charles.first_name, charles.last_name
    );

    // The dry run says what conversion would do, without writing anything.
    let pipeline = crm.pipelines().ensure_default(&ctx).await?;
    let mut deal = ConvertDeal::new("Analytical Engine, 1 unit", pipeline.id);
    deal.amount = Some(Money::parse("48000.00", "GBP")?);
    let request = ConvertLead {
        contact: ContactChoice::Auto,
        organization: OrganizationChoice::Auto,
        deal: Some(deal),
        ..Default::default()
    };
    let plan = leads.convert_dry_run(&ctx, ada.id, &request).await?;
    match &plan.contact {
        Outcome::Linked(c) => println!(
            "dry run: will merge into existing contact {} ({})",
            c.full_name(),
            c.id
        ),
        Outcome::Created(c) => println!("dry run: will create contact {}", c.full_name()),
    }
    if let Some(o) = &plan.organization {
        println!(
            "dry run: organization {} would be {}",
            o.record().name,
            if o.is_created() { "created" } else { "linked" }
        );
    }

    let done = leads.convert(&ctx, ada.id, ada.version, request).await?;
    let deal = done.deal.expect("a deal was asked for");
    println!(
        "converted: deal {:?} in stage {}",
        deal.title,
        stage_name(&pipeline, deal.stage)
    );

    // Move the deal through the open stages to won.
    let deals = crm.deals();
    let mut current = deal;
    for stage in pipeline.stages.iter().filter(|s| s.position > 0) {
        if stage.kind == StageKind::Lost {
            continue;
        }
        current = deals
            .move_to_stage(&ctx, current.id, current.version, stage.id, None)
            .await?;
        println!(
            "  moved to {:<14} probability {:>3}%",
            stage.name, current.probability
        );
        if stage.kind == StageKind::Won {
            break;
        }
    }

    // Another deal, lost with a reason.
    let lost_stage = pipeline
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Lost)
        .expect("default pipeline has one");
    let mut other = NewDeal::new("Difference Engine", pipeline.id);
    other.amount = Some(Money::parse("17000", "GBP")?);
    let other = deals.create(&ctx, other).await?;
    deals
        .move_to_stage(
            &ctx,
            other.id,
            other.version,
            lost_stage.id,
            Some(LostReasonInput::Text("Budget cut".into())),
        )
        .await?;

    // And some open ones, for the summary.
    for (title, amount, stage) in [
        ("Mill upgrade", "9500", 1),
        ("Store expansion", "12250.50", 2),
        ("Punch cards", "800", 0),
    ] {
        let mut d = NewDeal::new(title, pipeline.id);
        d.amount = Some(Money::parse(amount, "GBP")?);
        d.stage = Some(pipeline.stages[stage].id);
        deals.create(&ctx, d).await?;
    }

    println!("pipeline summary ({}):", pipeline.name);
    for line in deals.summary(&ctx, pipeline.id).await?.lines {
        println!(
            "  {:<14} {:>2} open  value {:>10} {}  weighted {:>10}",
            stage_name(&pipeline, line.stage),
            line.open_deals,
            line.open_value,
            line.currency.map(|c| c.code()).unwrap_or("-"),
            line.weighted_value
        );
    }
    println!("stage history of {:?}:", current.title);
    for h in deals.stage_history(&ctx, current.id).await? {
        println!(
            "  {} -> {:<12} after {:>3}s",
            h.from_stage
                .map(|s| stage_name(&pipeline, s))
                .unwrap_or("(created)"),
            stage_name(&pipeline, h.to_stage),
            h.seconds_in_previous.unwrap_or(0)
        );
    }
    Ok(())
}

fn stage_name(p: &crmkit::pipeline::deal::Pipeline, id: crmkit::StageId) -> &str {
    p.stages
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.name.as_str())
        .unwrap_or("?")
}
