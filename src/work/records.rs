//! What `GET /process/{task_id}` answers: a task's record from acceptance to its end, and the in-memory store that
//! keeps those that arrived at this pod (the Redis backlog keeps the shared ones, in Redis, with the same shape).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where an async task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    Queued,
    /// Started on `pod` (with the Redis queue: taken by that pod, which starts it as soon as it fits).
    Running,
    Completed,
    /// Stopped unfinished on a pod without a shared backlog (memory queue: drain or shutdown).
    Cancelled,
    /// Dead-lettered after too many deliveries (Redis queue).
    Failed,
}

impl RecordStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// The `GET /process/{task_id}` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskRecord {
    pub task_id: Uuid,
    pub status: RecordStatus,
    /// `memory` (this pod) or `redis` (the shared backlog): where it waited.
    pub queue: &'static str,
    /// `sync` or `async`.
    pub mode: &'static str,
    /// The pod running or that ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub cpu_intensity: u8,
    pub memory_size: u64,
    pub duration: f64,
    pub accepted_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Accepted → finished: the wait and the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sojourn_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowdown: Option<f64>,
    /// Times a pod started it (Redis queue): more than 1 after a crash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<u32>,
    /// Runs started while an earlier run had started and never ended (its holder killed, paused or cut off past its
    /// lease): each a duplicate run (Redis queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reruns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TaskRecord {
    /// A task just accepted: queued, nothing yet about its run.
    pub fn accepted(task_id: Uuid, queue: &'static str, mode: &'static str, accepted_at: DateTime<Utc>) -> Self {
        Self {
            task_id,
            status: RecordStatus::Queued,
            queue,
            mode,
            pod: None,
            cpu_intensity: 0,
            memory_size: 0,
            duration: 0.0,
            accepted_at,
            started_at: None,
            finished_at: None,
            sojourn_seconds: None,
            wall_seconds: None,
            slowdown: None,
            deliveries: None,
            reruns: None,
            error: None,
        }
    }

    /// Fills `sojourn_seconds` from the acceptance and finish times.
    pub fn with_sojourn(mut self) -> Self {
        // Microseconds: a one-second task's sojourn must not read shorter than its own wall time.
        self.sojourn_seconds = self
            .finished_at
            .map(|finished| (finished - self.accepted_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
        self
    }
}

/// The memory queue's records: kept for `retention`, and at most `capacity` of them (oldest dropped first), so a
/// long run at thousands of tasks a second stays bounded.
pub struct RecordStore {
    retention: Duration,
    capacity: usize,
    records: HashMap<Uuid, TaskRecord>,
    /// Acceptance order, for expiry.
    order: VecDeque<(Instant, Uuid)>,
}

impl RecordStore {
    pub fn new(retention: Duration, capacity: usize) -> Self {
        Self { retention, capacity, records: HashMap::new(), order: VecDeque::new() }
    }

    pub fn insert(&mut self, record: TaskRecord) {
        let now = Instant::now();
        while let Some(&(at, id)) = self.order.front() {
            if self.order.len() < self.capacity && now.saturating_duration_since(at) < self.retention {
                break;
            }
            self.order.pop_front();
            self.records.remove(&id);
        }
        self.order.push_back((now, record.task_id));
        self.records.insert(record.task_id, record);
    }

    pub fn update(&mut self, id: Uuid, change: impl FnOnce(&mut TaskRecord)) {
        if let Some(record) = self.records.get_mut(&id) {
            change(record);
        }
    }

    pub fn get(&self, id: Uuid) -> Option<TaskRecord> {
        self.records.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TaskRecord {
        TaskRecord {
            cpu_intensity: 1,
            duration: 1.0,
            ..TaskRecord::accepted(Uuid::new_v4(), "memory", "async", Utc::now())
        }
    }

    #[test]
    fn the_oldest_record_goes_first_when_the_store_is_full() {
        let mut store = RecordStore::new(Duration::from_secs(3600), 2);
        let (a, b, c) = (record(), record(), record());
        let ids = [a.task_id, b.task_id, c.task_id];
        store.insert(a);
        store.insert(b);
        store.insert(c);
        assert!(store.get(ids[0]).is_none());
        assert!(store.get(ids[1]).is_some() && store.get(ids[2]).is_some());
    }

    #[test]
    fn records_older_than_the_retention_are_dropped() {
        let mut store = RecordStore::new(Duration::ZERO, 100);
        let first = record();
        let id = first.task_id;
        store.insert(first);
        store.insert(record());
        assert!(store.get(id).is_none());
    }

    #[test]
    fn sojourn_is_acceptance_to_finish() {
        let mut finished = record();
        finished.finished_at = Some(finished.accepted_at + chrono::Duration::milliseconds(2500));
        assert_eq!(finished.with_sojourn().sojourn_seconds, Some(2.5));
    }
}
