//! The node's share for simulated work: a node model (the closed-loop harness's `--node-cores`) writes the cores this
//! pod gets now to a file, and running tasks share that, as a pod's threads share what the kernel gives its cgroup.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::tasks::TaskRegistry;

/// As often as a simulated task looks at its share (`cpu::PERIOD`).
const READ_EVERY: Duration = Duration::from_millis(100);

/// Follows `path` for as long as the runtime runs: tasks still running through a drain need their share to the end.
/// A missing or unreadable file keeps the last share (the writer replaces it whole, by rename).
pub async fn follow(path: PathBuf, registry: Arc<TaskRegistry>) {
    let mut last = None;
    let mut every = tokio::time::interval(READ_EVERY);
    loop {
        every.tick().await;
        let read = tokio::fs::read_to_string(&path).await.ok();
        let cores = read.and_then(|text| text.trim().parse::<f64>().ok()).filter(|c| c.is_finite() && *c >= 0.0);
        if let Some(cores) = cores.filter(|c| last != Some(*c)) {
            registry.set_node_cores(cores);
            last = Some(cores);
        }
    }
}
