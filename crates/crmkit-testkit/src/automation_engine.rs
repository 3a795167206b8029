//! Conformance checks of the automation engine (`crmkit_automation::Engine`) on any
//! backend: exactly once under redelivery (F8), faults at every write (F2) and two
//! engines at once; loop guard and depth limit; field triggers; the owner's authority and
//! the run log's access; failed runs, retries and the delivery outbox.
//!
//! The store is the one of [`crate::automation::modules`]; every check makes its own
//! tenant with [`crate::automation::setup`].

use std::sync::{Arc, Mutex};

use chrono::{TimeDelta, Utc};
use crmkit_activities::rows::ACTIVITY_TABLE;
use crmkit_automation::runlog::{CURSOR_TABLE, FAILURE_TABLE, OUTBOX_TABLE, RUN_TABLE};
use crmkit_automation::{
    Action, Channel, DeliveryStatus, Engine, EngineConfig, NewRule, Notification, Notifier,
    RulePatch, RunOutcome, RunReport, Trigger, WebhookCall, WebhookClient,
};
use crmkit_contacts::{ContactPatch, ImportOptions, NewContact};
use crmkit_core::event::EVENTS_TABLE;
use crmkit_core::query::MAX_LIMIT;
use crmkit_core::store::{BoxFuture, Cond, Value, Write};
use crmkit_core::{
    Changeset, ContactId, Ctx, ManualClock, Query, RecordRef, Role, Store, UserId, UserInput,
};
use crmkit_pipeline::campaign::Campaigns;
use serde_json::json;

use crate::automation::{Fixture, setup};
use crate::check::{At, expect_denied, expect_not_found};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::{all_row_counts, count};

/// What a test notifier or webhook client was asked to send.
#[derive(Debug, Default)]
struct Sent {
    notes: Vec<Notification>,
    calls: Vec<WebhookCall>,
}

/// A notifier and webhook client that record what they send, fail for `fail_to` and hang
/// for `hang_to`.
#[derive(Clone, Default)]
struct Transport {
    sent: Arc<Mutex<Sent>>,
    fail_to: Option<UserId>,
    hang_to: Option<UserId>,
}

impl Transport {
    fn notes(&self) -> Vec<Notification> {
        self.sent
            .lock()
            .map(|s| s.notes.clone())
            .unwrap_or_default()
    }

    fn calls(&self) -> Vec<WebhookCall> {
        self.sent
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }
}

impl Notifier for Transport {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if n.to.user().is_some() && n.to.user() == self.hang_to {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
            if n.to.user().is_some() && n.to.user() == self.fail_to {
                return Err("mailbox full".into());
            }
            if let Ok(mut s) = self.sent.lock() {
                s.notes.push(n.clone());
            }
            Ok(())
        })
    }
}

impl WebhookClient for Transport {
    fn post<'a>(&'a self, c: &'a WebhookCall) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if let Ok(mut s) = self.sent.lock() {
                s.calls.push(c.clone());
            }
            Ok(())
        })
    }
}

/// An engine on a manual clock at the present, with a 1-second backoff.
pub(crate) fn engine(store: &Store) -> CheckResult<(Engine, Arc<ManualClock>)> {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let e = Engine::new(store)
        .at("Engine::new")?
        .with_clock(clock.clone())
        .with_config(EngineConfig {
            backoff: TimeDelta::seconds(1),
            max_attempts: 3,
            delivery_timeout: std::time::Duration::from_millis(200),
            ..EngineConfig::default()
        });
    Ok((e, clock))
}

/// Runs the engine until the feed is drained (at most 50 rounds); the summed report.
pub(crate) async fn drain(e: &Engine, f: &Fixture) -> CheckResult<RunReport> {
    let mut total = RunReport::default();
    for _ in 0..50 {
        let r = e.run_pending(f.tenant, 100).await.at("run_pending")?;
        total += r;
        if r.events == 0 {
            return Ok(total);
        }
    }
    Err(Failure::new(
        "the engine did not drain the feed in 50 rounds",
    ))
}

pub(crate) async fn contact_json(f: &Fixture, id: ContactId) -> CheckResult<serde_json::Value> {
    Ok(f.store
        .records()
        .get(&f.admin, "contact", id.as_uuid())
        .await
        .at("get contact")?
        .into_value())
}

pub(crate) fn tags(c: &serde_json::Value) -> Vec<String> {
    c["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

const SECRET: &str = "0123456789abcdef-secret";

/// The welcome rule: on a new contact, tag it, set its job title from a template, log a
/// note, notify the admin and call a webhook.
fn welcome(admin: UserId) -> NewRule {
    NewRule::new(
        "welcome",
        Trigger::RecordCreated {
            record_kind: "contact".into(),
        },
    )
    .action(Action::AddTag {
        tag: "welcome".into(),
    })
    .action(Action::SetFields {
        fields: [("job_title".to_owned(), json!("Friend of {{last_name}}"))].into(),
    })
    .action(Action::LogNote {
        body: "Welcome {{first_name}}".into(),
    })
    .action(Action::Notify {
        channel: Channel::Email,
        to: Some(admin),
        to_field: None,
        subject: "New contact {{first_name}} {{last_name}}".into(),
        body: "Say hello.".into(),
    })
    .action(Action::Webhook {
        url: "https://hooks.example.test/crm".into(),
        secret: SECRET.into(),
    })
}

/// The welcome rule's effects, exactly once, for contacts created through the typed API,
/// an import and the generic record API alike; a redelivery of the whole feed (the cursor
/// lost) changes nothing; the run log names each action; deliveries go out once each,
/// signed.
pub async fn exactly_once(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let admin = f.admin.actor().user;
    let rule = f.rules.create(&f.admin, welcome(admin)).await.at("rule")?;
    let typed = f.person(&f.rep, "Ada", "Lovelace").await?.id;
    let imported = f
        .contacts
        .import(
            &f.rep,
            vec![NewContact::named("Grace", "Hopper")],
            ImportOptions::default(),
        )
        .await
        .at("import")?
        .created[0];
    let generic = ContactId::from_uuid(
        store
            .records()
            .create(
                &f.rep,
                "contact",
                json!({"first_name": "Alan", "last_name": "Turing"}),
            )
            .await
            .at("generic create")?
            .id()
            .ok_or_else(|| Failure::new("generic create: no id"))?,
    );
    let (e, _) = engine(store)?;
    let r = drain(&e, &f).await?;
    ensure_eq!(r.applied, 15, "3 contacts x 5 actions applied: {r:?}");
    ensure_eq!(r.failed, 0, "nothing failed: {r:?}");
    for (how, id, last) in [
        ("typed", typed, "Lovelace"),
        ("import", imported, "Hopper"),
        ("generic", generic, "Turing"),
    ] {
        let c = contact_json(&f, id).await?;
        ensure_eq!(tags(&c), vec!["welcome".to_owned()], "{how}: tagged once");
        ensure_eq!(
            c["job_title"],
            json!(format!("Friend of {last}")),
            "{how}: job title from the template"
        );
        let log = e
            .runs_of_record(&f.admin, &RecordRef::from(id), 100)
            .await
            .at("runs_of_record")?;
        let applied: Vec<Option<u32>> = log
            .iter()
            .filter(|l| l.outcome == RunOutcome::Applied)
            .map(|l| l.action)
            .collect();
        ensure_eq!(
            applied,
            vec![Some(4), Some(3), Some(2), Some(1), Some(0)],
            "{how}: five applied lines, newest first: {log:?}"
        );
    }
    ensure_eq!(
        count(store, &f.admin, ACTIVITY_TABLE).await?,
        3,
        "one note per contact"
    );
    ensure_eq!(
        count(store, &f.admin, OUTBOX_TABLE).await?,
        6,
        "a notification and a webhook call per contact"
    );
    // F8: the whole feed again (a lost cursor) changes nothing.
    let before = all_row_counts(store, &f.admin).await?;
    let versions: Vec<serde_json::Value> = {
        let mut v = vec![];
        for id in [typed, imported, generic] {
            v.push(contact_json(&f, id).await?["version"].clone());
        }
        v
    };
    let mut cs = Changeset::new(&f.admin);
    cs.writes.push(Write::Delete {
        table: CURSOR_TABLE,
        key: vec![Value::Text("feed".into())],
    });
    store.commit(cs).await.at("lose the cursor")?;
    let again = drain(&e, &f).await?;
    ensure_eq!(again.applied, 0, "a redelivery applies nothing: {again:?}");
    ensure_eq!(again.already_applied, 15, "every action found applied");
    ensure_eq!(
        all_row_counts(store, &f.admin).await?,
        before,
        "a redelivery writes nothing"
    );
    for (i, id) in [typed, imported, generic].into_iter().enumerate() {
        ensure_eq!(
            contact_json(&f, id).await?["version"],
            versions[i],
            "a redelivery leaves the contact alone"
        );
    }
    // Deliveries: once each, signed with the secret, de-duplicable by id.
    let t = Transport::default();
    let e = Engine::new(store)
        .at("engine")?
        .with_notifier(t.clone())
        .with_webhooks(t.clone());
    let d = e.deliver(f.tenant, 100).await.at("deliver")?;
    ensure_eq!(d.delivered, 6, "six deliveries: {d:?}");
    ensure_eq!(
        e.deliver(f.tenant, 100)
            .await
            .at("deliver again")?
            .delivered,
        0,
        "nothing is delivered twice"
    );
    ensure_eq!(t.notes().len(), 3, "three notifications");
    let mut subjects: Vec<String> = t.notes().into_iter().map(|n| n.subject).collect();
    subjects.sort();
    ensure_eq!(
        subjects,
        vec![
            "New contact Ada Lovelace".to_owned(),
            "New contact Alan Turing".into(),
            "New contact Grace Hopper".into()
        ],
        "the notifications' rendered subjects"
    );
    for c in t.calls() {
        ensure_eq!(
            c.signature,
            crmkit_automation::outbox::sign(SECRET, &c.body),
            "the webhook body is signed with the secret"
        );
        let body: serde_json::Value = serde_json::from_str(&c.body)
            .map_err(|e| Failure::new(format!("webhook body: {e}")))?;
        ensure_eq!(
            body["delivery"],
            json!(c.delivery),
            "the body names the delivery"
        );
        ensure_eq!(body["rule"], json!(rule.id), "the body names the rule");
    }
    ensure!(
        !serde_json::to_string(
            &e.deliveries(&f.admin, DeliveryStatus::Delivered, 100)
                .await
                .at("deliveries")?
        )
        .unwrap_or_default()
        .contains(SECRET),
        "the outbox never shows the secret"
    );
    Ok(())
}

/// F2: a fault before any write of a run (action commits, run-log lines, failure rows,
/// the cursor) leaves each action applied at most once; once the fault is gone, running
/// and retrying again applies each exactly once.
pub async fn faults(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let admin = f.admin.actor().user;
    f.rules.create(&f.admin, welcome(admin)).await.at("rule")?;
    let (e, clock) = engine(store)?;
    // Faults from the first write until a run no longer reaches the fault.
    let mut n = 0;
    loop {
        let c = f.person(&f.rep, "Fault", &format!("At{n}")).await?.id;
        let notes = count(store, &f.admin, ACTIVITY_TABLE).await?;
        let outbox = count(store, &f.admin, OUTBOX_TABLE).await?;
        store
            .backend()
            .inject_fault(Some(crmkit_core::Fault::FailAtWrite(n)));
        let faulted = e.run_pending(f.tenant, 100).await;
        store.backend().inject_fault(None);
        // Whatever the fault hit, running and retrying until nothing is left gives
        // every effect once.
        for _ in 0..10 {
            clock.advance(chrono::Duration::hours(1));
            drain(&e, &f).await?;
            e.retry_due(f.tenant).await.at("retry_due")?;
        }
        let cj = contact_json(&f, c).await?;
        ensure_eq!(
            tags(&cj),
            vec!["welcome".to_owned()],
            "fault at write {n}: tagged once"
        );
        ensure_eq!(
            cj["job_title"],
            json!(format!("Friend of At{n}")),
            "fault at write {n}: job title set"
        );
        ensure_eq!(
            count(store, &f.admin, ACTIVITY_TABLE).await? - notes,
            1,
            "fault at write {n}: one note"
        );
        ensure_eq!(
            count(store, &f.admin, OUTBOX_TABLE).await? - outbox,
            2,
            "fault at write {n}: one notification and one webhook call"
        );
        ensure!(
            e.failed(&f.admin).await.at("failed")?.is_empty(),
            "fault at write {n}: no failed run is left"
        );
        match faulted {
            // The fault was never reached: every write of a run has been covered.
            Ok(r) if r.failed == 0 && n > 0 => break,
            _ => n += 1,
        }
        ensure!(n < 200, "a run still reached the fault after 200 writes");
    }
    ensure!(n > 2, "a run's commits have more than two writes (saw {n})");
    Ok(())
}

/// Two engines on the same database at once: every effect once.
pub async fn concurrent_engines(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    f.rules
        .create(
            &f.admin,
            NewRule::new(
                "tag and note",
                Trigger::RecordCreated {
                    record_kind: "contact".into(),
                },
            )
            .action(Action::AddTag { tag: "seen".into() })
            .action(Action::LogNote {
                body: "Seen {{first_name}}".into(),
            })
            .action(Action::Notify {
                channel: Channel::Chat,
                to: None,
                to_field: None,
                subject: "{{first_name}}".into(),
                body: "new".into(),
            }),
        )
        .await
        .at("rule")?;
    const N: usize = 40;
    let rows = (0..N)
        .map(|i| NewContact::named(format!("C{i}"), "Twice"))
        .collect();
    let ids = f
        .contacts
        .import(&f.rep, rows, ImportOptions::default())
        .await
        .at("import")?
        .created;
    let (a, _) = engine(store)?;
    let (b, _) = engine(store)?;
    let f = &f;
    let run = |e: Engine| async move {
        let mut total = RunReport::default();
        for _ in 0..200 {
            let r = e.run_pending(f.tenant, 7).await?;
            total += r;
            if r.events == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        crmkit_core::Result::Ok(total)
    };
    let (ra, rb) = tokio::join!(run(a), run(b));
    let (ra, rb) = (ra.at("engine a")?, rb.at("engine b")?);
    ensure_eq!(
        ra.applied + rb.applied,
        (3 * N) as u64,
        "every action applied once between the two engines: {ra:?} {rb:?}"
    );
    for id in ids {
        ensure_eq!(
            tags(&contact_json(f, id).await?),
            vec!["seen".to_owned()],
            "tagged once"
        );
    }
    ensure_eq!(
        count(store, &f.admin, ACTIVITY_TABLE).await?,
        N as u64,
        "one note each"
    );
    ensure_eq!(
        count(store, &f.admin, OUTBOX_TABLE).await?,
        N as u64,
        "one notification each"
    );
    Ok(())
}

/// How many contacts [`concurrent_engines_at_scale`] creates: each brings two feed events
/// (its creation and the rule's tag), so the engines run over twice as many events.
pub const AT_SCALE_CONTACTS: usize = 5_000;

/// Two engines on the same database at once over 10 000 feed events ([`AT_SCALE_CONTACTS`]
/// new contacts, then the rule's own update of each), with a cheap action (one tag each):
/// every contact tagged once, one applied run-log line and one event made by the rule per
/// contact, nothing failed or skipped, and the whole feed consumed.
pub async fn concurrent_engines_at_scale(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let rule = f
        .rules
        .create(
            &f.admin,
            NewRule::new(
                "tag every new contact",
                Trigger::RecordCreated {
                    record_kind: "contact".into(),
                },
            )
            .action(Action::AddTag { tag: "seen".into() }),
        )
        .await
        .at("rule")?;
    const N: usize = AT_SCALE_CONTACTS;
    let rows = (0..N)
        .map(|i| NewContact::named(format!("S{i}"), "Scale"))
        .collect();
    let created = f
        .contacts
        .import(&f.rep, rows, ImportOptions::default())
        .await
        .at("import")?
        .created;
    ensure_eq!(created.len(), N, "every contact imported");
    let (a, _) = engine(store)?;
    let (b, _) = engine(store)?;
    let f = &f;
    // Each engine alone would need 2N / 250 rounds with events; racing, fewer each.
    let rounds = 4 * N / 250 + 10;
    let run = |e: Engine| async move {
        let mut total = RunReport::default();
        for _ in 0..rounds {
            let r = e.run_pending(f.tenant, 250).await?;
            total += r;
            if r.events == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        crmkit_core::Result::Ok(total)
    };
    let (ra, rb) = tokio::join!(run(a), run(b));
    let (ra, rb) = (ra.at("engine a")?, rb.at("engine b")?);
    ensure_eq!(
        (
            ra.applied + rb.applied,
            ra.failed + rb.failed,
            ra.skipped + rb.skipped
        ),
        (N as u64, 0, 0),
        "every tag applied once between the two engines, none failed or skipped: {ra:?} {rb:?}"
    );
    ensure!(
        ra.events > 0 && rb.events > 0,
        "both engines read the feed: {ra:?} {rb:?}"
    );
    // Sequence numbers are gap-free from 1: the last is the number of events.
    let last = store
        .backend()
        .count(f.tenant, EVENTS_TABLE, &Cond::True)
        .await
        .at("count events")?;
    ensure!(
        last > 2 * N as u64,
        "the feed holds the creations and the tags ({last} events)"
    );
    let (c, _) = engine(store)?;
    ensure_eq!(
        c.cursor(f.tenant).await.at("cursor")?,
        last,
        "the feed is consumed to its last event"
    );
    // The run log: one applied line per contact, each about its contact.
    let backend = store.backend();
    let applied = Cond::eq("rule_id", rule.id.as_uuid()).and(Cond::eq("outcome", "applied"));
    ensure_eq!(
        (
            backend
                .count(f.tenant, RUN_TABLE, &Cond::True)
                .await
                .at("run log")?,
            backend
                .count(f.tenant, RUN_TABLE, &applied)
                .await
                .at("applied lines")?
        ),
        (N as u64, N as u64),
        "one run-log line per contact, applied"
    );
    // The effects: one update made by the rule per contact, and each contact's tags.
    let caused = Cond::eq("cause_rule", rule.id.as_uuid());
    ensure_eq!(
        backend
            .count(f.tenant, EVENTS_TABLE, &caused)
            .await
            .at("events made by the rule")?,
        N as u64,
        "one change made by the rule per contact"
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut q = Query::new().limit(MAX_LIMIT);
    loop {
        let page = store
            .records()
            .list(&f.admin, "contact", &q)
            .await
            .at("list contacts")?;
        for c in &page.items {
            ensure_eq!(
                tags(c.value()),
                vec!["seen".to_owned()],
                "tagged once: {}",
                c.json()
            );
            seen.insert(c.id());
        }
        match page.next_cursor {
            Some(next) => q = q.after(next),
            None => break,
        }
    }
    ensure_eq!(seen.len(), N, "every contact listed once");
    ensure!(
        created.iter().all(|id| seen.contains(&Some(id.as_uuid()))),
        "the listed contacts are the imported ones"
    );
    Ok(())
}

/// A rule that changes what it listens to stops at the loop guard; two rules that
/// trigger each other stop at the depth limit, with a line saying so.
pub async fn loops(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    // A rule on a contact change (of `on`, or any) that sets `set` from a template.
    let on_change = |name: &str, on: Option<&str>, set: &str, tpl: &str| {
        NewRule::new(
            name,
            Trigger::RecordUpdated {
                record_kind: "contact".into(),
                field: on.map(str::to_owned),
                from: None,
                to: None,
            },
        )
        .action(Action::SetFields {
            fields: [(set.to_owned(), json!(tpl))].into(),
        })
    };
    let selfish = f
        .rules
        .create(
            &f.admin,
            on_change("exclaim", None, "job_title", "{{job_title}}!"),
        )
        .await
        .at("self-triggering rule")?;
    let c = f.person(&f.rep, "Loop", "Er").await?.id;
    // The rep changes the contact's current version.
    let change = async |patch: ContactPatch, what: &str| -> CheckResult {
        let cur = f.contacts.get(&f.rep, c).await.at("get")?;
        f.contacts
            .update(&f.rep, c, cur.version, patch)
            .await
            .at(what)?;
        Ok(())
    };
    change(
        ContactPatch::default().job_title(Some("Boss".into())),
        "update",
    )
    .await?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    ensure_eq!(
        contact_json(&f, c).await?["job_title"],
        json!("Boss!"),
        "the rule ran once for the human change and not for its own"
    );
    f.rules
        .disable(&f.admin, selfish.id, selfish.version)
        .await
        .at("disable")?;
    // A rule that says it runs again on its own changes appends until the depth limit.
    let again = on_change(
        "exclaim again",
        Some("last_name"),
        "last_name",
        "{{last_name}}!",
    )
    .retrigger_on_own_changes(true);
    let again = f
        .rules
        .create(&f.admin, again)
        .await
        .at("retriggering rule")?;
    ensure!(
        again.retrigger_on_own_changes,
        "the option is kept: {again:?}"
    );
    change(
        ContactPatch::default().last_name("Again"),
        "start the chain",
    )
    .await?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    let depth = e.config().max_depth as usize;
    ensure_eq!(
        contact_json(&f, c).await?["last_name"],
        json!(format!("Again{}", "!".repeat(depth))),
        "the rule ran again on its own change until the depth limit"
    );
    f.rules
        .disable(&f.admin, again.id, again.version)
        .await
        .at("disable")?;
    // A ping-pong between two rules: first name -> job title -> first name ...
    f.rules
        .create(
            &f.admin,
            on_change("a", Some("first_name"), "job_title", "{{first_name}}a"),
        )
        .await
        .at("rule a")?;
    f.rules
        .create(
            &f.admin,
            on_change("b", Some("job_title"), "first_name", "{{job_title}}b"),
        )
        .await
        .at("rule b")?;
    change(
        ContactPatch::default().first_name("P"),
        "start the ping-pong",
    )
    .await?;
    // An engine whose clock is after the two rules were made (a rule never acts on a
    // change older than itself).
    let (e, _) = engine(store)?;
    let r = drain(&e, &f).await?;
    let max = e.config().max_depth as u64;
    ensure_eq!(
        r.applied,
        max,
        "the chain applied {max} changes and stopped: {r:?}"
    );
    let log = e
        .runs_of_record(&f.admin, &RecordRef::from(c), 1000)
        .await
        .at("run log")?;
    ensure!(
        log.iter().any(|l| l.detail.starts_with("depth limit")),
        "the run log says the depth limit stopped the chain: {log:?}"
    );
    Ok(())
}

/// Field triggers: a change of the field to a value, from a value; other changes do not
/// start the rule, and the run log says why.
pub async fn field_triggers(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let to = |name: &str, from: Option<Option<serde_json::Value>>, to, tag: &str| {
        NewRule::new(
            name,
            Trigger::RecordUpdated {
                record_kind: "contact".into(),
                field: Some("job_title".into()),
                from,
                to,
            },
        )
        .action(Action::AddTag { tag: tag.into() })
    };
    f.rules
        .create(
            &f.admin,
            to("became ceo", None, Some(Some(json!("CEO"))), "ceo"),
        )
        .await
        .at("rule to")?;
    f.rules
        .create(
            &f.admin,
            to("left ceo", Some(Some(json!("CEO"))), None, "ex-ceo"),
        )
        .await
        .at("rule from")?;
    let (e, _) = engine(store)?;
    let c = f.person(&f.rep, "Field", "Trigger").await?;
    let step = async |patch: ContactPatch| -> CheckResult<Vec<String>> {
        let cur = f.contacts.get(&f.rep, c.id).await.at("get")?;
        f.contacts
            .update(&f.rep, c.id, cur.version, patch)
            .await
            .at("update")?;
        drain(&e, &f).await?;
        let mut t = tags(&contact_json(&f, c.id).await?);
        t.sort();
        Ok(t)
    };
    ensure_eq!(
        step(ContactPatch {
            job_title: Some(Some("CTO".into())),
            ..ContactPatch::default()
        })
        .await?,
        Vec::<String>::new(),
        "CTO starts neither rule"
    );
    ensure_eq!(
        step(ContactPatch {
            first_name: Some("Fiona".into()),
            ..ContactPatch::default()
        })
        .await?,
        Vec::<String>::new(),
        "another field starts neither rule"
    );
    ensure_eq!(
        step(ContactPatch {
            job_title: Some(Some("CEO".into())),
            ..ContactPatch::default()
        })
        .await?,
        vec!["ceo".to_owned()],
        "to CEO"
    );
    ensure_eq!(
        step(ContactPatch {
            job_title: Some(None),
            ..ContactPatch::default()
        })
        .await?,
        vec!["ceo".to_owned(), "ex-ceo".into()],
        "from CEO"
    );
    let log = e
        .runs_of_record(&f.admin, &RecordRef::from(c.id), 1000)
        .await
        .at("run log")?;
    // A change that does not match a field trigger does not start the rule: the run log
    // has the two tags' lines and nothing else.
    ensure_eq!(
        log.len(),
        2,
        "only the two rules that started are in the run log: {log:?}"
    );
    Ok(())
}

/// A rule acts with its owner's authority: not on records the owner cannot see, not at
/// all once the owner is deactivated; the run log, failed runs and retries show a rule
/// only to who may see it; the outbox is for Admins and Managers.
pub async fn authority(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tag = |t: &str| {
        NewRule::new(
            t,
            Trigger::RecordCreated {
                record_kind: "contact".into(),
            },
        )
        .action(Action::AddTag { tag: t.into() })
    };
    let reps = f.rules.create(&f.rep, tag("reps")).await.at("rep's rule")?;
    let admins = f
        .rules
        .create(&f.admin, tag("admins"))
        .await
        .at("admin's rule")?;
    // A rep whose rule outlives their account.
    let temp = UserId::new();
    let put = |active: bool| {
        UserInput::new(temp, "Temp", format!("temp.{temp}@x.test"), Role::Rep)
            .team(f.team_x)
            .active(active)
    };
    let dir = store.directory();
    dir.put_user(&f.admin, put(true)).await.at("temp user")?;
    let temp_ctx: Ctx = dir.ctx_for(f.tenant, temp).await.at("temp ctx")?;
    f.rules
        .create(&temp_ctx, tag("temps"))
        .await
        .at("temp's rule")?;
    dir.put_user(&f.admin, put(false)).await.at("deactivate")?;
    // Admin's contact in team Y: hidden from the rep.
    let mut hidden = NewContact::named("Hidden", "FromRep");
    hidden.team = Some(f.team_y);
    let hidden = f.contacts.create(&f.admin, hidden).await.at("hidden")?.id;
    let own = f.person(&f.rep, "Own", "Contact").await?.id;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    let mut h = tags(&contact_json(&f, hidden).await?);
    h.sort();
    ensure_eq!(
        h,
        vec!["admins".to_owned()],
        "the rep's rule does not act on a hidden contact"
    );
    let mut o = tags(&contact_json(&f, own).await?);
    o.sort();
    ensure_eq!(
        o,
        vec!["admins".to_owned(), "reps".into()],
        "a deactivated owner's rule does not act"
    );
    let log = e
        .runs_of_record(&f.admin, &RecordRef::from(own), 100)
        .await
        .at("admin's run log")?;
    ensure!(
        log.iter()
            .any(|l| l.detail == "the rule's owner is not an active user"),
        "the run log says why: {log:?}"
    );
    // The run log: the rep sees their own rule's lines, not the admin's; a hidden record
    // or rule is NotFound.
    let mine = e
        .runs_of_record(&f.rep, &RecordRef::from(own), 100)
        .await
        .at("rep's run log")?;
    ensure!(
        !mine.is_empty() && mine.iter().all(|l| l.rule == reps.id),
        "the rep sees only their rule's lines: {mine:?}"
    );
    expect_not_found(
        e.runs_of_record(&f.rep, &RecordRef::from(hidden), 100)
            .await,
        "the run log of a hidden contact",
    )?;
    expect_not_found(
        e.runs_of_rule(&f.rep, admins.id, 100).await,
        "the run log of the admin's rule",
    )?;
    ensure!(
        !e.runs_of_rule(&f.admin, reps.id, 100)
            .await
            .at("admin reads the rep's rule log")?
            .is_empty(),
        "the admin reads every rule's log"
    );
    expect_denied(
        e.deliveries(&f.rep, DeliveryStatus::Pending, 10).await,
        "a rep reads the outbox",
    )?;
    expect_not_found(
        e.retry(&f.rep, admins.id, "e1", 0).await,
        "a rep retries the admin's rule",
    )?;
    Ok(())
}

/// A failing action is kept, retried with backoff, given up after the attempts, retried
/// on request; the rule's later actions wait for it. A failing or hanging notifier never
/// holds up other deliveries.
pub async fn failures_and_retries(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let probe = |label: &str| Action::Custom {
        kind: crate::automation::PROBE_ACTION.into(),
        params: json!({ "label": label }),
    };
    let rule = f
        .rules
        .create(
            &f.admin,
            NewRule::new(
                "steps",
                Trigger::RecordCreated {
                    record_kind: "contact".into(),
                },
            )
            .action(Action::AddTag {
                tag: "first".into(),
            })
            .action(probe("fail"))
            .action(Action::AddTag {
                tag: "third".into(),
            }),
        )
        .await
        .at("rule")?;
    let c = f.person(&f.rep, "Fail", "Ing").await?.id;
    let (e, clock) = engine(store)?;
    let r = drain(&e, &f).await?;
    ensure_eq!(
        (r.applied, r.failed),
        (1, 1),
        "first applied, second failed: {r:?}"
    );
    ensure_eq!(
        tags(&contact_json(&f, c).await?),
        vec!["first".to_owned()],
        "third waits"
    );
    let failed = e.failed(&f.admin).await.at("failed")?;
    ensure_eq!(failed.len(), 1, "one failed run");
    ensure!(
        e.failed(&f.rep).await.at("a rep's failed runs")?.is_empty(),
        "a rep sees no failed run of the admin's rule"
    );
    ensure_eq!(
        (failed[0].action, failed[0].attempts),
        (1, 1),
        "the second action, one attempt"
    );
    ensure!(
        failed[0].error.contains("probe refuses"),
        "the error: {failed:?}"
    );
    ensure_eq!(
        e.retry_due(f.tenant).await.at("retry early")?.failed,
        0,
        "not due before the backoff"
    );
    for attempt in 2..=3 {
        clock.advance(chrono::Duration::hours(1));
        ensure_eq!(
            e.retry_due(f.tenant).await.at("retry")?.failed,
            1,
            "attempt {attempt} fails"
        );
    }
    let failed = e.failed(&f.admin).await.at("failed")?;
    ensure_eq!(failed[0].attempts, 3, "three attempts");
    ensure!(
        failed[0].next_attempt.is_none(),
        "given up after 3 attempts"
    );
    clock.advance(chrono::Duration::hours(1));
    ensure_eq!(
        e.retry_due(f.tenant).await.at("given up")?.failed,
        0,
        "given up stays"
    );
    // Fix the rule and retry on request: the rest of the rule runs.
    let fixed = f
        .rules
        .update(
            &f.admin,
            rule.id,
            rule.version,
            RulePatch::default().actions(vec![
                Action::AddTag {
                    tag: "first".into(),
                },
                probe("ok"),
                Action::AddTag {
                    tag: "third".into(),
                },
            ]),
        )
        .await
        .at("fix the rule")?;
    ensure_eq!(fixed.version, 2, "the fixed rule");
    e.retry(&f.admin, rule.id, &failed[0].occurrence, 1)
        .await
        .at("retry")?;
    let r = e.retry_due(f.tenant).await.at("retry now")?;
    ensure_eq!(r.applied, 2, "the probe and the third action: {r:?}");
    let mut t = tags(&contact_json(&f, c).await?);
    t.sort();
    ensure_eq!(
        t,
        vec!["first".to_owned(), "ok".into(), "third".into()],
        "every action applied once"
    );
    ensure!(
        e.failed(&f.admin).await.at("failed")?.is_empty(),
        "no failure left"
    );
    ensure_eq!(
        count(store, &f.admin, FAILURE_TABLE).await?,
        0,
        "the failure row is gone with the success"
    );
    ensure!(
        count(store, &f.admin, RUN_TABLE).await? >= 3,
        "the run log has the actions"
    );
    // Deliveries: one recipient's notifier fails, one hangs, the third gets through.
    let users = [
        f.admin.actor().user,
        f.manager.actor().user,
        f.rep.actor().user,
    ];
    let notify = NewRule::new(
        "notify",
        Trigger::RecordCreated {
            record_kind: "organization".into(),
        },
    );
    let notify = users.iter().fold(notify, |r, u| {
        r.action(Action::Notify {
            channel: Channel::Sms,
            to: Some(*u),
            to_field: None,
            subject: "org".into(),
            body: "{{name}}".into(),
        })
    });
    f.rules.create(&f.admin, notify).await.at("notify rule")?;
    store
        .records()
        .create(&f.admin, "organization", json!({"name": "Acme"}))
        .await
        .at("organization")?;
    drain(&e, &f).await?;
    let t = Transport {
        fail_to: Some(users[0]),
        hang_to: Some(users[1]),
        ..Transport::default()
    };
    let e = Engine::new(store)
        .at("engine")?
        .with_clock(clock.clone())
        .with_notifier(t.clone())
        .with_config(EngineConfig {
            delivery_timeout: std::time::Duration::from_millis(100),
            max_attempts: 2,
            ..EngineConfig::default()
        });
    let d = e.deliver(f.tenant, 100).await.at("deliver")?;
    ensure_eq!(
        (d.delivered, d.failed),
        (1, 2),
        "one delivered, two failed: {d:?}"
    );
    ensure_eq!(t.notes().len(), 1, "one notification went out");
    ensure_eq!(
        t.notes()[0].to.user(),
        Some(users[2]),
        "the third recipient got it"
    );
    clock.advance(chrono::Duration::hours(1));
    let d = e.deliver(f.tenant, 100).await.at("deliver again")?;
    ensure_eq!(d.failed, 2, "failed again: {d:?}");
    let given_up = e
        .deliveries(&f.admin, DeliveryStatus::Failed, 10)
        .await
        .at("failed deliveries")?;
    ensure_eq!(given_up.len(), 2, "both given up after two attempts");
    ensure!(
        given_up
            .iter()
            .any(|d| d.error.as_deref().is_some_and(|e| e.contains("timed out"))),
        "the hanging one timed out: {given_up:?}"
    );
    // Deliveries are not a Rep's to retry.
    expect_denied(
        e.retry_delivery(&f.rep, given_up[0].id).await,
        "a rep retries a delivery",
    )?;
    e.retry_delivery(&f.admin, given_up[0].id)
        .await
        .at("retry delivery")?;
    ensure_eq!(
        e.deliveries(&f.admin, DeliveryStatus::Pending, 10)
            .await
            .at("pending")?
            .len(),
        1,
        "the retried delivery is pending again"
    );
    Ok(())
}

/// The built-in actions that are another module's command run that module's command as
/// the rule's owner: move a deal, set a lead's status and score, add it to a campaign,
/// escalate a ticket; an action whose effect is already there changes nothing.
pub async fn module_actions(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let records = store.records();
    let created = |kind: &'static str| Trigger::RecordCreated {
        record_kind: kind.into(),
    };
    let pipeline = records
        .create(
            &f.admin,
            "pipeline",
            json!({"name": "Rules", "currency": "EUR", "stages": [
                {"name": "New", "probability": 10, "kind": "open"},
                {"name": "Qualified", "probability": 40, "kind": "open"},
                {"name": "Won", "probability": 100, "kind": "won"},
                {"name": "Lost", "probability": 0, "kind": "lost"},
            ]}),
        )
        .await
        .at("pipeline")?;
    let stage = |i: usize| -> CheckResult<crmkit_core::StageId> {
        serde_json::from_value(pipeline["stages"][i]["id"].clone())
            .map_err(|e| Failure::new(format!("stage id: {e}")))
    };
    let qualified = stage(1)?;
    let campaign = records
        .create(
            &f.admin,
            "campaign",
            json!({"name": "Rules webinar", "kind": "webinar"}),
        )
        .await
        .at("campaign")?;
    let campaign_id: crmkit_core::CampaignId = serde_json::from_value(campaign["id"].clone())
        .map_err(|e| Failure::new(format!("campaign id: {e}")))?;
    for rule in [
        NewRule::new("qualify deals", created("deal"))
            .action(Action::MoveDealToStage { stage: qualified }),
        NewRule::new("work leads", created("lead"))
            .action(Action::SetLeadStatus {
                status: "contacted".into(),
            })
            .action(Action::SetLeadScore { score: 40 })
            .action(Action::AddToCampaign {
                campaign: campaign_id,
            }),
        NewRule::new("vip tickets", created("ticket")).action(Action::EscalateTicket {
            reason: "VIP: {{subject}}".into(),
        }),
    ] {
        f.rules.create(&f.admin, rule).await.at("rule")?;
    }
    let deal = records
        .create(
            &f.rep,
            "deal",
            json!({"title": "Rule deal", "pipeline": pipeline["id"],
                   "amount": {"amount": "100", "currency": "EUR"}}),
        )
        .await
        .at("deal")?;
    let lead = records
        .create(
            &f.rep,
            "lead",
            json!({"first_name": "Lead", "last_name": "Rules", "source": "web_form"}),
        )
        .await
        .at("lead")?;
    let ticket = records
        .create(
            &f.rep,
            "ticket",
            json!({"subject": "Printer", "requester_phone": "+4930901820"}),
        )
        .await
        .at("ticket")?;
    let (e, _) = engine(store)?;
    let r = drain(&e, &f).await?;
    ensure_eq!(
        (r.applied, r.failed),
        (5, 0),
        "five actions applied: {r:?} {:?}",
        e.failed(&f.admin).await
    );
    let get = async |kind: &str, v: &crmkit_core::record::Record| {
        let id = v.id().ok_or_else(|| Failure::new("no id"))?;
        Ok::<_, Failure>(records.get(&f.admin, kind, id).await.at(kind)?.into_value())
    };
    let d = get("deal", &deal).await?;
    ensure_eq!(d["stage"], json!(qualified), "the deal moved to the stage");
    let l = get("lead", &lead).await?;
    ensure_eq!(
        (l["status"].clone(), l["score"].clone()),
        (json!("contacted"), json!(40)),
        "the lead's status and score"
    );
    let t = get("ticket", &ticket).await?;
    ensure_eq!(t["version"], json!(2), "the ticket was escalated: {t}");
    let ticket_id = ticket.id().ok_or_else(|| Failure::new("no ticket id"))?;
    let ticket_ref = RecordRef::new(crmkit_core::RecordKind::TICKET, ticket_id);
    let kinds = crate::support::record_event_kinds(store, &f.admin, ticket_ref.clone()).await?;
    ensure!(
        kinds.iter().any(|k| k == "ticket.escalated"),
        "the ticket's events: {kinds:?}"
    );
    let log = e
        .runs_of_record(&f.admin, &ticket_ref, 10)
        .await
        .at("ticket run log")?;
    ensure!(
        log.iter()
            .any(|l| l.outcome == RunOutcome::Applied && l.detail.starts_with("escalate")),
        "the run log has the escalation: {log:?}"
    );
    ensure_eq!(
        Campaigns::new(store)
            .at("campaigns")?
            .list_members(&f.admin, campaign_id, &crmkit_core::Query::new())
            .await
            .at("members")?
            .items
            .len(),
        1,
        "the lead joined the campaign"
    );
    Ok(())
}

/// Owners of the leads `ids`, as counts per user (admin's view).
async fn owners_of(
    f: &Fixture,
    ids: &[uuid::Uuid],
) -> CheckResult<std::collections::BTreeMap<String, usize>> {
    let mut out = std::collections::BTreeMap::new();
    for id in ids {
        let l = f
            .store
            .records()
            .get(&f.admin, "lead", *id)
            .await
            .at("lead")?;
        let o = l["owner"].as_str().unwrap_or_default().to_owned();
        *out.entry(o).or_insert(0) += 1;
    }
    Ok(out)
}

/// Round robin over a list with a member who left: 16 leads through four engines at once
/// spread 6/5/5 over the active members in order; weighted by 3:1; least loaded evens
/// out; each choice is explained in the run log.
pub async fn assignment(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let dir = store.directory();
    let gone = UserId::new();
    let put = |active: bool| {
        UserInput::new(gone, "Gone", format!("gone.{gone}@x.test"), Role::Rep).active(active)
    };
    dir.put_user(&f.admin, put(true)).await.at("gone user")?;
    let (rep, rep2, manager) = (
        f.rep.actor().user,
        f.rep2.actor().user,
        f.manager.actor().user,
    );
    let member = crmkit_automation::PoolMember::new;
    let created = || Trigger::RecordCreated {
        record_kind: "lead".into(),
    };
    let rr = f
        .rules
        .create(
            &f.admin,
            NewRule::new("round robin", created()).action(Action::AssignOwner {
                strategy: crmkit_automation::Strategy::RoundRobin,
                team: None,
                users: vec![member(rep), member(gone), member(rep2), member(manager)],
                capacity: None,
            }),
        )
        .await
        .at("round robin rule")?;
    dir.put_user(&f.admin, put(false))
        .await
        .at("the member leaves")?;
    let new_leads = async |n: usize, tag: &str| -> CheckResult<Vec<uuid::Uuid>> {
        let mut ids = vec![];
        for i in 0..n {
            let l = store
                .records()
                .create(
                    &f.admin,
                    "lead",
                    json!({"first_name": format!("{tag}{i}"), "last_name": "Assigned",
                           "source": "web_form"}),
                )
                .await
                .at("lead")?;
            ids.push(l.id().ok_or_else(|| Failure::new("lead id"))?);
        }
        Ok(ids)
    };
    let ids = new_leads(16, "rr").await?;
    let tenant = f.tenant;
    let run = |e: Engine| async move {
        for _ in 0..100 {
            if e.run_pending(tenant, 3).await?.events == 0 {
                break;
            }
        }
        crmkit_core::Result::Ok(())
    };
    let engines = (
        engine(store)?.0,
        engine(store)?.0,
        engine(store)?.0,
        engine(store)?.0,
    );
    let (a, b, c, d) = tokio::join!(
        run(engines.0),
        run(engines.1),
        run(engines.2),
        run(engines.3)
    );
    for r in [a, b, c, d] {
        r.at("engine")?;
    }
    let owners = owners_of(&f, &ids).await?;
    let count_of = |u: UserId| owners.get(&u.as_uuid().to_string()).copied().unwrap_or(0);
    ensure_eq!(
        (
            count_of(rep),
            count_of(rep2),
            count_of(manager),
            count_of(gone)
        ),
        (6, 5, 5, 0),
        "round robin in order over the active members: {owners:?}"
    );
    let (e, _) = engine(store)?;
    let log = e.runs_of_rule(&f.admin, rr.id, 100).await.at("log")?;
    ensure!(
        log.iter()
            .filter(|l| l.outcome == RunOutcome::Applied)
            .all(|l| l.detail.contains("round robin: member")),
        "each choice is explained: {log:?}"
    );
    f.rules
        .disable(&f.admin, rr.id, rr.version)
        .await
        .at("disable")?;
    // Weighted 3:1.
    let w = f
        .rules
        .create(
            &f.admin,
            NewRule::new("weighted", created()).action(Action::AssignOwner {
                strategy: crmkit_automation::Strategy::Weighted,
                team: None,
                users: vec![member(rep).weight(3), member(rep2)],
                capacity: None,
            }),
        )
        .await
        .at("weighted rule")?;
    let ids = new_leads(8, "w").await?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    let owners = owners_of(&f, &ids).await?;
    let count_of = |u: UserId| owners.get(&u.as_uuid().to_string()).copied().unwrap_or(0);
    ensure_eq!(
        (count_of(rep), count_of(rep2)),
        (6, 2),
        "weighted 3:1: {owners:?}"
    );
    f.rules
        .disable(&f.admin, w.id, w.version)
        .await
        .at("disable")?;
    // Least loaded: rep holds 11 open leads, rep2 7, manager 5: the next four go to the
    // manager, then manager and rep2 alternate by load.
    let ll = f
        .rules
        .create(
            &f.admin,
            NewRule::new("least loaded", created()).action(Action::AssignOwner {
                strategy: crmkit_automation::Strategy::LeastLoaded,
                team: None,
                users: vec![member(rep), member(rep2), member(manager)],
                capacity: None,
            }),
        )
        .await
        .at("least loaded rule")?;
    let ids = new_leads(2, "ll").await?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    let owners = owners_of(&f, &ids).await?;
    ensure_eq!(
        owners.get(&manager.as_uuid().to_string()).copied(),
        Some(2),
        "the least loaded member gets them: {owners:?}"
    );
    f.rules
        .disable(&f.admin, ll.id, ll.version)
        .await
        .at("disable")?;
    // Loads count what the rule's owner sees: a Rep's least-loaded rule over the Rep and
    // a Rep of another team sees none of the 20 open leads of the other (hidden from
    // them), so it picks the other, which a Rep may not assign to (a failed run); counted
    // by anyone else, the other's 20 leads would show and the Rep would be picked.
    let rep_y = f.rep_y.actor().user;
    for i in 0..20 {
        store
            .records()
            .create(
                &f.admin,
                "lead",
                json!({"first_name": format!("Y{i}"), "last_name": "Hidden",
                       "source": "web_form", "owner": rep_y}),
            )
            .await
            .at("a hidden lead")?;
    }
    let own = f
        .rules
        .create(
            &f.rep,
            NewRule::new("rep's least loaded", created()).action(Action::AssignOwner {
                strategy: crmkit_automation::Strategy::LeastLoaded,
                team: None,
                users: vec![member(rep), member(rep_y)],
                capacity: None,
            }),
        )
        .await
        .at("rep's rule")?;
    let mine = store
        .records()
        .create(
            &f.rep,
            "lead",
            json!({"first_name": "Mine", "last_name": "Lead", "source": "web_form"}),
        )
        .await
        .at("rep's lead")?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    let failed = e.failed(&f.rep).await.at("failed")?;
    ensure!(
        failed.iter().any(|r| r.rule == own.id),
        "the rep's rule chose the member whose leads it cannot see: {failed:?}"
    );
    ensure_eq!(
        owners_of(&f, &[mine.id().unwrap_or_default()]).await?,
        [(rep.as_uuid().to_string(), 1)].into(),
        "the lead stays the rep's"
    );
    f.rules
        .disable(&f.rep, own.id, own.version)
        .await
        .at("disable")?;
    // Capacity per member per period: weighted 3:1, but the rep takes at most 2 a day
    // and everyone at most 3; when all are full the action fails (listed, retried), and
    // the next day's counts start again.
    let capped = |capacity: crmkit_automation::Capacity, users| {
        NewRule::new("capped", created()).action(Action::AssignOwner {
            strategy: crmkit_automation::Strategy::Weighted,
            team: None,
            users,
            capacity: Some(capacity),
        })
    };
    let day = |tz: &str, per_member| crmkit_automation::Capacity {
        period: crmkit_automation::CapacityPeriod::Day,
        time_zone: tz.into(),
        per_member,
    };
    let bad = f
        .rules
        .create(
            &f.admin,
            capped(day("Mars/Olympus", None), vec![member(rep).capacity(0)]),
        )
        .await;
    let named: Option<std::collections::BTreeSet<String>> = crate::check::validation_reasons(&bad)
        .map(|v| v.into_iter().map(|(field, _)| field).collect());
    ensure_eq!(
        named,
        Some(
            [
                "actions[0].capacity.time_zone".to_owned(),
                "actions[0].users[0].capacity".to_owned()
            ]
            .into()
        ),
        "bad capacities are named: {bad:?}"
    );
    let cap = f
        .rules
        .create(
            &f.admin,
            capped(
                day("Europe/Berlin", Some(3)),
                vec![member(rep).weight(3).capacity(2), member(rep2)],
            ),
        )
        .await
        .at("capped rule")?;
    let ids = new_leads(6, "cap").await?;
    let (e, clock) = engine(store)?;
    drain(&e, &f).await?;
    let owners = owners_of(&f, &ids).await?;
    let count_of = |u: UserId| owners.get(&u.as_uuid().to_string()).copied().unwrap_or(0);
    ensure_eq!(
        (count_of(rep), count_of(rep2)),
        (2, 3),
        "each member up to their cap: {owners:?}"
    );
    let failed = e.failed(&f.admin).await.at("failed")?;
    ensure!(
        failed
            .iter()
            .any(|r| r.rule == cap.id && r.error.contains("capacity")),
        "the sixth lead's assignment failed on the capacity: {failed:?}"
    );
    clock.advance(TimeDelta::days(1));
    e.retry_due(f.tenant).await.at("retry the next day")?;
    let owners = owners_of(&f, &ids).await?;
    ensure_eq!(
        owners.get(&rep.as_uuid().to_string()).copied(),
        Some(3),
        "a new day, a new capacity: the sixth goes to the rep (furthest below their share)"
    );
    let log = e.runs_of_rule(&f.admin, cap.id, 100).await.at("log")?;
    ensure!(
        log.iter().any(|l| l.detail.contains("1 of 2 in ")),
        "the capacity is explained: {log:?}"
    );
    Ok(())
}

/// A reminder three days before a deal's close date: it fires once, at its instant and not
/// before; changing the date re-plans it (also when the engine has not yet seen the
/// change); deleting the deal cancels it; the due timers are an index range.
pub async fn timers(store: &Store) -> CheckResult {
    use crmkit_automation::timers::TIMER_TABLE;
    let f = setup(store).await?;
    let records = store.records();
    let pipeline = records
        .create(
            &f.admin,
            "pipeline",
            json!({"name": "Timed", "currency": "EUR", "stages": [
                {"name": "Open", "probability": 10, "kind": "open"},
                {"name": "Won", "probability": 100, "kind": "won"},
                {"name": "Lost", "probability": 0, "kind": "lost"},
            ]}),
        )
        .await
        .at("pipeline")?;
    // A deal that exists before the rule: saving the rule arms its timer too.
    let early_close = (Utc::now().date_naive() + chrono::Days::new(100)).to_string();
    records
        .create(
            &f.rep,
            "deal",
            json!({"title": "Early deal", "pipeline": pipeline["id"],
                   "expected_close": early_close}),
        )
        .await
        .at("early deal")?;
    f.rules
        .create(
            &f.admin,
            NewRule::new(
                "closing soon",
                Trigger::Relative {
                    record_kind: "deal".into(),
                    field: "expected_close".into(),
                    offset: crmkit_automation::Offset {
                        amount: 3,
                        unit: crmkit_automation::TimeUnit::Days,
                        calendar: None,
                    },
                    direction: crmkit_automation::Direction::Before,
                },
            )
            .action(Action::Notify {
                channel: Channel::Email,
                to: None,
                to_field: None,
                subject: "{{title}} closes on {{expected_close}}".into(),
                body: "".into(),
            }),
        )
        .await
        .at("rule")?;
    let (e, clock) = engine(store)?;
    let today = crmkit_core::Clock::now(&*clock).date_naive();
    let day = |n: i64| (today + chrono::Days::new(n as u64)).to_string();
    // Dates are midnight in the rule owner's zone (the fixture's users are in Berlin).
    let midnight = |n: i64| -> chrono::DateTime<Utc> {
        use chrono::TimeZone;
        let local = (today + chrono::Days::new(n as u64))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default();
        chrono_tz::Europe::Berlin
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    };
    let deal = |title: &str, close: String| json!({"title": title, "pipeline": pipeline["id"], "expected_close": close});
    let d = records
        .create(&f.rep, "deal", deal("Timed deal", day(10)))
        .await
        .at("deal")?;
    let id = d.id().ok_or_else(|| Failure::new("deal id"))?;
    let gone = records
        .create(&f.rep, "deal", deal("Deleted deal", day(10)))
        .await
        .at("second deal")?;
    drain(&e, &f).await?;
    ensure_eq!(
        count(store, &f.admin, TIMER_TABLE).await?,
        3,
        "three timers armed: the two new deals' and the one that existed before the rule"
    );
    let v = gone.version().unwrap_or_default();
    records
        .delete(&f.rep, "deal", gone.id().unwrap_or_default(), v)
        .await
        .at("delete")?;
    drain(&e, &f).await?;
    ensure_eq!(
        count(store, &f.admin, TIMER_TABLE).await?,
        2,
        "deleting the deal cancels its timer"
    );
    let outbox = || count(store, &f.admin, OUTBOX_TABLE);
    // Not before its instant: midnight of day 7 (10 days out, 3 before).
    clock.set(midnight(7) - TimeDelta::seconds(1));
    e.fire_timers(f.tenant, 100).await.at("fire early")?;
    ensure_eq!(outbox().await?, 0, "nothing before the instant");
    // The date moves to day 20 and the engine has not seen it yet: at the old instant the
    // timer is re-planned, not fired.
    let cur = records.get(&f.rep, "deal", id).await.at("get")?;
    records
        .patch(
            &f.rep,
            "deal",
            id,
            cur.version().unwrap_or_default(),
            json!({"expected_close": day(20)}),
        )
        .await
        .at("move the close date")?;
    clock.set(midnight(7));
    e.fire_timers(f.tenant, 100)
        .await
        .at("fire at the old instant")?;
    ensure_eq!(outbox().await?, 0, "the old instant does not fire");
    drain(&e, &f).await?;
    clock.set(midnight(17) - TimeDelta::seconds(1));
    e.fire_timers(f.tenant, 100).await.at("fire early again")?;
    ensure_eq!(outbox().await?, 0, "nothing before the new instant");
    clock.set(midnight(17) + TimeDelta::minutes(5));
    let r = e.fire_timers(f.tenant, 100).await.at("fire")?;
    ensure_eq!(r.applied, 1, "fires at the new instant: {r:?}");
    ensure_eq!(outbox().await?, 1, "one reminder");
    clock.advance(chrono::Duration::days(30));
    e.fire_timers(f.tenant, 100).await.at("fire again")?;
    drain(&e, &f).await?;
    ensure_eq!(outbox().await?, 1, "a timer fires once");
    ensure_eq!(
        count(store, &f.admin, TIMER_TABLE).await?,
        1,
        "the timer is spent; the early deal's, 97 days out, waits"
    );
    let sent = e
        .deliveries(&f.admin, DeliveryStatus::Pending, 10)
        .await
        .at("outbox")?;
    match &sent[0].payload {
        crmkit_automation::Payload::Notification { subject, .. } => ensure_eq!(
            subject,
            &format!("Timed deal closes on {}", day(20)),
            "the reminder's subject"
        ),
        p => return Err(Failure::new(format!("not a notification: {p:?}"))),
    }
    Ok(())
}

/// A worker on the runtime runs rules as changes come in, and after a graceful shutdown
/// it runs no more.
pub async fn worker(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    f.rules
        .create(
            &f.admin,
            NewRule::new(
                "tag",
                Trigger::RecordCreated {
                    record_kind: "contact".into(),
                },
            )
            .action(Action::AddTag {
                tag: "worked".into(),
            }),
        )
        .await
        .at("rule")?;
    let engine = Arc::new(Engine::new(store).at("engine")?);
    let w = engine.spawn(vec![f.tenant], std::time::Duration::from_millis(10));
    let c = f.person(&f.rep, "Work", "Er").await?.id;
    let mut tagged = false;
    for _ in 0..500 {
        if tags(&contact_json(&f, c).await?) == ["worked"] {
            tagged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    ensure!(tagged, "the worker ran the rule: {:?}", w.last_error());
    w.shutdown().await.at("shutdown")?;
    let later = f.person(&f.rep, "After", "Shutdown").await?.id;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ensure!(
        tags(&contact_json(&f, later).await?).is_empty(),
        "a stopped worker runs no more"
    );
    Ok(())
}

/// "Every day at 09:00 in Berlin, over the contacts whose job title is Buyer": a missed
/// instant is made up once, each instant runs once per record, never before its time,
/// and records the filter leaves out are not touched.
pub async fn schedules(store: &Store) -> CheckResult {
    use chrono::TimeZone;
    let f = setup(store).await?;
    for (first, title) in [("Bea", "Buyer"), ("Bo", "Buyer"), ("Sam", "Seller")] {
        let mut c = NewContact::named(first, "Scheduled");
        c.job_title = Some(title.into());
        f.contacts.create(&f.rep, c).await.at("contact")?;
    }
    f.rules
        .create(
            &f.admin,
            NewRule::new(
                "morning buyers",
                Trigger::Schedule {
                    record_kind: "contact".into(),
                    every: crmkit_automation::Recurrence::Daily,
                    at: "09:00".into(),
                    time_zone: "Europe/Berlin".into(),
                    filter: Some(crmkit_core::Filter::eq("job_title", "Buyer")),
                },
            )
            .action(Action::Notify {
                channel: Channel::Email,
                to: Some(f.admin.actor().user),
                to_field: None,
                subject: "Call {{first_name}}".into(),
                body: "".into(),
            }),
        )
        .await
        .at("rule")?;
    let (e, clock) = engine(store)?;
    let day = crmkit_core::Clock::now(&*clock).date_naive() + chrono::Days::new(3);
    let berlin = |h: u32, m: u32| {
        chrono_tz::Europe::Berlin
            .from_local_datetime(&day.and_hms_opt(h, m, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    };
    let outbox = || count(store, &f.admin, OUTBOX_TABLE);
    clock.set(berlin(8, 59));
    e.tick(f.tenant).await.at("tick")?;
    ensure_eq!(
        outbox().await?,
        2,
        "yesterday's 09:00 made up once, for the two buyers"
    );
    e.tick(f.tenant).await.at("tick again")?;
    ensure_eq!(outbox().await?, 2, "not again before 09:00");
    clock.set(berlin(9, 0));
    e.tick(f.tenant).await.at("tick at 09:00")?;
    ensure_eq!(outbox().await?, 4, "today's 09:00 for the two buyers");
    clock.set(berlin(9, 30));
    e.tick(f.tenant).await.at("tick later")?;
    ensure_eq!(outbox().await?, 4, "once per instant");
    let sent = e
        .deliveries(&f.admin, DeliveryStatus::Pending, 10)
        .await
        .at("outbox")?;
    ensure!(
        sent.iter().all(|d| match &d.payload {
            crmkit_automation::Payload::Notification { subject, .. } =>
                subject == "Call Bea" || subject == "Call Bo",
            _ => false,
        }),
        "only the buyers: {sent:?}"
    );
    Ok(())
}

/// Auto-acknowledgement: a ticket opened by email gets one templated email to its
/// requester (a contact, at their address), none for other channels, none twice; a
/// requester without an address is a failed run; bad recipients are refused on save.
pub async fn auto_acknowledgement(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let ack = NewRule::auto_acknowledgement("[#{{number}}] Received: {{subject}}", "We are on it.");
    let bad = |to, to_field: Option<&str>, channel| {
        NewRule::new(
            "bad",
            Trigger::RecordCreated {
                record_kind: "ticket".into(),
            },
        )
        .action(Action::Notify {
            channel,
            to,
            to_field: to_field.map(str::to_owned),
            subject: "s".into(),
            body: "b".into(),
        })
    };
    for (input, field) in [
        (
            bad(None, Some("subject"), Channel::Email),
            "actions[0].to_field",
        ),
        (
            bad(None, Some("requester"), Channel::Chat),
            "actions[0].channel",
        ),
        (
            bad(
                Some(f.admin.actor().user),
                Some("requester"),
                Channel::Email,
            ),
            "actions[0].to_field",
        ),
    ] {
        crate::check::expect_validation(f.rules.create(&f.admin, input).await, field, field)?;
    }
    f.rules.create(&f.admin, ack).await.at("the rule")?;
    let records = store.records();
    let ada = f
        .contacts
        .create(
            &f.admin,
            NewContact::named("Ada", "Lovelace").email("ada@example.test"),
        )
        .await
        .at("ada")?;
    let bob = f.person(&f.admin, "Bob", "Noaddress").await?;
    let ticket = |subject: &str, requester: ContactId, channel: &str| {
        records.create(
            &f.admin,
            "ticket",
            json!({"subject": subject, "requester": requester, "channel": channel}),
        )
    };
    let mailed = ticket("Wrong VAT", ada.id, "email")
        .await
        .at("email ticket")?;
    ticket("By phone", ada.id, "phone")
        .await
        .at("phone ticket")?;
    ticket("No address", bob.id, "email")
        .await
        .at("bob's ticket")?;
    let t = Transport::default();
    let (e, _) = engine(store)?;
    let e = e.with_notifier(t.clone());
    drain(&e, &f).await?;
    e.deliver(f.tenant, 100).await.at("deliver")?;
    // A second engine over the whole feed again (a redelivery: the cursor lost) adds
    // nothing.
    let mut cs = Changeset::new(&f.admin);
    cs.writes.push(Write::Delete {
        table: CURSOR_TABLE,
        key: vec![Value::Text("feed".into())],
    });
    store.commit(cs).await.at("lose the cursor")?;
    let (again, _) = engine(store)?;
    let again = again.with_notifier(t.clone());
    drain(&again, &f).await?;
    again.deliver(f.tenant, 100).await.at("deliver again")?;
    let notes = t.notes();
    ensure_eq!(notes.len(), 1, "one acknowledgement: {notes:?}");
    ensure_eq!(
        &notes[0].to,
        &crmkit_automation::Recipient::Contact {
            contact: ada.id,
            name: "Ada Lovelace".into(),
            address: "ada@example.test".into(),
        },
        "to the requester at their address"
    );
    ensure_eq!(
        notes[0].subject,
        format!("[#{}] Received: Wrong VAT", mailed["number"]),
        "the subject rendered over the ticket"
    );
    let failed = e.failed(&f.admin).await.at("failed")?;
    ensure!(
        failed.len() == 1 && failed[0].error.contains("no email address"),
        "bob's acknowledgement is a failed run: {failed:?}"
    );
    // A Rep's rule reads the requester as the Rep sees it: on a ticket assigned to them
    // whose requester they cannot see, it sends nothing (the address stays hidden) and
    // fails like a requester that does not exist.
    let rep_rule = f
        .rules
        .create(
            &f.rep,
            NewRule::auto_acknowledgement("Rep ack: {{subject}}", "Thanks."),
        )
        .await
        .at("the rep's rule")?;
    let hidden = f
        .contacts
        .create(
            &f.rep_y,
            NewContact::named("Yolanda", "Hidden").email("yolanda@example.test"),
        )
        .await
        .at("a contact of another team")?;
    records
        .create(
            &f.admin,
            "ticket",
            json!({"subject": "Their issue", "requester": hidden.id, "channel": "email",
                   "assignee": f.rep.actor().user}),
        )
        .await
        .at("a ticket assigned to the rep")?;
    drain(&e, &f).await?;
    e.deliver(f.tenant, 100).await.at("deliver")?;
    ensure!(
        !t.notes().iter().any(|n| n.subject.starts_with("Rep ack")),
        "the rep's rule sent nothing to a contact hidden from the rep: {:?}",
        t.notes()
    );
    let failed = e.failed(&f.rep).await.at("the rep's failed runs")?;
    ensure!(
        failed.iter().any(|r| r.rule == rep_rule.id),
        "the rep's rule failed on the hidden requester: {failed:?}"
    );
    Ok(())
}

/// `create_ticket`: a new contact's ticket has them as requester (and their
/// organization); a ticket's follow-up keeps its requester; a trigger on a kind without a
/// requester is refused on save.
pub async fn create_ticket(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let on = |kind: &str| Trigger::RecordCreated {
        record_kind: kind.into(),
    };
    let action = |subject: &str| Action::CreateTicket {
        subject: subject.into(),
        priority: Some("high".into()),
    };
    crate::check::expect_validation(
        f.rules
            .create(
                &f.admin,
                NewRule::new("org", on("organization")).action(action("x")),
            )
            .await,
        "actions[0].type",
        "create_ticket on organizations",
    )?;
    f.rules
        .create(
            &f.admin,
            NewRule::new("welcome", on("contact"))
                .filter(crmkit_core::Filter::eq("job_title", "CEO"))
                .action(action("Welcome call for {{first_name}}")),
        )
        .await
        .at("contact rule")?;
    f.rules
        .create(
            &f.admin,
            NewRule::new("review", on("ticket"))
                .filter(crmkit_core::Filter::eq("priority", "urgent"))
                .action(action("Review of: {{subject}}")),
        )
        .await
        .at("ticket rule")?;
    let records = store.records();
    let org = records
        .create(&f.admin, "organization", json!({"name": "Acme"}))
        .await
        .at("organization")?;
    let ceo = records
        .create(
            &f.admin,
            "contact",
            json!({"first_name": "Grace", "last_name": "Boss", "job_title": "CEO",
                   "organization": org["id"]}),
        )
        .await
        .at("ceo")?;
    records
        .create(
            &f.admin,
            "contact",
            json!({"first_name": "Not", "last_name": "Ceo", "job_title": "CTO"}),
        )
        .await
        .at("cto")?;
    let urgent = records
        .create(
            &f.admin,
            "ticket",
            json!({"subject": "Down", "requester_phone": "+4930901820", "priority": "urgent"}),
        )
        .await
        .at("urgent ticket")?;
    let (e, _) = engine(store)?;
    let r = drain(&e, &f).await?;
    ensure_eq!(r.failed, 0, "no failed runs: {r:?}");
    let tickets = records
        .list(&f.admin, "ticket", &crmkit_core::Query::new().limit(100))
        .await
        .at("tickets")?
        .items;
    let subjects: std::collections::BTreeSet<String> = tickets
        .iter()
        .map(|t| t["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure_eq!(
        subjects,
        ["Down", "Review of: Down", "Welcome call for Grace"]
            .map(str::to_owned)
            .into(),
        "one ticket per matching record: none for the CTO, none for the (high-priority) review ticket"
    );
    let by_subject = |s: &str| tickets.iter().find(|t| t["subject"] == s);
    let welcome = by_subject("Welcome call for Grace").ok_or_else(|| Failure::new("welcome"))?;
    ensure_eq!(
        (
            &welcome["requester"],
            &welcome["organization"],
            &welcome["priority"]
        ),
        (&ceo["id"], &org["id"], &json!("high")),
        "the contact is the requester, their organization the ticket's"
    );
    let review = by_subject("Review of: Down").ok_or_else(|| Failure::new("review"))?;
    ensure_eq!(
        &review["requester_phone"],
        &urgent["requester_phone"],
        "the follow-up keeps the requester"
    );
    Ok(())
}

suite_checks! {
    /// The automation engine checks, by name.
    names: automation_engine_check_names,
    checks: [auto_acknowledgement, create_ticket, schedules, worker, timers, assignment, module_actions, exactly_once, faults, concurrent_engines, concurrent_engines_at_scale, loops, field_triggers, authority, failures_and_retries],
}
