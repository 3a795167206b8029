//! Report definitions as data: the [`Report`] enum, stored as versioned JSON.
//!
//! ```json
//! {"format": 1, "report": "forecast",
//!  "period": {"from": "2026-01-01", "to": "2026-12-31"}, "bucket": "quarter",
//!  "pipeline": null, "rate_date": null, "best_case_at": 50, "commit_at": 90}
//! ```
//!
//! [`Report::from_json`] refuses, as one Validation error naming every bad part:
//! malformed JSON (`report`), a missing or unknown `format` (only `1` exists), an
//! unknown `report` name, unknown members, and each bad member by its path
//! (`period.to`, `by`, `bucket`, ...): an unknown group-by field, an inverted or
//! unbounded period (`to` missing), a malformed date or id. Members that may be left out
//! take their documented defaults (`null`; `best_case_at` 50, `commit_at` 90).

use chrono::NaiveDate;
use crmkit_core::{Error, Result, ValidationErrors};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::activity::{ActivitiesDone, FollowUpHealth, OverdueTasks, TrackedKind};
use crate::funnel::{LostReasons, SlipDim, SlippedDeals, StageFunnel, TimeInStage};
use crate::leads::{CampaignRoi, LeadDim, LeadFunnel};
use crate::period::{Bucket, Period};
use crate::sales::{Dim, Forecast, PipelineByStage, SalesCycle, Velocity, WinRate};
use crate::service::{
    TicketBacklog, TicketResponseTimes, TicketSatisfaction, TicketSlaOutcomes, TicketTimes,
    TicketVolume,
};
use crate::snapshot::{ForecastAccuracy, SnapshotId, Waterfall};

/// The report-definition format this version reads and writes.
pub const FORMAT: u64 = 1;

/// Every report's JSON name.
pub const REPORT_NAMES: &[&str] = &[
    "pipeline_by_stage",
    "forecast",
    "win_rate",
    "sales_cycle",
    "velocity",
    "stage_funnel",
    "time_in_stage",
    "lost_reasons",
    "slipped_deals",
    "pipeline_waterfall",
    "forecast_accuracy",
    "activities_done",
    "overdue_tasks",
    "follow_up_health",
    "ticket_backlog",
    "ticket_response_times",
    "ticket_sla_outcomes",
    "ticket_satisfaction",
    "ticket_volume",
    "ticket_times",
    "lead_funnel",
    "campaign_roi",
];

/// A report definition: which report, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Open deals per pipeline and stage.
    PipelineByStage(PipelineByStage),
    /// Forecast by close period.
    Forecast(Forecast),
    /// Win rate and average deal size.
    WinRate(WinRate),
    /// Sales cycle length.
    SalesCycle(SalesCycle),
    /// Sales velocity.
    Velocity(Velocity),
    /// Stage funnel.
    StageFunnel(StageFunnel),
    /// Time in stage.
    TimeInStage(TimeInStage),
    /// Lost reasons.
    LostReasons(LostReasons),
    /// Slipped deals.
    SlippedDeals(SlippedDeals),
    /// The pipeline waterfall between two snapshots.
    PipelineWaterfall(Waterfall),
    /// A snapshot's forecast against what was won.
    ForecastAccuracy(ForecastAccuracy),
    /// Activities done per owner and period, by kind.
    ActivitiesDone(ActivitiesDone),
    /// Open and overdue tasks per owner.
    OverdueTasks(OverdueTasks),
    /// Follow-up health per kind and owner.
    FollowUpHealth(FollowUpHealth),
    /// The ticket backlog (the tickets module's).
    TicketBacklog(TicketBacklog),
    /// Ticket response and resolution business minutes (the tickets module's).
    TicketResponseTimes(TicketResponseTimes),
    /// SLA outcomes (the tickets module's).
    TicketSlaOutcomes(TicketSlaOutcomes),
    /// Satisfaction ratings (the tickets module's).
    TicketSatisfaction(TicketSatisfaction),
    /// Tickets created and solved per period.
    TicketVolume(TicketVolume),
    /// Median and 90th percentile ticket response and resolution times.
    TicketTimes(TicketTimes),
    /// Lead funnel by source.
    LeadFunnel(LeadFunnel),
    /// Campaign ROI.
    CampaignRoi(CampaignRoi),
}

/// The rows a report returned, as JSON (each row is the typed row serialised; decimals
/// are strings, so nothing is lost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRows {
    /// The report's name.
    pub report: String,
    /// The base currency money figures are in.
    pub currency: Option<String>,
    /// The rows.
    pub rows: Vec<Value>,
}

impl Report {
    /// The report's JSON name.
    pub fn name(&self) -> &'static str {
        match self {
            Report::PipelineByStage(_) => "pipeline_by_stage",
            Report::Forecast(_) => "forecast",
            Report::WinRate(_) => "win_rate",
            Report::SalesCycle(_) => "sales_cycle",
            Report::Velocity(_) => "velocity",
            Report::StageFunnel(_) => "stage_funnel",
            Report::TimeInStage(_) => "time_in_stage",
            Report::LostReasons(_) => "lost_reasons",
            Report::SlippedDeals(_) => "slipped_deals",
            Report::PipelineWaterfall(_) => "pipeline_waterfall",
            Report::ForecastAccuracy(_) => "forecast_accuracy",
            Report::ActivitiesDone(_) => "activities_done",
            Report::OverdueTasks(_) => "overdue_tasks",
            Report::FollowUpHealth(_) => "follow_up_health",
            Report::TicketBacklog(_) => "ticket_backlog",
            Report::TicketResponseTimes(_) => "ticket_response_times",
            Report::TicketSlaOutcomes(_) => "ticket_sla_outcomes",
            Report::TicketSatisfaction(_) => "ticket_satisfaction",
            Report::TicketVolume(_) => "ticket_volume",
            Report::TicketTimes(_) => "ticket_times",
            Report::LeadFunnel(_) => "lead_funnel",
            Report::CampaignRoi(_) => "campaign_roi",
        }
    }

    /// The definition as JSON, with `"format": 1`.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("format".into(), Value::from(FORMAT));
        }
        v
    }

    /// Reads a definition (see the module docs for the errors).
    pub fn from_json(text: &str) -> Result<Report> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::validation("report", format!("is not JSON: {e}")))?;
        Report::from_value(&v)
    }

    /// Reads a definition from a JSON value.
    pub fn from_value(v: &Value) -> Result<Report> {
        let Value::Object(m) = v else {
            return Err(Error::validation("report", "must be a JSON object"));
        };
        let mut f = Fields::new(m);
        match m.get("format") {
            None => f.errs.push("format", "is required"),
            Some(Value::Number(n)) if n.as_u64() == Some(FORMAT) => {}
            Some(other) => f.errs.push(
                "format",
                format!("unknown report format {other}; this version reads 1"),
            ),
        }
        f.seen("format");
        f.seen("report");
        let name = match m.get("report") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                f.errs.push("report", "must be a report name");
                String::new()
            }
            None => {
                f.errs.push("report", "is required");
                String::new()
            }
        };
        let report = match name.as_str() {
            "pipeline_by_stage" => Some(Report::PipelineByStage(PipelineByStage {
                pipeline: f.opt("pipeline"),
                by: f.opt_named("by", Dim::NAMES),
                rate_date: f.opt::<NaiveDate>("rate_date"),
            })),
            "forecast" => {
                let period = f.period();
                let bucket = f.req_named::<Bucket>("bucket", Bucket::NAMES);
                let pipeline = f.opt("pipeline");
                let rate_date = f.opt("rate_date");
                let best_case_at = f.opt::<u8>("best_case_at").unwrap_or(50);
                let commit_at = f.opt::<u8>("commit_at").unwrap_or(90);
                match (period, bucket) {
                    (Some(period), Some(bucket)) => Some(Report::Forecast(Forecast {
                        period,
                        bucket,
                        pipeline,
                        rate_date,
                        best_case_at,
                        commit_at,
                    })),
                    _ => None,
                }
            }
            "win_rate" => {
                let period = f.period();
                let by = f.opt_named("by", Dim::NAMES);
                let pipeline = f.opt("pipeline");
                let rate_date = f.opt("rate_date");
                period.map(|period| {
                    Report::WinRate(WinRate {
                        period,
                        by,
                        pipeline,
                        rate_date,
                    })
                })
            }
            "sales_cycle" => {
                let period = f.period();
                let by = f.opt_named("by", Dim::NAMES);
                let pipeline = f.opt("pipeline");
                period.map(|period| {
                    Report::SalesCycle(SalesCycle {
                        period,
                        by,
                        pipeline,
                    })
                })
            }
            "velocity" => {
                let period = f.period();
                let pipeline = f.opt("pipeline");
                let rate_date = f.opt("rate_date");
                period.map(|period| {
                    Report::Velocity(Velocity {
                        period,
                        pipeline,
                        rate_date,
                    })
                })
            }
            "stage_funnel" => {
                let period = f.period();
                let pipeline = f.opt("pipeline");
                period.map(|period| Report::StageFunnel(StageFunnel { period, pipeline }))
            }
            "time_in_stage" => {
                let period = f.period();
                let pipeline = f.opt("pipeline");
                period.map(|period| Report::TimeInStage(TimeInStage { period, pipeline }))
            }
            "lost_reasons" => {
                let period = f.period();
                let pipeline = f.opt("pipeline");
                let rate_date = f.opt("rate_date");
                period.map(|period| {
                    Report::LostReasons(LostReasons {
                        period,
                        pipeline,
                        rate_date,
                    })
                })
            }
            "slipped_deals" => {
                let period = f.period();
                let by = f.opt_named("by", SlipDim::NAMES);
                let pipeline = f.opt("pipeline");
                period.map(|period| {
                    Report::SlippedDeals(SlippedDeals {
                        period,
                        by,
                        pipeline,
                    })
                })
            }
            "pipeline_waterfall" => {
                let earlier = f.member::<SnapshotId>("earlier", true, "a snapshot id");
                let later = f.member::<SnapshotId>("later", true, "a snapshot id");
                let pipeline = f.opt("pipeline");
                // A bad period is named in the errors and fails the definition.
                let period = f.opt_period().flatten();
                match (earlier, later) {
                    (Some(earlier), Some(later)) => Some(Report::PipelineWaterfall(Waterfall {
                        earlier,
                        later,
                        pipeline,
                        period,
                    })),
                    _ => None,
                }
            }
            "forecast_accuracy" => {
                let snapshot = f.member::<SnapshotId>("snapshot", true, "a snapshot id");
                let period = f.period();
                let pipeline = f.opt("pipeline");
                let by_owner = f
                    .member::<bool>("by_owner", false, "true or false")
                    .unwrap_or(false);
                let rate_date = f.opt("rate_date");
                let best_case_at = f.opt::<u8>("best_case_at").unwrap_or(50);
                let commit_at = f.opt::<u8>("commit_at").unwrap_or(90);
                match (snapshot, period) {
                    (Some(snapshot), Some(period)) => {
                        Some(Report::ForecastAccuracy(ForecastAccuracy {
                            snapshot,
                            period,
                            pipeline,
                            by_owner,
                            rate_date,
                            best_case_at,
                            commit_at,
                        }))
                    }
                    _ => None,
                }
            }
            "activities_done" => {
                let period = f.period();
                let bucket = f.req_named::<Bucket>("bucket", Bucket::NAMES);
                match (period, bucket) {
                    (Some(period), Some(bucket)) => {
                        Some(Report::ActivitiesDone(ActivitiesDone { period, bucket }))
                    }
                    _ => None,
                }
            }
            "overdue_tasks" => Some(Report::OverdueTasks(OverdueTasks {})),
            "follow_up_health" => {
                let kind = f.opt_named::<TrackedKind>("kind", TrackedKind::NAMES);
                let quiet_days = f.quiet_days();
                quiet_days
                    .map(|quiet_days| Report::FollowUpHealth(FollowUpHealth { kind, quiet_days }))
            }
            "ticket_backlog" => Some(Report::TicketBacklog(TicketBacklog {})),
            "ticket_response_times" => f
                .period()
                .map(|period| Report::TicketResponseTimes(TicketResponseTimes { period })),
            "ticket_sla_outcomes" => f
                .period()
                .map(|period| Report::TicketSlaOutcomes(TicketSlaOutcomes { period })),
            "ticket_satisfaction" => f
                .period()
                .map(|period| Report::TicketSatisfaction(TicketSatisfaction { period })),
            "ticket_volume" => {
                let period = f.period();
                let bucket = f.req_named::<Bucket>("bucket", Bucket::NAMES);
                match (period, bucket) {
                    (Some(period), Some(bucket)) => {
                        Some(Report::TicketVolume(TicketVolume { period, bucket }))
                    }
                    _ => None,
                }
            }
            "ticket_times" => f
                .period()
                .map(|period| Report::TicketTimes(TicketTimes { period })),
            "lead_funnel" => {
                let period = f.period();
                let by = f.opt_named("by", LeadDim::NAMES);
                period.map(|period| Report::LeadFunnel(LeadFunnel { period, by }))
            }
            "campaign_roi" => {
                let campaign = f.opt("campaign");
                let period = f.opt_period();
                let rate_date = f.opt("rate_date");
                period.map(|period| {
                    Report::CampaignRoi(CampaignRoi {
                        campaign,
                        period,
                        rate_date,
                    })
                })
            }
            "" => None,
            other => {
                f.errs.push(
                    "report",
                    format!(
                        "unknown report {other:?}; known: {}",
                        REPORT_NAMES.join(", ")
                    ),
                );
                None
            }
        };
        if REPORT_NAMES.contains(&name.as_str()) {
            f.unknown_members();
        }
        f.errs.into_result()?;
        report.ok_or_else(|| Error::validation("report", "is not a report definition"))
    }
}

/// Reads members of one JSON object, collecting every problem by member path.
struct Fields<'a> {
    m: &'a Map<String, Value>,
    seen: Vec<&'static str>,
    errs: ValidationErrors,
}

impl<'a> Fields<'a> {
    fn new(m: &'a Map<String, Value>) -> Self {
        Fields {
            m,
            seen: vec![],
            errs: ValidationErrors::new(),
        }
    }

    fn seen(&mut self, name: &'static str) {
        self.seen.push(name);
    }

    fn parse<T: DeserializeOwned>(
        &mut self,
        name: &'static str,
        v: &Value,
        what: &str,
    ) -> Option<T> {
        match serde_json::from_value::<T>(v.clone()) {
            Ok(t) => Some(t),
            Err(_) => {
                self.errs.push(name, format!("must be {what}"));
                None
            }
        }
    }

    fn opt<T: DeserializeOwned>(&mut self, name: &'static str) -> Option<T> {
        self.seen(name);
        match self.m.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let what = match name {
                    "pipeline" => "a pipeline id or null",
                    "campaign" => "a campaign id or null",
                    "rate_date" => "a date (YYYY-MM-DD) or null",
                    _ => "an integer from 0 to 100",
                };
                self.parse(name, v, what)
            }
        }
    }

    fn opt_named<T: DeserializeOwned>(&mut self, name: &'static str, names: &[&str]) -> Option<T> {
        self.seen(name);
        match self.m.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let what = format!("null or one of {}", names.join(", "));
                self.parse(name, v, &what)
            }
        }
    }

    fn req_named<T: DeserializeOwned>(&mut self, name: &'static str, names: &[&str]) -> Option<T> {
        self.seen(name);
        match self.m.get(name) {
            None | Some(Value::Null) => {
                self.errs.push(name, "is required");
                None
            }
            Some(v) => {
                let what = format!("one of {}", names.join(", "));
                self.parse(name, v, &what)
            }
        }
    }

    /// An optional `period`: `Some(None)` when absent or null, `None` when bad (named).
    fn opt_period(&mut self) -> Option<Option<Period>> {
        match self.m.get("period") {
            None | Some(Value::Null) => {
                self.seen("period");
                Some(None)
            }
            Some(_) => self.period().map(Some),
        }
    }

    /// `period`: an object with `from` and `to` dates, bounded and in order.
    fn period(&mut self) -> Option<Period> {
        self.seen("period");
        let Some(Value::Object(p)) = self.m.get("period") else {
            self.errs.push(
                "period",
                "is required: an object with the dates from and to",
            );
            return None;
        };
        let mut date = |k: &str| match p.get(k) {
            None | Some(Value::Null) => {
                self.errs
                    .push(format!("period.{k}"), "is required (a period is bounded)");
                None
            }
            Some(v) => match serde_json::from_value::<NaiveDate>(v.clone()) {
                Ok(d) => Some(d),
                Err(_) => {
                    self.errs
                        .push(format!("period.{k}"), "must be a date (YYYY-MM-DD)");
                    None
                }
            },
        };
        let from = date("from");
        let to = date("to");
        for k in p.keys() {
            if k != "from" && k != "to" {
                self.errs
                    .push(format!("period.{k}"), "is not a member of a period");
            }
        }
        match Period::new(from?, to?) {
            Ok(p) => Some(p),
            Err(e) => {
                if let Some(v) = e.validation_errors() {
                    for fe in &v.errors {
                        self.errs.push(fe.field.clone(), fe.reason.clone());
                    }
                }
                None
            }
        }
    }

    /// A member of type `T` (described as `what` in the error): `None` when absent or
    /// null, which is an error when `required`.
    fn member<T: DeserializeOwned>(
        &mut self,
        name: &'static str,
        required: bool,
        what: &str,
    ) -> Option<T> {
        self.seen(name);
        match self.m.get(name) {
            None | Some(Value::Null) => {
                if required {
                    self.errs.push(name, "is required");
                }
                None
            }
            Some(v) => self.parse(name, v, what),
        }
    }

    /// `quiet_days`: a whole number of days from 1 to [`crate::activity::MAX_QUIET_DAYS`].
    fn quiet_days(&mut self) -> Option<u32> {
        self.seen("quiet_days");
        let max = crate::activity::MAX_QUIET_DAYS;
        let what = format!("is required: a whole number of days from 1 to {max}");
        match self.m.get("quiet_days").and_then(Value::as_u64) {
            Some(n) if (1..=u64::from(max)).contains(&n) => u32::try_from(n).ok(),
            _ => {
                self.errs.push("quiet_days", what);
                None
            }
        }
    }

    fn unknown_members(&mut self) {
        for k in self.m.keys() {
            if !self.seen.contains(&k.as_str()) {
                self.errs.push(k.clone(), "is not a member of this report");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<String> {
        let e = Report::from_json(text).expect_err("invalid");
        e.validation_errors()
            .expect("validation")
            .errors
            .iter()
            .map(|f| f.field.clone())
            .collect()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn definitions_round_trip() {
        let p = Period::new(d("2026-01-01"), d("2026-12-31")).expect("period");
        for r in [
            Report::PipelineByStage(PipelineByStage {
                pipeline: None,
                by: Some(Dim::Owner),
                rate_date: Some(d("2026-06-30")),
            }),
            Report::Forecast(Forecast {
                period: p,
                bucket: Bucket::Quarter,
                pipeline: Some(crmkit_core::PipelineId::new()),
                rate_date: None,
                best_case_at: 40,
                commit_at: 80,
            }),
            Report::WinRate(WinRate {
                period: p,
                by: Some(Dim::Campaign),
                pipeline: None,
                rate_date: None,
            }),
            Report::SalesCycle(SalesCycle {
                period: p,
                by: None,
                pipeline: None,
            }),
            Report::Velocity(Velocity {
                period: p,
                pipeline: None,
                rate_date: None,
            }),
            Report::StageFunnel(StageFunnel {
                period: p,
                pipeline: Some(crmkit_core::PipelineId::new()),
            }),
            Report::TimeInStage(TimeInStage {
                period: p,
                pipeline: None,
            }),
            Report::LostReasons(LostReasons {
                period: p,
                pipeline: None,
                rate_date: Some(d("2026-03-31")),
            }),
            Report::SlippedDeals(SlippedDeals {
                period: p,
                by: Some(SlipDim::Team),
                pipeline: None,
            }),
            Report::SlippedDeals(SlippedDeals {
                period: p,
                by: None,
                pipeline: Some(crmkit_core::PipelineId::new()),
            }),
            Report::PipelineWaterfall(Waterfall {
                earlier: SnapshotId::new(),
                later: SnapshotId::new(),
                pipeline: None,
                period: None,
            }),
            Report::PipelineWaterfall(Waterfall {
                earlier: SnapshotId::new(),
                later: SnapshotId::new(),
                pipeline: Some(crmkit_core::PipelineId::new()),
                period: Some(p),
            }),
            Report::ForecastAccuracy(ForecastAccuracy {
                snapshot: SnapshotId::new(),
                period: p,
                pipeline: None,
                by_owner: true,
                rate_date: Some(d("2026-03-31")),
                best_case_at: 30,
                commit_at: 70,
            }),
            Report::ActivitiesDone(ActivitiesDone {
                period: p,
                bucket: Bucket::Week,
            }),
            Report::OverdueTasks(OverdueTasks {}),
            Report::FollowUpHealth(FollowUpHealth {
                kind: Some(TrackedKind::Organization),
                quiet_days: 14,
            }),
            Report::FollowUpHealth(FollowUpHealth {
                kind: None,
                quiet_days: 1,
            }),
            Report::TicketBacklog(TicketBacklog {}),
            Report::TicketResponseTimes(TicketResponseTimes { period: p }),
            Report::TicketSlaOutcomes(TicketSlaOutcomes { period: p }),
            Report::TicketSatisfaction(TicketSatisfaction { period: p }),
            Report::TicketVolume(TicketVolume {
                period: p,
                bucket: Bucket::Quarter,
            }),
            Report::TicketTimes(TicketTimes { period: p }),
        ] {
            let json = r.to_json();
            assert_eq!(json["format"], 1);
            assert_eq!(json["report"], r.name());
            assert_eq!(Report::from_json(&json.to_string()).expect("parses"), r);
        }
    }

    #[test]
    fn bad_parts_of_progress_reports_are_named() {
        assert_eq!(
            fields(r#"{"format":1,"report":"stage_funnel"}"#),
            ["period"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"stage_funnel","period":{"from":"2026-01-01","to":"2026-02-01"},"by":"owner"}"#
            ),
            ["by"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"time_in_stage","period":{"from":"2026-01-01","to":"2026-13-01"},"pipeline":"x"}"#
            ),
            ["period.to", "pipeline"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"lost_reasons","period":{"from":"2026-02-01","to":"2026-01-01"},"rate_date":"yesterday"}"#
            ),
            ["period", "rate_date"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"slipped_deals","period":{"from":"2026-01-01","to":"2026-02-01"},"by":"source"}"#
            ),
            ["by"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"slipped_deals","period":{"from":"2026-01-01","to":"2026-02-01","until":"x"},"by":"team; DROP TABLE x"}"#
            ),
            ["period.until", "by"]
        );
        assert_eq!(
            fields(r#"{"format":1,"report":"lost_reasons","rate_date":null}"#),
            ["period"]
        );
    }

    #[test]
    fn bad_parts_are_named() {
        assert_eq!(fields("nope"), ["report"]);
        assert_eq!(
            fields(r#"{"report":"win_rate","period":{"from":"2026-01-01","to":"2026-02-01"}}"#),
            ["format"]
        );
        assert_eq!(
            fields(
                r#"{"format":2,"report":"velocity","period":{"from":"2026-01-01","to":"2026-02-01"}}"#
            ),
            ["format"]
        );
        assert_eq!(fields(r#"{"format":1,"report":"funnel"}"#), ["report"]);
        assert_eq!(
            fields(
                r#"{"format":1,"report":"win_rate","by":"owner_id; DROP TABLE x","period":{"from":"2026-01-01","to":"2026-02-01"}}"#
            ),
            ["by"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"win_rate","period":{"from":"2026-03-01","to":"2026-02-01"}}"#
            ),
            ["period"]
        );
        assert_eq!(
            fields(r#"{"format":1,"report":"win_rate","period":{"from":"2026-03-01"}}"#),
            ["period.to"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"forecast","period":{"from":"2026-01-01","to":"x"},"bucket":"fortnight","extra":1}"#
            ),
            ["period.to", "bucket", "extra"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"pipeline_by_stage","pipeline":"42","rate_date":"2026-02-30"}"#
            ),
            ["pipeline", "rate_date"]
        );
    }

    #[test]
    fn bad_snapshot_report_parts_are_named() {
        assert_eq!(
            fields(r#"{"format":1,"report":"pipeline_waterfall"}"#),
            ["earlier", "later"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"pipeline_waterfall","earlier":"x'; DROP TABLE y--","later":"0190b6c8-0000-7000-8000-000000000000","period":{"from":"2026-02-01","to":"2026-01-01"},"pipeline":7}"#
            ),
            ["earlier", "pipeline", "period"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"pipeline_waterfall","earlier":"0190b6c8-0000-7000-8000-000000000000","later":"0190b6c8-0000-7000-8000-000000000000","period":{"from":"2026-02-01"},"by":"owner"}"#
            ),
            ["period.to", "by"]
        );
        assert_eq!(
            fields(r#"{"format":1,"report":"forecast_accuracy","by_owner":"yes"}"#),
            ["snapshot", "period", "by_owner"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"forecast_accuracy","snapshot":"0190b6c8-0000-7000-8000-000000000000","period":{"from":"2026-01-01","to":"2026-01-31"},"commit_at":300,"rate_date":"soon"}"#
            ),
            ["rate_date", "commit_at"]
        );
        // Defaults.
        let r = Report::from_json(
            r#"{"format":1,"report":"forecast_accuracy","snapshot":"0190b6c8-0000-7000-8000-000000000000","period":{"from":"2026-01-01","to":"2026-01-31"}}"#,
        )
        .expect("parses");
        let Report::ForecastAccuracy(a) = r else {
            panic!("forecast accuracy: {r:?}")
        };
        assert_eq!((a.by_owner, a.best_case_at, a.commit_at), (false, 50, 90));
    }

    #[test]
    fn every_report_name_round_trips() {
        // The round-trip test above has one definition per name at least.
        let names: Vec<&str> = REPORT_NAMES.to_vec();
        for n in &names {
            let e = Report::from_json(&format!(r#"{{"format":1,"report":"{n}","zzz":1}}"#))
                .expect_err("an unknown member");
            let fields: Vec<String> = e
                .validation_errors()
                .expect("validation")
                .errors
                .iter()
                .map(|f| f.field.clone())
                .collect();
            assert!(fields.contains(&"zzz".to_string()), "{n}: {fields:?}");
        }
    }

    #[test]
    fn bad_parts_of_activity_and_service_reports_are_named() {
        assert_eq!(
            fields(
                r#"{"format":1,"report":"activities_done","period":{"from":"2026-01-01","to":"2026-01-31"}}"#
            ),
            ["bucket"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"activities_done","period":{"from":"2026-02-01","to":"2026-01-31"},"bucket":"hour"}"#
            ),
            ["period", "bucket"]
        );
        assert_eq!(
            fields(r#"{"format":1,"report":"overdue_tasks","owner":"me"}"#),
            ["owner"]
        );
        assert_eq!(
            fields(r#"{"format":1,"report":"follow_up_health"}"#),
            ["quiet_days"]
        );
        for bad in ["0", "3651", "-1", "1.5", "\"7\"", "null"] {
            assert_eq!(
                fields(&format!(
                    r#"{{"format":1,"report":"follow_up_health","quiet_days":{bad}}}"#
                )),
                ["quiet_days"],
                "{bad}"
            );
        }
        assert_eq!(
            fields(
                r#"{"format":1,"report":"follow_up_health","quiet_days":7,"kind":"ticket' OR 1=1--"}"#
            ),
            ["kind"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"ticket_backlog","period":{"from":"2026-01-01","to":"2026-01-31"}}"#
            ),
            ["period"]
        );
        for name in [
            "ticket_response_times",
            "ticket_sla_outcomes",
            "ticket_satisfaction",
            "ticket_times",
        ] {
            assert_eq!(
                fields(&format!(r#"{{"format":1,"report":"{name}"}}"#)),
                ["period"],
                "{name}"
            );
            assert_eq!(
                fields(&format!(
                    r#"{{"format":1,"report":"{name}","period":{{"from":"2026-01-01","to":"2026-13-01"}}}}"#
                )),
                ["period.to"],
                "{name}"
            );
        }
        assert_eq!(
            fields(
                r#"{"format":1,"report":"ticket_volume","period":{"from":"2026-01-01"},"bucket":7}"#
            ),
            ["period.to", "bucket"]
        );
    }
}
