//! The task registry: admission control (memory budget, task cap), running tasks, retained memory and history.
//!
//! Every task runs on the main runtime under one `TaskTracker`, so shutdown can cancel background work and wait for
//! it, whichever HTTP worker accepted the request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::cpu::run_duty_cycle;
use super::memory::MemoryBlock;
use crate::metrics::{Outcome, TaskMetrics, WorkKind};
use crate::telemetry::current_trace_ids;

/// How many finished tasks `/process/status` shows.
const RECENT_TASKS: usize = 5;
/// Retry-After when only a cleanup can free the budget (retained memory, nothing running).
const RETRY_AFTER_RETAINED: Duration = Duration::from_secs(30);

/// Validated parameters of one `/process` call.
#[derive(Debug, Clone, Copy)]
pub struct WorkSpec {
    pub cpu_intensity: u8,
    pub memory_bytes: u64,
    pub duration: Duration,
    pub mode: Mode,
    pub retain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sync,
    Async,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Started,
    Completed,
    Cancelled,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The report of a finished task: the sync response body and an entry of `recent`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskReport {
    pub task_id: Uuid,
    pub status: TaskStatus,
    pub mode: Mode,
    pub cpu_intensity: u8,
    pub memory_size: u64,
    pub duration: f64,
    pub retained: bool,
    pub wall_seconds: f64,
    /// CPU time the task's thread actually used.
    pub cpu_seconds: f64,
    pub allocated_bytes: u64,
    pub finished_at: DateTime<Utc>,
}

/// The 202 body of an async task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskStarted {
    pub task_id: Uuid,
    pub status: TaskStatus,
    pub estimated_completion: DateTime<Utc>,
}

/// Why a task was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverloadReason {
    MemoryBudget,
    TaskCap,
}

/// A refusal: the caller answers 503 with Retry-After.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overload {
    pub reason: OverloadReason,
    pub message: String,
    pub retry_after_seconds: u64,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Totals {
    pub started: u64,
    pub completed: u64,
    pub rejected: u64,
    pub cancelled: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunningByKind {
    pub cpu: u32,
    pub memory: u32,
}

/// The `/process/status` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusSnapshot {
    pub tasks_running: RunningByKind,
    pub retained_bytes: u64,
    pub budget_bytes: u64,
    pub reserved_bytes: u64,
    pub max_tasks: u32,
    pub totals: Totals,
    pub recent: Vec<TaskReport>,
}

/// The `DELETE /process/cleanup` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct CleanupReport {
    pub objects_freed: u64,
    pub bytes_freed: u64,
}

/// Shared state of all tasks.
pub struct TaskRegistry {
    budget_bytes: u64,
    max_tasks: u32,
    active_tasks: AtomicU32,
    /// Bytes promised to running tasks plus bytes retained: admission keeps this at or under the budget.
    reserved_bytes: AtomicU64,
    /// Expected end of each running task, for Retry-After.
    running: DashMap<Uuid, Instant>,
    retained: Mutex<Vec<MemoryBlock>>,
    /// Running tasks by kind and retained bytes live here, and `/process/status` reads them back.
    metrics: TaskMetrics,
    recent: Mutex<VecDeque<TaskReport>>,
    /// Tasks admitted; how they ended is counted in `metrics`.
    started: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    runtime: Handle,
}

impl TaskRegistry {
    /// `runtime` runs every task, so tasks outlive the HTTP worker that accepted them.
    pub fn new(budget_bytes: u64, max_tasks: u32, metrics: TaskMetrics, runtime: Handle) -> Arc<Self> {
        metrics.budget_bytes.set(i64::try_from(budget_bytes).unwrap_or(i64::MAX));
        Arc::new(Self {
            budget_bytes,
            max_tasks,
            active_tasks: AtomicU32::new(0),
            reserved_bytes: AtomicU64::new(0),
            running: DashMap::new(),
            retained: Mutex::new(Vec::new()),
            metrics,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_TASKS)),
            started: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime,
        })
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Takes a task slot and reserves the task's memory, or refuses without changing anything.
    pub fn admit(self: &Arc<Self>, spec: &WorkSpec) -> Result<Admission, Overload> {
        let max = self.max_tasks;
        if self.active_tasks.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_err()
        {
            return Err(self.reject(
                spec,
                OverloadReason::TaskCap,
                format!("{max} tasks are already running (max_tasks)"),
            ));
        }
        let budget = self.budget_bytes;
        let wanted = spec.memory_bytes;
        let reserved = self.reserved_bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(wanted).filter(|&total| total <= budget)
        });
        if let Err(held) = reserved {
            self.active_tasks.fetch_sub(1, Ordering::AcqRel);
            let free = budget.saturating_sub(held);
            return Err(self.reject(
                spec,
                OverloadReason::MemoryBudget,
                format!("{wanted} bytes requested, {free} of the {budget}-byte memory budget free"),
            ));
        }
        let task_id = Uuid::new_v4();
        self.running.insert(task_id, Instant::now() + spec.duration);
        self.started.fetch_add(1, Ordering::Relaxed);
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
            "task started"
        );
        Ok(Admission { registry: Arc::clone(self), task_id, reserved_bytes: wanted })
    }

    fn reject(&self, spec: &WorkSpec, reason: OverloadReason, message: String) -> Overload {
        self.count_kinds(spec, Outcome::Rejected);
        tracing::warn!(reason = ?reason, %message, "task rejected");
        let now = Instant::now();
        let soonest_end = self.running.iter().map(|entry| entry.value().saturating_duration_since(now)).min();
        let retry_after = soonest_end.unwrap_or(RETRY_AFTER_RETAINED);
        Overload { reason, message, retry_after_seconds: retry_after.as_secs().clamp(1, 60) }
    }

    /// Runs an admitted task to its end and returns its report. Dropping the future (client gone) cancels the work.
    pub async fn run_sync(
        self: &Arc<Self>,
        admission: Admission,
        spec: WorkSpec,
    ) -> Result<TaskReport, tokio::task::JoinError> {
        let cancel = CancellationToken::new();
        let guard = cancel.clone().drop_guard();
        let report = self.spawn(admission, spec, cancel).await;
        guard.disarm();
        report
    }

    /// Starts an admitted task in the background; shutdown cancels it.
    pub fn run_async(self: &Arc<Self>, admission: Admission, spec: WorkSpec) -> TaskStarted {
        let task_id = admission.task_id;
        let estimated = chrono::Duration::from_std(spec.duration).unwrap_or_default();
        self.spawn(admission, spec, self.shutdown.child_token());
        TaskStarted { task_id, status: TaskStatus::Started, estimated_completion: Utc::now() + estimated }
    }

    fn spawn(
        self: &Arc<Self>,
        admission: Admission,
        spec: WorkSpec,
        cancel: CancellationToken,
    ) -> JoinHandle<TaskReport> {
        // Created here, inside the request's span, so the task's spans are children of the request's.
        let span = tracing::info_span!("task", task.id = %admission.task_id, task.mode = spec.mode.as_str());
        self.tracker.spawn_on(execute(admission, spec, cancel).instrument(span), &self.runtime)
    }

    /// Counts the task once per kind of work it does: CPU always, memory when it asked for some.
    fn count_kinds(&self, spec: &WorkSpec, outcome: Outcome) {
        let is_async = spec.mode == Mode::Async;
        self.metrics.count(WorkKind::Cpu, is_async, outcome);
        if spec.memory_bytes > 0 {
            self.metrics.count(WorkKind::Memory, is_async, outcome);
        }
    }

    fn finish(&self, spec: &WorkSpec, report: TaskReport) -> TaskReport {
        let ids = current_trace_ids();
        tracing::info!(
            task_id = %report.task_id,
            trace_id = ids.trace_id.as_deref(),
            span_id = ids.span_id.as_deref(),
            status = report.status.as_str(),
            mode = report.mode.as_str(),
            wall_seconds = report.wall_seconds,
            cpu_seconds = report.cpu_seconds,
            allocated_bytes = report.allocated_bytes,
            retained = report.retained,
            "task finished"
        );
        let outcome = match report.status {
            TaskStatus::Cancelled => Outcome::Cancelled,
            _ => Outcome::Completed,
        };
        self.count_kinds(spec, outcome);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT_TASKS {
            recent.pop_front();
        }
        recent.push_back(report.clone());
        report
    }

    fn retain(&self, block: MemoryBlock) {
        let mut retained = self.retained.lock().unwrap_or_else(PoisonError::into_inner);
        self.metrics.retained_bytes.add(i64::try_from(block.bytes()).unwrap_or(i64::MAX));
        retained.push(block);
    }

    /// Frees all retained memory and returns its budget.
    pub fn cleanup(&self) -> CleanupReport {
        let blocks = std::mem::take(&mut *self.retained.lock().unwrap_or_else(PoisonError::into_inner));
        let bytes_freed: u64 = blocks.iter().map(MemoryBlock::bytes).sum();
        let objects_freed = blocks.len() as u64;
        self.metrics.retained_bytes.sub(i64::try_from(bytes_freed).unwrap_or(i64::MAX));
        drop(blocks);
        self.reserved_bytes.fetch_sub(bytes_freed, Ordering::AcqRel);
        CleanupReport { objects_freed, bytes_freed }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatusSnapshot {
            tasks_running: RunningByKind {
                cpu: u32::try_from(self.metrics.in_flight(WorkKind::Cpu).get()).unwrap_or(0),
                memory: u32::try_from(self.metrics.in_flight(WorkKind::Memory).get()).unwrap_or(0),
            },
            retained_bytes: u64::try_from(self.metrics.retained_bytes.get()).unwrap_or(0),
            budget_bytes: self.budget_bytes,
            reserved_bytes: load(&self.reserved_bytes),
            max_tasks: self.max_tasks,
            totals: Totals {
                started: load(&self.started),
                completed: self.metrics.tasks(Outcome::Completed),
                rejected: self.metrics.tasks(Outcome::Rejected),
                cancelled: self.metrics.tasks(Outcome::Cancelled),
            },
            recent: self.recent.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect(),
        }
    }

    /// Cancels background tasks and waits for every task to end (sync ones run to completion).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// A task slot and memory reservation; dropping it gives both back.
pub struct Admission {
    registry: Arc<TaskRegistry>,
    task_id: Uuid,
    reserved_bytes: u64,
}

impl Admission {
    pub fn task_id(&self) -> Uuid {
        self.task_id
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let registry = &self.registry;
        registry.reserved_bytes.fetch_sub(self.reserved_bytes, Ordering::AcqRel);
        registry.active_tasks.fetch_sub(1, Ordering::AcqRel);
        registry.running.remove(&self.task_id);
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

async fn execute(mut admission: Admission, spec: WorkSpec, cancel: CancellationToken) -> TaskReport {
    let registry = Arc::clone(&admission.registry);
    let started = Instant::now();
    let memory_running = (spec.memory_bytes > 0).then(|| Running::start(registry.metrics.in_flight(WorkKind::Memory)));
    let cpu_running = Running::start(registry.metrics.in_flight(WorkKind::Cpu));
    let bytes = spec.memory_bytes;
    let (intensity, duration, token) = (spec.cpu_intensity, spec.duration, cancel.clone());
    // The memory span lasts from allocation to release; the CPU span, the duty cycle.
    let memory_span = tracing::info_span!("memory_work", memory.bytes = bytes, memory.retain = spec.retain);
    let cpu_span = tracing::info_span!(
        "cpu_work",
        cpu.intensity = intensity,
        cpu.duration_seconds = duration.as_secs_f64(),
        cpu.seconds = tracing::field::Empty,
    );
    let (alloc_span, duty_span) = (memory_span.clone(), cpu_span.clone());
    // Both on the blocking pool, side by side: touching hundreds of MiB takes a while and must not delay the CPU work.
    let (block, cpu) = tokio::join!(
        tokio::task::spawn_blocking(move || alloc_span.in_scope(|| MemoryBlock::allocate(bytes))),
        tokio::task::spawn_blocking(move || duty_span.in_scope(|| run_duty_cycle(intensity, duration, &token))),
    );
    drop(cpu_running);
    let block = block.ok();
    let allocated_bytes = block.as_ref().map_or(0, MemoryBlock::bytes);
    let (cpu_seconds, cancelled) = match cpu {
        Ok(outcome) => (outcome.cpu_seconds, outcome.cancelled),
        Err(_) => (0.0, true),
    };
    cpu_span.record("cpu.seconds", cpu_seconds);
    drop(cpu_span);

    let retained = spec.retain && !cancelled;
    if let Some(block) = block {
        if retained {
            // The reservation moves with the block: `cleanup` gives it back.
            admission.reserved_bytes = admission.reserved_bytes.saturating_sub(block.bytes());
            registry.retain(block);
        }
    }
    drop(memory_running);
    drop(memory_span);
    let task_id = admission.task_id;
    drop(admission);
    registry.finish(
        &spec,
        TaskReport {
            task_id,
            status: if cancelled { TaskStatus::Cancelled } else { TaskStatus::Completed },
            mode: spec.mode,
            cpu_intensity: spec.cpu_intensity,
            memory_size: spec.memory_bytes / (1024 * 1024),
            duration: spec.duration.as_secs_f64(),
            retained,
            wall_seconds: started.elapsed().as_secs_f64(),
            cpu_seconds,
            allocated_bytes,
            finished_at: Utc::now(),
        },
    )
}
