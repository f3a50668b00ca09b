//! Three consumers behind a real HAProxy as their Service (`surge_harness::service`: `mode tcp`, an endpoint picked at
//! random per connection, as kube-proxy does).

use surge_harness::service::Service;

use crate::support::{generator_json, Consumer};

fn three_pods_behind_a_service() -> ([Consumer; 3], Service) {
    let pods = [Consumer::start("consumer-a"), Consumer::start("consumer-b"), Consumer::start("consumer-c")];
    let service = Service::start(&pods.each_ref().map(|p| Some(p.port)), None).expect("haproxy starts");
    (pods, service)
}

#[test]
fn a_new_connection_per_request_spreads_evenly_across_pods() {
    let (_pods, service) = three_pods_behind_a_service();
    let (code, summary, stderr) = generator_json(&[
        "--url",
        &service.url,
        "--path",
        "/health",
        "--requests",
        "300",
        "--concurrency",
        "4",
        "--no-connection-reuse",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["succeeded"], 300);
    let distribution = summary["distribution"].as_object().expect("distribution");
    assert_eq!(distribution.len(), 3, "{distribution:?}");
    for (pod, count) in distribution {
        let share = count.as_f64().expect("count") / 300.0;
        // Random per connection: over 300 a share's standard deviation is 2.7 points, so ±10 is 3.7 of them.
        assert!((share - 1.0 / 3.0).abs() <= 0.10, "{pod} got {:.0}%, outside 33% ± 10%", share * 100.0);
    }
    assert_eq!(summary["imbalance_warning"], false);
    assert_eq!(summary["replicas_seen"], 3);
}

#[test]
fn one_keep_alive_connection_pins_to_one_pod_and_is_flagged() {
    let (_pods, service) = three_pods_behind_a_service();
    let (code, summary, stderr) =
        generator_json(&["--url", &service.url, "--path", "/health", "--requests", "60", "--concurrency", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let distribution = summary["distribution"].as_object().expect("distribution");
    assert_eq!(distribution.len(), 1, "one connection reaches one pod: {distribution:?}");
    assert_eq!(distribution.values().next(), Some(&60.into()));
    assert_eq!(summary["imbalance_warning"], true);
    let warning = summary["imbalance"].as_str().expect("the warning explains itself");
    assert!(warning.contains("served 100% of responses"), "{warning}");
    assert!(warning.contains("--no-connection-reuse") && warning.contains("port-forward"), "{warning}");
}
