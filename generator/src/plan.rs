//! Turns the flags into runs: which requests, which load model, this shard's share. `--dry-run` prints this.

use std::time::Duration;

use serde::Serialize;

use crate::cli::Cli;
use crate::phases::{self, Named, Phase};
use crate::profiles::{self, Profile};
use crate::schedule::{as_secs, Stage};
use crate::target::Target;
use crate::threshold::Threshold;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Model {
    /// `concurrency` workers, each sending when its last request returns, until `requests` or `duration` runs out.
    Closed {
        concurrency: u32,
        requests: Option<u64>,
        #[serde(serialize_with = "opt_as_secs")]
        duration: Option<Duration>,
        /// Minimum spacing between sends across all workers.
        #[serde(serialize_with = "as_secs")]
        delay: Duration,
    },
    /// Arrivals on a schedule, independent of responses; at most `max_in_flight` outstanding.
    Open { start_rate: f64, stages: Vec<Stage>, max_in_flight: u32 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The profile name, or `custom` for a plain endpoint load test.
    pub profile: String,
    #[serde(serialize_with = "as_text")]
    pub method: http::Method,
    /// Path and query, parsed once for every request to reuse.
    #[serde(rename = "path", serialize_with = "as_text")]
    pub uri: http::Uri,
    /// Paths that replace `uri` later in the run (a phase profile's later phases), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub later_paths: Vec<PathFrom>,
    #[serde(flatten)]
    pub model: Model,
}

/// From `from` into a run on, its requests ask for `path`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathFrom {
    #[serde(serialize_with = "as_secs")]
    pub from: Duration,
    #[serde(serialize_with = "as_text")]
    pub path: http::Uri,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    const WHOLE: Self = Self { index: 0, count: 1 };

    fn parse(text: &str) -> Result<Self, String> {
        let (index, count) = text.split_once('/').ok_or_else(|| format!("--shard {text:?}: expected INDEX/COUNT"))?;
        let index: u32 = index.trim().parse().map_err(|_| format!("--shard {text:?}: INDEX must be a number"))?;
        let count: u32 = count.trim().parse().map_err(|_| format!("--shard {text:?}: COUNT must be a number"))?;
        if count == 0 || index >= count {
            return Err(format!("--shard {text:?}: need 0 <= INDEX < COUNT"));
        }
        Ok(Self { index, count })
    }

    /// `--shard`, else `JOB_COMPLETION_INDEX`/`GENERATOR_SHARDS` (an Indexed Job), else the whole load.
    pub fn resolve(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        if let Some(text) = flag {
            return Self::parse(text);
        }
        match (env("JOB_COMPLETION_INDEX"), env("GENERATOR_SHARDS")) {
            (Some(index), Some(count)) => Self::parse(&format!("{index}/{count}")),
            _ => Ok(Self::WHOLE),
        }
    }

    /// This shard's part of `total`: an even split, the first `total % count` shards taking one more.
    pub fn share(self, total: u64) -> u64 {
        let count = u64::from(self.count);
        total / count + u64::from(u64::from(self.index) < total % count)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub target: Target,
    pub shard: Shard,
    pub connection_reuse: bool,
    #[serde(serialize_with = "as_secs")]
    pub timeout: Duration,
    pub max_retries: u32,
    /// How long after the last request accepted async tasks are followed (0: not at all).
    #[serde(serialize_with = "as_secs")]
    pub follow_timeout: Duration,
    /// How often their records are read while they are.
    #[serde(serialize_with = "as_secs")]
    pub follow_interval: Duration,
    pub cleanup: bool,
    pub monitor: bool,
    pub traceparent: bool,
    #[serde(serialize_with = "expressions")]
    pub thresholds: Vec<Threshold>,
    #[serde(serialize_with = "as_secs")]
    pub pause: Duration,
    pub runs: Vec<Run>,
}

const DEFAULT_REQUESTS: u64 = 100;
/// The success floor every run has unless `--threshold success…` replaces it.
pub const DEFAULT_SUCCESS_FLOOR: &str = "success>=95%";
const DEFAULT_CONCURRENCY: u32 = 10;
const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;

impl Plan {
    pub fn from_cli(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        if !(cli.scale > 0.0 && cli.scale.is_finite()) {
            return Err(format!("--scale {}: must be a positive number", cli.scale));
        }
        if !(cli.time_scale >= 1.0 && cli.time_scale.is_finite()) {
            return Err(format!("--time-scale {}: must be 1 or more", cli.time_scale));
        }
        if cli.concurrency == Some(0) {
            return Err("--concurrency 0: must be at least 1".into());
        }
        let shard = Shard::resolve(cli.shard.as_deref(), &env)?;
        let mut thresholds = cli.thresholds.iter().map(|t| Threshold::parse(t)).collect::<Result<Vec<_>, _>>()?;
        // A run that did not do its work fails (a Job shows Failed), unless a success threshold of its own is given.
        if !thresholds.iter().any(Threshold::is_success) {
            thresholds.push(Threshold::parse(DEFAULT_SUCCESS_FLOOR)?);
        }
        let runs = match (cli.test.as_deref(), &cli.phases) {
            (Some("all"), _) => profiles::PROFILES
                .iter()
                .map(|p| profile_run(p, cli, shard))
                .chain(phases::PHASED.iter().map(|p| phased_run(p.name, p.phases, cli, shard)))
                .collect::<Result<_, _>>()?,
            (Some(name), _) => match Named::find(name) {
                Some(Named::Profile(profile)) => vec![profile_run(profile, cli, shard)?],
                Some(Named::Phased(phased)) => vec![phased_run(phased.name, phased.phases, cli, shard)?],
                None => {
                    let phased: Vec<&str> = phases::PHASED.iter().map(|p| p.name).collect();
                    return Err(format!(
                        "--test {name:?}: unknown profile; choose one of {}, {}, or all",
                        profiles::names(),
                        phased.join(", ")
                    ));
                }
            },
            (None, Some(value)) => vec![phased_run(value, &phases::named_or_file(value)?, cli, shard)?],
            (None, None) => vec![custom_run(cli, shard)?],
        };
        Ok(Self {
            target: Target::parse(&cli.url).map_err(|e| format!("--url {e}"))?,
            shard,
            connection_reuse: !cli.no_connection_reuse,
            timeout: cli.timeout,
            max_retries: cli.max_retries,
            follow_timeout: cli.follow_timeout.div_f64(cli.time_scale),
            // A second of the profile's time: tasks last whole seconds.
            follow_interval: Duration::from_secs(1).div_f64(cli.time_scale).max(Duration::from_millis(100)),
            cleanup: cli.cleanup,
            monitor: cli.monitor,
            traceparent: cli.trace || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty()),
            thresholds,
            pause: cli.pause.mul_f64(cli.scale),
            runs,
        })
    }
}

fn scaled_count(count: u64, scale: f64) -> u64 {
    ((count as f64 * scale).round() as u64).max(1)
}

/// A profile's schedule as an open model: rates divided among shards, durations multiplied by `--scale`; with
/// `--time-scale F` the same tasks arrive F times faster, each F times shorter.
fn profile_run(profile: &Profile, cli: &Cli, shard: Shard) -> Result<Run, String> {
    let compress = cli.time_scale;
    // `--scale` reshapes a run on purpose (smoke runs); a compression alone must send the same work, faster.
    if cli.scale == 1.0 {
        profile.keeps_its_work_at(compress)?;
    }
    let path = profile.path(cli.scale / compress);
    let stages = profile.stages(cli.scale, compress, shard.count);
    Ok(Run {
        profile: profile.name.to_owned(),
        method: http::Method::POST,
        uri: path.parse().map_err(|e| format!("profile {} path {path}: {e}", profile.name))?,
        later_paths: Vec::new(),
        model: Model::Open { start_rate: 0.0, stages, max_in_flight: cli.concurrency.unwrap_or(DEFAULT_MAX_IN_FLIGHT) },
    })
}

/// A phase profile as an open model: each phase's rate divided among shards from its start, its requests asking for
/// its task; `--scale` and `--time-scale` as for a profile.
fn phased_run(name: &str, phases: &[Phase], cli: &Cli, shard: Shard) -> Result<Run, String> {
    let compress = cli.time_scale;
    if cli.scale == 1.0 {
        phases::keep_their_work_at(name, phases, compress)?;
    }
    let mut paths = phases.iter().map(|phase| {
        let path = phase.path(cli.scale / compress);
        path.parse::<http::Uri>().map_err(|e| format!("phases {name} path {path}: {e}"))
    });
    let first = paths.next().ok_or_else(|| format!("phases {name}: none"))??;
    let later_paths = phases::starts(phases, cli.scale, compress)
        .into_iter()
        .zip(paths)
        .map(|(from, path)| Ok(PathFrom { from, path: path? }))
        .collect::<Result<_, String>>()?;
    Ok(Run {
        profile: name.to_owned(),
        method: http::Method::POST,
        uri: first,
        later_paths,
        model: Model::Open {
            start_rate: 0.0,
            stages: phases::stages(phases, cli.scale, compress, shard.count),
            max_in_flight: cli.concurrency.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        },
    })
}

fn custom_run(cli: &Cli, shard: Shard) -> Result<Run, String> {
    let method = http::Method::from_bytes(cli.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("--method {:?} is not an HTTP method", cli.method))?;
    let bad_path = || format!("--path {:?} must be a path starting with /, with an optional query", cli.path);
    if !cli.path.starts_with('/') {
        return Err(bad_path());
    }
    let uri: http::Uri = cli.path.parse().map_err(|_| bad_path())?;
    let duration = cli.duration.map(|d| d.mul_f64(cli.scale));
    let open = cli.rate.is_some() || cli.stages.is_some();
    let model = if open {
        let per_shard = |rate: f64| rate / f64::from(shard.count);
        let (start_rate, stages) = match (&cli.rate, &cli.stages) {
            (Some(rate), None) => {
                if !(*rate > 0.0 && rate.is_finite()) {
                    return Err(format!("--rate {rate}: must be a positive number"));
                }
                let duration = duration.ok_or("--rate needs --duration (how long to hold the rate)")?;
                (per_shard(*rate), vec![Stage { duration, target: per_shard(*rate) }])
            }
            (_, Some(text)) => {
                let stages = parse_stages(text)?;
                (
                    0.0,
                    stages
                        .into_iter()
                        .map(|s| Stage { duration: s.duration.mul_f64(cli.scale), target: per_shard(s.target) })
                        .collect(),
                )
            }
            (None, None) => unreachable!("open is only true when one is set"),
        };
        if cli.requests.is_some() {
            return Err(
                "--requests applies to the closed model; with --rate or --stages the schedule sets the count".into()
            );
        }
        Model::Open { start_rate, stages, max_in_flight: cli.concurrency.unwrap_or(DEFAULT_MAX_IN_FLIGHT) }
    } else {
        let requests = match (cli.requests, duration) {
            (None, None) => Some(DEFAULT_REQUESTS),
            (requests, _) => requests.map(|r| scaled_count(r, cli.scale)),
        };
        let requests = requests.map(|r| shard.share(r));
        let concurrency = cli.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        // Without a request count, a duration-bound closed load is split by workers.
        let concurrency = if requests.is_none() {
            u32::try_from(shard.share(u64::from(concurrency))).unwrap_or(1).max(1)
        } else {
            concurrency
        };
        Model::Closed { concurrency, requests, duration, delay: Duration::ZERO }
    };
    Ok(Run { profile: "custom".into(), method, uri, later_paths: Vec::new(), model })
}

/// `30s:50,1m:200,30s:0` into stages.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    let stages = text
        .split(',')
        .map(|part| {
            let (duration, target) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("--stages {part:?}: expected DURATION:RATE, like 30s:50"))?;
            let duration = humantime::parse_duration(duration.trim()).map_err(|e| format!("--stages {part:?}: {e}"))?;
            let target: f64 = target.trim().parse().map_err(|_| format!("--stages {part:?}: RATE must be a number"))?;
            if !(target >= 0.0 && target.is_finite()) || duration.is_zero() {
                return Err(format!("--stages {part:?}: need a positive duration and a rate >= 0"));
            }
            Ok(Stage { duration, target })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(stages)
}

fn as_text<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn expressions<S: serde::Serializer>(thresholds: &[Threshold], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(thresholds.iter().map(Threshold::expr))
}

fn opt_as_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("generator").chain(args.iter().copied())).expect("flags parse");
        Plan::from_cli(&cli, |_| None)
    }

    #[test]
    fn shares_split_evenly_and_add_up() {
        let shares: Vec<u64> = (0..4).map(|index| Shard { index, count: 4 }.share(30)).collect();
        assert_eq!(shares, [8, 8, 7, 7]);
        assert_eq!(shares.iter().sum::<u64>(), 30);
    }

    #[test]
    fn an_indexed_job_shards_itself() {
        let env = |key: &str| match key {
            "JOB_COMPLETION_INDEX" => Some("3".to_owned()),
            "GENERATOR_SHARDS" => Some("4".to_owned()),
            _ => None,
        };
        assert_eq!(Shard::resolve(None, env), Ok(Shard { index: 3, count: 4 }));
        assert_eq!(Shard::resolve(Some("1/2"), env), Ok(Shard { index: 1, count: 2 }));
        assert!(Shard::resolve(Some("4/4"), env).unwrap_err().contains("INDEX < COUNT"));
    }

    #[test]
    fn a_profile_is_an_arrival_schedule_scaled_and_sharded() {
        let sharded = plan(&["--test", "heavy", "--scale", "0.1", "--shard", "0/2"]).expect("plan");
        let Model::Open { ref stages, start_rate, .. } = sharded.runs[0].model else { panic!("profiles are open") };
        assert_eq!(start_rate, 0.0);
        assert_eq!(stages[0], Stage { duration: Duration::from_secs(6), target: 0.125 });
        assert_eq!(stages.len(), 3);
        let compressed = plan(&["--test", "heavy", "--time-scale", "20"]).expect("plan");
        let Model::Open { ref stages, .. } = compressed.runs[0].model else { panic!("profiles are open") };
        assert_eq!(stages[1], Stage { duration: Duration::from_secs(24), target: 5.0 }, "same tasks, 20 times faster");
        assert!(compressed.runs[0].uri.to_string().contains("duration=1&"), "20 s tasks last 1 s");
        let refused = plan(&["--test", "medium", "--time-scale", "10"]).expect_err("15 s tasks would last 2 s");
        assert!(refused.contains("--time-scale 10") && refused.contains("such as 1, 3, 5, 15"), "{refused}");
        assert!(
            plan(&["--test", "all", "--time-scale", "20"]).is_err(),
            "medium's and cpu_stress's tasks do not divide"
        );
        assert!(plan(&["--test", "light", "--scale", "0.1", "--time-scale", "5"]).is_ok(), "a smoke run may reshape");
    }

    #[test]
    fn a_phase_profile_changes_its_request_at_each_phase_start() {
        let sharded = plan(&["--test", "comparison_pattern", "--time-scale", "5", "--shard", "1/4"]).expect("plan");
        let run = &sharded.runs[0];
        assert_eq!(run.uri, "/process?cpu_intensity=3&memory_size=50&duration=3&async_mode=true");
        // (from, path): each phase's start at x5 and its task, five times shorter.
        let later: Vec<(u64, String)> =
            run.later_paths.iter().map(|l| (l.from.as_secs(), l.path.to_string())).collect();
        assert_eq!(
            later,
            [
                (60, "/process?cpu_intensity=9&memory_size=200&duration=6&async_mode=true".to_owned()),
                (180, "/process?cpu_intensity=6&memory_size=120&duration=4&async_mode=true".to_owned()),
                (300, "/process?cpu_intensity=2&memory_size=30&duration=2&async_mode=true".to_owned()),
            ]
        );
        let Model::Open { ref stages, .. } = run.model else { panic!("phases are open") };
        assert_eq!(stages[2], Stage { duration: Duration::ZERO, target: 8.0 / 60.0 * 5.0 / 4.0 }, "a step, sharded");
        let refused = plan(&["--test", "baseline", "--time-scale", "2"]).expect_err("22 s tasks would last 11");
        assert!(refused.contains("baseline's 20, 25, 22, 18 s tasks"), "{refused}");
        let unknown = plan(&["--test", "nope"]).expect_err("unknown");
        assert!(unknown.contains("cpu_stress, baseline, comparison_pattern, or all"), "{unknown}");
    }

    #[test]
    fn rate_is_divided_across_shards() {
        let plan = plan(&["--rate", "100", "--duration", "10s", "--shard", "0/4"]).expect("plan");
        let Model::Open { ref stages, .. } = plan.runs[0].model else { panic!("--rate is open") };
        assert_eq!(stages, &[Stage { duration: Duration::from_secs(10), target: 25.0 }]);
    }

    #[test]
    fn bad_input_names_the_flag() {
        assert!(plan(&["--test", "nope"]).unwrap_err().contains("light, medium"));
        assert!(plan(&["--url", "https://x"]).unwrap_err().contains("only http"));
        assert!(plan(&["--rate", "5"]).unwrap_err().contains("--duration"));
        assert!(plan(&["--stages", "30s"]).unwrap_err().contains("DURATION:RATE"));
        assert!(plan(&["--threshold", "p99 about 2s"]).unwrap_err().contains("p99 about 2s"));
    }
}

/// Property tests for `--stages`: any text is a list of stages with positive durations and finite rates >= 0, or an
/// error naming `--stages`; a well-formed list comes back as written. Bounded by proptest's case count.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_is_sound_stages_or_an_error(text in any::<String>()) {
            match parse_stages(&text) {
                Ok(stages) => {
                    for stage in stages {
                        prop_assert!(!stage.duration.is_zero() && stage.target.is_finite() && stage.target >= 0.0);
                    }
                }
                Err(message) => prop_assert!(message.starts_with("--stages "), "{}", message),
            }
        }

        #[test]
        fn shaped_like_stages_is_sound_or_an_error(
            parts in prop::collection::vec(
                (
                    prop::sample::select(vec!["0s", "1s", "30s", "1m", "2h", "99999999999999999999h", "-1s", "", "1x"]),
                    prop::sample::select(vec!["0", "50", "0.5", "-1", "NaN", "inf", "1e400", "", "x"]),
                ),
                0..5,
            ),
        ) {
            let text: Vec<String> = parts.iter().map(|(d, r)| format!("{d}:{r}")).collect();
            if let Ok(stages) = parse_stages(&text.join(",")) {
                for stage in stages {
                    prop_assert!(!stage.duration.is_zero() && stage.target.is_finite() && stage.target >= 0.0);
                }
            }
        }

        #[test]
        fn well_formed_stages_come_back_as_written(stages in prop::collection::vec((1u64..86_400, 0u32..100_000), 1..6)) {
            let text: Vec<String> = stages.iter().map(|(secs, rate)| format!("{secs}s:{rate}")).collect();
            let parsed = parse_stages(&text.join(",")).expect("well formed");
            let back: Vec<(u64, u32)> = parsed.iter().map(|s| (s.duration.as_secs(), s.target as u32)).collect();
            prop_assert_eq!(back, stages);
        }
    }
}
