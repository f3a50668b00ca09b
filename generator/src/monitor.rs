//! Live reporting on stderr: a progress bar on a terminal, a plain line every interval in a Job's log, and with
//! `--monitor` the consumer's own view (`/process/status`) beside the distribution served so far.
//! Further sources (Prometheus queries, replica counts) plug in as more lines from `status_lines`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::Job;
use crate::stats::Progress;

pub struct Reporter {
    pub expected: Option<u64>,
    pub interval: Duration,
    pub monitor: bool,
    pub profile: String,
}

impl Reporter {
    /// Reports until `finished` fires.
    pub fn spawn(self, job: Arc<Job>, finished: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let bar = std::io::stderr().is_terminal().then(|| self.bar());
            let mut tick =
                tokio::time::interval(if bar.is_some() { Duration::from_millis(200) } else { self.interval });
            tick.tick().await;
            let mut last_monitor = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = finished.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let progress = job.recorder.progress();
                let monitor_due = self.monitor && last_monitor.elapsed() >= self.interval;
                let mut lines = Vec::new();
                match &bar {
                    Some(bar) => {
                        bar.set_position(progress.done);
                        bar.set_message(rates(&progress));
                    }
                    None => lines.push(progress_line(&self.profile, &progress, self.expected)),
                }
                if monitor_due {
                    last_monitor = tokio::time::Instant::now();
                    lines.extend(status_lines(&job).await);
                }
                for line in lines {
                    match &bar {
                        Some(bar) => bar.println(line),
                        None => eprintln!("{line}"),
                    }
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        })
    }

    fn bar(&self) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(self.expected, ProgressDrawTarget::stderr());
        let template = if self.expected.is_some() {
            "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}"
        } else {
            "{prefix} [{elapsed_precise}] {spinner} {pos} done {msg}"
        };
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar.set_prefix(self.profile.clone());
        bar
    }
}

fn rates(progress: &Progress) -> String {
    let secs = progress.elapsed.as_secs_f64().max(f64::EPSILON);
    format!("{} failed, {:.1} req/s", progress.failed, progress.done as f64 / secs)
}

fn progress_line(profile: &str, progress: &Progress, expected: Option<u64>) -> String {
    let of = expected.map(|e| format!("/{e}")).unwrap_or_default();
    format!(
        "progress {profile}: {}s, {} sent, {}{of} done, {}",
        progress.elapsed.as_secs(),
        progress.sent,
        progress.done,
        rates(progress)
    )
}

/// The consumer's status as one pod sees it, and where responses went so far.
async fn status_lines(job: &Job) -> Vec<String> {
    let consumer = match job.client.once(Method::GET, "/process/status", None).await {
        Ok(reply) if reply.status.is_success() => match serde_json::from_slice::<Value>(&reply.body) {
            Ok(status) => {
                let pod = reply.served_by.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
                describe_status(&pod, &status)
            }
            Err(e) => format!("monitor: /process/status is not JSON: {e}"),
        },
        Ok(reply) => format!("monitor: /process/status answered {}", reply.status),
        Err(cause) => format!("monitor: /process/status unavailable: {cause}"),
    };
    vec![consumer, describe_distribution(&job.recorder.distribution())]
}

fn describe_status(pod: &str, status: &Value) -> String {
    let mib = |v: &Value| v.as_u64().unwrap_or(0) >> 20;
    let totals = &status["totals"];
    format!(
        "monitor: {pod}: running cpu {} memory {}; retained {} MiB of {} MiB budget; started {} completed {} rejected {} cancelled {}",
        status["tasks_running"]["cpu"],
        status["tasks_running"]["memory"],
        mib(&status["retained_bytes"]),
        mib(&status["budget_bytes"]),
        totals["started"],
        totals["completed"],
        totals["rejected"],
        totals["cancelled"],
    )
}

pub fn describe_distribution(distribution: &BTreeMap<String, u64>) -> String {
    let total: u64 = distribution.values().sum();
    if total == 0 {
        return "served so far: nothing yet".into();
    }
    let parts: Vec<String> = distribution
        .iter()
        .map(|(pod, count)| format!("{pod} {count} ({:.0}%)", 100.0 * *count as f64 / total as f64))
        .collect();
    format!("served so far: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_reads_the_consumers_fields() {
        let status = serde_json::json!({
            "tasks_running": {"cpu": 3, "memory": 2},
            "retained_bytes": 10 << 20,
            "budget_bytes": 1024 << 20,
            "totals": {"started": 9, "completed": 6, "rejected": 1, "cancelled": 0}
        });
        assert_eq!(
            describe_status("consumer-a", &status),
            "monitor: consumer-a: running cpu 3 memory 2; retained 10 MiB of 1024 MiB budget; started 9 completed 6 rejected 1 cancelled 0"
        );
    }

    #[test]
    fn the_distribution_line_gives_shares() {
        let distribution = BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 1)]);
        assert_eq!(describe_distribution(&distribution), "served so far: a 3 (75%), b 1 (25%)");
    }
}
