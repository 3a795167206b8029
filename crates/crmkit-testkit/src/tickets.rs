//! Conformance checks of tickets (`crmkit_tickets`) on any backend.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a store composed with core,
//! contacts, pipeline, activities and [`crmkit_tickets::TicketsModule`] (see [`modules`]).
//! Each check makes its own fresh random tenant(s) with [`setup`], so checks can share one
//! database. [`checks`] lists them by name.
//!
//! [`atomicity`] injects faults into the backend, which affects every commit of that
//! backend: do not run it concurrently with other checks on the same store.
//! [`concurrent_numbering`] spawns tokio tasks: run the suite on a multi-thread runtime.

use std::collections::BTreeSet;

use chrono::Duration;
use crmkit_contacts::{ContactsModule, NewContact, NewOrganization};
use crmkit_core::event::{AUDIT_TABLE, EVENTS_TABLE};
use crmkit_core::{
    ContactId, Ctx, CustomFieldDef, CustomFieldId, CustomFieldType, CustomValue, Error, Filter,
    Modules, OrganizationId, Query, RecordKind, RecordRef, Store, TicketId, UserId,
};
use crmkit_tickets::rows::{COMMENT_TABLE, HISTORY_TABLE, SATISFACTION_TABLE, TICKET_TABLE};
use crmkit_tickets::{
    Attachment, Channel, CommentAuthor, Escalation, HistoryKind, NewComment, NewTicket, Ticket,
    TicketPatch, TicketPriority, TicketStatus, Tickets, TicketsModule, tag_filter,
};

use crate::check::{At, expect_denied, expect_not_found, expect_validation};
pub use crate::check::{CheckFn, CheckFuture, CheckResult, Failure};
use crate::support::{
    all_pages, at_time, fail_at_every_write, fail_at_every_write_counting, record_event_kinds,
    row_counts, t, user,
};

/// The modules the checks need: core, contacts, pipeline, activities and tickets.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(crmkit_pipeline::PipelineModule)
        .add(crmkit_activities::ActivitiesModule)
        .add(TicketsModule)
        .build()
}

/// The ticket custom field the fixture defines (text, at most 50 characters).
pub const PRODUCT_FIELD: &str = "product";

extended_fixture! {
    /// A fresh tenant: the contacts fixture, the tickets API and a ticket custom field.
    Fixture {
        /// The tickets API.
        tickets: Tickets,
    }
}

/// Makes a fresh tenant with the users and teams of the contacts fixture and the ticket
/// custom field [`PRODUCT_FIELD`].
pub async fn setup(store: &Store) -> CheckResult<Fixture> {
    let base = crate::contacts::setup(store).await?;
    store
        .custom_fields()
        .define(
            &base.admin,
            CustomFieldDef {
                id: CustomFieldId::new(),
                record_kind: RecordKind::TICKET,
                key: PRODUCT_FIELD.into(),
                label: "Product".into(),
                ty: CustomFieldType::Text { max_len: 50 },
                required: false,
            },
        )
        .await
        .at("define ticket custom field")?;
    Ok(Fixture {
        tickets: Tickets::new(store).at("Tickets::new")?,
        base,
    })
}

const TABLES: [&str; 6] = [
    TICKET_TABLE,
    HISTORY_TABLE,
    COMMENT_TABLE,
    SATISFACTION_TABLE,
    EVENTS_TABLE,
    AUDIT_TABLE,
];

/// A contact visible to team X (created by `ctx`, in team X).
async fn contact(f: &Fixture, ctx: &Ctx, org: Option<OrganizationId>) -> CheckResult<ContactId> {
    f.team_x_contact(ctx, |c| NewContact {
        organization: org,
        ..c
    })
    .await
}

/// A ticket of a new contact of team X, made by `ctx` from `edit`ed "help" ticket.
pub(crate) async fn new_ticket(
    f: &Fixture,
    ctx: &Ctx,
    edit: impl FnOnce(NewTicket) -> NewTicket,
) -> CheckResult<Ticket> {
    let c = f.team_x_contact(ctx, |c| c).await?;
    f.tickets
        .create(ctx, edit(NewTicket::new("help", c)))
        .await
        .at("create ticket")
}

async fn organization(f: &Fixture, ctx: &Ctx) -> CheckResult<OrganizationId> {
    let mut o = NewOrganization::named("Navy");
    o.team = Some(f.team_x);
    Ok(f.contacts
        .organizations()
        .create(ctx, o)
        .await
        .at("create organization")?
        .id)
}

/// A ticket from a new contact, made by `ctx` (assigned to the actor).
async fn ticket(f: &Fixture, ctx: &Ctx, subject: &str) -> CheckResult<Ticket> {
    let c = contact(f, ctx, None).await?;
    f.tickets
        .create(ctx, NewTicket::new(subject, c))
        .await
        .at("create ticket")
}

async fn status_to(f: &Fixture, ctx: &Ctx, t: &Ticket, to: TicketStatus) -> CheckResult<Ticket> {
    f.tickets
        .set_status(ctx, t.id, t.version, to)
        .await
        .at(&format!("move to {}", to.as_str()))
}

fn attachment() -> Attachment {
    Attachment {
        name: "screenshot 1.png".into(),
        size: 0,
        content_type: "image/png".into(),
        storage_key: "bucket/abc".into(),
    }
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// A ticket with every field round-trips through create, get, get_by_number and list;
/// the list filters on every listed field; update is versioned and audited; delete and
/// restore work; the events are emitted.
pub async fn crud_round_trip(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tk = &f.tickets;
    let (admin, _) = at_time(&f.admin, t(2027, 3, 1, 9));
    let org = organization(&f, &admin).await?;
    let c = contact(&f, &admin, Some(org)).await?;
    let mut input = NewTicket::new("Printer on fire 🔥 ' OR 1=1--", c)
        .description("It is really on fire.\nSecond line")
        .priority(TicketPriority::High)
        .channel(Channel::WebForm)
        .assignee(user(&f.rep))
        .queue(f.team_x)
        .tag("  Hardware ")
        .tag("web_form")
        .tag("HARDWARE")
        .custom(PRODUCT_FIELD, CustomValue::Text("LaserJet".into()));
    input.requester_phone = Some(" +49 30 901820 ".into());
    let x = tk.create(&admin, input).await.at("create")?;
    ensure_eq!(x.number, 1, "the first ticket of a tenant is number 1");
    ensure_eq!(x.status, TicketStatus::New, "status");
    ensure_eq!(
        x.organization,
        Some(org),
        "organization defaults to the requester's"
    );
    ensure_eq!(
        x.tags,
        vec!["hardware".to_owned(), "web_form".into()],
        "tags normalised"
    );
    ensure_eq!(
        x.requester_phone.as_deref(),
        Some("+49 30 901820"),
        "phone kept as raw text, trimmed"
    );
    ensure_eq!(x.created_at, t(2027, 3, 1, 9), "created_at");
    ensure_eq!(
        tk.get(&admin, x.id).await.at("get")?,
        x,
        "get returns what create did"
    );
    ensure_eq!(
        tk.get(&f.rep, x.id).await.at("get as assignee")?,
        x,
        "the assignee sees it"
    );
    ensure_eq!(
        tk.get_by_number(&admin, 1).await.at("by number")?,
        x,
        "get_by_number"
    );
    let phone_only = tk
        .create(
            &admin,
            NewTicket::from_phone("Caller", "0800 123").queue(f.team_y),
        )
        .await
        .at("phone-only ticket")?;
    ensure_eq!(phone_only.number, 2, "numbers increase");
    ensure_eq!(phone_only.requester, None, "no requester");
    ensure_eq!(phone_only.assignee, None, "queued, unassigned");
    ensure_eq!(phone_only.channel, Channel::Phone, "channel");

    // Every filterable field finds what it should.
    let first = vec![x.id];
    let both = vec![x.id, phone_only.id];
    let cases: Vec<(&str, Filter, &Vec<TicketId>)> = vec![
        ("number", Filter::eq("number", 1i64), &first),
        ("status", Filter::eq("status", "new"), &both),
        ("priority", Filter::eq("priority", "high"), &first),
        ("priority_rank", Filter::gte("priority_rank", 2i64), &first),
        ("channel", Filter::eq("channel", "web_form"), &first),
        ("assignee", Filter::eq("assignee", user(&f.rep)), &first),
        ("queue", Filter::eq("queue", f.team_x), &first),
        ("requester", Filter::eq("requester", c), &first),
        ("organization", Filter::eq("organization", org), &first),
        ("tags", tag_filter("Hardware"), &first),
        ("tag with underscore", tag_filter("web_form"), &first),
        ("subject", Filter::contains("subject", "PRINTER"), &first),
        ("custom", Filter::eq("custom.product", "LaserJet"), &first),
        (
            "created_at",
            Filter::lte("created_at", t(2027, 3, 1, 9)),
            &both,
        ),
    ];
    for (name, filter, expected) in cases {
        let page = tk
            .list(&admin, &Query::new().filter(filter).sort_asc("number"))
            .await
            .at(name)?;
        let ids: Vec<TicketId> = page.items.iter().map(|t| t.id).collect();
        ensure_eq!(&ids, expected, "filter on {name}");
    }
    let none = tk
        .list(&admin, &Query::new().filter(tag_filter("hard")))
        .await
        .at("partial tag")?;
    ensure!(
        none.items.is_empty(),
        "a tag filter matches whole tags only"
    );
    // Sort by urgency, keyset-paged.
    let q = Query::new().sort_desc("priority_rank").limit(1);
    let admin_ref = &admin;
    let seen: Vec<_> = all_pages(&q, "page", |q| async move { tk.list(admin_ref, &q).await })
        .await?
        .iter()
        .map(|t| t.number)
        .collect();
    ensure_eq!(seen, vec![1, 2], "urgent first, paged one by one");
    let open = tk
        .requester_open_tickets(&admin, c, None, 10)
        .await
        .at("requester open tickets")?;
    ensure_eq!(open.items.len(), 1, "the requester's open tickets");

    // Update every field.
    let c2 = contact(&f, &admin, None).await?;
    let org2 = organization(&f, &admin).await?;
    let mut custom = std::collections::BTreeMap::new();
    custom.insert(PRODUCT_FIELD.to_owned(), None);
    let patch = TicketPatch {
        subject: Some("Printer smokes".into()),
        description: Some(None),
        priority: Some(TicketPriority::Low),
        channel: Some(Channel::Email),
        requester: Some(Some(c2)),
        requester_phone: Some(None),
        organization: Some(Some(org2)),
        assignee: Some(Some(user(&f.rep2))),
        queue: Some(Some(f.team_y)),
        tags: Some(vec!["Paper Jam".into()]),
        custom,
    };
    let u = tk
        .update(&admin, x.id, x.version, patch.clone())
        .await
        .at("update")?;
    ensure_eq!(u.version, x.version + 1, "version bumped");
    ensure_eq!(
        (
            u.subject.as_str(),
            u.description.clone(),
            u.priority,
            u.channel
        ),
        ("Printer smokes", None, TicketPriority::Low, Channel::Email),
        "updated fields"
    );
    ensure_eq!(
        (
            u.requester,
            u.requester_phone.clone(),
            u.organization,
            u.assignee,
            u.queue
        ),
        (
            Some(c2),
            None,
            Some(org2),
            Some(user(&f.rep2)),
            Some(f.team_y)
        ),
        "updated parties"
    );
    ensure_eq!(u.tags, vec!["paper jam".to_owned()], "tags");
    ensure!(u.custom.is_empty(), "custom value removed");
    ensure_eq!(tk.get(&admin, x.id).await.at("get")?, u, "stored");
    match tk.update(&admin, x.id, x.version, patch).await {
        Err(Error::Conflict { .. }) => {}
        other => return Err(Failure::new(format!("stale update: {other:?}"))),
    }
    let audit = store
        .audit_unchecked(&admin, &RecordRef::from(x.id))
        .await
        .at("audit")?;
    let fields: BTreeSet<&str> = audit.iter().map(|a| a.change.field.as_str()).collect();
    for fld in [
        "*",
        "subject",
        "priority",
        "requester",
        "assignee",
        "queue",
        "tags",
        "custom",
    ] {
        ensure!(fields.contains(fld), "audit of {fld}: {fields:?}");
    }
    let hist = tk.history(&admin, x.id).await.at("history")?;
    ensure_eq!(
        hist.iter().map(|h| h.kind).collect::<Vec<_>>(),
        vec![HistoryKind::Created, HistoryKind::Priority],
        "creation and the priority change are in the history"
    );
    ensure_eq!(
        (hist[1].from_priority, hist[1].to_priority),
        (Some(TicketPriority::High), TicketPriority::Low),
        "priority history"
    );

    // Delete and restore.
    let d = tk.delete(&admin, x.id, u.version).await.at("delete")?;
    expect_not_found(tk.get(&admin, x.id).await, "a deleted ticket is not found")?;
    let listed = tk.list(&admin, &Query::new()).await.at("list")?;
    ensure!(!listed.items.iter().any(|t| t.id == x.id), "not listed");
    let listed = tk
        .list(&admin, &Query::new().include_deleted())
        .await
        .at("list deleted")?;
    ensure!(
        listed.items.iter().any(|t| t.id == x.id),
        "listed with deleted"
    );
    let r = tk.restore(&admin, x.id, d.version).await.at("restore")?;
    ensure_eq!(r.deleted_at, None, "restored");
    let next = tk
        .create(&admin, NewTicket::new("after", c))
        .await
        .at("create after")?;
    ensure_eq!(next.number, 3, "numbers are never reused");
    let kinds = record_event_kinds(store, &admin, x.id).await?;
    ensure_eq!(
        kinds,
        vec![
            "ticket.created".to_owned(),
            "ticket.updated".into(),
            "ticket.deleted".into(),
            "ticket.restored".into()
        ],
        "events"
    );
    Ok(())
}

/// Bad input is a Validation error naming every bad field, and nothing is written.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tk = &f.tickets;
    let good = ticket(&f, &f.admin, "good").await?;
    let before = row_counts(store, &f.admin, TABLES).await?;
    let mut input = NewTicket::new("", ContactId::new())
        .description("x".repeat(20_001))
        .organization(OrganizationId::new())
        .assignee(UserId::new())
        .queue(crmkit_core::TeamId::new())
        .tag(" ")
        .tag("a|b")
        .tag("y".repeat(51))
        .custom("nope", CustomValue::Text("x".into()))
        .custom(PRODUCT_FIELD, CustomValue::Text("z".repeat(51)));
    input.requester_phone = Some("   ".into());
    let r = tk.create(&f.admin, input).await;
    let Err(Error::Validation(v)) = &r else {
        return Err(Failure::new(format!("bad create: {r:?}")));
    };
    for field in [
        "subject",
        "description",
        "requester",
        "requester_phone",
        "organization",
        "assignee",
        "queue",
        "tags[0]",
        "tags[1]",
        "tags[2]",
        "custom.nope",
        "custom.product",
    ] {
        ensure!(v.has(field), "create names {field}: {v:?}");
    }
    let too_many = NewTicket {
        tags: (0..21).map(|i| format!("t{i}")).collect(),
        ..NewTicket::new("s", ContactId::new())
    };
    expect_validation(tk.create(&f.admin, too_many).await, "tags", "too many tags")?;
    expect_validation(
        tk.create(
            &f.admin,
            NewTicket {
                subject: "nobody".into(),
                ..NewTicket::default()
            },
        )
        .await,
        "requester",
        "neither requester nor phone",
    )?;
    expect_validation(
        tk.create(&f.admin, NewTicket::new("s".repeat(201), ContactId::new()))
            .await,
        "subject",
        "subject too long",
    )?;
    // Update, comment, escalation and rating.
    let r = tk
        .update(
            &f.admin,
            good.id,
            good.version,
            TicketPatch {
                subject: Some(" ".into()),
                requester: Some(None),
                assignee: Some(None),
                queue: Some(None),
                tags: Some(vec!["".into()]),
                ..TicketPatch::default()
            },
        )
        .await;
    let Err(Error::Validation(v)) = &r else {
        return Err(Failure::new(format!("bad update: {r:?}")));
    };
    for field in ["subject", "requester", "assignee", "tags[0]"] {
        ensure!(v.has(field), "update names {field}: {v:?}");
    }
    let bad_attachment = Attachment {
        name: "".into(),
        size: -1,
        content_type: "png".into(),
        storage_key: "".into(),
    };
    let r = tk
        .comment(
            &f.admin,
            good.id,
            NewComment {
                body: "".into(),
                public: false,
                by_requester: true,
                attachments: vec![attachment(), bad_attachment],
            },
        )
        .await;
    let Err(Error::Validation(v)) = &r else {
        return Err(Failure::new(format!("bad comment: {r:?}")));
    };
    for field in [
        "body",
        "public",
        "attachments[1].name",
        "attachments[1].size",
        "attachments[1].content_type",
        "attachments[1].storage_key",
    ] {
        ensure!(v.has(field), "comment names {field}: {v:?}");
    }
    ensure!(!v.has("attachments[0].name"), "a good attachment passes");
    let r = tk
        .escalate(
            &f.admin,
            good.id,
            good.version,
            Escalation {
                priority: Some(TicketPriority::Low),
                queue: Some(crmkit_core::TeamId::new()),
                assignee: Some(UserId::new()),
                reason: "".into(),
            },
        )
        .await;
    let Err(Error::Validation(v)) = &r else {
        return Err(Failure::new(format!("bad escalation: {r:?}")));
    };
    for field in ["reason", "priority", "queue", "assignee"] {
        ensure!(v.has(field), "escalation names {field}: {v:?}");
    }
    expect_validation(
        tk.escalate(&f.admin, good.id, good.version, Escalation::because("why"))
            .await,
        "escalation",
        "an escalation that does nothing",
    )?;
    for rating in [0, 6, -1] {
        expect_validation(
            tk.rate(&f.admin, good.id, rating, None).await,
            "rating",
            "rating out of range",
        )?;
    }
    ensure_eq!(
        row_counts(store, &f.admin, TABLES).await?,
        before,
        "nothing written by bad input"
    );
    ensure_eq!(
        tk.get(&f.admin, good.id).await.at("get")?,
        good,
        "the ticket is unchanged"
    );
    Ok(())
}

/// The status transition table: every allowed move works, every refused one is
/// InvalidTransition and changes nothing; moving to the current status is a no-op;
/// solving, reopening and closing stamp their times and the history.
pub async fn transition_table(store: &Store) -> CheckResult {
    use TicketStatus::*;
    let f = setup(store).await?;
    let tk = &f.tickets;
    let allowed: &[(TicketStatus, &[TicketStatus])] = &[
        (New, &[Open, Pending, OnHold, Solved, Closed]),
        (Open, &[Pending, OnHold, Solved, Closed]),
        (Pending, &[Open, OnHold, Solved, Closed]),
        (OnHold, &[Open, Pending, Solved, Closed]),
        (Solved, &[Open, Closed]),
        (Closed, &[]),
    ];
    let c = contact(&f, &f.admin, None).await?;
    for (from, to_ok) in allowed {
        for to in TicketStatus::ALL {
            let mut x = tk
                .create(&f.admin, NewTicket::new("t", c))
                .await
                .at("create")?;
            if *from != New {
                x = status_to(&f, &f.admin, &x, *from).await?;
            }
            let r = tk.set_status(&f.admin, x.id, x.version, to).await;
            let what = format!("{} -> {}", from.as_str(), to.as_str());
            if to == *from {
                let y = r.at(&what)?;
                ensure_eq!(y, x, "{what} changes nothing");
            } else if to_ok.contains(&to) {
                let y = r.at(&what)?;
                ensure_eq!((y.status, y.version), (to, x.version + 1), "{what}");
                ensure_eq!(tk.get(&f.admin, x.id).await.at("get")?, y, "{what} stored");
                let h = tk.history(&f.admin, x.id).await.at("history")?;
                let last = h.last().ok_or_else(|| Failure::new("no history"))?;
                ensure_eq!(
                    (last.kind, last.from_status, last.to_status, last.version),
                    (HistoryKind::Status, Some(*from), to, y.version),
                    "{what} history"
                );
                match to {
                    Solved => ensure!(
                        y.solved_at.is_some() && y.solve_count == x.solve_count + 1,
                        "{what} stamps solved_at"
                    ),
                    Closed => ensure!(y.closed_at.is_some(), "{what} stamps closed_at"),
                    Open if *from == Solved => ensure!(
                        y.solved_at.is_none() && y.solve_count == 1,
                        "{what} clears solved_at and keeps the count"
                    ),
                    _ => {}
                }
            } else {
                match r {
                    Err(Error::InvalidTransition { .. }) => {}
                    other => {
                        return Err(Failure::new(format!(
                            "{what}: expected InvalidTransition, got {other:?}"
                        )));
                    }
                }
                ensure_eq!(
                    tk.get(&f.admin, x.id).await.at("get")?,
                    x,
                    "{what} refused changes nothing"
                );
            }
        }
    }
    let x = ticket(&f, &f.admin, "stale").await?;
    match tk.set_status(&f.admin, x.id, x.version + 1, Open).await {
        Err(Error::Conflict { .. }) => {}
        other => return Err(Failure::new(format!("stale status change: {other:?}"))),
    }
    let kinds = record_event_kinds(store, &f.admin, x.id).await?;
    ensure_eq!(kinds, vec!["ticket.created".to_owned()], "nothing emitted");
    Ok(())
}

/// 16 concurrent creates in one tenant (and 8 in another at the same time) get unique
/// numbers 1..=16 (and 1..=8); the next create continues after them.
pub async fn concurrent_numbering(store: &Store) -> CheckResult {
    let a = setup(store).await?;
    let b = setup(store).await?;
    let ca = contact(&a, &a.admin, None).await?;
    let cb = contact(&b, &b.admin, None).await?;
    let mut handles = vec![];
    for (f, c, n) in [(&a, ca, 16u32), (&b, cb, 8)] {
        for i in 0..n {
            let (tk, ctx) = (f.tickets.clone(), f.admin.clone());
            handles.push((
                f.tenant,
                tokio::spawn(
                    async move { tk.create(&ctx, NewTicket::new(format!("t{i}"), c)).await },
                ),
            ));
        }
    }
    let mut numbers_a = vec![];
    let mut numbers_b = vec![];
    for (tenant, h) in handles {
        let x = h
            .await
            .map_err(|e| Failure::new(format!("join: {e}")))?
            .at("concurrent create")?;
        if tenant == a.tenant {
            numbers_a.push(x.number);
        } else {
            numbers_b.push(x.number);
        }
    }
    numbers_a.sort_unstable();
    numbers_b.sort_unstable();
    ensure_eq!(
        numbers_a,
        (1..=16).collect::<Vec<u64>>(),
        "tenant A numbers"
    );
    ensure_eq!(numbers_b, (1..=8).collect::<Vec<u64>>(), "tenant B numbers");
    let next = a
        .tickets
        .create(&a.admin, NewTicket::new("next", ca))
        .await
        .at("next")?;
    ensure_eq!(next.number, 17, "the next number follows");
    let listed = a
        .tickets
        .list(&a.admin, &Query::new().sort_asc("number").limit(100))
        .await
        .at("list")?;
    let by_number: Vec<u64> = listed.items.iter().map(|t| t.number).collect();
    ensure_eq!(
        by_number,
        (1..=17).collect::<Vec<u64>>(),
        "listed by number"
    );
    Ok(())
}

/// `first_response_at` is stamped once, by the first public reply of an agent; internal
/// notes and requester comments do not stamp it.
pub async fn first_response(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tk = &f.tickets;
    let (ctx, clock) = at_time(&f.rep, t(2027, 4, 1, 9));
    let x = ticket(&f, &ctx, "help").await?;
    clock.advance(Duration::minutes(5));
    let n = tk
        .comment(&ctx, x.id, NewComment::internal("looking"))
        .await
        .at("internal note")?;
    ensure_eq!(
        n.ticket,
        x,
        "an internal note changes nothing on the ticket"
    );
    let r = tk
        .comment(&ctx, x.id, NewComment::from_requester("hello?"))
        .await
        .at("requester comment")?;
    ensure_eq!(r.ticket.first_response_at, None, "not by the requester");
    ensure_eq!(
        r.comment.author,
        CommentAuthor::Requester {
            contact: x.requester.unwrap_or_else(ContactId::new)
        },
        "the requester is the author"
    );
    clock.advance(Duration::minutes(5));
    let first_at = t(2027, 4, 1, 9) + Duration::minutes(10);
    let a = tk
        .comment(&ctx, x.id, NewComment::reply("on it").attach(attachment()))
        .await
        .at("agent reply")?;
    ensure_eq!(a.ticket.first_response_at, Some(first_at), "stamped");
    ensure_eq!(a.ticket.status, TicketStatus::Open, "a new ticket opens");
    ensure_eq!(a.ticket.version, x.version + 1, "versioned");
    ensure_eq!(
        a.comment.author,
        CommentAuthor::Agent { user: user(&f.rep) },
        "the agent is the author"
    );
    clock.advance(Duration::minutes(5));
    let b = tk
        .comment(&ctx, x.id, NewComment::reply("still on it"))
        .await
        .at("second reply")?;
    ensure_eq!(b.ticket.first_response_at, Some(first_at), "stamped once");
    ensure_eq!(b.ticket.version, a.ticket.version, "not written again");
    let all = tk
        .comments(&ctx, x.id, true, None, 2)
        .await
        .at("comments")?;
    ensure_eq!(all.items.len(), 2, "first page");
    let cur = all
        .next_cursor
        .clone()
        .ok_or_else(|| Failure::new("a second page"))?;
    let rest = tk
        .comments(&ctx, x.id, true, Some(cur), 2)
        .await
        .at("second page")?;
    ensure_eq!(rest.items.len(), 2, "second page");
    ensure_eq!(rest.next_cursor, None, "no third page");
    ensure_eq!(rest.items[0], a.comment, "attachments round-trip");
    let public = tk
        .comments(&ctx, x.id, false, None, 10)
        .await
        .at("public comments")?;
    ensure_eq!(public.items.len(), 3, "internal notes left out");
    let kinds = record_event_kinds(store, &f.admin, x.id).await?;
    ensure_eq!(
        kinds,
        vec![
            "ticket.created".to_owned(),
            "ticket.commented".into(),
            "ticket.commented".into(),
            "ticket.commented".into(),
            "ticket.status_changed".into(),
            "ticket.commented".into(),
        ],
        "events"
    );
    Ok(())
}

/// Comment rules: a requester comment moves a pending ticket back to open (not an on-hold
/// or solved one); a closed ticket takes no comments; a requester comment needs a
/// requester contact.
pub async fn comment_rules(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tk = &f.tickets;
    let x = ticket(&f, &f.rep, "pending").await?;
    let x = status_to(&f, &f.rep, &x, TicketStatus::Pending).await?;
    let r = tk
        .comment(&f.rep, x.id, NewComment::from_requester("here you go"))
        .await
        .at("requester reply")?;
    ensure_eq!(r.ticket.status, TicketStatus::Open, "pending -> open");
    let h = tk.history(&f.rep, x.id).await.at("history")?;
    let last = h.last().ok_or_else(|| Failure::new("no history"))?;
    ensure_eq!(
        (last.from_status, last.to_status, last.reason.as_deref()),
        (
            Some(TicketStatus::Pending),
            TicketStatus::Open,
            Some("the requester replied")
        ),
        "history of the automatic move"
    );
    for status in [TicketStatus::OnHold, TicketStatus::Solved] {
        let y = ticket(&f, &f.rep, "other").await?;
        let y = status_to(&f, &f.rep, &y, status).await?;
        let r = tk
            .comment(&f.rep, y.id, NewComment::from_requester("hi"))
            .await
            .at("requester comment")?;
        ensure_eq!(r.ticket, y, "{status:?} stays");
    }
    let z = ticket(&f, &f.rep, "closed").await?;
    let z = status_to(&f, &f.rep, &z, TicketStatus::Closed).await?;
    let before = row_counts(store, &f.admin, TABLES).await?;
    for c in [
        NewComment::reply("x"),
        NewComment::internal("x"),
        NewComment::from_requester("x"),
    ] {
        match tk.comment(&f.rep, z.id, c).await {
            Err(Error::InvalidTransition { .. }) => {}
            other => return Err(Failure::new(format!("comment on closed: {other:?}"))),
        }
    }
    ensure_eq!(
        row_counts(store, &f.admin, TABLES).await?,
        before,
        "nothing written"
    );
    let p = tk
        .create(&f.rep, NewTicket::from_phone("call", "+49 30 901820"))
        .await
        .at("phone ticket")?;
    expect_validation(
        tk.comment(&f.rep, p.id, NewComment::from_requester("x"))
            .await,
        "by_requester",
        "requester comment without a requester",
    )?;
    ensure_eq!(
        row_counts(store, &f.admin, TABLES).await?[COMMENT_TABLE],
        before[COMMENT_TABLE],
        "no comment written"
    );
    Ok(())
}

/// Satisfaction: only solved (or solved then closed) tickets; 1 to 5; one per solve;
/// reopening and solving again allows another.
pub async fn satisfaction_rules(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tk = &f.tickets;
    let x = ticket(&f, &f.rep, "rate me").await?;
    match tk.rate(&f.rep, x.id, 5, None).await {
        Err(Error::InvalidTransition { .. }) => {}
        other => return Err(Failure::new(format!("rating a new ticket: {other:?}"))),
    }
    let x = status_to(&f, &f.rep, &x, TicketStatus::Solved).await?;
    expect_validation(tk.rate(&f.rep, x.id, 0, None).await, "rating", "0")?;
    expect_validation(tk.rate(&f.rep, x.id, 6, None).await, "rating", "6")?;
    expect_validation(
        tk.rate(&f.rep, x.id, 3, Some("c".repeat(2001))).await,
        "comment",
        "comment too long",
    )?;
    let s1 = tk
        .rate(&f.rep, x.id, 4, Some("good".into()))
        .await
        .at("rate")?;
    ensure_eq!((s1.solve, s1.rating), (1, 4), "first rating");
    match tk.rate(&f.rep, x.id, 5, None).await {
        Err(Error::Duplicate { field, .. }) if field == "satisfaction" => {}
        other => return Err(Failure::new(format!("second rating: {other:?}"))),
    }
    let x = status_to(&f, &f.rep, &x, TicketStatus::Open).await?;
    match tk.rate(&f.rep, x.id, 5, None).await {
        Err(Error::InvalidTransition { .. }) => {}
        other => return Err(Failure::new(format!("rating a reopened ticket: {other:?}"))),
    }
    let x = status_to(&f, &f.rep, &x, TicketStatus::Solved).await?;
    let x = status_to(&f, &f.rep, &x, TicketStatus::Closed).await?;
    let s2 = tk.rate(&f.rep, x.id, 2, None).await.at("rate closed")?;
    ensure_eq!(
        (s2.solve, s2.rating),
        (2, 2),
        "second solve rated after closing"
    );
    match tk.rate(&f.rep, x.id, 5, None).await {
        Err(Error::Duplicate { .. }) => {}
        other => return Err(Failure::new(format!("third rating: {other:?}"))),
    }
    ensure_eq!(
        tk.satisfaction(&f.rep, x.id).await.at("satisfaction")?,
        vec![s1, s2],
        "both ratings, by solve"
    );
    let y = ticket(&f, &f.rep, "closed unsolved").await?;
    let y = status_to(&f, &f.rep, &y, TicketStatus::Closed).await?;
    match tk.rate(&f.rep, y.id, 5, None).await {
        Err(Error::InvalidTransition { .. }) => {}
        other => {
            return Err(Failure::new(format!(
                "rating a never-solved ticket: {other:?}"
            )));
        }
    }
    let kinds = record_event_kinds(store, &f.admin, x.id).await?;
    ensure_eq!(
        kinds.iter().filter(|k| *k == "ticket.rated").count(),
        2,
        "two ticket.rated events"
    );
    Ok(())
}

/// Escalation raises the priority and/or hands the ticket over, with its reason in the
/// history; it is versioned; a closed ticket cannot be escalated.
pub async fn escalation(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tk = &f.tickets;
    let x = ticket(&f, &f.rep, "escalate me").await?;
    let e = tk
        .escalate(
            &f.rep,
            x.id,
            x.version,
            Escalation::because("VIP customer").priority(TicketPriority::Urgent),
        )
        .await
        .at("raise priority")?;
    ensure_eq!(
        (e.priority, e.assignee, e.version),
        (TicketPriority::Urgent, Some(user(&f.rep)), x.version + 1),
        "priority raised, still assigned"
    );
    match tk
        .escalate(
            &f.rep,
            x.id,
            x.version,
            Escalation::because("again").queue(f.team_y),
        )
        .await
    {
        Err(Error::Conflict { .. }) => {}
        other => return Err(Failure::new(format!("stale escalation: {other:?}"))),
    }
    expect_validation(
        tk.escalate(
            &f.rep,
            x.id,
            e.version,
            Escalation::because("same").priority(TicketPriority::Urgent),
        )
        .await,
        "priority",
        "not higher",
    )?;
    let h = tk
        .escalate(
            &f.rep,
            x.id,
            e.version,
            Escalation::because("needs tier 2").queue(f.team_y),
        )
        .await
        .at("hand to team Y")?;
    ensure_eq!(
        (h.queue, h.assignee),
        (Some(f.team_y), None),
        "in team Y's queue, unassigned"
    );
    expect_not_found(
        tk.get(&f.rep, x.id).await,
        "the rep of team X no longer sees it",
    )?;
    let seen = tk.get(&f.rep_y, x.id).await.at("team Y sees it")?;
    let g = tk
        .escalate(
            &f.rep_y,
            x.id,
            seen.version,
            Escalation::because("taking it").assignee(user(&f.rep_y)),
        )
        .await
        .at("assign to self")?;
    ensure_eq!(
        (g.queue, g.assignee),
        (Some(f.team_y), Some(user(&f.rep_y))),
        "assigned within the queue"
    );
    let hist = tk.history(&f.admin, x.id).await.at("history")?;
    let esc: Vec<(Option<&str>, Option<TicketPriority>, TicketPriority)> = hist
        .iter()
        .filter(|h| h.kind == HistoryKind::Escalated)
        .map(|h| (h.reason.as_deref(), h.from_priority, h.to_priority))
        .collect();
    ensure_eq!(
        esc,
        vec![
            (
                Some("VIP customer"),
                Some(TicketPriority::Normal),
                TicketPriority::Urgent
            ),
            (
                Some("needs tier 2"),
                Some(TicketPriority::Urgent),
                TicketPriority::Urgent
            ),
            (
                Some("taking it"),
                Some(TicketPriority::Urgent),
                TicketPriority::Urgent
            ),
        ],
        "escalations in the history"
    );
    let kinds = record_event_kinds(store, &f.admin, x.id).await?;
    ensure_eq!(
        kinds.iter().filter(|k| *k == "ticket.escalated").count(),
        3,
        "ticket.escalated events"
    );
    let closed = status_to(&f, &f.rep_y, &g, TicketStatus::Closed).await?;
    match tk
        .escalate(
            &f.admin,
            x.id,
            closed.version,
            Escalation::because("late").queue(f.team_x),
        )
        .await
    {
        Err(Error::InvalidTransition { .. }) => {}
        other => return Err(Failure::new(format!("escalating closed: {other:?}"))),
    }
    Ok(())
}

/// A rep of another team can neither see nor change a ticket; another tenant sees
/// nothing; reps assign only to themselves and their teams; ReadOnly cannot write.
pub async fn visibility_and_tenants(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let other = setup(store).await?;
    let tk = &f.tickets;
    let c = contact(&f, &f.rep, None).await?;
    let x = tk
        .create(&f.rep, NewTicket::new("team", c).queue(f.team_x))
        .await
        .at("create in team X")?;
    ensure_eq!(x.assignee, None, "queued only");
    ensure!(tk.get(&f.rep2, x.id).await.is_ok(), "team mate sees it");
    ensure!(tk.get(&f.manager, x.id).await.is_ok(), "manager sees it");
    expect_not_found(tk.get(&f.rep_y, x.id).await, "other team does not see it")?;
    let before = row_counts(store, &f.admin, TABLES).await?;
    for (what, r) in [
        (
            "comment",
            tk.comment(&f.rep_y, x.id, NewComment::reply("x"))
                .await
                .map(|_| ()),
        ),
        (
            "status",
            tk.set_status(&f.rep_y, x.id, x.version, TicketStatus::Open)
                .await
                .map(|_| ()),
        ),
        (
            "update",
            tk.update(
                &f.rep_y,
                x.id,
                x.version,
                TicketPatch {
                    subject: Some("mine".into()),
                    ..TicketPatch::default()
                },
            )
            .await
            .map(|_| ()),
        ),
        (
            "escalate",
            tk.escalate(
                &f.rep_y,
                x.id,
                x.version,
                Escalation::because("x").queue(f.team_y),
            )
            .await
            .map(|_| ()),
        ),
        (
            "delete",
            tk.delete(&f.rep_y, x.id, x.version).await.map(|_| ()),
        ),
        ("history", tk.history(&f.rep_y, x.id).await.map(|_| ())),
    ] {
        expect_not_found(r, &format!("{what} by another team"))?;
    }
    ensure_eq!(
        row_counts(store, &f.admin, TABLES).await?,
        before,
        "nothing written"
    );
    let listed = tk.list(&f.rep_y, &Query::new()).await.at("list rep_y")?;
    ensure!(listed.items.is_empty(), "other team lists nothing");
    let listed = tk.list(&f.rep2, &Query::new()).await.at("list rep2")?;
    ensure_eq!(listed.items.len(), 1, "team mate lists it");
    expect_not_found(
        other.tickets.get(&other.admin, x.id).await,
        "other tenant does not see it",
    )?;
    expect_not_found(
        other.tickets.get_by_number(&other.admin, x.number).await,
        "other tenant has no such number",
    )?;
    let listed = other
        .tickets
        .list(&other.admin, &Query::new())
        .await
        .at("list other")?;
    ensure!(listed.items.is_empty(), "other tenant lists nothing");
    expect_denied(
        tk.create(&f.readonly, NewTicket::new("x", c)).await,
        "readonly create",
    )?;
    expect_denied(
        tk.comment(&f.readonly, x.id, NewComment::reply("x")).await,
        "readonly comment",
    )?;
    expect_denied(
        tk.create(&f.rep, NewTicket::new("x", c).assignee(user(&f.rep2)))
            .await,
        "rep assigns to someone else",
    )?;
    expect_denied(
        tk.create(&f.rep, NewTicket::new("x", c).queue(f.team_y))
            .await,
        "rep queues to another team",
    )?;
    Ok(())
}

/// A failure at any write of a create or a comment leaves nothing behind.
pub async fn atomicity(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let tk = &f.tickets;
    let c = contact(&f, &f.rep, None).await?;
    let (n, made) = fail_at_every_write_counting(store, &f.admin, &TABLES, "create", async || {
        tk.create(
            &f.rep,
            NewTicket::new("atomic", c)
                .tag("a")
                .custom(PRODUCT_FIELD, CustomValue::Text("p".into())),
        )
        .await
    })
    .await?;
    ensure!(n < 100, "too many writes");
    ensure!(n > 4, "the create has several writes ({n})");
    // Each failed create used up the number it reserved: gaps are allowed, a number
    // given twice is not.
    ensure_eq!(made.number, n as u64 + 1, "numbers after failed creates");
    let hit = tk
        .list(
            &f.rep,
            &Query::new().filter(Filter::eq("custom.product", "p")),
        )
        .await
        .at("custom index written")?;
    ensure_eq!(hit.items.len(), 1, "written whole");
    let before = row_counts(store, &f.admin, TABLES).await?;
    let unchanged = async |n| {
        ensure_eq!(
            row_counts(store, &f.admin, TABLES).await?,
            before,
            "comment: nothing written at write {n}"
        );
        ensure_eq!(
            tk.get(&f.rep, made.id).await.at("get")?,
            made,
            "comment: ticket unchanged at write {n}"
        );
        Ok(())
    };
    let (n, x) = fail_at_every_write(store, "comment", unchanged, async || {
        tk.comment(&f.rep, made.id, NewComment::reply("first"))
            .await
    })
    .await?;
    ensure!(n < 100, "too many writes");
    ensure!(n > 4, "the comment has several writes ({n})");
    let got = tk.get(&f.rep, made.id).await.at("get")?;
    ensure_eq!(got, x.ticket, "written whole");
    ensure!(got.first_response_at.is_some(), "first response recorded");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name. [`atomicity`] injects faults into the backend:
    /// run it alone.
    names: tickets_check_names,
    checks: [
        crud_round_trip,
        bad_input,
        transition_table,
        concurrent_numbering,
        first_response,
        comment_rules,
        satisfaction_rules,
        escalation,
        visibility_and_tenants,
        atomicity,
        reference_rule,
    ],
}

/// The reasons a result gives for `field`: `Ok` only for a Validation error naming it.
fn reasons<T: std::fmt::Debug>(
    r: crmkit_core::Result<T>,
    field: &str,
    what: &str,
) -> CheckResult<Vec<String>> {
    match r {
        Err(Error::Validation(v)) if v.has(field) => Ok(v
            .errors
            .into_iter()
            .filter(|e| e.field == field)
            .map(|e| e.reason)
            .collect()),
        other => Err(Failure::new(format!(
            "{what}: expected a Validation error naming {field:?}, got {other:?}"
        ))),
    }
}

/// Passes when `r` is a Validation error whose reasons for `field` are exactly `want`.
#[track_caller]
fn expect_reasons<T: std::fmt::Debug>(
    r: crmkit_core::Result<T>,
    field: &str,
    want: &[String],
    what: &str,
) -> CheckResult {
    ensure_eq!(reasons(r, field, what)?, want, "{what}");
    Ok(())
}

/// The reference rule (`Records::visible`) on the references the generic `references`
/// check does not reach (their target kinds, users and teams, have no fixture, or they sit
/// inside an object): a ticket's `assignee` and `queue` on create, update and escalation,
/// an inbound call's `agent` and routing `assignee`, and an SLA policy's
/// `conditions.organizations[i]`. A reference to another tenant's record, to a record of
/// another kind and (organizations) to a deleted one gives exactly the error of a
/// reference to an id that does not exist, with the reason `reference_reason` gives;
/// nothing is written.
pub async fn reference_rule(store: &Store) -> CheckResult {
    use crmkit_core::TeamId;
    use crmkit_core::record::reference_reason;
    use crmkit_tickets::sla::{NewSlaPolicy, SlaConditions};
    use crmkit_tickets::{CallRouting, InboundCall};

    let f = setup(store).await?;
    let other = setup(store).await?;
    let c = contact(&f, &f.admin, None).await?;
    let t = f
        .tickets
        .create(&f.admin, NewTicket::new("Base", c))
        .await
        .at("base ticket")?;
    let before = row_counts(store, &f.admin, TABLES).await?;
    let user_reason = vec![reference_reason(&RecordKind::USER)];
    let team_reason = vec![reference_reason(&RecordKind::TEAM)];
    // Users: none, another tenant's, a team's id (another kind).
    let users = [
        ("nonexistent", UserId::new()),
        ("foreign", user(&other.admin)),
        ("wrong kind", UserId::from_uuid(f.team_x.as_uuid())),
    ];
    for (what, u) in users {
        let r = f
            .tickets
            .create(&f.admin, NewTicket::new("x", c).assignee(u))
            .await;
        expect_reasons(
            r,
            "assignee",
            &user_reason,
            &format!("create with a {what} assignee"),
        )?;
        let r = f
            .tickets
            .update(
                &f.admin,
                t.id,
                t.version,
                TicketPatch::new().assignee(Some(u)),
            )
            .await;
        expect_reasons(
            r,
            "assignee",
            &user_reason,
            &format!("update to a {what} assignee"),
        )?;
        let r = f
            .tickets
            .escalate(
                &f.admin,
                t.id,
                t.version,
                Escalation::because("why").assignee(u),
            )
            .await;
        expect_reasons(
            r,
            "assignee",
            &user_reason,
            &format!("escalate to a {what} assignee"),
        )?;
        let call = InboundCall::new("+4930901820", "+4930000000", t.created_at).agent(u);
        let r = f
            .tickets
            .record_inbound_call(&f.admin, call, CallRouting::new())
            .await;
        expect_reasons(
            r,
            "agent",
            &user_reason,
            &format!("a call taken by a {what} agent"),
        )?;
        let call = InboundCall::new("+4930901820", "+4930000000", t.created_at);
        let r = f
            .tickets
            .record_inbound_call(&f.admin, call, CallRouting::new().assignee(u))
            .await;
        expect_reasons(
            r,
            "assignee",
            &user_reason,
            &format!("a call routed to a {what} assignee"),
        )?;
    }
    // Teams: none, another tenant's, a user's id (another kind).
    let teams = [
        ("nonexistent", TeamId::new()),
        ("foreign", other.team_x),
        ("wrong kind", TeamId::from_uuid(user(&f.rep).as_uuid())),
    ];
    for (what, q) in teams {
        let r = f
            .tickets
            .create(&f.admin, NewTicket::new("x", c).queue(q))
            .await;
        expect_reasons(
            r,
            "queue",
            &team_reason,
            &format!("create in a {what} queue"),
        )?;
        let r = f
            .tickets
            .update(&f.admin, t.id, t.version, TicketPatch::new().queue(Some(q)))
            .await;
        expect_reasons(
            r,
            "queue",
            &team_reason,
            &format!("update to a {what} queue"),
        )?;
        let r = f
            .tickets
            .escalate(
                &f.admin,
                t.id,
                t.version,
                Escalation::because("why").queue(q),
            )
            .await;
        expect_reasons(
            r,
            "queue",
            &team_reason,
            &format!("escalate to a {what} queue"),
        )?;
    }
    ensure_eq!(
        row_counts(store, &f.admin, TABLES).await?,
        before,
        "refused references wrote rows"
    );
    // Organizations in policy conditions: none, another tenant's, deleted, a contact's id.
    let mut spec = crmkit_tickets::calendar::CalendarSpec::new("UTC");
    spec.hours.monday = vec![crmkit_tickets::calendar::Interval::hm(9, 0, 17, 0)];
    let cal = f
        .tickets
        .sla_calendars()
        .create(&f.admin, "office", spec)
        .await
        .at("calendar")?;
    let gone = f.org(&f.admin, "Gone").await?;
    f.contacts
        .organizations()
        .delete(&f.admin, gone.id, gone.version)
        .await
        .at("delete organization")?;
    let live = organization(&f, &f.admin).await?;
    let policy = f
        .tickets
        .sla_policies()
        .create(
            &f.admin,
            NewSlaPolicy::new("by org", cal.id).conditions(SlaConditions::any().organization(live)),
        )
        .await
        .at("policy with a live organization")?;
    let org_reason = vec![reference_reason(&RecordKind::ORGANIZATION)];
    let field = "conditions.organizations[0]";
    for (what, o) in [
        ("nonexistent", OrganizationId::new()),
        ("foreign", organization(&other, &other.admin).await?),
        ("deleted", gone.id),
        ("wrong kind", OrganizationId::from_uuid(c.as_uuid())),
    ] {
        let input =
            NewSlaPolicy::new("by org", cal.id).conditions(SlaConditions::any().organization(o));
        let r = f
            .tickets
            .sla_policies()
            .create(&f.admin, input.clone())
            .await;
        expect_reasons(
            r,
            field,
            &org_reason,
            &format!("policy on a {what} organization"),
        )?;
        let r = f
            .tickets
            .sla_policies()
            .update(&f.admin, policy.id, policy.version, input)
            .await;
        expect_reasons(
            r,
            field,
            &org_reason,
            &format!("policy changed to a {what} organization"),
        )?;
    }
    Ok(())
}
