//! After a run: every Prometheus panel query of the dashboards, template variables filled in, asked over the run;
//! the queries that returned no series are listed.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use surge_generator::prometheus::Prom;

/// Runs every Prometheus panel query of every dashboard in `dir` (template variables filled in) over the last
/// `seconds`: the queries that returned no series are listed.
pub(crate) fn check_dashboards(dir: &Path, prometheus: &Prom, namespace: &str, seconds: f64) -> Result<Value, String> {
    let mut checked = 0;
    let mut empty = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        let dashboard: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            if panel["datasource"]["uid"] != "prometheus" {
                continue;
            }
            for expr in panel["targets"].as_array().into_iter().flatten().filter_map(|t| t["expr"].as_str()) {
                let query = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$namespace", namespace)
                    .replace("$deployment", "consumer")
                    .replace("$pod", ".*");
                checked += 1;
                if prometheus.series_over(&query, seconds)? == 0 {
                    empty.push(format!("{} / {}: {query}", dashboard["title"].as_str().unwrap_or("?"), panel["title"]));
                }
            }
        }
    }
    Ok(json!({"checked": checked, "empty": empty}))
}
