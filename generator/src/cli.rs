//! Command-line flags; every flag can also come from `GENERATOR_<FLAG>` so Jobs can set them in `env:`.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::target::Target;

#[derive(Debug, Parser)]
#[command(name = "generator", version, about = "Load generator for the Surge consumer", long_about = None)]
pub struct Cli {
    /// Base URL of the consumer (plain HTTP, no path: --path sets the request path)
    #[arg(long, env = "GENERATOR_URL", default_value = "http://localhost:8000")]
    pub url: String,

    /// A named profile, or `all` to run every profile in order (see --list)
    #[arg(long, env = "GENERATOR_TEST")]
    pub test: Option<String>,

    /// A load as phases: `baseline`, `comparison_pattern`, or a YAML file (`phases:` a list of `{minutes, per_minute,
    /// cpu_intensity, memory_mib, duration_secs, async}`)
    #[arg(long, env = "GENERATOR_PHASES", conflicts_with = "test")]
    pub phases: Option<String>,

    /// List the profiles with their figures and exit
    #[arg(long, env = "GENERATOR_LIST")]
    pub list: bool,

    /// Print the consumer's /process/status and the served distribution every --monitor-interval
    #[arg(long, env = "GENERATOR_MONITOR")]
    pub monitor: bool,

    /// Prometheus to ask what KEDA will decide (with --scaled-object): a table per --monitor-interval on stderr
    #[arg(long, env = "GENERATOR_PROMETHEUS", requires = "scaled_object")]
    pub prometheus: Option<String>,

    /// The ScaledObject whose triggers --prometheus evaluates (the keda component's file; the Jobs mount it)
    #[arg(long, env = "GENERATOR_SCALED_OBJECT", requires = "prometheus")]
    pub scaled_object: Option<String>,

    /// Redis a redis-streams trigger of --scaled-object is read from, as KEDA's scaler reads it
    /// (redis://[:password@]host:port)
    #[arg(long, env = "GENERATOR_REDIS", requires = "scaled_object")]
    pub redis: Option<String>,

    /// How often --monitor and the non-terminal progress line report
    #[arg(long, env = "GENERATOR_MONITOR_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub monitor_interval: Duration,

    /// Call DELETE /process/cleanup before starting
    #[arg(long, env = "GENERATOR_CLEANUP")]
    pub cleanup: bool,

    /// Open a new TCP connection for every request, so an L4 load balancer spreads requests across pods
    #[arg(long, env = "GENERATOR_NO_CONNECTION_REUSE")]
    pub no_connection_reuse: bool,

    /// Open model: requests per second at a constant arrival rate (with --duration)
    #[arg(long, env = "GENERATOR_RATE")]
    pub rate: Option<f64>,

    /// Open model with a ramp: `30s:50,1m:200,30s:0` moves the rate linearly to each target over each time
    #[arg(long, env = "GENERATOR_STAGES", conflicts_with = "rate")]
    pub stages: Option<String>,

    /// Closed model: number of workers, each sending its next request when the last returns.
    /// Open model: the cap on requests in flight (arrivals beyond it queue, and their wait counts as latency)
    #[arg(long, env = "GENERATOR_CONCURRENCY")]
    pub concurrency: Option<u32>,

    /// Closed model: total number of requests
    #[arg(long, env = "GENERATOR_REQUESTS")]
    pub requests: Option<u64>,

    /// How long to send (`30s`, `2m`)
    #[arg(long, env = "GENERATOR_DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// HTTP method for requests without --test
    #[arg(long, env = "GENERATOR_METHOD", default_value = "GET")]
    pub method: String,

    /// Path (with query) for requests without --test
    #[arg(long, env = "GENERATOR_PATH", default_value = "/")]
    pub path: String,

    /// Per-request timeout, connect included
    #[arg(long, env = "GENERATOR_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// How long after the last request accepted async tasks are still followed to their end (read back from
    /// `GET /process/results`) for the end-to-end times; 0s follows none. Divided by --time-scale
    #[arg(long, env = "GENERATOR_FOLLOW_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub follow_timeout: Duration,

    /// Times a 503 is sent again after its Retry-After (with ±50% jitter) before it counts as failed; 0 never retries
    #[arg(long, env = "GENERATOR_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,

    /// Multiplies request counts and durations (a profile's work duration too); 0.1 makes a quick smoke run
    #[arg(long, env = "GENERATOR_SCALE", default_value_t = 1.0)]
    pub scale: f64,

    /// Compresses a profile in time: the same tasks arrive F times faster and each lasts F times shorter (the
    /// closed-loop harness runs a cluster F times faster too); F must divide the profile's task seconds
    #[arg(long, env = "GENERATOR_TIME_SCALE", default_value_t = 1.0)]
    pub time_scale: f64,

    /// This instance's share of the load, `INDEX/COUNT`; defaults from JOB_COMPLETION_INDEX and GENERATOR_SHARDS
    #[arg(long, env = "GENERATOR_SHARD")]
    pub shard: Option<String>,

    /// Pause between profiles with --test all
    #[arg(long, env = "GENERATOR_PAUSE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pause: Duration,

    /// Fresh connections to /health before the run, to learn how many replicas answer behind the URL
    #[arg(long, env = "GENERATOR_PROBES", default_value_t = 16)]
    pub probes: u32,

    /// Summary format on stdout (progress always goes to stderr)
    #[arg(long, env = "GENERATOR_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Pass/fail condition such as `p99<2s`, `p50<=300ms`, `max<10s`, `success>99%`; repeatable. Without a success
    /// condition, `success>=95%` applies: a run below it exits 1
    #[arg(long = "threshold", env = "GENERATOR_THRESHOLD", value_delimiter = ';')]
    pub thresholds: Vec<String>,

    /// Send a fresh W3C traceparent on every request (on by default when OTEL_EXPORTER_OTLP_ENDPOINT is set)
    #[arg(long, env = "GENERATOR_TRACE")]
    pub trace: bool,

    /// Serve the generator's own metrics (GET /metrics: sent, retried, failed by cause, latency, target rate) on this
    /// port of every interface while it runs, and stay 6 s after the last run so a scrape sees the final counts
    #[arg(long, env = "GENERATOR_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Push each run's summary (one JSON line per profile, labelled service="load-generator") to this Loki when the
    /// run ends, so it outlives a Job's pod: load Jobs are removed as they finish
    #[arg(long, env = "GENERATOR_LOKI_URL", value_parser = Target::parse)]
    pub loki_url: Option<Target>,

    /// Write a self-contained HTML report of the run here: rates, latency, outcomes and pods over time, and with
    /// --prometheus and --scaled-object the replicas and each trigger against its threshold
    #[arg(long, env = "GENERATOR_REPORT")]
    pub report: Option<std::path::PathBuf>,

    /// Parse, resolve the profile, print the plan, send nothing
    #[arg(long, env = "GENERATOR_DRY_RUN")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_job_manifests_flags_parse() {
        let cli = Cli::try_parse_from([
            "generator",
            "--url=http://consumer:8000",
            "--test=heavy",
            "--monitor",
            "--cleanup",
            "--no-connection-reuse",
        ])
        .expect("the Job flags parse");
        assert_eq!(cli.test.as_deref(), Some("heavy"));
        assert!(cli.monitor && cli.cleanup && cli.no_connection_reuse);
    }
}
