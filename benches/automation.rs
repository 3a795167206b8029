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
//! - **End to end, create a task** (`create_task`): the same with the rule "on a new
//!   contact, create a task `Call {{first_name}}` related to it", against code that gets
//!   the contact and creates the same task through the typed activities API. Target:
//!   <= 1.5.
//! - **Timers** (`timers`): armed timers of one timed rule, 1% of them due (and another
//!   tenant's, all due), written as the engine writes them ([`Timer::row`], in changesets of
//!   10 000 rows); the engine's read of the first 1000 due ones ([`Engine::due_timers`], the
//!   read [`Engine::fire_timers`] starts with) against the same SQL through rusqlite,
//!   decoding the same values. The plan of the SQL crmkit runs is printed (and checked to be
//!   a range of the tenant-leading index `automation_timers_due`). Target: <= 50 ms.
//!
//! Sizes: `CRMKIT_BENCH_EVENTS` events per dispatch iteration (default 1000),
//! `CRMKIT_BENCH_CONTACTS` contacts per end-to-end iteration (default 100),
//! `CRMKIT_BENCH_TIMERS` armed timers (default 1 000 000).

mod common;

use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use common::{Line, block_on};
use crmkit::activities::{NewActivity, Task};
use crmkit::automation::timers::{TIMER_TABLE, Timer, due_select};
use crmkit::automation::{Action, Engine, NewRule, Trigger};
use crmkit::contacts::{ContactPatch, ImportOptions, NewContact};
use crmkit::core::Changeset;
use crmkit::core::store::{Value, Write};
use crmkit::{ContactId, Crm, Ctx, RecordKind, RecordRef, RuleId};
use divan::Bencher;
use rusqlite::params;
use uuid::Uuid;

fn events_n() -> usize {
    common::size("CRMKIT_BENCH_EVENTS", 1000, 20)
}

fn contacts_n() -> usize {
    common::size("CRMKIT_BENCH_CONTACTS", 100, 5)
}

fn timers_n() -> usize {
    common::size("CRMKIT_BENCH_TIMERS", 1_000_000, 2_000)
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
    task: Tenant,
    task_raw: Tenant,
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
        let task = common::tenant(&crm, 2).await.0;
        let rule = NewRule::new(
            "call new contacts",
            Trigger::RecordCreated {
                record_kind: "contact".into(),
            },
        )
        .action(Action::CreateActivity {
            activity_type: "task".into(),
            subject: "Call {{first_name}}".into(),
            due_in: None,
        });
        crm.automation().create(&task, rule).await.expect("rule");
        let task_raw = common::tenant(&crm, 2).await.0;
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
            task: Tenant {
                ctx: task,
                start: 0,
            },
            task_raw: Tenant {
                ctx: task_raw,
                start: 0,
            },
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

/// What an end-to-end workload does for each new contact.
#[derive(Clone, Copy)]
enum Work {
    /// Set its job title.
    SetField,
    /// Create a task related to it.
    CreateTask,
}

impl Work {
    fn tenants(self, s: &Setup) -> (&Tenant, &Tenant) {
        match self {
            Work::SetField => (&s.e2e, &s.raw),
            Work::CreateTask => (&s.task, &s.task_raw),
        }
    }

    fn series(self, engine_side: bool) -> &'static str {
        match (self, engine_side) {
            (Work::SetField, true) => "set_field/engine",
            (Work::SetField, false) => "set_field/by hand",
            (Work::CreateTask, true) => "create_task/engine",
            (Work::CreateTask, false) => "create_task/by hand",
        }
    }
}

/// `contacts_n()` new contacts of `ctx`'s tenant (not timed).
async fn new_contacts(s: &Setup, ctx: &Ctx, tag: String) -> Vec<ContactId> {
    let rows = (0..contacts_n())
        .map(|i| NewContact::named(format!("{tag}-{i}"), "Bench"))
        .collect();
    s.crm
        .contacts()
        .import(ctx, rows, ImportOptions::default())
        .await
        .expect("import")
        .created
}

/// The engine's side: new contacts, then the engine runs the workload's rule for each.
fn e2e_engine(s: &Setup, work: Work, engine: &Engine, round: &mut usize) -> std::time::Duration {
    *round += 1;
    let ctx = &work.tenants(s).0.ctx;
    block_on(async {
        new_contacts(s, ctx, format!("E{round}")).await;
        let t = std::time::Instant::now();
        let mut applied = 0;
        loop {
            let r = engine.run_pending(ctx.tenant(), 1000).await.expect("run");
            applied += r.applied;
            if r.events == 0 {
                break;
            }
        }
        let d = t.elapsed();
        assert_eq!(applied, contacts_n() as u64, "one action per contact");
        d
    })
}

/// The hand-written side: new contacts, then code does the same through the public API.
fn e2e_raw(s: &Setup, work: Work, round: &mut usize) -> std::time::Duration {
    *round += 1;
    let ctx = &work.tenants(s).1.ctx;
    block_on(async {
        let ids = new_contacts(s, ctx, format!("R{round}")).await;
        let t = std::time::Instant::now();
        for id in ids {
            let c = s.crm.contacts().get(ctx, id).await.expect("get");
            match work {
                Work::SetField => {
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
                Work::CreateTask => {
                    let task = NewActivity::new(format!("Call {}", c.first_name), Task::new())
                        .related_to(RecordRef::from(id));
                    s.crm
                        .activities()
                        .create(ctx, task)
                        .await
                        .expect("create task");
                }
            }
        }
        t.elapsed()
    })
}

/// Per contact: the engine against the hand-written code, interleaved (alternating which
/// goes first); the imports that make the contacts are not timed.
fn e2e_pair(b: Bencher, work: Work) {
    let s = &*SETUP;
    let engine = s.crm.automation_engine();
    let n = contacts_n() as u32;
    let (mut re, mut rr) = (0, 0);
    let mut flip = false;
    b.bench_local(|| {
        flip = !flip;
        let mut one = |engine_side: bool| {
            let d = if engine_side {
                e2e_engine(s, work, &engine, &mut re)
            } else {
                e2e_raw(s, work, &mut rr)
            };
            common::record(work.series(engine_side), d / n);
        };
        one(flip);
        one(!flip);
    });
}

mod set_field {
    use super::*;

    /// Per contact: the engine running "set the job title of a new contact" against the
    /// same get and update written by hand.
    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn pair(b: Bencher) {
        e2e_pair(b, Work::SetField);
    }
}

mod create_task {
    use super::*;

    /// Per contact: the engine running "create a task for a new contact" against the same
    /// get and task creation written by hand.
    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn pair(b: Bencher) {
        e2e_pair(b, Work::CreateTask);
    }
}

/// The timers workload: a SQLite file with `timers_n()` armed timers of one rule in one
/// tenant (1% due), and a tenth as many, all due, in another.
struct Timers {
    db: common::TempDb,
    crm: Crm,
    engine: Engine,
    ctx: Ctx,
    /// The instant the due ones are due by (the engine's clock is the system's; every due
    /// timer is at least an hour before it started).
    now: DateTime<Utc>,
}

/// Arms `n` timers of `rule` for new record ids, `due_share` in a thousand of them
/// an hour or more before `now` and the rest a day or more after it, in changesets of
/// 10 000 rows written as the engine writes them.
async fn arm(crm: &Crm, ctx: &Ctx, rule: RuleId, n: usize, due_share: usize, now: DateTime<Utc>) {
    let kind = RecordKind::parse("deal").expect("kind");
    let mut i = 0;
    while i < n {
        let mut cs = Changeset::new(ctx);
        for j in i..(i + 10_000).min(n) {
            // Spread over the range so that due and later timers interleave in id order.
            let due_at = if j % 1000 < due_share {
                now - TimeDelta::hours(1) - TimeDelta::seconds(j as i64)
            } else {
                now + TimeDelta::days(1) + TimeDelta::seconds(j as i64)
            };
            let timer = Timer {
                rule,
                record: RecordRef::new(kind.clone(), Uuid::now_v7()),
                due_at,
                armed_at: now - TimeDelta::days(1),
            };
            cs.writes.push(Write::Insert {
                table: TIMER_TABLE,
                row: timer.row(),
            });
        }
        crm.store().commit(cs).await.expect("arm timers");
        i = (i + 10_000).min(n);
    }
}

static TIMERS: LazyLock<Timers> = LazyLock::new(|| {
    let db = common::TempDb::new("automation-timers");
    let crm = db.open();
    block_on(async {
        let ctx = common::tenant(&crm, 1).await.0;
        let other = common::tenant(&crm, 1).await.0;
        let timed = |c: &Ctx| {
            NewRule::new(
                "before the close",
                Trigger::Relative {
                    record_kind: "deal".into(),
                    field: "expected_close".into(),
                    offset: crmkit::automation::Offset {
                        amount: 3,
                        unit: crmkit::automation::TimeUnit::Days,
                        calendar: None,
                    },
                    direction: crmkit::automation::Direction::Before,
                },
            )
            .action(Action::Notify {
                channel: crmkit::automation::Channel::Email,
                to: Some(c.actor().user),
                to_field: None,
                subject: "closing {{title}}".into(),
                body: "soon".into(),
            })
        };
        let rule = crm
            .automation()
            .create(&ctx, timed(&ctx))
            .await
            .expect("rule");
        let rule2 = crm
            .automation()
            .create(&other, timed(&other))
            .await
            .expect("rule");
        let now = Utc::now();
        let n = timers_n();
        arm(&crm, &ctx, rule.id, n, 10, now).await;
        arm(&crm, &other, rule2.id, n / 10, 1000, now).await;
        // Statistics, as a long-running database has them (the writer's `PRAGMA optimize`).
        db.connect().execute_batch("ANALYZE").expect("analyze");
        let engine = crm.automation_engine();
        Timers {
            db,
            crm,
            engine,
            ctx,
            now,
        }
    })
});

/// A timer row as the baseline decodes it: rule, record kind and id, due, armed.
type RawTimer = (Uuid, String, Uuid, DateTime<Utc>, DateTime<Utc>);

/// The SQL the baseline runs: what crmkit renders for [`due_select`] (same columns, order
/// and limit), hand-written.
const DUE_TIMERS: &str = "SELECT rule_id, record_kind, record_id, due_at, armed_at \
     FROM automation_timers WHERE tenant_id = ?1 AND due_at <= ?2 \
     ORDER BY due_at, rule_id, record_kind, record_id LIMIT 1000";

mod timers {
    use super::*;

    /// The engine's read of the first 1000 due timers.
    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let t = &*TIMERS;
        let want = (timers_n() / 100).min(1000);
        // The plan of the statement crmkit runs, through its own renderer and a reader
        // connection of a backend on the same file.
        let plan = block_on(async {
            let backend = crmkit::sql::SqliteBackend::open(&t.db.url(), t.crm.store().modules())
                .await
                .expect("open");
            backend
                .explain_select(t.ctx.tenant(), &due_select(Utc::now(), 1000))
                .await
                .expect("explain")
        });
        if common::benchmarking() {
            println!("EXPLAIN QUERY PLAN {}", plan.sql);
            for l in &plan.steps {
                println!("  {l}");
            }
        }
        assert!(
            plan.steps.len() == 1
                && plan.steps[0]
                    .starts_with("SEARCH automation_timers USING INDEX automation_timers_due (tenant_id=? AND due_at<?)"),
            "the due timers are an index range: {plan:?}"
        );
        b.bench_local(|| {
            let due = common::timed_async(
                "timers/crmkit",
                1,
                t.engine.due_timers(t.ctx.tenant(), 1000),
            )
            .expect("due timers");
            assert_eq!(due.len(), want);
            due
        });
    }

    /// The same SQL through rusqlite, decoding the same values.
    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn raw(b: Bencher) {
        let t = &*TIMERS;
        let conn = t.db.connect();
        let tenant = t.ctx.tenant().to_string();
        let want = (timers_n() / 100).min(1000);
        b.bench_local(|| {
            common::timed("timers/raw", 1, || {
                let now = Utc::now().timestamp_micros();
                let mut st = conn.prepare_cached(DUE_TIMERS).expect("prepare");
                let rows: Vec<RawTimer> = st
                    .query_map(params![tenant, now], |r| {
                        let uuid = |s: String| Uuid::parse_str(&s).expect("uuid");
                        let at = |us: i64| DateTime::from_timestamp_micros(us).expect("instant");
                        Ok((
                            uuid(r.get(0)?),
                            r.get(1)?,
                            uuid(r.get(2)?),
                            at(r.get(3)?),
                            at(r.get(4)?),
                        ))
                    })
                    .expect("query")
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(rows.len(), want);
                assert!(rows.iter().all(|r| r.3 < t.now));
                rows
            })
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
            Line::new(
                "create a task for each new contact: engine vs hand-written (per contact)",
                "create_task/engine",
                "create_task/by hand",
                "get + create through the API",
                "<= 1.5",
            ),
            Line::new(
                format!("first 1000 due of {} armed timers (1% due)", timers_n()),
                "timers/crmkit",
                "timers/raw",
                "the same SQL through rusqlite",
                "<= 50 ms",
            ),
        ]
    });
}
