//! Deal progress reports: the stage funnel, time in stage, lost reasons and slipped deals.
//!
//! ## Which deals
//! Every report sees the deals the actor sees, through the same condition deal lists use
//! (`visibility_scope`: Admin and Manager every deal, a Rep and a ReadOnly user their own
//! and their teams' deals), and never a deleted deal. The stage history and the close-date
//! history have no owner or deletion of their own, so the funnel, time in stage and
//! slipped deals first read the ids of the deals in scope from the deals table (one
//! column) and then aggregate the history rows of those deals only, 500 deal ids per
//! aggregate (`deal_id IN (..)` on the history tables' primary keys, which lead with the
//! deal). A hidden or deleted deal's history never reaches a count, a sum or a group.
//!
//! ## Stage funnel ([`StageFunnel`])
//! The **cohort** is the deals created on a local date of the period (in the tenant's
//! report zone). The **steps** of a pipeline are its live open stages in their current
//! order, then one last step, *won* (any of its won stages); lost stages are not steps.
//! A deal of the cohort **reached step `k`** when its stage history (all of it, up to
//! now) has an entry into the step-`k` stage *or into any later step* of that pipeline
//! (a won stage is later than every open stage). So:
//! - a deal that **skips** stages (moved from the first stage straight to the third)
//!   reached the skipped ones too: it went past them;
//! - a deal that **moves backwards** keeps what it reached: the furthest step it ever
//!   entered counts, not where it is now;
//! - entries into lost stages, into stages since removed and into other pipelines' stages
//!   do not count for the pipeline (a deal moved between pipelines counts in each, by
//!   its entries there).
//!
//! Hence `reached` never grows from one step to the next, and the row's `conversion` is
//! the share of the deals that reached step `k` which also reached step `k + 1`:
//! `reached(k + 1) / reached(k)`, rounded half to even to 4 places (`None` on the won
//! step and when no deal reached step `k`). The backend groups the cohort's history rows
//! by (deal, stage) (there is no `COUNT(DISTINCT ..)` or per-deal maximum in the storage
//! contract); the furthest step of each deal is taken from those groups.
//!
//! ## Time in stage ([`TimeInStage`])
//! A **stay** in a stage runs from a history entry into it to the deal's next history
//! entry (whatever that enters); its length is the whole seconds between the two instants
//! (rounded down; 0 if the clock went backwards), which is the next entry's
//! `seconds_in_previous`. A stay belongs to the period when it **ended** on a local date of
//! the period. A stay **not ended by the end of the period** (the deal is still in the
//! stage, or left it only later) is **left out** of the durations: its length is not known
//! yet, and cutting it at the period's end would mix unfinished stays into the median.
//! Such stays are counted instead in `still_in`: the deals in the stage at the end of the
//! period (entered before the period's end, not left by then). Every live stage of the
//! pipelines has a row (won and lost stages too: a reopened deal ends a stay in them).
//! `stays`, the average and `still_in` are grouped aggregates (`still_in` = entries into
//! the stage before the end − exits from it before the end); the median and the 90th
//! percentile are nearest-rank over the stays' lengths, read as `(deal, stage, at)` of
//! the history rows before the period's end, in history order (no portable SQL
//! percentile), as [`crate::sales`] does for the sales cycle.
//!
//! ## Lost reasons ([`LostReasons`])
//! The deals lost on a local date of the period (`lost_at`; a deal reopened since is not
//! lost), per managed lost reason (one row per reason, named as the deals recorded it, so
//! a reason removed since keeps its row), then one row for the deals lost with a free-text
//! reason and one for those lost without a reason (the deal commands require a reason, so
//! only data written otherwise has none; the row keeps such deals from going uncounted),
//! each only when it has deals. `count` and `value` (their amounts in the
//! base currency, converted as in [`crate::sales`]).
//!
//! ## Slipped deals ([`SlippedDeals`])
//! A **slip** is a change of a deal's expected close date to a later date (both dates set),
//! recorded in the pipeline module's close-date history
//! ([`crmkit_pipeline::deal::CloseDateChange`]), which exists **from the pipeline module's
//! migration 2 on**: slips made before a database was upgraded to it are not known. A
//! slip belongs to the period when it was made on a local date of the period. Per group
//! (the owner, team or pipeline the deal had when its date moved; one total row without
//! `by`): `slips`, `deals` (distinct deals with a slip), `days` (the days all slips moved
//! dates by, in total) and `average_days` (`days / slips`, 2 places, half to even).
//! Changes that pull a date in, set a first date or clear it are not slips.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use crmkit_core::service::visibility_scope;
use crmkit_core::store::{CmpOp, Cond, Measure, OrderKey, Select, Value};
use crmkit_core::{Ctx, Currency, Error, LostReasonId, PipelineId, Result, StageId, Store};
use crmkit_pipeline::deal::rows::{CLOSE_HISTORY_TABLE, DEAL_TABLE, HISTORY_TABLE};
use crmkit_pipeline::deal::{Deals, Pipeline, StageKind};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::period::Period;
use crate::sales::{Converter, div_half_even, nearest_rank, ratio};

/// How many deal ids one history aggregate or read names (`deal_id IN (..)`).
pub const DEAL_CHUNK: usize = 500;

/// The stage funnel of the deals created in a period (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageFunnel {
    /// The period the deals were created in.
    pub period: Period,
    /// Only this pipeline (every pipeline, in their listed order, when `None`).
    pub pipeline: Option<PipelineId>,
}

/// One step of [`StageFunnel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelRow {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The open stage of this step; `None` for the last step, won (any won stage).
    pub stage: Option<StageId>,
    /// The stage's name (`won` for the last step).
    pub stage_name: String,
    /// Deals of the cohort that reached this step.
    pub reached: u64,
    /// `reached` of the next step / `reached` (4 places); `None` on the won step and
    /// when no deal reached this one.
    pub conversion: Option<Decimal>,
}

/// Time in stage: the stays that ended in the period (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeInStage {
    /// The period the stays ended in.
    pub period: Period,
    /// Only this pipeline.
    pub pipeline: Option<PipelineId>,
}

/// One stage of [`TimeInStage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTimeRow {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The stage.
    pub stage: StageId,
    /// The stage's name.
    pub stage_name: String,
    /// Stays in the stage that ended in the period.
    pub stays: u64,
    /// Their average length in whole seconds (half to even).
    pub average_seconds: Option<i64>,
    /// Their median length (nearest rank), seconds.
    pub median_seconds: Option<i64>,
    /// Their 90th percentile length (nearest rank), seconds.
    pub p90_seconds: Option<i64>,
    /// Deals in the stage at the end of the period (stays not ended by then, left out of
    /// the lengths).
    pub still_in: u64,
}

/// Lost reasons of the deals lost in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostReasons {
    /// The period of `lost_at`.
    pub period: Period,
    /// Only this pipeline.
    pub pipeline: Option<PipelineId>,
    /// The date whose rates convert amounts (the period's last day when `None`).
    pub rate_date: Option<NaiveDate>,
}

/// What kind of reason a [`LostReasonRow`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// A managed lost reason.
    Listed,
    /// Free-text reasons, together.
    FreeText,
    /// No reason.
    None,
}

/// One row of [`LostReasons`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostReasonRow {
    /// Listed, free text or none.
    pub kind: ReasonKind,
    /// The managed reason (listed rows only).
    pub reason: Option<LostReasonId>,
    /// Its name as the deals recorded it (listed rows only).
    pub name: Option<String>,
    /// Deals lost.
    pub count: u64,
    /// Their amounts, in the base currency.
    pub value: Decimal,
}

/// What slipped deals are grouped by: the deal's owner, team or pipeline when its close
/// date moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlipDim {
    /// The owner (a user id).
    Owner,
    /// The team (a team id, or none).
    Team,
    /// The pipeline (a pipeline id).
    Pipeline,
}

impl SlipDim {
    /// Every value's JSON name.
    pub const NAMES: &'static [&'static str] = &["owner", "team", "pipeline"];

    fn column(self) -> &'static str {
        match self {
            SlipDim::Owner => "owner_id",
            SlipDim::Team => "team_id",
            SlipDim::Pipeline => "pipeline_id",
        }
    }
}

/// Slipped deals: close dates moved later in a period (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlippedDeals {
    /// The period the dates were moved in.
    pub period: Period,
    /// Group by this (one total row when `None`).
    pub by: Option<SlipDim>,
    /// Only slips made while the deal was in this pipeline.
    pub pipeline: Option<PipelineId>,
}

/// One row of [`SlippedDeals`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlipRow {
    /// The group (a uuid; `None` for no team, or when the report does not group).
    pub group: Option<String>,
    /// Slips (changes to a later date).
    pub slips: u64,
    /// Distinct deals with a slip.
    pub deals: u64,
    /// Days the slips moved dates by, in total.
    pub days: i64,
    /// `days / slips`, 2 places.
    pub average_days: Option<Decimal>,
}

// ---------------------------------------------------------------------------------------
// Computation
// ---------------------------------------------------------------------------------------

fn bad() -> Error {
    Error::storage("malformed aggregate row")
}

fn count_of(v: &Value) -> Result<u64> {
    v.as_int().map(|i| i as u64).ok_or_else(bad)
}

fn sum_of(v: &Value) -> Result<i128> {
    v.as_sum().ok_or_else(bad)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Uuid(u) => Some(u.to_string()),
        Value::Text(t) => Some(t.clone()),
        Value::Int(i) => Some(i.to_string()),
    }
}

fn ts(t: DateTime<Utc>) -> Value {
    Value::timestamp(t)
}

fn uuids<'a>(ids: impl IntoIterator<Item = &'a StageId>) -> Vec<Value> {
    ids.into_iter().map(|s| Value::Uuid(s.as_uuid())).collect()
}

/// The progress reports over one store.
pub(crate) struct Progress<'a> {
    pub store: &'a Store,
    pub tz: Tz,
}

impl Progress<'_> {
    /// The pipelines a report covers: `pipeline` alone (an unknown one is a Validation
    /// error on `pipeline`) or every pipeline.
    async fn pipelines(&self, ctx: &Ctx, pipeline: Option<PipelineId>) -> Result<Vec<Pipeline>> {
        let all = Deals::new(self.store)?.pipelines().all(ctx).await?;
        match pipeline {
            None => Ok(all),
            Some(p) => match all.into_iter().find(|x| x.id == p) {
                Some(x) => Ok(vec![x]),
                None => Err(Error::validation(
                    "pipeline",
                    "is not a pipeline of this tenant",
                )),
            },
        }
    }

    /// The ids of the deals in scope (visible, not deleted) matching `cond`, in chunks of
    /// [`DEAL_CHUNK`].
    async fn deal_chunks(&self, ctx: &Ctx, cond: Cond) -> Result<Vec<Vec<Value>>> {
        let mut s = Select::new(DEAL_TABLE, visibility_scope(ctx, false).and(cond));
        s.order = vec![OrderKey::asc("id")];
        let table = self.store.backend().schema().table(DEAL_TABLE)?;
        s.omit = table
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .filter(|c| c != "id")
            .collect();
        let pos = table.position("id").ok_or_else(bad)?;
        let ids: Vec<Value> = self
            .store
            .backend()
            .select(ctx.tenant(), &s)
            .await?
            .into_iter()
            .map(|mut r| std::mem::replace(&mut r[pos], Value::Null))
            .collect();
        Ok(ids.chunks(DEAL_CHUNK).map(<[Value]>::to_vec).collect())
    }

    /// [`StageFunnel`].
    pub async fn stage_funnel(&self, ctx: &Ctx, r: &StageFunnel) -> Result<Vec<FunnelRow>> {
        let pipelines = self.pipelines(ctx, r.pipeline).await?;
        // Each step stage: (pipeline index, step index).
        let mut step_of: HashMap<StageId, (usize, usize)> = HashMap::new();
        let mut steps: Vec<usize> = vec![];
        for (pi, p) in pipelines.iter().enumerate() {
            let open: Vec<_> = p
                .stages
                .iter()
                .filter(|s| s.kind == StageKind::Open)
                .collect();
            for (k, s) in open.iter().enumerate() {
                step_of.insert(s.id, (pi, k));
            }
            for s in p.stages.iter().filter(|s| s.kind == StageKind::Won) {
                step_of.insert(s.id, (pi, open.len()));
            }
            steps.push(open.len() + 1);
        }
        // furthest[p][k]: deals whose furthest step in pipeline p is k.
        let mut furthest: Vec<Vec<u64>> = steps.iter().map(|n| vec![0; *n]).collect();
        let (start, end) = r.period.instants(self.tz);
        let cohort = Cond::Cmp("created_at".into(), CmpOp::Gte, ts(start)).and(Cond::Cmp(
            "created_at".into(),
            CmpOp::Lt,
            ts(end),
        ));
        let stage_ids = uuids(step_of.keys());
        for chunk in self.deal_chunks(ctx, cohort).await? {
            let cond = Cond::In("deal_id".into(), chunk)
                .and(Cond::In("to_stage".into(), stage_ids.clone()));
            let rows = self
                .store
                .aggregate(
                    ctx,
                    HISTORY_TABLE,
                    cond,
                    &["deal_id", "to_stage"],
                    vec![Measure::Count],
                )
                .await?;
            let mut best: HashMap<(String, usize), usize> = HashMap::new();
            for row in rows {
                let deal = text_of(&row[0]).ok_or_else(bad)?;
                let stage: StageId = text_of(&row[1]).ok_or_else(bad)?.parse()?;
                let Some(&(pi, k)) = step_of.get(&stage) else {
                    continue;
                };
                let e = best.entry((deal, pi)).or_insert(k);
                *e = (*e).max(k);
            }
            for ((_, pi), k) in best {
                furthest[pi][k] += 1;
            }
        }
        let mut out = vec![];
        for (pi, p) in pipelines.iter().enumerate() {
            let open: Vec<_> = p
                .stages
                .iter()
                .filter(|s| s.kind == StageKind::Open)
                .collect();
            for (k, (reached, conversion)) in
                funnel_from_furthest(&furthest[pi]).into_iter().enumerate()
            {
                out.push(FunnelRow {
                    pipeline: p.id,
                    stage: open.get(k).map(|s| s.id),
                    stage_name: open
                        .get(k)
                        .map(|s| s.name.clone())
                        .unwrap_or_else(|| "won".into()),
                    reached,
                    conversion,
                });
            }
        }
        Ok(out)
    }

    /// [`TimeInStage`].
    pub async fn time_in_stage(&self, ctx: &Ctx, r: &TimeInStage) -> Result<Vec<StageTimeRow>> {
        let pipelines = self.pipelines(ctx, r.pipeline).await?;
        let stages: Vec<StageId> = pipelines
            .iter()
            .flat_map(|p| p.stages.iter().map(|s| s.id))
            .collect();
        let ids = uuids(&stages);
        let (start, end) = r.period.instants(self.tz);
        // Per stage: stays ended in the period, their total seconds, entries and exits
        // before the end, and the stays' lengths.
        #[derive(Default)]
        struct Acc {
            stays: u64,
            seconds: i128,
            entered: u64,
            left: u64,
            lengths: Vec<i64>,
        }
        let mut acc: HashMap<StageId, Acc> = stages.iter().map(|s| (*s, Acc::default())).collect();
        let before_end = || Cond::Cmp("at".into(), CmpOp::Lt, ts(end));
        let stage_of = |v: &Value| -> Result<StageId> { text_of(v).ok_or_else(bad)?.parse() };
        for chunk in self.deal_chunks(ctx, Cond::True).await? {
            let deals = Cond::In("deal_id".into(), chunk);
            for row in self
                .store
                .aggregate(
                    ctx,
                    HISTORY_TABLE,
                    deals
                        .clone()
                        .and(Cond::In("from_stage".into(), ids.clone()))
                        .and(Cond::Cmp("at".into(), CmpOp::Gte, ts(start)))
                        .and(before_end()),
                    &["from_stage"],
                    vec![Measure::Count, Measure::Sum("seconds_in_previous".into())],
                )
                .await?
            {
                if let Some(a) = acc.get_mut(&stage_of(&row[0])?) {
                    a.stays += count_of(&row[1])?;
                    a.seconds += sum_of(&row[2])?;
                }
            }
            for (column, entered) in [("to_stage", true), ("from_stage", false)] {
                for row in self
                    .store
                    .aggregate(
                        ctx,
                        HISTORY_TABLE,
                        deals
                            .clone()
                            .and(Cond::In(column.into(), ids.clone()))
                            .and(before_end()),
                        &[column],
                        vec![Measure::Count],
                    )
                    .await?
                {
                    if let Some(a) = acc.get_mut(&stage_of(&row[0])?) {
                        let n = count_of(&row[1])?;
                        if entered {
                            a.entered += n;
                        } else {
                            a.left += n;
                        }
                    }
                }
            }
            // The lengths, for the percentiles: (deal, stage, at) in history order.
            let mut s = Select::new(HISTORY_TABLE, deals.and(before_end()));
            s.order = vec![OrderKey::asc("deal_id"), OrderKey::asc("seq")];
            let table = self.store.backend().schema().table(HISTORY_TABLE)?;
            let keep = ["deal_id", "seq", "to_stage", "at"];
            s.omit = table
                .columns
                .iter()
                .map(|c| c.name.to_string())
                .filter(|c| !keep.contains(&c.as_str()))
                .collect();
            let pos = |c: &str| table.position(c).ok_or_else(bad);
            let (pd, ps, pa) = (pos("deal_id")?, pos("to_stage")?, pos("at")?);
            let mut prev: Option<(Value, StageId, i64)> = None;
            for row in self.store.backend().select(ctx.tenant(), &s).await? {
                let stage = stage_of(&row[ps])?;
                let at = row[pa].as_int().ok_or_else(bad)?;
                if let Some((deal, from, entered_at)) = &prev
                    && *deal == row[pd]
                    && at >= ts_us(start)
                    && let Some(a) = acc.get_mut(from)
                {
                    a.lengths
                        .push((at - entered_at).max(0).div_euclid(1_000_000));
                }
                prev = Some((row[pd].clone(), stage, at));
            }
        }
        let mut out = vec![];
        for p in &pipelines {
            for st in &p.stages {
                let mut a = acc.remove(&st.id).unwrap_or_default();
                a.lengths.sort_unstable();
                out.push(StageTimeRow {
                    pipeline: p.id,
                    stage: st.id,
                    stage_name: st.name.clone(),
                    stays: a.stays,
                    average_seconds: (a.stays > 0)
                        .then(|| div_half_even(a.seconds, i128::from(a.stays)) as i64),
                    median_seconds: nearest_rank(&a.lengths, 50),
                    p90_seconds: nearest_rank(&a.lengths, 90),
                    still_in: a.entered.saturating_sub(a.left),
                });
            }
        }
        Ok(out)
    }

    /// [`LostReasons`].
    pub async fn lost_reasons(&self, ctx: &Ctx, r: &LostReasons) -> Result<Vec<LostReasonRow>> {
        self.pipelines(ctx, r.pipeline).await?;
        let mut conv =
            Converter::new(self.store, ctx, r.rate_date.unwrap_or(r.period.to())).await?;
        let (start, end) = r.period.instants(self.tz);
        let mut lost = visibility_scope(ctx, false)
            .and(Cond::eq("status", "lost"))
            .and(Cond::Cmp("lost_at".into(), CmpOp::Gte, ts(start)))
            .and(Cond::Cmp("lost_at".into(), CmpOp::Lt, ts(end)));
        if let Some(p) = r.pipeline {
            lost = lost.and(Cond::eq("pipeline_id", p.as_uuid()));
        }
        let measures = || vec![Measure::Count, Measure::Sum("amount".into())];
        // (kind, reason, name) -> count and per-currency sums.
        type Key = (ReasonKind, Option<String>, Option<String>);
        let mut groups: BTreeMap<Key, (u64, BTreeMap<String, i128>)> = BTreeMap::new();
        let listed = lost
            .clone()
            .and(Cond::Not(Box::new(Cond::IsNull("lost_reason_id".into()))));
        for row in self
            .store
            .aggregate(
                ctx,
                DEAL_TABLE,
                listed,
                &["lost_reason_id", "lost_reason", "currency"],
                measures(),
            )
            .await?
        {
            let key = (ReasonKind::Listed, text_of(&row[0]), text_of(&row[1]));
            add_sums(groups.entry(key).or_default(), &row[2], &row[3], &row[4])?;
        }
        let unlisted = lost.and(Cond::IsNull("lost_reason_id".into()));
        for (kind, cond) in [
            (
                ReasonKind::FreeText,
                Cond::Not(Box::new(Cond::IsNull("lost_reason".into()))),
            ),
            (ReasonKind::None, Cond::IsNull("lost_reason".into())),
        ] {
            for row in self
                .store
                .aggregate(
                    ctx,
                    DEAL_TABLE,
                    unlisted.clone().and(cond),
                    &["currency"],
                    measures(),
                )
                .await?
            {
                add_sums(
                    groups.entry((kind, None, None)).or_default(),
                    &row[0],
                    &row[1],
                    &row[2],
                )?;
            }
        }
        let mut out = vec![];
        for ((kind, reason, name), (count, sums)) in groups {
            let mut value = Decimal::ZERO;
            for (c, s) in sums {
                let v = conv.convert(ctx, Currency::parse(&c)?, s, 4).await?;
                value = value
                    .checked_add(v)
                    .ok_or_else(|| Error::validation("amount", "a report total is too large"))?;
            }
            out.push(LostReasonRow {
                kind,
                reason: reason.map(|r| r.parse()).transpose()?,
                name,
                count,
                value,
            });
        }
        sort_lost_reason_rows(&mut out);
        Ok(out)
    }

    /// [`SlippedDeals`].
    pub async fn slipped_deals(&self, ctx: &Ctx, r: &SlippedDeals) -> Result<Vec<SlipRow>> {
        self.pipelines(ctx, r.pipeline).await?;
        let (start, end) = r.period.instants(self.tz);
        let mut slips = Cond::Cmp("days".into(), CmpOp::Gt, Value::Int(0))
            .and(Cond::Cmp("at".into(), CmpOp::Gte, ts(start)))
            .and(Cond::Cmp("at".into(), CmpOp::Lt, ts(end)));
        if let Some(p) = r.pipeline {
            slips = slips.and(Cond::eq("pipeline_id", p.as_uuid()));
        }
        let mut group_by = vec!["deal_id"];
        if let Some(d) = r.by {
            group_by.push(d.column());
        }
        let mut groups: BTreeMap<Option<String>, (u64, u64, i128)> = BTreeMap::new();
        if r.by.is_none() {
            groups.insert(None, (0, 0, 0));
        }
        for chunk in self.deal_chunks(ctx, Cond::True).await? {
            let cond = Cond::In("deal_id".into(), chunk).and(slips.clone());
            let rows = self
                .store
                .aggregate(
                    ctx,
                    CLOSE_HISTORY_TABLE,
                    cond,
                    &group_by,
                    vec![Measure::Count, Measure::Sum("days".into())],
                )
                .await?;
            let n = group_by.len();
            for row in rows {
                let g = if r.by.is_some() {
                    text_of(&row[1])
                } else {
                    None
                };
                let e = groups.entry(g).or_default();
                e.0 += count_of(&row[n])?;
                e.1 += 1;
                e.2 += sum_of(&row[n + 1])?;
            }
        }
        groups
            .into_iter()
            .map(|(group, (slips, deals, days))| {
                Ok(SlipRow {
                    group,
                    slips,
                    deals,
                    days: i64::try_from(days)
                        .map_err(|_| Error::validation("days", "a report total is too large"))?,
                    average_days: ratio(days, i128::from(slips), 2),
                })
            })
            .collect()
    }
}

fn ts_us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Adds one aggregate row's count and per-currency amount sum.
fn add_sums(
    e: &mut (u64, BTreeMap<String, i128>),
    currency: &Value,
    count: &Value,
    sum: &Value,
) -> Result<()> {
    e.0 += count_of(count)?;
    if let Some(c) = currency.as_text() {
        *e.1.entry(c.to_owned()).or_default() += sum_of(sum)?;
    }
    Ok(())
}

/// Orders lost-reason rows: managed reasons by name (then id), then free text, then none.
pub fn sort_lost_reason_rows(rows: &mut [LostReasonRow]) {
    rows.sort_by(|a, b| {
        (a.kind, &a.name, a.reason.map(|r| r.to_string())).cmp(&(
            b.kind,
            &b.name,
            b.reason.map(|r| r.to_string()),
        ))
    });
}

/// The stage funnel of one pipeline from each cohort deal's furthest step: `furthest[k]`
/// deals went no further than step `k` (of `furthest.len()` steps, the last one won).
/// Returns `reached` per step and the conversion to the next step (shared with the
/// oracle's unit tests).
pub fn funnel_from_furthest(furthest: &[u64]) -> Vec<(u64, Option<Decimal>)> {
    let n = furthest.len();
    let mut reached = vec![0u64; n + 1];
    for k in (0..n).rev() {
        reached[k] = reached[k + 1] + furthest[k];
    }
    (0..n)
        .map(|k| {
            let c = if k + 1 < n {
                ratio(i128::from(reached[k + 1]), i128::from(reached[k]), 4)
            } else {
                None
            };
            (reached[k], c)
        })
        .collect()
}
