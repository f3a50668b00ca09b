//! The shared vocabulary of work: what a `/process` call asks for, its mode, and where a task is in its life. The
//! registry, the shared backlog and the routes all speak it.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::capacity::{self, Demand};

/// Validated parameters of one `/process` call.
#[derive(Debug, Clone, Copy)]
pub struct WorkSpec {
    pub cpu_intensity: u8,
    pub memory_bytes: u64,
    pub duration: Duration,
    pub mode: Mode,
    pub retain: bool,
}

impl WorkSpec {
    pub fn demand(&self) -> Demand {
        let demand = capacity::task_demand(self.cpu_intensity, self.duration.as_secs_f64(), self.memory_bytes);
        Demand { retains: self.retain, ..demand }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sync,
    Async,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Started,
    Completed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}
