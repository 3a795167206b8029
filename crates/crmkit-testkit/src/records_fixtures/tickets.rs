//! The [`KindFixture`]s of the tickets module's kinds (`ticket`, `sla_calendar`,
//! `sla_policy`), for the generic record checks in [`crate::records`].
//!
//! Bodies are made many times per tenant (the bad-input check makes one per case after
//! counting the events), so what a body needs is created once per tenant and found again
//! afterwards: the requester contact by its email, the calendar by its name.

use crmkit_contacts::NewContact;
use crmkit_core::store::BoxFuture;
use crmkit_core::{CalendarId, ContactId, Filter, Query, SlaPolicyId, TicketId};
use crmkit_tickets::calendar::{CalendarSpec, Interval};
use crmkit_tickets::sla::{NewSlaPolicy, SlaTargets};
use crmkit_tickets::{TicketPatch, TicketPriority, Tickets};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::check::{At, CheckResult};
use crate::contacts::Fixture;
use crate::records::KindFixture;

/// The tickets module's fixtures.
pub fn all() -> Vec<KindFixture> {
    vec![ticket(), calendar(), policy()]
}

/// The tickets module's kinds that are tenant configuration (every user reads them, Admins
/// and Managers write them): see [`crate::records::configuration_kinds`].
pub fn configuration_kinds() -> Vec<&'static str> {
    vec!["sla_calendar", "sla_policy"]
}

const REQUESTER_EMAIL: &str = "requester@tickets-fixture.test";
const CALENDAR_NAME: &str = "Fixture office hours";

/// The tenant's fixture requester: a contact owned by the admin in team Y, so that rep Y
/// (who makes records in the reference checks) may refer to it and the admin's tickets
/// stay hidden from rep Y.
async fn requester(f: &Fixture) -> CheckResult<ContactId> {
    if let Some(c) = f
        .contacts
        .find_by_email(&f.admin, REQUESTER_EMAIL)
        .await
        .at("find requester")?
    {
        return Ok(c.id);
    }
    let mut c = NewContact::named("Rita", "Requester").email(REQUESTER_EMAIL);
    c.team = Some(f.team_y);
    Ok(f.contacts
        .create(&f.admin, c)
        .await
        .at("create requester")?
        .id)
}

fn office() -> CalendarSpec {
    let mut spec = CalendarSpec::new("Europe/Berlin");
    spec.hours.monday = vec![Interval::hm(9, 0, 17, 0)];
    spec.hours.friday = vec![Interval::hm(9, 0, 13, 0)];
    spec
}

/// The tenant's fixture calendar (for policy bodies).
async fn fixture_calendar(f: &Fixture) -> CheckResult<CalendarId> {
    let tickets = Tickets::new(&f.store).at("Tickets::new")?;
    let q = Query::new()
        .filter(Filter::eq("name", CALENDAR_NAME))
        .limit(1);
    if let Some(c) = tickets
        .sla_calendars()
        .list(&f.admin, &q)
        .await
        .at("find calendar")?
        .items
        .pop()
    {
        return Ok(c.id);
    }
    Ok(tickets
        .sla_calendars()
        .create(&f.admin, CALENDAR_NAME, office())
        .await
        .at("create calendar")?
        .id)
}

/// `ticket`: from the fixture requester, by email; the patch changes the subject, the
/// priority (also recorded in the history) and the tags.
pub fn ticket() -> KindFixture {
    fn body(f: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "subject": "Printer on fire",
                "description": "Third floor.",
                "channel": "email",
                "requester": requester(f).await?,
                "tags": ["hardware"],
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            Tickets::new(&f.store)
                .at("Tickets::new")?
                .update(
                    &f.admin,
                    TicketId::from_uuid(id),
                    v,
                    TicketPatch::new()
                        .subject("Printer still on fire")
                        .priority(TicketPriority::High)
                        .tags(["hardware", "urgent"]),
                )
                .await
                .at("typed ticket patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "ticket",
        body,
        patch: || {
            json!({
                "subject": "Printer still on fire",
                "priority": "high",
                "tags": ["hardware", "urgent"],
            })
        },
        typed_patch: typed,
    }
}

/// `sla_calendar` (names need not be unique): the patch renames it.
pub fn calendar() -> KindFixture {
    fn body(_: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "name": "Berlin office",
                "calendar": {
                    "time_zone": "Europe/Berlin",
                    "hours": {"monday": ["09:00-17:00"], "tuesday": ["09:00-12:00", "13:00-17:00"]},
                    "exceptions": {"2026-12-25": []},
                },
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            let tickets = Tickets::new(&f.store).at("Tickets::new")?;
            let id = CalendarId::from_uuid(id);
            let old = tickets
                .sla_calendars()
                .get(&f.admin, id)
                .await
                .at("calendar")?;
            tickets
                .sla_calendars()
                .update(&f.admin, id, v, "Head office", old.calendar.into())
                .await
                .at("typed calendar patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "sla_calendar",
        body,
        patch: || json!({"name": "Head office"}),
        typed_patch: typed,
    }
}

/// `sla_policy`: on the tenant's fixture calendar; the patch moves it, changes its
/// targets and deactivates it.
pub fn policy() -> KindFixture {
    fn body(f: &Fixture) -> BoxFuture<'_, CheckResult<Json>> {
        Box::pin(async move {
            Ok(json!({
                "name": "Priority customers",
                "position": 10,
                "conditions": {"priorities": ["high", "urgent"], "channels": ["email"]},
                "calendar": fixture_calendar(f).await?,
                "targets": {"first_response": 60, "resolution": 480},
            }))
        })
    }
    fn typed(f: &Fixture, id: Uuid, v: u64) -> BoxFuture<'_, CheckResult<()>> {
        Box::pin(async move {
            let tickets = Tickets::new(&f.store).at("Tickets::new")?;
            let id = SlaPolicyId::from_uuid(id);
            let old = tickets
                .sla_policies()
                .get(&f.admin, id)
                .await
                .at("policy")?;
            let input = NewSlaPolicy::from(&old)
                .position(20)
                .targets(SlaTargets::new().first_response(30).resolution(240))
                .active(false);
            tickets
                .sla_policies()
                .update(&f.admin, id, v, input)
                .await
                .at("typed policy patch")?;
            Ok(())
        })
    }
    KindFixture {
        kind: "sla_policy",
        body,
        patch: || {
            json!({
                "position": 20,
                "targets": {"first_response": 30, "next_response": null, "resolution": 240},
                "active": false,
            })
        },
        typed_patch: typed,
    }
}
