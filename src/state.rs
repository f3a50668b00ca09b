//! What every handler shares: the pod's identity, the task registry, the metrics and the drain flag.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::identity::PodIdentity;
use crate::metrics::Metrics;
use crate::work::tasks::TaskRegistry;

pub struct AppState {
    pub identity: PodIdentity,
    pub registry: Arc<TaskRegistry>,
    pub metrics: Metrics,
    /// Set when SIGTERM arrives; `/ready` answers 503 from then on, and every response closes its connection.
    pub draining: Arc<AtomicBool>,
}
