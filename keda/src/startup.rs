//! A replica's way from created to serving, in the cluster's seconds: bound to the node when its request fits, its
//! container started, its startup probe and then its readiness probe passed (the rendered Deployment's probes, ticking
//! as the kubelet's probe workers tick), then the endpoints updated so the Service sends it connections.

use serde_json::Value;

/// From binding to the container's start on a node that already holds the image (`make dev` loads it; pull policy
/// IfNotPresent): sandbox, network and container creation. Kubernetes' pod start-up SLO allows 5 s at the 99th
/// percentile for this path with the scheduling before it (sig-scalability `slos/pod_startup_latency.md`); 1 s is
/// what an idle kind node takes, not measured here (no cluster runs on this machine).
pub const CONTAINER_START_SECONDS: f64 = 1.0;

/// From Ready to the Service sending connections: the EndpointSlice update, then kube-proxy's next sync, at most one
/// `minSyncPeriod` later (1 s by default, `pkg/proxy/apis/config/v1alpha1/defaults.go`).
pub const ENDPOINTS_SECONDS: f64 = 1.0;

/// One probe as the kubelet runs it (`pkg/kubelet/prober/worker.go`): a first tick when the container starts, then one
/// every `period`; ticks before `initial_delay` are skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    initial_delay: f64,
    period: f64,
}

impl Probe {
    /// The probe of a container's manifest, with the API's defaults (`periodSeconds` 10, `initialDelaySeconds` 0).
    fn from_manifest(probe: &Value) -> Option<Self> {
        probe.is_object().then(|| Self {
            initial_delay: probe["initialDelaySeconds"].as_f64().unwrap_or(0.0),
            period: probe["periodSeconds"].as_f64().unwrap_or(10.0).max(1.0),
        })
    }

    /// The first tick that probes at or after `t` seconds from the container's start.
    fn first_at_or_after(&self, t: f64) -> f64 {
        (t.max(self.initial_delay) / self.period).ceil() * self.period
    }
}

/// The container's startup and readiness probes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartupPath {
    startup: Option<Probe>,
    readiness: Option<Probe>,
}

impl StartupPath {
    pub fn from_container(container: &Value) -> Self {
        Self {
            startup: Probe::from_manifest(&container["startupProbe"]),
            readiness: Probe::from_manifest(&container["readinessProbe"]),
        }
    }

    /// Seconds from the container's start to the pod's Ready condition, for a process that answers `listening`
    /// seconds after its start: the first startup tick that finds it, then the first readiness tick after that (the
    /// readiness worker's results count only once the startup probe has succeeded). No readiness probe: Ready once
    /// started.
    pub fn ready_after(&self, listening: f64) -> f64 {
        let started = self.startup.map_or(listening, |p| p.first_at_or_after(listening));
        self.readiness.map_or(started, |p| p.first_at_or_after(started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_at_the_first_readiness_tick_after_the_first_startup_tick_that_finds_the_process() {
        let development = json!({
            "startupProbe": {"periodSeconds": 1, "failureThreshold": 30},
            "readinessProbe": {"periodSeconds": 2, "timeoutSeconds": 1},
        });
        let cases: &[(&str, Value, f64, f64)] = &[
            ("the development pod, listening at once: its first ticks", development.clone(), 0.0, 0.0),
            ("listening after 0.3 s: startup at 1, readiness at 2", development.clone(), 0.3, 2.0),
            ("listening after 2.5 s: startup at 3, readiness at 4", development, 2.5, 4.0),
            (
                "initial delays skip early ticks",
                json!({"startupProbe": {"periodSeconds": 2, "initialDelaySeconds": 3},
                       "readinessProbe": {"periodSeconds": 5, "initialDelaySeconds": 7}}),
                0.1,
                10.0,
            ),
            ("the API's default period (10 s)", json!({"readinessProbe": {}}), 0.5, 10.0),
            ("no probes: ready once listening", json!({}), 0.4, 0.4),
        ];
        for (name, container, listening, ready) in cases {
            let path = StartupPath::from_container(container);
            assert_eq!(path.ready_after(*listening), *ready, "{name}");
        }
    }
}
