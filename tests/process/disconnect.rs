//! A client that leaves in the middle of a sync `POST /process`, running or queued, by a clean close or a reset: its
//! task is cancelled within a second, counted `outcome="cancelled"`, logged and counted as nginx's 499, and its slot
//! and memory are returned (actix alone would let it run out).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::consumer::ConsumerProcess;

const MIB: f64 = 1024.0 * 1024.0;

async fn get(address: &str, path: &str) -> String {
    reqwest::get(format!("{address}{path}")).await.expect(path).text().await.expect("body")
}

async fn status(address: &str) -> Value {
    serde_json::from_str(&get(address, "/process/status").await).expect("status JSON")
}

/// The value of one un-labelled or fully-labelled series in the exposition.
async fn metric(address: &str, series: &str) -> f64 {
    let text = get(address, "/metrics").await;
    let line = text.lines().find(|l| l.split_once(' ').is_some_and(|(name, _)| name == series));
    line.and_then(|l| l.rsplit_once(' ')).and_then(|(_, v)| v.parse().ok()).unwrap_or_else(|| panic!("{series}"))
}

/// Leaves by a reset (RST), as a client killed or timed out by a proxy does, instead of a clean close (FIN).
fn reset(socket: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a `linger` of the size passed.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_LINGER 0");
    drop(socket);
}

/// Sends a sync task on a socket of its own and leaves the socket open: the caller closes it to leave.
fn send_sync(address: &str, query: &str) -> TcpStream {
    let mut socket = TcpStream::connect(address.trim_start_matches("http://")).expect("connect");
    let request = format!("POST /process?{query} HTTP/1.1\r\nHost: consumer\r\nContent-Length: 0\r\n\r\n");
    socket.write_all(request.as_bytes()).expect("send");
    socket
}

async fn wait_for(address: &str, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let snapshot = status(address).await;
        if done(&snapshot) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what} within {limit:?}: {snapshot}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_sync_task_running_or_queued() {
    let consumer = ConsumerProcess::start(&["--max-tasks", "1", "--memory-budget-mb", "512"]);
    let address = consumer.address.clone();
    let live_before = metric(&address, "allocator_live_bytes").await;

    let running = send_sync(&address, "cpu_intensity=1&memory_size=100&duration=60");
    wait_for(&address, "the first task running", Duration::from_secs(10), |s| s["tasks_running"]["cpu"] == 1).await;
    let queued = send_sync(&address, "cpu_intensity=1&memory_size=1&duration=60");
    wait_for(&address, "the second task queued", Duration::from_secs(10), |s| s["queue"]["length"] == 1).await;
    // The block is touched page by page as the task starts; wait until it is all live.
    let start = Instant::now();
    let live_held = loop {
        let live = metric(&address, "allocator_live_bytes").await;
        if live - live_before >= 90.0 * MIB {
            break live;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the running task holds its 100 MiB: {live}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    reset(queued);
    let took =
        wait_for(&address, "the queued task let go", Duration::from_secs(1), |s| s["queue"]["length"] == 0).await;
    println!("queued sync task let go {took:?} after its client reset the connection");
    assert_eq!(status(&address).await["tasks_running"]["cpu"], 1, "the running task is not the one that left");

    drop(running);
    let took = wait_for(&address, "the running task cancelled", Duration::from_secs(1), |s| {
        s["tasks_running"]["cpu"] == 0 && s["tasks_running"]["memory"] == 0
    })
    .await;
    println!("running sync task cancelled {took:?} after its client closed the connection");
    let snapshot = status(&address).await;
    assert_eq!(snapshot["totals"]["cancelled"], 2, "{snapshot}");
    assert_eq!(snapshot["totals"]["completed"], 0, "{snapshot}");
    let cancelled = r#"consumer_tasks_total{kind="cpu",mode="sync",outcome="cancelled"}"#;
    assert_eq!(metric(&address, cancelled).await, 2.0);
    assert_eq!(metric(&address, r#"consumer_tasks_in_flight{kind="cpu"}"#).await, 0.0);
    // Both as nginx counts a request whose client left: 499, in the access log and the status-class metric.
    let left: Vec<Value> = consumer.events("request").into_iter().filter(|e| e["status"] == 499).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|e| e["route"] == "/process" && e["method"] == "POST"), "{left:?}");
    assert_eq!(metric(&address, r#"http_requests_total{handler="/process",method="POST",status="4xx"}"#).await, 2.0);
    let live_after = metric(&address, "allocator_live_bytes").await;
    // Against the baseline, not the sample that crossed 90 MiB (taken while the task was still touching its memory).
    assert!(live_after - live_before < 10.0 * MIB, "the 100 MiB came back: {live_before} {live_held} {live_after}");

    // The slot is free again: the next task starts at once.
    let next = reqwest::Client::new()
        .post(format!("{address}/process?cpu_intensity=1&memory_size=1&duration=1"))
        .send()
        .await
        .expect("next task");
    let report: Value = next.json().await.expect("report");
    assert_eq!(report["status"], "completed", "{report}");
    assert!(report["queue_wait_seconds"].as_f64().expect("wait") < 0.5, "{report}");
}
