//! The closed loop, for every profile: the `cluster` harness plays the cluster (consumer replicas on one Redis, HAProxy
//! as the Service, Prometheus with the monitoring component's relabeling, the rendered development overlay's
//! ScaledObject evaluated as KEDA and the HPA do, the replicas on a modelled node of the table's size) while the
//! generator sends the profile, time-compressed. Each run must follow the trajectory the load-generator README's table
//! for that node promises, lose no request and no accepted task, come back to the minimum, and give every dashboard
//! panel data. Every profile but light runs on the 8-core node, where each run is also held to the simulator's range
//! over 20 seeds (`surge-sim`, which holds both tables' rows itself, light's included); light runs on a node packed by
//! a request below the core; burst also runs on development-memory, each pod's own backlog: the comparison that shows
//! what the shared backlog buys.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use serde_json::Value;
use surge_sim::arrivals;
use surge_sim::promises::{node_cores, promises, MEMORY, SHARED};
use surge_tune::verify::{self, compare, ClosedLoop};

/// The load-generator README's text.
fn readme() -> String {
    std::fs::read_to_string(repo().join(surge_sim::promises::README)).expect("the load-generator README")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root")
}

/// An overlay rendered by the real kustomize, into `dir`.
fn render(overlay: &str, dir: &Path) -> PathBuf {
    let output = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join("kubernetes-manifests/overlays").join(overlay))
        .output()
        .expect("kubectl is installed");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let path = dir.join(format!("{overlay}.yaml"));
    std::fs::write(&path, output.stdout).expect("write the render");
    path
}

/// The development overlay (the shared backlog), rendered once for every test.
fn rendered() -> &'static Path {
    static RENDERED: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    render_once(&RENDERED, "development")
}

/// development-memory (each pod's own backlog), rendered once for every test.
fn rendered_memory() -> &'static Path {
    static RENDERED: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    render_once(&RENDERED, "development-memory")
}

fn render_once(cell: &'static OnceLock<(tempfile::TempDir, PathBuf)>, overlay: &str) -> &'static Path {
    &cell
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = render(overlay, dir.path());
            (dir, path)
        })
        .1
}

fn run(profile: &str) -> Value {
    run_on(profile, SHARED, 1, &[])
}

/// Runs `profile` from `shards` generators (one, or an Indexed Job's pods) on the overlay the README's table under
/// `table` is for (with the harness's `faults` flags), asserts the table's row for it, and returns the harness's report.
fn run_on(profile: &str, table: &str, shards: u32, faults: &[&str]) -> Value {
    let manifests = if table == MEMORY { rendered_memory() } else { rendered() };
    let shards = format!("--shards={shards}");
    let flags: Vec<&str> = std::iter::once(shards.as_str()).chain(faults.iter().copied()).collect();
    let report = run_rendered(profile, table, manifests, &flags);
    // The development overlay on the 8-core node, no fault (shards send the same load): the simulator plays the same
    // and must agree.
    if faults.is_empty() && table == SHARED {
        let time_scale = promises(&readme(), table).into_iter().find(|p| p.profile == profile).expect("row").time_scale;
        let hold = Hold { p95: true, cost: false };
        agrees_with_the_simulator(profile, manifests, node_cores(table), time_scale, &report, hold);
    }
    report
}

/// The runs sharing the machine at once: one unless `CLOSED_LOOP_AT_ONCE` says more. Alone, a run has both cores and
/// the timing the table was measured with; every run is checked for a late sync whatever this says.
fn at_once() -> u32 {
    std::env::var("CLOSED_LOOP_AT_ONCE").ok().and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(1)
}

/// A place among the runs allowed at once, held for the run and given back when dropped.
struct Turn;

/// Runs in progress, and the condition a run waits on for a turn.
static TURNS: (Mutex<u32>, Condvar) = (Mutex::new(0), Condvar::new());

impl Turn {
    fn wait() -> Self {
        let (running, freed) = &TURNS;
        let mut running = running.lock().unwrap_or_else(PoisonError::into_inner);
        while *running >= at_once() {
            running = freed.wait(running).unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (running, freed) = &TURNS;
        *running.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        freed.notify_one();
    }
}

/// The latest a sync may begin after it was due, in the HPA's seconds: a fifteenth of its period. Later, the machine
/// (other runs, other tests) has moved the autoscaler's readings off their times and the run is not the table's.
const LATEST_SYNC_START_SECONDS: f64 = 1.0;

/// Whether a run waits for its turn among the runs allowed at once.
#[derive(Clone, Copy, PartialEq)]
enum Share {
    Turn,
    /// One replica's worth of processes (a packed node): it runs beside whichever run has the turn, held to the same
    /// lateness as every run, and so is the other.
    Beside,
}

/// The `cluster` harness's report of `profile` on `manifests` at `time_scale` on a node of `node_cores`, with these
/// flags besides, run in its turn (or beside); every sync began on time and none outlasted its period. A run whose
/// syncs fell behind says nothing of the autoscaling (the machine stalled the harness: one clean clone in thirteen):
/// it is run once more, and a second late run fails.
fn cluster(profile: &str, time_scale: f64, node_cores: f64, manifests: &Path, flags: &[&str], share: Share) -> Value {
    let run = || cluster_once(profile, time_scale, node_cores, manifests, flags, share);
    run().unwrap_or_else(|late| {
        println!("{profile}: {late}; the run is void, running it once more");
        run().unwrap_or_else(|late| panic!("{profile}, twice: {late}"))
    })
}

/// One run of `cluster`, or why its syncs cannot be trusted.
fn cluster_once(
    profile: &str,
    time_scale: f64,
    node_cores: f64,
    manifests: &Path,
    flags: &[&str],
    share: Share,
) -> Result<Value, String> {
    let out = tempfile::tempdir().expect("temp dir");
    let json = out.path().join("run.json");
    let run = ClosedLoop {
        cluster: PathBuf::from(env!("CARGO_BIN_EXE_cluster")),
        load: profile.to_owned(),
        time_scale,
        node_cores: Some(node_cores),
        seeds: AGREEMENT_SEEDS,
    };
    let turn = (share == Share::Turn).then(Turn::wait);
    let output = run.command(manifests, &json).args(flags).output().expect("run the cluster harness");
    drop(turn);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    let syncs = &report["outline"]["syncs"];
    let latest = syncs["latest_start_s"].as_f64().expect("the latest sync start");
    if latest <= LATEST_SYNC_START_SECONDS && syncs["overruns"] == serde_json::json!([]) {
        Ok(report)
    } else {
        Err(format!(
            "a sync began {latest} s after it was due (at most {LATEST_SYNC_START_SECONDS}), or overran: {syncs}"
        ))
    }
}

/// `run_on`, with the rendered `manifests` given.
fn run_rendered(profile: &str, table: &str, manifests: &Path, flags_given: &[&str]) -> Value {
    let promise = promises(&readme(), table)
        .into_iter()
        .find(|p| p.profile == profile)
        .expect("the README's table has the profile");
    let queue = if table == MEMORY { "memory" } else { "redis" };
    let cores = node_cores(table);
    let dashboards = repo().join("grafana/dashboards").display().to_string();
    let flags: Vec<&str> =
        ["--dashboards", dashboards.as_str()].into_iter().chain(flags_given.iter().copied()).collect();
    let report = cluster(profile, promise.time_scale, f64::from(cores), manifests, &flags, Share::Turn);
    let outline = &report["outline"];
    assert_eq!(outline["queue"], queue, "{outline}");
    // The node's room by request bounds the replicas that ever ran; the rest waited Pending.
    assert_eq!(outline["node_cores"], f64::from(cores), "{outline}");
    let room = outline["node_room_replicas"].as_u64().expect("the node's room");
    let most_ready = outline["peak_ready"].as_u64().expect("most ready");
    assert!(most_ready <= room, "{most_ready} ready on a node with room for {room}: {outline}");
    // The pods ran in real cgroups with the Deployment's limits (1 core, 512Mi), no capacity or budget flags: the
    // consumer's own defaults read them (capacity the quota, budget three quarters of the limit).
    let defaults = serde_json::json!({"from": "cgroup", "capacity_cores": 1.0, "budget_mib": 384});
    assert_eq!(outline["pod_defaults"], defaults, "{outline}");
    // Every run says which Prometheus (and Redis) it stood on beside the manifests' pins.
    let stand_ins = &outline["stand_ins"];
    let mut names = vec!["prometheus"];
    if queue == "redis" {
        names.push("redis");
    }
    for name in names {
        assert!(stand_ins[name]["ran"].is_string() && stand_ins[name]["deployed"].is_string(), "{name}: {stand_ins}");
    }
    let trajectory: Vec<String> = report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            format!(
                "{:.0}s:{}{}",
                r["t"].as_f64().unwrap_or(0.0),
                r["desired"],
                r["driving"].as_str().map_or(String::new(), |d| format!("({d})"))
            )
        })
        .collect();
    let trajectory = trajectory.join(" ");
    println!("{profile} at x{}: {trajectory}", promise.time_scale);
    println!("{profile}: {outline}");

    let sent = outline["sent"].as_u64().expect("sent");
    assert!(sent > 0, "{outline}");
    // Compared whole, so the counts by kind are on the `left:` line, which CI shows even where it cuts the message.
    let answered = serde_json::json!({"succeeded": outline["succeeded"], "failed": outline["failed"]});
    let every_one = serde_json::json!({"succeeded": sent, "failed": zeros(&outline["failed"])});
    assert_eq!(answered, every_one, "every request answered 2xx (503s retried): {outline}");
    let peak = outline["peak_replicas"].as_u64().expect("peak") as u32;
    // The trajectory is in each message: CI shows a failure's message even where it cuts what the tests printed.
    assert!((promise.peak_low..=promise.peak_high).contains(&peak), "peak {peak}, promised {promise:?}: {trajectory}");
    if promise.peak_high > 1 {
        let reached = report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["desired"].as_u64() >= Some(u64::from(promise.peak_low)));
        let at = reached.and_then(|r| r["t"].as_f64()).expect("the low end of the peak is reached");
        assert!(
            at <= promise.low_by,
            "{} replicas reached at {at:.0} s, promised by {} s: {trajectory}",
            promise.peak_low,
            promise.low_by
        );
        let driver = outline["peak_driven_by"].as_str().unwrap_or("none");
        assert!(
            promise.drivers.iter().any(|d| d == driver),
            "driven by {driver}, promised {:?}: {trajectory}",
            promise.drivers
        );
        // Not only the trigger the tie-break names: none outside the promise asks as much when the peak is reached.
        let rows = report["rows"].as_array().expect("rows");
        let peak_row = rows.iter().find(|r| r["desired"].as_u64() == Some(u64::from(peak))).expect("the peak row");
        let askers: Vec<&str> = peak_row["triggers"]
            .as_array()
            .expect("triggers")
            .iter()
            .filter(|t| t["asks"].as_u64() >= Some(u64::from(peak)))
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            askers.iter().all(|a| promise.drivers.iter().any(|d| d == a)),
            "at the peak {askers:?} asked for {peak}, promised only {:?}: {trajectory}",
            promise.drivers
        );
    } else {
        // A load the triggers should not scale for: no trigger asks for a second replica, at any sync.
        let rows = report["rows"].as_array().expect("rows");
        let moved: Vec<String> = rows
            .iter()
            .flat_map(|r| r["triggers"].as_array().into_iter().flatten().map(move |t| (r, t)))
            .filter(|(_, t)| t["asks"].as_u64().is_some_and(|a| a > 1))
            .map(|(r, t)| format!("{}@{:.0}s", t["name"], r["t"].as_f64().unwrap_or(0.0)))
            .collect();
        assert!(moved.is_empty(), "triggers asked for more than one replica: {moved:?}");
        assert!(outline["first_scale_up_at_s"].is_null(), "{outline}");
    }
    // Every Prometheus panel of every dashboard showed something during the run, and so did every selector on its
    // own (an `or vector(0)` answers even when its selector matches nothing): the harness publishes what
    // kube-state-metrics and KEDA would (`stand_in_selectors`; their names and labels are checked against the
    // exporters' sources in `harness/src/standins.rs`), and the generator its own metrics. Exact counts, so a query
    // that stops being checked fails here: 57 Prometheus queries over 52 distinct selectors (Loki's are not run).
    let dashboards = &report["dashboards"];
    println!("{profile}: dashboard queries with data {}", dashboards["checked"]);
    let counts = serde_json::json!([dashboards["checked"], dashboards["selectors_checked"]]);
    assert_eq!(counts, serde_json::json!([57, 52]), "queries and selectors checked: {dashboards}");
    assert_eq!(dashboards["empty"], serde_json::json!([]), "panels without data during the {profile} run");
    assert_eq!(dashboards["empty_selectors"], serde_json::json!([]), "selectors without series in the {profile} run");
    let ended = outline["load_ended_at_s"].as_f64().expect("the load ended");
    // At the maximum: how long the Deployment stays and when it leaves, where the table says it gets there.
    let maximum = outline["max_replicas"].as_u64().expect("the ScaledObject's maximum") as u32;
    if peak == maximum {
        let at = promise.at_maximum.as_ref().unwrap_or_else(|| panic!("{profile} reached the maximum {maximum}"));
        let held = outline["peak_held_s"].as_f64().unwrap_or_else(|| panic!("never left the maximum: {trajectory}"));
        let left = outline["left_peak_at_s"].as_f64().expect("left the maximum") - ended;
        let within = |(low, high): (f64, f64), value: f64| (low..=high).contains(&value);
        assert!(
            within(at.held, held) && within(at.leaves_after_load, left),
            "held the maximum {held:.0} s, left it {left:.0} s after the load; promised {at:?}: {trajectory}"
        );
    }
    let back = outline["back_at_min_at_s"].as_f64().expect("back at the minimum");
    // Back at the minimum means after having left it (light never leaves: its check is the stillness above).
    if let Some(up) = outline["first_scale_up_at_s"].as_f64() {
        assert!(back > up && back > ended, "back at {back:.0} s, up at {up:.0} s, load ended {ended:.0} s");
    }
    assert!(
        back - ended <= promise.back_at_min_by,
        "back at the minimum {:.0} s after the load: {trajectory}",
        back - ended
    );
    // How long async work took end to end, the latency the scaling exists to bound.
    match promise.sojourn_p95_by {
        Some(bound) => {
            let p95 = outline["sojourn_p95_s"].as_f64().unwrap_or_else(|| panic!("no async sojourn: {outline}"));
            assert!(p95 <= bound, "p95 sojourn {p95} s, promised at most {bound} s: {trajectory}");
            // The generator followed every accepted task to its record (GET /process/results): none failed or was
            // cancelled. With the memory queue a record lives in its pod, so a task that finished on a pod a
            // scale-down removed before the generator asked there stays unseen: there the pods' own logs (drained
            // pods' included) must show every accepted task completed. With the shared backlog every one is seen.
            // With the memory queue a scale-down cancels what the stopped pod still held (the ReplicaSet picks the
            // pod, not the queue): there every accepted task must be accounted for in the pods' logs, completed or
            // cancelled. On the shared backlog a drain hands work back: every one completed, none cancelled.
            let tasks = &outline["tasks"];
            let accepted = tasks["accepted"].as_u64().unwrap_or_else(|| panic!("no task followed: {outline}"));
            assert_eq!(accepted, sent, "every request of an async profile is one accepted task: {outline}");
            let cancelled = outline["tasks_cancelled"].as_u64().expect("cancelled in the pods' logs");
            let ended = serde_json::json!([tasks["completed"], tasks["failed"]]);
            if queue == "redis" {
                assert_eq!(cancelled, 0, "no accepted work lost to a scale-down's drain: {outline}");
                assert_eq!(ended, serde_json::json!([accepted, 0]), "every task completed, none failed: {outline}");
                assert_eq!(tasks["cancelled"], 0, "{outline}");
            } else {
                let logged = outline["tasks_completed_in_pod_logs"].as_u64().expect("completed in the pods' logs");
                assert_eq!(logged + cancelled, accepted, "the pods logged every accepted task's end: {outline}");
                assert_eq!(tasks["failed"], 0, "{outline}");
                println!("{profile} (memory queue): {cancelled} of {accepted} accepted tasks cancelled by scale-downs");
            }
        }
        None => {
            assert!(outline["sojourn_p95_s"].is_null(), "a sync profile has no async sojourn: {outline}");
            assert!(outline["tasks"].is_null(), "a sync profile has no task to follow: {outline}");
        }
    }
    report
}

/// Seeds the simulator plays beside each closed-loop run.
const AGREEMENT_SEEDS: u64 = 20;

/// The simulator on the same manifests, node and profile, by the rules of the Prometheus this run stood on, over
/// 20 seeds (what `surge tune --verify` compares): its range, widened by a replica, a minute and a fifth, holds this
/// run's peak, its return to the minimum and its p95 sojourn.
fn agrees_with_the_simulator(profile: &str, manifests: &Path, cores: u32, time_scale: f64, report: &Value, hold: Hold) {
    let yaml = std::fs::read_to_string(manifests).expect("the render");
    let arrivals = arrivals(surge_generator::profiles::find(profile).expect("a generator profile"));
    let run = ClosedLoop {
        cluster: PathBuf::from(env!("CARGO_BIN_EXE_cluster")),
        load: profile.to_owned(),
        time_scale,
        node_cores: Some(f64::from(cores)),
        seeds: AGREEMENT_SEEDS,
    };
    let verified = compare(profile, &yaml, &arrivals, &run, report).expect("the simulator plays the same");
    let verified = &verify::json(&[verified], &run)["candidates"][0];
    println!("{profile} on {cores} cores, the closed loop against the simulator's seeds: {verified}");
    holds(verified, hold);
}

/// What of a closed-loop run the simulator's range must hold besides its peak and its return to the minimum.
#[derive(Clone, Copy)]
struct Hold {
    /// The p95 sojourn (the histogram's, as each reads it).
    p95: bool,
    /// The ready replica-seconds.
    cost: bool,
}

/// One candidate as `surge tune --verify --json` gives it: the closed loop's figures inside the range of the
/// simulator's seeds, widened for the closed loop's own spread by a replica, a minute and a fifth.
fn holds(verified: &Value, hold: Hold) {
    let (closed, seeds) = (&verified["closed_loop"], verified["simulator"].as_array().expect("the seeds"));
    let span = |key: &str| {
        seeds
            .iter()
            .filter_map(|s| s[key].as_f64())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)))
    };
    let within = |key: &str, lo: f64, hi: f64| {
        let value = closed[key].as_f64().unwrap_or_else(|| panic!("the closed loop's {key}: {verified}"));
        assert!(
            (lo..=hi).contains(&value),
            "{key} {value} outside {lo:.1}..{hi:.1}, the simulator's widened: {verified}"
        );
    };
    let (peaks, backs) = (span("peak"), span("back_at_minimum_s"));
    within("peak", peaks.0 - 1.0, peaks.1 + 1.0);
    within("back_at_minimum_s", backs.0 - 60.0, backs.1 + 60.0);
    if hold.p95 && !closed["p95_sojourn_s"].is_null() {
        let p95s = span("p95_sojourn_s");
        within("p95_sojourn_s", p95s.0 * 0.8, p95s.1 * 1.2);
    }
    if hold.cost {
        let costs = span("ready_replica_seconds");
        within("ready_replica_seconds", costs.0 * 0.8, costs.1 * 1.2);
    }
}

/// `surge tune --verify=recommended` on heavy and the 8-core node: the recommended ScaledObject (the current's patch
/// merged in) played again in this closed loop, its figures and replica-seconds held to the simulator's seeds at the
/// same compression as the agreement test holds a run's. The current ScaledObject's heavy run is the agreement test's.
#[test]
fn tune_verify_plays_the_recommended_in_the_closed_loop() {
    let surge = Path::new(env!("CARGO_BIN_EXE_cluster")).with_file_name("surge");
    assert!(surge.exists(), "{}: build it first (cargo build -p surge-tune; make test does)", surge.display());
    let turn = Turn::wait();
    let output = Command::new(&surge)
        .args(["tune", "--manifests"])
        .arg(rendered())
        .args(["--profile", "heavy", "--node-cores", "8", "--seeds", "3", "--verify=recommended", "--json"])
        .arg("--cluster")
        .arg(env!("CARGO_BIN_EXE_cluster"))
        .output()
        .expect("surge runs");
    drop(turn);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    let verified = report["verify"]["candidates"].as_array().expect("verified candidates");
    println!("tune --verify: {}", report["verify"]);
    let names: Vec<&str> = verified.iter().filter_map(|v| v["candidate"].as_str()).collect();
    let recommended = report["recommended"].as_str().expect("a recommendation");
    assert_ne!(recommended, "current", "heavy's recommendation changes the ScaledObject: {report}");
    assert_eq!(names, [format!("{recommended} (recommended)")], "the recommended only");
    for v in verified {
        let latest = v["latest_sync_start_s"].as_f64().expect("the latest sync start");
        assert!(latest <= LATEST_SYNC_START_SECONDS, "a sync began {latest} s late: {v}");
        holds(v, Hold { p95: true, cost: true });
    }
}

/// A plain HPA on memory and CPU (the development overlay's ScaledObject with two Resource triggers: memory at 40% of
/// the 512 MiB request, CPU at 25% of the core; no fallback, which KEDA refuses with only cpu and memory triggers)
/// through the loop's metrics-server. memory_stress's tasks (250 MiB, 0.3 core, one a pod by the memory budget) take
/// both up, on the working sets of the replicas' cgroups and on the core-seconds their tasks used, and the load's end
/// brings them back; held to the simulator's range (peak, return, replica-seconds). No task waits here, so every
/// sojourn is the task's 30 s, which at x15 is the histogram's 2 s bucket edge: the loop's 2.03 s of wall time reads as
/// a 73 s p95, the simulator's exact 2 s as 30 s. The generator's own end-to-end times hold the p95 instead.
#[test]
fn an_hpa_on_memory_and_cpu_scales_on_the_replicas_usage() {
    let yaml = std::fs::read_to_string(rendered()).expect("the render");
    let documents = surge_keda::scaled_object::documents(&yaml).expect("YAML");
    let mut so = documents.into_iter().find(|d| d["kind"] == "ScaledObject").expect("the ScaledObject");
    so["spec"]["triggers"] = serde_json::json!([
        {"type": "memory", "name": "memory", "metricType": "Utilization", "metadata": {"value": "40"}},
        {"type": "cpu", "name": "cpu", "metricType": "Utilization", "metadata": {"value": "25"}}]);
    so["spec"].as_object_mut().expect("a spec").remove("fallback");
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("on-usage.yaml");
    std::fs::write(&manifests, verify::manifests_with(&yaml, &so).expect("replaced")).expect("write");
    let promise = promises(&readme(), SHARED).into_iter().find(|p| p.profile == "memory_stress").expect("its row");
    let cores = node_cores(SHARED);
    let report = cluster("memory_stress", promise.time_scale, f64::from(cores), &manifests, &[], Share::Turn);
    let outline = &report["outline"];
    let rows = report["rows"].as_array().expect("rows");
    let asks =
        |index: usize| -> Vec<u64> { rows.iter().filter_map(|r| r["triggers"][index]["asks"].as_u64()).collect() };
    println!(
        "memory_stress on a plain HPA on memory and CPU: {outline}\nmemory asks {:?}\ncpu asks {:?}",
        asks(0),
        asks(1)
    );
    assert!(outline["peak_replicas"].as_u64() >= Some(3), "{outline}");
    let ended = outline["load_ended_at_s"].as_f64().expect("the load's end");
    for (index, name) in ["memory", "cpu"].into_iter().enumerate() {
        let asked = asks(index);
        assert!(
            asked.len() + 2 >= rows.len(),
            "metrics-server reported the pods at every sync from the third: {asked:?}"
        );
        // While the load runs each trigger asks for 3 or more at most syncs (CPU read per wall second instead of the
        // autoscaler's, 15 times too low at x15, asked for 1).
        let mut during: Vec<u64> = rows
            .iter()
            .filter(|r| r["t"].as_f64() < Some(ended))
            .filter_map(|r| r["triggers"][index]["asks"].as_u64())
            .collect();
        during.sort_unstable();
        assert!(during.get(during.len() / 2) >= Some(&3), "{name} moved under the load: {asked:?}");
        assert!(asked.last() <= Some(&1), "{name} came back: {asked:?}");
    }
    let hold = Hold { p95: false, cost: true };
    agrees_with_the_simulator("memory_stress", &manifests, cores, promise.time_scale, &report, hold);
    let task = surge_generator::profiles::find("memory_stress").expect("the profile").duration_secs;
    let e2e_p95 = outline["tasks"]["e2e_ms"]["p95"].as_f64().expect("end-to-end times") / 1000.0 * promise.time_scale;
    assert!(e2e_p95 <= f64::from(task) * 1.2, "p95 end to end {e2e_p95:.1} s for {task} s tasks: some waited");
}

/// The same object with every count zero.
fn zeros(counts: &Value) -> Value {
    let kinds = counts.as_object().expect("failed by kind");
    Value::Object(kinds.keys().map(|k| (k.clone(), Value::from(0))).collect())
}

/// burst on the shared backlog: every replica pulls from one Redis stream, so no replica with room sits idle while work
/// waits elsewhere, and the backlog drains over every replica, so the Deployment is back at its minimum sooner.
#[test]
fn burst() {
    let report = run("burst");
    let outline = &report["outline"];
    let idle = outline["idle_while_waiting_percent"].as_f64().expect("work waited during burst");
    // Work waited only while Redis held undelivered tasks through the whole sweep of the pods' statuses (read before
    // and after it), so a replica is not counted idle against a task another took meanwhile: 2.0 and 0.0 (the
    // redis-streams run) on 2026-12-01; the old per-status reading gave 0-4.5, and 9.2 once on a loaded machine.
    // The memory queue: 42-55 (burst_on_each_pods_own_backlog).
    assert!(idle < 5.0, "{idle}% of replica-seconds while work waited were spent by replicas with room: {outline}");
    // Work no longer waits behind one pod's queue: exact, from every followed task (the histogram's 100-200 s bucket
    // at x10 read a p95 of 131 s as 192 in a CI run), within the row's bound.
    let e2e_p95_ms = outline["tasks"]["e2e_ms"]["p95"].as_f64().expect("followed tasks' end-to-end p95");
    let sojourn = e2e_p95_ms / 1000.0 * outline["time_scale"].as_f64().expect("time scale");
    let promise = promises(&readme(), SHARED).into_iter().find(|p| p.profile == "burst").expect("burst's row");
    let bound = promise.sojourn_p95_by.expect("burst's p95 bound");
    assert!(sojourn <= bound, "p95 sojourn {sojourn:.0} s, promised {bound} s: {outline}");
}

/// burst on development-memory, the comparison: a pod's backlog is what the Service sent it, so replicas added later
/// sit idle while the first ones' queues wait (the idle share the shared backlog removes must show here, or the
/// measure cannot tell the two apart), and the tail is as long as the longest queue.
#[test]
fn burst_on_each_pods_own_backlog() {
    let report = run_on("burst", MEMORY, 1, &[]);
    let outline = &report["outline"];
    let idle = outline["idle_while_waiting_percent"].as_f64().expect("work waited during burst");
    assert!(idle > 20.0, "only {idle}% of replica-seconds idle while work waited on the memory queue: {outline}");
}

/// burst with KEDA's own redis-streams scaler as the backlog trigger (components/queue-trigger over the development
/// overlay): the harness reads XLEN from the shared Redis as the scaler does (`surge_keda::redis_streams`), and the run
/// holds burst's row, since the stream's length is the number `max(consumer_queue_backlog)` exports, against the same
/// threshold.
#[test]
fn burst_with_the_redis_streams_trigger() {
    let dir = surge_harness::compose::compose(
        repo(),
        "closed-loop-redis-streams",
        None,
        &["overlays/development"],
        &["components/queue-trigger"],
    );
    let manifests = dir.join("rendered.yaml");
    std::fs::write(&manifests, surge_harness::compose::render(&dir)).expect("write the render");
    let report = run_rendered("burst", SHARED, &manifests, &[]);
    // The backlog trigger was read from Redis: values at every sync, and it asked for more than one replica.
    let rows = report["rows"].as_array().expect("rows");
    let backlog = |r: &Value| r["triggers"][0].clone();
    assert!(rows.iter().all(|r| backlog(r)["name"] == "backlog" && backlog(r)["value"].is_f64()), "{rows:?}");
    assert!(rows.iter().any(|r| backlog(r)["asks"].as_u64() > Some(1)), "the stream's length never asked for more");
}

#[test]
fn medium() {
    run("medium");
}

/// On the shared backlog: sustained's load falls mid-run, and a scale-down then cancels what a pod's own backlog held
/// (the memory queue, with the Service picking pods at random, cancelled 1 of 168); here drains hand work back.
///
/// And at its steady peak Prometheus goes blind: discovery loses the consumer's pods for 600 s (twice the scale-down
/// window), then Prometheus is stopped for 300 s. Every trigger must fail rather than read 0 (each query reads 0 only
/// while a consumer target is live), so KEDA's fallback holds the replicas; without that guard the triggers read 0
/// and the Deployment fell from 10 to 1 at peak load (x20: 8, 5, 4, 2, 1 between 1035 and 1185 s; the stopped
/// Prometheus' fallback then raised it to 2). Once Prometheus sees again, the run follows the README's row.
#[test]
fn sustained() {
    let (blind, stopped) = ((600.0, 1200.0), (1200.0, 1500.0));
    let faults =
        [format!("--lose-targets={}..{}", blind.0, blind.1), format!("--stop-prometheus={}..{}", stopped.0, stopped.1)];
    let report = run_on("sustained", SHARED, 1, &faults.each_ref().map(String::as_str));
    let rows = report["rows"].as_array().expect("rows");
    let at = |r: &Value| r["t"].as_f64().expect("t");
    let replicas = |r: &Value| r["current"].as_u64().expect("current");
    let during: Vec<&Value> = rows.iter().filter(|r| (blind.0..stopped.1).contains(&at(r))).collect();
    let before = replicas(during.first().expect("syncs while Prometheus was blind"));
    let lowest = during.iter().map(|r| r["desired"].as_u64().expect("desired")).min().expect("syncs");
    let trajectory: Vec<String> = during.iter().map(|r| format!("{:.0}s:{}", at(r), r["desired"])).collect();
    assert!(lowest >= before, "{before} replicas when Prometheus went blind, then {trajectory:?}");
    // Discovery tells the scrape loop at most every 5 s (x20: 100 s), so the blindness shows a few syncs late.
    let failing = |r: &Value| r["triggers"].as_array().expect("triggers").iter().all(|t| t["value"].is_null());
    let blind_syncs = during.iter().filter(|r| failing(r)).count();
    assert!(blind_syncs >= 40, "every trigger failed at {blind_syncs} of {} syncs: {trajectory:?}", during.len());
    // Every failing trigger asks for KEDA's fallback (currentReplicasIfHigher), never for nothing.
    for row in during.iter().filter(|r| failing(r)) {
        let asks: Vec<&Value> = row["triggers"].as_array().expect("triggers").iter().map(|t| &t["asks"]).collect();
        assert!(asks.iter().all(|a| a.as_u64() == Some(replicas(row))), "at {:.0} s: {asks:?}", at(row));
    }
    // Seen again: the triggers read values after the outage.
    assert!(rows.iter().any(|r| at(r) > stopped.1 && !failing(r)), "Prometheus never came back");
}

/// The shared backlog's Redis stopped for a minute of the autoscaler's time at heavy's peak: every replica's backlog
/// gauge turns NaN, so the backlog trigger's query fails (never a stale value, never a 0 through `or vector(0)`) and
/// KEDA's fallback asks for the replicas there are; the other triggers go on reading. Then Redis comes back from its
/// append-only file and the trigger reads again.
#[test]
#[ignore = "run alone: cargo test -p surge-harness --test closed_loop -- --ignored (beside two other runs in make test, \
            its Redis restart overran their syncs)"]
fn heavy_with_redis_stopped_for_a_minute_holds_its_replicas() {
    let promise = promises(&readme(), SHARED).into_iter().find(|p| p.profile == "heavy").expect("heavy's row");
    let stopped = (300.0, 360.0);
    let stop_redis = format!("--stop-redis={}..{}", stopped.0, stopped.1);
    let flags = [stop_redis.as_str(), "--stop-at-load-end"];
    let report = cluster("heavy", promise.time_scale, f64::from(node_cores(SHARED)), rendered(), &flags, Share::Turn);
    let rows = report["rows"].as_array().expect("rows");
    let at = |r: &Value| r["t"].as_f64().expect("t");
    let backlog = |r: &Value| {
        r["triggers"].as_array().expect("triggers").iter().find(|t| t["name"] == "backlog").cloned().expect("backlog")
    };
    let during: Vec<&Value> = rows.iter().filter(|r| (stopped.0..stopped.1).contains(&at(r))).collect();
    let trajectory: Vec<String> =
        during.iter().map(|r| format!("{:.0}s:{}:{}", at(r), r["desired"], backlog(r)["value"])).collect();
    println!("heavy with Redis stopped {stopped:?}: {trajectory:?}");
    let before = during.first().expect("syncs while Redis was stopped")["current"].as_u64().expect("current");
    assert!(during.iter().all(|r| r["desired"].as_u64() >= Some(before)), "{before} replicas, then {trajectory:?}");
    let failing: Vec<&&Value> = during.iter().filter(|r| backlog(r)["value"].is_null()).collect();
    assert!(
        failing.len() * 2 >= during.len(),
        "the backlog trigger failed at {} of {} syncs: {trajectory:?}",
        failing.len(),
        during.len()
    );
    for row in &failing {
        assert_eq!(backlog(row)["asks"], row["current"], "the fallback holds the replicas there are: {row}");
    }
    assert!(
        rows.iter().any(|r| at(r) > stopped.1 + 30.0 && backlog(r)["value"].is_number()),
        "the backlog never read again after Redis came back"
    );
}

#[test]
fn memory_stress() {
    run("memory_stress");
}

#[test]
fn cpu_stress() {
    run("cpu_stress");
}

/// heavy, as job-distributed.yaml sends it: a profile split over an Indexed Job's generator pods is the same load, so
/// it follows heavy's row on the 8-core node and the simulator's range, and the pods' summaries add up to every
/// request answered and task completed (one run for both: heavy on one generator was the same trajectory).
#[test]
fn heavy_as_the_distributed_job_sends_it() {
    let file = repo().join("kubernetes-manifests/components/load-generator/job-distributed.yaml");
    let job: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(file).expect("job-distributed.yaml")).expect("YAML");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let profile = args.iter().find_map(|a| a.strip_prefix("--test=")).expect("the Job's profile");
    assert_eq!(profile, "heavy", "the Job sends heavy, whose row this test holds");
    let env = container["env"].as_array().expect("env");
    let shards = env.iter().find(|e| e["name"] == "GENERATOR_SHARDS").expect("GENERATOR_SHARDS")["value"].clone();
    let shards: u32 = shards.as_str().and_then(|s| s.parse().ok()).expect("a number, as a string");
    assert_eq!(job["spec"]["parallelism"].as_u64(), Some(u64::from(shards)), "a pod per shard");
    let report = run_on(profile, SHARED, shards, &[]);
    assert_eq!(report["generator"]["shards"], shards, "every shard's summary added up");
}

#[test]
fn a_time_scale_that_changes_the_work_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_cluster"))
        .arg("--manifests")
        .arg(rendered())
        .args(["--profile", "medium", "--time-scale", "10"])
        .output()
        .expect("run the cluster harness");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("would change medium's 15 s tasks") && stderr.contains("1, 3, 5, 15"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing started: {}", String::from_utf8_lossy(&output.stdout));
}

/// What the development overlay's request prevents (a core requested for the core the capacity model counts on): the
/// same replica requesting 100m is placed on a node that cannot give it its core. On a node whose other pods use all
/// but a fifth of a core (`--node-cores 1.8 --node-others 1.6`) the scheduler has room for one such replica; light,
/// which stays at one replica with a core to itself, stretches its tasks there, the stretch or the CPU asked for
/// scales it out, and the new replicas stay Pending. None of its requests or tasks is lost. With one replica running,
/// it goes beside another run rather than waiting for a turn.
#[test]
fn light_scales_out_on_a_node_packed_by_a_request_below_the_core() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(rendered()).expect("the render");
    let requested = "          requests:\n            cpu: \"1\"\n            memory: 512Mi\n";
    assert_eq!(text.matches(requested).count(), 1, "the consumer's request in the render: {requested}");
    let manifests = dir.path().join("packed.yaml");
    std::fs::write(&manifests, text.replace(requested, &requested.replace("\"1\"", "100m"))).expect("write");
    let flags = ["--node-others", "1.6", "--stop-at-load-end"];
    let report = cluster("light", 5.0, 1.8, &manifests, &flags, Share::Beside);
    let outline = &report["outline"];
    println!("light on a packed node: {outline}");
    assert_eq!((outline["node_cores"].as_f64(), outline["node_room_replicas"].as_u64()), (Some(1.8), Some(1)));
    let peak = outline["peak_replicas"].as_u64().expect("peak");
    let driver = outline["peak_driven_by"].as_str().unwrap_or("none");
    assert!(peak > 1 && ["task-stretch-p95", "cpu-demand"].contains(&driver), "peak {peak} driven by {driver}");
    assert_eq!(outline["peak_ready"], 1, "the node had room for one: {outline}");
    assert!(outline["most_unscheduled"].as_u64() >= Some(1), "the rest Pending: {outline}");
    let tasks = &outline["tasks"];
    assert_eq!(outline["succeeded"], outline["sent"], "{outline}");
    assert_eq!(tasks["completed"], tasks["accepted"], "{outline}");
}
