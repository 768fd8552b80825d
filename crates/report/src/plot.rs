//! Line charts drawn with plotters' SVG backend into a String. Without the `ttf` feature plotters
//! measures text with its naive estimator and the SVG carries plain `<text>` elements, so no font
//! file is read; the browser picks the font.
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{ReportError, Result};
use crate::run::{Marker, RunData};

/// Picture size and layout (pixels). The plotting area covers pixels x0 = MARGIN + Y_LABEL_AREA to
/// x1 = WIDTH - MARGIN - 1, and plotters maps step `s` of the range `0..x_max` to
/// `x0 + floor((x1 - x0) * s / x_max)`.
pub(crate) const WIDTH: u32 = 920;
pub(crate) const HEIGHT: u32 = 440;
/// Height of the title band above the chart.
pub(crate) const TITLE_HEIGHT: u32 = 40;
pub(crate) const MARGIN: u32 = 20;
/// Room above the plot for the marker labels (two rows).
pub(crate) const MARGIN_TOP: u32 = 44;
pub(crate) const Y_LABEL_AREA: u32 = 80;
pub(crate) const X_LABEL_AREA: u32 = 50;

pub(crate) const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
/// The smoothed training loss: a darker blue, drawn over the raw one.
pub(crate) const SMOOTH_COLOR: RGBColor = RGBColor(8, 48, 107);
pub(crate) const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
pub(crate) const BEST_COLOR: RGBColor = RGBColor(44, 160, 44);
pub(crate) const STOP_COLOR: RGBColor = RGBColor(214, 39, 40);
const LR_COLOR: RGBColor = RGBColor(148, 103, 189);
const TPS_COLOR: RGBColor = RGBColor(140, 86, 75);
const FONT: &str = "sans-serif";

/// One line of a chart.
pub(crate) struct Series {
    pub label: String,
    pub color: RGBColor,
    pub stroke: u32,
    pub points: Vec<(f64, f64)>,
    /// Draw a dot at each point (sparse series such as evaluations).
    pub dots: bool,
}

/// A chart: its lines and vertical markers with labels.
pub(crate) struct Chart {
    pub caption: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    pub markers: Vec<(Marker, RGBColor)>,
    pub legend: bool,
}

/// Tick label with the decimals that tell ticks apart: plotters puts about ten ticks on an axis,
/// so they are `span / 10` apart; scientific notation once that is below 0.001.
pub(crate) fn fmt_tick(v: f64, span: f64) -> String {
    let step = span / 10.0;
    if v == 0.0 || v.abs() < step * 1e-6 {
        return "0".into();
    }
    let step_exp = step.log10().floor();
    if step_exp < -3.0 {
        let decimals = (v.abs().log10().floor() - step_exp).clamp(1.0, 4.0) as usize;
        return format!("{v:.decimals$e}");
    }
    let decimals = (-step_exp).clamp(0.0, 4.0) as usize;
    format!("{v:.decimals$}")
}

/// `lo..hi` of the values, padded by 5% of the span; a flat line (a constant learning rate) by
/// 10% of its value, or by 1 at zero.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    (lo - pad, hi + pad)
}

/// Steps run from 0 to the largest step of any line or marker.
pub(crate) fn x_max(chart: &Chart) -> f64 {
    let steps =
        chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(chart.markers.iter().map(|m| m.0.step));
    let max = steps.fold(0.0_f64, f64::max);
    if max > 0.0 {
        max
    } else {
        1.0
    }
}

fn plot_err<E: std::fmt::Display>(chart: &Chart) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Plot { chart: chart.caption.clone(), reason: e.to_string() }
}

/// Draws `chart` as a standalone SVG document.
pub(crate) fn render(chart: &Chart) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(chart, &root)?;
        root.present().map_err(plot_err(chart))?;
    }
    Ok(svg)
}

fn draw<DB: DrawingBackend>(chart: &Chart, root: &DrawingArea<DB, Shift>) -> Result<()> {
    let err = plot_err(chart);
    root.fill(&WHITE).map_err(&err)?;
    // Title band on top, then the marker-label band (MARGIN_TOP), then the plot.
    let (title, body) = root.split_vertically(TITLE_HEIGHT);
    let title_style = TextStyle::from((FONT, 26).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    title
        .draw(&Text::new(chart.caption.as_str(), (WIDTH as i32 / 2, TITLE_HEIGHT as i32 / 2), title_style))
        .map_err(&err)?;
    let (y_lo, y_hi) = y_range(chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let span = y_hi - y_lo;
    let mut ctx = ChartBuilder::on(&body)
        .margin(MARGIN)
        .margin_top(if chart.markers.is_empty() { MARGIN } else { MARGIN_TOP })
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(0.0..x_max(chart), y_lo..y_hi)
        .map_err(&err)?;
    let step_fmt = |v: &f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") };
    ctx.configure_mesh()
        .x_desc("step")
        .y_desc(chart.y_desc.as_str())
        .x_label_formatter(&step_fmt)
        .y_label_formatter(&|v| fmt_tick(*v, span))
        .axis_desc_style((FONT, 19))
        .label_style((FONT, 17))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(&err)?;
    for s in chart.series.iter().filter(|s| !s.points.is_empty()) {
        let style = ShapeStyle { color: s.color.to_rgba(), filled: false, stroke_width: s.stroke };
        let color = s.color;
        ctx.draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(&err)?
            .label(s.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 18, y + 4)], color.filled()));
        if s.dots {
            ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, s.color.filled()))).map_err(&err)?;
        }
    }
    let (xr, yr) = ctx.plotting_area().get_pixel_range();
    for (row, (m, color)) in chart.markers.iter().enumerate() {
        let line = PathElement::new(vec![(m.step, y_lo), (m.step, y_hi)], color.stroke_width(2));
        ctx.draw_series(std::iter::once(line)).map_err(&err)?;
        // Labels sit in the band above the plot, one row each, turning left near the right edge.
        let (px, _) = ctx.backend_coord(&(m.step, y_hi));
        let y = yr.start - 4 - 20 * (chart.markers.len() - 1 - row) as i32;
        let (x, h) = if px > xr.end - 260 { (px - 4, HPos::Right) } else { (px + 4, HPos::Left) };
        let style = TextStyle::from((FONT, 18).into_font()).color(color).pos(Pos::new(h, VPos::Bottom));
        root.draw(&Text::new(m.label.as_str(), (x, y), style)).map_err(&err)?;
    }
    // Losses fall, so the lower left of their chart is usually empty.
    if chart.legend {
        ctx.configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FONT, 18))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(160, 160, 160))
            .draw()
            .map_err(&err)?;
    }
    Ok(())
}

fn points(run: &RunData, f: impl Fn(&crate::run::TrainPoint) -> Option<f64>) -> Vec<(f64, f64)> {
    run.train.iter().filter_map(|p| f(p).map(|v| (p.step, v))).collect()
}

/// Training loss per step (raw, and smoothed over it) and validation loss per evaluation, with
/// best/stop markers.
pub(crate) fn loss_chart(run: &RunData) -> Chart {
    let val = run.val_points();
    let mut series = vec![Series {
        label: "training loss".into(),
        color: TRAIN_COLOR,
        stroke: 1,
        points: points(run, |p| p.loss),
        dots: false,
    }];
    let (label, smoothed) = run.smoothed_train_loss();
    if !smoothed.is_empty() {
        series.push(Series { label, color: SMOOTH_COLOR, stroke: 2, points: smoothed, dots: false });
    }
    if !val.is_empty() {
        series.push(Series { label: "validation loss".into(), color: VAL_COLOR, stroke: 2, points: val, dots: true });
    }
    let colors = [BEST_COLOR, STOP_COLOR];
    let markers = run.markers().into_iter().zip(colors).collect();
    Chart { caption: "Loss".into(), y_desc: "loss (nats/token)".into(), series, markers, legend: true }
}

/// One train-line field against step, as a single-series chart.
pub(crate) fn field_chart(run: &RunData, caption: &str, y_desc: &str, which: Field) -> Chart {
    let (color, pts) = match which {
        Field::Lr => (LR_COLOR, points(run, |p| p.lr)),
        Field::TokensPerS => (TPS_COLOR, points(run, |p| p.tokens_per_s)),
    };
    let series = vec![Series { label: y_desc.into(), color, stroke: 2, points: pts, dots: false }];
    // A single line is named by its axis.
    Chart { caption: caption.into(), y_desc: y_desc.into(), series, markers: Vec::new(), legend: false }
}

/// The forgetting guard's relative rise of each general-domain set against the base model, in
/// percent, per evaluation (`general_<set>_rise` of the eval lines; empty for runs without
/// `[forgetting]`).
pub(crate) fn general_chart(run: &RunData) -> Chart {
    const COLORS: [RGBColor; 4] = [VAL_COLOR, LR_COLOR, TPS_COLOR, TRAIN_COLOR];
    let mut sets: Vec<String> = Vec::new();
    for e in &run.evals {
        for k in e.line.general().keys() {
            if let Some(set) = k.strip_prefix("general_").and_then(|k| k.strip_suffix("_rise")) {
                if !set.is_empty() && !sets.iter().any(|s| s == set) {
                    sets.push(set.to_string());
                }
            }
        }
    }
    let series = sets
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let key = format!("general_{set}_rise");
            let points =
                run.evals.iter().filter_map(|e| e.line.general().get(&key).map(|r| (e.step, 100.0 * r))).collect();
            Series { label: format!("{set} rise"), color: COLORS[i % COLORS.len()], stroke: 2, points, dots: true }
        })
        .collect();
    Chart {
        caption: "General ability (forgetting guard)".into(),
        y_desc: "rise against the base (%)".into(),
        series,
        markers: Vec::new(),
        legend: true,
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Field {
    Lr,
    TokensPerS,
}

/// Whether the chart has anything to draw.
pub(crate) fn has_points(chart: &Chart) -> bool {
    chart.series.iter().any(|s| !s.points.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_follow_the_span() {
        let cases = [
            (2.3, 1.0, "2.3"),
            (2.6, 0.93, "2.60"),
            (2.0, 0.5, "2.00"),
            (250.0, 40.0, "250"),
            (1250.0, 400.0, "1250"),
            (0.0009, 0.001, "9.0e-4"),
            (2.1e-3, 4e-4, "2.10e-3"),
            (0.512, 0.02, "0.512"),
            (0.0, 3.0, "0"),
            (-2.7e-17, 1.0, "0"),
        ];
        for (v, span, want) in cases {
            assert_eq!(fmt_tick(v, span), want, "v={v} span={span}");
        }
    }

    #[test]
    fn y_range_pads_by_five_percent_or_by_a_tenth_of_the_value_when_flat() {
        assert_eq!(y_range([1.0, 3.0].into_iter()), (0.9, 3.1));
        assert_eq!(y_range([2.0, 2.0].into_iter()), (1.8, 2.2));
        let (lo, hi) = y_range([1e-3, 1e-3].into_iter());
        assert!((lo - 0.9e-3).abs() < 1e-12 && (hi - 1.1e-3).abs() < 1e-12, "{lo} {hi}");
        assert_eq!(y_range([0.0].into_iter()), (-1.0, 1.0));
        assert_eq!(y_range(std::iter::empty()), (0.0, 1.0));
    }
}
