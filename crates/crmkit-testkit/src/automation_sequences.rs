//! Conformance checks of automation sequences (`crmkit_automation::Sequences` and the
//! engine's enrolments) on any backend: steps in order, waits (calendar and working
//! days) never before they are due, exactly once under redelivery and two engines,
//! exits (filter, activity logged, deletion, `leave_sequence`), enrolling again, access,
//! and bad input.
//!
//! The store is the one of [`crate::automation::modules`]; every check makes its own
//! tenant with [`crate::automation::setup`].

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crmkit_activities::rows::ACTIVITY_TABLE;
use crmkit_activities::{
    Activities, ActivityDetails, Direction, LoggedEmail, Meeting, NewActivity,
};
use crmkit_automation::runlog::CURSOR_TABLE;
use crmkit_automation::{
    Action, Engine, Enrolment, EnrolmentStatus, Exit, NewRule, NewSequence, Offset, Rule,
    RunOutcome, SEQUENCE_TABLE, SequenceDefinition, SequencePatch, SequenceStep, Sequences,
    TimeUnit, Trigger,
};
use crmkit_core::store::{Value, Write};
use crmkit_core::{Changeset, ContactId, Ctx, Filter, Query, RecordRef, SequenceId, Store};
use serde_json::json;

use crate::automation::{Fixture, setup};
use crate::automation_engine::{contact_json, drain, engine, tags};
use crate::check::{
    At, expect_denied, expect_invalid, expect_not_found, expect_validation, validation_reasons,
};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::count;

fn on_contact_created() -> Trigger {
    Trigger::RecordCreated {
        record_kind: "contact".into(),
    }
}

/// A rule of `ctx`'s that enrols every new contact in `sequence`.
async fn enrol_new_contacts(f: &Fixture, ctx: &Ctx, sequence: SequenceId) -> CheckResult<Rule> {
    f.rules
        .create(
            ctx,
            NewRule::new("enrol", on_contact_created()).action(Action::EnrolSequence { sequence }),
        )
        .await
        .at("enrolling rule")
}

/// The enrolment of contact `c` in `sequence`, as the admin reads it.
async fn enrolment(
    seqs: &Sequences,
    f: &Fixture,
    c: ContactId,
    sequence: SequenceId,
) -> CheckResult<Enrolment> {
    seqs.enrolments_of_record(&f.admin, &RecordRef::from(c), 100)
        .await
        .at("enrolments of the contact")?
        .into_iter()
        .find(|e| e.sequence == sequence)
        .ok_or_else(|| Failure::new("the contact is enrolled"))
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s)
        .single()
        .unwrap_or_default()
}

/// The applied run-log lines of sequence steps (occurrences `q...`) of `rule`.
async fn step_runs(
    e: &Engine,
    f: &Fixture,
    rule: &Rule,
) -> CheckResult<Vec<crmkit_automation::RunEntry>> {
    let mut out: Vec<_> = e
        .runs_of_rule(&f.admin, rule.id, 1000)
        .await
        .at("run log")?
        .into_iter()
        .filter(|l| l.occurrence.starts_with('q') && l.outcome == RunOutcome::Applied)
        .collect();
    out.sort_by(|a, b| a.occurrence.cmp(&b.occurrence));
    Ok(out)
}

/// "Tag, wait one working day, log a note, wait two days, tag": each step runs in order,
/// never before it is due (a working day skips the weekend of the calendar; calendar
/// days keep the owner's local time), once; then the enrolment is completed.
pub async fn steps_and_waits(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let cal = crmkit_tickets::Tickets::new(store)
        .at("Tickets::new")?
        .sla_calendars()
        .create(&f.admin, "office", crate::sla_support::office())
        .await
        .at("calendar")?
        .id;
    let seq = seqs
        .create(
            &f.admin,
            NewSequence::new("onboarding", "contact")
                .action(Action::AddTag {
                    tag: "first".into(),
                })
                .wait(Offset {
                    amount: 1,
                    unit: TimeUnit::BusinessDays,
                    calendar: Some(cal),
                })
                .action(Action::LogNote {
                    body: "Second touch for {{first_name}}".into(),
                })
                .wait(Offset {
                    amount: 2,
                    unit: TimeUnit::Days,
                    calendar: None,
                })
                .action(Action::AddTag {
                    tag: "third".into(),
                }),
        )
        .await
        .at("sequence")?;
    let rule = enrol_new_contacts(&f, &f.admin, seq.id).await?;
    let (e, clock) = engine(store)?;
    // Friday 2030-01-04, 09:00 UTC (10:00 in Berlin, the rule owner's zone).
    let friday = utc(2030, 1, 4, 9, 0, 0);
    clock.set(friday);
    let c = f.person(&f.rep, "Ada", "Sequenced").await?.id;
    drain(&e, &f).await?;
    let en = enrolment(&seqs, &f, c, seq.id).await?;
    ensure_eq!(en.status, EnrolmentStatus::Active, "enrolled");
    ensure_eq!((en.round, en.step), (1, 0), "round 1, at the first step");
    ensure_eq!(en.due_at, Some(friday), "the first step is due at once");
    ensure_eq!(en.rule, rule.id, "enrolled by the rule");
    let notes = || count(store, &f.admin, ACTIVITY_TABLE);
    e.tick(f.tenant).await.at("tick on Friday")?;
    ensure_eq!(tags(&contact_json(&f, c).await?), ["first"], "step 1 ran");
    let en = enrolment(&seqs, &f, c, seq.id).await?;
    let monday = utc(2030, 1, 7, 9, 0, 0);
    ensure_eq!(en.step, 2, "the wait is planned with the step before it");
    ensure_eq!(
        en.due_at,
        Some(monday),
        "one working day after Friday is Monday, same time"
    );
    clock.set(utc(2030, 1, 5, 9, 0, 0));
    e.tick(f.tenant).await.at("tick on Saturday")?;
    clock.set(monday - TimeDelta::seconds(1));
    e.tick(f.tenant)
        .await
        .at("tick just before Monday's step")?;
    ensure_eq!(notes().await?, 0, "no note before the working day");
    clock.set(monday);
    e.tick(f.tenant).await.at("tick on Monday")?;
    ensure_eq!(notes().await?, 1, "step 3 ran on Monday");
    let en = enrolment(&seqs, &f, c, seq.id).await?;
    let wednesday = utc(2030, 1, 9, 9, 0, 0);
    ensure_eq!(
        (en.step, en.due_at),
        (4, Some(wednesday)),
        "two days later at the same local time"
    );
    clock.set(wednesday - TimeDelta::seconds(1));
    e.tick(f.tenant).await.at("tick before Wednesday")?;
    ensure_eq!(
        tags(&contact_json(&f, c).await?),
        ["first"],
        "the last step waits for Wednesday"
    );
    clock.set(wednesday);
    e.tick(f.tenant).await.at("tick on Wednesday")?;
    ensure_eq!(
        tags(&contact_json(&f, c).await?),
        ["first", "third"],
        "the steps ran in order"
    );
    let en = enrolment(&seqs, &f, c, seq.id).await?;
    ensure_eq!(en.status, EnrolmentStatus::Completed, "completed");
    ensure_eq!(en.due_at, None, "nothing due any more");
    clock.set(wednesday + TimeDelta::days(30));
    e.tick(f.tenant).await.at("tick a month later")?;
    drain(&e, &f).await?;
    ensure_eq!(notes().await?, 1, "each step once");
    let runs = step_runs(&e, &f, &rule).await?;
    let actions: Vec<Option<u32>> = runs.iter().map(|l| l.action).collect();
    ensure_eq!(
        actions,
        [Some(0), Some(2), Some(4)],
        "one run-log line per action step, the step index as the action: {runs:?}"
    );
    ensure!(
        runs.iter().all(|l| l.record == Some(RecordRef::from(c))),
        "the lines name the contact"
    );
    Ok(())
}

/// Five contacts through a two-step sequence with the feed redelivered (the cursor lost)
/// and two engines ticking at once: every step applied exactly once.
pub async fn exactly_once(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let seq = seqs
        .create(
            &f.admin,
            NewSequence::new("twice", "contact")
                .action(Action::AddTag { tag: "once".into() })
                .wait(Offset {
                    amount: 1,
                    unit: TimeUnit::Hours,
                    calendar: None,
                })
                .action(Action::LogNote {
                    body: "Hello {{first_name}}".into(),
                }),
        )
        .await
        .at("sequence")?;
    let rule = enrol_new_contacts(&f, &f.admin, seq.id).await?;
    let (e1, clock) = engine(store)?;
    let e2 = Engine::new(store)
        .at("second engine")?
        .with_clock(clock.clone());
    let mut contacts = vec![];
    for i in 0..5 {
        contacts.push(f.person(&f.rep, "Once", &format!("No{i}")).await?.id);
    }
    drain(&e1, &f).await?;
    let mut cs = Changeset::new(&f.admin);
    cs.writes.push(Write::Delete {
        table: CURSOR_TABLE,
        key: vec![Value::Text("feed".into())],
    });
    store.commit(cs).await.at("lose the cursor")?;
    drain(&e2, &f).await?;
    for c in &contacts {
        let en = enrolment(&seqs, &f, *c, seq.id).await?;
        ensure_eq!(
            (en.round, en.step, en.status),
            (1, 0, EnrolmentStatus::Active),
            "the redelivered feed enrols nobody again"
        );
    }
    let (a, b) = tokio::join!(e1.tick(f.tenant), e2.tick(f.tenant));
    a.at("engine 1 tick")?;
    b.at("engine 2 tick")?;
    clock.advance(TimeDelta::hours(1));
    let (a, b) = tokio::join!(e1.tick(f.tenant), e2.tick(f.tenant));
    let (ra, rb) = (a.at("engine 1 tick")?.0, b.at("engine 2 tick")?.0);
    ensure_eq!(ra.failed + rb.failed, 0, "no step failed: {ra:?} {rb:?}");
    e1.tick(f.tenant).await.at("a third tick")?;
    for c in &contacts {
        ensure_eq!(
            tags(&contact_json(&f, *c).await?),
            ["once"],
            "the tag step once"
        );
        let en = enrolment(&seqs, &f, *c, seq.id).await?;
        ensure_eq!(en.status, EnrolmentStatus::Completed, "completed");
    }
    ensure_eq!(
        count(store, &f.admin, ACTIVITY_TABLE).await?,
        5,
        "one note per contact"
    );
    ensure_eq!(
        step_runs(&e1, &f, &rule).await?.len(),
        10,
        "two step lines per contact"
    );
    Ok(())
}

/// An enrolment ends as exited with the reason when its exit filter holds, an inbound
/// email is logged on the record, the record is deleted or a rule's `leave_sequence`
/// takes it out; a meeting not held yet and an outbound email do not end it, and the
/// exited enrolments run no more steps.
pub async fn exits(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let seq = seqs
        .create(
            &f.admin,
            NewSequence::new("until they answer", "contact")
                .wait(Offset {
                    amount: 1,
                    unit: TimeUnit::Days,
                    calendar: None,
                })
                .action(Action::AddTag { tag: "late".into() })
                .exit(Exit {
                    filter: Some(Filter::eq("job_title", "Buyer")),
                    activities: vec!["email".into(), "meeting".into()],
                }),
        )
        .await
        .at("sequence")?;
    enrol_new_contacts(&f, &f.admin, seq.id).await?;
    f.rules
        .create(
            &f.admin,
            NewRule::new(
                "leavers leave",
                Trigger::RecordUpdated {
                    record_kind: "contact".into(),
                    field: Some("job_title".into()),
                    from: None,
                    to: Some(Some(json!("Leaver"))),
                },
            )
            .action(Action::LeaveSequence { sequence: seq.id }),
        )
        .await
        .at("leaving rule")?;
    let (e, clock) = engine(store)?;
    let mut ids = vec![];
    for name in ["Filter", "Email", "Deleted", "Leaver", "Meeting", "Held"] {
        ids.push(f.person(&f.rep, name, "Exit").await?.id);
    }
    let [
        by_filter,
        by_email,
        by_delete,
        by_leave,
        by_meeting,
        by_held,
    ] = ids[..]
    else {
        return Err(Failure::new("six contacts"));
    };
    drain(&e, &f).await?;
    for c in &ids {
        ensure_eq!(
            enrolment(&seqs, &f, *c, seq.id).await?.status,
            EnrolmentStatus::Active,
            "all six enrolled"
        );
    }
    let records = store.records();
    let patch = |c: ContactId, title: &'static str| {
        let records = records.clone();
        let ctx = f.rep.clone();
        async move {
            let cur = records.get(&ctx, "contact", c.as_uuid()).await?;
            records
                .patch(
                    &ctx,
                    "contact",
                    c.as_uuid(),
                    cur.version().unwrap_or_default(),
                    json!({ "job_title": title }),
                )
                .await
        }
    };
    patch(by_filter, "Buyer").await.at("a buyer now")?;
    let acts = Activities::new(store).at("Activities::new")?;
    let email = |dir: Direction, id: &str| {
        ActivityDetails::Email(LoggedEmail {
            direction: dir,
            from: "someone@example.test".into(),
            to: vec!["sales@example.test".into()],
            cc: vec![],
            excerpt: None,
            message_id: format!("<{id}@example.test>"),
        })
    };
    let msg = uuid::Uuid::now_v7().simple().to_string();
    acts.create(
        &f.admin,
        NewActivity::new("Re: hello", email(Direction::Inbound, &format!("in{msg}")))
            .related_to(RecordRef::from(by_email)),
    )
    .await
    .at("a reply")?;
    acts.create(
        &f.admin,
        NewActivity::new("hello", email(Direction::Outbound, &format!("out{msg}")))
            .related_to(RecordRef::from(by_meeting)),
    )
    .await
    .at("an outbound mail")?;
    let meeting = |start: DateTime<Utc>| {
        ActivityDetails::Meeting(Meeting {
            start,
            end: start + TimeDelta::hours(1),
            time_zone: "Europe/Berlin".into(),
            location: None,
            link: None,
            attendees: vec![],
            outcome_notes: None,
        })
    };
    acts.create(
        &f.admin,
        NewActivity::new("Demo", meeting(Utc::now() + TimeDelta::days(7)))
            .related_to(RecordRef::from(by_meeting)),
    )
    .await
    .at("a meeting next week")?;
    acts.create(
        &f.admin,
        NewActivity::new("Held", meeting(Utc::now() - TimeDelta::hours(2)))
            .related_to(RecordRef::from(by_held)),
    )
    .await
    .at("a meeting held this morning")?;
    let gone = records
        .get(&f.rep, "contact", by_delete.as_uuid())
        .await
        .at("get")?;
    records
        .delete(
            &f.rep,
            "contact",
            by_delete.as_uuid(),
            gone.version().unwrap_or_default(),
        )
        .await
        .at("delete")?;
    patch(by_leave, "Leaver").await.at("a leaver")?;
    drain(&e, &f).await?;
    for (c, why) in [
        (by_filter, "filter"),
        (by_email, "email"),
        (by_delete, "deleted"),
        (by_leave, "leave_sequence"),
        (by_held, "meeting"),
    ] {
        let en = enrolment(&seqs, &f, c, seq.id).await?;
        ensure_eq!(en.status, EnrolmentStatus::Exited, "exited ({why})");
        ensure!(
            en.reason.as_deref().is_some_and(|r| r.contains(why)),
            "the reason says why ({why}): {:?}",
            en.reason
        );
        ensure_eq!(en.due_at, None, "an exited enrolment is not due");
    }
    ensure_eq!(
        enrolment(&seqs, &f, by_meeting, seq.id).await?.status,
        EnrolmentStatus::Active,
        "a meeting not held yet and an outbound mail do not end it"
    );
    clock.advance(TimeDelta::days(2));
    e.tick(f.tenant).await.at("tick")?;
    ensure_eq!(
        tags(&contact_json(&f, by_meeting).await?),
        ["late"],
        "the active enrolment ran its step"
    );
    for c in [by_filter, by_email, by_leave] {
        ensure!(
            tags(&contact_json(&f, c).await?).is_empty(),
            "an exited enrolment runs no step"
        );
    }
    ensure_eq!(
        enrolment(&seqs, &f, by_meeting, seq.id).await?.status,
        EnrolmentStatus::Completed,
        "completed"
    );
    Ok(())
}

/// F2: a fault at any write of a tick (a step's commit with its run-log line and the
/// enrolment's advance, a failed run, the enrolment's bookkeeping) applies each step at
/// most once; ticking on once the fault is gone applies each exactly once and completes
/// the enrolment, with no failed run left.
pub async fn faults(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let seq = seqs
        .create(
            &f.admin,
            NewSequence::new("faulty", "contact")
                .action(Action::AddTag { tag: "a".into() })
                .action(Action::LogNote {
                    body: "Note for {{first_name}}".into(),
                })
                .wait(Offset {
                    amount: 5,
                    unit: TimeUnit::Minutes,
                    calendar: None,
                })
                .action(Action::AddTag { tag: "b".into() }),
        )
        .await
        .at("sequence")?;
    enrol_new_contacts(&f, &f.admin, seq.id).await?;
    let (e, clock) = engine(store)?;
    let mut n = 0;
    loop {
        let c = f.person(&f.rep, "Fault", &format!("At{n}")).await?.id;
        drain(&e, &f).await?;
        let notes = count(store, &f.admin, ACTIVITY_TABLE).await?;
        store
            .backend()
            .inject_fault(Some(crmkit_core::Fault::FailAtWrite(n)));
        let faulted = e.advance_sequences(f.tenant).await;
        store.backend().inject_fault(None);
        for _ in 0..10 {
            clock.advance(TimeDelta::hours(1));
            e.tick(f.tenant).await.at("tick")?;
        }
        ensure_eq!(
            tags(&contact_json(&f, c).await?),
            ["a", "b"],
            "fault at write {n}: each tag once, in order"
        );
        ensure_eq!(
            count(store, &f.admin, ACTIVITY_TABLE).await? - notes,
            1,
            "fault at write {n}: one note"
        );
        ensure_eq!(
            enrolment(&seqs, &f, c, seq.id).await?.status,
            EnrolmentStatus::Completed,
            "fault at write {n}: completed"
        );
        ensure!(
            e.failed(&f.admin).await.at("failed")?.is_empty(),
            "fault at write {n}: no failed run is left"
        );
        match faulted {
            Ok(r) if r.failed == 0 && n > 0 => break,
            _ => n += 1,
        }
        ensure!(n < 100, "a tick still reached the fault after 100 writes");
    }
    ensure!(n > 1, "a step's commit has more than one write (saw {n})");
    Ok(())
}

/// Enrolling a record that is active in the sequence is a no-op recorded as applied;
/// once it completed, enrolling it again starts round 2 (by the enrolling rule), which
/// runs the steps again.
pub async fn re_enrol(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let seq = seqs
        .create(
            &f.admin,
            NewSequence::new("touch", "contact").action(Action::LogNote {
                body: "Touch {{first_name}}".into(),
            }),
        )
        .await
        .at("sequence")?;
    let first = enrol_new_contacts(&f, &f.admin, seq.id).await?;
    let again = f
        .rules
        .create(
            &f.admin,
            NewRule::new(
                "again",
                Trigger::RecordUpdated {
                    record_kind: "contact".into(),
                    field: Some("job_title".into()),
                    from: None,
                    to: None,
                },
            )
            .action(Action::EnrolSequence { sequence: seq.id }),
        )
        .await
        .at("second rule")?;
    let (e, _clock) = engine(store)?;
    let c = f.person(&f.rep, "Re", "Enrolled").await?.id;
    drain(&e, &f).await?;
    let records = store.records();
    let retitle = |title: &'static str| {
        let records = records.clone();
        let ctx = f.rep.clone();
        async move {
            let cur = records.get(&ctx, "contact", c.as_uuid()).await?;
            records
                .patch(
                    &ctx,
                    "contact",
                    c.as_uuid(),
                    cur.version().unwrap_or_default(),
                    json!({ "job_title": title }),
                )
                .await
        }
    };
    retitle("Buyer").await.at("change while active")?;
    let r = drain(&e, &f).await?;
    ensure_eq!(
        r.applied,
        1,
        "the second enrolment is recorded as applied: {r:?}"
    );
    let en = enrolment(&seqs, &f, c, seq.id).await?;
    ensure_eq!(
        (en.round, en.rule, en.status),
        (1, first.id, EnrolmentStatus::Active),
        "an active enrolment is left as it is"
    );
    e.tick(f.tenant).await.at("tick")?;
    ensure_eq!(
        enrolment(&seqs, &f, c, seq.id).await?.status,
        EnrolmentStatus::Completed,
        "completed"
    );
    retitle("Seller").await.at("change after completion")?;
    drain(&e, &f).await?;
    let en = enrolment(&seqs, &f, c, seq.id).await?;
    ensure_eq!(
        (en.round, en.rule, en.status, en.step),
        (2, again.id, EnrolmentStatus::Active, 0),
        "round 2, by the second rule, from the first step"
    );
    e.tick(f.tenant).await.at("tick round 2")?;
    ensure_eq!(
        count(store, &f.admin, ACTIVITY_TABLE).await?,
        2,
        "one note per round"
    );
    ensure_eq!(
        step_runs(&e, &f, &first).await?.len(),
        1,
        "round 1 ran under the first rule"
    );
    let second = step_runs(&e, &f, &again).await?;
    ensure!(
        second.len() == 1 && second[0].occurrence.ends_with(":2:0"),
        "round 2 under the second rule: {second:?}"
    );
    Ok(())
}

/// Sequences are managed like rules: a Rep sees and manages only their own, ReadOnly
/// changes none; a rule naming a hidden sequence is refused exactly like one naming a
/// missing sequence; enrolments are read only for sequences and records the reader sees.
pub async fn access(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let one =
        |name: &str| NewSequence::new(name, "contact").action(Action::AddTag { tag: "seq".into() });
    let mine = seqs
        .create(&f.rep, one("rep's"))
        .await
        .at("rep's sequence")?;
    let admins = seqs.create(&f.admin, one("admin's")).await.at("admin's")?;
    expect_denied(
        seqs.create(&f.readonly, one("ro")).await,
        "ReadOnly creates no sequence",
    )?;
    expect_denied(
        seqs.create(&f.rep, one("given").owner(f.rep2.actor().user))
            .await,
        "a Rep gives no sequence to someone else",
    )?;
    expect_not_found(seqs.get(&f.rep2, mine.id).await, "another Rep's sequence")?;
    expect_not_found(seqs.get(&f.rep, admins.id).await, "the admin's, for a Rep")?;
    expect_not_found(
        store
            .records()
            .get(&f.rep2, "automation_sequence", mine.id.as_uuid())
            .await,
        "generic get of another Rep's sequence",
    )?;
    expect_not_found(
        seqs.update(&f.rep2, mine.id, 1, SequencePatch::default().name("taken"))
            .await,
        "another Rep's sequence cannot be changed",
    )?;
    expect_not_found(seqs.delete(&f.rep2, mine.id, 1).await, "nor deleted")?;
    expect_denied(
        seqs.update(&f.readonly, mine.id, 1, SequencePatch::default().name("x"))
            .await,
        "ReadOnly changes none",
    )?;
    seqs.get(&f.manager, mine.id)
        .await
        .at("a Manager sees all")?;
    let names = |p: crmkit_core::Page<crmkit_automation::Sequence>| {
        let mut n: Vec<String> = p.items.into_iter().map(|s| s.name).collect();
        n.sort();
        n
    };
    ensure_eq!(
        names(seqs.list(&f.rep, &Query::new()).await.at("rep lists")?),
        ["rep's"],
        "a Rep lists their own"
    );
    ensure_eq!(
        names(
            seqs.list(&f.manager, &Query::new())
                .await
                .at("manager lists")?
        ),
        ["admin's", "rep's"],
        "a Manager lists all"
    );
    // A rule of the Rep naming the admin's sequence: the same error as a missing one.
    let naming = |s: SequenceId| {
        NewRule::new("enrol", on_contact_created()).action(Action::EnrolSequence { sequence: s })
    };
    let hidden = f.rules.create(&f.rep, naming(admins.id)).await;
    let missing = f.rules.create(&f.rep, naming(SequenceId::new())).await;
    expect_validation(
        f.rules.create(&f.rep, naming(admins.id)).await,
        "actions[0].sequence",
        "a hidden sequence",
    )?;
    ensure!(
        validation_reasons(&hidden).is_some()
            && validation_reasons(&hidden) == validation_reasons(&missing),
        "hidden and missing sequences are refused alike: {hidden:?} / {missing:?}"
    );
    // Enrolments: the admin's rules enrol every new contact in both sequences, the Rep's
    // rule in the Rep's (acting as the Rep, it sees only the Rep's contacts).
    enrol_new_contacts(&f, &f.admin, admins.id).await?;
    enrol_new_contacts(&f, &f.admin, mine.id).await?;
    enrol_new_contacts(&f, &f.rep, mine.id).await?;
    let (e, _clock) = engine(store)?;
    let c_rep = f.person(&f.rep, "Visible", "ToRep").await?.id;
    let c_y = f.person(&f.rep_y, "Hidden", "FromRep").await?.id;
    drain(&e, &f).await?;
    expect_not_found(
        store.records().get(&f.rep, "contact", c_y.as_uuid()).await,
        "the fixture: the Rep does not see team Y's contact",
    )?;
    let seq_of = |es: Vec<Enrolment>| {
        let mut s: Vec<SequenceId> = es.into_iter().map(|e| e.sequence).collect();
        s.sort();
        s
    };
    let mut both = vec![admins.id, mine.id];
    both.sort();
    ensure_eq!(
        seq_of(
            seqs.enrolments_of_record(&f.admin, &RecordRef::from(c_rep), 10)
                .await
                .at("admin reads")?
        ),
        both,
        "the admin sees both enrolments"
    );
    ensure_eq!(
        seq_of(
            seqs.enrolments_of_record(&f.rep, &RecordRef::from(c_rep), 10)
                .await
                .at("rep reads")?
        ),
        [mine.id],
        "the Rep sees the enrolment in their sequence only"
    );
    expect_not_found(
        seqs.enrolments_of_record(&f.rep, &RecordRef::from(c_y), 10)
            .await,
        "a hidden record's enrolments",
    )?;
    expect_not_found(
        seqs.enrolments_of_sequence(&f.rep, admins.id, 10).await,
        "a hidden sequence's enrolments",
    )?;
    let records_of = |es: Vec<Enrolment>| {
        let mut r: Vec<uuid::Uuid> = es.into_iter().map(|e| e.record.id).collect();
        r.sort();
        r
    };
    let mut two = vec![c_rep.as_uuid(), c_y.as_uuid()];
    two.sort();
    ensure_eq!(
        records_of(
            seqs.enrolments_of_sequence(&f.admin, mine.id, 10)
                .await
                .at("admin reads the Rep's sequence")?
        ),
        two,
        "the admin's rule enrolled both contacts in the Rep's sequence"
    );
    ensure_eq!(
        records_of(
            seqs.enrolments_of_sequence(&f.rep, mine.id, 10)
                .await
                .at("rep reads their sequence")?
        ),
        [c_rep.as_uuid()],
        "the Rep sees the enrolments of the records they see"
    );
    Ok(())
}

/// A failing step is a failed run of the enrolling rule (listed by `Engine::failed`, the
/// enrolment not due meanwhile), retried with backoff with the sequence's current
/// definition; the retry runs the step once and moves the enrolment on in its commit.
pub async fn failed_steps(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let probe = |label: &str| Action::Custom {
        kind: crate::automation::PROBE_ACTION.into(),
        params: json!({ "label": label }),
    };
    let seq = seqs
        .create(
            &f.admin,
            NewSequence::new("fragile", "contact")
                .action(probe("fail"))
                .action(Action::AddTag {
                    tag: "after".into(),
                }),
        )
        .await
        .at("sequence")?;
    let rule = enrol_new_contacts(&f, &f.admin, seq.id).await?;
    let (e, clock) = engine(store)?;
    let c = f.person(&f.rep, "Frag", "Ile").await?.id;
    drain(&e, &f).await?;
    let (r, _) = e.tick(f.tenant).await.at("tick")?;
    ensure_eq!(r.failed, 1, "the step failed: {r:?}");
    let failed = e.failed(&f.admin).await.at("failed runs")?;
    ensure!(
        failed.len() == 1 && failed[0].rule == rule.id && failed[0].action == 0,
        "listed as a failed run of the enrolling rule: {failed:?}"
    );
    ensure!(
        failed[0].occurrence.starts_with('q') && failed[0].record == Some(RecordRef::from(c)),
        "with the step's occurrence and the record: {failed:?}"
    );
    let en = enrolment(&seqs, &f, c, seq.id).await?;
    ensure_eq!(
        (en.status, en.step, en.due_at),
        (EnrolmentStatus::Active, 0, None),
        "the enrolment waits for the retry"
    );
    let (r, _) = e.tick(f.tenant).await.at("tick again")?;
    ensure_eq!(r.failed + r.applied, 0, "nothing before the backoff: {r:?}");
    seqs.update(
        &f.admin,
        seq.id,
        seq.version,
        SequencePatch::default().steps(vec![
            SequenceStep::Action(probe("fixed")),
            SequenceStep::Action(Action::AddTag {
                tag: "after".into(),
            }),
        ]),
    )
    .await
    .at("fix the step")?;
    clock.advance(TimeDelta::seconds(2));
    let (r, _) = e.tick(f.tenant).await.at("tick after the backoff")?;
    ensure_eq!(
        r.applied,
        2,
        "the retry ran the step and moved the enrolment on, so the next step ran too: {r:?}"
    );
    ensure!(
        e.failed(&f.admin).await.at("failed runs")?.is_empty(),
        "the failed run is cleared with the step's commit"
    );
    e.tick(f.tenant).await.at("last tick")?;
    ensure_eq!(
        tags(&contact_json(&f, c).await?),
        ["fixed", "after"],
        "each step once, in order"
    );
    ensure_eq!(
        enrolment(&seqs, &f, c, seq.id).await?.status,
        EnrolmentStatus::Completed,
        "completed"
    );
    Ok(())
}

/// Malformed documents, unknown step types, sequences inside a sequence, webhooks, a
/// last wait, unknown placeholders, offsets, kinds, exit activities and filters are
/// Validation errors naming the part, with nothing written; a rule enrolling a record of
/// another kind than the sequence's is refused.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let good = seqs
        .create(
            &f.admin,
            NewSequence::new("good", "contact").action(Action::AddTag { tag: "x".into() }),
        )
        .await
        .at("a good sequence")?;
    let before = count(store, &f.admin, SEQUENCE_TABLE).await?;
    expect_validation(
        SequenceDefinition::from_json("{\"format\": 1,"),
        "_",
        "not JSON",
    )?;
    expect_validation(
        SequenceDefinition::from_json(
            r#"{"format": 1, "name": "n", "record_kind": "contact", "steps": [{"type": "teleport"}]}"#,
        ),
        "steps[0].type",
        "an unknown step type",
    )?;
    expect_invalid(
        store
            .records()
            .create(
                &f.admin,
                "automation_sequence",
                json!({"name": "n", "record_kind": "contact", "steps": [{"type": "teleport"}]}),
            )
            .await,
        "an unknown step type through the generic API",
    )?;
    let bad = NewSequence::new("bad", "contact")
        .action(Action::EnrolSequence { sequence: good.id })
        .action(Action::CreateActivity {
            activity_type: "task".into(),
            subject: "Call {{nickname}}".into(),
            due_in: None,
        })
        .wait(Offset {
            amount: 2,
            unit: TimeUnit::BusinessDays,
            calendar: None,
        })
        .action(Action::LeaveSequence { sequence: good.id })
        .action(Action::Webhook {
            url: "https://example.test/h".into(),
            secret: "0123456789abcdef".into(),
        })
        .wait(Offset {
            amount: 0,
            unit: TimeUnit::Hours,
            calendar: None,
        })
        .exit(Exit {
            filter: Some(Filter::eq("nickname", "x")),
            activities: vec!["fax".into(), "email".into(), "email".into()],
        });
    let r = seqs.create(&f.admin, bad).await;
    for part in [
        "steps[0].type",
        "steps[1].subject",
        "steps[2].calendar",
        "steps[3].type",
        "steps[4].type",
        "steps[5]",
        "steps[5].amount",
        "exit.filter.nickname",
        "exit.activities[0]",
        "exit.activities[2]",
    ] {
        ensure!(
            matches!(&r, Err(crmkit_core::Error::Validation(v)) if v.has(part)),
            "the error names {part}: {r:?}"
        );
    }
    expect_validation(
        seqs.create(&f.admin, NewSequence::new("none", "contact"))
            .await,
        "steps",
        "no step",
    )?;
    expect_validation(
        seqs.create(
            &f.admin,
            NewSequence::new("kind", "spaceship").action(Action::AddTag { tag: "x".into() }),
        )
        .await,
        "record_kind",
        "an unknown kind",
    )?;
    expect_validation(
        seqs.update(
            &f.admin,
            good.id,
            good.version,
            SequencePatch::default().steps(vec![SequenceStep::Action(Action::Custom {
                kind: "nope.nothing".into(),
                params: json!({}),
            })]),
        )
        .await,
        "steps[0].kind",
        "an unknown custom action on update",
    )?;
    ensure_eq!(
        count(store, &f.admin, SEQUENCE_TABLE).await?,
        before,
        "nothing written"
    );
    ensure_eq!(
        seqs.get(&f.admin, good.id).await.at("get")?.version,
        1,
        "the refused update changed nothing"
    );
    expect_validation(
        f.rules
            .create(
                &f.admin,
                NewRule::new(
                    "deals into a contact sequence",
                    Trigger::RecordCreated {
                        record_kind: "deal".into(),
                    },
                )
                .action(Action::EnrolSequence { sequence: good.id }),
            )
            .await,
        "actions[0].sequence",
        "a sequence of another kind",
    )?;
    let deleted = seqs
        .delete(&f.admin, good.id, 1)
        .await
        .at("delete the sequence")?;
    ensure!(deleted.deleted_at.is_some(), "deleted");
    expect_validation(
        f.rules
            .create(
                &f.admin,
                NewRule::new("into a deleted one", on_contact_created())
                    .action(Action::EnrolSequence { sequence: good.id }),
            )
            .await,
        "actions[0].sequence",
        "a deleted sequence",
    )?;
    Ok(())
}

/// A note the sequence's own step logs does not end an enrolment whose exit lists notes
/// (only someone else's note does): the steps after it still run.
pub async fn own_steps_do_not_exit(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let seq = seqs
        .create(
            &f.admin,
            NewSequence::new("note, wait, tag", "contact")
                .action(Action::LogNote {
                    body: "Intro for {{first_name}}".into(),
                })
                .wait(Offset {
                    amount: 1,
                    unit: TimeUnit::Days,
                    calendar: None,
                })
                .action(Action::AddTag {
                    tag: "second".into(),
                })
                .exit(Exit {
                    filter: None,
                    activities: vec!["note".into()],
                }),
        )
        .await
        .at("sequence")?;
    enrol_new_contacts(&f, &f.admin, seq.id).await?;
    let (e, clock) = engine(store)?;
    let mine = f.person(&f.rep, "Own", "Steps").await?.id;
    let theirs = f.person(&f.rep, "Their", "Note").await?.id;
    drain(&e, &f).await?;
    e.tick(f.tenant).await.at("first steps")?;
    drain(&e, &f).await?;
    for c in [mine, theirs] {
        ensure_eq!(
            enrolment(&seqs, &f, c, seq.id).await?.status,
            EnrolmentStatus::Active,
            "the step's own note ended nothing"
        );
    }
    Activities::new(store)
        .at("Activities::new")?
        .create(
            &f.rep,
            NewActivity::new(
                "Called back",
                ActivityDetails::Note(crmkit_activities::Note {
                    body: "They called back".into(),
                    pinned: false,
                    author: f.rep.actor().user,
                }),
            )
            .related_to(RecordRef::from(theirs)),
        )
        .await
        .at("someone's note")?;
    drain(&e, &f).await?;
    clock.advance(TimeDelta::days(2));
    e.tick(f.tenant).await.at("after the wait")?;
    ensure_eq!(
        enrolment(&seqs, &f, mine, seq.id).await?.status,
        EnrolmentStatus::Completed,
        "the sequence ran to its end"
    );
    ensure_eq!(
        tags(&contact_json(&f, mine).await?),
        vec!["second".to_owned()],
        "the step after the wait ran"
    );
    ensure_eq!(
        enrolment(&seqs, &f, theirs, seq.id).await?.status,
        EnrolmentStatus::Exited,
        "a note someone else logged ended it"
    );
    Ok(())
}

/// An activity hidden from the enrolling rule's owner does not end the enrolment (its
/// end and reason would tell them the activity exists); the same reply they can see does.
pub async fn hidden_activities_do_not_exit(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let seqs = Sequences::new(store).at("Sequences::new")?;
    let seq = seqs
        .create(
            &f.rep,
            NewSequence::new("until they reply", "contact")
                .wait(Offset {
                    amount: 1,
                    unit: TimeUnit::Days,
                    calendar: None,
                })
                .action(Action::AddTag { tag: "late".into() })
                .exit(Exit {
                    filter: None,
                    activities: vec!["email".into()],
                }),
        )
        .await
        .at("the rep's sequence")?;
    enrol_new_contacts(&f, &f.rep, seq.id).await?;
    let (e, _clock) = engine(store)?;
    let c = f.person(&f.rep, "Hidden", "Reply").await?.id;
    drain(&e, &f).await?;
    let acts = Activities::new(store).at("Activities::new")?;
    let reply = |id: String| {
        NewActivity::new(
            "Re: hello",
            ActivityDetails::Email(LoggedEmail {
                direction: Direction::Inbound,
                from: "them@example.test".into(),
                to: vec!["sales@example.test".into()],
                cc: vec![],
                excerpt: None,
                message_id: format!("<{id}@example.test>"),
            }),
        )
        .related_to(RecordRef::from(c))
    };
    let msg = uuid::Uuid::now_v7().simple().to_string();
    let hidden = acts
        .create(&f.admin, reply(format!("hidden{msg}")))
        .await
        .at("the admin's reply")?;
    expect_not_found(
        store
            .records()
            .get(&f.rep, "activity", hidden.id.as_uuid())
            .await,
        "the admin's activity is hidden from the rep",
    )?;
    drain(&e, &f).await?;
    ensure_eq!(
        enrolment(&seqs, &f, c, seq.id).await?.status,
        EnrolmentStatus::Active,
        "an activity hidden from the rule's owner ends nothing"
    );
    acts.create(&f.rep, reply(format!("seen{msg}")))
        .await
        .at("the rep's reply")?;
    drain(&e, &f).await?;
    ensure_eq!(
        enrolment(&seqs, &f, c, seq.id).await?.status,
        EnrolmentStatus::Exited,
        "a reply the owner sees ends it"
    );
    Ok(())
}

suite_checks! {
    /// The automation sequence checks, by name.
    names: automation_sequences_check_names,
    checks: [steps_and_waits, own_steps_do_not_exit, hidden_activities_do_not_exit, exactly_once, faults, exits, re_enrol, failed_steps, access, bad_input],
}
