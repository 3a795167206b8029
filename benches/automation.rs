//! The automation engine on a SQLite file.
//!
//! - **W4, dispatch** (`dispatch`): the engine's cost per event of the change feed when
//!   no rule matches it, with 1000 enabled rules on other kinds and fields against 10
//!   (loaded, as between rule changes): reading the feed page, the rule index, the timer
//!   check, the cursor. Target: <= 2x
//!   from 10 to 1000 rules, and <= 20 µs per event (printed as the 1000-rule series).
//! - **End to end, set a field** (`set_field`): contacts created, then the engine runs a
//!   rule "on a new contact, set its job title" for each, against hand-written code that
//!   does the same writes through the public API (get the contact, update its job title).
//!   Target: <= 1.5.
//!
//! Sizes: `CRMKIT_BENCH_EVENTS` events per dispatch iteration (default 1000),
//! `CRMKIT_BENCH_CONTACTS` contacts per end-to-end iteration (default 100).

mod common;

use std::sync::LazyLock;

use common::{Line, block_on};
use crmkit::automation::{Action, Engine, NewRule, Trigger};
use crmkit::contacts::{ContactPatch, ImportOptions, NewContact};
use crmkit::core::Changeset;
use crmkit::core::store::{Value, Write};
use crmkit::{ContactId, Crm, Ctx};
use divan::Bencher;

fn events_n() -> usize {
    common::size("CRMKIT_BENCH_EVENTS", 1000, 20)
}

fn contacts_n() -> usize {
    common::size("CRMKIT_BENCH_CONTACTS", 100, 5)
}

struct Tenant {
    ctx: Ctx,
    /// Where the contacts' events start (after the rules' own creation events).
    start: u64,
}

struct Setup {
    _db: common::TempDb,
    crm: Crm,
    many: Tenant,
    few: Tenant,
    e2e: Tenant,
    raw: Tenant,
}

/// `n` enabled rules none of which an update of a contact's first name starts: triggers
/// on other kinds' creation and deletion, and field triggers on other contact fields.
async fn unrelated_rules(crm: &Crm, ctx: &Ctx, n: usize) {
    let kinds = ["deal", "lead", "organization", "ticket", "activity"];
    let fields = ["job_title", "last_name", "tags", "lifecycle_stage", "team"];
    for i in 0..n {
        let trigger = match i % 3 {
            0 => Trigger::RecordCreated {
                record_kind: kinds[i % kinds.len()].into(),
            },
            1 => Trigger::RecordDeleted {
                record_kind: kinds[(i / 3) % kinds.len()].into(),
            },
            _ => Trigger::RecordUpdated {
                record_kind: "contact".into(),
                field: Some(fields[(i / 3) % fields.len()].into()),
                from: None,
                to: None,
            },
        };
        let rule = NewRule::new(format!("unrelated {i}"), trigger).action(Action::Notify {
            channel: crmkit::automation::Channel::Email,
            to: Some(ctx.actor().user),
            to_field: None,
            subject: "never".into(),
            body: "never".into(),
        });
        crm.automation().create(ctx, rule).await.expect("rule");
    }
}

/// `n` contacts, then `rounds` updates of each one's first name: the events to dispatch.
async fn updates(crm: &Crm, ctx: &Ctx, n: usize) {
    let rows = (0..n)
        .map(|i| NewContact::named(format!("F{i}"), "Bench"))
        .collect();
    let ids = crm
        .contacts()
        .import(ctx, rows, ImportOptions::default())
        .await
        .expect("import")
        .created;
    for id in ids {
        let c = crm.contacts().get(ctx, id).await.expect("get");
        let patch = ContactPatch {
            first_name: Some(format!("G{}", c.first_name)),
            ..Default::default()
        };
        crm.contacts()
            .update(ctx, id, c.version, patch)
            .await
            .expect("update");
    }
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let db = common::TempDb::new("automation");
    let crm = db.open();
    block_on(async {
        let many = common::tenant(&crm, 2).await.0;
        let few = common::tenant(&crm, 2).await.0;
        unrelated_rules(&crm, &many, 1000).await;
        unrelated_rules(&crm, &few, 10).await;
        // The feed positions after the rules: dispatch is measured on the contacts'
        // events with the rules loaded, as an engine runs between rule changes.
        let engine = crm.automation_engine();
        let mut starts = vec![];
        for t in [&many, &few] {
            while engine
                .run_pending(t.tenant(), 1000)
                .await
                .expect("run")
                .events
                > 0
            {}
            starts.push(engine.cursor(t.tenant()).await.expect("cursor"));
        }
        // Half the events are the contacts' creation, half their update.
        updates(&crm, &many, events_n() / 2).await;
        updates(&crm, &few, events_n() / 2).await;
        let e2e = common::tenant(&crm, 2).await.0;
        let rule = NewRule::new(
            "title new contacts",
            Trigger::RecordCreated {
                record_kind: "contact".into(),
            },
        )
        .action(Action::SetFields {
            fields: [("job_title".to_owned(), serde_json::json!("Customer"))].into(),
        });
        crm.automation().create(&e2e, rule).await.expect("rule");
        let raw = common::tenant(&crm, 2).await.0;
        Setup {
            _db: db,
            crm,
            many: Tenant {
                ctx: many,
                start: starts[0],
            },
            few: Tenant {
                ctx: few,
                start: starts[1],
            },
            e2e: Tenant { ctx: e2e, start: 0 },
            raw: Tenant { ctx: raw, start: 0 },
        }
    })
});

/// Puts the tenant's engine cursor back to `to`.
async fn rewind(crm: &Crm, ctx: &Ctx, to: u64) {
    let table = crmkit::automation::runlog::CURSOR_TABLE;
    let mut cs = Changeset::new(ctx);
    cs.writes.push(Write::Delete {
        table,
        key: vec![Value::Text("feed".into())],
    });
    cs.writes.push(Write::Insert {
        table,
        row: vec![Value::Text("feed".into()), Value::Int(to as i64)],
    });
    crm.store().commit(cs).await.expect("rewind");
}

/// Runs the whole feed of a tenant through the engine; the number of events.
async fn dispatch_all(engine: &Engine, ctx: &Ctx) -> u64 {
    let mut n = 0;
    loop {
        let r = engine.run_pending(ctx.tenant(), 1000).await.expect("run");
        assert_eq!(r.triggered, 0, "no rule matches");
        n += r.events;
        if r.events == 0 {
            return n;
        }
    }
}

mod dispatch {
    use super::*;

    /// The whole feed (the contacts' creation and update) through the engine, with 1000
    /// and with 10 unrelated rules, interleaved; per event.
    #[divan::bench(sample_count = 21, sample_size = 1)]
    fn pair(b: Bencher) {
        let s = &*SETUP;
        let engine = s.crm.automation_engine();
        // Each side's time per event: the contacts' creation and update, with the rules
        // loaded.
        let run = |t: &'static Tenant, series: &'static str| {
            let engine = &engine;
            move || {
                block_on(async {
                    rewind(&s.crm, &t.ctx, t.start).await;
                    let start = std::time::Instant::now();
                    let n = dispatch_all(engine, &t.ctx).await;
                    common::record(series, start.elapsed() / n.max(1) as u32);
                })
            }
        };
        let (many, few) = (
            run(&s.many, "dispatch/1000 rules"),
            run(&s.few, "dispatch/10 rules"),
        );
        let mut flip = false;
        b.bench_local(|| {
            flip = !flip;
            if flip {
                many();
                few();
            } else {
                few();
                many();
            }
        });
    }
}

/// The engine's side: new contacts, then the engine titles each.
fn e2e_engine(s: &Setup, engine: &Engine, round: &mut usize) -> std::time::Duration {
    *round += 1;
    let ctx = &s.e2e.ctx;
    block_on(async {
        let rows = (0..contacts_n())
            .map(|i| NewContact::named(format!("E{round}-{i}"), "Engine"))
            .collect();
        s.crm
            .contacts()
            .import(ctx, rows, ImportOptions::default())
            .await
            .expect("import");
        let t = std::time::Instant::now();
        loop {
            let r = engine.run_pending(ctx.tenant(), 1000).await.expect("run");
            if r.events == 0 {
                break;
            }
        }
        t.elapsed()
    })
}

/// The hand-written side: new contacts, then code titles each through the public API.
fn e2e_raw(s: &Setup, round: &mut usize) -> std::time::Duration {
    *round += 1;
    let ctx = &s.raw.ctx;
    block_on(async {
        let rows = (0..contacts_n())
            .map(|i| NewContact::named(format!("R{round}-{i}"), "Hand"))
            .collect();
        let ids: Vec<ContactId> = s
            .crm
            .contacts()
            .import(ctx, rows, ImportOptions::default())
            .await
            .expect("import")
            .created;
        let t = std::time::Instant::now();
        for id in ids {
            let c = s.crm.contacts().get(ctx, id).await.expect("get");
            let patch = ContactPatch {
                job_title: Some(Some("Customer".into())),
                ..Default::default()
            };
            s.crm
                .contacts()
                .update(ctx, id, c.version, patch)
                .await
                .expect("update");
        }
        t.elapsed()
    })
}

mod set_field {
    use super::*;

    /// Per contact: the engine running "set the job title of a new contact" against the
    /// same get and update written by hand; the imports that make the contacts are not
    /// timed.
    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn pair(b: Bencher) {
        let s = &*SETUP;
        let engine = s.crm.automation_engine();
        let n = contacts_n() as u32;
        let (mut re, mut rr) = (0, 0);
        let mut flip = false;
        b.bench_local(|| {
            flip = !flip;
            let mut one = |engine_side: bool| {
                let d = if engine_side {
                    e2e_engine(s, &engine, &mut re)
                } else {
                    e2e_raw(s, &mut rr)
                };
                let series = if engine_side {
                    "set_field/engine"
                } else {
                    "set_field/by hand"
                };
                common::record(series, d / n);
            };
            one(flip);
            one(!flip);
        });
    }
}

fn main() {
    common::main("automation", || {
        vec![
            Line::new(
                "W4: dispatch per event, no rule matching, 1000 vs 10 rules (per event)",
                "dispatch/1000 rules",
                "dispatch/10 rules",
                "the same feed with 10 rules",
                "<= 2.0; <= 20 µs",
            ),
            Line::new(
                "set a field of each new contact: engine vs hand-written (per contact)",
                "set_field/engine",
                "set_field/by hand",
                "get + update through the API",
                "<= 1.5",
            ),
        ]
    });
}
