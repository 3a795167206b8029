//! Contacts benchmarks: crmkit next to a raw baseline doing the same work on the same schema,
//! and their ratio.
//!
//! `cargo bench --bench contacts` (sizes: CRMKIT_BENCH_CONTACTS, default 100 000;
//! CRMKIT_BENCH_MEMORY_CONTACTS, default 1 000 000).
//!
//! A small harness of our own rather than criterion or divan: each workload needs crmkit
//! and its baseline measured in one process on identical data, and the ratio printed; the
//! harness takes the median of repeated runs (the best of two for imports).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crmkit::contacts::{
    Consent, ConsentStatus, Contact, EmailAddress, ImportOptions, LifecycleStage, NewContact,
};
use crmkit::core::text::parse_email;
use crmkit::{Actor, ContactId, Crm, Ctx, Filter, Query, Role, TenantId, UserId, UserInput};
use rusqlite::{Connection, params};
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn temp_db(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("crmkit-bench-{tag}-{}.db", Uuid::now_v7()))
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    workload: String,
    crmkit: Duration,
    raw: Option<Duration>,
    target: &'static str,
}

fn print(rows: &[Row]) {
    println!(
        "\n{:<58} {:>12} {:>12} {:>7}  target",
        "workload", "crmkit", "baseline", "ratio"
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
            "{:<58} {:>12} {:>12} {:>7}  {}",
            r.workload,
            format!("{:.2?}", r.crmkit),
            raw,
            ratio,
            r.target
        );
    }
}

const STAGES: [LifecycleStage; 8] = LifecycleStage::ALL;

fn inputs(n: usize, owners: &[UserId], salt: &str) -> Vec<NewContact> {
    (0..n)
        .map(|i| {
            let mut c = NewContact::named(format!("First{i}"), format!("Last{}", i % 977))
                .email(format!("person{i}.{salt}@example{}.com", i % 50));
            c.owner = Some(owners[i % owners.len()]);
            c.lifecycle_stage = STAGES[(i / owners.len()) % STAGES.len()];
            c
        })
        .collect()
}

async fn setup(crm: &Crm, owners: usize) -> (Ctx, Vec<UserId>) {
    let tenant = TenantId::new();
    let admin_id = UserId::new();
    let ctx = Ctx::new(tenant, Actor::new(admin_id, [Role::Admin], [])).unwrap();
    let mut ids = vec![];
    for i in 0..owners {
        let id = if i == 0 { admin_id } else { UserId::new() };
        crm.directory()
            .put_user(
                &ctx,
                UserInput {
                    id,
                    name: format!("User {i}"),
                    email: format!("user{i}@example.com"),
                    roles: vec![if i == 0 { Role::Admin } else { Role::Rep }],
                    teams: vec![],
                    active: true,
                    time_zone: "UTC".into(),
                },
            )
            .await
            .unwrap();
        ids.push(id);
    }
    (ctx, ids)
}

/// The raw baseline import: the same rows crmkit writes (contact, email lookup entry, audit
/// entry, event, event sequence), with the same validation and serialisation, through
/// prepared statements in one transaction.
fn raw_import(conn: &mut Connection, tenant: TenantId, actor: UserId, rows: &[NewContact]) {
    let tx = conn.transaction().unwrap();
    {
        let mut ins_person = tx.prepare_cached(
            "INSERT INTO contacts_person (tenant_id, id, first_name, first_fold, last_name, last_fold, name_fold, primary_email, email_fold, emails, primary_phone, phones, job_title, job_title_fold, organization_id, owner_id, team_id, lifecycle_stage, consent_status, consent_source, consent_at, tags, custom, created_at, updated_at, deleted_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '[]', NULL, NULL, NULL, ?, NULL, ?, 'unknown', NULL, NULL, '[]', '{}', ?, ?, NULL, 1)",
        ).unwrap();
        let mut ins_lookup = tx
            .prepare_cached("INSERT INTO crm_lookup (tenant_id, kind, value, record_kind, record_id, claim) VALUES (?, 'email', ?, 'contact', ?, ?)")
            .unwrap();
        let mut ins_audit = tx
            .prepare_cached("INSERT INTO crm_audit (tenant_id, id, at, actor, record_kind, record_id, field, old_value, new_value) VALUES (?, ?, ?, ?, 'contact', ?, '*', NULL, ?)")
            .unwrap();
        let mut ins_event = tx
            .prepare_cached("INSERT INTO crm_events (tenant_id, seq, kind, record_kind, record_id, changed, payload, actor, origin, at) VALUES (?, ?, 'contact.created', 'contact', ?, '[]', ?, ?, 'api', ?)")
            .unwrap();
        let t = tenant.to_string();
        let a = actor.to_string();
        let now_ts =
            chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
        let now = now_ts.timestamp_micros();
        let mut seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM crm_events WHERE tenant_id = ?",
                [&t],
                |r| r.get(0),
            )
            .unwrap();
        for r in rows {
            let email = parse_email("email", &r.emails[0]).unwrap();
            let id = ContactId::new();
            let owner = r.owner.unwrap();
            let contact = Contact {
                id,
                first_name: r.first_name.clone(),
                last_name: r.last_name.clone(),
                emails: vec![EmailAddress {
                    address: email.address.clone(),
                    label: None,
                }],
                phones: vec![],
                job_title: None,
                organization: None,
                owner,
                team: None,
                lifecycle_stage: r.lifecycle_stage,
                consent: Consent::default(),
                tags: vec![],
                custom: Default::default(),
                created_at: now_ts,
                updated_at: now_ts,
                deleted_at: None,
                version: 1,
            };
            let payload = serde_json::to_string(&contact).unwrap();
            let emails = serde_json::to_string(&contact.emails).unwrap();
            let id = id.to_string();
            let owner = owner.to_string();
            let name_fold = format!("{} {}", r.first_name, r.last_name).to_lowercase();
            ins_person
                .execute(params![
                    t,
                    id,
                    r.first_name,
                    r.first_name.to_lowercase(),
                    r.last_name,
                    r.last_name.to_lowercase(),
                    name_fold,
                    email.address,
                    email.key,
                    emails,
                    owner,
                    r.lifecycle_stage.as_str(),
                    now,
                    now
                ])
                .unwrap();
            ins_lookup
                .execute(params![t, email.key, id, email.key])
                .unwrap();
            ins_audit
                .execute(params![t, Uuid::now_v7().to_string(), now, a, id, payload])
                .unwrap();
            seq += 1;
            ins_event
                .execute(params![t, seq, id, payload, a, now])
                .unwrap();
        }
        tx.execute(
            "INSERT INTO crm_sequences (tenant_id, name, last_value) VALUES (?, 'events', ?) ON CONFLICT (tenant_id, name) DO UPDATE SET last_value = excluded.last_value",
            params![t, seq],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The columns a `Contact` is built from, and the raw decoding of them.
const RAW_COLUMNS: &str = "id, first_name, last_name, emails, phones, job_title, organization_id, owner_id, team_id, \
     lifecycle_stage, consent_status, consent_source, consent_at, tags, custom, created_at, updated_at, deleted_at, version";

fn raw_decode(r: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    fn json<T: serde::de::DeserializeOwned>(
        r: &rusqlite::Row<'_>,
        i: usize,
    ) -> rusqlite::Result<T> {
        Ok(serde_json::from_str(r.get_ref(i)?.as_str()?).unwrap())
    }
    fn id(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
        Ok(r.get_ref(i)?
            .as_str_or_null()?
            .map(|s| Uuid::parse_str(s).unwrap()))
    }
    let ts = |i: usize| -> rusqlite::Result<Option<chrono::DateTime<chrono::Utc>>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .and_then(chrono::DateTime::from_timestamp_micros))
    };
    Ok(Contact {
        id: ContactId::from_uuid(id(r, 0)?.unwrap()),
        first_name: r.get(1)?,
        last_name: r.get(2)?,
        emails: json(r, 3)?,
        phones: json(r, 4)?,
        job_title: r.get(5)?,
        organization: id(r, 6)?.map(crmkit::OrganizationId::from_uuid),
        owner: UserId::from_uuid(id(r, 7)?.unwrap()),
        team: id(r, 8)?.map(crmkit::TeamId::from_uuid),
        lifecycle_stage: LifecycleStage::parse(r.get_ref(9)?.as_str()?).unwrap(),
        consent: Consent {
            status: ConsentStatus::parse(r.get_ref(10)?.as_str()?).unwrap(),
            source: r.get(11)?,
            at: ts(12)?,
        },
        tags: json(r, 13)?,
        custom: json(r, 14)?,
        created_at: ts(15)?.unwrap(),
        updated_at: ts(16)?.unwrap(),
        deleted_at: ts(17)?,
        version: r.get::<_, i64>(18)? as u64,
    })
}

fn raw_conn(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c
}

async fn sqlite_benches(out: &mut Vec<Row>) {
    let n = env_usize("CRMKIT_BENCH_CONTACTS", 100_000);
    // Import, best of two, each into a fresh file.
    let mut ours = vec![];
    let mut theirs = vec![];
    let mut kept: Option<(Crm, Ctx, Vec<UserId>, PathBuf)> = None;
    for round in 0..2 {
        let path = temp_db("import");
        let crm = Crm::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let (ctx, owners) = setup(&crm, 10).await;
        let rows = inputs(n, &owners, &format!("r{round}"));
        let t = Instant::now();
        let report = crm
            .contacts()
            .import_contacts(&ctx, rows, ImportOptions::default())
            .await
            .unwrap();
        ours.push(t.elapsed());
        assert_eq!(report.created.len(), n);

        let raw_path = temp_db("raw");
        let raw_crm = Crm::open(&format!("sqlite://{}", raw_path.display()))
            .await
            .unwrap();
        let (raw_ctx, raw_owners) = setup(&raw_crm, 10).await;
        drop(raw_crm);
        let rows = inputs(n, &raw_owners, &format!("r{round}"));
        let mut conn = raw_conn(&raw_path);
        let t = Instant::now();
        raw_import(&mut conn, raw_ctx.tenant(), raw_ctx.actor().user, &rows);
        theirs.push(t.elapsed());
        drop(conn);
        remove_db(&raw_path);
        if round == 0 {
            kept = Some((crm, ctx, owners, path));
        } else {
            drop(crm);
            remove_db(&path);
        }
    }
    out.push(Row {
        workload: format!("import {n} contacts, SQLite file (batch API vs raw)"),
        crmkit: *ours.iter().min().unwrap(),
        raw: Some(*theirs.iter().min().unwrap()),
        target: "<= 1.5",
    });

    let (crm, ctx, owners, path) = kept.unwrap();
    let contacts = crm.contacts();
    let conn = raw_conn(&path);
    let tenant = ctx.tenant().to_string();
    let ids: Vec<Uuid> = {
        let mut st = conn
            .prepare("SELECT id FROM contacts_person WHERE tenant_id = ? ORDER BY id")
            .unwrap();
        let all: Vec<String> = st
            .query_map([&tenant], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        (0..1000)
            .map(|i| Uuid::parse_str(&all[(i * 7919) % all.len()]).unwrap())
            .collect()
    };

    // get by id
    let mut ours = vec![];
    let mut theirs = vec![];
    for _ in 0..7 {
        let t = Instant::now();
        for id in &ids {
            let c: Contact = contacts
                .get_contact(&ctx, crmkit::ContactId::from_uuid(*id))
                .await
                .unwrap();
            std::hint::black_box(c);
        }
        ours.push(t.elapsed() / ids.len() as u32);
        let t = Instant::now();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {RAW_COLUMNS} FROM contacts_person WHERE tenant_id = ? AND id = ?"
            ))
            .unwrap();
        for id in &ids {
            let c = st
                .query_row(params![tenant, id.to_string()], raw_decode)
                .unwrap();
            std::hint::black_box(c);
        }
        theirs.push(t.elapsed() / ids.len() as u32);
    }
    out.push(Row {
        workload: "get contact by id (per call)".into(),
        crmkit: median(ours),
        raw: Some(median(theirs)),
        target: "<= 1.3",
    });

    // keyset-paged filtered list: owner + lifecycle stage, 50 per page
    let owner = owners[3];
    let q = Query::new()
        .filter(Filter::eq("owner", owner).and(Filter::eq("lifecycle_stage", "customer")))
        .limit(50);
    let mut cursors = vec![None];
    loop {
        let mut qq = q.clone();
        qq.cursor = cursors.last().unwrap().clone();
        let page = contacts.list_contacts(&ctx, &qq).await.unwrap();
        match page.next_cursor {
            Some(c) => cursors.push(Some(c)),
            None => break,
        }
    }
    let deep = cursors.len() - 1;
    let raw_after: Vec<Option<String>> = cursors
        .iter()
        .enumerate()
        .map(|(i, _)| {
            (i > 0).then(|| {
                let mut st = conn
                    .prepare_cached("SELECT id FROM contacts_person WHERE tenant_id = ? AND owner_id = ? AND lifecycle_stage = 'customer' AND deleted_at IS NULL ORDER BY id LIMIT 1 OFFSET ?")
                    .unwrap();
                st.query_row(params![tenant, owner.to_string(), (i * 50 - 1) as i64], |r| r.get(0)).unwrap()
            })
        })
        .collect();
    let mut page_times = vec![];
    for (label, idx) in [("page 1", 0usize), ("deep page", deep)] {
        let mut ours = vec![];
        let mut theirs = vec![];
        for _ in 0..15 {
            let mut qq = q.clone();
            qq.cursor = cursors[idx].clone();
            let t = Instant::now();
            for _ in 0..20 {
                std::hint::black_box(contacts.list_contacts(&ctx, &qq).await.unwrap());
            }
            ours.push(t.elapsed() / 20);
            let t = Instant::now();
            for _ in 0..20 {
                let base = format!(
                    "SELECT {RAW_COLUMNS} FROM contacts_person WHERE tenant_id = ?1 AND owner_id = ?2 \
                     AND lifecycle_stage = 'customer' AND deleted_at IS NULL"
                );
                let rows: Vec<Contact> = match &raw_after[idx] {
                    None => {
                        let mut st = conn
                            .prepare_cached(&format!("{base} ORDER BY id LIMIT 51"))
                            .unwrap();
                        st.query_map(params![tenant, owner.to_string()], raw_decode)
                            .unwrap()
                            .map(Result::unwrap)
                            .collect()
                    }
                    Some(after) => {
                        let mut st = conn
                            .prepare_cached(&format!("{base} AND id > ?3 ORDER BY id LIMIT 51"))
                            .unwrap();
                        st.query_map(params![tenant, owner.to_string(), after], raw_decode)
                            .unwrap()
                            .map(Result::unwrap)
                            .collect()
                    }
                };
                std::hint::black_box(rows);
            }
            theirs.push(t.elapsed() / 20);
        }
        let (o, r) = (median(ours), median(theirs));
        page_times.push(o);
        out.push(Row {
            workload: format!("list owner+stage, 50/page, {label} (of {})", deep + 1),
            crmkit: o,
            raw: Some(r),
            target: "<= 1.3",
        });
    }
    out.push(Row {
        workload: "deep page vs page 1 (crmkit; ratio column)".into(),
        crmkit: page_times[1],
        raw: Some(page_times[0]),
        target: "<= 2",
    });
    drop(conn);
    drop(contacts);
    drop(crm);
    remove_db(&path);
}

async fn memory_benches(out: &mut Vec<Row>) {
    let n = env_usize("CRMKIT_BENCH_MEMORY_CONTACTS", 1_000_000);
    let crm = Crm::in_memory().unwrap();
    let (ctx, owners) = setup(&crm, 10).await;
    let rows = inputs(n, &owners, "m");
    let t = Instant::now();
    let report = crm
        .contacts()
        .import_contacts(&ctx, rows, ImportOptions::default())
        .await
        .unwrap();
    let d = t.elapsed();
    assert_eq!(report.created.len(), n);
    println!(
        "memory import: {n} contacts in {d:.2?} = {:.0} contacts/s (target >= 1 000 000/s)",
        n as f64 / d.as_secs_f64()
    );
    out.push(Row {
        workload: format!("import {n} contacts, in-memory backend"),
        crmkit: d,
        raw: None,
        target: ">= 1M/s",
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
        sqlite_benches(&mut out).await;
        memory_benches(&mut out).await;
    });
    print(&out);
}
