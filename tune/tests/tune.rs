//! `surge tune` as a user runs it: the real binary on the development overlay rendered by the real kustomize.

use std::path::Path;
use std::process::{Command, Output};

fn render(dir: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(root.join("kubernetes-manifests/overlays/development"))
        .output()
        .expect("kubectl is installed");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let path = dir.join("development.yaml");
    std::fs::write(&path, output.stdout).expect("write the render");
    path
}

/// `surge tune --manifests M` with `args` (the load, the node, the goal, ...).
fn surge_tune(manifests: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(["tune", "--manifests"])
        .arg(manifests)
        .args(args)
        .output()
        .expect("surge runs")
}

/// burst on the 8-core node over 2 seeds, with `args` besides.
fn tune(manifests: &Path, args: &[&str]) -> Output {
    let burst = ["--profile", "burst", "--node-cores", "8", "--seeds", "2"];
    surge_tune(manifests, &[&burst[..], args].concat())
}

#[test]
fn burst_gets_a_recommendation_and_its_patch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = render(dir.path());
    let patch = dir.path().join("patch.yaml");
    let out = tune(&manifests, &["--slo", "p95-sojourn=300s", "--patch", patch.to_str().expect("path")]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("<- recommended") && text.lines().any(|l| l.starts_with("current ")), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("candidate 1/"), "progress is shown");
    let patch: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&patch).expect("the patch was written")).expect("YAML");
    assert_eq!((patch["kind"].as_str(), patch["metadata"]["name"].as_str()), (Some("ScaledObject"), Some("consumer")));
}

#[test]
fn a_goal_no_candidate_meets_exits_1_and_json_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = render(dir.path());
    let out = tune(&manifests, &["--slo", "p95-sojourn=1s", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(report["recommended"].is_null(), "{report}");
    let candidates = report["candidates"].as_array().expect("candidates");
    assert!(candidates.len() > 20 && candidates.iter().any(|c| c["frontier"] == true), "{report}");
}

#[test]
fn a_profile_it_does_not_know_is_named_with_the_choices() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = render(dir.path());
    let out = surge_tune(&manifests, &["--profile", "tsunami"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one of light, medium"), "{out:?}");
}

#[test]
fn a_load_of_phases_is_played_from_a_file_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = render(dir.path());
    let run = |phases: &Path| {
        let phases = phases.to_str().expect("a UTF-8 path");
        let flags = ["--node-cores", "8", "--seeds", "1", "--slo", "p95-sojourn=10m", "--json"];
        surge_tune(&manifests, &[&["--phases", phases][..], &flags].concat())
    };
    let good = dir.path().join("phases.yaml");
    std::fs::write(
        &good,
        "phases:\n  - {minutes: 2, per_minute: 20, cpu_intensity: 9, memory_mib: 150, duration_secs: 20}\n  - {minutes: 1, \
         per_minute: 2, cpu_intensity: 2, memory_mib: 20, duration_secs: 5}\n",
    )
    .expect("write phases");
    let out = run(&good);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["load"].as_str(), good.to_str(), "{report}");
    let current =
        report["candidates"].as_array().expect("candidates").iter().find(|c| c["candidate"] == "current").cloned();
    let current = current.expect("the current ScaledObject is a candidate");
    // 40 tasks of 1.8 core-seconds a second's worth each: more than one replica's core, so the current one scales.
    assert!(current["first_scale_up_s"].as_f64().is_some(), "{current}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 12, memory_mib: 1, duration_secs: 1}\n",
    )
    .expect("write phases");
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("phases[0].cpu_intensity: 12 is not a whole number from 1 to 10"), "{stderr}");
}

#[test]
fn a_recorded_load_is_replayed_with_a_profiles_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = render(dir.path());
    // Two pods' request counters over four minutes as Prometheus's query_range answers them: 10, then 20, then 2 and 0
    // requests a minute.
    let values = |counts: [u32; 5]| {
        counts.iter().enumerate().map(|(i, c)| format!("[{},\"{c}\"]", 1000 + 60 * i)).collect::<Vec<_>>().join(",")
    };
    let answer = format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"pod":"a"}},"values":[{}]}},{{"metric":{{"pod":"b"}},"values":[{}]}}]}}}}"#,
        values([0, 5, 15, 16, 16]),
        values([0, 5, 15, 16, 16])
    );
    let trace = dir.path().join("requests.json");
    std::fs::write(&trace, answer).expect("write the trace");
    let trace = trace.to_str().expect("a UTF-8 path");
    let flags = ["--profile", "heavy", "--node-cores", "8", "--seeds", "1", "--slo", "p95-sojourn=10m", "--json"];
    let out = surge_tune(&manifests, &[&["--trace", trace][..], &flags].concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(report["load"].as_str().is_some_and(|l| l.ends_with("requests.json with heavy's task")), "{report}");
    let current =
        report["candidates"].as_array().expect("candidates").iter().find(|c| c["candidate"] == "current").cloned();
    // 20 heavy tasks a minute ask for 6 cores, far more than one replica's: the current ScaledObject scales up.
    assert!(current.expect("current")["first_scale_up_s"].as_f64().is_some(), "{report}");
}

#[test]
fn verify_names_which_it_runs_and_a_cluster_it_cannot_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = render(dir.path());
    let missing = dir.path().join("no-cluster-here");
    for which in ["--verify", "--verify=both", "--verify=recommended"] {
        let out = tune(&manifests, &["--slo", "p95-sojourn=300s", which, "--cluster", missing.to_str().expect("path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{which}: {stderr}");
        assert!(stderr.contains("--cluster") && stderr.contains("no-cluster-here"), "{which}: {stderr}");
    }
    let out = tune(&manifests, &["--verify=current"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("both") && stderr.contains("recommended"), "the choices named: {stderr}");
}

/// The development overlay with its ScaledObject's triggers replaced by one KEDA `resource` trigger at 40%.
fn on_resource(manifests: &Path, resource: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(manifests).expect("the render");
    let mut out = String::new();
    // kubectl kustomize separates its documents with `---` lines.
    for document in text.split("\n---\n") {
        let mut object: serde_yaml_ng::Value = serde_yaml_ng::from_str(document).expect("YAML");
        if object["kind"] == "ScaledObject" {
            let trigger =
                format!("type: {resource}\nname: {resource}\nmetricType: Utilization\nmetadata:\n  value: \"40\"\n");
            // KEDA refuses a fallback with only cpu and memory triggers.
            if let Some(spec) = object["spec"].as_mapping_mut() {
                spec.remove("fallback");
            }
            object["spec"]["triggers"] =
                serde_yaml_ng::Value::Sequence(vec![serde_yaml_ng::from_str(&trigger).expect("trigger")]);
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&object).expect("YAML"));
    }
    let path = dir.join(format!("on-{resource}.yaml"));
    std::fs::write(&path, out).expect("write");
    path
}

#[test]
fn a_scaled_object_on_cpu_or_memory_is_played() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = render(dir.path());
    for resource in ["cpu", "memory"] {
        let on = on_resource(&manifests, resource, dir.path());
        let args = ["--profile", "memory_stress", "--node-cores", "8", "--seeds", "2", "--slo", "p95-sojourn=1h"];
        let out = surge_tune(&on, &[&args[..], &["--json"]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{resource}: {stderr}");
        let table: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let current = &table["candidates"][0];
        assert_eq!(current["candidate"], "current", "{table}");
        assert!(current["ready_replica_seconds"].as_f64().is_some_and(|c| c > 0.0), "{resource} played: {table}");
        // The closed loop has a metrics-server: --verify runs it (here into a `cluster` that is not there).
        let missing = dir.path().join("no-cluster-here");
        let verify = ["--verify", "--cluster", missing.to_str().expect("path")];
        let out = surge_tune(&on, &[&args[..], &verify[..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{resource}: {stderr}");
        assert!(stderr.contains("no-cluster-here"), "{resource}: {stderr}");
    }
}
