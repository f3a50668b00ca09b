//! `surge tune --report FILE.html`: one self-contained page (inline SVG, the load report's look): the trade-off of
//! every candidate (ready replica-seconds against the worst seed's p95), the frontier drawn through it, the goal as a
//! line, the current and the recommended ScaledObject marked; their replica trajectories side by side (the first
//! seed); and the table.

use std::fmt::Write as _;

use surge_generator::report::{chart, escape, Series, Ticks, COLOURS, STYLE};
use surge_sim::Row;

use crate::{best, mean, worst, Scored};

/// What the page is about: its heading's lines.
pub struct Heading {
    pub load: String,
    pub node: String,
    pub seeds: u64,
    pub goal: Vec<String>,
    /// The p95 bound of the goal, drawn as a line.
    pub p95_goal: Option<f64>,
    /// The current ScaledObject's maxReplicaCount.
    pub max_replicas: u32,
}

/// The candidates' cost against their worst seed's p95, as a scatter: every candidate a dot, the frontier joined, the
/// goal dashed, current and recommended labelled.
fn trade_off(scored: &[Scored], on_frontier: &[usize], recommended: Option<usize>, p95_goal: Option<f64>) -> String {
    let (width, height, left, right, top, bottom) = (880.0, 420.0, 70.0, 24.0, 28.0, 46.0);
    let points: Vec<(f64, f64)> = scored.iter().map(|s| (s.ready_replica_seconds, worst(&s.p95))).collect();
    let finite = points.iter().filter(|(x, y)| x.is_finite() && y.is_finite());
    let x_max = finite.clone().map(|(x, _)| *x).fold(1.0_f64, f64::max) * 1.05;
    // The slowest candidates (a fixed count far too small) would flatten the rest: the axis stops at 4× the goal.
    let y_cap = p95_goal.map_or(f64::INFINITY, |goal| goal * 4.0);
    let y_max = finite.map(|(_, y)| y.min(y_cap)).chain(p95_goal).fold(1.0_f64, f64::max) * 1.1;
    let sx = |x: f64| left + x / x_max * (width - left - right);
    let sy = |y: f64| height - bottom - y.min(y_max) / y_max * (height - top - bottom);
    let mut svg = format!(
        "<figure><svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\">\
         <text x=\"{left}\" y=\"18\" class=\"title\">Cost against latency: ready replica-seconds and the worst seed's \
         p95 sojourn, each candidate</text>"
    );
    for step in 0..=4 {
        let (x, y) = (x_max * f64::from(step) / 4.0, y_max * f64::from(step) / 4.0);
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{y:.0} s</text>\
             <text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{x:.0}</text>",
            width - right,
            left - 6.0,
            sy(y) + 4.0,
            sx(x),
            height - bottom + 16.0,
            py = sy(y)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">ready replica-seconds (mean over seeds)</text>",
        left + (width - left - right) / 2.0,
        height - 10.0
    );
    if let Some(goal) = p95_goal {
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"{}\" class=\"threshold\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\" fill=\"{}\">goal: p95 &lt;= {goal:.0} s</text>",
            width - right,
            COLOURS[1],
            width - right - 4.0,
            sy(goal) - 5.0,
            COLOURS[1],
            py = sy(goal)
        );
    }
    let mut frontier: Vec<(f64, f64)> = on_frontier.iter().map(|&i| points[i]).collect();
    frontier.sort_by(|a, b| a.0.total_cmp(&b.0));
    let path: Vec<String> = frontier.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
    let _ = write!(svg, "<polyline points=\"{}\" stroke=\"{}\" class=\"series\"/>", path.join(" "), COLOURS[0]);
    for (i, (x, y)) in points.iter().enumerate() {
        let (fill, r) = if on_frontier.contains(&i) { (COLOURS[0], 4.5) } else { ("#999", 3.5) };
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{fill}\"><title>{}: {x:.0} replica-s, p95 {y:.0} s</title></circle>",
            sx(*x),
            sy(*y),
            escape(&scored[i].name)
        );
    }
    // Rings on the points, named in a legend at the top right (where dear and slow candidates never are).
    let mut marks = vec![(0, "current ScaledObject".to_owned(), COLOURS[3])];
    if let Some(i) = recommended {
        marks.push((i, format!("recommended: {}", scored[i].name), COLOURS[2]));
    }
    if let Some(i) = scored.iter().position(|s| s.name.starts_with("HPA on CPU")) {
        marks.push((i, scored[i].name.clone(), COLOURS[4]));
    }
    for (row, (i, label, colour)) in marks.into_iter().enumerate() {
        let (x, y) = points[i];
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"legend\" text-anchor=\"end\" fill=\"{colour}\">&#9711; {}</text>",
            sx(x),
            sy(y),
            8.0 + 3.0 * row as f64,
            width - right - 8.0,
            top + 18.0 + 17.0 * row as f64,
            escape(&label)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A candidate's replicas over its first seed, those the HPA wanted and those ready, against the maximum (which sets
/// both charts' scale alike).
fn trajectory(title: &str, rows: &[Row], max_replicas: u32) -> String {
    let desired = Series { name: "desired", points: rows.iter().map(|r| (r.t, f64::from(r.desired))).collect() };
    let ready = Series { name: "ready", points: rows.iter().map(|r| (r.t, f64::from(r.ready))).collect() };
    let maximum = [(format!("maximum {max_replicas}"), f64::from(max_replicas))];
    chart(title, "", &[desired, ready], &maximum, Ticks::Integer)
}

pub fn html(
    heading: &Heading,
    scored: &[Scored],
    on_frontier: &[usize],
    recommended: Option<usize>,
    first_seed: &[Vec<Row>],
) -> String {
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>surge tune: {load}</title>\
         <style>{STYLE}.side{{display:flex;gap:12px;flex-wrap:wrap}}.side svg{{width:600px;height:auto}}\
         td:not(:first-child){{text-align:right}}</style></head><body><h1>surge tune: {load}</h1>\
         <p class=\"figures\">On {node}, {seeds} seeds each, the same arrivals for every candidate. Goal on every \
         seed: {goal}.</p>",
        load = escape(&heading.load),
        node = escape(&heading.node),
        seeds = heading.seeds,
        goal = escape(&heading.goal.join(", ")),
    );
    page += &trade_off(scored, on_frontier, recommended, heading.p95_goal);
    page += "<div class=\"side\">";
    page += &trajectory("Replicas, current ScaledObject (seed 1)", &first_seed[0], heading.max_replicas);
    match recommended {
        Some(i) => {
            let title = format!("Replicas, recommended: {} (seed 1)", scored[i].name);
            page += &trajectory(&title, &first_seed[i], heading.max_replicas);
        }
        None => page += "<p>No autoscaled candidate meets the goal on every seed.</p>",
    }
    page += "</div><h2>Candidates</h2><table><tr><th>candidate</th><th>ready replica-s</th><th>Pending replica-s</th>\
             <th>p50 s</th><th>p95 s (seeds)</th><th>p99 s</th><th>refused</th><th>scale events</th><th></th></tr>";
    for (i, s) in scored.iter().enumerate() {
        let marks =
            [(Some(i) == recommended, "recommended"), (on_frontier.contains(&i), "frontier"), (s.meets, "meets")];
        let marks: Vec<&str> = marks.iter().filter(|(on, _)| *on).map(|(_, mark)| *mark).collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}-{:.0}</td><td>{:.0}</td><td>{}</td>\
             <td>{:.1}</td><td>{}</td></tr>",
            escape(&s.name),
            s.ready_replica_seconds,
            s.pending_replica_seconds,
            mean(s.p50.iter().copied()),
            best(&s.p95),
            worst(&s.p95),
            worst(&s.p99),
            s.refused,
            s.scale_events,
            marks.join(", ")
        );
    }
    page += "</table></body></html>\n";
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::scored;

    fn rows(peak: u32) -> Vec<Row> {
        (0..=4)
            .map(|i| Row {
                t: f64::from(i) * 15.0,
                current: peak.min(i + 1),
                desired: peak.min(i + 1),
                ready: peak.min(i),
                pending: 0,
                values: vec![],
                asks: vec![],
            })
            .collect()
    }

    #[test]
    fn the_page_draws_the_frontier_the_goal_and_both_trajectories_and_marks_current_and_recommended() {
        let all = [
            scored("current", 5000.0, 50.0, true, false),
            scored("scale-down window 60 s", 4000.0, 55.0, true, false),
            scored("HPA on CPU at 70% (no other trigger)", 4500.0, 58.0, true, false),
            scored("fixed 1 <slow>", 1000.0, 900.0, false, true),
        ];
        let heading = Heading {
            load: "baseline".into(),
            node: "a 8-core node".into(),
            seeds: 5,
            goal: vec!["p95 sojourn <= 60 s".into()],
            p95_goal: Some(60.0),
            max_replicas: 10,
        };
        let trajectories = [rows(4), rows(3), rows(3), rows(1)];
        let page = html(&heading, &all, &[0, 1, 3], Some(1), &trajectories);
        assert!(page.contains("goal: p95 &lt;= 60 s"), "the goal line");
        assert!(page.contains("recommended: scale-down window 60 s"), "the recommended one named");
        assert!(page.contains("current ScaledObject") && page.contains("HPA on CPU at 70%"), "current and the HPA");
        assert!(page.contains("fixed 1 &lt;slow&gt;"), "names escaped");
        assert_eq!(page.matches("maximum 10").count(), 2, "two trajectories on one scale");
        // The frontier joined by cost: 1000, 4000, 5000 replica-seconds left to right.
        let frontier =
            page.split("<polyline points=\"").nth(1).expect("the frontier").split('"').next().expect("points");
        let xs: Vec<f64> =
            frontier.split(' ').map(|p| p.split(',').next().expect("x").parse().expect("a number")).collect();
        assert!(xs.len() == 3 && xs.windows(2).all(|w| w[0] < w[1]), "{frontier}");
    }
}
