//! What goes to stdout: the profile list, the dry-run plan, and the summary, as text or one JSON document.

use std::fmt::Write;

use crate::phases::{self, PHASED};
use crate::plan::{Model, Plan};
use crate::profiles::PROFILES;
use crate::stats::{Failure, Summary};

pub fn profile_list() -> String {
    let mut out =
        String::from("profile            peak/s  minutes  tasks  cpu  memory MiB  duration s  async  description\n");
    for p in &PROFILES {
        profile_row(
            &mut out,
            [
                p.name.to_owned(),
                p.peak_rate().to_string(),
                (p.length().as_secs_f64() / 60.0).to_string(),
                p.tasks().round().to_string(),
                p.cpu_intensity.to_string(),
                p.memory_mib.to_string(),
                p.duration_secs.to_string(),
                (if p.async_mode { "yes" } else { "no" }).to_owned(),
                p.description.to_owned(),
            ],
        );
    }
    for p in &PHASED {
        // Each phase's task differs: its figures as ranges over the phases.
        let range = |figure: fn(&phases::Phase) -> u32| {
            let (low, high) = p.phases.iter().map(figure).fold((u32::MAX, 0), |(l, h), v| (l.min(v), h.max(v)));
            format!("{low}-{high}")
        };
        let peak_per_minute = p.phases.iter().map(|phase| phase.per_minute).fold(0.0, f64::max);
        profile_row(
            &mut out,
            [
                p.name.to_owned(),
                ((peak_per_minute / 60.0 * 1000.0).round() / 1000.0).to_string(),
                (p.phases.iter().map(|phase| phase.seconds).sum::<f64>() / 60.0).to_string(),
                phases::arrivals(p.phases).count().to_string(),
                range(|phase| u32::from(phase.cpu_intensity)),
                range(|phase| phase.memory_mib),
                range(|phase| phase.duration_secs),
                (if p.phases.iter().all(|phase| phase.async_mode) { "yes" } else { "mixed" }).to_owned(),
                p.description.to_owned(),
            ],
        );
    }
    out.push_str("all                runs every profile above in order, with --pause between them\n");
    out
}

/// One row of `--list`, in the header's columns.
fn profile_row(
    out: &mut String,
    [name, peak, minutes, tasks, cpu, memory, duration, async_mode, description]: [String; 9],
) {
    let _ = writeln!(
        out,
        "{name:<18} {peak:>6}  {minutes:>7}  {tasks:>5}  {cpu:>3}  {memory:>10}  {duration:>10}  {async_mode:<5}  {description}"
    );
}

pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::from("dry run: nothing will be sent\n");
    let _ = writeln!(out, "target: {}  (shard {}/{})", plan.target.url, plan.shard.index, plan.shard.count);
    let _ = writeln!(
        out,
        "connections: {}; timeout {:?}; cleanup first: {}; monitor: {}; traceparent: {}",
        if plan.connection_reuse { "keep-alive, reused" } else { "a new one per request" },
        plan.timeout,
        plan.cleanup,
        plan.monitor,
        plan.traceparent
    );
    for threshold in &plan.thresholds {
        let _ = writeln!(out, "threshold: {}", threshold.expr());
    }
    for run in &plan.runs {
        let model = match &run.model {
            Model::Closed { concurrency, requests, duration, delay } => format!(
                "closed model: {concurrency} workers, {}{}, at least {:?} between sends",
                requests.map_or_else(|| "no request limit".to_owned(), |r| format!("{r} requests")),
                duration.map(|d| format!(", for {d:?}")).unwrap_or_default(),
                delay
            ),
            Model::Open { start_rate, stages, max_in_flight } => {
                let ramp: Vec<String> =
                    stages.iter().map(|s| format!("{:?} to {} req/s", s.duration, s.target)).collect();
                format!(
                    "open model: from {start_rate} req/s, {}; at most {max_in_flight} in flight",
                    ramp.join(", then ")
                )
            }
        };
        let _ = writeln!(out, "run {}: {} {}; {model}", run.profile, run.method, run.uri);
        for later in &run.later_paths {
            let _ = writeln!(out, "    from {:?}: {}", later.from, later.path);
        }
    }
    out
}

pub fn summary_text(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n== {} {}==", summary.profile, if summary.interrupted { "(interrupted) " } else { "" });
    let _ = writeln!(
        out,
        "requests: {} sent, {} succeeded ({:.2}%), {:.1} req/s over {:.1}s",
        summary.sent,
        summary.succeeded,
        summary.success_rate * 100.0,
        summary.rate_achieved,
        summary.elapsed_seconds
    );
    let failures: Vec<String> = Failure::ALL
        .iter()
        .filter_map(|f| summary.failed.get(f.key()).filter(|n| **n > 0).map(|n| format!("{} {n}", f.describe())))
        .collect();
    let _ = writeln!(out, "failed: {}", if failures.is_empty() { "none".to_owned() } else { failures.join(", ") });
    let _ = writeln!(out, "retried: {} (503 with Retry-After, sent again; not failures)", summary.retried);
    let l = &summary.latency_ms;
    let _ = writeln!(
        out,
        "latency ms: p50 {:.1}  p90 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  (from the intended send time)",
        l.p50, l.p90, l.p95, l.p99, l.max
    );
    let lag = &summary.send_lag_ms;
    let _ = writeln!(
        out,
        "send lag ms: p50 {:.1}  p99 {:.1}  max {:.1}  (how late requests went out against the schedule)",
        lag.p50, lag.p99, lag.max
    );
    if let Some(tasks) = &summary.tasks {
        let e = &tasks.e2e_ms;
        let _ = writeln!(
            out,
            "async tasks: {} accepted, {} completed, {} failed, {} cancelled, {} not seen to end",
            tasks.accepted, tasks.completed, tasks.failed, tasks.cancelled, tasks.unresolved
        );
        let _ = writeln!(
            out,
            "end to end s: p50 {:.1}  p90 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  (accepted to finished, the target's clock)",
            e.p50 / 1000.0,
            e.p90 / 1000.0,
            e.p95 / 1000.0,
            e.p99 / 1000.0,
            e.max / 1000.0
        );
    }
    let total: u64 = summary.distribution.values().sum();
    let _ = writeln!(out, "served by ({} pods seen):", summary.replicas_seen);
    for (pod, count) in &summary.distribution {
        let _ = writeln!(out, "  {pod:<40} {count:>8}  {:>5.1}%", 100.0 * *count as f64 / total.max(1) as f64);
    }
    if let Some(warning) = &summary.imbalance {
        let _ = writeln!(out, "WARNING: {warning}");
    }
    for verdict in &summary.thresholds {
        let _ = writeln!(
            out,
            "threshold {}: {} (actual {:.2})",
            verdict.expr,
            if verdict.passed { "passed" } else { "FAILED" },
            verdict.actual
        );
    }
    out
}
