//! Loads that change shape, played as the generator sends them: its phase profiles (named, or from a file) and their
//! arrival times, each request asking for the task of the phase it falls in.

use surge_generator::phases::{self, Named, Phase};

use crate::pod::Task;
use crate::run::{self, Arrival};

/// What a request of `phase` asks the consumer for.
pub fn task(phase: &Phase) -> Task {
    Task::new(phase.cpu_intensity, phase.memory_mib, phase.duration_secs, phase.async_mode)
}

/// Every request of the phases, in order, at the generator's send times.
pub fn arrivals(phases: &[Phase]) -> Vec<Arrival> {
    phases::arrivals(phases).map(|(at, phase)| Arrival { at, task: task(phase) }).collect()
}

/// The arrivals of a load the generator sends by name (`--test`): a profile, or a phase profile.
pub fn arrivals_of(name: &str) -> Option<Vec<Arrival>> {
    Named::find(name).map(|named| match named {
        Named::Profile(profile) => run::arrivals(profile),
        Named::Phased(phased) => arrivals(phased.phases),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn each_request_asks_for_its_phases_task() {
        let baseline = phases::find("baseline").expect("baseline").phases;
        let arrivals = arrivals(baseline);
        assert_eq!(arrivals.len(), 222);
        // (a send time, the task asked for then)
        let expected = [
            (0.0, Task { cpu_intensity: 6, seconds: 20.0, memory_bytes: 120 * MIB, sync: false }),
            (400.0, Task { cpu_intensity: 8, seconds: 25.0, memory_bytes: 180 * MIB, sync: false }),
            (1500.0, Task { cpu_intensity: 4, seconds: 18.0, memory_bytes: 90 * MIB, sync: false }),
        ];
        for (at, task) in expected {
            let sent = arrivals.iter().find(|a| a.at >= at).expect("an arrival after");
            assert_eq!(sent.task, task, "at {at} s");
        }
    }
}
