//! Tickets benchmarks: crmkit next to a raw rusqlite baseline doing the same work on the
//! same schema (common/raw.rs), and their ratio.
//!
//! `cargo bench --bench tickets`. Sizes (environment variables):
//! - CRMKIT_BENCH_OPEN_TICKETS, default 1 000 000 open tickets with SLA state on SQLite:
//!   200 created through `Tickets::create` under a policy, the rest inserted as copies of
//!   their SLA rows with other ids and due times (one `create` per commit is too slow for
//!   a million); 10% breached, 1% due in the next hour. Measured: the first page (50) of
//!   `breached(now)` and of `at_risk(now, 1h)` for an admin, and `breached(now)` for a rep
//!   who owns 2% of the tickets, next to the same SQL run raw (41 runs a side); the query
//!   plans are printed.
//! - CRMKIT_BENCH_RECOMPUTE, default 100 000 open tickets under one policy (copies of
//!   API-created tickets and SLA rows): the policy's resolution target changes, and
//!   `recompute_sla` pages of 1000 rewrite every ticket's SLA state and due times (once).
//!   The baseline reads the same rows by ticket id, retargets the same state with the same
//!   pure functions (`SlaState`, `SlaClock::retarget`) and writes state and due columns
//!   back, 1000 per transaction; it skips what crmkit does besides (policy matching on
//!   the ticket row, versioned writes with audit entries).

mod common;

use std::sync::{LazyLock, Mutex};

use chrono::{TimeDelta, TimeZone, Utc};
use crmkit::activities::ActivitiesModule;
use crmkit::contacts::{ContactsModule, NewContact};
use crmkit::core::{Modules, Store};
use crmkit::pipeline::PipelineModule;
use crmkit::tickets::calendar::{CalendarSpec, Interval};
use crmkit::tickets::sla::{NewSlaPolicy, SlaConditions, SlaPolicy, SlaTargets, StoredCalendar};
use crmkit::tickets::{NewTicket, Tickets, TicketsModule};
use crmkit::{Actor, Ctx, Role, TenantId, UserId, UserInput};
use divan::Bencher;
use rusqlite::types::Value as SqlValue;
use uuid::Uuid;

use common::{Line, TempDb, block_on, raw, size, timed, timed_async};

fn open_n() -> usize {
    size("CRMKIT_BENCH_OPEN_TICKETS", 1_000_000, 2_000)
}

fn recompute_n() -> usize {
    size("CRMKIT_BENCH_RECOMPUTE", 100_000, 500)
}

fn modules() -> Modules {
    Modules::builder()
        .add(ContactsModule)
        .add(PipelineModule)
        .add(ActivitiesModule)
        .add(TicketsModule)
        .build()
        .unwrap()
}

fn open(db: &TempDb) -> Store {
    let modules = modules();
    let backend = block_on(crmkit::sql::open(&db.url(), &modules)).unwrap();
    Store::from_arc(backend, modules)
}

async fn user(store: &Store, admin: &Ctx, id: UserId, role: Role) {
    store
        .directory()
        .put_user(
            admin,
            UserInput {
                id,
                name: format!("{role:?}"),
                email: format!("{id}@example.com"),
                roles: vec![role],
                teams: vec![],
                active: true,
                time_zone: "UTC".into(),
            },
        )
        .await
        .unwrap();
}

fn weekdays(spec: &mut CalendarSpec, hours: Vec<Interval>) {
    for d in [
        chrono::Weekday::Mon,
        chrono::Weekday::Tue,
        chrono::Weekday::Wed,
        chrono::Weekday::Thu,
        chrono::Weekday::Fri,
    ] {
        *spec.hours.get_mut(d) = hours.clone();
    }
}

fn policy(cal: &StoredCalendar, resolution: i64) -> NewSlaPolicy {
    NewSlaPolicy {
        name: "standard".into(),
        position: 0,
        conditions: SlaConditions::default(),
        calendar: cal.id,
        targets: SlaTargets {
            first_response: Some(60),
            next_response: None,
            resolution: Some(resolution),
        },
        active: true,
    }
}

/// `open_n()` open tickets' SLA rows, 10% breached, 1% due within the hour.
struct Due {
    db: TempDb,
    tickets: Tickets,
    admin: Ctx,
    rep: Ctx,
    now: chrono::DateTime<Utc>,
    columns: usize,
}

const MINUTE: i64 = 60_000_000;

static DUE: LazyLock<Due> = LazyLock::new(|| {
    let n = open_n();
    let db = TempDb::new("tickets");
    let tenant = TenantId::new();
    let (admin_id, rep_id) = (UserId::new(), UserId::new());
    let admin = Ctx::new(tenant, Actor::new(admin_id, [Role::Admin], [])).unwrap();
    let rep = Ctx::new(tenant, Actor::new(rep_id, [Role::Rep], [])).unwrap();
    let now = Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0).unwrap();
    {
        let store = open(&db);
        block_on(async {
            user(&store, &admin, admin_id, Role::Admin).await;
            user(&store, &admin, rep_id, Role::Rep).await;
            let tickets = Tickets::new(&store).unwrap();
            let mut spec = CalendarSpec::new("UTC");
            weekdays(&mut spec, vec![Interval::hm(9, 0, 17, 0)]);
            let cal = tickets
                .sla_calendars()
                .create(&admin, "office", spec)
                .await
                .unwrap();
            tickets
                .sla_policies()
                .create(&admin, policy(&cal, 8 * 60))
                .await
                .unwrap();
            let contact = crmkit::contacts::Contacts::new(&store)
                .unwrap()
                .create(&admin, NewContact::named("Bench", "Requester"))
                .await
                .unwrap();
            for i in 0..200 {
                tickets
                    .create(&admin, NewTicket::new(format!("Ticket {i}"), contact.id))
                    .await
                    .unwrap();
            }
        });
    }
    let conn = db.connect();
    let t = tenant.to_string();
    let (names, row) = raw::template(&conn, "tickets_sla", &t);
    let now_us = now.timestamp_micros();
    raw::copy_rows(&conn, "tickets_sla", &row, &names, n - 200, |i| {
        // 10% breached (due in the past), 1% due in the next hour, the rest later.
        let due = match i % 100 {
            0..=9 => now_us - (1 + (i as i64 % 5000)) * MINUTE,
            10 => now_us + (1 + (i as i64 % 59)) * MINUTE,
            _ => now_us + (61 + (i as i64 % 100_000)) * MINUTE,
        };
        let owner = if i % 50 == 3 { rep_id } else { admin_id };
        vec![
            ("ticket_id", SqlValue::Text(Uuid::now_v7().to_string())),
            ("owner_id", SqlValue::Text(owner.to_string())),
            ("next_due_at", SqlValue::Integer(due)),
            ("first_response_due_at", SqlValue::Integer(due)),
        ]
    });
    conn.execute_batch("ANALYZE").unwrap();
    let store = open(&db);
    let tickets = Tickets::new(&store).unwrap();
    Due {
        db,
        tickets,
        admin,
        rep,
        now,
        columns: names.len(),
    }
});

#[derive(Clone, Copy)]
enum Which {
    Breached,
    AtRisk,
    RepBreached,
}

const SLA_BASE: &str = "SELECT * FROM tickets_sla WHERE tenant_id = ?1 AND deleted_at IS NULL";

/// The raw query of a page and its arguments.
fn raw_query(d: &Due, which: Which) -> (String, Vec<SqlValue>) {
    let now_us = d.now.timestamp_micros();
    let mut args = vec![
        SqlValue::Text(d.admin.tenant().to_string()),
        SqlValue::Integer(now_us),
    ];
    let sql = match which {
        Which::Breached => {
            format!("{SLA_BASE} AND next_due_at <= ?2 ORDER BY next_due_at, ticket_id LIMIT 51")
        }
        Which::AtRisk => {
            args.push(SqlValue::Integer(now_us + 60 * MINUTE));
            format!(
                "{SLA_BASE} AND next_due_at > ?2 AND next_due_at <= ?3 ORDER BY next_due_at, ticket_id LIMIT 51"
            )
        }
        Which::RepBreached => {
            args.push(SqlValue::Text(d.rep.actor().user.to_string()));
            format!(
                "{SLA_BASE} AND owner_id = ?3 AND next_due_at <= ?2 ORDER BY next_due_at, ticket_id LIMIT 51"
            )
        }
    };
    (sql, args)
}

fn due_crmkit(b: Bencher, series: &'static str, which: Which) {
    let d = &*DUE;
    b.bench_local(|| {
        let page = timed_async(series, 1, async {
            match which {
                Which::Breached => d.tickets.breached(&d.admin, d.now, None, 50).await,
                Which::AtRisk => {
                    d.tickets
                        .at_risk(&d.admin, d.now, TimeDelta::hours(1), None, 50)
                        .await
                }
                Which::RepBreached => d.tickets.breached(&d.rep, d.now, None, 50).await,
            }
        })
        .unwrap();
        assert!(!page.items.is_empty());
        page
    });
}

fn due_raw(b: Bencher, series: &'static str, which: Which) {
    let d = &*DUE;
    let conn = d.db.connect();
    let (sql, args) = raw_query(d, which);
    if common::benchmarking() {
        raw::explain(&conn, &sql, &args);
    }
    b.bench_local(|| {
        timed(series, 1, || {
            divan::black_box(raw::all_rows(&conn, &sql, &args, d.columns))
        })
    });
}

mod breached {
    use super::*;

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn crmkit(b: Bencher) {
        due_crmkit(b, "breached/crmkit", Which::Breached);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn raw(b: Bencher) {
        due_raw(b, "breached/raw", Which::Breached);
    }
}

mod at_risk {
    use super::*;

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn crmkit(b: Bencher) {
        due_crmkit(b, "atrisk/crmkit", Which::AtRisk);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn raw(b: Bencher) {
        due_raw(b, "atrisk/raw", Which::AtRisk);
    }
}

mod breached_rep {
    use super::*;

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn crmkit(b: Bencher) {
        due_crmkit(b, "rep/crmkit", Which::RepBreached);
    }

    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn raw(b: Bencher) {
        due_raw(b, "rep/raw", Which::RepBreached);
    }
}

/// `recompute_n()` open tickets under one policy, whose resolution target then changed.
struct Recompute {
    db: TempDb,
    tickets: Tickets,
    admin: Ctx,
    policy: SlaPolicy,
    calendar: StoredCalendar,
}

static RECOMPUTE: LazyLock<Mutex<Recompute>> = LazyLock::new(|| {
    let n = recompute_n();
    let db = TempDb::new("recompute");
    let admin_id = UserId::new();
    let admin = Ctx::new(TenantId::new(), Actor::new(admin_id, [Role::Admin], [])).unwrap();
    let (cal, p) = {
        let store = open(&db);
        block_on(async {
            user(&store, &admin, admin_id, Role::Admin).await;
            let tickets = Tickets::new(&store).unwrap();
            let mut spec = CalendarSpec::new("Europe/Berlin");
            weekdays(
                &mut spec,
                vec![Interval::hm(9, 0, 12, 30), Interval::hm(13, 30, 17, 0)],
            );
            let cal = tickets
                .sla_calendars()
                .create(&admin, "office", spec)
                .await
                .unwrap();
            let p = tickets
                .sla_policies()
                .create(&admin, policy(&cal, 8 * 60))
                .await
                .unwrap();
            let contact = crmkit::contacts::Contacts::new(&store)
                .unwrap()
                .create(&admin, NewContact::named("Bench", "Requester"))
                .await
                .unwrap();
            for i in 0..10 {
                tickets
                    .create(&admin, NewTicket::new(format!("Ticket {i}"), contact.id))
                    .await
                    .unwrap();
            }
            (cal, p)
        })
    };
    let conn = db.connect();
    let t = admin.tenant().to_string();
    let (snames, srow) = raw::template(&conn, "tickets_sla", &t);
    let tid = snames.iter().position(|c| c == "ticket_id").unwrap();
    let (tnames, trow) =
        raw::template_where(&conn, "tickets_ticket", &t, Some(("id", srow[tid].clone())));
    let ids: Vec<String> = (0..n).map(|_| Uuid::now_v7().to_string()).collect();
    raw::copy_rows(&conn, "tickets_ticket", &trow, &tnames, n, |i| {
        vec![
            ("id", SqlValue::Text(ids[i].clone())),
            ("number", SqlValue::Integer(1000 + i as i64)),
        ]
    });
    raw::copy_rows(&conn, "tickets_sla", &srow, &snames, n, |i| {
        vec![("ticket_id", SqlValue::Text(ids[i].clone()))]
    });
    conn.execute_batch("ANALYZE").unwrap();
    let store = open(&db);
    let tickets = Tickets::new(&store).unwrap();
    let p = block_on(
        tickets
            .sla_policies()
            .update(&admin, p.id, p.version, policy(&cal, 6 * 60)),
    )
    .unwrap();
    Mutex::new(Recompute {
        db,
        tickets,
        admin,
        policy: p,
        calendar: cal,
    })
});

mod recompute {
    use super::*;

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn crmkit(b: Bencher) {
        let r = RECOMPUTE.lock().unwrap();
        b.bench_local(|| {
            let updated = timed_async("recompute/crmkit", 1, async {
                let (mut cursor, mut updated) = (None, 0u64);
                loop {
                    let page = r
                        .tickets
                        .recompute_sla(&r.admin, Some(r.policy.id), cursor, 1000)
                        .await
                        .unwrap();
                    updated += u64::from(page.updated);
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break updated,
                    }
                }
            });
            assert!(updated > 0);
        });
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn raw(b: Bencher) {
        let r = RECOMPUTE.lock().unwrap();
        let conn = r.db.connect();
        let (tenant, policy) = (r.admin.tenant().to_string(), r.policy.id.to_string());
        // To 5 hours, so that every row changes (again).
        b.bench_local(|| {
            let updated = timed("recompute/raw", 1, || {
                raw::recompute_sla(&conn, &tenant, &policy, &r.calendar.calendar, 5 * 60)
            });
            assert!(updated > 0);
        });
    }
}

fn main() {
    common::main("tickets", || {
        let n = open_n();
        vec![
            Line::new(
                format!("breached(now), first 50 of {} (admin)", n / 10),
                "breached/crmkit",
                "breached/raw",
                "raw, same query",
                "< 50 ms, index",
            ),
            Line::new(
                format!("at_risk(now, 1h), first 50 of {} (admin)", n / 100),
                "atrisk/crmkit",
                "atrisk/raw",
                "raw, same query",
                "< 50 ms, index",
            ),
            Line::new(
                "breached(now), first 50 of a rep's (2% owned)",
                "rep/crmkit",
                "rep/raw",
                "raw, same query",
                "< 50 ms, index",
            ),
            Line::new(
                format!(
                    "recompute SLA of {} tickets after a policy change",
                    recompute_n()
                ),
                "recompute/crmkit",
                "recompute/raw",
                "raw, 1000 per tx",
                "report",
            ),
        ]
    });
}
