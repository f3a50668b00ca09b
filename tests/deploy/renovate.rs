//! `renovate.json` covers what the project pins: every third-party image the manifests run, the monitoring stack as
//! one group, and the releases `make dev` installs (their lines exist where the regex managers look).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::manifests::{self, pod_spec};

fn config() -> Value {
    let text = std::fs::read_to_string(manifests::repo().join("renovate.json")).expect("renovate.json");
    serde_json::from_str(&text).expect("renovate.json is JSON")
}

/// The image repositories (no tag) a rendering's pods run, ours left out.
fn third_party_images(objects: &[Value]) -> BTreeSet<String> {
    let mut images = BTreeSet::new();
    for object in objects {
        let Some(pod) = pod_spec(object) else { continue };
        for key in ["initContainers", "containers"] {
            for container in pod[key].as_array().into_iter().flatten() {
                let image = container["image"].as_str().expect("image");
                let repository = image.split('@').next().and_then(|i| i.rsplit_once(':')).map_or(image, |(r, _)| r);
                if !repository.contains("surge-") {
                    images.insert(repository.to_owned());
                }
            }
        }
    }
    images
}

#[test]
fn the_monitoring_stack_updates_as_one_group() {
    let config = config();
    let group = config["packageRules"]
        .as_array()
        .expect("packageRules")
        .iter()
        .find(|rule| rule["groupName"] == "monitoring stack")
        .expect("a monitoring stack group");
    let grouped: BTreeSet<&str> =
        group["matchPackageNames"].as_array().expect("names").iter().filter_map(Value::as_str).collect();
    let monitoring = manifests::component_alone("monitoring");
    for image in third_party_images(&monitoring.objects) {
        assert!(grouped.contains(image.as_str()), "{image} runs in the monitoring component but is not in its group");
    }
}

#[test]
fn every_pinned_release_has_a_manager_that_finds_it() {
    let config = config();
    let managed = config["kubernetes"]["managerFilePatterns"].as_array().expect("kubernetes manager patterns");
    assert!(managed.iter().any(|p| p.as_str().is_some_and(|p| p.contains("kubernetes-manifests"))));
    for manager in config["customManagers"].as_array().expect("customManagers") {
        let pattern = manager["managerFilePatterns"][0].as_str().expect("file pattern");
        // The patterns are anchored literal paths: `/^scripts/dev\.sh$/` names scripts/dev.sh.
        let path = pattern.trim_matches('/').trim_start_matches('^').trim_end_matches('$').replace("\\.", ".");
        let text = std::fs::read_to_string(manifests::repo().join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        for regex in manager["matchStrings"].as_array().expect("matchStrings").iter().filter_map(Value::as_str) {
            let literal = &regex[..regex.find('(').expect("a capture group")];
            assert!(text.contains(literal), "{path} no longer has the line `{literal}…` renovate updates");
        }
    }
}
