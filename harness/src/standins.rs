//! The stand-ins for what the harness cannot run: the series kube-state-metrics and KEDA's operator would expose about
//! this run (replicas, the HPA's desire, the Job, the pods' limits, each scaler's value and errors), under their metric
//! names and labels, served for Prometheus to scrape so the dashboards read them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use surge_keda::scaled_object::Trigger;

use crate::trajectory::Row;

/// Serves the latest `state` as `GET /metrics` on a free port, one request per connection, until the process ends.
pub(crate) fn serve_state(state: Arc<std::sync::Mutex<String>>) -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut head = [0u8; 2048];
            let _ = stream.read(&mut head);
            let body = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

/// Each series the stand-ins write, with the label set its real exporter gives it (`exporters.txt`).
pub(crate) fn exporters() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    include_str!("exporters.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            (words.next().unwrap_or_default(), words.collect())
        })
        .collect()
}

/// The node the harness's pods run on, as kube-state-metrics labels a pod's series.
const NODE: &str = "harness-node";

/// What kube-state-metrics and KEDA's operator would expose about this sync, with their names and labels
/// (`exporters.txt`: each name's label set, from the exporters' sources); `triggers` are the ScaledObject's, in the
/// order of `row.triggers`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cluster_metrics(
    namespace: &str,
    profile: &str,
    row: &Row,
    job_active: bool,
    pods: &[String],
    memory_limit: u64,
    errors: &[u64],
    triggers: &[Trigger],
) -> String {
    let mut out = String::new();
    let deployment = format!("namespace=\"{namespace}\",deployment=\"consumer\"");
    out += &format!("kube_deployment_status_replicas{{{deployment}}} {}\n", row.current);
    out += &format!("kube_deployment_status_replicas_ready{{{deployment}}} {}\n", row.ready);
    out += &format!(
        "kube_horizontalpodautoscaler_status_desired_replicas{{namespace=\"{namespace}\",\
         horizontalpodautoscaler=\"keda-hpa-consumer\"}} {}\n",
        row.desired
    );
    out += &format!(
        "kube_job_status_active{{namespace=\"{namespace}\",job_name=\"load-{profile}\"}} {}\n",
        u8::from(job_active)
    );
    for pod in pods {
        out += &format!(
            "kube_pod_container_resource_limits{{namespace=\"{namespace}\",pod=\"{pod}\",uid=\"uid-{pod}\",\
             node=\"{NODE}\",container=\"consumer\",resource=\"memory\",unit=\"byte\"}} {memory_limit}\n"
        );
    }
    let scaled_object = format!("namespace=\"{namespace}\",scaledObject=\"consumer\"");
    for (index, ((reading, errors), trigger)) in row.triggers.iter().zip(errors).zip(triggers).enumerate() {
        // KEDA names the metric after the scaler (`GenerateMetricNameWithIndex`) and the scaler after the trigger.
        let labels = format!(
            "{scaled_object},scaler=\"{}\",triggerIndex=\"{index}\",metric=\"{}\",type=\"scaledobject\"",
            reading.name,
            trigger.metric_name(index)
        );
        if let Some(value) = reading.value {
            out += &format!("keda_scaler_metrics_value{{{labels}}} {value}\n");
            let active = value > trigger.activation_threshold;
            out += &format!("keda_scaler_active{{{labels}}} {}\n", u8::from(active));
        }
        out += &format!("keda_scaler_detail_errors_total{{{labels}}} {errors}\n");
    }
    out += &format!("keda_scaled_object_errors_total{{{scaled_object}}} {}\n", errors.iter().sum::<u64>());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trajectory::Reading;

    /// `name{a="x",b="y"} value` into the name and its labels.
    fn parse(line: &str) -> (&str, BTreeMap<&str, &str>) {
        let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("labels: {line}"));
        let (labels, _) = rest.rsplit_once('}').unwrap_or_else(|| panic!("closed: {line}"));
        let labels = labels
            .split(',')
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("{pair}"));
                (key, value.trim_matches('"'))
            })
            .collect();
        (name, labels)
    }

    #[test]
    fn the_stand_ins_write_the_names_and_labels_the_real_exporters_use() {
        let reading = |name: &str, value| Reading { name: name.into(), value, target: 1.0, asks: Some(1) };
        let row = Row {
            t: 0.0,
            current: 3,
            desired: 4,
            ready: 3,
            unscheduled: 0,
            offered_per_s: 1.0,
            served_per_s: 1.0,
            driving: None,
            triggers: vec![reading("backlog", Some(0.5)), reading("cpu-demand", None)],
        };
        let pods = ["consumer-0".to_owned(), "consumer-1".to_owned()];
        let so = serde_json::json!({"spec": {"triggers": [
            {"type": "prometheus", "name": "backlog", "metadata": {"query": "q", "threshold": "2", "activationThreshold": "1"}},
            {"type": "prometheus", "name": "cpu-demand", "metadata": {"query": "q", "threshold": "1"}}]}});
        let triggers = surge_keda::scaled_object::ScaledObject::from_manifest(&so).expect("parses").triggers;
        let text = cluster_metrics("surge", "heavy", &row, true, &pods, 512 << 20, &[0, 2], &triggers);
        let known = exporters();
        let mut written = BTreeSet::new();
        for line in text.lines() {
            let (name, labels) = parse(line);
            let expected = known.get(name).unwrap_or_else(|| panic!("{name} is not a series of the real exporters"));
            assert_eq!(&labels.keys().copied().collect::<BTreeSet<_>>(), expected, "{line}");
            written.insert(name);
            if name.starts_with("keda_scaler_") {
                let index: usize = labels["triggerIndex"].parse().expect("an index");
                assert_eq!(labels["metric"], format!("s{index}-prometheus"), "{line}");
                assert_eq!(labels["scaler"], row.triggers[index].name, "the trigger's name: {line}");
            }
        }
        assert_eq!(written, known.keys().copied().collect(), "every listed series is written");
        // Active only above the activationThreshold (0.5 is under backlog's 1); a failing trigger reports no value.
        assert!(text.contains(r#"keda_scaler_active{namespace="surge",scaledObject="consumer",scaler="backlog""#));
        assert!(text.lines().any(|l| l.starts_with("keda_scaler_active") && l.ends_with(" 0")));
        assert!(!text.lines().any(|l| l.starts_with("keda_scaler_metrics_value") && l.contains("cpu-demand")));
    }
}
