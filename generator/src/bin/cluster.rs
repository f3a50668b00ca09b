//! `cluster`: plays a Kubernetes cluster's part on one machine, so the loop from load to replicas and back runs for
//! real: consumer processes as the replicas (simulated CPU, the rendered Deployment's CPU and memory limits), a real
//! HAProxy as the Service (`mode tcp`, round robin, health checks on `/ready`, servers enabled and disabled as pods
//! start and drain), a real Prometheus with the monitoring component's relabeling (file discovery, so targets come and
//! go), and the ScaledObject evaluated as KEDA's Prometheus scaler and the HPA do it (`surge_generator::autoscale`).
//! The generator sends a profile through HAProxy with a new connection per request. What kube-state-metrics and KEDA's
//! operator would report about this run (replicas, the HPA's desire, the Job, the pods' limits, each scaler's value
//! and errors) is served with their metric names and labels and scraped like them, so the dashboards read it.
//!
//! `--time-scale F` compresses time by F: scrape and sync intervals, the queries' rate windows and the profile shrink
//! by F, while the HPA's clock runs F times faster so its windows and policy periods keep their manifest values.
//! Rate-valued triggers are divided by F (the same requests arrive F times faster). Times printed are HPA seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};
use surge_generator::autoscale::{combine, metric_replicas, History};
use surge_generator::cluster::{compress_ranges, documents, find, is_rate, limits, ScaledObject};
use surge_generator::prometheus::{http_get, Prom, Server};

/// The HPA's sync period and Prometheus's scrape interval in the monitoring component, before compression.
const SYNC_SECONDS: f64 = 15.0;
/// How long after the load a run may take to come back to the minimum before it is reported as stuck (HPA seconds).
const SETTLE_LIMIT_SECONDS: f64 = 1200.0;

#[derive(Debug, Parser)]
#[command(name = "cluster", about = "Closed-loop harness: replicas, Service, Prometheus and autoscaler on one machine")]
struct Args {
    /// Rendered manifests (`kubectl kustomize kubernetes-manifests/overlays/development`)
    #[arg(long)]
    manifests: PathBuf,
    /// The generator profile to run
    #[arg(long, default_value = "heavy")]
    profile: String,
    /// Compress time by this factor (1 = real time)
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// The consumer binary [default: beside this one]
    #[arg(long)]
    consumer: Option<PathBuf>,
    /// The generator binary [default: beside this one]
    #[arg(long)]
    generator: Option<PathBuf>,
    /// Write the trajectory and the generator's summary here as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// After the run, check that every Prometheus panel query of these dashboards returned data during it
    #[arg(long)]
    dashboards: Option<PathBuf>,
    /// Have the generator write its HTML report here, with the replicas and triggers read from this run's Prometheus
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// One trigger's reading at one sync.
#[derive(Debug, Clone, Serialize)]
struct Reading {
    name: String,
    /// `None` when the query failed.
    value: Option<f64>,
    target: f64,
    asks: Option<u32>,
}

/// One sync of the autoscaler.
#[derive(Debug, Clone, Serialize)]
struct Row {
    /// HPA seconds since the generator started.
    t: f64,
    current: u32,
    desired: u32,
    ready: u32,
    offered_per_s: f64,
    served_per_s: f64,
    driving: Option<String>,
    triggers: Vec<Reading>,
}

fn run(args: &Args) -> Result<(), String> {
    let factor = args.time_scale;
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err("--time-scale must be 1 or more".into());
    }
    if let Some(profile) = surge_generator::profiles::find(&args.profile) {
        profile.keeps_its_work_at(factor)?;
    }
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = |name: &str| here.with_file_name(name);
    let consumer_bin = args.consumer.clone().unwrap_or_else(|| beside("consumer"));
    let generator_bin = args.generator.clone().unwrap_or_else(|| beside("generator"));
    let text = std::fs::read_to_string(&args.manifests).map_err(|e| format!("{}: {e}", args.manifests.display()))?;
    let objects = documents(&text)?;
    let so = ScaledObject::from_manifest(find(&objects, "ScaledObject", "consumer")?)?;
    let deployment = find(&objects, "Deployment", "consumer")?;
    let template = &deployment["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    let (cores, memory) = limits(container)?;
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or("surge").to_owned();

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ports: Vec<u16> = (0..so.scaling.max).map(|_| free_port()).collect::<Result<_, _>>()?;
    let frontend = free_port()?;
    let socket = dir.path().join("haproxy.sock");
    let _haproxy = start_haproxy(dir.path(), frontend, &ports, &socket, factor)?;
    let targets = dir.path().join("targets.json");
    let pod_meta = PodMeta::from_template(template, &namespace);
    let server = start_prometheus(&objects, &targets, factor)?;
    let prometheus_port = server.port;

    let consumer_args = vec![
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--cpu-work".to_owned(),
        "simulate".to_owned(),
        "--cpu-capacity".to_owned(),
        cores.to_string(),
        // The consumer's own default: 75% of the container's memory limit.
        "--memory-budget-mb".to_owned(),
        (memory / 4 * 3 / (1 << 20)).to_string(),
        // HAProxy takes a pod out before its SIGTERM here, so no drain delay is needed.
        "--drain-delay-secs".to_owned(),
        "0".to_owned(),
        // The Deployment's own shutdown timeout, compressed; a second more for the whole-second rounding.
        "--shutdown-timeout-secs".to_owned(),
        ((shutdown_timeout(container)? / factor).ceil() + 1.0).to_string(),
    ];
    let mut pods = Pods {
        list: Vec::new(),
        ports,
        consumer: consumer_bin,
        args: consumer_args,
        socket,
        targets,
        meta: pod_meta,
        cancelled: Arc::default(),
        extra: Vec::new(),
    };
    for _ in 0..so.scaling.min {
        pods.add()?;
    }
    pods.publish()?;
    wait_until(Duration::from_secs(30), || pods.ready() == so.scaling.min)?;
    let prometheus = Prom::new("127.0.0.1", prometheus_port);
    wait_until(Duration::from_secs(30), || prometheus.value("count(up == 1)").is_ok_and(|v| v >= 1.0))?;
    println!(
        "cluster: {} x consumer ({cores} core, {} MiB), HAProxy :{frontend}, Prometheus :{prometheus_port}, time x{factor}",
        so.scaling.min,
        memory >> 20
    );

    let state = Arc::new(std::sync::Mutex::new(String::new()));
    let state_port = serve_state(Arc::clone(&state))?;
    let generator_port = free_port()?;
    pods.extra = vec![
        scraped_as(&namespace, "kube-state-metrics", "kube-state-metrics-0", state_port),
        scraped_as(&namespace, "load-generator", &format!("load-{}-0", args.profile), generator_port),
    ];
    pods.publish()?;
    let mut generator = Command::new(&generator_bin);
    if let Some(report) = &args.report {
        generator.arg("--report").arg(report).arg("--scaled-object").arg(&args.manifests);
        generator.args(["--prometheus", &format!("http://127.0.0.1:{prometheus_port}")]);
        generator.args(["--monitor-interval", &format!("{}ms", (SYNC_SECONDS * 1000.0 / factor).round())]);
    }
    let mut generator = generator
        .args(["--url", &format!("http://127.0.0.1:{frontend}"), "--test", &args.profile])
        .args(["--metrics-port", &generator_port.to_string()])
        .args(["--time-scale", &factor.to_string(), "--no-connection-reuse", "--output", "json", "--probes", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", generator_bin.display()))?;
    let mut generator_out = generator.stdout.take().ok_or("generator stdout")?;
    // The summary is printed when the load ends; the process then serves its metrics a few seconds more.
    let summary_printed = Arc::new(AtomicBool::new(false));
    let printed = Arc::clone(&summary_printed);
    let reader = std::thread::spawn(move || {
        let (mut text, mut chunk) = (String::new(), [0u8; 4096]);
        while let Ok(n @ 1..) = generator_out.read(&mut chunk) {
            text.push_str(&String::from_utf8_lossy(&chunk[..n]));
            if serde_json::from_str::<Value>(&text).is_ok() {
                printed.store(true, Ordering::Relaxed);
            }
        }
        text
    });
    let started = Instant::now();
    let hpa_now = || started.elapsed().as_secs_f64() * factor;
    let sync = Duration::from_secs_f64(SYNC_SECONDS / factor);
    let mut history = History::default();
    let mut failures = vec![0u32; so.triggers.len()];
    let mut errors = vec![0u64; so.triggers.len()];
    let mut rows: Vec<Row> = Vec::new();
    let mut load_ended_at: Option<f64> = None;
    let window = format!("{}ms", (60_000.0 / factor).round());
    print_header(&so);
    loop {
        let next = Instant::now() + sync;
        let exited = generator.try_wait().map_err(|e| e.to_string())?.is_some();
        if load_ended_at.is_none() && (summary_printed.load(Ordering::Relaxed) || exited) {
            load_ended_at = Some(hpa_now());
        }
        pods.reap()?;
        let current = pods.replicas();
        let ready = pods.ready();
        let mut readings = Vec::new();
        let mut proposals = Vec::new();
        for (trigger, failed) in so.triggers.iter().zip(failures.iter_mut()) {
            let value = prometheus.value(&compress_ranges(&trigger.query, factor)).map(|v| {
                if is_rate(&trigger.query) {
                    v / factor
                } else {
                    v
                }
            });
            *failed = if value.is_ok() { 0 } else { *failed + 1 };
            if value.is_err() {
                errors[readings.len()] += 1;
            }
            let asks = match (&value, &so.fallback) {
                (Ok(v), _) => Some(metric_replicas(trigger.kind, *v, trigger.threshold, current, ready)),
                (Err(_), Some(f)) if *failed >= f.failure_threshold => Some(f.behavior.replicas(f.replicas, current)),
                (Err(_), _) => None,
            };
            proposals.push(asks);
            readings.push(Reading { name: trigger.name.clone(), value: value.ok(), target: trigger.threshold, asks });
        }
        let proposal = combine(&proposals, current);
        let desired = so.scaling.decide(&mut history, hpa_now(), current, proposal);
        // The trigger asking for the most replicas, when any asks for more than the minimum.
        let driving = readings
            .iter()
            .rev()
            .max_by_key(|r| r.asks.unwrap_or(0))
            .filter(|r| r.asks.unwrap_or(0) > so.scaling.min)
            .map(|r| r.name.clone());
        let rate = |status: &str| {
            prometheus
                .value(&format!(
                    "sum(rate(http_requests_total{{handler=\"/process\"{status}}}[{window}])) or vector(0)"
                ))
                .map_or(0.0, |v| v / factor)
        };
        let row = Row {
            t: hpa_now(),
            current,
            desired,
            ready,
            offered_per_s: rate(""),
            served_per_s: rate(", status=\"2xx\""),
            driving,
            triggers: readings,
        };
        print_row(&row);
        let job_active = load_ended_at.is_none();
        let live: Vec<String> = pods.list.iter().map(|p| format!("consumer-{}", p.index)).collect();
        *state.lock().unwrap_or_else(|p| p.into_inner()) =
            cluster_metrics(&namespace, &args.profile, &row, job_active, &live, memory, &errors);
        rows.push(row);
        pods.scale_to(desired)?;
        if let Some(ended) = load_ended_at {
            let idle = prometheus
                .value("sum(consumer_tasks_queued) + sum(consumer_tasks_in_flight{kind=\"cpu\"})")
                .is_ok_and(|v| v == 0.0);
            if current == so.scaling.min && desired == so.scaling.min && idle {
                break;
            }
            if hpa_now() - ended > SETTLE_LIMIT_SECONDS {
                eprintln!("cluster: not back at the minimum {SETTLE_LIMIT_SECONDS} s after the load; stopping");
                break;
            }
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let summary: Value = serde_json::from_str(&reader.join().unwrap_or_default()).unwrap_or(Value::Null);
    let dashboards = match &args.dashboards {
        Some(dir) => Some(check_dashboards(dir, &prometheus, &namespace, started.elapsed().as_secs_f64())?),
        None => None,
    };
    let cancelled = Arc::clone(&pods.cancelled);
    drop(pods);
    let mut report = report(&args.profile, factor, &rows, load_ended_at, so.scaling.min, &summary);
    if let Some(dashboards) = dashboards {
        println!("dashboards: {dashboards}");
        report["dashboards"] = dashboards;
    }
    report["outline"]["tasks_cancelled"] = cancelled.load(Ordering::Relaxed).into();
    println!("{}", serde_json::to_string_pretty(&report["outline"]).unwrap_or_default());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The run in a few figures: peak replicas and when, the driving trigger, first scale-up, back at the minimum.
fn report(profile: &str, factor: f64, rows: &[Row], load_ended: Option<f64>, min: u32, generator: &Value) -> Value {
    let peak = rows.iter().map(|r| r.desired).max().unwrap_or(min);
    let peak_row = rows.iter().find(|r| r.desired == peak);
    let first_up = rows.iter().find(|r| r.desired > min).map(|r| r.t);
    let back_at_min = rows.iter().rev().take_while(|r| r.current == min && r.desired == min).last().map(|r| r.t);
    let drivers: Vec<String> = {
        let mut names: Vec<String> = rows.iter().filter_map(|r| r.driving.clone()).collect();
        names.sort();
        names.dedup();
        names
    };
    json!({
        "outline": {
            "profile": profile,
            "time_scale": factor,
            "peak_replicas": peak,
            "peak_at_s": peak_row.map(|r| r.t),
            "peak_driven_by": peak_row.and_then(|r| r.driving.clone()),
            "driving_triggers": drivers,
            "first_scale_up_at_s": first_up,
            "load_ended_at_s": load_ended,
            "back_at_min_at_s": back_at_min,
            "sent": generator["sent"],
            "succeeded": generator["succeeded"],
            "retried": generator["retried"],
            "failed": generator["failed"],
            "send_lag_max_ms": generator["send_lag_ms"]["max"],
        },
        "rows": rows,
        "generator": generator,
    })
}

fn print_header(so: &ScaledObject) {
    let names: Vec<String> =
        so.triggers.iter().map(|t| format!("{:>24}", format!("{} ({})", t.name, t.threshold))).collect();
    println!("{:>7} {:>4} {:>5} {:>8} {:>8}  {}", "t(s)", "want", "ready", "offer/s", "served/s", names.join(" "));
}

fn print_row(row: &Row) {
    let cells: Vec<String> = row
        .triggers
        .iter()
        .map(|r| {
            let value = r.value.map_or_else(|| "error".to_owned(), |v| format!("{v:.2}"));
            let asks = r.asks.map_or_else(|| "-".to_owned(), |a| a.to_string());
            format!("{:>24}", format!("{value} -> {asks}"))
        })
        .collect();
    println!(
        "{:>7.0} {:>4} {:>5} {:>8.2} {:>8.2}  {}",
        row.t,
        row.desired,
        row.ready,
        row.offered_per_s,
        row.served_per_s,
        cells.join(" ")
    );
}

/// The consumer container's `--shutdown-timeout-secs`, in seconds.
fn shutdown_timeout(container: &Value) -> Result<f64, String> {
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|arg| arg.strip_prefix("--shutdown-timeout-secs="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "the consumer container has no --shutdown-timeout-secs".into())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
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
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_haproxy(dir: &Path, frontend: u16, ports: &[u16], socket: &Path, factor: f64) -> Result<Owned, String> {
    let check_ms = (2000.0 / factor).round().max(100.0);
    let mut config = format!(
        "global\n  stats socket {} mode 600 level admin\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n\
         frontend service\n  bind 127.0.0.1:{frontend}\n  default_backend pods\n\
         backend pods\n  balance roundrobin\n  option httpchk GET /ready\n  http-check expect status 200\n\
         default-server inter {check_ms}ms fall 1 rise 1\n",
        socket.display()
    );
    for (index, port) in ports.iter().enumerate() {
        // Pods not yet started are disabled, as an endpoints controller lists no address for them.
        config.push_str(&format!("  server pod{index} 127.0.0.1:{port} check disabled\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("haproxy: {e}"))?;
    wait_until(Duration::from_secs(10), || UnixStream::connect(socket).is_ok())?;
    Ok(Owned(child))
}

/// The monitoring component's consumer scrape job, its Kubernetes discovery swapped for a file this harness writes.
fn start_prometheus(objects: &[Value], targets: &Path, factor: f64) -> Result<Server, String> {
    let text = find(objects, "ConfigMap", "prometheus-config")?["data"]["prometheus.yml"]
        .as_str()
        .ok_or("prometheus.yml")?
        .to_owned();
    let mut config: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    let scrape = format!("{}ms", (5000.0 / factor).round().max(100.0));
    config["global"]["scrape_interval"] = scrape.clone().into();
    config["global"]["scrape_timeout"] = scrape.into();
    let jobs = config["scrape_configs"].as_array_mut().ok_or("scrape_configs")?;
    // Jobs with fixed cluster addresses (KEDA's operator) have nothing to reach here.
    jobs.retain(|job| job.get("kubernetes_sd_configs").is_some());
    for job in jobs.iter_mut() {
        if let Some(job) = job.as_object_mut() {
            job.remove("kubernetes_sd_configs");
            job.insert("file_sd_configs".into(), json!([{"files": [targets.display().to_string()]}]));
        }
    }
    std::fs::write(targets, "[]").map_err(|e| e.to_string())?;
    Server::start(&serde_yaml_ng::to_string(&config).map_err(|e| e.to_string())?)
}

/// The `__meta_kubernetes_*` labels discovery would give a consumer pod.
struct PodMeta {
    labels: serde_json::Map<String, Value>,
}

impl PodMeta {
    fn from_template(template: &Value, namespace: &str) -> Self {
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

struct Pod {
    index: usize,
    child: Owned,
    draining: bool,
    /// Reads the pod's log until it exits.
    log: Option<std::thread::JoinHandle<()>>,
}

/// The Deployment's pods: started and drained as the autoscaler decides, published to HAProxy and Prometheus.
struct Pods {
    /// Tasks the pods logged as cancelled, over the whole run.
    cancelled: Arc<AtomicU64>,
    list: Vec<Pod>,
    ports: Vec<u16>,
    consumer: PathBuf,
    args: Vec<String>,
    socket: PathBuf,
    targets: PathBuf,
    meta: PodMeta,
    /// Other scrape targets of the run (kube-state-metrics' and KEDA's series, the generator), in discovery's shape.
    extra: Vec<Value>,
}

impl Pods {
    fn replicas(&self) -> u32 {
        self.list.iter().filter(|p| !p.draining).count() as u32
    }

    fn ready(&self) -> u32 {
        let ready = |p: &&Pod| http_get("127.0.0.1", self.ports[p.index], "/ready").is_ok_and(|(s, _)| s == 200);
        self.list.iter().filter(|p| !p.draining).filter(ready).count() as u32
    }

    fn add(&mut self) -> Result<(), String> {
        let index =
            (0..self.ports.len()).find(|i| self.list.iter().all(|p| p.index != *i)).ok_or("no free pod slot")?;
        let child = Command::new(&self.consumer)
            .args(&self.args)
            .args(["--port", &self.ports[index].to_string()])
            .env("POD_NAME", format!("consumer-{index}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.consumer.display()))?;
        let mut child = Owned(child);
        // Wait for the listening line, then keep draining stdout so the pod never blocks on a full pipe.
        let stdout = child.0.stdout.take().ok_or("consumer stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            if line.map_err(|e| e.to_string())?.contains("consumer listening") {
                break;
            }
        }
        // Counts the tasks that ended cancelled (a drain ends a pod's background work): work lost to a scale-down.
        let cancelled = Arc::clone(&self.cancelled);
        let log = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains(r#""message":"task finished""#) && line.contains(r#""status":"cancelled""#) {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        self.list.push(Pod { index, child, draining: false, log: Some(log) });
        self.admin(&format!("enable server pods/pod{index}"))
    }

    /// Takes the newest pods out of the Service and sends them SIGTERM, as a scale-down does.
    fn drain(&mut self, count: usize) -> Result<(), String> {
        let mut victims: Vec<usize> = self.list.iter().filter(|p| !p.draining).map(|p| p.index).collect();
        victims.sort_unstable();
        for index in victims.into_iter().rev().take(count) {
            self.admin(&format!("disable server pods/pod{index}"))?;
            if let Some(pod) = self.list.iter_mut().find(|p| p.index == index) {
                pod.draining = true;
                // SAFETY: kill only sends a signal to our own child's pid.
                unsafe { libc::kill(pod.child.0.id() as i32, libc::SIGTERM) };
            }
        }
        Ok(())
    }

    fn scale_to(&mut self, desired: u32) -> Result<(), String> {
        let current = self.replicas();
        if desired > current {
            for _ in current..desired {
                self.add()?;
            }
            self.publish()?;
        } else if desired < current {
            self.drain((current - desired) as usize)?;
        }
        Ok(())
    }

    /// Forgets pods that have exited after their drain.
    fn reap(&mut self) -> Result<(), String> {
        let before = self.list.len();
        let mut gone = Vec::new();
        for mut pod in std::mem::take(&mut self.list) {
            if pod.draining && pod.child.0.try_wait().ok().flatten().is_some() {
                gone.extend(pod.log.take());
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

    /// Writes the discovery file: every pod that still exists, draining ones too (Prometheus scrapes them until gone).
    fn publish(&self) -> Result<(), String> {
        let targets: Vec<Value> = self
            .extra
            .iter()
            .cloned()
            .chain(self.list.iter().map(|p| {
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

    /// One command on HAProxy's runtime API.
    fn admin(&self, command: &str) -> Result<(), String> {
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| format!("haproxy socket: {e}"))?;
        writeln!(stream, "{command}").map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("haproxy {command:?}: {}", answer.trim()))
        }
    }
}

/// A scrape target as Kubernetes discovery would give a pod of `app` that is annotated for scraping on `port`.
fn scraped_as(namespace: &str, app: &str, pod: &str, port: u16) -> Value {
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

/// Serves the latest `state` as `GET /metrics` on a free port, one request per connection, until the process ends.
fn serve_state(state: Arc<std::sync::Mutex<String>>) -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut head = [0u8; 2048];
            let _ = stream.read(&mut head);
            let body = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

/// What kube-state-metrics and KEDA's operator would expose about this sync, with their names and labels.
fn cluster_metrics(
    namespace: &str,
    profile: &str,
    row: &Row,
    job_active: bool,
    pods: &[String],
    memory_limit: u64,
    errors: &[u64],
) -> String {
    let mut out = String::new();
    let deployment = format!("namespace=\"{namespace}\",deployment=\"consumer\"");
    out += &format!("kube_deployment_status_replicas{{{deployment}}} {}\n", row.current);
    out += &format!("kube_deployment_status_replicas_ready{{{deployment}}} {}\n", row.ready);
    out += &format!(
        "kube_horizontalpodautoscaler_status_desired_replicas{{namespace=\"{namespace}\",\
         horizontalpodautoscaler=\"keda-hpa-consumer\"}} {}\n",
        row.desired
    );
    out += &format!(
        "kube_job_status_active{{namespace=\"{namespace}\",job_name=\"load-{profile}\"}} {}\n",
        u8::from(job_active)
    );
    for pod in pods {
        out += &format!(
            "kube_pod_container_resource_limits{{namespace=\"{namespace}\",pod=\"{pod}\",container=\"consumer\",\
             resource=\"memory\",unit=\"byte\"}} {memory_limit}\n"
        );
    }
    let scaled_object = format!("namespace=\"{namespace}\",scaledObject=\"consumer\"");
    for (index, (reading, errors)) in row.triggers.iter().zip(errors).enumerate() {
        let labels = format!(
            "{scaled_object},scaler=\"prometheusScaler\",triggerIndex=\"{index}\",metric=\"s{index}-{}\",\
             type=\"scaledobject\"",
            reading.name
        );
        if let Some(value) = reading.value {
            out += &format!("keda_scaler_metrics_value{{{labels}}} {value}\n");
            out += &format!("keda_scaler_active{{{labels}}} {}\n", u8::from(value > 0.0));
        }
        out += &format!("keda_scaler_detail_errors_total{{{labels}}} {errors}\n");
    }
    out += &format!("keda_scaled_object_errors_total{{{scaled_object}}} {}\n", errors.iter().sum::<u64>());
    out
}

/// Runs every Prometheus panel query of every dashboard in `dir` (template variables filled in) over the last
/// `seconds`: the queries that returned no series are listed.
fn check_dashboards(dir: &Path, prometheus: &Prom, namespace: &str, seconds: f64) -> Result<Value, String> {
    let mut checked = 0;
    let mut empty = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        let dashboard: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            if panel["datasource"]["uid"] != "prometheus" {
                continue;
            }
            for expr in panel["targets"].as_array().into_iter().flatten().filter_map(|t| t["expr"].as_str()) {
                let query = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$namespace", namespace)
                    .replace("$deployment", "consumer")
                    .replace("$pod", ".*");
                checked += 1;
                if prometheus.series_over(&query, seconds)? == 0 {
                    empty.push(format!("{} / {}: {query}", dashboard["title"].as_str().unwrap_or("?"), panel["title"]));
                }
            }
        }
    }
    Ok(json!({"checked": checked, "empty": empty}))
}
