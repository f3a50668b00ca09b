//! `scripts/dev.sh` (behind `make dev`, `make load-*`, `make undeploy`) run against fake `kubectl`, `kind` and
//! `docker` on PATH that record every call: which context it acts on, what it installs, how it loads images and Jobs.

use std::path::Path;
use std::process::{Command, Output};

use crate::manifests;

/// A fake tool: records its arguments, answers the few queries dev.sh reads, succeeds otherwise.
const FAKE: &str = r#"#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $*" in
  *"jsonpath={.metadata.labels.app\.kubernetes\.io/version}"*) echo "${FAKE_KEDA_VERSION:-}"; [ -n "${FAKE_KEDA_VERSION:-}" ] ;;
  "kubectl "*"get crd scaledobjects.keda.sh"*) [ -n "${FAKE_KEDA_VERSION:-}" ] ;;
  "kubectl "*"get deployment metrics-server"*) exit 1 ;;
  "kubectl "*"get secret grafana-admin"*) exit 1 ;;
  "kind get clusters"*) echo surge ;;
  "docker port "*) echo "127.0.0.1:8000" ;;
  "kubectl "*"create namespace"*) echo "apiVersion: v1" ;;
  # Reads what is piped in, as the real one does (a writer that meets a closed pipe fails under pipefail).
  *" -f -"*) cat > /dev/null ;;
esac
exit 0
"#;

struct Run {
    output: Output,
    calls: Vec<String>,
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let fakes = tempfile::tempdir().expect("temp dir");
    for tool in ["kubectl", "kind", "docker", "minikube"] {
        let path = fakes.path().join(tool);
        std::fs::write(&path, FAKE).expect("write fake");
        let status = Command::new("chmod").arg("+x").arg(&path).status().expect("chmod");
        assert!(status.success());
    }
    let calls = fakes.path().join("calls");
    std::fs::write(&calls, "").expect("calls file");
    let path = format!("{}:{}", fakes.path().display(), std::env::var("PATH").expect("PATH"));
    let output = Command::new("bash")
        .arg(manifests::repo().join("scripts/dev.sh"))
        .args(args)
        .current_dir(manifests::repo())
        .env("PATH", path)
        .env("CALLS", &calls)
        .env("IMAGE_TAG", "0.1.0")
        .env_remove("SURGE_CONTEXT")
        .env_remove("SURGE_ALLOW_CONTEXT")
        .envs(env.iter().copied())
        .output()
        .expect("run dev.sh");
    let calls = std::fs::read_to_string(Path::new(&calls)).expect("calls").lines().map(str::to_owned).collect();
    Run { output, calls }
}

fn kubectl_calls(run: &Run) -> Vec<&String> {
    run.calls.iter().filter(|c| c.starts_with("kubectl ")).collect()
}

#[test]
fn another_context_is_refused_before_anything_runs() {
    for target in ["undeploy", "dev", "status"] {
        let refused = run(&[target], &[("SURGE_CONTEXT", "prod-eu-1")]);
        assert!(!refused.output.status.success(), "{target} on a foreign context must fail");
        let stderr = String::from_utf8_lossy(&refused.output.stderr);
        assert!(
            stderr.contains("refusing context 'prod-eu-1'") && stderr.contains("SURGE_ALLOW_CONTEXT=yes"),
            "{stderr}"
        );
        assert!(refused.calls.is_empty(), "{target} called {:?} before refusing", refused.calls);
    }
}

#[test]
fn every_kubectl_call_names_the_kind_context_or_the_one_opted_into() {
    let run_default = run(&["status"], &[]);
    assert!(run_default.output.status.success(), "{}", String::from_utf8_lossy(&run_default.output.stderr));
    let calls = kubectl_calls(&run_default);
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|c| c.starts_with("kubectl --context kind-surge ")), "{calls:?}");

    let opted = run(&["status"], &[("SURGE_CONTEXT", "minikube"), ("SURGE_ALLOW_CONTEXT", "yes")]);
    assert!(opted.output.status.success());
    assert!(kubectl_calls(&opted).iter().all(|c| c.starts_with("kubectl --context minikube ")));
}

#[test]
fn make_dev_upgrades_an_old_keda_loads_archives_and_leaves_the_load_jobs_alone() {
    let old = run(&["dev"], &[("FAKE_KEDA_VERSION", "2.17.2")]);
    let stdout = String::from_utf8_lossy(&old.output.stdout);
    assert!(old.output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&old.output.stderr));
    let has = |needle: &str| old.calls.iter().any(|c| c.contains(needle));
    assert!(stdout.contains("KEDA 2.17.2 is older than 2.20.2: upgrading"), "{stdout}");
    assert!(has(
        "apply --server-side --force-conflicts -f https://github.com/kedacore/keda/releases/download/v2.20.2/"
    ));
    // Images through an archive (kind load docker-image fails with the containerd image store).
    assert!(has("docker save -o"), "{:?}", old.calls);
    assert!(has("kind load image-archive") && !has("kind load docker-image"), "{:?}", old.calls);
    // The overlay without the Jobs: a re-run must not suspend a running load.
    let apply =
        old.calls.iter().find(|c| c.contains("apply -k kubernetes-manifests/overlays/development")).expect("apply -k");
    assert!(apply.contains("-l app.kubernetes.io/component!=load-generator"), "{apply}");
    assert!(kubectl_calls(&old).iter().all(|c| c.starts_with("kubectl --context kind-surge ")));

    let current = run(&["dev"], &[("FAKE_KEDA_VERSION", "2.20.2")]);
    assert!(current.output.status.success());
    assert!(String::from_utf8_lossy(&current.output.stdout).contains("KEDA 2.20.2 already installed"));
    assert!(!current.calls.iter().any(|c| c.contains("kedacore/keda/releases")), "a current KEDA is left alone");
}

#[test]
fn make_load_deletes_in_the_foreground_and_waits_on_the_jobs_own_status() {
    let load = run(&["load", "heavy"], &[]);
    assert!(load.output.status.success(), "{}", String::from_utf8_lossy(&load.output.stderr));
    let kubectl = kubectl_calls(&load);
    let delete = kubectl.iter().position(|c| c.contains("delete job load-heavy")).expect("delete");
    assert!(
        kubectl[delete].contains("--cascade=foreground") && kubectl[delete].contains("--wait=true"),
        "{}",
        kubectl[delete]
    );
    let apply = kubectl
        .iter()
        .position(|c| c.contains("apply -f kubernetes-manifests/components/load-generator/job-heavy.yaml"))
        .expect("apply");
    let wait = kubectl.iter().position(|c| c.contains("wait job/load-heavy")).expect("wait on the Job");
    let logs = kubectl.iter().position(|c| c.contains("logs -f job/load-heavy")).expect("logs");
    assert!(delete < apply && apply < wait && wait < logs, "{kubectl:?}");
    assert!(!kubectl.iter().any(|c| c.contains("-l job-name=")), "no pod-label wait an old pod could satisfy");
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
            assert!(script.contains(&format!("create secret generic {name}")), "make dev creates {resource}");
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
    // The lines the script rewrites (the Job's name, its --test argument, its removal on finishing) are there.
    assert!(job.contains(&format!("\n  name: load-{profile}\n")), "{job_file} names load-{profile}");
    assert!(job.contains(&format!("- --test={profile}\n")), "{job_file} runs --test={profile}");
    assert!(job.contains("\n  ttlSecondsAfterFinished: 0\n"), "{job_file}: e2e keeps its Job by rewriting this");
}

#[test]
fn make_e2e_reads_its_promise_from_the_load_generator_table() {
    let script = std::fs::read_to_string(manifests::repo().join("scripts/dev.sh")).expect("dev.sh");
    let start = script.find("e2e_expectations() {").expect("e2e_expectations");
    let body = &script[start..start + script[start..].find("\n}\n").expect("end") + 3];
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("{body}\nE2E_PROFILE=heavy E2E_TABLE=kubernetes-manifests/components/load-generator/README.md e2e_expectations"))
        .current_dir(manifests::repo())
        .output()
        .expect("bash");
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    // The same row the closed-loop test reads: peak 7-10 replicas, reached by 6 min, back by 10 min.
    let table =
        std::fs::read_to_string(manifests::repo().join("kubernetes-manifests/components/load-generator/README.md"))
            .expect("README");
    let row = table.lines().find(|l| l.starts_with("| `heavy` |")).expect("heavy row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let (low, high) = cells[3].split_once('-').expect("peak range");
    let minutes = |cell: &str| cell.trim_end_matches(" min").to_owned();
    assert_eq!(printed, format!("{low} {high} {} {}", minutes(cells[4]), minutes(cells[6])), "from {row}");
}

#[test]
fn make_deploy_production_needs_keda_and_creates_grafanas_secret_before_applying() {
    let opted = [("SURGE_CONTEXT", "prod-eu-1"), ("SURGE_ALLOW_CONTEXT", "yes")];
    let refused = run(&["production"], &[("SURGE_CONTEXT", "prod-eu-1")]);
    assert!(!refused.output.status.success() && refused.calls.is_empty(), "no opt-in, no call: {:?}", refused.calls);

    for keda in ["", "2.17.2"] {
        let without = run(&["production"], &[opted[0], opted[1], ("FAKE_KEDA_VERSION", keda)]);
        let stderr = String::from_utf8_lossy(&without.output.stderr);
        assert!(!without.output.status.success(), "KEDA {keda:?} must stop it");
        assert!(stderr.contains("needs KEDA 2.20.2") && stderr.contains("keda-2.20.2.yaml"), "{stderr}");
        assert!(!without.calls.iter().any(|c| c.contains(" apply ")), "nothing applied: {:?}", without.calls);
        assert!(!without.calls.iter().any(|c| c.contains("kedacore")), "KEDA is never installed in production");
    }

    let deployed = run(&["production"], &[opted[0], opted[1], ("FAKE_KEDA_VERSION", "2.20.2")]);
    assert!(deployed.output.status.success(), "{}", String::from_utf8_lossy(&deployed.output.stderr));
    let kubectl = kubectl_calls(&deployed);
    assert!(kubectl.iter().all(|c| c.starts_with("kubectl --context prod-eu-1 ")), "{kubectl:?}");
    let secret = kubectl.iter().position(|c| c.contains("create secret generic grafana-admin")).expect("the Secret");
    let apply =
        kubectl.iter().position(|c| c.contains("apply -k kubernetes-manifests/overlays/production")).expect("apply -k");
    assert!(secret < apply, "Grafana's Secret exists before Grafana: {kubectl:?}");
    let password = kubectl[secret].split("--from-literal=password=").nth(1).expect("a password");
    assert!(password.len() >= 16, "a random password: {password:?}");
    // The Grafana Deployment of the production render reads exactly this Secret.
    let objects = manifests::overlay("production").objects;
    let grafana = manifests::find(&objects, "Deployment", "grafana").expect("grafana");
    assert!(grafana.to_string().contains("\"name\":\"grafana-admin\""), "Grafana reads grafana-admin");
}
