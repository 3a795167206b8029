//! The activities API: commands, reminders, follow-up tracking, work lists and the
//! timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use crmkit_core::directory::parse_time_zone;
use crmkit_core::event::{EVENTS_TABLE, decode_timestamp};
use crmkit_core::lookup::{self, LookupKind};
use crmkit_core::record::reference_reason;
use crmkit_core::service::{
    self, OwnerChecks, changed_columns, stage_insert, stage_update, to_json, visibility_scope,
};
use crmkit_core::store::{BoxFuture, CmpOp, Cond, OrderKey, Row, Select, Value, Write};
use crmkit_core::text::{check_text, parse_phone};
use crmkit_core::{
    ActivityId, Changeset, Ctx, Error, NewEvent, Page, Query, RecordKind, RecordRef, ReminderId,
    Result, Store, UserId, ValidationErrors,
};

use crate::followup::col as fcol;
use crate::inputs::*;
use crate::model::*;
use crate::recur;
use crate::rows::{
    self, ACTIVITY, ACTIVITY_FIELDS, ACTIVITY_TABLE, FOLLOWUP_TABLE, RELATION_TABLE, REMINDER_TABLE,
};

/// Event kinds this module emits.
pub const EVENT_KINDS: &[&str] = &[
    "activity.created",
    "activity.updated",
    "activity.deleted",
    "activity.restored",
    "reminder.added",
    "reminder.delivered",
];

/// Longest subject.
pub const MAX_SUBJECT: usize = 500;
/// Longest free text (descriptions, notes, bodies).
pub const MAX_TEXT: usize = 20_000;
/// Most related records of one activity.
pub const MAX_RELATED: usize = 50;
/// Most records a logged call is linked to automatically by its number.
pub const MAX_AUTO_LINKS: u32 = 10;
/// Most activities [`Activities::create_many`] takes in one batch.
pub const MAX_BATCH: usize = 1000;

fn record_cond(r: &RecordRef) -> Cond {
    Cond::eq("record_kind", r.kind.as_str()).and(Cond::eq("record_id", r.id))
}

/// The kind named in a Conflict or Duplicate of a follow-up row (its table's name).
const FOLLOWUP_KIND: RecordKind = RecordKind::new(FOLLOWUP_TABLE);

/// Whether a commit failed because a concurrent command changed a follow-up row first.
fn followup_race(e: &Error) -> bool {
    match e {
        Error::Conflict { record, .. } => record.kind == FOLLOWUP_KIND,
        Error::Duplicate { kind, .. } => *kind == FOLLOWUP_KIND,
        _ => false,
    }
}

/// What an activity contributes to its records' follow-up: when it was done (the last
/// contact) or when it is planned (the next activity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Contribution {
    done_at: Option<DateTime<Utc>>,
    next_at: Option<DateTime<Utc>>,
}

/// A task done counts at its completion, a call at its start, a note or email at its
/// creation; an open task with a due counts as next at its due instant; a meeting counts
/// as next at its start while the start is after the time of the write, else as done.
fn contribution(a: &Activity, due_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Contribution {
    let none = Contribution {
        done_at: None,
        next_at: None,
    };
    if a.deleted_at.is_some() {
        return none;
    }
    match &a.details {
        ActivityDetails::Task(t) => match t.status {
            TaskStatus::Done => Contribution {
                done_at: t.completed_at.or(Some(a.updated_at)),
                next_at: None,
            },
            TaskStatus::Cancelled => none,
            TaskStatus::Open | TaskStatus::InProgress => Contribution {
                done_at: None,
                next_at: due_at,
            },
        },
        ActivityDetails::Call(c) => Contribution {
            done_at: Some(c.started_at),
            next_at: None,
        },
        ActivityDetails::Meeting(m) if m.start > now => Contribution {
            done_at: None,
            next_at: Some(m.start),
        },
        ActivityDetails::Meeting(m) => Contribution {
            done_at: Some(m.start),
            next_at: None,
        },
        ActivityDetails::Note(_) | ActivityDetails::Email(_) => Contribution {
            done_at: Some(a.created_at),
            next_at: None,
        },
    }
}

/// An activity as the changeset writes it: its state, its `due_at` and contribution.
#[derive(Debug)]
struct Staged {
    activity: Activity,
    due_at: Option<DateTime<Utc>>,
    contribution: Contribution,
}

/// The timeline cursor: the last activity (time, id) and the last event seq consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct TimelineCursor {
    activity: Option<(i64, uuid::Uuid)>,
    seq: Option<i64>,
}

impl TimelineCursor {
    fn encode(&self) -> String {
        let a = match self.activity {
            Some((t, id)) => format!("{t}.{id}"),
            None => "-".into(),
        };
        let s = self
            .seq
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        format!("tl1:{a}:{s}")
    }

    fn decode(s: &str) -> Result<Self> {
        let bad = || Error::validation("cursor", "is not a timeline cursor");
        let rest = s.strip_prefix("tl1:").ok_or_else(bad)?;
        let (a, seq) = rest.split_once(':').ok_or_else(bad)?;
        let activity = if a == "-" {
            None
        } else {
            let (t, id) = a.split_once('.').ok_or_else(bad)?;
            Some((
                t.parse().map_err(|_| bad())?,
                id.parse().map_err(|_| bad())?,
            ))
        };
        let seq = if seq == "-" {
            None
        } else {
            Some(seq.parse().map_err(|_| bad())?)
        };
        Ok(TimelineCursor { activity, seq })
    }
}

/// The agenda cursor: which agenda it continues (a hash of the tenant, the user and the
/// day) and the last item's (instant, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AgendaCursor {
    fingerprint: u64,
    position: (i64, uuid::Uuid),
}

impl AgendaCursor {
    /// FNV-1a of what identifies an agenda: stable across processes and releases.
    fn fingerprint(ctx: &Ctx, user: UserId, day: NaiveDate) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in format!("agenda|{}|{user}|{day}", ctx.tenant()).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }

    fn encode(&self) -> String {
        let (t, id) = self.position;
        format!("ag1:{:016x}:{t}.{id}", self.fingerprint)
    }

    /// The cursor, when it is a cursor of the agenda with this fingerprint.
    fn decode(s: &str, fingerprint: u64) -> Result<Self> {
        let bad = || Error::validation("cursor", "is not a cursor of this agenda");
        let rest = s.strip_prefix("ag1:").ok_or_else(bad)?;
        let (f, pos) = rest.split_once(':').ok_or_else(bad)?;
        if f.len() != 16 || u64::from_str_radix(f, 16).map_err(|_| bad())? != fingerprint {
            return Err(bad());
        }
        let (t, id) = pos.split_once('.').ok_or_else(bad)?;
        Ok(AgendaCursor {
            fingerprint,
            position: (
                t.parse().map_err(|_| bad())?,
                id.parse().map_err(|_| bad())?,
            ),
        })
    }
}

/// The activities API.
#[derive(Clone, Debug)]
pub struct Activities {
    store: Store,
    others: Vec<Arc<dyn RelatedRecords>>,
    declared: Vec<RecordKind>,
}

/// The kinds every activity may relate to: those of the modules below activities.
/// Kinds of modules above (tickets) or of the host join through
/// [`Activities::with_related`].
pub const RELATED_KINDS: [RecordKind; 4] = [
    RecordKind::CONTACT,
    RecordKind::ORGANIZATION,
    RecordKind::LEAD,
    RecordKind::DEAL,
];

/// Records of a kind that modules above activities own (tickets, or a host's own), which
/// activities may then relate to: an activity checks that such a record exists, is in
/// the tenant and is visible to the actor through this. Register one with
/// [`Activities::with_related`].
pub trait RelatedRecords: Send + Sync + std::fmt::Debug + 'static {
    /// The record kind.
    fn kind(&self) -> RecordKind;

    /// `Ok(())` when the record exists in the context's tenant and the actor may see
    /// it; `Error::NotFound` otherwise (other errors are passed on).
    fn check<'a>(&'a self, ctx: &'a Ctx, id: uuid::Uuid) -> BoxFuture<'a, Result<()>>;
}

/// Activities validated and staged into a caller's changeset by
/// [`Activities::stage_create`], to commit with [`Activities::commit_staged`].
#[derive(Debug)]
pub struct StagedActivities {
    staged: Vec<Staged>,
    records: BTreeSet<RecordRef>,
}

impl StagedActivities {
    /// The activities as they will be stored.
    pub fn activities(&self) -> impl Iterator<Item = &Activity> {
        self.staged.iter().map(|s| &s.activity)
    }
}

impl Activities {
    /// The API over a store composed with [`crate::ActivitiesModule`].
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("activities")?;
        store.require_module("pipeline")?;
        Ok(Activities {
            store: store.clone(),
            others: vec![],
            declared: vec![],
        })
    }

    /// Lets activities relate to records of a kind a composed module declares (see
    /// [`crmkit_core::record`]), checked by the one reference rule of
    /// [`crmkit_core::record::Records::visible`]; a kind no composed module declares stays
    /// refused. The generic record API's `activity` kind relates this way to the kinds
    /// it describes (tickets when the tickets module is composed).
    pub fn with_declared(mut self, kind: RecordKind) -> Self {
        if !self.declared.contains(&kind) {
            self.declared.push(kind);
        }
        self
    }

    /// Lets activities relate to records of another kind (see [`RelatedRecords`]); a
    /// kind registered twice keeps the last registration.
    pub fn with_related(mut self, records: Arc<dyn RelatedRecords>) -> Self {
        self.others.retain(|o| o.kind() != records.kind());
        self.others.push(records);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    // ----- loading -----

    async fn load_row(&self, ctx: &Ctx, id: ActivityId) -> Result<(Activity, Row)> {
        let row = service::row_by_id(&self.store, ctx, ACTIVITY_TABLE, ACTIVITY, id).await?;
        let a = rows::decode_activity(row.clone())?;
        if !ctx.actor().can_see(Some(a.owner), a.team) {
            return Err(Error::not_found(ACTIVITY, id));
        }
        Ok((a, row))
    }

    async fn load(
        &self,
        ctx: &Ctx,
        id: ActivityId,
        deleted: Option<bool>,
    ) -> Result<(Activity, Option<DateTime<Utc>>)> {
        let (a, row) = self.load_row(ctx, id).await?;
        if deleted.is_some_and(|d| d != a.deleted_at.is_some()) {
            return Err(Error::not_found(ACTIVITY, id));
        }
        let due_at = rows::row_due_at(&row)?;
        Ok((a, due_at))
    }

    /// The time zone of a user (UTC when the user is unknown or has a bad zone).
    async fn user_tz(&self, ctx: &Ctx, user: UserId) -> Result<Tz> {
        match self.store.directory().user(ctx, user).await {
            Ok(u) => Ok(u.time_zone.parse().unwrap_or(Tz::UTC)),
            Err(Error::NotFound { .. }) => Ok(Tz::UTC),
            Err(e) => Err(e),
        }
    }

    /// The stored `due_at` of an activity (an all-day task: the day's start in the
    /// owner's time zone).
    async fn due_at(&self, ctx: &Ctx, a: &Activity) -> Result<Option<DateTime<Utc>>> {
        Ok(match &a.details {
            ActivityDetails::Task(Task {
                due: Some(Due::Date { date }),
                ..
            }) => {
                let tz = self.user_tz(ctx, a.owner).await?;
                recur::local_instant(tz, *date, NaiveTime::MIN)
            }
            ActivityDetails::Task(Task {
                due: Some(Due::At { at, .. }),
                ..
            }) => Some(*at),
            _ => None,
        })
    }

    // ----- validation -----

    /// Whether the actor may relate an activity to `r`: `None` when activities do not
    /// relate to its kind at all, else whether the record is there for the actor. A kind
    /// a composed module declares is decided by the one reference rule,
    /// [`crmkit_core::record::Records::visible`] (a missing, deleted, another tenant's and
    /// a hidden record are all "not there"); a kind no module declares by its
    /// [`RelatedRecords`].
    async fn relatable(&self, ctx: &Ctx, r: &RecordRef) -> Result<Option<bool>> {
        let other = self.others.iter().find(|o| o.kind() == r.kind);
        if !RELATED_KINDS.contains(&r.kind) && other.is_none() && !self.declared.contains(&r.kind) {
            return Ok(None);
        }
        if self
            .store
            .modules()
            .registry()
            .get(r.kind.as_str())
            .is_some()
        {
            return Ok(Some(self.store.records().visible(ctx, r).await?));
        }
        let found = if let Some(o) = other {
            o.check(ctx, r.id).await
        } else {
            // Declared through `with_declared`, but not composed.
            return Ok(Some(false));
        };
        match found {
            Ok(()) => Ok(Some(true)),
            Err(Error::NotFound { .. }) => Ok(Some(false)),
            Err(e) => Err(e),
        }
    }

    /// Checks that every related record exists in the tenant and is visible to the actor
    /// (`related[i]`: `is not a <kind> of this tenant`, the same for a missing, deleted,
    /// foreign or hidden record); drops repeats.
    async fn check_related(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        related: &[RecordRef],
    ) -> Result<Vec<RecordRef>> {
        if related.len() > MAX_RELATED {
            errs.push("related", format!("at most {MAX_RELATED} records"));
        }
        let mut out: Vec<RecordRef> = vec![];
        for (i, r) in related.iter().enumerate() {
            let field = format!("related[{i}]");
            match self.relatable(ctx, r).await? {
                None => errs.push(
                    field,
                    format!("an activity cannot relate to a record of kind {}", r.kind),
                ),
                Some(false) => errs.push(field, reference_reason(&r.kind)),
                Some(true) => {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Checks the people and records the details name, by the one reference rule: a
    /// meeting's attendees (`attendees[i]`: a contact the actor may see, a user of the
    /// tenant), a call's agent (`agent`: a user of the tenant) and a note's author. A Rep
    /// (or ReadOnly) writes notes as themselves only: another author is PermissionDenied
    /// (unless it is the author the note already had, `old`); Admin and Manager may sign
    /// a note with any user of the tenant (`author`).
    async fn check_people(
        &self,
        ctx: &Ctx,
        errs: &mut ValidationErrors,
        details: &ActivityDetails,
        old: Option<&ActivityDetails>,
    ) -> Result<()> {
        let records = self.store.records();
        let mut check = async |field: String, r: RecordRef| -> Result<()> {
            if !records.visible(ctx, &r).await? {
                errs.push(field, reference_reason(&r.kind));
            }
            Ok(())
        };
        match details {
            ActivityDetails::Meeting(m) => {
                for (i, a) in m.attendees.iter().enumerate() {
                    let r = match a {
                        Attendee::Contact { id } => RecordRef::from(*id),
                        Attendee::User { id } => RecordRef::from(*id),
                    };
                    check(format!("attendees[{i}]"), r).await?;
                }
            }
            ActivityDetails::Call(c) => {
                if let Some(agent) = c.agent {
                    check("agent".into(), RecordRef::from(agent)).await?;
                }
            }
            ActivityDetails::Note(n) => {
                let kept = matches!(old, Some(ActivityDetails::Note(o)) if o.author == n.author);
                if !kept && n.author != ctx.actor().user && !ctx.actor().manages() {
                    return Err(Error::PermissionDenied(
                        "a rep may only write notes as themselves (author)".into(),
                    ));
                }
                if !kept {
                    check("author".into(), RecordRef::from(n.author)).await?;
                }
            }
            ActivityDetails::Task(_) | ActivityDetails::Email(_) => {}
        }
        Ok(())
    }

    /// Validates and normalises details: every bad field is added to `errs`.
    fn check_details(errs: &mut ValidationErrors, d: &mut ActivityDetails, now: DateTime<Utc>) {
        match d {
            ActivityDetails::Task(t) => {
                if let Some(s) = &t.description {
                    errs.check(check_text("description", s, MAX_TEXT, false));
                }
                if let Some(Due::At { time_zone, .. }) = &t.due {
                    errs.check(parse_time_zone("due.time_zone", time_zone));
                }
                if let Some(r) = &t.recurrence {
                    recur::check(errs, "recurrence", r);
                    if t.due.is_none() {
                        errs.push("recurrence", "a recurring task needs a due date");
                    }
                }
                match t.status {
                    TaskStatus::Done => {
                        t.completed_at.get_or_insert(now);
                    }
                    _ => t.completed_at = None,
                }
            }
            ActivityDetails::Call(c) => {
                for (field, n) in [("from", &mut c.from), ("to", &mut c.to)] {
                    if check_text(field, n, 64, true).is_err() {
                        errs.push(field, "must be 1 to 64 characters");
                    } else if let Ok(e164) = parse_phone(field, n, None) {
                        *n = e164;
                    }
                }
                if let Some(s) = &c.notes {
                    errs.check(check_text("notes", s, MAX_TEXT, false));
                }
                if let Some(s) = &c.recording_ref {
                    errs.check(check_text("recording_ref", s, 500, true));
                }
            }
            ActivityDetails::Meeting(m) => {
                if m.end <= m.start {
                    errs.push("end", "must be after the start");
                }
                errs.check(parse_time_zone("time_zone", &m.time_zone));
                for (f, v) in [
                    ("location", &m.location),
                    ("link", &m.link),
                    ("outcome_notes", &m.outcome_notes),
                ] {
                    if let Some(s) = v {
                        errs.check(check_text(f, s, MAX_TEXT, false));
                    }
                }
            }
            ActivityDetails::Note(n) => {
                errs.check(check_text("body", &n.body, MAX_TEXT, true));
            }
            ActivityDetails::Email(e) => {
                let id = e.message_id.trim().to_owned();
                if errs
                    .check(check_text("message_id", &id, 255, true))
                    .is_some()
                {
                    e.message_id = id;
                }
                errs.check(check_text("from", &e.from, 320, true));
                if let Some(s) = &e.excerpt {
                    errs.check(check_text("excerpt", s, MAX_TEXT, false));
                }
            }
        }
    }

    /// A call's external number (from for inbound, to for outbound) when it is E.164.
    fn external_number(d: &ActivityDetails) -> Option<&str> {
        let ActivityDetails::Call(c) = d else {
            return None;
        };
        let n = match c.direction {
            Direction::Inbound => &c.from,
            Direction::Outbound => &c.to,
        };
        n.starts_with('+').then_some(n.as_str())
    }

    // ----- staging -----

    fn relation_rows(s: &Staged) -> Vec<Write> {
        let a = &s.activity;
        a.related
            .iter()
            .map(|r| Write::Insert {
                table: RELATION_TABLE,
                row: vec![
                    Value::Uuid(a.id.as_uuid()),
                    Value::Text(r.kind.as_str().into()),
                    Value::Uuid(r.id),
                    Value::timestamp(a.created_at),
                    Value::opt_timestamp(s.contribution.done_at),
                    Value::opt_timestamp(s.contribution.next_at),
                ],
            })
            .collect()
    }

    /// Follow-up writes for every record in `records`, given the activities staged in
    /// this changeset (their stored relation rows are ignored, their new state counts).
    async fn stage_followups(
        &self,
        ctx: &Ctx,
        cs: &mut Changeset,
        records: &BTreeSet<RecordRef>,
        staged: &[&Staged],
    ) -> Result<()> {
        let b = self.store.backend();
        // The stored relations of activities this changeset rewrites are stale: leave them
        // out. A staged activity at version 1 is being created and has none, so a batch of
        // new activities reads one row per record (not a NOT IN of the whole batch and a
        // page as long as it).
        let excluded: Vec<Value> = staged
            .iter()
            .filter(|s| s.activity.version > 1)
            .map(|s| Value::Uuid(s.activity.id.as_uuid()))
            .collect();
        let n = excluded.len() as u32 + 1;
        for r in records {
            // The follow-up row first: a change committed after this read makes the
            // versioned update below fail (and the command retry), one committed before
            // it is seen by the relation reads that follow.
            let fkey = vec![Value::Text(r.kind.as_str().into()), Value::Uuid(r.id)];
            let existing = b.get(ctx.tenant(), FOLLOWUP_TABLE, &fkey).await?;
            let base = if excluded.is_empty() {
                record_cond(r)
            } else {
                record_cond(r).and(Cond::Not(Box::new(Cond::In(
                    "activity_id".into(),
                    excluded.clone(),
                ))))
            };
            let mut s = Select::new(
                RELATION_TABLE,
                // A range, not `IS NOT NULL`: the index can seek past the NULLs.
                base.clone().and(Cond::Cmp(
                    "done_at".into(),
                    CmpOp::Gte,
                    Value::Int(i64::MIN),
                )),
            );
            // Ties by activity, in the index's direction, so the read walks
            // `activities_relation_done` instead of sorting the record's relations.
            s.order = vec![OrderKey::desc("done_at"), OrderKey::desc("activity_id")];
            s.limit = Some(n);
            let mut last: Option<DateTime<Utc>> = match b.select(ctx.tenant(), &s).await?.first() {
                Some(row) => Some(decode_timestamp(&row[4])?),
                None => None,
            };
            let mut s = Select::new(
                RELATION_TABLE,
                base.and(Cond::Cmp(
                    "next_at".into(),
                    CmpOp::Gte,
                    Value::Int(i64::MIN),
                )),
            );
            s.order = vec![OrderKey::asc("next_at"), OrderKey::asc("activity_id")];
            s.limit = Some(n);
            let mut next: Option<(DateTime<Utc>, uuid::Uuid)> =
                match b.select(ctx.tenant(), &s).await?.first() {
                    Some(row) => {
                        Some((decode_timestamp(&row[5])?, crmkit_core::row::uuid(&row[0])?))
                    }
                    None => None,
                };
            for st in staged {
                if !st.activity.related.contains(r) {
                    continue;
                }
                if let Some(d) = st.contribution.done_at
                    && last.is_none_or(|l| d > l)
                {
                    last = Some(d);
                }
                if let Some(t) = st.contribution.next_at {
                    let cand = (t, st.activity.id.as_uuid());
                    if next.is_none_or(|x| cand < x) {
                        next = Some(cand);
                    }
                }
            }
            let created = match &existing {
                Some(row) => crmkit_core::row::opt_timestamp(&row[fcol::CREATED])?,
                // Created by this very changeset (a cross-module command), or before the
                // activities module was composed (no creation time known).
                None => cs
                    .events
                    .iter()
                    .any(|e| e.record == *r && e.kind.ends_with(".created"))
                    .then_some(cs.at),
            };
            let set = vec![
                ("last_activity_at", Value::opt_timestamp(last)),
                ("next_activity_at", Value::opt_timestamp(next.map(|x| x.0))),
                ("next_activity_id", Value::opt_uuid(next.map(|x| x.1))),
                ("quiet_since", Value::opt_timestamp(last.or(created))),
            ];
            match existing {
                Some(row) => {
                    let version = crmkit_core::row::int(&row[fcol::VERSION])? as u64;
                    let cols = [fcol::LAST, fcol::NEXT, fcol::NEXT_ID, fcol::QUIET];
                    let unchanged = set.iter().zip(cols).all(|((_, v), i)| row[i] == *v);
                    if !unchanged {
                        cs.writes.push(Write::Update {
                            table: FOLLOWUP_TABLE,
                            key: fkey,
                            set,
                            expect_version: Some(version),
                            record: RecordRef::new(FOLLOWUP_KIND, r.id),
                        });
                    }
                }
                None => {
                    let mut row = fkey;
                    let mut values = set.into_iter().map(|(_, v)| v);
                    row.extend(values.by_ref().take(3));
                    row.extend([Value::Int(1), Value::opt_timestamp(created)]);
                    row.extend(values);
                    row.push(Value::from(true));
                    cs.writes.push(Write::Insert {
                        table: FOLLOWUP_TABLE,
                        row,
                    });
                }
            }
        }
        Ok(())
    }

    /// Commits `cs` with the follow-up writes of `records`; when a concurrent command
    /// changed one of those follow-up rows first, the follow-up writes are recomputed and
    /// the commit retried (a few times).
    async fn commit_tracked(
        &self,
        ctx: &Ctx,
        cs: Changeset,
        records: &BTreeSet<RecordRef>,
        staged: &[&Staged],
    ) -> Result<()> {
        let mut attempts = 0;
        loop {
            let mut c = cs.clone();
            self.stage_followups(ctx, &mut c, records, staged).await?;
            match self.store.commit(c).await {
                Err(e) if followup_race(&e) && attempts < 10 => attempts += 1,
                other => return other.map(|_| ()),
            }
        }
    }

    /// Builds the staged form of an activity.
    async fn staged(&self, ctx: &Ctx, a: Activity) -> Result<Staged> {
        let due_at = self.due_at(ctx, &a).await?;
        let contribution = contribution(&a, due_at, ctx.now());
        Ok(Staged {
            activity: a,
            due_at,
            contribution,
        })
    }

    /// The next occurrence of a recurring task completed by the change `old` -> `new`.
    async fn next_occurrence(
        &self,
        ctx: &Ctx,
        old: &Activity,
        new: &Activity,
    ) -> Result<Option<Staged>> {
        let (ActivityDetails::Task(o), ActivityDetails::Task(n)) = (&old.details, &new.details)
        else {
            return Ok(None);
        };
        if o.status == TaskStatus::Done || n.status != TaskStatus::Done {
            return Ok(None);
        }
        let (Some(due), Some(r)) = (&n.due, &n.recurrence) else {
            return Ok(None);
        };
        let Some((due, recurrence)) = recur::next(due, r) else {
            return Ok(None);
        };
        let now = ctx.now();
        let next = Activity {
            id: ActivityId::new(),
            related: new.related.clone(),
            subject: new.subject.clone(),
            owner: new.owner,
            team: new.team,
            details: ActivityDetails::Task(Task {
                description: n.description.clone(),
                due: Some(due),
                priority: n.priority,
                status: TaskStatus::Open,
                recurrence: Some(recurrence),
                completed_at: None,
            }),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        };
        Ok(Some(self.staged(ctx, next).await?))
    }

    fn insert_writes(cs: &mut Changeset, s: &Staged) {
        stage_insert(cs, &s.activity, rows::activity_row(&s.activity, s.due_at));
        cs.writes.extend(Self::relation_rows(s));
    }

    // ----- commands -----

    /// Creates an activity. Every bad field is reported at once and nothing is written:
    /// a meeting ending at or before its start (`end`), an unknown IANA time zone
    /// (`time_zone`, `due.time_zone`), a recurrence with interval or count 0 or a weekly
    /// rule without weekdays (`recurrence.*`), a related record that does not exist, is
    /// of another tenant or is invisible (`related[i]`), an owner who is not an active
    /// user (`owner`). A call's duration is a `u32`, so it cannot be negative.
    ///
    /// A call's numbers are normalised to E.164 when they parse (the raw text is kept
    /// otherwise); a call whose external number (from for inbound, to for outbound) is in
    /// core's lookup index is related to those contacts, organizations and leads too,
    /// when the actor may see them.
    ///
    /// A logged email's Message-ID is logged once per tenant: logging it again is a
    /// Duplicate error naming `message_id` (and the existing activity when it is
    /// visible to the actor).
    pub async fn create(&self, ctx: &Ctx, input: NewActivity) -> Result<Activity> {
        ctx.actor().require_write("create activity")?;
        let mut errs = ValidationErrors::new();
        let related = self.check_related(ctx, &mut errs, &input.related).await?;
        let mut owners = OwnerChecks::new();
        let built = self
            .build(ctx, input, related, &mut owners, &mut errs)
            .await?;
        errs.into_result()?;
        let Some(a) = built else {
            return Err(Error::storage(
                "an activity failed to build without a reason",
            ));
        };
        if let ActivityDetails::Email(e) = &a.details {
            self.refuse_logged_email(ctx, &e.message_id).await?;
        }
        let mut out = self.commit_new(ctx, vec![a]).await?;
        out.pop()
            .ok_or_else(|| Error::storage("the created activity went missing"))
    }

    /// Creates up to [`MAX_BATCH`] activities in one atomic commit (an import, a sync
    /// upload): all of them, with their follow-up rows, audit entries and events, or
    /// none. Each input is checked as [`Activities::create`] checks it, and every bad field
    /// of every input is reported at once, prefixed by its position (`[3].subject`,
    /// `[0].related[1]`); a batch that is empty or too long is a Validation error on
    /// `activities`. A Message-ID repeated inside the batch, or already logged, is a
    /// Duplicate naming `message_id`. Each related record is looked up once per batch and
    /// each record's follow-up row is written once.
    pub async fn create_many(&self, ctx: &Ctx, inputs: Vec<NewActivity>) -> Result<Vec<Activity>> {
        let built = self.prepare_many(ctx, inputs, &[]).await?;
        self.commit_new(ctx, built).await
    }

    /// Validates and stages activities (as [`Activities::create_many`] does) into a
    /// changeset the caller is building, for a command that spans modules (the
    /// call-centre path logs a call and opens a ticket in one commit). Nothing is written
    /// until [`Activities::commit_staged`] commits the changeset.
    ///
    /// `staged_records` are records the same changeset creates (a ticket the command
    /// opens): activities may relate to them although they are not stored yet.
    pub async fn stage_create(
        &self,
        ctx: &Ctx,
        inputs: Vec<NewActivity>,
        staged_records: &[RecordRef],
        cs: &mut Changeset,
    ) -> Result<StagedActivities> {
        let built = self.prepare_many(ctx, inputs, staged_records).await?;
        self.stage_new(ctx, cs, built).await
    }

    /// Commits a changeset holding staged activities, with the follow-up rows of their
    /// records (recomputed and retried a few times when a concurrent command changed one
    /// of those rows first). The caller's other writes in `cs` commit with them, or
    /// nothing does.
    pub async fn commit_staged(
        &self,
        ctx: &Ctx,
        cs: Changeset,
        staged: StagedActivities,
    ) -> Result<Vec<Activity>> {
        let refs: Vec<&Staged> = staged.staged.iter().collect();
        self.commit_tracked(ctx, cs, &staged.records, &refs)
            .await
            .map_err(message_id_duplicate)?;
        Ok(staged.staged.into_iter().map(|s| s.activity).collect())
    }

    /// Validates a batch (see [`Activities::create_many`]) into activities to stage.
    async fn prepare_many(
        &self,
        ctx: &Ctx,
        inputs: Vec<NewActivity>,
        staged_records: &[RecordRef],
    ) -> Result<Vec<Activity>> {
        ctx.actor().require_write("create activities")?;
        if inputs.is_empty() || inputs.len() > MAX_BATCH {
            return Err(Error::validation(
                "activities",
                format!("a batch holds 1 to {MAX_BATCH} activities"),
            ));
        }
        let mut errs = ValidationErrors::new();
        // Each distinct related record is checked once.
        let mut distinct: Vec<RecordRef> = vec![];
        for r in inputs.iter().flat_map(|i| &i.related) {
            if !distinct.contains(r) {
                distinct.push(r.clone());
            }
        }
        let mut bad: BTreeMap<RecordRef, String> = BTreeMap::new();
        for r in distinct.iter().filter(|r| !staged_records.contains(r)) {
            let mut e = ValidationErrors::new();
            self.check_related(ctx, &mut e, std::slice::from_ref(r))
                .await?;
            if let Some(first) = e.errors.into_iter().next() {
                bad.insert(r.clone(), first.reason);
            }
        }
        let mut owners = OwnerChecks::new();
        let mut built = Vec::with_capacity(inputs.len());
        let mut message_ids: BTreeSet<String> = BTreeSet::new();
        for (i, input) in inputs.into_iter().enumerate() {
            let mut e = ValidationErrors::new();
            if input.related.len() > MAX_RELATED {
                e.push("related", format!("at most {MAX_RELATED} records"));
            }
            let mut related = vec![];
            for (j, r) in input.related.iter().enumerate() {
                match bad.get(r) {
                    Some(reason) => e.push(format!("related[{j}]"), reason.clone()),
                    None if !related.contains(r) => related.push(r.clone()),
                    None => {}
                }
            }
            let a = self.build(ctx, input, related, &mut owners, &mut e).await?;
            errs.extend_prefixed(&format!("[{i}]."), e);
            if let Some(a) = a {
                if let ActivityDetails::Email(m) = &a.details
                    && !message_ids.insert(m.message_id.clone())
                {
                    return Err(Error::Duplicate {
                        kind: ACTIVITY,
                        field: "message_id".into(),
                        existing: None,
                    });
                }
                built.push(a);
            }
        }
        errs.into_result()?;
        for id in &message_ids {
            self.refuse_logged_email(ctx, id).await?;
        }
        Ok(built)
    }

    /// Validates one input's fields (its related records already checked, into
    /// `related`), adds the records its call's number links to, and builds the activity;
    /// `None` when `errs` got an error.
    async fn build(
        &self,
        ctx: &Ctx,
        input: NewActivity,
        mut related: Vec<RecordRef>,
        owners: &mut OwnerChecks,
        errs: &mut ValidationErrors,
    ) -> Result<Option<Activity>> {
        let now = ctx.now();
        let before = errs.errors.len();
        errs.check(check_text("subject", &input.subject, MAX_SUBJECT, false));
        let mut details = input.details;
        Self::check_details(errs, &mut details, now);
        self.check_people(ctx, errs, &details, None).await?;
        let owner = input.owner.unwrap_or(ctx.actor().user);
        owners
            .check(&self.store, ctx, errs, owner, input.team)
            .await?;
        if errs.errors.len() > before {
            return Ok(None);
        }
        if let Some(n) = Self::external_number(&details) {
            for r in lookup::find(
                self.store.backend(),
                ctx.tenant(),
                LookupKind::Phone,
                n,
                None,
                MAX_AUTO_LINKS,
            )
            .await?
            {
                if matches!(r.kind.as_str(), "contact" | "organization" | "lead")
                    && !related.contains(&r)
                {
                    // Only records the actor may see: a link to an invisible record
                    // would tell the caller that it exists.
                    if self.relatable(ctx, &r).await? == Some(true) {
                        related.push(r);
                    }
                }
            }
        }
        Ok(Some(Activity {
            id: ActivityId::new(),
            related,
            subject: input.subject,
            owner,
            team: input.team,
            details,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        }))
    }

    /// Commits new activities in one changeset with the follow-up rows of their records.
    async fn commit_new(&self, ctx: &Ctx, activities: Vec<Activity>) -> Result<Vec<Activity>> {
        let mut cs = Changeset::new(ctx);
        let staged = self.stage_new(ctx, &mut cs, activities).await?;
        self.commit_staged(ctx, cs, staged).await
    }

    /// Adds the rows of new activities to `cs`.
    async fn stage_new(
        &self,
        ctx: &Ctx,
        cs: &mut Changeset,
        activities: Vec<Activity>,
    ) -> Result<StagedActivities> {
        let mut staged = Vec::with_capacity(activities.len());
        for a in activities {
            staged.push(self.staged(ctx, a).await?);
        }
        let mut records: BTreeSet<RecordRef> = BTreeSet::new();
        for s in &staged {
            Self::insert_writes(cs, s);
            records.extend(s.activity.related.iter().cloned());
        }
        Ok(StagedActivities { staged, records })
    }

    async fn refuse_logged_email(&self, ctx: &Ctx, message_id: &str) -> Result<()> {
        let mut s = Select::new(ACTIVITY_TABLE, Cond::eq("message_id", message_id));
        s.limit = Some(1);
        if let Some(row) = self.store.backend().select(ctx.tenant(), &s).await?.pop() {
            let a = rows::decode_activity(row)?;
            let visible = self
                .store
                .records()
                .visible(ctx, &RecordRef::from(a.id))
                .await?;
            return Err(Error::Duplicate {
                kind: ACTIVITY,
                field: "message_id".into(),
                existing: visible.then(|| RecordRef::from(a.id)),
            });
        }
        Ok(())
    }

    /// Changes an activity whose current version is `expected_version` (a stale one is a
    /// Conflict). Validation as in [`Activities::create`]; details must keep their kind.
    /// A recurring task moved to `done` creates its next occurrence (daily, weekly on
    /// the rule's weekdays, monthly on a day — the last day of shorter months — until
    /// the count or the until-date is reached) in the same changeset.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: ActivityId,
        expected_version: u64,
        patch: ActivityPatch,
    ) -> Result<Activity> {
        ctx.actor().require_write("update activity")?;
        let (old, _) = self.load(ctx, id, Some(false)).await?;
        let now = ctx.now();
        let mut errs = ValidationErrors::new();
        let mut new = old.clone();
        let owner = (patch.owner, patch.team);
        if let Some(s) = patch.subject {
            errs.check(check_text("subject", &s, MAX_SUBJECT, false));
            new.subject = s;
        }
        if let Some(mut d) = patch.details {
            if std::mem::discriminant(&d) != std::mem::discriminant(&old.details) {
                errs.push("details", "an activity keeps its kind");
            }
            if let (ActivityDetails::Task(t), ActivityDetails::Task(o)) = (&mut d, &old.details)
                && t.status == TaskStatus::Done
                && o.status == TaskStatus::Done
                && t.completed_at.is_none()
            {
                t.completed_at = o.completed_at;
            }
            Self::check_details(&mut errs, &mut d, now);
            self.check_people(ctx, &mut errs, &d, Some(&old.details))
                .await?;
            if let (ActivityDetails::Email(e), ActivityDetails::Email(o)) = (&d, &old.details)
                && e.message_id != o.message_id
            {
                errs.push("message_id", "a logged email keeps its Message-ID");
            }
            new.details = d;
        }
        if let Some(r) = &patch.related {
            new.related = self.check_related(ctx, &mut errs, r).await?;
        }
        service::reassign(&self.store, ctx, &mut errs, &mut new, owner).await?;
        errs.into_result()?;
        service::check_version(id, expected_version, old.version)?;
        new.updated_at = now;
        new.version = old.version + 1;
        let changes = service::changes(id, &old, &new);
        if changes.is_empty() {
            return Ok(old);
        }
        let old_s = self.staged(ctx, old.clone()).await?;
        let s = self.staged(ctx, new).await?;
        let next = self.next_occurrence(ctx, &old, &s.activity).await?;
        let mut cs = Changeset::new(ctx);
        let def = self.store.backend().schema().table(ACTIVITY_TABLE)?;
        let set = changed_columns(
            def,
            &rows::activity_row(&old, old_s.due_at),
            &rows::activity_row(&s.activity, s.due_at),
        );
        let event = "activity.updated";
        let payload = to_json(&s.activity);
        stage_update(
            &mut cs,
            changes,
            ACTIVITY_TABLE,
            set,
            expected_version,
            event,
            payload,
        );
        cs.writes.push(Write::DeleteWhere {
            table: RELATION_TABLE,
            cond: Cond::eq("activity_id", id.as_uuid()),
        });
        cs.writes.extend(Self::relation_rows(&s));
        if let Some(n) = &next {
            Self::insert_writes(&mut cs, n);
        }
        let mut records: BTreeSet<RecordRef> = old.related.iter().cloned().collect();
        records.extend(s.activity.related.iter().cloned());
        let mut staged = vec![&s];
        staged.extend(next.as_ref());
        self.commit_tracked(ctx, cs, &records, &staged).await?;
        Ok(s.activity)
    }

    /// Sets a task's status (a convenience over [`Activities::update`]); `done` records
    /// the completion time and, for a recurring task, creates the next occurrence.
    pub async fn set_task_status(
        &self,
        ctx: &Ctx,
        id: ActivityId,
        expected_version: u64,
        status: TaskStatus,
    ) -> Result<Activity> {
        let a = self.get(ctx, id).await?;
        let ActivityDetails::Task(mut t) = a.details else {
            return Err(Error::InvalidTransition {
                record: RecordRef::from(id),
                reason: "only a task has a status".into(),
            });
        };
        if t.status != status {
            t.completed_at = None;
        }
        t.status = status;
        self.update(
            ctx,
            id,
            expected_version,
            ActivityPatch {
                details: Some(ActivityDetails::Task(t)),
                ..ActivityPatch::default()
            },
        )
        .await
    }

    async fn set_deleted(
        &self,
        ctx: &Ctx,
        id: ActivityId,
        expected_version: u64,
        delete: bool,
    ) -> Result<Activity> {
        let (mut cs, _, new) =
            service::stage_set_deleted::<Activity>(&self.store, ctx, id, expected_version, delete)
                .await?;
        let s = self.staged(ctx, new).await?;
        cs.writes.push(Write::DeleteWhere {
            table: RELATION_TABLE,
            cond: Cond::eq("activity_id", id.as_uuid()),
        });
        if delete {
            cs.writes.push(Write::DeleteWhere {
                table: REMINDER_TABLE,
                cond: Cond::eq("activity_id", id.as_uuid())
                    .and(Cond::IsNull("delivered_at".into())),
            });
        } else {
            cs.writes.extend(Self::relation_rows(&s));
        }
        let records: BTreeSet<RecordRef> = s.activity.related.iter().cloned().collect();
        self.commit_tracked(ctx, cs, &records, &[&s]).await?;
        Ok(s.activity)
    }

    // ----- work lists -----

    /// A user's open (open or in-progress) tasks by due time (tasks without a due
    /// first), keyset-paged; only what the actor may see.
    pub async fn open_tasks(
        &self,
        ctx: &Ctx,
        user: UserId,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Activity>> {
        let who = crmkit_core::Filter::eq("owner", user);
        self.open_task_page(ctx, who, None, cursor, limit).await
    }

    /// A user's open tasks due before `now`, most overdue first, keyset-paged.
    pub async fn overdue_tasks(
        &self,
        ctx: &Ctx,
        user: UserId,
        now: DateTime<Utc>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Activity>> {
        let who = crmkit_core::Filter::eq("owner", user);
        self.open_task_page(ctx, who, Some(now), cursor, limit)
            .await
    }

    /// A team's open tasks by due time, for managers: the tasks of the team's members
    /// and the tasks owned by the team, keyset-paged. Admin and Manager only (a Rep sees
    /// their team's tasks through [`Activities::list`] and visibility).
    pub async fn team_open_tasks(
        &self,
        ctx: &Ctx,
        team: crmkit_core::TeamId,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Activity>> {
        if !ctx.actor().manages() {
            return Err(Error::PermissionDenied(
                "the team view needs the admin or manager role".into(),
            ));
        }
        self.store.directory().team(ctx, team).await?;
        let members: Vec<UserId> = self
            .store
            .directory()
            .users(ctx)
            .await?
            .into_iter()
            .filter(|u| u.teams.contains(&team))
            .map(|u| u.id)
            .collect();
        let mut who = crmkit_core::Filter::eq("team", team);
        if !members.is_empty() {
            who = who.or(crmkit_core::Filter::is_in("owner", members));
        }
        self.open_task_page(ctx, who, None, cursor, limit).await
    }

    /// The open tasks `who` matches (only those due before `due_before`, when given) by
    /// due time, keyset-paged; only what the actor may see.
    async fn open_task_page(
        &self,
        ctx: &Ctx,
        who: crmkit_core::Filter,
        due_before: Option<DateTime<Utc>>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Activity>> {
        let mut q = Query::new()
            .filter(who)
            .filter(crmkit_core::Filter::eq("open", true));
        if let Some(now) = due_before {
            q = q.filter(crmkit_core::Filter::lt("due_at", now));
        }
        let mut q = q.sort_asc("due_at").limit(limit);
        q.cursor = cursor;
        self.list(ctx, &q).await
    }

    /// A user's tasks (due in the range, or open without a due time) and meetings
    /// (starting in the range) as an RFC 5545 calendar, with their reminders as alarms,
    /// for phone and desktop calendar apps. At most `limit` of each.
    pub async fn calendar(
        &self,
        ctx: &Ctx,
        user: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<String> {
        if to <= from {
            return Err(Error::validation("to", "must be after from"));
        }
        let scope = visibility_scope(ctx, false).and(Cond::eq("owner_id", user.as_uuid()));
        let range = |col: &str| {
            Cond::Cmp(col.into(), CmpOp::Gte, Value::timestamp(from)).and(Cond::Cmp(
                col.into(),
                CmpOp::Lt,
                Value::timestamp(to),
            ))
        };
        let mut tasks = Select::new(
            ACTIVITY_TABLE,
            scope
                .clone()
                .and(Cond::eq("kind", "task"))
                .and(Cond::Or(vec![
                    range("due_at"),
                    Cond::eq("open", true).and(Cond::IsNull("due_at".into())),
                ])),
        );
        tasks.order = vec![OrderKey::asc("id")];
        tasks.limit = Some(limit);
        let mut meetings = Select::new(
            ACTIVITY_TABLE,
            scope
                .and(Cond::eq("kind", "meeting"))
                .and(range("starts_at")),
        );
        meetings.order = vec![OrderKey::asc("id")];
        meetings.limit = Some(limit);
        let b = self.store.backend();
        let mut activities = vec![];
        for sel in [&tasks, &meetings] {
            for row in b.select(ctx.tenant(), sel).await? {
                activities.push(rows::decode_activity(row)?);
            }
        }
        let mut reminders = vec![];
        for a in &activities {
            reminders.extend(self.reminders_of(ctx, a.id).await?);
        }
        crate::ical::to_icalendar("crmkit", &activities, &reminders, ctx.now())
    }

    /// The reminders of an activity (index `activities_reminder_activity`).
    async fn reminders_of(&self, ctx: &Ctx, activity: ActivityId) -> Result<Vec<Reminder>> {
        let s = Select::new(
            rows::REMINDER_TABLE,
            Cond::eq("activity_id", activity.as_uuid()),
        );
        service::select_rows(&self.store, ctx, &s, |r| {
            rows::decode_reminder(&r).map(|(m, _)| m)
        })
        .await
    }

    /// A user's agenda for `day` in the user's time zone: open tasks due that day (an
    /// all-day task on that day included) and meetings starting that day, in time order
    /// (a task by its due instant, a meeting by its start; ties by id), keyset-paged.
    /// Each page costs two bounded index range reads (tasks by `(owner, open, due_at,
    /// id)`, meetings by `(owner, kind, starts_at, id)`) after the cursor's position,
    /// merged. The cursor is tied to the tenant, `user` and `day`: a cursor of another
    /// agenda is a Validation error on `cursor`; `limit` is 1 to
    /// [`crmkit_core::query::MAX_LIMIT`] (a Validation error on `limit` otherwise).
    pub async fn agenda(
        &self,
        ctx: &Ctx,
        user: UserId,
        day: NaiveDate,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Activity>> {
        crmkit_core::query::check_limit(limit)?;
        let fingerprint = AgendaCursor::fingerprint(ctx, user, day);
        let after = match &cursor {
            Some(c) => Some(AgendaCursor::decode(c, fingerprint)?.position),
            None => None,
        };
        let tz = self.user_tz(ctx, user).await?;
        let start = recur::local_instant(tz, day, NaiveTime::MIN)
            .ok_or_else(|| Error::validation("day", "is out of range"))?;
        let end = day
            .succ_opt()
            .and_then(|d| recur::local_instant(tz, d, NaiveTime::MIN))
            .unwrap_or(start + Duration::days(1));
        let scope = visibility_scope(ctx, false).and(Cond::eq("owner_id", user.as_uuid()));
        let range = |col: &str| {
            Cond::Cmp(col.into(), CmpOp::Gte, Value::timestamp(start)).and(Cond::Cmp(
                col.into(),
                CmpOp::Lt,
                Value::timestamp(end),
            ))
        };
        let position = after.map(|(t, id)| vec![Value::Int(t), Value::Uuid(id)]);
        let mut tasks = Select::new(
            ACTIVITY_TABLE,
            scope
                .clone()
                .and(Cond::eq("open", true))
                .and(range("due_at")),
        );
        tasks.order = vec![OrderKey::asc("due_at"), OrderKey::asc("id")];
        tasks.after = position.clone();
        tasks.limit = Some(limit + 1);
        let mut meetings = Select::new(
            ACTIVITY_TABLE,
            scope
                .and(Cond::eq("kind", "meeting"))
                .and(range("starts_at")),
        );
        meetings.order = vec![OrderKey::asc("starts_at"), OrderKey::asc("id")];
        meetings.after = position;
        meetings.limit = Some(limit + 1);
        let b = self.store.backend();
        // (instant, id, row): both reads are in (instant, id) order, and an id is one
        // activity of one kind, so the merge is a total order without repeats.
        let mut out: Vec<(i64, uuid::Uuid, Row)> = vec![];
        for (sel, col) in [(&tasks, 7), (&meetings, 8)] {
            for row in b.select(ctx.tenant(), sel).await? {
                let t = row[col]
                    .as_int()
                    .ok_or_else(|| Error::storage("malformed activity row"))?;
                let id = crmkit_core::row::uuid(&row[0])?;
                out.push((t, id, row));
            }
        }
        out.sort_by_key(|x| (x.0, x.1));
        let more = out.len() > limit as usize;
        out.truncate(limit as usize);
        let next_cursor = match (more, out.last()) {
            (true, Some((t, id, _))) => Some(
                AgendaCursor {
                    fingerprint,
                    position: (*t, *id),
                }
                .encode(),
            ),
            _ => None,
        };
        let items = out
            .into_iter()
            .map(|(_, _, row)| rows::decode_activity(row))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            next_cursor,
            total: None,
        })
    }

    // ----- reminders -----

    /// Adds a reminder of a task or meeting for `user` (the actor when `None`). A Rep (or
    /// ReadOnly) reminds only themselves: another user is PermissionDenied, whoever owns
    /// the activity; Admin and Manager may remind any active user of the tenant (`user`
    /// otherwise). The
    /// reminder must not be after the due time: a task's due instant (an all-day task:
    /// the end of that day in the owner's time zone), a meeting's start; otherwise it is
    /// a Validation error on `remind_at`. Other kinds have no reminders (`activity`).
    pub async fn add_reminder(
        &self,
        ctx: &Ctx,
        activity: ActivityId,
        user: Option<UserId>,
        remind_at: DateTime<Utc>,
    ) -> Result<Reminder> {
        ctx.actor().require_write("add reminder")?;
        let (a, due_at) = self.load(ctx, activity, Some(false)).await?;
        let user = user.unwrap_or(ctx.actor().user);
        if user != ctx.actor().user && !ctx.actor().manages() {
            return Err(Error::PermissionDenied(
                "a rep may only add reminders for themselves (user)".into(),
            ));
        }
        let mut errs = ValidationErrors::new();
        let limit = match &a.details {
            ActivityDetails::Task(t) => match &t.due {
                Some(Due::Date { .. }) => due_at.map(|d| d + Duration::days(1)),
                Some(Due::At { at, .. }) => Some(*at),
                None => None,
            },
            ActivityDetails::Meeting(m) => Some(m.start),
            _ => {
                errs.push("activity", "only tasks and meetings have reminders");
                None
            }
        };
        if limit.is_some_and(|l| remind_at > l) {
            errs.push("remind_at", "must not be after the due time");
        }
        if let Err(e) = self
            .store
            .directory()
            .require_active_user(ctx, "user", user)
            .await
        {
            match e {
                Error::Validation(v) => {
                    for f in v.errors {
                        errs.push(f.field, f.reason);
                    }
                }
                e => return Err(e),
            }
        }
        errs.into_result()?;
        let r = Reminder {
            id: ReminderId::new(),
            activity,
            user,
            remind_at,
            delivered_at: None,
        };
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: REMINDER_TABLE,
            row: rows::reminder_row(&r, 1),
        });
        cs.events.push(NewEvent::new(
            "reminder.added",
            RecordRef::from(activity),
            vec![],
            to_json(&r),
        ));
        self.store.commit(cs).await?;
        Ok(r)
    }

    /// Undelivered reminders due at `now` or before, oldest first (an index range on
    /// `(delivered_at, remind_at)`). Admins and managers see every user's; others their
    /// own.
    pub async fn due_reminders(
        &self,
        ctx: &Ctx,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reminder>> {
        let mut cond = Cond::IsNull("delivered_at".into()).and(Cond::Cmp(
            "remind_at".into(),
            CmpOp::Lte,
            Value::timestamp(now),
        ));
        if let crmkit_core::Visibility::Owned { user, .. } = ctx.actor().visibility() {
            cond = cond.and(Cond::eq("user_id", user.as_uuid()));
        }
        let mut s = Select::new(REMINDER_TABLE, cond);
        s.order = vec![OrderKey::asc("remind_at"), OrderKey::asc("id")];
        s.limit = Some(limit.clamp(1, crmkit_core::query::MAX_LIMIT));
        service::select_rows(&self.store, ctx, &s, |r| {
            rows::decode_reminder(&r).map(|x| x.0)
        })
        .await
    }

    /// Marks a reminder delivered, once: a conditional (versioned) update, so of any
    /// number of calls — in sequence or by concurrent workers — exactly one delivers it
    /// and emits `reminder.delivered`; the others get `first == false`.
    pub async fn deliver_reminder(&self, ctx: &Ctx, id: ReminderId) -> Result<Delivery> {
        let b = self.store.backend();
        let not_found = || Error::not_found(ReminderId::kind(), id);
        for _ in 0..3 {
            let row = b
                .get(ctx.tenant(), REMINDER_TABLE, &[Value::Uuid(id.as_uuid())])
                .await?
                .ok_or_else(not_found)?;
            let (mut r, version) = rows::decode_reminder(&row)?;
            if !ctx.actor().can_see(Some(r.user), None) {
                return Err(not_found());
            }
            if r.delivered_at.is_some() {
                return Ok(Delivery {
                    reminder: r,
                    first: false,
                });
            }
            let now = ctx.now();
            r.delivered_at = Some(now);
            let mut cs = Changeset::new(ctx);
            cs.writes.push(Write::Update {
                table: REMINDER_TABLE,
                key: vec![Value::Uuid(id.as_uuid())],
                set: vec![("delivered_at", Value::timestamp(now))],
                expect_version: Some(version),
                record: RecordRef::new(ReminderId::kind(), id.as_uuid()),
            });
            cs.events.push(NewEvent::new(
                "reminder.delivered",
                RecordRef::from(r.activity),
                vec!["delivered_at".into()],
                to_json(&r),
            ));
            match self.store.commit(cs).await {
                Ok(_) => {
                    return Ok(Delivery {
                        reminder: r,
                        first: true,
                    });
                }
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::storage("reminder delivery kept conflicting"))
    }

    // ----- follow-up -----

    /// The follow-up state of a record visible to the actor (NotFound otherwise); a record
    /// without activities has no last and no next activity.
    pub async fn follow_up(&self, ctx: &Ctx, record: &RecordRef) -> Result<FollowUp> {
        self.require_visible(ctx, record).await?;
        let key = vec![
            Value::Text(record.kind.as_str().into()),
            Value::Uuid(record.id),
        ];
        match self
            .store
            .backend()
            .get(ctx.tenant(), FOLLOWUP_TABLE, &key)
            .await?
        {
            Some(r) => decode_followup(&r),
            None => Ok(FollowUp {
                record: record.clone(),
                last_activity_at: None,
                next_activity_at: None,
                next_activity: None,
                created_at: None,
                active: true,
            }),
        }
    }

    /// Live records of `kind` not contacted since `since`: their last done activity, or
    /// their creation if they never had one, is before `since`. Least recently contacted
    /// first, keyset-paged; one index range (`activities_followup_quiet`). Records created
    /// before the activities module was composed appear once they have an activity.
    /// Tenant-wide, so Admin or Manager only.
    pub async fn stale_records(
        &self,
        ctx: &Ctx,
        kind: &RecordKind,
        since: DateTime<Utc>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<FollowUp>> {
        require_manager(ctx, "list stale records")?;
        let mut s = Select::new(
            FOLLOWUP_TABLE,
            Self::live(kind)?.and(Cond::Cmp(
                "quiet_since".into(),
                CmpOp::Lt,
                Value::timestamp(since),
            )),
        );
        s.order = vec![OrderKey::asc("quiet_since"), OrderKey::asc("record_id")];
        self.followup_page(ctx, s, "stale", kind, cursor, limit, |f| {
            vec![
                Value::opt_timestamp(f.last_activity_at.or(f.created_at)),
                Value::Uuid(f.record.id),
            ]
        })
        .await
    }

    /// Live records of `kind` with no next activity planned, whether or not they ever
    /// had one ("deals with no next step"), by id, keyset-paged; one index range
    /// (`activities_followup_pending`). Tenant-wide, so Admin or Manager only.
    pub async fn without_next_activity(
        &self,
        ctx: &Ctx,
        kind: &RecordKind,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<FollowUp>> {
        require_manager(ctx, "list records without a next activity")?;
        let mut s = Select::new(
            FOLLOWUP_TABLE,
            Self::live(kind)?.and(Cond::IsNull("next_activity_at".into())),
        );
        s.order = vec![OrderKey::asc("record_id")];
        self.followup_page(ctx, s, "pending", kind, cursor, limit, |f| {
            vec![Value::Uuid(f.record.id)]
        })
        .await
    }

    /// The live follow-up rows of a tracked kind (a Validation error on `kind` otherwise).
    fn live(kind: &RecordKind) -> Result<Cond> {
        if !crate::followup::TRACKED.contains(kind) {
            return Err(Error::validation(
                "kind",
                format!("{kind} records have no follow-up tracking"),
            ));
        }
        Ok(Cond::eq("record_kind", kind.as_str()).and(Cond::eq("active", true)))
    }

    /// One keyset page of follow-up rows; the cursor names the list and kind it belongs
    /// to and the position (`position` of the last row).
    #[allow(clippy::too_many_arguments)]
    async fn followup_page(
        &self,
        ctx: &Ctx,
        mut s: Select,
        list: &str,
        kind: &RecordKind,
        cursor: Option<String>,
        limit: u32,
        position: impl Fn(&FollowUp) -> Vec<Value>,
    ) -> Result<Page<FollowUp>> {
        let limit = limit.clamp(1, crmkit_core::query::MAX_LIMIT);
        let tag = format!("fu1:{list}:{kind}:");
        if let Some(c) = cursor {
            let bad = || Error::validation("cursor", "is not a cursor of this list");
            let rest = c.strip_prefix(&tag).ok_or_else(bad)?;
            let mut after = vec![];
            for (i, part) in rest.split('.').enumerate() {
                let last = i + 1 == s.order.len();
                after.push(if last {
                    Value::Uuid(part.parse().map_err(|_| bad())?)
                } else {
                    Value::Int(part.parse().map_err(|_| bad())?)
                });
            }
            if after.len() != s.order.len() {
                return Err(bad());
            }
            s.after = Some(after);
        }
        s.limit = Some(limit + 1);
        let found = self.followups(ctx, &s).await?;
        service::page_of(found, limit, Ok, |last| {
            let parts: Vec<String> = position(last)
                .iter()
                .map(|v| match v {
                    Value::Int(i) => i.to_string(),
                    Value::Uuid(u) => u.to_string(),
                    _ => String::new(),
                })
                .collect();
            Some(format!("{tag}{}", parts.join(".")))
        })
    }

    async fn followups(&self, ctx: &Ctx, s: &Select) -> Result<Vec<FollowUp>> {
        self.store
            .backend()
            .select(ctx.tenant(), s)
            .await?
            .iter()
            .map(decode_followup)
            .collect()
    }

    /// NotFound unless `record` is a contact, organization, lead or deal the actor sees.
    async fn require_visible(&self, ctx: &Ctx, record: &RecordRef) -> Result<()> {
        let mut errs = ValidationErrors::new();
        self.check_related(ctx, &mut errs, std::slice::from_ref(record))
            .await?;
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::not_found(record.kind.clone(), record.id))
        }
    }

    // ----- timeline -----

    /// A record's timeline, newest first: its activities (at their creation) and its
    /// domain events, merged. Each page costs two bounded index range reads (relations by
    /// `(record, at)`, events by `(record, seq)`) whatever the record's history size.
    /// The record must be visible to the actor; activities the actor may not see are
    /// left out of the page (so a page may be shorter than `limit`).
    pub async fn timeline(
        &self,
        ctx: &Ctx,
        record: &RecordRef,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<TimelinePage> {
        if limit == 0 || limit > crmkit_core::query::MAX_LIMIT {
            return Err(Error::validation("limit", "must be 1 to 1000"));
        }
        self.require_visible(ctx, record).await?;
        let cur = match cursor {
            Some(c) => TimelineCursor::decode(c)?,
            None => TimelineCursor::default(),
        };
        let b = self.store.backend();
        let mut rs = Select::new(RELATION_TABLE, record_cond(record));
        rs.order = vec![OrderKey::desc("at"), OrderKey::desc("activity_id")];
        rs.after = cur
            .activity
            .map(|(t, id)| vec![Value::Int(t), Value::Uuid(id)]);
        rs.limit = Some(limit);
        let rels = b.select(ctx.tenant(), &rs).await?;
        let mut es = Select::new(EVENTS_TABLE, record_cond(record));
        es.order = vec![OrderKey::desc("seq")];
        es.after = cur.seq.map(|s| vec![Value::Int(s)]);
        es.limit = Some(limit);
        let evs = b.select(ctx.tenant(), &es).await?;
        // The activities of the relation rows, in one read.
        let ids: Vec<Value> = rels.iter().map(|r| r[0].clone()).collect();
        let mut acts: BTreeMap<uuid::Uuid, Activity> = BTreeMap::new();
        if !ids.is_empty() {
            for row in b
                .select(
                    ctx.tenant(),
                    &Select::new(ACTIVITY_TABLE, Cond::In("id".into(), ids)),
                )
                .await?
            {
                let a = rows::decode_activity(row)?;
                acts.insert(a.id.as_uuid(), a);
            }
        }
        let (mut i, mut j) = (0, 0);
        let mut items = vec![];
        let mut next = cur;
        while items.len() < limit as usize && (i < rels.len() || j < evs.len()) {
            let at_a = rels.get(i).map(|r| r[3].as_int().unwrap_or(0));
            let at_e = evs.get(j).map(|r| r[8].as_int().unwrap_or(0));
            let take_activity = match (at_a, at_e) {
                (Some(a), Some(e)) => a > e,
                (Some(_), None) => true,
                _ => false,
            };
            if take_activity {
                let r = &rels[i];
                i += 1;
                let id = crmkit_core::row::uuid(&r[0])?;
                next.activity = Some((r[3].as_int().unwrap_or(0), id));
                if let Some(a) = acts.remove(&id)
                    && ctx.actor().can_see(Some(a.owner), a.team)
                {
                    items.push(TimelineEntry::Activity {
                        activity: Box::new(a),
                    });
                }
            } else {
                let r = &evs[j];
                j += 1;
                next.seq = r[0].as_int();
                items.push(TimelineEntry::Event {
                    event: Box::new(crmkit_core::event::decode_event(ctx.tenant(), r)?),
                });
            }
        }
        let exhausted = rels.len() < limit as usize
            && i == rels.len()
            && evs.len() < limit as usize
            && j == evs.len();
        Ok(TimelinePage {
            items,
            next_cursor: (!exhausted).then(|| next.encode()),
        })
    }
}

crmkit_core::record_verbs! {
    Activities: Activity, ActivityId;
    /// An activity visible to the actor and not deleted.
    get;
    /// The audit trail of an activity visible to the actor (a deleted one too), oldest
    /// first.
    audit;
    /// Soft-deletes an activity: it leaves its records' timelines and follow-up, and its
    /// undelivered reminders are removed (a restore does not bring them back).
    delete;
    /// Restores a soft-deleted activity (and its place in timelines and follow-up).
    restore;
    /// Lists activities: filter, sort, keyset page; only visible ones, deleted ones only
    /// with [`Query::include_deleted`]. Fields: see [`ACTIVITY_FIELDS`] (`kind`,
    /// `subject`, `owner`, `team`, `status`, `open`, `due_at`, `starts_at`, `ends_at`,
    /// `message_id`, `created_at`, `updated_at`, `deleted_at`).
    list(ACTIVITY_FIELDS);
}

/// A unique-index collision on the activity table is a repeated Message-ID.
fn message_id_duplicate(e: Error) -> Error {
    match e {
        Error::Duplicate { kind, .. } if kind.as_str() == ACTIVITY_TABLE => Error::Duplicate {
            kind: ACTIVITY,
            field: "message_id".into(),
            existing: None,
        },
        e => e,
    }
}

fn require_manager(ctx: &Ctx, action: &str) -> Result<()> {
    if ctx.actor().manages() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{action} needs the admin or manager role"
        )))
    }
}

fn decode_followup(r: &Row) -> Result<FollowUp> {
    Ok(FollowUp {
        record: rows::relation_record(&[Value::Null, r[0].clone(), r[1].clone()].to_vec())?,
        last_activity_at: crmkit_core::row::opt_timestamp(&r[fcol::LAST])?,
        next_activity_at: crmkit_core::row::opt_timestamp(&r[fcol::NEXT])?,
        next_activity: r[fcol::NEXT_ID].as_uuid().map(ActivityId::from_uuid),
        created_at: crmkit_core::row::opt_timestamp(&r[fcol::CREATED])?,
        active: r[fcol::ACTIVE].as_int() != Some(0),
    })
}
