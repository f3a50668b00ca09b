//! Follows accepted async tasks to their end: ids from the 200 answers, read back a hundred at a time from
//! `GET /process/results`, so the summary has the end-to-end time (accepted → finished) autoscaling exists to bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::{Method, StatusCode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::stats::{Buckets, Followed, Latencies};

/// The most ids `GET /process/results` takes at once.
const BATCH: usize = 100;

#[derive(Deserialize)]
struct Accepted {
    task_id: String,
    /// Only the async answer has it: a sync report is its own end.
    estimated_start: Option<String>,
}

#[derive(Deserialize)]
struct Results {
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    task_id: String,
    status: String,
    sojourn_seconds: Option<f64>,
}

/// The counts and end-to-end buckets so far, for `/metrics`.
pub struct TaskCounts {
    pub accepted: u64,
    /// Completed, failed, cancelled.
    pub ended: [(&'static str, u64); 3],
    pub e2e: Buckets,
}

pub struct Follower {
    pending: Mutex<VecDeque<String>>,
    accepted: AtomicU64,
    ended: Mutex<Ended>,
    /// When following began: the run's start, which the report's time axis counts from.
    started: Instant,
}

struct Ended {
    e2e_us: Histogram<u64>,
    /// Each completed task: (seconds from the start to when its end was seen, its end-to-end seconds).
    over_time: Vec<(f64, f64)>,
    completed: u64,
    failed: u64,
    cancelled: u64,
}

impl Default for Follower {
    fn default() -> Self {
        Self {
            pending: Mutex::default(),
            accepted: AtomicU64::new(0),
            ended: Mutex::new(Ended {
                e2e_us: Histogram::new_with_bounds(1, 24 * 3_600_000_000, 3)
                    .expect("static histogram bounds are valid"),
                over_time: Vec::new(),
                completed: 0,
                failed: 0,
                cancelled: 0,
            }),
            started: Instant::now(),
        }
    }
}

impl Follower {
    /// Notes the task a 200 answer accepted, when it is an async acceptance.
    pub fn answered(&self, body: &[u8]) {
        let Ok(accepted) = serde_json::from_slice::<Accepted>(body) else { return };
        if accepted.estimated_start.is_some() {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).push_back(accepted.task_id);
        }
    }

    /// Reads the pending tasks' records every `interval` until `sending` is done and none is pending, or `limit`
    /// after sending ended, or `cancel`.
    pub async fn run(
        &self,
        client: &Client,
        interval: Duration,
        sending: CancellationToken,
        limit: Duration,
        cancel: &CancellationToken,
    ) {
        let deadline = async {
            sending.cancelled().await;
            tokio::time::sleep(limit).await;
        };
        tokio::pin!(deadline);
        loop {
            let done_sending = sending.is_cancelled();
            if done_sending && self.pending_count() == 0 {
                return;
            }
            tokio::select! {
                () = &mut deadline => return,
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let batch = self.next_batch();
            if batch.is_empty() {
                continue;
            }
            let path = format!("/process/results?task_ids={}", batch.join(","));
            match client.once(Method::GET, &path, None).await {
                Ok(reply) if reply.status == StatusCode::OK => self.settle(batch, &reply.body),
                // Refused or unreachable (a 503 while Redis is away): asked again next time.
                _ => self.settle(batch, b"{}"),
            }
        }
    }

    /// The next ids to ask about. Every pending id is asked in turn: a batch goes to the back unless it ended (memory
    /// queue: another pod may hold it, and a later call may reach that pod).
    pub(crate) fn next_batch(&self) -> Vec<String> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = pending.len().min(BATCH);
        pending.drain(..n).collect()
    }

    /// Counts the batch's tasks that ended by the `GET /process/results` answer `body`, and puts the rest back.
    pub(crate) fn settle(&self, batch: Vec<String>, body: &[u8]) {
        let records = serde_json::from_slice::<Results>(body).map(|r| r.records).unwrap_or_default();
        let seen = self.started.elapsed().as_secs_f64();
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        let mut still = Vec::new();
        for id in batch {
            let record = records.iter().find(|r| r.task_id == id);
            match record.map(|r| (r.status.as_str(), r.sojourn_seconds)) {
                Some(("completed", sojourn)) => {
                    ended.completed += 1;
                    if let Some(seconds) = sojourn {
                        let _ = ended.e2e_us.record((seconds * 1e6).max(1.0) as u64);
                        ended.over_time.push((seen, seconds));
                    }
                }
                Some(("failed", _)) => ended.failed += 1,
                Some(("cancelled", _)) => ended.cancelled += 1,
                _ => still.push(id),
            }
        }
        drop(ended);
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).extend(still);
    }

    pub fn pending_count(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// What `/metrics` shows: counts and end-to-end buckets (`bounds` in seconds).
    pub fn counts(&self, bounds: &[f64]) -> TaskCounts {
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        let mut e2e = Buckets::default();
        e2e.add(&ended.e2e_us, bounds);
        TaskCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            ended: [("completed", ended.completed), ("failed", ended.failed), ("cancelled", ended.cancelled)],
            e2e,
        }
    }

    /// Each completed task's end-to-end seconds, by when the follower saw it end (seconds from the run's start, at
    /// most one follow interval late): the report's chart over time.
    pub fn ended_over_time(&self) -> Vec<(f64, f64)> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).over_time.clone()
    }

    /// `None` when no async task was accepted (a sync run, or nothing got through).
    pub fn summary(&self) -> Option<Followed> {
        let accepted = self.accepted.load(Ordering::Relaxed);
        if accepted == 0 {
            return None;
        }
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        Some(Followed {
            accepted,
            completed: ended.completed,
            failed: ended.failed,
            cancelled: ended.cancelled,
            unresolved: self.pending_count() as u64,
            e2e_ms: Latencies::from(&ended.e2e_us),
            e2e_us: ended.e2e_us.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(follower: &Follower, id: &str) {
        follower.answered(format!(r#"{{"task_id":"{id}","status":"queued","estimated_start":"x"}}"#).as_bytes());
    }

    #[test]
    fn only_async_acceptances_are_followed() {
        let follower = Follower::default();
        accept(&follower, "a");
        follower.answered(br#"{"task_id":"b","status":"completed","mode":"sync","wall_seconds":1.0}"#);
        follower.answered(b"not json");
        assert_eq!(follower.pending_count(), 1);
        assert_eq!(follower.summary().map(|f| f.accepted), Some(1));
        assert!(Follower::default().summary().is_none(), "no async task, nothing to summarise");
    }

    #[test]
    fn ended_tasks_are_counted_and_the_rest_asked_again() {
        let follower = Follower::default();
        let ids = ["a", "b", "c", "d", "e"];
        for id in ids {
            accept(&follower, id);
        }
        let batch = follower.next_batch();
        assert_eq!(batch, ids);
        // As GET /process/results answers: what it holds, in order; d unknown there.
        let body = br#"{"records": [
            {"task_id": "a", "status": "completed", "sojourn_seconds": 2.0},
            {"task_id": "b", "status": "running"},
            {"task_id": "c", "status": "failed"},
            {"task_id": "e", "status": "completed", "sojourn_seconds": 4.0}
        ], "unknown": ["d"]}"#;
        follower.settle(batch, body);
        let followed = follower.summary().expect("followed");
        assert_eq!((followed.completed, followed.failed, followed.cancelled, followed.unresolved), (2, 1, 0, 2));
        assert_eq!(follower.pending.lock().expect("lock").iter().collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(follower.next_batch(), ["b", "d"]);
        follower.settle(vec!["b".into(), "d".into()], b"{}");
        assert!((followed.e2e_ms_at(100.0) - 4000.0).abs() < 5.0, "{:?}", followed.e2e_ms);
        let over_time: Vec<f64> = follower.ended_over_time().iter().map(|(_, e2e)| *e2e).collect();
        assert_eq!(over_time, [2.0, 4.0], "the completed ones, for the report's chart");
        assert!((followed.e2e_ms_at(50.0) - 2000.0).abs() < 5.0, "{:?}", followed.e2e_ms);
        let counts = follower.counts(&[1.0, 5.0]);
        assert_eq!((counts.accepted, counts.ended), (5, [("completed", 2), ("failed", 1), ("cancelled", 0)]));
        assert_eq!((counts.e2e.cumulative, counts.e2e.count), (vec![0, 2], 2));
        // A refusal (503) or garbage settles nothing and loses nothing.
        follower.settle(follower.next_batch(), b"Service Unavailable");
        assert_eq!(follower.summary().map(|f| f.unresolved), Some(2));
    }
}
