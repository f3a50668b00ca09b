//! Loads that change shape: a profile as a list of phases (how long, how many requests a minute, what each asks for),
//! named (`baseline` and `comparison_pattern`, the loads the Python service's policy comparison sends) or read from a
//! file. Played as the generator plays a profile: arrival k is sent when the expected count reaches k, the count
//! carried across a phase's edge.

use std::time::Duration;

use serde_yaml_ng::Value;
use surge_capacity::request::{self, Bounds};
use surge_generator::schedule::{Schedule, Stage};

use crate::pod::Task;
use crate::run::Arrival;

/// One stretch of a load at one rate, every request asking for the same task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub seconds: f64,
    pub per_minute: f64,
    pub task: Task,
}

const MIB: u64 = 1 << 20;

const fn phase(minutes: u32, per_minute: f64, cpu_intensity: u8, memory_mib: u64, duration_secs: u32) -> Phase {
    let task = Task { cpu_intensity, seconds: duration_secs as f64, memory_bytes: memory_mib * MIB, sync: false };
    Phase { seconds: minutes as f64 * 60.0, per_minute, task }
}

/// The named phase profiles, both async, 30 minutes.
pub const NAMED: [(&str, &[Phase]); 2] = [
    (
        "baseline",
        &[phase(6, 8.0, 6, 120, 20), phase(8, 12.0, 8, 180, 25), phase(10, 6.0, 7, 150, 22), phase(6, 3.0, 4, 90, 18)],
    ),
    (
        "comparison_pattern",
        &[phase(5, 2.0, 3, 50, 15), phase(10, 8.0, 9, 200, 30), phase(10, 4.0, 6, 120, 20), phase(5, 1.0, 2, 30, 10)],
    ),
];

pub fn named(name: &str) -> Option<&'static [Phase]> {
    NAMED.iter().find(|(n, _)| *n == name).map(|(_, phases)| *phases)
}

/// Every request of the phases, in order: arrival times follow the generator's schedule (each phase a step to its rate
/// held for its length), and each request asks for the task of the phase its time falls in.
pub fn arrivals(phases: &[Phase]) -> Vec<Arrival> {
    let stages: Vec<Stage> = phases
        .iter()
        .flat_map(|p| {
            let rate = p.per_minute / 60.0;
            [
                Stage { duration: Duration::ZERO, target: rate },
                Stage { duration: Duration::from_secs_f64(p.seconds), target: rate },
            ]
        })
        .collect();
    let ends: Vec<f64> = phases.iter().scan(0.0, |end, p| Some(*end + p.seconds).inspect(|e| *end = *e)).collect();
    Schedule::new(0.0, &stages)
        .map(|offset| offset.as_secs_f64())
        .map(|at| {
            // The last arrival may fall on the load's end itself: it is the last phase's.
            let index = ends.iter().position(|end| at < *end).unwrap_or(phases.len() - 1);
            Arrival { at, task: phases[index].task }
        })
        .collect()
}

/// Phases from a YAML (or JSON) file's text: `phases:`, a list of `{minutes, per_minute, cpu_intensity, memory_mib,
/// duration_secs, async}` (`async` true unless said), each value within what the consumer accepts.
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
            let whole = |name: &str, low: f64, high: f64| -> Result<f64, String> {
                let value = field(name, low, high)?;
                if value.fract() == 0.0 {
                    Ok(value)
                } else {
                    Err(format!("phases[{index}].{name}: {value} is not a whole number (the consumer takes integers)"))
                }
            };
            let sync = match &item["async"] {
                Value::Null => false,
                Value::Bool(is_async) => !is_async,
                other => return Err(format!("phases[{index}].async: true or false, not {other:?}")),
            };
            let within = |name: &str, bounds: Bounds| whole(name, bounds.min as f64, bounds.max as f64);
            let task = Task {
                cpu_intensity: within("cpu_intensity", request::CPU_INTENSITY)? as u8,
                seconds: within("duration_secs", request::DURATION_SECS)?,
                memory_bytes: within("memory_mib", request::MEMORY_MIB)? as u64 * MIB,
                sync,
            };
            Ok(Phase {
                seconds: field("minutes", 0.1, 24.0 * 60.0)? * 60.0,
                per_minute: field("per_minute", 0.0, 6000.0)?,
                task,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_sends_its_rate_with_its_task() {
        let baseline = named("baseline").expect("baseline");
        assert_eq!(baseline.iter().map(|p| p.seconds).sum::<f64>(), 1800.0);
        let arrivals = arrivals(baseline);
        // 6 × 8 + 8 × 12 + 10 × 6 + 6 × 3 = 222 requests.
        assert_eq!(arrivals.len(), 222);
        // (phase start, end, requests, cpu_intensity, MiB, seconds)
        let expected = [
            (0.0, 360.0, 48, 6, 120, 20.0),
            (360.0, 840.0, 96, 8, 180, 25.0),
            (840.0, 1440.0, 60, 7, 150, 22.0),
            (1440.0, 1800.0, 18, 4, 90, 18.0),
        ];
        for (start, end, count, cpu, mib, seconds) in expected {
            let within: Vec<&Arrival> = arrivals.iter().filter(|a| (start..end).contains(&a.at)).collect();
            assert_eq!(within.len(), count, "{start}..{end}");
            assert!(
                within
                    .iter()
                    .all(|a| a.task == Task { cpu_intensity: cpu, seconds, memory_bytes: mib * MIB, sync: false }),
                "{start}..{end}: {:?}",
                within.first()
            );
        }
        assert!(arrivals.windows(2).all(|w| w[0].at <= w[1].at), "in time order");
    }

    #[test]
    fn a_file_names_what_it_gets_wrong() {
        let good = "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 5, memory_mib: 100, duration_secs: 10}\n  - {minutes: 1, per_minute: 0, cpu_intensity: 1, memory_mib: 0, duration_secs: 1, async: false}\n";
        let phases = parse(good).expect("parses");
        assert_eq!(phases.len(), 2);
        assert_eq!(
            phases[0],
            Phase {
                seconds: 120.0,
                per_minute: 6.0,
                task: Task { cpu_intensity: 5, seconds: 10.0, memory_bytes: 100 * MIB, sync: false }
            }
        );
        assert!(phases[1].task.sync);
        assert_eq!(arrivals(&phases).len(), 12);
        // (text, what the error must name)
        let cases = [
            ("[1, 2]", "a top-level `phases:` list"),
            ("phases: []", "empty"),
            (
                "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 11, memory_mib: 1, duration_secs: 1}",
                "phases[0].cpu_intensity: 11 is outside 1 to 10",
            ),
            (
                "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 1, memory_mib: 1, duration_secs: 1.5}",
                "phases[0].duration_secs: 1.5 is not a whole number",
            ),
            (
                "phases:\n  - {minutes: 2, per_minute: 6, cpu_intensity: 1, duration_secs: 1}",
                "phases[0].memory_mib: a number from 0 to 500",
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
