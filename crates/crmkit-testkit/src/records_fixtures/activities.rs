//! The [`KindFixture`]s of the activities module's kind, for the generic record checks in
//! [`crate::records`].

use crmkit_activities::{Activities, ActivityPatch};
use crmkit_contacts::NewContact;
use crmkit_core::store::BoxFuture;
use crmkit_core::{ActivityId, Filter, Query, RecordRef};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::check::{At, CheckResult};
use crate::contacts::Fixture;
use crate::records::KindFixture;

/// The activities module's fixtures.
pub fn all() -> Vec<KindFixture> {
    vec![activity()]
}

/// `activity`: a task due on a day, related to a contact of team Y (so that the rep of
/// team Y may create it too, while the admin's activity stays hidden from that rep; the
/// first body of a tenant makes the contact, later ones find it); the patch changes the
/// subject and clears the team.
pub fn activity() -> KindFixture {
    fn body(f: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            // One contact per tenant, made by the first body: later bodies write nothing.
            let q = Query::new()
                .filter(Filter::eq("team", f.team_y))
                .filter(Filter::eq("last_name", "Hopper"))
                .limit(1);
            let found = f
                .contacts
                .list(&f.admin, &q)
                .await
                .at("the activity's contact")?;
            let c = match found.items.into_iter().next() {
                Some(c) => c,
                None => {
                    let mut c = NewContact::named("Grace", "Hopper");
                    c.team = Some(f.team_y);
                    f.contacts
                        .create(&f.admin, c)
                        .await
                        .at("the activity's contact")?
                }
            };
            Ok(json!({
                "type": "task",
                "subject": "Call Grace back",
                "related": [RecordRef::from(c.id)],
                "details": {
                    "description": "about the quote",
                    "due": {"type": "date", "date": "2027-01-10"},
                    "priority": "high",
                },
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Activities::new(&f.store)
                .at("Activities::new")?
                .update(
                    &f.admin,
                    ActivityId::from_uuid(id),
                    v,
                    ActivityPatch::new()
                        .subject("Call Grace back today")
                        .team(None),
                )
                .await
                .at("typed activity patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "activity",
        body,
        patch: || json!({"subject": "Call Grace back today", "team": null}),
        typed_patch: typed,
    }
}
