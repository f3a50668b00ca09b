//! The load Job's generator pods: one process per shard (`--shard INDEX/COUNT`, as an Indexed Job's pods split a
//! profile), each read for when it stops sending and for its summary; the summaries added up as one Job's.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::{json, Map, Value};

/// One generator process.
struct Shard {
    child: Child,
    /// It says it follows its accepted tasks to their end, or has printed its summary: it sends nothing more.
    sent_all: Arc<AtomicBool>,
    /// Its stdout, the JSON summary, once it exits.
    summary: JoinHandle<String>,
}

pub(crate) struct Load {
    shards: Vec<Shard>,
}

impl Load {
    /// Starts one generator per metrics port in `ports`, each with `args` and, when there are several, its shard.
    pub(crate) fn start(generator: &Path, args: &[String], ports: &[u16]) -> Result<Self, String> {
        let count = ports.len();
        let mut shards = Vec::with_capacity(count);
        for (index, port) in ports.iter().enumerate() {
            let mut command = Command::new(generator);
            command.args(args).args(["--metrics-port", &port.to_string()]);
            if count > 1 {
                command.arg("--shard").arg(format!("{index}/{count}"));
            }
            let mut child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("{}: {e}", generator.display()))?;
            let sent_all = Arc::new(AtomicBool::new(false));
            let errors = BufReader::new(child.stderr.take().ok_or("generator stderr")?);
            let following = Arc::clone(&sent_all);
            std::thread::spawn(move || {
                for line in errors.lines().map_while(Result::ok) {
                    if line.starts_with("following ") {
                        following.store(true, Ordering::Relaxed);
                    }
                }
            });
            let mut out = child.stdout.take().ok_or("generator stdout")?;
            let printed = Arc::clone(&sent_all);
            let summary = std::thread::spawn(move || {
                let (mut text, mut chunk) = (String::new(), [0u8; 4096]);
                while let Ok(n @ 1..) = out.read(&mut chunk) {
                    text.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    if serde_json::from_str::<Value>(&text).is_ok() {
                        printed.store(true, Ordering::Relaxed);
                    }
                }
                text
            });
            shards.push(Shard { child, sent_all, summary });
        }
        Ok(Self { shards })
    }

    /// Every shard has stopped sending: it follows its tasks, has printed its summary, or has exited.
    pub(crate) fn sent_all(&mut self) -> Result<bool, String> {
        for shard in &mut self.shards {
            let exited = shard.child.try_wait().map_err(|e| e.to_string())?.is_some();
            if !(exited || shard.sent_all.load(Ordering::Relaxed)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Waits for every shard to exit and adds up their summaries (`Value::Null` for one that printed none).
    pub(crate) fn summary(self) -> Value {
        let summaries: Vec<Value> = self
            .shards
            .into_iter()
            .map(|mut shard| {
                let text = shard.summary.join().unwrap_or_default();
                let _ = shard.child.wait();
                serde_json::from_str(&text).unwrap_or(Value::Null)
            })
            .collect();
        add_up(&summaries)
    }
}

/// The value at `path` of nested objects.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(*k))
}

/// One Job's summary from its pods': counts summed (requests, retries, failures by cause, tasks by outcome), latency
/// figures the highest shard's (percentiles cannot be added; the highest bounds the Job's), the rest the first's.
fn add_up(summaries: &[Value]) -> Value {
    match summaries {
        [] => Value::Null,
        [one] => one.clone(),
        [first, ..] => {
            let mut total = first.clone();
            let sum = |path: &[&str]| -> Value {
                let mut any = false;
                let added: f64 = summaries
                    .iter()
                    .filter_map(|s| at(s, path))
                    .filter_map(Value::as_f64)
                    .inspect(|_| any = true)
                    .sum();
                if any {
                    json!(added as u64)
                } else {
                    Value::Null
                }
            };
            let highest = |path: &[&str]| -> Value {
                summaries
                    .iter()
                    .filter_map(|s| at(s, path))
                    .filter_map(Value::as_f64)
                    .reduce(f64::max)
                    .map_or(Value::Null, Value::from)
            };
            for key in ["sent", "succeeded", "retried"] {
                total[key] = sum(&[key]);
            }
            let keys = |path: &[&str]| -> Vec<String> {
                at(first, path).and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default()
            };
            total["failed"] =
                Value::Object(keys(&["failed"]).iter().map(|k| (k.clone(), sum(&["failed", k]))).collect());
            if first["tasks"].is_object() {
                let mut tasks: Map<String, Value> = Map::new();
                for key in keys(&["tasks"]) {
                    if key == "e2e_ms" {
                        let percentiles = keys(&["tasks", "e2e_ms"]);
                        let e2e = percentiles.iter().map(|p| (p.clone(), highest(&["tasks", "e2e_ms", p])));
                        tasks.insert(key, Value::Object(e2e.collect()));
                    } else {
                        tasks.insert(key.clone(), sum(&["tasks", &key]));
                    }
                }
                total["tasks"] = Value::Object(tasks);
            }
            total["send_lag_ms"]["max"] = highest(&["send_lag_ms", "max"]);
            total["shards"] = summaries.len().into();
            total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_summary_adds_its_pods_counts_and_keeps_the_highest_latency() {
        let shard = |sent: u64, p95: f64, lag: f64| {
            json!({"profile": "heavy", "sent": sent, "succeeded": sent - 1, "retried": 2,
                   "failed": {"timeout": 1, "overload": 0},
                   "tasks": {"accepted": sent - 1, "completed": sent - 1, "failed": 0, "e2e_ms": {"p95": p95, "max": p95 * 2.0}},
                   "send_lag_ms": {"max": lag}})
        };
        let one = shard(10, 100.0, 3.0);
        assert_eq!(add_up(std::slice::from_ref(&one)), one, "one pod's summary is the Job's");
        let total = add_up(&[shard(10, 100.0, 3.0), shard(12, 250.0, 1.0), shard(9, 80.0, 7.0)]);
        assert_eq!(
            (&total["sent"], &total["succeeded"], &total["retried"], &total["failed"]),
            (&json!(31), &json!(28), &json!(6), &json!({"timeout": 3, "overload": 0}))
        );
        assert_eq!(
            total["tasks"],
            json!({"accepted": 28, "completed": 28, "failed": 0, "e2e_ms": {"p95": 250.0, "max": 500.0}})
        );
        assert_eq!(
            (&total["send_lag_ms"]["max"], &total["shards"], &total["profile"]),
            (&json!(7.0), &json!(3), &json!("heavy"))
        );
    }
}
