//! SVG charts of report rows, drawn by [plotters](https://docs.rs/plotters) with its SVG
//! backend: bar (one bar per row and value, side by side), stacked bar, line and funnel,
//! each with axes, category labels, a caption and a legend.
//!
//! plotters is built without its font features (no system fonts, nothing to load): the
//! SVG backend writes text as `<text>` elements the viewer lays out, and plotters sizes
//! label areas from an estimate of the text width.
//!
//! A chart is drawn from [`ChartData`]: category labels and one or more numeric series
//! of the same length. Values are `f64` for drawing only; the exact figures stay in the
//! report rows.

use crmkit_core::{Error, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// How a widget's rows are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// Vertical bars, one per row and value, the values of a row side by side.
    Bar,
    /// Vertical bars, one per row, the values stacked (e.g. closed, commit, best case,
    /// pipeline of a forecast bucket).
    StackedBar,
    /// One line per value across the rows (trends by period).
    Line,
    /// Horizontal bars centred on one axis, the first row at the top, widths by the one
    /// value (a stage funnel).
    Funnel,
}

impl ChartKind {
    /// Every chart kind's JSON name.
    pub const NAMES: &'static [&'static str] = &["bar", "stacked_bar", "line", "funnel"];
}

/// What a chart shows: a label per category (a row) and series of values.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    /// The chart's caption.
    pub title: String,
    /// One label per category.
    pub labels: Vec<String>,
    /// The series, each with one value per label.
    pub series: Vec<Series>,
}

/// One named series of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// One value per label.
    pub values: Vec<f64>,
}

/// Chart size in pixels.
pub const WIDTH: u32 = 800;
/// Chart size in pixels.
pub const HEIGHT: u32 = 450;

/// Colours of the series, in order (repeated past the sixth series).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The colour of series `i` as `#rrggbb` (how it appears in the SVG's `fill`).
pub fn color_hex(i: usize) -> String {
    let RGBColor(r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02X}{g:02X}{b:02X}")
}

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_error<E: std::fmt::Debug>(e: E) -> Error {
    Error::storage(format!("chart drawing failed: {e:?}"))
}

/// The value range of the y axis: from 0 (or the lowest value, if negative) to the
/// highest, with headroom above for the legend of `series` series (about 16 pixels a
/// line in a plotting area of about 330), at least 10%; never empty.
fn value_range(lo: f64, hi: f64, series: usize) -> (f64, f64) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let legend = (16.0 * series as f64 + 24.0) / 330.0;
    let top = legend.max(0.1) / (1.0 - legend.max(0.1)).max(0.2);
    (
        if lo < 0.0 { lo - span * 0.1 } else { 0.0 },
        hi + span * top,
    )
}

/// Draws `data` as a `kind` chart; the SVG document as text.
///
/// A Validation error when the data is inconsistent (a series whose length is not the
/// number of labels, a value that is not finite, a funnel with more than one series or
/// a negative value).
pub fn render(kind: ChartKind, data: &ChartData) -> Result<String> {
    check(kind, data)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        match kind {
            ChartKind::Bar => bars(&root, data, false)?,
            ChartKind::StackedBar => bars(&root, data, true)?,
            ChartKind::Line => lines(&root, data)?,
            ChartKind::Funnel => funnel(&root, data)?,
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn check(kind: ChartKind, data: &ChartData) -> Result<()> {
    let n = data.labels.len();
    for (i, s) in data.series.iter().enumerate() {
        if s.values.len() != n {
            return Err(Error::validation(
                format!("series[{i}]"),
                format!("has {} values for {n} labels", s.values.len()),
            ));
        }
        if s.values.iter().any(|v| !v.is_finite()) {
            return Err(Error::validation(
                format!("series[{i}]"),
                "has a value that is not a finite number",
            ));
        }
    }
    if kind == ChartKind::Funnel {
        if data.series.len() != 1 {
            return Err(Error::validation(
                "series",
                "a funnel chart draws exactly one series",
            ));
        }
        if data.series[0].values.iter().any(|v| *v < 0.0) {
            return Err(Error::validation(
                "series[0]",
                "a funnel chart draws no negative values",
            ));
        }
    }
    Ok(())
}

/// `count` segments of a category axis (plotters' segmented range includes its end).
fn segments(count: i32) -> std::ops::Range<i32> {
    0..(count - 1).max(0)
}

/// An axis value: whole numbers without decimals, others with two.
fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The label of a segment of a category axis.
fn segment_label(labels: &[String], v: &SegmentValue<i32>, per: i32, at: i32) -> String {
    match v {
        SegmentValue::CenterOf(j) if *j >= 0 && j % per == at => {
            labels.get((j / per) as usize).cloned().unwrap_or_default()
        }
        _ => String::new(),
    }
}

fn legend_box(c: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled())
}

fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(at)
        .draw()
        .map_err(draw_error)
}

fn bars(root: &Area<'_>, data: &ChartData, stacked: bool) -> Result<()> {
    let n = data.labels.len() as i32;
    let k = data.series.len().max(1) as i32;
    // Side by side, each category takes k segments and one for the gap; stacked, one.
    let per = if stacked { 1 } else { k + 1 };
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for i in 0..data.labels.len() {
        if stacked {
            let (neg, pos) = data.series.iter().fold((0.0, 0.0), |(neg, pos), s| {
                let v = s.values[i];
                if v < 0.0 {
                    (neg + v, pos)
                } else {
                    (neg, pos + v)
                }
            });
            lo = lo.min(neg);
            hi = hi.max(pos);
        } else {
            for s in &data.series {
                lo = lo.min(s.values[i]);
                hi = hi.max(s.values[i]);
            }
        }
    }
    let (y0, y1) = value_range(lo, hi, data.series.len());
    let mut chart = ChartBuilder::on(root)
        .caption(&data.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(segments(n * per).into_segmented(), y0..y1)
        .map_err(draw_error)?;
    let labels = &data.labels;
    // The label goes under the middle segment of its category's group.
    let at = if stacked { 0 } else { (k - 1) / 2 };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels((n * per).max(1) as usize)
        .x_label_formatter(&|v| segment_label(labels, v, per, at))
        .y_label_formatter(&|v| number(*v))
        .draw()
        .map_err(draw_error)?;
    let mut neg = vec![0.0f64; labels.len()];
    let mut pos = vec![0.0f64; labels.len()];
    for (s_i, s) in data.series.iter().enumerate() {
        let c = color(s_i);
        let rects = s.values.iter().enumerate().map(|(i, &v)| {
            let i32i = i as i32;
            let (x, base, top) = if stacked {
                let acc = if v < 0.0 { &mut neg[i] } else { &mut pos[i] };
                let base = *acc;
                *acc += v;
                (i32i, base, *acc)
            } else {
                (i32i * per + s_i as i32, 0.0, v)
            };
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(x), base),
                    (SegmentValue::Exact(x + 1), top),
                ],
                c.filled(),
            );
            r.set_margin(0, 0, 2, 2);
            r
        });
        let rects: Vec<_> = rects.collect();
        chart
            .draw_series(rects)
            .map_err(draw_error)?
            .label(&s.name)
            .legend(legend_box(c));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn lines(root: &Area<'_>, data: &ChartData) -> Result<()> {
    let n = data.labels.len() as i32;
    let all = data.series.iter().flat_map(|s| s.values.iter().copied());
    let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y0, y1) = value_range(lo, hi, data.series.len());
    let mut chart = ChartBuilder::on(root)
        .caption(&data.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(segments(n).into_segmented(), y0..y1)
        .map_err(draw_error)?;
    let labels = &data.labels;
    chart
        .configure_mesh()
        .x_labels(n.max(1) as usize)
        .x_label_formatter(&|v| segment_label(labels, v, 1, 0))
        .y_label_formatter(&|v| number(*v))
        .draw()
        .map_err(draw_error)?;
    for (s_i, s) in data.series.iter().enumerate() {
        let c = color(s_i);
        let points: Vec<_> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, &v)| (SegmentValue::CenterOf(i as i32), v))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(draw_error)?
            .label(&s.name)
            .legend(legend_box(c));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(draw_error)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn funnel(root: &Area<'_>, data: &ChartData) -> Result<()> {
    let n = data.labels.len() as i32;
    let s = &data.series[0];
    let hi = s.values.iter().copied().fold(0.0f64, f64::max);
    let half = if hi > 0.0 { hi / 2.0 * 1.05 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .caption(&data.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(140)
        .build_cartesian_2d(-half..half, segments(n).into_segmented())
        .map_err(draw_error)?;
    let labels = &data.labels;
    // The first row at the top: segment j shows row n - 1 - j.
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n.max(1) as usize)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(j) if *j >= 0 && *j < n => labels[(n - 1 - j) as usize].clone(),
            _ => String::new(),
        })
        .x_label_formatter(&|x| number(x.abs() * 2.0))
        .draw()
        .map_err(draw_error)?;
    let c = color(0);
    let rects: Vec<_> = s
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let j = n - 1 - i as i32;
            let mut r = Rectangle::new(
                [
                    (-v / 2.0, SegmentValue::Exact(j)),
                    (v / 2.0, SegmentValue::Exact(j + 1)),
                ],
                c.filled(),
            );
            r.set_margin(3, 3, 0, 0);
            r
        })
        .collect();
    chart
        .draw_series(rects)
        .map_err(draw_error)?
        .label(&s.name)
        .legend(legend_box(c));
    // The narrowest bar is at the bottom: the legend goes there.
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(labels: &[&str], series: &[(&str, &[f64])]) -> ChartData {
        ChartData {
            title: "Pipeline Q1".into(),
            labels: labels.iter().map(|s| (*s).to_owned()).collect(),
            series: series
                .iter()
                .map(|(n, v)| Series {
                    name: (*n).to_owned(),
                    values: v.to_vec(),
                })
                .collect(),
        }
    }

    /// The SVG parsed: its `<rect>` fills (lower case) and its texts.
    fn parse(svg: &str) -> (Vec<String>, Vec<String>) {
        let doc = roxmltree::Document::parse(svg).expect("the chart is well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("width"), Some("800"));
        let rects = root
            .descendants()
            .filter(|n| n.has_tag_name("rect"))
            .filter_map(|n| n.attribute("fill").map(str::to_ascii_lowercase))
            .collect();
        let texts = root
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
            .filter(|t| !t.is_empty())
            .collect();
        (rects, texts)
    }

    fn count(fills: &[String], series: usize) -> usize {
        let c = color_hex(series).to_ascii_lowercase();
        fills.iter().filter(|f| **f == c).count()
    }

    #[test]
    fn bars_one_per_row_and_value_with_labels_and_legend() {
        let d = data(
            &["Lead", "Qualified", "Proposal"],
            &[
                ("amount", &[10.0, 20.5, 0.0]),
                ("weighted", &[1.0, 8.2, 0.0]),
            ],
        );
        for kind in [ChartKind::Bar, ChartKind::StackedBar] {
            let (fills, texts) = parse(&render(kind, &d).expect("renders"));
            // One bar per row and series, plus the series' legend box.
            assert_eq!(count(&fills, 0), 3 + 1, "{kind:?}");
            assert_eq!(count(&fills, 1), 3 + 1, "{kind:?}");
            for t in [
                "Pipeline Q1",
                "Lead",
                "Qualified",
                "Proposal",
                "amount",
                "weighted",
            ] {
                assert!(texts.iter().any(|x| x == t), "{kind:?}: {t} in {texts:?}");
            }
        }
    }

    #[test]
    fn lines_and_funnels() {
        let d = data(&["2026-01", "2026-02"], &[("won", &[3.0, 5.0])]);
        let svg = render(ChartKind::Line, &d).expect("renders");
        let doc = roxmltree::Document::parse(&svg).expect("xml");
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count();
        assert!(lines >= 1, "a line: {svg}");
        let circles = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        assert_eq!(circles, 2, "a point per row");
        let (_, texts) = parse(&svg);
        assert!(texts.iter().any(|t| t == "2026-01") && texts.iter().any(|t| t == "2026-02"));

        let f = data(&["Lead", "Won"], &[("deals", &[10.0, 4.0])]);
        let (fills, texts) = parse(&render(ChartKind::Funnel, &f).expect("renders"));
        assert_eq!(count(&fills, 0), 2 + 1);
        assert!(texts.iter().any(|t| t == "Lead") && texts.iter().any(|t| t == "Won"));
    }

    #[test]
    fn empty_and_escaped() {
        let d = data(&[], &[("amount", &[])]);
        for kind in [
            ChartKind::Bar,
            ChartKind::StackedBar,
            ChartKind::Line,
            ChartKind::Funnel,
        ] {
            let (fills, _) = parse(&render(kind, &d).expect("renders"));
            assert_eq!(count(&fills, 0), 1, "{kind:?}: only the legend box");
        }
        let d = data(&["<b>&\"x\""], &[("a<b", &[1.0])]);
        let (_, texts) = parse(&render(ChartKind::Bar, &d).expect("renders"));
        assert!(texts.iter().any(|t| t == "<b>&\"x\""), "{texts:?}");
        assert!(texts.iter().any(|t| t == "a<b"));
    }

    #[test]
    fn bad_data_is_refused() {
        let d = data(&["a", "b"], &[("x", &[1.0])]);
        let e = render(ChartKind::Bar, &d).expect_err("length");
        assert!(e.validation_errors().expect("validation").has("series[0]"));
        let d = data(&["a"], &[("x", &[f64::NAN])]);
        assert!(render(ChartKind::Line, &d).is_err());
        let d = data(&["a"], &[("x", &[1.0]), ("y", &[1.0])]);
        let e = render(ChartKind::Funnel, &d).expect_err("two series");
        assert!(e.validation_errors().expect("validation").has("series"));
        let d = data(&["a"], &[("x", &[-1.0])]);
        assert!(render(ChartKind::Funnel, &d).is_err());
    }
}
