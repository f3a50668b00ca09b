//! The replica's side of the shared backlog: take the next task only when the start rule admits it, hold it under a
//! lease renewed while it waits and runs, run it in the registry, acknowledge it once its result is recorded, hand
//! back what a drain leaves unfinished, claim what a lapsed lease left, and keep the backlog gauges current.
//!
//! The lease: every entry this process holds is renewed every fifth of the lease in one round trip, so a holder
//! however slow never loses its task; four renewals in a row may fail (a Redis failover, a network hiccup, a paused
//! process under a debugger for less than a lease) before anyone may claim it. An entry renewed by nobody for a lease
//! (its process killed, paused or cut off) is claimable by any replica, a restarted container of the same pod
//! included. No replica claims for a lease after its own call to Redis failed, so that every holder has had a lease
//! to renew once Redis is back (a restarted Redis counts the outage as idle time). A holder that finds its lease lost
//! stops the task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::redis::{Claimed, Entry, RedisBacklog, Settled, Start};
use crate::metrics::QueueMetrics;
use crate::telemetry::LogRateLimit;
use crate::work::capacity::Demand;
use crate::work::spec::TaskStatus;
use crate::work::tasks::TaskRegistry;

/// How often a replica with room looks for entries whose lease lapsed, and every replica refreshes the gauges.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// Renewals per lease: four may fail in a row before the lease lapses.
const RENEWALS_PER_LEASE: u32 = 5;
/// How often consumer names of ended processes are removed from the group, and how long they must have been idle.
const REAP_EVERY: Duration = Duration::from_secs(60);
const REAP_IDLE: Duration = Duration::from_secs(600);
/// Backoff between failed calls while Redis is away.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Attempts to record a result or hand a task back before leaving it to be claimed.
const SETTLE_ATTEMPTS: u32 = 5;
/// Longest wait for room before looking at the drain flag again.
const ROOM_POLL: Duration = Duration::from_millis(200);

/// The smallest task: before it has seen any, the puller reads once at least this could start.
const SMALLEST: Demand = Demand { cores: 0.1, work: 0.1, memory_bytes: 0, retains: false };

pub struct Puller {
    pub shared: Arc<Shared>,
    pub registry: Arc<TaskRegistry>,
    /// Cancelled at SIGTERM: from then on nothing new is taken.
    pub stop: CancellationToken,
}

/// The backlog with its counters, its error log's rate limit and what this process holds.
pub struct Shared {
    pub backlog: RedisBacklog,
    pub metrics: QueueMetrics,
    pub errors_logged: LogRateLimit,
    /// Entries this process holds, from delivery to settling: renewed, and stopped (`cancel`, once running) if lost.
    held: Mutex<HashMap<String, Held>>,
    /// When a call to Redis last failed: claims wait a lease after it.
    last_failure: Mutex<Option<Instant>>,
}

struct Held {
    task_id: Uuid,
    cancel: Option<CancellationToken>,
}

impl Shared {
    pub fn new(backlog: RedisBacklog, metrics: QueueMetrics, errors_logged: LogRateLimit) -> Self {
        Self { backlog, metrics, errors_logged, held: Mutex::default(), last_failure: Mutex::default() }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, entry: &Entry) {
        self.held().insert(entry.entry_id.clone(), Held { task_id: entry.task_id, cancel: None });
    }

    /// Stops holding `entry`; false when its lease had been found lost.
    fn release(&self, entry: &Entry) -> bool {
        self.held().remove(&entry.entry_id).is_some()
    }

    /// Whether a lease has passed since the last failed call, so every holder has had its chance to renew.
    fn may_claim(&self) -> bool {
        !self.failed_within(self.backlog.lease())
    }

    /// Whether a call to Redis failed within `window`.
    pub fn failed_within(&self, window: Duration) -> bool {
        let last = *self.last_failure.lock().unwrap_or_else(PoisonError::into_inner);
        last.is_some_and(|at| at.elapsed() < window)
    }
}

impl Puller {
    /// Runs until `stop`; the registry's drain then waits for the tasks it started.
    pub async fn run(self) {
        let mut backoff = BACKOFF_MIN;
        let mut next_claim = Instant::now();
        let mut next_reap = Instant::now() + REAP_EVERY;
        // Read only when the last task taken would start again: tasks of a run are alike, so the next one fits too
        // and is not held here while another replica has room for it.
        let mut probe = SMALLEST;
        if let Err(error) = self.shared.backlog.ensure_group().await {
            self.shared.failed("creating the consumer group", &error);
        }
        while !self.stop.is_cancelled() {
            if !self.wait_for(&probe).await {
                break;
            }
            let now = Instant::now();
            if now >= next_reap {
                next_reap = now + REAP_EVERY;
                match self.shared.backlog.reap(REAP_IDLE).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "removed the consumer names of ended processes"),
                    Err(error) => self.shared.failed("removing ended consumer names", &error),
                }
            }
            // Lapsed leases first: their tasks were accepted before anything new. A claim that found one is tried
            // again at the next room; one that found none waits `CLAIM_EVERY`.
            let taken = if now >= next_claim && self.shared.may_claim() {
                let tracked: Vec<String> = self.shared.held().keys().cloned().collect();
                match self.shared.backlog.claim(&tracked).await {
                    Ok(Some(claimed)) => Ok(Some(self.claimed(claimed))),
                    Ok(None) => {
                        next_claim = now + CLAIM_EVERY;
                        self.shared.backlog.read().await
                    }
                    Err(error) => {
                        next_claim = now + CLAIM_EVERY;
                        Err(error)
                    }
                }
            } else {
                self.shared.backlog.read().await
            };
            match taken {
                Ok(Some(entry)) => {
                    backoff = BACKOFF_MIN;
                    probe = entry.spec.demand();
                    self.shared.metrics.deliveries.inc();
                    self.shared.hold(&entry);
                    self.take(entry).await;
                }
                Ok(None) => backoff = BACKOFF_MIN,
                Err(error) => {
                    self.shared.failed("reading the shared backlog", &error);
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

    /// Counts and logs a claim: `restart` when the holder was an earlier process of this pod.
    fn claimed(&self, Claimed { entry, holder }: Claimed) -> Entry {
        let same_pod = holder.rsplit_once('/').is_some_and(|(pod, _)| pod == self.shared.backlog.pod());
        let reason = if same_pod { "restart" } else { "lease_lapsed" };
        self.shared.metrics.claims(reason).inc();
        tracing::warn!(task_id = %entry.task_id, %holder, consumer = self.shared.backlog.consumer(), reason,
            "claimed a task whose holder's lease lapsed");
        entry
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
        let consumer = self.shared.backlog.consumer();
        match self.shared.backlog.start(&entry).await {
            Ok(Start::Run { deliveries, earlier }) => {
                tracing::info!(task_id = %entry.task_id, consumer, deliveries, "task started");
                if let Some(earlier) = earlier {
                    self.shared.metrics.duplicates_ran_twice.inc();
                    tracing::warn!(task_id = %entry.task_id, consumer, earlier_holder = %earlier,
                        "running a task again: an earlier run started and never ended");
                }
            }
            Ok(Start::Duplicate) => {
                self.shared.release(&entry);
                self.shared.metrics.duplicates_skipped.inc();
                tracing::info!(task_id = %entry.task_id, "redelivered task had already completed: acknowledged, not run again");
                return;
            }
            Ok(Start::Dead) => {
                self.shared.release(&entry);
                self.shared.metrics.dead_letters.inc();
                tracing::error!(task_id = %entry.task_id, "task delivered too many times: moved to the dead-letter stream");
                return;
            }
            Ok(Start::Lost) => {
                self.shared.release(&entry);
                return;
            }
            Err(error) => {
                self.shared.failed("starting a task", &error);
                // Not started, still ours: given back, or left for its lease to lapse if Redis stays away.
                self.shared.settle(&entry, Settle::HandBack { started: false }).await;
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
        if let Some(held) = self.shared.held().get_mut(&entry.entry_id) {
            held.cancel = Some(accepted.canceller());
        }
        let shared = Arc::clone(&self.shared);
        self.registry.track(async move {
            let settle = match accepted.finished.await {
                Ok(finished) if finished.report.status == TaskStatus::Completed => {
                    Settle::Finish { wall_seconds: finished.report.wall_seconds, slowdown: finished.report.slowdown }
                }
                // Started in the backlog (its delivery counted) whether or not the work began here: a drain that
                // cancelled it before its turn still takes that delivery back.
                _ => Settle::HandBack { started: true },
            };
            shared.settle(&entry, settle).await;
        });
    }
}

/// How a task taken from the backlog ends here.
#[derive(Clone, Copy)]
enum Settle {
    Finish { wall_seconds: f64, slowdown: f64 },
    HandBack { started: bool },
}

impl Shared {
    /// Keeps `consumer_queue_backlog` and the oldest task's age current every `CLAIM_EVERY` until `stop`, whether or
    /// not this replica has room (a full replica is when the backlog matters most); NaN while Redis cannot be read,
    /// so the ScaledObject's query fails and KEDA's fallback holds the replicas rather than reading a stale value.
    pub async fn refresh_backlog(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.backlog.shape().await {
                Ok(shape) => {
                    self.metrics.backlog.set(shape.backlog as f64);
                    self.metrics.oldest_age.set(shape.oldest_age.map_or(0.0, |age| age.as_secs_f64()));
                }
                Err(error) => {
                    self.metrics.backlog.set(f64::NAN);
                    self.metrics.oldest_age.set(f64::NAN);
                    self.failed("reading the backlog's length", &error);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(CLAIM_EVERY) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Renews the lease on everything this process holds, every fifth of the lease, until `stop` and nothing is
    /// held; a task whose lease was lost is stopped.
    pub async fn renew_leases(self: Arc<Self>, stop: CancellationToken) {
        let period = self.backlog.lease() / RENEWALS_PER_LEASE;
        loop {
            tokio::time::sleep(period).await;
            let held: Vec<String> = self.held().keys().cloned().collect();
            if held.is_empty() {
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
            match self.backlog.renew(&held).await {
                Ok(lost) => {
                    for entry_id in lost {
                        let Some(held) = self.held().remove(&entry_id) else { continue };
                        self.metrics.leases_lost.inc();
                        if let Some(cancel) = held.cancel {
                            cancel.cancel();
                        }
                        tracing::warn!(task_id = %held.task_id, consumer = self.backlog.consumer(),
                            "lost the lease on a task (another replica claimed it): stopped it here");
                    }
                }
                Err(error) => {
                    self.metrics.renewals_failed.inc();
                    self.failed("renewing leases", &error);
                }
            }
        }
    }

    /// Records a task's end in Redis, retrying while it is away; what cannot be settled is claimed once its lease
    /// lapses. Only the holder changes anything: a stale finish (the task was claimed meanwhile) is a duplicate run.
    async fn settle(&self, entry: &Entry, settle: Settle) {
        let lease_kept = self.release(entry);
        let mut backoff = BACKOFF_MIN;
        for _ in 0..SETTLE_ATTEMPTS {
            let result = match settle {
                Settle::Finish { wall_seconds, slowdown } => self.backlog.finish(entry, wall_seconds, slowdown).await,
                Settle::HandBack { started } => self.backlog.hand_back(entry, started).await,
            };
            match result {
                Ok(settled) => return self.settled(entry, settle, settled, lease_kept),
                Err(error) => self.failed("settling a task", &error),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        tracing::error!(task_id = %entry.task_id, "could not settle a task with the shared backlog: it is claimed once its lease lapses");
    }

    fn settled(&self, entry: &Entry, settle: Settle, settled: Settled, lease_kept: bool) {
        let consumer = self.backlog.consumer();
        match (settle, settled) {
            (Settle::Finish { .. }, Settled::Done) => {}
            (Settle::HandBack { started }, Settled::Done) => {
                tracing::info!(task_id = %entry.task_id, consumer, started, "handed an unfinished task back to the shared backlog");
            }
            (Settle::Finish { .. }, Settled::Stale { now_held_by }) => {
                self.metrics.duplicates_finished_stale.inc();
                tracing::warn!(task_id = %entry.task_id, consumer, now_held_by = now_held_by.as_deref(),
                    "finished a task another replica had claimed: its result is left to the holder");
            }
            (Settle::HandBack { .. }, Settled::Stale { now_held_by }) if lease_kept => {
                tracing::info!(task_id = %entry.task_id, consumer, now_held_by = now_held_by.as_deref(),
                    "a task to hand back was claimed meanwhile: left to its holder");
            }
            (Settle::HandBack { .. }, Settled::Stale { .. }) => {}
        }
    }

    /// Counts every failed call; logs at most a line a minute, with how many were left out.
    pub fn failed(&self, doing: &str, error: &redis::RedisError) {
        self.metrics.errors.inc();
        *self.last_failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        if let Some(suppressed) = self.errors_logged.admit() {
            let suppressed_before = (suppressed > 0).then_some(suppressed);
            tracing::warn!(%error, doing, suppressed_before, "shared backlog (redis) call failed");
        }
    }
}
