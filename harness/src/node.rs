//! One node's cores shared by its pods as the kernel's CFS shares them, for `--node-cores`: every replica capped at its
//! CPU limit, the node's cores split by weight (the CPU request) among what wants them, and each replica told its share
//! through its `NODE_SHARE_FILE` (its simulated tasks run at that). The node's other pods are taken to use what they
//! request: the rendered manifests' other workloads, KEDA's three Deployments and kind's control plane.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use surge_generator::prometheus::http_get;
use surge_keda::scaled_object::cpu_cores;

/// How often the shares follow the replicas' demand: a twentieth of a sync at x20.
const EVERY: Duration = Duration::from_millis(200);

/// CPU requests on a kind node outside the rendered manifests, in cores: KEDA v2.21's operator, metrics API server and
/// admission webhooks (100m each, `config/manager/manager.yaml`, `config/metrics-server/deployment.yaml`,
/// `config/webhooks/webhooks.yaml`), metrics-server v0.9.0 (100m, its release `components.yaml`; `make dev` installs
/// it), and kubeadm's static pods with kind's add-ons: kube-apiserver 250m, kube-controller-manager 200m,
/// kube-scheduler 100m, etcd 100m, two CoreDNS 100m, kindnet 100m.
pub(crate) const OUTSIDE_THE_MANIFESTS: f64 = 0.3 + 0.1 + 0.95;

/// What one pod asks of the node: the cores its threads could use now (at most its limit) and its CFS weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Claim {
    pub(crate) wants: f64,
    pub(crate) weight: f64,
}

/// CFS over cgroups: each claim gets at most what it wants, and the cores are split by weight among the rest
/// (weighted max-min: the level `l` at which `sum(min(wants, l * weight)) == cores`). Everyone gets what they want when
/// it all fits.
pub(crate) fn cfs_shares(cores: f64, claims: &[Claim]) -> Vec<f64> {
    let wanted: f64 = claims.iter().map(|c| c.wants).sum();
    if wanted <= cores {
        return claims.iter().map(|c| c.wants).collect();
    }
    // Claims satisfied in order of wants per weight; the rest share what is left by weight.
    let mut order: Vec<usize> = (0..claims.len()).collect();
    let per_weight = |c: &Claim| if c.weight > 0.0 { c.wants / c.weight } else { f64::INFINITY };
    order.sort_by(|&a, &b| per_weight(&claims[a]).total_cmp(&per_weight(&claims[b])));
    let (mut left, mut weight_left) = (cores, claims.iter().map(|c| c.weight).sum::<f64>());
    let mut level = f64::INFINITY;
    for &i in &order {
        let claim = &claims[i];
        if weight_left <= 0.0 {
            break;
        }
        let fair = left / weight_left;
        if per_weight(claim) > fair {
            level = fair;
            break;
        }
        left -= claim.wants;
        weight_left -= claim.weight;
    }
    claims.iter().map(|c| c.wants.min(level * c.weight)).collect()
}

/// The CPU requests of every container the manifests run, but the consumer's (each Deployment and StatefulSet times
/// its replicas, each DaemonSet once): the node's other pods, taken to use what they request.
pub(crate) fn others_requests(objects: &[Value]) -> f64 {
    objects
        .iter()
        .filter(|o| ["Deployment", "StatefulSet", "DaemonSet"].contains(&o["kind"].as_str().unwrap_or("")))
        .filter(|o| o["metadata"]["name"] != "consumer")
        .map(|o| {
            let replicas = o["spec"]["replicas"].as_f64().unwrap_or(1.0);
            let containers = o["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
            let requested: f64 =
                containers.iter().filter_map(|c| cpu_cores(&c["resources"]["requests"]["cpu"]).ok()).sum();
            replicas * requested
        })
        .sum()
}

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
    // A container without a request still has the kernel's minimum weight (2 of 1024 shares per core).
    let weight = |request: f64| request.max(2.0 / 1024.0);
    let mut claims = vec![Claim { wants: others, weight: weight(others) }];
    claims.extend(pods.iter().map(|p| Claim { wants: demand(p.port).min(p.limit), weight: weight(p.request) }));
    let shares = cfs_shares(cores, &claims);
    for (pod, share) in pods.iter().zip(&shares[1..]) {
        // A replica that wants nothing now could have its limit the moment it does: tell it what it would get then.
        let share = if *share > 0.0 { *share } else { pod.limit.min(cores) };
        let _ = write_share(&pod.share_file, share);
    }
}

/// Replaced whole (by rename), so the replica never reads half a number.
fn write_share(path: &std::path::Path, cores: f64) -> Result<(), String> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, format!("{cores:.4}")).map_err(|e| e.to_string())?;
    std::fs::rename(&temp, path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(wants: f64, weight: f64) -> Claim {
        Claim { wants, weight }
    }

    /// Cases in the shape of the kernel's CFS between cgroups of `cpu.shares` proportional to the request.
    #[test]
    fn the_node_shares_its_cores_by_weight_up_to_what_each_wants() {
        let cases: &[(&str, f64, Vec<Claim>, Vec<f64>)] = &[
            ("everything fits", 4.0, vec![claim(1.0, 0.1), claim(0.5, 0.1), claim(1.2, 1.2)], vec![1.0, 0.5, 1.2]),
            ("equal weights split evenly", 2.0, vec![claim(1.0, 0.1); 4], vec![0.5; 4]),
            (
                "the small asker keeps what it wants",
                2.0,
                vec![claim(0.2, 0.1), claim(1.0, 0.1), claim(1.0, 0.1)],
                vec![0.2, 0.9, 0.9],
            ),
            ("by weight", 3.0, vec![claim(3.0, 2.0), claim(3.0, 1.0)], vec![2.0, 1.0]),
            (
                "weight left over goes on",
                4.0,
                vec![claim(0.5, 2.0), claim(4.0, 1.0), claim(4.0, 1.0)],
                vec![0.5, 1.75, 1.75],
            ),
            ("nobody wants anything", 4.0, vec![claim(0.0, 0.1), claim(0.0, 1.0)], vec![0.0, 0.0]),
        ];
        for (name, cores, claims, expected) in cases {
            let shares = cfs_shares(*cores, claims);
            let close = shares.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-9);
            assert!(close, "{name}: {shares:?}, expected {expected:?}");
            let given: f64 = shares.iter().sum();
            assert!(given <= cores + 1e-9, "{name}: {given} cores given of {cores}");
        }
    }

    #[test]
    fn the_other_pods_request_what_their_containers_ask_times_their_replicas() {
        let objects: Vec<Value> = serde_json::from_value(serde_json::json!([
            {"kind": "Deployment", "metadata": {"name": "consumer"}, "spec": {"replicas": 1, "template": {"spec":
                {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}}},
            {"kind": "Deployment", "metadata": {"name": "grafana"}, "spec": {"replicas": 2, "template": {"spec":
                {"containers": [{"resources": {"requests": {"cpu": "100m"}}}, {"resources": {}}]}}}},
            {"kind": "StatefulSet", "metadata": {"name": "redis"}, "spec": {"template": {"spec":
                {"containers": [{"resources": {"requests": {"cpu": 0.25}}}]}}}},
            {"kind": "Job", "metadata": {"name": "load"}, "spec": {"template": {"spec":
                {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}}},
        ]))
        .expect("objects");
        assert!((others_requests(&objects) - 0.45).abs() < 1e-9, "{}", others_requests(&objects));
    }
}
