//! Every rendered object against the Kubernetes 1.30 schemas (kubernetes-validate --strict) and, for KEDA's
//! kinds, against KEDA's CRD schema from the `@kubernetes-models/keda` registry package.

use std::process::Command;

use crate::manifests::{self, find};
use crate::stdin::run_with_stdin;

/// Kinds kubernetes-validate has no schema for, each validated against its own CRD schema below.
const CRD_KINDS: [&str; 2] = ["ScaledObject", "TriggerAuthentication"];

#[test]
fn every_rendering_passes_kubernetes_validate_strict() {
    for rendering in manifests::all() {
        let output = run_with_stdin(
            Command::new("kubernetes-validate").args(["-k", "1.30.0", "--strict", "-"]),
            rendering.yaml.as_bytes(),
        );
        let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{}:\n{report}", rendering.name);
        for line in report.lines().filter(|l| !l.starts_with("INFO")) {
            // A WARN means no schema was found and nothing was checked: only CRD kinds may be skipped here.
            let crd = CRD_KINDS.iter().any(|kind| line.contains(&format!("kind {kind} ")));
            assert!(line.starts_with("WARN") && crd, "{}: unexpected report line: {line}", rendering.name);
        }
        let validated = report.lines().filter(|l| l.starts_with("INFO - passed for resource")).count();
        let crds = rendering.objects.iter().filter(|o| CRD_KINDS.iter().any(|k| o["kind"] == *k)).count();
        assert_eq!(validated + crds, rendering.objects.len(), "{}: every object validated:\n{report}", rendering.name);
    }
}

fn keda_validate(objects: &[serde_json::Value]) -> (bool, String) {
    let script = manifests::repo().join("scripts/keda-schema/validate.mjs");
    let input = serde_json::to_vec(objects).expect("JSON");
    let output = run_with_stdin(Command::new("node").arg(script), &input);
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}

#[test]
fn scaled_objects_pass_kedas_own_crd_schema() {
    for rendering in manifests::all() {
        let keda: Vec<_> =
            rendering.objects.iter().filter(|o| o["apiVersion"] == "keda.sh/v1alpha1").cloned().collect();
        if keda.is_empty() {
            continue;
        }
        let (ok, report) = keda_validate(&keda);
        assert!(ok, "{}: {report}", rendering.name);
        assert_eq!(report.lines().filter(|l| l.starts_with("ok ")).count(), keda.len(), "{}: {report}", rendering.name);
    }
}

#[test]
fn the_keda_check_rejects_unknown_fields_and_bad_values() {
    let mut rendering = manifests::overlay("production").objects;
    let index = rendering.iter().position(|o| o["kind"] == "ScaledObject").expect("a ScaledObject");
    let mut broken = rendering.swap_remove(index);
    assert!(find(&[broken.clone()], "ScaledObject", "consumer").is_some());
    broken["spec"]["minReplicas"] = 2.into();
    broken["spec"]["triggers"][0]["metricTyp"] = "Value".into();
    broken["spec"]["fallback"]["behavior"] = "sometimes".into();
    let (ok, report) = keda_validate(&[broken]);
    assert!(!ok);
    for expected in ["unknown field /spec/minReplicas", "unknown field /spec/triggers/0/metricTyp", "fallback/behavior"]
    {
        assert!(report.contains(expected), "{expected} not reported: {report}");
    }
}

/// components/queue-trigger on the development overlay: KEDA's schema accepts the redis-streams trigger and its
/// TriggerAuthentication, and read as KEDA's scaler reads it (surge_keda::redis_streams, ported from
/// redis_streams_scaler.go) it counts XLEN of the very stream the consumer writes, against the same threshold as the
/// Prometheus backlog trigger it replaces, with the password of the Secret `make dev` creates.
#[test]
fn the_redis_streams_trigger_reads_the_stream_the_consumer_writes() {
    use clap::Parser;
    use surge_keda::redis_streams::{Count, RedisStreams};

    let dir = surge_harness::compose::compose(
        &manifests::repo(),
        "development-trigger",
        None,
        &["overlays/development"],
        &["components/queue-trigger"],
    );
    let objects = manifests::parse(&manifests::kustomize(&dir));
    let keda: Vec<_> = objects.iter().filter(|o| o["apiVersion"] == "keda.sh/v1alpha1").cloned().collect();
    let (ok, report) = keda_validate(&keda);
    assert!(ok && report.contains("ok TriggerAuthentication redis-auth"), "{report}");

    let so = find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
    let trigger = &so["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "redis-streams");
    let scaler = RedisStreams::from_metadata(&trigger["metadata"]).expect("KEDA's rules accept it");
    assert_eq!(scaler.count, Count::StreamLength, "no consumer group: XLEN, which the consumer keeps to the backlog");
    let settings = surge_consumer::configuration::Settings::try_parse_from(["consumer"]).expect("defaults");
    assert_eq!(scaler.stream, format!("{}:tasks", settings.queue_key), "the stream the consumer writes");
    let replaced = manifests::overlay("development").objects;
    let backlog = &find(&replaced, "ScaledObject", "consumer").expect("ScaledObject")["spec"]["triggers"][0];
    let threshold: f64 = backlog["metadata"]["threshold"].as_str().expect("threshold").parse().expect("number");
    assert_eq!((trigger["name"].as_str(), scaler.target), (backlog["name"].as_str(), threshold));

    let auth = find(&objects, "TriggerAuthentication", trigger["authenticationRef"]["name"].as_str().expect("ref"))
        .expect("the TriggerAuthentication it names");
    assert_eq!(auth["spec"]["secretTargetRef"][0]["name"], "redis-auth");
    let script = std::fs::read_to_string(manifests::repo().join("scripts/dev.sh")).expect("dev.sh");
    assert!(script.contains("random_secret redis-auth"), "make dev creates the Secret it reads");
    let (host, port) = trigger["metadata"]["address"].as_str().expect("address").rsplit_once(':').expect("host:port");
    assert_eq!(host, "redis.surge.svc");
    let service = find(&objects, "Service", "redis").expect("the queue's Service");
    assert_eq!(service["spec"]["ports"][0]["port"].to_string(), port);
}
