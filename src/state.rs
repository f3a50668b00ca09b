//! What every handler shares: the pod's identity, the task registry, where async work waits, the metrics
//! and the drain flag.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::identity::PodIdentity;
use crate::metrics::Metrics;
use crate::queue::Backlog;
use crate::work::tasks::TaskRegistry;

pub struct AppState {
    pub identity: PodIdentity,
    pub registry: Arc<TaskRegistry>,
    /// Where async tasks wait: this pod's registry or the shared Redis stream.
    pub backlog: Backlog,
    pub metrics: Metrics,
    /// Set when SIGTERM arrives; `/ready` answers 503 from then on, and every response closes its connection.
    pub draining: Arc<AtomicBool>,
}
