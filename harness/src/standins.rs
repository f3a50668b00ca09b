//! The stand-ins for what the harness cannot run: the series kube-state-metrics and KEDA's operator would expose about
//! this run (replicas, the HPA's desire, the Job, the pods' limits, each scaler's value and errors), under their metric
//! names and labels, served for Prometheus to scrape so the dashboards read them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

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

/// What kube-state-metrics and KEDA's operator would expose about this sync, with their names and labels.
pub(crate) fn cluster_metrics(
    namespace: &str,
    profile: &str,
    row: &Row,
    job_active: bool,
    pods: &[String],
    memory_limit: u64,
    errors: &[u64],
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
            "kube_pod_container_resource_limits{{namespace=\"{namespace}\",pod=\"{pod}\",container=\"consumer\",\
             resource=\"memory\",unit=\"byte\"}} {memory_limit}\n"
        );
    }
    let scaled_object = format!("namespace=\"{namespace}\",scaledObject=\"consumer\"");
    for (index, (reading, errors)) in row.triggers.iter().zip(errors).enumerate() {
        let labels = format!(
            "{scaled_object},scaler=\"prometheusScaler\",triggerIndex=\"{index}\",metric=\"s{index}-{}\",\
             type=\"scaledobject\"",
            reading.name
        );
        if let Some(value) = reading.value {
            out += &format!("keda_scaler_metrics_value{{{labels}}} {value}\n");
            out += &format!("keda_scaler_active{{{labels}}} {}\n", u8::from(value > 0.0));
        }
        out += &format!("keda_scaler_detail_errors_total{{{labels}}} {errors}\n");
    }
    out += &format!("keda_scaled_object_errors_total{{{scaled_object}}} {}\n", errors.iter().sum::<u64>());
    out
}
