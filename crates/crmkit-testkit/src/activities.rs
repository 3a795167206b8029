//! Conformance checks of activities (`crmkit_activities`) on any backend.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a store composed with core,
//! contacts, pipeline and [`crmkit_activities::ActivitiesModule`] (see [`modules`]). Each
//! check makes its own fresh random tenant(s) with [`setup`], so checks can share one
//! database. [`checks`] lists them by name.
//!
//! [`atomicity`] injects faults into the backend, which affects every commit of that
//! backend: do not run it concurrently with other checks on the same store.
//! [`reminder_delivered_once`] spawns tokio tasks: run the suite on a multi-thread runtime.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc, Weekday};
use crmkit_activities::rows::{ACTIVITY_TABLE, FOLLOWUP_TABLE, RELATION_TABLE, REMINDER_TABLE};
use crmkit_activities::{
    Activities, ActivitiesModule, Activity, ActivityDetails, ActivityKind, ActivityPatch, Call,
    CallOutcome, Direction, Due, FollowUp, Frequency, LoggedEmail, Meeting, NewActivity, Note,
    Priority, Recurrence, RecurrenceEnd, Task, TaskStatus, TimelineEntry,
};
use crmkit_contacts::{ContactsModule, NewContact, PhoneInput};
use crmkit_core::store::Fault;
use crmkit_core::{
    Ctx, Error, Filter, ManualClock, Modules, Page, Query, RecordKind, RecordRef, Store, UserId,
};
use crmkit_pipeline::PipelineModule;

use crate::check::{At, expect_not_found, expect_validation};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::pipeline_deals::deals_with_default;
use crate::support::{count, date, fail_at_every_write_counting, row_counts, t, user};

/// The modules the checks need: core, contacts, pipeline and activities.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(PipelineModule)
        .add(ActivitiesModule)
        .build()
}

extended_fixture! {
    /// A fresh tenant: the contacts fixture plus the activities API.
    Fixture {
        /// The activities API.
        activities: Activities,
    }
}

/// Makes a fresh tenant with the users and teams of the contacts fixture.
pub async fn setup(store: &Store) -> CheckResult<Fixture> {
    let base = crate::contacts::setup(store).await?;
    Ok(Fixture {
        activities: Activities::new(store).at("Activities::new")?,
        base,
    })
}

fn task(due: Option<Due>) -> ActivityDetails {
    ActivityDetails::Task(Task {
        description: Some("do it".into()),
        due,
        priority: Priority::High,
        status: TaskStatus::Open,
        recurrence: None,
        completed_at: None,
    })
}

fn at(when: DateTime<Utc>) -> Option<Due> {
    Some(Due::At {
        at: when,
        time_zone: "Europe/Berlin".into(),
    })
}

fn meeting(start: DateTime<Utc>, end: DateTime<Utc>) -> ActivityDetails {
    ActivityDetails::Meeting(Meeting {
        start,
        end,
        time_zone: "Europe/Berlin".into(),
        location: Some("Room 1".into()),
        link: None,
        attendees: vec![],
        outcome_notes: None,
    })
}

fn call(direction: Direction, from: &str, to: &str) -> ActivityDetails {
    ActivityDetails::Call(Call {
        direction,
        from: from.into(),
        to: to.into(),
        started_at: t(2027, 1, 5, 10),
        duration_secs: 120,
        outcome: CallOutcome::Connected,
        agent: None,
        recording_ref: None,
        notes: Some("talked".into()),
    })
}

fn note(author: UserId, body: &str) -> ActivityDetails {
    ActivityDetails::Note(Note {
        body: body.into(),
        pinned: false,
        author,
    })
}

fn email(message_id: &str) -> ActivityDetails {
    ActivityDetails::Email(LoggedEmail {
        direction: Direction::Inbound,
        from: "grace@example.com".into(),
        to: vec!["sales@example.com".into()],
        cc: vec![],
        excerpt: Some("Hello".into()),
        message_id: message_id.into(),
    })
}

async fn contact(f: &Fixture, ctx: &Ctx, phone: Option<&str>) -> CheckResult<RecordRef> {
    let mut c = NewContact::named("Grace", "Hopper");
    if let Some(p) = phone {
        c = c.phone(PhoneInput::new(p));
    }
    let c = f.contacts.create(ctx, c).await.at("create contact")?;
    Ok(RecordRef::from(c.id))
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// Every kind round-trips through create, get and list; update is versioned; delete and
/// restore work.
pub async fn crud_round_trip(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let c = contact(&f, &f.rep, None).await?;
    let inputs = vec![
        task(Some(Due::Date {
            date: date(2027, 1, 10),
        })),
        call(Direction::Outbound, "+49 30 901820", "not a number"),
        meeting(t(2027, 1, 6, 9), t(2027, 1, 6, 10)),
        note(user(&f.rep), "émoji 🎉 ' OR 1=1--"),
        email("<abc@example.com>"),
    ];
    let mut made = vec![];
    for d in inputs {
        let x = a
            .create(&f.rep, NewActivity::new("subject", d).related_to(c.clone()))
            .await
            .at("create")?;
        let got = a.get(&f.rep, x.id).await.at("get")?;
        ensure_eq!(got, x, "get returns what create returned");
        made.push(x);
    }
    if let ActivityDetails::Call(c) = &made[1].details {
        ensure_eq!(c.from, "+4930901820", "a call's number is normalised");
        ensure_eq!(c.to, "not a number", "an unparsable number is kept");
    }
    let kinds: Vec<ActivityKind> = made.iter().map(Activity::kind).collect();
    let listed = a
        .list(&f.rep, &Query::new().sort_asc("created_at"))
        .await
        .at("list")?;
    ensure_eq!(
        listed.items.iter().map(Activity::kind).collect::<Vec<_>>(),
        kinds,
        "list returns every kind"
    );
    let calls = a
        .list(&f.rep, &Query::new().filter(Filter::eq("kind", "call")))
        .await
        .at("list calls")?;
    ensure_eq!(calls.items.len(), 1, "filter by kind");
    let note = &made[3];
    let patch = ActivityPatch {
        subject: Some("new subject".into()),
        ..ActivityPatch::default()
    };
    let up = a
        .update(&f.rep, note.id, note.version, patch.clone())
        .await
        .at("update")?;
    ensure_eq!(up.version, note.version + 1, "version bumps");
    ensure_eq!(up.subject, "new subject", "subject changed");
    match a.update(&f.rep, note.id, note.version, patch).await {
        Err(Error::Conflict { .. }) => {}
        other => return Err(Failure::new(format!("stale update: {other:?}"))),
    }
    let del = a.delete(&f.rep, up.id, up.version).await.at("delete")?;
    expect_not_found(
        a.get(&f.rep, up.id).await,
        "a deleted activity is not found",
    )?;
    let back = a.restore(&f.rep, del.id, del.version).await.at("restore")?;
    ensure!(back.deleted_at.is_none(), "restored");
    let kind_change = a
        .update(
            &f.rep,
            back.id,
            back.version,
            ActivityPatch {
                details: Some(task(None)),
                ..ActivityPatch::default()
            },
        )
        .await;
    expect_validation(kind_change, "details", "changing the kind")?;
    Ok(())
}

/// Bad inputs are Validation errors naming the field, and nothing is written.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let other = setup(store).await?;
    let foreign = contact(&other, &other.admin, None).await?;
    let mine = contact(&f, &f.rep_y, None).await?;
    let before = count(store, &f.admin, ACTIVITY_TABLE).await?;
    let rec = |frequency, interval, count| {
        ActivityDetails::Task(Task {
            description: None,
            due: Some(Due::Date {
                date: date(2027, 1, 1),
            }),
            priority: Priority::Normal,
            status: TaskStatus::Open,
            recurrence: Some(Recurrence {
                frequency,
                interval,
                end: RecurrenceEnd::Count { count },
                occurrence: 1,
            }),
            completed_at: None,
        })
    };
    let cases: Vec<(&str, NewActivity)> = vec![
        (
            "end",
            NewActivity::new("m", meeting(t(2027, 1, 6, 10), t(2027, 1, 6, 9))),
        ),
        (
            "time_zone",
            NewActivity::new(
                "m",
                ActivityDetails::Meeting(Meeting {
                    time_zone: "Mars/Olympus".into(),
                    ..match meeting(t(2027, 1, 6, 9), t(2027, 1, 6, 10)) {
                        ActivityDetails::Meeting(m) => m,
                        _ => unreachable!(),
                    }
                }),
            ),
        ),
        (
            "due.time_zone",
            NewActivity::new(
                "t",
                task(Some(Due::At {
                    at: t(2027, 1, 1, 1),
                    time_zone: "Nowhere/Town".into(),
                })),
            ),
        ),
        (
            "recurrence.end.count",
            NewActivity::new("t", rec(Frequency::Daily, 1, 0)),
        ),
        (
            "recurrence.interval",
            NewActivity::new("t", rec(Frequency::Daily, 0, 3)),
        ),
        (
            "recurrence.frequency.weekdays",
            NewActivity::new("t", rec(Frequency::Weekly { weekdays: vec![] }, 1, 3)),
        ),
        (
            "related[0]",
            NewActivity::new("t", task(None)).related_to(foreign.clone()),
        ),
        (
            "related[1]",
            NewActivity::new("t", task(None))
                .related_to(mine.clone())
                .related_to(RecordRef::new(RecordKind::DEAL, uuid::Uuid::now_v7())),
        ),
        (
            "owner",
            NewActivity::new("t", task(None)).owner(UserId::new()),
        ),
    ];
    for (field, input) in cases {
        expect_validation(a.create(&f.admin, input).await, field, field)?;
    }
    // A rep cannot relate to a contact they cannot see.
    expect_validation(
        a.create(&f.rep, NewActivity::new("t", task(None)).related_to(mine))
            .await,
        "related[0]",
        "invisible related record",
    )?;
    // Several bad fields at once.
    match a
        .create(
            &f.admin,
            NewActivity::new("m", meeting(t(2027, 1, 6, 10), t(2027, 1, 6, 9)))
                .related_to(foreign)
                .owner(UserId::new()),
        )
        .await
    {
        Err(Error::Validation(v)) if v.has("end") && v.has("related[0]") && v.has("owner") => {}
        other => return Err(Failure::new(format!("every bad field at once: {other:?}"))),
    }
    ensure_eq!(
        count(store, &f.admin, ACTIVITY_TABLE).await?,
        before,
        "nothing written"
    );
    // A reminder after the due time is refused.
    let tk = a
        .create(&f.admin, NewActivity::new("t", task(at(t(2027, 1, 5, 9)))))
        .await
        .at("task")?;
    expect_validation(
        a.add_reminder(&f.admin, tk.id, None, t(2027, 1, 5, 10))
            .await,
        "remind_at",
        "reminder after due",
    )?;
    a.add_reminder(&f.admin, tk.id, None, t(2027, 1, 5, 8))
        .await
        .at("reminder before due")?;
    // An email is logged once.
    a.create(&f.admin, NewActivity::new("e", email("<m1@example.com>")))
        .await
        .at("log email")?;
    match a
        .create(&f.rep, NewActivity::new("e", email(" <m1@example.com> ")))
        .await
    {
        Err(Error::Duplicate { field, .. }) if field == "message_id" => {}
        other => return Err(Failure::new(format!("second log: {other:?}"))),
    }
    // Another tenant may log the same message.
    other
        .activities
        .create(
            &other.admin,
            NewActivity::new("e", email("<m1@example.com>")),
        )
        .await
        .at("other tenant logs the same message")?;
    Ok(())
}

/// A call is related to the contacts whose phone is its external number.
pub async fn call_auto_linking(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let c1 = contact(&f, &f.rep, Some("+49 30 901820")).await?;
    let c2 = contact(&f, &f.rep2, Some("+49 30 901820")).await?;
    let other = contact(&f, &f.rep, Some("+44 20 7946 0958")).await?;
    let inbound = a
        .create(
            &f.rep,
            NewActivity::new(
                "in",
                call(Direction::Inbound, "030 901820x", "+4420 7946 0958"),
            ),
        )
        .await
        .at("inbound unparsable")?;
    ensure!(
        inbound.related.is_empty(),
        "an unparsable number links nothing: {:?}",
        inbound.related
    );
    let inbound = a
        .create(
            &f.rep,
            NewActivity::new(
                "in",
                call(Direction::Inbound, "+49 30 901820", "+44 20 7946 0958"),
            ),
        )
        .await
        .at("inbound")?;
    ensure_eq!(
        inbound.related.clone(),
        vec![c1.clone()],
        "inbound call linked by its from number to the contact the rep sees, not to \
         rep2's contact"
    );
    let seen_all = a
        .create(
            &f.admin,
            NewActivity::new(
                "in",
                call(Direction::Inbound, "+49 30 901820", "+44 20 7946 0958"),
            ),
        )
        .await
        .at("inbound as admin")?;
    let mut got = seen_all.related.clone();
    got.sort();
    let mut want = vec![c1.clone(), c2];
    want.sort();
    ensure_eq!(
        got,
        want,
        "an admin's call links every contact with the number"
    );
    let outbound = a
        .create(
            &f.rep,
            NewActivity::new(
                "out",
                call(Direction::Outbound, "+49 30 901820", "+44 20 7946 0958"),
            )
            .related_to(other.clone()),
        )
        .await
        .at("outbound")?;
    ensure_eq!(
        outbound.related,
        vec![other.clone()],
        "outbound linked by to, once"
    );
    let fu = a.follow_up(&f.rep, &c1).await.at("follow up")?;
    ensure_eq!(
        fu.last_activity_at,
        Some(t(2027, 1, 5, 10)),
        "auto-linked call counts for follow-up"
    );
    Ok(())
}

/// Completing a recurring task creates the next occurrence until the count ends.
pub async fn recurrence(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let c = contact(&f, &f.rep, None).await?;
    let first = a
        .create(
            &f.rep,
            NewActivity::new(
                "monthly",
                ActivityDetails::Task(Task {
                    description: None,
                    due: Some(Due::Date {
                        date: date(2027, 1, 31),
                    }),
                    priority: Priority::Normal,
                    status: TaskStatus::Open,
                    recurrence: Some(Recurrence {
                        frequency: Frequency::Monthly { day: 31 },
                        interval: 1,
                        end: RecurrenceEnd::Count { count: 3 },
                        occurrence: 1,
                    }),
                    completed_at: None,
                }),
            )
            .related_to(c.clone()),
        )
        .await
        .at("create")?;
    let mut cur = first;
    let mut dues = vec![];
    for _ in 0..3 {
        let done = a
            .set_task_status(&f.rep, cur.id, cur.version, TaskStatus::Done)
            .await
            .at("complete")?;
        let ActivityDetails::Task(t) = &done.details else {
            return Err(Failure::new("not a task"));
        };
        ensure!(t.completed_at.is_some(), "completion time recorded");
        let open = a
            .open_tasks(&f.rep, user(&f.rep), None, 10)
            .await
            .at("open tasks")?;
        match open.items.as_slice() {
            [] => break,
            [next] => {
                let ActivityDetails::Task(nt) = &next.details else {
                    return Err(Failure::new("not a task"));
                };
                dues.push((nt.due.clone(), nt.recurrence.as_ref().map(|r| r.occurrence)));
                ensure_eq!(next.related, vec![c.clone()], "next keeps the relations");
                cur = next.clone();
            }
            more => return Err(Failure::new(format!("{} open tasks", more.len()))),
        }
    }
    ensure_eq!(
        dues,
        vec![
            (
                Some(Due::Date {
                    date: date(2027, 2, 28)
                }),
                Some(2)
            ),
            (
                Some(Due::Date {
                    date: date(2027, 3, 31)
                }),
                Some(3)
            ),
        ],
        "occurrences"
    );
    // Weekly on Mon and Thu until a date.
    let weekly = a
        .create(
            &f.rep,
            NewActivity::new(
                "weekly",
                ActivityDetails::Task(Task {
                    description: None,
                    due: at(t(2027, 3, 1, 8)),
                    priority: Priority::Normal,
                    status: TaskStatus::Open,
                    recurrence: Some(Recurrence {
                        frequency: Frequency::Weekly {
                            weekdays: vec![Weekday::Mon, Weekday::Thu],
                        },
                        interval: 1,
                        end: RecurrenceEnd::Until {
                            date: date(2027, 3, 4),
                        },
                        occurrence: 1,
                    }),
                    completed_at: None,
                }),
            ),
        )
        .await
        .at("weekly")?;
    a.set_task_status(&f.rep, weekly.id, weekly.version, TaskStatus::Done)
        .await
        .at("complete weekly")?;
    let open = a
        .open_tasks(&f.rep, user(&f.rep), None, 10)
        .await
        .at("open")?;
    ensure_eq!(open.items.len(), 1, "one next weekly occurrence");
    let n = &open.items[0];
    ensure_eq!(
        match &n.details {
            ActivityDetails::Task(t) => t.due.clone(),
            _ => None,
        },
        at(t(2027, 3, 4, 8)),
        "Thursday, same local time"
    );
    a.set_task_status(&f.rep, n.id, n.version, TaskStatus::Done)
        .await
        .at("complete thursday")?;
    let open = a
        .open_tasks(&f.rep, user(&f.rep), None, 10)
        .await
        .at("open")?;
    ensure!(open.items.is_empty(), "until ends the rule");
    Ok(())
}

/// Eight concurrent deliverers deliver a reminder exactly once, with one event.
pub async fn reminder_delivered_once(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let m = a
        .create(
            &f.rep,
            NewActivity::new("m", meeting(t(2027, 1, 6, 9), t(2027, 1, 6, 10))),
        )
        .await
        .at("meeting")?;
    let r = a
        .add_reminder(&f.rep, m.id, None, t(2027, 1, 6, 8))
        .await
        .at("reminder")?;
    let later = a
        .add_reminder(&f.rep, m.id, None, t(2027, 1, 6, 9))
        .await
        .at("later reminder")?;
    let due = a
        .due_reminders(&f.admin, t(2027, 1, 6, 8), 10)
        .await
        .at("due")?;
    ensure_eq!(
        due.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![r.id],
        "only the due one"
    );
    let mut handles = vec![];
    for _ in 0..8 {
        let (acts, ctx, id) = (a.clone(), f.admin.clone(), r.id);
        handles.push(tokio::spawn(async move {
            acts.deliver_reminder(&ctx, id).await
        }));
    }
    let mut firsts = 0;
    for h in handles {
        let d = h
            .await
            .map_err(|e| Failure::new(format!("join: {e}")))?
            .at("deliver")?;
        ensure!(d.reminder.delivered_at.is_some(), "delivered");
        firsts += usize::from(d.first);
    }
    ensure_eq!(firsts, 1, "exactly one delivery");
    let again = a.deliver_reminder(&f.admin, r.id).await.at("again")?;
    ensure!(!again.first, "asking again does not deliver again");
    let events = store.events_since(&f.admin, 0, 1000).await.at("events")?;
    ensure_eq!(
        events
            .iter()
            .filter(|e| e.kind == "reminder.delivered")
            .count(),
        1,
        "one reminder.delivered event"
    );
    let due = a
        .due_reminders(&f.admin, t(2027, 1, 6, 9), 10)
        .await
        .at("due later")?;
    ensure_eq!(
        due.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![later.id],
        "a delivered reminder is no longer due"
    );
    Ok(())
}

/// The records of a follow-up list page, in order.
fn followed_records(page: &Page<FollowUp>) -> Vec<RecordRef> {
    page.items.iter().map(|x| x.record.clone()).collect()
}

/// [`Activities::stale_records`] of contacts.
async fn stale_contacts(
    a: &Activities,
    ctx: &Ctx,
    since: DateTime<Utc>,
    cursor: Option<String>,
    limit: u32,
) -> crmkit_core::Result<Page<FollowUp>> {
    a.stale_records(ctx, &RecordKind::CONTACT, since, cursor, limit)
        .await
}

/// Follow-up rows follow create, complete and delete.
pub async fn follow_up_tracking(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let t0 = t(2027, 1, 1, 9);
    let clock = Arc::new(ManualClock::new(t0));
    let rep = f.rep.clone().with_clock(clock.clone());
    let c = contact(&f, &rep, None).await?;
    let quiet = contact(&f, &rep, None).await?;
    let fresh = a.follow_up(&rep, &c).await.at("fresh")?;
    ensure!(
        fresh.last_activity_at.is_none() && fresh.next_activity.is_none(),
        "nothing yet"
    );
    let n = a
        .create(
            &rep,
            NewActivity::new("n", note(user(&rep), "hi")).related_to(c.clone()),
        )
        .await
        .at("note")?;
    a.create(
        &rep,
        NewActivity::new("q", note(user(&rep), "hi")).related_to(quiet.clone()),
    )
    .await
    .at("quiet note")?;
    clock.advance(Duration::hours(1));
    let tk = a
        .create(
            &rep,
            NewActivity::new("call back", task(at(t(2027, 1, 3, 9)))).related_to(c.clone()),
        )
        .await
        .at("task")?;
    let fu = a.follow_up(&rep, &c).await.at("after task")?;
    ensure_eq!(fu.last_activity_at, Some(t0), "last is the note");
    ensure_eq!(fu.next_activity, Some(tk.id), "next is the task");
    ensure_eq!(
        fu.next_activity_at,
        Some(t(2027, 1, 3, 9)),
        "next at its due"
    );
    ensure!(
        matches!(
            a.without_next_activity(&rep, &RecordKind::CONTACT, None, 10)
                .await,
            Err(Error::PermissionDenied(_))
        ),
        "tenant-wide follow-up lists are for admins and managers"
    );
    expect_not_found(
        a.follow_up(&f.rep_y, &c).await,
        "follow-up of an invisible record",
    )?;
    let without = a
        .without_next_activity(&f.manager, &RecordKind::CONTACT, None, 10)
        .await
        .at("without next")?;
    ensure_eq!(
        followed_records(&without),
        vec![quiet.clone()],
        "only the quiet contact has no next activity"
    );
    clock.advance(Duration::hours(1));
    let done_at = clock_now(&rep);
    a.set_task_status(&rep, tk.id, tk.version, TaskStatus::Done)
        .await
        .at("complete")?;
    let fu = a.follow_up(&rep, &c).await.at("after complete")?;
    ensure_eq!(fu.last_activity_at, Some(done_at), "last is the completion");
    ensure!(fu.next_activity.is_none(), "no next after completion");
    let stale = stale_contacts(a, &f.admin, t0 + Duration::minutes(30), None, 10)
        .await
        .at("stale")?;
    ensure_eq!(
        followed_records(&stale),
        vec![quiet],
        "only the quiet contact is stale"
    );
    let done = a.get(&rep, tk.id).await.at("get task")?;
    a.delete(&rep, done.id, done.version).await.at("delete")?;
    let fu = a.follow_up(&rep, &c).await.at("after delete")?;
    ensure_eq!(fu.last_activity_at, Some(t0), "back to the note");
    a.delete(&rep, n.id, n.version).await.at("delete note")?;
    let fu = a.follow_up(&rep, &c).await.at("after deleting all")?;
    ensure!(fu.last_activity_at.is_none(), "nothing left: {fu:?}");
    Ok(())
}

/// Follow-up lists include records that never had an activity (their row is created with
/// them, by any module, lead conversion included), leave out deleted records, closed deals
/// and finished leads, and page by keyset.
pub async fn follow_up_lists(store: &Store) -> CheckResult {
    use crmkit_pipeline::deal::NewDeal;
    use crmkit_pipeline::lead::{ConvertLead, LeadStatus, Leads, NewLead};
    let f = setup(store).await?;
    let a = &f.activities;
    let t0 = t(2027, 3, 1, 9);
    let clock = Arc::new(ManualClock::new(t0));
    let admin = f.admin.clone().with_clock(clock.clone());
    let (deals, p) = deals_with_default(store, &admin).await?;
    let leads = Leads::new(store).at("Leads::new")?;
    let stage = |name: &str| {
        p.stages
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.id)
            .ok_or_else(|| Failure::new(format!("no stage {name}")))
    };
    let mut contacts = vec![];
    for _ in 0..5 {
        clock.advance(Duration::minutes(1));
        contacts.push(contact(&f, &admin, None).await?);
    }
    let mut deal_ids = vec![];
    for i in 0..4 {
        clock.advance(Duration::minutes(1));
        let d = deals
            .create(&admin, NewDeal::new(format!("Deal {i}"), p.id))
            .await
            .at("deal")?;
        deal_ids.push(d);
    }
    let fu = a
        .follow_up(&admin, &RecordRef::from(deal_ids[0].id))
        .await
        .at("fresh deal")?;
    ensure!(
        fu.active && fu.created_at == Some(t0 + Duration::minutes(6)),
        "a new deal's follow-up row is live with its creation time: {fu:?}"
    );

    // Never touched: every contact and deal has no next step.
    let all_pages = |kind: RecordKind| {
        let (a, admin) = (a.clone(), admin.clone());
        async move {
            let mut out = vec![];
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let page = a
                    .without_next_activity(&admin, &kind, cursor, 2)
                    .await
                    .at("page")?;
                pages += 1;
                out.extend(page.items.into_iter().map(|x| x.record));
                match page.next_cursor {
                    Some(c) if pages < 20 => cursor = Some(c),
                    _ => break,
                }
            }
            CheckResult::Ok(out)
        }
    };
    let mut expected: Vec<RecordRef> = contacts.clone();
    expected.sort_by_key(|r| r.id);
    ensure_eq!(
        all_pages(RecordKind::CONTACT).await?,
        expected,
        "untouched contacts have no next step, paged by 2"
    );

    // A task on deal 0; deal 1 won, deal 2 lost, deal 3 deleted: none of them listed.
    a.create(
        &admin,
        NewActivity::new("send quote", task(at(t(2027, 3, 9, 9))))
            .related_to(RecordRef::from(deal_ids[0].id)),
    )
    .await
    .at("task")?;
    let d1 = &deal_ids[1];
    deals
        .move_to_stage(&admin, d1.id, d1.version, stage("Won")?, None)
        .await
        .at("win")?;
    let d3 = &deal_ids[3];
    deals
        .delete(&admin, d3.id, d3.version)
        .await
        .at("delete deal")?;
    let open: Vec<RecordRef> = all_pages(RecordKind::DEAL).await?;
    ensure_eq!(
        open,
        vec![RecordRef::from(deal_ids[2].id)],
        "only the open deal without a task has no next step"
    );
    let d3 = deals
        .restore(&admin, d3.id, d3.version + 1)
        .await
        .at("restore deal")?;
    ensure_eq!(
        all_pages(RecordKind::DEAL).await?.len(),
        2,
        "a restored deal is listed again"
    );
    ensure!(
        a.follow_up(&admin, &RecordRef::from(d3.id))
            .await
            .at("restored")?
            .active,
        "restored deal is live"
    );

    // Not contacted since: contact 0 had a call an hour after t0; the others never.
    clock.set(t0 + Duration::hours(1));
    a.create(
        &admin,
        NewActivity::new("n", note(user(&admin), "hi")).related_to(contacts[0].clone()),
    )
    .await
    .at("note")?;
    let stale = stale_contacts(a, &admin, t0 + Duration::minutes(30), None, 10)
        .await
        .at("stale")?;
    ensure_eq!(
        followed_records(&stale),
        contacts[1..].to_vec(),
        "never-contacted contacts created before the cutoff, oldest first"
    );
    let first = stale_contacts(a, &admin, t0 + Duration::hours(2), None, 3)
        .await
        .at("stale page 1")?;
    let cursor = first
        .next_cursor
        .clone()
        .ok_or_else(|| Failure::new("no cursor"))?;
    let second = stale_contacts(a, &admin, t0 + Duration::hours(2), Some(cursor.clone()), 3)
        .await
        .at("stale page 2")?;
    let mut both = followed_records(&first);
    both.extend(followed_records(&second));
    let mut want = contacts[1..].to_vec();
    want.push(contacts[0].clone());
    ensure_eq!(
        both,
        want,
        "stale pages: never contacted by creation, then contacted"
    );
    ensure!(second.next_cursor.is_none(), "two pages");
    expect_validation(
        a.without_next_activity(&admin, &RecordKind::CONTACT, Some(cursor), 3)
            .await,
        "cursor",
        "a stale-list cursor on the pending list",
    )?;
    expect_validation(
        a.without_next_activity(&admin, &RecordKind::new("ticket"), None, 3)
            .await,
        "kind",
        "an untracked kind",
    )?;

    // A deleted contact leaves the lists.
    let c4 = f
        .contacts
        .get(&admin, crmkit_core::ContactId::from_uuid(contacts[4].id))
        .await
        .at("get contact")?;
    f.contacts
        .delete(&admin, c4.id, c4.version)
        .await
        .at("delete contact")?;
    ensure!(
        !all_pages(RecordKind::CONTACT).await?.contains(&contacts[4]),
        "a deleted contact is not listed"
    );

    // Leads: a disqualified one leaves; a converted one leaves, and conversion's new
    // contact and deal get their rows in the same commit.
    let l1 = leads
        .create(
            &admin,
            NewLead::named("Ada", "Lovelace").email("ada@example.org"),
        )
        .await
        .at("lead 1")?;
    let l2 = leads
        .create(
            &admin,
            NewLead::named("Alan", "Turing").email("alan@example.org"),
        )
        .await
        .at("lead 2")?;
    let l3 = leads
        .create(&admin, NewLead::named("Kurt", "Goedel"))
        .await
        .at("lead 3")?;
    leads
        .set_status(
            &admin,
            l1.id,
            l1.version,
            LeadStatus::Disqualified,
            Some("no budget".into()),
        )
        .await
        .at("disqualify")?;
    let conv = leads
        .convert(&admin, l2.id, l2.version, ConvertLead::default())
        .await
        .at("convert")?;
    ensure_eq!(
        all_pages(RecordKind::LEAD).await?,
        vec![RecordRef::from(l3.id)],
        "only the live lead is listed"
    );
    let new_contact = RecordRef::from(conv.contact.record().id);
    ensure!(
        all_pages(RecordKind::CONTACT).await?.contains(&new_contact),
        "the converted contact has its follow-up row"
    );
    let fu = a
        .follow_up(&admin, &new_contact)
        .await
        .at("converted contact")?;
    ensure_eq!(
        fu.created_at,
        Some(clock_now(&admin)),
        "created with the conversion"
    );
    Ok(())
}

/// Concurrent activities on one record all succeed and its follow-up row sees them all.
pub async fn concurrent_follow_up(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let c = contact(&f, &f.rep, None).await?;
    let mut handles = vec![];
    for i in 0..8u32 {
        let (acts, ctx, c) = (f.activities.clone(), f.rep.clone(), c.clone());
        handles.push(tokio::spawn(async move {
            let mut d = call(Direction::Outbound, "+49 30 901820", "+44 20 7946 0958");
            if let ActivityDetails::Call(x) = &mut d {
                x.started_at = t(2027, 1, 1, 9) + Duration::minutes(i64::from(i));
            }
            acts.create(&ctx, NewActivity::new(format!("c{i}"), d).related_to(c))
                .await
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| Failure::new(format!("join: {e}")))?
            .at("concurrent create")?;
    }
    let fu = f.activities.follow_up(&f.rep, &c).await.at("follow up")?;
    ensure_eq!(
        fu.last_activity_at,
        Some(t(2027, 1, 1, 9) + Duration::minutes(7)),
        "the latest of the concurrent calls"
    );
    Ok(())
}

fn clock_now(ctx: &Ctx) -> DateTime<Utc> {
    ctx.now()
}

/// The timeline merges activities and events newest first and pages without gaps.
pub async fn timeline(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let clock = Arc::new(ManualClock::new(t(2027, 1, 1, 9)));
    let rep = f.rep.clone().with_clock(clock.clone());
    let c = contact(&f, &rep, None).await?;
    let id = crmkit_core::ContactId::from_uuid(c.id);
    let mut expected: Vec<String> = vec!["event:contact.created".into()];
    for i in 0..7 {
        clock.advance(Duration::minutes(1));
        let x = a
            .create(
                &rep,
                NewActivity::new(format!("n{i}"), note(user(&rep), "hi")).related_to(c.clone()),
            )
            .await
            .at("note")?;
        expected.push(format!("activity:{}", x.id));
        if i % 3 == 0 {
            clock.advance(Duration::minutes(1));
            let cur = f.contacts.get(&rep, id).await.at("get contact")?;
            f.contacts
                .update(
                    &rep,
                    id,
                    cur.version,
                    crmkit_contacts::ContactPatch {
                        job_title: Some(Some(format!("title {i}"))),
                        ..Default::default()
                    },
                )
                .await
                .at("update contact")?;
            expected.push("event:contact.updated".into());
        }
    }
    expected.reverse();
    // An activity of another rep on the same contact is invisible to this rep.
    for limit in [1u32, 2, 3, 50] {
        let mut got = vec![];
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let page = a
                .timeline(&rep, &c, cursor.as_deref(), limit)
                .await
                .at("timeline")?;
            ensure!(page.items.len() <= limit as usize, "page too long");
            for e in &page.items {
                got.push(match e {
                    TimelineEntry::Activity { activity } => format!("activity:{}", activity.id),
                    TimelineEntry::Event { event } => format!("event:{}", event.kind),
                });
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        ensure_eq!(got, expected, "timeline with limit {limit}");
    }
    expect_validation(
        a.timeline(&rep, &c, Some("garbage"), 5).await,
        "cursor",
        "bad cursor",
    )?;
    expect_not_found(
        a.timeline(&f.rep_y, &c, None, 5).await,
        "an invisible record has no timeline",
    )?;
    Ok(())
}

/// Open tasks, overdue tasks and the agenda of a day.
pub async fn work_lists(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let mk = |s: &str, d: ActivityDetails| NewActivity::new(s, d);
    let late = a
        .create(&f.rep, mk("late", task(at(t(2027, 1, 4, 9)))))
        .await
        .at("late")?;
    let today = a
        .create(&f.rep, mk("today", task(at(t(2027, 1, 5, 15)))))
        .await
        .at("today")?;
    let allday = a
        .create(
            &f.rep,
            mk(
                "allday",
                task(Some(Due::Date {
                    date: date(2027, 1, 5),
                })),
            ),
        )
        .await
        .at("allday")?;
    let later = a
        .create(&f.rep, mk("later", task(at(t(2027, 1, 9, 9)))))
        .await
        .at("later")?;
    let meet = a
        .create(
            &f.rep,
            mk("meet", meeting(t(2027, 1, 5, 10), t(2027, 1, 5, 11))),
        )
        .await
        .at("meeting")?;
    a.create(&f.rep2, mk("theirs", task(at(t(2027, 1, 5, 9)))))
        .await
        .at("someone else's")?;
    let ids = |p: &[Activity]| p.iter().map(|x| x.id).collect::<Vec<_>>();
    let mut all = vec![];
    let mut cursor = None;
    loop {
        let p = a
            .open_tasks(&f.rep, user(&f.rep), cursor, 2)
            .await
            .at("open tasks")?;
        all.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // The all-day task is due at the start of 2027-01-05 in Europe/Berlin (23:00 UTC).
    ensure_eq!(
        ids(&all),
        vec![late.id, allday.id, today.id, later.id],
        "open tasks by due"
    );
    let overdue = a
        .overdue_tasks(&f.rep, user(&f.rep), t(2027, 1, 5, 12), None, 10)
        .await
        .at("overdue")?;
    ensure_eq!(
        ids(&overdue.items),
        vec![late.id, allday.id],
        "overdue tasks"
    );
    let agenda = a
        .agenda(&f.rep, user(&f.rep), date(2027, 1, 5), None, 10)
        .await
        .at("agenda")?;
    ensure!(agenda.next_cursor.is_none(), "the whole agenda fits a page");
    ensure_eq!(
        ids(&agenda.items),
        vec![allday.id, meet.id, today.id],
        "the day's agenda"
    );
    let seen_by_y = a
        .open_tasks(&f.rep_y, user(&f.rep), None, 10)
        .await
        .at("rep_y")?;
    ensure!(seen_by_y.items.is_empty(), "rep_y sees none of rep's tasks");

    // The team view: a manager sees the open tasks of team X's members.
    let team = a
        .team_open_tasks(&f.manager, f.team_x, None, 50)
        .await
        .at("team view")?;
    let team_ids = ids(&team.items);
    for id in [late.id, allday.id, today.id, later.id] {
        ensure!(
            team_ids.contains(&id),
            "the team view lists rep's task {id}"
        );
    }
    ensure!(
        team.items.iter().any(|x| x.subject == "theirs"),
        "the team view lists rep2's task"
    );
    ensure!(
        matches!(
            a.team_open_tasks(&f.rep, f.team_x, None, 50).await,
            Err(Error::PermissionDenied(_))
        ),
        "a rep has no team view"
    );

    // The calendar export of the same days: four tasks and the meeting.
    let ics = a
        .calendar(
            &f.rep,
            user(&f.rep),
            t(2027, 1, 4, 0),
            t(2027, 1, 10, 0),
            100,
        )
        .await
        .at("calendar")?;
    ensure!(
        ics.starts_with("BEGIN:VCALENDAR\r\n"),
        "an iCalendar document"
    );
    ensure_eq!(
        ics.matches("BEGIN:VTODO").count(),
        4,
        "tasks in the calendar"
    );
    ensure_eq!(
        ics.matches("BEGIN:VEVENT").count(),
        1,
        "meetings in the calendar"
    );
    for id in [late.id, allday.id, today.id, later.id, meet.id] {
        ensure!(
            ics.contains(&format!("UID:{id}@crmkit")),
            "calendar has {id}"
        );
    }
    ensure!(
        a.calendar(
            &f.rep,
            user(&f.rep),
            t(2027, 1, 10, 0),
            t(2027, 1, 4, 0),
            100
        )
        .await
        .is_err(),
        "an inverted range is refused"
    );
    Ok(())
}

/// The agenda of a day is keyset-paged: 7 open tasks and 6 meetings of one day, several
/// at the same instant (tasks with meetings, an all-day task with a meeting at the day's
/// start), come back in (instant, id) order across pages of any size without repeats or
/// gaps; other days, other users, done, cancelled and deleted tasks, and calls are left
/// out; a cursor of another agenda and a bad limit are Validation errors.
pub async fn agenda_paging(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let day = date(2027, 3, 9);
    // The users' zone is Europe/Berlin (UTC+1 in March before the switch): the day is
    // [2027-03-08 23:00 UTC, 2027-03-09 23:00 UTC).
    let at_min = |h: u32, m: u32| Utc.with_ymd_and_hms(2027, 3, 9, h, m, 0).unwrap();
    let day_start = Utc.with_ymd_and_hms(2027, 3, 8, 23, 0, 0).unwrap();
    let task_dues = [
        at(at_min(9, 0)),
        at(at_min(9, 0)),
        at(at_min(9, 0)),
        at(at_min(10, 30)),
        at(at_min(10, 30)),
        Some(Due::Date { date: day }),
        at(at_min(22, 59)),
    ];
    let meeting_starts = [
        at_min(9, 0),
        at_min(9, 0),
        at_min(10, 30),
        day_start,
        at_min(12, 0),
        at_min(22, 30),
    ];
    let n_tasks = task_dues.len();
    let mut inputs: Vec<(DateTime<Utc>, NewActivity)> = vec![];
    for (i, due) in task_dues.into_iter().enumerate() {
        let instant = match &due {
            Some(Due::At { at, .. }) => *at,
            _ => day_start,
        };
        inputs.push((instant, NewActivity::new(format!("task {i}"), task(due))));
    }
    for (i, start) in meeting_starts.into_iter().enumerate() {
        let m = meeting(start, start + Duration::minutes(30));
        inputs.push((start, NewActivity::new(format!("meeting {i}"), m)));
    }
    // Created meetings and tasks interleaved, so that at a shared instant neither kind's
    // ids all come first.
    let (tasks, meetings) = inputs.split_at(n_tasks);
    let mut order: Vec<&(DateTime<Utc>, NewActivity)> = vec![];
    for i in 0..tasks.len().max(meetings.len()) {
        order.extend(meetings.get(i));
        order.extend(tasks.get(i));
    }
    let mut expected: Vec<(DateTime<Utc>, crmkit_core::ActivityId)> = vec![];
    for (instant, input) in order {
        let x = a.create(&f.rep, input.clone()).await.at("agenda item")?;
        expected.push((*instant, x.id));
    }
    expected.sort_by_key(|(t, id)| (*t, id.as_uuid()));
    let expected: Vec<_> = expected.into_iter().map(|x| x.1).collect();

    // Left out: the days around, a done, a cancelled and a deleted task, a call, and
    // another user's tasks and meetings of that day.
    let mk = |s: &str, d: ActivityDetails| NewActivity::new(s, d);
    for (s, d) in [
        (
            "day before",
            task(at(at_min(0, 0) - Duration::hours(1) - Duration::seconds(1))),
        ),
        ("day after", task(at(at_min(23, 0)))),
        (
            "all day after",
            task(Some(Due::Date {
                date: date(2027, 3, 10),
            })),
        ),
        (
            "meeting before",
            meeting(
                day_start - Duration::minutes(30),
                day_start + Duration::minutes(30),
            ),
        ),
        ("meeting after", meeting(at_min(23, 0), at_min(23, 30))),
    ] {
        a.create(&f.rep, mk(s, d)).await.at(s)?;
    }
    for status in [TaskStatus::Done, TaskStatus::Cancelled] {
        let x = a
            .create(&f.rep, mk("closed", task(at(at_min(9, 0)))))
            .await
            .at("closed task")?;
        a.set_task_status(&f.rep, x.id, x.version, status)
            .await
            .at("close task")?;
    }
    let gone = a
        .create(&f.rep, mk("deleted", task(at(at_min(9, 0)))))
        .await
        .at("deleted task")?;
    a.delete(&f.rep, gone.id, gone.version)
        .await
        .at("delete task")?;
    let mut c = call(Direction::Outbound, "+49 30 901820", "+49 30 901821");
    if let ActivityDetails::Call(c) = &mut c {
        c.started_at = at_min(9, 0);
    }
    a.create(&f.rep, mk("call", c)).await.at("call")?;
    for i in 0..4 {
        a.create(&f.rep2, mk("theirs", task(at(at_min(9, i)))))
            .await
            .at("rep2 task")?;
    }
    a.create(
        &f.rep2,
        mk("their meeting", meeting(at_min(9, 0), at_min(10, 0))),
    )
    .await
    .at("rep2 meeting")?;

    // Every page size gives the same order; pages are full but the last, and the cursor
    // is given only when more items follow.
    for limit in [3u32, 1, 2, 4, 12, 13, 14, 1000] {
        let mut got = vec![];
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let page = a
                .agenda(&f.rep, user(&f.rep), day, cursor.take(), limit)
                .await
                .at("agenda page")?;
            let more = page.next_cursor.is_some();
            ensure!(
                page.items.len() <= limit as usize,
                "an agenda page of limit {limit} has {} items",
                page.items.len()
            );
            ensure!(
                !more || page.items.len() == limit as usize,
                "a page with a next cursor is full (limit {limit})"
            );
            got.extend(page.items.iter().map(|x| x.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        ensure_eq!(got, expected, "the agenda paged by {limit}");
        if expected.len() % limit as usize == 0 {
            // No empty trailing page: the page that ends the agenda has no cursor.
            let pages = a
                .agenda(&f.rep, user(&f.rep), day, None, limit)
                .await
                .at("first page")?;
            ensure_eq!(
                pages.next_cursor.is_some(),
                expected.len() > limit as usize,
                "a next cursor only when more follow (limit {limit})"
            );
        }
    }
    // A manager sees the same agenda of the rep.
    let mut by_manager = vec![];
    let mut cursor = None;
    loop {
        let p = a
            .agenda(&f.manager, user(&f.rep), day, cursor, 5)
            .await
            .at("manager agenda")?;
        by_manager.extend(p.items.iter().map(|x| x.id));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ensure_eq!(by_manager, expected, "the manager's view of the agenda");

    // Cursors are tied to the agenda: the user and the day.
    let theirs = a
        .agenda(&f.manager, user(&f.rep2), day, None, 3)
        .await
        .at("rep2 agenda")?;
    ensure_eq!(theirs.items.len(), 3, "rep2's first page");
    let their_cursor = theirs
        .next_cursor
        .ok_or_else(|| Failure::new("rep2's agenda has more"))?;
    expect_validation(
        a.agenda(&f.manager, user(&f.rep), day, Some(their_cursor.clone()), 3)
            .await,
        "cursor",
        "a cursor of another user's agenda",
    )?;
    expect_validation(
        a.agenda(&f.rep, user(&f.rep), day, Some(their_cursor), 3)
            .await,
        "cursor",
        "a cursor of another user's agenda, as the rep",
    )?;
    let first = a
        .agenda(&f.rep, user(&f.rep), day, None, 3)
        .await
        .at("first page")?;
    let mine = first
        .next_cursor
        .ok_or_else(|| Failure::new("the agenda has more"))?;
    expect_validation(
        a.agenda(
            &f.rep,
            user(&f.rep),
            date(2027, 3, 10),
            Some(mine.clone()),
            3,
        )
        .await,
        "cursor",
        "a cursor of another day's agenda",
    )?;
    let other = setup(store).await?;
    expect_validation(
        other
            .activities
            .agenda(&other.rep, user(&f.rep), day, Some(mine.clone()), 3)
            .await,
        "cursor",
        "a cursor of another tenant's agenda",
    )?;
    expect_validation(
        a.agenda(&f.rep, user(&f.rep), day, Some("garbage".into()), 3)
            .await,
        "cursor",
        "a malformed cursor",
    )?;
    let tampered = format!("{}0", mine);
    expect_validation(
        a.agenda(&f.rep, user(&f.rep), day, Some(tampered), 3).await,
        "cursor",
        "a tampered cursor",
    )?;
    for limit in [0, crmkit_core::query::MAX_LIMIT + 1] {
        expect_validation(
            a.agenda(&f.rep, user(&f.rep), day, None, limit).await,
            "limit",
            "a bad limit",
        )?;
    }
    Ok(())
}

/// Records are visible by owner and team, and never across tenants.
pub async fn visibility_and_tenants(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = setup(store).await?;
    let a = &f.activities;
    let mine = a
        .create(&f.rep, NewActivity::new("mine", task(None)))
        .await
        .at("mine")?;
    let team = a
        .create(&f.rep, NewActivity::new("team", task(None)).team(f.team_x))
        .await
        .at("team")?;
    ensure!(a.get(&f.rep2, team.id).await.is_ok(), "team mate sees team");
    expect_not_found(
        a.get(&f.rep2, mine.id).await,
        "team mate does not see a teamless activity",
    )?;
    expect_not_found(a.get(&f.rep_y, team.id).await, "other team sees nothing")?;
    ensure!(a.get(&f.manager, mine.id).await.is_ok(), "manager sees all");
    expect_not_found(
        other.activities.get(&other.admin, mine.id).await,
        "other tenant sees nothing",
    )?;
    let listed = other
        .activities
        .list(&other.admin, &Query::new())
        .await
        .at("list other")?;
    ensure!(listed.items.is_empty(), "other tenant lists nothing");
    match a
        .create(&f.readonly, NewActivity::new("x", task(None)))
        .await
    {
        Err(Error::PermissionDenied(_)) => {}
        other => return Err(Failure::new(format!("readonly create: {other:?}"))),
    }
    match a
        .create(
            &f.rep,
            NewActivity::new("x", task(None)).owner(user(&f.rep2)),
        )
        .await
    {
        Err(Error::PermissionDenied(_)) => {}
        other => return Err(Failure::new(format!("rep gives away: {other:?}"))),
    }
    Ok(())
}

/// A failure at any write of a command leaves nothing behind.
pub async fn atomicity(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let c = contact(&f, &f.rep, None).await?;
    let tables = [
        ACTIVITY_TABLE,
        RELATION_TABLE,
        FOLLOWUP_TABLE,
        REMINDER_TABLE,
    ];
    let (n, x) = fail_at_every_write_counting(store, &f.admin, &tables, "create", async || {
        a.create(
            &f.rep,
            NewActivity::new("t", task(at(t(2027, 2, 1, 9)))).related_to(c.clone()),
        )
        .await
    })
    .await?;
    ensure!(n < 100, "too many writes");
    ensure!(n > 3, "the create has several writes ({n})");
    let fu = a.follow_up(&f.rep, &c).await.at("follow up")?;
    ensure_eq!(fu.next_activity, Some(x.id), "written whole");
    Ok(())
}

/// A batch is created whole (activities, follow-up rows once per record, events) or not
/// at all: every bad field of every input is named with its position, repeated
/// Message-IDs are Duplicates, and a fault at any write leaves nothing.
pub async fn batch_create(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.activities;
    let c1 = contact(&f, &f.rep, None).await?;
    let c2 = contact(&f, &f.rep, None).await?;
    let tables = [ACTIVITY_TABLE, RELATION_TABLE, FOLLOWUP_TABLE];
    let snapshot = || row_counts(store, &f.admin, tables);
    let before = snapshot().await?;
    let good = || {
        vec![
            NewActivity::new("n1", note(user(&f.rep), "one")).related_to(c1.clone()),
            NewActivity::new("mail", email("<b1@example.com>"))
                .related_to(c1.clone())
                .related_to(c2.clone()),
            NewActivity::new("call back", task(at(t(2027, 4, 2, 9)))).related_to(c2.clone()),
            NewActivity::new("earlier", task(at(t(2027, 4, 1, 9)))).related_to(c2.clone()),
        ]
    };

    // Bad input anywhere: every field named by position, nothing written.
    let mut bad = good();
    bad[1].subject = "x".repeat(crmkit_activities::MAX_SUBJECT + 1);
    bad.push(
        NewActivity::new("x", note(user(&f.rep), "y"))
            .related_to(RecordRef::new(RecordKind::CONTACT, uuid::Uuid::now_v7())),
    );
    if let ActivityDetails::Task(tk) = &mut bad[3].details {
        tk.due = Some(Due::At {
            at: t(2027, 4, 1, 9),
            time_zone: "Mars/Olympus".into(),
        });
    }
    match a.create_many(&f.rep, bad).await {
        Err(Error::Validation(v)) => {
            for field in ["[1].subject", "[4].related[0]", "[3].due.time_zone"] {
                ensure!(v.has(field), "{field} named in {v}");
            }
        }
        other => return Err(Failure::new(format!("bad batch: {other:?}"))),
    }
    ensure_eq!(snapshot().await?, before, "a bad batch writes nothing");
    expect_validation(
        a.create_many(&f.rep, vec![]).await,
        "activities",
        "empty batch",
    )?;
    let many = (0..=crmkit_activities::MAX_BATCH)
        .map(|i| NewActivity::new(format!("n{i}"), note(user(&f.rep), "x")))
        .collect();
    expect_validation(a.create_many(&f.rep, many).await, "activities", "too long")?;
    let mut twice = good();
    twice.push(NewActivity::new("again", email("<b1@example.com>")));
    ensure!(
        matches!(
            a.create_many(&f.rep, twice).await,
            Err(Error::Duplicate { ref field, .. }) if field == "message_id"
        ),
        "a Message-ID twice in one batch is a Duplicate"
    );
    ensure_eq!(
        snapshot().await?,
        before,
        "a duplicate batch writes nothing"
    );

    // A fault at every write leaves nothing; then the batch goes through whole.
    let seq0 = store
        .events_since(&f.admin, 0, 1000)
        .await
        .at("events")?
        .len();
    let (n, created) =
        fail_at_every_write_counting(store, &f.admin, &tables, "create_many", async || {
            a.create_many(&f.rep, good()).await
        })
        .await?;
    ensure!(n > 8, "the batch has many writes ({n})");
    ensure_eq!(created.len(), 4, "four created");
    for x in &created {
        let got = a.get(&f.rep, x.id).await.at("get")?;
        ensure_eq!(&got, x, "stored as returned");
    }
    let events = store.events_since(&f.admin, 0, 1000).await.at("events")?;
    ensure_eq!(
        events[seq0..]
            .iter()
            .filter(|e| e.kind == "activity.created")
            .count(),
        4,
        "one created event per activity"
    );
    let fu2 = a.follow_up(&f.rep, &c2).await.at("follow up c2")?;
    ensure_eq!(
        fu2.next_activity,
        Some(created[3].id),
        "c2's next is the earlier task"
    );
    let fu1 = a.follow_up(&f.rep, &c1).await.at("follow up c1")?;
    ensure!(
        fu1.last_activity_at.is_some() && fu1.next_activity.is_none(),
        "c1 was contacted, nothing planned: {fu1:?}"
    );
    ensure!(
        matches!(
            a.create_many(
                &f.rep,
                vec![NewActivity::new("m", email("<b1@example.com>"))]
            )
            .await,
            Err(Error::Duplicate { .. })
        ),
        "a Message-ID logged before is a Duplicate in a batch too"
    );
    Ok(())
}

/// Records of a test kind, for [`other_kinds_and_staging`].
#[derive(Debug)]
struct Widgets(Vec<uuid::Uuid>);

impl crmkit_activities::RelatedRecords for Widgets {
    fn kind(&self) -> RecordKind {
        RecordKind::new("widget")
    }

    fn check<'a>(
        &'a self,
        _ctx: &'a Ctx,
        id: uuid::Uuid,
    ) -> crmkit_core::store::BoxFuture<'a, crmkit_core::Result<()>> {
        let found = self.0.contains(&id);
        Box::pin(async move {
            if found {
                Ok(())
            } else {
                Err(Error::not_found(RecordKind::new("widget"), id))
            }
        })
    }
}

/// Activities relate to records of kinds registered by modules above them (and to
/// nothing else), and stage into a changeset another module is building: a contact and a
/// call related to it commit together, with the contact's follow-up row, or not at all.
pub async fn other_kinds_and_staging(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let known = uuid::Uuid::now_v7();
    let a = f
        .activities
        .clone()
        .with_related(Arc::new(Widgets(vec![known])));
    let widget = RecordRef::new(RecordKind::new("widget"), known);
    let n = a
        .create(
            &f.rep,
            NewActivity::new("w", note(user(&f.rep), "on a widget")).related_to(widget.clone()),
        )
        .await
        .at("widget note")?;
    let tl = a.timeline(&f.rep, &widget, None, 10).await.at("timeline")?;
    ensure_eq!(tl.items.len(), 1, "the widget's timeline has its note");
    expect_validation(
        a.create(
            &f.rep,
            NewActivity::new("w", note(user(&f.rep), "x")).related_to(RecordRef::new(
                RecordKind::new("widget"),
                uuid::Uuid::now_v7(),
            )),
        )
        .await,
        "related[0]",
        "an unknown widget",
    )?;
    expect_validation(
        f.activities
            .create(
                &f.rep,
                NewActivity::new("w", note(user(&f.rep), "x")).related_to(widget.clone()),
            )
            .await,
        "related[0]",
        "a kind nobody registered",
    )?;
    ensure!(n.related == vec![widget], "related as given");

    // Staging: a contact (contacts' staging API) and a call on it, one commit.
    let tables = [ACTIVITY_TABLE, RELATION_TABLE, FOLLOWUP_TABLE];
    let snapshot = || async {
        let mut v = vec![count(store, &f.admin, crmkit_contacts::rows::PERSON_TABLE).await?];
        for t in tables {
            v.push(count(store, &f.admin, t).await?);
        }
        CheckResult::Ok(v)
    };
    let before = snapshot().await?;
    let stage = |fault: Option<usize>| {
        let (a, f) = (a.clone(), &f);
        async move {
            let mut cs = crmkit_core::Changeset::new(&f.rep);
            let c = f
                .contacts
                .stage_create(&f.rep, &NewContact::named("New", "Caller"), &[], &mut cs)
                .await?;
            let cref = RecordRef::from(c.id);
            let staged = a
                .stage_create(
                    &f.rep,
                    vec![
                        NewActivity::new(
                            "first call",
                            call(Direction::Inbound, "+49 30 901820", "+44 20 7946 0958"),
                        )
                        .related_to(cref.clone()),
                    ],
                    std::slice::from_ref(&cref),
                    &mut cs,
                )
                .await?;
            if staged.activities().count() != 1 {
                return Err(Error::storage("one activity should be staged"));
            }
            store.backend().inject_fault(fault.map(Fault::FailAtWrite));
            let r = a.commit_staged(&f.rep, cs, staged).await;
            store.backend().inject_fault(None);
            crmkit_core::Result::Ok((cref, r?))
        }
    };
    let mut n = 0;
    let (cref, acts) = loop {
        match stage(Some(n)).await {
            Err(Error::Storage { .. }) => {
                ensure_eq!(snapshot().await?, before, "nothing written at write {n}");
                n += 1;
            }
            Ok(x) => break x,
            Err(e) => return Err(Failure::new(format!("write {n}: {e:?}"))),
        }
        ensure!(n < 100, "too many writes");
    };
    ensure!(n > 4, "several writes ({n})");
    ensure_eq!(
        acts[0].related,
        vec![cref.clone()],
        "the call is on the new contact"
    );
    let fu = a.follow_up(&f.rep, &cref).await.at("follow up")?;
    ensure!(
        fu.last_activity_at.is_some() && fu.created_at.is_some() && fu.active,
        "the new contact's follow-up row knows the call and its creation: {fu:?}"
    );
    Ok(())
}

/// A Validation error's (field, reason) pairs, sorted, or a failure naming `what`.
fn reasons<T: std::fmt::Debug>(
    r: crmkit_core::Result<T>,
    what: &str,
) -> CheckResult<Vec<(String, String)>> {
    match r {
        Err(Error::Validation(v)) => {
            let mut out: Vec<_> = v
                .errors
                .iter()
                .map(|e| (e.field.clone(), e.reason.clone()))
                .collect();
            out.sort();
            Ok(out)
        }
        other => Err(Failure::new(format!(
            "{what}: expected a Validation error, got {other:?}"
        ))),
    }
}

/// The one reference rule in activities: a related record, a meeting attendee or a
/// call's agent that is hidden from the actor, deleted, another tenant's or of another
/// kind gives exactly the error of one that does not exist (on create, update and in a
/// batch), a call never links itself to a hidden record, a logged email's duplicate
/// names the existing activity only when the actor sees it, and the follow-up and
/// timeline of a hidden record are the NotFound of a nonexistent one.
pub async fn hidden_like_nonexistent(store: &Store) -> CheckResult {
    use crmkit_pipeline::deal::NewDeal;
    use crmkit_pipeline::lead::{Leads, NewLead};
    let f = setup(store).await?;
    let other = setup(store).await?;
    let a = &f.activities;
    let rep = &f.rep_y;
    let fresh = |kind: RecordKind| RecordRef::new(kind, uuid::Uuid::now_v7());
    let hidden = contact(&f, &f.admin, None).await?;
    let gone = f.person(&f.admin, "Gone", "Away").await?;
    f.contacts
        .delete(&f.admin, gone.id, gone.version)
        .await
        .at("delete contact")?;
    let foreign = contact(&other, &other.admin, None).await?;
    let visible = contact(&f, rep, None).await?;
    let (deals, p) = deals_with_default(store, &f.admin).await?;
    let deal = deals
        .create(&f.admin, NewDeal::new("Hidden deal", p.id))
        .await
        .at("deal")?;
    let lead = Leads::new(store)
        .at("Leads::new")?
        .create(&f.admin, NewLead::named("Ada", "Lovelace"))
        .await
        .at("lead")?;
    let cases = vec![
        (
            "a hidden contact",
            hidden.clone(),
            fresh(RecordKind::CONTACT),
        ),
        (
            "a deleted contact",
            RecordRef::from(gone.id),
            fresh(RecordKind::CONTACT),
        ),
        (
            "another tenant's contact",
            foreign.clone(),
            fresh(RecordKind::CONTACT),
        ),
        (
            "a visible contact's id as an organization",
            RecordRef::new(RecordKind::ORGANIZATION, visible.id),
            fresh(RecordKind::ORGANIZATION),
        ),
        (
            "a hidden deal",
            RecordRef::from(deal.id),
            fresh(RecordKind::DEAL),
        ),
        (
            "a hidden lead",
            RecordRef::from(lead.id),
            fresh(RecordKind::LEAD),
        ),
    ];
    let mine = a
        .create(rep, NewActivity::new("mine", Task::new()))
        .await
        .at("the rep's task")?;
    for (what, target, none) in cases {
        let one = |r: &RecordRef| NewActivity::new("t", Task::new()).related_to(r.clone());
        let want = reasons(a.create(rep, one(&none)).await, "a nonexistent record")?;
        ensure!(
            want.iter().any(|(f, _)| f == "related[0]"),
            "a nonexistent record is named: {want:?}"
        );
        let got = reasons(a.create(rep, one(&target)).await, what)?;
        ensure_eq!(got, want, "create related to {what} vs a nonexistent one");
        let want = reasons(
            a.create_many(rep, vec![one(&none)]).await,
            "a batch with a nonexistent record",
        )?;
        let got = reasons(a.create_many(rep, vec![one(&target)]).await, what)?;
        ensure_eq!(got, want, "a batch related to {what} vs a nonexistent one");
        let patch = |r: &RecordRef| ActivityPatch::new().related([r.clone()]);
        let want = reasons(
            a.update(rep, mine.id, mine.version, patch(&none)).await,
            "update to a nonexistent record",
        )?;
        let got = reasons(
            a.update(rep, mine.id, mine.version, patch(&target)).await,
            what,
        )?;
        ensure_eq!(got, want, "update related to {what} vs a nonexistent one");
        let norm = |e: Option<Error>| e.map(|e| crate::contacts::error_variant(&e));
        if RecordKind::ORGANIZATION != target.kind {
            ensure_eq!(
                norm(a.follow_up(rep, &target).await.err()),
                norm(a.follow_up(rep, &none).await.err()),
                "follow-up of {what} vs a nonexistent one"
            );
            ensure_eq!(
                norm(a.timeline(rep, &target, None, 10).await.err()),
                norm(a.timeline(rep, &none, None, 10).await.err()),
                "timeline of {what} vs a nonexistent one"
            );
        }
    }
    // Meeting attendees and a call's agent.
    let meet = |who: crmkit_activities::Attendee| {
        NewActivity::new(
            "m",
            Meeting::new(t(2027, 1, 6, 9), t(2027, 1, 6, 10), "Europe/Berlin").attendee(who),
        )
    };
    use crmkit_activities::Attendee;
    let contact_of = |r: &RecordRef| Attendee::Contact {
        id: crmkit_core::ContactId::from_uuid(r.id),
    };
    let want = reasons(
        a.create(rep, meet(contact_of(&fresh(RecordKind::CONTACT))))
            .await,
        "a nonexistent attendee",
    )?;
    ensure!(
        want.iter().any(|(f, _)| f == "attendees[0]"),
        "a nonexistent attendee is named: {want:?}"
    );
    for (what, c) in [("hidden", &hidden), ("another tenant's", &foreign)] {
        let got = reasons(a.create(rep, meet(contact_of(c))).await, what)?;
        ensure_eq!(got, want, "a {what} contact attending vs a nonexistent one");
    }
    a.create(rep, meet(contact_of(&visible)))
        .await
        .at("a visible contact attends")?;
    let want = reasons(
        a.create(rep, meet(Attendee::User { id: UserId::new() }))
            .await,
        "a nonexistent user attending",
    )?;
    let got = reasons(
        a.create(
            rep,
            meet(Attendee::User {
                id: user(&other.admin),
            }),
        )
        .await,
        "another tenant's user attending",
    )?;
    ensure_eq!(
        got,
        want,
        "another tenant's user attending vs a nonexistent one"
    );
    a.create(rep, meet(Attendee::User { id: user(&f.rep) }))
        .await
        .at("a user of the tenant attends")?;
    let agent = |u: UserId| {
        NewActivity::new(
            "c",
            Call::new(
                Direction::Inbound,
                "+49 30 901820",
                "+44 20 7946 0958",
                t(2027, 1, 5, 10),
                CallOutcome::Connected,
            )
            .agent(u),
        )
    };
    let want = reasons(
        a.create(rep, agent(UserId::new())).await,
        "a nonexistent agent",
    )?;
    ensure!(
        want.iter().any(|(f, _)| f == "agent"),
        "a nonexistent agent is named: {want:?}"
    );
    let got = reasons(
        a.create(rep, agent(user(&other.admin))).await,
        "another tenant's agent",
    )?;
    ensure_eq!(got, want, "another tenant's agent vs a nonexistent one");
    // A call never links itself to a record the actor cannot see.
    let hidden_caller = contact(&f, &f.admin, Some("+49 30 901821")).await?;
    let c = a
        .create(
            rep,
            NewActivity::new(
                "c",
                Call::new(
                    Direction::Inbound,
                    "+49 30 901821",
                    "+44 20 7946 0958",
                    t(2027, 1, 5, 10),
                    CallOutcome::Connected,
                ),
            ),
        )
        .await
        .at("call from a hidden contact's number")?;
    ensure!(
        !c.related.contains(&hidden_caller),
        "a call linked itself to a hidden contact"
    );
    // A duplicate Message-ID names the existing activity only for those who see it.
    let mail = |id: &str| {
        NewActivity::new(
            "e",
            crmkit_activities::LoggedEmail::new(Direction::Inbound, "grace@example.com", id),
        )
    };
    let logged = a
        .create(&f.admin, mail("<hidden@example.com>"))
        .await
        .at("log email")?;
    match a.create(rep, mail("<hidden@example.com>")).await {
        Err(Error::Duplicate { existing: None, .. }) => {}
        other => {
            return Err(Failure::new(format!(
                "a rep's duplicate of a hidden email: {other:?}"
            )));
        }
    }
    match a.create(&f.manager, mail("<hidden@example.com>")).await {
        Err(Error::Duplicate {
            existing: Some(e), ..
        }) if e == RecordRef::from(logged.id) => {}
        other => return Err(Failure::new(format!("a manager's duplicate: {other:?}"))),
    }
    Ok(())
}

/// A Rep reminds only themselves and writes notes only as themselves (PermissionDenied
/// otherwise, through the typed and the generic API, nothing written); Admin and Manager
/// remind any active user and sign notes with any user of the tenant; a Rep may edit a
/// note keeping the author it has.
pub async fn reps_remind_and_sign_as_themselves(store: &Store) -> CheckResult {
    use crate::check::expect_denied;
    let f = setup(store).await?;
    let a = &f.activities;
    let tk = a
        .create(
            &f.rep,
            NewActivity::new("t", Task::new().due_at(t(2027, 1, 5, 9), "Europe/Berlin"))
                .team(f.team_x),
        )
        .await
        .at("the rep's task")?;
    let before = count(store, &f.admin, REMINDER_TABLE).await?;
    let at = t(2027, 1, 5, 8);
    expect_denied(
        a.add_reminder(&f.rep, tk.id, Some(user(&f.rep2)), at).await,
        "a rep reminds another user on their own task",
    )?;
    expect_denied(
        a.add_reminder(&f.rep2, tk.id, Some(user(&f.rep)), at).await,
        "a team mate reminds the task's owner",
    )?;
    expect_denied(
        a.add_reminder(&f.rep, tk.id, Some(UserId::new()), at).await,
        "a rep reminds a user who does not exist",
    )?;
    ensure_eq!(
        count(store, &f.admin, REMINDER_TABLE).await?,
        before,
        "refused reminders wrote nothing"
    );
    let own = a
        .add_reminder(&f.rep, tk.id, Some(user(&f.rep)), at)
        .await
        .at("a rep reminds themselves")?;
    ensure_eq!(own.user, user(&f.rep), "reminded");
    a.add_reminder(&f.rep2, tk.id, None, at)
        .await
        .at("a team mate reminds themselves")?;
    let by_manager = a
        .add_reminder(&f.manager, tk.id, Some(user(&f.rep2)), at)
        .await
        .at("a manager reminds a rep")?;
    ensure_eq!(by_manager.user, user(&f.rep2), "the manager's reminder");
    expect_validation(
        a.add_reminder(&f.admin, tk.id, Some(UserId::new()), at)
            .await,
        "user",
        "an admin reminds a user who does not exist",
    )?;

    // Notes.
    let before = count(store, &f.admin, ACTIVITY_TABLE).await?;
    let signed_by = |u: UserId| NewActivity::new("n", Note::new("hello", u)).team(f.team_x);
    expect_denied(
        a.create(&f.rep, signed_by(user(&f.rep2))).await,
        "a rep signs a note with another user",
    )?;
    expect_denied(
        a.create_many(&f.rep, vec![signed_by(user(&f.rep2))]).await,
        "a rep signs a note with another user in a batch",
    )?;
    expect_denied(
        store
            .records()
            .create(
                &f.rep,
                "activity",
                serde_json::json!({"type": "note", "details": {"body": "x", "author": user(&f.rep2)}}),
            )
            .await,
        "a rep signs a note with another user through the generic API",
    )?;
    ensure_eq!(
        count(store, &f.admin, ACTIVITY_TABLE).await?,
        before,
        "refused notes wrote nothing"
    );
    let mine = a
        .create(&f.rep, signed_by(user(&f.rep)))
        .await
        .at("a rep's own note")?;
    expect_denied(
        a.update(
            &f.rep,
            mine.id,
            mine.version,
            ActivityPatch::new().details(Note::new("hello", user(&f.rep2))),
        )
        .await,
        "a rep re-signs their note with another user",
    )?;
    expect_denied(
        store
            .records()
            .patch(
                &f.rep,
                "activity",
                mine.id.as_uuid(),
                mine.version,
                serde_json::json!({"details": {"author": user(&f.rep2)}}),
            )
            .await,
        "a rep re-signs their note through the generic API",
    )?;
    let signed = a
        .create(&f.manager, signed_by(user(&f.rep2)))
        .await
        .at("a manager signs a note with a rep")?;
    a.update(
        &f.rep,
        signed.id,
        signed.version,
        ActivityPatch::new().details(Note::new("edited", user(&f.rep2))),
    )
    .await
    .at("a rep edits a team note keeping its author")?;
    expect_validation(
        a.create(&f.admin, signed_by(UserId::new())).await,
        "author",
        "an admin signs with a user who does not exist",
    )?;
    let g = store
        .records()
        .create(
            &f.rep,
            "activity",
            serde_json::json!({"type": "note", "subject": "s", "details": {"body": "hi"}}),
        )
        .await
        .at("a generic note without author")?;
    ensure_eq!(
        g["details"]["author"],
        serde_json::json!(user(&f.rep)),
        "a generic note's author is the actor"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

/// The field names of an error: a Validation error's fields, a Duplicate's field.
fn error_fields<T: std::fmt::Debug>(
    r: &crmkit_core::Result<T>,
    what: &str,
) -> CheckResult<Vec<String>> {
    match r {
        Err(Error::Validation(v)) => Ok(v.errors.iter().map(|e| e.field.clone()).collect()),
        Err(Error::Duplicate { field, .. }) => Ok(vec![field.clone()]),
        other => Err(Failure::new(format!(
            "{what}: expected a Validation or Duplicate error, got {other:?}"
        ))),
    }
}

/// The same bad detail field gives the same error through the typed API and the generic
/// `activity` kind, named as each path's input names it: the typed API by the details
/// struct's own field (`end`), the generic kind by the body's field (`details.end`), as
/// its description says. Checked for a meeting ending before it starts (create and
/// patch), a note without a body, a task's bad due time zone, and a logged email whose
/// Message-ID another activity has (a Duplicate).
pub async fn detail_error_fields(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let a = &f.admin;
    let acts = &f.activities;
    let records = store.records();
    let rel = contact(&f, a, None).await?;
    let mid = format!("<{}@crmkit.test>", uuid::Uuid::now_v7().simple());
    acts.create(
        a,
        NewActivity::new("first", email(&mid)).related_to(rel.clone()),
    )
    .await
    .at("the first logged email")?;
    let body_of = |d: &ActivityDetails| -> CheckResult<serde_json::Value> {
        let mut details = serde_json::to_value(d).map_err(|e| Failure::new(e.to_string()))?;
        let ty = details
            .as_object_mut()
            .and_then(|m| m.remove("kind"))
            .ok_or_else(|| Failure::new("details without a kind"))?;
        Ok(serde_json::json!({
            "type": ty,
            "subject": "bad",
            "related": [rel],
            "details": details,
        }))
    };
    let mut bad_due = task(at(t(2027, 1, 5, 10)));
    if let ActivityDetails::Task(Task {
        due: Some(Due::At { time_zone, .. }),
        ..
    }) = &mut bad_due
    {
        *time_zone = "Mars/Olympus".into();
    }
    let cases = [
        (
            "meeting ending before its start",
            meeting(t(2027, 1, 5, 11), t(2027, 1, 5, 10)),
        ),
        ("note without a body", note(a.actor().user, "")),
        ("task due in no time zone", bad_due),
        ("logged email with a taken Message-ID", email(&mid)),
    ];
    for (what, details) in cases {
        let typed = acts
            .create(
                a,
                NewActivity::new("bad", details.clone()).related_to(rel.clone()),
            )
            .await;
        let generic = records.create(a, "activity", body_of(&details)?).await;
        let typed = error_fields(&typed, &format!("typed create, {what}"))?;
        let generic = error_fields(&generic, &format!("generic create, {what}"))?;
        ensure!(!typed.is_empty(), "typed create, {what}: no field named");
        ensure_eq!(
            generic,
            typed
                .iter()
                .map(|f| format!("details.{f}"))
                .collect::<Vec<_>>(),
            "generic create, {what}: the typed fields under details."
        );
    }

    // A patch: a meeting moved to end before its start.
    let m = acts
        .create(
            a,
            NewActivity::new("meet", meeting(t(2027, 1, 5, 10), t(2027, 1, 5, 11)))
                .related_to(rel.clone()),
        )
        .await
        .at("a meeting")?;
    let typed = acts
        .update(
            a,
            m.id,
            m.version,
            ActivityPatch::new().details(meeting(t(2027, 1, 5, 10), t(2027, 1, 5, 9))),
        )
        .await;
    let generic = records
        .patch(
            a,
            "activity",
            m.id.as_uuid(),
            m.version,
            serde_json::json!({"details": {"end": t(2027, 1, 5, 9)}}),
        )
        .await;
    let typed = error_fields(&typed, "typed patch")?;
    let generic = error_fields(&generic, "generic patch")?;
    ensure_eq!(typed, vec!["end".to_string()], "typed patch's field");
    ensure_eq!(
        generic,
        vec!["details.end".to_string()],
        "generic patch's field"
    );
    Ok(())
}

suite_checks! {
    /// Every check of this module by name. [`atomicity`] and [`batch_create`] inject faults
    /// into the backend:
    /// run it alone.
    names: activities_check_names,
    checks: [
        crud_round_trip,
        bad_input,
        call_auto_linking,
        recurrence,
        reminder_delivered_once,
        follow_up_tracking,
        follow_up_lists,
        concurrent_follow_up,
        timeline,
        work_lists,
        agenda_paging,
        visibility_and_tenants,
        atomicity,
        batch_create,
        other_kinds_and_staging,
        hidden_like_nonexistent,
        reps_remind_and_sign_as_themselves,
        detail_error_fields,
    ],
}
