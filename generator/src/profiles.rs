//! The named load profiles: one table. Each is an arrival rate over time (the open model), so the offered load does
//! not collapse when the consumer pushes back, and lasts long enough at `--scale 1` to watch scaling (like the Jobs
//! they replace). The task figures are the Python generator's.
//!
//! Rates are calibrated on the development overlay's pod (1 core, 384 MiB budget, overcommit 2): a pod completes
//! about 1 / (intensity/10 × duration) tasks per second when CPU bound, fewer when memory bound.

use std::time::Duration;

use crate::schedule::{Schedule, Stage};

/// One piece of a profile's schedule: move the arrival rate linearly to `rate` tasks/s over `seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub seconds: u32,
    pub rate: f64,
}

/// One named profile: its arrival schedule and the work each request asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub description: &'static str,
    /// The schedule starts at 0 tasks/s.
    pub steps: &'static [Step],
    pub cpu_intensity: u8,
    pub memory_mib: u32,
    pub duration_secs: u32,
    pub async_mode: bool,
}

const fn step(seconds: u32, rate: f64) -> Step {
    Step { seconds, rate }
}

/// The order here is the order `--test all` runs them in.
pub const PROFILES: [Profile; 7] = [
    Profile {
        name: "light",
        description: "A gentle warm-up: a third of one pod's capacity; stays at the minimum",
        steps: &[step(30, 0.3), step(240, 0.3), step(30, 0.0)],
        cpu_intensity: 2,
        memory_mib: 20,
        duration_secs: 5,
        async_mode: true,
    },
    Profile {
        name: "medium",
        description: "Moderate CPU and memory: about two pods' worth of work",
        steps: &[step(60, 0.25), step(360, 0.25), step(60, 0.0)],
        cpu_intensity: 6,
        memory_mib: 80,
        duration_secs: 15,
        async_mode: true,
    },
    Profile {
        name: "heavy",
        description: "Heavy background work: about five pods' worth; backlog and CPU demand scale it up",
        steps: &[step(60, 0.25), step(480, 0.25), step(60, 0.0)],
        cpu_intensity: 9,
        memory_mib: 150,
        duration_secs: 20,
        async_mode: true,
    },
    Profile {
        name: "sustained",
        description: "Long tasks at a steady rate for half an hour: holds replicas up, then watch scale-down",
        steps: &[step(120, 0.1), step(1560, 0.1), step(120, 0.0)],
        cpu_intensity: 8,
        memory_mib: 120,
        duration_secs: 60,
        async_mode: true,
    },
    Profile {
        name: "burst",
        description: "A sudden spike of maximum-intensity tasks: the fastest scale-up the behavior allows",
        steps: &[step(15, 1.5), step(90, 1.5), step(15, 0.0)],
        cpu_intensity: 10,
        memory_mib: 100,
        duration_secs: 10,
        async_mode: true,
    },
    Profile {
        name: "memory_stress",
        description: "Large allocations: one task fills a pod's budget, so the backlog drives scaling",
        // 3 pods (one 250 MiB task each) at 80% of what they can finish: at 0.1/s they had no headroom, so the backlog
        // was a random walk and the peak a coin toss between 3 and 4 (4 in one clean-clone `make test`, 3 in others).
        steps: &[step(60, 0.08), step(480, 0.08), step(60, 0.0)],
        cpu_intensity: 3,
        memory_mib: 250,
        duration_secs: 30,
        async_mode: true,
    },
    Profile {
        name: "cpu_stress",
        description: "Synchronous full-intensity CPU work: callers wait, CPU demand drives scaling",
        steps: &[step(60, 0.12), step(480, 0.12), step(60, 0.0)],
        cpu_intensity: 10,
        memory_mib: 50,
        duration_secs: 25,
        async_mode: false,
    },
];

/// `POST /process` for one task, its `duration` multiplied by `scale` and kept within the consumer's whole seconds.
pub(crate) fn process_path(
    cpu_intensity: u8,
    memory_mib: u32,
    duration_secs: u32,
    async_mode: bool,
    scale: f64,
) -> String {
    let duration = task_seconds(duration_secs, scale);
    format!(
        "/process?cpu_intensity={cpu_intensity}&memory_size={memory_mib}&duration={duration}&async_mode={async_mode}"
    )
}

/// The seconds of work a task asks for at `scale`: the consumer takes whole seconds, 1 to 60.
fn task_seconds(duration_secs: u32, scale: f64) -> f64 {
    let bounds = surge_capacity::request::DURATION_SECS;
    (f64::from(duration_secs) * scale).round().clamp(bounds.min as f64, bounds.max as f64)
}

/// Refuses a time compression that would change any of a load's task lengths, naming the factors that keep them all.
pub(crate) fn keeps_work(name: &str, task_seconds_of: &[u32], factor: f64) -> Result<(), String> {
    if task_seconds_of.iter().all(|s| task_seconds(*s, 1.0 / factor) == f64::from(*s) / factor) {
        return Ok(());
    }
    let shortest = task_seconds_of.iter().copied().min().unwrap_or(1);
    let dividing: Vec<String> = (1..=shortest)
        .filter(|d| task_seconds_of.iter().all(|s| s.is_multiple_of(*d)))
        .map(|d| d.to_string())
        .collect();
    let lengths: Vec<String> = task_seconds_of.iter().map(|s| s.to_string()).collect();
    Err(format!(
        "--time-scale {factor} would change {name}'s {} s tasks (the consumer takes whole seconds): use one that \
         divides {}, such as {}",
        lengths.join(", "),
        if lengths.len() == 1 { lengths.join("") } else { "each".to_owned() },
        dividing.join(", ")
    ))
}

pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

pub fn names() -> String {
    PROFILES.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

impl Profile {
    /// The request path with this profile's work parameters, `duration` scaled and kept within the consumer's 1–60 s.
    pub fn path(&self, scale: f64) -> String {
        process_path(self.cpu_intensity, self.memory_mib, self.duration_secs, self.async_mode, scale)
    }

    /// Refuses a time compression that would change each task's work, naming factors that keep it (medium's 15 s at
    /// x10 would be sent as 2 s, a third more work, and peaked at 7 where real time peaks at 5).
    pub fn keeps_its_work_at(&self, factor: f64) -> Result<(), String> {
        keeps_work(self.name, &[self.duration_secs], factor)
    }

    /// The schedule's stages with durations multiplied by `scale / compress` and rates by `compress / shards`: the
    /// same tasks `compress` times faster, split among `shards` generators.
    pub fn stages(&self, scale: f64, compress: f64, shards: u32) -> Vec<Stage> {
        self.steps
            .iter()
            .map(|s| Stage {
                duration: Duration::from_secs(u64::from(s.seconds)).mul_f64(scale / compress),
                target: s.rate * compress / f64::from(shards),
            })
            .collect()
    }

    /// When each request is sent at `--scale 1`, real time, one generator: seconds from the first.
    pub fn arrival_times(&self) -> impl Iterator<Item = f64> {
        Schedule::new(0.0, &self.stages(1.0, 1.0, 1)).map(|offset| offset.as_secs_f64())
    }

    /// How long the schedule sends, at `--scale 1`.
    pub fn length(&self) -> Duration {
        Duration::from_secs(self.steps.iter().map(|s| u64::from(s.seconds)).sum())
    }

    /// The highest arrival rate of the schedule.
    pub fn peak_rate(&self) -> f64 {
        self.steps.iter().map(|s| s.rate).fold(0.0, f64::max)
    }

    /// Tasks the whole schedule sends at `--scale 1`.
    pub fn tasks(&self) -> f64 {
        let mut from = 0.0;
        self.steps
            .iter()
            .map(|s| {
                let area = (from + s.rate) / 2.0 * f64::from(s.seconds);
                from = s.rate;
                area
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_the_python_generators_task_figures() {
        let heavy = find("heavy").expect("heavy");
        assert_eq!((heavy.cpu_intensity, heavy.memory_mib, heavy.duration_secs), (9, 150, 20));
        assert!(!find("cpu_stress").expect("cpu_stress").async_mode);
        assert_eq!(names(), "light, medium, heavy, sustained, burst, memory_stress, cpu_stress");
    }

    #[test]
    fn profiles_last_as_long_as_the_jobs_they_replace() {
        // (profile, minutes at --scale 1, as the Python Jobs ran)
        for (name, minutes) in
            [("light", 5), ("medium", 8), ("heavy", 10), ("sustained", 30), ("memory_stress", 10), ("cpu_stress", 10)]
        {
            assert_eq!(find(name).expect(name).length(), Duration::from_secs(minutes * 60), "{name}");
        }
        assert_eq!(find("burst").expect("burst").length(), Duration::from_secs(120), "a burst is short by nature");
        assert!((find("heavy").expect("heavy").tasks() - 135.0).abs() < 1e-9);
    }

    #[test]
    fn a_time_compression_is_accepted_only_where_it_keeps_the_work() {
        let medium = find("medium").expect("medium");
        for factor in [1.0, 2.5, 3.0, 5.0, 15.0] {
            assert_eq!(medium.keeps_its_work_at(factor), Ok(()), "x{factor}");
        }
        for factor in [2.0, 10.0, 20.0, 30.0] {
            let refused = medium.keeps_its_work_at(factor).expect_err("15 s tasks do not divide");
            assert!(refused.contains("such as 1, 3, 5, 15"), "{refused}");
        }
        assert!(find("light").expect("light").keeps_its_work_at(10.0).is_err(), "0.5 s would be sent as 1 s");
    }

    #[test]
    fn scaled_durations_stay_inside_the_consumers_range() {
        let heavy = find("heavy").expect("heavy");
        assert_eq!(heavy.path(1.0), "/process?cpu_intensity=9&memory_size=150&duration=20&async_mode=true");
        assert!(heavy.path(0.01).contains("duration=1&"));
        assert!(find("sustained").expect("sustained").path(10.0).contains("duration=60&"));
    }
}
