//! crmkit analytics: sales reports computed by the storage backend.
//!
//! Reports are typed functions with typed parameters and rows ([`Analytics::pipeline_by_stage`],
//! [`Analytics::forecast`], [`Analytics::win_rate`], [`Analytics::sales_cycle`],
//! [`Analytics::velocity`]; the deal progress reports of [`funnel`]:
//! [`Analytics::stage_funnel`], [`Analytics::time_in_stage`], [`Analytics::lost_reasons`],
//! [`Analytics::slipped_deals`]; the lead and campaign reports of [`leads`]:
//! [`Analytics::lead_funnel`], [`Analytics::campaign_roi`]; from pipeline snapshots,
//! [`Analytics::pipeline_waterfall`] and [`Analytics::forecast_accuracy`], see
//! [`snapshot`]; the activity and service reports of [`activity`] and [`service`]), and
//! also data: a [`Report`] is stored as versioned JSON
//! (`"format": 1`) and run with [`Analytics::run`], which returns its rows as JSON.
//!
//! The main design decision: **every count and sum is a grouped aggregate computed by the
//! backend** (`Backend::aggregate` over the deals table's indexed columns), never rows read
//! into Rust to be counted, so the figures are exact and identical on every backend; the
//! conformance suite compares each report with an oracle computed in plain Rust from the
//! deals read through the public API. Money is exact: per-currency sums are converted into
//! the tenant's base currency at one date's rates and rounded once (see [`sales`]).
//!
//! **Access.** A report sees what the actor sees: Admin and Manager every deal, a Rep and
//! a ReadOnly user their own and their teams' deals, through the same condition deal lists
//! use; deleted deals never count. A hidden deal never shows through a count, a total or a
//! group.
//!
//! **Activity and service reports** ([`activity`], feature `activities`; [`service`],
//! feature `tickets`): activities done per rep and period by kind, open and overdue tasks
//! per rep, follow-up health per owner; and the tickets module's backlog, response
//! times, SLA outcomes and satisfaction through the same [`Report`] API, with tickets
//! created and solved per period and median and 90th-percentile response and resolution
//! times. Their definitions always parse; running one needs the feature and the module
//! composed in the store (a Config error otherwise).
//!
//! **Time.** Periods are local dates in the tenant's reporting time zone, and quarters and
//! years follow the tenant's fiscal year ([`ReportSettings`], set by an Admin with
//! [`Analytics::set_settings`]); see [`period`].
//!
//! ```
//! use crmkit_analytics::{Analytics, AnalyticsModule, Report};
//! use crmkit_core::memory::MemoryBackend;
//! use crmkit_core::{Actor, Ctx, Modules, Role, Store, TenantId, UserId};
//!
//! # fn main() -> crmkit_core::Result<()> {
//! let modules = Modules::builder()
//!     .add(crmkit_contacts::ContactsModule)
//!     .add(crmkit_pipeline::PipelineModule)
//!     .add(AnalyticsModule)
//!     .build()?;
//! let store = Store::new(MemoryBackend::new((**modules.schema()).clone()), modules);
//! let admin = Ctx::new(TenantId::new(), Actor::new(UserId::new(), [Role::Admin], []))?;
//! let analytics = Analytics::new(&store)?;
//! let report = Report::from_json(
//!     r#"{"format": 1, "report": "sales_cycle",
//!         "period": {"from": "2026-01-01", "to": "2026-03-31"}}"#,
//! )?;
//! let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
//! rt.block_on(async {
//!     analytics.set_settings(&admin, "Europe/Berlin", 4, 0).await?;
//!     let rows = analytics.run(&admin, &report).await?;
//!     assert_eq!(rows.rows[0]["won"], 0); // nothing won yet
//!     Ok(())
//! })
//! # }
//! ```

pub mod activity;
pub mod chart;
pub mod dashboard;
pub mod funnel;
pub mod leads;
pub mod period;
pub mod report;
pub mod sales;
pub mod service;
pub mod settings;
pub mod snapshot;

pub use activity::{
    ActivitiesDone, ActivitiesDoneRow, FollowUpHealth, FollowUpRow, OverdueRow, OverdueTasks,
    TrackedKind,
};
pub use chart::{ChartData, ChartKind, Series};
pub use dashboard::{Dashboard, RenderedDashboard, RenderedWidget, Widget};
pub use funnel::{
    FunnelRow, LostReasonRow, LostReasons, ReasonKind, SlipDim, SlipRow, SlippedDeals, StageFunnel,
    StageTimeRow, TimeInStage,
};
pub use leads::{CampaignRoi, LeadDim, LeadFunnel, LeadFunnelRow, RoiRow};
pub use period::{Bucket, BucketKey, MAX_BUCKETS, Period};
pub use report::{FORMAT, Report, ReportRows};
pub use sales::{
    CycleRow, Dim, Forecast, ForecastRow, Line, PipelineByStage, SalesCycle, StageRow, Velocity,
    VelocityRow, WinRate, WinRateRow,
};
pub use service::{
    TicketBacklog, TicketResponseTimes, TicketSatisfaction, TicketSlaOutcomes, TicketTimes,
    TicketTimesRow, TicketVolume, TicketVolumeRow, TimePercentiles,
};
pub use settings::{REPORT_SETTINGS, ReportSettings, SETTINGS_TABLE};
pub use snapshot::{
    AccuracyRow, Change, Every, ForecastAccuracy, ScheduleSetting, Snapshot, SnapshotId,
    SnapshotRow, SnapshotSchedule, Waterfall, WaterfallRow,
};

use std::collections::HashMap;

use crmkit_core::{Ctx, Error, Migration, Module, Result, Store, TeamId, UserId};
use serde::Serialize;
use uuid::Uuid;

/// The analytics module: its settings table and event kind. Composed after the pipeline
/// module, whose deals, pipelines and exchange rates it reports on.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnalyticsModule;

/// Event kinds this module emits.
pub const EVENT_KINDS: &[&str] = &[
    "analytics.settings_set",
    "analytics.snapshot_taken",
    "analytics.snapshot_deleted",
    "analytics.snapshot_schedule_set",
];

impl Module for AnalyticsModule {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["pipeline"]
    }

    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration::create_tables(
                1,
                "reporting settings (time zone, fiscal year start)",
                settings::tables(),
            ),
            Migration::create_tables(
                2,
                "pipeline snapshots (headers and one row per open deal)",
                snapshot::tables(),
            ),
        ]
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        EVENT_KINDS.to_vec()
    }
}

/// The analytics API over a store composed with [`AnalyticsModule`].
#[derive(Clone, Debug)]
pub struct Analytics {
    store: Store,
}

impl Analytics {
    /// The API over `store` (a Config error unless the analytics module is composed).
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("analytics")?;
        Ok(Analytics {
            store: store.clone(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tenant's reporting settings (UTC and January until an Admin sets them).
    /// Readable by every actor.
    pub async fn settings(&self, ctx: &Ctx) -> Result<ReportSettings> {
        settings::load(&self.store, ctx).await
    }

    /// Sets the reporting time zone (an IANA name) and the fiscal year's first month
    /// (1-12), Admin only (PermissionDenied otherwise). `expected_version` is the version
    /// read (0 for the defaults); a stale one is a Conflict. Bad values are one
    /// Validation error naming `time_zone` and/or `fiscal_year_start`.
    pub async fn set_settings(
        &self,
        ctx: &Ctx,
        time_zone: &str,
        fiscal_year_start: u32,
        expected_version: u64,
    ) -> Result<ReportSettings> {
        settings::save(
            &self.store,
            ctx,
            time_zone,
            fiscal_year_start,
            expected_version,
        )
        .await
    }

    async fn sales(&self, ctx: &Ctx) -> Result<sales::Sales<'_>> {
        let settings = self.settings(ctx).await?;
        let tz = settings.tz()?;
        Ok(sales::Sales {
            store: &self.store,
            settings,
            tz,
        })
    }

    /// Open deals per pipeline and stage (and `by`): count, amount and weighted amount
    /// in the base currency. Rows are ordered by pipeline, stage position and group.
    pub async fn pipeline_by_stage(&self, ctx: &Ctx, r: &PipelineByStage) -> Result<Vec<StageRow>> {
        self.sales(ctx).await?.pipeline_by_stage(ctx, r).await
    }

    /// The forecast by close period: one row per bucket of the period, then a row for
    /// open deals without a close date when there are any (see [`Forecast`]).
    pub async fn forecast(&self, ctx: &Ctx, r: &Forecast) -> Result<Vec<ForecastRow>> {
        self.sales(ctx).await?.forecast(ctx, r).await
    }

    /// Win rate by count and by value, and average deal size, of the deals closed in the
    /// period, per group (one total row without `by`).
    pub async fn win_rate(&self, ctx: &Ctx, r: &WinRate) -> Result<Vec<WinRateRow>> {
        self.sales(ctx).await?.win_rate(ctx, r).await
    }

    /// Sales cycle length (average, median and 90th percentile, nearest rank) of the deals
    /// won in the period, per group (one total row without `by`).
    pub async fn sales_cycle(&self, ctx: &Ctx, r: &SalesCycle) -> Result<Vec<CycleRow>> {
        self.sales(ctx).await?.sales_cycle(ctx, r).await
    }

    /// Sales velocity (see [`Velocity`]).
    pub async fn velocity(&self, ctx: &Ctx, r: &Velocity) -> Result<VelocityRow> {
        self.sales(ctx).await?.velocity(ctx, r).await
    }

    /// Renders a dashboard: every widget's report run as `ctx` (so each shows what the
    /// actor can see), its rows as JSON and its chart as an SVG document. The definition
    /// is checked first ([`Dashboard::validate`]); a report's error is returned as it is.
    pub async fn render_dashboard(&self, ctx: &Ctx, d: &Dashboard) -> Result<RenderedDashboard> {
        d.validate()?;
        let mut widgets = Vec::with_capacity(d.widgets.len());
        let mut names = HashMap::new();
        for w in &d.widgets {
            let rows = self.run(ctx, &w.report).await?;
            let mut data = w.chart_data(&rows)?;
            for text in data
                .labels
                .iter_mut()
                .chain(data.series.iter_mut().map(|s| &mut s.name))
            {
                if let Some(name) = self.display_name(ctx, text, &mut names).await? {
                    *text = name;
                }
            }
            let svg = chart::render(w.chart, &data)?;
            widgets.push(RenderedWidget {
                title: w.title.clone(),
                chart: w.chart,
                rows,
                svg,
            });
        }
        Ok(RenderedDashboard {
            name: d.name.clone(),
            widgets,
        })
    }

    /// The name a chart shows for a group that is an id: a user's or a team's name (the
    /// directory, readable by every actor), a pipeline's or a campaign's (through the
    /// generic record API, as the actor sees them). `None` when `text` is no id, or names
    /// nothing the actor may read (the id stays). Looked up once per render.
    async fn display_name(
        &self,
        ctx: &Ctx,
        text: &str,
        names: &mut HashMap<Uuid, Option<String>>,
    ) -> Result<Option<String>> {
        let Ok(id) = Uuid::parse_str(text) else {
            return Ok(None);
        };
        if let Some(known) = names.get(&id) {
            return Ok(known.clone());
        }
        let dir = self.store.directory();
        let mut name = match dir.user(ctx, UserId::from_uuid(id)).await {
            Ok(u) => Some(u.name),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if name.is_none() {
            name = match dir.team(ctx, TeamId::from_uuid(id)).await {
                Ok(t) => Some(t.name),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
        }
        let records = self.store.records();
        // Both kinds belong to the pipeline module, which this module depends on.
        for kind in ["pipeline", "campaign"] {
            if name.is_some() {
                break;
            }
            name = match records.get(ctx, kind, id).await {
                Ok(r) => r.get("name").and_then(|n| n.as_str()).map(str::to_owned),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
        }
        names.insert(id, name.clone());
        Ok(name)
    }

    async fn progress(&self, ctx: &Ctx) -> Result<funnel::Progress<'_>> {
        let tz = self.settings(ctx).await?.tz()?;
        Ok(funnel::Progress {
            store: &self.store,
            tz,
        })
    }

    /// The stage funnel of the deals created in the period: per pipeline, each open stage
    /// in order and then won, with the deals that reached it and the share of those that
    /// reached the next step (see [`funnel`] for what "reached" means).
    pub async fn stage_funnel(&self, ctx: &Ctx, r: &StageFunnel) -> Result<Vec<FunnelRow>> {
        self.progress(ctx).await?.stage_funnel(ctx, r).await
    }

    /// Time in stage: per stage, the stays that ended in the period (count, average,
    /// median and 90th percentile) and the deals still in it at the period's end.
    pub async fn time_in_stage(&self, ctx: &Ctx, r: &TimeInStage) -> Result<Vec<StageTimeRow>> {
        self.progress(ctx).await?.time_in_stage(ctx, r).await
    }

    /// Count and value of the deals lost in the period per lost reason (managed reasons,
    /// then free text and no reason in rows of their own).
    pub async fn lost_reasons(&self, ctx: &Ctx, r: &LostReasons) -> Result<Vec<LostReasonRow>> {
        self.progress(ctx).await?.lost_reasons(ctx, r).await
    }

    /// Close dates moved later in the period: how often and by how many days, per owner,
    /// team or pipeline (from the close-date history, recorded from the pipeline module's
    /// migration 2 on).
    pub async fn slipped_deals(&self, ctx: &Ctx, r: &SlippedDeals) -> Result<Vec<SlipRow>> {
        self.progress(ctx).await?.slipped_deals(ctx, r).await
    }

    /// The lead funnel of the leads created in the period: per source (and owner, team or
    /// campaign), their counts by status now and the conversion rate (see [`leads`]).
    pub async fn lead_funnel(&self, ctx: &Ctx, r: &LeadFunnel) -> Result<Vec<LeadFunnelRow>> {
        let tz = self.settings(ctx).await?.tz()?;
        leads::LeadReports {
            store: &self.store,
            tz,
        }
        .lead_funnel(ctx, r)
        .await
    }

    /// Campaign ROI: per campaign the actor sees, its cost and the revenue of the
    /// attributed deals won in the period, in the base currency, the ROI and the
    /// attributed leads and deals (see [`leads`]).
    pub async fn campaign_roi(&self, ctx: &Ctx, r: &CampaignRoi) -> Result<Vec<RoiRow>> {
        let sales = self.sales(ctx).await?;
        leads::LeadReports {
            store: &self.store,
            tz: sales.tz,
        }
        .campaign_roi(ctx, r, &sales)
        .await
    }

    /// Runs a report definition; its rows as JSON, with the base currency.
    pub async fn run(&self, ctx: &Ctx, report: &Report) -> Result<ReportRows> {
        fn rows<T: Serialize>(rows: &[T]) -> Result<Vec<serde_json::Value>> {
            rows.iter()
                .map(|r| serde_json::to_value(r).map_err(|e| Error::storage_from("report row", e)))
                .collect()
        }
        let rows = match report {
            Report::PipelineByStage(r) => rows(&self.pipeline_by_stage(ctx, r).await?)?,
            Report::Forecast(r) => rows(&self.forecast(ctx, r).await?)?,
            Report::WinRate(r) => rows(&self.win_rate(ctx, r).await?)?,
            Report::SalesCycle(r) => rows(&self.sales_cycle(ctx, r).await?)?,
            Report::Velocity(r) => rows(&[self.velocity(ctx, r).await?])?,
            Report::StageFunnel(r) => rows(&self.stage_funnel(ctx, r).await?)?,
            Report::TimeInStage(r) => rows(&self.time_in_stage(ctx, r).await?)?,
            Report::LostReasons(r) => rows(&self.lost_reasons(ctx, r).await?)?,
            Report::SlippedDeals(r) => rows(&self.slipped_deals(ctx, r).await?)?,
            Report::PipelineWaterfall(r) => rows(&self.pipeline_waterfall(ctx, r).await?)?,
            Report::ForecastAccuracy(r) => rows(&self.forecast_accuracy(ctx, r).await?)?,
            Report::ActivitiesDone(r) => rows(&self.activities_done(ctx, r).await?)?,
            Report::OverdueTasks(r) => rows(&self.overdue_tasks(ctx, r).await?)?,
            Report::FollowUpHealth(r) => rows(&self.follow_up_health(ctx, r).await?)?,
            Report::TicketBacklog(_)
            | Report::TicketResponseTimes(_)
            | Report::TicketSlaOutcomes(_)
            | Report::TicketSatisfaction(_)
            | Report::TicketVolume(_)
            | Report::TicketTimes(_) => self.run_service(ctx, report).await?,
            Report::LeadFunnel(r) => rows(&self.lead_funnel(ctx, r).await?)?,
            Report::CampaignRoi(r) => rows(&self.campaign_roi(ctx, r).await?)?,
        };
        let currency = crmkit_pipeline::currency::Currencies::new(&self.store)?
            .base_currency(ctx)
            .await?
            .map(|c| c.code().to_owned());
        Ok(ReportRows {
            report: report.name().into(),
            currency,
            rows,
        })
    }
}
