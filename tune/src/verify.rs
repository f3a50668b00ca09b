//! `--verify`: the current and the recommended ScaledObject played again through the real closed loop (the `cluster`
//! binary: consumer processes, HAProxy as the Service, a real Prometheus and Redis), with the simulator's figures for
//! the same manifests, load, node and compression beside them, and by the rules of the Prometheus the loop stood on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use surge_keda::promql::Rule;
use surge_keda::scaled_object::{documents, is_named};
use surge_keda::trajectory::back_after;
use surge_sim::{simulate, Arrival, Options, Outcome, Setup};

/// What one run came to, in the autoscaler's seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub peak: f64,
    /// From the load's end to the minimum again (`None`: not back).
    pub back: Option<f64>,
    /// The async sojourn's p95 as the consumer's histogram gives it (`None`: no async task finished).
    pub p95: Option<f64>,
    /// Ready replicas summed over the syncs, to the closed loop's last.
    pub replica_seconds: f64,
}

/// One candidate verified: the closed loop's run and the simulator's seeds.
#[derive(Debug, Clone)]
pub struct Verified {
    pub name: String,
    pub closed_loop: Figures,
    pub simulator: Vec<Figures>,
    /// The Prometheus the closed loop ran (`2.42.0`), whose rules the simulator then played.
    pub prometheus: String,
    /// How late the closed loop's latest sync began (autoscaler seconds): a busy machine moves its readings.
    pub latest_sync_start: Option<f64>,
    /// How long the closed loop ran (`None`: it was run elsewhere and its report given).
    pub took: Option<Duration>,
}

/// How to run the closed loop, and over how many seeds the simulator plays beside it.
pub struct ClosedLoop {
    /// The `cluster` binary.
    pub cluster: PathBuf,
    /// A generator profile or phase profile by name: what the loop's generator is told to send.
    pub load: String,
    pub time_scale: f64,
    pub node_cores: Option<f64>,
    pub seeds: u64,
}

impl ClosedLoop {
    /// The `cluster` command that runs the load on `manifests` and writes its report to `json`: the one place its
    /// command line is written (`surge tune --verify` and the closed-loop tests run it).
    pub fn command(&self, manifests: &Path, json: &Path) -> Command {
        let mut command = Command::new(&self.cluster);
        command
            .arg("--manifests")
            .arg(manifests)
            .args(["--profile", &self.load, "--time-scale", &self.time_scale.to_string(), "--json"])
            .arg(json);
        if let Some(cores) = self.node_cores {
            command.args(["--node-cores", &cores.to_string()]);
        }
        command
    }
}

/// Ready replica-seconds over `rows` (`(t, ready)`, in order), each sync's count held to the next, up to `until`.
pub fn replica_seconds(rows: &[(f64, u32)], until: f64) -> f64 {
    rows.windows(2)
        .take_while(|pair| pair[0].0 < until)
        .map(|pair| f64::from(pair[0].1) * (pair[1].0.min(until) - pair[0].0))
        .sum()
}

/// The rendered manifests with the ScaledObject `consumer` replaced by `scaled_object`.
pub fn manifests_with(yaml: &str, scaled_object: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut replaced = false;
    for document in documents(yaml)? {
        let is_it = document["kind"] == "ScaledObject"
            && document["metadata"]["name"].as_str().is_some_and(|name| is_named(name, "consumer"));
        let document = if is_it {
            replaced = true;
            scaled_object
        } else {
            &document
        };
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(document).map_err(|e| e.to_string())?);
    }
    if replaced {
        Ok(out)
    } else {
        Err("no ScaledObject named consumer in the manifests".into())
    }
}

/// Runs `manifests` through the closed loop, then the simulator on the same over `seeds`.
pub fn verify(
    name: &str,
    manifests: &str,
    arrivals: &[Arrival],
    run: &ClosedLoop,
    dir: &Path,
) -> Result<Verified, String> {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let path = dir.join(format!("{slug}.yaml"));
    std::fs::write(&path, manifests).map_err(|e| format!("{}: {e}", path.display()))?;
    let started = Instant::now();
    let report = closed_loop(name, &path, run, &dir.join(format!("{slug}.json")), &dir.join(format!("{slug}.log")))?;
    let took = started.elapsed();
    Ok(Verified { took: Some(took), ..compare(name, manifests, arrivals, run, &report)? })
}

/// The closed loop's `report` of `manifests` (the `cluster` binary's JSON) beside the simulator's seeds on the same
/// manifests, arrivals, node and compression, by the rules of the Prometheus the loop ran.
pub fn compare(
    name: &str,
    manifests: &str,
    arrivals: &[Arrival],
    run: &ClosedLoop,
    report: &Value,
) -> Result<Verified, String> {
    let outline = &report["outline"];
    let rows: Vec<(f64, u32)> = report["rows"]
        .as_array()
        .map(|rows| {
            rows.iter().filter_map(|r| Some((r["t"].as_f64()?, u32::try_from(r["ready"].as_u64()?).ok()?))).collect()
        })
        .unwrap_or_default();
    let until = rows.last().map_or(0.0, |r| r.0);
    let closed_loop = Figures {
        peak: outline["peak_replicas"].as_f64().ok_or("the closed loop's report has no peak")?,
        back: outline["back_at_min_at_s"]
            .as_f64()
            .zip(outline["load_ended_at_s"].as_f64())
            .map(|(b, e)| back_after(b, e)),
        p95: outline["sojourn_p95_s"].as_f64(),
        replica_seconds: replica_seconds(&rows, until),
    };
    let prometheus = outline["stand_ins"]["prometheus"]["ran"].as_str().unwrap_or("unknown").to_owned();
    let mut setup = Setup::from_manifests(manifests, run.node_cores)?;
    setup.prometheus = Rule::of_version(&prometheus)
        .ok_or_else(|| format!("the closed loop ran Prometheus {prometheus}: no rules for it in the simulator"))?;
    let minimum = setup.scaled_object.scaling.min;
    let simulator = (1..=run.seeds)
        .map(|seed| {
            let outcome =
                simulate(&setup, arrivals, &Options { seed, time_scale: run.time_scale, ..Options::default() });
            simulated(&outcome, minimum, run.time_scale, until)
        })
        .collect();
    let latest_sync_start = outline["syncs"]["latest_start_s"].as_f64();
    Ok(Verified { name: name.to_owned(), closed_loop, simulator, prometheus, latest_sync_start, took: None })
}

fn simulated(outcome: &Outcome, minimum: u32, time_scale: f64, until: f64) -> Figures {
    let rows: Vec<(f64, u32)> = outcome.rows.iter().map(|r| (r.t, r.ready)).collect();
    Figures {
        peak: f64::from(outcome.figures(minimum).peak),
        back: outcome.back_at_minimum(minimum),
        p95: outcome.sojourn_p95(time_scale),
        replica_seconds: replica_seconds(&rows, until),
    }
}

/// The `cluster` binary's report of one run; its output goes to `log`, its elapsed time to stderr as it runs.
fn closed_loop(name: &str, manifests: &Path, run: &ClosedLoop, json: &Path, log: &Path) -> Result<Value, String> {
    let output = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = run
        .command(manifests, json)
        .stdin(Stdio::null())
        .stdout(output.try_clone().map_err(|e| e.to_string())?)
        .stderr(output)
        .spawn()
        .map_err(|e| format!("--cluster {}: {e}", run.cluster.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        eprint!("\rsurge tune --verify: {name} in the closed loop, {:.0} s\x1b[K", started.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!("\rsurge tune --verify: {name} in the closed loop took {:.0} s\x1b[K", started.elapsed().as_secs_f64());
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "the closed loop of {name} failed ({status}); the end of {}:\n{}",
            log.display(),
            tail.join("\n")
        ));
    }
    let text = std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))
}

/// `lo-hi` of a figure over the seeds, or `-` when no seed has it.
fn span(values: impl Iterator<Item = Option<f64>>) -> String {
    let values: Vec<f64> = values.flatten().collect();
    if values.is_empty() {
        return "-".into();
    }
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    if (hi - lo).abs() < 0.5 {
        format!("{lo:.0}")
    } else {
        format!("{lo:.0}-{hi:.0}")
    }
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0}"))
}

/// The side-by-side table.
pub fn text(verified: &[Verified], run: &ClosedLoop) -> String {
    let mut out = format!(
        "\nverified in the closed loop ({} at x{}: real consumers, HAProxy, Prometheus {}) against the simulator over \
         {} seeds at the same compression, by that Prometheus's rules:\n",
        run.load,
        run.time_scale,
        verified.first().map_or("?", |v| v.prometheus.as_str()),
        run.seeds,
    );
    out.push_str(&format!(
        "{:<44} {:<12} {:>6} {:>9} {:>7} {:>13}\n",
        "candidate", "played by", "peak", "back s", "p95 s", "replica-s"
    ));
    for v in verified {
        let c = &v.closed_loop;
        out.push_str(&format!(
            "{:<44} {:<12} {:>6.0} {:>9} {:>7} {:>13.0}   {} s; latest sync {} s late\n",
            v.name,
            "closed loop",
            c.peak,
            seconds(c.back),
            seconds(c.p95),
            c.replica_seconds,
            v.took.map_or("?".into(), |t| format!("{:.0}", t.as_secs_f64())),
            v.latest_sync_start.map_or("?".into(), |s| format!("{s:.2}"))
        ));
        let sim = &v.simulator;
        out.push_str(&format!(
            "{:<44} {:<12} {:>6} {:>9} {:>7} {:>13}\n",
            "",
            "simulator",
            span(sim.iter().map(|f| Some(f.peak))),
            span(sim.iter().map(|f| f.back)),
            span(sim.iter().map(|f| f.p95)),
            span(sim.iter().map(|f| Some(f.replica_seconds)))
        ));
    }
    out
}

pub fn json(verified: &[Verified], run: &ClosedLoop) -> Value {
    let figures = |f: &Figures| json!({"peak": f.peak, "back_at_minimum_s": f.back, "p95_sojourn_s": f.p95, "ready_replica_seconds": f.replica_seconds});
    json!({
        "load": run.load,
        "time_scale": run.time_scale,
        "candidates": verified.iter().map(|v| json!({
            "candidate": v.name,
            "prometheus": v.prometheus,
            "closed_loop_seconds": v.took.map(|t| t.as_secs_f64().round()),
            "latest_sync_start_s": v.latest_sync_start,
            "closed_loop": figures(&v.closed_loop),
            "simulator": v.simulator.iter().map(figures).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_seconds_hold_each_syncs_ready_count_to_the_next_up_to_the_horizon() {
        // (rows, until, expected)
        type Syncs<'a> = &'a [(f64, u32)];
        let cases: [(Syncs, f64, f64); 4] = [
            (&[(0.0, 1), (15.0, 3), (30.0, 2)], 30.0, 15.0 + 45.0),
            (&[(0.0, 1), (15.0, 3), (30.0, 2)], 20.0, 15.0 + 15.0),
            (&[(0.0, 2), (15.0, 2), (30.0, 2), (45.0, 2)], 90.0, 90.0),
            (&[(0.0, 4)], 60.0, 0.0),
        ];
        for (rows, until, expected) in cases {
            assert_eq!(replica_seconds(rows, until), expected, "{rows:?} to {until}");
        }
    }

    #[test]
    fn the_scaled_object_is_replaced_and_every_other_object_kept() {
        let yaml =
            "kind: Deployment\nmetadata:\n  name: consumer\n---\nkind: ScaledObject\nmetadata:\n  name: consumer\n\
                    spec:\n  pollingInterval: 5\n---\nkind: ConfigMap\nmetadata:\n  name: scaledobject-5h7c9f8k2b\n";
        let patched =
            json!({"kind": "ScaledObject", "metadata": {"name": "consumer"}, "spec": {"pollingInterval": 30}});
        let out = documents(&manifests_with(yaml, &patched).expect("replaced")).expect("YAML");
        let kinds: Vec<&str> = out.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, ["Deployment", "ScaledObject", "ConfigMap"]);
        assert_eq!(out[1]["spec"]["pollingInterval"], 30);
        let none = "kind: Deployment\nmetadata:\n  name: consumer\n";
        assert!(manifests_with(none, &patched).expect_err("nothing to replace").contains("no ScaledObject"));
    }
}
