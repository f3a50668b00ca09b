//! A pod's resource limits as real cgroups, where this machine allows it: a cgroup v1 `cpu` quota and `memory` limit
//! per pod, bind-mounted in the pod's own mount namespace where the consumer looks (`/sys/fs/cgroup/cpu`,
//! `/sys/fs/cgroup/memory`), as a container sees its own. The consumer then starts with no capacity or budget flags
//! and takes its defaults from them, as it does in a pod.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = "/sys/fs/cgroup";
/// The CFS period the quota is written against (the kernel's default).
const PERIOD_US: u64 = 100_000;

/// One pod's cgroups; removed when dropped (after the pod's process has exited).
pub struct PodCgroup {
    cpu: PathBuf,
    memory: PathBuf,
}

impl PodCgroup {
    /// Creates `name` under the v1 cpu and memory controllers with `cores` as the CFS quota and `memory` bytes as the
    /// limit. An error when this machine does not allow it (no writable v1 controllers, not root, no `unshare`).
    pub fn create(name: &str, cores: f64, memory: u64) -> Result<Self, String> {
        let cgroup =
            Self { cpu: Path::new(ROOT).join("cpu").join(name), memory: Path::new(ROOT).join("memory").join(name) };
        for dir in [&cgroup.cpu, &cgroup.memory] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let write = |dir: &Path, file: &str, value: String| {
            std::fs::write(dir.join(file), value).map_err(|e| format!("{}/{file}: {e}", dir.display()))
        };
        write(&cgroup.cpu, "cpu.cfs_period_us", PERIOD_US.to_string())?;
        write(&cgroup.cpu, "cpu.cfs_quota_us", ((cores * PERIOD_US as f64).round() as u64).to_string())?;
        write(&cgroup.memory, "memory.limit_in_bytes", memory.to_string())?;
        Ok(cgroup)
    }

    /// Its memory cgroup's directory (`memory.usage_in_bytes`, `memory.stat`).
    pub fn memory_dir(&self) -> &Path {
        &self.memory
    }

    /// `program` started inside the cgroups, seeing them as the root of its own `/sys/fs/cgroup/{cpu,memory}`: the
    /// shell joins them, then `unshare` gives it a cgroup and mount namespace where they are bind-mounted, then it
    /// becomes `program` (one process throughout: signals reach the consumer).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            r#"echo $$ > "$1/cgroup.procs" && echo $$ > "$2/cgroup.procs" && exec unshare --cgroup --mount -- sh -c 'mount --bind "$1" /sys/fs/cgroup/cpu && mount --bind "$2" /sys/fs/cgroup/memory && shift 2 && exec "$@"' sh "$@""#,
            "sh",
        ]);
        command.arg(&self.cpu).arg(&self.memory).arg(program);
        command
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for dir in [&self.cpu, &self.memory] {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Whether pods can run in cgroups of their own here: a probe cgroup is created and a shell started in it the way a
/// pod is, reading its limits back.
pub fn available() -> bool {
    let name = format!("surge-harness-probe-{}", std::process::id());
    let Ok(cgroup) = PodCgroup::create(&name, 0.5, 256 << 20) else { return false };
    let mut probe = cgroup.command(Path::new("cat"));
    probe.args(["/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    let seen =
        probe.output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let lines: Vec<String> = seen.iter().flat_map(|s| s.lines().map(str::to_owned)).collect();
    lines == ["50000", &(256u64 << 20).to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process started in a pod's cgroup reads the
    /// pod's limits where the consumer looks, and the cgroups are gone once dropped.
    #[test]
    fn a_pod_sees_its_own_limits_where_the_consumer_looks() {
        assert!(available(), "this machine mounts the v1 cpu and memory controllers read-write and runs tests as root");
        let name = format!("surge-harness-test-{}", std::process::id());
        let cgroup = PodCgroup::create(&name, 1.0, 512 << 20).expect("created");
        let output = cgroup
            .command(Path::new("sh"))
            .args(["-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes"])
            .output()
            .expect("runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), format!("100000\n{}\n", 512u64 << 20));
        let dirs = [cgroup.cpu.clone(), cgroup.memory.clone()];
        drop(cgroup);
        assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?} removed");
    }
}
