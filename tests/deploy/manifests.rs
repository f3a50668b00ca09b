//! Renders the overlays and components with `kubectl kustomize` and parses what comes out.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn kustomize(dir: &Path) -> String {
    surge_harness::compose::render(dir)
}

pub fn parse(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| serde::Deserialize::deserialize(document).expect("rendered YAML parses"))
        .filter(|object: &Value| !object.is_null())
        .collect()
}

/// One rendered kustomization: a name for messages, the YAML, the objects.
pub struct Rendering {
    pub name: String,
    pub yaml: String,
    pub objects: Vec<Value>,
}

fn render(name: String, dir: &Path) -> Rendering {
    let yaml = kustomize(dir);
    let objects = parse(&yaml);
    Rendering { name, yaml, objects }
}

pub fn overlay(name: &str) -> Rendering {
    render(format!("overlays/{name}"), &repo().join("kubernetes-manifests/overlays").join(name))
}

fn subdirectories(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.path().join("kustomization.yaml").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The components a component patches and must come after: kustomize refuses to replace what is not there (the queue
/// component replaces components/keda's ScaledObject and its ConfigMap copy).
fn builds_on(name: &str) -> &'static [&'static str] {
    match name {
        "queue" => &["keda"],
        "queue-trigger" => &["keda", "queue"],
        _ => &[],
    }
}

/// A component on its own (one that builds on another cannot render alone).
pub fn component_alone(name: &str) -> Rendering {
    render(format!("components/{name}"), &repo().join("kubernetes-manifests/components").join(name))
}

/// A component composed with the base, the consumer and what it builds on (patching components need a target).
pub fn component(name: &str) -> Rendering {
    let mut components = vec!["consumer"];
    components.extend(builds_on(name));
    if name != "consumer" {
        components.push(name);
    }
    let paths: Vec<String> = components.iter().map(|c| format!("components/{c}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let dir = surge_harness::compose::compose(&repo(), name, Some("surge"), &["base"], &paths);
    render(format!("base + {}", components.join(" + ")), &dir)
}

pub fn overlay_names() -> Vec<String> {
    subdirectories(&repo().join("kubernetes-manifests/overlays"))
}

pub fn component_names() -> Vec<String> {
    subdirectories(&repo().join("kubernetes-manifests/components"))
}

/// Every overlay, and every component composed with base and consumer.
pub fn all() -> Vec<Rendering> {
    let mut renderings: Vec<Rendering> = overlay_names().iter().map(|o| overlay(o)).collect();
    renderings.extend(component_names().iter().map(|c| component(c)));
    renderings
}

/// The object of this kind and name; a generated ConfigMap (`name-<hash>`) is found by its base name.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"].as_str().is_some_and(|n| is_named(n, name)))
}

/// `name` itself, or `name-<10-character hash>` as kustomize's generators write it (the harness's own rule).
pub fn is_named(actual: &str, name: &str) -> bool {
    surge_keda::scaled_object::is_named(actual, name)
}

pub fn kinds(objects: &[Value], kind: &str) -> Vec<Value> {
    objects.iter().filter(|o| o["kind"] == kind).cloned().collect()
}

/// The pod template of a workload (Deployment or Job), if it is one.
pub fn pod_spec(object: &Value) -> Option<&Value> {
    matches!(object["kind"].as_str(), Some("Deployment" | "Job" | "StatefulSet" | "DaemonSet"))
        .then(|| &object["spec"]["template"]["spec"])
}

/// The Job files users apply on their own with `kubectl apply -f`.
pub fn job_files() -> Vec<(String, Value)> {
    let dir = repo().join("kubernetes-manifests/components/load-generator");
    let mut files: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("read load-generator dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("job-")))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read job file");
            let mut objects = parse(&text);
            assert_eq!(objects.len(), 1, "{} holds one Job", p.display());
            (p.file_name().expect("name").to_string_lossy().into_owned(), objects.remove(0))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The consumer Deployment's pod template and its first container.
pub fn consumer_pod(objects: &[Value]) -> (Value, Value) {
    let template = &find(objects, "Deployment", "consumer").expect("Deployment consumer")["spec"]["template"];
    (template.clone(), template["spec"]["containers"][0].clone())
}

pub fn triggers(scaled_object: &Value) -> Vec<Value> {
    scaled_object["spec"]["triggers"].as_array().expect("triggers").clone()
}

/// Every panel of every dashboard in grafana/dashboards.
pub fn dashboard_panels() -> Vec<Value> {
    let dir = repo().join("grafana/dashboards");
    let mut panels = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dashboards") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read dashboard");
        let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
        panels.extend(dashboard["panels"].as_array().expect("panels").iter().cloned());
    }
    panels
}

/// The query expressions of a panel (none for a text panel).
pub fn expressions(panel: &Value) -> Vec<String> {
    let targets = panel["targets"].as_array().into_iter().flatten();
    targets.map(|t| t["expr"].as_str().expect("expr").to_owned()).collect()
}

/// A dashboard expression with its template variables as Grafana fills them for the development overlay.
pub fn substituted(expr: &str) -> String {
    let pairs = [("$__rate_interval", "1m"), ("$namespace", "surge"), ("$deployment", "consumer"), ("$pod", ".*")];
    pairs.iter().fold(expr.to_owned(), |expr, (variable, value)| expr.replace(variable, value))
}
