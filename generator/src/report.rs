//! `--report FILE.html`: one self-contained page per plan (inline SVG and CSS, nothing fetched when it is opened):
//! for each run, achieved against intended rate, latency percentiles, async tasks' end-to-end time, outcomes and
//! retries over time, and responses per pod; with `--prometheus` and `--scaled-object`, the replicas and every trigger
//! against its threshold.

use std::fmt::Write as _;

use crate::stats::{Failure, Summary, Window};
use crate::watch::Sample;

/// Timeline windows, seconds.
pub const WINDOW_SECONDS: f64 = 1.0;

/// One run of the plan, as the report shows it.
pub struct RunReport {
    pub title: String,
    /// What the open model's schedule intended at the start of each window; empty for a closed model.
    pub intended: Vec<f64>,
    pub windows: Vec<Window>,
    /// Completed async tasks: (seconds from the start to when their end was seen, end-to-end seconds).
    pub tasks_over_time: Vec<(f64, f64)>,
    pub summary: Summary,
}

/// The `percentiles` (0-100) of `points`' values in bins of `width` over their time, one point per non-empty bin at
/// its middle: the end-to-end chart, where tasks end too sparsely for the one-second windows.
fn percentiles_over_time(points: &[(f64, f64)], width: f64, percentiles: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut bins: std::collections::BTreeMap<u64, Vec<f64>> = std::collections::BTreeMap::new();
    for (t, value) in points {
        bins.entry((t / width).floor() as u64).or_default().push(*value);
    }
    percentiles
        .iter()
        .map(|p| {
            bins.iter_mut()
                .map(|(bin, values)| {
                    values.sort_by(f64::total_cmp);
                    // Nearest rank, as HdrHistogram's percentiles read.
                    let rank = ((p / 100.0 * values.len() as f64).ceil() as usize).clamp(1, values.len());
                    ((*bin as f64 + 0.5) * width, values[rank - 1])
                })
                .collect()
        })
        .collect()
}

/// The autoscaling table's readings over the whole plan.
pub struct Autoscaling {
    /// (name, threshold, averaged over the replicas)
    pub triggers: Vec<(String, f64, bool)>,
    pub samples: Vec<Sample>,
}

pub const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// One line of a chart: its legend and its (seconds, value) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// How a chart's y axis counts: any value, or whole things (replicas), ticked at integers.
#[derive(Clone, Copy, PartialEq)]
pub enum Ticks {
    Real,
    Integer,
}

/// A line chart: x in seconds, y from 0; `lines` are horizontal dashed lines (thresholds) with their labels.
pub fn chart(title: &str, unit: &str, series: &[Series<'_>], lines: &[(String, f64)], ticks: Ticks) -> String {
    let (width, height, left, right, top, bottom) = (880.0, 254.0, 64.0, 16.0, 28.0, 50.0);
    let points = series.iter().flat_map(|s| s.points.iter()).filter(|(_, y)| y.is_finite());
    let (mut x_max, mut y_max) = (1.0_f64, 0.0_f64);
    for (x, y) in points {
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    for (_, y) in lines {
        y_max = y_max.max(*y);
    }
    let y_max = match ticks {
        Ticks::Real if y_max <= 0.0 => 1.0,
        Ticks::Real => y_max * 1.1,
        // Four steps of a whole number each, at least one: 10 replicas tick 0, 3, 6, 9, 12.
        Ticks::Integer => (y_max.max(1.0) / 4.0).ceil() * 4.0,
    };
    let sx = |x: f64| left + x / x_max * (width - left - right);
    let sy = |y: f64| height - bottom - y / y_max * (height - top - bottom);
    let mut svg = format!(
        "<figure><svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\">\
         <text x=\"{left}\" y=\"18\" class=\"title\">{}</text>",
        escape(title)
    );
    for step in 0..=4 {
        let y = y_max * f64::from(step) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{} {unit}</text>",
            width - right,
            left - 6.0,
            sy(y) + 4.0,
            if ticks == Ticks::Integer { format!("{y:.0}") } else { short(y) },
            py = sy(y)
        );
    }
    for step in 0..=5 {
        let x = x_max * f64::from(step) / 5.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{} s</text>",
            sx(x),
            height - bottom + 18.0,
            short(x)
        );
    }
    for (index, (label, y)) in lines.iter().enumerate() {
        let colour = COLOURS[(index + 1) % COLOURS.len()];
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"{colour}\" class=\"threshold\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\" fill=\"{colour}\">{}</text>",
            width - right,
            width - right - 4.0,
            sy(*y) - 4.0,
            escape(label),
            py = sy(*y)
        );
    }
    for (index, s) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|(_, y)| y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        if !path.is_empty() {
            let _ = write!(svg, "<polyline points=\"{}\" stroke=\"{colour}\" class=\"series\"/>", path.join(" "));
        }
        // Legends in a row under the axis: titles run long.
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" class=\"legend\" fill=\"{colour}\">&#9644; {}</text>",
            left + 190.0 * index as f64,
            height - 8.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// 1234.5 as "1.2k", 0.25 as "0.25".
fn short(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn run_section(run: &RunReport, time_scale: f64) -> String {
    let w = |f: &dyn Fn(&Window) -> Option<f64>| -> Vec<(f64, f64)> {
        run.windows.iter().filter_map(|window| f(window).map(|y| (window.start * time_scale, y))).collect()
    };
    // Per autoscaler second: a run compressed F times sends the same requests F times faster.
    let per_second = |n: u64| n as f64 / WINDOW_SECONDS / time_scale;
    let achieved = w(&|w| Some(per_second(w.succeeded + w.failed.iter().sum::<u64>())));
    let intended: Vec<(f64, f64)> = run
        .intended
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64 * WINDOW_SECONDS * time_scale, r / time_scale))
        .collect();
    let mut rate = vec![Series { name: "achieved (answered/s)", points: achieved }];
    if !intended.is_empty() {
        rate.push(Series { name: "intended by the schedule", points: intended });
    }
    let latency: Vec<Series<'_>> = ["p50", "p95", "p99"]
        .iter()
        .enumerate()
        .map(|(i, name)| Series { name, points: w(&|w| w.latency_ms.map(|l| l[i])) })
        .collect();
    let mut outcomes = vec![Series { name: "2xx/3xx", points: w(&|w| Some(per_second(w.succeeded))) }];
    for failure in Failure::ALL {
        if run.windows.iter().any(|w| w.failed[failure as usize] > 0) {
            outcomes.push(Series {
                name: failure.describe(),
                points: w(&|w| Some(per_second(w.failed[failure as usize]))),
            });
        }
    }
    outcomes.push(Series { name: "503 retried", points: w(&|w| Some(per_second(w.retried))) });
    let s = &run.summary;
    let mut html = format!(
        "<section><h2>{}</h2><p class=\"figures\">sent {} · succeeded {} · retried {} · achieved {:.2}/s · \
         p50 {:.1} ms · p95 {:.1} ms · p99 {:.1} ms · {:.0} s</p>",
        escape(&run.title),
        s.sent,
        s.succeeded,
        s.retried,
        s.rate_achieved,
        s.latency_ms.p50,
        s.latency_ms.p95,
        s.latency_ms.p99,
        s.elapsed_seconds
    );
    html += &chart("Achieved against intended rate", "/s", &rate, &[], Ticks::Real);
    html += &chart("Latency (from the intended send time)", "ms", &latency, &[], Ticks::Real);
    if let Some(tasks) = &s.tasks {
        let last = run.tasks_over_time.iter().map(|(t, _)| *t).fold(1.0, f64::max);
        // About forty points over the run, none narrower than a second.
        let width = (last / 40.0).max(1.0);
        let scaled: Vec<(f64, f64)> =
            run.tasks_over_time.iter().map(|(t, e)| (t * time_scale, e * time_scale)).collect();
        let lines = percentiles_over_time(&scaled, width * time_scale, &[50.0, 95.0]);
        let series: Vec<Series<'_>> =
            ["p50", "p95"].iter().zip(lines).map(|(name, points)| Series { name, points }).collect();
        let _ = write!(
            html,
            "<p class=\"figures\">async tasks: {} accepted · {} completed · {} failed · {} cancelled · {} not seen to \
             their end · accepted to finished p50 {:.1} s · p95 {:.1} s</p>",
            tasks.accepted,
            tasks.completed,
            tasks.failed,
            tasks.cancelled,
            tasks.unresolved,
            tasks.e2e_ms.p50 / 1000.0 * time_scale,
            tasks.e2e_ms.p95 / 1000.0 * time_scale
        );
        html += &chart("Async tasks, accepted to finished (by when they ended)", "s", &series, &[], Ticks::Real);
    }
    html += &chart("Outcomes and retries", "/s", &outcomes, &[], Ticks::Real);
    html += "<h3>Responses per pod</h3><table><tr><th>pod</th><th>responses</th><th></th></tr>";
    let most = s.distribution.values().copied().max().unwrap_or(1).max(1);
    for (pod, count) in &s.distribution {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{count}</td><td><div class=\"bar\" style=\"width:{:.0}px\"></div></td></tr>",
            escape(pod),
            *count as f64 / most as f64 * 400.0
        );
    }
    html += "</table></section>";
    html
}

fn autoscaling_section(autoscaling: &Autoscaling, time_scale: f64) -> String {
    let samples = &autoscaling.samples;
    let gauge = |f: &dyn Fn(&Sample) -> Option<u32>| -> Vec<(f64, f64)> {
        samples.iter().filter_map(|s| f(s).map(|v| (s.t * time_scale, f64::from(v)))).collect()
    };
    let replicas = [
        Series { name: "desired (HPA)", points: gauge(&|s| s.desired) },
        Series { name: "current", points: gauge(&|s| s.replicas) },
        Series { name: "ready", points: gauge(&|s| s.ready) },
    ];
    let mut html = String::from("<section><h2>Autoscaling</h2>");
    html += &chart("Replicas", "", &replicas, &[], Ticks::Integer);
    for (index, (name, threshold, averaged)) in autoscaling.triggers.iter().enumerate() {
        let points = samples
            .iter()
            .filter_map(|s| s.compared.get(index).copied().flatten().map(|v| (s.t * time_scale, v)))
            .collect();
        let title = format!("Trigger {name}{}", if *averaged { " (per replica)" } else { "" });
        html += &chart(
            &title,
            "",
            &[Series { name: "value KEDA compares", points }],
            &[(format!("threshold {threshold}"), *threshold)],
            Ticks::Real,
        );
    }
    html += "</section>";
    html
}

/// The pages' look: the load report's and `surge tune`'s.
pub const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}\
    h2{font-size:17px;margin-top:28px}figure{margin:8px 0}svg{background:#fff;border:1px solid #ddd}\
    .title{font-weight:600;font-size:13px}.axis{font-size:11px;fill:#555}.legend{font-size:12px}.grid{stroke:#eee}\
    .series{fill:none;stroke-width:2}.threshold{stroke-width:1.5;stroke-dasharray:6 4}\
    table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}.bar{height:10px;background:#1f77b4}\
    .figures{color:#444}";

/// The whole page. Under `--time-scale F` every time axis is in the autoscaler's seconds (compressed seconds × F,
/// what the load-generator table promises) and rates per autoscaler second.
pub fn html(runs: &[RunReport], autoscaling: Option<&Autoscaling>, time_scale: f64) -> String {
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Surge load report</title>\
         <style>{STYLE}</style></head><body><h1>Surge load report</h1>"
    );
    if time_scale > 1.0 {
        let _ = write!(
            page,
            "<p class=\"figures\">Run {time_scale}× compressed: times and rates are in the autoscaler's seconds.</p>"
        );
    }
    if let Some(autoscaling) = autoscaling {
        page += &autoscaling_section(autoscaling, time_scale);
    }
    for run in runs {
        page += &run_section(run, time_scale);
    }
    page += "</body></html>\n";
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_scales_points_into_its_frame_and_draws_thresholds() {
        let series = [Series { name: "a", points: vec![(0.0, 0.0), (10.0, 5.0), (20.0, f64::NAN)] }];
        let svg = chart("t", "u", &series, &[("threshold 4".into(), 4.0)], Ticks::Real);
        // x 0..10 (the last finite point) maps onto 64..864, y 0..5.5 onto 204..28: (10, 5) lands at (864, 44).
        assert!(svg.contains("points=\"64.0,204.0 864.0,44.0\""), "{svg}");
        assert!(svg.contains("class=\"threshold\""));
        assert!(!svg.contains("NaN"), "non-finite points are left out");
    }

    #[test]
    fn replicas_tick_at_whole_numbers() {
        let series = [Series { name: "replicas", points: vec![(0.0, 1.0), (10.0, 10.0)] }];
        let svg = chart("Replicas", "", &series, &[], Ticks::Integer);
        let ticks: Vec<&str> = svg.split("text-anchor=\"end\">").skip(1).filter_map(|t| t.split(' ').next()).collect();
        assert_eq!(ticks, ["0", "3", "6", "9", "12"], "{svg}");
    }

    /// Tasks at 0-9 s ending after 1..10 s, and one at 15 s after 30 s, in 10 s bins: per bin the nearest-rank p50
    /// and p95, each at the bin's middle; an empty bin draws nothing.
    #[test]
    fn end_to_end_percentiles_are_binned_over_time() {
        let mut points: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), f64::from(i + 1))).collect();
        points.push((35.0, 30.0));
        let lines = percentiles_over_time(&points, 10.0, &[50.0, 95.0]);
        assert_eq!(lines, [vec![(5.0, 5.0), (35.0, 30.0)], vec![(5.0, 10.0), (35.0, 30.0)]]);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
