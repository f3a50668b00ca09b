//! Typed settings: every flag is also an environment variable, so the same binary runs from a shell or a Pod spec.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;

use crate::telemetry::{AccessLog, LogFormat};
use crate::work::capacity::Limits;
use crate::work::cpu::CpuWork;
use crate::work::tasks::RegistryConfig;

const MIB: u64 = 1024 * 1024;

/// Command-line and environment settings of the consumer.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "consumer",
    version,
    args_override_self = true,
    about = "Surge consumer: configurable CPU and memory work with autoscaling signals"
)]
pub struct Settings {
    /// TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Memory that /process work may hold at once, in MiB [default: 75% of the cgroup limit, else of physical memory].
    #[arg(long = "memory-budget-mb", env = "MEMORY_BUDGET_MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_budget_mb: Option<u64>,

    /// Most /process tasks (sync and async together) running at once.
    #[arg(long, env = "MAX_TASKS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_tasks: u32,

    /// CPU capacity for /process work, in cores [default: the cgroup CPU quota when set, else the cores available].
    #[arg(long, env = "CPU_CAPACITY", value_parser = parse_cores)]
    pub cpu_capacity: Option<f64>,

    /// Running tasks may ask for up to this multiple of the CPU capacity (each then runs slower); past it, work queues.
    #[arg(long, env = "CPU_OVERCOMMIT", default_value_t = 2.0, value_parser = parse_overcommit)]
    pub cpu_overcommit: f64,

    /// `burn` really uses the CPU; `simulate` keeps the same schedule and accounting but waits instead (capacity
    /// experiments and closed-loop tests only: CPU-based autoscaling needs `burn`).
    #[arg(long, env = "CPU_WORK", value_enum, default_value_t = CpuWork::Burn)]
    pub cpu_work: CpuWork,

    /// With `simulate` only: a file holding the cores this pod's node gives it now (a node model writes it, such as
    /// the closed-loop harness's `--node-cores`); simulated tasks share the lesser of that and the capacity. Read every
    /// 100 ms. Burning work needs none: the kernel shares the node's cores itself.
    #[arg(long, env = "NODE_SHARE_FILE")]
    pub node_share_file: Option<std::path::PathBuf>,

    /// Tasks that may wait for capacity; past it, 503 with Retry-After. 100 holds the largest burst a profile sends
    /// to one pod (40) twice over, while the forecast wait of the last place stays within minutes, not hours.
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub queue_capacity: u32,

    /// Where async tasks wait: `memory` (this pod's own backlog; nothing else to run) or a `redis://` URL (one Redis
    /// stream every replica pulls from, so work outlives the pod that accepted it).
    #[arg(long = "queue", env = "QUEUE_URL", default_value = "memory", value_parser = parse_queue)]
    pub queue: QueueUrl,

    /// PEM certificates of the authority that signed a `rediss://` server's certificate, trusted instead of the
    /// system's roots (a private CA, a managed Redis's own).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Prefix of the shared backlog's Redis keys (`<prefix>:tasks`, `<prefix>:dead`, `<prefix>:task:<id>`).
    #[arg(long, env = "QUEUE_KEY", default_value = "surge")]
    pub queue_key: String,

    /// Seconds `GET /process/{task_id}` can find an async task after it ended (the shared backlog keeps a record as long
    /// as its task is in the stream; the memory queue counts from acceptance, and keeps at most 100,000).
    #[arg(long, env = "RESULT_RETENTION_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub result_retention_secs: u64,

    /// Deliveries before a task goes to the dead-letter stream (each crash of the pod running it is one).
    #[arg(long, env = "MAX_DELIVERIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_deliveries: u32,

    /// Seconds of lease on a task taken from the shared backlog. Its holder renews it every fifth of this, however
    /// long the task runs or stretches; a task renewed by nobody for this long (its process killed, paused or cut off
    /// from Redis) is claimed by any replica, a restarted container of the same pod included.
    #[arg(long, env = "LEASE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_secs: u64,

    /// Seconds the listener keeps serving after SIGTERM, so endpoints controllers remove the pod first.
    #[arg(long, env = "DRAIN_DELAY_SECS", default_value_t = 5)]
    pub drain_delay_secs: u64,

    /// Seconds from SIGTERM to exit, whatever is still running.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 25)]
    pub shutdown_timeout_secs: u64,

    /// Which requests get an access-log line: `errors` (4xx and 5xx, at most 10 lines a second), `all` (also every
    /// success but probes and scrapes), or `off`. Task outcomes, rejections and drain are logged whatever this says.
    #[arg(long, env = "ACCESS_LOG", value_enum, default_value_t = AccessLog::Errors)]
    pub access_log: AccessLog,

    /// Log line format [default: text on a terminal, JSON otherwise].
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// HTTP worker threads [default: one per core].
    #[arg(long, env = "WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
}

impl Settings {
    /// The memory budget in bytes: the flag when given, else 75% of the cgroup limit or of physical memory.
    pub fn memory_budget_bytes(&self) -> std::io::Result<u64> {
        match self.memory_budget_mb {
            Some(mb) => Ok(mb.saturating_mul(MIB)),
            None => default_memory_budget_bytes(),
        }
    }

    /// The CPU capacity in cores: the flag when given, else the cgroup quota, else the cores this process may use.
    pub fn cpu_capacity_cores(&self) -> f64 {
        self.cpu_capacity.unwrap_or_else(|| {
            cgroup_cpu_quota(Path::new(CGROUP_ROOT))
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1.0, |cores| cores.get() as f64))
        })
    }

    /// The task registry's limits, queue and CPU mode.
    pub fn registry_config(&self) -> std::io::Result<RegistryConfig> {
        if self.node_share_file.is_some() && self.cpu_work != CpuWork::Simulate {
            return Err(std::io::Error::other(
                "NODE_SHARE_FILE needs CPU_WORK=simulate: burning work is shared by the kernel",
            ));
        }
        Ok(RegistryConfig {
            limits: Limits {
                capacity_cores: self.cpu_capacity_cores(),
                overcommit: self.cpu_overcommit,
                max_tasks: self.max_tasks,
                budget_bytes: self.memory_budget_bytes()?,
            },
            queue_capacity: self.queue_capacity as usize,
            cpu_work: self.cpu_work,
            record_retention: Duration::from_secs(self.result_retention_secs),
        })
    }

    pub fn drain_delay(&self) -> Duration {
        Duration::from_secs(self.drain_delay_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

/// Where async tasks wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueUrl {
    Memory,
    Redis(String),
}

fn parse_queue(raw: &str) -> Result<QueueUrl, String> {
    let raw = raw.trim();
    if raw == "memory" {
        return Ok(QueueUrl::Memory);
    }
    if raw.starts_with("redis://") || raw.starts_with("rediss://") {
        return redis::Client::open(raw).map(|_| QueueUrl::Redis(raw.to_owned())).map_err(|e| e.to_string());
    }
    Err(format!("expected `memory`, a redis:// or a rediss:// (TLS) URL, got {raw:?}"))
}

/// Where the container's cgroup is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The CPU quota in cores: cgroup v2 `cpu.max` (`quota period`), else v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`;
/// `None` when unlimited or unreadable.
fn cgroup_cpu_quota(root: &Path) -> Option<f64> {
    let ratio = |quota: &str, period: &str| -> Option<f64> {
        let (quota, period) = (quota.trim().parse::<f64>().ok()?, period.trim().parse::<f64>().ok()?);
        (quota > 0.0 && period > 0.0).then(|| quota / period)
    };
    if let Ok(max) = std::fs::read_to_string(root.join("cpu.max")) {
        let (quota, period) = max.trim().split_once(' ')?;
        return ratio(quota, period);
    }
    let quota = std::fs::read_to_string(root.join("cpu/cpu.cfs_quota_us")).ok()?;
    let period = std::fs::read_to_string(root.join("cpu/cpu.cfs_period_us")).ok()?;
    ratio(&quota, &period)
}

fn parse_cores(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(cores) if (0.01..=1024.0).contains(&cores) => Ok(cores),
        _ => Err(format!("expected cores from 0.01 to 1024, got {raw:?}")),
    }
}

fn parse_overcommit(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(ratio) if (1.0..=100.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("expected a ratio from 1 to 100, got {raw:?}")),
    }
}

/// 75% of the memory this process may use: the cgroup limit when the container has one, else physical memory.
fn default_memory_budget_bytes() -> std::io::Result<u64> {
    let mut system = sysinfo::System::new().map_err(|e| std::io::Error::other(format!("reading memory size: {e}")))?;
    system.refresh_memory();
    Ok(memory_budget(cgroup_memory_limit(Path::new(CGROUP_ROOT)), system.total_memory()))
}

/// Three quarters of the cgroup limit when it is below physical memory, else of physical memory.
fn memory_budget(cgroup_limit: Option<u64>, physical: u64) -> u64 {
    cgroup_limit.filter(|&limit| limit > 0 && limit < physical).unwrap_or(physical) / 4 * 3
}

/// The memory limit in bytes: cgroup v2 `memory.max`, else v1 `memory/memory.limit_in_bytes`; `None` when
/// unlimited (`max`, or v1's page-rounded i64::MAX) or unreadable.
fn cgroup_memory_limit(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(root.join("memory.max"))
        .or_else(|_| std::fs::read_to_string(root.join("memory/memory.limit_in_bytes")))
        .ok()?;
    text.trim().parse::<u64>().ok().filter(|&limit| limit < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults() {
        let settings =
            Settings::parse_from(["consumer", "--port", "9000", "--memory-budget-mb", "100", "--max-tasks", "3"]);
        assert_eq!(settings.port, 9000);
        assert_eq!(settings.memory_budget_bytes().expect("explicit budget"), 100 * MIB);
        assert_eq!(settings.max_tasks, 3);
    }

    #[test]
    fn the_budget_is_three_quarters_of_the_cgroup_limit_else_of_physical_memory() {
        const GIB: u64 = 1 << 30;
        // (files under the cgroup root, physical memory, expected budget)
        type Files = &'static [(&'static str, &'static str)];
        let cases: &[(Files, u64, u64)] = &[
            (&[("memory.max", "536870912\n")], 16 * GIB, 384 * MIB),
            (&[("memory.max", "max\n")], 16 * GIB, 12 * GIB),
            (&[("memory/memory.limit_in_bytes", "1073741824\n")], 16 * GIB, 768 * MIB),
            (&[("memory/memory.limit_in_bytes", "9223372036854771712\n")], 16 * GIB, 12 * GIB),
            // A limit above the machine's memory is no limit at all.
            (&[("memory.max", "34359738368\n")], 16 * GIB, 12 * GIB),
            (&[], 8 * GIB, 6 * GIB),
        ];
        for (files, physical, expected) in cases {
            let root = tempfile::tempdir().expect("temp dir");
            for (name, content) in *files {
                let path = root.path().join(name);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(path, content).expect("write");
            }
            assert_eq!(memory_budget(cgroup_memory_limit(root.path()), *physical), *expected, "{files:?}");
        }
    }

    #[test]
    fn cpu_capacity_comes_from_the_flag_else_the_machine() {
        let settings = Settings::parse_from(["consumer", "--cpu-capacity", "1.5"]);
        assert_eq!(settings.cpu_capacity_cores(), 1.5);
        assert!(Settings::parse_from(["consumer"]).cpu_capacity_cores() > 0.0);
        assert!(Settings::try_parse_from(["consumer", "--cpu-capacity", "0"]).is_err());
        assert!(Settings::try_parse_from(["consumer", "--cpu-overcommit", "0.5"]).is_err());
    }

    #[test]
    fn cgroup_quota_is_read_from_v2_then_v1() {
        // (files under the root, expected cores)
        type Files = &'static [(&'static str, &'static str)];
        let cases: &[(Files, Option<f64>)] = &[
            (&[("cpu.max", "150000 100000\n")], Some(1.5)),
            (&[("cpu.max", "max 100000\n")], None),
            (&[("cpu/cpu.cfs_quota_us", "50000\n"), ("cpu/cpu.cfs_period_us", "100000\n")], Some(0.5)),
            (&[("cpu/cpu.cfs_quota_us", "-1\n"), ("cpu/cpu.cfs_period_us", "100000\n")], None),
            (&[], None),
        ];
        for (files, expected) in cases {
            let root = tempfile::tempdir().expect("temp dir");
            for (name, content) in *files {
                let path = root.path().join(name);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(path, content).expect("write");
            }
            assert_eq!(cgroup_cpu_quota(root.path()), *expected, "{files:?}");
        }
    }

    #[test]
    fn zero_task_cap_is_refused() {
        assert!(Settings::try_parse_from(["consumer", "--max-tasks", "0"]).is_err());
    }
}
