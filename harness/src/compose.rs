//! A kustomization composed of the repository's own `kubernetes-manifests` pieces (an overlay or the base, then
//! components), rendered by the real kustomize: what the tests deploy where no overlay in the repository composes it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `name`'s kustomization under `<repo>/target/kustomize-compose/` (kustomize takes only paths relative to the
/// kustomization, so it lives inside the repository) with `resources` and `components` (paths under
/// `kubernetes-manifests/`) and, when `namespace` is given, that namespace. Returns its directory.
pub fn compose(repo: &Path, name: &str, namespace: Option<&str>, resources: &[&str], components: &[&str]) -> PathBuf {
    let dir = repo.join("target/kustomize-compose").join(name);
    std::fs::create_dir_all(&dir).expect("create the composition's directory");
    let list = |paths: &[&str]| -> String {
        paths.iter().map(|p| format!("  - ../../../kubernetes-manifests/{p}\n")).collect()
    };
    let mut text = String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
    if let Some(namespace) = namespace {
        text += &format!("namespace: {namespace}\n");
    }
    text += &format!("resources:\n{}", list(resources));
    if !components.is_empty() {
        text += &format!("components:\n{}", list(components));
    }
    std::fs::write(dir.join("kustomization.yaml"), text).expect("write the composition");
    dir
}

/// `kubectl kustomize DIR`'s output; panics with kustomize's error when it refuses.
pub fn render(dir: &Path) -> String {
    let output = Command::new("kubectl").arg("kustomize").arg(dir).output().expect("kubectl is installed");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}
