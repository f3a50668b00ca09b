//! The named load profiles: one table, with the figures users of the Python generator know.

use std::time::Duration;

/// One named profile: how many `POST /process` requests, how many at once, and what work each asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub description: &'static str,
    pub concurrent: u32,
    pub total: u64,
    pub cpu_intensity: u8,
    pub memory_mib: u32,
    pub duration_secs: u32,
    pub async_mode: bool,
    /// Minimum spacing between two sends, across all workers.
    pub delay: Duration,
}

const fn profile(
    name: &'static str,
    description: &'static str,
    (concurrent, total): (u32, u64),
    (cpu_intensity, memory_mib, duration_secs): (u8, u32, u32),
    async_mode: bool,
    delay_ms: u64,
) -> Profile {
    Profile {
        name,
        description,
        concurrent,
        total,
        cpu_intensity,
        memory_mib,
        duration_secs,
        async_mode,
        delay: Duration::from_millis(delay_ms),
    }
}

/// The order here is the order `--test all` runs them in.
pub const PROFILES: [Profile; 7] = [
    profile("light", "A gentle warm-up: a few small background tasks", (2, 10), (2, 20, 5), true, 100),
    profile(
        "medium",
        "Moderate CPU and memory: enough to move the request-rate trigger",
        (5, 20),
        (6, 80, 15),
        true,
        100,
    ),
    profile(
        "heavy",
        "Heavy background work: scales the consumer up on every trigger",
        (10, 30),
        (9, 150, 20),
        true,
        100,
    ),
    profile(
        "sustained",
        "Long tasks sent slowly: holds load so you can watch scale-down wait for it",
        (8, 25),
        (8, 120, 60),
        true,
        2000,
    ),
    profile("burst", "A sudden spike of maximum-intensity tasks", (15, 40), (10, 100, 10), true, 100),
    profile(
        "memory_stress",
        "Large allocations: drives the allocator-pressure trigger",
        (6, 15),
        (3, 250, 30),
        true,
        100,
    ),
    profile(
        "cpu_stress",
        "Synchronous full-intensity CPU work: drives latency and CPU",
        (8, 20),
        (10, 50, 25),
        false,
        100,
    ),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_the_python_generators_figures() {
        let heavy = find("heavy").expect("heavy");
        assert_eq!((heavy.concurrent, heavy.total, heavy.cpu_intensity, heavy.memory_mib), (10, 30, 9, 150));
        assert_eq!(find("sustained").expect("sustained").delay, Duration::from_secs(2));
        assert!(!find("cpu_stress").expect("cpu_stress").async_mode);
        assert_eq!(names(), "light, medium, heavy, sustained, burst, memory_stress, cpu_stress");
    }

    #[test]
    fn scaled_durations_stay_inside_the_consumers_range() {
        let heavy = find("heavy").expect("heavy");
        assert_eq!(heavy.path(1.0), "/process?cpu_intensity=9&memory_size=150&duration=20&async_mode=true");
        assert!(heavy.path(0.01).contains("duration=1&"));
        assert!(find("sustained").expect("sustained").path(10.0).contains("duration=60&"));
    }
}
