//! The facade composes exactly the built-in modules its cargo features compile in, and
//! `Crm::activities` relates activities to tickets when tickets are compiled in.

use crmkit::core::Modules;
use crmkit::core::memory::MemoryBackend;
use crmkit::{Crm, Error, Store};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn builder_composes_the_compiled_in_modules() {
    let expected: Vec<&str> = [
        cfg!(feature = "contacts").then_some("contacts"),
        cfg!(feature = "pipeline").then_some("pipeline"),
        cfg!(feature = "activities").then_some("activities"),
        cfg!(feature = "tickets").then_some("tickets"),
        cfg!(feature = "automation").then_some("automation"),
        cfg!(feature = "analytics").then_some("analytics"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(Crm::built_in_modules(), expected.as_slice());
    let crm = Crm::in_memory().unwrap();
    for name in Crm::built_in_modules() {
        assert!(crm.store().modules().contains(name), "{name} is composed");
    }
}

#[test]
fn from_store_needs_the_compiled_in_modules() {
    let modules = Modules::builder().build().unwrap();
    let bare = Store::new(MemoryBackend::new((**modules.schema()).clone()), modules);
    let got = Crm::from_store(bare);
    if Crm::built_in_modules().is_empty() {
        assert!(got.is_ok());
    } else {
        assert!(matches!(got, Err(Error::Config(_))), "{got:?}");
    }
}

#[cfg(feature = "tickets")]
#[test]
fn activities_relate_to_tickets() {
    use crmkit::activities::{ActivityDetails, NewActivity, Note};
    use crmkit::contacts::NewContact;
    use crmkit::tickets::NewTicket;
    use crmkit::{Actor, Ctx, Role, TenantId, UserId, UserInput};

    block_on(async {
        let crm = Crm::in_memory()?;
        let me = UserId::new();
        let ctx = Ctx::new(TenantId::new(), Actor::new(me, [Role::Admin], []))?;
        crm.directory()
            .put_user(
                &ctx,
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
        let grace = crm
            .contacts()
            .create(&ctx, NewContact::named("Grace", "Hopper"))
            .await?;
        let ticket = crm
            .tickets()
            .create(&ctx, NewTicket::new("Printer on fire", grace.id))
            .await?;
        let note = NewActivity::new(
            "Called back",
            ActivityDetails::Note(Note {
                body: "Fire is out.".into(),
                pinned: false,
                author: me,
            }),
        )
        .related_to(ticket.id);
        let note = crm.activities().create(&ctx, note).await?;
        assert_eq!(note.related.len(), 1);
        Ok::<(), Error>(())
    })
    .unwrap();
}

#[cfg(all(feature = "automation", feature = "contacts"))]
#[test]
fn automation_rules_through_the_facade() {
    use crmkit::automation::{Action, NewRule, Trigger};
    use crmkit::{Actor, Ctx, Role, TenantId, UserId, UserInput};

    block_on(async {
        let crm = Crm::in_memory()?;
        let me = UserId::new();
        let ctx = Ctx::new(TenantId::new(), Actor::new(me, [Role::Admin], []))?;
        crm.directory()
            .put_user(
                &ctx,
                UserInput::new(me, "Ada", "ada@example.test", Role::Admin),
            )
            .await?;
        let rule = NewRule::new(
            "Tag new contacts",
            Trigger::RecordCreated {
                record_kind: "contact".into(),
            },
        )
        .action(Action::AddTag { tag: "new".into() });
        let saved = crm.automation().create(&ctx, rule).await?;
        assert_eq!(crm.automation().get(&ctx, saved.id).await?, saved);
        let generic = crm
            .records()
            .get(&ctx, "automation_rule", saved.id.as_uuid())
            .await?;
        assert_eq!(generic["name"], "Tag new contacts");
        // Lead scoring needs the lead kind (the pipeline module).
        #[cfg(feature = "pipeline")]
        {
            let model = crmkit::automation::ScoringModel::new().field_rule(
                "Referral",
                crmkit::Filter::eq("source", "referral"),
                10,
            );
            let scoring = crm.lead_scoring().put(&ctx, 0, model).await?;
            assert_eq!(crm.lead_scoring().get(&ctx).await?, Some(scoring));
        }
        Ok::<(), Error>(())
    })
    .unwrap();
}

#[cfg(all(feature = "automation", feature = "contacts"))]
#[test]
fn automation_sequences_through_the_facade() {
    use crmkit::automation::{Action, NewRule, NewSequence, Trigger};
    use crmkit::{Actor, Ctx, RecordRef, Role, TenantId, UserId, UserInput};

    block_on(async {
        let crm = Crm::in_memory()?;
        let me = UserId::new();
        let ctx = Ctx::new(TenantId::new(), Actor::new(me, [Role::Admin], []))?;
        crm.directory()
            .put_user(
                &ctx,
                UserInput::new(me, "Ada", "ada@example.test", Role::Admin),
            )
            .await?;
        let seq = crm
            .automation_sequences()
            .create(
                &ctx,
                NewSequence::new("Welcome", "contact").action(Action::AddTag { tag: "seq".into() }),
            )
            .await?;
        let rule = NewRule::new(
            "Enrol new contacts",
            Trigger::RecordCreated {
                record_kind: "contact".into(),
            },
        )
        .action(Action::EnrolSequence { sequence: seq.id });
        crm.automation().create(&ctx, rule).await?;
        let c = crm
            .contacts()
            .create(&ctx, crmkit::contacts::NewContact::named("Grace", "Hopper"))
            .await?;
        let engine = crm.automation_engine();
        engine.run_pending(ctx.tenant(), 100).await?;
        engine.tick(ctx.tenant()).await?;
        let tagged = crm.records().get(&ctx, "contact", c.id.as_uuid()).await?;
        assert_eq!(tagged["tags"], crmkit::serde_json::json!(["seq"]));
        let enrolments = crm
            .automation_sequences()
            .enrolments_of_record(&ctx, &RecordRef::from(c.id), 10)
            .await?;
        assert_eq!(enrolments.len(), 1);
        Ok::<(), Error>(())
    })
    .unwrap();
}
