//! What a node holds beside the consumer: the rendered manifests' other workloads, taken to use what they request, and
//! what a kind node runs outside the manifests. The closed loop's node and the simulator's both start from it.

use serde_json::Value;

use crate::scaled_object::cpu_cores;

/// CPU requests on a kind node outside the rendered manifests, in cores: KEDA v2.21's operator, metrics API server and
/// admission webhooks (100m each, `config/manager/manager.yaml`, `config/metrics-server/deployment.yaml`,
/// `config/webhooks/webhooks.yaml`), metrics-server v0.9.0 (100m, its release `components.yaml`; `make dev` installs
/// it), and kubeadm's static pods with kind's add-ons: kube-apiserver 250m, kube-controller-manager 200m,
/// kube-scheduler 100m, etcd 100m, two CoreDNS 100m, kindnet 100m.
pub const OUTSIDE_THE_MANIFESTS: f64 = 0.3 + 0.1 + 0.95;

/// The CPU requests of every container the manifests run, but the consumer's (each Deployment and StatefulSet times
/// its replicas, each DaemonSet once): the node's other pods, taken to use what they request.
pub fn others_requests(objects: &[Value]) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
