//! Prometheus metrics at `/metrics`: the one place metric names are defined, the registry, and rendering.
//!
//! HTTP metrics follow prometheus-fastapi-instrumentator, so queries written for the Python service keep working.

pub mod allocator;
pub mod http;
pub mod process;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};
use prometheus::{
    Counter as CounterMetric, Encoder, Gauge as GaugeMetric, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use surge_capacity::signals::{QUEUE_WAIT_BUCKETS, SLOWDOWN_BUCKETS};

/// Metric names: dashboards, the ScaledObject and the tests refer to these.
pub mod names {
    pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
    pub const HTTP_REQUESTS_IN_PROGRESS: &str = "http_requests_in_progress";
    pub const ALLOCATOR_ALLOCATED_BYTES_TOTAL: &str = "allocator_allocated_bytes_total";
    pub const ALLOCATOR_ALLOCATIONS_TOTAL: &str = "allocator_allocations_total";
    pub const ALLOCATOR_LIVE_BYTES: &str = "allocator_live_bytes";
    pub const ALLOCATOR_RESIDENT_BYTES: &str = "allocator_resident_bytes";
    pub const TASKS_IN_FLIGHT: &str = "consumer_tasks_in_flight";
    pub const TASKS_TOTAL: &str = "consumer_tasks_total";
    pub const RETAINED_MEMORY_BYTES: &str = "consumer_retained_memory_bytes";
    pub const MEMORY_BUDGET_BYTES: &str = "consumer_memory_budget_bytes";
    pub const TASKS_QUEUED: &str = "consumer_tasks_queued";
    pub const TASK_QUEUE_WAIT_SECONDS: &str = "consumer_task_queue_wait_seconds";
    pub const TASK_DURATION_SECONDS: &str = "consumer_task_duration_seconds";
    pub const TASK_SLOWDOWN_RATIO: &str = "consumer_task_slowdown_ratio";
    pub const CPU_CAPACITY_CORES: &str = "consumer_cpu_capacity_cores";
    pub const CPU_DEMAND_CORES: &str = "consumer_cpu_demand_cores";
    pub const CPU_WORK_SECONDS_TOTAL: &str = "consumer_cpu_work_seconds_total";
    pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
    pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
    pub const PROCESS_THREADS: &str = "process_threads";
    pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
    pub const PROCESS_MAX_FDS: &str = "process_max_fds";
    pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";
    pub const BUILD_INFO: &str = "surge_build_info";
    pub const TELEMETRY_DROPPED_TOTAL: &str = "telemetry_dropped_total";
    pub const TASK_SOJOURN_SECONDS: &str = "consumer_task_sojourn_seconds";
    pub const QUEUE_BACKLOG: &str = "consumer_queue_backlog";
    pub const QUEUE_DELIVERIES_TOTAL: &str = "consumer_queue_deliveries_total";
    pub const QUEUE_CLAIMS_TOTAL: &str = "consumer_queue_claims_total";
    pub const QUEUE_DEAD_LETTERS_TOTAL: &str = "consumer_queue_dead_letters_total";
    pub const QUEUE_DUPLICATES_TOTAL: &str = "consumer_queue_duplicates_total";
    pub const QUEUE_ERRORS_TOTAL: &str = "consumer_queue_errors_total";
    pub const QUEUE_OLDEST_TASK_AGE_SECONDS: &str = "consumer_queue_oldest_task_age_seconds";
    pub const QUEUE_RENEWALS_FAILED_TOTAL: &str = "consumer_queue_renewals_failed_total";
    pub const QUEUE_LEASES_LOST_TOTAL: &str = "consumer_queue_leases_lost_total";
}

/// Why a replica claimed a task: its holder was another pod's process, or an earlier process of this pod (a container
/// restarted in place).
pub const CLAIM_REASONS: [&str; 2] = ["lease_lapsed", "restart"];

/// Latency buckets from 1 ms to 60 s, dense around the 2 s latency trigger, so p50/p95/p99 interpolate well.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0,
    7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The kinds of work, as the `kind` label says them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    Cpu,
    Memory,
}

/// How a task ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Rejected,
    Cancelled,
    /// Taken from the shared backlog and given back unfinished (drain), for another replica to run.
    HandedBack,
}

/// Where async work waits, as the `queue` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Memory,
    Redis,
}

/// Shared-backlog metrics: registered (at 0) in both modes, moved only by the Redis backlog.
#[derive(Clone)]
pub struct QueueMetrics {
    /// Tasks in the stream: waiting plus handed out and not yet acknowledged. The same number on every replica; NaN
    /// while this replica cannot read it.
    pub backlog: GaugeMetric,
    /// Seconds since the oldest task in the stream was accepted (0 when empty; NaN while unreadable).
    pub oldest_age: GaugeMetric,
    pub deliveries: IntCounter,
    /// Indexed as `CLAIM_REASONS`.
    claims: [IntCounter; 2],
    pub dead_letters: IntCounter,
    /// By `when`: `skipped` (redelivered after it had completed), `ran_twice` (a run started while an earlier run of
    /// the task had started and never ended), `finished_stale` (a holder finished a task claimed from it meanwhile).
    pub duplicates_skipped: IntCounter,
    pub duplicates_ran_twice: IntCounter,
    pub duplicates_finished_stale: IntCounter,
    pub renewals_failed: IntCounter,
    pub leases_lost: IntCounter,
    pub errors: IntCounter,
}

impl QueueMetrics {
    /// The claims counter for one of `CLAIM_REASONS` (the first for any other).
    pub fn claims(&self, reason: &str) -> &IntCounter {
        &self.claims[CLAIM_REASONS.iter().position(|r| *r == reason).unwrap_or(0)]
    }
}

/// Work metrics, pre-resolved so tasks update them without label lookups. Also what `/process/status` reads.
#[derive(Clone)]
pub struct TaskMetrics {
    in_flight: [IntGauge; 2],
    /// Indexed [kind][mode: sync, async][outcome].
    totals: [[[IntCounter; 4]; 2]; 2],
    pub retained_bytes: IntGauge,
    pub budget_bytes: IntGauge,
    pub queued: IntGauge,
    pub queue_wait: Histogram,
    /// Indexed by mode: sync, async.
    duration: [Histogram; 2],
    pub slowdown: Histogram,
    pub capacity_cores: GaugeMetric,
    pub demand_cores: GaugeMetric,
    pub cpu_work_seconds: CounterMetric,
    /// Indexed by queue: memory, redis.
    sojourn: [Histogram; 2],
}

impl TaskMetrics {
    /// Accepted → finished of async tasks, by where they waited.
    pub fn sojourn(&self, queue: QueueKind) -> &Histogram {
        &self.sojourn[queue as usize]
    }

    pub fn in_flight(&self, kind: WorkKind) -> &IntGauge {
        &self.in_flight[kind as usize]
    }

    pub fn count(&self, kind: WorkKind, is_async: bool, outcome: Outcome) {
        self.totals[kind as usize][usize::from(is_async)][outcome as usize].inc();
    }

    pub fn duration(&self, is_async: bool) -> &Histogram {
        &self.duration[usize::from(is_async)]
    }

    /// Tasks that ended with `outcome`: every task does CPU work, so the cpu series count each task once.
    pub fn tasks(&self, outcome: Outcome) -> u64 {
        self.totals[WorkKind::Cpu as usize].iter().map(|by_outcome| by_outcome[outcome as usize].get()).sum()
    }
}

/// Every metric the consumer exports, in its own registry (tests run several apps in one process).
pub struct Metrics {
    registry: Registry,
    pub http: http::HttpMetrics,
    pub tasks: TaskMetrics,
    pub queue: QueueMetrics,
    pub telemetry_dropped: IntCounterVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(names::HTTP_REQUESTS_TOTAL, "Total number of requests by method, handler and status class."),
            &["method", "handler", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(names::HTTP_REQUEST_DURATION_SECONDS, "Latency of HTTP requests by method and handler.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "handler"],
        )?;
        let in_progress = IntGaugeVec::new(
            Opts::new(names::HTTP_REQUESTS_IN_PROGRESS, "Number of HTTP requests in progress."),
            &["method", "handler"],
        )?;
        let in_flight = IntGaugeVec::new(Opts::new(names::TASKS_IN_FLIGHT, "Work running now, by kind."), &["kind"])?;
        let totals = IntCounterVec::new(
            Opts::new(names::TASKS_TOTAL, "Work by kind, mode and outcome."),
            &["kind", "mode", "outcome"],
        )?;
        let retained_bytes =
            IntGauge::new(names::RETAINED_MEMORY_BYTES, "Memory kept with retain=true until DELETE /process/cleanup.")?;
        let budget_bytes = IntGauge::new(names::MEMORY_BUDGET_BYTES, "Memory /process work may hold at once.")?;
        let queued = IntGauge::new(
            names::TASKS_QUEUED,
            "Tasks accepted and waiting to start (no free slot, memory or CPU): the backlog; per pod, KEDA's queue length.",
        )?;
        let queue_wait = Histogram::with_opts(
            HistogramOpts::new(
                names::TASK_QUEUE_WAIT_SECONDS,
                "Time from acceptance to start: grows only when the pod is short of capacity.",
            )
            .buckets(QUEUE_WAIT_BUCKETS.to_vec()),
        )?;
        let task_duration = HistogramVec::new(
            HistogramOpts::new(
                names::TASK_DURATION_SECONDS,
                "Run time from start to finish by mode; stretches past the requested duration when CPU is shared.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["mode"],
        )?;
        let slowdown = Histogram::with_opts(
            HistogramOpts::new(
                names::TASK_SLOWDOWN_RATIO,
                "Actual run time divided by the requested duration: 1 on a pod with room, above 1 when it is overloaded.",
            )
            .buckets(SLOWDOWN_BUCKETS.to_vec()),
        )?;
        let capacity_cores =
            GaugeMetric::new(names::CPU_CAPACITY_CORES, "CPU capacity of this pod for /process work, in cores.")?;
        let demand_cores = GaugeMetric::new(
            names::CPU_DEMAND_CORES,
            "CPU the running tasks ask for, in cores; divided by the capacity, the pod's utilisation of capacity.",
        )?;
        let cpu_work_seconds = CounterMetric::new(
            names::CPU_WORK_SECONDS_TOTAL,
            "Core-seconds of CPU the tasks' work has used: the threads' CPU time when burning, the clock's account when simulating (what the pod's cgroup would count).",
        )?;
        let sojourn = HistogramVec::new(
            HistogramOpts::new(
                names::TASK_SOJOURN_SECONDS,
                "Async tasks from acceptance to finish (wait plus run), by the queue they waited in: what autoscaling bounds.",
            )
            .buckets(QUEUE_WAIT_BUCKETS.to_vec()),
            &["queue"],
        )?;
        let backlog = GaugeMetric::new(
            names::QUEUE_BACKLOG,
            "Shared backlog (redis queue): tasks waiting in the stream plus handed out and unacknowledged; every replica reports the same number, so query it with max(); NaN while this replica cannot reach Redis.",
        )?;
        let oldest_age = GaugeMetric::new(
            names::QUEUE_OLDEST_TASK_AGE_SECONDS,
            "Shared backlog (redis queue): seconds since the oldest task in the stream was accepted, waiting or running (0 when empty; NaN while Redis cannot be reached).",
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let deliveries = counter(
            names::QUEUE_DELIVERIES_TOTAL,
            "Tasks this replica took from the shared backlog (claims included).",
        )?;
        let claims = IntCounterVec::new(
            Opts::new(
                names::QUEUE_CLAIMS_TOTAL,
                "Tasks this replica claimed because their holder's lease lapsed, by reason: lease_lapsed (another pod's process: killed, paused or cut off) or restart (an earlier process of this pod, restarted in place).",
            ),
            &["reason"],
        )?;
        let renewals_failed = counter(
            names::QUEUE_RENEWALS_FAILED_TOTAL,
            "Lease renewals of held tasks that could not reach Redis (four in a row may fail before a lease lapses).",
        )?;
        let leases_lost = counter(
            names::QUEUE_LEASES_LOST_TOTAL,
            "Tasks this replica stopped because another replica had claimed them (its lease had lapsed).",
        )?;
        let dead_letters = counter(
            names::QUEUE_DEAD_LETTERS_TOTAL,
            "Tasks this replica moved to the dead-letter stream after too many deliveries.",
        )?;
        let duplicates = IntCounterVec::new(
            Opts::new(
                names::QUEUE_DUPLICATES_TOTAL,
                "Duplicate deliveries, by when: skipped (already completed, not run), ran_twice (a run started while an earlier run had started and never ended), finished_stale (a holder finished a task claimed from it meanwhile; its result left to the new holder).",
            ),
            &["when"],
        )?;
        let errors = counter(names::QUEUE_ERRORS_TOTAL, "Failed calls to the shared backlog (Redis).")?;
        let telemetry_dropped = IntCounterVec::new(
            Opts::new(names::TELEMETRY_DROPPED_TOTAL, "Telemetry items dropped because a sink was slow or down."),
            &["sink"],
        )?;
        let build_info = IntGauge::with_opts(
            Opts::new(names::BUILD_INFO, "Build information; the value is always 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);

        let kinds = ["cpu", "memory"];
        let tasks = TaskMetrics {
            in_flight: kinds.map(|kind| in_flight.with_label_values(&[kind])),
            totals: kinds.map(|kind| {
                ["sync", "async"].map(|mode| {
                    ["completed", "rejected", "cancelled", "handed_back"]
                        .map(|outcome| totals.with_label_values(&[kind, mode, outcome]))
                })
            }),
            retained_bytes: retained_bytes.clone(),
            budget_bytes: budget_bytes.clone(),
            queued: queued.clone(),
            queue_wait: queue_wait.clone(),
            duration: ["sync", "async"].map(|mode| task_duration.with_label_values(&[mode])),
            slowdown: slowdown.clone(),
            capacity_cores: capacity_cores.clone(),
            demand_cores: demand_cores.clone(),
            cpu_work_seconds: cpu_work_seconds.clone(),
            sojourn: ["memory", "redis"].map(|queue| sojourn.with_label_values(&[queue])),
        };
        let queue = QueueMetrics {
            backlog: backlog.clone(),
            oldest_age: oldest_age.clone(),
            deliveries: deliveries.clone(),
            claims: CLAIM_REASONS.map(|reason| claims.with_label_values(&[reason])),
            dead_letters: dead_letters.clone(),
            duplicates_skipped: duplicates.with_label_values(&["skipped"]),
            duplicates_ran_twice: duplicates.with_label_values(&["ran_twice"]),
            duplicates_finished_stale: duplicates.with_label_values(&["finished_stale"]),
            renewals_failed: renewals_failed.clone(),
            leases_lost: leases_lost.clone(),
            errors: errors.clone(),
        };
        for sink in ["otlp", "loki", "stdout"] {
            telemetry_dropped.with_label_values(&[sink]);
        }

        for collector in [
            Box::new(requests.clone()) as Box<dyn Collector>,
            Box::new(duration.clone()),
            Box::new(in_progress.clone()),
            Box::new(in_flight),
            Box::new(totals),
            Box::new(retained_bytes),
            Box::new(budget_bytes),
            Box::new(queued),
            Box::new(queue_wait),
            Box::new(task_duration),
            Box::new(slowdown),
            Box::new(capacity_cores),
            Box::new(demand_cores),
            Box::new(cpu_work_seconds),
            Box::new(telemetry_dropped.clone()),
            Box::new(sojourn),
            Box::new(backlog),
            Box::new(oldest_age),
            Box::new(deliveries),
            Box::new(claims),
            Box::new(renewals_failed),
            Box::new(leases_lost),
            Box::new(dead_letters),
            Box::new(duplicates),
            Box::new(errors),
            Box::new(build_info),
            Box::new(ScrapeTimeCollector::new()?),
        ] {
            registry.register(collector)?;
        }
        Ok(Self {
            registry,
            http: http::HttpMetrics::new(requests, duration, in_progress),
            tasks,
            queue,
            telemetry_dropped,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        if let Err(error) = TextEncoder::new().encode(&families, &mut buffer) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Allocator and process metrics, read fresh on every scrape so nothing has to keep them up to date.
struct ScrapeTimeCollector {
    descs: Vec<(Desc, MetricType)>,
    start_time_seconds: f64,
}

impl ScrapeTimeCollector {
    const METRICS: [(&'static str, &'static str, MetricType); 10] = [
        (
            names::ALLOCATOR_ALLOCATED_BYTES_TOTAL,
            "Bytes ever allocated; rate() is the allocation rate.",
            MetricType::COUNTER,
        ),
        (names::ALLOCATOR_ALLOCATIONS_TOTAL, "Allocation calls.", MetricType::COUNTER),
        (names::ALLOCATOR_LIVE_BYTES, "Bytes allocated and not yet freed.", MetricType::GAUGE),
        (names::ALLOCATOR_RESIDENT_BYTES, "Bytes the allocator holds from the OS.", MetricType::GAUGE),
        (names::PROCESS_CPU_SECONDS_TOTAL, "Total user and system CPU time spent in seconds.", MetricType::COUNTER),
        (names::PROCESS_RESIDENT_MEMORY_BYTES, "Resident memory size in bytes.", MetricType::GAUGE),
        (names::PROCESS_THREADS, "Number of OS threads in the process.", MetricType::GAUGE),
        (names::PROCESS_OPEN_FDS, "Number of open file descriptors.", MetricType::GAUGE),
        (names::PROCESS_MAX_FDS, "Maximum number of open file descriptors.", MetricType::GAUGE),
        (
            names::PROCESS_START_TIME_SECONDS,
            "Start time of the process since unix epoch in seconds.",
            MetricType::GAUGE,
        ),
    ];

    fn new() -> prometheus::Result<Self> {
        let descs = Self::METRICS
            .iter()
            .map(|&(name, help, kind)| Ok((Desc::new(name.into(), help.into(), vec![], Default::default())?, kind)))
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { descs, start_time_seconds: process::start_time_seconds() })
    }
}

impl Collector for ScrapeTimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().map(|(desc, _)| desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let alloc = allocator::stats();
        let proc = process::stats();
        let values = [
            alloc.allocated_bytes_total as f64,
            alloc.allocations_total as f64,
            alloc.live_bytes as f64,
            alloc.resident_bytes as f64,
            proc.cpu_seconds,
            proc.resident_bytes as f64,
            proc.threads as f64,
            proc.open_fds as f64,
            proc.max_fds as f64,
            self.start_time_seconds,
        ];
        self.descs.iter().zip(values).map(|((desc, kind), value)| family(desc, *kind, value)).collect()
    }
}

fn family(desc: &Desc, kind: MetricType, value: f64) -> MetricFamily {
    let mut metric = Metric::default();
    match kind {
        MetricType::COUNTER => {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        }
        _ => {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
    }
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(vec![metric]);
    family
}
