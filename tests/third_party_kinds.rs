//! A third-party module's record kind takes part in the generic record API exactly like
//! the built-in ones: the module of `examples/custom_module.rs` (notes on organizations,
//! kind `org_note`), composed with every built-in module, runs every generic conformance
//! check of `crmkit_testkit::records` and `describe_all`, on every backend the testkit
//! is configured for (memory and SQLite always; PostgreSQL and MySQL when their URL
//! variables are set).

#[path = "../examples/custom_module/org_notes.rs"]
mod org_notes;

use crmkit::contacts::{ContactsModule, NewOrganization};
use crmkit::core::Modules;
use crmkit::core::store::BoxFuture;
use crmkit::{Error, Filter, Query, Store, Uuid};
use crmkit_testkit::check::{At, CheckResult, Failure};
use crmkit_testkit::contacts::{Fixture, setup};
use crmkit_testkit::records::{self, KindCheck, KindFixture};
use crmkit_testkit::{TestBackend, open, run_on_all};
use org_notes::{NewOrgNote, OrgNoteId, OrgNotePatch, OrgNotes, OrgNotesModule};
use serde_json::{Value as Json, json};

/// The harness name of every check here: `records-third-party::<check>`.
const SUITE: &str = "records-third-party";

fn modules() -> crmkit::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(crmkit::pipeline::PipelineModule)
        .add(crmkit::activities::ActivitiesModule)
        .add(crmkit::tickets::TicketsModule)
        .add(crmkit::automation::AutomationModule::new())
        .add(OrgNotesModule)
        .build()
}

async fn store(b: TestBackend) -> crmkit::Result<Store> {
    let modules = modules()?;
    let backend = open(b, &modules).await?;
    Ok(Store::from_arc(backend, modules))
}

/// An organization named `name` that the admin owns and team Y shares, so that every
/// writer of the checks may refer to it (the `references` check writes notes as `rep_y`)
/// while the notes themselves stay the admin's (hidden from reps). Made once per fixture
/// and reused: a body must not write anything else on later calls (`bad_input` counts the
/// tenant's events around refused bodies).
async fn shared_organization(f: &Fixture, name: &str) -> CheckResult<crmkit::OrganizationId> {
    let found = f
        .contacts
        .organizations()
        .list(
            &f.admin,
            &Query::new()
                .filter(Filter::eq("name", name).and(Filter::eq("team", f.team_y)))
                .limit(1),
        )
        .await
        .at("looking for the shared organization")?;
    if let Some(o) = found.items.first() {
        return Ok(o.id);
    }
    Ok(f.contacts
        .organizations()
        .create(
            &f.admin,
            NewOrganization {
                team: Some(f.team_y),
                ..NewOrganization::named(name)
            },
        )
        .await
        .at("an organization for notes")?
        .id)
}

/// How the generic checks make `org_note` records: a body on the fixture's shared
/// organization; the patch retitles, rewrites and pins the note.
fn org_note() -> KindFixture {
    fn body(f: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            let org = shared_organization(f, "Initech").await?;
            Ok(json!({
                "organization": org,
                "title": "Renewal",
                "body": "Renewal talks start in March.",
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            OrgNotes::new(&f.store)
                .at("the notes API")?
                .update(
                    &f.admin,
                    OrgNoteId::from_uuid(id),
                    v,
                    OrgNotePatch {
                        title: Some("Renewal (moved)".into()),
                        body: Some("Renewal talks start in April.".into()),
                        pinned: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .at("typed org_note patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "org_note",
        body,
        patch: || {
            json!({
                "title": "Renewal (moved)",
                "body": "Renewal talks start in April.",
                "pinned": true,
            })
        },
        typed_patch: typed,
    }
}

fn run_check(name: &str) {
    let check: KindCheck = records::checks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no records check named {name}"));
    run_on_all(&format!("{SUITE}::{name}"), |b| async move {
        let store = store(b).await?;
        check(&store, &org_note())
            .await
            .map_err(|f| Error::storage(f.message))
    });
}

/// Every check of `records::checks()`, by name, so that a check added there and not here
/// fails [`every_generic_check_runs`].
const CHECKS: &[&str] = &[
    "round_trip",
    "typed_equals_generic",
    "isolation",
    "access",
    "bad_input",
    "references",
];

#[test]
fn every_generic_check_runs() {
    let names: Vec<&str> = records::checks().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names, CHECKS,
        "tests/third_party_kinds.rs runs a test per records check"
    );
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

#[test]
fn describe_all() {
    run_on_all(&format!("{SUITE}::describe_all"), |b| async move {
        let store = store(b).await?;
        records::describe_all(&store)
            .await
            .map_err(|f| Error::storage(f.message))
    });
}

/// The composition's kinds all have fixtures: the built-in ones from the testkit, and
/// `org_note` from here.
#[test]
fn every_kind_has_a_fixture() {
    let modules = modules().expect("modules");
    let store = Store::new(
        crmkit::core::memory::MemoryBackend::new((**modules.schema()).clone()),
        modules,
    );
    let mut fixtures = records::all_fixtures();
    fixtures.push(org_note());
    if let Err(f) = records::missing_fixtures(&store, &fixtures) {
        panic!("{}", f.message);
    }
}

/// The kind's description as the module declares it: the fields, the query names, the
/// events, the lifecycle, and `organization` listed among the organization kind's
/// relations.
#[test]
fn org_note_is_described() {
    let modules = modules().expect("modules");
    let store = Store::new(
        crmkit::core::memory::MemoryBackend::new((**modules.schema()).clone()),
        modules,
    );
    let kinds = store.records().kinds();
    let d = kinds
        .iter()
        .find(|d| d.kind.as_str() == "org_note")
        .expect("org_note is composed");
    assert_eq!(d.module, "org_notes");
    let fields: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        fields,
        [
            "id",
            "organization",
            "title",
            "body",
            "pinned",
            "owner",
            "team",
            "created_at",
            "updated_at",
            "deleted_at",
            "version"
        ]
    );
    let required: Vec<&str> = d
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(required, ["organization", "title", "body"]);
    let query: Vec<&str> = d.query.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        query,
        [
            "id",
            "organization",
            "title",
            "pinned",
            "owner",
            "team",
            "created_at",
            "updated_at",
            "deleted_at"
        ]
    );
    assert!(d.query.iter().any(|q| q.name == "title" && q.text_search));
    assert_eq!(
        d.events,
        [
            "org_note.created",
            "org_note.updated",
            "org_note.deleted",
            "org_note.restored"
        ]
    );
    assert_eq!(d.lifecycle, crmkit::core::record::Lifecycle::default());
    let org = kinds
        .iter()
        .find(|d| d.kind.as_str() == "organization")
        .expect("organization is composed");
    assert!(
        org.relations
            .iter()
            .any(|r| r.kind.as_str() == "org_note" && r.field == "organization")
    );
}

/// The typed API's list: the query AST (filter on the organization, text search on the
/// title, sort on `pinned`) with keyset paging, visibility pushed into the query, and a
/// bad query a Validation error naming the field.
async fn typed_list(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let notes = OrgNotes::new(store).at("notes API")?;
    let org = shared_organization(&f, "Initech").await?;
    let other = shared_organization(&f, "Globex").await?;
    let mut made = vec![];
    for i in 0..5 {
        let mut n = NewOrgNote::new(org, format!("Note {i}"), "text");
        if i % 2 == 0 {
            n = n.pinned();
        }
        // Two notes are rep_y's own; the admin's stay hidden from rep_y.
        let as_ = if i < 2 { &f.rep_y } else { &f.admin };
        made.push(notes.create(as_, n).await.at("create note")?);
    }
    notes
        .create(&f.admin, NewOrgNote::new(other, "Elsewhere", "text"))
        .await
        .at("note elsewhere")?;
    let mut q = Query::new()
        .filter(Filter::eq("organization", org.as_uuid()).and(Filter::starts_with("title", "NOTE")))
        .sort_desc("pinned")
        .sort_asc("title")
        .limit(2);
    let mut seen = vec![];
    loop {
        let page = notes.list(&f.admin, &q).await.at("list page")?;
        if page.items.len() > 2 {
            return Err(Failure::new("a page is longer than its limit"));
        }
        seen.extend(page.items.iter().map(|n| n.title.clone()));
        match page.next_cursor {
            Some(c) => q = q.after(c),
            None => break,
        }
    }
    if seen != ["Note 0", "Note 2", "Note 4", "Note 1", "Note 3"] {
        return Err(Failure::new(format!("paged titles: {seen:?}")));
    }
    let mine = notes
        .list(&f.rep_y, &Query::new().limit(100).with_total())
        .await
        .at("rep's list")?;
    let titles: Vec<&str> = mine.items.iter().map(|n| n.title.as_str()).collect();
    if titles != ["Note 0", "Note 1"] || mine.total != Some(2) {
        return Err(Failure::new(format!(
            "rep_y lists {titles:?} (total {:?})",
            mine.total
        )));
    }
    match notes
        .list(
            &f.admin,
            &Query::new().filter(Filter::eq("colour", "red")).limit(10),
        )
        .await
    {
        Err(Error::Validation(v)) if v.errors.iter().any(|e| e.field.contains("colour")) => {}
        other => return Err(Failure::new(format!("unknown filter field: {other:?}"))),
    }
    Ok(())
}

#[test]
fn typed_list_pages_and_scopes() {
    run_on_all(&format!("{SUITE}::typed_list"), |b| async move {
        let store = store(b).await?;
        typed_list(&store)
            .await
            .map_err(|f| Error::storage(f.message))
    });
}
