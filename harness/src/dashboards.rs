//! After a run: every Prometheus panel query of the dashboards, template variables filled in, asked over the run;
//! the queries that returned no series are listed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use surge_generator::prometheus::Prom;

/// Runs every Prometheus panel query of every dashboard in `dir` (template variables filled in) over the last
/// `seconds`: the queries that returned no series are listed.
pub(crate) fn check_dashboards(dir: &Path, prometheus: &Prom, namespace: &str, seconds: f64) -> Result<Value, String> {
    let stand_ins = crate::standins::exporters();
    let mut checked = 0;
    let mut empty = Vec::new();
    let mut selectors_checked = BTreeSet::new();
    let mut empty_selectors = Vec::new();
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
                // `or vector(0)` answers whatever its selectors match: each must have had series on its own.
                for selector in selectors(&query) {
                    if selectors_checked.insert(selector.to_owned()) && prometheus.series_over(selector, seconds)? == 0
                    {
                        empty_selectors.push(selector.to_owned());
                    }
                }
            }
        }
    }
    Ok(json!({
        "checked": checked,
        "empty": empty,
        "selectors_checked": selectors_checked.len(),
        "empty_selectors": empty_selectors,
        // Read from the harness's stand-ins (kube-state-metrics', KEDA's), not from a real exporter.
        "stand_in_selectors": selectors_checked.iter().filter(|s| stand_ins.contains_key(series_name(s))).collect::<Vec<_>>(),
    }))
}

/// The metric name of a selector.
pub fn series_name(selector: &str) -> &str {
    selector.split('{').next().unwrap_or(selector)
}

/// Every series selector of a query, `name{...}` as written.
pub fn selectors(query: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (open, _) in query.match_indices('{') {
        let start =
            query[..open].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).map_or(0, |i| i + 1);
        let Some(close) = query[open..].find('}') else { continue };
        if start < open {
            found.push(&query[start..=open + close]);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_found_whole_with_their_labels() {
        let query = r#"(sum(rate(a_total{x="1", y=~"b|c"}[1m])) or vector(0)) and on() count(up{x="1"} == 1)"#;
        assert_eq!(selectors(query), [r#"a_total{x="1", y=~"b|c"}"#, r#"up{x="1"}"#]);
        assert_eq!(selectors("sum by (le) (rate(h_bucket{a=\"b\"}[5m]))"), ["h_bucket{a=\"b\"}"]);
        assert!(selectors("vector(0)").is_empty());
    }
}
