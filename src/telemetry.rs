//! The tracing subscriber: JSON lines on stdout, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = tracing_subscriber::fmt::layer().json().with_current_span(false).flatten_event(true);
    tracing_subscriber::registry().with(filter).with(stdout).init();
}
