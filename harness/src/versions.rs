//! Which Prometheus and Redis a run stood on, beside the ones the manifests deploy: a trajectory rests on the stand-ins'
//! semantics (Debian's Prometheus 2 and Redis 7.0 here, where the manifests pin Prometheus 3 and Redis 8), so every
//! run says which they were, printed at its start and kept in its outline.

use std::process::Command;

use serde_json::{json, Value};

/// The version a stand-in reports, and the one the manifests deploy (`None`: not deployed, or not found).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StandIn {
    pub(crate) name: &'static str,
    pub(crate) ran: Option<String>,
    pub(crate) deployed: Option<String>,
}

/// Prometheus and, with the shared backlog, Redis: what ran and what the rendered `objects` deploy.
pub(crate) fn stand_ins(objects: &[Value], with_redis: bool) -> Vec<StandIn> {
    let mut found = vec![StandIn {
        name: "Prometheus",
        ran: command_output("prometheus", &["--version"]).as_deref().and_then(prometheus_version),
        deployed: deployed_image(objects, "prometheus").as_deref().and_then(image_version),
    }];
    if with_redis {
        found.push(StandIn {
            name: "Redis",
            ran: command_output("redis-server", &["--version"]).as_deref().and_then(redis_version),
            deployed: deployed_image(objects, "redis").as_deref().and_then(image_version),
        });
    }
    found
}

/// One line for the run's start: `stand-ins: Prometheus 2.42.0 (the manifests deploy 3.14.0), …`.
pub(crate) fn line(stand_ins: &[StandIn]) -> String {
    let each: Vec<String> = stand_ins
        .iter()
        .map(|s| {
            format!(
                "{} {} (the manifests deploy {})",
                s.name,
                s.ran.as_deref().unwrap_or("of unknown version"),
                s.deployed.as_deref().unwrap_or("none")
            )
        })
        .collect();
    format!("stand-ins: {}", each.join(", "))
}

/// `{"prometheus": {"ran": …, "deployed": …}, …}` for the outline.
pub(crate) fn outline(stand_ins: &[StandIn]) -> Value {
    let mut map = serde_json::Map::new();
    for s in stand_ins {
        map.insert(s.name.to_lowercase(), json!({"ran": s.ran, "deployed": s.deployed}));
    }
    Value::Object(map)
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
}

/// `prometheus, version 2.42.0+ds (branch: debian/sid, …)` → `2.42.0`.
fn prometheus_version(text: &str) -> Option<String> {
    let after = text.split("version ").nth(1)?;
    Some(after.split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?.to_owned()).filter(|v| !v.is_empty())
}

/// `Redis server v=7.0.15 sha=00000000:0 …` → `7.0.15`.
fn redis_version(text: &str) -> Option<String> {
    let after = text.split("v=").nth(1)?;
    Some(after.split_whitespace().next()?.to_owned()).filter(|v| !v.is_empty())
}

/// The image of the Deployment named `name`'s first container.
fn deployed_image(objects: &[Value], name: &str) -> Option<String> {
    objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == name)
        .and_then(|o| o["spec"]["template"]["spec"]["containers"][0]["image"].as_str())
        .map(str::to_owned)
}

/// `prom/prometheus:v3.14.0` → `3.14.0`; `redis:7.4.9@sha256:…` → `7.4.9`.
fn image_version(image: &str) -> Option<String> {
    let tag = image.split('@').next()?.rsplit_once(':')?.1;
    Some(tag.trim_start_matches('v').to_owned()).filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_each_program_and_image_says() {
        let cases: [(&str, Option<&str>); 3] = [
            (
                "prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5)\n  build user: …",
                Some("2.42.0"),
            ),
            ("prometheus, version 3.14.0 (branch: HEAD, revision: abc)", Some("3.14.0")),
            ("no version here", None),
        ];
        for (text, want) in cases {
            assert_eq!(prometheus_version(text).as_deref(), want, "{text}");
        }
        let redis = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0";
        assert_eq!(redis_version(redis).as_deref(), Some("7.0.15"));
        let images: [(&str, Option<&str>); 4] = [
            ("prom/prometheus:v3.14.0", Some("3.14.0")),
            ("redis:7.4.9", Some("7.4.9")),
            ("redis:7.4.9@sha256:0123", Some("7.4.9")),
            ("redis:latest", None),
        ];
        for (image, want) in images {
            assert_eq!(image_version(image).as_deref(), want, "{image}");
        }
    }

    #[test]
    fn the_line_and_the_outline_say_both_versions() {
        let found = [
            StandIn { name: "Prometheus", ran: Some("2.42.0".into()), deployed: Some("3.14.0".into()) },
            StandIn { name: "Redis", ran: None, deployed: Some("7.4.9".into()) },
        ];
        assert_eq!(
            line(&found),
            "stand-ins: Prometheus 2.42.0 (the manifests deploy 3.14.0), Redis of unknown version (the manifests deploy 7.4.9)"
        );
        assert_eq!(outline(&found)["prometheus"], json!({"ran": "2.42.0", "deployed": "3.14.0"}));
        assert_eq!(outline(&found)["redis"]["ran"], Value::Null);
    }
}
