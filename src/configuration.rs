//! Typed settings: every flag is also an environment variable, so the same binary runs from a shell or a Pod spec.

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;

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

    /// Seconds the listener keeps serving after SIGTERM, so endpoints controllers remove the pod first.
    #[arg(long, env = "DRAIN_DELAY_SECS", default_value_t = 5)]
    pub drain_delay_secs: u64,

    /// Seconds from SIGTERM to exit, whatever is still running.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 25)]
    pub shutdown_timeout_secs: u64,

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

    pub fn drain_delay(&self) -> Duration {
        Duration::from_secs(self.drain_delay_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

/// 75% of the memory this process may use: the cgroup limit when the container has one, else physical memory.
fn default_memory_budget_bytes() -> std::io::Result<u64> {
    let mut system = sysinfo::System::new().map_err(|e| std::io::Error::other(format!("reading memory size: {e}")))?;
    system.refresh_memory();
    let physical = system.total_memory();
    let limit = system
        .cgroup_limits()
        .map(|cgroup| cgroup.total_memory)
        .filter(|&limit| limit > 0 && limit < physical)
        .unwrap_or(physical);
    Ok(limit / 4 * 3)
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
    fn default_budget_is_three_quarters_of_available_memory() {
        let settings = Settings::parse_from(["consumer"]);
        let mut system = sysinfo::System::new().expect("sysinfo supports Linux");
        system.refresh_memory();
        let budget = settings.memory_budget_bytes().expect("memory size is readable");
        assert!(budget > 0);
        assert!(budget <= system.total_memory() / 4 * 3);
    }

    #[test]
    fn zero_task_cap_is_refused() {
        assert!(Settings::try_parse_from(["consumer", "--max-tasks", "0"]).is_err());
    }
}
