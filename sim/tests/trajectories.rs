//! The load-generator README's trajectory rows, in the simulator: every profile the generator sends (its own arrival
//! schedule) on the development overlay and the node each table is for, over ten seeds. The closed loop holds the
//! 8-core rows with real processes, each run also against the simulator's range; the 4-core rows are held here alone.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use surge_sim::promises::{node_cores, promises, Promise, README, SHARED, SHARED_ON_4};
use surge_sim::{arrivals_of, simulate, Arrival, Options, Outcome, Setup};

const SEEDS: u64 = 10;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root")
}

/// The development overlay rendered by the real kustomize, once per test binary.
fn development() -> &'static str {
    static RENDERED: OnceLock<String> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let output = Command::new("kubectl")
            .arg("kustomize")
            .arg(repo().join("kubernetes-manifests/overlays/development"))
            .output()
            .expect("kubectl is installed");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8")
    })
}

/// What a row promises that one run broke, if anything.
fn broken(promise: &Promise, outcome: &Outcome, setup: &Setup) -> Vec<String> {
    let so = &setup.scaled_object;
    let minimum = so.scaling.min;
    let mut broken = Vec::new();
    let peak = outcome.peak();
    if !(promise.peak_low..=promise.peak_high).contains(&peak) {
        broken.push(format!("peak {peak}"));
    }
    if promise.peak_high > 1 {
        match outcome.reached(promise.peak_low) {
            Some(at) if at <= promise.low_by => {}
            other => broken.push(format!("{} replicas at {other:?} s", promise.peak_low)),
        }
        let driver = outcome.driving_at_peak(minimum).map(|i| so.triggers[i].name.clone());
        if !driver.as_ref().is_some_and(|d| promise.drivers.contains(d)) {
            broken.push(format!("driven by {driver:?}"));
        }
    }
    match outcome.back_at_minimum(minimum) {
        Some(back) if back <= promise.back_at_min_by => {}
        other => broken.push(format!("back at the minimum {other:?} s after the load")),
    }
    if let Some(bound) = promise.sojourn_p95_by {
        match outcome.sojourn_p95(promise.time_scale) {
            Some(p95) if p95 <= bound => {}
            other => broken.push(format!("p95 sojourn {other:?} s")),
        }
    }
    if let (Some(at), true) = (&promise.at_maximum, peak == so.scaling.max) {
        let within = |(low, high): (f64, f64), value: f64| (low..=high).contains(&value);
        match outcome.peak_held() {
            Some((held, left)) if within(at.held, held) && within(at.leaves_after_load, left - outcome.load_end) => {}
            other => broken.push(format!("at the maximum {other:?}")),
        }
    }
    if outcome.refused > 0 || (outcome.lost > 0 && setup.shared_backlog) {
        broken.push(format!("{} refused, {} lost", outcome.refused, outcome.lost));
    }
    broken
}

/// Runs every row of the table under `heading` over the seeds, at `time_scale` (`None`: each row's own, the closed
/// loop's compression, whose Prometheus still ticks discovery in wall seconds); the rows that broke in some seed, with
/// what broke.
fn broken_rows(heading: &str, time_scale: Option<f64>) -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(repo().join(README)).expect("the load-generator README");
    let rows = promises(&readme, heading);
    assert!(!rows.is_empty(), "{heading}: no rows");
    let setup = Setup::from_manifests(development(), Some(f64::from(node_cores(heading)))).expect("setup");
    let mut failures = Vec::new();
    for promise in &rows {
        let arrivals = arrivals_of(&promise.profile).expect("a load the generator sends by name");
        let time_scale = time_scale.unwrap_or(promise.time_scale);
        let mut row_failures = Vec::new();
        for seed in 1..=SEEDS {
            let options = Options { seed, time_scale, ..Options::default() };
            let outcome = simulate(&setup, &arrivals, &options);
            let broken = broken(promise, &outcome, &setup);
            let trajectory: Vec<String> = outcome.rows.iter().map(|r| format!("{:.0}:{}", r.t, r.desired)).collect();
            println!(
                "{} x{time_scale} seed {seed}: peak {} reached {:?} back {:?} p95 {:?} ready-replica-s {:.0} {}",
                promise.profile,
                outcome.peak(),
                outcome.reached(promise.peak_low),
                outcome.back_at_minimum(setup.scaled_object.scaling.min),
                outcome.sojourn_p95(promise.time_scale),
                outcome.ready_replica_seconds,
                if broken.is_empty() { String::new() } else { format!("BROKEN {broken:?} {}", trajectory.join(" ")) }
            );
            if !broken.is_empty() {
                row_failures.push(format!("seed {seed}: {broken:?}"));
            }
        }
        if !row_failures.is_empty() {
            failures.push((promise.profile.clone(), row_failures));
        }
    }
    failures
}

/// Every row of the 8-core table at real time, as a cluster plays it. The closed loop holds each row at its
/// compression, where Prometheus's discovery ticker (5 wall seconds) spans the compression times as much (125 s at x25) and the
/// closed loop plays one phase of it (its Prometheus starts a fixed time before the load: five cpu_stress runs at x25
/// gave one trajectory, 7 replicas at 135 s, where the simulator's ten phases reach 6 at 150-300 s); so a compressed
/// run is held to the simulator's range over 20 phases at its compression instead (`harness/tests/closed_loop.rs`).
#[test]
fn the_8_core_table_holds_in_the_simulator_at_real_time() {
    assert_eq!(broken_rows(SHARED, Some(1.0)), vec![]);
}

/// Every row of the 4-core table, as the closed loop measured it and at real time (a cluster's discovery).
#[test]
fn the_4_core_table_holds_in_the_simulator() {
    assert_eq!(broken_rows(SHARED_ON_4, None), vec![]);
    assert_eq!(broken_rows(SHARED_ON_4, Some(1.0)), vec![]);
}

/// On 4 cores heavy's later replicas wait Pending: a cluster autoscaler would buy a node for them.
#[test]
fn heavy_leaves_replicas_pending_on_4_cores() {
    let setup = Setup::from_manifests(development(), Some(4.0)).expect("setup");
    let outcome = simulate(&setup, &named("heavy"), &Options::default());
    assert!(outcome.rows.iter().any(|r| r.pending >= 1) && outcome.pending_replica_seconds > 0.0, "{outcome:?}");
    let most_ready = outcome.rows.iter().map(|r| r.ready).max();
    assert_eq!(most_ready, Some(2), "1.62 cores of other pods leave room for two 1-core replicas");
}

/// The same seed gives the same run; another seed another (the Service's pick, the replicas' pulls and scrapes).
#[test]
fn a_seed_decides_everything_random() {
    let setup = Setup::from_manifests(development(), Some(8.0)).expect("setup");
    let arrivals = named("heavy");
    let run = |seed| simulate(&setup, &arrivals, &Options { seed, ..Options::default() });
    assert_eq!(run(7), run(7));
    let started = std::time::Instant::now();
    let sustained = named("sustained");
    let outcome = simulate(&setup, &sustained, &Options::default());
    println!("sustained (30 min) simulated in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    assert!(!outcome.rows.is_empty());
    assert_ne!(run(1).sojourns, run(2).sojourns);
}

fn named(name: &str) -> Vec<Arrival> {
    surge_sim::arrivals_of(name).expect("a load the generator sends")
}

/// The development overlay's ScaledObject with one Resource trigger instead of its own: a plain HPA on `resource` at
/// `percent` of the pod's request (the HPA's own behavior, no fallback), on the 8-core node.
fn plain_hpa(resource: surge_keda::resource::Resource, percent: i32) -> Setup {
    use surge_keda::hpa::MetricType;
    use surge_keda::resource::Target;
    use surge_keda::scaled_object::{Source, Trigger};
    let setup = Setup::from_manifests(development(), Some(8.0)).expect("setup");
    let mut so = setup.scaled_object.clone();
    so.triggers = vec![Trigger {
        name: format!("{resource:?}").to_lowercase(),
        kind: MetricType::AverageValue,
        source: Source::Resource { resource, target: Target::Utilization(percent) },
        threshold: f64::from(percent),
        activation_threshold: 0.0,
    }];
    so.scaling.behavior = None;
    so.fallback = None;
    setup.with_scaled_object(so).expect("a Resource trigger needs no query")
}

/// A plain HPA on CPU at 70% of the request, as metrics-server reports usage: heavy's load takes it up and its end
/// brings it back, scaled on CPU alone.
#[test]
fn an_hpa_on_cpu_follows_the_load_up_and_back() {
    let setup = plain_hpa(surge_keda::resource::Resource::Cpu, 70);
    let outcome = simulate(&setup, &named("heavy"), &Options::default());
    let trajectory: Vec<String> = outcome.rows.iter().map(|r| format!("{:.0}:{}", r.t, r.desired)).collect();
    assert!(outcome.peak() >= 6, "{}", trajectory.join(" "));
    assert!(outcome.back_at_minimum(1).is_some_and(|b| b > 0.0), "{}", trajectory.join(" "));
    assert!(outcome.rows.iter().all(|r| r.values[0].is_some()), "metrics-server read every sync once a pod ran");
}

/// A plain HPA on memory at 40% of the 512 MiB request (205 MiB of working set a pod, as metrics-server reads it: an
/// idle consumer's 4 MiB and the memory its running tasks hold): memory_stress's 250 MiB tasks take it up and their
/// end brings it back; cpu_stress's 50 MiB tasks (a core each, so one or two at a time a pod) leave it at one. At 70%
/// it would never move: the consumer's budget (three quarters of the limit, 384 MiB) lets one 250 MiB task run a pod.
#[test]
fn an_hpa_on_memory_moves_under_memory_work_and_stays_under_cpu_work() {
    let setup = plain_hpa(surge_keda::resource::Resource::Memory, 40);
    for seed in 1..=3 {
        let options = Options { seed, ..Options::default() };
        let memory = simulate(&setup, &named("memory_stress"), &options);
        let trajectory: Vec<String> = memory.rows.iter().map(|r| format!("{:.0}:{}", r.t, r.desired)).collect();
        assert!(memory.peak() >= 3, "memory_stress, seed {seed}: {}", trajectory.join(" "));
        assert!(memory.back_at_minimum(1).is_some_and(|b| b > 0.0), "seed {seed}: {}", trajectory.join(" "));
        assert!(memory.rows.iter().all(|r| r.values[0].is_some()), "metrics-server read every sync once a pod ran");
        let cpu = simulate(&setup, &named("cpu_stress"), &options);
        let trajectory: Vec<String> = cpu.rows.iter().map(|r| format!("{:.0}:{}", r.t, r.desired)).collect();
        assert_eq!(cpu.peak(), 1, "cpu_stress, seed {seed}: {}", trajectory.join(" "));
        assert!(cpu.rows.iter().all(|r| r.values[0].is_some()), "read, and asked for one replica, at every sync");
    }
}
