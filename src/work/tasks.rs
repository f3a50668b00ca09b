//! The task registry: admission into a bounded FIFO backlog, starts under the pod's capacity, fair CPU sharing among
//! running tasks, retained memory and history. Its vocabulary is in `spec`, what it answers in `answers`.
//!
//! A task starts when a slot is free, its memory fits the budget and the CPU asked for stays within the overcommit of
//! the capacity (`capacity::can_start`); otherwise it waits in the queue, holding no memory. Every task runs on the
//! main runtime under one `TaskTracker`, so shutdown can cancel background work and wait for it, whichever HTTP worker
//! accepted the request.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use super::answers::{
    CleanupReport, CpuStatus, LegacyCurrentStatus, LegacyStatistics, Overload, OverloadReason, QueueStatus, Refusal,
    RunningByKind, StatusSnapshot, TaskAccepted, TaskReport, Totals,
};
use super::capacity::{self, Demand, Forecast, Limits};
use super::cpu::{CpuJob, CpuWork, Progress, ShareLevel};
use super::memory::MemoryBlock;
use super::records::{RecordStatus, RecordStore, TaskRecord};
use super::spec::{Mode, TaskStatus, WorkSpec};
use crate::metrics::{Outcome, QueueKind, TaskMetrics, WorkKind};
use crate::telemetry::{current_trace_ids, LogRateLimit};

/// How many finished tasks `/process/status` shows.
const RECENT_TASKS: usize = 5;
/// Retry-After when only a cleanup can make room (retained memory leaves too little of the budget).
const RETRY_AFTER_RETAINED: Duration = Duration::from_secs(30);
/// Retry-After while draining: another replica can take the work at once.
const RETRY_AFTER_DRAINING: Duration = Duration::from_secs(1);
/// Longest Retry-After: a client should look again within this even behind a long backlog.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);
const MIB: u64 = 1024 * 1024;
/// `task rejected` lines a second; the next line let through says how many were left out.
const REJECTION_LINES_PER_SECOND: u64 = 10;
/// Most task records the memory queue keeps (about 300 bytes each), whatever the retention.
const RECORDS_KEPT: usize = 100_000;

/// How the registry is set up.
#[derive(Debug, Clone, Copy)]
pub struct RegistryConfig {
    pub limits: Limits,
    pub queue_capacity: usize,
    pub cpu_work: CpuWork,
    /// How long `GET /process/{task_id}` can find a task this pod ran or queued.
    pub record_retention: Duration,
}

/// Where an accepted task came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// A request to this pod: sync, or async waiting in this pod's backlog.
    Request,
    /// Taken from the shared backlog, accepted by some replica at `accepted_at`.
    Shared { accepted_at: DateTime<Utc> },
}

/// Why a queued task's wait ended.
enum StartSignal {
    Go,
    Drained,
}

struct QueuedTask {
    id: Uuid,
    demand: Demand,
    accepted: Instant,
    start: oneshot::Sender<StartSignal>,
}

struct RunningTask {
    demand: Demand,
    progress: Arc<Progress>,
}

/// Everything admission and starts decide on, under one lock.
#[derive(Default)]
struct Schedule {
    draining: bool,
    queue: VecDeque<QueuedTask>,
    running: HashMap<Uuid, RunningTask>,
    /// Memory of running tasks plus retained memory: starts keep this at or under the budget.
    reserved_bytes: u64,
}

impl Schedule {
    fn demand_cores(&self) -> f64 {
        // A fold from +0.0: an empty f64 `sum` is -0.0, which would read "-0" on the dashboards.
        self.running.values().map(|task| task.demand.cores).fold(0.0, |total, cores| total + cores)
    }

    fn can_start(&self, limits: &Limits, task: &Demand) -> bool {
        let running = u32::try_from(self.running.len()).unwrap_or(u32::MAX);
        capacity::can_start(limits, running, self.demand_cores(), self.reserved_bytes, task)
    }

    /// Running tasks as the forecast sees them: the work they have left.
    fn running_demands(&self) -> Vec<Demand> {
        self.running
            .values()
            .map(|task| Demand { work: (task.demand.work - task.progress.core_seconds()).max(0.0), ..task.demand })
            .collect()
    }

    fn forecast(&self, limits: &Limits, retained_bytes: u64, extra: Option<Demand>, target: usize) -> Option<Forecast> {
        let queued: Vec<Demand> = self.queue.iter().map(|task| task.demand).chain(extra).collect();
        capacity::forecast(limits, retained_bytes, &self.running_demands(), &queued, target)
    }
}

/// Shared state of all tasks.
pub struct TaskRegistry {
    config: RegistryConfig,
    schedule: Mutex<Schedule>,
    share: ShareLevel,
    /// The cores the pod's node gives it now, as `f64` bits (infinite unless a node model says otherwise).
    node_cores: AtomicU64,
    retained: Mutex<Vec<MemoryBlock>>,
    /// Queue, running and retained figures live here too, and `/process/status` reads some of them back.
    metrics: TaskMetrics,
    recent: Mutex<VecDeque<TaskReport>>,
    /// Tasks started; how they ended is counted in `metrics`.
    started: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    runtime: Handle,
    /// An overload refuses thousands a second; the log gets a few lines and how many were left out.
    rejections_logged: LogRateLimit,
    /// Tasks that arrived here (sync, and async in the memory queue), for `GET /process/{task_id}`.
    records: Mutex<RecordStore>,
    /// Woken when a task ends, so the shared backlog's puller takes the next one at once.
    room: tokio::sync::Notify,
}

/// An accepted task: what to answer now, and its end (a sync request awaits it).
pub struct Accepted {
    pub answer: TaskAccepted,
    pub finished: JoinHandle<Finished>,
    /// Cancels the task when dropped unless disarmed: a sync request whose client is gone cancels its work.
    cancel: CancellationToken,
}

impl Accepted {
    /// Stops the task, queued or running (a shared task whose lease was lost).
    pub fn canceller(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Awaits the end of a sync task; dropping this future cancels it, queued or running. (actix drops a handler's
    /// future on some client disconnects only: actix-web issues 1313 and 3462.)
    pub async fn finish(self) -> Result<Finished, tokio::task::JoinError> {
        let guard = self.cancel.drop_guard();
        let finished = self.finished.await;
        guard.disarm();
        finished
    }
}

/// How an accepted task ended.
pub struct Finished {
    pub report: TaskReport,
    /// False when it was cancelled while still queued (drain, or the client left).
    pub started: bool,
}

impl TaskRegistry {
    /// `runtime` runs every task, so tasks outlive the HTTP worker that accepted them.
    pub fn new(config: RegistryConfig, metrics: TaskMetrics, runtime: Handle) -> Arc<Self> {
        metrics.budget_bytes.set(i64::try_from(config.limits.budget_bytes).unwrap_or(i64::MAX));
        metrics.capacity_cores.set(config.limits.capacity_cores);
        Arc::new(Self {
            config,
            schedule: Mutex::new(Schedule::default()),
            share: ShareLevel::default(),
            node_cores: AtomicU64::new(f64::INFINITY.to_bits()),
            retained: Mutex::new(Vec::new()),
            metrics,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_TASKS)),
            started: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime,
            rejections_logged: LogRateLimit::new(REJECTION_LINES_PER_SECOND, 1),
            records: Mutex::new(RecordStore::new(config.record_retention, RECORDS_KEPT)),
            room: tokio::sync::Notify::new(),
        })
    }

    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn retained_bytes(&self) -> u64 {
        u64::try_from(self.metrics.retained_bytes.get()).unwrap_or(0)
    }

    /// Starts the task now, queues it, or refuses it without changing anything.
    pub fn submit(self: &Arc<Self>, spec: WorkSpec) -> Result<Accepted, Refusal> {
        self.admit(spec, Uuid::new_v4(), Origin::Request)
    }

    /// Runs a task taken from the shared backlog (the puller takes one only when `fits` says it can start).
    pub fn submit_shared(
        self: &Arc<Self>,
        spec: WorkSpec,
        task_id: Uuid,
        accepted_at: DateTime<Utc>,
    ) -> Result<Accepted, Refusal> {
        self.admit(spec, task_id, Origin::Shared { accepted_at })
    }

    pub fn limits(&self) -> Limits {
        self.config.limits
    }

    /// Whether a task of `demand` would start now: nothing queued here, and the start rule admits it.
    pub fn fits(&self, demand: &Demand) -> bool {
        let schedule = self.schedule();
        !schedule.draining && schedule.queue.is_empty() && schedule.can_start(&self.config.limits, demand)
    }

    /// Resolves when a running task ends (room may have been made).
    pub async fn room_made(&self) {
        self.room.notified().await;
    }

    /// Runs `work` under the registry's shutdown: the drain waits for it.
    pub fn track(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn_on(work, &self.runtime);
    }

    /// The record of a task that arrived here (sync, or async in the memory queue).
    pub fn record(&self, id: Uuid) -> Option<TaskRecord> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).get(id).map(TaskRecord::with_sojourn)
    }

    fn update_record(&self, id: Uuid, change: impl FnOnce(&mut TaskRecord)) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).update(id, change);
    }

    fn admit(self: &Arc<Self>, spec: WorkSpec, task_id: Uuid, origin: Origin) -> Result<Accepted, Refusal> {
        let limits = self.config.limits;
        if spec.memory_bytes > limits.budget_bytes {
            self.count_kinds(&spec, Outcome::Rejected);
            return Err(Refusal::LargerThanBudget { budget_bytes: limits.budget_bytes });
        }
        let demand = spec.demand();
        // Every task, sync or async, is cut off at the shutdown deadline: a sync request left running would hold the
        // process past its shutdown timeout (the runtime waits for its CPU thread). A sync request that goes away
        // cancels only its own task.
        let cancel = self.shutdown.child_token();
        let mut schedule = self.schedule();
        if schedule.draining {
            drop(schedule);
            return Err(Refusal::Overloaded(self.refuse(
                &spec,
                OverloadReason::Draining,
                "the pod is draining".into(),
                RETRY_AFTER_DRAINING,
            )));
        }
        let retained = self.retained_bytes();
        let starts_now = schedule.queue.is_empty() && schedule.can_start(&limits, &demand);
        let local = matches!(origin, Origin::Request);
        if local && !starts_now && schedule.queue.len() >= self.config.queue_capacity {
            let until_room = schedule
                .forecast(&limits, retained, schedule.queue.is_empty().then_some(demand), 0)
                .map_or(RETRY_AFTER_RETAINED, |f| Duration::from_secs_f64(f.start_in));
            let message = format!("the backlog is full ({} tasks queued)", schedule.queue.len());
            drop(schedule);
            return Err(Refusal::Overloaded(self.refuse(&spec, OverloadReason::QueueFull, message, until_room)));
        }
        let position = schedule.queue.len();
        let Some(forecast) = schedule.forecast(&limits, retained, Some(demand), position) else {
            drop(schedule);
            let message = format!(
                "{} MiB requested; retained memory, with what tasks ahead of it will retain, leaves too little of the {} \
                 MiB budget (DELETE /process/cleanup)",
                spec.memory_bytes / MIB,
                limits.budget_bytes / MIB
            );
            return Err(Refusal::Overloaded(self.refuse(
                &spec,
                OverloadReason::MemoryBudget,
                message,
                RETRY_AFTER_RETAINED,
            )));
        };
        let start = if starts_now {
            self.mark_running(&mut schedule, task_id, demand);
            None
        } else {
            let (sender, receiver) = oneshot::channel();
            schedule.queue.push_back(QueuedTask { id: task_id, demand, accepted: Instant::now(), start: sender });
            self.metrics.queued.inc();
            Some(receiver)
        };
        drop(schedule);

        let ids = current_trace_ids();
        tracing::info!(
            task_id = %task_id,
            trace_id = ids.trace_id.as_deref(),
            span_id = ids.span_id.as_deref(),
            mode = spec.mode.as_str(),
            cpu_intensity = spec.cpu_intensity,
            memory_bytes = spec.memory_bytes,
            duration_seconds = spec.duration.as_secs(),
            retain = spec.retain,
            queued = start.is_some(),
            "task accepted"
        );
        let now = Utc::now();
        if local {
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            records.insert(TaskRecord {
                status: if starts_now { RecordStatus::Running } else { RecordStatus::Queued },
                cpu_intensity: spec.cpu_intensity,
                memory_size: spec.memory_bytes / MIB,
                duration: spec.duration.as_secs_f64(),
                started_at: starts_now.then_some(now),
                ..TaskRecord::accepted(task_id, "memory", spec.mode.as_str(), now)
            });
        }
        // Created here, inside the request's span, so the task's spans are children of the request's.
        let span = tracing::info_span!("task", task.id = %task_id, task.mode = spec.mode.as_str());
        let task = drive(Arc::clone(self), task_id, spec, start, cancel.clone(), origin);
        let finished = self.tracker.spawn_on(task.instrument(span), &self.runtime);
        let at = |seconds: f64| now + chrono::Duration::from_std(Duration::from_secs_f64(seconds)).unwrap_or_default();
        let (status, queue_position) =
            if starts_now { (TaskStatus::Started, None) } else { (TaskStatus::Queued, Some(position + 1)) };
        let message = match queue_position {
            None => "task started".to_owned(),
            Some(place) => format!("task queued at position {place}"),
        };
        Ok(Accepted {
            answer: TaskAccepted {
                task_id,
                status,
                queue_position,
                estimated_start: at(forecast.start_in),
                estimated_completion: at(forecast.finish_in),
                message,
            },
            finished,
            cancel,
        })
    }

    /// Counts and logs a refusal, and says when to come back.
    pub fn refuse(&self, spec: &WorkSpec, reason: OverloadReason, message: String, retry_after: Duration) -> Overload {
        self.count_kinds(spec, Outcome::Rejected);
        if let Some(suppressed) = self.rejections_logged.admit() {
            let suppressed_before = (suppressed > 0).then_some(suppressed);
            tracing::warn!(reason = reason.as_str(), detail = %message, suppressed_before, "task rejected");
        }
        let retry_after_seconds =
            retry_after.clamp(Duration::from_secs(1), RETRY_AFTER_MAX).as_secs_f64().ceil() as u64;
        Overload { reason, message, retry_after_seconds }
    }

    fn mark_running(&self, schedule: &mut Schedule, id: Uuid, demand: Demand) {
        schedule.reserved_bytes += demand.memory_bytes;
        schedule.running.insert(id, RunningTask { demand, progress: Arc::default() });
        self.started.fetch_add(1, Ordering::Relaxed);
        self.reshare(schedule);
    }

    /// Recomputes the fair share after the running set or the node's share changed.
    fn reshare(&self, schedule: &Schedule) {
        let demand = schedule.demand_cores();
        let node_cores = f64::from_bits(self.node_cores.load(Ordering::Acquire));
        self.share.set(capacity::share_level(
            schedule.running.values().map(|task| task.demand.cores),
            self.config.limits.capacity_cores.min(node_cores),
        ));
        self.metrics.demand_cores.set(demand);
    }

    /// The cores the node gives this pod now (simulated work only): running tasks share the lesser of this and the
    /// capacity, as a pod's threads share what the kernel gives its cgroup on a busy node.
    pub fn set_node_cores(&self, cores: f64) {
        let schedule = self.schedule();
        self.node_cores.store(cores.max(0.0).to_bits(), Ordering::Release);
        self.reshare(&schedule);
    }

    /// Starts queued tasks from the head while they fit (strict FIFO: a large task at the head holds back the rest).
    fn dispatch(&self, schedule: &mut Schedule) {
        while let Some(head) = schedule.queue.front() {
            if !schedule.can_start(&self.config.limits, &head.demand) {
                break;
            }
            let Some(task) = schedule.queue.pop_front() else { break };
            self.metrics.queued.dec();
            self.mark_running(schedule, task.id, task.demand);
            // The driver keeps its receiver until it has left the queue, so this cannot fail while it is queued.
            if task.start.send(StartSignal::Go).is_err() {
                self.release(schedule, task.id);
            }
        }
    }

    /// Takes a finished task out of the running set and starts what now fits.
    fn release(&self, schedule: &mut Schedule, id: Uuid) {
        if let Some(task) = schedule.running.remove(&id) {
            schedule.reserved_bytes = schedule.reserved_bytes.saturating_sub(task.demand.memory_bytes);
        }
        self.reshare(schedule);
        self.dispatch(schedule);
        self.room.notify_waiters();
    }

    /// Removes a task that gave up while queued; false if it had already been started.
    fn withdraw(&self, id: Uuid) -> bool {
        let mut schedule = self.schedule();
        let Some(index) = schedule.queue.iter().position(|task| task.id == id) else { return false };
        schedule.queue.remove(index);
        self.metrics.queued.dec();
        // A task behind it may fit now that the head changed.
        self.dispatch(&mut schedule);
        true
    }

    /// Counts the task once per kind of work it does: CPU always, memory when it asked for some.
    fn count_kinds(&self, spec: &WorkSpec, outcome: Outcome) {
        let is_async = spec.mode == Mode::Async;
        self.metrics.count(WorkKind::Cpu, is_async, outcome);
        if spec.memory_bytes > 0 {
            self.metrics.count(WorkKind::Memory, is_async, outcome);
        }
    }

    fn finish(&self, spec: &WorkSpec, report: TaskReport, origin: Origin) -> TaskReport {
        let ids = current_trace_ids();
        let outcome = match (report.status, origin) {
            (TaskStatus::Cancelled, Origin::Shared { .. }) => Outcome::HandedBack,
            (TaskStatus::Cancelled, Origin::Request) => Outcome::Cancelled,
            _ => Outcome::Completed,
        };
        // A shared task stopped here goes on elsewhere: the log says so, as the outcome label does.
        let status = if outcome == Outcome::HandedBack { "handed_back" } else { report.status.as_str() };
        tracing::info!(
            task_id = %report.task_id,
            trace_id = ids.trace_id.as_deref(),
            span_id = ids.span_id.as_deref(),
            status,
            mode = report.mode.as_str(),
            queue_wait_seconds = report.queue_wait_seconds,
            wall_seconds = report.wall_seconds,
            slowdown = report.slowdown,
            cpu_seconds = report.cpu_seconds,
            allocated_bytes = report.allocated_bytes,
            retained = report.retained,
            "task finished"
        );
        self.count_kinds(spec, outcome);
        if spec.mode == Mode::Async && outcome == Outcome::Completed {
            let queue = match origin {
                Origin::Request => QueueKind::Memory,
                Origin::Shared { .. } => QueueKind::Redis,
            };
            // queue_wait_seconds counts from the acceptance, on this pod or (shared) on whichever took the request.
            self.metrics.sojourn(queue).observe(report.queue_wait_seconds + report.wall_seconds);
        }
        if matches!(origin, Origin::Request) {
            self.update_record(report.task_id, |record| {
                record.status = match report.status {
                    TaskStatus::Completed => RecordStatus::Completed,
                    _ => RecordStatus::Cancelled,
                };
                record.finished_at = Some(report.finished_at);
                record.wall_seconds = Some(report.wall_seconds);
                record.slowdown = Some(report.slowdown);
            });
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT_TASKS {
            recent.pop_front();
        }
        recent.push_back(report.clone());
        report
    }

    /// Keeps a finished task's memory; its reservation stays until `cleanup`.
    fn retain(&self, block: MemoryBlock) {
        let mut retained = self.retained.lock().unwrap_or_else(PoisonError::into_inner);
        self.metrics.retained_bytes.add(i64::try_from(block.bytes()).unwrap_or(i64::MAX));
        retained.push(block);
    }

    /// Frees all retained memory, returns its budget and starts what now fits.
    pub fn cleanup(&self) -> CleanupReport {
        let blocks = std::mem::take(&mut *self.retained.lock().unwrap_or_else(PoisonError::into_inner));
        let bytes_freed: u64 = blocks.iter().map(MemoryBlock::bytes).sum();
        let objects_freed = blocks.len() as u64;
        drop(blocks);
        let mut schedule = self.schedule();
        self.metrics.retained_bytes.sub(i64::try_from(bytes_freed).unwrap_or(i64::MAX));
        schedule.reserved_bytes = schedule.reserved_bytes.saturating_sub(bytes_freed);
        self.dispatch(&mut schedule);
        drop(schedule);
        let estimated_mb_freed = bytes_freed as f64 / MIB as f64;
        CleanupReport {
            objects_freed,
            bytes_freed,
            status: "cleaned",
            objects_removed: objects_freed,
            estimated_mb_freed,
            message: format!("freed {objects_freed} retained blocks ({estimated_mb_freed:.0} MiB)"),
        }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let schedule = self.schedule();
        let now = Instant::now();
        let oldest_wait_seconds =
            schedule.queue.front().map_or(0.0, |task| now.saturating_duration_since(task.accepted).as_secs_f64());
        let queue =
            QueueStatus { length: schedule.queue.len(), capacity: self.config.queue_capacity, oldest_wait_seconds };
        let demand_cores = schedule.demand_cores();
        let running_memory = schedule.running.values().filter(|task| task.demand.memory_bytes > 0).count() as u64;
        let reserved_bytes = schedule.reserved_bytes;
        drop(schedule);
        let retained_objects = self.retained.lock().unwrap_or_else(PoisonError::into_inner).len() as u64;
        let completed = self.metrics.tasks(Outcome::Completed);
        StatusSnapshot {
            tasks_running: RunningByKind {
                cpu: u32::try_from(self.metrics.in_flight(WorkKind::Cpu).get()).unwrap_or(0),
                memory: u32::try_from(self.metrics.in_flight(WorkKind::Memory).get()).unwrap_or(0),
            },
            queue,
            cpu: CpuStatus {
                capacity_cores: self.config.limits.capacity_cores,
                demand_cores,
                overcommit: self.config.limits.overcommit,
                work: self.config.cpu_work.as_str(),
            },
            retained_bytes: self.retained_bytes(),
            budget_bytes: self.config.limits.budget_bytes,
            reserved_bytes,
            max_tasks: self.config.limits.max_tasks,
            totals: Totals {
                started: self.started.load(Ordering::Relaxed),
                completed,
                rejected: self.metrics.tasks(Outcome::Rejected),
                cancelled: self.metrics.tasks(Outcome::Cancelled),
            },
            recent: self.recent.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect(),
            current_status: LegacyCurrentStatus {
                memory_store_objects: running_memory + retained_objects,
                memory_store_size_estimate_mb: reserved_bytes as f64 / MIB as f64,
            },
            statistics: LegacyStatistics { total_processed: completed },
        }
    }

    /// From the end of the drain delay: new work is refused and every queued task is let go (async ones cancelled, sync ones answered
    /// 503 by their request), each counted and logged by its driver.
    pub fn begin_drain(&self) {
        let mut schedule = self.schedule();
        schedule.draining = true;
        let queued = std::mem::take(&mut schedule.queue);
        drop(schedule);
        self.metrics.queued.sub(i64::try_from(queued.len()).unwrap_or(i64::MAX));
        if !queued.is_empty() {
            tracing::info!(tasks = queued.len(), "draining: letting go of the queued tasks");
        }
        for task in queued {
            // A driver that already gave up has nothing left to tell.
            let _ = task.start.send(StartSignal::Drained);
        }
    }

    /// The 503 for a sync request whose task was let go by the drain before it started (counted as cancelled).
    pub fn drained_while_queued(&self) -> Overload {
        Overload {
            reason: OverloadReason::Draining,
            message: "the pod began draining before this task could start".into(),
            retry_after_seconds: RETRY_AFTER_DRAINING.as_secs(),
        }
    }

    /// Lets running tasks finish until `finish_by`, then cancels every one still running, sync or background (each
    /// counted and logged as cancelled; a sync request is answered with its cancelled report), and waits for every task
    /// to end. A scale-down then loses no work that fits the grace period, and the process exits within its timeout.
    pub async fn shutdown(&self, finish_by: tokio::time::Instant) {
        self.begin_drain();
        self.tracker.close();
        if tokio::time::timeout_at(finish_by, self.tracker.wait()).await.is_err() {
            tracing::warn!(tasks = self.tracker.len(), "shutdown deadline near: cancelling the work still running");
            self.shutdown.cancel();
            self.tracker.wait().await;
        }
    }
}

/// Counts a kind of work in flight while alive.
struct Running<'a>(&'a prometheus::IntGauge);

impl<'a> Running<'a> {
    fn start(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Takes the task out of the running set however its execution ends.
struct RunningSlot<'a> {
    registry: &'a TaskRegistry,
    id: Uuid,
}

impl Drop for RunningSlot<'_> {
    fn drop(&mut self) {
        let mut schedule = self.registry.schedule();
        self.registry.release(&mut schedule, self.id);
    }
}

/// One accepted task, from the queue (if it waits) to its report.
async fn drive(
    registry: Arc<TaskRegistry>,
    id: Uuid,
    spec: WorkSpec,
    start: Option<oneshot::Receiver<StartSignal>>,
    cancel: CancellationToken,
    origin: Origin,
) -> Finished {
    let accepted = Instant::now();
    if let Some(mut start) = start {
        let signal = tokio::select! {
            signal = &mut start => signal,
            () = cancel.cancelled() => {
                if registry.withdraw(id) {
                    Ok(StartSignal::Drained)
                } else {
                    // Started in the meantime: the signal is already there; execute sees the cancellation at once.
                    start.await
                }
            }
        };
        if !matches!(signal, Ok(StartSignal::Go)) {
            let report = not_started(id, &spec, accepted.elapsed());
            return Finished { report: registry.finish(&spec, report, origin), started: false };
        }
        if matches!(origin, Origin::Request) {
            registry.update_record(id, |record| {
                record.status = RecordStatus::Running;
                record.started_at = Some(Utc::now());
            });
        }
    }
    // A shared task waited in the stream from its acceptance on whichever replica took the request.
    let queue_wait = match origin {
        Origin::Request => accepted.elapsed(),
        Origin::Shared { accepted_at } => (Utc::now() - accepted_at).to_std().unwrap_or_default(),
    };
    registry.metrics.queue_wait.observe(queue_wait.as_secs_f64());
    let report = execute(&registry, id, spec, queue_wait, &cancel).await;
    Finished { report: registry.finish(&spec, report, origin), started: true }
}

fn not_started(task_id: Uuid, spec: &WorkSpec, queue_wait: Duration) -> TaskReport {
    TaskReport {
        task_id,
        status: TaskStatus::Cancelled,
        mode: spec.mode,
        cpu_intensity: spec.cpu_intensity,
        memory_size: spec.memory_bytes / MIB,
        duration: spec.duration.as_secs_f64(),
        retained: false,
        queue_wait_seconds: queue_wait.as_secs_f64(),
        wall_seconds: 0.0,
        slowdown: 0.0,
        cpu_seconds: 0.0,
        allocated_bytes: 0,
        finished_at: Utc::now(),
    }
}

async fn execute(
    registry: &Arc<TaskRegistry>,
    task_id: Uuid,
    spec: WorkSpec,
    queue_wait: Duration,
    cancel: &CancellationToken,
) -> TaskReport {
    let slot = RunningSlot { registry, id: task_id };
    let progress = registry.schedule().running.get(&task_id).map(|task| Arc::clone(&task.progress)).unwrap_or_default();
    let started = Instant::now();
    let memory_running = (spec.memory_bytes > 0).then(|| Running::start(registry.metrics.in_flight(WorkKind::Memory)));
    let cpu_running = Running::start(registry.metrics.in_flight(WorkKind::Cpu));
    let bytes = spec.memory_bytes;
    let demand = spec.demand();
    // The memory span lasts from allocation to release; the CPU span, the CPU work.
    let memory_span = tracing::info_span!("memory_work", memory.bytes = bytes, memory.retain = spec.retain);
    let cpu_span = tracing::info_span!(
        "cpu_work",
        cpu.intensity = spec.cpu_intensity,
        cpu.duration_seconds = spec.duration.as_secs_f64(),
        cpu.seconds = tracing::field::Empty,
    );
    let alloc_span = memory_span.clone();
    // Allocation on the blocking pool beside the CPU work: touching hundreds of MiB takes a while and must not delay it.
    let allocation = tokio::task::spawn_blocking(move || alloc_span.in_scope(|| MemoryBlock::allocate(bytes)));
    let cpu_work = async {
        match registry.config.cpu_work {
            CpuWork::Burn => {
                let (registry, progress, cancel, span) =
                    (Arc::clone(registry), Arc::clone(&progress), cancel.clone(), cpu_span.clone());
                tokio::task::spawn_blocking(move || {
                    let job = CpuJob {
                        demand: demand.cores,
                        work: demand.work,
                        share: &registry.share,
                        progress: &progress,
                        used: &registry.metrics.cpu_work_seconds,
                        cancel: &cancel,
                    };
                    span.in_scope(|| job.burn())
                })
                .await
                .ok()
            }
            CpuWork::Simulate => {
                let job = CpuJob {
                    demand: demand.cores,
                    work: demand.work,
                    share: &registry.share,
                    progress: &progress,
                    used: &registry.metrics.cpu_work_seconds,
                    cancel,
                };
                Some(job.simulate().instrument(cpu_span.clone()).await)
            }
        }
    };
    let (block, cpu) = tokio::join!(allocation, cpu_work);
    drop(cpu_running);
    let wall = started.elapsed();
    let block = block.ok();
    let allocated_bytes = block.as_ref().map_or(0, MemoryBlock::bytes);
    let (cpu_seconds, cancelled) = cpu.map_or((0.0, true), |outcome| (outcome.cpu_seconds, outcome.cancelled));
    cpu_span.record("cpu.seconds", cpu_seconds);
    drop(cpu_span);

    let retained = spec.retain && !cancelled;
    let to_free = match block {
        Some(block) if retained => {
            let mut schedule = registry.schedule();
            // The reservation moves with the block: `cleanup` gives it back.
            if let Some(task) = schedule.running.get_mut(&task_id) {
                task.demand.memory_bytes = 0;
            }
            registry.retain(block);
            None
        }
        other => other,
    };
    // Unmapping hundreds of MiB takes tens of milliseconds: on the blocking pool, never under the schedule lock (it
    // was, and /metrics and /process/status waited on it), and before the slot goes, so the budget is never exceeded.
    if let Some(block) = to_free {
        let _ = tokio::task::spawn_blocking(move || drop(block)).await;
    }
    drop(slot);
    drop(memory_running);
    drop(memory_span);
    let requested = spec.duration.as_secs_f64();
    let slowdown = wall.as_secs_f64() / requested;
    if !cancelled {
        registry.metrics.duration(spec.mode == Mode::Async).observe(wall.as_secs_f64());
        registry.metrics.slowdown.observe(slowdown);
    }
    TaskReport {
        task_id,
        status: if cancelled { TaskStatus::Cancelled } else { TaskStatus::Completed },
        mode: spec.mode,
        cpu_intensity: spec.cpu_intensity,
        memory_size: spec.memory_bytes / MIB,
        duration: requested,
        retained,
        queue_wait_seconds: queue_wait.as_secs_f64(),
        wall_seconds: wall.as_secs_f64(),
        slowdown,
        cpu_seconds,
        allocated_bytes,
        finished_at: Utc::now(),
    }
}
