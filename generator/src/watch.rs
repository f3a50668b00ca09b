//! `--prometheus URL --scaled-object FILE`: once per `--monitor-interval`, what KEDA and the HPA will decide, asked of
//! the cluster's Prometheus with the ScaledObject's own queries: each trigger's value against its target and the
//! replicas it asks for, the combined ask, and the Deployment's and the HPA's replicas from kube-state-metrics.
//! The same table `make demo` prints. Prometheus unreachable: one warning, and the load goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::autoscale::MetricType;
use crate::autoscale::{combine, metric_replicas};
use crate::cluster::{compress_ranges, documents, is_rate, ScaledObject};
use crate::prometheus::Prom;

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
}

pub struct Watch {
    /// `--time-scale`: range windows shrink and rates are read per compressed second, as the harness reads them.
    time_scale: f64,
    prometheus: Prom,
    url: String,
    so: ScaledObject,
    namespace: String,
    deployment: String,
    hpa: String,
}

impl Watch {
    /// Reads the ScaledObject (the keda component's file, or any rendered stream holding one).
    pub fn load(url: &str, scaled_object: &str, time_scale: f64) -> Result<Self, String> {
        let text = std::fs::read_to_string(scaled_object).map_err(|e| format!("{scaled_object}: {e}"))?;
        let objects = documents(&text)?;
        let manifest =
            objects.iter().find(|o| o["kind"] == "ScaledObject").ok_or(format!("{scaled_object}: no ScaledObject"))?;
        let name = manifest["metadata"]["name"].as_str().unwrap_or("consumer");
        Ok(Self {
            time_scale,
            prometheus: Prom::parse(url)?,
            url: url.to_owned(),
            so: ScaledObject::from_manifest(manifest)?,
            namespace: manifest["metadata"]["namespace"].as_str().unwrap_or("surge").to_owned(),
            deployment: manifest["spec"]["scaleTargetRef"]["name"].as_str().unwrap_or(name).to_owned(),
            // KEDA names the HPA it creates after the ScaledObject.
            hpa: format!("keda-hpa-{name}"),
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

    /// A trigger's value as the cluster's Prometheus reads it now (compressed like the harness under --time-scale).
    fn read(&self, query: &str) -> Result<f64, String> {
        if self.time_scale > 1.0 {
            let value = self.prometheus.value(&compress_ranges(query, self.time_scale))?;
            Ok(if is_rate(query) { value / self.time_scale } else { value })
        } else {
            self.prometheus.value(query)
        }
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
    pub fn row(&self, elapsed: Duration) -> Result<(String, Sample), String> {
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
        let mut asks = Vec::new();
        let mut compared = Vec::new();
        let cells: Vec<String> = self
            .so
            .triggers
            .iter()
            .map(|t| match self.read(&t.query) {
                Ok(value) => {
                    let n = metric_replicas(t.kind, value, t.threshold, current, ready.unwrap_or(current));
                    asks.push(Some(n));
                    let per_replica =
                        if t.kind == MetricType::AverageValue { value / f64::from(current) } else { value };
                    compared.push(Some(per_replica));
                    format!("{value:.2} -> {n}")
                }
                Err(e) => {
                    asks.push(None);
                    compared.push(None);
                    format!("error: {e}")
                }
            })
            .collect();
        let wants = combine(&asks, current).clamp(self.so.scaling.min, self.so.scaling.max);
        let show = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let sample = Sample { t: elapsed.as_secs_f64(), replicas, ready, desired, compared };
        let line = format!(
            "autoscaling {:>5.0}  {:>8} {:>5} {:>11} {:>4} | {}",
            elapsed.as_secs_f64(),
            show(replicas),
            show(ready),
            show(desired),
            wants,
            cells.join(" | ")
        );
        Ok((line, sample))
    }

    /// Prints the header, then a row every `interval` on stderr until `stop` is set; keeps each row's figures in
    /// `samples`.
    pub fn spawn(self, interval: Duration, stop: Arc<AtomicBool>, samples: Arc<Mutex<Vec<Sample>>>) -> JoinHandle<()> {
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
