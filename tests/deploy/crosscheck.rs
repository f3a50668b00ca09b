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
        for field in ["backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"] {
            assert!(job["spec"][field].is_u64(), "{file}: {field}");
        }
        let pod = pod_spec(&job).expect("pod");
        let wait = strings(&pod["initContainers"][0]["command"]).join(" ");
        assert!(wait.contains("http://consumer:8000/ready"), "{file}: waits for the consumer: {wait}");
        let generator = &pod["containers"][0];
        let args = strings(&generator["args"]);
        for flag in ["--url=http://consumer:8000", "--monitor", "--cleanup", "--no-connection-reuse"] {
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
        assert!(text.contains("FROM gcr.io/distroless/static"), "{dockerfile}: a static, shell-less final image");
        assert!(text.lines().any(|l| l.starts_with("USER 6")), "{dockerfile}: a numeric non-root user");
    }
}

#[test]
fn dashboards_chart_the_scaled_objects_own_queries() {
    let normalise = |q: &str| q.split_whitespace().collect::<Vec<_>>().join(" ");
    let panels = manifests::dashboard_panels();
    let expressions: BTreeSet<String> = panels.iter().flat_map(manifests::expressions).map(|e| normalise(&e)).collect();
    let uids: BTreeSet<&str> =
        panels.iter().map(|p| p["datasource"]["uid"].as_str().expect("datasource uid")).collect();
    let objects = manifests::overlay("development").objects;
    let so = find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
    for trigger in manifests::triggers(so) {
        let query = normalise(trigger["metadata"]["query"].as_str().expect("query"));
        assert!(expressions.contains(&query), "no dashboard panel shows trigger {}: {query}", trigger["name"]);
    }
    let provisioning = find(&objects, "ConfigMap", "grafana-provisioning").expect("provisioning");
    let datasources = provisioning["data"]["datasources.yaml"].as_str().expect("datasources");
    for uid in uids {
        assert!(
            datasources.contains(&format!("uid: {uid}\n")),
            "dashboards use datasource {uid}, which is provisioned"
        );
    }
}
