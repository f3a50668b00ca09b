//! Process metrics read from the kernel at scrape time: CPU with microsecond resolution (getrusage, where the
//! prometheus crate's collector counts whole seconds), resident memory, threads, open fds and start time.

use std::time::Duration;

/// The process at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

pub fn stats() -> ProcessStats {
    let (resident_bytes, threads) = status_fields();
    ProcessStats {
        cpu_seconds: cpu_time().as_secs_f64(),
        resident_bytes,
        threads,
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64),
        max_fds: max_fds(),
    }
}

fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid; getrusage only writes to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let micros = |tv: libc::timeval| (tv.tv_sec as u64) * 1_000_000 + tv.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// VmRSS and Threads from /proc/self/status.
fn status_fields() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

fn max_fds() -> u64 {
    // SAFETY: an all-zero rlimit is valid; getrlimit only writes to it.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur
}

/// Boot time plus the process's start in clock ticks since boot, as Prometheus client libraries compute it.
/// It never changes, so the collector reads it once.
pub fn start_time_seconds() -> f64 {
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0);
    let ticks: f64 = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after_comm = stat.rsplit_once(')')?.1;
            // starttime is field 22; after the command name the fields start at 3.
            after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
        })
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    boot + ticks / hz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_values() {
        let stats = stats();
        assert!(stats.resident_bytes > 1 << 20);
        assert!(stats.threads >= 1);
        assert!(stats.open_fds >= 3);
        assert!(stats.max_fds >= stats.open_fds);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
        let started = start_time_seconds();
        assert!(started > now - 3600.0 && started <= now + 1.0);
    }

    #[test]
    fn cpu_time_has_sub_second_resolution() {
        let before = stats().cpu_seconds;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let spent = stats().cpu_seconds - before;
        assert!(spent > 0.0 && spent < 1.0, "spent {spent}");
    }
}
