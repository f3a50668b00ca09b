//! `--prometheus URL --scaled-object FILE`: once per `--monitor-interval`, what KEDA and the HPA will decide, asked of
//! the cluster's Prometheus with the ScaledObject's own queries: each trigger's value against its target and the
//! replicas it asks for, the combined ask, and the Deployment's and the HPA's replicas from kube-state-metrics.
//! The same table `make demo` prints. Prometheus unreachable: one warning, and the load goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use surge_keda::hpa::MetricType;
use surge_keda::readers::{read, Sources};
use surge_keda::redis_streams::RedisStreams;
use surge_keda::scaled_object::documents;
use surge_keda::{evaluate, Ask, Failures, ScaledObject};

use crate::prometheus::{Compressed, Prom};
use crate::redis::Redis;

/// One reading of the autoscaling table, kept for the report.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the table started.
    pub t: f64,
    pub replicas: Option<u32>,
    pub ready: Option<u32>,
    pub desired: Option<u32>,
    /// What KEDA compares with each trigger's threshold (AverageValue per replica), `None` when the query failed.
    pub compared: Vec<Option<f64>>,
    /// What the triggers ask for together (fallback included), within the ScaledObject's bounds.
    pub wants: u32,
}

pub struct Watch {
    /// `--time-scale`: range windows shrink and rates are read per compressed second, as the harness reads them.
    time_scale: f64,
    prometheus: Prom,
    /// `--redis`: where a redis-streams trigger is read.
    redis: Option<Redis>,
    url: String,
    so: ScaledObject,
    namespace: String,
    deployment: String,
    hpa: String,
    /// Each trigger's failure streak, as KEDA counts it toward the fallback.
    failures: Failures,
    /// When the previous row was read (seconds since the table started).
    last_row: f64,
}

impl Watch {
    /// Reads the ScaledObject (the keda component's file, or any rendered stream holding one).
    pub fn load(url: &str, scaled_object: &str, redis: Option<&str>, time_scale: f64) -> Result<Self, String> {
        let text = std::fs::read_to_string(scaled_object).map_err(|e| format!("{scaled_object}: {e}"))?;
        let objects = documents(&text)?;
        let manifest =
            objects.iter().find(|o| o["kind"] == "ScaledObject").ok_or(format!("{scaled_object}: no ScaledObject"))?;
        let name = manifest["metadata"]["name"].as_str().unwrap_or("consumer");
        Ok(Self {
            time_scale,
            prometheus: Prom::parse(url)?,
            redis: redis.map(Redis::parse).transpose()?,
            url: url.to_owned(),
            so: ScaledObject::from_manifest(manifest)?,
            namespace: manifest["metadata"]["namespace"].as_str().unwrap_or("surge").to_owned(),
            deployment: manifest["spec"]["scaleTargetRef"]["name"].as_str().unwrap_or(name).to_owned(),
            // KEDA names the HPA it creates after the ScaledObject.
            hpa: format!("keda-hpa-{name}"),
            failures: Failures::default(),
            last_row: 0.0,
        })
    }

    /// The ScaledObject's minimum replicas: where a scale-down ends.
    pub fn min_replicas(&self) -> u32 {
        self.so.scaling.min
    }

    /// Each trigger's name, threshold and whether KEDA averages it over the replicas.
    pub fn triggers(&self) -> Vec<(String, f64, bool)> {
        self.so.triggers.iter().map(|t| (t.name.clone(), t.threshold, t.kind == MetricType::AverageValue)).collect()
    }

    pub fn header(&self) -> String {
        let triggers: Vec<String> = self.so.triggers.iter().map(|t| format!("{} ({})", t.name, t.threshold)).collect();
        format!("autoscaling  t(s)  replicas ready hpa-desired asks | {}", triggers.join(" | "))
    }

    fn gauge(&self, query: String) -> Result<Option<u32>, String> {
        let value = self.prometheus.value(&format!("{query} or vector(-1)"))?;
        Ok((value >= 0.0).then_some(value as u32))
    }

    /// One line, and its figures; an error when Prometheus does not answer.
    pub fn row(&mut self, elapsed: Duration) -> Result<(String, Sample), String> {
        let (ns, deployment) = (&self.namespace, &self.deployment);
        let replicas = self
            .gauge(format!(r#"sum(kube_deployment_status_replicas{{namespace="{ns}", deployment="{deployment}"}})"#))?;
        let ready = self.gauge(format!(
            r#"sum(kube_deployment_status_replicas_ready{{namespace="{ns}", deployment="{deployment}"}})"#
        ))?;
        let desired = self.gauge(format!(
            r#"sum(kube_horizontalpodautoscaler_status_desired_replicas{{namespace="{ns}", horizontalpodautoscaler="{}"}})"#,
            self.hpa
        ))?;
        let current = replicas.unwrap_or(1).max(1);
        let prometheus = Compressed { prometheus: &self.prometheus, factor: self.time_scale };
        let values = read(&self.so.triggers, &Asked { prometheus, redis: self.redis.as_ref() });
        // Failures count in the autoscaler's clock, which runs `time_scale` times faster under compression.
        let seconds = (elapsed.as_secs_f64() - self.last_row) * self.time_scale.max(1.0);
        self.last_row = elapsed.as_secs_f64();
        let decision = evaluate(&self.so, &values, current, ready.unwrap_or(current), &mut self.failures, seconds);
        let mut compared = Vec::new();
        let cells: Vec<String> = self
            .so
            .triggers
            .iter()
            .zip(&values)
            .zip(&decision.asks)
            .map(|((t, value), ask)| {
                let per_replica = value.as_ref().ok().map(|v| {
                    if t.kind == MetricType::AverageValue {
                        v / f64::from(current)
                    } else {
                        *v
                    }
                });
                compared.push(per_replica);
                match (value, ask) {
                    (Ok(value), Ask::Replicas(n)) => format!("{value:.2} -> {n}"),
                    (Err(e), Ask::Fallback(n)) => format!("error: {e} -> fallback {n}"),
                    (Err(e), _) => format!("error: {e}"),
                    (Ok(value), _) => format!("{value:.2}"),
                }
            })
            .collect();
        // No proposal: the HPA keeps the replicas this sync.
        let wants = decision.proposal.unwrap_or(current).clamp(self.so.scaling.min, self.so.scaling.max);
        let show = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let sample = Sample { t: elapsed.as_secs_f64(), replicas, ready, desired, compared, wants };
        let line = format!(
            "autoscaling {:>5.0}  {:>8} {:>5} {:>11} {:>4} | {}",
            elapsed.as_secs_f64(),
            show(replicas),
            show(ready),
            show(desired),
            sample.wants,
            cells.join(" | ")
        );
        Ok((line, sample))
    }

    /// Prints the header, then a row every `interval` on stderr until `stop` is set; keeps each row's figures in
    /// `samples`.
    pub fn spawn(
        mut self,
        interval: Duration,
        stop: Arc<AtomicBool>,
        samples: Arc<Mutex<Vec<Sample>>>,
    ) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut warned = false;
            eprintln!("{}", self.header());
            while !stop.load(Ordering::Relaxed) {
                match self.row(started.elapsed()) {
                    Ok((line, sample)) => {
                        eprintln!("{line}");
                        samples.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                    }
                    Err(e) if !warned => {
                        warned = true;
                        eprintln!("warning: Prometheus at {} does not answer ({e}); the load goes on", self.url);
                    }
                    Err(_) => {}
                }
                let next = Instant::now() + interval;
                while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    }
}

/// What the table asks: Prometheus (compressed as the run is) and, for a redis-streams trigger, Redis.
struct Asked<'a> {
    prometheus: Compressed<'a>,
    redis: Option<&'a Redis>,
}

impl Sources for Asked<'_> {
    fn prometheus(&self, index: usize, query: &str) -> Result<(Vec<f64>, f64), String> {
        self.prometheus.prometheus(index, query)
    }

    fn redis_streams(&self, scaler: &RedisStreams) -> Result<f64, String> {
        self.redis.ok_or("a redis-streams trigger: pass --redis URL to read it")?.stream_count(scaler)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    const SCALED_OBJECT: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: consumer, namespace: surge}
spec:
  scaleTargetRef: {name: consumer}
  minReplicaCount: 1
  maxReplicaCount: 10
  pollingInterval: 5
  fallback: {failureThreshold: 3, replicas: 6, behavior: currentReplicasIfHigher}
  triggers:
    - {type: prometheus, name: backlog, metricType: AverageValue, metadata: {query: "sum(backlog)", threshold: "2"}}
    - {type: prometheus, name: stretch, metricType: Value, metadata: {query: "sum(stretch)", threshold: "1.5", ignoreNullValues: "false"}}
"#;

    /// A Prometheus that answers 4 replicas for the kube-state-metrics gauges, `backlog` for the first trigger and a
    /// 400 for the second, as Prometheus does for a query it cannot run.
    fn prometheus(backlog: f64) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let (status, body) = if line.contains("stretch") {
                    ("400 Bad Request", r#"{"status":"error","error":"bad_data"}"#.to_owned())
                } else {
                    let value = if line.contains("backlog") { backlog } else { 4.0 };
                    ("200 OK", format!(r#"{{"status":"success","data":{{"result":[{{"value":[0,"{value}"]}}]}}}}"#))
                };
                let mut stream = stream;
                let _ = write!(stream, "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn the_table_asks_what_the_harness_decides_fallback_included() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), SCALED_OBJECT).expect("write");
        let url = prometheus(2.0);
        let mut watch = Watch::load(&url, file.path().to_str().expect("path"), None, 1.0).expect("loads");
        // What the harness does with the same readings: `evaluate` over the same ScaledObject, poll after poll.
        let so = ScaledObject::from_manifest(&documents(SCALED_OBJECT).expect("yaml")[0]).expect("parses");
        let mut failures = Failures::default();
        let mut wanted = Vec::new();
        for poll in 1..=4 {
            let (line, sample) = watch.row(Duration::from_secs(5 * poll)).expect("a row");
            let harness = evaluate(&so, &[Ok(2.0), Err("400".into())], 4, 4, &mut failures, 5.0);
            assert_eq!(sample.wants, harness.proposal.unwrap_or(4).clamp(1, 10), "poll {poll}: {line}");
            wanted.push(sample.wants);
        }
        // backlog 2 on 4 replicas asks 1, the failing trigger holds 4 (no scale-down while a metric fails); KEDA counts
        // 1 + 1/3 failures a 5 s row (pollingInterval 5 s, HPA sync 15 s), so the third row is past the threshold of
        // 3 and the fallback asks max(4 current, 6): 6.
        assert_eq!(wanted, vec![4, 4, 6, 6]);
    }
}
