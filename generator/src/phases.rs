//! Loads that change shape: a profile as phases (how long, how many requests a minute, what each asks for), named
//! (`baseline` and `comparison_pattern`, the loads the Python service's policy comparison sends) or read from a file
//! (`--phases`). Each phase is a step to its rate held for its length; the arrival count carries across a phase's
//! edge, and a request asks for the task of the phase its send time falls in. The simulator plays the same arrivals.

use std::time::Duration;

use serde_yaml_ng::Value;
use surge_capacity::request::{self, Bounds};

use crate::profiles::{self, keeps_work, process_path, Profile};
use crate::schedule::{Schedule, Stage};

/// One stretch of a load at one rate, every request asking for the same task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub seconds: f64,
    pub per_minute: f64,
    pub cpu_intensity: u8,
    pub memory_mib: u32,
    pub duration_secs: u32,
    pub async_mode: bool,
}

/// A named phase profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phased {
    pub name: &'static str,
    pub description: &'static str,
    pub phases: &'static [Phase],
}

const fn phase(minutes: u32, per_minute: f64, cpu_intensity: u8, memory_mib: u32, duration_secs: u32) -> Phase {
    Phase { seconds: minutes as f64 * 60.0, per_minute, cpu_intensity, memory_mib, duration_secs, async_mode: true }
}

/// The named phase profiles, both async, 30 minutes; `--test all` runs them after the seven ramps.
pub const PHASED: [Phased; 2] = [
    Phased {
        name: "baseline",
        description: "Four phases of a working day (the Python service's policy comparison): 8, 12, 6, 3 a minute",
        phases: &[
            phase(6, 8.0, 6, 120, 20),
            phase(8, 12.0, 8, 180, 25),
            phase(10, 6.0, 7, 150, 22),
            phase(6, 3.0, 4, 90, 18),
        ],
    },
    Phased {
        name: "comparison_pattern",
        description: "A quiet start, a long heavy stretch, then easing off: 2, 8, 4, 1 a minute",
        phases: &[
            phase(5, 2.0, 3, 50, 15),
            phase(10, 8.0, 9, 200, 30),
            phase(10, 4.0, 6, 120, 20),
            phase(5, 1.0, 2, 30, 10),
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Phased> {
    PHASED.iter().find(|p| p.name == name)
}

/// A load the generator sends by name (`--test NAME`): a profile or a phase profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Named {
    Profile(&'static Profile),
    Phased(&'static Phased),
}

impl Named {
    /// The load called `name`, wherever the generator keeps it: the one lookup of a load by name.
    pub fn find(name: &str) -> Option<Self> {
        profiles::find(name).map(Self::Profile).or_else(|| find(name).map(Self::Phased))
    }

    /// Refuses a time compression that would change any of its tasks' lengths.
    pub fn keeps_its_work_at(self, factor: f64) -> Result<(), String> {
        match self {
            Self::Profile(profile) => profile.keeps_its_work_at(factor),
            Self::Phased(phased) => keep_their_work_at(phased.name, phased.phases, factor),
        }
    }
}

/// `--phases`: a named phase profile, or a file of phases.
pub fn named_or_file(value: &str) -> Result<Vec<Phase>, String> {
    if let Some(named) = find(value) {
        return Ok(named.phases.to_vec());
    }
    let text = std::fs::read_to_string(value).map_err(|e| {
        let names: Vec<&str> = PHASED.iter().map(|p| p.name).collect();
        format!("--phases {value}: neither {} nor a readable file ({e})", names.join(" nor "))
    })?;
    parse(&text).map_err(|e| format!("--phases {value}: {e}"))
}

impl Phase {
    /// The request each arrival of this phase sends, its task length multiplied by `scale`.
    pub fn path(&self, scale: f64) -> String {
        process_path(self.cpu_intensity, self.memory_mib, self.duration_secs, self.async_mode, scale)
    }
}

/// Refuses a time compression that would change any phase's task length.
pub fn keep_their_work_at(name: &str, phases: &[Phase], factor: f64) -> Result<(), String> {
    keeps_work(name, &phases.iter().map(|p| p.duration_secs).collect::<Vec<_>>(), factor)
}

/// The phases as a schedule: each a step to its rate (divided among `shards`, multiplied by `compress`) held for its
/// length multiplied by `scale / compress`.
pub fn stages(phases: &[Phase], scale: f64, compress: f64, shards: u32) -> Vec<Stage> {
    phases
        .iter()
        .flat_map(|p| {
            let target = p.per_minute / 60.0 * compress / f64::from(shards);
            [
                Stage { duration: Duration::ZERO, target },
                Stage { duration: Duration::from_secs_f64(p.seconds * scale / compress), target },
            ]
        })
        .collect()
}

/// When each phase after the first begins, as offsets into the schedule `stages` gives at the same scales.
pub fn starts(phases: &[Phase], scale: f64, compress: f64) -> Vec<Duration> {
    phases
        .iter()
        .scan(Duration::ZERO, |begun, p| {
            let start = *begun;
            *begun += Duration::from_secs_f64(p.seconds * scale / compress);
            Some(start)
        })
        .skip(1)
        .collect()
}

/// Every request of the phases at real time, one generator: (seconds from the first, the phase it belongs to).
pub fn arrivals(phases: &[Phase]) -> impl Iterator<Item = (f64, &Phase)> {
    let starts = starts(phases, 1.0, 1.0);
    Schedule::new(0.0, &stages(phases, 1.0, 1.0, 1)).map(move |offset| {
        // The last arrival may fall on the load's end itself: it is the last phase's.
        let index = starts.iter().take_while(|start| **start <= offset).count();
        (offset.as_secs_f64(), &phases[index])
    })
}

/// Phases from a YAML (or JSON) file's text: `phases:`, a list of `{minutes, per_minute, cpu_intensity, memory_mib,
/// duration_secs, async}` (`async` true unless said), each task within what the consumer accepts.
pub fn parse(text: &str) -> Result<Vec<Phase>, String> {
    let document: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let list = document["phases"].as_sequence().ok_or("a top-level `phases:` list")?;
    if list.is_empty() {
        return Err("`phases:` is empty".into());
    }
    list.iter()
        .enumerate()
        .map(|(index, item)| {
            let field = |name: &str, low: f64, high: f64| -> Result<f64, String> {
                let value = item[name]
                    .as_f64()
                    .ok_or_else(|| format!("phases[{index}].{name}: a number from {low} to {high}"))?;
                if (low..=high).contains(&value) {
                    Ok(value)
                } else {
                    Err(format!("phases[{index}].{name}: {value} is outside {low} to {high}"))
                }
            };
            let task = |name: &str, bounds: Bounds| -> Result<u64, String> {
                let named = format!("phases[{index}].{name}");
                let value = item[name].as_f64().ok_or_else(|| format!("{named}: {}", bounds.expected()))?;
                bounds.check(&named, value)
            };
            let async_mode = match &item["async"] {
                Value::Null => true,
                Value::Bool(is_async) => *is_async,
                other => return Err(format!("phases[{index}].async: true or false, not {other:?}")),
            };
            Ok(Phase {
                seconds: field("minutes", 0.1, 24.0 * 60.0)? * 60.0,
                per_minute: field("per_minute", 0.0, 6000.0)?,
                // Within the consumer's ranges, so each fits its type.
                cpu_intensity: task("cpu_intensity", request::CPU_INTENSITY)? as u8,
                memory_mib: task("memory_mib", request::MEMORY_MIB)? as u32,
                duration_secs: task("duration_secs", request::DURATION_SECS)? as u32,
                async_mode,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_sends_its_rate_with_its_task() {
        let baseline = find("baseline").expect("baseline").phases;
        assert_eq!(baseline.iter().map(|p| p.seconds).sum::<f64>(), 1800.0);
        let arrivals: Vec<(f64, &Phase)> = arrivals(baseline).collect();
        // 6 × 8 + 8 × 12 + 10 × 6 + 6 × 3 = 222 requests.
        assert_eq!(arrivals.len(), 222);
        // (phase start, end, requests, its task's path)
        let expected = [
            (0.0, 360.0, 48, "/process?cpu_intensity=6&memory_size=120&duration=20&async_mode=true"),
            (360.0, 840.0, 96, "/process?cpu_intensity=8&memory_size=180&duration=25&async_mode=true"),
            (840.0, 1440.0, 60, "/process?cpu_intensity=7&memory_size=150&duration=22&async_mode=true"),
            (1440.0, 1800.0, 18, "/process?cpu_intensity=4&memory_size=90&duration=18&async_mode=true"),
        ];
        for (start, end, count, path) in expected {
            let within: Vec<&(f64, &Phase)> = arrivals.iter().filter(|(at, _)| (start..end).contains(at)).collect();
            assert_eq!(within.len(), count, "{start}..{end}");
            assert!(within.iter().all(|(_, p)| p.path(1.0) == path), "{start}..{end}: {:?}", within.first());
        }
        assert!(arrivals.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    }

    #[test]
    fn a_schedule_scaled_sharded_and_compressed_keeps_its_phase_edges() {
        let pattern = find("comparison_pattern").expect("comparison_pattern").phases;
        let stages = stages(pattern, 1.0, 5.0, 2);
        // A step to 8 a minute (x5, two shards: 1/3 a second) held for 10 minutes / 5.
        assert_eq!(stages[2], Stage { duration: Duration::ZERO, target: 8.0 / 60.0 * 5.0 / 2.0 });
        assert_eq!(stages[3].duration, Duration::from_secs(120));
        let starts: Vec<u64> = starts(pattern, 1.0, 5.0).iter().map(Duration::as_secs).collect();
        assert_eq!(starts, [60, 180, 300]);
        // Its tasks (15, 30, 20, 10 s) share 5; baseline's (20, 25, 22, 18 s) only 1.
        assert_eq!(keep_their_work_at("comparison_pattern", pattern, 5.0), Ok(()));
        let refused = keep_their_work_at("baseline", find("baseline").expect("baseline").phases, 2.0).expect_err("22");
        assert!(refused.contains("20, 25, 22, 18 s tasks") && refused.ends_with("such as 1"), "{refused}");
    }

    #[test]
    fn a_file_names_what_it_gets_wrong() {
        let good = "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 5, memory_mib: 100, duration_secs: 10}\n  - {minutes: 1, per_minute: 0, cpu_intensity: 1, memory_mib: 0, duration_secs: 1, async: false}\n";
        let phases = parse(good).expect("parses");
        assert_eq!(
            phases,
            [
                Phase {
                    seconds: 120.0,
                    per_minute: 6.0,
                    cpu_intensity: 5,
                    memory_mib: 100,
                    duration_secs: 10,
                    async_mode: true
                },
                Phase {
                    seconds: 60.0,
                    per_minute: 0.0,
                    cpu_intensity: 1,
                    memory_mib: 0,
                    duration_secs: 1,
                    async_mode: false
                },
            ]
        );
        assert_eq!(arrivals(&phases).count(), 12);
        // (text, what the error must name)
        let cases = [
            ("[1, 2]", "a top-level `phases:` list"),
            ("phases: []", "empty"),
            (
                "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 11, memory_mib: 1, duration_secs: 1}",
                "phases[0].cpu_intensity: 11 is not a whole number from 1 to 10",
            ),
            (
                "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 1, memory_mib: 1, duration_secs: 1.5}",
                "phases[0].duration_secs: 1.5 is not a whole number from 1 to 60",
            ),
            (
                "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 1, duration_secs: 1}",
                "phases[0].memory_mib: a whole number from 0 to 500",
            ),
            (
                "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 1, memory_mib: 1, duration_secs: 1, async: 3}",
                "phases[0].async: true or false",
            ),
            (
                "phases:\n  - {minutes: 0, per_minute: 6, cpu_intensity: 1, memory_mib: 1, duration_secs: 1}",
                "phases[0].minutes: 0 is outside",
            ),
        ];
        for (text, names) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(names), "{text}: {error}");
        }
    }
}
