//! The closed loop: the generator's load through HAProxy into the replicas, Prometheus scraping them, and once per
//! sync the ScaledObject evaluated (`surge_keda::evaluate`) and the HPA's behaviour applied, the pods scaled to match.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use surge_generator::prometheus::{Compressed, Prom};
use surge_keda::evaluate::HPA_SYNC_SECONDS;
use surge_keda::hpa::History;
use surge_keda::hpa::Tolerances;
use surge_keda::node::{others_requests, OUTSIDE_THE_MANIFESTS};
use surge_keda::readers::{read, Sources};
use surge_keda::redis_streams::RedisStreams;
use surge_keda::resource::{self, memory_milli, Resource, Target, Timing};
use surge_keda::scaled_object::{
    container_arg, cpu_cores, documents, find, limits, requests, shutdown_timeout_secs, Source,
};
use surge_keda::startup::StartupPath;
use surge_keda::{evaluate, Activity, Failures, ScaledObject};

use crate::dashboards::check_dashboards;
use crate::load::Load;
use crate::metrics_server::MetricsServer;
use crate::node::Node;
use crate::pods::{free_port, scraped_as, wait_until, OnNode, PodMeta, Pods};
use crate::prometheus::start_prometheus;
use crate::redis::RedisServer;
use crate::restartable::Restartable;
use crate::service::Service;
use crate::standins::{cluster_metrics, serve_state};
use crate::syncs::Syncs;
use crate::trajectory::{print_header, print_row, report, Reading, Row};

/// The HPA's sync period (and the monitoring component's scrape interval), before compression.
const SYNC_SECONDS: f64 = HPA_SYNC_SECONDS;
/// How long after the load a run may take to come back to the minimum before it is reported as stuck (HPA seconds).
const SETTLE_LIMIT_SECONDS: f64 = 3600.0;

#[derive(Debug, Parser)]
#[command(name = "cluster", about = "Closed-loop harness: replicas, Service, Prometheus and autoscaler on one machine")]
pub struct Args {
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
    /// Prometheus loses the consumer's targets (discovery keeps the other pods) over this window of the autoscaler's
    /// seconds from the start, `FROM..TO`: a relabeling or network-policy change, a restart that lost discovery
    #[arg(long, value_parser = Window::parse)]
    lose_targets: Option<Window>,
    /// Prometheus is stopped (connections refused) over this window, `FROM..TO`, then started on its own data again
    #[arg(long, value_parser = Window::parse)]
    stop_prometheus: Option<Window>,
    /// The shared backlog's Redis is stopped over this window, `FROM..TO`, then started again from its append-only
    /// file (the run's Redis keeps one only with this flag)
    #[arg(long, value_parser = Window::parse)]
    stop_redis: Option<Window>,
    /// How the replicas do their CPU work: `simulate` (each runs as if it had its CPU limit to itself) or `burn`
    /// (real work on this machine's cores, each replica held to its limit by its cgroup: a node of this machine's size)
    #[arg(long, value_enum, default_value_t = CpuWork::Simulate)]
    cpu_work: CpuWork,
    /// The replicas share one node of this many allocatable cores with the node's other pods, as CFS shares them
    /// (each at most its CPU limit, the rest by request); simulated work only. Without it each has its limit to itself
    #[arg(long)]
    node_cores: Option<f64>,
    /// The cores the node's other pods use [default: what they request: the manifests' other workloads, KEDA's and
    /// kind's control plane]
    #[arg(long, requires = "node_cores")]
    node_others: Option<f64>,
    /// Stop when the load ends instead of waiting for the minimum (the accepted tasks are still followed to their end)
    #[arg(long)]
    stop_at_load_end: bool,
    /// Split the profile over this many generators (`--shard INDEX/COUNT`), as job-distributed.yaml's pods split it
    #[arg(long, default_value_t = 1, conflicts_with = "report")]
    shards: u32,
}

/// The consumer's `--cpu-work`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuWork {
    Simulate,
    Burn,
}

impl CpuWork {
    fn as_str(self) -> &'static str {
        match self {
            Self::Simulate => "simulate",
            Self::Burn => "burn",
        }
    }
}

/// A fault's span in the autoscaler's seconds from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    from: f64,
    to: f64,
}

impl Window {
    fn parse(text: &str) -> Result<Self, String> {
        let (from, to) = text.split_once("..").ok_or("FROM..TO, in seconds")?;
        let number = |n: &str| n.trim().parse::<f64>().map_err(|e| format!("{n}: {e}"));
        let (from, to) = (number(from)?, number(to)?);
        if !(0.0 <= from && from < to && to.is_finite()) {
            return Err(format!("{text}: FROM must be at least 0 and below TO"));
        }
        Ok(Self { from, to })
    }

    fn holds(window: Option<Self>, t: f64) -> bool {
        window.is_some_and(|w| (w.from..w.to).contains(&t))
    }
}

pub fn run(args: &Args) -> Result<(), String> {
    let factor = args.time_scale;
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err("--time-scale must be 1 or more".into());
    }
    if let Some(named) = surge_generator::phases::Named::find(&args.profile) {
        named.keeps_its_work_at(factor)?;
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
    let (request_cores, request_bytes) = requests(container)?;
    let requests =
        Requests { cpu_milli: (request_cores * 1000.0).round() as i64, memory_milli: memory_milli(request_bytes) };
    // metrics-server reads the pods only for a ScaledObject that scales on their usage.
    let reads_resources = so.triggers.iter().any(|t| matches!(t.source, Source::Resource { .. }));
    let mut metrics_server = MetricsServer::new(factor);
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap_or("surge").to_owned();

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ports: Vec<u16> = (0..so.scaling.max).map(|_| free_port()).collect::<Result<_, _>>()?;
    // Every pod's slot, disabled until it starts; readiness checked every 2 s of the cluster's time.
    let slots: Vec<Option<u16>> = ports.iter().map(|_| None).collect();
    let service = Service::start(&slots, Some(Duration::from_secs_f64((2.0 / factor).max(0.1))))?;
    for (slot, port) in ports.iter().enumerate() {
        service.set_port(slot, *port)?;
    }
    let (service_port, service_url) = (service.port, service.url.clone());
    let targets = dir.path().join("targets.json");
    let pod_meta = PodMeta::from_template(template, &namespace);
    let mut server = start_prometheus(&objects, &targets, factor)?;
    let prometheus_port = server.port;

    // The queue component sets QUEUE_URL on the consumer: then the pods share a real Redis, as they would there.
    let shared_queue = container["env"].as_array().into_iter().flatten().any(|e| e["name"] == "QUEUE_URL");
    let mut redis = match (shared_queue, args.stop_redis) {
        (true, Some(_)) => Some(RedisServer::restartable()?),
        (true, None) => Some(RedisServer::ephemeral()?),
        (false, _) => None,
    };
    let stand_ins = crate::versions::stand_ins(&objects, shared_queue);
    eprintln!("cluster: {}", crate::versions::line(&stand_ins));
    // Each pod in real cgroups with the container's limits where the machine allows it: the consumer then takes its
    // capacity and budget from them, as in a pod. Elsewhere the same values are given as flags.
    let cgroup_limits = crate::cgroup::available().then_some((cores, memory));
    let mut consumer_args = vec![
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--cpu-work".to_owned(),
        args.cpu_work.as_str().to_owned(),
        // HAProxy takes a pod out before its SIGTERM here, so no drain delay is needed.
        "--drain-delay-secs".to_owned(),
        "0".to_owned(),
        // The Deployment's own shutdown timeout, compressed; a second more for the whole-second rounding.
        "--shutdown-timeout-secs".to_owned(),
        ((shutdown_timeout_secs(container)? / factor).ceil() + 1.0).to_string(),
    ];
    if cgroup_limits.is_none() {
        // The consumer's own defaults: the CPU limit, and 75% of the memory limit.
        consumer_args.extend(["--cpu-capacity".to_owned(), cores.to_string()]);
        consumer_args.extend(["--memory-budget-mb".to_owned(), (memory / 4 * 3 / (1 << 20)).to_string()]);
    }
    if let Some(redis) = &redis {
        consumer_args.extend(["--queue".to_owned(), redis.url()]);
    }
    // The shared backlog's cap as the Deployment sets it.
    if let Some(capacity) = container_arg(container, "--queue-capacity") {
        consumer_args.push(format!("--queue-capacity={capacity}"));
    }
    let node = match args.node_cores {
        Some(_) if args.cpu_work == CpuWork::Burn => {
            return Err("--node-cores models a node for simulated work; burning work shares this machine's".into())
        }
        Some(node_cores) => {
            let requested = others_requests(&objects) + OUTSIDE_THE_MANIFESTS;
            let others = args.node_others.unwrap_or(requested);
            let request = cpu_cores(&container["resources"]["requests"]["cpu"])
                .map_err(|e| format!("the consumer's resources.requests.cpu: {e}"))?;
            // The scheduler places by request, whatever the others use.
            let room = node_cores - requested;
            let fit = (room / request + 1e-9).floor().max(0.0) as u32;
            println!(
                "cluster: a node of {node_cores} cores; its other pods request {requested:.2} and use \
                 {others:.2}; each replica requests {request} and may use {cores}: {fit} fit by request, the rest \
                 stay Pending"
            );
            if fit < so.scaling.min.max(1) {
                return Err(format!("a node of {node_cores} cores has room for no replica of {request} cores"));
            }
            Some(OnNode { node: Node::start(node_cores, others), fit, request, limit: cores })
        }
        None => None,
    };
    let mut pods = Pods {
        list: Vec::new(),
        ports,
        consumer: consumer_bin,
        args: consumer_args,
        service,
        targets,
        meta: pod_meta,
        cancelled: Arc::default(),
        completed_async: Arc::default(),
        extra: Vec::new(),
        hidden: false,
        time_scale: factor,
        cgroup_limits,
        node,
        startup: StartupPath::from_container(container),
    };
    for _ in 0..so.scaling.min {
        pods.add()?;
    }
    pods.publish()?;
    let mut stuck = None;
    wait_until(Duration::from_secs(30), || match pods.advance() {
        // The load starts once the first replicas answer through the Service.
        Ok(()) => pods.ready() == so.scaling.min && pods.serving() == so.scaling.min,
        Err(e) => {
            stuck = Some(e);
            true
        }
    })?;
    if let Some(e) = stuck {
        return Err(e);
    }
    let prometheus = Prom::new("127.0.0.1", prometheus_port);
    wait_until(Duration::from_secs(30), || prometheus.value("count(up == 1)").is_ok_and(|v| v >= 1.0))?;
    // What the first pod took for its capacity and budget: from its cgroups, or from the flags.
    let first = pods.statuses().into_iter().next().ok_or("the first pod does not answer /process/status")?;
    let pod_defaults = json!({
        "from": if cgroup_limits.is_some() { "cgroup" } else { "flags" },
        "capacity_cores": first["cpu"]["capacity_cores"],
        "budget_mib": first["budget_bytes"].as_u64().map(|b| b >> 20),
    });
    println!(
        "cluster: {} x consumer ({cores} core, {} MiB; capacity and budget from {}), HAProxy :{service_port}, \
         Prometheus :{prometheus_port}, time x{factor}",
        so.scaling.min,
        memory >> 20,
        pod_defaults["from"]
    );

    let state = Arc::new(std::sync::Mutex::new(String::new()));
    let state_port = serve_state(Arc::clone(&state))?;
    // One generator per shard, as an Indexed Job's pods split the profile (job-distributed.yaml).
    let generator_ports: Vec<u16> = (0..args.shards.max(1)).map(|_| free_port()).collect::<Result<_, _>>()?;
    pods.extra = vec![scraped_as(&namespace, "kube-state-metrics", "kube-state-metrics-0", state_port)];
    for (index, port) in generator_ports.iter().enumerate() {
        pods.extra.push(scraped_as(&namespace, "load-generator", &format!("load-{}-{index}", args.profile), *port));
    }
    pods.publish()?;
    let mut generator_args: Vec<String> = Vec::new();
    if let Some(report) = &args.report {
        generator_args.extend(["--report".to_owned(), report.display().to_string()]);
        generator_args.extend(["--scaled-object".to_owned(), args.manifests.display().to_string()]);
        generator_args.extend(["--prometheus".to_owned(), format!("http://127.0.0.1:{prometheus_port}")]);
        generator_args
            .extend(["--monitor-interval".to_owned(), format!("{}ms", (SYNC_SECONDS * 1000.0 / factor).round())]);
    }
    let common = ["--url", &service_url, "--test", &args.profile, "--time-scale", &factor.to_string()];
    generator_args.extend(common.map(str::to_owned));
    generator_args.extend(["--no-connection-reuse", "--output", "json", "--probes", "1"].map(str::to_owned));
    // Every accepted task followed to its end for as long as the run may take to settle (a Job follows 10 min).
    generator_args.extend(["--follow-timeout".to_owned(), format!("{SETTLE_LIMIT_SECONDS}s")]);
    // The load ends when every generator says it follows the accepted tasks to their end, or prints its summary (no
    // task left to follow); the process then serves its metrics a few seconds more.
    let mut load = Load::start(&generator_bin, &generator_args, &generator_ports)?;
    let started = Instant::now();
    let mut syncs = Syncs::new(started, SYNC_SECONDS, factor);
    // Seeded with the replicas at the first sync, as the HPA seeds a new one's recommendations.
    let mut history: Option<History> = None;
    let mut failures = Failures::default();
    let mut activity = Activity::default();
    let mut errors = vec![0u64; so.triggers.len()];
    let mut rows: Vec<Row> = Vec::new();
    let mut load_ended_at: Option<f64> = None;
    let window = format!("{}ms", (60_000.0 / factor).round());
    // The profile's task size: a replica "has room" when one more such task would start on it now.
    let profile = surge_generator::profiles::find(&args.profile);
    let task_cores = profile.map_or(1.0, |p| f64::from(p.cpu_intensity) / 10.0);
    let task_bytes = profile.map_or(0.0, |p| f64::from(p.memory_mib) * 1024.0 * 1024.0);
    let mut waiting = WaitingWork { task_cores, task_bytes, ..WaitingWork::default() };
    print_header(&so);
    loop {
        // This sync's time on the autoscaler's clock: whole periods since the first, however late it began.
        let at = syncs.begin(Instant::now());
        if load_ended_at.is_none() && load.sent_all()? {
            load_ended_at = Some(at);
        }
        let blind = Window::holds(args.lose_targets, at);
        if blind != pods.hidden {
            pods.hidden = blind;
            pods.publish()?;
            eprintln!(
                "cluster: at {:.0} s Prometheus {} the consumer's targets",
                at,
                ["finds", "loses"][usize::from(blind)]
            );
        }
        stopped_over(&mut server, "Prometheus", args.stop_prometheus, at)?;
        if let Some(redis) = redis.as_mut() {
            stopped_over(redis, "Redis", args.stop_redis, at)?;
        }
        pods.reap()?;
        let current = pods.replicas();
        let ready = pods.ready();
        if reads_resources {
            metrics_server.read(&pods.kubelets(), at);
        }
        let resources = ResourceView {
            pods: &pods,
            metrics_server: &metrics_server,
            syncs: &syncs,
            requests,
            tolerances: so.scaling.tolerances(),
            current,
            at,
        };
        let sources = LoopSources {
            prometheus: Compressed { prometheus: &prometheus, factor },
            redis: redis.as_ref(),
            resources,
        };
        let values = read(&so.triggers, &sources);
        for (count, value) in errors.iter_mut().zip(&values) {
            *count += u64::from(value.is_err());
        }
        let decision = evaluate(&so, &values, current, ready, &mut failures, SYNC_SECONDS);
        let readings: Vec<Reading> = so
            .triggers
            .iter()
            .zip(&values)
            .zip(&decision.asks)
            .map(|((trigger, value), ask)| Reading {
                name: trigger.name.clone(),
                value: value.as_ref().ok().copied(),
                target: trigger.threshold,
                asks: ask.replicas(),
            })
            .collect();
        let history = history.get_or_insert_with(|| History::seeded(at, current));
        // No proposal: the HPA returns before stabilising, keeps the replicas and records nothing. At 0 replicas
        // it does nothing at all ("scaling is disabled"); KEDA's own executor takes replicas to and from 0.
        let desired = match decision.proposal {
            Some(proposal) if current > 0 => so.scaling.decide(history, at, current, proposal),
            _ => current,
        };
        let desired = activity.request_scale(&so, &values, current, at).unwrap_or(desired);
        // The trigger asking for the most replicas, when any asks for more than the minimum; a failed trigger's
        // fallback count drives nothing.
        let driving = readings
            .iter()
            .filter(|r| r.value.is_some())
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
            t: at,
            current,
            desired,
            ready,
            unscheduled: pods.unscheduled(),
            offered_per_s: rate(""),
            served_per_s: rate(", status=\"2xx\""),
            driving,
            triggers: readings,
        };
        print_row(&row);
        let job_active = load_ended_at.is_none();
        // Also after the load: a backlog outlasting it is where a replica's work is stuck behind another's.
        // On the shared backlog, work waited only if Redis held undelivered tasks both before and after every pod
        // answered: a replica with room at its answer then left a task waiting, rather than having just freed it.
        let undelivered = || redis.as_ref().map(|r| r.undelivered().unwrap_or(0.0));
        let before = undelivered();
        let statuses = pods.statuses();
        let shared_waiting = before.zip(undelivered()).map(|(b, a)| b.min(a));
        waiting.sample(&statuses, shared_waiting, SYNC_SECONDS);
        let live: Vec<String> = pods.list.iter().map(|p| format!("consumer-{}", p.index)).collect();
        *state.lock().unwrap_or_else(|p| p.into_inner()) =
            cluster_metrics(&namespace, &args.profile, &row, job_active, &live, memory, &errors, &so.triggers);
        rows.push(row);
        pods.scale_to(desired)?;
        if load_ended_at.is_some() && args.stop_at_load_end {
            break;
        }
        if let Some(ended) = load_ended_at {
            let idle = prometheus
                .value(
                    "sum(consumer_tasks_queued) + sum(consumer_tasks_in_flight{kind=\"cpu\"}) \
                     + (max(consumer_queue_backlog) or vector(0))",
                )
                .is_ok_and(|v| v == 0.0);
            // KEDA's minimum: with minReplicaCount 0 it deactivates below the HPA's floor of 1.
            let floor = so.min_replica_count;
            if current == floor && desired == floor && idle {
                break;
            }
            if at - ended > SETTLE_LIMIT_SECONDS {
                eprintln!("cluster: not back at the minimum {SETTLE_LIMIT_SECONDS} s after the load; stopping");
                break;
            }
        }
        let next = syncs.end(Instant::now());
        // Pods keep their own way to serving between syncs: their start-up takes less than a sync.
        while Instant::now() < next {
            pods.advance()?;
            std::thread::sleep(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(20)));
        }
    }
    let summary = load.summary();
    // Every async task's accepted → finished over the whole run: a range as long as the run also holds the series of
    // pods drained before its end. In the autoscaler's seconds (the tasks ran compressed).
    let run_seconds = started.elapsed().as_secs_f64().ceil();
    let finished_async =
        prometheus.value(&format!("sum(increase(consumer_task_sojourn_seconds_count[{run_seconds}s]))")).unwrap_or(0.0);
    let sojourn_p95 = prometheus
        .value(&format!(
            "histogram_quantile(0.95, sum by (le) (increase(consumer_task_sojourn_seconds_bucket[{run_seconds}s])))"
        ))
        .ok()
        .filter(|v| v.is_finite() && finished_async > 0.0)
        .map(|v| v * factor);
    let dashboards = match &args.dashboards {
        Some(dir) => Some(check_dashboards(dir, &prometheus, &namespace, started.elapsed().as_secs_f64())?),
        None => None,
    };
    let (cancelled, completed_async) = (Arc::clone(&pods.cancelled), Arc::clone(&pods.completed_async));
    let node_fit = pods.node.as_ref().map(|on| on.fit);
    pods.stop();
    let mut report = report(&args.profile, factor, &rows, load_ended_at, so.min_replica_count, &summary);
    if let Some(dashboards) = dashboards {
        println!("dashboards: {dashboards}");
        report["dashboards"] = dashboards;
    }
    report["outline"]["tasks_cancelled"] = cancelled.load(Ordering::Relaxed).into();
    report["outline"]["tasks_completed_in_pod_logs"] = completed_async.load(Ordering::Relaxed).into();
    report["outline"]["queue"] = if shared_queue { "redis" } else { "memory" }.into();
    report["outline"]["max_replicas"] = so.scaling.max.into();
    report["outline"]["pod_defaults"] = pod_defaults;
    report["outline"]["stand_ins"] = crate::versions::outline(&stand_ins);
    report["outline"]["cpu_work"] = args.cpu_work.as_str().into();
    report["outline"]["node_cores"] = args.node_cores.map_or(Value::Null, Value::from);
    report["outline"]["node_room_replicas"] = node_fit.map_or(Value::Null, Value::from);
    report["outline"]["sojourn_p95_s"] = sojourn_p95.map_or(Value::Null, |v| v.round().into());
    report["outline"]["waiting_replica_seconds"] = waiting.replica_seconds.round().into();
    report["outline"]["syncs"] = syncs.outline();
    report["outline"]["idle_while_waiting_percent"] =
        waiting.idle_fraction().map_or(Value::Null, |f| ((f * 1000.0).round() / 10.0).into());
    println!("{}", serde_json::to_string_pretty(&report["outline"]).unwrap_or_default());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap_or_default()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Replica-seconds (autoscaler time) while some task waited, and how many of them were spent by
/// replicas that could have started it: nothing queued of their own and room for one more task of the profile's size
/// under the start rule (its memory within the budget, its CPU within the overcommit, or nothing running). With a
/// shared backlog those replicas pull; with per-pod backlogs they cannot take another pod's work.
#[derive(Default)]
struct WaitingWork {
    task_cores: f64,
    task_bytes: f64,
    replica_seconds: f64,
    idle_replica_seconds: f64,
}

impl WaitingWork {
    /// `shared_waiting`: the shared backlog's undelivered tasks through the whole sweep of `statuses` (each status's
    /// own figure is read at its own moment, so a replica with room could be set against a task since taken).
    fn sample(&mut self, statuses: &[Value], shared_waiting: Option<f64>, seconds: f64) {
        let number = |v: &Value| v.as_f64().unwrap_or(0.0);
        let local: f64 = statuses.iter().map(|s| number(&s["queue"]["length"])).sum();
        if local + shared_waiting.unwrap_or(0.0) < 1.0 {
            return;
        }
        for status in statuses {
            self.replica_seconds += seconds;
            let cpu = &status["cpu"];
            let demand = number(&cpu["demand_cores"]);
            let cpu_room = number(&cpu["capacity_cores"]) * number(&cpu["overcommit"]) - demand;
            let memory_room = number(&status["budget_bytes"]) - number(&status["reserved_bytes"]);
            let has_room = number(&status["queue"]["length"]) == 0.0
                && memory_room >= self.task_bytes
                && (demand == 0.0 || cpu_room + 1e-9 >= self.task_cores);
            if has_room {
                self.idle_replica_seconds += seconds;
            }
        }
    }

    /// The idle share of the replica-seconds while work waited.
    fn idle_fraction(&self) -> Option<f64> {
        (self.replica_seconds > 0.0).then(|| self.idle_replica_seconds / self.replica_seconds)
    }
}

/// Stops `server` as the sync at `at` enters `window` and starts it again as one leaves it.
fn stopped_over(server: &mut impl Restartable, name: &str, window: Option<Window>, at: f64) -> Result<(), String> {
    let down = Window::holds(window, at);
    if down != server.is_stopped() {
        if down {
            server.stop();
        } else {
            server.resume()?;
        }
        eprintln!("cluster: at {at:.0} s {name} is {}", ["started again", "stopped"][usize::from(down)]);
    }
    Ok(())
}

/// What the loop reads triggers from: the Prometheus it runs (compressed), its Redis if the queue is shared, and its
/// metrics-server's readings of the pods.
struct LoopSources<'a> {
    prometheus: Compressed<'a>,
    redis: Option<&'a RedisServer>,
    resources: ResourceView<'a>,
}

/// The pods as the HPA's replica calculator sees them at this sync, with what metrics-server reports.
struct ResourceView<'a> {
    pods: &'a Pods,
    metrics_server: &'a MetricsServer,
    syncs: &'a Syncs,
    /// The container's CPU and memory requests, milli-units.
    requests: Requests,
    tolerances: Tolerances,
    current: u32,
    at: f64,
}

/// A pod's CPU and memory requests as the HPA reads them (milli-units).
#[derive(Clone, Copy)]
struct Requests {
    cpu_milli: i64,
    memory_milli: i64,
}

impl Sources for LoopSources<'_> {
    fn prometheus(&self, index: usize, query: &str) -> Result<(Vec<f64>, f64), String> {
        self.prometheus.prometheus(index, query)
    }

    fn redis_streams(&self, scaler: &RedisStreams) -> Result<f64, String> {
        self.redis.ok_or("a redis-streams trigger with no Redis (no QUEUE_URL)")?.stream_count(scaler)
    }

    fn resource(&self, resource: Resource, target: Target) -> Result<f64, String> {
        let view = &self.resources;
        let request = match resource {
            Resource::Cpu => view.requests.cpu_milli,
            Resource::Memory => view.requests.memory_milli,
        };
        let listed = view.pods.listed(
            |instant| view.syncs.seconds(instant),
            |slot| view.metrics_server.usage(slot, resource),
            request,
        );
        let timing = Timing::default();
        resource::replicas(&listed, resource, target, view.tolerances, view.current, &timing, view.at)
            .map(|(replicas, _)| f64::from(replicas))
    }
}
