//! At most N log lines per window, however often their cause recurs: an overload or a dead sink must not flood the
//! log. The first line let through after a suppressed stretch carries how many were left out.
//!
//! A window opens with the first line after the last one closed, not on a clock boundary: with windows aligned to
//! the minute, a stretch of drops that straddled one logged twice within a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct LogRateLimit {
    lines: u64,
    window_secs: u64,
    /// When the current window opened (seconds since the epoch, plus one), 0 before the first line.
    opened: AtomicU64,
    in_window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogRateLimit {
    /// `lines` per `window_secs` (both at least 1).
    pub const fn new(lines: u64, window_secs: u64) -> Self {
        Self {
            lines: if lines == 0 { 1 } else { lines },
            window_secs: if window_secs == 0 { 1 } else { window_secs },
            opened: AtomicU64::new(0),
            in_window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)` when the caller should log now (`suppressed`: lines left out since the last one let
    /// through); `None` when it should stay quiet.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    fn admit_at(&self, now_secs: u64) -> Option<u64> {
        let opened = self.opened.load(Ordering::Acquire);
        let closed = opened == 0 || now_secs + 1 >= opened + self.window_secs;
        if closed && self.opened.compare_exchange(opened, now_secs + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.in_window.store(0, Ordering::Release);
        }
        if self.in_window.fetch_add(1, Ordering::AcqRel) < self.lines {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            None
        }
    }
}

impl std::fmt::Debug for LogRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogRateLimit({} per {} s)", self.lines, self.window_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_through_the_first_lines_of_each_window_and_counts_the_rest() {
        let limit = LogRateLimit::new(2, 1);
        let admitted: Vec<_> = (0..5).map(|_| limit.admit_at(100)).collect();
        assert_eq!(admitted, [Some(0), Some(0), None, None, None]);
        // Next second: the first line says three were left out, the second none.
        assert_eq!(limit.admit_at(101), Some(3));
        assert_eq!(limit.admit_at(101), Some(0));
        assert_eq!(limit.admit_at(101), None);
    }

    #[test]
    fn a_minute_window_holds_for_the_whole_minute() {
        let limit = LogRateLimit::new(1, 60);
        assert_eq!(limit.admit_at(120), Some(0));
        assert_eq!(limit.admit_at(150), None);
        assert_eq!(limit.admit_at(179), None);
        assert_eq!(limit.admit_at(180), Some(2));
    }

    #[test]
    fn a_stretch_across_a_minute_boundary_logs_once() {
        let limit = LogRateLimit::new(1, 60);
        assert_eq!(limit.admit_at(119), Some(0));
        assert_eq!(limit.admit_at(121), None);
        assert_eq!(limit.admit_at(178), None);
        assert_eq!(limit.admit_at(179), Some(2));
    }

    #[test]
    fn a_clock_going_back_does_not_reopen_a_window() {
        let limit = LogRateLimit::new(1, 1);
        assert_eq!(limit.admit_at(50), Some(0));
        assert_eq!(limit.admit_at(49), None);
    }

    #[test]
    fn zero_lines_means_one() {
        let limit = LogRateLimit::new(0, 0);
        assert_eq!(limit.admit_at(7), Some(0));
        assert_eq!(limit.admit_at(7), None);
    }
}
