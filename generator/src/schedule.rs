//! A load's arrival schedule: stages that move the rate linearly, the rate at any moment, and the arrival times that
//! follow it (arrival k is sent when the expected count so far reaches k). The engine sends on it; the simulator
//! plays the same times.

use std::time::Duration;

use serde::Serialize;

/// One piece of a ramp: move the arrival rate linearly to `target` req/s over `duration` (a zero duration is a step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stage {
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
    pub target: f64,
}

pub(crate) fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The intended arrival rate `secs` into a schedule that moves linearly through `stages` from `start_rate`; 0 after.
pub fn rate_at(start_rate: f64, stages: &[Stage], secs: f64) -> f64 {
    let (mut from, mut begun) = (start_rate, 0.0);
    for stage in stages {
        let length = stage.duration.as_secs_f64();
        if secs < begun + length && length > 0.0 {
            return from + (stage.target - from) * (secs - begun) / length;
        }
        (from, begun) = (stage.target, begun + length);
    }
    0.0
}

/// Arrival offsets for a rate that moves linearly through the stages, starting at `start_rate`.
/// Arrival k is sent when the expected count of arrivals so far reaches k.
pub struct Schedule {
    /// (start rate, end rate, seconds) per stage.
    stages: Vec<(f64, f64, f64)>,
    stage: usize,
    /// Arrivals expected before the current stage, and its start offset in seconds.
    count_before: f64,
    start_secs: f64,
    next: u64,
}

impl Schedule {
    pub fn new(start_rate: f64, stages: &[Stage]) -> Self {
        let mut from = start_rate;
        let stages = stages
            .iter()
            .map(|stage| {
                let piece = (from, stage.target, stage.duration.as_secs_f64());
                from = stage.target;
                piece
            })
            .collect();
        Self { stages, stage: 0, count_before: 0.0, start_secs: 0.0, next: 0 }
    }

    /// Arrivals the whole schedule sends.
    pub fn total(&self) -> u64 {
        self.stages.iter().map(|(r0, r1, secs)| (r0 + r1) / 2.0 * secs).sum::<f64>().ceil() as u64
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let &(r0, r1, secs) = self.stages.get(self.stage)?;
            let in_stage = (r0 + r1) / 2.0 * secs;
            let m = self.next as f64 - self.count_before;
            if m < in_stage {
                // Solve r0·t + (r1 − r0)·t²/(2·secs) = m for t, in the form that stays stable when the rate falls.
                let a = (r1 - r0) / (2.0 * secs);
                let t = if m <= 0.0 { 0.0 } else { 2.0 * m / (r0 + (r0 * r0 + 4.0 * a * m).max(0.0).sqrt()) };
                self.next += 1;
                return Some(Duration::from_secs_f64(self.start_secs + t.min(secs)));
            }
            self.count_before += in_stage;
            self.start_secs += secs;
            self.stage += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(secs: u64, target: f64) -> Stage {
        Stage { duration: Duration::from_secs(secs), target }
    }

    #[test]
    fn the_intended_rate_follows_the_stages_and_ends_at_zero() {
        let stages = [stage(10, 20.0), stage(10, 20.0), stage(10, 0.0)];
        for (secs, rate) in
            [(0.0, 0.0), (5.0, 10.0), (10.0, 20.0), (15.0, 20.0), (25.0, 10.0), (30.0, 0.0), (99.0, 0.0)]
        {
            assert!((rate_at(0.0, &stages, secs) - rate).abs() < 1e-9, "at {secs} s: {}", rate_at(0.0, &stages, secs));
        }
        assert_eq!(rate_at(5.0, &[stage(10, 5.0)], 3.0), 5.0, "a constant rate from its start");
    }

    #[test]
    fn a_constant_rate_sends_evenly_spaced_arrivals() {
        let offsets: Vec<Duration> = Schedule::new(10.0, &[stage(1, 10.0)]).collect();
        assert_eq!(offsets.len(), 10);
        assert_eq!(offsets[0], Duration::ZERO);
        assert!((offsets[9].as_secs_f64() - 0.9).abs() < 1e-9);
    }

    #[test]
    fn a_ramp_sends_the_area_under_it_and_speeds_up() {
        let schedule = Schedule::new(0.0, &[stage(10, 20.0), stage(5, 20.0), stage(10, 0.0)]);
        assert_eq!(schedule.total(), 100 + 100 + 100);
        let offsets: Vec<f64> = schedule.map(|d| d.as_secs_f64()).collect();
        assert_eq!(offsets.len(), 300);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "arrivals are in order");
        // Half the ramp's arrivals come in its last 30%: the rate grows linearly.
        assert!((offsets[50] - 10.0 * 0.5f64.sqrt()).abs() < 0.05, "{}", offsets[50]);
        assert!(offsets[299] <= 25.0);
    }
}
