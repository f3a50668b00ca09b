//! `make dev`, `make load-*`, `make e2e`, `make undeploy` and `make deploy-production` (scripts/dev.sh) run through
//! `make` against stateful fakes of `kubectl`, `kind` and `docker` (tests/deploy/fakes/fake.py): what was applied
//! exists and anything else is NotFound, KEDA's and metrics-server's release URLs create exactly the objects those
//! releases create (tests/deploy/fixtures, rendered from their sources at the pinned tags), every kubectl call must
//! name its context, and `port-forward` serves a Prometheus or Grafana API until it is killed. Each run ends with the
//! exit code a user should get and no process left behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::manifests;

/// One machine's fakes and their shared state: a kind cluster made by `make dev` lives across runs.
struct Machine {
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    calls: Vec<String>,
}

impl Run {
    fn transcript(&self, target: &str) -> String {
        format!("$ make {target}\n{}{}(exit {})\n", self.stdout, self.stderr, self.code)
    }

    fn kubectl(&self) -> Vec<&String> {
        self.calls.iter().filter(|c| c.starts_with("kubectl ")).collect()
    }

    fn called(&self, needle: &str) -> bool {
        self.calls.iter().any(|c| c.contains(needle))
    }
}

fn real_kubectl() -> String {
    let out = Command::new("sh").args(["-c", "command -v kubectl"]).output().expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty() && !path.contains("fake"), "the real kubectl is on PATH (kustomize renders with it)");
    path
}

/// The interpreter `python3` runs, resolved once: the fakes name it directly, since through a version manager's shim
/// (pyenv's, here) each of a `make e2e`'s hundreds of fake calls spent about 0.15 s in the shim's own scripts.
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("python3");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(out.status.success() && Path::new(&path).is_file(), "python3's interpreter: {path:?}");
        path
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn is_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = std::fs::read_to_string(manifests::repo().join("tests/deploy/fakes/fake.py")).expect("fake.py");
        let (shebang, body) = source.split_once('\n').expect("fake.py's lines");
        assert_eq!(shebang, "#!/usr/bin/env python3", "fake.py's interpreter line");
        let fake = dir.path().join("fake.py");
        std::fs::write(&fake, format!("#!{}\n{body}", python())).expect("write the fake");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        for tool in ["kubectl", "kind", "docker", "minikube", "clock"] {
            std::os::unix::fs::symlink(&fake, dir.path().join(tool)).expect("link a fake");
        }
        Machine { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A PATH with the fakes first and every other program the machine has, but not `tool` (a laptop without it).
    fn path_without(&self, tool: &str) -> String {
        let bin = self.path(&format!("without-{tool}"));
        std::fs::create_dir_all(&bin).expect("a bin directory");
        let fakes = self.dir.path().to_path_buf();
        for dir in std::iter::once(fakes).chain(std::env::split_paths(&std::env::var_os("PATH").expect("PATH"))) {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                if name != tool && !bin.join(&name).exists() {
                    let _ = std::os::unix::fs::symlink(entry.path(), bin.join(&name));
                }
            }
        }
        bin.display().to_string()
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("state.json")).expect("state")).expect("json")
    }

    /// Writes the state back (a test's own setup: an event from an earlier hour).
    fn put_state(&self, state: &Value) {
        std::fs::write(self.path("state.json"), state.to_string()).expect("write state");
    }

    fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state()["objects"].get(format!("{kind}/{namespace}/{name}")).cloned()
    }

    /// The fake kubectl called directly (a test's own setup or probe), with `context` known as a cluster's: its exit
    /// code and stderr.
    fn kubectl(&self, context: &str, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(self.path("kubectl"))
            .args(args)
            .env("FAKE_STATE", self.path("state.json"))
            .env("FAKE_FIXTURES", manifests::repo().join("tests/deploy/fixtures"))
            .env("FAKE_REAL_KUBECTL", real_kubectl())
            .env("FAKE_EXTRA_CONTEXTS", context)
            .current_dir(manifests::repo())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("fake kubectl");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `make <target>` as a user types it, the fakes first on PATH.
    fn make(&self, target: &str, env: &[(&str, &str)]) -> Run {
        let calls = self.path("calls");
        std::fs::write(&calls, "").expect("calls file");
        let path = format!("{}:{}", self.dir.path().display(), std::env::var("PATH").expect("PATH"));
        let output = Command::new("make")
            .args(["--no-print-directory", target])
            .current_dir(manifests::repo())
            .env("PATH", path)
            .env("CALLS", &calls)
            .env("FAKE_STATE", self.path("state.json"))
            .env("FAKE_FIXTURES", manifests::repo().join("tests/deploy/fixtures"))
            .env("FAKE_REAL_KUBECTL", real_kubectl())
            .env("FAKE_DASHBOARDS", manifests::repo().join("grafana/dashboards"))
            .env("FAKE_DOCKER_STORE", "containerd")
            .env("E2E_POLL_SECONDS", "0")
            .env("KQ_RETRY_SECONDS", "0")
            .env("POLL_SECONDS", "0")
            .env("E2E_PROM_PORT", free_port().to_string())
            .env("E2E_GRAFANA_PORT", free_port().to_string())
            .env_remove("SURGE_CONTEXT")
            .env_remove("SURGE_ALLOW_CONTEXT")
            .env_remove("SURGE_IMAGE")
            .env_remove("E2E_SCALE")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run make");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            calls: std::fs::read_to_string(&calls).expect("calls").lines().map(str::to_owned).collect(),
        };
        self.assert_nothing_left_running(&run, target);
        let missing: Vec<&String> =
            run.kubectl().into_iter().filter(|c| !c.starts_with("kubectl --context ")).collect();
        assert!(missing.is_empty(), "make {target}: kubectl calls without --context: {missing:?}");
        assert!(
            !run.stderr.contains("is not modelled"),
            "make {target} called what the fakes do not know:\n{}",
            run.stderr
        );
        run
    }

    /// Every port-forward the run started has ended with it (killed here if not, so a failure leaks nothing).
    fn assert_nothing_left_running(&self, run: &Run, target: &str) {
        let pids = std::fs::read_to_string(self.path("state.json.pids")).unwrap_or_default();
        let alive: Vec<i32> = pids
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .filter(|&pid| {
                // The script kills its children before it exits; give the kernel a moment to reap them.
                !(0..20).any(|_| {
                    let alive = is_alive(pid);
                    if alive {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    !alive
                })
            })
            .collect();
        for pid in &alive {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = std::fs::remove_file(self.path("state.json.pids"));
        assert!(alive.is_empty(), "make {target} left port-forwards running: {alive:?}\n{}", run.transcript(target));
    }
}

fn consumer_rollouts(machine: &Machine) -> Vec<String> {
    machine.state()["rollouts"]
        .as_array()
        .expect("rollouts")
        .iter()
        .filter(|r| r["deployment"] == "consumer")
        .map(|r| r["images"][0].as_str().expect("image").to_owned())
        .collect()
}

/// Ready replicas per poll of make e2e's loop (desired, ready), and the poll after which the Job has succeeded.
fn trajectory(points: &[(u32, u32)], job_done_after: usize) -> String {
    serde_json::json!({ "trajectory": points, "job_done_after": job_done_after }).to_string()
}

const HEAVY: &[(u32, u32)] = &[(1, 1), (4, 2), (8, 7), (10, 9), (10, 10), (6, 6), (1, 1)];

/// The walk a new user takes: make dev twice (the second after a code change), a load Job, make e2e, make undeploy.
#[test]
fn a_first_real_run_dev_twice_load_e2e_undeploy() {
    let machine = Machine::new();
    let mut transcript = String::new();

    let dev = machine.make("dev", &[("FAKE_BUILD_SALT", "a")]);
    transcript += &dev.transcript("dev");
    assert_eq!(dev.code, 0, "{}", dev.transcript("dev"));
    // KEDA's release as it really is: the names waited on are the release's own.
    assert!(dev.called("rollout status deployment/keda-metrics-apiserver"), "{:?}", dev.calls);
    assert!(dev.called("wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io"));
    for (kind, ns, name) in [
        ("Deployment", "keda", "keda-operator"),
        ("APIService", "-", "v1beta1.external.metrics.k8s.io"),
        ("Deployment", "kube-system", "metrics-server"),
        ("ScaledObject", "surge", "consumer"),
        ("HorizontalPodAutoscaler", "surge", "keda-hpa-consumer"),
    ] {
        assert!(machine.object(kind, ns, name).is_some(), "{kind} {ns}/{name} after make dev");
    }
    // The Jobs stay out of make dev (a re-run must not suspend a running load).
    assert!(machine.object("Job", "surge", "load-heavy").is_none());
    // One platform in the archive, loaded through kind's image-archive (Docker's containerd store, the fake's default).
    assert!(dev.called("docker image save --platform linux/amd64 -o"), "{:?}", dev.calls);
    assert!(dev.called("kind load image-archive") && !dev.called("kind load docker-image"));
    // The ScaledObject after Prometheus is ready, so KEDA's first polls leave no failure events.
    let prometheus_ready =
        dev.calls.iter().position(|c| c.contains("rollout status deployment/prometheus")).expect("wait");
    let scaled_object = dev
        .calls
        .iter()
        .rposition(|c| c.contains("apply -f - -l app.kubernetes.io/component=autoscaling"))
        .expect("apply");
    assert!(prometheus_ready < scaled_object, "{:?}", dev.calls);
    let events =
        machine.state()["objects"].as_object().expect("objects").keys().filter(|k| k.starts_with("Event/")).count();
    assert_eq!(events, 0, "FailedGetExternalMetric events from KEDA's start-up");
    // kind's system pods and the overlay's others request 1.2 of the 4 cores: room for two 1-core replicas.
    assert!(dev.stdout.contains("the nodes can allocate 4 cores, their other pods request 1"), "{}", dev.stdout);
    assert!(dev.stdout.contains("replica\n             1000m: 2 replicas run at once"), "{}", dev.stdout);
    assert!(dev.stdout.contains("table for a 4-core node is this one's"), "{}", dev.stdout);
    let first = consumer_rollouts(&machine);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("surge-consumer:0.1.0-"), "a content tag: {first:?}");

    let again = machine.make("dev", &[("FAKE_BUILD_SALT", "a")]);
    transcript += &again.transcript("dev");
    assert_eq!(again.code, 0, "{}", again.transcript("dev"));
    assert!(again.stdout.contains(&format!("KEDA {} already installed", keda_version())), "{}", again.stdout);
    assert_eq!(consumer_rollouts(&machine), first, "the same code rolls nothing");

    let changed = machine.make("dev", &[("FAKE_BUILD_SALT", "b")]);
    transcript += &changed.transcript("dev");
    assert_eq!(changed.code, 0, "{}", changed.transcript("dev"));
    let rollouts = consumer_rollouts(&machine);
    assert_eq!(rollouts.len(), 2, "a code change rolls the consumer out: {rollouts:?}");
    assert_ne!(rollouts[0], rollouts[1]);

    let load = machine.make("load-heavy", &[]);
    transcript += &load.transcript("load-heavy");
    assert_eq!(load.code, 0, "{}", load.transcript("load-heavy"));
    assert!(load.called("logs -f job/load-heavy -c generator"), "{:?}", load.calls);

    let e2e = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4))]);
    transcript += &e2e.transcript("e2e");
    assert_eq!(e2e.code, 0, "{}", e2e.transcript("e2e"));
    assert!(e2e.stdout.contains("on 4 allocatable cores (the 4-core table)"), "{}", e2e.stdout);
    assert!(e2e.stdout.contains("e2e passed: peak 10 replicas"), "{}", e2e.stdout);
    let panels = prometheus_panel_queries();
    assert!(
        e2e.stdout.contains(&format!("dashboards: {panels} of {panels} Prometheus panel queries")),
        "every panel query of the project's dashboards, through the fake Grafana: {}",
        e2e.stdout
    );

    let undeploy = machine.make("undeploy", &[]);
    transcript += &undeploy.transcript("undeploy");
    assert_eq!(undeploy.code, 0, "{}", undeploy.transcript("undeploy"));
    assert!(machine.state()["clusters"].as_object().expect("clusters").is_empty(), "the kind cluster is gone");
    assert!(!undeploy.called("kubectl "), "on kind, the cluster is deleted without waiting on namespaces");
    println!("{transcript}");
}

/// The Prometheus panel queries of the project's dashboards, counted as make e2e reads them through Grafana.
fn prometheus_panel_queries() -> usize {
    let dir = manifests::repo().join("grafana/dashboards");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("dashboards") {
        let path = entry.expect("entry").path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            if panel["datasource"]["uid"] == "prometheus" {
                let targets = panel["targets"].as_array().into_iter().flatten();
                count += targets.filter(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())).count();
            }
        }
    }
    count
}

fn after_dev() -> Machine {
    let machine = Machine::new();
    let dev = machine.make("dev", &[]);
    assert_eq!(dev.code, 0, "{}", dev.transcript("dev"));
    machine
}

#[test]
fn make_e2e_fails_for_its_reasons_and_leaves_no_port_forward_behind() {
    let machine = after_dev();
    // Prometheus refuses the consumer's panel queries (bad PromQL answers 400): no data, never data.
    let rejected = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4)), ("FAKE_PROMQL_REJECT", "consumer_")]);
    assert_eq!(rejected.code, 2, "make's exit for a failed recipe: {}", rejected.transcript("e2e"));
    assert!(rejected.stderr.contains("the query failed"), "{}", rejected.stderr);
    assert!(rejected.stderr.contains("e2e FAILED: 1 check(s) failed"), "{}", rejected.stderr);

    let flat = machine.make("e2e", &[("FAKE_E2E", &trajectory(&[(1, 1)], 2))]);
    assert_eq!(flat.code, 2, "{}", flat.transcript("e2e"));
    assert!(flat.stderr.contains("never scaled above 1"), "{}", flat.stderr);

    let job_failed = machine.make(
        "e2e",
        &[(
            "FAKE_E2E",
            &serde_json::json!({"trajectory": HEAVY,
        "job_done_after": 2, "job_fails": true})
            .to_string(),
        )],
    );
    assert_eq!(job_failed.code, 2, "{}", job_failed.transcript("e2e"));
    assert!(job_failed.stderr.contains("Job e2e-heavy failed"), "{}", job_failed.stderr);

    // The Job it ran: its own name, the shortened scale, kept after it finishes.
    let short = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4)), ("E2E_SCALE", "0.3")]);
    assert_eq!(short.code, 0, "{}", short.transcript("e2e"));
    let job = machine.object("Job", "surge", "e2e-heavy").expect("the e2e Job");
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 3600);
    let generator = job["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "generator")
        .expect("generator");
    let args: Vec<&str> = generator["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--test=heavy") && args.last() == Some(&"--scale=0.3"), "{args:?}");
}

/// The table's "back at the minimum" counts from the last request, and so does make e2e (issue 35 item 6: it counted from
/// the Job's end, which follows its tasks for minutes more, so a return later than the promise passed). A poll is a
/// minute on the fakes' clock; heavy on the 4-core node: 10 minutes of load, back within 22 minutes of its end (+3).
#[test]
fn make_e2e_times_the_return_to_the_minimum_from_the_last_request() {
    let machine = after_dev();
    let clock = [("E2E_CLOCK", "clock"), ("FAKE_SECONDS_PER_POLL", "60")];
    // Up to 10 by the second minute, then held: back at the minimum after `polls` polls, the Job done after `done`.
    let run = |polls: usize, done: usize| {
        let mut points = vec![(2, 1), (10, 2)];
        points.extend(std::iter::repeat_n((10, 2), polls.saturating_sub(2)));
        points.push((1, 1));
        let mut env = clock.to_vec();
        let scenario = trajectory(&points, done);
        env.push(("FAKE_E2E", &scenario));
        machine.make("e2e", &env)
    };
    // Back 1,680 s after the last request (38 polls, the load's end at 600 s): over 1,320 + 180, though only 780 s
    // after the Job's end (done at 1,500 s).
    let late = run(38, 25);
    assert_eq!(late.code, 2, "{}", late.transcript("e2e"));
    assert!(late.stderr.contains("s after the last request (promised: 1 within 1320 s of it)"), "{}", late.stderr);
    // Back 1,200 s after the last request, the Job done later still: kept.
    let kept = run(30, 33);
    assert_eq!(kept.code, 0, "{}", kept.transcript("e2e"));
}

#[test]
fn make_e2e_rides_out_an_apiserver_that_times_out_now_and_then() {
    let machine = after_dev();
    // Every fourth read fails once: each is retried, and the run ends as it would on a healthy apiserver.
    let flaky = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4)), ("FAKE_FLAKY_EVERY", "4")]);
    assert_eq!(flaky.code, 0, "{}", flaky.transcript("e2e"));
    assert!(flaky.stdout.contains("e2e passed"), "{}", flaky.stdout);
    // One that never answers: e2e says which read failed, with kubectl's own words, never a silent exit.
    let down = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4)), ("FAKE_FLAKY_EVERY", "1")]);
    assert_eq!(down.code, 2, "{}", down.transcript("e2e"));
    assert!(down.stderr.contains("TLS handshake timeout"), "{}", down.stderr);
}

#[test]
fn make_e2e_counts_only_this_runs_metric_failures_and_holds_the_peak_on_a_full_node() {
    let machine = after_dev();
    let event = |minutes_from_now: i64| {
        let at = chrono::Utc::now() + chrono::Duration::minutes(minutes_from_now);
        serde_json::json!({"kind": "Event", "reason": "FailedGetExternalMetric",
            "lastTimestamp": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "metadata": {"name": format!("keda-hpa-consumer.{minutes_from_now}"), "namespace": "surge"}})
    };
    let mut state = machine.state();
    state["objects"]["Event/surge/old"] = event(-50);
    machine.put_state(&state);
    let old = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4))]);
    assert_eq!(old.code, 0, "an event from KEDA's start-up is not this run's: {}", old.transcript("e2e"));

    let mut state = machine.state();
    state["objects"]["Event/surge/new"] = event(5);
    machine.put_state(&state);
    let new = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4))]);
    assert_eq!(new.code, 2, "{}", new.transcript("e2e"));
    assert!(new.stderr.contains("1 FailedGetExternalMetric events during the run"), "{}", new.stderr);

    // On a node with the table's cores the peak is promised, and a run above it fails.
    let over: Vec<(u32, u32)> = vec![(1, 1), (8, 8), (12, 12), (1, 1)];
    let mut state = machine.state();
    state["objects"]["Node/-/surge-control-plane"]["status"]["allocatable"]["cpu"] = "16000m".into();
    state["objects"].as_object_mut().expect("objects").remove("Event/surge/new");
    machine.put_state(&state);
    let sixteen = machine.make("e2e", &[("FAKE_E2E", &trajectory(&over, 2))]);
    assert_eq!(sixteen.code, 2, "{}", sixteen.transcript("e2e"));
    assert!(sixteen.stdout.contains("on 16 allocatable cores"), "{}", sixteen.stdout);
    assert!(sixteen.stdout.contains("(the 8-core table)"), "{}", sixteen.stdout);
    assert!(sixteen.stderr.contains("peaked at 12 replicas, above the promised 10"), "{}", sixteen.stderr);
    let within = machine.make("e2e", &[("FAKE_E2E", &trajectory(HEAVY, 4))]);
    assert_eq!(within.code, 0, "{}", within.transcript("e2e"));
}

#[test]
fn make_load_distributed_waits_for_any_ready_pod_and_follows_every_pods_log() {
    let machine = after_dev();
    // Its pods start one after another: following every pod's log must outlast a sibling still starting.
    let load = machine.make("load-distributed", &[("FAKE_JOB_PODS_STAGGERED", "1")]);
    assert_eq!(load.code, 0, "{}", load.transcript("load-distributed"));
    let kubectl = load.kubectl();
    let delete = kubectl.iter().position(|c| c.contains("delete job load-distributed")).expect("delete");
    assert!(kubectl[delete].contains("--cascade=foreground") && kubectl[delete].contains("--wait=true"));
    let logs = kubectl.iter().position(|c| c.contains("logs -f -l batch.kubernetes.io/job-name=load-distributed"));
    let logs = logs.unwrap_or_else(|| panic!("every pod's log: {kubectl:?}"));
    assert!(kubectl[logs].contains("--prefix") && kubectl[logs].contains("--max-log-requests=4"), "{}", kubectl[logs]);
    assert!(kubectl[logs].contains("--ignore-errors"), "{}", kubectl[logs]);
    assert!(delete < logs);
    // Waited on the Job's own status, never on a pod label an old pod could satisfy.
    assert!(kubectl.iter().any(|c| c.contains("get job load-distributed -o jsonpath={.status.ready}")));
    assert!(!kubectl.iter().any(|c| c.contains("wait") && c.contains("-l ")), "{kubectl:?}");
}

/// Every tool `make dev` runs is checked before it changes anything (issue 35: without jq it deployed everything, then
/// failed reading the pods' CPU requests), each missing one named with how to install it.
#[test]
fn make_dev_checks_every_tool_before_it_changes_anything() {
    let nothing_changed = |machine: &Machine, run: &Run| {
        // No state at all when no fake changed anything.
        let state: Option<Value> =
            std::fs::read_to_string(machine.path("state.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        assert!(state.is_none_or(|s| s["clusters"].as_object().is_none_or(|c| c.is_empty())), "a cluster was made");
        assert!(
            !run.called("kind create") && !run.called(" apply ") && !run.called("docker build -f"),
            "{:?}",
            run.calls
        );
    };
    let machine = Machine::new();
    let no_jq = machine.make("dev", &[("PATH", &machine.path_without("jq"))]);
    assert_eq!(no_jq.code, 2, "{}", no_jq.transcript("dev"));
    assert!(no_jq.stderr.contains("jq (apt-get install jq, brew install jq)"), "{}", no_jq.stderr);
    assert!(no_jq.stderr.contains("changed nothing"), "{}", no_jq.stderr);
    nothing_changed(&machine, &no_jq);

    let no_kind_no_buildx = machine.make("dev", &[("PATH", &machine.path_without("kind")), ("FAKE_NO_BUILDX", "1")]);
    assert_eq!(no_kind_no_buildx.code, 2, "{}", no_kind_no_buildx.transcript("dev"));
    for named in ["kind (https://kind.sigs.k8s.io", "docker buildx, BuildKit's plugin"] {
        assert!(no_kind_no_buildx.stderr.contains(named), "{named}: {}", no_kind_no_buildx.stderr);
    }
    nothing_changed(&machine, &no_kind_no_buildx);

    // kubectl two minors from the cluster: stopped once the cluster answers, before anything is applied to it.
    let skewed = machine.make("dev", &[("FAKE_KUBECTL_MINOR", "32"), ("FAKE_SERVER_MINOR", "35")]);
    assert_eq!(skewed.code, 2, "{}", skewed.transcript("dev"));
    assert!(skewed.stderr.contains("kubectl is 1.32 and the cluster 1.35"), "{}", skewed.stderr);
    assert!(!skewed.called(" apply ") && !skewed.called("docker build -f"), "{:?}", skewed.calls);
    let adjacent = machine.make("dev", &[("FAKE_KUBECTL_MINOR", "34"), ("FAKE_SERVER_MINOR", "35")]);
    assert_eq!(adjacent.code, 0, "one minor apart is supported: {}", adjacent.transcript("dev"));
}

/// A kubectl warning on stderr (a deprecation, a skew) on a read that succeeded never lands in the value read (issue
/// 35: `kq` captured 2>&1 and parsed the warning as a number or as JSON).
#[test]
fn kubectl_warnings_on_a_successful_read_never_land_in_the_value() {
    let machine = Machine::new();
    let warning = "Warning: autoscaling/v2beta2 HorizontalPodAutoscaler is deprecated in v1.23+";
    let dev = machine.make("dev", &[("FAKE_KUBECTL_WARNING", warning)]);
    assert_eq!(dev.code, 0, "{}", dev.transcript("dev"));
    assert!(dev.stdout.contains("the nodes can allocate 4 cores, their other pods request 1"), "{}", dev.stdout);
    assert!(dev.stdout.contains(": 2 replicas run at once"), "{}", dev.stdout);
    assert!(dev.stderr.contains(warning), "the warning still reaches the terminal: {}", dev.stderr);
}

/// macOS's /bin/bash is 3.2: a shell older than bash 4 (or not bash at all) stops at once, naming the bash to install.
#[test]
fn a_shell_older_than_bash_4_stops_at_once_naming_the_bash_to_install() {
    let machine = Machine::new();
    // `#!/usr/bin/env bash` finds this first: a POSIX shell with no BASH_VERSINFO, as bash 3.2 has no bash 4 in it.
    let old_bash = machine.path("bash");
    std::fs::write(&old_bash, "#!/bin/sh\nexec /bin/sh \"$@\"\n").expect("write the old bash");
    std::fs::set_permissions(&old_bash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    for target in ["dev", "e2e", "undeploy"] {
        let run = machine.make(target, &[]);
        assert_eq!(run.code, 2, "{}", run.transcript(target));
        assert!(
            run.stderr.contains("needs bash 4 or newer") && run.stderr.contains("brew install bash"),
            "{}",
            run.stderr
        );
        assert!(run.calls.is_empty(), "{target} ran {:?} first", run.calls);
    }
}

/// On a cluster it does not own, `make undeploy` removes only what `make dev` installed there (issue 35: it deleted a
/// KEDA another team had installed) and says what it left.
/// `make dev` again while a load has filled the node (issue 35 item 1): the consumer requests a whole core and the
/// 4-core node has room for two; with both running, a surge pod would wait Pending and maxUnavailable 0 would let no
/// old pod go. The new image rolls out one pod at a time instead; with room to spare it keeps the surge.
#[test]
fn make_dev_again_on_a_node_the_load_filled_rolls_the_new_image_out() {
    let machine = after_dev();
    let mut state = machine.state();
    state["objects"]["Deployment/surge/consumer"]["spec"]["replicas"] = 2.into();
    machine.put_state(&state);
    let again = machine.make("dev", &[("FAKE_BUILD_SALT", "a change")]);
    assert_eq!(again.code, 0, "{}", again.transcript("dev"));
    assert!(again.stdout.contains("rolling out one pod at a time (maxUnavailable 1)"), "{}", again.stdout);
    assert!(again.stdout.contains("goes back to the shared backlog"), "{}", again.stdout);
    let consumer = machine.object("Deployment", "surge", "consumer").expect("consumer");
    assert_eq!(consumer["spec"]["replicas"], 2, "the autoscaler's count stays");
    assert_eq!(consumer_rollouts(&machine).len(), 2, "the new image rolled out: {:?}", consumer_rollouts(&machine));

    // With room for a surge pod, the manifest's strategy stands.
    let mut state = machine.state();
    state["objects"]["Deployment/surge/consumer"]["spec"]["replicas"] = 1.into();
    machine.put_state(&state);
    let roomy = machine.make("dev", &[("FAKE_BUILD_SALT", "another change")]);
    assert_eq!(roomy.code, 0, "{}", roomy.transcript("dev"));
    assert!(!roomy.stdout.contains("one pod at a time"), "{}", roomy.stdout);
    let consumer = machine.object("Deployment", "surge", "consumer").expect("consumer");
    assert_eq!(consumer["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0, "{consumer}");
}

#[test]
fn make_undeploy_elsewhere_removes_only_what_make_dev_installed_and_says_what_it_left() {
    let machine = Machine::new();
    let minikube = [("SURGE_CONTEXT", "minikube"), ("SURGE_ALLOW_CONTEXT", "yes"), ("FAKE_EXTRA_CONTEXTS", "minikube")];
    let keda = &keda_release_url();
    let (code, stderr) = machine.kubectl("minikube", &["--context", "minikube", "apply", "--server-side", "-f", keda]);
    assert_eq!(code, Some(0), "KEDA there before make dev: {stderr}");
    let dev = machine.make("dev", &minikube);
    assert_eq!(dev.code, 0, "{}", dev.transcript("dev"));
    assert!(dev.stdout.contains(&format!("KEDA {} already installed", keda_version())), "{}", dev.stdout);
    assert!(machine.object("ConfigMap", "kube-system", "surge-installed-metrics-server").is_some());
    assert!(machine.object("ConfigMap", "kube-system", "surge-installed-keda").is_none());

    let undeploy = machine.make("undeploy", &minikube);
    assert_eq!(undeploy.code, 0, "{}", undeploy.transcript("undeploy"));
    assert!(undeploy.stdout.contains("left KEDA: make dev did not install it here"), "{}", undeploy.stdout);
    assert!(machine.object("Deployment", "keda", "keda-operator").is_some(), "the other team's KEDA stays");
    assert!(machine.object("Deployment", "kube-system", "metrics-server").is_none(), "make dev's metrics-server goes");
    assert!(machine.object("ConfigMap", "kube-system", "surge-installed-metrics-server").is_none());
    assert!(machine.object("Deployment", "surge", "consumer").is_none());
}

#[test]
fn make_undeploy_after_a_make_dev_that_failed_before_keda_deletes_the_cluster() {
    let machine = Machine::new();
    let failed = machine.make("dev", &[("FAKE_KUBECTL_MINOR", "30"), ("FAKE_SERVER_MINOR", "32")]);
    assert_eq!(failed.code, 2, "{}", failed.transcript("dev"));
    assert!(!failed.called("docker build -f"), "{:?}", failed.calls);
    assert!(!machine.state()["clusters"].as_object().expect("clusters").is_empty(), "the cluster was made");

    let undeploy = machine.make("undeploy", &[]);
    assert_eq!(undeploy.code, 0, "{}", undeploy.transcript("undeploy"));
    assert!(machine.state()["clusters"].as_object().expect("clusters").is_empty());

    let nothing = machine.make("undeploy", &[]);
    assert_eq!(nothing.code, 0, "{}", nothing.transcript("undeploy"));
    assert!(nothing.stdout.contains("nothing to remove"), "{}", nothing.stdout);

    // Another context where KEDA was never installed: its objects are deleted, the missing kind is no failure.
    let minikube = [("SURGE_CONTEXT", "minikube"), ("SURGE_ALLOW_CONTEXT", "yes"), ("FAKE_EXTRA_CONTEXTS", "minikube")];
    let other = machine.make("undeploy", &minikube);
    assert_eq!(other.code, 0, "{}", other.transcript("undeploy"));
    assert!(other.kubectl().iter().all(|c| c.starts_with("kubectl --context minikube ")));
}

#[test]
fn another_context_is_refused_before_anything_runs() {
    let machine = Machine::new();
    for target in ["undeploy", "dev", "status", "e2e", "deploy-production"] {
        let refused = machine.make(target, &[("SURGE_CONTEXT", "prod-eu-1")]);
        assert_eq!(refused.code, 2, "{target} on a foreign context must fail");
        assert!(
            refused.stderr.contains("refusing context 'prod-eu-1'")
                && refused.stderr.contains("SURGE_ALLOW_CONTEXT=yes"),
            "{}",
            refused.stderr
        );
        assert!(refused.calls.is_empty(), "{target} called {:?} before refusing", refused.calls);
    }
}

#[test]
fn the_fakes_refuse_what_the_real_tools_refuse() {
    let machine = Machine::new();
    let fake = |args: &[&str]| machine.kubectl("test", args);
    assert_eq!(fake(&["get", "pods"]).0, Some(3), "no --context");
    let (code, err) =
        fake(&["--context", "test", "-n", "keda", "rollout", "status", "deployment/keda-operator-metrics-apiserver"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NotFound"), "{err}");
    // A ScaledObject before KEDA's CRD: no such kind, as kubectl says.
    let (code, err) = fake(&["--context", "test", "apply", "-k", "kubernetes-manifests/overlays/development"]);
    assert_eq!(code, Some(1));
    assert!(err.contains(r#"no matches for kind "ScaledObject" in version "keda.sh/v1alpha1""#), "{err}");
    let keda = &keda_release_url();
    assert_eq!(fake(&["--context", "test", "apply", "--server-side", "-f", keda]).0, Some(0));
    let names: BTreeSet<String> = machine.state()["objects"].as_object().expect("objects").keys().cloned().collect();
    assert!(names.contains("Deployment/keda/keda-metrics-apiserver"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("keda-operator-metrics-apiserver")),
        "the Helm chart's name is not the release's"
    );
    let (code, err) = fake(&[
        "--context",
        "test",
        "apply",
        "-f",
        "https://github.com/kedacore/keda/releases/download/v9.9.9/keda-9.9.9.yaml",
    ]);
    assert_eq!(code, Some(1), "an unknown release is a 404: {err}");
}

#[test]
fn every_object_dev_sh_waits_on_exists_in_the_release_fixtures() {
    let script = std::fs::read_to_string(manifests::repo().join("scripts/dev.sh")).expect("dev.sh");
    let fixture = |file: &str| {
        std::fs::read_to_string(manifests::repo().join("tests/deploy/fixtures").join(file)).expect("fixture")
    };
    let (keda, metrics) = (fixture(&format!("keda-{}.txt", keda_version())), fixture("metrics-server-0.9.0.txt"));
    let has = |text: &str, kind: &str, ns: &str, name: &str| {
        text.lines().any(|l| l.starts_with(&format!("{kind} {ns} {name}")))
    };
    let mut checked = 0;
    for line in script.lines().filter(|l| l.contains("-n keda ") || l.contains("apiservice/")) {
        for word in line.split_whitespace() {
            let Some((kind, name)) = word.split_once('/') else { continue };
            let (kind, ns) = match kind {
                "deployment" => ("Deployment", "keda"),
                "apiservice" => ("APIService", "-"),
                _ => continue,
            };
            assert!(
                has(&keda, kind, ns, name) || has(&metrics, kind, "-", name),
                "dev.sh names {word}, which neither release creates: {line}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "dev.sh's KEDA waits were found ({checked})");
    // Each fixture's header names the release it stands for and where it was read.
    let header = format!("# The objects KEDA v{0}'s release file (keda-{0}.yaml) creates", keda_version());
    assert!(keda.starts_with(&header) && keda.contains("# Source: "), "{header}");
    assert!(script.contains("readonly METRICS_SERVER_VERSION=0.9.0") && metrics.contains("tag v0.9.0"));
}

/// The KEDA release dev.sh installs, and its release file's URL.
fn keda_version() -> String {
    script_value("KEDA_VERSION")
}

fn keda_release_url() -> String {
    format!("https://github.com/kedacore/keda/releases/download/v{0}/keda-{0}.yaml", keda_version())
}

fn script_value(name: &str) -> String {
    let script = std::fs::read_to_string(manifests::repo().join("scripts/dev.sh")).expect("dev.sh");
    let prefix = format!("readonly {name}=");
    let line = script.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{name} in dev.sh"));
    line.trim_matches('"').to_owned()
}

#[test]
fn what_make_e2e_reads_exists_in_the_rendered_overlay() {
    let objects = manifests::overlay("development").objects;
    let kind_of = |short: &str| match short {
        "deployment" => "Deployment",
        "scaledobject" => "ScaledObject",
        "service" => "Service",
        "secret" => "Secret",
        other => panic!("unexpected kind {other}"),
    };
    for resource in script_value("E2E_RESOURCES").split_whitespace() {
        let (kind, name) = resource.split_once('/').expect("kind/name");
        if kind == "secret" {
            // Created by `make dev` (never rendered: no password in the manifests); the Deployment must read it.
            let script = std::fs::read_to_string(manifests::repo().join("scripts/dev.sh")).expect("dev.sh");
            assert!(script.contains(&format!("random_secret {name}")), "make dev creates {resource}");
            let grafana = manifests::find(&objects, "Deployment", "grafana").expect("grafana");
            assert!(grafana.to_string().contains(&format!("\"name\":\"{name}\"")), "Grafana reads {resource}");
            continue;
        }
        assert!(manifests::find(&objects, kind_of(kind), name).is_some(), "make e2e reads {resource}: not rendered");
    }
    let scaled_object = manifests::find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
    let hpa = format!("keda-hpa-{}", scaled_object["metadata"]["name"].as_str().expect("name"));
    assert_eq!(script_value("E2E_HPA"), hpa, "KEDA names its HPA keda-hpa-<ScaledObject>");
    let profile = script_value("E2E_PROFILE");
    let job_file = script_value("E2E_JOB_FILE").replace("$MANIFESTS", "kubernetes-manifests");
    let job = std::fs::read_to_string(manifests::repo().join(&job_file)).expect("the e2e Job file");
    assert!(job.contains(&format!("\n  name: load-{profile}\n")), "{job_file} names load-{profile}");
    assert!(job.contains(&format!("- --test={profile}\n")), "{job_file} runs --test={profile}");
    // make dev applies the ScaledObject on its own, by this label.
    assert_eq!(scaled_object["metadata"]["labels"]["app.kubernetes.io/component"], "autoscaling");
}

/// The row of the development overlay's table for the node's size, in seconds: heavy's times are in minutes, burst's
/// in seconds, and the README's other tables (the other node size, each pod's own backlog) name burst and heavy again.
#[test]
fn make_e2e_reads_its_promise_from_the_load_generator_table() {
    let script = std::fs::read_to_string(manifests::repo().join("scripts/dev.sh")).expect("dev.sh");
    let start = script.find("e2e_expectations() {").expect("e2e_expectations");
    let body = &script[start..start + script[start..].find("\n}\n").expect("end") + 3];
    let readme = "kubernetes-manifests/components/load-generator/README.md";
    let table = std::fs::read_to_string(manifests::repo().join(readme)).expect("README");
    let seconds = |cell: &str| match cell.split_once(' ') {
        Some((n, "min")) => n.parse::<u32>().expect("minutes") * 60,
        Some((n, "s")) => n.parse::<u32>().expect("seconds"),
        _ => panic!("a time with its unit: {cell}"),
    };
    for (profile, node) in [("heavy", 4), ("burst", 4), ("heavy", 8), ("burst", 8)] {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("{body}\nE2E_PROFILE={profile} E2E_TABLE={readme} e2e_expectations {node}"))
            .current_dir(manifests::repo())
            .output()
            .expect("bash");
        let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // The profile's row in the table for that node: the one the closed-loop test reads.
        let heading = format!("## Expected trajectories (development overlay, {node}-core node)");
        let row = table
            .lines()
            .skip_while(|l| *l != heading)
            .find(|l| l.starts_with(&format!("| `{profile}` |")))
            .expect("the profile's row");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (low, high) = cells[3].split_once('-').expect("peak range");
        let (reached, back, load) = (seconds(cells[4]), seconds(cells[6]), seconds(cells[2]));
        assert_eq!(printed, format!("{low} {high} {reached} {back} {load}"), "from {row}");
    }
}

#[test]
fn make_deploy_production_needs_keda_the_metrics_api_and_a_pushed_image() {
    let machine = Machine::new();
    let opted = [("SURGE_CONTEXT", "prod-eu-1"), ("SURGE_ALLOW_CONTEXT", "yes"), ("FAKE_EXTRA_CONTEXTS", "prod-eu-1")];
    let without_keda = machine.make("deploy-production", &opted);
    assert_eq!(without_keda.code, 2, "{}", without_keda.transcript("deploy-production"));
    let (needs, file) = (format!("needs KEDA {}", keda_version()), format!("keda-{}.yaml", keda_version()));
    assert!(without_keda.stderr.contains(&needs) && without_keda.stderr.contains(&file), "{}", without_keda.stderr);
    assert!(!without_keda.called(" apply "), "nothing applied: {:?}", without_keda.calls);

    let install = |url: &str| {
        let (code, err) =
            machine.kubectl("prod-eu-1", &["--context", "prod-eu-1", "apply", "--server-side", "-f", url]);
        assert_eq!(code, Some(0), "{err}");
    };
    install(&keda_release_url());
    let without_metrics = machine.make("deploy-production", &opted);
    assert_eq!(without_metrics.code, 2, "{}", without_metrics.transcript("deploy-production"));
    assert!(without_metrics.stderr.contains("v1beta1.metrics.k8s.io"), "{}", without_metrics.stderr);

    install("https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.9.0/components.yaml");
    let unpublished = machine.make("deploy-production", &opted);
    assert_eq!(unpublished.code, 2, "{}", unpublished.transcript("deploy-production"));
    assert!(
        unpublished.stderr.contains("ghcr.io/surge-autoscaling/surge-consumer:0.1.0, which no registry publishes"),
        "{}",
        unpublished.stderr
    );
    assert!(!unpublished.called(" apply "), "nothing applied before the image is named");

    let mut env = opted.to_vec();
    env.push(("SURGE_IMAGE", "registry.example/team/surge-consumer:1.2.3"));
    let deployed = machine.make("deploy-production", &env);
    assert_eq!(deployed.code, 0, "{}", deployed.transcript("deploy-production"));
    let kubectl = deployed.kubectl();
    assert!(kubectl.iter().all(|c| c.starts_with("kubectl --context prod-eu-1 ")), "{kubectl:?}");
    let secret = kubectl.iter().position(|c| c.contains("create secret generic grafana-admin")).expect("the Secret");
    let apply = kubectl.iter().rposition(|c| c.contains("apply -f -")).expect("apply");
    assert!(secret < apply, "Grafana's Secret exists before Grafana: {kubectl:?}");
    let password = kubectl[secret].split("--from-literal=password=").nth(1).expect("a password");
    assert!(password.len() >= 16, "a random password: {password:?}");
    let consumer = machine.object("Deployment", "surge", "consumer").expect("consumer");
    assert_eq!(
        consumer["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/team/surge-consumer:1.2.3"
    );
    assert!(!deployed.called("kedacore"), "KEDA is never installed in production");
    let production = manifests::overlay("production").objects;
    let grafana = manifests::find(&production, "Deployment", "grafana").expect("grafana");
    assert!(grafana.to_string().contains("\"name\":\"grafana-admin\""), "Grafana reads grafana-admin");
}

#[test]
fn the_e2e_workflow_runs_on_every_input_of_the_images_and_reports_even_when_cancelled() {
    let text = std::fs::read_to_string(manifests::repo().join(".github/workflows/e2e.yml")).expect("e2e.yml");
    let workflow: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let paths: Vec<&str> = workflow["on"]["pull_request"]["paths"]
        .as_sequence()
        .expect("paths")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    let covered =
        |file: &str| paths.iter().any(|p| *p == file || p.strip_suffix("**").is_some_and(|d| file.starts_with(d)));
    // What the Dockerfiles COPY and what make dev runs: a change to any of them must run the workflow.
    for dockerfile in ["Dockerfile", "generator/Dockerfile"] {
        let content = std::fs::read_to_string(manifests::repo().join(dockerfile)).expect("Dockerfile");
        for copied in content.lines().filter_map(|l| l.strip_prefix("COPY ")).filter(|l| !l.starts_with("--from")) {
            let sources: Vec<&str> = copied.split_whitespace().collect();
            for source in &sources[..sources.len() - 1] {
                let source = source.trim_end_matches('/');
                assert!(
                    covered(source) || covered(&format!("{source}/")),
                    "{dockerfile} copies {source}, which the workflow's paths leave out: {paths:?}"
                );
            }
        }
        assert!(covered(dockerfile), "{dockerfile} in {paths:?}");
    }
    for input in ["Makefile", "scripts/dev.sh", "kubernetes-manifests/kind/cluster.yaml", "grafana/dashboards/x.json"] {
        assert!(covered(input), "{input} in {paths:?}");
    }
    let steps = workflow["jobs"]["kind"]["steps"].as_sequence().expect("steps");
    let diagnostics =
        steps.iter().find(|s| s["if"].as_str().is_some_and(|c| c.contains("failure()"))).expect("a step on failure");
    assert!(
        diagnostics["if"].as_str().expect("if").contains("cancelled()"),
        "a timeout cancels: {:?}",
        diagnostics["if"]
    );
    // Per-step timeouts that leave the diagnostics room inside the job's own.
    let job_minutes = workflow["jobs"]["kind"]["timeout-minutes"].as_u64().expect("job timeout");
    let step_minutes: u64 = steps.iter().filter_map(|s| s["timeout-minutes"].as_u64()).sum();
    assert!(steps.iter().filter(|s| s.get("run").is_some()).all(|s| s["timeout-minutes"].as_u64().is_some()));
    assert!(step_minutes < job_minutes, "steps {step_minutes} min within the job's {job_minutes}");
    // make e2e's step outlasts e2e's own limit on the runner's 4-core node (the load, the promised return after it, the
    // slack), with five minutes for its start and its checks, so a slow run inside the promise is e2e's to judge.
    let readme =
        std::fs::read_to_string(manifests::repo().join("kubernetes-manifests/components/load-generator/README.md"))
            .expect("the load-generator README");
    let row = readme
        .lines()
        .skip_while(|l| *l != "## Expected trajectories (development overlay, 4-core node)")
        .find(|l| l.starts_with("| `heavy` |"))
        .expect("heavy's 4-core row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let minutes = |cell: &str| cell.strip_suffix(" min").and_then(|n| n.parse::<u64>().ok()).expect("minutes");
    let slack: u64 = script_value("E2E_SLACK_SECONDS").parse().expect("slack seconds");
    let e2e_limit = minutes(cells[2]) + minutes(cells[6]) + slack.div_ceil(60);
    let e2e_step = steps.iter().find(|s| s["run"].as_str() == Some("make e2e")).expect("the make e2e step");
    let e2e_minutes = e2e_step["timeout-minutes"].as_u64().expect("its timeout");
    assert!(e2e_minutes >= e2e_limit + 5, "make e2e's step {e2e_minutes} min; e2e itself may take {e2e_limit} min");
    // Downloads pinned and checked.
    // kind is the release whose default node image the cluster pins, kubectl that node's version (no skew).
    let env = |name: &str| workflow["env"][name].as_str().unwrap_or_else(|| panic!("{name}")).to_owned();
    let cluster =
        std::fs::read_to_string(manifests::repo().join("kubernetes-manifests/kind/cluster.yaml")).expect("kind");
    let node = cluster.lines().find_map(|l| l.trim().strip_prefix("image: kindest/node:")).expect("node image");
    let node_version = node.split('@').next().expect("tag");
    assert!(cluster.contains(&format!("the one kind {} ships with", env("KIND_VERSION"))), "{}", env("KIND_VERSION"));
    assert_eq!(env("KUBECTL_VERSION"), node_version, "kubectl as the kind node's Kubernetes");
    assert_eq!(text.matches("sha256sum -c").count(), 2, "kind and kubectl checked against their SHA-256");
}

/// `make dev` (the shared backlog by default): the development overlay, its Secret made once and kept, Redis rolled
/// out before the consumer that needs it. `SURGE_QUEUE=memory` leaves Redis out; a value it does not know stops it.
#[test]
fn make_dev_with_the_redis_queue_creates_its_secret_and_waits_for_redis() {
    let machine = Machine::new();
    let dev = machine.make("dev", &[]);
    assert_eq!(dev.code, 0, "{}", dev.transcript("dev"));
    let secret = machine.object("Secret", "surge", "redis-auth").expect("make dev created redis-auth");
    assert!(machine.object("Deployment", "surge", "redis").is_some(), "the queue component was applied");
    assert!(machine.object("PersistentVolumeClaim", "surge", "redis-data").is_some());
    let rollouts: Vec<String> = machine.state()["rollouts"]
        .as_array()
        .expect("rollouts")
        .iter()
        .filter_map(|r| r["deployment"].as_str().map(str::to_owned))
        .collect();
    let waited = dev.kubectl().into_iter().filter(|c| c.contains("rollout status")).collect::<Vec<_>>();
    let redis_at = waited.iter().position(|c| c.contains("deployment/redis")).expect("waited for redis");
    let consumer_at = waited.iter().position(|c| c.contains("deployment/consumer")).expect("waited for the consumer");
    assert!(redis_at < consumer_at, "{waited:?}");
    assert!(rollouts.iter().any(|d| d == "redis"), "{rollouts:?}");
    let again = machine.make("dev", &[("SURGE_QUEUE", "redis")]);
    assert_eq!(again.code, 0, "{}", again.transcript("dev"));
    assert_eq!(machine.object("Secret", "surge", "redis-auth"), Some(secret), "a re-run keeps the password");
    let memory = Machine::new();
    let dev = memory.make("dev", &[("SURGE_QUEUE", "memory")]);
    assert_eq!(dev.code, 0, "{}", dev.transcript("dev"));
    assert!(memory.object("Deployment", "surge", "consumer").is_some(), "{}", dev.transcript("dev"));
    assert!(memory.object("Deployment", "surge", "redis").is_none(), "the memory queue needs no Redis");
    assert!(memory.object("Secret", "surge", "redis-auth").is_none());
    let wrong = machine.make("dev", &[("SURGE_QUEUE", "kafka")]);
    assert_eq!(wrong.code, 2, "{}", wrong.transcript("dev"));
    assert!(wrong.stderr.contains("SURGE_QUEUE must be memory or redis"), "{}", wrong.stderr);
    assert!(wrong.kubectl().is_empty(), "nothing ran");
}
