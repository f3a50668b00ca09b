//! One node's cores shared by its pods as the kernel's CFS shares them (the rule: `surge_capacity::node`), for
//! `--node-cores`: every replica capped at its CPU limit, the node's cores split by weight (the CPU request) among what
//! wants them, and each replica told its share through its `NODE_SHARE_FILE` (its simulated tasks run at that). The node's other pods are taken to use what they
//! request: the rendered manifests' other workloads, KEDA's three Deployments and kind's control plane.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use surge_capacity::node::{pod_shares, OnNode};
use surge_generator::prometheus::http_get;

/// How often the shares follow the replicas' demand: a twentieth of a sync at x20.
const EVERY: Duration = Duration::from_millis(200);

/// One replica on the node: where it answers, where its share is written, its request and limit.
#[derive(Clone)]
pub(crate) struct NodePod {
    pub(crate) port: u16,
    pub(crate) share_file: PathBuf,
    pub(crate) request: f64,
    pub(crate) limit: f64,
}

/// The node, following its replicas' demand on a thread of its own until dropped.
pub(crate) struct Node {
    pods: Arc<Mutex<Vec<NodePod>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// `cores` the node's allocatable CPU; `others` what its other pods request (and use).
    pub(crate) fn start(cores: f64, others: f64) -> Self {
        let pods: Arc<Mutex<Vec<NodePod>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (pods, stop) = (Arc::clone(&pods), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    // A copy: a replica starting meanwhile need not wait for the sweep's HTTP rounds.
                    let on_node = pods.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    share_out(cores, others, &on_node);
                    std::thread::sleep(EVERY);
                }
            }
        });
        Self { pods, stop, thread: Some(thread) }
    }

    /// A replica's share before it has asked for anything: its limit (an idle node).
    pub(crate) fn admit(&self, pod: NodePod) -> Result<(), String> {
        write_share(&pod.share_file, pod.limit)?;
        self.pods.lock().unwrap_or_else(PoisonError::into_inner).push(pod);
        Ok(())
    }

    /// A replica gone from the node (its process has exited).
    pub(crate) fn remove(&self, port: u16) {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner).retain(|p| p.port != port);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads each replica's CPU demand, shares the node's cores and writes each replica its share.
fn share_out(cores: f64, others: f64, pods: &[NodePod]) {
    let demand = |port: u16| {
        http_get("127.0.0.1", port, "/process/status")
            .ok()
            .filter(|(status, _)| *status == 200)
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .and_then(|status| status["cpu"]["demand_cores"].as_f64())
            .unwrap_or(0.0)
    };
    let on_node: Vec<OnNode> =
        pods.iter().map(|p| OnNode { demand: demand(p.port), request: p.request, limit: p.limit }).collect();
    for (pod, share) in pods.iter().zip(pod_shares(cores, others, &on_node)) {
        let _ = write_share(&pod.share_file, share);
    }
}

/// Replaced whole (by rename), so the replica never reads half a number.
fn write_share(path: &std::path::Path, cores: f64) -> Result<(), String> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, format!("{cores:.4}")).map_err(|e| e.to_string())?;
    std::fs::rename(&temp, path).map_err(|e| e.to_string())
}
