//! The manifests against the real binaries: probes and scrape annotations answer on a running consumer, every
//! Job's arguments are accepted by the real generator, every image of ours is built by a Dockerfile and make.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::consumer::ConsumerProcess;
use crate::manifests::{self, find, pod_spec};

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn probes_and_scrape_annotations_answer_on_the_real_consumer() {
    let objects = manifests::overlay("development").objects;
    let (template, container) = manifests::consumer_pod(&objects);
    let port = container["ports"][0]["containerPort"].as_u64().expect("containerPort");
    let port_name = container["ports"][0]["name"].as_str().expect("port name");
    let args = strings(&container["args"]);
    assert!(args.contains(&format!("--port={port}")), "the consumer listens on the declared containerPort: {args:?}");

    // The Deployment's own flags and literal env, on a free loopback port instead of the pod's.
    let flags: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--port=")).collect();
    let env: Vec<(&str, String)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?.to_owned())))
        .collect();
    let consumer = ConsumerProcess::start_with_env(&flags, &env);
    let client = reqwest::Client::new();

    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert!(get["port"] == port_name || get["port"] == port, "{probe} probes the consumer's port: {get}");
        let path = get["path"].as_str().expect("probe path");
        let status = client.get(format!("{}{path}", consumer.address)).send().await.expect(probe).status();
        assert_eq!(status, 200, "{probe} {path}");
    }

    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string(), "scrapes the metrics port");
    let path = annotations["prometheus.io/path"].as_str().expect("scrape path");
    let response = client.get(format!("{}{path}", consumer.address)).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("text").contains("# TYPE http_requests_total counter"));
}

fn generator_binary() -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_BIN_EXE_consumer")).with_file_name("generator");
    assert!(path.exists(), "{} missing: `cargo test --workspace` builds it", path.display());
    path
}

fn profiles_listed() -> BTreeSet<String> {
    let output = Command::new(generator_binary()).arg("--list").output().expect("generator --list");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "all")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_job_is_accepted_by_the_real_generator_and_every_profile_has_one() {
    let mut covered = BTreeSet::new();
    for (file, job) in manifests::job_files() {
        assert_eq!(job["metadata"]["namespace"], "surge", "{file}: `kubectl apply -f` must land in surge");
        for field in ["backoffLimit", "activeDeadlineSeconds"] {
            assert!(job["spec"][field].is_u64(), "{file}: {field}");
        }
        // A finished Job left in place makes the next `kubectl apply -f` print "unchanged" and send nothing.
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 0, "{file}: removed as it finishes, so an apply re-runs it");
        let pod = pod_spec(&job).expect("pod");
        let wait = strings(&pod["initContainers"][0]["command"]).join(" ");
        assert!(wait.contains("http://consumer:8000/ready"), "{file}: waits for the consumer: {wait}");
        let generator = &pod["containers"][0];
        let args = strings(&generator["args"]);
        // The summary outlives the Job in Loki.
        for flag in [
            "--url=http://consumer:8000",
            "--monitor",
            "--cleanup",
            "--no-connection-reuse",
            "--loki-url=http://loki:3100",
        ] {
            assert!(args.contains(&flag.to_owned()), "{file}: {flag} in {args:?}");
        }
        let mut env: Vec<(String, String)> = generator["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["name"].as_str().expect("name").to_owned(), e["value"].as_str().expect("value").to_owned()))
            .collect();
        let indexed = job["spec"]["completionMode"] == "Indexed";
        if indexed {
            // Kubernetes sets this in every pod of an Indexed Job.
            env.push(("JOB_COMPLETION_INDEX".into(), "3".into()));
        }
        let output = Command::new(generator_binary())
            .args(&args)
            .args(["--dry-run", "--output", "json"])
            .envs(env)
            .output()
            .expect("run the generator");
        assert!(output.status.success(), "{file}: {}", String::from_utf8_lossy(&output.stderr));
        let plan: Value = serde_json::from_slice(&output.stdout).expect("plan JSON");
        assert_eq!(plan["target"]["url"], "http://consumer:8000", "{file}");
        assert_eq!(
            (&plan["connection_reuse"], &plan["monitor"], &plan["cleanup"]),
            (&false.into(), &true.into(), &true.into())
        );
        let profile = plan["runs"][0]["profile"].as_str().expect("profile").to_owned();
        // The deadline outlasts the load, the following of its accepted tasks to their end (on a small node they
        // finish up to the follow timeout after it) and two minutes of waiting for the consumer: a Job killed at its
        // deadline shows Failed, though it sent everything.
        let run = &plan["runs"][0];
        let load: f64 = run["stages"].as_array().expect("stages").iter().filter_map(|s| s["duration"].as_f64()).sum();
        let follows = run["path"].as_str().expect("path").contains("async_mode=true");
        let needed =
            load + if follows { plan["follow_timeout"].as_f64().expect("follow timeout") } else { 0.0 } + 120.0;
        let deadline = job["spec"]["activeDeadlineSeconds"].as_f64().expect("deadline");
        assert!(deadline >= needed, "{file}: activeDeadlineSeconds {deadline} under the {needed} s the run may take");
        if indexed {
            let parallelism = job["spec"]["parallelism"].as_u64().expect("parallelism");
            assert_eq!(parallelism, 4, "{file}");
            assert_eq!(plan["shard"], serde_json::json!({"index": 3, "count": parallelism}), "{file}: sharded");
        } else {
            assert_eq!(file, format!("job-{}.yaml", profile.replace('_', "-")), "one file per profile, named for it");
            covered.insert(profile);
        }
    }
    assert_eq!(covered, profiles_listed(), "every profile of `generator --list` has its Job");
    // Where the Jobs push their summaries is the monitoring component's Loki.
    let objects = manifests::overlay("development").objects;
    let loki = manifests::find(&objects, "Service", "loki").expect("a loki Service");
    assert!(loki["spec"]["ports"].as_array().expect("ports").iter().any(|p| p["port"] == 3100), "loki:3100");
}

#[test]
fn every_image_of_ours_is_built_by_a_dockerfile_and_a_make_target() {
    let output = Command::new("make").args(["-n", "images"]).current_dir(manifests::repo()).output().expect("make");
    assert!(output.status.success());
    let recipe = String::from_utf8(output.stdout).expect("utf-8");
    let mut images: BTreeSet<String> = BTreeSet::new();
    for rendering in manifests::all() {
        for object in &rendering.objects {
            let Some(pod) = pod_spec(object) else { continue };
            for key in ["initContainers", "containers"] {
                for container in pod[key].as_array().into_iter().flatten() {
                    images.insert(container["image"].as_str().expect("image").to_owned());
                }
            }
        }
    }
    let ours: Vec<&String> = images.iter().filter(|i| i.contains("surge-")).collect();
    assert!(ours.len() >= 2, "the consumer and generator images appear: {images:?}");
    for image in ours {
        // A registry prefix (production) names the same image the Makefile builds.
        let local = image.rsplit('/').next().expect("name");
        let build = recipe
            .lines()
            .find(|l| l.starts_with("docker build") && l.contains(&format!("-t {local} ")))
            .unwrap_or_else(|| panic!("`make images` does not build {local}:\n{recipe}"));
        let dockerfile = build.split_whitespace().skip_while(|w| *w != "-f").nth(1).expect("-f Dockerfile");
        let text = std::fs::read_to_string(manifests::repo().join(dockerfile)).expect("Dockerfile exists");
        let binary = local.trim_start_matches("surge-").split(':').next().expect("binary");
        assert!(text.contains(&format!("--bin {binary}")), "{dockerfile} builds the {binary} binary");
        assert!(text.contains("FROM gcr.io/distroless/cc-debian12"), "{dockerfile}: glibc, shell-less final image");
        assert!(text.contains("FROM rust:1.95-bookworm"), "{dockerfile}: built against the final image's glibc");
        assert!(text.lines().any(|l| l.starts_with("USER 6")), "{dockerfile}: a numeric non-root user");
    }
}

/// Every Prometheus trigger of every overlay's ScaledObject has a panel showing what KEDA compares (an AverageValue
/// query divided by the Deployment's replicas, a Value query as-is; the dashboard's variables filled in for the
/// overlay) with the trigger's own threshold drawn as a line.
#[test]
fn dashboards_chart_each_trigger_against_its_own_threshold() {
    let normalise = |q: &str| q.split_whitespace().collect::<Vec<_>>().join(" ");
    let panels = manifests::dashboard_panels();
    let replicas = r#"scalar(sum(kube_deployment_status_replicas{namespace="surge", deployment="consumer"}))"#;
    for overlay in manifests::overlay_names() {
        let objects = manifests::overlay(&overlay).objects;
        let so = find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
        for trigger in manifests::triggers(so).iter().filter(|t| t["type"] == "prometheus") {
            let name = trigger["name"].as_str().expect("name");
            let query = normalise(trigger["metadata"]["query"].as_str().expect("query"));
            let compared = match trigger["metricType"].as_str() {
                Some("AverageValue") => format!("({query}) / {replicas}"),
                Some("Value") => query.clone(),
                other => panic!("{name}: metricType {other:?}"),
            };
            let panel = panels
                .iter()
                .find(|p| manifests::expressions(p).iter().any(|e| normalise(&manifests::substituted(e)) == compared))
                .unwrap_or_else(|| panic!("{overlay}: no panel shows trigger {name} as KEDA compares it: {compared}"));
            let threshold: f64 = trigger["metadata"]["threshold"].as_str().expect("threshold").parse().expect("number");
            let defaults = &panel["fieldConfig"]["defaults"];
            let steps = defaults["thresholds"]["steps"].as_array().expect("threshold steps");
            assert!(
                steps.iter().any(|s| s["value"].as_f64() == Some(threshold)),
                "{overlay}: panel {} draws trigger {name}'s threshold {threshold}: {steps:?}",
                panel["title"]
            );
            assert_eq!(defaults["custom"]["thresholdsStyle"]["mode"], "line", "{name}: drawn as a line");
            assert!(panel["title"].as_str().is_some_and(|t| t.contains(name)), "{name}: the title names the trigger");
        }
    }
}

/// Each dashboard: a uid, a title and a schema version; unique panel ids; only datasources the provisioning creates.
#[test]
fn dashboards_are_well_formed_and_use_provisioned_datasources() {
    let objects = manifests::overlay("development").objects;
    let provisioning = find(&objects, "ConfigMap", "grafana-provisioning").expect("provisioning");
    let datasources: Value =
        serde_yaml_ng::from_str(provisioning["data"]["datasources.yaml"].as_str().expect("datasources")).expect("YAML");
    let provisioned: BTreeSet<&str> =
        datasources["datasources"].as_array().expect("list").iter().filter_map(|d| d["uid"].as_str()).collect();
    let dir = manifests::repo().join("grafana/dashboards");
    let mut uids = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("dashboards") {
        let path = entry.expect("entry").path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let name = path.display();
        assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "{name}: uid");
        assert!(uids.insert(dashboard["uid"].as_str().expect("uid").to_owned()), "{name}: uid is unique");
        assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}: title");
        assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "{name}: schemaVersion");
        let mut ids = BTreeSet::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "{name}: panel id {} repeats", panel["id"]);
            let mut used = vec![&panel["datasource"]];
            used.extend(panel["targets"].as_array().into_iter().flatten().map(|t| &t["datasource"]));
            for datasource in used.into_iter().filter(|d| !d.is_null()) {
                let uid = datasource["uid"].as_str().expect("datasource uid");
                assert!(
                    provisioned.contains(uid),
                    "{name}: panel {} uses datasource {uid}, not provisioned",
                    panel["id"]
                );
            }
        }
    }
}

/// What a Dockerfile's build stage copies in and the cargo command it runs.
struct BuildStage {
    copies: Vec<(String, String)>,
    cargo: Vec<String>,
}

fn build_stage(dockerfile: &str) -> BuildStage {
    let text = std::fs::read_to_string(manifests::repo().join(dockerfile)).expect("Dockerfile");
    // Continuation lines joined, so a RUN is one instruction.
    let joined = text.replace("\\\n", " ");
    let stage: Vec<&str> = joined
        .lines()
        .skip_while(|l| !l.starts_with("FROM ") || !l.contains(" AS build"))
        .skip(1)
        .take_while(|l| !l.starts_with("FROM "))
        .collect();
    let copies = stage
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|rest| !rest.starts_with("--from"))
        .map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (sources, destination) = words.split_at(words.len() - 1);
            (sources.join(" "), destination[0].to_owned())
        })
        .collect();
    let run =
        stage.iter().find(|l| l.starts_with("RUN ") && l.contains("cargo build")).expect("a RUN with cargo build");
    let command = &run[run.find("cargo build").expect("cargo")..];
    let cargo = command.split("&&").next().expect("command").split_whitespace().map(str::to_owned).collect();
    BuildStage { copies, cargo }
}

/// Copies what the stage's COPY lines name into an empty directory and runs its cargo command there, as
/// `cargo check` without `--release` (a missing file, a manifest error or a wrong package or binary flag fails the
/// same way, in a minute rather than in `make images`).
fn check_build_stage(stage: &BuildStage) -> Result<String, String> {
    let repo = manifests::repo();
    let context = tempfile::tempdir().expect("temp dir");
    for (sources, destination) in &stage.copies {
        for source in sources.split_whitespace() {
            let target =
                if destination == "./" { context.path().join(source) } else { context.path().join(destination) };
            let status = Command::new("cp")
                .args(["-r", repo.join(source).to_str().expect("path"), target.to_str().expect("path")])
                .status()
                .expect("cp");
            assert!(status.success(), "COPY {source} {destination}");
        }
    }
    assert_eq!(&stage.cargo[..2], ["cargo", "build"], "{:?}", stage.cargo);
    let flags: Vec<&String> = stage.cargo[2..].iter().filter(|f| *f != "--release").collect();
    let shown = flags.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" ");
    let output = Command::new("cargo")
        .arg("check")
        .args(&flags)
        .current_dir(context.path())
        // The workspace's own target: the dependencies `make lint`'s clippy checked are reused (the copy's members are
        // checked afresh at their own paths), where a target of its own checked every dependency again.
        .env("CARGO_TARGET_DIR", repo.join("target"))
        .output()
        .expect("cargo");
    if output.status.success() {
        Ok(format!("cargo check {shown}"))
    } else {
        Err(format!("cargo check {shown}: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

/// Each image's build, without Docker, from exactly what its Dockerfile copies.
#[test]
fn each_dockerfiles_build_stage_builds_from_only_what_it_copies() {
    for dockerfile in ["Dockerfile", "generator/Dockerfile"] {
        let stage = build_stage(dockerfile);
        assert!(!stage.copies.is_empty(), "{dockerfile}: COPY lines found");
        match check_build_stage(&stage) {
            Ok(ran) => println!("{dockerfile}: `{ran}` passed on its COPY lines alone"),
            Err(error) => panic!("{dockerfile}: its build stage fails:\n{error}"),
        }
    }
}

/// The two defects that once broke `make images` fail this check: a workspace member left out of the COPY lines, and
/// a binary asked for outside the default member.
#[test]
fn the_build_stage_check_catches_what_once_broke_make_images() {
    let stage = build_stage("generator/Dockerfile");
    let without_bench = BuildStage {
        copies: stage.copies.iter().filter(|(s, _)| s != "bench").cloned().collect(),
        cargo: stage.cargo.clone(),
    };
    let error = check_build_stage(&without_bench).expect_err("a missing workspace member fails");
    assert!(error.contains("bench"), "{error}");
    let mut cargo = stage.cargo.clone();
    let at = cargo.iter().position(|f| f == "-p").expect("-p in the generator's build");
    cargo.drain(at..at + 2);
    let error = check_build_stage(&BuildStage { copies: stage.copies, cargo })
        .expect_err("a bin outside the default member fails");
    assert!(error.contains("no bin target named `generator`"), "{error}");
}
