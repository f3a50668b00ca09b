//! The consumer's defaults inside a real cgroup, as a pod's container sees its own (`surge_harness::cgroup`: a v1 CPU
//! quota and memory limit, mounted where the consumer looks): no capacity or budget flag, and the capacity is the
//! quota, the budget three quarters of the limit. The unit tests read the same rules from fake cgroup files.

use std::path::Path;
use std::process::Command;

use surge_harness::cgroup::PodCgroup;

use crate::consumer::ConsumerProcess;

#[tokio::test]
async fn capacity_and_budget_default_to_the_cgroups_limits() {
    // Half a core and 256 MiB: neither the machine's cores nor its memory, so only the cgroup can give these.
    let cgroup = PodCgroup::create(&format!("surge-test-defaults-{}", std::process::id()), 0.5, 256 << 20)
        .expect("this machine mounts the v1 cpu and memory controllers read-write and runs tests as root");
    let wrapped: Command = cgroup.command(Path::new(env!("CARGO_BIN_EXE_consumer")));
    let consumer = ConsumerProcess::start_command(wrapped, &[], &[]);
    let status: serde_json::Value =
        reqwest::get(format!("{}/process/status", consumer.address)).await.expect("status").json().await.expect("JSON");
    assert_eq!(status["cpu"]["capacity_cores"], 0.5, "{status}");
    assert_eq!(status["budget_bytes"], 192 << 20, "three quarters of 256 MiB: {status}");
    drop(consumer);
}
