//! What one work request (`POST /process`) may ask for, stated once: the consumer refuses anything outside with a
//! 422 naming the range, and the generator, the simulator's phases and `surge tune`'s tasks keep inside it.

/// An integer parameter's inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    pub fn contains(self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// `cpu_intensity`: tenths of a core.
pub const CPU_INTENSITY: Bounds = Bounds { min: 1, max: 10 };
/// `memory_size`: MiB allocated and resident while the task runs.
pub const MEMORY_MIB: Bounds = Bounds { min: 0, max: 500 };
/// `duration`: whole seconds of work.
pub const DURATION_SECS: Bounds = Bounds { min: 1, max: 60 };
