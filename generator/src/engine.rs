//! The request engine: a closed model (workers that wait for each response) and an open model (arrivals on a
//! schedule, latency measured from the intended send time so a slow server cannot hide its queueing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode, Uri};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, Connection};
use crate::follow::Follower;
use crate::plan::{Model, PathFrom};
use crate::schedule::Schedule;
use crate::stats::{Failure, Outcome, Recorder};
use crate::traces::{random_traceparent, Traces};

/// How long in-flight requests may finish after an interrupt before they are abandoned.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Whether requests carry a trace context, and whether the generator exports its own spans for them.
pub enum Tracing {
    Off,
    /// `--trace` without an OTLP endpoint: a fresh `traceparent` per request, no spans of our own.
    Random,
    Export(Arc<Traces>),
}

/// Longest wait before a retry, whatever `Retry-After` says: a run must keep moving.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// One request shape, shared by every worker.
pub struct Job {
    pub client: Client,
    pub method: Method,
    /// What requests ask for, by when they are sent: the first from the run's start (`asks`).
    pub asks: Vec<Ask>,
    pub recorder: Recorder,
    pub tracing: Tracing,
    /// Times a 503 is retried (after its `Retry-After`, with jitter) before it counts as a failure.
    pub max_retries: u32,
    /// Takes the async tasks accepted, to follow them to their end.
    pub follower: Follower,
}

/// From `from` into the run on, requests ask for `uri`; `idempotent` (an async submission) is decided once here.
pub struct Ask {
    from: Duration,
    uri: Uri,
    idempotent: bool,
}

/// The run's asks: `first` from its start, then each of `later` (a phase profile's later phases) from its offset.
pub fn asks(method: &Method, first: &Uri, later: &[PathFrom]) -> Vec<Ask> {
    std::iter::once((Duration::ZERO, first))
        .chain(later.iter().map(|later| (later.from, &later.path)))
        .map(|(from, uri)| Ask {
            from,
            uri: uri.clone(),
            // Async submissions carry an `Idempotency-Key`, the same on each retry, so a retry after a lost answer
            // adds nothing to the shared backlog.
            idempotent: method == Method::POST && uri.query().is_some_and(|q| q.contains("async_mode=true")),
        })
        .collect()
}

impl Job {
    /// Sends one request, retrying a 503 after its `Retry-After` (±50% jitter, so refused clients do not come back in
    /// step) up to `max_retries` times; latency counts from the intended send time to the last answer.
    async fn send(&self, slot: usize, connection: &mut Option<Connection>, intended: Instant, ask: &Ask) {
        self.recorder.sent();
        let send_lag = intended.elapsed();
        let mut retries = 0;
        let uri = &ask.uri;
        let idempotency_key = ask.idempotent.then(|| format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)));
        loop {
            let (span, traceparent) = match &self.tracing {
                Tracing::Off => (None, None),
                Tracing::Random => (None, Some(random_traceparent())),
                Tracing::Export(traces) => {
                    let started = SystemTime::now() - intended.elapsed();
                    let span = traces.start(&self.method, &uri.to_string(), started);
                    let header = span.traceparent.clone();
                    (Some(span), Some(header))
                }
            };
            let result =
                self.client.exchange(connection, &self.method, uri, traceparent, idempotency_key.as_deref()).await;
            if let Some(span) = span {
                span.end(result.as_ref().map(|reply| reply.status).map_err(|failure| failure.key()));
            }
            match result {
                Ok(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE && retries < self.max_retries => {
                    retries += 1;
                    self.recorder.retried();
                    let wait = reply.retry_after.unwrap_or(Duration::from_secs(1)).min(MAX_RETRY_WAIT);
                    tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64())).await;
                }
                Ok(reply) => {
                    // Only a POST accepts a task: other answers are never parsed.
                    if reply.status == StatusCode::OK && self.method == Method::POST {
                        self.follower.answered(&reply.body);
                    }
                    let served_by = reply.served_by.as_ref().and_then(|v| v.to_str().ok());
                    let failure = Failure::from_status(reply.status.as_u16());
                    let latency = intended.elapsed();
                    self.recorder.record(slot, Outcome { latency, send_lag, failure, served_by });
                    return;
                }
                Err(failure) => {
                    let latency = intended.elapsed();
                    self.recorder.record(slot, Outcome { latency, send_lag, failure: Some(failure), served_by: None });
                    return;
                }
            }
        }
    }
}

/// What a request sent `offset` into a run asks for: the last of `asks` begun by then (the first begins at once).
fn ask_at(asks: &[Ask], offset: Duration) -> &Ask {
    let begun = asks.iter().take_while(|ask| ask.from <= offset).count();
    &asks[begun.saturating_sub(1)]
}

/// Tallies to spread workers over: each holds a ~200 KiB histogram, so workers share a bounded few.
const MAX_TALLIES: usize = 32;

pub fn slots(model: &Model) -> usize {
    match model {
        Model::Closed { concurrency, .. } => (*concurrency as usize).min(MAX_TALLIES),
        Model::Open { .. } => MAX_TALLIES,
    }
}

/// Runs the model until its requests or schedule run out, or `cancel` fires. Returns the requests abandoned
/// in flight after an interrupt.
pub async fn run(job: Arc<Job>, model: &Model, cancel: &CancellationToken) -> u64 {
    let mut tasks = match model {
        Model::Closed { concurrency, requests, duration, delay } => {
            closed(&job, *concurrency, *requests, *duration, *delay, cancel)
        }
        Model::Open { start_rate, stages, max_in_flight } => {
            open(&job, Schedule::new(*start_rate, stages), *max_in_flight, cancel).await
        }
    };
    tokio::select! {
        () = drain(&mut tasks) => 0,
        () = cancel.cancelled() => {
            if tokio::time::timeout(INTERRUPT_GRACE, drain(&mut tasks)).await.is_err() {
                tasks.abort_all();
            }
            let progress = job.recorder.progress();
            progress.sent - progress.done
        }
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

fn closed(
    job: &Arc<Job>,
    concurrency: u32,
    requests: Option<u64>,
    duration: Option<Duration>,
    delay: Duration,
    cancel: &CancellationToken,
) -> JoinSet<()> {
    let remaining = Arc::new(AtomicU64::new(requests.unwrap_or(u64::MAX)));
    let deadline = duration.map(|d| Instant::now() + d);
    // The next free send slot across all workers: profiles space their sends by `delay`.
    let pacer = Arc::new(Mutex::new(Instant::now()));
    let workers = requests.map_or(u64::from(concurrency), |r| r.min(u64::from(concurrency)));
    let mut tasks = JoinSet::new();
    for slot in 0..workers as usize {
        let (job, remaining, pacer, cancel) =
            (Arc::clone(job), Arc::clone(&remaining), Arc::clone(&pacer), cancel.clone());
        tasks.spawn(async move {
            let mut connection = None;
            loop {
                let taken = remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if taken.is_err() || cancel.is_cancelled() {
                    break;
                }
                let intended = next_slot(&pacer, delay);
                if intended > Instant::now() {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep_until(intended) => {}
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                job.send(slot, &mut connection, intended, &job.asks[0]).await;
            }
        });
    }
    tasks
}

fn next_slot(pacer: &Mutex<Instant>, delay: Duration) -> Instant {
    if delay.is_zero() {
        return Instant::now();
    }
    let mut next = pacer.lock().unwrap_or_else(|p| p.into_inner());
    let slot = (*next).max(Instant::now());
    *next = slot + delay;
    slot
}

async fn open(job: &Arc<Job>, schedule: Schedule, max_in_flight: u32, cancel: &CancellationToken) -> JoinSet<()> {
    let permits = Arc::new(Semaphore::new(max_in_flight as usize));
    // Idle keep-alive connections; arrivals take one or open their own.
    let idle: Arc<Mutex<Vec<Connection>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for (index, offset) in schedule.enumerate() {
        let intended = start + offset;
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(intended) => {}
        }
        let (job, permits, idle) = (Arc::clone(job), Arc::clone(&permits), Arc::clone(&idle));
        tasks.spawn(async move {
            // Waiting for a permit is queueing: it counts in the latency, measured from `intended`.
            let Ok(_permit) = permits.acquire_owned().await else { return };
            let mut connection = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            job.send(index, &mut connection, intended, ask_at(&job.asks, offset)).await;
            if let Some(connection) = connection {
                idle.lock().unwrap_or_else(|p| p.into_inner()).push(connection);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_the_path_of_the_phase_it_is_sent_in() {
        let path = |text: &str| text.parse::<Uri>().expect("uri");
        let at = |secs| PathFrom { from: Duration::from_secs(secs), path: path(&format!("/phase-from-{secs}")) };
        let phased = asks(&Method::GET, &path("/first"), &[at(60), at(180)]);
        // (offset in seconds, the path sent)
        let cases =
            [(0, "/first"), (59, "/first"), (60, "/phase-from-60"), (179, "/phase-from-60"), (180, "/phase-from-180")];
        for (secs, sent) in cases {
            assert_eq!(ask_at(&phased, Duration::from_secs(secs)).uri, sent, "at {secs} s");
        }
        let single = asks(&Method::GET, &path("/first"), &[]);
        assert_eq!(ask_at(&single, Duration::from_secs(999)).uri, "/first", "one path for a run without phases");
    }

    #[test]
    fn only_async_submissions_are_idempotent() {
        let path = |text: &str| text.parse::<Uri>().expect("uri");
        let submit = |async_mode| path(&format!("/process?cpu_intensity=3&async_mode={async_mode}"));
        let later = [PathFrom { from: Duration::from_secs(60), path: submit(false) }];
        let idempotent = |method: &Method| -> Vec<bool> {
            asks(method, &submit(true), &later).iter().map(|a| a.idempotent).collect()
        };
        assert_eq!(idempotent(&Method::POST), vec![true, false], "an async submission, then a sync one");
        assert_eq!(idempotent(&Method::GET), vec![false, false], "a GET submits nothing");
    }
}
