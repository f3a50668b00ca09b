//! The Deployment's pods as processes: consumer replicas started and drained as the autoscaler decides, taken into and
//! out of the Service (`service`) as they start and drain, and the scrape targets Kubernetes discovery would give them.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use surge_generator::prometheus::http_get;
use surge_keda::replicaset::{deletion_order, Candidate};
use surge_keda::resource::{Phase, Pod as ResourcePod, Readiness, Usage};
use surge_keda::startup::{StartupPath, CONTAINER_START_SECONDS, ENDPOINTS_SECONDS};

use crate::cgroup::PodCgroup;
use crate::metrics_server::Kubelet;
use crate::service::Service;

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("not ready within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A child process killed when dropped.
pub(crate) struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `__meta_kubernetes_*` labels discovery would give a consumer pod.
pub(crate) struct PodMeta {
    pub(crate) labels: serde_json::Map<String, Value>,
}

impl PodMeta {
    pub(crate) fn from_template(template: &Value, namespace: &str) -> Self {
        let mut labels = serde_json::Map::new();
        labels.insert("__meta_kubernetes_namespace".into(), namespace.into());
        labels.insert("__meta_kubernetes_pod_phase".into(), "Running".into());
        labels.insert("__meta_kubernetes_pod_node_name".into(), "node-1".into());
        let sanitise =
            |key: &str| key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
        for (key, value) in template["metadata"]["labels"].as_object().into_iter().flatten() {
            labels.insert(format!("__meta_kubernetes_pod_label_{}", sanitise(key)), value.clone());
        }
        for (key, value) in template["metadata"]["annotations"].as_object().into_iter().flatten() {
            labels.insert(format!("__meta_kubernetes_pod_annotation_{}", sanitise(key)), value.clone());
        }
        Self { labels }
    }
}

pub(crate) struct Pod {
    pub(crate) index: usize,
    pub(crate) draining: bool,
    created: Instant,
    /// Where it is on its way to serving.
    stage: Stage,
    /// Since when it has been Ready (its probes passed and its `/ready` answers 200), as its Ready condition's last
    /// transition.
    ready_since: Option<Instant>,
    uid: u64,
    /// Its limits as real cgroups (removed on drop, after its process: once the process is gone).
    cgroup: Option<PodCgroup>,
}

/// A pod's way from created to serving (`startup`), in wall-clock instants.
enum Stage {
    /// No node has room for its request: it waits for the scheduler, counted in the Deployment's replicas.
    Unscheduled,
    /// Bound to the node; its container starts at this instant.
    Bound(Instant),
    /// Its process runs.
    Started(Started),
}

struct Started {
    child: Owned,
    /// Reads the pod's log until it exits.
    log: Option<std::thread::JoinHandle<()>>,
    spawned: Instant,
    /// When its log said it listens (set by the log's reader: the sync loop never waits for a container to start).
    listening: Arc<OnceLock<Instant>>,
    /// The endpoints include it, so the Service sends it connections.
    in_service: bool,
}

impl Started {
    /// When its probes first pass (before it the kubelet does not call it Ready, whatever `/ready` says); `None`
    /// while it does not listen yet.
    fn ready_at(&self, startup: &StartupPath, time_scale: f64) -> Option<Instant> {
        let listening = self.listening.get()?.duration_since(self.spawned).as_secs_f64() * time_scale;
        Some(self.spawned + Duration::from_secs_f64(startup.ready_after(listening) / time_scale))
    }
}

impl Pod {
    fn started(&self) -> Option<&Started> {
        match &self.stage {
            Stage::Started(started) => Some(started),
            _ => None,
        }
    }
}

/// The Deployment's pods: started and drained as the autoscaler decides, published to HAProxy and Prometheus.
pub(crate) struct Pods {
    /// Tasks the pods logged as cancelled, over the whole run.
    pub(crate) cancelled: Arc<AtomicU64>,
    /// Async tasks the pods logged as completed, over the whole run (a drained pod's included).
    pub(crate) completed_async: Arc<AtomicU64>,
    pub(crate) list: Vec<Pod>,
    pub(crate) ports: Vec<u16>,
    pub(crate) consumer: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) service: Service,
    pub(crate) targets: PathBuf,
    pub(crate) meta: PodMeta,
    /// Other scrape targets of the run (kube-state-metrics' and KEDA's series, the generator), in discovery's shape.
    pub(crate) extra: Vec<Value>,
    /// Discovery has lost the consumer's pods (the others are still published): a Prometheus gone blind.
    pub(crate) hidden: bool,
    /// The run's compression: the cluster's seconds per wall second.
    pub(crate) time_scale: f64,
    /// The container's CPU (cores) and memory (bytes) limits, when each pod runs in real cgroups with them.
    pub(crate) cgroup_limits: Option<(f64, u64)>,
    /// The node the replicas share (`--node-cores`), with the container's CPU request and limit.
    pub(crate) node: Option<OnNode>,
    /// The container's probes: when a started pod is Ready.
    pub(crate) startup: StartupPath,
}

/// Replicas on a modelled node: placed while their requests fit beside the other pods', each told the share of its
/// cores the node gives it.
pub(crate) struct OnNode {
    pub(crate) node: crate::node::Node,
    /// How many replicas the scheduler has room for: the node's allocatable cores less what its other pods request,
    /// in whole requests.
    pub(crate) fit: u32,
    pub(crate) request: f64,
    pub(crate) limit: f64,
}

impl Pods {
    /// The Deployment's replicas: every pod not terminating, Pending ones included.
    pub(crate) fn replicas(&self) -> u32 {
        self.list.iter().filter(|p| !p.draining).count() as u32
    }

    /// Pods no node has room for.
    pub(crate) fn unscheduled(&self) -> u32 {
        self.list.iter().filter(|p| !p.draining && matches!(p.stage, Stage::Unscheduled)).count() as u32
    }

    /// Pods the Service sends connections to.
    pub(crate) fn serving(&self) -> u32 {
        let serving = |p: &&Pod| p.started().is_some_and(|s| s.in_service);
        self.list.iter().filter(|p| !p.draining).filter(serving).count() as u32
    }

    /// Probes every started pod's `/ready` once its probes have passed, keeping when each became ready; how many are.
    pub(crate) fn ready(&mut self) -> u32 {
        let now = Instant::now();
        let mut ready = 0;
        for pod in self.list.iter_mut().filter(|p| !p.draining) {
            let probes_passed =
                pod.started().and_then(|s| s.ready_at(&self.startup, self.time_scale)).is_some_and(|at| now >= at);
            let answers =
                probes_passed && http_get("127.0.0.1", self.ports[pod.index], "/ready").is_ok_and(|(c, _)| c == 200);
            if answers {
                pod.ready_since = pod.ready_since.or(Some(now));
                ready += 1;
            } else {
                pod.ready_since = None;
            }
        }
        ready
    }

    /// The started pods' processes and cgroups, for metrics-server's readings.
    pub(crate) fn kubelets(&self) -> Vec<Kubelet<'_>> {
        self.list
            .iter()
            .filter_map(|p| {
                Some(Kubelet {
                    slot: p.index,
                    port: self.ports[p.index],
                    pid: p.started()?.child.0.id(),
                    memory_cgroup: p.cgroup.as_ref().map(PodCgroup::memory_dir),
                })
            })
            .collect()
    }

    /// Every pod as the HPA's replica calculator lists it: `seconds` puts an instant on the autoscaler's clock,
    /// `usage` is what metrics-server reports for a pod slot, `request_milli` the resource's request of a pod.
    pub(crate) fn listed(
        &self,
        seconds: impl Fn(Instant) -> f64,
        usage: impl Fn(usize) -> Option<Usage>,
        request_milli: i64,
    ) -> Vec<ResourcePod> {
        self.list
            .iter()
            .map(|p| {
                let started = p.started();
                let started_at = started.map(|s| seconds(s.spawned));
                let readiness = started_at.map(|since| match p.ready_since {
                    Some(ready) => Readiness { ready: true, since: seconds(ready) },
                    None => Readiness { ready: false, since },
                });
                ResourcePod {
                    phase: if started.is_some() { Phase::Running } else { Phase::Pending },
                    deleting: p.draining,
                    started_at,
                    readiness,
                    request_milli,
                    usage: started.and_then(|_| usage(p.index)),
                }
            })
            .collect()
    }

    /// Every serving pod's `/process/status` (those that do not answer are left out).
    pub(crate) fn statuses(&self) -> Vec<Value> {
        self.list
            .iter()
            .filter(|p| !p.draining && p.started().is_some())
            .filter_map(|p| http_get("127.0.0.1", self.ports[p.index], "/process/status").ok())
            .filter(|(status, _)| *status == 200)
            .filter_map(|(_, body)| serde_json::from_str(&body).ok())
            .collect()
    }

    /// A new pod of the Deployment in a free slot: Pending until `advance` binds and starts it.
    pub(crate) fn add(&mut self) -> Result<(), String> {
        let index =
            (0..self.ports.len()).find(|i| self.list.iter().all(|p| p.index != *i)).ok_or("no free pod slot")?;
        let uid = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), index);
        let created = Instant::now();
        self.list.push(Pod {
            index,
            draining: false,
            created,
            stage: Stage::Unscheduled,
            ready_since: None,
            uid,
            cgroup: None,
        });
        Ok(())
    }

    /// Moves every pod along its way to serving, as far as the time and the node allow: the scheduler binds Pending
    /// pods in the order they were created while their requests fit (a terminating pod holds its request until it
    /// has exited), the kubelet starts bound ones' containers, and Ready ones join the Service after the endpoints
    /// update. Called often between syncs, so the start-up path keeps its own times.
    pub(crate) fn advance(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let container_start = Duration::from_secs_f64(CONTAINER_START_SECONDS / self.time_scale);
        let mut bound = self.list.iter().filter(|p| !matches!(p.stage, Stage::Unscheduled)).count() as u32;
        let mut order: Vec<usize> = (0..self.list.len()).collect();
        order.sort_by_key(|&i| self.list[i].created);
        let mut published = false;
        for i in order {
            if self.list[i].draining {
                continue;
            }
            if matches!(self.list[i].stage, Stage::Unscheduled) {
                let fits = self.node.as_ref().is_none_or(|on| bound < on.fit);
                if !fits {
                    continue;
                }
                bound += 1;
                self.list[i].stage = Stage::Bound(now + container_start);
            }
            if matches!(self.list[i].stage, Stage::Bound(at) if now >= at) {
                let started = self.start(self.list[i].index)?;
                self.list[i].cgroup = started.1;
                self.list[i].stage = Stage::Started(started.0);
                published = true;
            }
            let index = self.list[i].index;
            let endpoints = Duration::from_secs_f64(ENDPOINTS_SECONDS / self.time_scale);
            if let Stage::Started(started) = &mut self.list[i].stage {
                let ready_at = started.ready_at(&self.startup, self.time_scale);
                if !started.in_service && ready_at.is_some_and(|at| now >= at + endpoints) {
                    started.in_service = true;
                    self.service.enable(index)?;
                }
            }
        }
        if published {
            self.publish()?;
        }
        Ok(())
    }

    /// Starts slot `index`'s container: its process (in its cgroups, on the node), then when its probes pass.
    fn start(&mut self, index: usize) -> Result<(Started, Option<PodCgroup>), String> {
        let cgroup = match self.cgroup_limits {
            Some((cores, memory)) => {
                Some(PodCgroup::create(&format!("surge-harness-{}-{index}", std::process::id()), cores, memory)?)
            }
            None => None,
        };
        let mut command = cgroup.as_ref().map_or_else(|| Command::new(&self.consumer), |c| c.command(&self.consumer));
        if let Some(on) = &self.node {
            let share_file = self.targets.with_file_name(format!("node-share-{index}"));
            command.arg("--node-share-file").arg(&share_file);
            let port = self.ports[index];
            on.node.admit(crate::node::NodePod { port, share_file, request: on.request, limit: on.limit })?;
        }
        let spawned = Instant::now();
        let child = command
            .args(&self.args)
            .args(["--port", &self.ports[index].to_string()])
            .env("POD_NAME", format!("consumer-{index}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.consumer.display()))?;
        let mut child = Owned(child);
        // Its log read to its end on a thread of its own, so the pod never blocks on a full pipe: when it listens, and
        // the tasks that ended cancelled (a drain ends a pod's background work: work lost to a scale-down).
        let lines = BufReader::new(child.0.stdout.take().ok_or("consumer stdout")?).lines();
        let listening: Arc<OnceLock<Instant>> = Arc::default();
        let heard = Arc::clone(&listening);
        let cancelled = Arc::clone(&self.cancelled);
        let completed_async = Arc::clone(&self.completed_async);
        let log = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if heard.get().is_none() && line.contains("consumer listening") {
                    let _ = heard.set(Instant::now());
                }
                if !line.contains(r#""message":"task finished""#) {
                    continue;
                }
                if line.contains(r#""status":"cancelled""#) {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                } else if line.contains(r#""status":"completed""#) && line.contains(r#""mode":"async""#) {
                    completed_async.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok((Started { child, log: Some(log), spawned, listening, in_service: false }, cgroup))
    }

    /// Deletes the pods the ReplicaSet would delete first: one not yet started is simply gone; a started one is taken
    /// out of the Service and sent SIGTERM, as a scale-down does.
    pub(crate) fn drain(&mut self, count: usize) -> Result<(), String> {
        // As the ReplicaSet picks: unscheduled, then not started, then unready, then the most recently ready, in the
        // cluster's time.
        let now = Instant::now();
        let cluster_seconds = |since: Instant| now.duration_since(since).as_secs_f64() * self.time_scale;
        let candidates = self
            .list
            .iter()
            .filter(|p| !p.draining)
            .map(|p| Candidate {
                index: p.index,
                assigned: !matches!(p.stage, Stage::Unscheduled),
                running: p.started().is_some(),
                ready_for: p.ready_since.map(cluster_seconds),
                age: cluster_seconds(p.created),
                uid: p.uid,
            })
            .collect();
        for index in deletion_order(candidates).into_iter().take(count) {
            let Some(position) = self.list.iter().position(|p| p.index == index) else { continue };
            let Some(started) = self.list[position].started() else {
                self.list.remove(position);
                continue;
            };
            self.service.disable(index)?;
            // SAFETY: kill only sends a signal to our own child's pid.
            unsafe { libc::kill(started.child.0.id() as i32, libc::SIGTERM) };
            self.list[position].draining = true;
        }
        Ok(())
    }

    pub(crate) fn scale_to(&mut self, desired: u32) -> Result<(), String> {
        let current = self.replicas();
        if desired > current {
            for _ in current..desired {
                self.add()?;
            }
            self.advance()?;
        } else if desired < current {
            self.drain((current - desired) as usize)?;
        }
        Ok(())
    }

    /// Stops every pod and reads its log to the end, so the counts taken from the logs are complete.
    pub(crate) fn stop(mut self) {
        for pod in std::mem::take(&mut self.list) {
            if let Stage::Started(Started { child, mut log, .. }) = pod.stage {
                drop(child);
                if let Some(log) = log.take() {
                    let _ = log.join();
                }
            }
        }
    }

    /// Forgets pods that have exited after their drain.
    pub(crate) fn reap(&mut self) -> Result<(), String> {
        let before = self.list.len();
        let mut gone = Vec::new();
        for mut pod in std::mem::take(&mut self.list) {
            let exited = match &mut pod.stage {
                Stage::Started(started) => pod.draining && started.child.0.try_wait().ok().flatten().is_some(),
                _ => false,
            };
            if exited {
                if let Some(on) = &self.node {
                    on.node.remove(self.ports[pod.index]);
                }
                if let Stage::Started(started) = &mut pod.stage {
                    gone.extend(started.log.take());
                }
            } else {
                self.list.push(pod);
            }
        }
        // Its log is complete once the pod has exited: join the reader so every cancellation is counted.
        for log in gone {
            let _ = log.join();
        }
        if self.list.len() != before {
            self.publish()?;
        }
        Ok(())
    }

    /// Writes the discovery file: every pod whose container has started, draining ones too (Prometheus scrapes them
    /// until gone); a Pending pod has no address to scrape.
    pub(crate) fn publish(&self) -> Result<(), String> {
        let targets: Vec<Value> = self
            .extra
            .iter()
            .cloned()
            .chain(self.list.iter().filter(|p| !self.hidden && p.started().is_some()).map(|p| {
                let mut labels = self.meta.labels.clone();
                labels.insert("__meta_kubernetes_pod_name".into(), format!("consumer-{}", p.index).into());
                labels.insert(
                    "__meta_kubernetes_pod_annotation_prometheus_io_port".into(),
                    self.ports[p.index].to_string().into(),
                );
                json!({"targets": [format!("127.0.0.1:{}", self.ports[p.index])], "labels": labels})
            }))
            .collect();
        let temp = self.targets.with_extension("tmp");
        std::fs::write(&temp, serde_json::to_string(&targets).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        std::fs::rename(&temp, &self.targets).map_err(|e| e.to_string())
    }
}

/// A scrape target as Kubernetes discovery would give a pod of `app` that is annotated for scraping on `port`.
pub(crate) fn scraped_as(namespace: &str, app: &str, pod: &str, port: u16) -> Value {
    json!({"targets": [format!("127.0.0.1:{port}")], "labels": {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_node_name": "node-1",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_annotation_prometheus_io_port": port.to_string(),
        "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
    }})
}
