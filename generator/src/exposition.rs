//! The generator's own `/metrics` while it runs (`--metrics-port`): what it offered and what came back, per profile,
//! so a dashboard can put offered load beside served load and the replicas that answered. Counters are cumulative
//! per profile for the life of the process; a tiny HTTP/1.1 responder serves them (one request per connection).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::engine::Job;
use crate::plan::Model;
use crate::schedule;
use crate::stats::{Buckets, Failure, Snapshot};

/// Reads one counter out of a run's snapshot.
type SnapshotCount = fn(&Snapshot) -> u64;

/// Reads one histogram out of a run's snapshot.
type SnapshotHistogram = fn(&Snapshot) -> &Buckets;

/// Latency bucket bounds, seconds: from a fast GET to a long sync task stretched under load.
const LATENCY_BOUNDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// End-to-end bucket bounds, seconds: an async task from acceptance to its finish, a second's work to a long wait.
const END_TO_END_BOUNDS: [f64; 11] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];

/// Send lag bucket bounds, seconds: on time (a timer's millisecond) to a machine stalled or a capped open model.
const SEND_LAG_BOUNDS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

struct Entry {
    profile: String,
    job: Arc<Job>,
    model: Model,
    started: Instant,
    finished: bool,
}

/// Every run of this process, in order.
#[derive(Default)]
pub struct Exposition {
    runs: Mutex<Vec<Entry>>,
}

impl Exposition {
    pub fn started(&self, profile: &str, job: Arc<Job>, model: &Model) {
        let entry =
            Entry { profile: profile.to_owned(), job, model: model.clone(), started: Instant::now(), finished: false };
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    pub fn finished(&self) {
        if let Some(last) = self.runs.lock().unwrap_or_else(|p| p.into_inner()).last_mut() {
            last.finished = true;
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let snapshots: Vec<_> =
            runs.iter().map(|r| (r, r.job.recorder.snapshot(&LATENCY_BOUNDS, &SEND_LAG_BOUNDS))).collect();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, lines: &mut dyn FnMut(&mut String)| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            lines(&mut out);
        };
        let counters: [(&str, &str, SnapshotCount); 3] = [
            ("generator_requests_sent_total", "Requests sent (each once, retries apart).", |s| s.sent),
            ("generator_requests_succeeded_total", "Requests answered 2xx or 3xx.", |s| s.succeeded),
            ("generator_requests_retried_total", "503s sent again after their Retry-After.", |s| s.retried),
        ];
        for (name, help, value) in counters {
            family(name, "counter", help, &mut |out| {
                for (run, snapshot) in &snapshots {
                    let _ = writeln!(out, "{name}{{profile=\"{}\"}} {}", run.profile, value(snapshot));
                }
            });
        }
        family("generator_requests_failed_total", "counter", "Requests that failed, by cause.", &mut |out| {
            for (run, snapshot) in &snapshots {
                for failure in Failure::ALL {
                    let count = snapshot.failed[failure as usize];
                    let _ = writeln!(
                        out,
                        "generator_requests_failed_total{{profile=\"{}\",cause=\"{}\"}} {count}",
                        run.profile,
                        failure.key()
                    );
                }
            }
        });
        let histograms: [(&str, &str, &[f64], SnapshotHistogram); 2] = [
            (
                "generator_request_duration_seconds",
                "From the intended send time to the whole response.",
                &LATENCY_BOUNDS,
                |s| &s.latency,
            ),
            (
                "generator_send_lag_seconds",
                "From the intended send time to the moment the request went out (the generator falling behind).",
                &SEND_LAG_BOUNDS,
                |s| &s.send_lag,
            ),
        ];
        for (name, help, bounds, buckets) in histograms {
            family(name, "histogram", help, &mut |out| {
                for (run, snapshot) in &snapshots {
                    write_histogram(out, name, &run.profile, bounds, buckets(snapshot));
                }
            });
        }
        let tasks: Vec<_> = runs.iter().map(|r| (&r.profile, r.job.follower.counts(&END_TO_END_BOUNDS))).collect();
        let help = "Async tasks answered 200, followed to their end (GET /process/results).";
        family("generator_tasks_accepted_total", "counter", help, &mut |out| {
            for (profile, counts) in &tasks {
                let _ = writeln!(out, "generator_tasks_accepted_total{{profile=\"{profile}\"}} {}", counts.accepted);
            }
        });
        let help = "Followed async tasks seen at their end, by status.";
        family("generator_tasks_ended_total", "counter", help, &mut |out| {
            for (profile, counts) in &tasks {
                for (status, count) in counts.ended {
                    let _ = writeln!(
                        out,
                        "generator_tasks_ended_total{{profile=\"{profile}\",status=\"{status}\"}} {count}"
                    );
                }
            }
        });
        let name = "generator_task_end_to_end_seconds";
        let help = "Followed async tasks, accepted to finished by the consumer's clock.";
        family(name, "histogram", help, &mut |out| {
            for (profile, counts) in &tasks {
                write_histogram(out, name, profile, &END_TO_END_BOUNDS, &counts.e2e);
            }
        });
        let help = "Arrivals per second the schedule intends now (open model; 0 once the run ended).";
        family("generator_target_rate", "gauge", help, &mut |out| {
            for (run, _) in &snapshots {
                if let Model::Open { start_rate, stages, .. } = &run.model {
                    let rate = if run.finished {
                        0.0
                    } else {
                        schedule::rate_at(*start_rate, stages, run.started.elapsed().as_secs_f64())
                    };
                    let _ = writeln!(out, "generator_target_rate{{profile=\"{}\"}} {rate}", run.profile);
                }
            }
        });
        family("generator_run_active", "gauge", "1 while the profile is being sent.", &mut |out| {
            for (run, _) in &snapshots {
                let _ =
                    writeln!(out, "generator_run_active{{profile=\"{}\"}} {}", run.profile, u8::from(!run.finished));
            }
        });
        out
    }
}

/// One profile's series of histogram `name` in the text format.
fn write_histogram(out: &mut String, name: &str, profile: &str, bounds: &[f64], buckets: &Buckets) {
    for (bound, count) in bounds.iter().zip(&buckets.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{profile=\"{profile}\",le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{profile=\"{profile}\",le=\"+Inf\"}} {}", buckets.count);
    let _ = writeln!(out, "{name}_sum{{profile=\"{profile}\"}} {}", buckets.sum_seconds);
    let _ = writeln!(out, "{name}_count{{profile=\"{profile}\"}} {}", buckets.count);
}

/// Answers `GET /metrics` on `listener` until the process ends; anything else is a 404.
pub async fn serve(listener: TcpListener, exposition: Arc<Exposition>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let exposition = Arc::clone(&exposition);
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let response = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
                let body = exposition.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
