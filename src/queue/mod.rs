//! Where async tasks wait: this pod's own backlog (`memory`, the registry's queue) or one Redis stream every replica
//! pulls from (`redis`), so that work outlives the pod that accepted it. Sync work always runs where it arrived.
//!
//! - `redis`: the stream, the records and the scripts for each step of a task's life.
//! - `puller`: the replica's loop that takes, runs under a renewed lease, acknowledges, hands back and claims.

mod puller;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::redis::SharedStatus;
use self::redis::{Enqueued, Idempotency, RedisBacklog, RedisConfig};
use crate::configuration::{QueueUrl, Settings};
use crate::metrics::QueueMetrics;
use crate::telemetry::LogRateLimit;
use crate::work::answers::{Overload, OverloadReason, Refusal, TaskAccepted};
use crate::work::records::{RecordStatus, TaskRecord};
use crate::work::spec::{TaskStatus, WorkSpec};
use crate::work::tasks::{Accepted, TaskRegistry};

/// Retry-After while Redis cannot be reached: the client reconnect backoff's ceiling.
const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(5);
const MIB: u64 = 1024 * 1024;
/// Longest `/process/status` waits for the shared backlog's figures.
const STATUS_WAIT: Duration = Duration::from_millis(250);
/// Error lines a minute while Redis is away.
const ERROR_LINES_PER_MINUTE: u64 = 1;

pub enum Backlog {
    Memory,
    Redis(Arc<puller::Shared>),
}

/// An accepted async task: where it waits decides whether this pod runs it.
pub enum AsyncAccepted {
    /// In this pod's backlog or started here.
    Local(Accepted),
    /// In the shared backlog, for whichever replica has room first.
    Shared(TaskAccepted),
    /// Its `Idempotency-Key` was accepted before with the same parameters: that task, nothing added.
    Repeated { task_id: Uuid, status: RecordStatus },
}

impl Backlog {
    /// The memory backlog, or the Redis one with this replica's puller running until `stop` (SIGTERM).
    pub fn start(
        settings: &Settings,
        registry: &Arc<TaskRegistry>,
        metrics: QueueMetrics,
        pod_name: &str,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let QueueUrl::Redis(url) = &settings.queue else { return Ok(Self::Memory) };
        let ca = match &settings.redis_ca_file {
            Some(_) if !url.starts_with("rediss://") => {
                return Err(std::io::Error::other("REDIS_CA_FILE is for a rediss:// (TLS) QUEUE_URL"));
            }
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| std::io::Error::other(format!("REDIS_CA_FILE {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let backlog = RedisBacklog::new(RedisConfig {
            url: url.clone(),
            ca,
            key_prefix: settings.queue_key.clone(),
            capacity: settings.queue_capacity as usize,
            retention: Duration::from_secs(settings.result_retention_secs),
            max_deliveries: settings.max_deliveries,
            pod: pod_name.to_owned(),
            // A restarted container keeps its pod's name: the incarnation keeps two processes' leases apart.
            consumer: format!("{pod_name}/{}", &Uuid::new_v4().simple().to_string()[..8]),
            lease: Duration::from_secs(settings.lease_secs),
        })
        .map_err(std::io::Error::other)?;
        let shared = Arc::new(puller::Shared::new(backlog, metrics, LogRateLimit::new(ERROR_LINES_PER_MINUTE, 60)));
        tokio::spawn(Arc::clone(&shared).refresh_backlog(stop.clone()));
        tokio::spawn(Arc::clone(&shared).renew_leases(stop.clone()));
        let puller = puller::Puller { shared: Arc::clone(&shared), registry: Arc::clone(registry), stop };
        tokio::spawn(puller.run());
        Ok(Self::Redis(shared))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Accepts an async task: into this pod's registry, or durably into the stream (200 only once it is there). With
    /// the shared backlog an `idempotency_key` seen before answers its first task instead (the memory queue keeps no
    /// keys: a retry to another pod could not find them).
    pub async fn submit(
        &self,
        registry: &Arc<TaskRegistry>,
        spec: WorkSpec,
        idempotency_key: Option<&str>,
    ) -> Result<AsyncAccepted, Refusal> {
        let Self::Redis(shared) = self else { return registry.submit(spec).map(AsyncAccepted::Local) };
        let task_id = Uuid::new_v4();
        let now = Utc::now();
        let refuse = |reason, message: String, retry_after| {
            Refusal::Overloaded(registry.refuse(&spec, reason, message, retry_after))
        };
        let idempotency = idempotency_key.map(|key| Idempotency {
            key,
            fingerprint: format!(
                "{}:{}:{}:{}",
                spec.cpu_intensity,
                spec.memory_bytes / MIB,
                spec.duration.as_secs(),
                spec.retain
            ),
        });
        match shared.backlog.enqueue(task_id, &spec, now, idempotency.as_ref()).await {
            Ok(Enqueued::Repeated { task_id, status }) => Ok(AsyncAccepted::Repeated { task_id, status }),
            Ok(Enqueued::Conflict { task_id }) => Err(Refusal::IdempotencyConflict { task_id }),
            Ok(Enqueued::Added { ahead }) => {
                let limits = registry.limits();
                // As if this replica alone drained what is ahead at its CPU capacity, each task like this one.
                let start_in = ahead as f64 * spec.duration.as_secs_f64() * spec.demand().cores
                    / (limits.capacity_cores * limits.overcommit).max(0.1);
                let at = |seconds: f64| {
                    now + chrono::Duration::from_std(Duration::from_secs_f64(seconds)).unwrap_or_default()
                };
                Ok(AsyncAccepted::Shared(TaskAccepted {
                    task_id,
                    status: TaskStatus::Queued,
                    queue_position: Some(ahead + 1),
                    estimated_start: at(start_in),
                    estimated_completion: at(start_in + spec.duration.as_secs_f64()),
                    message: format!("task queued in the shared backlog at position {}", ahead + 1),
                }))
            }
            Ok(Enqueued::Full { backlog }) => Err(refuse(
                OverloadReason::QueueFull,
                format!("the shared backlog is full ({backlog} tasks)"),
                // A full shared backlog drains at the whole Deployment's pace; look again within a task's length.
                spec.duration,
            )),
            Err(error) => {
                shared.failed("enqueueing a task", &error);
                Err(refuse(
                    OverloadReason::QueueUnavailable,
                    "the shared backlog (redis) cannot be reached".into(),
                    RETRY_AFTER_UNAVAILABLE,
                ))
            }
        }
    }

    /// The records of `ids` in their order (`None` where unknown): those that arrived here (sync, or async in the
    /// memory queue), the rest from the shared backlog in one round trip; `Err` when Redis cannot be reached.
    pub async fn records(&self, registry: &TaskRegistry, ids: &[Uuid]) -> Result<Vec<Option<TaskRecord>>, Overload> {
        let mut found: Vec<Option<TaskRecord>> = ids.iter().map(|&id| registry.record(id)).collect();
        let Self::Redis(shared) = self else { return Ok(found) };
        let elsewhere: Vec<Uuid> =
            ids.iter().zip(&found).filter(|(_, local)| local.is_none()).map(|(&id, _)| id).collect();
        if elsewhere.is_empty() {
            return Ok(found);
        }
        let shared_records = shared.backlog.records(&elsewhere).await.map_err(|error| {
            shared.failed("reading task records", &error);
            unavailable()
        })?;
        for (slot, record) in found.iter_mut().filter(|local| local.is_none()).zip(shared_records) {
            *slot = record;
        }
        Ok(found)
    }

    /// The shared backlog's shape (`None` in memory mode, or while Redis is away: the status page answers at once,
    /// not after the client's reconnect attempts, and not at all in the second after a failed call).
    pub async fn status(&self) -> Option<SharedStatus> {
        let Self::Redis(shared) = self else { return None };
        if shared.failed_within(STATUS_WAIT * 4) {
            return None;
        }
        match tokio::time::timeout(STATUS_WAIT, shared.backlog.status()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(error)) => {
                shared.failed("reading the backlog's status", &error);
                None
            }
            Err(_) => None,
        }
    }
}

fn unavailable() -> Overload {
    Overload {
        reason: OverloadReason::QueueUnavailable,
        message: "the shared backlog (redis) cannot be reached".into(),
        retry_after_seconds: RETRY_AFTER_UNAVAILABLE.as_secs(),
    }
}
