//! `surge tune`: the ScaledObject in force and candidates around it (its triggers' thresholds, its polling interval,
//! its scale-down and scale-up stabilization, fixed replica counts as the floor of what the goal costs) played in the
//! simulator on the same arrivals over the same seeds; for each, the replica-seconds it bought and the latency it
//! bought them with; the Pareto frontier of the two; the cheapest candidate that meets the goal on every seed, and a
//! kustomize patch that makes it the ScaledObject.
//!
//! - `run`: the flags, the candidates' plays and what is printed.
//! - `candidates`: which candidates, and how each changes the ScaledObject (and its patch).
//! - `report`: `--report`'s page, the trade-off chart and the trajectories.
//! - `verify`: `--verify`, the current and the recommended through the real closed loop, the simulator's figures beside.

mod candidates;
mod report;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use surge_generator::phases::Named;
use surge_sim::outcome::percentile;
use surge_sim::trace::Mix;
use surge_sim::{arrivals, simulate, Arrival, Options, Outcome, Setup, Task};

use crate::candidates::{candidates, Candidate};

#[derive(Debug, Parser)]
#[command(name = "surge", about = "Surge's tools beside the generator: `surge tune` recommends a ScaledObject")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Play candidate ScaledObjects on the same load in the simulator and recommend the cheapest that meets a goal
    Tune(Tune),
}

#[derive(Debug, Args)]
pub struct Tune {
    /// Rendered manifests: `kubectl kustomize kubernetes-manifests/overlays/development > dev.yaml`
    #[arg(long)]
    pub manifests: PathBuf,
    /// The load: a generator profile (`generator --list`)
    #[arg(long, default_value = "heavy")]
    pub profile: String,
    /// The load as phases instead: `baseline`, `comparison_pattern`, or a YAML file (`phases:` a list of `{minutes,
    /// per_minute, cpu_intensity, memory_mib, duration_secs, async}`)
    #[arg(long, conflicts_with = "profile")]
    pub phases: Option<String>,
    /// The load as recorded instead: a counter of requests as Prometheus's `query_range` answers it (JSON), or a CSV
    /// export of one (`timestamp`, `value`, a column per label); each request asks for `--profile`'s task or `--task`'s
    #[arg(long, conflicts_with = "phases")]
    pub trace: Option<PathBuf>,
    /// With `--trace`, the task mix its requests ask for instead of `--profile`'s task (repeatable):
    /// `cpu=6,memory=120,duration=20` with `sync` or `async` (async unless said) and `weight=N` (1 unless said)
    #[arg(long = "task", requires = "trace")]
    pub tasks: Vec<String>,
    /// The node the replicas share, in allocatable cores [default: none, each replica its limit, none Pending]
    #[arg(long)]
    pub node_cores: Option<f64>,
    /// A bound the recommendation must keep on every seed: `p95-sojourn=60s`, `p99-sojourn=2m`, `refused=0`
    /// (repeatable; an async task's sojourn, a sync request's latency)
    #[arg(long = "slo", value_parser = Slo::parse, default_value = "p95-sojourn=60s")]
    pub slos: Vec<Slo>,
    /// Seeds each candidate is played over: the same arrivals, the Service's pick, the pulls and the scrapes vary
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub seeds: u64,
    /// Print one JSON document instead of the table
    #[arg(long)]
    pub json: bool,
    /// Write the recommended candidate's patch of the ScaledObject here (a kustomize patch)
    #[arg(long)]
    pub patch: Option<PathBuf>,
    /// Write an HTML page here: the trade-off chart (cost against p95, the frontier, the goal, the current and the
    /// recommended marked), their replica trajectories side by side, and the table
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Then run the current and the recommended ScaledObject through the real closed loop (`cluster`: consumer
    /// processes, HAProxy, Prometheus and Redis on this machine) and print its figures beside the simulator's;
    /// `--verify=recommended` runs the recommended one only
    #[arg(long, conflicts_with = "trace", num_args = 0..=1, require_equals = true, default_missing_value = "both")]
    pub verify: Option<Verify>,
    /// The closed loop's `cluster` binary [default: beside this one]
    #[arg(long, requires = "verify")]
    pub cluster: Option<PathBuf>,
    /// The closed loop's compression [default: the largest of 10, 5, 2 and 1 that keeps the load's task lengths]
    #[arg(long, requires = "verify")]
    pub verify_time_scale: Option<f64>,
}

/// Which ScaledObjects `--verify` runs through the closed loop.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Verify {
    /// The current, then the recommended (unless it is the current).
    Both,
    Recommended,
}

/// One bound of the goal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slo {
    Sojourn { quantile: f64, seconds: f64 },
    Refused(u64),
}

impl Slo {
    fn parse(text: &str) -> Result<Self, String> {
        let (name, value) = text.split_once('=').ok_or_else(|| format!("{text}: NAME=VALUE"))?;
        let duration =
            || humantime::parse_duration(value).map(|d| d.as_secs_f64()).map_err(|e| format!("{text}: {value}: {e}"));
        match name {
            "p50-sojourn" => Ok(Self::Sojourn { quantile: 0.5, seconds: duration()? }),
            "p95-sojourn" => Ok(Self::Sojourn { quantile: 0.95, seconds: duration()? }),
            "p99-sojourn" => Ok(Self::Sojourn { quantile: 0.99, seconds: duration()? }),
            "refused" => value.parse().map(Self::Refused).map_err(|_| format!("{text}: a whole number")),
            _ => Err(format!("{text}: p50-sojourn, p95-sojourn, p99-sojourn or refused")),
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Sojourn { quantile, seconds } => format!("p{:.0} sojourn <= {seconds} s", quantile * 100.0),
            Self::Refused(n) => format!("refused <= {n}"),
        }
    }
}

/// What a candidate's plays came to over the seeds.
#[derive(Debug, Clone, PartialEq)]
struct Scored {
    name: String,
    fixed: bool,
    ready_replica_seconds: f64,
    pending_replica_seconds: f64,
    /// Each quantile's value per seed (sojourns of async tasks, latencies of sync requests).
    p50: Vec<f64>,
    p95: Vec<f64>,
    p99: Vec<f64>,
    refused: u64,
    scale_events: f64,
    first_scale_up: Option<f64>,
    back_at_minimum: Option<f64>,
    meets: bool,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0.0), |(s, n), v| (s + v, n + 1.0));
    if count > 0.0 {
        sum / count
    } else {
        f64::NAN
    }
}

fn worst(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn score(candidate: &Candidate, outcomes: &[Outcome], slos: &[Slo]) -> Scored {
    let waits = |o: &Outcome| o.sojourns.iter().chain(&o.latencies).copied().collect::<Vec<f64>>();
    let quantile = |q: f64| outcomes.iter().filter_map(|o| percentile(&waits(o), q)).collect::<Vec<f64>>();
    let minimum = candidate.scaled_object.scaling.min;
    let meets = outcomes.iter().all(|o| {
        slos.iter().all(|slo| match *slo {
            Slo::Sojourn { quantile, seconds } => percentile(&waits(o), quantile).is_none_or(|v| v <= seconds),
            Slo::Refused(most) => o.refused <= most,
        }) && !o.unsettled
    });
    let first_up = |o: &Outcome| o.rows.iter().find(|r| r.desired > minimum).map(|r| r.t);
    let ups: Vec<f64> = outcomes.iter().filter_map(first_up).collect();
    let backs: Vec<f64> = outcomes.iter().filter_map(|o| o.back_at_minimum(minimum)).collect();
    Scored {
        name: candidate.name.clone(),
        fixed: candidate.fixed,
        ready_replica_seconds: mean(outcomes.iter().map(|o| o.ready_replica_seconds)),
        pending_replica_seconds: mean(outcomes.iter().map(|o| o.pending_replica_seconds)),
        p50: quantile(0.5),
        p95: quantile(0.95),
        p99: quantile(0.99),
        refused: outcomes.iter().map(|o| o.refused).max().unwrap_or(0),
        scale_events: mean(outcomes.iter().map(|o| f64::from(o.scale_events))),
        first_scale_up: (!ups.is_empty()).then(|| mean(ups.iter().copied())),
        // A fixed count never leaves its minimum: nothing to come back from.
        back_at_minimum: (!candidate.fixed && backs.len() == outcomes.len()).then(|| mean(backs.iter().copied())),
        meets,
    }
}

/// Indexes of the candidates no other beats on both cost (ready replica-seconds) and the worst seed's p95.
fn frontier(scored: &[Scored]) -> Vec<usize> {
    let p95 = |s: &Scored| worst(&s.p95);
    (0..scored.len())
        .filter(|&i| {
            !scored.iter().enumerate().any(|(j, other)| {
                j != i
                    && other.ready_replica_seconds <= scored[i].ready_replica_seconds
                    && p95(other) <= p95(&scored[i])
                    && (other.ready_replica_seconds < scored[i].ready_replica_seconds || p95(other) < p95(&scored[i]))
            })
        })
        .collect()
}

/// The cheapest autoscaled candidate that meets the goal on every seed (fewer scale events breaks a tie).
fn recommend(scored: &[Scored]) -> Option<usize> {
    (0..scored.len()).filter(|&i| scored[i].meets && !scored[i].fixed).min_by(|&a, &b| {
        let (a, b) = (&scored[a], &scored[b]);
        a.ready_replica_seconds.total_cmp(&b.ready_replica_seconds).then(a.scale_events.total_cmp(&b.scale_events))
    })
}

pub fn run(cli: Cli) -> ExitCode {
    let Command::Tune(args) = cli.command;
    match tune(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("surge tune: {error}");
            ExitCode::from(2)
        }
    }
}

/// The load's arrivals: `--phases` (named, or a file) or `--profile`.
fn load(args: &Tune) -> Result<Vec<Arrival>, String> {
    if let Some(phases) = &args.phases {
        return Ok(surge_sim::phases::arrivals(&surge_generator::phases::named_or_file(phases)?));
    }
    let profile = surge_generator::profiles::find(&args.profile)
        .ok_or_else(|| format!("--profile {}: choose one of {}", args.profile, surge_generator::profiles::names()))?;
    if let Some(path) = &args.trace {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--trace {}: {e}", path.display()))?;
        let series = surge_sim::trace::parse(&text).map_err(|e| format!("--trace {}: {e}", path.display()))?;
        let mix = if args.tasks.is_empty() { Mix::one(Task::of(profile)) } else { Mix::parse(&args.tasks)? };
        // One spread and one draw of tasks for every candidate and seed: the same arrivals, as a profile's are.
        return Ok(surge_sim::trace::arrivals(&series, &mix, 1));
    }
    Ok(arrivals(profile))
}

/// What the load is called in the report.
fn load_name(args: &Tune) -> String {
    match (&args.phases, &args.trace) {
        (Some(phases), _) => phases.clone(),
        (None, Some(trace)) if args.tasks.is_empty() => format!("{} with {}'s task", trace.display(), args.profile),
        (None, Some(trace)) => format!("{} with tasks {}", trace.display(), args.tasks.join(" + ")),
        (None, None) => args.profile.clone(),
    }
}

/// The node the report names.
fn node_name(args: &Tune) -> String {
    args.node_cores.map_or("no node model".to_owned(), |c| format!("a {c}-core node"))
}

/// Plays every candidate; true when one meets the goal.
fn tune(args: &Tune) -> Result<bool, String> {
    let yaml = std::fs::read_to_string(&args.manifests).map_err(|e| format!("{}: {e}", args.manifests.display()))?;
    let setup = Setup::from_manifests(&yaml, args.node_cores)?;
    let arrivals = load(args)?;
    let raw = candidates::raw_scaled_object(&yaml)?;
    let candidates = candidates(&setup.scaled_object, &raw, setup.shared_backlog);
    let started = std::time::Instant::now();
    let mut scored = Vec::with_capacity(candidates.len());
    let mut first_seed = Vec::with_capacity(candidates.len());
    for (index, candidate) in candidates.iter().enumerate() {
        eprint!("\rsurge tune: candidate {}/{} ({})\x1b[K", index + 1, candidates.len(), candidate.name);
        let setup = setup.with_scaled_object(candidate.scaled_object.clone())?;
        let outcomes: Vec<Outcome> =
            (1..=args.seeds).map(|seed| simulate(&setup, &arrivals, &Options { seed, ..Options::default() })).collect();
        scored.push(score(candidate, &outcomes, &args.slos));
        first_seed.push(outcomes.into_iter().next().map(|o| o.rows).unwrap_or_default());
    }
    eprintln!(
        "\rsurge tune: {} candidates over {} seeds in {:.1} s\x1b[K",
        candidates.len(),
        args.seeds,
        started.elapsed().as_secs_f64()
    );
    let on_frontier = frontier(&scored);
    let recommended = recommend(&scored);
    if let (Some(path), Some(index)) = (&args.patch, recommended) {
        let patch = candidates[index].patch(&raw);
        let text = serde_yaml_ng::to_string(&patch).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.report {
        let heading = report::Heading {
            load: load_name(args),
            node: node_name(args),
            seeds: args.seeds,
            goal: args.slos.iter().map(|s| s.describe()).collect(),
            p95_goal: args.slos.iter().find_map(|slo| match *slo {
                Slo::Sojourn { quantile: 0.95, seconds } => Some(seconds),
                _ => None,
            }),
            max_replicas: setup.scaled_object.scaling.max,
        };
        let page = report::html(&heading, &scored, &on_frontier, recommended, &first_seed);
        std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let verified = match (args.verify, recommended) {
        (Some(which), Some(index)) => Some(verify(args, which, &yaml, &arrivals, &raw, &candidates[index])?),
        (Some(_), None) => {
            eprintln!("surge tune --verify: no recommendation to verify");
            None
        }
        (None, _) => None,
    };
    if args.json {
        let mut out = report_json(args, &scored, &on_frontier, recommended, &candidates, &raw);
        if let Some((verified, run)) = &verified {
            out["verify"] = verify::json(verified, run);
        }
        println!("{out}");
    } else {
        print!("{}", report_text(args, &scored, &on_frontier, recommended));
        if let Some((verified, run)) = &verified {
            print!("{}", verify::text(verified, run));
        }
    }
    Ok(recommended.is_some())
}

/// The largest compression of 10, 5, 2 and 1 at which the named load keeps its tasks' lengths.
fn keeps_work_at(name: &str) -> Result<f64, String> {
    let named = Named::find(name)
        .ok_or_else(|| format!("--verify runs a load the generator knows by name; {name} is not one"))?;
    [10.0, 5.0, 2.0, 1.0]
        .into_iter()
        .find(|f| named.keeps_its_work_at(*f).is_ok())
        .ok_or_else(|| format!("{name} keeps its tasks' lengths at no compression of 10, 5, 2 or 1"))
}

/// `--verify`: the current ScaledObject (unless only the recommended is asked for), then the recommended one (unless it
/// is the current), through the closed loop.
fn verify(
    args: &Tune,
    which: Verify,
    yaml: &str,
    arrivals: &[Arrival],
    raw: &Value,
    recommended: &Candidate,
) -> Result<(Vec<verify::Verified>, verify::ClosedLoop), String> {
    let load = args.phases.clone().unwrap_or_else(|| args.profile.clone());
    let time_scale = match args.verify_time_scale {
        Some(factor) => factor,
        None => keeps_work_at(&load)?,
    };
    let cluster = match &args.cluster {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("cluster"),
    };
    let run = verify::ClosedLoop { cluster, load, time_scale, node_cores: args.node_cores, seeds: args.seeds };
    let dir = tempfile::tempdir().map_err(|e| format!("a directory for the closed loop's files: {e}"))?;
    let mut plays = Vec::new();
    if which == Verify::Both || recommended.name == "current" {
        plays.push(("current".to_owned(), raw.clone()));
    }
    if recommended.name != "current" {
        plays.push((format!("{} (recommended)", recommended.name), recommended.patched(raw)));
    }
    let mut verified = Vec::new();
    for (name, scaled_object) in plays {
        let manifests = verify::manifests_with(yaml, &scaled_object)?;
        verified.push(verify::verify(&name, &manifests, arrivals, &run, dir.path())?);
    }
    Ok((verified, run))
}

fn report_text(args: &Tune, scored: &[Scored], on_frontier: &[usize], recommended: Option<usize>) -> String {
    let goal: Vec<String> = args.slos.iter().map(|s| s.describe()).collect();
    let mut out = format!(
        "{} on {}, {} seeds each; goal on every seed: {}\n\n",
        load_name(args),
        node_name(args),
        args.seeds,
        goal.join(", ")
    );
    out.push_str(&format!(
        "{:<44} {:>9} {:>9} {:>6} {:>13} {:>6} {:>7} {:>6} {:>8} {:>8}\n",
        "candidate",
        "replica-s",
        "pending-s",
        "p50 s",
        "p95 s (seeds)",
        "p99 s",
        "refused",
        "events",
        "first up",
        "back at"
    ));
    for (i, s) in scored.iter().enumerate() {
        let marks = format!(
            "{}{}{}",
            if Some(i) == recommended { " <- recommended" } else { "" },
            if on_frontier.contains(&i) { " frontier" } else { "" },
            if s.meets { " meets" } else { "" }
        );
        let seconds = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "{:<44} {:>9.0} {:>9.0} {:>6.0} {:>13} {:>6.0} {:>7} {:>6.1} {:>8} {:>8}{}\n",
            s.name,
            s.ready_replica_seconds,
            s.pending_replica_seconds,
            mean(s.p50.iter().copied()),
            format!("{:.0}-{:.0}", best(&s.p95), worst(&s.p95)),
            worst(&s.p99),
            s.refused,
            s.scale_events,
            seconds(s.first_scale_up),
            seconds(s.back_at_minimum),
            marks
        ));
    }
    match recommended {
        Some(i) => out.push_str(&format!(
            "\nrecommended: {} ({:.0} replica-seconds, p95 at most {:.0} s over the seeds)\n",
            scored[i].name,
            scored[i].ready_replica_seconds,
            worst(&scored[i].p95)
        )),
        None => out.push_str("\nno autoscaled candidate meets the goal on every seed\n"),
    }
    out
}

fn report_json(
    args: &Tune,
    scored: &[Scored],
    on_frontier: &[usize],
    recommended: Option<usize>,
    candidates: &[Candidate],
    raw: &Value,
) -> Value {
    let rows: Vec<Value> = scored
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "candidate": s.name,
                "fixed": s.fixed,
                "ready_replica_seconds": s.ready_replica_seconds,
                "pending_replica_seconds": s.pending_replica_seconds,
                "p50_s": s.p50, "p95_s": s.p95, "p99_s": s.p99,
                "refused": s.refused,
                "scale_events": s.scale_events,
                "first_scale_up_s": s.first_scale_up,
                "back_at_minimum_s": s.back_at_minimum,
                "meets": s.meets,
                "frontier": on_frontier.contains(&i),
            })
        })
        .collect();
    json!({
        "load": load_name(args),
        "node_cores": args.node_cores,
        "seeds": args.seeds,
        "goal": args.slos.iter().map(|s| s.describe()).collect::<Vec<_>>(),
        "candidates": rows,
        "recommended": recommended.map(|i| scored[i].name.clone()),
        "patch": recommended.map(|i| candidates[i].patch(raw)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn scored(name: &str, cost: f64, p95: f64, meets: bool, fixed: bool) -> Scored {
        Scored {
            name: name.into(),
            fixed,
            ready_replica_seconds: cost,
            pending_replica_seconds: 0.0,
            p50: vec![p95 / 2.0],
            p95: vec![p95],
            p99: vec![p95],
            refused: 0,
            scale_events: 2.0,
            first_scale_up: None,
            back_at_minimum: None,
            meets,
        }
    }

    #[test]
    fn the_frontier_keeps_what_nothing_beats_on_both_and_the_cheapest_that_meets_is_recommended() {
        let all = [
            scored("current", 5000.0, 60.0, true, false),
            scored("cheaper, slower", 4000.0, 90.0, false, false),
            scored("dearer, faster", 6000.0, 40.0, true, false),
            scored("dominated", 6500.0, 70.0, true, false),
            scored("fixed 10", 6000.0, 30.0, true, true),
        ];
        assert_eq!(frontier(&all), vec![0, 1, 4]);
        assert_eq!(recommend(&all), Some(0), "the cheapest autoscaled one that meets the goal");
    }

    #[test]
    fn a_goal_is_parsed_naming_what_is_wrong() {
        assert_eq!(Slo::parse("p95-sojourn=90s"), Ok(Slo::Sojourn { quantile: 0.95, seconds: 90.0 }));
        assert_eq!(Slo::parse("refused=0"), Ok(Slo::Refused(0)));
        assert!(Slo::parse("p97-sojourn=1s").expect_err("unknown").contains("p95-sojourn"));
        assert!(Slo::parse("p95-sojourn").expect_err("no value").contains("NAME=VALUE"));
    }
}
