//! Enrolments of records in [sequences](crate::sequences), and how the engine runs them.
//!
//! ## The table
//!
//! [`ENROLMENT_TABLE`] holds one row per (sequence, record), keyed so: its id, the rule
//! whose `enrol_sequence` action enrolled it (its owner's authority runs the steps), the
//! round (1, then one more each time a finished enrolment is enrolled again), the index
//! of the next step to run and when it is due (indexed), the status (active, completed,
//! exited), the reason it ended, timestamps and a version.
//!
//! ## Exactly once
//!
//! - `enrol_sequence` writes the enrolment (new, or a finished one's next round) in the
//!   commit of its run-log line (the action's own commit); enrolling a record that is
//!   already active in the sequence writes nothing and is recorded as applied.
//!   Leading waits are planned right away: the first due instant is the enrolment's
//!   instant moved by the waits before the first action.
//! - [`Engine::advance_sequences`] (in [`Engine::tick`]) reads the active enrolments due
//!   now (a range of the due index), loads the record as the enrolling rule's owner sees
//!   it and runs the step's action under a [`crmkit_core::Cause`] with the enrolling
//!   rule's id, occurrence `q<enrolment>:<round>:<step>` and action = the step index. The
//!   enrolment's move to the next action step (its due instant the waits in between
//!   after now; calendar days are local days in the owner's time zone, working days
//!   those of the wait's calendar) or to `completed` after the last step is in the
//!   cause's writes, so it commits with the action and its run-log line: a redelivery, a
//!   second engine or a crash never applies a step twice nor skips one.
//! - A failed step is a failed run of the enrolling rule ([`Engine::failed`]), retried
//!   with backoff by [`Engine::retry_due`] (which runs the step again, and advances the
//!   enrolment in that commit); meanwhile the enrolment is not due.
//! - Exits are found when the engine dispatches an event of the record (or of an
//!   activity related to it), and before each step (see [the exit
//!   rules](crate::sequences#exit)).

use chrono::{DateTime, Utc};
use crmkit_core::event::decode_timestamp;
use crmkit_core::record::Json;
use crmkit_core::row::{opt_timestamp, take_opt_text, take_text, uuid};
use crmkit_core::store::{
    CmpOp, ColumnType, Cond, IndexDef, OrderKey, Row, Select, TableDef, Value, Write, columns,
};
use crmkit_core::{
    Cause, Changeset, Ctx, Error, Event, RecordKind, RecordRef, Result, RuleId, SequenceId, Store,
    TenantId,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::RunReport;
use crate::engine::{Engine, Latest, RuleRun, RuleSet};
use crate::eval::evaluate_conditions;
use crate::model::{Action, Conditions, Direction, Rule};
use crate::runlog::{self, FAILURE_TABLE, FailedRun, RUN_TABLE};
use crate::sequences::{SEQUENCE_TABLE, Sequence, SequenceStep, Sequences, decode_sequence};

/// Enrolments, one per (sequence, record).
pub const ENROLMENT_TABLE: &str = "automation_enrolments";

const ENROLMENT_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("sequence_id", Uuid, false),
        ("record_kind", Text(64), false),
        ("record_id", Uuid, false),
        ("id", Uuid, false),
        ("rule_id", Uuid, false),
        ("round", Int, false),
        ("step", Int, false),
        ("status", Text(16), false),
        ("due_at", Timestamp, true),
        ("reason", LongText, true),
        ("enrolled_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("ended_at", Timestamp, true),
        ("version", Int, false),
    ]
};

/// The enrolments table (the module's migration 3).
pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(
            ENROLMENT_TABLE,
            columns(ENROLMENT_COLUMNS),
            ["sequence_id", "record_kind", "record_id"],
        )
        .index(IndexDef::unique("automation_enrolments_id", ["id"]))
        .index(IndexDef::new("automation_enrolments_due", ["due_at"]))
        .index(IndexDef::new(
            "automation_enrolments_record",
            ["record_kind", "record_id"],
        )),
    ]
}

/// Where an enrolment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentStatus {
    /// Going through the steps.
    Active,
    /// Its last step ran.
    Completed,
    /// It ended early (see [`Enrolment::reason`]).
    Exited,
}

impl EnrolmentStatus {
    fn as_str(self) -> &'static str {
        match self {
            EnrolmentStatus::Active => "active",
            EnrolmentStatus::Completed => "completed",
            EnrolmentStatus::Exited => "exited",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(EnrolmentStatus::Active),
            "completed" => Ok(EnrolmentStatus::Completed),
            "exited" => Ok(EnrolmentStatus::Exited),
            _ => Err(Error::storage(format!("unknown enrolment status {s:?}"))),
        }
    }
}

/// A record's enrolment in a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrolment {
    /// Id (in the run log's occurrences `q<id>:<round>:<step>`).
    pub id: Uuid,
    /// The sequence.
    pub sequence: SequenceId,
    /// The record.
    pub record: RecordRef,
    /// The rule that enrolled it (last); its owner's authority runs the steps.
    pub rule: RuleId,
    /// 1 for the first enrolment, one more for each enrolment after a finished one.
    pub round: u32,
    /// The index of the next step to run (0-based; the sequence's length once completed).
    pub step: u32,
    /// Where it stands.
    pub status: EnrolmentStatus,
    /// When the next step is due (`None` once ended, or while a failed step waits for its
    /// retry).
    pub due_at: Option<DateTime<Utc>>,
    /// Why it ended.
    pub reason: Option<String>,
    /// When it was enrolled (this round).
    pub enrolled_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Version (+1 per change).
    pub version: u64,
}

impl Enrolment {
    fn key(&self) -> Vec<Value> {
        vec![
            Value::Uuid(self.sequence.as_uuid()),
            Value::Text(self.record.kind.as_str().to_owned()),
            Value::Uuid(self.record.id),
        ]
    }

    fn row(&self) -> Row {
        let mut r = self.key();
        r.extend([
            Value::Uuid(self.id),
            Value::Uuid(self.rule.as_uuid()),
            Value::Int(i64::from(self.round)),
            Value::Int(i64::from(self.step)),
            Value::Text(self.status.as_str().into()),
            Value::opt_timestamp(self.due_at),
            Value::opt_text(self.reason.clone()),
            Value::timestamp(self.enrolled_at),
            Value::timestamp(self.updated_at),
            Value::opt_timestamp(self.ended_at),
            Value::Int(self.version as i64),
        ]);
        r
    }

    fn decode(mut r: Row) -> Result<Enrolment> {
        let bad = |w: &str| Error::storage(format!("malformed automation enrolment row: {w}"));
        let int = |v: &Value, w: &str| {
            v.as_int()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| bad(w))
        };
        Ok(Enrolment {
            sequence: SequenceId::from_uuid(uuid(&r[0])?),
            record: RecordRef::new(RecordKind::parse(&take_text(&mut r[1])?)?, uuid(&r[2])?),
            id: uuid(&r[3])?,
            rule: RuleId::from_uuid(uuid(&r[4])?),
            round: int(&r[5], "round")?,
            step: int(&r[6], "step")?,
            status: EnrolmentStatus::parse(&take_text(&mut r[7])?)?,
            due_at: opt_timestamp(&r[8])?,
            reason: take_opt_text(&mut r[9]),
            enrolled_at: decode_timestamp(&r[10])?,
            updated_at: decode_timestamp(&r[11])?,
            ended_at: opt_timestamp(&r[12])?,
            version: r[13].as_int().ok_or_else(|| bad("version"))? as u64,
        })
    }

    /// The occurrence of its current step in the run log.
    fn occurrence(&self) -> String {
        format!("q{}:{}:{}", self.id.simple(), self.round, self.step)
    }
}

async fn select(store: &Store, tenant: TenantId, s: &Select) -> Result<Vec<Enrolment>> {
    store
        .backend()
        .select(tenant, s)
        .await?
        .into_iter()
        .map(Enrolment::decode)
        .collect()
}

fn of_record_cond(record: &RecordRef) -> Cond {
    Cond::eq("record_kind", record.kind.as_str()).and(Cond::eq("record_id", record.id))
}

/// Every enrolment of a record, newest first.
pub(crate) async fn of_record(
    store: &Store,
    tenant: TenantId,
    record: &RecordRef,
) -> Result<Vec<Enrolment>> {
    let mut s = Select::new(ENROLMENT_TABLE, of_record_cond(record));
    s.order = vec![OrderKey::desc("enrolled_at"), OrderKey::desc("id")];
    select(store, tenant, &s).await
}

/// Every enrolment of a sequence, newest first.
pub(crate) async fn of_sequence(
    store: &Store,
    tenant: TenantId,
    sequence: SequenceId,
) -> Result<Vec<Enrolment>> {
    let mut s = Select::new(ENROLMENT_TABLE, Cond::eq("sequence_id", sequence.as_uuid()));
    s.order = vec![OrderKey::desc("enrolled_at"), OrderKey::desc("id")];
    select(store, tenant, &s).await
}

async fn active_of(e: &Engine, tenant: TenantId, record: &RecordRef) -> Result<Vec<Enrolment>> {
    let s = Select::new(
        ENROLMENT_TABLE,
        of_record_cond(record).and(Cond::eq("status", EnrolmentStatus::Active.as_str())),
    );
    select(&e.store, tenant, &s).await
}

async fn by_key(
    store: &Store,
    tenant: TenantId,
    sequence: SequenceId,
    record: &RecordRef,
) -> Result<Option<Enrolment>> {
    let key = [
        Value::Uuid(sequence.as_uuid()),
        Value::Text(record.kind.as_str().to_owned()),
        Value::Uuid(record.id),
    ];
    store
        .backend()
        .get(tenant, ENROLMENT_TABLE, &key)
        .await?
        .map(Enrolment::decode)
        .transpose()
}

/// The sequence as stored (deleted or not), or `None`.
async fn stored_sequence(e: &Engine, tenant: TenantId, id: SequenceId) -> Result<Option<Sequence>> {
    e.store
        .backend()
        .get(tenant, SEQUENCE_TABLE, &[Value::Uuid(id.as_uuid())])
        .await?
        .map(decode_sequence)
        .transpose()
}

/// The first action step at or after `from` and when it is due: `base` moved by the
/// waits before it. The index is the number of steps when none is left.
async fn plan(
    store: &Store,
    ctx: &Ctx,
    steps: &[SequenceStep],
    from: usize,
    base: DateTime<Utc>,
) -> Result<(usize, DateTime<Utc>)> {
    let mut due = base;
    let mut i = from;
    let tz = crate::timers::zone_of(store, ctx).await;
    while let Some(SequenceStep::Wait(o)) = steps.get(i) {
        due = crate::timers::shifted(store, ctx, due, o, Direction::After, tz).await?;
        i += 1;
    }
    Ok((i, due))
}

/// The writes that make `en` go on at step `next` due at `due` (or complete it, when no
/// step is left).
fn advance_write(
    en: &Enrolment,
    steps: usize,
    (next, due): (usize, DateTime<Utc>),
    now: DateTime<Utc>,
) -> Write {
    let mut set = vec![
        ("step", Value::Int(next as i64)),
        ("updated_at", Value::timestamp(now)),
    ];
    if next >= steps {
        set.extend([
            (
                "status",
                Value::Text(EnrolmentStatus::Completed.as_str().into()),
            ),
            ("due_at", Value::Null),
            ("reason", Value::Text("its last step ran".into())),
            ("ended_at", Value::timestamp(now)),
        ]);
    } else {
        set.push(("due_at", Value::timestamp(due)));
    }
    update(en, set)
}

fn update(en: &Enrolment, set: Vec<(&'static str, Value)>) -> Write {
    Write::Update {
        table: ENROLMENT_TABLE,
        key: en.key(),
        set,
        expect_version: Some(en.version),
        record: RecordRef::from(en.sequence),
    }
}

fn end_write(en: &Enrolment, reason: &str, now: DateTime<Utc>) -> Write {
    update(
        en,
        vec![
            (
                "status",
                Value::Text(EnrolmentStatus::Exited.as_str().into()),
            ),
            ("due_at", Value::Null),
            ("reason", Value::Text(reason.to_owned())),
            ("ended_at", Value::timestamp(now)),
            ("updated_at", Value::timestamp(now)),
        ],
    )
}

/// Ends an active enrolment as exited (bookkeeping of the engine; a concurrent change of
/// the enrolment wins).
async fn exit(e: &Engine, tenant: TenantId, en: &Enrolment, reason: &str) -> Result<()> {
    bookkeeping(e, tenant, end_write(en, reason, e.now())).await
}

async fn bookkeeping(e: &Engine, tenant: TenantId, w: Write) -> Result<()> {
    match e.store.commit(e.changeset(tenant, vec![w])).await {
        Ok(_) | Err(Error::Conflict { .. } | Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

/// The `enrol_sequence` action: writes the enrolment in the action's commit (`ctx`
/// carries the cause). Whether it committed (an active enrolment is left as it is).
pub(crate) async fn enrol(
    e: &Engine,
    ctx: &Ctx,
    run: &RuleRun<'_>,
    sequence: SequenceId,
) -> Result<bool> {
    // As the rule's owner sees it: a sequence hidden from them is a failed action.
    let seq = Sequences::new(&e.store)?.get(ctx, sequence).await?;
    if seq.record_kind != run.record.kind.as_str() {
        return Err(Error::validation(
            "sequence",
            format!(
                "the sequence is on {} records, not {}",
                seq.record_kind, run.record.kind
            ),
        ));
    }
    let old = by_key(&e.store, run.tenant, sequence, &run.record).await?;
    if old
        .as_ref()
        .is_some_and(|o| o.status == EnrolmentStatus::Active)
    {
        return Ok(false);
    }
    let now = e.now();
    let (step, due) = plan(&e.store, ctx, &seq.steps, 0, now).await?;
    let mut en = Enrolment {
        id: Uuid::now_v7(),
        sequence,
        record: run.record.clone(),
        rule: run.rule.id,
        round: 1,
        step: step as u32,
        status: EnrolmentStatus::Active,
        due_at: Some(due),
        reason: None,
        enrolled_at: now,
        updated_at: now,
        ended_at: None,
        version: 1,
    };
    let w = match &old {
        None => Write::Insert {
            table: ENROLMENT_TABLE,
            row: en.row(),
        },
        Some(o) => {
            en.id = o.id;
            en.round = o.round + 1;
            update(
                o,
                vec![
                    ("rule_id", Value::Uuid(en.rule.as_uuid())),
                    ("round", Value::Int(i64::from(en.round))),
                    ("step", Value::Int(i64::from(en.step))),
                    ("status", Value::Text(en.status.as_str().into())),
                    ("due_at", Value::timestamp(due)),
                    ("reason", Value::Null),
                    ("enrolled_at", Value::timestamp(now)),
                    ("updated_at", Value::timestamp(now)),
                    ("ended_at", Value::Null),
                ],
            )
        }
    };
    let mut cs = Changeset::new(ctx);
    cs.writes.push(w);
    e.store.commit(cs).await.map(|_| true)
}

/// The `leave_sequence` action: ends the record's active enrolment as exited in the
/// action's commit. Whether it committed (no active enrolment: nothing to do).
pub(crate) async fn leave(
    e: &Engine,
    ctx: &Ctx,
    run: &RuleRun<'_>,
    sequence: SequenceId,
) -> Result<bool> {
    let Some(en) = by_key(&e.store, run.tenant, sequence, &run.record).await? else {
        return Ok(false);
    };
    if en.status != EnrolmentStatus::Active {
        return Ok(false);
    }
    let why = format!("taken out by the rule {:?} (leave_sequence)", run.rule.name);
    let mut cs = Changeset::new(ctx);
    cs.writes.push(end_write(&en, &why, e.now()));
    e.store.commit(cs).await.map(|_| true)
}

/// Whether the record's exit filter holds for `record` (its JSON).
fn filter_holds(seq: &Sequence, record: &Json) -> bool {
    seq.exit.filter.as_ref().is_some_and(|f| {
        let c = Conditions {
            filter: Some(f.clone()),
            changes: vec![],
        };
        evaluate_conditions(&c, record, None).holds
    })
}

/// Whether dispatching `ev` needs its payload for sequence exits (an activity event while
/// some rule enrols records).
pub(crate) fn needs_payload(rules: &RuleSet, ev: &Event) -> bool {
    !rules.enrolled_kinds.is_empty() && ev.record.kind.as_str() == "activity"
}

/// The type of an activity in an event payload, if logging it counts as an exit (see
/// [the exit rules](crate::sequences#exit)).
fn counting_type(payload: &Json, at: DateTime<Utc>) -> Option<&str> {
    let details = payload.get("details")?;
    let ty = payload
        .get("type")
        .and_then(Json::as_str)
        .or_else(|| details.get("kind").and_then(Json::as_str))?;
    let field = |k: &str| details.get(k).and_then(Json::as_str);
    let counts = match ty {
        "email" => field("direction") == Some("inbound"),
        "meeting" => field("start")
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|s| s.with_timezone(&Utc) <= at),
        "call" => field("outcome") == Some("connected"),
        "task" => field("status") == Some("done"),
        _ => true,
    };
    counts.then_some(ty)
}

/// Ends the active enrolments that `ev` makes exit: the record's when it is deleted or
/// its exit filter holds now; the related records' when `ev` logs an activity of a type
/// their sequence exits on.
pub(crate) async fn exit_for_event(
    e: &Engine,
    tenant: TenantId,
    rules: &RuleSet,
    ev: &Event,
) -> Result<()> {
    if rules.enrolled_kinds.is_empty() {
        return Ok(());
    }
    let kind = ev.record.kind.as_str();
    let verb = ev.kind.strip_prefix(kind).and_then(|v| v.strip_prefix('.'));
    if rules.enrolled_kinds.contains(kind) {
        for en in active_of(e, tenant, &ev.record).await? {
            if verb == Some("deleted") {
                exit(e, tenant, &en, "the record was deleted").await?;
                continue;
            }
            let Some(seq) = stored_sequence(e, tenant, en.sequence).await? else {
                continue;
            };
            if seq.exit.filter.is_none() {
                continue;
            }
            let Some(rule) = rules.by_id.get(&en.rule) else {
                continue;
            };
            let Ok(ctx) = e.owner_ctx(tenant, rule).await? else {
                continue;
            };
            if let Some(record) = e.current(&ctx, &en.record).await?
                && filter_holds(&seq, &record)
            {
                exit(e, tenant, &en, "its exit filter holds").await?;
            }
        }
    }
    if kind == "activity" && matches!(verb, Some("created" | "updated" | "restored")) {
        let Some(ty) = counting_type(&ev.payload, ev.at) else {
            return Ok(());
        };
        let related: Vec<RecordRef> = ev
            .payload
            .get("related")
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or_default();
        for r in related {
            if !rules.enrolled_kinds.contains(r.kind.as_str()) {
                continue;
            }
            for en in active_of(e, tenant, &r).await? {
                // An activity the enrolment's own steps logged (under the enrolling rule)
                // is not the customer's reply.
                if ev.rule == Some(en.rule) {
                    continue;
                }
                let Some(seq) = stored_sequence(e, tenant, en.sequence).await? else {
                    continue;
                };
                if !seq.exit.activities.iter().any(|a| a == ty) {
                    continue;
                }
                // Only an activity the enrolling rule's owner can see ends the enrolment:
                // otherwise its end (and its reason) would tell them a hidden activity
                // exists. (A disabled rule's enrolments end when their next step is due.)
                let Some(rule) = rules.by_id.get(&en.rule) else {
                    continue;
                };
                let Ok(ctx) = e.owner_ctx(tenant, rule).await? else {
                    continue;
                };
                if e.store.records().visible(&ctx, &ev.record).await? {
                    let why = format!("an activity of type {ty} was logged on the record");
                    exit(e, tenant, &en, &why).await?;
                }
            }
        }
    }
    Ok(())
}

impl Engine {
    /// Runs the due steps of up to 1000 active enrolments (see [the
    /// enrolments](crate::enrolments)): each step once, never before it is due.
    pub async fn advance_sequences(&self, tenant: TenantId) -> Result<RunReport> {
        let now = self.now();
        let mut s = Select::new(
            ENROLMENT_TABLE,
            Cond::Cmp("due_at".into(), CmpOp::Lte, Value::timestamp(now))
                .and(Cond::eq("status", EnrolmentStatus::Active.as_str())),
        );
        s.order = vec![OrderKey::asc("due_at")];
        s.limit = Some(crmkit_core::query::MAX_LIMIT);
        let due = select(&self.store, tenant, &s).await?;
        let mut report = RunReport::default();
        if due.is_empty() {
            return Ok(report);
        }
        let rules = self.rule_set(tenant, true).await?;
        self.forget_owners();
        for en in due {
            self.advance_one(tenant, &rules, en, &mut report).await?;
        }
        Ok(report)
    }

    /// The rule, its owner's context, the sequence and the record of an enrolment whose
    /// step is to run; or, having ended the enrolment (or found it moved on), `None`.
    async fn step_context(
        &self,
        tenant: TenantId,
        rules: &RuleSet,
        en: &Enrolment,
    ) -> Result<Option<(std::sync::Arc<Rule>, Ctx, Sequence, Json)>> {
        let Some(rule) = rules.by_id.get(&en.rule).cloned() else {
            let why = "the rule that enrolled it is disabled or deleted";
            exit(self, tenant, en, why).await?;
            return Ok(None);
        };
        let ctx = match self.owner_ctx(tenant, &rule).await? {
            Ok(c) => c,
            Err(why) => {
                exit(self, tenant, en, &why).await?;
                return Ok(None);
            }
        };
        let seq = match stored_sequence(self, tenant, en.sequence).await? {
            Some(s) if s.deleted_at.is_none() => s,
            _ => {
                exit(self, tenant, en, "the sequence was deleted").await?;
                return Ok(None);
            }
        };
        let Some(record) = self.current(&ctx, &en.record).await? else {
            let why = "the record is gone or not visible to the enrolling rule's owner";
            exit(self, tenant, en, why).await?;
            return Ok(None);
        };
        if filter_holds(&seq, &record) {
            exit(self, tenant, en, "its exit filter holds").await?;
            return Ok(None);
        }
        Ok(Some((rule, ctx, seq, record)))
    }

    async fn advance_one(
        &self,
        tenant: TenantId,
        rules: &RuleSet,
        en: Enrolment,
        report: &mut RunReport,
    ) -> Result<()> {
        let Some((rule, ctx, seq, record)) = self.step_context(tenant, rules, &en).await? else {
            return Ok(());
        };
        match seq.steps.get(en.step as usize) {
            Some(SequenceStep::Action(a)) => {
                let a = a.clone();
                self.run_step(&ctx, &rule, &seq, &en, record, &a, false, report)
                    .await
            }
            // The sequence was changed under the enrolment: a wait now stands at its step
            // (planned from now), or no step is left.
            _ => {
                let now = self.now();
                let next = plan(&self.store, &ctx, &seq.steps, en.step as usize, now).await?;
                bookkeeping(self, tenant, advance_write(&en, seq.steps.len(), next, now)).await
            }
        }
    }

    /// Runs one step of an enrolment under its cause, the enrolment's advance in the same
    /// commit; a failure is kept as a failed run of the enrolling rule.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        ctx: &Ctx,
        rule: &Rule,
        seq: &Sequence,
        en: &Enrolment,
        after: Json,
        action: &Action,
        retry: bool,
        report: &mut RunReport,
    ) -> Result<()> {
        let tenant = ctx.tenant();
        let index = en.step;
        let occurrence = en.occurrence();
        let key = runlog::key(rule.id, &occurrence, Some(index));
        report.triggered += 1;
        let run = RuleRun {
            tenant,
            rule,
            occurrence: occurrence.clone(),
            depth: 1,
            record: en.record.clone(),
            latest: std::sync::Mutex::new(Latest::After),
            after,
            event: None,
            retry,
        };
        let now = self.now();
        let planned = plan(&self.store, ctx, &seq.steps, index as usize + 1, now).await;
        let outcome = match planned {
            Err(err) => Err(err),
            Ok(next) => {
                let mut writes = vec![advance_write(en, seq.steps.len(), next, now)];
                if retry {
                    writes.push(Write::Delete {
                        table: FAILURE_TABLE,
                        key: key.clone(),
                    });
                }
                let cause = Cause {
                    rule: rule.id,
                    occurrence: occurrence.clone(),
                    action: index,
                    depth: 1,
                    record: Some(en.record.clone()),
                    detail: format!(
                        "sequence {:?}, step {}: {}",
                        seq.name,
                        index + 1,
                        crate::engine::describe(action, &run.after)
                    ),
                    attempt: Uuid::now_v7(),
                    writes,
                };
                let actx = ctx.clone().with_cause(cause.clone());
                match self.apply(&actx, &run, index, action).await {
                    Ok(true) => {
                        report.applied += 1;
                        Ok(())
                    }
                    Ok(false) => match self.recorded_attempt(tenant, &key).await? {
                        Some(a) if a == cause.attempt => {
                            report.applied += 1;
                            Ok(())
                        }
                        Some(_) => {
                            report.already_applied += 1;
                            Ok(())
                        }
                        None => {
                            // Nothing to change: the step's run (and the enrolment's
                            // advance) is recorded all the same.
                            let mut cs = self.changeset(tenant, vec![]);
                            cs.cause = Some(cause);
                            match self.store.commit(cs).await {
                                Ok(_) => {
                                    report.applied += 1;
                                    Ok(())
                                }
                                Err(err) => Err(err),
                            }
                        }
                    },
                    Err(err) => Err(err),
                }
            }
        };
        let Err(err) = outcome else {
            return Ok(());
        };
        // Another engine may have run the step meanwhile, or the enrolment ended (or
        // moved on) while the step ran: then there is nothing to keep.
        if self.exists(tenant, RUN_TABLE, &key).await? {
            report.already_applied += 1;
            return Ok(());
        }
        let now_at = by_key(&self.store, tenant, en.sequence, &en.record).await?;
        let still = now_at.as_ref().filter(|n| {
            n.status == EnrolmentStatus::Active && n.round == en.round && n.step == en.step
        });
        let Some(current) = still else {
            return Ok(());
        };
        if matches!(err, Error::Storage { .. }) && !self.store_answers(tenant).await {
            return Err(err);
        }
        report.failed += 1;
        self.record_failure(&run, index, &err).await?;
        // Not due until its retry ([`Engine::retry_due`]) runs it.
        bookkeeping(self, tenant, update(current, vec![("due_at", Value::Null)])).await
    }
}

/// Retries the failed step of an enrolment (a failed run whose occurrence is
/// `q<enrolment>:<round>:<step>`): the step again on the record as it is now, if the
/// enrolment is still at it; a stale failed run (the enrolment ended or moved on) is
/// removed.
pub(crate) async fn retry(
    e: &Engine,
    tenant: TenantId,
    rules: &RuleSet,
    f: FailedRun,
    report: &mut RunReport,
) -> Result<()> {
    let parsed = f
        .occurrence
        .strip_prefix('q')
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(id, _)| Uuid::parse_str(id).ok());
    let Some(id) = parsed else {
        return e.give_up(tenant, f, "unknown occurrence").await;
    };
    let s = Select::new(ENROLMENT_TABLE, Cond::eq("id", id));
    let found = select(&e.store, tenant, &s).await?.into_iter().next();
    let stale = || Write::Delete {
        table: FAILURE_TABLE,
        key: runlog::key(f.rule, &f.occurrence, Some(f.action)),
    };
    let Some(en) =
        found.filter(|en| en.status == EnrolmentStatus::Active && en.occurrence() == f.occurrence)
    else {
        return e.commit_once(tenant, vec![stale()]).await;
    };
    let Some((rule, ctx, seq, record)) = e.step_context(tenant, rules, &en).await? else {
        return e.commit_once(tenant, vec![stale()]).await;
    };
    let Some(SequenceStep::Action(a)) = seq.steps.get(en.step as usize).cloned() else {
        e.commit_once(tenant, vec![stale()]).await?;
        let now = e.now();
        let next = plan(&e.store, &ctx, &seq.steps, en.step as usize, now).await?;
        return bookkeeping(e, tenant, advance_write(&en, seq.steps.len(), next, now)).await;
    };
    e.run_step(&ctx, &rule, &seq, &en, record, &a, true, report)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_counts_as_an_activity_logged() {
        let at = Utc::now();
        let when = |d: i64| (at + chrono::TimeDelta::days(d)).to_rfc3339();
        let email = |dir: &str| json!({"details": {"kind": "email", "direction": dir}});
        assert_eq!(counting_type(&email("inbound"), at), Some("email"));
        assert_eq!(counting_type(&email("outbound"), at), None);
        let meeting = |d: i64| json!({"type": "meeting", "details": {"start": when(d)}});
        assert_eq!(counting_type(&meeting(-1), at), Some("meeting"));
        assert_eq!(counting_type(&meeting(0), at), Some("meeting"));
        assert_eq!(counting_type(&meeting(1), at), None);
        let call = |o: &str| json!({"details": {"kind": "call", "outcome": o}});
        assert_eq!(counting_type(&call("connected"), at), Some("call"));
        assert_eq!(counting_type(&call("no_answer"), at), None);
        let task = |s: &str| json!({"details": {"kind": "task", "status": s}});
        assert_eq!(counting_type(&task("done"), at), Some("task"));
        assert_eq!(counting_type(&task("open"), at), None);
        assert_eq!(
            counting_type(&json!({"details": {"kind": "note"}}), at),
            Some("note")
        );
        assert_eq!(counting_type(&json!({"type": "email"}), at), None);
    }
}
