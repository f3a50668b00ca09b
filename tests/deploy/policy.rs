//! Policy over the rendered objects: hardened, bounded containers; pinned images; no plaintext secrets;
//! the recommended labels; and the shape each overlay and component promises.

use std::process::Command;

use serde_json::Value;

use crate::manifests::{self, find, kinds, pod_spec, triggers};

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"].iter().flat_map(|key| pod[key].as_array().into_iter().flatten()).collect()
}

#[test]
fn every_container_is_non_root_read_only_unprivileged_and_bounded() {
    for rendering in manifests::all() {
        for object in &rendering.objects {
            let Some(pod) = pod_spec(object) else { continue };
            let workload = format!("{}: {} {}", rendering.name, object["kind"], object["metadata"]["name"]);
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{workload}");
            for container in containers(pod) {
                let at = format!("{workload} container {}", container["name"]);
                let security = &container["securityContext"];
                let non_root = security["runAsNonRoot"] == true || pod["securityContext"]["runAsNonRoot"] == true;
                assert!(non_root, "{at}: runAsNonRoot");
                assert_eq!(security["readOnlyRootFilesystem"], true, "{at}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{at}");
                assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{at}");
                for bound in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            container["resources"][bound][resource].is_string(),
                            "{at}: resources.{bound}.{resource}"
                        );
                    }
                }
                let image = container["image"].as_str().expect("image");
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{at}: image {image} is not pinned");
            }
        }
    }
}

#[test]
fn no_plaintext_passwords() {
    for rendering in manifests::all() {
        assert!(kinds(&rendering.objects, "Secret").is_empty(), "{}: secrets are created out of band", rendering.name);
        for object in &rendering.objects {
            let Some(pod) = pod_spec(object) else { continue };
            for container in containers(pod) {
                for env in container["env"].as_array().into_iter().flatten() {
                    let name = env["name"].as_str().unwrap_or("").to_ascii_uppercase();
                    let sensitive = ["PASSWORD", "SECRET", "TOKEN", "API_KEY"].iter().any(|s| name.contains(s));
                    assert!(
                        !(sensitive && env.get("value").is_some()),
                        "{}: {} sets {name} as a literal; use secretKeyRef",
                        rendering.name,
                        container["name"]
                    );
                }
            }
        }
        assert!(!rendering.yaml.to_lowercase().contains("password: "), "{}: a literal password", rendering.name);
    }
}

#[test]
fn every_object_carries_the_recommended_labels_and_namespace() {
    for rendering in manifests::all() {
        for object in &rendering.objects {
            let at = format!("{}: {} {}", rendering.name, object["kind"], object["metadata"]["name"]);
            assert_eq!(object["metadata"]["labels"]["app.kubernetes.io/part-of"], "surge", "{at}");
            let cluster_scoped =
                matches!(object["kind"].as_str(), Some("Namespace" | "ClusterRole" | "ClusterRoleBinding"));
            if !cluster_scoped {
                assert_eq!(object["metadata"]["namespace"], "surge", "{at}");
            }
            if object["kind"] != "Namespace" {
                assert!(
                    object["metadata"]["labels"]["app.kubernetes.io/name"].is_string(),
                    "{at}: app.kubernetes.io/name"
                );
            }
        }
    }
}

#[test]
fn the_consumer_leaves_replicas_to_the_autoscaler_and_outlives_its_drain() {
    for rendering in manifests::all() {
        let Some(deployment) = find(&rendering.objects, "Deployment", "consumer") else { continue };
        assert!(deployment["spec"].get("replicas").is_none(), "{}: replicas belong to the autoscaler", rendering.name);
        let pod = &deployment["spec"]["template"]["spec"];
        let args: Vec<&str> =
            pod["containers"][0]["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
        let flag = |name: &str| -> u64 {
            args.iter().find_map(|a| a.strip_prefix(&format!("--{name}="))).and_then(|v| v.parse().ok()).expect(name)
        };
        let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("grace period");
        assert!(
            grace > flag("shutdown-timeout-secs"),
            "{}: the kubelet would kill a drain in progress",
            rendering.name
        );
        let env: Vec<&str> =
            pod["containers"][0]["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
        for name in ["POD_NAME", "POD_NAMESPACE", "POD_IP", "NODE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "LOKI_URL"] {
            assert!(env.contains(&name), "{}: {name} missing", rendering.name);
        }
        assert!(find(&rendering.objects, "PodDisruptionBudget", "consumer").is_some(), "{}: a PDB", rendering.name);
    }
}

/// Every Prometheus trigger of every overlay reads 0 when the consumer exports nothing to count, and nothing (an error,
/// with `ignoreNullValues: "false"`, that KEDA counts toward the fallback) when no consumer target is scraped live: a
/// Prometheus that lost its targets must not read as an idle Deployment.
#[test]
fn every_trigger_reads_zero_only_while_a_consumer_target_is_live() {
    let guard = r#" or vector(0)) and on() count(up{namespace="surge", app_kubernetes_io_name="consumer"} == 1)"#;
    for overlay in manifests::overlay_names() {
        let objects = manifests::overlay(&overlay).objects;
        let so = find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
        for trigger in triggers(so).iter().filter(|t| t["type"] == "prometheus") {
            let query = trigger["metadata"]["query"].as_str().expect("query").split_whitespace().collect::<Vec<_>>();
            let query = query.join(" ");
            assert!(query.starts_with('(') && query.ends_with(guard), "{overlay}: {query}");
            assert_eq!(trigger["metadata"]["ignoreNullValues"], "false", "{overlay}: an empty result is an error");
        }
    }
}

#[test]
fn the_scaled_object_has_the_five_named_triggers_and_a_safe_fallback() {
    let objects = manifests::overlay("development").objects;
    let so = find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
    assert_eq!((&so["spec"]["minReplicaCount"], &so["spec"]["maxReplicaCount"]), (&1.into(), &10.into()));
    assert_eq!(so["spec"]["fallback"]["behavior"], "currentReplicasIfHigher");
    let behavior = &so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
    assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 300);
    assert_eq!(behavior["scaleUp"]["stabilizationWindowSeconds"], 0);
    let by_name: Vec<(String, String, String)> = triggers(so)
        .iter()
        .map(|t| {
            assert_eq!(t["type"], "prometheus");
            assert!(t["metadata"].get("metricName").is_none(), "metricName is deprecated");
            assert_eq!(t["metadata"]["ignoreNullValues"], "false");
            let query = t["metadata"]["query"].as_str().expect("query");
            assert!(!query.contains("instance"), "select by relabelled labels, never instance: {query}");
            assert!(query.contains(r#"namespace="surge""#) && query.contains(r#"app_kubernetes_io_name="consumer""#));
            (
                t["name"].as_str().expect("named").to_owned(),
                t["metricType"].as_str().expect("metricType").to_owned(),
                t["metadata"]["threshold"].as_str().expect("threshold").to_owned(),
            )
        })
        .collect();
    // The development overlay's backlog is the shared one (components/queue): waiting plus running, so 4 per pod.
    let expected = [
        ("backlog", "AverageValue", "4"),
        ("cpu-demand", "AverageValue", "0.8"),
        ("task-stretch-p95", "Value", "1.5"),
        ("request-rate", "AverageValue", "1"),
        ("allocator-pressure", "AverageValue", "32"),
    ];
    assert_eq!(by_name, expected.map(|(n, m, t)| (n.to_owned(), m.to_owned(), t.to_owned())));
}

/// The load Jobs' autoscaling table (`generator --scaled-object`) reads the `scaledobject` ConfigMap: it must hold the
/// ScaledObject KEDA is given, or a Job would report triggers KEDA does not evaluate (the queue component replaces both).
#[test]
fn the_load_jobs_copy_of_the_scaled_object_is_the_one_keda_gets() {
    for overlay in manifests::overlay_names() {
        let objects = manifests::overlay(&overlay).objects;
        // Only where the load Jobs run (production has the copy from components/keda and no Job to read it).
        if kinds(&objects, "Job").is_empty() {
            continue;
        }
        let copy = find(&objects, "ConfigMap", "scaledobject").expect("the Jobs' copy");
        let so = find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
        let text = copy["data"]["scaledobject.yaml"].as_str().expect("scaledobject.yaml");
        let copied: Value = serde_yaml_ng::from_str(text).expect("YAML");
        assert_eq!(copied["spec"], so["spec"], "{overlay}: the Jobs' copy differs from the ScaledObject");
    }
    let development = manifests::overlay("development").objects;
    let copy = find(&development, "ConfigMap", "scaledobject").expect("the Jobs' copy");
    assert!(copy["data"]["scaledobject.yaml"].as_str().expect("text").contains("max(consumer_queue_backlog"));
}

#[test]
fn overlays_compose_what_they_promise() {
    let development = manifests::overlay("development").objects;
    for (kind, name) in
        [("Deployment", "grafana"), ("Deployment", "loki"), ("Deployment", "tempo"), ("Service", "consumer-nodeport")]
    {
        assert!(find(&development, kind, name).is_some(), "development has {kind} {name}");
    }
    assert_eq!(find(&development, "Service", "consumer-nodeport").expect("nodeport")["spec"]["type"], "NodePort");
    let jobs = kinds(&development, "Job");
    assert_eq!(jobs.len(), manifests::job_files().len(), "development carries every load Job");
    assert!(jobs.iter().all(|j| j["spec"]["suspend"] == true), "deploying must not start load");
    let consumer =
        &find(&development, "Deployment", "consumer").expect("consumer")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(consumer["imagePullPolicy"], "IfNotPresent");
    let env =
        |consumer: &Value, name: &str| consumer["env"].as_array().is_some_and(|e| e.iter().any(|v| v["name"] == name));
    assert!(
        env(consumer, "QUEUE_URL") && find(&development, "Deployment", "redis").is_some(),
        "development: shared backlog"
    );
    let memory = manifests::overlay("development-memory").objects;
    let consumer =
        &find(&memory, "Deployment", "consumer").expect("consumer")["spec"]["template"]["spec"]["containers"][0];
    assert!(!env(consumer, "QUEUE_URL") && find(&memory, "Deployment", "redis").is_none(), "development-memory");

    let production = manifests::overlay("production").objects;
    assert!(kinds(&production, "Job").is_empty(), "no load generator in production");
    let so = find(&production, "ScaledObject", "consumer").expect("ScaledObject");
    assert_eq!(so["spec"]["minReplicaCount"], 2);
    let types: Vec<Value> = triggers(so).iter().map(|t| t["type"].clone()).collect();
    assert!(types.contains(&"cpu".into()) && types.contains(&"memory".into()), "{types:?}");
    let pod = &find(&production, "Deployment", "consumer").expect("consumer")["spec"]["template"]["spec"];
    assert!(pod["affinity"]["podAntiAffinity"].is_object());

    let hpa = manifests::component("hpa");
    assert!(find(&hpa.objects, "HorizontalPodAutoscaler", "consumer").is_some());
    assert!(kinds(&hpa.objects, "ScaledObject").is_empty(), "hpa is the baseline without KEDA");
    let (alone, affinity) = (manifests::component_alone("session-affinity"), manifests::component("session-affinity"));
    assert!(alone.objects.is_empty(), "session-affinity only patches");
    assert_eq!(find(&affinity.objects, "Service", "consumer").expect("service")["spec"]["sessionAffinity"], "ClientIP");
}

/// The ConfigMaps each Deployment mounts.
fn mounted_config_maps(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["configMap"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// The names every `configMapGenerator` of the repository declares with kustomize's content hash (not
/// `disableNameSuffixHash`), read from the kustomization files themselves.
fn hashed_generator_names() -> Vec<String> {
    let mut names = Vec::new();
    let mut dirs = vec![manifests::repo().join("kubernetes-manifests"), manifests::repo().join("grafana")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").map(|e| e.expect("entry").path()) {
            if entry.is_dir() {
                dirs.push(entry);
            } else if entry.file_name().is_some_and(|n| n == "kustomization.yaml") {
                let text = std::fs::read_to_string(&entry).expect("kustomization");
                let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
                for generator in yaml["configMapGenerator"].as_sequence().into_iter().flatten() {
                    if generator["options"]["disableNameSuffixHash"].as_bool() != Some(true) {
                        names.push(generator["name"].as_str().expect("generator name").to_owned());
                    }
                }
            }
        }
    }
    names
}

#[test]
fn every_mounted_config_is_generated_so_a_change_rolls_its_pods() {
    let generated = hashed_generator_names();
    assert!(generated.iter().any(|n| n == "grafana-dashboards"), "{generated:?}");
    for rendering in manifests::all() {
        for deployment in kinds(&rendering.objects, "Deployment") {
            for name in mounted_config_maps(&deployment) {
                // A hashed generator's name plus kustomize's ten-character suffix: the base comes from the
                // kustomization files, not from the rendered name (where any ten-character last segment would pass).
                let hashed = generated.iter().any(|base| manifests::is_named(&name, base) && name != *base);
                assert!(
                    hashed,
                    "{}: Deployment {} mounts ConfigMap {name}, which has no content hash: editing it would roll nothing",
                    rendering.name,
                    deployment["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn editing_a_config_file_changes_what_the_deployment_mounts() {
    let copy = tempfile::tempdir().expect("temp dir");
    for dir in ["kubernetes-manifests", "grafana"] {
        let status = Command::new("cp")
            .args(["-r", manifests::repo().join(dir).to_str().expect("path"), copy.path().to_str().expect("path")])
            .status()
            .expect("cp");
        assert!(status.success());
    }
    let overlay = "kubernetes-manifests/overlays/development";
    let before = manifests::parse(&manifests::kustomize(&copy.path().join(overlay)));
    let config = copy.path().join("kubernetes-manifests/components/monitoring/config/prometheus.yml");
    let edited = std::fs::read_to_string(&config).expect("prometheus.yml") + "# an edit\n";
    std::fs::write(&config, edited).expect("edit");
    let after = manifests::parse(&manifests::kustomize(&copy.path().join(overlay)));
    let mounts =
        |objects: &[Value]| mounted_config_maps(find(objects, "Deployment", "prometheus").expect("prometheus"));
    let (old, new) = (mounts(&before), mounts(&after));
    assert_ne!(old, new, "the Prometheus Deployment mounts a new ConfigMap name after an edit, so its pod rolls");
    assert!(new
        .iter()
        .all(|name| after.iter().any(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name.as_str())));
}

#[test]
fn only_network_policies_are_labelled_network_policy_and_each_workload_keeps_its_own_name() {
    for rendering in manifests::all() {
        for object in &rendering.objects {
            let name_label = &object["metadata"]["labels"]["app.kubernetes.io/name"];
            if name_label == "network-policy" {
                assert_eq!(
                    object["kind"], "NetworkPolicy",
                    "{}: {} is labelled network-policy",
                    rendering.name, object
                );
            }
            // `kubectl get deploy,svc -l app.kubernetes.io/name=<name>` finds a workload by its pods' own name.
            if let Some(pod) = object["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"].as_str() {
                assert_eq!(
                    name_label.as_str(),
                    Some(pod),
                    "{}: {} {} is labelled {name_label}, its pods {pod}",
                    rendering.name,
                    object["kind"],
                    object["metadata"]["name"]
                );
            }
        }
    }
}

/// The absolute paths a config file names under keys that say where a program writes.
fn written_paths(config: &serde_yaml_ng::Value, key: &str, found: &mut Vec<String>) {
    match config {
        serde_yaml_ng::Value::Mapping(map) => {
            for (k, v) in map {
                written_paths(v, k.as_str().unwrap_or(""), found);
            }
        }
        serde_yaml_ng::Value::Sequence(items) => items.iter().for_each(|v| written_paths(v, key, found)),
        serde_yaml_ng::Value::String(s)
            if s.starts_with('/') && ["directory", "path", "path_prefix", "dir"].iter().any(|w| key.ends_with(w)) =>
        {
            found.push(s.clone())
        }
        _ => {}
    }
}

#[test]
fn every_path_a_read_only_container_writes_is_a_writable_volume() {
    let objects = manifests::overlay("development").objects;
    let config = |file: &str| {
        let path = manifests::repo().join("kubernetes-manifests/components/monitoring/config").join(file);
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("config")).expect("config parses");
        let mut found = Vec::new();
        written_paths(&value, "", &mut found);
        found
    };
    // Where each program writes: its config's directories, its storage flag, and /tmp for those that create
    // temporary files (Loki's compactor writes retention marker views with os.CreateTemp: grafana/loki#8207;
    // Grafana its sessions and renders). Checked: the consumer, Prometheus' own, and kube-state-metrics write nothing.
    let mut writes: Vec<(&str, Vec<String>)> = vec![
        ("loki", config("loki.yaml")),
        ("tempo", config("tempo.yaml")),
        ("prometheus", vec!["/prometheus".to_owned()]),
        ("grafana", vec!["/var/lib/grafana/data".to_owned()]),
    ];
    assert!(writes[0].1.contains(&"/loki/compactor".to_owned()) && writes[1].1.contains(&"/var/tempo/wal".to_owned()));
    writes[0].1.push("/tmp".to_owned());
    writes[3].1.push("/tmp".to_owned());
    for (name, paths) in writes {
        let deployment = find(&objects, "Deployment", name).unwrap_or_else(|| panic!("Deployment {name}"));
        let pod = &deployment["spec"]["template"]["spec"];
        let writable: Vec<&str> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v.get("emptyDir").is_some() || v.get("persistentVolumeClaim").is_some())
            .filter_map(|v| v["name"].as_str())
            .collect();
        let container = &pod["containers"][0];
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true, "{name}");
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["name"].as_str().is_some_and(|n| writable.contains(&n)))
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        for path in paths {
            assert!(
                mounts.iter().any(|m| path == *m || path.starts_with(&format!("{}/", m.trim_end_matches('/')))),
                "{name} writes {path}, which no writable volume holds (mounted: {mounts:?}) under a read-only root"
            );
        }
    }
}

/// The tests' Redis (harness/src/redis.rs) runs as the queue component's does: append-only, synced as it is.
#[test]
fn the_tests_run_redis_with_the_queue_components_durability() {
    let development = manifests::overlay("development").objects;
    let redis = &find(&development, "Deployment", "redis").expect("redis")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = redis["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let after = |flag: &str| args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied();
    assert_eq!(after("--appendonly"), Some("yes"), "{args:?}");
    assert_eq!(after("--appendfsync"), Some(surge_harness::redis::APPEND_FSYNC), "{args:?}");
}
