//! SVG charts of `cargo xtask bench report` (plotters, SVG backend only).
//!
//! Suites with natural axes get them: throughput and p99 against N for `sse` and `ws`, hookwire
//! against BullMQ per metric for `jobs`, verify time against body size per scheme and peer for
//! `sign`. Every other suite (and any future one) gets the generic chart: each ratio with a
//! target as its distance to the target (≥ 1 meets it).

use plotters::prelude::*;

use super::{Run, target};

/// One line: a label and its (x, y) points.
type Series = (String, Vec<(f64, f64)>);

/// What one panel of a chart shows.
enum Panel {
    /// Lines against a numeric x axis (log scale when it spans a decade or more).
    Lines {
        title: String,
        x_desc: String,
        y_desc: String,
        series: Vec<Series>,
    },
    /// Horizontal bars, one per label; `line` draws a reference value (e.g. the target).
    Bars {
        title: String,
        x_desc: String,
        bars: Vec<(String, f64)>,
        line: Option<f64>,
    },
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Sizes N of a fan-out suite: `extra[key]`, else `fallback`.
fn sizes(run: &Run, key: &str, fallback: [f64; 2]) -> [f64; 2] {
    let v: Vec<f64> = run
        .extra
        .get(key)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    match v.as_slice() {
        [a, b] => [*a, *b],
        _ => fallback,
    }
}

/// Throughput and p99 against N: figures `<server>_<label>_deliveries_per_s` / `_p99_ms`.
fn fanout(run: &Run, servers: &[(&str, &str)], labels: [&str; 2], n: [f64; 2]) -> Vec<Panel> {
    let pick = |metric: &str| -> Vec<Series> {
        servers
            .iter()
            .map(|(key, name)| {
                let pts = labels
                    .iter()
                    .zip(n)
                    .filter_map(|(l, x)| run.figure(&format!("{key}_{l}_{metric}")).map(|y| (x, y)))
                    .collect();
                ((*name).to_owned(), pts)
            })
            .filter(|(_, p): &Series| !p.is_empty())
            .collect()
    };
    vec![
        Panel::Lines {
            title: "burst fan-out throughput".into(),
            x_desc: "subscribers N".into(),
            y_desc: "deliveries/s".into(),
            series: pick("deliveries_per_s"),
        },
        Panel::Lines {
            title: "single publish p99 latency".into(),
            x_desc: "subscribers N".into(),
            y_desc: "p99 ms".into(),
            series: pick("p99_ms"),
        },
    ]
}

/// Verify (and sign) time against body size: figures `<who>_ns_<size>k`.
fn sign(run: &Run) -> Vec<Panel> {
    let mut by: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for (name, (m, _)) in &run.figures {
        let Some((who, size)) = name.rsplit_once("_ns_") else {
            continue;
        };
        let Some(kib) = size.strip_suffix('k').and_then(|k| k.parse::<f64>().ok()) else {
            continue;
        };
        by.entry(who.replace('_', " "))
            .or_default()
            .push((kib, *m / 1000.0));
    }
    for pts in by.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    vec![Panel::Lines {
        title: "time per call against body size".into(),
        x_desc: "body KiB".into(),
        y_desc: "µs per call".into(),
        series: by.into_iter().collect(),
    }]
}

/// hookwire against a peer, one bar panel per metric present for both
/// (`hookwire_<metric>` and `<peer>_<metric>`) whose name contains one of `keys`.
fn paired(run: &Run, peer: &str, keys: &[&str]) -> Vec<Panel> {
    let mut panels = Vec::new();
    for (name, (m, _)) in &run.figures {
        let Some(metric) = name.strip_prefix("hookwire_") else {
            continue;
        };
        if !keys.iter().any(|k| metric.contains(k)) {
            continue;
        }
        if let Some(p) = run.figure(&format!("{peer}_{metric}")) {
            panels.push(Panel::Bars {
                title: metric.replace('_', " "),
                x_desc: metric.replace('_', " "),
                bars: vec![("hookwire".into(), *m), (peer.into(), p)],
                line: None,
            });
        }
    }
    panels
}

/// Every ratio with a target, as its distance to the target (≥ 1 meets it); without any
/// target, the ratios themselves.
fn generic(run: &Run) -> Vec<Panel> {
    let with: Vec<(String, f64)> = run
        .ratios
        .iter()
        .filter_map(|(k, v)| target(&run.suite, k).map(|g| (k.clone(), g.headroom(*v))))
        .filter(|(_, v)| v.is_finite())
        .collect();
    if with.is_empty() {
        return vec![Panel::Bars {
            title: "ratios".into(),
            x_desc: "ratio".into(),
            bars: run
                .ratios
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            line: Some(1.0),
        }];
    }
    vec![Panel::Bars {
        title: "ratios against their targets".into(),
        x_desc: "value ÷ target (≥ 1 meets it; for costs target ÷ value)".into(),
        bars: with,
        line: Some(1.0),
    }]
}

/// The panels of `run`'s chart.
fn panels(run: &Run) -> Vec<Panel> {
    let mut p = match run.suite.as_str() {
        "sse" => fanout(
            run,
            &[
                ("lean", "hookwire (lean)"),
                ("raw", "limit"),
                ("node", "Node node:http"),
            ],
            ["1k", "10k"],
            sizes(run, "subscribers", [1000.0, 10_000.0]),
        ),
        "ws" => fanout(
            run,
            &[("hookwire", "hookwire"), ("node", "Node ws")],
            ["2k", "10k"],
            sizes(run, "fanout_clients", [2000.0, 10_000.0]),
        ),
        "sign" => sign(run),
        "jobs" => paired(run, "bullmq", &["jobs_per_s", "cpu", "usec"]),
        _ => Vec::new(),
    };
    p.retain(|panel| match panel {
        Panel::Lines { series, .. } => !series.is_empty(),
        Panel::Bars { bars, .. } => !bars.is_empty(),
    });
    if p.is_empty() {
        p = generic(run);
    }
    p
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

/// The SVG document of `run`'s chart.
pub(crate) fn render(run: &Run) -> Result<String, String> {
    let panels = panels(run);
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let bar_rows = panels
        .iter()
        .map(|p| match p {
            Panel::Bars { bars, .. } => bars.len(),
            Panel::Lines { .. } => 0,
        })
        .max()
        .unwrap_or(0);
    let height = (360u32).max(120 + 28 * bar_rows as u32);
    let width = if cols == 1 { 820 } else { 440 * cols as u32 };
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width, height * rows as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((rows, cols));
        for (area, panel) in areas.iter().zip(&panels) {
            draw(area, panel, &run.suite)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    suite: &str,
) -> Result<(), String> {
    match panel {
        Panel::Lines {
            title,
            x_desc,
            y_desc,
            series,
        } => {
            let xs = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
            let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
            let ymax = series
                .iter()
                .flat_map(|(_, p)| p.iter().map(|q| q.1))
                .fold(0.0f64, f64::max);
            let caption = format!("{suite}: {title}");
            let mut b = ChartBuilder::on(area);
            b.caption(caption, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64);
            // Head room above the highest point for the legend in the upper left corner.
            let y = 0.0..ymax * 1.5 + f64::MIN_POSITIVE;
            let mut chart = b
                .build_cartesian_2d((x0 / 1.5..x1 * 1.5).log_scale(), y)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(x_desc.as_str())
                .y_desc(y_desc.as_str())
                .y_label_formatter(&|v| super::fmt(*v))
                .x_label_formatter(&|v| super::fmt(*v))
                .draw()
                .map_err(err)?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                    .map_err(err)?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c));
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(err)?;
        }
        Panel::Bars {
            title,
            x_desc,
            bars,
            line,
        } => {
            let xmax = bars
                .iter()
                .map(|b| b.1)
                .chain(line.iter().copied())
                .fold(0.0f64, f64::max)
                * 1.15
                + f64::MIN_POSITIVE;
            let n = bars.len();
            let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(4);
            let mut b = ChartBuilder::on(area);
            b.caption(format!("{suite}: {title}"), ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size((longest as u32 * 7 + 12).min(300));
            let mut chart = b
                .build_cartesian_2d(0.0..xmax, (0..n).into_segmented())
                .map_err(err)?;
            let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
            let label = move |v: &SegmentValue<usize>| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    names.get(*i).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            };
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc(x_desc.as_str())
                .x_label_formatter(&|v| super::fmt(*v))
                .y_label_formatter(&label)
                .y_labels(n)
                .draw()
                .map_err(err)?;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let c = match line {
                        Some(l) if *v < *l => COLORS[1],
                        _ => COLORS[0],
                    };
                    let mut r = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(i)),
                            (*v, SegmentValue::Exact(i + 1)),
                        ],
                        c.filled(),
                    );
                    r.set_margin(4, 4, 0, 0);
                    r
                }))
                .map_err(err)?;
            if let Some(l) = line {
                chart
                    .draw_series(LineSeries::new(
                        [(*l, SegmentValue::Exact(0)), (*l, SegmentValue::Last)],
                        BLACK.stroke_width(1),
                    ))
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}
