//! The figures a trajectory is judged by, read from its syncs by one rule wherever it was played: the closed loop's
//! outline and the simulator's outcome both call `figures`, so a README row means the same to both.

/// One sync of the autoscaler, as far as the figures need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sync {
    /// Seconds from the load's first request.
    pub t: f64,
    pub current: u32,
    pub desired: u32,
}

/// A trajectory in a few figures, times as the syncs' `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// The most replicas asked for (the minimum when there was no sync).
    pub peak: u32,
    /// The first sync that asked for the peak.
    pub peak_at: Option<f64>,
    /// The first sync after that asking for fewer: the first stretch at the peak ends there (a later visit is not
    /// added).
    pub left_peak_at: Option<f64>,
    /// The first sync asking for more than the minimum.
    pub first_up_at: Option<f64>,
    /// The first sync of the final stretch with current and desired both at the minimum.
    pub back_at_min_at: Option<f64>,
}

/// Seconds from the load's end (`load_end`, its last request) to `back_at_min_at`; 0 when the final stretch at the
/// minimum began before the load ended (a run that never left it).
pub fn back_after(back_at_min_at: f64, load_end: f64) -> f64 {
    (back_at_min_at - load_end).max(0.0)
}

impl Figures {
    /// How long the first stretch at the peak lasted.
    pub fn peak_held(&self) -> Option<f64> {
        self.peak_at.zip(self.left_peak_at).map(|(reached, left)| left - reached)
    }
}

pub fn figures(syncs: &[Sync], minimum: u32) -> Figures {
    let peak = syncs.iter().map(|s| s.desired).max().unwrap_or(minimum);
    let reached = syncs.iter().position(|s| s.desired == peak);
    Figures {
        peak,
        peak_at: reached.map(|i| syncs[i].t),
        left_peak_at: reached.and_then(|i| syncs[i..].iter().find(|s| s.desired < peak)).map(|s| s.t),
        first_up_at: syncs.iter().find(|s| s.desired > minimum).map(|s| s.t),
        back_at_min_at: syncs
            .iter()
            .rev()
            .take_while(|s| s.current == minimum && s.desired == minimum)
            .last()
            .map(|s| s.t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syncs(replicas: &[(u32, u32)]) -> Vec<Sync> {
        replicas
            .iter()
            .enumerate()
            .map(|(i, &(current, desired))| Sync { t: 15.0 * i as f64, current, desired })
            .collect()
    }

    #[test]
    fn figures_read_the_first_stretch_at_the_peak_and_the_final_one_at_the_minimum() {
        // (current, desired) per sync → (peak, peak at, left at, first up, back at)
        type Case = (&'static [(u32, u32)], (u32, Option<f64>, Option<f64>, Option<f64>, Option<f64>));
        let cases: [Case; 5] = [
            // Reached at 30 s, first fewer at 75 s; the second visit is not added; back at 120 s (at 105 s only desired
            // was).
            (
                &[(1, 1), (1, 4), (4, 10), (10, 10), (10, 10), (10, 8), (8, 10), (10, 1), (1, 1)],
                (10, Some(30.0), Some(75.0), Some(15.0), Some(120.0)),
            ),
            // Never left the peak.
            (&[(1, 1), (1, 10), (10, 10)], (10, Some(15.0), None, Some(15.0), None)),
            // Desired at the minimum while current is not yet: back only when both are.
            (&[(1, 3), (3, 1), (2, 1), (1, 1)], (3, Some(0.0), Some(15.0), Some(0.0), Some(45.0))),
            // Never moved: the peak is the minimum, reached at once, back from the first sync.
            (&[(1, 1), (1, 1)], (1, Some(0.0), None, None, Some(0.0))),
            (&[], (1, None, None, None, None)),
        ];
        for (replicas, (peak, peak_at, left_peak_at, first_up_at, back_at_min_at)) in cases {
            let expected = Figures { peak, peak_at, left_peak_at, first_up_at, back_at_min_at };
            assert_eq!(figures(&syncs(replicas), 1), expected, "{replicas:?}");
        }
        let held = figures(&syncs(cases[0].0), 1).peak_held();
        assert_eq!(held, Some(45.0));
    }
}
