//! Conformance checks of lead scoring (`crmkit_automation::scoring`) on any backend: field
//! points, event points (a meeting held, an email logged), decay over days, exactly once
//! under redelivery and two engines, the score written through the leads API without a
//! loop, the model's validation and access.
//!
//! The store is the one of [`crate::automation::modules`]; every check makes its own
//! tenant with [`crate::automation::setup`] and its engines with the engine checks'
//! helpers.

use chrono::TimeDelta;
use crmkit_automation::runlog::CURSOR_TABLE;
use crmkit_automation::scoring::HIT_TABLE;
use crmkit_automation::{ContributionSource, Engine, RunOutcome, RunReport, Scoring, ScoringModel};
use crmkit_core::store::{Value, Write};
use crmkit_core::{
    Changeset, Ctx, Error, Filter, LeadId, RecordRef, Role, Store, UserId, UserInput,
};
use crmkit_pipeline::lead::{LeadStatus, Leads};
use serde_json::json;
use uuid::Uuid;

use crate::automation::{Fixture, setup};
use crate::automation_engine::{drain, engine};
use crate::check::{At, expect_denied, expect_error, expect_not_found, expect_validation};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::{all_row_counts, count, record_events};

/// Creates a lead as `ctx` with the fields of `body` (and a name).
async fn lead(f: &Fixture, ctx: &Ctx, body: serde_json::Value) -> CheckResult<LeadId> {
    let mut b = json!({"first_name": "Lead", "last_name": "Scored"});
    if let (Some(m), serde_json::Value::Object(extra)) = (b.as_object_mut(), body) {
        m.extend(extra);
    }
    let r = f
        .store
        .records()
        .create(ctx, "lead", b)
        .await
        .at("create lead")?;
    Ok(LeadId::from_uuid(
        r.id().ok_or_else(|| Failure::new("a lead without an id"))?,
    ))
}

async fn lead_json(f: &Fixture, id: LeadId) -> CheckResult<serde_json::Value> {
    Ok(f.store
        .records()
        .get(&f.admin, "lead", id.as_uuid())
        .await
        .at("get lead")?
        .into_value())
}

async fn score_of(f: &Fixture, id: LeadId) -> CheckResult<i64> {
    lead_json(f, id).await?["score"]
        .as_i64()
        .ok_or_else(|| Failure::new("a lead without a score"))
}

/// Logs an activity of `kind` (`meeting`, `email` or `call`) related to `leads`, as
/// `ctx`, owned by `owner` when given.
async fn activity(
    f: &Fixture,
    ctx: &Ctx,
    kind: &str,
    leads: &[LeadId],
    owner: Option<UserId>,
) -> CheckResult<Uuid> {
    let details = match kind {
        "meeting" => json!({"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z",
                            "time_zone": "UTC"}),
        "email" => json!({"direction": "inbound", "from": "lead@example.test",
                          "message_id": format!("<{}@crmkit.test>", Uuid::now_v7())}),
        _ => json!({"direction": "outbound", "from": "+4930901820", "to": "+4930901821",
                    "started_at": "2026-03-02T10:00:00Z", "outcome": "connected"}),
    };
    let related: Vec<RecordRef> = leads.iter().map(|l| RecordRef::from(*l)).collect();
    let mut body = json!({"type": kind, "subject": format!("A {kind}"), "related": related,
                          "details": details});
    if let Some(o) = owner {
        body["owner"] = json!(o);
    }
    let r = f
        .store
        .records()
        .create(ctx, "activity", body)
        .await
        .at(&format!("log a {kind}"))?;
    r.id()
        .ok_or_else(|| Failure::new("an activity without an id"))
}

/// The kinds of the events about a lead.
async fn score_events(f: &Fixture, id: LeadId) -> CheckResult<Vec<crmkit_core::Event>> {
    let mut events = record_events(&f.store, &f.admin, RecordRef::from(id)).await?;
    events.retain(|e| e.kind == "lead.score_changed");
    Ok(events)
}

fn meetings_and_emails() -> ScoringModel {
    ScoringModel::new()
        .event_rule(
            "Meeting held",
            "activity.created",
            Some(Filter::eq("type", "meeting")),
            10,
        )
        .event_rule(
            "Email logged",
            "activity.created",
            Some(Filter::eq("type", "email")),
            5,
        )
}

/// Field rules: a lead scores the points of the rules whose filter holds, clamped; a
/// lead made before the model is scored when the model is saved; a change recomputes; the
/// score goes through the leads API (audit entry, `lead.score_changed` event naming the
/// model as its rule) and triggers no further scoring; the run log names the labels; a
/// new model version rescores.
pub async fn field_points(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let scoring = Scoring::new(store).at("Scoring::new")?;
    let early = lead(
        &f,
        &f.rep,
        json!({"employee_count": 500, "source": "referral"}),
    )
    .await?;
    let model = ScoringModel::new()
        .field_rule("Big company", Filter::gt("employee_count", 100), 20)
        .field_rule("Referral", Filter::eq("source", "referral"), 15)
        .max(30);
    let saved = scoring.put(&f.admin, 0, model).await.at("put model")?;
    ensure_eq!(saved.version, 1, "the first version");
    let small = lead(
        &f,
        &f.rep,
        json!({"employee_count": 5, "source": "referral"}),
    )
    .await?;
    let none = lead(&f, &f.rep, json!({"source": "web_form"})).await?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    ensure_eq!(
        score_of(&f, early).await?,
        30,
        "a lead made before the model: 20 + 15 clamped to 30"
    );
    ensure_eq!(score_of(&f, small).await?, 15, "referral only");
    ensure_eq!(score_of(&f, none).await?, 0, "no rule holds");
    // Through the leads API: its audit trail and its event.
    let audit = store
        .records()
        .audit(&f.admin, "lead", early.as_uuid())
        .await
        .at("lead audit")?;
    ensure!(
        audit
            .iter()
            .any(|a| a.change.field == "score" && a.change.new.as_deref() == Some("30")),
        "the lead's audit trail has the score: {audit:?}"
    );
    let events = score_events(&f, early).await?;
    ensure_eq!(events.len(), 1, "one score change: {events:?}");
    ensure_eq!(
        events[0].rule,
        Some(saved.id.rule_id()),
        "the score change names the model as its rule"
    );
    ensure_eq!(
        score_events(&f, none).await?.len(),
        0,
        "an unchanged score is not written"
    );
    // The run log says why.
    let runs = scoring.runs(&f.rep, early, 10).await.at("runs")?;
    ensure!(
        runs.iter().any(|r| r.outcome == RunOutcome::Applied
            && r.detail.contains("to 30")
            && r.detail.contains("Big company +20")
            && r.detail.contains("Referral +15")),
        "the run log names the contributing rules: {runs:?}"
    );
    let why = scoring.explain(&f.rep, early).await.at("explain")?;
    ensure_eq!((why.score, why.stored), (30, 30), "explained score");
    let labels: Vec<&str> = why.contributions.iter().map(|c| c.label.as_str()).collect();
    ensure_eq!(labels, vec!["Big company", "Referral"], "the contributions");
    // A change recomputes, once: the score's own change starts nothing.
    let v = lead_json(&f, small).await?["version"]
        .as_u64()
        .unwrap_or_default();
    store
        .records()
        .patch(
            &f.rep,
            "lead",
            small.as_uuid(),
            v,
            json!({"employee_count": 1000}),
        )
        .await
        .at("patch lead")?;
    let r = drain(&e, &f).await?;
    ensure_eq!(r.applied, 1, "one score write: {r:?}");
    ensure_eq!(score_of(&f, small).await?, 30, "big now");
    ensure_eq!(
        lead_json(&f, small).await?["version"],
        json!(v + 2),
        "the patch and one score change, no more"
    );
    ensure_eq!(
        score_events(&f, small).await?.len(),
        2,
        "two score changes in all"
    );
    // A new version of the model rescores every lead; a stale version is a Conflict.
    let v2 = ScoringModel::new()
        .field_rule("Big company", Filter::gt("employee_count", 100), 20)
        .field_rule("Referral", Filter::eq("source", "referral"), 5);
    let stale = scoring.put(&f.manager, 0, v2.clone()).await;
    expect_error(stale, "a stale model version", "Conflict", |e| {
        matches!(e, Error::Conflict { .. })
    })?;
    let saved2 = scoring.put(&f.manager, 1, v2).await.at("put v2")?;
    ensure_eq!(
        (saved2.version, saved2.id),
        (2, saved.id),
        "the next version, the same id"
    );
    drain(&e, &f).await?;
    ensure_eq!(score_of(&f, small).await?, 25, "rescored: 20 + 5");
    ensure_eq!(score_of(&f, none).await?, 0, "still nothing");
    let audit = scoring.audit(&f.admin).await.at("model audit")?;
    ensure!(
        audit.iter().any(|a| a.change.field == "field_rules"),
        "the model's audit trail has the change: {audit:?}"
    );
    Ok(())
}

/// Event rules: a meeting held and an email logged score every lead they relate to; a
/// call scores nothing; a lead's own event (its status becoming qualified) scores it.
pub async fn event_points(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let scoring = Scoring::new(store).at("Scoring::new")?;
    let model = meetings_and_emails().event_rule(
        "Qualified",
        "lead.status_changed",
        Some(Filter::eq("status", "qualified")),
        50,
    );
    scoring.put(&f.admin, 0, model).await.at("put model")?;
    let l = lead(&f, &f.rep, json!({})).await?;
    let m = lead(&f, &f.rep, json!({})).await?;
    let meeting = activity(&f, &f.rep, "meeting", &[l], None).await?;
    let email = activity(&f, &f.rep, "email", &[l, m], None).await?;
    activity(&f, &f.rep, "call", &[l, m], None).await?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    ensure_eq!(score_of(&f, l).await?, 15, "a meeting and an email");
    ensure_eq!(score_of(&f, m).await?, 5, "an email");
    ensure_eq!(
        count(store, &f.admin, HIT_TABLE).await?,
        3,
        "three hits recorded"
    );
    let why = scoring.explain(&f.rep, l).await.at("explain")?;
    let got: Vec<(String, Option<RecordRef>)> = why
        .contributions
        .iter()
        .map(|c| match &c.source {
            ContributionSource::Event { record, .. } => (c.label.clone(), record.clone()),
            ContributionSource::Field { .. } => (c.label.clone(), None),
        })
        .collect();
    let act = |id| Some(RecordRef::new(crmkit_core::RecordKind::new("activity"), id));
    ensure_eq!(
        got,
        vec![
            ("Meeting held".to_owned(), act(meeting)),
            ("Email logged".to_owned(), act(email)),
        ],
        "each hit, with its activity"
    );
    let leads = Leads::new(store).at("Leads::new")?;
    let cur = leads.get(&f.rep, l).await.at("get lead")?;
    leads
        .set_status(&f.rep, l, cur.version, LeadStatus::Qualified, None)
        .await
        .at("qualify")?;
    drain(&e, &f).await?;
    ensure_eq!(score_of(&f, l).await?, 65, "qualified: +50");
    let runs = scoring.runs(&f.admin, l, 10).await.at("runs")?;
    ensure!(
        runs.first()
            .is_some_and(|r| r.detail.contains("to 65") && r.detail.contains("Qualified +50")),
        "the newest line explains the change: {runs:?}"
    );
    Ok(())
}

/// Decay: with a half life of 10 days a meeting's 40 points count 20 after 10 days; the
/// daily recompute writes a changed score at most once a day per lead, and nothing when
/// run again.
pub async fn decay(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let scoring = Scoring::new(store).at("Scoring::new")?;
    let model = ScoringModel::new()
        .event_rule(
            "Meeting held",
            "activity.created",
            Some(Filter::eq("type", "meeting")),
            40,
        )
        .half_life_days(10);
    scoring.put(&f.admin, 0, model).await.at("put model")?;
    let (e, clock) = engine(store)?;
    let l = lead(&f, &f.rep, json!({})).await?;
    activity(&f, &f.rep, "meeting", &[l], None).await?;
    drain(&e, &f).await?;
    ensure_eq!(score_of(&f, l).await?, 40, "fresh: 40");
    let tick = async |what: &str| -> CheckResult<RunReport> {
        let (r, _) = e.tick(f.tenant).await.at(what)?;
        drain(&e, &f).await?;
        Ok(r)
    };
    tick("tick at once").await?;
    ensure_eq!(score_of(&f, l).await?, 40, "not due yet");
    clock.advance(TimeDelta::days(10));
    // Two engines tick at once: one writes the decayed score.
    let other = Engine::new(store).at("engine")?.with_clock(clock.clone());
    let (ra, rb) = tokio::join!(e.tick(f.tenant), other.tick(f.tenant));
    let (ra, rb) = (ra.at("tick a")?.0, rb.at("tick b")?.0);
    ensure_eq!(ra.applied + rb.applied, 1, "one score write: {ra:?} {rb:?}");
    let r = tick("tick again").await?;
    ensure_eq!(r.applied, 0, "nothing left: {r:?}");
    ensure_eq!(score_of(&f, l).await?, 20, "one half life: 20");
    let before = all_row_counts(store, &f.admin).await?;
    let version = lead_json(&f, l).await?["version"].clone();
    clock.advance(TimeDelta::hours(12));
    // 40 * 0.5^1.05 = 19.3 would round to 19, but the lead was recomputed today.
    tick("tick half a day later").await?;
    ensure_eq!(score_of(&f, l).await?, 20, "at most once a day");
    ensure_eq!(
        all_row_counts(store, &f.admin).await?,
        before,
        "a tick that is not due writes nothing"
    );
    ensure_eq!(
        lead_json(&f, l).await?["version"],
        version,
        "the lead is untouched"
    );
    clock.advance(TimeDelta::hours(12));
    tick("tick a day later").await?;
    ensure_eq!(score_of(&f, l).await?, 19, "40 * 0.5^1.1 = 18.7");
    ensure_eq!(
        score_events(&f, l).await?.len(),
        3,
        "three score changes: 40, 20, 19"
    );
    let admin = f.admin.clone().with_clock(clock.clone());
    let why = scoring.explain(&admin, l).await.at("explain")?;
    ensure_eq!(why.score, 19, "explained at the engine's time");
    ensure!(
        why.contributions.len() == 1
            && why.contributions[0].points == 40
            && (why.contributions[0].decayed - 18.66).abs() < 0.01,
        "the meeting's decayed points: {:?}",
        why.contributions
    );
    let runs = scoring.runs(&f.rep, l, 10).await.at("runs")?;
    ensure!(
        runs.first().is_some_and(|r| r.detail.contains("to 19")
            && r.detail.contains("was 20")
            && r.detail.contains("Meeting held +18.")),
        "the run log explains the decay: {runs:?}"
    );
    Ok(())
}

/// Exactly once: two engines at once score every lead once per event; a redelivery of the
/// whole feed (a lost cursor) writes nothing.
pub async fn exactly_once(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let scoring = Scoring::new(store).at("Scoring::new")?;
    let model = meetings_and_emails().field_rule("Referral", Filter::eq("source", "referral"), 1);
    scoring.put(&f.admin, 0, model).await.at("put model")?;
    const N: usize = 8;
    let mut ids = vec![];
    for _ in 0..N {
        let l = lead(&f, &f.rep, json!({"source": "referral"})).await?;
        activity(&f, &f.rep, "meeting", &[l], None).await?;
        activity(&f, &f.rep, "email", &[l], None).await?;
        ids.push(l);
    }
    let (a, _) = engine(store)?;
    let (b, _) = engine(store)?;
    let f = &f;
    let run = |e: Engine| async move {
        let mut total = RunReport::default();
        for _ in 0..200 {
            let r = e.run_pending(f.tenant, 5).await?;
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
    for l in &ids {
        ensure_eq!(
            score_of(f, *l).await?,
            16,
            "1 + 10 + 5 once each: {ra:?} {rb:?}"
        );
    }
    ensure_eq!(
        count(store, &f.admin, HIT_TABLE).await?,
        (2 * N) as u64,
        "one hit per event and lead"
    );
    // F8: the whole feed again changes nothing.
    let before = all_row_counts(store, &f.admin).await?;
    let mut versions = vec![];
    for l in &ids {
        versions.push(lead_json(f, *l).await?["version"].clone());
    }
    let mut cs = Changeset::new(&f.admin);
    cs.writes.push(Write::Delete {
        table: CURSOR_TABLE,
        key: vec![Value::Text("feed".into())],
    });
    store.commit(cs).await.at("lose the cursor")?;
    let (e, _) = engine(store)?;
    let again = drain(&e, f).await?;
    ensure_eq!(again.applied, 0, "a redelivery scores nothing: {again:?}");
    ensure_eq!(
        all_row_counts(store, &f.admin).await?,
        before,
        "a redelivery writes nothing"
    );
    for (i, l) in ids.iter().enumerate() {
        ensure_eq!(
            lead_json(f, *l).await?["version"],
            versions[i],
            "a redelivery leaves the lead alone"
        );
    }
    Ok(())
}

/// F2: a fault before any write of a scoring run (the score, its hits, the state, the
/// run-log line, the cursor) leaves the score exact: running again after the fault gives
/// each event's points once.
pub async fn faults(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let scoring = Scoring::new(store).at("Scoring::new")?;
    let model = meetings_and_emails().field_rule("Referral", Filter::eq("source", "referral"), 1);
    scoring.put(&f.admin, 0, model).await.at("put model")?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    let mut n = 0;
    loop {
        let l = lead(&f, &f.rep, json!({"source": "referral"})).await?;
        activity(&f, &f.rep, "meeting", &[l], None).await?;
        store
            .backend()
            .inject_fault(Some(crmkit_core::Fault::FailAtWrite(n)));
        let faulted = e.run_pending(f.tenant, 100).await;
        store.backend().inject_fault(None);
        drain(&e, &f).await?;
        ensure_eq!(score_of(&f, l).await?, 11, "fault at write {n}: 1 + 10");
        let why = scoring.explain(&f.admin, l).await.at("explain")?;
        ensure_eq!(
            why.contributions.len(),
            2,
            "fault at write {n}: the field rule and one hit: {:?}",
            why.contributions
        );
        ensure_eq!(
            score_events(&f, l).await?.len(),
            2,
            "fault at write {n}: two score changes (1, then 11)"
        );
        match faulted {
            // The fault was never reached: every write of a run has been covered.
            Ok(_) if n > 0 => break,
            _ => n += 1,
        }
        ensure!(n < 100, "a run still reached the fault after 100 writes");
    }
    ensure!(n > 2, "a scoring commit has more than two writes (saw {n})");
    Ok(())
}

/// A bad model is refused whole, naming each bad part, and nothing is saved.
pub async fn bad_model(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let scoring = Scoring::new(store).at("Scoring::new")?;
    let bad = ScoringModel::new()
        .field_rule("Unknown field", Filter::eq("nope", 1), 1)
        .field_rule("Wrong type", Filter::eq("employee_count", "many"), 1)
        .field_rule("", Filter::eq("source", "referral"), 1)
        .field_rule(
            "Too many points",
            Filter::eq("source", "referral"),
            10_000_000,
        )
        .field_rule("Itself", Filter::gt("score", 10), 1)
        .event_rule("Unknown event", "meeting.held", None, 1)
        .event_rule("Contacts", "contact.created", None, 1)
        .event_rule(
            "Lunch",
            "activity.created",
            Some(Filter::eq("type", "lunch")),
            1,
        )
        .event_rule("Deleted", "lead.deleted", None, 1)
        .event_rule("Own score", "lead.score_changed", None, 1)
        .half_life_days(0)
        .min(10)
        .max(5);
    let v = match scoring.put(&f.admin, 0, bad).await {
        Err(Error::Validation(v)) => v,
        other => {
            return Err(Failure::new(format!(
                "a bad model: expected a Validation error, got {other:?}"
            )));
        }
    };
    for part in [
        "field_rules[0].filter.nope",
        "field_rules[1].filter.employee_count",
        "field_rules[2].label",
        "field_rules[3].points",
        "field_rules[4].filter.score",
        "event_rules[0].event",
        "event_rules[1].event",
        "event_rules[2].filter.type",
        "event_rules[3].event",
        "event_rules[4].event",
        "decay.half_life_days",
        "min",
    ] {
        ensure!(v.has(part), "the error names {part}: {v:?}");
    }
    ensure_eq!(v.errors.len(), 12, "one error per bad part: {v:?}");
    let mut many = ScoringModel::new();
    for i in 0..101 {
        many = many.field_rule(format!("r{i}"), Filter::eq("source", "referral"), 1);
    }
    expect_validation(
        scoring.put(&f.admin, 0, many).await,
        "field_rules",
        "101 rules",
    )?;
    let text = r#"{"field_rules": [], "colour": "red"}"#;
    expect_validation(ScoringModel::from_json(text), "format", "no format")?;
    let text = r#"{"format": 1, "colour": "red", "decay": {"half_life_days": "long"}}"#;
    expect_validation(ScoringModel::from_json(text), "colour", "an unknown member")?;
    expect_validation(ScoringModel::from_json(text), "decay", "a bad decay")?;
    ensure!(
        scoring.get(&f.admin).await.at("get")?.is_none(),
        "nothing was saved"
    );
    Ok(())
}

/// Access: only Admin and Manager save the model; a lead the actor cannot see is NotFound
/// to `explain` and `runs`, like one that does not exist, and an activity the actor cannot
/// see is not named; the model scores with the authority of the user who saved it (a
/// lead or activity hidden from that user does not count).
pub async fn access(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let scoring = Scoring::new(store).at("Scoring::new")?;
    let model = meetings_and_emails().field_rule("Referral", Filter::eq("source", "referral"), 5);
    expect_denied(
        scoring.put(&f.rep, 0, model.clone()).await,
        "a Rep saves the model",
    )?;
    expect_denied(
        scoring.put(&f.readonly, 0, model.clone()).await,
        "a ReadOnly user saves the model",
    )?;
    ensure!(
        scoring.get(&f.rep).await.at("get as rep")?.is_none(),
        "nothing was saved"
    );
    scoring
        .put(&f.manager, 0, model)
        .await
        .at("the manager saves")?;
    ensure!(
        scoring.get(&f.rep).await.at("get as rep")?.is_some(),
        "every user reads the model"
    );
    let mine = lead(&f, &f.rep, json!({"source": "referral"})).await?;
    let theirs = lead(&f, &f.rep_y, json!({"source": "referral"})).await?;
    let (e, _) = engine(store)?;
    drain(&e, &f).await?;
    ensure_eq!(score_of(&f, theirs).await?, 5, "scored");
    // Hidden is NotFound, like missing.
    for (what, id) in [("hidden", theirs), ("missing", LeadId::new())] {
        expect_not_found(
            scoring.explain(&f.rep, id).await,
            &format!("explain a {what} lead"),
        )?;
        expect_not_found(
            scoring.runs(&f.rep, id, 10).await,
            &format!("the runs of a {what} lead"),
        )?;
    }
    ensure_eq!(
        scoring
            .explain(&f.rep, mine)
            .await
            .at("explain mine")?
            .score,
        5,
        "a visible lead is explained"
    );
    // Another tenant sees no model and no lead of this one.
    let g = setup(store).await?;
    ensure!(
        scoring
            .get(&g.admin)
            .await
            .at("another tenant's get")?
            .is_none(),
        "another tenant has no model"
    );
    expect_not_found(
        scoring.explain(&g.admin, mine).await,
        "explain another tenant's lead",
    )?;
    // An activity the Rep cannot see counts (the model sees it) but is not named.
    let hidden = activity(&f, &f.admin, "meeting", &[mine], Some(f.rep_y.actor().user)).await?;
    expect_not_found(
        store.records().get(&f.rep, "activity", hidden).await,
        "the Rep does not see rep Y's meeting",
    )?;
    drain(&e, &f).await?;
    ensure_eq!(score_of(&f, mine).await?, 15, "the meeting counts");
    let source = |why: &crmkit_automation::ScoreExplanation| {
        why.contributions.iter().find_map(|c| match &c.source {
            ContributionSource::Event { record, .. } => Some(record.clone()),
            ContributionSource::Field { .. } => None,
        })
    };
    let as_rep = scoring.explain(&f.rep, mine).await.at("explain as rep")?;
    ensure_eq!(source(&as_rep), Some(None), "not named to the Rep");
    let as_admin = scoring
        .explain(&f.admin, mine)
        .await
        .at("explain as admin")?;
    ensure_eq!(
        source(&as_admin),
        Some(Some(RecordRef::new(
            crmkit_core::RecordKind::new("activity"),
            hidden
        ))),
        "named to the Admin"
    );
    // The model's authority: the manager who saved it becomes a Rep of no team.
    let manager = f.manager.actor().user;
    store
        .directory()
        .put_user(
            &f.admin,
            UserInput {
                id: manager,
                name: "Manager".into(),
                email: "user1@crmkit.test".into(),
                roles: vec![Role::Rep],
                teams: vec![],
                active: true,
                time_zone: "Europe/Berlin".into(),
            },
        )
        .await
        .at("demote the manager")?;
    let hidden_lead = lead(&f, &f.rep, json!({"source": "referral"})).await?;
    let own = lead(
        &f,
        &f.admin,
        json!({"source": "referral", "owner": manager}),
    )
    .await?;
    activity(&f, &f.admin, "email", &[own], Some(f.rep_y.actor().user)).await?;
    drain(&e, &f).await?;
    ensure_eq!(
        score_of(&f, hidden_lead).await?,
        0,
        "a lead hidden from the model's author is not scored"
    );
    ensure_eq!(
        score_of(&f, own).await?,
        5,
        "the author's own lead is scored; an email they cannot see does not count"
    );
    let runs = scoring
        .runs(&f.admin, hidden_lead, 10)
        .await
        .at("runs of the hidden lead")?;
    ensure!(
        runs.iter()
            .any(|r| r.outcome == RunOutcome::Skipped && r.detail.contains("not visible")),
        "the run log says why: {runs:?}"
    );
    Ok(())
}

suite_checks! {
    /// The lead scoring checks, by name.
    names: automation_scoring_check_names,
    checks: [field_points, event_points, decay, exactly_once, faults, bad_model, access],
}
