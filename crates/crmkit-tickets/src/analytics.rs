//! Service analytics: backlog, response and resolution times, SLA outcomes and
//! satisfaction.
//!
//! Every number is computed by the backend (`count` and grouped `aggregate` with exact
//! integer sums, see [`crmkit_core::store::Aggregate`]), so it is identical on every
//! backend. Queries are tenant-scoped and see what the actor sees: the backlog, response
//! times and SLA outcomes carry ticket visibility (`visibility_scope`, the condition of
//! ticket lists: Admin and Manager every ticket, others the tickets assigned to them or
//! their queues; the SLA rows mirror the assignee, queue and deletion for it), so a
//! ticket hidden from the actor never shows through a count. Satisfaction too, for every
//! role: since migration 4 the rating rows mirror their ticket's assignee, queue and
//! deletion (written with the rating, kept in step by every ticket write), so it is one
//! aggregate with the same condition; ratings of deleted tickets are left out, as deleted
//! tickets are from the other reports. Ratings recorded before migration 4 carry no copy
//! until their ticket's assignee, queue or deletion next changes: they count for Admins
//! and Managers only (also when their ticket was deleted before migration 4), never for a
//! Rep or a ReadOnly user.
//!
//! Periods are half-open, `[from, to)`; `from` after `to` is a Validation error on `to`.
//! Ticket periods select on the creation instant mirrored on the SLA row (migration 3):
//! SLA rows written before that migration have none until their next SLA write (a ticket
//! command or [`Tickets::recompute_sla`], which rewrites every open ticket's row), so
//! they are left out of `response_times` and `sla_outcomes` until then.
//! Averages are computed in Rust from the exact integer sum and count:
//! `sum / count` rounded to two decimal places, halves away from zero (see [`average`]);
//! `None` when nothing was counted.

use chrono::{DateTime, Utc};
use crmkit_core::service::visibility_scope;
use crmkit_core::store::{CmpOp, Cond, Measure, Value};
use crmkit_core::{Ctx, Error, Result, SlaPolicyId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::{TicketPriority, TicketStatus};
use crate::rows::{SATISFACTION_TABLE, TICKET_TABLE};
use crate::service::Tickets;
use crate::sla::SlaTargetKind;
use crate::sla_service::{SLA_TABLE, open_tickets};

/// Unsolved, not deleted tickets of one status and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogRow {
    /// The status (new, open, pending or on hold).
    pub status: TicketStatus,
    /// The priority.
    pub priority: TicketPriority,
    /// How many tickets.
    pub count: u64,
}

/// A count of measured tickets, their total business minutes and the average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MinutesStat {
    /// Tickets measured.
    pub count: u64,
    /// Their business minutes, summed exactly.
    pub total_minutes: i64,
    /// `total_minutes / count` rounded to two decimals (halves away from zero); `None`
    /// when `count` is 0.
    pub average: Option<Decimal>,
}

/// First-response and resolution times of the tickets created in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseTimes {
    /// Business minutes to the first public agent reply, over the tickets whose
    /// first-response target was met.
    pub first_response: MinutesStat,
    /// Business minutes the resolution clock counted, over the tickets solved (or
    /// closed) now.
    pub resolution: MinutesStat,
}

/// How often one target of one policy was met and breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaOutcome {
    /// The policy the tickets are under now.
    pub policy_id: SlaPolicyId,
    /// The target.
    pub target: SlaTargetKind,
    /// Tickets that met it without breaching it.
    pub achieved: u64,
    /// Tickets that breached it (met later or not).
    pub breached: u64,
}

/// Satisfaction ratings of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SatisfactionStat {
    /// Ratings recorded.
    pub count: u64,
    /// Their sum (each 1 to 5).
    pub sum: i64,
    /// `sum / count` rounded to two decimals (halves away from zero); `None` when
    /// `count` is 0.
    pub average: Option<Decimal>,
}

/// `sum / count` rounded to two decimal places, halves away from zero, computed exactly
/// in integers; `None` when `count` is 0.
pub fn average(sum: i64, count: u64) -> Option<Decimal> {
    if count == 0 {
        return None;
    }
    let (n, d) = (i128::from(sum) * 100, i128::from(count));
    let q = n / d;
    let r = n % d;
    // |r| * 2 >= d: round the magnitude up.
    let q = if r.abs() * 2 >= d { q + n.signum() } else { q };
    // |q| < 2^63 * 100 < 2^96: always a valid mantissa.
    Decimal::try_from_i128_with_scale(q, 2).ok()
}

fn period(column: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Cond> {
    if from > to {
        return Err(Error::validation("to", "must not be before `from`"));
    }
    Ok(
        Cond::Cmp(column.into(), CmpOp::Gte, Value::timestamp(from)).and(Cond::Cmp(
            column.into(),
            CmpOp::Lt,
            Value::timestamp(to),
        )),
    )
}

fn bad() -> Error {
    Error::storage("malformed aggregate row")
}

fn count_of(v: &Value) -> Result<u64> {
    u64::try_from(v.as_int().ok_or_else(bad)?).map_err(|_| bad())
}

fn not_null(column: &str) -> Cond {
    Cond::Not(Box::new(Cond::IsNull(column.into())))
}

impl Tickets {
    /// Count and exact sum of `column` over the rows of `table` matching `cond`.
    async fn count_sum(
        &self,
        ctx: &Ctx,
        table: &'static str,
        cond: Cond,
        column: &str,
    ) -> Result<(u64, i64)> {
        let rows = self
            .store()
            .aggregate(
                ctx,
                table,
                cond,
                &[],
                vec![Measure::Count, Measure::Sum(column.into())],
            )
            .await?;
        match rows.first() {
            None => Ok((0, 0)),
            Some(r) => Ok((
                count_of(r.first().ok_or_else(bad)?)?,
                i64::try_from(r.get(1).and_then(Value::as_sum).ok_or_else(bad)?)
                    .map_err(|_| Error::storage("minutes total overflows 64 bits"))?,
            )),
        }
    }

    /// The backlog: unsolved (new, open, pending, on hold), not deleted tickets the actor
    /// sees per status and priority, one grouped count. Rows with a count of zero are
    /// left out; rows are in status order then priority order (low to urgent).
    pub async fn backlog(&self, ctx: &Ctx) -> Result<Vec<BacklogRow>> {
        let rows = self
            .store()
            .aggregate(
                ctx,
                TICKET_TABLE,
                visibility_scope(ctx, false).and(open_tickets()),
                &["status", "priority"],
                vec![Measure::Count],
            )
            .await?;
        let mut out = vec![];
        for r in rows {
            let status = r
                .first()
                .and_then(Value::as_text)
                .and_then(TicketStatus::parse)
                .ok_or_else(bad)?;
            let priority = r
                .get(1)
                .and_then(Value::as_text)
                .and_then(TicketPriority::parse)
                .ok_or_else(bad)?;
            let count = count_of(r.get(2).ok_or_else(bad)?)?;
            if count > 0 {
                out.push(BacklogRow {
                    status,
                    priority,
                    count,
                });
            }
        }
        let pos = |s: TicketStatus| TicketStatus::UNSOLVED.iter().position(|x| *x == s);
        out.sort_by_key(|r| (pos(r.status), r.priority.rank()));
        Ok(out)
    }

    /// First-response and resolution business minutes of the tickets created in
    /// `[from, to)` that are not deleted and that the actor sees (from the measures of
    /// their SLA rows: tickets without a policy, or whose policy lacks the target, are not
    /// measured; a reopened ticket counts for resolution again once solved again, with its
    /// total).
    pub async fn response_times(
        &self,
        ctx: &Ctx,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<ResponseTimes> {
        let base = period("created_at", from, to)?.and(visibility_scope(ctx, false));
        let mut out = ResponseTimes::default();
        for (column, stat) in [
            ("first_response_minutes", &mut out.first_response),
            ("resolution_minutes", &mut out.resolution),
        ] {
            let (count, sum) = self
                .count_sum(ctx, SLA_TABLE, base.clone().and(not_null(column)), column)
                .await?;
            *stat = MinutesStat {
                count,
                total_minutes: sum,
                average: average(sum, count),
            };
        }
        Ok(out)
    }

    /// Per policy and target, how many tickets created in `[from, to)` (not deleted, seen
    /// by the actor) met the target without breaching it (`achieved_at` set,
    /// `breached_at` not) and how many breached it (`breached_at` set), as of their stored
    /// SLA rows (breaches the sweep has not recorded yet are not counted). The policy is
    /// the one each ticket is under now. Only pairs with a non-zero count are listed, by
    /// policy id then target.
    pub async fn sla_outcomes(
        &self,
        ctx: &Ctx,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SlaOutcome>> {
        let base = period("created_at", from, to)?
            .and(visibility_scope(ctx, false))
            .and(not_null("policy_id"));
        let mut out: Vec<SlaOutcome> = vec![];
        for kind in SlaTargetKind::ALL {
            let achieved = format!("{}_achieved_at", kind.as_str());
            let breached = format!("{}_breached_at", kind.as_str());
            for (is_breach, cond) in [
                (
                    false,
                    not_null(&achieved).and(Cond::IsNull(breached.clone())),
                ),
                (true, not_null(&breached)),
            ] {
                let rows = self
                    .store()
                    .aggregate(
                        ctx,
                        SLA_TABLE,
                        base.clone().and(cond),
                        &["policy_id"],
                        vec![Measure::Count],
                    )
                    .await?;
                for r in rows {
                    let policy_id = r
                        .first()
                        .and_then(Value::as_uuid)
                        .map(SlaPolicyId::from_uuid)
                        .ok_or_else(bad)?;
                    let n = count_of(r.get(1).ok_or_else(bad)?)?;
                    let i = match out
                        .iter()
                        .position(|o| o.policy_id == policy_id && o.target == kind)
                    {
                        Some(i) => i,
                        None => {
                            out.push(SlaOutcome {
                                policy_id,
                                target: kind,
                                achieved: 0,
                                breached: 0,
                            });
                            out.len() - 1
                        }
                    };
                    if is_breach {
                        out[i].breached += n;
                    } else {
                        out[i].achieved += n;
                    }
                }
            }
        }
        out.retain(|o| o.achieved + o.breached > 0);
        let pos = |k: SlaTargetKind| SlaTargetKind::ALL.iter().position(|x| *x == k);
        out.sort_by_key(|o| (o.policy_id, pos(o.target)));
        Ok(out)
    }

    /// Satisfaction ratings recorded in `[from, to)` of the tickets the actor sees (not
    /// deleted): count, exact sum and average, one aggregate over the rating rows with
    /// the ticket condition on their mirrored assignee, queue and deletion (see the
    /// [module docs](self) for ratings recorded before migration 4). (Named so beside
    /// [`satisfaction`](Self::satisfaction), one ticket's ratings.)
    pub async fn satisfaction_stats(
        &self,
        ctx: &Ctx,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<SatisfactionStat> {
        let cond = period("at", from, to)?.and(visibility_scope(ctx, false));
        let (count, sum) = self
            .count_sum(ctx, SATISFACTION_TABLE, cond, "rating")
            .await?;
        Ok(SatisfactionStat {
            count,
            sum,
            average: average(sum, count),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<Decimal> {
        Some(s.parse().expect("a decimal"))
    }

    #[test]
    fn average_rounds_halves_away_from_zero() {
        assert_eq!(average(0, 0), None);
        assert_eq!(average(5, 0), None);
        assert_eq!(average(0, 3), d("0.00"));
        assert_eq!(average(120, 1), d("120.00"));
        assert_eq!(average(10, 4), d("2.50"));
        assert_eq!(average(2, 3), d("0.67")); // 0.666..
        assert_eq!(average(1, 3), d("0.33")); // 0.333..
        assert_eq!(average(1, 8), d("0.13")); // 0.125 exactly: half up
        assert_eq!(average(3, 8), d("0.38")); // 0.375
        assert_eq!(average(1, 200), d("0.01")); // 0.005
        assert_eq!(average(1, 201), d("0.00")); // 0.00497..
        assert_eq!(average(-1, 8), d("-0.13")); // away from zero
        assert_eq!(average(14, 3), d("4.67"));
    }

    #[test]
    fn average_is_exact_for_large_sums() {
        assert_eq!(average(i64::MAX, 1), d("9223372036854775807.00"));
        assert_eq!(average(i64::MIN, 1), d("-9223372036854775808.00"));
        assert_eq!(average(i64::MAX, u64::MAX), d("0.50"));
    }
}
