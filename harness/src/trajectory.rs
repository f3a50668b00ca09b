//! The trajectory as it is printed every sync and summed up at the end: peak replicas and when, the driving trigger,
//! first scale-up, back at the minimum.

use serde::Serialize;
use serde_json::{json, Value};
use surge_keda::trajectory::{figures, Sync};
use surge_keda::ScaledObject;

/// One trigger's reading at one sync.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reading {
    pub(crate) name: String,
    /// `None` when the query failed.
    pub(crate) value: Option<f64>,
    pub(crate) target: f64,
    pub(crate) asks: Option<u32>,
}

/// One sync of the autoscaler.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// HPA seconds since the generator started.
    pub(crate) t: f64,
    pub(crate) current: u32,
    pub(crate) desired: u32,
    pub(crate) ready: u32,
    /// Pods no node had room for (Pending), counted in `current`.
    pub(crate) unscheduled: u32,
    pub(crate) offered_per_s: f64,
    pub(crate) served_per_s: f64,
    pub(crate) driving: Option<String>,
    pub(crate) triggers: Vec<Reading>,
}

/// The run in a few figures: peak replicas and when, the driving trigger, first scale-up, back at the minimum.
pub(crate) fn report(
    profile: &str,
    factor: f64,
    rows: &[Row],
    load_ended: Option<f64>,
    min: u32,
    generator: &Value,
) -> Value {
    let syncs: Vec<Sync> = rows.iter().map(|r| Sync { t: r.t, current: r.current, desired: r.desired }).collect();
    let figures = figures(&syncs, min);
    let peak_row = rows.iter().find(|r| r.desired == figures.peak);
    let drivers: Vec<String> = {
        let mut names: Vec<String> = rows.iter().filter_map(|r| r.driving.clone()).collect();
        names.sort();
        names.dedup();
        names
    };
    json!({
        "outline": {
            "profile": profile,
            "time_scale": factor,
            "peak_replicas": figures.peak,
            "peak_ready": rows.iter().map(|r| r.ready).max(),
            "most_unscheduled": rows.iter().map(|r| r.unscheduled).max(),
            "peak_at_s": peak_row.map(|r| r.t),
            "peak_driven_by": peak_row.and_then(|r| r.driving.clone()),
            "peak_held_s": figures.peak_held(),
            "left_peak_at_s": figures.left_peak_at,
            "driving_triggers": drivers,
            "first_scale_up_at_s": figures.first_up_at,
            "load_ended_at_s": load_ended,
            "back_at_min_at_s": figures.back_at_min_at,
            "sent": generator["sent"],
            "succeeded": generator["succeeded"],
            "retried": generator["retried"],
            "failed": generator["failed"],
            "tasks": generator["tasks"],
            "send_lag_max_ms": generator["send_lag_ms"]["max"],
        },
        "rows": rows,
        "generator": generator,
    })
}

pub(crate) fn print_header(so: &ScaledObject) {
    let names: Vec<String> =
        so.triggers.iter().map(|t| format!("{:>24}", format!("{} ({})", t.name, t.threshold))).collect();
    println!(
        "{:>7} {:>4} {:>5} {:>7} {:>8} {:>8}  {}",
        "t(s)",
        "want",
        "ready",
        "pending",
        "offer/s",
        "served/s",
        names.join(" ")
    );
}

pub(crate) fn print_row(row: &Row) {
    let cells: Vec<String> = row
        .triggers
        .iter()
        .map(|r| {
            let value = r.value.map_or_else(|| "error".to_owned(), |v| format!("{v:.2}"));
            let asks = r.asks.map_or_else(|| "-".to_owned(), |a| a.to_string());
            format!("{:>24}", format!("{value} -> {asks}"))
        })
        .collect();
    println!(
        "{:>7.0} {:>4} {:>5} {:>7} {:>8.2} {:>8.2}  {}",
        row.t,
        row.desired,
        row.ready,
        row.unscheduled,
        row.offered_per_s,
        row.served_per_s,
        cells.join(" ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(desired: &[u32]) -> Vec<Row> {
        let row = |(i, &desired): (usize, &u32)| Row {
            t: 15.0 * i as f64,
            current: desired,
            desired,
            ready: desired,
            unscheduled: 0,
            offered_per_s: 0.0,
            served_per_s: 0.0,
            driving: None,
            triggers: Vec::new(),
        };
        desired.iter().enumerate().map(row).collect()
    }

    /// The first stretch at the peak: reached at 30 s, first fewer at 75 s (held 45 s); a second visit is not added.
    #[test]
    fn the_peak_is_held_from_the_sync_that_reached_it_to_the_first_that_asked_for_fewer() {
        let outline =
            &report("burst", 10.0, &rows(&[1, 4, 10, 10, 10, 8, 10, 1]), Some(60.0), 1, &json!({}))["outline"];
        assert_eq!((outline["peak_held_s"].as_f64(), outline["left_peak_at_s"].as_f64()), (Some(45.0), Some(75.0)));
        let never_left = &report("burst", 10.0, &rows(&[1, 10, 10]), None, 1, &json!({}))["outline"];
        assert!(never_left["peak_held_s"].is_null() && never_left["left_peak_at_s"].is_null(), "{never_left}");
    }
}
