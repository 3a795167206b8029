//! Dashboards: a serializable list of widgets, each a report definition with a chart.
//!
//! ```json
//! {"format": 1, "name": "Sales Monday",
//!  "widgets": [
//!    {"title": "Forecast by quarter", "chart": "stacked_bar",
//!     "report": {"format": 1, "report": "forecast", "bucket": "quarter",
//!                "period": {"from": "2026-01-01", "to": "2026-12-31"}}},
//!    {"title": "Open pipeline by owner", "chart": "stacked_bar",
//!     "report": {"format": 1, "report": "pipeline_by_stage", "by": "owner"},
//!     "label": "stage_name", "values": ["amount"], "series": "group"}]}
//! ```
//!
//! A widget names which fields of its report's rows it draws: `label` (one category per
//! row; `null` and a missing label read `(none)`), `values` (one series each, numbers or
//! decimal strings; a `null` value draws as 0) and optionally `series`, a field whose
//! distinct values become the series of the one value (a pivot: pipeline by stage with
//! one series per owner). Left out, they take the report's defaults ([`defaults`]). A
//! field is a dotted path into the row (`closed.amount`, `period.label`) and must be one
//! the report's rows have ([`row_fields`]).
//!
//! [`Dashboard::from_json`] refuses, as one Validation error naming every bad part by its
//! path (`widgets[1].values[0]`, `widgets[0].report.period.to`): malformed JSON, a missing
//! or unknown `format`, unknown members, an empty or overlong name or title, more than
//! [`MAX_WIDGETS`] widgets, an unknown chart kind, a bad report definition, an unknown
//! field, and a funnel or a pivot with other than one value.
//!
//! Rendering ([`crate::Analytics::render_dashboard`]) runs every widget's report as the
//! actor (so a Rep's dashboard shows only what the Rep can see), and gives each widget's
//! rows as JSON and its chart as an SVG document (see [`crate::chart`]).

use crmkit_core::{Error, Result, ValidationErrors};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::chart::{ChartData, ChartKind, Series};
use crate::report::{FORMAT, Report, ReportRows};

/// At most this many widgets on a dashboard.
pub const MAX_WIDGETS: usize = 50;
/// Longest name or title, in characters.
pub const MAX_TITLE: usize = 200;

/// A dashboard definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// Its name.
    pub name: String,
    /// Its widgets, in order.
    pub widgets: Vec<Widget>,
}

/// One widget: a report, its chart and the row fields the chart draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widget {
    /// Its caption.
    pub title: String,
    /// The report it shows.
    pub report: Report,
    /// How its rows are drawn.
    pub chart: ChartKind,
    /// The row field labelling each category (the report's default when `None`).
    pub label: Option<String>,
    /// The row fields drawn, one series each (the report's default when empty).
    pub values: Vec<String>,
    /// A row field whose distinct values become the series of the one value.
    pub series: Option<String>,
}

/// A rendered widget: the report's rows and the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedWidget {
    /// The widget's caption.
    pub title: String,
    /// Its chart kind.
    pub chart: ChartKind,
    /// The report's rows, as [`crate::Analytics::run`] returns them.
    pub rows: ReportRows,
    /// The chart, an SVG document.
    pub svg: String,
}

/// A rendered dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedDashboard {
    /// The dashboard's name.
    pub name: String,
    /// Its widgets, in order.
    pub widgets: Vec<RenderedWidget>,
}

/// The fields of a report's rows a widget may draw: the label fields and the numeric
/// ones (dotted paths). `None` for an unknown report name.
pub fn row_fields(report: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match report {
        "pipeline_by_stage" => (
            &["stage_name", "group", "pipeline", "stage"],
            &["count", "amount", "weighted"],
        ),
        "forecast" => (
            &["period.label"],
            &[
                "pipeline.count",
                "pipeline.amount",
                "best_case.count",
                "best_case.amount",
                "commit.count",
                "commit.amount",
                "closed.count",
                "closed.amount",
                "weighted",
            ],
        ),
        "win_rate" => (
            &["group"],
            &[
                "won",
                "lost",
                "won_value",
                "lost_value",
                "win_rate_by_count",
                "win_rate_by_value",
                "average_deal_size",
            ],
        ),
        "sales_cycle" => (
            &["group"],
            &["won", "average_seconds", "median_seconds", "p90_seconds"],
        ),
        "velocity" => (
            &[],
            &[
                "open_deals",
                "win_rate",
                "average_deal_size",
                "average_cycle_days",
                "per_day",
            ],
        ),
        "stage_funnel" => (
            &["stage_name", "pipeline", "stage"],
            &["reached", "conversion"],
        ),
        "time_in_stage" => (
            &["stage_name", "pipeline", "stage"],
            &[
                "stays",
                "average_seconds",
                "median_seconds",
                "p90_seconds",
                "still_in",
            ],
        ),
        "lost_reasons" => (&["name", "kind", "reason"], &["count", "value"]),
        "slipped_deals" => (&["group"], &["slips", "deals", "days", "average_days"]),
        "pipeline_waterfall" => (&["change"], &["count", "amount"]),
        "forecast_accuracy" => (
            &["owner"],
            &[
                "pipeline.count",
                "pipeline.amount",
                "best_case.count",
                "best_case.amount",
                "commit.count",
                "commit.amount",
                "weighted",
                "won.count",
                "won.amount",
                "accuracy",
            ],
        ),
        "activities_done" => (
            &["period.label", "owner"],
            &["tasks", "calls", "meetings", "emails", "total"],
        ),
        "overdue_tasks" => (&["owner"], &["open", "overdue"]),
        "follow_up_health" => (
            &["owner", "kind"],
            &["records", "no_next_step", "not_contacted"],
        ),
        "ticket_backlog" => (&["status", "priority"], &["count"]),
        "ticket_response_times" => (
            &[],
            &[
                "first_response.count",
                "first_response.total_minutes",
                "first_response.average",
                "resolution.count",
                "resolution.total_minutes",
                "resolution.average",
            ],
        ),
        "ticket_sla_outcomes" => (&["target", "policy_id"], &["achieved", "breached"]),
        "ticket_satisfaction" => (&[], &["count", "sum", "average"]),
        "ticket_volume" => (&["period.label"], &["created", "solved"]),
        "ticket_times" => (
            &[],
            &[
                "first_response.count",
                "first_response.median_minutes",
                "first_response.p90_minutes",
                "resolution.count",
                "resolution.median_minutes",
                "resolution.p90_minutes",
            ],
        ),
        "lead_funnel" => (
            &["source", "group"],
            &[
                "created",
                "new",
                "contacted",
                "nurturing",
                "qualified",
                "disqualified",
                "converted",
                "conversion_rate",
            ],
        ),
        "campaign_roi" => (
            &["name", "campaign"],
            &["cost", "revenue", "roi", "leads", "deals", "won"],
        ),
        _ => return None,
    })
}

/// A report's default label field (`None`: categories are numbered) and value fields.
pub fn defaults(report: &str) -> Option<(Option<&'static str>, &'static [&'static str])> {
    Some(match report {
        "pipeline_by_stage" => (Some("stage_name"), &["amount", "weighted"]),
        "forecast" => (
            Some("period.label"),
            &[
                "closed.amount",
                "commit.amount",
                "best_case.amount",
                "pipeline.amount",
            ],
        ),
        "win_rate" => (Some("group"), &["win_rate_by_count", "win_rate_by_value"]),
        "sales_cycle" => (Some("group"), &["median_seconds", "p90_seconds"]),
        "velocity" => (None, &["per_day"]),
        "stage_funnel" => (Some("stage_name"), &["reached"]),
        "time_in_stage" => (Some("stage_name"), &["median_seconds", "p90_seconds"]),
        "lost_reasons" => (Some("name"), &["count"]),
        "slipped_deals" => (Some("group"), &["slips"]),
        "pipeline_waterfall" => (Some("change"), &["amount"]),
        "forecast_accuracy" => (Some("owner"), &["weighted", "won.amount"]),
        "activities_done" => (Some("period.label"), &["total"]),
        "overdue_tasks" => (Some("owner"), &["overdue"]),
        "follow_up_health" => (Some("owner"), &["no_next_step", "not_contacted"]),
        "ticket_backlog" => (Some("status"), &["count"]),
        "ticket_response_times" => (None, &["first_response.average", "resolution.average"]),
        "ticket_sla_outcomes" => (Some("target"), &["achieved", "breached"]),
        "ticket_satisfaction" => (None, &["average"]),
        "ticket_volume" => (Some("period.label"), &["created", "solved"]),
        "ticket_times" => (
            None,
            &["first_response.median_minutes", "resolution.median_minutes"],
        ),
        "lead_funnel" => (Some("source"), &["created", "converted"]),
        "campaign_roi" => (Some("name"), &["cost", "revenue"]),
        _ => return None,
    })
}

/// A report's default pivot field (with its default values), for reports whose rows are
/// per period and owner.
pub fn default_series(report: &str) -> Option<&'static str> {
    match report {
        "activities_done" => Some("owner"),
        _ => None,
    }
}

impl Widget {
    /// A widget with the report's default fields.
    pub fn new(title: impl Into<String>, report: Report, chart: ChartKind) -> Widget {
        Widget {
            title: title.into(),
            report,
            chart,
            label: None,
            values: vec![],
            series: None,
        }
    }

    /// Draws `label` as the category of each row.
    pub fn label(mut self, label: impl Into<String>) -> Widget {
        self.label = Some(label.into());
        self
    }

    /// Draws these row fields, one series each.
    pub fn values<I: IntoIterator<Item = S>, S: Into<String>>(mut self, values: I) -> Widget {
        self.values = values.into_iter().map(Into::into).collect();
        self
    }

    /// Draws one series per distinct value of `field` (with one value field).
    pub fn series(mut self, field: impl Into<String>) -> Widget {
        self.series = Some(field.into());
        self
    }

    /// The label field drawn (explicit or the report's default).
    pub fn label_field(&self) -> Option<&str> {
        match &self.label {
            Some(l) => Some(l),
            None => defaults(self.report.name()).and_then(|(l, _)| l),
        }
    }

    /// The pivot field: explicit, or the report's default when the widget leaves its
    /// values to the report too (activities done: one series per owner).
    pub fn series_field(&self) -> Option<&str> {
        match &self.series {
            Some(s) => Some(s),
            None if self.values.is_empty() => default_series(self.report.name()),
            None => None,
        }
    }

    /// The value fields drawn (explicit or the report's default).
    pub fn value_fields(&self) -> Vec<&str> {
        if self.values.is_empty() {
            defaults(self.report.name())
                .map(|(_, v)| v.to_vec())
                .unwrap_or_default()
        } else {
            self.values.iter().map(String::as_str).collect()
        }
    }

    /// Every problem of the widget, by member name.
    fn check(&self, errs: &mut ValidationErrors) {
        check_title("title", &self.title, errs);
        let name = self.report.name();
        let Some((labels, numbers)) = row_fields(name) else {
            errs.push("report", format!("report {name:?} cannot be charted"));
            return;
        };
        if let Some(l) = &self.label
            && !labels.contains(&l.as_str())
            && !numbers.contains(&l.as_str())
        {
            errs.push(
                "label",
                format!(
                    "{l:?} is not a field of {name} rows; known: {}",
                    known(labels, numbers)
                ),
            );
        }
        for (i, v) in self.values.iter().enumerate() {
            if !numbers.contains(&v.as_str()) {
                errs.push(
                    format!("values[{i}]"),
                    format!(
                        "{v:?} is not a numeric field of {name} rows; known: {}",
                        numbers.join(", ")
                    ),
                );
            }
        }
        if let Some(s) = &self.series
            && !labels.contains(&s.as_str())
        {
            errs.push(
                "series",
                format!(
                    "{s:?} is not a label field of {name} rows; known: {}",
                    labels.join(", ")
                ),
            );
        }
        let drawn = self.value_fields().len();
        if self.series_field().is_some() && drawn != 1 {
            errs.push(
                "series",
                format!("a pivot draws exactly one value, not {drawn}"),
            );
        }
        if self.chart == ChartKind::Funnel && self.series_field().is_some() {
            errs.push("series", "a funnel draws one series; it cannot pivot");
        } else if self.chart == ChartKind::Funnel && drawn != 1 {
            errs.push(
                "values",
                format!("a funnel draws exactly one value, not {drawn}"),
            );
        }
    }

    /// The widget's chart data from its report's rows.
    ///
    /// A Validation error when a row lacks a drawn field, or a value field is neither a
    /// number, a decimal string nor null (rows of another report than the widget's).
    pub fn chart_data(&self, rows: &ReportRows) -> Result<ChartData> {
        let label_of = |row: &Value, i: usize| -> Result<String> {
            Ok(match self.label_field() {
                None => (i + 1).to_string(),
                Some(path) => match lookup(row, path) {
                    None => return Err(missing("label", path)),
                    Some(Value::Null) => "(none)".to_owned(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                },
            })
        };
        let values = self.value_fields();
        let number = |row: &Value, j: usize, path: &str| -> Result<f64> {
            match lookup(row, path) {
                None => Err(missing(&format!("values[{j}]"), path)),
                Some(Value::Null) => Ok(0.0),
                Some(Value::Number(n)) => n.as_f64().ok_or_else(|| not_number(j, path)),
                Some(Value::String(s)) => s.parse::<f64>().map_err(|_| not_number(j, path)),
                Some(_) => Err(not_number(j, path)),
            }
        };
        let mut data = ChartData {
            title: self.title.clone(),
            labels: vec![],
            series: vec![],
        };
        match self.series_field() {
            None => {
                data.series = values
                    .iter()
                    .map(|v| Series {
                        name: (*v).to_owned(),
                        values: vec![],
                    })
                    .collect();
                for (i, row) in rows.rows.iter().enumerate() {
                    data.labels.push(label_of(row, i)?);
                    for (j, path) in values.iter().enumerate() {
                        let v = number(row, j, path)?;
                        data.series[j].values.push(v);
                    }
                }
            }
            Some(series_field) => {
                let path = values.first().copied().unwrap_or_default();
                for (i, row) in rows.rows.iter().enumerate() {
                    let label = label_of(row, i)?;
                    let name = match lookup(row, series_field) {
                        None => return Err(missing("series", series_field)),
                        Some(Value::Null) => "(none)".to_owned(),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    };
                    let li = match data.labels.iter().position(|l| *l == label) {
                        Some(li) => li,
                        None => {
                            data.labels.push(label);
                            for s in &mut data.series {
                                s.values.push(0.0);
                            }
                            data.labels.len() - 1
                        }
                    };
                    let si = match data.series.iter().position(|s| s.name == name) {
                        Some(si) => si,
                        None => {
                            data.series.push(Series {
                                name,
                                values: vec![0.0; data.labels.len()],
                            });
                            data.series.len() - 1
                        }
                    };
                    data.series[si].values[li] += number(row, 0, path)?;
                }
            }
        }
        Ok(data)
    }
}

fn known(labels: &[&str], numbers: &[&str]) -> String {
    labels
        .iter()
        .chain(numbers)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing(field: &str, path: &str) -> Error {
    Error::validation(
        field,
        format!("{path:?} is not a field of the report's rows"),
    )
}

fn not_number(j: usize, path: &str) -> Error {
    Error::validation(
        format!("values[{j}]"),
        format!("{path:?} is not a number in the report's rows"),
    )
}

/// The member at a dotted path of a JSON object (`null` when a step on the way is
/// `null`: the forecast's row without a period has `period.label` null).
fn lookup<'a>(row: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(row, |v, part| match v {
        Value::Null => Some(v),
        _ => v.get(part),
    })
}

fn check_title(field: &str, text: &str, errs: &mut ValidationErrors) {
    let n = text.trim().chars().count();
    if n == 0 {
        errs.push(field, "must not be empty");
    } else if text.chars().count() > MAX_TITLE {
        errs.push(field, format!("must be at most {MAX_TITLE} characters"));
    }
}

impl Dashboard {
    /// A dashboard named `name` with no widgets yet.
    pub fn new(name: impl Into<String>) -> Dashboard {
        Dashboard {
            name: name.into(),
            widgets: vec![],
        }
    }

    /// Adds a widget.
    pub fn widget(mut self, w: Widget) -> Dashboard {
        self.widgets.push(w);
        self
    }

    /// Every problem of the definition, as one Validation error naming each part
    /// (`name`, `widgets`, `widgets[i].values[j]`, ...).
    pub fn validate(&self) -> Result<()> {
        let mut errs = ValidationErrors::new();
        let indexed: Vec<_> = self.widgets.iter().enumerate().collect();
        check_parts(&self.name, self.widgets.len(), &indexed, &mut errs);
        errs.into_result()
    }

    /// The definition as JSON, with `"format": 1` (each widget's report as its own
    /// definition, with its format).
    pub fn to_json(&self) -> Value {
        let widgets: Vec<Value> = self
            .widgets
            .iter()
            .map(|w| {
                let mut m = Map::new();
                m.insert("title".into(), Value::from(w.title.clone()));
                m.insert(
                    "chart".into(),
                    serde_json::to_value(w.chart).unwrap_or(Value::Null),
                );
                m.insert("report".into(), w.report.to_json());
                if let Some(l) = &w.label {
                    m.insert("label".into(), Value::from(l.clone()));
                }
                if !w.values.is_empty() {
                    m.insert("values".into(), Value::from(w.values.clone()));
                }
                if let Some(s) = &w.series {
                    m.insert("series".into(), Value::from(s.clone()));
                }
                Value::Object(m)
            })
            .collect();
        serde_json::json!({"format": FORMAT, "name": self.name, "widgets": widgets})
    }

    /// Reads a definition (see the module docs for the errors).
    pub fn from_json(text: &str) -> Result<Dashboard> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::validation("dashboard", format!("is not JSON: {e}")))?;
        Dashboard::from_value(&v)
    }

    /// Reads a definition from a JSON value.
    pub fn from_value(v: &Value) -> Result<Dashboard> {
        let Value::Object(m) = v else {
            return Err(Error::validation("dashboard", "must be a JSON object"));
        };
        let mut errs = ValidationErrors::new();
        match m.get("format") {
            None => errs.push("format", "is required"),
            Some(Value::Number(n)) if n.as_u64() == Some(FORMAT) => {}
            Some(other) => errs.push(
                "format",
                format!("unknown dashboard format {other}; this version reads 1"),
            ),
        }
        unknown_members(m, &["format", "name", "widgets"], "", &mut errs);
        let name = match m.get("name") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                errs.push("name", "is required: a string");
                String::new()
            }
        };
        let mut widgets = vec![];
        let mut count = 0;
        match m.get("widgets") {
            Some(Value::Array(ws)) => {
                count = ws.len();
                for (i, w) in ws.iter().enumerate() {
                    let at = format!("widgets[{i}]");
                    if let Some(w) = widget_from(w, &at, &mut errs) {
                        widgets.push((i, w));
                    }
                }
            }
            _ => errs.push("widgets", "is required: an array of widgets"),
        }
        let indexed: Vec<_> = widgets.iter().map(|(i, w)| (*i, w)).collect();
        check_parts(&name, count, &indexed, &mut errs);
        errs.into_result()?;
        Ok(Dashboard {
            name,
            widgets: widgets.into_iter().map(|(_, w)| w).collect(),
        })
    }
}

impl Serialize for Dashboard {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// The checks of a definition's name and (parsed) widgets, by their positions.
fn check_parts(
    name: &str,
    count: usize,
    widgets: &[(usize, &Widget)],
    errs: &mut ValidationErrors,
) {
    check_title("name", name, errs);
    if count > MAX_WIDGETS {
        errs.push(
            "widgets",
            format!("at most {MAX_WIDGETS} widgets, not {count}"),
        );
    }
    for (i, w) in widgets {
        let mut we = ValidationErrors::new();
        w.check(&mut we);
        errs.extend_prefixed(&format!("widgets[{i}]."), we);
    }
}

fn unknown_members(m: &Map<String, Value>, known: &[&str], at: &str, errs: &mut ValidationErrors) {
    for k in m.keys() {
        if !known.contains(&k.as_str()) {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            errs.push(path, "is not a member");
        }
    }
}

fn widget_from(v: &Value, at: &str, errs: &mut ValidationErrors) -> Option<Widget> {
    let Value::Object(m) = v else {
        errs.push(at, "must be an object");
        return None;
    };
    unknown_members(
        m,
        &["title", "chart", "report", "label", "values", "series"],
        at,
        errs,
    );
    let title = match m.get("title") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => {
            errs.push(format!("{at}.title"), "is required: a string");
            None
        }
    };
    let chart = match m.get("chart") {
        Some(c) => match serde_json::from_value::<ChartKind>(c.clone()) {
            Ok(c) => Some(c),
            Err(_) => {
                errs.push(
                    format!("{at}.chart"),
                    format!("must be one of {}", ChartKind::NAMES.join(", ")),
                );
                None
            }
        },
        None => {
            errs.push(format!("{at}.chart"), "is required");
            None
        }
    };
    let report = match m.get("report") {
        Some(r) => match Report::from_value(r) {
            Ok(r) => Some(r),
            Err(e) => {
                match e.validation_errors() {
                    Some(ve) => errs.extend_prefixed(&format!("{at}.report."), ve.clone()),
                    None => errs.push(format!("{at}.report"), e.to_string()),
                }
                None
            }
        },
        None => {
            errs.push(format!("{at}.report"), "is required: a report definition");
            None
        }
    };
    let text = |k: &str, errs: &mut ValidationErrors| match m.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errs.push(format!("{at}.{k}"), "must be a field name or null");
            None
        }
    };
    let label = text("label", errs);
    let series = text("series", errs);
    let values = match m.get("values") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(vs)) => {
            let mut out = vec![];
            for (j, v) in vs.iter().enumerate() {
                match v {
                    Value::String(s) => out.push(s.clone()),
                    _ => errs.push(format!("{at}.values[{j}]"), "must be a field name"),
                }
            }
            out
        }
        Some(_) => {
            errs.push(format!("{at}.values"), "must be an array of field names");
            vec![]
        }
    };
    Some(Widget {
        title: title?,
        report: report?,
        chart: chart?,
        label,
        values,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::{Bucket, Period};
    use crate::report::REPORT_NAMES;
    use crate::sales::{Forecast, PipelineByStage, WinRate};

    fn period() -> Period {
        Period::new(
            "2026-01-01".parse().expect("date"),
            "2026-12-31".parse().expect("date"),
        )
        .expect("period")
    }

    fn sample() -> Dashboard {
        Dashboard::new("Monday")
            .widget(Widget::new(
                "Forecast",
                Report::Forecast(Forecast {
                    period: period(),
                    bucket: Bucket::Quarter,
                    pipeline: None,
                    rate_date: None,
                    best_case_at: 50,
                    commit_at: 90,
                }),
                ChartKind::StackedBar,
            ))
            .widget(
                Widget::new(
                    "Pipeline by owner",
                    Report::PipelineByStage(PipelineByStage {
                        pipeline: None,
                        by: Some(crate::Dim::Owner),
                        rate_date: None,
                    }),
                    ChartKind::StackedBar,
                )
                .label("stage_name")
                .values(["amount"])
                .series("group"),
            )
    }

    fn fields(text: &str) -> Vec<String> {
        let e = Dashboard::from_json(text).expect_err("invalid");
        e.validation_errors()
            .expect("validation")
            .errors
            .iter()
            .map(|f| f.field.clone())
            .collect()
    }

    #[test]
    fn every_report_can_be_charted() {
        for name in REPORT_NAMES {
            let (labels, numbers) = row_fields(name).expect("row fields");
            let (label, values) = defaults(name).expect("defaults");
            assert!(label.is_none_or(|l| labels.contains(&l)), "{name}");
            assert!(!values.is_empty(), "{name}");
            assert!(values.iter().all(|v| numbers.contains(v)), "{name}");
            if let Some(series) = default_series(name) {
                assert!(labels.contains(&series) && values.len() == 1, "{name}");
            }
        }
    }

    #[test]
    fn definitions_round_trip() {
        let d = sample();
        d.validate().expect("valid");
        let json = d.to_json();
        assert_eq!(json["format"], 1);
        assert_eq!(json["widgets"][1]["series"], "group");
        assert_eq!(json["widgets"][0]["report"]["format"], 1);
        assert_eq!(Dashboard::from_json(&json.to_string()).expect("parses"), d);
        assert_eq!(serde_json::to_value(&d).expect("serialises"), json);
    }

    #[test]
    fn bad_parts_are_named() {
        assert_eq!(fields("[1]"), ["dashboard"]);
        assert_eq!(fields(r#"{"name":"x","widgets":[]}"#), ["format"]);
        assert_eq!(
            fields(r#"{"format":1,"name":" ","widgets":[],"colour":"red"}"#),
            ["colour", "name"]
        );
        let win =
            r#"{"format":1,"report":"win_rate","period":{"from":"2026-01-01","to":"2026-03-31"}}"#;
        assert_eq!(
            fields(&format!(
                r#"{{"format":1,"name":"d","widgets":[{{"title":"t","chart":"pie","report":{win}}}]}}"#
            )),
            ["widgets[0].chart"]
        );
        assert_eq!(
            fields(&format!(
                r#"{{"format":1,"name":"d","widgets":[{{"title":"t","chart":"bar","report":{win},"values":["won","nope"],"label":"x"}}]}}"#
            )),
            ["widgets[0].label", "widgets[0].values[1]"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"name":"d","widgets":[{"title":"t","chart":"bar","report":{"format":1,"report":"win_rate","period":{"from":"2026-01-01"}}}]}"#
            ),
            ["widgets[0].report.period.to"]
        );
        assert_eq!(
            fields(&format!(
                r#"{{"format":1,"name":"d","widgets":[{{"title":"t","chart":"funnel","report":{win}}}]}}"#
            )),
            ["widgets[0].values"]
        );
        assert_eq!(
            fields(&format!(
                r#"{{"format":1,"name":"d","widgets":[{{"title":"","chart":"bar","report":{win},"series":"group"}}]}}"#
            )),
            ["widgets[0].title", "widgets[0].series"]
        );
        let many: Vec<String> = (0..=MAX_WIDGETS)
            .map(|_| format!(r#"{{"title":"t","chart":"bar","report":{win}}}"#))
            .collect();
        assert_eq!(
            fields(&format!(
                r#"{{"format":1,"name":"d","widgets":[{}]}}"#,
                many.join(",")
            )),
            ["widgets"]
        );
    }

    #[test]
    fn chart_data_pivots_and_reads_decimals() {
        let d = sample();
        let rows = ReportRows {
            report: "pipeline_by_stage".into(),
            currency: Some("EUR".into()),
            rows: vec![
                serde_json::json!({"stage_name": "Lead", "group": "ann", "amount": "10.50"}),
                serde_json::json!({"stage_name": "Lead", "group": "bob", "amount": "2"}),
                serde_json::json!({"stage_name": "Won", "group": "bob", "amount": "1"}),
                serde_json::json!({"stage_name": "Won", "group": null, "amount": null}),
            ],
        };
        let data = d.widgets[1].chart_data(&rows).expect("data");
        assert_eq!(data.labels, ["Lead", "Won"]);
        let names: Vec<_> = data.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ann", "bob", "(none)"]);
        assert_eq!(data.series[0].values, [10.5, 0.0]);
        assert_eq!(data.series[1].values, [2.0, 1.0]);
        assert_eq!(data.series[2].values, [0.0, 0.0]);

        let bad = ReportRows {
            rows: vec![serde_json::json!({"stage_name": "Lead", "group": "a", "amount": {"x": 1}})],
            ..rows.clone()
        };
        let e = d.widgets[1].chart_data(&bad).expect_err("not a number");
        assert!(e.validation_errors().expect("validation").has("values[0]"));
        let other = ReportRows {
            rows: vec![serde_json::json!({"stage_name": "Lead", "amount": "1"})],
            ..rows
        };
        let e = d.widgets[1].chart_data(&other).expect_err("no group field");
        assert!(e.validation_errors().expect("validation").has("series"));
    }

    #[test]
    fn win_rate_defaults() {
        let w = Widget::new(
            "Win rate",
            Report::WinRate(WinRate {
                period: period(),
                by: None,
                pipeline: None,
                rate_date: None,
            }),
            ChartKind::Bar,
        );
        assert_eq!(w.label_field(), Some("group"));
        assert_eq!(w.value_fields(), ["win_rate_by_count", "win_rate_by_value"]);
    }
}
