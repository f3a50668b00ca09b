//! metrics-server, stood in for the loop's Resource metrics (a `cpu` or `memory` trigger, a plain HPA): at each sync
//! it reads every started replica as the kubelet reports it and keeps the last two readings of each, as metrics-server
//! keeps them; the HPA's replica calculator (`surge_keda::resource`) then reads CPU as the rate between the two and
//! memory as the later. CPU is the consumer's own count of its tasks' core-seconds (`consumer_cpu_work_seconds_total`:
//! a cgroup counts the same when the work burns; simulated work only accounts it; wall core-seconds, so multiplied by
//! the compression: a task F times shorter does its work F times faster); memory is the working set of its
//! cgroup by cAdvisor's rule, or its resident set where it runs without one. Unlike metrics-server's own ticker
//! (`--metric-resolution`, 15 s), the readings fall on the syncs: one phase of the many a cluster plays.

use std::collections::HashMap;
use std::path::Path;

use surge_generator::prometheus::http_get;
use surge_keda::resource::{reported, Reading, Resource, Usage};

/// The consumer's counter of the core-seconds its tasks' CPU work used.
const CPU_WORK_SECONDS_TOTAL: &str = "consumer_cpu_work_seconds_total";

/// A started replica, as the kubelet finds it.
pub(crate) struct Kubelet<'a> {
    pub(crate) slot: usize,
    pub(crate) port: u16,
    pub(crate) pid: u32,
    /// Its memory cgroup's directory, if it runs in one.
    pub(crate) memory_cgroup: Option<&'a Path>,
}

pub(crate) struct MetricsServer {
    /// The run's compression: a wall second of CPU is this many of the autoscaler's (the same task, F times shorter).
    time_scale: f64,
    /// The last two readings of each pod slot, the earlier first.
    readings: HashMap<usize, Vec<Reading>>,
}

impl MetricsServer {
    pub(crate) fn new(time_scale: f64) -> Self {
        Self { time_scale, readings: HashMap::new() }
    }

    /// Reads every started replica at `at`; a slot no longer started loses its readings (a new pod there starts over).
    pub(crate) fn read(&mut self, pods: &[Kubelet], at: f64) {
        self.readings.retain(|slot, _| pods.iter().any(|p| p.slot == *slot));
        for pod in pods {
            let Some(reading) = read(pod, at, self.time_scale) else { continue };
            let kept = self.readings.entry(pod.slot).or_default();
            kept.push(reading);
            if kept.len() > 2 {
                kept.remove(0);
            }
        }
    }

    /// What metrics-server reports for the pod in `slot`: nothing until it has read it twice.
    pub(crate) fn usage(&self, slot: usize, resource: Resource) -> Option<Usage> {
        reported(self.readings.get(&slot)?, resource)
    }
}

fn read(pod: &Kubelet, at: f64, time_scale: f64) -> Option<Reading> {
    let (status, body) = http_get("127.0.0.1", pod.port, "/metrics").ok()?;
    let cpu_seconds = (status == 200).then(|| counter(&body, CPU_WORK_SECONDS_TOTAL)).flatten()?;
    let working_set_bytes = match pod.memory_cgroup {
        Some(dir) => {
            let usage = std::fs::read_to_string(dir.join("memory.usage_in_bytes")).ok()?.trim().parse().ok()?;
            working_set(usage, &std::fs::read_to_string(dir.join("memory.stat")).ok()?)
        }
        None => resident_bytes(&std::fs::read_to_string(format!("/proc/{}/status", pod.pid)).ok()?)?,
    };
    Some(Reading { at, cpu_nanos: (cpu_seconds * time_scale * 1e9) as u64, working_set_bytes })
}

/// A counter's value in a text exposition (one series, no labels).
fn counter(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// cAdvisor's working set of a cgroup v1: its memory usage less the inactive file pages (`total_inactive_file` in
/// `memory.stat`), never below zero.
fn working_set(usage: u64, stat: &str) -> u64 {
    let inactive = stat
        .lines()
        .find_map(|line| line.strip_prefix("total_inactive_file ")?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let kib: u64 =
        status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_keda::resource::memory_milli;

    #[test]
    fn the_working_set_leaves_out_inactive_file_pages_as_cadvisor_does() {
        let stat = "cache 4096\nrss 10485760\ninactive_file 1\ntotal_inactive_file 4096\ntotal_active_file 0\n";
        // (usage, memory.stat, working set)
        let cases = [(10_489_856, stat, 10_485_760), (2048, stat, 0), (8192, "rss 8192\n", 8192)];
        for (usage, stat, expected) in cases {
            assert_eq!(working_set(usage, stat), expected, "{usage} with {stat:?}");
        }
    }

    #[test]
    fn the_consumers_counter_and_the_resident_set_are_read_from_their_text() {
        let exposition =
            "# HELP consumer_cpu_work_seconds_total Core-seconds.\n# TYPE consumer_cpu_work_seconds_total \
                          counter\nconsumer_cpu_work_seconds_total 12.5\nconsumer_cpu_work_seconds_total_x 3\n";
        assert_eq!(counter(exposition, CPU_WORK_SECONDS_TOTAL), Some(12.5));
        assert_eq!(counter("other 1\n", CPU_WORK_SECONDS_TOTAL), None);
        assert_eq!(resident_bytes("Name:\tconsumer\nVmRSS:\t   10240 kB\nThreads:\t9\n"), Some(10 << 20));
    }

    #[test]
    fn a_pod_is_reported_once_read_twice_cpu_as_the_rate_and_memory_as_the_later() {
        let mut server = MetricsServer::new(1.0);
        let reading =
            |at: f64, cpu: f64, mib: u64| Reading { at, cpu_nanos: (cpu * 1e9) as u64, working_set_bytes: mib << 20 };
        server.readings.insert(3, vec![reading(30.0, 4.0, 200)]);
        assert_eq!(server.usage(3, Resource::Cpu), None, "one reading: no rate yet");
        server.readings.insert(3, vec![reading(30.0, 4.0, 200), reading(45.0, 10.0, 120)]);
        // 6 core-seconds in 15 s: 400 millicores; the working set of the later reading.
        assert_eq!(server.usage(3, Resource::Cpu), Some(Usage { milli: 400, at: 45.0, window: 15.0 }));
        assert_eq!(
            server.usage(3, Resource::Memory),
            Some(Usage { milli: memory_milli(120 << 20), at: 45.0, window: 15.0 })
        );
        server.read(&[], 60.0);
        assert_eq!(server.usage(3, Resource::Memory), None, "a slot no longer started is forgotten");
    }
}
