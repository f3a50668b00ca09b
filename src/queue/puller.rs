//! The replica's side of the shared backlog: take the next task only when the start rule admits it, run it in the
//! registry, acknowledge it once its result is recorded, hand back what a drain leaves unfinished, claim what a dead
//! replica held, and keep the backlog gauge current.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::redis::{Entry, RedisBacklog, Start};
use crate::metrics::QueueMetrics;
use crate::telemetry::LogRateLimit;
use crate::work::capacity::Demand;
use crate::work::tasks::{TaskRegistry, TaskStatus};

/// How often a replica with room looks for tasks a dead replica held, and every replica refreshes the backlog gauge.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// Backoff between failed calls while Redis is away.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Attempts to record a result or hand a task back before leaving it to be claimed.
const SETTLE_ATTEMPTS: u32 = 5;
/// Longest wait for room before looking at the drain flag again.
const ROOM_POLL: Duration = Duration::from_millis(200);

/// The smallest task: before it has seen any, the puller reads once at least this could start.
const SMALLEST: Demand = Demand { cores: 0.1, work: 0.1, memory_bytes: 0 };

pub struct Puller {
    pub shared: Arc<Shared>,
    pub registry: Arc<TaskRegistry>,
    /// Cancelled at SIGTERM: from then on nothing new is taken.
    pub stop: CancellationToken,
}

/// The backlog with its counters and its error log's rate limit.
pub struct Shared {
    pub backlog: RedisBacklog,
    pub metrics: QueueMetrics,
    pub errors_logged: LogRateLimit,
}

impl Puller {
    /// Runs until `stop`; the registry's drain then waits for the tasks it started.
    pub async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        let mut next_claim = tokio::time::Instant::now();
        // Read only when the last task taken would start again: tasks of a run are alike, so the next one fits too
        // and is not held here while another replica has room for it.
        let mut probe = SMALLEST;
        if let Err(error) = self.shared.backlog.ensure_group().await {
            self.failed("creating the consumer group", &error);
        }
        while !self.stop.is_cancelled() {
            if !self.wait_for(&probe).await {
                break;
            }
            let now = tokio::time::Instant::now();
            let taken = if now >= next_claim {
                next_claim = now + CLAIM_EVERY;
                match self.shared.backlog.claim().await {
                    Ok(Some((entry, holder))) => {
                        self.shared.metrics.claims.inc();
                        tracing::warn!(task_id = %entry.task_id, %holder, "claimed a task its holder kept past its expected run time");
                        Ok(Some(entry))
                    }
                    Ok(None) => self.shared.backlog.read().await,
                    Err(error) => Err(error),
                }
            } else {
                self.shared.backlog.read().await
            };
            match taken {
                Ok(Some(entry)) => {
                    backoff = BACKOFF_MIN;
                    probe = entry.spec.demand();
                    self.shared.metrics.deliveries.inc();
                    self.take(entry).await;
                }
                Ok(None) => backoff = BACKOFF_MIN,
                Err(error) => {
                    self.failed("reading the shared backlog", &error);
                    if error.code() == Some("NOGROUP") {
                        // Redis restarted without its data: the group goes with the stream.
                        let _ = self.shared.backlog.ensure_group().await;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.stop.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        tracing::info!("stopped taking work from the shared backlog");
    }

    /// Waits until a task of `demand` would start here; false when the pod stops taking work first.
    async fn wait_for(&self, demand: &Demand) -> bool {
        loop {
            if self.stop.is_cancelled() {
                return false;
            }
            if self.registry.fits(demand) {
                return true;
            }
            tokio::select! {
                () = self.registry.room_made() => {}
                () = tokio::time::sleep(ROOM_POLL) => {}
                () = self.stop.cancelled() => return false,
            }
        }
    }

    /// Starts a delivered task once it fits, or hands it back if the pod stops taking work before.
    async fn take(&self, entry: Entry) {
        if !self.wait_for(&entry.spec.demand()).await {
            self.shared.settle(&entry, Settle::HandBack { started: false }).await;
            return;
        }
        match self.shared.backlog.start(&entry).await {
            Ok(Start::Run) => {}
            Ok(Start::Duplicate) => {
                self.shared.metrics.duplicates_skipped.inc();
                tracing::info!(task_id = %entry.task_id, "redelivered task had already completed: acknowledged, not run again");
                return;
            }
            Ok(Start::Dead) => {
                self.shared.metrics.dead_letters.inc();
                tracing::error!(task_id = %entry.task_id, "task delivered too many times: moved to the dead-letter stream");
                return;
            }
            Ok(Start::Lost) => return,
            Err(error) => {
                // Not started, still ours: it goes back to the others after its idle time.
                self.failed("starting a task", &error);
                return;
            }
        }
        let accepted = match self.registry.submit_shared(entry.spec, entry.task_id, entry.accepted_at) {
            Ok(accepted) => accepted,
            Err(_) => {
                self.shared.settle(&entry, Settle::HandBack { started: true }).await;
                return;
            }
        };
        let shared = Arc::clone(&self.shared);
        self.registry.track(async move {
            let settle = match accepted.finished.await {
                Ok(finished) if finished.report.status == TaskStatus::Completed => {
                    Settle::Finish { wall_seconds: finished.report.wall_seconds, slowdown: finished.report.slowdown }
                }
                Ok(finished) => Settle::HandBack { started: finished.started },
                Err(_) => Settle::HandBack { started: true },
            };
            shared.settle(&entry, settle).await;
        });
    }

    fn failed(&self, doing: &str, error: &redis::RedisError) {
        self.shared.failed(doing, error);
    }
}

/// How a task taken from the backlog ends here.
enum Settle {
    Finish { wall_seconds: f64, slowdown: f64 },
    HandBack { started: bool },
}

impl Shared {
    /// Keeps `consumer_queue_backlog` current every `CLAIM_EVERY` until `stop`, whether or not this replica has room
    /// (a full replica is when the backlog matters most).
    pub async fn refresh_backlog(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.backlog.backlog().await {
                Ok(backlog) => self.metrics.backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX)),
                Err(error) => self.failed("reading the backlog's length", &error),
            }
            tokio::select! {
                () = tokio::time::sleep(CLAIM_EVERY) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Records a task's end in Redis, retrying while it is away; what cannot be settled is claimed by another replica.
    async fn settle(&self, entry: &Entry, settle: Settle) {
        let mut backoff = BACKOFF_MIN;
        for _ in 0..SETTLE_ATTEMPTS {
            let result = match settle {
                Settle::Finish { wall_seconds, slowdown } => {
                    self.backlog.finish(entry, wall_seconds, slowdown).await.map(|ran_twice| {
                        if ran_twice {
                            self.metrics.duplicates_ran_twice.inc();
                            tracing::warn!(task_id = %entry.task_id, "task completed twice: it was claimed while its first holder still ran it");
                        }
                    })
                }
                Settle::HandBack { started } => self.backlog.hand_back(entry, started).await.map(|()| {
                    tracing::info!(task_id = %entry.task_id, "handed an unfinished task back to the shared backlog");
                }),
            };
            match result {
                Ok(()) => return,
                Err(error) => self.failed("settling a task", &error),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        tracing::error!(task_id = %entry.task_id, "could not settle a task with the shared backlog: another replica will claim it");
    }

    /// Counts every failed call; logs at most a line a minute, with how many were left out.
    pub fn failed(&self, doing: &str, error: &redis::RedisError) {
        self.metrics.errors.inc();
        if let Some(suppressed) = self.errors_logged.admit() {
            let suppressed_before = (suppressed > 0).then_some(suppressed);
            tracing::warn!(%error, doing, suppressed_before, "shared backlog (redis) call failed");
        }
    }
}
