//! The named load profiles: one table. Each is an arrival rate over time (the open model), so the offered load does
//! not collapse when the consumer pushes back, and lasts long enough at `--scale 1` to watch scaling (like the Jobs
//! they replace). The task figures are the Python generator's.
//!
//! Rates are calibrated on the development overlay's pod (1 core, 384 MiB budget, overcommit 2): a pod completes
//! about 1 / (intensity/10 × duration) tasks per second when CPU bound, fewer when memory bound.

use std::time::Duration;

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
        // was a random walk and the peak a coin toss between 3 and 4 (4 on the CI runner, 3 here).
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

pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

pub fn names() -> String {
    PROFILES.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

impl Profile {
    /// The request path with this profile's work parameters, `duration` scaled and kept within the consumer's 1–60 s.
    pub fn path(&self, scale: f64) -> String {
        let duration = (f64::from(self.duration_secs) * scale).round().clamp(1.0, 60.0);
        format!(
            "/process?cpu_intensity={}&memory_size={}&duration={duration}&async_mode={}",
            self.cpu_intensity, self.memory_mib, self.async_mode
        )
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
    fn scaled_durations_stay_inside_the_consumers_range() {
        let heavy = find("heavy").expect("heavy");
        assert_eq!(heavy.path(1.0), "/process?cpu_intensity=9&memory_size=150&duration=20&async_mode=true");
        assert!(heavy.path(0.01).contains("duration=1&"));
        assert!(find("sustained").expect("sustained").path(10.0).contains("duration=60&"));
    }
}
