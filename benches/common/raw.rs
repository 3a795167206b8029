//! The raw baselines: hand-written rusqlite with prepared statements doing what crmkit
//! does, on crmkit's schema, through a connection configured like crmkit's writer
//! ([`super::raw_conn`]).

use chrono::Utc;
use crmkit::activities::{Activity, ActivityDetails, Note};
use crmkit::contacts::{Consent, ConsentStatus, Contact, EmailAddress, LifecycleStage, NewContact};
use crmkit::core::text::parse_email;
use crmkit::{ContactId, Ctx, RecordRef, TenantId, UserId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use uuid::Uuid;

// ---- contacts --------------------------------------------------------------------------

/// The import: the same rows crmkit (every module composed) writes (contact, email lookup
/// entry, activities' follow-up row, audit entry, event, event sequence), with the same
/// validation and serialisation, through prepared statements in one transaction.
pub fn import_contacts(
    conn: &mut Connection,
    tenant: TenantId,
    actor: UserId,
    rows: &[NewContact],
) {
    let tx = conn.transaction().unwrap();
    {
        let mut ins_person = tx.prepare_cached(
            "INSERT INTO contacts_person (tenant_id, id, first_name, first_fold, last_name, last_fold, name_fold, primary_email, email_fold, emails, primary_phone, phones, job_title, job_title_fold, organization_id, owner_id, team_id, lifecycle_stage, consent_status, consent_source, consent_at, tags, custom, created_at, updated_at, deleted_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '[]', NULL, NULL, NULL, ?, NULL, ?, 'unknown', NULL, NULL, '[]', '{}', ?, ?, NULL, 1)",
        ).unwrap();
        let mut ins_lookup = tx
            .prepare_cached("INSERT INTO crm_lookup (tenant_id, kind, value, record_kind, record_id, claim) VALUES (?, 'email', ?, 'contact', ?, ?)")
            .unwrap();
        let mut ins_followup = tx
            .prepare_cached("INSERT INTO activities_followup (tenant_id, record_kind, record_id, last_activity_at, next_activity_at, next_activity_id, version, created_at, quiet_since, active) VALUES (?, 'contact', ?, NULL, NULL, NULL, 1, ?, ?, 1)")
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
            chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
        let now = now_ts.timestamp_micros();
        let mut seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM crm_events WHERE tenant_id = ?",
                [&t],
                |r| r.get(0),
            )
            .unwrap();
        for r in rows {
            let email = parse_email("email", &r.emails[0].address).unwrap();
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
            ins_followup.execute(params![t, id, now, now]).unwrap();
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

/// The columns a `Contact` is built from.
pub const CONTACT_COLUMNS: &str = "id, first_name, last_name, emails, phones, job_title, organization_id, owner_id, team_id, \
     lifecycle_stage, consent_status, consent_source, consent_at, tags, custom, created_at, updated_at, deleted_at, version";

/// A `Contact` from [`CONTACT_COLUMNS`].
pub fn decode_contact(r: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
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
    let ts = |i: usize| -> rusqlite::Result<Option<chrono::DateTime<Utc>>> {
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

/// A contact by id.
pub fn get_contact(conn: &Connection, tenant: &str, id: &Uuid) -> Contact {
    conn.prepare_cached(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts_person WHERE tenant_id = ? AND id = ?"
    ))
    .unwrap()
    .query_row(params![tenant, id.to_string()], decode_contact)
    .unwrap()
}

/// The id a keyset page of an owner's customers starts after (`page` >= 1, 50 per page).
pub fn customers_after(conn: &Connection, tenant: &str, owner: UserId, page: usize) -> String {
    conn.prepare_cached("SELECT id FROM contacts_person WHERE tenant_id = ? AND owner_id = ? AND lifecycle_stage = 'customer' AND deleted_at IS NULL ORDER BY id LIMIT 1 OFFSET ?")
        .unwrap()
        .query_row(params![tenant, owner.to_string(), (page * 50 - 1) as i64], |r| r.get(0))
        .unwrap()
}

/// A page (50, and one more to know there is a next page) of an owner's customers by id,
/// after `after`.
pub fn customers_page(
    conn: &Connection,
    tenant: &str,
    owner: UserId,
    after: Option<&str>,
) -> Vec<Contact> {
    let base = format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts_person WHERE tenant_id = ?1 AND owner_id = ?2 \
         AND lifecycle_stage = 'customer' AND deleted_at IS NULL"
    );
    match after {
        None => conn
            .prepare_cached(&format!("{base} ORDER BY id LIMIT 51"))
            .unwrap()
            .query_map(params![tenant, owner.to_string()], decode_contact)
            .unwrap()
            .map(Result::unwrap)
            .collect(),
        Some(after) => conn
            .prepare_cached(&format!("{base} AND id > ?3 ORDER BY id LIMIT 51"))
            .unwrap()
            .query_map(params![tenant, owner.to_string(), after], decode_contact)
            .unwrap()
            .map(Result::unwrap)
            .collect(),
    }
}

// ---- pipeline --------------------------------------------------------------------------

/// version, stage, amount, currency, close date, stage entered, history seq, probability
/// override, pipeline: what a move reads of a deal.
type DealState = (
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    String,
);

/// Where a deal moves and what a crmkit move writes besides the deal.
pub struct MoveTo {
    /// The target stage.
    pub stage: String,
    /// Its probability and kind.
    pub probability: i64,
    /// Its kind (open, won, lost).
    pub kind: String,
    /// Audit rows one crmkit move writes.
    pub audit_rows: i64,
}

/// Moves a deal one stage on in one transaction: read it, versioned update, a history
/// row, the audit rows, the event (from the tenant's sequence).
pub fn move_deal(conn: &Connection, tenant: &str, actor: &str, id: &str, to: &MoveTo) {
    let tx = conn.unchecked_transaction().unwrap();
    let (version, from, amount, currency, close, entered, seq, prob_override, pipeline_id): DealState = tx
        .prepare_cached("SELECT version, stage_id, amount, currency, expected_close, stage_entered_at, history_seq, probability_override, pipeline_id FROM pipeline_deals WHERE tenant_id = ? AND id = ?")
        .unwrap()
        .query_row(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?)))
        .unwrap();
    let now = Utc::now().timestamp_micros();
    let prob = prob_override.unwrap_or(to.probability);
    let weighted = amount.map(|a| a * prob);
    let changed = tx
        .prepare_cached("UPDATE pipeline_deals SET stage_id = ?, probability = ?, weighted_x100 = ?, stage_entered_at = ?, history_seq = ?, updated_at = ?, version = ? WHERE tenant_id = ? AND id = ? AND version = ?")
        .unwrap()
        .execute(params![to.stage, prob, weighted, now, seq + 1, now, version + 1, tenant, id, version])
        .unwrap();
    assert_eq!(changed, 1);
    tx.prepare_cached("INSERT INTO pipeline_stage_history (tenant_id, deal_id, seq, pipeline_id, from_stage, to_stage, to_kind, amount, currency, expected_close, at, by_user, seconds_in_previous) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .unwrap()
        .execute(params![tenant, id, seq + 1, pipeline_id, from, to.stage, to.kind, amount, currency, close, now, actor, (now - entered) / 1_000_000])
        .unwrap();
    let payload =
        serde_json::json!({ "id": id, "stage": to.stage, "from": from, "probability": prob })
            .to_string();
    for f in 0..to.audit_rows {
        tx.prepare_cached("INSERT INTO crm_audit (tenant_id, id, at, actor, record_kind, record_id, field, old_value, new_value) VALUES (?, ?, ?, ?, 'deal', ?, ?, ?, ?)")
            .unwrap()
            .execute(params![tenant, Uuid::now_v7().to_string(), now, actor, id, format!("field{f}"), from, payload])
            .unwrap();
    }
    let last: Option<i64> = tx
        .prepare_cached(
            "SELECT last_value FROM crm_sequences WHERE tenant_id = ? AND name = 'events'",
        )
        .unwrap()
        .query_row(params![tenant], |r| r.get(0))
        .optional()
        .unwrap();
    let next = last.unwrap_or(0) + 1;
    tx.prepare_cached(
        "UPDATE crm_sequences SET last_value = ? WHERE tenant_id = ? AND name = 'events'",
    )
    .unwrap()
    .execute(params![next, tenant])
    .unwrap();
    tx.prepare_cached("INSERT INTO crm_events (tenant_id, seq, kind, record_kind, record_id, changed, payload, actor, origin, at) VALUES (?, ?, 'deal.moved', 'deal', ?, '[\"stage\"]', ?, ?, 'api', ?)")
        .unwrap()
        .execute(params![tenant, next, id, payload, actor, now])
        .unwrap();
    tx.commit().unwrap();
}

/// The weighted pipeline summary: one grouped aggregate.
pub fn pipeline_summary(
    conn: &Connection,
    tenant: &str,
    pipeline: &str,
) -> Vec<(String, Option<String>, i64, i64, i64)> {
    conn.prepare_cached(
        "SELECT stage_id, currency, COUNT(*), SUM(amount), SUM(weighted_x100) FROM pipeline_deals \
         WHERE tenant_id = ? AND pipeline_id = ? AND status = 'open' AND deleted_at IS NULL \
         GROUP BY stage_id, currency",
    )
    .unwrap()
    .query_map(params![tenant, pipeline], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

// ---- activities ------------------------------------------------------------------------

/// The rows one note `create` writes: the activity, its relation, the follow-up row of
/// its record, one audit entry and one event (with the tenant's event sequence).
pub fn note(tx: &rusqlite::Transaction<'_>, tenant: &str, ctx: &Ctx, i: usize, r: &RecordRef) {
    note_rows(tx, tenant, ctx, i, r);
    followup(tx, tenant, r, Utc::now().timestamp_micros());
}

/// What a follow-up update writes: the record's last activity, versioned.
pub fn followup(tx: &rusqlite::Transaction<'_>, tenant: &str, r: &RecordRef, micros: i64) {
    tx.prepare_cached(
        "UPDATE activities_followup SET last_activity_at = ?, quiet_since = ?, version = version + 1 \
         WHERE tenant_id = ? AND record_kind = 'contact' AND record_id = ?",
    )
    .unwrap()
    .execute(params![micros, micros, tenant, r.id.to_string()])
    .unwrap();
}

/// The per-note rows: activity, relation, audit entry, event.
pub fn note_rows(tx: &rusqlite::Transaction<'_>, tenant: &str, ctx: &Ctx, i: usize, r: &RecordRef) {
    let now = Utc::now();
    let micros = now.timestamp_micros();
    let a = Activity {
        id: crmkit::core::ActivityId::new(),
        related: vec![r.clone()],
        subject: format!("Note {i}"),
        owner: ctx.actor().user,
        team: None,
        details: ActivityDetails::Note(Note {
            body: format!("Talked about item {i}."),
            pinned: false,
            author: ctx.actor().user,
        }),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        version: 1,
    };
    let id = a.id.to_string();
    let owner = a.owner.to_string();
    let record = r.id.to_string();
    tx.prepare_cached(
        "INSERT INTO activities_activity (tenant_id, id, kind, subject, owner_id, team_id, status, open, due_at, starts_at, ends_at, message_id, related, details, created_at, updated_at, deleted_at, version) \
         VALUES (?, ?, 'note', ?, ?, NULL, NULL, 0, NULL, NULL, NULL, NULL, ?, ?, ?, ?, NULL, 1)",
    )
    .unwrap()
    .execute(params![
        tenant,
        id,
        a.subject,
        owner,
        serde_json::to_string(&a.related).unwrap(),
        serde_json::to_string(&a.details).unwrap(),
        micros,
        micros
    ])
    .unwrap();
    tx.prepare_cached(
        "INSERT INTO activities_relation (tenant_id, activity_id, record_kind, record_id, at, done_at, next_at) VALUES (?, ?, 'contact', ?, ?, ?, NULL)",
    )
    .unwrap()
    .execute(params![tenant, id, record, micros, micros])
    .unwrap();
    let snapshot = serde_json::to_string(&a).unwrap();
    tx.prepare_cached(
        "INSERT INTO crm_audit (tenant_id, id, at, actor, record_kind, record_id, field, old_value, new_value) VALUES (?, ?, ?, ?, 'activity', ?, '*', NULL, ?)",
    )
    .unwrap()
    .execute(params![tenant, Uuid::now_v7().to_string(), micros, owner, id, snapshot])
    .unwrap();
    let next: i64 = tx
        .prepare_cached(
            "UPDATE crm_sequences SET last_value = last_value + 1 WHERE tenant_id = ? AND name = 'events' RETURNING last_value",
        )
        .unwrap()
        .query_row(params![tenant], |r| r.get(0))
        .unwrap();
    tx.prepare_cached(
        "INSERT INTO crm_events (tenant_id, seq, kind, record_kind, record_id, changed, payload, actor, origin, at) VALUES (?, ?, 'activity.created', 'activity', ?, '[]', ?, ?, 'api', ?)",
    )
    .unwrap()
    .execute(params![tenant, next, id, snapshot, owner, micros])
    .unwrap();
}

/// Appends notes `from..to` in transactions of 1000: the per-note rows, then one
/// follow-up update per record and batch.
pub fn append_notes(
    conn: &Connection,
    tenant: &str,
    ctx: &Ctx,
    records: &[RecordRef],
    from: usize,
    to: usize,
) {
    let mut done = from;
    while done < to {
        let end = (done + 1000).min(to);
        let tx = conn.unchecked_transaction().unwrap();
        for i in done..end {
            note_rows(&tx, tenant, ctx, i, &records[i % records.len()]);
        }
        let now = Utc::now().timestamp_micros();
        for r in records.iter().take(end - done) {
            followup(&tx, tenant, r, now);
        }
        tx.commit().unwrap();
        done = end;
    }
}

/// The newest 50 of a record's timeline: its newest 50 relations and their activities,
/// and its newest 50 events.
pub fn timeline(conn: &Connection, tenant: &str, record: &RecordRef) -> usize {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT activity_id, at FROM activities_relation WHERE tenant_id = ? AND record_kind = 'contact' AND record_id = ? ORDER BY at DESC, activity_id DESC LIMIT 50",
        )
        .unwrap()
        .query_map(params![tenant, record.id.to_string()], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let evs: Vec<(i64, String, String, i64)> = conn
        .prepare_cached(
            "SELECT seq, kind, payload, at FROM crm_events WHERE tenant_id = ? AND record_kind = 'contact' AND record_id = ? ORDER BY seq DESC LIMIT 50",
        )
        .unwrap()
        .query_map(params![tenant, record.id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut act = conn
        .prepare_cached(
            "SELECT id, details, related FROM activities_activity WHERE tenant_id = ? AND id = ?",
        )
        .unwrap();
    let rows: Vec<(String, String, String)> = ids
        .iter()
        .map(|id| {
            act.query_row(params![tenant, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap()
        })
        .collect();
    std::hint::black_box((&rows, &evs));
    rows.len() + evs.len()
}

/// The oldest 100 due reminders (the query crmkit's `due_reminders` runs).
pub const DUE_REMINDERS: &str = "SELECT id, activity_id, user_id, remind_at, delivered_at, version FROM activities_reminder \
     WHERE tenant_id = ? AND delivered_at IS NULL AND remind_at <= ? ORDER BY remind_at, id LIMIT 100";

/// Runs [`DUE_REMINDERS`].
pub fn due_reminders(conn: &Connection, tenant: &str, now: i64) -> usize {
    let rows: Vec<(String, String, String, i64, Option<i64>, i64)> = conn
        .prepare_cached(DUE_REMINDERS)
        .unwrap()
        .query_map(params![tenant, now], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.len()
}

// ---- tables copied as rows (seeding large tables) ------------------------------------------

/// Prints SQLite's plan for `sql`.
pub fn explain(conn: &Connection, sql: &str, args: &[SqlValue]) {
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
/// columns `f(i)` names replaced by its values for copy `i`, 10 000 per transaction.
pub fn copy_rows(
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

/// The column names and one row of `table` in `tenant`.
pub fn template(conn: &Connection, table: &str, tenant: &str) -> (Vec<String>, Vec<SqlValue>) {
    template_where(conn, table, tenant, None)
}

/// Like [`template`], the row with `id_col = id` when given.
pub fn template_where(
    conn: &Connection,
    table: &str,
    tenant: &str,
    by: Option<(&str, SqlValue)>,
) -> (Vec<String>, Vec<SqlValue>) {
    let filter = by
        .as_ref()
        .map(|(c, _)| format!(" AND {c} = ?"))
        .unwrap_or_default();
    let mut st = conn
        .prepare(&format!(
            "SELECT * FROM {table} WHERE tenant_id = ?{filter} LIMIT 1"
        ))
        .unwrap();
    let names: Vec<String> = st.column_names().map(|s| s.to_string()).collect();
    let mut args = vec![SqlValue::Text(tenant.to_owned())];
    if let Some((_, v)) = by {
        args.push(v);
    }
    let row = st
        .query_row(params_from_iter(args.iter()), |r| {
            (0..names.len())
                .map(|i| r.get::<_, SqlValue>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    (names, row)
}

/// Every row `sql` returns, `columns` values each.
pub fn all_rows(
    conn: &Connection,
    sql: &str,
    args: &[SqlValue],
    columns: usize,
) -> Vec<Vec<SqlValue>> {
    conn.prepare_cached(sql)
        .unwrap()
        .query_map(params_from_iter(args.iter()), |r| {
            (0..columns)
                .map(|i| r.get::<_, SqlValue>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

// ---- tickets ---------------------------------------------------------------------------

/// Retargets the resolution clock of every SLA row under `policy` to `minutes` of business
/// time, with the same pure functions crmkit uses, and writes state and due columns back,
/// 1000 rows per transaction. Returns the rows written.
pub fn recompute_sla(
    conn: &Connection,
    tenant: &str,
    policy: &str,
    business: &crmkit::tickets::calendar::BusinessCalendar,
    minutes: i64,
) -> u64 {
    use crmkit::tickets::sla::{SlaState, SlaTargetKind};
    let now = Utc::now();
    let mut after = String::new();
    let mut updated = 0u64;
    loop {
        let tx = conn.unchecked_transaction().unwrap();
        let rows: Vec<(String, String)> = tx
            .prepare_cached(
                "SELECT ticket_id, state FROM tickets_sla WHERE tenant_id = ? AND policy_id = ? \
                 AND ticket_id > ? ORDER BY policy_id, ticket_id LIMIT 1000",
            )
            .unwrap()
            .query_map(params![tenant, policy, after], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
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
                    target.clock.retarget(business, now, minutes).unwrap();
                }
                let due = s
                    .target(SlaTargetKind::Resolution)
                    .and_then(|x| x.due_at(business))
                    .map(|d| d.timestamp_micros());
                let next = s.next_due_at(business).map(|d| d.timestamp_micros());
                up.execute(params![
                    serde_json::to_string(&s).unwrap(),
                    due,
                    next,
                    tenant,
                    id
                ])
                .unwrap();
                updated += 1;
            }
        }
        tx.commit().unwrap();
    }
    updated
}
