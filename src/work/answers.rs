//! What the work routes answer: a finished task's report, an accepted task, a refusal, the status snapshot and the
//! cleanup report (wire shapes only; the registry fills them).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::spec::{Mode, TaskStatus};

/// The report of a finished task: the sync response body and an entry of `recent`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskReport {
    pub task_id: Uuid,
    pub status: TaskStatus,
    pub mode: Mode,
    pub cpu_intensity: u8,
    pub memory_size: u64,
    /// The duration asked for, in seconds.
    pub duration: f64,
    pub retained: bool,
    /// Accepted → started: time spent in the backlog.
    pub queue_wait_seconds: f64,
    /// Started → finished: the actual duration, longer than `duration` when the pod's CPU was shared.
    pub wall_seconds: f64,
    /// `wall_seconds` ÷ `duration`: 1 on a pod with room.
    pub slowdown: f64,
    /// CPU seconds delivered: the thread's CPU time when burning, the accounted core-seconds when simulating.
    pub cpu_seconds: f64,
    pub allocated_bytes: u64,
    pub finished_at: DateTime<Utc>,
}

/// The 200 body of an async task: started now or queued, with when it should start and finish.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskAccepted {
    pub task_id: Uuid,
    /// `started` or `queued`.
    pub status: TaskStatus,
    /// Place in the backlog, 1 = next to start; absent when started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    pub estimated_start: DateTime<Utc>,
    pub estimated_completion: DateTime<Utc>,
    pub message: String,
}

/// Why a task was refused with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverloadReason {
    QueueFull,
    MemoryBudget,
    Draining,
    /// The shared backlog (Redis) cannot be reached.
    QueueUnavailable,
}

impl OverloadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::MemoryBudget => "memory_budget",
            Self::Draining => "draining",
            Self::QueueUnavailable => "queue_unavailable",
        }
    }
}

/// A refusal: the caller answers 503 with Retry-After.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overload {
    pub reason: OverloadReason,
    pub message: String,
    pub retry_after_seconds: u64,
}

/// Why a task was not accepted.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// 503: come back later.
    Overloaded(Overload),
    /// 422: its memory is larger than the whole budget, so it could never run on this pod.
    LargerThanBudget { budget_bytes: u64 },
    /// 422: its `Idempotency-Key` was first sent with other parameters, for this task.
    IdempotencyConflict { task_id: Uuid },
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

/// The backlog: how many wait and for how long the oldest has.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStatus {
    pub length: usize,
    pub capacity: usize,
    pub oldest_wait_seconds: f64,
}

/// The pod's CPU capacity and what the running tasks ask of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CpuStatus {
    pub capacity_cores: f64,
    pub demand_cores: f64,
    pub overcommit: f64,
    /// `burn` or `simulate`.
    pub work: &'static str,
}

/// Field names the Python service's clients read.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyCurrentStatus {
    /// Memory blocks held now (running and retained).
    pub memory_store_objects: u64,
    pub memory_store_size_estimate_mb: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyStatistics {
    /// Tasks completed.
    pub total_processed: u64,
}

/// The `/process/status` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusSnapshot {
    pub tasks_running: RunningByKind,
    pub queue: QueueStatus,
    pub cpu: CpuStatus,
    pub retained_bytes: u64,
    pub budget_bytes: u64,
    pub reserved_bytes: u64,
    pub max_tasks: u32,
    pub totals: Totals,
    pub recent: Vec<TaskReport>,
    pub current_status: LegacyCurrentStatus,
    pub statistics: LegacyStatistics,
}

/// The `DELETE /process/cleanup` body, with the Python service's field names alongside.
#[derive(Debug, Serialize, ToSchema)]
pub struct CleanupReport {
    pub objects_freed: u64,
    pub bytes_freed: u64,
    /// Always `cleaned`.
    pub status: &'static str,
    pub objects_removed: u64,
    pub estimated_mb_freed: f64,
    pub message: String,
}
