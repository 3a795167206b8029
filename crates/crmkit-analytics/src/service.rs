//! Service reports over tickets (feature `tickets`; a store without the tickets module
//! composed, or a build without the feature, gets a Config error).
//!
//! **The tickets module's own reports** ([`TicketBacklog`], [`TicketResponseTimes`],
//! [`TicketSlaOutcomes`], [`TicketSatisfaction`]) are run by `crmkit_tickets::analytics`
//! (`Tickets::backlog`, `response_times`, `sla_outcomes`, `satisfaction_stats`) and
//! return its rows; this module only turns the report's [`Period`] into the half-open
//! UTC range of its local dates in the tenant's reporting zone. Their rules are that
//! module's: the backlog, response times, SLA outcomes and satisfaction count the
//! tickets the actor sees (satisfaction: the ratings of those tickets, through the
//! assignee, queue and deletion the rating rows mirror since tickets migration 4; ratings
//! recorded before it count for Admins and Managers only until their ticket's assignee,
//! queue or deletion changes); response times are business minutes of the tickets' SLA
//! calendars, averaged.
//!
//! **Volume** ([`TicketVolume`]): per bucket, the tickets the actor sees (not deleted)
//! created in it (by `created_at`'s local date) and solved in it (by `solved_at`'s
//! local date: a solved or closed ticket's last solve; a reopened ticket has none until
//! it is solved again, so it counts where it was solved last). Every bucket of the period
//! has a row. Two bucketed counting aggregates (one per column).
//!
//! **Times** ([`TicketTimes`]): the median and 90th percentile (nearest rank: the
//! `ceil(p × n)`-th smallest of the `n` values) of the business minutes to first response
//! and to resolution of the tickets created in the period that the actor sees: the same
//! measures, on the same SLA rows, as the averages of [`TicketResponseTimes`] (tickets
//! without a policy, or whose policy lacks the target, are not measured; a ticket is
//! measured for resolution while it is solved or closed). The counts are aggregates; the
//! percentiles read the one measure column of the measured rows (there is no portable
//! SQL percentile), as the sales cycle does.
//!
//! **Access.** Ticket visibility is the condition ticket lists use (`visibility_scope`:
//! Admin and Manager every ticket; a Rep and a ReadOnly user the tickets assigned to them
//! or to their queues); the SLA rows and the satisfaction ratings mirror the assignee,
//! the queue and the deletion so that it applies to them too, in one aggregate. Deleted
//! tickets (and their ratings) are left out of every report.

use serde::{Deserialize, Serialize};

use crate::period::{Bucket, BucketKey, Period};

/// The ticket backlog: unsolved tickets per status and priority (no parameters; the
/// rows are `crmkit_tickets::BacklogRow`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketBacklog {}

/// First-response and resolution business minutes (count, total, average) of the tickets
/// created in the period (the row is `crmkit_tickets::ResponseTimes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketResponseTimes {
    /// The period (local dates of the tickets' creation).
    pub period: Period,
}

/// SLA targets met and breached per policy and target, of the tickets created in the
/// period (the rows are `crmkit_tickets::SlaOutcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSlaOutcomes {
    /// The period (local dates of the tickets' creation).
    pub period: Period,
}

/// Satisfaction ratings recorded in the period, of the tickets the actor sees (the row
/// is `crmkit_tickets::SatisfactionStat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSatisfaction {
    /// The period (local dates of the ratings).
    pub period: Period,
}

/// Tickets created and solved per bucket (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketVolume {
    /// The period.
    pub period: Period,
    /// The bucket.
    pub bucket: Bucket,
}

/// One row of [`TicketVolume`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketVolumeRow {
    /// The bucket.
    pub period: BucketKey,
    /// Tickets created in it.
    pub created: u64,
    /// Tickets solved in it (last solve).
    pub solved: u64,
}

/// Median and 90th percentile of first-response and resolution business minutes of the
/// tickets created in the period (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketTimes {
    /// The period (local dates of the tickets' creation).
    pub period: Period,
}

/// Count, median and 90th percentile of one measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimePercentiles {
    /// Tickets measured.
    pub count: u64,
    /// Median (nearest rank) business minutes; `None` when none was measured.
    pub median_minutes: Option<i64>,
    /// 90th percentile (nearest rank) business minutes; `None` when none was measured.
    pub p90_minutes: Option<i64>,
}

/// The row of [`TicketTimes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketTimesRow {
    /// Business minutes to the first public agent reply.
    pub first_response: TimePercentiles,
    /// Business minutes to resolution.
    pub resolution: TimePercentiles,
}

#[cfg(feature = "tickets")]
mod run {
    use chrono::{DateTime, Utc};
    use crmkit_core::service::visibility_scope;
    use crmkit_core::store::{Aggregate, Buckets, CmpOp, Cond, Measure, OrderKey, Select, Value};
    use crmkit_core::{Ctx, Error, Result};
    use crmkit_tickets::rows::TICKET_TABLE;
    use crmkit_tickets::{
        BacklogRow, ResponseTimes, SLA_TABLE, SatisfactionStat, SlaOutcome, Tickets,
    };

    use super::*;
    use crate::Analytics;
    use crate::report::Report;
    use crate::sales::nearest_rank;

    fn bad() -> Error {
        Error::storage("malformed aggregate row")
    }

    fn range(column: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Cond {
        Cond::Cmp(column.into(), CmpOp::Gte, Value::timestamp(start)).and(Cond::Cmp(
            column.into(),
            CmpOp::Lt,
            Value::timestamp(end),
        ))
    }

    impl Analytics {
        fn tickets(&self) -> Result<Tickets> {
            Tickets::new(&self.store)
        }

        /// The UTC instants of a period in the tenant's reporting zone.
        async fn instants(&self, ctx: &Ctx, p: &Period) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
            Ok(p.instants(self.settings(ctx).await?.tz()?))
        }

        /// Rows of `table` the actor sees (not deleted) matching `cond`, counted.
        async fn count_visible(&self, ctx: &Ctx, table: &'static str, cond: Cond) -> Result<u64> {
            let agg = Aggregate {
                table,
                cond: visibility_scope(ctx, false).and(cond),
                group_by: vec![],
                measures: vec![Measure::Count],
                buckets: None,
            };
            match self
                .store
                .backend()
                .aggregate(ctx.tenant(), &agg)
                .await?
                .first()
            {
                None => Ok(0),
                Some(r) => u64::try_from(r.first().and_then(Value::as_int).ok_or_else(bad)?)
                    .map_err(|_| bad()),
            }
        }

        /// Rows of `table` the actor sees (not deleted) per bucket of `column` between
        /// consecutive `bounds` (one bucketed aggregate); index `i` is bucket `i`.
        async fn count_by_bucket(
            &self,
            ctx: &Ctx,
            table: &'static str,
            column: &str,
            bounds: &[Value],
        ) -> Result<Vec<u64>> {
            let mut counts = vec![0; bounds.len().saturating_sub(1)];
            let agg = Aggregate {
                table,
                cond: visibility_scope(ctx, false),
                group_by: vec![],
                measures: vec![Measure::Count],
                buckets: Some(Buckets::new(column, bounds.to_vec())),
            };
            for row in self.store.backend().aggregate(ctx.tenant(), &agg).await? {
                let i = row.first().and_then(Value::as_int).ok_or_else(bad)?;
                let n = row.get(1).and_then(Value::as_int).ok_or_else(bad)?;
                let slot = usize::try_from(i)
                    .ok()
                    .and_then(|i| counts.get_mut(i))
                    .ok_or_else(bad)?;
                *slot = u64::try_from(n).map_err(|_| bad())?;
            }
            Ok(counts)
        }

        /// The ticket backlog (`Tickets::backlog`): unsolved tickets the actor sees per
        /// status and priority. A Config error when the tickets module is not composed.
        pub async fn ticket_backlog(
            &self,
            ctx: &Ctx,
            _r: &TicketBacklog,
        ) -> Result<Vec<BacklogRow>> {
            self.tickets()?.backlog(ctx).await
        }

        /// First-response and resolution business minutes of the tickets created in the
        /// period (`Tickets::response_times`).
        pub async fn ticket_response_times(
            &self,
            ctx: &Ctx,
            r: &TicketResponseTimes,
        ) -> Result<ResponseTimes> {
            let t = self.tickets()?;
            let (from, to) = self.instants(ctx, &r.period).await?;
            t.response_times(ctx, from, to).await
        }

        /// SLA outcomes of the tickets created in the period (`Tickets::sla_outcomes`).
        pub async fn ticket_sla_outcomes(
            &self,
            ctx: &Ctx,
            r: &TicketSlaOutcomes,
        ) -> Result<Vec<SlaOutcome>> {
            let t = self.tickets()?;
            let (from, to) = self.instants(ctx, &r.period).await?;
            t.sla_outcomes(ctx, from, to).await
        }

        /// Satisfaction ratings recorded in the period, of the tickets the actor sees
        /// (`Tickets::satisfaction_stats`).
        pub async fn ticket_satisfaction(
            &self,
            ctx: &Ctx,
            r: &TicketSatisfaction,
        ) -> Result<SatisfactionStat> {
            let t = self.tickets()?;
            let (from, to) = self.instants(ctx, &r.period).await?;
            t.satisfaction_stats(ctx, from, to).await
        }

        pub(crate) async fn ticket_volume_impl(
            &self,
            ctx: &Ctx,
            r: &TicketVolume,
        ) -> Result<Vec<TicketVolumeRow>> {
            self.store.require_module("tickets")?;
            let settings = self.settings(ctx).await?;
            let tz = settings.tz()?;
            let keys = r.bucket.cover(&r.period, settings.fiscal_year_start)?;
            let bounds: Vec<Value> = r
                .period
                .bucket_bounds(&keys, tz)
                .into_iter()
                .map(Value::timestamp)
                .collect();
            let created = self
                .count_by_bucket(ctx, TICKET_TABLE, "created_at", &bounds)
                .await?;
            let solved = self
                .count_by_bucket(ctx, TICKET_TABLE, "solved_at", &bounds)
                .await?;
            Ok(keys
                .into_iter()
                .enumerate()
                .map(|(i, period)| TicketVolumeRow {
                    period,
                    created: created.get(i).copied().unwrap_or(0),
                    solved: solved.get(i).copied().unwrap_or(0),
                })
                .collect())
        }

        pub(crate) async fn ticket_times_impl(
            &self,
            ctx: &Ctx,
            r: &TicketTimes,
        ) -> Result<TicketTimesRow> {
            self.store.require_module("tickets")?;
            let (start, end) = self.instants(ctx, &r.period).await?;
            let def = self.store.backend().schema().table(SLA_TABLE)?;
            let mut out = TicketTimesRow::default();
            for (column, stat) in [
                ("first_response_minutes", &mut out.first_response),
                ("resolution_minutes", &mut out.resolution),
            ] {
                let cond = range("created_at", start, end)
                    .and(Cond::Not(Box::new(Cond::IsNull(column.into()))));
                let count = self.count_visible(ctx, SLA_TABLE, cond.clone()).await?;
                // The measured values, for the percentiles (one column read).
                let mut s = Select::new(SLA_TABLE, visibility_scope(ctx, false).and(cond));
                s.order = vec![OrderKey::asc("ticket_id")];
                s.omit = def
                    .columns
                    .iter()
                    .map(|c| c.name.to_string())
                    .filter(|c| c != column && c != "ticket_id")
                    .collect();
                let pos = def
                    .position(column)
                    .ok_or_else(|| Error::Config(format!("no column {column} in {SLA_TABLE}")))?;
                let mut values = self
                    .store
                    .backend()
                    .select(ctx.tenant(), &s)
                    .await?
                    .iter()
                    .map(|row| row[pos].as_int().ok_or_else(bad))
                    .collect::<Result<Vec<i64>>>()?;
                values.sort_unstable();
                *stat = TimePercentiles {
                    count,
                    median_minutes: nearest_rank(&values, 50),
                    p90_minutes: nearest_rank(&values, 90),
                };
            }
            Ok(out)
        }

        /// Runs a service report ([`Analytics::run`]'s branch for them).
        pub(crate) async fn run_service(
            &self,
            ctx: &Ctx,
            report: &Report,
        ) -> Result<Vec<serde_json::Value>> {
            fn json_rows<T: Serialize>(rows: &[T]) -> Result<Vec<serde_json::Value>> {
                rows.iter()
                    .map(|r| {
                        serde_json::to_value(r).map_err(|e| Error::storage_from("report row", e))
                    })
                    .collect()
            }
            match report {
                Report::TicketBacklog(r) => json_rows(&self.ticket_backlog(ctx, r).await?),
                Report::TicketResponseTimes(r) => {
                    json_rows(&[self.ticket_response_times(ctx, r).await?])
                }
                Report::TicketSlaOutcomes(r) => json_rows(&self.ticket_sla_outcomes(ctx, r).await?),
                Report::TicketSatisfaction(r) => {
                    json_rows(&[self.ticket_satisfaction(ctx, r).await?])
                }
                Report::TicketVolume(r) => json_rows(&self.ticket_volume(ctx, r).await?),
                Report::TicketTimes(r) => json_rows(&[self.ticket_times(ctx, r).await?]),
                other => Err(Error::Config(format!(
                    "{} is not a service report",
                    other.name()
                ))),
            }
        }
    }
}

#[cfg(not(feature = "tickets"))]
impl crate::Analytics {
    fn without_tickets() -> crmkit_core::Error {
        crmkit_core::Error::Config(
            "service reports need crmkit-analytics built with the `tickets` feature".into(),
        )
    }

    pub(crate) async fn ticket_volume_impl(
        &self,
        _ctx: &crmkit_core::Ctx,
        _r: &TicketVolume,
    ) -> crmkit_core::Result<Vec<TicketVolumeRow>> {
        Err(Self::without_tickets())
    }

    pub(crate) async fn ticket_times_impl(
        &self,
        _ctx: &crmkit_core::Ctx,
        _r: &TicketTimes,
    ) -> crmkit_core::Result<TicketTimesRow> {
        Err(Self::without_tickets())
    }

    /// Without the `tickets` feature every service report is a Config error.
    pub(crate) async fn run_service(
        &self,
        _ctx: &crmkit_core::Ctx,
        _report: &crate::Report,
    ) -> crmkit_core::Result<Vec<serde_json::Value>> {
        Err(Self::without_tickets())
    }
}

impl crate::Analytics {
    /// Tickets created and solved per bucket (see [`TicketVolume`]). A Config error when
    /// the tickets module is not composed (or the crate is built without the `tickets`
    /// feature); more than [`crate::MAX_BUCKETS`] buckets is a Validation error on
    /// `bucket`.
    pub async fn ticket_volume(
        &self,
        ctx: &crmkit_core::Ctx,
        r: &TicketVolume,
    ) -> crmkit_core::Result<Vec<TicketVolumeRow>> {
        self.ticket_volume_impl(ctx, r).await
    }

    /// Median and 90th percentile of first-response and resolution business minutes (see
    /// [`TicketTimes`]). A Config error when the tickets module is not composed (or not
    /// built).
    pub async fn ticket_times(
        &self,
        ctx: &crmkit_core::Ctx,
        r: &TicketTimes,
    ) -> crmkit_core::Result<TicketTimesRow> {
        self.ticket_times_impl(ctx, r).await
    }
}

#[cfg(test)]
mod tests {
    use crmkit_core::memory::MemoryBackend;
    use crmkit_core::{Actor, Ctx, Error, Modules, Role, Store, TenantId, UserId};

    use super::*;
    use crate::activity::{ActivitiesDone, FollowUpHealth, OverdueTasks};
    use crate::{Analytics, AnalyticsModule, Report};

    /// Without the activities and tickets modules composed (or built), every activity
    /// and service report is a Config error.
    #[test]
    fn reports_of_modules_not_composed_are_config_errors() {
        let modules = Modules::builder()
            .add(crmkit_contacts::ContactsModule)
            .add(crmkit_pipeline::PipelineModule)
            .add(AnalyticsModule)
            .build()
            .expect("modules");
        let store = Store::new(MemoryBackend::new((**modules.schema()).clone()), modules);
        let admin = Ctx::new(
            TenantId::new(),
            Actor::new(UserId::new(), [Role::Admin], []),
        )
        .expect("ctx");
        let a = Analytics::new(&store).expect("analytics");
        let p = Period::new(
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
            chrono::NaiveDate::from_ymd_opt(2026, 3, 31).expect("date"),
        )
        .expect("period");
        let config = |r: crmkit_core::Result<crate::ReportRows>| {
            assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for report in [
                Report::ActivitiesDone(ActivitiesDone {
                    period: p,
                    bucket: Bucket::Month,
                }),
                Report::OverdueTasks(OverdueTasks {}),
                Report::FollowUpHealth(FollowUpHealth {
                    kind: None,
                    quiet_days: 7,
                }),
                Report::TicketBacklog(TicketBacklog {}),
                Report::TicketResponseTimes(TicketResponseTimes { period: p }),
                Report::TicketSlaOutcomes(TicketSlaOutcomes { period: p }),
                Report::TicketSatisfaction(TicketSatisfaction { period: p }),
                Report::TicketVolume(TicketVolume {
                    period: p,
                    bucket: Bucket::Week,
                }),
                Report::TicketTimes(TicketTimes { period: p }),
            ] {
                config(a.run(&admin, &report).await);
            }
            assert!(matches!(
                a.ticket_times(&admin, &TicketTimes { period: p }).await,
                Err(Error::Config(_))
            ));
            assert!(matches!(
                a.overdue_tasks(&admin, &OverdueTasks {}).await,
                Err(Error::Config(_))
            ));
        });
    }
}
