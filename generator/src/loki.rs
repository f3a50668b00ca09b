//! `--loki-url`: each run's summary pushed to Loki as one JSON line when the run ends, so it outlives the Job's pod
//! (load Jobs are removed as they finish, so that the next `kubectl apply -f` starts a new run). Loki's JSON push API
//! (`POST /loki/api/v1/push`), one stream per profile labelled `service="load-generator"`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::json;

use crate::client::Client;
use crate::stats::Summary;
use crate::target::Target;

/// The label every summary carries; the pod's name (`HOSTNAME` in Kubernetes) and the profile come with it.
pub const SERVICE: &str = "load-generator";
const PUSH_PATH: &str = "/loki/api/v1/push";
/// A push that takes longer is given up: the summary is on stdout too.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The push request's body: one stream per summary.
pub fn body(summaries: &[Summary], pod: &str, now: SystemTime) -> String {
    let nanos = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos().to_string();
    let streams: Vec<_> = summaries
        .iter()
        .map(|summary| {
            let line = serde_json::to_string(summary).unwrap_or_default();
            json!({
                "stream": { "service": SERVICE, "pod": pod, "profile": summary.profile },
                "values": [[nanos, line]],
            })
        })
        .collect();
    json!({ "streams": streams }).to_string()
}

/// Pushes the summaries; the error says why in one line.
pub async fn push(target: &Target, summaries: &[Summary], pod: &str) -> Result<(), String> {
    let body = body(summaries, pod, SystemTime::now());
    let exchange = async {
        let client = Client::new(target, PUSH_TIMEOUT, false).await?;
        let reply = client.once(Method::POST, PUSH_PATH, Some(("application/json", body.as_bytes()))).await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(format!("Loki answered {}: {}", reply.status, String::from_utf8_lossy(&reply.body).trim()))
        }
    };
    tokio::time::timeout(PUSH_TIMEOUT, exchange).await.unwrap_or_else(|_| Err("no answer within 5 s".into()))
}
