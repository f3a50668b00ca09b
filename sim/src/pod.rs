//! One replica in virtual time: its way from created to serving (bound when the node has room, its container started,
//! its probes passed, its endpoint published), its tasks run under the consumer's own capacity rules
//! (`surge_capacity`: the start rule, max-min sharing of the lesser of its capacity and its node share), the series it
//! exports, and its drain when the ReplicaSet deletes it.

use std::collections::VecDeque;
use surge_keda::resource::Reading;

use surge_capacity::signals::SLOWDOWN_BUCKETS;
use surge_capacity::{can_start, rate, share_level, task_demand, Demand, Limits};
use surge_generator::profiles::Profile;
use surge_keda::startup::ENDPOINTS_SECONDS;

use crate::query::Labels;

/// One task as `/process` asks for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Task {
    pub cpu_intensity: u8,
    /// `duration`: seconds of work at the cores it asks for.
    pub seconds: f64,
    pub memory_bytes: u64,
    /// The caller waits for it (a sync request) rather than taking a task id.
    pub sync: bool,
}

impl Task {
    /// What each of the profile's requests asks for.
    pub fn of(profile: &Profile) -> Self {
        Self::new(profile.cpu_intensity, profile.memory_mib, profile.duration_secs, profile.async_mode)
    }

    /// A request's task from its query's values, as the consumer reads them.
    pub fn new(cpu_intensity: u8, memory_mib: u32, duration_secs: u32, async_mode: bool) -> Self {
        Task {
            cpu_intensity,
            seconds: f64::from(duration_secs),
            memory_bytes: u64::from(memory_mib) << 20,
            sync: !async_mode,
        }
    }

    /// What it asks of its pod, by the consumer's own rule.
    pub fn demand(&self) -> Demand {
        task_demand(self.cpu_intensity, self.seconds, self.memory_bytes)
    }

    pub fn cores(&self) -> f64 {
        self.demand().cores
    }
}

/// An idle consumer's working set: its cgroup's, by cAdvisor's rule, read 4.0-4.2 MB idle in the closed loop (its
/// metrics-server); a task's memory is touched at its start, so resident, and given back to the OS at its end.
pub const IDLE_WORKING_SET_BYTES: u64 = 4 << 20;

/// A task accepted and not yet started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queued {
    pub task: Task,
    pub accepted: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Running {
    queued: Queued,
    started: f64,
    work_left: f64,
    /// Taken from the shared backlog (handed back on a drain's timeout rather than lost).
    shared: bool,
}

/// What a drain's timeout took with the process: async tasks of its own backlog, and sync ones whose callers it
/// answered with a closed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub own: usize,
    pub sync: usize,
}

/// A task that ended on this replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finished {
    pub queued: Queued,
    pub started: f64,
    pub at: f64,
}

/// One replica.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub uid: u64,
    pub created: f64,
    /// Bound to the node (Pending until its request fits).
    pub bound: Option<f64>,
    /// Its process answers (its container started and listening): it pulls work and is scraped from here.
    pub listening: Option<f64>,
    pub ready: Option<f64>,
    /// The Service sends it connections from here.
    pub serving: Option<f64>,
    pub deleting: Option<f64>,
    pub gone: Option<f64>,
    /// Its own backlog (sync work, and async work without the shared backlog).
    pub queue: VecDeque<Queued>,
    running: Vec<Running>,
    /// The cores the node gives it now.
    pub share: f64,
    pub requests_ok: f64,
    pub requests_refused: f64,
    pub allocated_bytes: f64,
    slowdown_counts: Vec<f64>,
    slowdown_sum: f64,
    pub next_scrape: f64,
    /// CPU time its tasks have used, core-seconds.
    pub cpu_seconds: f64,
    /// metrics-server's last two readings of it, and when it reads next.
    pub readings: Vec<Reading>,
    pub next_reading: f64,
}

impl Pod {
    pub fn new(name: String, uid: u64, created: f64, share: f64) -> Self {
        Self {
            name,
            uid,
            created,
            bound: None,
            listening: None,
            ready: None,
            serving: None,
            deleting: None,
            gone: None,
            queue: VecDeque::new(),
            running: Vec::new(),
            share,
            requests_ok: 0.0,
            requests_refused: 0.0,
            allocated_bytes: 0.0,
            slowdown_counts: vec![0.0; SLOWDOWN_BUCKETS.len() + 1],
            slowdown_sum: 0.0,
            next_scrape: f64::INFINITY,
            cpu_seconds: 0.0,
            readings: Vec::new(),
            next_reading: f64::INFINITY,
        }
    }

    pub fn is_listening(&self, t: f64) -> bool {
        self.listening.is_some_and(|at| at <= t) && self.gone.is_none()
    }

    /// Takes new work from the shared backlog: listening and not told to stop.
    pub fn pulls(&self, t: f64) -> bool {
        self.is_listening(t) && self.deleting.is_none()
    }

    /// The Service sends it connections: from its endpoint's publication until the endpoints drop it, a moment after
    /// its deletion.
    pub fn is_serving(&self, t: f64) -> bool {
        self.serving.is_some_and(|at| at <= t)
            && self.gone.is_none()
            && self.deleting.is_none_or(|deleted| t < deleted + ENDPOINTS_SECONDS)
    }

    /// Tasks it holds from the shared backlog (counted in the stream until they finish).
    pub fn holding_shared(&self) -> usize {
        self.running.iter().filter(|r| r.shared).count()
    }

    /// The cores its running tasks ask for.
    pub fn demand_cores(&self) -> f64 {
        self.running.iter().map(|r| r.queued.task.cores()).sum()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// What metrics-server reads of it at `at`: its cumulative CPU time and its working set.
    pub fn reading(&self, at: f64) -> Reading {
        let held: u64 = self.running.iter().map(|r| r.queued.task.memory_bytes).sum();
        Reading { at, cpu_nanos: (self.cpu_seconds * 1e9) as u64, working_set_bytes: IDLE_WORKING_SET_BYTES + held }
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.queue.is_empty()
    }

    /// The start rule for one more task now.
    pub fn has_room(&self, limits: &Limits, task: &Task) -> bool {
        let reserved: u64 = self.running.iter().map(|r| r.queued.task.memory_bytes).sum();
        can_start(limits, self.running.len() as u32, self.demand_cores(), reserved, &task.demand())
    }

    /// Starts `queued` now: its memory is allocated at once (the allocator counts it).
    pub fn start(&mut self, queued: Queued, t: f64, shared: bool) {
        self.allocated_bytes += queued.task.memory_bytes as f64;
        let work_left = queued.task.demand().work;
        self.running.push(Running { queued, started: t, work_left, shared });
    }

    /// Starts its own backlog's tasks, first in first out, while the start rule allows.
    pub fn start_queued(&mut self, limits: &Limits, t: f64) {
        while let Some(next) = self.queue.front().copied() {
            if !self.has_room(limits, &next.task) {
                break;
            }
            self.queue.pop_front();
            self.start(next, t, false);
        }
    }

    /// Runs its tasks for `dt` seconds from `t`, sharing the lesser of its capacity and its node share max-min
    /// fairly; the tasks that end, at the moment they end.
    pub fn advance(&mut self, limits: &Limits, t: f64, dt: f64) -> Vec<Finished> {
        let capacity = limits.capacity_cores.min(self.share);
        let level = share_level(self.running.iter().map(|r| r.queued.task.cores()), capacity);
        let mut finished = Vec::new();
        let mut used = 0.0;
        self.running.retain_mut(|running| {
            let speed = rate(running.queued.task.cores(), level);
            if speed <= 0.0 {
                return true;
            }
            used += (speed * dt).min(running.work_left);
            if running.work_left <= speed * dt {
                let at = t + running.work_left / speed;
                finished.push(Finished { queued: running.queued, started: running.started, at });
                return false;
            }
            running.work_left -= speed * dt;
            true
        });
        self.cpu_seconds += used;
        for task in &finished {
            self.observe_slowdown((task.at - task.started) / task.queued.task.seconds);
        }
        finished
    }

    fn observe_slowdown(&mut self, ratio: f64) {
        let bucket = SLOWDOWN_BUCKETS.iter().position(|le| ratio <= *le).unwrap_or(SLOWDOWN_BUCKETS.len());
        for count in &mut self.slowdown_counts[bucket..] {
            *count += 1.0;
        }
        self.slowdown_sum += ratio;
    }

    /// At a drain's timeout: the tasks still running or queued here, each handed back to the shared backlog when it
    /// came from there (restarting from scratch elsewhere) or lost with the process.
    pub fn stop_running(&mut self) -> (Vec<Queued>, Lost) {
        let (shared, own): (Vec<Running>, Vec<Running>) = self.running.drain(..).partition(|r| r.shared);
        let own: Vec<Queued> = own.into_iter().map(|r| r.queued).chain(self.queue.drain(..)).collect();
        let sync = own.iter().filter(|q| q.task.sync).count();
        (shared.into_iter().map(|r| r.queued).collect(), Lost { own: own.len() - sync, sync })
    }

    /// The series one scrape reads at `t`, `target` its labels after relabeling; `backlog` the shared backlog's
    /// length when there is one.
    pub fn scrape(&self, target: &Labels, backlog: Option<usize>) -> Vec<(Labels, f64)> {
        let with = |name: &str, extra: &[(&str, String)]| {
            let mut labels = target.clone();
            labels.insert("pod".into(), self.name.clone());
            labels.insert("__name__".into(), name.into());
            for (k, v) in extra {
                labels.insert((*k).into(), v.clone());
            }
            labels
        };
        let mut samples = vec![
            (with("up", &[]), 1.0),
            (with("consumer_tasks_queued", &[]), self.queue.len() as f64),
            (with("consumer_cpu_demand_cores", &[]), self.demand_cores()),
            (with("allocator_allocated_bytes_total", &[]), self.allocated_bytes),
            (with("consumer_task_slowdown_ratio_sum", &[]), self.slowdown_sum),
            (with("consumer_task_slowdown_ratio_count", &[]), self.slowdown_counts[SLOWDOWN_BUCKETS.len()]),
        ];
        let process =
            |status: &str| [("handler", "/process".to_owned()), ("method", "POST".into()), ("status", status.into())];
        samples.push((with("http_requests_total", &process("2xx")), self.requests_ok));
        samples.push((with("http_requests_total", &process("5xx")), self.requests_refused));
        for (i, count) in self.slowdown_counts.iter().enumerate() {
            let le = SLOWDOWN_BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
            samples.push((with("consumer_task_slowdown_ratio_bucket", &[("le", le)]), *count));
        }
        if let Some(backlog) = backlog {
            samples.push((with("consumer_queue_backlog", &[]), backlog as f64));
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn limits() -> Limits {
        Limits { capacity_cores: 1.0, overcommit: 2.0, max_tasks: 64, budget_bytes: 384 * MIB }
    }

    fn task(cpu_intensity: u8, seconds: f64, memory_mib: u64) -> Queued {
        Queued { task: Task { cpu_intensity, seconds, memory_bytes: memory_mib * MIB, sync: false }, accepted: 0.0 }
    }

    /// Two heavy tasks (0.9 core each for 20 s) on a 1-core pod share it evenly: each runs at 0.5 core, so both take
    /// 36 s, a slowdown of 1.8; a third would exceed twice the capacity and waits.
    #[test]
    fn tasks_share_the_pod_max_min_and_the_start_rule_holds_the_rest() {
        let mut pod = Pod::new("consumer-0".into(), 1, 0.0, 1.0);
        pod.queue.extend([task(9, 20.0, 150), task(9, 20.0, 150), task(9, 20.0, 50)]);
        pod.start_queued(&limits(), 0.0);
        assert_eq!((pod.running(), pod.queue.len()), (2, 1), "2 × 0.9 + 0.9 > 2 × 1 core");
        let mut finished = Vec::new();
        let mut t = 0.0;
        while finished.is_empty() {
            finished = pod.advance(&limits(), t, 0.1);
            t += 0.1;
        }
        assert!(finished.iter().all(|f| (f.at - 36.0).abs() < 1e-6), "{finished:?}");
        assert_eq!(pod.slowdown_counts[5], 2.0, "1.8 ≤ 2.05: bucket six and above");
        assert_eq!(pod.allocated_bytes, (300 * MIB) as f64);
    }

    /// A node share below the capacity slows the pod down: the consumer runs at the lesser of the two.
    #[test]
    fn a_smaller_node_share_stretches_the_work() {
        let mut pod = Pod::new("consumer-0".into(), 1, 0.0, 0.5);
        pod.start(task(10, 10.0, 0), 0.0, true);
        let finished = pod.advance(&limits(), 0.0, 30.0);
        assert!((finished[0].at - 20.0).abs() < 1e-9, "{finished:?}");
    }

    #[test]
    fn a_drain_timeout_hands_shared_work_back_and_loses_its_own() {
        let mut pod = Pod::new("consumer-0".into(), 1, 0.0, 1.0);
        pod.start(task(5, 10.0, 0), 0.0, true);
        pod.start(task(5, 10.0, 0), 0.0, false);
        pod.queue.push_back(task(5, 10.0, 0));
        let (handed_back, lost) = pod.stop_running();
        assert_eq!((handed_back.len(), lost), (1, Lost { own: 2, sync: 0 }));
        assert!(pod.is_idle());
    }
}
