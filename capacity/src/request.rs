//! What one work request (`POST /process`) may ask for, stated once: the consumer refuses anything outside with a
//! 422 naming the range, and the generator, the simulator's phases and `surge tune`'s tasks keep inside it.

/// An integer parameter's inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    /// `value` as this parameter, or an error naming `name`, the value and the range: one wording for every caller.
    pub fn check(self, name: &str, value: f64) -> Result<u64, String> {
        if value.fract() == 0.0 && (self.min as f64..=self.max as f64).contains(&value) {
            Ok(value as u64)
        } else {
            Err(format!("{name}: {value} is not {}", self.expected()))
        }
    }

    /// What a value must be, for an error about one that is missing or not a number.
    pub fn expected(self) -> String {
        format!("a whole number from {} to {}", self.min, self.max)
    }
}

/// `cpu_intensity`: tenths of a core.
pub const CPU_INTENSITY: Bounds = Bounds { min: 1, max: 10 };
/// `memory_size`: MiB allocated and resident while the task runs.
pub const MEMORY_MIB: Bounds = Bounds { min: 0, max: 500 };
/// `duration`: whole seconds of work.
pub const DURATION_SECS: Bounds = Bounds { min: 1, max: 60 };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_taken_only_whole_and_within_and_the_error_names_it() {
        // (value, what check gives)
        let cases = [
            (1.0, Ok(1)),
            (10.0, Ok(10)),
            (0.0, Err("cpu: 0 is not a whole number from 1 to 10")),
            (11.0, Err("cpu: 11 is not a whole number from 1 to 10")),
            (2.5, Err("cpu: 2.5 is not a whole number from 1 to 10")),
            (f64::NAN, Err("cpu: NaN is not a whole number from 1 to 10")),
        ];
        for (value, expected) in cases {
            assert_eq!(CPU_INTENSITY.check("cpu", value), expected.map_err(str::to_owned), "{value}");
        }
    }
}
