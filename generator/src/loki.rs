//! `--loki-url`: each run's summary pushed to Loki as one JSON line when the run ends, so it outlives the Job's pod
//! (load Jobs are removed as they finish, so that the next `kubectl apply -f` starts a new run). Loki's JSON push API
//! (`POST /loki/api/v1/push`), one stream per profile labelled `service="load-generator"`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan::Target;
use crate::stats::Summary;

/// The label every summary carries; the pod's name (`HOSTNAME` in Kubernetes) and the profile come with it.
pub const SERVICE: &str = "load-generator";
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
pub async fn push(url: &str, summaries: &[Summary], pod: &str) -> Result<(), String> {
    let target = Target::parse(url).map_err(|e| e.replace("--url", "--loki-url"))?;
    let body = body(summaries, pod, SystemTime::now());
    let request = format!(
        "POST /loki/api/v1/push HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        target.authority,
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        let status_line = String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_owned();
        match status_line.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => Ok(()),
            _ => Err(format!("Loki answered {status_line:?}")),
        }
    };
    tokio::time::timeout(PUSH_TIMEOUT, exchange).await.unwrap_or_else(|_| Err("no answer within 5 s".into()))
}
