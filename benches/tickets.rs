//! Tickets benchmarks: crmkit next to a raw rusqlite baseline doing the same work on the
//! same schema, and their ratio.
//!
//! `cargo bench --bench tickets`. Sizes:
//! - CRMKIT_BENCH_OPEN_TICKETS, default 1 000 000 open tickets with SLA state on SQLite:
//!   200 created through `Tickets::create` under a policy, the rest inserted as copies of
//!   their SLA rows with other ids and due times (one `create` per commit is too slow for
//!   a million); 10% breached, 1% due in the next hour. Measured: the first page (50) of
//!   `breached(now)` and of `at_risk(now, 1h)`, for an admin and for a rep who owns 1% of
//!   2% of the tickets, next to the same SQL run raw; the query plans are printed.
//! - CRMKIT_BENCH_RECOMPUTE, default 100 000 open tickets under one policy (copies of
//!   API-created tickets and SLA rows): the policy's resolution target changes, and
//!   `recompute_sla` pages of 1000 rewrite every ticket's SLA state and due times. The
//!   baseline reads the same rows by ticket id, retargets the same state with the same
//!   pure functions (`SlaState`, `SlaClock::retarget`) and writes state and due columns
//!   back, 1000 per transaction; it skips what crmkit does besides (policy matching on
//!   the ticket row, versioned writes with audit entries).

use std::time::{Duration, Instant};

use chrono::{TimeDelta, TimeZone, Utc};
use crmkit::activities::ActivitiesModule;
use crmkit::contacts::{ContactsModule, NewContact};
use crmkit::core::{Modules, Store};
use crmkit::pipeline::PipelineModule;
use crmkit::tickets::calendar::{CalendarSpec, Interval};
use crmkit::tickets::sla::{NewSlaPolicy, SlaConditions, SlaTargets};
use crmkit::tickets::{NewTicket, Tickets, TicketsModule};
use crmkit::{Actor, Ctx, Role, TenantId, UserId, UserInput};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Line {
    workload: String,
    crmkit: Duration,
    raw: Option<Duration>,
    baseline: &'static str,
    target: &'static str,
}

fn print(rows: &[Line]) {
    println!(
        "\n{:<58} {:>12} {:>12} {:>7}  {:<18} target",
        "workload", "crmkit", "baseline", "ratio", "baseline is"
    );
    for r in rows {
        let raw = r
            .raw
            .map(|d| format!("{d:.2?}"))
            .unwrap_or_else(|| "-".into());
        let ratio = r
            .raw
            .map(|d| format!("{:.2}", r.crmkit.as_secs_f64() / d.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<58} {:>12} {:>12} {:>7}  {:<18} {}",
            r.workload,
            format!("{:.2?}", r.crmkit),
            raw,
            ratio,
            r.baseline,
            r.target
        );
    }
}

struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        TempDb(std::env::temp_dir().join(format!("crmkit-bench-{tag}-{}.db", Uuid::now_v7())))
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
    fn connect(&self) -> Connection {
        let conn = Connection::open(&self.0).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        // The page cache crmkit's SQLite writer uses (64 MiB), so both sides cache alike.
        conn.pragma_update(None, "cache_size", -65536).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
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

async fn open(db: &TempDb) -> Store {
    let modules = modules();
    let backend = crmkit::sql::open(&db.url(), &modules).await.unwrap();
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

fn explain(conn: &Connection, sql: &str, args: &[SqlValue]) {
    println!("EXPLAIN QUERY PLAN {sql}");
    let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let lines: Vec<String> = plan
        .query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for l in lines {
        println!("  {l}");
    }
}

/// Copies `template` (a row of `table` as read with `SELECT *`) `n` times, with the
/// columns in `set` replaced by what `f(i)` returns for copy `i`.
fn copy_rows(
    conn: &Connection,
    table: &str,
    template: &[SqlValue],
    names: &[String],
    n: usize,
    f: impl Fn(usize) -> Vec<(&'static str, SqlValue)>,
) {
    let cols = names.join(", ");
    let marks = vec!["?"; names.len()].join(", ");
    let sql = format!("INSERT INTO {table} ({cols}) VALUES ({marks})");
    let mut done = 0;
    while done < n {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut st = tx.prepare_cached(&sql).unwrap();
            for i in done..(done + 10_000).min(n) {
                let mut row = template.to_vec();
                for (c, v) in f(i) {
                    let p = names.iter().position(|x| x == c).unwrap();
                    row[p] = v;
                }
                st.execute(params_from_iter(row.iter())).unwrap();
            }
        }
        tx.commit().unwrap();
        done = (done + 10_000).min(n);
    }
}

fn template(conn: &Connection, table: &str, tenant: &str) -> (Vec<String>, Vec<SqlValue>) {
    let mut st = conn
        .prepare(&format!(
            "SELECT * FROM {table} WHERE tenant_id = ? LIMIT 1"
        ))
        .unwrap();
    let names: Vec<String> = st.column_names().map(|s| s.to_string()).collect();
    let row = st
        .query_row([tenant], |r| {
            (0..names.len())
                .map(|i| r.get::<_, SqlValue>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    (names, row)
}

async fn due_queries(out: &mut Vec<Line>) {
    let n = env_usize("CRMKIT_BENCH_OPEN_TICKETS", 1_000_000);
    let db = TempDb::new("tickets");
    let tenant = TenantId::new();
    let (admin_id, rep_id) = (UserId::new(), UserId::new());
    let admin = Ctx::new(tenant, Actor::new(admin_id, [Role::Admin], [])).unwrap();
    let rep = Ctx::new(tenant, Actor::new(rep_id, [Role::Rep], [])).unwrap();
    let now = Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0).unwrap();
    {
        let store = open(&db).await;
        user(&store, &admin, admin_id, Role::Admin).await;
        user(&store, &admin, rep_id, Role::Rep).await;
        let tickets = Tickets::new(&store).unwrap();
        let mut spec = CalendarSpec::new("UTC");
        for d in [
            chrono::Weekday::Mon,
            chrono::Weekday::Tue,
            chrono::Weekday::Wed,
            chrono::Weekday::Thu,
            chrono::Weekday::Fri,
        ] {
            *spec.hours.get_mut(d) = vec![Interval::hm(9, 0, 17, 0)];
        }
        let cal = tickets
            .create_calendar(&admin, "office", spec)
            .await
            .unwrap();
        tickets
            .create_policy(
                &admin,
                NewSlaPolicy {
                    name: "standard".into(),
                    position: 0,
                    conditions: SlaConditions::default(),
                    calendar: cal.id,
                    targets: SlaTargets {
                        first_response: Some(60),
                        next_response: None,
                        resolution: Some(8 * 60),
                    },
                    active: true,
                },
            )
            .await
            .unwrap();
        let c = store.clone();
        let contact = crmkit::contacts::Contacts::new(&c)
            .unwrap()
            .create_contact(&admin, NewContact::named("Bench", "Requester"))
            .await
            .unwrap();
        for i in 0..200 {
            tickets
                .create(&admin, NewTicket::new(format!("Ticket {i}"), contact.id))
                .await
                .unwrap();
        }
    }
    let conn = db.connect();
    let t = tenant.to_string();
    let (names, row) = template(&conn, "tickets_sla", &t);
    let minute = 60_000_000i64;
    let now_us = now.timestamp_micros();
    let seed = Instant::now();
    copy_rows(&conn, "tickets_sla", &row, &names, n - 200, |i| {
        // 10% breached (due in the past), 1% due in the next hour, the rest later.
        let due = match i % 100 {
            0..=9 => now_us - (1 + (i as i64 % 5000)) * minute,
            10 => now_us + (1 + (i as i64 % 59)) * minute,
            _ => now_us + (61 + (i as i64 % 100_000)) * minute,
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
    println!("tickets: seeded {n} SLA rows in {:.1?}", seed.elapsed());

    let store = open(&db).await;
    let tickets = Tickets::new(&store).unwrap();
    let runs = 41;
    let names = &names;
    let measure = |label: String, ctx: Ctx, risk: bool, sql: String, args: Vec<SqlValue>| {
        let tickets = tickets.clone();
        let conn = &conn;
        async move {
            let mut times = vec![];
            for _ in 0..runs {
                let t0 = Instant::now();
                let page = if risk {
                    tickets
                        .at_risk(&ctx, now, TimeDelta::hours(1), None, 50)
                        .await
                        .unwrap()
                } else {
                    tickets.breached(&ctx, now, None, 50).await.unwrap()
                };
                times.push(t0.elapsed());
                assert!(!page.items.is_empty());
                std::hint::black_box(page);
            }
            let mut raw = vec![];
            let mut st = conn.prepare_cached(&sql).unwrap();
            for _ in 0..runs {
                let t0 = Instant::now();
                let rows: Vec<Vec<SqlValue>> = st
                    .query_map(params_from_iter(args.iter()), |r| {
                        (0..names.len())
                            .map(|i| r.get::<_, SqlValue>(i))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                raw.push(t0.elapsed());
                std::hint::black_box(rows);
            }
            explain(conn, &sql, &args);
            Line {
                workload: label,
                crmkit: median(times),
                raw: Some(median(raw)),
                baseline: "raw, same query",
                target: "< 50 ms, index",
            }
        }
    };
    let base = "SELECT * FROM tickets_sla WHERE tenant_id = ?1 AND deleted_at IS NULL";
    let breached_sql =
        format!("{base} AND next_due_at <= ?2 ORDER BY next_due_at, ticket_id LIMIT 51");
    let risk_sql = format!(
        "{base} AND next_due_at > ?2 AND next_due_at <= ?3 ORDER BY next_due_at, ticket_id LIMIT 51"
    );
    let rep_breached_sql = format!(
        "{base} AND owner_id = ?3 AND next_due_at <= ?2 ORDER BY next_due_at, ticket_id LIMIT 51"
    );
    let hour = now_us + 60 * minute;
    let args = |extra: Vec<SqlValue>| {
        let mut v = vec![SqlValue::Text(t.clone()), SqlValue::Integer(now_us)];
        v.extend(extra);
        v
    };
    out.push(
        measure(
            format!("breached(now), first 50 of {} (admin)", n / 10),
            admin.clone(),
            false,
            breached_sql,
            args(vec![]),
        )
        .await,
    );
    out.push(
        measure(
            format!("at_risk(now, 1h), first 50 of {} (admin)", n / 100),
            admin.clone(),
            true,
            risk_sql,
            args(vec![SqlValue::Integer(hour)]),
        )
        .await,
    );
    out.push(
        measure(
            "breached(now), first 50 of a rep's 1% (rep, 2% owned)".to_string(),
            rep.clone(),
            false,
            rep_breached_sql,
            args(vec![SqlValue::Text(rep_id.to_string())]),
        )
        .await,
    );
}

async fn recompute(out: &mut Vec<Line>) {
    use crmkit::tickets::sla::SlaState;
    use crmkit::tickets::sla::SlaTargetKind;
    let n = env_usize("CRMKIT_BENCH_RECOMPUTE", 100_000);
    let db = TempDb::new("recompute");
    let tenant = TenantId::new();
    let admin_id = UserId::new();
    let admin = Ctx::new(tenant, Actor::new(admin_id, [Role::Admin], [])).unwrap();
    let store = open(&db).await;
    user(&store, &admin, admin_id, Role::Admin).await;
    let tickets = Tickets::new(&store).unwrap();
    let mut spec = CalendarSpec::new("Europe/Berlin");
    for d in [
        chrono::Weekday::Mon,
        chrono::Weekday::Tue,
        chrono::Weekday::Wed,
        chrono::Weekday::Thu,
        chrono::Weekday::Fri,
    ] {
        *spec.hours.get_mut(d) = vec![Interval::hm(9, 0, 12, 30), Interval::hm(13, 30, 17, 0)];
    }
    let cal = tickets
        .create_calendar(&admin, "office", spec)
        .await
        .unwrap();
    let policy = |resolution: i64| NewSlaPolicy {
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
    };
    let p = tickets.create_policy(&admin, policy(8 * 60)).await.unwrap();
    let contact = crmkit::contacts::Contacts::new(&store)
        .unwrap()
        .create_contact(&admin, NewContact::named("Bench", "Requester"))
        .await
        .unwrap();
    for i in 0..10 {
        tickets
            .create(&admin, NewTicket::new(format!("Ticket {i}"), contact.id))
            .await
            .unwrap();
    }
    drop(tickets);
    drop(store);
    let conn = db.connect();
    let t = tenant.to_string();
    let (tnames, trow) = template(&conn, "tickets_ticket", &t);
    let (snames, srow) = template(&conn, "tickets_sla", &t);
    let tid = snames.iter().position(|c| c == "ticket_id").unwrap();
    let ticket_of = srow[tid].clone();
    let tpos = tnames.iter().position(|c| c == "id").unwrap();
    let trow = {
        let mut st = conn
            .prepare("SELECT * FROM tickets_ticket WHERE tenant_id = ? AND id = ?")
            .unwrap();
        st.query_row(
            params_from_iter([SqlValue::Text(t.clone()), ticket_of].iter()),
            |r| {
                (0..tnames.len())
                    .map(|i| r.get::<_, SqlValue>(i))
                    .collect::<Result<Vec<_>, _>>()
            },
        )
        .unwrap_or(trow)
    };
    let _ = tpos;
    let ids: Vec<String> = (0..n).map(|_| Uuid::now_v7().to_string()).collect();
    let seed = Instant::now();
    copy_rows(&conn, "tickets_ticket", &trow, &tnames, n, |i| {
        vec![
            ("id", SqlValue::Text(ids[i].clone())),
            ("number", SqlValue::Integer(1000 + i as i64)),
        ]
    });
    copy_rows(&conn, "tickets_sla", &srow, &snames, n, |i| {
        vec![("ticket_id", SqlValue::Text(ids[i].clone()))]
    });
    conn.execute_batch("ANALYZE").unwrap();
    println!("recompute: seeded {n} tickets in {:.1?}", seed.elapsed());

    let store = open(&db).await;
    let tickets = Tickets::new(&store).unwrap();
    let p = tickets
        .update_policy(&admin, p.id, p.version, policy(6 * 60))
        .await
        .unwrap();
    let t0 = Instant::now();
    let (mut cursor, mut updated) = (None, 0u64);
    loop {
        let r = tickets
            .recompute_sla(&admin, Some(p.id), cursor, 1000)
            .await
            .unwrap();
        updated += u64::from(r.updated);
        match r.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let crmkit_time = t0.elapsed();
    println!("recompute: crmkit updated {updated} SLA rows in {crmkit_time:.1?}");

    // Raw: the same retargeting (to 5 hours, so every row changes again), by hand.
    let business = cal.calendar.clone();
    let now = Utc::now();
    let t0 = Instant::now();
    let mut after = String::new();
    let mut raw_updated = 0u64;
    loop {
        let tx = conn.unchecked_transaction().unwrap();
        let rows: Vec<(String, String)> = {
            let mut st = tx
                .prepare_cached(
                    "SELECT ticket_id, state FROM tickets_sla WHERE tenant_id = ? AND policy_id = ? \
                     AND ticket_id > ? ORDER BY policy_id, ticket_id LIMIT 1000",
                )
                .unwrap();
            st.query_map(
                params_from_iter(
                    [
                        SqlValue::Text(t.clone()),
                        SqlValue::Text(p.id.to_string()),
                        SqlValue::Text(after.clone()),
                    ]
                    .iter(),
                ),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        let Some(last) = rows.last() else { break };
        after = last.0.clone();
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE tickets_sla SET state = ?, resolution_due_at = ?, next_due_at = ?, \
                     version = version + 1 WHERE tenant_id = ? AND ticket_id = ?",
                )
                .unwrap();
            for (id, state) in &rows {
                let mut s: SlaState = serde_json::from_str(state).unwrap();
                if let Some(target) = s.target_mut(SlaTargetKind::Resolution) {
                    target.clock.retarget(&business, now, 5 * 60).unwrap();
                }
                let due = s
                    .target(SlaTargetKind::Resolution)
                    .and_then(|x| x.due_at(&business))
                    .map(|d| d.timestamp_micros());
                let next = s.next_due_at(&business).map(|d| d.timestamp_micros());
                up.execute(params_from_iter(
                    [
                        SqlValue::Text(serde_json::to_string(&s).unwrap()),
                        due.map(SqlValue::Integer).unwrap_or(SqlValue::Null),
                        next.map(SqlValue::Integer).unwrap_or(SqlValue::Null),
                        SqlValue::Text(t.clone()),
                        SqlValue::Text(id.clone()),
                    ]
                    .iter(),
                ))
                .unwrap();
                raw_updated += 1;
            }
        }
        tx.commit().unwrap();
    }
    println!("recompute: raw updated {raw_updated} SLA rows");
    out.push(Line {
        workload: format!("recompute SLA of {n} tickets after a policy change"),
        crmkit: crmkit_time,
        raw: Some(t0.elapsed()),
        baseline: "raw, 1000 per tx",
        target: "report",
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut out = vec![];
    rt.block_on(async {
        let only = std::env::var("CRMKIT_BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "due" {
            due_queries(&mut out).await;
        }
        if only.is_empty() || only == "recompute" {
            recompute(&mut out).await;
        }
    });
    print(&out);
}
