//! Which requests get an access-log line. Every line costs the request path formatting and the pod a share of its
//! log pipeline, so by default only failures are logged, rate-limited; probes and scrapes never are unless they fail.

use std::sync::Arc;

use actix_web::http::StatusCode;

use super::rate_limit::LogRateLimit;

/// `--access-log`: which requests are logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLog {
    /// None: task outcomes, rejections and drain are still logged.
    Off,
    /// Requests answered 4xx or 5xx, at most `ERROR_LINES_PER_SECOND` lines a second.
    Errors,
    /// Every request but probes and scrapes that succeed; failures as in `errors`.
    All,
}

/// Failed-request lines a second; the next line let through says how many were left out.
const ERROR_LINES_PER_SECOND: u64 = 10;

/// Routes polled by kubelet and Prometheus: logged only when they fail.
const QUIET_ROUTES: [&str; 3] = ["/health", "/ready", "/metrics"];

/// The access-log policy the request middleware consults; clones share one rate limit.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    mode: AccessLog,
    failures: Arc<LogRateLimit>,
}

/// Whether a request's line is written (with its route), and how many failure lines were left out before it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Skip,
    Log { suppressed: u64, route: String },
}

impl AccessLogger {
    pub fn new(mode: AccessLog) -> Self {
        Self { mode, failures: Arc::new(LogRateLimit::new(ERROR_LINES_PER_SECOND, 1)) }
    }

    /// `route` is asked only for a line that may be written: the common case (a success under `errors`) is two
    /// comparisons.
    pub fn verdict(&self, status: StatusCode, route: impl FnOnce() -> String) -> Verdict {
        let failed = status.is_client_error() || status.is_server_error();
        match (self.mode, failed) {
            (AccessLog::Off, _) | (AccessLog::Errors, false) => Verdict::Skip,
            (_, true) => {
                self.failures.admit().map_or(Verdict::Skip, |suppressed| Verdict::Log { suppressed, route: route() })
            }
            (AccessLog::All, false) => {
                let route = route();
                if QUIET_ROUTES.contains(&route.as_str()) {
                    Verdict::Skip
                } else {
                    Verdict::Log { suppressed: 0, route }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: StatusCode = StatusCode::OK;
    const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

    #[test]
    fn which_requests_each_mode_logs() {
        let cases = [
            (AccessLog::Off, "/process", UNAVAILABLE, false),
            (AccessLog::Off, "/", OK, false),
            (AccessLog::Errors, "/", OK, false),
            (AccessLog::Errors, "/process", UNAVAILABLE, true),
            (AccessLog::Errors, "/process", StatusCode::UNPROCESSABLE_ENTITY, true),
            (AccessLog::Errors, "/ready", UNAVAILABLE, true),
            (AccessLog::All, "/", OK, true),
            (AccessLog::All, "/process", StatusCode::OK, true),
            (AccessLog::All, "/health", OK, false),
            (AccessLog::All, "/ready", OK, false),
            (AccessLog::All, "/metrics", OK, false),
            (AccessLog::All, "/ready", UNAVAILABLE, true),
        ];
        for (mode, route, status, logged) in cases {
            let verdict = AccessLogger::new(mode).verdict(status, || route.to_owned());
            assert_eq!(verdict != Verdict::Skip, logged, "{mode:?} {route} {status}");
        }
    }

    #[test]
    fn failures_are_rate_limited_successes_are_not() {
        let logger = AccessLogger::new(AccessLog::All);
        let failures = (0..100).filter(|_| logger.verdict(UNAVAILABLE, || "/process".into()) != Verdict::Skip).count();
        // The window may roll over once during the loop.
        assert!((10..=20).contains(&failures), "{failures} failure lines let through");
        let successes = (0..100).filter(|_| logger.verdict(OK, || "/".into()) != Verdict::Skip).count();
        assert_eq!(successes, 100);
    }
}
