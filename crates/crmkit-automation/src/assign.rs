//! The `assign_owner` action: round robin, least loaded and weighted assignment over a
//! team or a list of users, whose state changes in the same commit as the record's owner.
//!
//! The state of each (rule, action) is one versioned row of [`ASSIGNMENT_TABLE`]: the
//! round-robin position and how many records each member was given. The action reads it,
//! chooses, and patches the record's `owner` with a [`Cause`] whose `writes` carry the
//! state's update at the version it read; the automation module's `before_commit` adds
//! them to the patch's commit. Two assignments that read the same state cannot both
//! commit (the second is a Conflict on the state's version and chooses again), so
//! concurrent assignments spread exactly as the strategy says. Inactive users are never
//! chosen.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crmkit_core::record::Json;
use crmkit_core::store::{Value, Write};
use crmkit_core::{
    Actor, Cause, Changeset, Ctx, Error, Filter, Query, RecordRef, Result, Role, RuleId, Store,
    TeamId, UserId,
};
use serde::{Deserialize, Serialize};

use crate::model::{Capacity, CapacityPeriod, PoolMember, Strategy};
use crate::runlog::{ASSIGNMENT_TABLE, RUN_TABLE, key};

/// How many times an assignment chooses again after losing a race.
const ATTEMPTS: usize = 64;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The round-robin position: the index (in the pool ordered as given) of the member
    /// chosen last, plus one.
    next: usize,
    /// What each member was given.
    given: BTreeMap<UserId, u64>,
    /// The capacity period the counts below are of (`2026-12-07`, `2026-W49`,
    /// `2026-12`), when the action has a capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    period: Option<String>,
    /// What each member was given in that period.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    in_period: BTreeMap<UserId, u64>,
}

impl State {
    /// Starts the counts of a new period when `now` is in another one than the state's.
    fn enter(&mut self, period: Option<String>) {
        if self.period != period {
            self.period = period;
            self.in_period.clear();
        }
    }
}

/// The period `at` falls in, in the capacity's time zone: `2026-12-07`, `2026-W49` (ISO
/// week) or `2026-12`.
fn period_of(c: &Capacity, at: DateTime<Utc>) -> Result<String> {
    let tz = crmkit_core::directory::parse_time_zone("capacity.time_zone", &c.time_zone)?;
    let local = at.with_timezone(&tz);
    Ok(match c.period {
        CapacityPeriod::Day => local.format("%Y-%m-%d").to_string(),
        CapacityPeriod::Week => local.format("%G-W%V").to_string(),
        CapacityPeriod::Month => local.format("%Y-%m").to_string(),
    })
}

/// A member's cap per period, if any.
fn cap_of(m: &PoolMember, c: Option<&Capacity>) -> Option<u64> {
    let c = c?;
    m.capacity.or(c.per_member).map(u64::from)
}

/// One assignment to make.
pub(crate) struct Assignment<'a> {
    pub(crate) rule: RuleId,
    pub(crate) action: u32,
    pub(crate) strategy: Strategy,
    pub(crate) team: Option<TeamId>,
    pub(crate) users: &'a [PoolMember],
    pub(crate) capacity: Option<&'a Capacity>,
}

/// The active members of the pool, in a stable order (a team's by user id, a list's as
/// given), with their weights.
async fn pool(store: &Store, ctx: &Ctx, a: &Assignment<'_>) -> Result<Vec<PoolMember>> {
    // The pool is the rule's, saved and checked by its owner; reading the directory to
    // resolve it is the engine's own business, so it reads as an Admin of the tenant.
    let system = Ctx::new(
        ctx.tenant(),
        Actor::new(UserId::from_uuid(uuid::Uuid::nil()), [Role::Admin], []),
    )?;
    let users = store.directory().users(&system).await?;
    let active = |u: UserId| users.iter().any(|x| x.id == u && x.active);
    Ok(match a.team {
        Some(team) => users
            .iter()
            .filter(|u| u.active && u.teams.contains(&team))
            .map(|u| {
                a.users
                    .iter()
                    .find(|m| m.user == u.id)
                    .copied()
                    .unwrap_or(PoolMember::new(u.id))
            })
            .collect(),
        None => a.users.iter().filter(|m| active(m.user)).copied().collect(),
    })
}

/// Which records of a kind count as open (for least loaded).
fn open_filter(kind: &str) -> Option<Filter> {
    match kind {
        "deal" => Some(Filter::And(vec![
            Filter::is_null("won_at"),
            Filter::is_null("lost_at"),
        ])),
        "lead" => Some(Filter::is_in(
            "status",
            ["new", "contacted", "nurturing", "qualified"],
        )),
        "ticket" => Some(Filter::is_in(
            "status",
            ["new", "open", "pending", "on_hold"],
        )),
        _ => None,
    }
}

/// How many open records of `kind` `user` owns, as the rule's owner sees them (`ctx`):
/// counting as anyone else would let a rule's run log tell a Rep how many records they
/// cannot see each member holds.
async fn load_of(store: &Store, ctx: &Ctx, kind: &str, user: UserId) -> Result<u64> {
    let mut f = vec![Filter::eq("owner", user.as_uuid())];
    f.extend(open_filter(kind));
    let q = Query::new().filter(Filter::And(f)).limit(1).with_total();
    Ok(store
        .records()
        .list(ctx, kind, &q)
        .await?
        .total
        .unwrap_or(0))
}

/// Chooses a member: the index in `pool` and why.
async fn choose(
    store: &Store,
    ctx: &Ctx,
    a: &Assignment<'_>,
    kind: &str,
    pool: &[PoolMember],
    state: &State,
) -> Result<(usize, String)> {
    // Members who reached their cap this period are passed over; the indices returned
    // are those of `pool`.
    let open: Vec<usize> = (0..pool.len())
        .filter(|&i| {
            cap_of(&pool[i], a.capacity)
                .is_none_or(|cap| state.in_period.get(&pool[i].user).copied().unwrap_or(0) < cap)
        })
        .collect();
    if open.is_empty() {
        return Err(Error::validation(
            "capacity",
            format!(
                "every member of the pool has been given their capacity for {}",
                state.period.as_deref().unwrap_or("this period")
            ),
        ));
    }
    let (i, why) = choose_among(store, ctx, a, kind, pool, &open, state).await?;
    Ok(match (cap_of(&pool[i], a.capacity), &state.period) {
        (Some(cap), Some(p)) => {
            let had = state.in_period.get(&pool[i].user).copied().unwrap_or(0);
            (i, format!("{why}; {} of {cap} in {p}", had + 1))
        }
        _ => (i, why),
    })
}

/// Chooses among the members of `pool` at the indices `open` (not empty).
async fn choose_among(
    store: &Store,
    ctx: &Ctx,
    a: &Assignment<'_>,
    kind: &str,
    pool: &[PoolMember],
    open: &[usize],
    state: &State,
) -> Result<(usize, String)> {
    let n = pool.len();
    Ok(match a.strategy {
        Strategy::RoundRobin => {
            // The first open member from the position on, in turn.
            let start = state.next % n;
            let i = (0..n)
                .map(|k| (start + k) % n)
                .find(|i| open.contains(i))
                .unwrap_or(open[0]);
            (i, format!("round robin: member {} of {n}", i + 1))
        }
        Strategy::LeastLoaded => {
            let mut best: Option<(usize, u64)> = None;
            let mut loads = vec![];
            for &i in open {
                let m = &pool[i];
                let l = load_of(store, ctx, kind, m.user).await?;
                loads.push(l);
                if best.is_none_or(|(_, b)| l < b) {
                    best = Some((i, l));
                }
            }
            let (i, l) = best.unwrap_or((0, 0));
            (
                i,
                format!("least loaded: {l} open {kind}s (the pool's: {loads:?})"),
            )
        }
        Strategy::Weighted => {
            // The member furthest below their share: smallest given / weight, compared
            // exactly as given_i * weight_j < given_j * weight_i; ties in pool order.
            let given = |m: &PoolMember| state.given.get(&m.user).copied().unwrap_or(0);
            let mut i = open[0];
            for &j in &open[1..] {
                let m = &pool[j];
                let (gi, wi) = (
                    u128::from(given(&pool[i])),
                    u128::from(pool[i].weight.max(1)),
                );
                let (gj, wj) = (u128::from(given(m)), u128::from(m.weight.max(1)));
                if gj * wi < gi * wj {
                    i = j;
                }
            }
            (
                i,
                format!(
                    "weighted: {} given so far, weight {}",
                    given(&pool[i]),
                    pool[i].weight
                ),
            )
        }
    })
}

/// Assigns `target`'s owner for a rule's action run under `ctx` (which carries the run's
/// cause). Returns what it did.
pub(crate) async fn assign(
    store: &Store,
    ctx: &Ctx,
    a: &Assignment<'_>,
    target: &RecordRef,
) -> Result<String> {
    let cause = ctx
        .cause()
        .cloned()
        .ok_or_else(|| Error::Config("an assignment runs for a rule".into()))?;
    let kind = target.kind.as_str();
    let records = store.records();
    let state_key = vec![
        Value::Uuid(a.rule.as_uuid()),
        Value::Int(i64::from(a.action)),
    ];
    for _ in 0..ATTEMPTS {
        // A concurrent engine may have made this very assignment.
        let run_key = key(cause.rule, &cause.occurrence, Some(cause.action));
        if store
            .backend()
            .get(ctx.tenant(), RUN_TABLE, &run_key)
            .await?
            .is_some()
        {
            return Ok("assigned by another engine".into());
        }
        let members = pool(store, ctx, a).await?;
        if members.is_empty() {
            return Err(Error::validation(
                "users",
                "no active user in the assignment pool",
            ));
        }
        let row = store
            .backend()
            .get(ctx.tenant(), ASSIGNMENT_TABLE, &state_key)
            .await?;
        let (mut state, version) = match &row {
            Some(r) => (
                r[2].as_text()
                    .and_then(|t| serde_json::from_str::<State>(t).ok())
                    .unwrap_or_default(),
                r[3].as_int().map(|v| v as u64),
            ),
            None => (State::default(), None),
        };
        let period = a.capacity.map(|c| period_of(c, ctx.now())).transpose()?;
        state.enter(period);
        let (i, why) = choose(store, ctx, a, kind, &members, &state).await?;
        let chosen = members[i].user;
        state.next = i + 1;
        *state.given.entry(chosen).or_insert(0) += 1;
        if state.period.is_some() {
            *state.in_period.entry(chosen).or_insert(0) += 1;
        }
        let text = serde_json::to_string(&state)
            .map_err(|e| Error::storage_from("assignment state", e))?;
        let write = match version {
            Some(v) => Write::Update {
                table: ASSIGNMENT_TABLE,
                key: state_key.clone(),
                set: vec![("state", Value::Text(text))],
                expect_version: Some(v),
                record: RecordRef::new(crate::RULE_KIND, a.rule.as_uuid()),
            },
            None => Write::Insert {
                table: ASSIGNMENT_TABLE,
                row: vec![
                    state_key[0].clone(),
                    state_key[1].clone(),
                    Value::Text(text),
                    Value::Int(1),
                ],
            },
        };
        let detail = format!("assign the owner {chosen} ({why})");
        let c = Cause {
            writes: vec![write],
            detail: detail.clone(),
            ..cause.clone()
        };
        let actx = ctx.clone().with_cause(c.clone());
        let cur = records.get(&actx, kind, target.id).await?;
        let version_of_record = cur
            .version()
            .ok_or_else(|| Error::storage(format!("a {kind} without a version")))?;
        let outcome = if cur.get("owner") == Some(&Json::String(chosen.as_uuid().to_string())) {
            // Already theirs: the state and the run's line commit alone.
            let mut cs = Changeset::new(&actx);
            cs.cause = Some(c);
            store.commit(cs).await.map(|_| ())
        } else {
            records
                .patch(
                    &actx,
                    kind,
                    target.id,
                    version_of_record,
                    serde_json::json!({ "owner": chosen }),
                )
                .await
                .map(|_| ())
        };
        match outcome {
            Ok(()) => return Ok(detail),
            // Lost a race (the state or the record changed, or a first state row was
            // written meanwhile): choose again.
            Err(Error::Conflict { .. } | Error::Duplicate { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::storage(format!(
        "the assignment lost {ATTEMPTS} races in a row"
    )))
}
