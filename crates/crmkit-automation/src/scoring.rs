//! Lead scoring: points for what a lead is (its fields) and for what happened to it (a
//! meeting held, an email logged), with decay over time, written through the leads API.
//!
//! ## The model
//!
//! Each tenant has at most one [`ScoringModel`], versioned JSON (`{"format": 1, ...}`,
//! [`ScoringModel::from_json`]), managed through [`Scoring`] (`get` for every user of the
//! tenant; `put` with the expected version for Admin and Manager only, audited, with the
//! events `lead_scoring.created` / `lead_scoring.updated`):
//!
//! - `field_rules`: `{label, filter, points}`, where `filter` is the query AST over the
//!   lead's JSON field names (`custom.<key>` for custom values), evaluated like a rule's
//!   conditions ([`crate::eval`]). A field rule gives its points while its filter holds.
//! - `event_rules`: `{label, event, filter, points}`, where `event` is an event kind of a
//!   composed module and `filter` (optional) is over the event's record. An event of that
//!   kind whose record passes the filter is a *hit* on every lead it relates to: the lead
//!   itself for a lead's own event, else the leads in the record's `related` list (an
//!   activity's). "A meeting held" is `activity.created` with `type = meeting`, "an email
//!   logged" is `activity.created` with `type = email`. A hit keeps the label and the
//!   points its rule had, so editing the model later does not rewrite the past.
//! - `decay`: optional `{"half_life_days": n}` (1 to 36 500): a hit of age `a` days counts
//!   `points * 0.5^(a / n)`.
//! - `min` / `max`: optional clamps.
//!
//! Saving checks the model against the tenant as the saving actor sees it and names every
//! bad part (`field_rules[0].filter.employee_count`, `event_rules[1].event`,
//! `decay.half_life_days`, `min`, ...).
//!
//! ## The score
//!
//! `score(lead, now) = round(Σ points of the field rules whose filter holds on the lead +
//! Σ over the lead's hits of points * 0.5^(age / half_life))`, rounded once (half away from
//! zero), then clamped to `[min, max]` ([`compute_score`]). [`Scoring::explain`] returns
//! each contribution, so a host can show why a lead has its score.
//!
//! ## Who computes it, and when
//!
//! The [`Engine`], on its feed: a lead's own change (created, updated,
//! status changed, restored, converted; not deleted, and not a score change) recomputes its
//! score; an event an event rule matches records a hit on each related lead and
//! recomputes it; a change of the model recomputes every lead; and
//! [`Engine::tick`](crate::Engine::tick) recomputes the decayed score of a lead with hits
//! at most once a day. A score is written only when it changes, and only through the
//! `lead.set_score` action kind the leads module offers, so the lead's audit trail and its
//! `lead.score_changed` event show it.
//!
//! **Exactly once.** Each write runs under a [`Cause`] whose rule is the model's
//! [`ScoringId::rule_id`] and whose occurrence is `e<seq>:<lead>` (an event) or
//! `d<due µs>:<lead>` (a decay recompute); the hits it records (keyed by lead, event and
//! rule index) and the lead's scoring state (versioned) go in [`Cause::writes`], so the
//! automation module's `before_commit` commits them with the score and the run-log line
//! that says why (the labels of the contributing rules). A redelivered event, or a second
//! engine, fails on those keys and writes nothing; two recomputes of one lead at once
//! conflict on the state's version and the loser computes again.
//!
//! **Loops.** The score's own change (an event carrying the model's rule id) starts no
//! scoring, and a lead's `lead.score_changed` event is not an input of field rules
//! (saving refuses a field rule on `score` and an event rule on `lead.score_changed`).
//! Chains through rules stop at [`EngineConfig::max_depth`](crate::EngineConfig) like
//! rules do.
//!
//! **Authority.** The model runs with the authority of the user who last saved it (their
//! current roles, from the directory), as a rule runs with its owner's: a lead or an
//! activity that user cannot see is, for the model, one that does not exist, and an
//! inactive user's model scores nothing (the run log says why). [`Scoring::explain`] and
//! [`Scoring::runs`] show a lead only to an actor who sees it (NotFound otherwise, like a
//! lead that does not exist), and name an event's record only when the actor sees it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use crmkit_core::query::check_limit;
use crmkit_core::record::Json;
use crmkit_core::row::{int, opt_timestamp, take_opt_text, take_text, timestamp, uuid};
use crmkit_core::service;
use crmkit_core::store::{
    CmpOp, ColumnType, Cond, IndexDef, OrderKey, Row, Select, TableDef, Value, Write, columns,
};
use crmkit_core::{
    AuditEntry, Cause, Changeset, Ctx, Error, Event, Filter, LeadId, RecordKind, RecordRef, Result,
    RuleId, Store, TenantId, UserId, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::engine::{Engine, RunReport};
use crate::eval::evaluate_conditions;
use crate::model::Conditions;
use crate::runlog::{self, RUN_TABLE, RunEntry};

/// The scoring model format this crate reads and writes.
pub const SCORING_FORMAT: u32 = 1;
/// Most field rules, and most event rules, of a model.
pub const MAX_SCORING_RULES: usize = 100;
/// The largest number of points (either sign) of one rule.
pub const MAX_POINTS: i64 = 1_000_000;
/// Longest rule label.
pub const MAX_LABEL: usize = 200;
/// Longest half life, in days (100 years).
pub const MAX_HALF_LIFE_DAYS: u32 = 36_500;

/// The models table: at most one row per tenant.
pub const SCORING_TABLE: &str = "automation_scoring";
/// The hits of event rules: one row per (lead, event, rule), written with the score.
pub const HIT_TABLE: &str = "automation_score_hits";
/// Per lead: the scoring state's version and when its decayed score is next due.
pub const STATE_TABLE: &str = "automation_score_state";
/// The record kind of scoring models (audit entries, events).
pub const SCORING_KIND: RecordKind = RecordKind::new("lead_scoring");
/// The events of scoring models.
pub const EVENT_KINDS: &[&str] = &["lead_scoring.created", "lead_scoring.updated"];

/// The one model slot of a tenant (a unique key, so two first saves cannot both win).
const SLOT: &str = "lead";
/// The leads module's action kind that writes a score.
const SET_SCORE: &str = "lead.set_score";
/// How often a decayed score is recomputed.
const DECAY_EVERY: TimeDelta = TimeDelta::days(1);

const MODEL_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("slot", Text(16), false),
        ("model", LongText, false),
        ("owner_id", Uuid, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("version", Int, false),
    ]
};

const HIT_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("lead_id", Uuid, false),
        ("seq", Int, false),
        ("rule", Int, false),
        ("label", Text(200), false),
        ("points", Int, false),
        ("at", Timestamp, false),
        ("source_kind", Text(64), true),
        ("source_id", Uuid, true),
    ]
};

const STATE_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("lead_id", Uuid, false),
        ("next_at", Timestamp, true),
        ("checked_at", Timestamp, false),
        ("version", Int, false),
    ]
};

/// The tables of lead scoring (the module's migration 3).
pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(SCORING_TABLE, columns(MODEL_COLUMNS), ["id"])
            .index(IndexDef::unique("automation_scoring_slot", ["slot"])),
        TableDef::new(HIT_TABLE, columns(HIT_COLUMNS), ["lead_id", "seq", "rule"]),
        TableDef::new(STATE_TABLE, columns(STATE_COLUMNS), ["lead_id"]).index(IndexDef::new(
            "automation_score_state_due",
            ["next_at", "lead_id"],
        )),
    ]
}

/// The id of a tenant's scoring model: made when the model is first saved and never
/// changed after. The same UUID is the model's [`RuleId`] ([`ScoringId::rule_id`]) in the
/// run log and on the causes of the score changes it makes (`Event::rule`), so the loop
/// guard and the exactly-once keys of rules apply to it unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScoringId(Uuid);

impl ScoringId {
    /// Wraps a UUID read back from storage.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        ScoringId(uuid)
    }

    /// The underlying UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The model as a rule: its run-log lines and the events of its score changes carry
    /// this id.
    pub const fn rule_id(&self) -> RuleId {
        RuleId::from_uuid(self.0)
    }
}

impl fmt::Display for ScoringId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for ScoringId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScoringId({})", self.0)
    }
}

impl From<ScoringId> for Uuid {
    fn from(id: ScoringId) -> Uuid {
        id.0
    }
}

impl From<ScoringId> for RecordRef {
    fn from(id: ScoringId) -> RecordRef {
        RecordRef::new(SCORING_KIND, id.0)
    }
}

/// Points while a filter over the lead's fields holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// What the rule means (1 to [`MAX_LABEL`] characters), shown in explanations.
    pub label: String,
    /// The query AST over the lead's JSON field names and `custom.<key>`.
    pub filter: Filter,
    /// The points (at most [`MAX_POINTS`] either way).
    pub points: i64,
}

/// Points for each event of a kind (whose record passes the filter), per related lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    /// What the rule means (1 to [`MAX_LABEL`] characters).
    pub label: String,
    /// An event kind of a composed module, such as `activity.created`.
    pub event: String,
    /// A filter over the event's record (its JSON field names), such as `type = meeting`.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// The points of one hit (at most [`MAX_POINTS`] either way).
    pub points: i64,
}

/// How event points fade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decay {
    /// After this many days (1 to [`MAX_HALF_LIFE_DAYS`]) a hit counts half its points.
    pub half_life_days: u32,
}

/// A tenant's lead scoring model (see the [module documentation](self)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringModel {
    /// Points for what the lead is.
    #[serde(default)]
    pub field_rules: Vec<FieldRule>,
    /// Points for what happened to it.
    #[serde(default)]
    pub event_rules: Vec<EventRule>,
    /// Decay of event points (none: they never fade).
    #[serde(default)]
    pub decay: Option<Decay>,
    /// The lowest score.
    #[serde(default)]
    pub min: Option<i64>,
    /// The highest score.
    #[serde(default)]
    pub max: Option<i64>,
}

impl ScoringModel {
    /// An empty model (every lead scores 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// With a field rule.
    pub fn field_rule(mut self, label: impl Into<String>, filter: Filter, points: i64) -> Self {
        self.field_rules.push(FieldRule {
            label: label.into(),
            filter,
            points,
        });
        self
    }

    /// With an event rule.
    pub fn event_rule(
        mut self,
        label: impl Into<String>,
        event: impl Into<String>,
        filter: Option<Filter>,
        points: i64,
    ) -> Self {
        self.event_rules.push(EventRule {
            label: label.into(),
            event: event.into(),
            filter,
            points,
        });
        self
    }

    /// With a half life of event points, in days.
    pub fn half_life_days(mut self, days: u32) -> Self {
        self.decay = Some(Decay {
            half_life_days: days,
        });
        self
    }

    /// With a lowest score.
    pub fn min(mut self, min: i64) -> Self {
        self.min = Some(min);
        self
    }

    /// With a highest score.
    pub fn max(mut self, max: i64) -> Self {
        self.max = Some(max);
        self
    }

    /// A model from its JSON text: `format` must be [`SCORING_FORMAT`]; malformed JSON,
    /// another format, an unknown member and a part of the wrong shape are one Validation
    /// error naming every bad part (`format`, `field_rules[2]`, `decay`, ...). This checks
    /// the shape; [`Scoring::put`] checks the model against the tenant.
    pub fn from_json(text: &str) -> Result<ScoringModel> {
        let v: Json = serde_json::from_str(text)
            .map_err(|e| Error::validation("_", format!("is not JSON: {}", clean(&e))))?;
        Self::from_value(v)
    }

    /// [`Self::from_json`] over a parsed JSON value.
    pub fn from_value(v: Json) -> Result<ScoringModel> {
        let Json::Object(mut m) = v else {
            return Err(Error::validation("_", "must be a JSON object"));
        };
        let mut errs = ValidationErrors::new();
        match m.remove("format") {
            None => errs.push(
                "format",
                format!("is required (this crmkit reads format {SCORING_FORMAT})"),
            ),
            Some(f) if f.as_u64() == Some(u64::from(SCORING_FORMAT)) => {}
            Some(f) => errs.push(
                "format",
                format!("{f} is not a scoring format this crmkit reads ({SCORING_FORMAT})"),
            ),
        }
        if !errs.is_empty() {
            return Err(errs.into());
        }
        for k in m.keys() {
            if !["field_rules", "event_rules", "decay", "min", "max"].contains(&k.as_str()) {
                errs.push(k.clone(), "is not a member of a scoring model");
            }
        }
        let mut model = ScoringModel::new();
        if let Some(v) = m.remove("field_rules") {
            model.field_rules = list(&mut errs, "field_rules", v);
        }
        if let Some(v) = m.remove("event_rules") {
            model.event_rules = list(&mut errs, "event_rules", v);
        }
        if let Some(v) = m.remove("decay") {
            model.decay = part(&mut errs, "decay", v).flatten();
        }
        for (name, slot) in [("min", &mut model.min), ("max", &mut model.max)] {
            match m.remove(name) {
                None | Some(Json::Null) => {}
                Some(v) => match v.as_i64() {
                    Some(n) => *slot = Some(n),
                    None => errs.push(name, "must be a whole number"),
                },
            }
        }
        errs.into_result()?;
        Ok(model)
    }

    /// The JSON document, with `"format": 1`.
    pub fn to_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("format".into(), SCORING_FORMAT.into());
        if let Json::Object(rest) = service::to_json(self) {
            m.extend(rest);
        }
        Json::Object(m)
    }
}

fn clean(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn part<T: serde::de::DeserializeOwned>(
    errs: &mut ValidationErrors,
    path: &str,
    v: Json,
) -> Option<T> {
    match serde_json::from_value(v) {
        Ok(t) => Some(t),
        Err(e) => {
            errs.push(path, clean(&e));
            None
        }
    }
}

/// A list whose items are parsed one by one, naming `path[i]`.
fn list<T: serde::de::DeserializeOwned>(
    errs: &mut ValidationErrors,
    path: &str,
    v: Json,
) -> Vec<T> {
    match v {
        Json::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| part(errs, &format!("{path}[{i}]"), item))
            .collect(),
        Json::Null => vec![],
        _ => {
            errs.push(path, "must be a list");
            vec![]
        }
    }
}

/// A tenant's saved model: the model, who saved it last (whose authority it runs with)
/// and the system fields. As JSON (audit entries, events) the model's members sit beside
/// the system fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredScoring {
    /// The model's id (also its [`RuleId`]).
    pub id: ScoringId,
    /// The format ([`SCORING_FORMAT`]).
    pub format: u32,
    /// The model.
    #[serde(flatten)]
    pub model: ScoringModel,
    /// The user who saved it last: the model runs with their authority.
    pub owner: UserId,
    /// When it was first saved.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it was last saved.
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
    /// The version ([`Scoring::put`] expects it).
    pub version: u64,
}

crmkit_core::versioned_record!(StoredScoring, ScoringId, SCORING_KIND, SCORING_TABLE);

fn model_row(s: &StoredScoring) -> Row {
    vec![
        Value::Uuid(s.id.0),
        Value::Text(SLOT.into()),
        Value::Text(s.model.to_json().to_string()),
        Value::Uuid(s.owner.as_uuid()),
        Value::timestamp(s.created_at),
        Value::timestamp(s.updated_at),
        Value::Int(s.version as i64),
    ]
}

fn decode_model(mut r: Row) -> Result<StoredScoring> {
    let text = take_text(&mut r[2])?;
    let v: Json = serde_json::from_str(&text).map_err(|e| Error::storage_from("scoring", e))?;
    let model = ScoringModel::from_value(v)
        .map_err(|e| Error::storage(format!("a stored scoring model does not parse: {e}")))?;
    Ok(StoredScoring {
        id: ScoringId(uuid(&r[0])?),
        format: SCORING_FORMAT,
        model,
        owner: UserId::from_uuid(uuid(&r[3])?),
        created_at: timestamp(&r[4])?,
        updated_at: timestamp(&r[5])?,
        version: int(&r[6])?.max(0) as u64,
    })
}

/// The tenant's model, if one was saved.
async fn load_model(store: &Store, tenant: TenantId) -> Result<Option<StoredScoring>> {
    let mut s = Select::new(SCORING_TABLE, Cond::eq("slot", SLOT));
    s.limit = Some(1);
    let rows = store.backend().select(tenant, &s).await?;
    rows.into_iter().next().map(decode_model).transpose()
}

/// The field names a filter reads.
fn filter_fields(f: &Filter, out: &mut Vec<String>) {
    match f {
        Filter::Cmp(n, ..)
        | Filter::In(n, _)
        | Filter::IsNull(n)
        | Filter::Contains(n, _)
        | Filter::StartsWith(n, _) => out.push(n.clone()),
        Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| filter_fields(f, out)),
        Filter::Not(f) => filter_fields(f, out),
    }
}

fn check_label_points(errs: &mut ValidationErrors, path: &str, label: &str, points: i64) {
    errs.check(crmkit_core::text::check_text(
        &format!("{path}.label"),
        label,
        MAX_LABEL,
        true,
    ));
    if !(-MAX_POINTS..=MAX_POINTS).contains(&points) {
        errs.push(
            format!("{path}.points"),
            format!("must be between -{MAX_POINTS} and {MAX_POINTS}"),
        );
    }
}

/// Checks a model against the tenant as `ctx` sees it, naming every bad part.
async fn check_model(store: &Store, ctx: &Ctx, m: &ScoringModel) -> Result<()> {
    let mut errs = ValidationErrors::new();
    let records = store.records();
    let lead = match records.describe(ctx, RecordKind::LEAD.as_str()).await {
        Ok(d) => Some(d),
        Err(Error::Validation(_)) => {
            errs.push(
                "_",
                "lead scoring needs the lead kind (the pipeline module)",
            );
            None
        }
        Err(e) => return Err(e),
    };
    for (name, n) in [
        ("field_rules", m.field_rules.len()),
        ("event_rules", m.event_rules.len()),
    ] {
        if n > MAX_SCORING_RULES {
            errs.push(name, format!("at most {MAX_SCORING_RULES} rules"));
        }
    }
    for (i, r) in m.field_rules.iter().enumerate() {
        let path = format!("field_rules[{i}]");
        check_label_points(&mut errs, &path, &r.label, r.points);
        let fp = format!("{path}.filter");
        if let Some(d) = &lead {
            crate::validate::check_filter(&mut errs, d, &fp, &r.filter, 0);
        }
        let mut names = vec![];
        filter_fields(&r.filter, &mut names);
        if names.iter().any(|n| n == "score") {
            errs.push(format!("{fp}.score"), "the score cannot depend on itself");
        }
    }
    for (i, r) in m.event_rules.iter().enumerate() {
        let path = format!("event_rules[{i}]");
        check_label_points(&mut errs, &path, &r.label, r.points);
        let ep = format!("{path}.event");
        let known = store
            .modules()
            .iter()
            .any(|m| m.event_kinds().contains(&r.event.as_str()));
        let kind = r.event.split_once('.').map_or(r.event.as_str(), |k| k.0);
        if !known {
            errs.push(
                ep,
                format!("{:?} is not an event kind of the composed modules", r.event),
            );
        } else if r.event.ends_with(".deleted") {
            errs.push(
                ep,
                "a deleted record relates to no lead that could be scored",
            );
        } else if r.event == "lead.score_changed" || kind == SCORING_KIND.as_str() {
            errs.push(ep, "the score's own changes cannot score");
        } else {
            match records.describe(ctx, kind).await {
                Ok(d) => {
                    if d.kind != RecordKind::LEAD
                        && !crate::validate::relates_to(&d, &RecordKind::LEAD)
                    {
                        errs.push(ep, format!("a {kind} never relates to a lead"));
                    }
                    if let Some(f) = &r.filter {
                        crate::validate::check_filter(
                            &mut errs,
                            &d,
                            &format!("{path}.filter"),
                            f,
                            0,
                        );
                    }
                }
                Err(Error::Validation(_)) => errs.push(
                    ep,
                    format!("{kind} is not a record kind, so its events relate to no lead"),
                ),
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(d) = m.decay
        && !(1..=MAX_HALF_LIFE_DAYS).contains(&d.half_life_days)
    {
        errs.push(
            "decay.half_life_days",
            format!("must be 1 to {MAX_HALF_LIFE_DAYS} days"),
        );
    }
    if let (Some(lo), Some(hi)) = (m.min, m.max)
        && lo > hi
    {
        errs.push("min", "must not be greater than max");
    }
    errs.into_result()
}

// ----- the score -----

/// A hit of an event rule on a lead, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreHit {
    /// The event's position in the change feed.
    pub seq: u64,
    /// The event rule's index in the model when the hit was recorded.
    pub rule: u32,
    /// The rule's label then.
    pub label: String,
    /// The rule's points then.
    pub points: i64,
    /// When the event happened (decay counts from here).
    #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
    pub at: DateTime<Utc>,
    /// The event's record when it is not the lead itself (an activity).
    pub record: Option<RecordRef>,
}

/// Where a contribution comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContributionSource {
    /// A field rule whose filter holds.
    Field {
        /// The rule's index in `field_rules`.
        rule: u32,
    },
    /// A hit of an event rule.
    Event {
        /// The rule's index in `event_rules` when the hit was recorded.
        rule: u32,
        /// The event's position in the change feed.
        seq: u64,
        /// When the event happened.
        #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
        at: DateTime<Utc>,
        /// The event's record, when it is not the lead and the reader may see it.
        record: Option<RecordRef>,
    },
}

/// One rule's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The rule's label.
    pub label: String,
    /// Which rule, and for an event rule which hit.
    pub source: ContributionSource,
    /// The rule's points.
    pub points: i64,
    /// The points after decay (the points themselves for a field rule, or without decay).
    pub decayed: f64,
}

/// Why a lead has its score ([`Scoring::explain`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreExplanation {
    /// The lead.
    pub lead: LeadId,
    /// The score the model gives the lead now (0 without a model).
    pub score: i64,
    /// The score stored on the lead (the engine writes `score` when it processes the
    /// lead's changes, events and decay).
    pub stored: i64,
    /// The model's version (`None`: the tenant has no model).
    pub model_version: Option<u64>,
    /// Each rule's part, field rules first (in model order), then the hits (oldest first).
    pub contributions: Vec<Contribution>,
}

/// The factor a hit of time `at` counts with at `now`: `0.5^(age days / half life)`
/// (1 without decay, and for a hit not yet in the past).
pub fn decay_factor(decay: Option<Decay>, at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let Some(d) = decay else {
        return 1.0;
    };
    let micros = match (now - at).num_microseconds() {
        Some(us) => us.max(0),
        None if now > at => i64::MAX,
        None => 0,
    };
    let days = micros as f64 / 86_400_000_000.0;
    0.5f64.powf(days / f64::from(d.half_life_days.max(1)))
}

/// Whether a filter holds on a record's JSON (three-valued: unknown does not hold).
fn holds(filter: &Filter, record: &Json) -> bool {
    let c = Conditions {
        filter: Some(filter.clone()),
        changes: vec![],
    };
    evaluate_conditions(&c, record, None).holds
}

/// The score `model` gives a lead (its JSON, as the generic record API reads it) with
/// `hits` at `now`, and each contribution: the field rules' points whose filter holds plus
/// each hit's decayed points, rounded once (half away from zero), clamped to `[min, max]`.
/// Pure.
pub fn compute_score(
    model: &ScoringModel,
    lead: &Json,
    hits: &[ScoreHit],
    now: DateTime<Utc>,
) -> (i64, Vec<Contribution>) {
    let mut out = vec![];
    let mut total = 0f64;
    for (i, r) in model.field_rules.iter().enumerate() {
        if holds(&r.filter, lead) {
            total += r.points as f64;
            out.push(Contribution {
                label: r.label.clone(),
                source: ContributionSource::Field { rule: i as u32 },
                points: r.points,
                decayed: r.points as f64,
            });
        }
    }
    let mut hits: Vec<&ScoreHit> = hits.iter().collect();
    hits.sort_by_key(|h| (h.seq, h.rule));
    for h in hits {
        let decayed = h.points as f64 * decay_factor(model.decay, h.at, now);
        total += decayed;
        out.push(Contribution {
            label: h.label.clone(),
            source: ContributionSource::Event {
                rule: h.rule,
                seq: h.seq,
                at: h.at,
                record: h.record.clone(),
            },
            points: h.points,
            decayed,
        });
    }
    // `as` saturates at the ends of i64; `round` is half away from zero.
    let mut score = total.round() as i64;
    if let Some(lo) = model.min {
        score = score.max(lo);
    }
    if let Some(hi) = model.max {
        score = score.min(hi);
    }
    (score, out)
}

fn fmt_points(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{:+}", x as i64)
    } else {
        format!("{x:+.2}")
    }
}

/// The run log's detail of a score change: the new and old score and each contributing
/// label with its points (hits of one label summed).
fn detail(old: Option<i64>, new: i64, contributions: &[Contribution]) -> String {
    let mut parts: Vec<(String, f64, usize)> = vec![];
    for c in contributions {
        match parts.iter_mut().find(|p| p.0 == c.label) {
            Some(p) => {
                p.1 += c.decayed;
                p.2 += 1;
            }
            None => parts.push((c.label.clone(), c.decayed, 1)),
        }
    }
    let why = if parts.is_empty() {
        "no rule contributes".to_owned()
    } else {
        parts
            .iter()
            .map(|(l, p, n)| match n {
                1 => format!("{l} {}", fmt_points(*p)),
                n => format!("{l} {} ({n} hits)", fmt_points(*p)),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let was = old.map_or_else(|| "none".to_owned(), |o| o.to_string());
    format!("set the lead's score to {new} (was {was}): {why}")
}

// ----- the API -----

/// The lead scoring API: the tenant's model (every user reads it; Admin and Manager save
/// it), why a lead has its score, and the run log of a lead's score changes. See the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct Scoring {
    store: Store,
}

impl Scoring {
    /// The API over a store composed with the automation module.
    pub fn new(store: &Store) -> Result<Scoring> {
        store.require_module(crate::MODULE_NAME)?;
        Ok(Scoring {
            store: store.clone(),
        })
    }

    /// The tenant's model (`None` until one is saved). Every user of the tenant may read
    /// it, as configuration.
    pub async fn get(&self, ctx: &Ctx) -> Result<Option<StoredScoring>> {
        load_model(&self.store, ctx.tenant()).await
    }

    /// Saves the tenant's model (Admin or Manager; PermissionDenied otherwise), based on
    /// `expected_version` (0 when there is none yet; a stale version is a Conflict). The
    /// model is checked against the tenant as the actor sees it (Validation naming every
    /// bad part: `field_rules[i].label`, `.points`, `.filter.<field>`, `event_rules[i].event`,
    /// `.filter.<field>`, `field_rules` / `event_rules` over [`MAX_SCORING_RULES`],
    /// `decay.half_life_days`, `min`). The saving actor becomes the model's owner: it runs
    /// with their authority. Audited, with a `lead_scoring.created` / `.updated` event;
    /// the engine recomputes every lead when it sees the event.
    pub async fn put(
        &self,
        ctx: &Ctx,
        expected_version: u64,
        model: ScoringModel,
    ) -> Result<StoredScoring> {
        ctx.actor().require_manage("save the lead scoring model")?;
        check_model(&self.store, ctx, &model).await?;
        let old = self.get(ctx).await?;
        let Some(old) = old else {
            if expected_version != 0 {
                return Err(Error::conflict(
                    RecordRef::new(SCORING_KIND, Uuid::nil()),
                    expected_version,
                    0,
                ));
            }
            let now = ctx.now();
            let s = StoredScoring {
                id: ScoringId(Uuid::now_v7()),
                format: SCORING_FORMAT,
                model,
                owner: ctx.actor().user,
                created_at: now,
                updated_at: now,
                version: 1,
            };
            let mut cs = Changeset::new(ctx);
            service::stage_insert(&mut cs, &s, model_row(&s));
            return match self.store.commit(cs).await {
                Ok(_) => Ok(s),
                // Another first save won the tenant's slot.
                Err(Error::Duplicate { .. }) => {
                    let actual = self.get(ctx).await?.map_or(0, |m| m.version);
                    Err(Error::conflict(s.id, expected_version, actual))
                }
                Err(e) => Err(e),
            };
        };
        service::check_version(old.id, expected_version, old.version)?;
        let new = StoredScoring {
            model,
            owner: ctx.actor().user,
            ..old.clone()
        };
        let row = |s: &StoredScoring| Ok(model_row(s));
        service::update_record(&self.store, ctx, old, new, "lead_scoring.updated", row).await
    }

    /// The audit trail of the tenant's model, oldest first (empty before it is saved).
    pub async fn audit(&self, ctx: &Ctx) -> Result<Vec<AuditEntry>> {
        match self.get(ctx).await? {
            Some(m) => self.store.audit_unchecked(ctx, &m.id.into()).await,
            None => Ok(vec![]),
        }
    }

    /// Why a lead the actor sees has its score: the score the model gives it now (with the
    /// actor's clock), the score stored on it and each contribution. A lead the actor
    /// cannot see is NotFound, like one that does not exist; an event's record is named
    /// only when the actor sees it.
    pub async fn explain(&self, ctx: &Ctx, lead: LeadId) -> Result<ScoreExplanation> {
        let records = self.store.records();
        let value = records
            .get(ctx, RecordKind::LEAD.as_str(), lead.as_uuid())
            .await?
            .into_value();
        let stored = value.get("score").and_then(Json::as_i64).unwrap_or(0);
        let Some(model) = self.get(ctx).await? else {
            return Ok(ScoreExplanation {
                lead,
                score: 0,
                stored,
                model_version: None,
                contributions: vec![],
            });
        };
        let mut hits = read_hits(&self.store, ctx.tenant(), lead.as_uuid()).await?;
        for h in &mut hits {
            if let Some(r) = &h.record
                && !records.visible(ctx, r).await?
            {
                h.record = None;
            }
        }
        let (score, contributions) = compute_score(&model.model, &value, &hits, ctx.now());
        Ok(ScoreExplanation {
            lead,
            score,
            stored,
            model_version: Some(model.version),
            contributions,
        })
    }

    /// The run log of the model on a lead the actor sees (deleted or not; NotFound
    /// otherwise, like a lead that does not exist): each score change with the labels
    /// that made it, and why the model skipped the lead. Newest first, at most `limit`
    /// (1 to 1000) lines. (The model is not a rule: [`Engine::runs_of_record`] lists the
    /// rules' lines only.)
    pub async fn runs(&self, ctx: &Ctx, lead: LeadId, limit: u32) -> Result<Vec<RunEntry>> {
        check_limit(limit)?;
        self.store
            .records()
            .audit(ctx, RecordKind::LEAD.as_str(), lead.as_uuid())
            .await?;
        let Some(model) = self.get(ctx).await? else {
            return Ok(vec![]);
        };
        let mut s = Select::new(
            RUN_TABLE,
            Cond::eq("record_kind", RecordKind::LEAD.as_str())
                .and(Cond::eq("record_id", lead.as_uuid()))
                .and(Cond::eq("rule_id", model.id.as_uuid())),
        );
        s.order = vec![OrderKey::desc("at"), OrderKey::desc("occurrence")];
        s.limit = Some(limit);
        let rows = self.store.backend().select(ctx.tenant(), &s).await?;
        rows.into_iter().map(runlog::decode_run).collect()
    }
}

// ----- storage of hits and state -----

fn hit_row(lead: Uuid, h: &ScoreHit) -> Write {
    let (sk, si) = match &h.record {
        Some(r) => (Value::Text(r.kind.as_str().to_owned()), Value::Uuid(r.id)),
        None => (Value::Null, Value::Null),
    };
    Write::Insert {
        table: HIT_TABLE,
        row: vec![
            Value::Uuid(lead),
            Value::Int(h.seq as i64),
            Value::Int(i64::from(h.rule)),
            Value::Text(h.label.clone()),
            Value::Int(h.points),
            Value::timestamp(h.at),
            sk,
            si,
        ],
    }
}

fn decode_hit(mut r: Row) -> Result<ScoreHit> {
    let record = match take_opt_text(&mut r[6]) {
        Some(k) => Some(RecordRef::new(RecordKind::parse(&k)?, uuid(&r[7])?)),
        None => None,
    };
    Ok(ScoreHit {
        seq: int(&r[1])?.max(0) as u64,
        rule: u32::try_from(int(&r[2])?).map_err(|_| Error::storage("malformed hit row"))?,
        label: take_text(&mut r[3])?,
        points: int(&r[4])?,
        at: timestamp(&r[5])?,
        record,
    })
}

async fn read_hits(store: &Store, tenant: TenantId, lead: Uuid) -> Result<Vec<ScoreHit>> {
    let mut s = Select::new(HIT_TABLE, Cond::eq("lead_id", lead));
    s.order = vec![OrderKey::asc("seq"), OrderKey::asc("rule")];
    let rows = store.backend().select(tenant, &s).await?;
    rows.into_iter().map(decode_hit).collect()
}

/// A lead's scoring state.
struct State {
    version: u64,
    next_at: Option<DateTime<Utc>>,
}

async fn read_state(store: &Store, tenant: TenantId, lead: Uuid) -> Result<Option<State>> {
    let row = store
        .backend()
        .get(tenant, STATE_TABLE, &[Value::Uuid(lead)])
        .await?;
    row.map(|r| {
        Ok(State {
            next_at: opt_timestamp(&r[1])?,
            version: int(&r[3])?.max(0) as u64,
        })
    })
    .transpose()
}

/// The state's write: an insert, or an update at the version read (a concurrent
/// recompute of the lead makes it a Conflict or a Duplicate).
fn state_write(
    lead: &RecordRef,
    state: &Option<State>,
    next_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Write {
    match state {
        None => Write::Insert {
            table: STATE_TABLE,
            row: vec![
                Value::Uuid(lead.id),
                Value::opt_timestamp(next_at),
                Value::timestamp(now),
                Value::Int(1),
            ],
        },
        Some(s) => Write::Update {
            table: STATE_TABLE,
            key: vec![Value::Uuid(lead.id)],
            set: vec![
                ("next_at", Value::opt_timestamp(next_at)),
                ("checked_at", Value::timestamp(now)),
            ],
            expect_version: Some(s.version),
            record: lead.clone(),
        },
    }
}

// ----- the engine's part -----

/// Each tenant's model, as the engine last loaded it.
#[derive(Default)]
pub(crate) struct ModelCache(Mutex<HashMap<TenantId, Option<Arc<StoredScoring>>>>);

impl ModelCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Option<Arc<StoredScoring>>>> {
        // Each operation is one insert or get: a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The tenant's model, loaded once and again when `reload`.
async fn model(e: &Engine, tenant: TenantId, reload: bool) -> Result<Option<Arc<StoredScoring>>> {
    if !reload && let Some(m) = e.scoring.lock().get(&tenant) {
        return Ok(m.clone());
    }
    let m = load_model(&e.store, tenant).await?.map(Arc::new);
    e.scoring.lock().insert(tenant, m.clone());
    Ok(m)
}

/// The context of the user who saved the model, or why the model cannot act.
async fn authority(
    e: &Engine,
    tenant: TenantId,
    model: &StoredScoring,
) -> Result<std::result::Result<Ctx, String>> {
    match e.store.directory().ctx_for(tenant, model.owner).await {
        Ok(ctx) => Ok(Ok(ctx
            .with_clock(e.clock.clone())
            .with_origin("automation"))),
        Err(Error::PermissionDenied(_)) => Ok(Err(
            "the user who saved the scoring model is not an active user".into(),
        )),
        Err(err) => Err(err),
    }
}

/// What a recompute does with the lead's decay due instant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Keep it (set it only when it is missing and needed).
    Keep,
    /// Set it a day from now (the daily decay recompute).
    Reset,
}

/// The leads in a record's `related` list.
fn related_leads(record: &Json) -> Vec<Uuid> {
    let mut out: Vec<Uuid> = record
        .get("related")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("kind").and_then(Json::as_str) == Some(RecordKind::LEAD.as_str()))
        .filter_map(|r| r.get("id").and_then(Json::as_str))
        .filter_map(|s| Uuid::parse_str(s).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Writes the model's line saying why it did not score (once per occurrence and record).
#[allow(clippy::too_many_arguments)]
async fn skip(
    e: &Engine,
    tenant: TenantId,
    model: &StoredScoring,
    occurrence: &str,
    record: &RecordRef,
    depth: u32,
    why: &str,
    report: &mut RunReport,
) -> Result<()> {
    report.skipped += 1;
    let row = runlog::skipped_row(
        model.id.rule_id(),
        occurrence,
        Some(record),
        depth,
        why,
        e.now(),
    );
    e.commit_once(tenant, vec![row]).await
}

/// Scoring's part of dispatching one event (called by the engine after the rules): see
/// the [module documentation](self).
pub(crate) async fn on_event(
    e: &Engine,
    tenant: TenantId,
    ev: &Event,
    report: &mut RunReport,
) -> Result<()> {
    let model_changed = ev.record.kind == SCORING_KIND;
    let Some(model) = model(e, tenant, model_changed).await? else {
        return Ok(());
    };
    if ev.rule == Some(model.id.rule_id()) {
        // The loop guard: the model's own score change.
        return Ok(());
    }
    let is_lead = ev.record.kind == RecordKind::LEAD;
    let verb = ev.kind.rsplit_once('.').map_or("", |v| v.1);
    let lead_changed = is_lead && !matches!(verb, "deleted" | "score_changed");
    let rules: Vec<(u32, &EventRule)> = model
        .model
        .event_rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.event == ev.kind)
        .map(|(i, r)| (i as u32, r))
        .collect();
    if !model_changed && !lead_changed && rules.is_empty() {
        return Ok(());
    }
    let occurrence = format!("e{}", ev.seq);
    let depth = ev.depth + 1;
    if depth > e.config().max_depth {
        let why = format!(
            "depth limit: the change was made by a chain of {} rules (the limit is {})",
            ev.depth,
            e.config().max_depth
        );
        return skip(
            e,
            tenant,
            &model,
            &occurrence,
            &ev.record,
            depth,
            &why,
            report,
        )
        .await;
    }
    let ctx = match authority(e, tenant, &model).await? {
        Ok(c) => c,
        Err(why) => {
            return skip(
                e,
                tenant,
                &model,
                &occurrence,
                &ev.record,
                depth,
                &why,
                report,
            )
            .await;
        }
    };
    if model_changed {
        // Every lead the model sees, again under the new model.
        let mut q = crmkit_core::Query::new().limit(crmkit_core::query::MAX_LIMIT);
        loop {
            let page = e
                .store
                .records()
                .list(&ctx, RecordKind::LEAD.as_str(), &q)
                .await?;
            for r in &page.items {
                let Some(id) = r.id() else { continue };
                let occ = format!("{occurrence}:{id}");
                let run = Recompute {
                    tenant,
                    ctx: &ctx,
                    model: &model,
                    lead: RecordRef::new(RecordKind::LEAD, id),
                    occurrence: &occ,
                    depth,
                    due: Due::Keep,
                };
                run.run(e, vec![], report).await?;
            }
            match page.next_cursor {
                Some(c) => q = q.after(c),
                None => return Ok(()),
            }
        }
    }
    let mut per_lead: BTreeMap<Uuid, Vec<ScoreHit>> = BTreeMap::new();
    if lead_changed {
        per_lead.entry(ev.record.id).or_default();
    }
    if !rules.is_empty() {
        match e.current(&ctx, &ev.record).await? {
            None => {
                let why = format!(
                    "the {} is gone or not visible to the user who saved the scoring model",
                    ev.record.kind
                );
                skip(
                    e,
                    tenant,
                    &model,
                    &occurrence,
                    &ev.record,
                    depth,
                    &why,
                    report,
                )
                .await?;
            }
            Some(record) => {
                let leads = if is_lead {
                    vec![ev.record.id]
                } else {
                    related_leads(&record)
                };
                for (i, r) in &rules {
                    if r.filter.as_ref().is_some_and(|f| !holds(f, &record)) {
                        continue;
                    }
                    for l in &leads {
                        per_lead.entry(*l).or_default().push(ScoreHit {
                            seq: ev.seq,
                            rule: *i,
                            label: r.label.clone(),
                            points: r.points,
                            at: ev.at,
                            record: (!is_lead).then(|| ev.record.clone()),
                        });
                    }
                }
            }
        }
    }
    for (lead, hits) in per_lead {
        let occ = format!("{occurrence}:{lead}");
        let run = Recompute {
            tenant,
            ctx: &ctx,
            model: &model,
            lead: RecordRef::new(RecordKind::LEAD, lead),
            occurrence: &occ,
            depth,
            due: Due::Keep,
        };
        run.run(e, hits, report).await?;
    }
    Ok(())
}

/// Recomputes the decayed scores that are due (at most 1000 leads a call; each lead at
/// most once a day): called by [`Engine::tick`].
pub(crate) async fn decay_due(e: &Engine, tenant: TenantId) -> Result<RunReport> {
    let mut report = RunReport::default();
    let now = e.now();
    let mut s = Select::new(
        STATE_TABLE,
        Cond::Cmp("next_at".into(), CmpOp::Lte, Value::timestamp(now)),
    );
    s.order = vec![OrderKey::asc("next_at"), OrderKey::asc("lead_id")];
    s.limit = Some(crmkit_core::query::MAX_LIMIT);
    let due = e.store.backend().select(tenant, &s).await?;
    if due.is_empty() {
        return Ok(report);
    }
    let Some(model) = model(e, tenant, true).await? else {
        return Ok(report);
    };
    let Ok(ctx) = authority(e, tenant, &model).await? else {
        // Scores wait until the model is saved by an active user.
        return Ok(report);
    };
    for row in due {
        let lead = uuid(&row[0])?;
        let at = opt_timestamp(&row[1])?.unwrap_or(now);
        let occ = format!("d{}:{lead}", at.timestamp_micros());
        let run = Recompute {
            tenant,
            ctx: &ctx,
            model: &model,
            lead: RecordRef::new(RecordKind::LEAD, lead),
            occurrence: &occ,
            depth: 1,
            due: Due::Reset,
        };
        run.run(e, vec![], &mut report).await?;
    }
    Ok(report)
}

/// One recompute of one lead's score.
struct Recompute<'a> {
    tenant: TenantId,
    ctx: &'a Ctx,
    model: &'a StoredScoring,
    lead: RecordRef,
    occurrence: &'a str,
    depth: u32,
    due: Due,
}

impl Recompute<'_> {
    async fn skip(&self, e: &Engine, why: &str, report: &mut RunReport) -> Result<()> {
        if self.due == Due::Reset {
            // Not due again until something changes.
            let w = Write::UpdateWhere {
                table: STATE_TABLE,
                cond: Cond::eq("lead_id", self.lead.id),
                set: vec![("next_at", Value::Null)],
            };
            e.commit_once(self.tenant, vec![w]).await?;
        }
        let (m, o, l, d) = (self.model, self.occurrence, &self.lead, self.depth);
        skip(e, self.tenant, m, o, l, d, why, report).await
    }

    /// Records `new_hits` and writes the score when it changed, once (see the module
    /// documentation); again after a concurrent recompute of the same lead.
    async fn run(&self, e: &Engine, new_hits: Vec<ScoreHit>, report: &mut RunReport) -> Result<()> {
        let tenant = self.tenant;
        let key = runlog::key(self.model.id.rule_id(), self.occurrence, Some(0));
        let mut last = None;
        for _ in 0..4 {
            let Some(lead) = e.current(self.ctx, &self.lead).await? else {
                let why = "the lead is gone or not visible to the user who saved the scoring model";
                return self.skip(e, why, report).await;
            };
            let state = read_state(&e.store, tenant, self.lead.id).await?;
            let mut hits = read_hits(&e.store, tenant, self.lead.id).await?;
            let fresh: Vec<ScoreHit> = new_hits
                .iter()
                .filter(|h| !hits.iter().any(|o| o.seq == h.seq && o.rule == h.rule))
                .cloned()
                .collect();
            hits.extend(fresh.iter().cloned());
            let now = e.now();
            let (score, contributions) = compute_score(&self.model.model, &lead, &hits, now);
            let current = lead.get("score").and_then(Json::as_i64);
            let next_at = match (self.model.model.decay, hits.is_empty(), &state) {
                (None, _, _) | (_, true, _) => None,
                (
                    Some(_),
                    false,
                    Some(State {
                        next_at: Some(n), ..
                    }),
                ) if self.due == Due::Keep => Some(*n),
                _ => Some(now + DECAY_EVERY),
            };
            let state_changes = match &state {
                None => next_at.is_some(),
                Some(s) => s.next_at != next_at || self.due == Due::Reset,
            };
            let state_w = state_write(&self.lead, &state, next_at, now);
            if fresh.is_empty() && current == Some(score) {
                if !state_changes {
                    return Ok(());
                }
                // Only the bookkeeping of when the decay is next due.
                match e.store.commit(e.changeset(tenant, vec![state_w])).await {
                    Ok(_) => return Ok(()),
                    Err(err @ (Error::Conflict { .. } | Error::Duplicate { .. })) => {
                        last = Some(err);
                        continue;
                    }
                    Err(err) => return Err(err),
                }
            }
            let mut writes: Vec<Write> = fresh.iter().map(|h| hit_row(self.lead.id, h)).collect();
            writes.push(state_w);
            let cause = Cause {
                rule: self.model.id.rule_id(),
                occurrence: self.occurrence.to_owned(),
                action: 0,
                depth: self.depth,
                record: Some(self.lead.clone()),
                detail: detail(current, score, &contributions),
                attempt: Uuid::now_v7(),
                writes,
            };
            let actx = self.ctx.clone().with_cause(cause.clone());
            let params = json!({ "score": score });
            let outcome = e.module_action(&actx, SET_SCORE, &self.lead, params).await;
            let err = match outcome {
                Ok(()) => match e.recorded_attempt(tenant, &key).await? {
                    Some(a) if a == cause.attempt => {
                        report.applied += 1;
                        return Ok(());
                    }
                    Some(_) => {
                        report.already_applied += 1;
                        return Ok(());
                    }
                    None => {
                        // The lead had the score: the hits and the state are recorded
                        // all the same, with the run-log line.
                        let mut cs = e.changeset(tenant, vec![]);
                        cs.cause = Some(cause);
                        match e.store.commit(cs).await {
                            Ok(_) => {
                                report.applied += 1;
                                return Ok(());
                            }
                            Err(err) => err,
                        }
                    }
                },
                Err(err) => err,
            };
            if e.recorded_attempt(tenant, &key).await?.is_some() {
                // Another engine recorded this recompute first.
                report.already_applied += 1;
                return Ok(());
            }
            match err {
                Error::Conflict { .. } | Error::Duplicate { .. } => last = Some(err),
                Error::InvalidTransition { .. }
                | Error::NotFound { .. }
                | Error::PermissionDenied(_)
                | Error::Validation(_) => {
                    let why = format!("the score was not written: {err}");
                    return self.skip(e, &why, report).await;
                }
                err => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| Error::storage("lead scoring kept conflicting")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmkit_core::query::CmpOpName;
    use proptest::prelude::*;

    fn at(days: f64) -> DateTime<Utc> {
        let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        base + TimeDelta::microseconds((days * 86_400e6) as i64)
    }

    #[test]
    fn json_round_trip_and_shape_errors() {
        let m = ScoringModel::new()
            .field_rule("Big", Filter::gt("employee_count", 100), 10)
            .event_rule(
                "Meeting held",
                "activity.created",
                Some(Filter::eq("type", "meeting")),
                15,
            )
            .half_life_days(30)
            .min(0)
            .max(100);
        assert_eq!(m.to_json()["format"], json!(1));
        let text = m.to_json().to_string();
        assert_eq!(ScoringModel::from_json(&text).unwrap(), m);
        let err = ScoringModel::from_json(r#"{"field_rules": []}"#).unwrap_err();
        assert!(err.validation_errors().unwrap().has("format"));
        let err = ScoringModel::from_json(r#"{"format": 2}"#).unwrap_err();
        assert!(err.validation_errors().unwrap().has("format"));
        let err = ScoringModel::from_json(
            r#"{"format": 1, "colour": 1, "field_rules": [{"label": "x"}],
                "event_rules": 3, "decay": {"half_life_days": -1}, "min": "low"}"#,
        )
        .unwrap_err();
        let v = err.validation_errors().unwrap();
        for part in ["colour", "field_rules[0]", "event_rules", "decay", "min"] {
            assert!(v.has(part), "{part}: {v:?}");
        }
        assert!(ScoringModel::from_json("{").is_err());
    }

    #[test]
    fn score_rounds_once_and_clamps() {
        let hit = |seq, points, days| ScoreHit {
            seq,
            rule: 0,
            label: "Meeting".into(),
            points,
            at: at(days),
            record: None,
        };
        let m = ScoringModel::new()
            .field_rule("Big", Filter::gt("employee_count", 100), 10)
            .half_life_days(10);
        let lead = json!({"employee_count": 500});
        // Two hits of 5 at one half life: 2.5 + 2.5 = 5 (rounded once, not 3 + 3).
        let (s, c) = compute_score(&m, &lead, &[hit(1, 5, 0.0), hit(2, 5, 0.0)], at(10.0));
        assert_eq!(s, 15);
        assert_eq!(c.len(), 3);
        assert!((c[1].decayed - 2.5).abs() < 1e-9);
        // Half away from zero: -2.5 -> -3.
        let m2 = ScoringModel::new().half_life_days(10);
        let (s, _) = compute_score(&m2, &lead, &[hit(1, -5, 0.0)], at(10.0));
        assert_eq!(s, -3);
        let (s, _) = compute_score(&m.clone().max(12), &lead, &[], at(0.0));
        assert_eq!(s, 10);
        let (s, _) = compute_score(&m.clone().min(11).max(12), &lead, &[], at(0.0));
        assert_eq!(s, 11);
        // A null field is unknown: no points.
        let (s, c) = compute_score(&m, &json!({"employee_count": null}), &[], at(0.0));
        assert_eq!((s, c.len()), (0, 0));
        // A hit in the future counts in full.
        assert_eq!(decay_factor(m.decay, at(5.0), at(1.0)), 1.0);
    }

    #[test]
    fn detail_names_the_labels() {
        let m = ScoringModel::new()
            .field_rule("Big", Filter::gt("employee_count", 100), 10)
            .half_life_days(10);
        let hit = |seq| ScoreHit {
            seq,
            rule: 0,
            label: "Meeting".into(),
            points: 4,
            at: at(0.0),
            record: None,
        };
        let (s, c) = compute_score(
            &m,
            &json!({"employee_count": 500}),
            &[hit(1), hit(2)],
            at(10.0),
        );
        assert_eq!(
            detail(Some(3), s, &c),
            "set the lead's score to 14 (was 3): Big +10; Meeting +4 (2 hits)"
        );
        assert_eq!(
            detail(None, 0, &[]),
            "set the lead's score to 0 (was none): no rule contributes"
        );
        let j = json!({"related": [{"kind": "lead", "id": Uuid::nil()}, {"kind": "contact", "id": Uuid::max()}, {"kind": "lead", "id": Uuid::nil()}]});
        assert_eq!(related_leads(&j), vec![Uuid::nil()]);
    }

    /// A field rule the oracle understands: `status = s` or `employee_count > n`.
    #[derive(Debug, Clone)]
    enum Rule {
        Status(&'static str),
        Bigger(i64),
    }

    const STATUSES: [&str; 3] = ["new", "contacted", "qualified"];

    fn rule() -> impl Strategy<Value = (Rule, i64)> {
        (
            prop_oneof![
                (0..3usize).prop_map(|i| Rule::Status(STATUSES[i])),
                (0..50i64).prop_map(Rule::Bigger),
            ],
            -100..100i64,
        )
    }

    /// The oracle: brute force, written from the definition, with another decay formula
    /// (`2^(-age/h)` from whole microseconds) and rounding by hand.
    fn oracle(
        rules: &[(Rule, i64)],
        hits: &[(i64, i64)],
        half_life: Option<u32>,
        clamp: (Option<i64>, Option<i64>),
        status: usize,
        employees: Option<i64>,
        now_us: i64,
    ) -> (f64, i64) {
        let mut total = 0f64;
        for (r, p) in rules {
            let on = match r {
                Rule::Status(s) => *s == STATUSES[status],
                Rule::Bigger(n) => employees.is_some_and(|e| e > *n),
            };
            if on {
                total += *p as f64;
            }
        }
        for (p, at_us) in hits {
            let f = match half_life {
                None => 1.0,
                Some(h) => {
                    let age = ((now_us - at_us).max(0)) as f64 / 86_400e6;
                    (-age / f64::from(h)).exp2()
                }
            };
            total += *p as f64 * f;
        }
        let mut s = total.signum() * (total.abs() + 0.5).floor();
        if let Some(lo) = clamp.0 {
            s = s.max(lo as f64);
        }
        if let Some(hi) = clamp.1 {
            s = s.min(hi as f64);
        }
        (total, s as i64)
    }

    fn build(
        rules: &[(Rule, i64)],
        hits: &[(i64, i64)],
        half_life: Option<u32>,
        clamp: (Option<i64>, Option<i64>),
    ) -> (ScoringModel, Vec<ScoreHit>) {
        let mut m = ScoringModel::new();
        for (r, p) in rules {
            let f = match r {
                Rule::Status(s) => Filter::eq("status", *s),
                Rule::Bigger(n) => Filter::Cmp(
                    "employee_count".into(),
                    CmpOpName::Gt,
                    crmkit_core::query::FieldValue::Int(*n),
                ),
            };
            m = m.field_rule("f", f, *p);
        }
        m.decay = half_life.map(|h| Decay { half_life_days: h });
        m.min = clamp.0;
        m.max = clamp.1;
        let hits = hits
            .iter()
            .enumerate()
            .map(|(i, (p, at_us))| ScoreHit {
                seq: i as u64 + 1,
                rule: 0,
                label: "e".into(),
                points: *p,
                at: at(0.0) + TimeDelta::microseconds(*at_us),
                record: None,
            })
            .collect();
        (m, hits)
    }

    proptest! {
        #[test]
        fn score_matches_the_oracle(
            rules in prop::collection::vec(rule(), 0..6),
            hits in prop::collection::vec((-1000..1000i64, 0..(400 * 86_400_000_000i64)), 0..8),
            half_life in prop::option::of(1..60u32),
            lo in prop::option::of(-200..0i64),
            hi in prop::option::of(0..200i64),
            status in 0..3usize,
            employees in prop::option::of(0..60i64),
            now_us in 0..(500 * 86_400_000_000i64),
        ) {
            let (m, hs) = build(&rules, &hits, half_life, (lo, hi));
            let lead = json!({"status": STATUSES[status], "employee_count": employees});
            let now = at(0.0) + TimeDelta::microseconds(now_us);
            let (got, contributions) = compute_score(&m, &lead, &hs, now);
            let rel: Vec<(i64, i64)> = hits.clone();
            let (exact, want) = oracle(&rules, &rel, half_life, (lo, hi), status, employees, now_us);
            // Equal, except where the exact sum is a hair from a rounding boundary (the two
            // formulas may land on either side of it).
            let near_half = (exact.abs().fract() - 0.5).abs() < 1e-6;
            prop_assert!(got == want || near_half, "got {got}, oracle {want} ({exact})");
            prop_assert_eq!(contributions.len() - hs.len(), rules.iter().filter(|(r, _)| match r {
                Rule::Status(s) => *s == STATUSES[status],
                Rule::Bigger(n) => employees.is_some_and(|e| e > *n),
            }).count());
        }

        #[test]
        fn decay_is_monotone(
            hits in prop::collection::vec((1..1000i64, 0..(100 * 86_400_000_000i64)), 1..8),
            half_life in 1..60u32,
            t1 in 0..(200 * 86_400_000_000i64),
            dt in 0..(200 * 86_400_000_000i64),
            negative in any::<bool>(),
        ) {
            let hits: Vec<(i64, i64)> = hits
                .into_iter()
                .map(|(p, a)| (if negative { -p } else { p }, a))
                .collect();
            let (m, hs) = build(&[], &hits, Some(half_life), (None, None));
            let lead = json!({});
            let now1 = at(0.0) + TimeDelta::microseconds(t1);
            let now2 = now1 + TimeDelta::microseconds(dt);
            let (s1, c1) = compute_score(&m, &lead, &hs, now1);
            let (s2, c2) = compute_score(&m, &lead, &hs, now2);
            // Later, every hit counts no more (in size) than before, and the score moves
            // toward zero.
            for (a, b) in c1.iter().zip(&c2) {
                prop_assert!(b.decayed.abs() <= a.decayed.abs() + 1e-12);
            }
            if negative {
                prop_assert!(s2 >= s1, "{s1} -> {s2}");
            } else {
                prop_assert!(s2 <= s1, "{s1} -> {s2}");
            }
            // Nothing decays without a half life.
            let (m0, _) = build(&[], &hits, None, (None, None));
            let (n1, _) = compute_score(&m0, &lead, &hs, now1);
            let (n2, _) = compute_score(&m0, &lead, &hs, now2);
            prop_assert_eq!(n1, n2);
        }
    }
}
