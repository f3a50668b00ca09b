//! One invocation of the generator, from parsed flags to its exit code: the plan, the runs, the summary, the
//! autoscaling table and report, the metrics endpoint.
//!
//! Exit codes: 0 success, 1 a threshold failed, 2 bad flags or the consumer is unreachable or unhealthy,
//! 130 interrupted (Ctrl-C or SIGTERM; the partial summary is still printed).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Output};
use crate::client::Client;
use crate::engine::{Job, Tracing};
use crate::exposition::{self, Exposition};
use crate::follow::Follower;
use crate::plan::{Model, Plan, Run};
use crate::schedule;
use crate::stats::{Recorder, Summary, Window};
use crate::target::Target;
use crate::watch::{Sample, Watch};
use crate::{engine, loki, monitor, printer, report, traces};

const THRESHOLD_FAILED: u8 = 1;
const UNUSABLE: u8 = 2;
const INTERRUPTED: u8 = 130;
/// How long `--report` watches for the replicas to return to the minimum after the load (HPA seconds).
const REPORT_SETTLE_SECONDS: f64 = 1200.0;
/// How long `--metrics-port` keeps serving after the last run.
const METRICS_LINGER: std::time::Duration = std::time::Duration::from_secs(6);

/// One invocation, from parsed flags to the exit code.
pub fn run(cli: Cli) -> ExitCode {
    if cli.list {
        print!("{}", printer::profile_list());
        return ExitCode::SUCCESS;
    }
    let plan = match Plan::from_cli(&cli, |key| std::env::var(key).ok()) {
        Ok(plan) => plan,
        Err(message) => return fail(&message),
    };
    if cli.dry_run {
        match cli.output {
            Output::Text => print!("{}", printer::plan_text(&plan)),
            Output::Json => println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default()),
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let watch = autoscaling_table(&cli);
    let triggers = watch.as_ref().map(Watch::triggers);
    let min_replicas = watch.as_ref().map(Watch::min_replicas);
    let watching = watch.map(|watch| watch.spawn(cli.monitor_interval, Arc::clone(&stop), Arc::clone(&samples)));
    let code = runtime.block_on(async {
        let exposition = match cli.metrics_port {
            Some(port) => match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(listener) => {
                    let exposition = Arc::new(Exposition::default());
                    eprintln!("metrics on port {port}: GET /metrics");
                    tokio::spawn(exposition::serve(listener, Arc::clone(&exposition)));
                    Some(exposition)
                }
                Err(e) => return fail(&format!("--metrics-port {port}: {e}")),
            },
            None => None,
        };
        let options = Options {
            output: cli.output,
            probes: cli.probes,
            monitor_interval: cli.monitor_interval,
            keep_timeline: cli.report.is_some(),
            loki: cli.loki_url.as_ref(),
        };
        let mut reports = Vec::new();
        let code = run_plan(plan, &options, exposition.as_deref(), &mut reports).await;
        if let (Some(_), Some(min)) = (&cli.report, min_replicas) {
            if code != ExitCode::from(INTERRUPTED) {
                // HPA time: the scale-down window (5 min) and the policies' pace, with room.
                let limit = std::time::Duration::from_secs_f64(REPORT_SETTLE_SECONDS / cli.time_scale);
                wait_for_scale_down(&samples, min, limit).await;
            }
        }
        if let Some(path) = &cli.report {
            let autoscaling = triggers.clone().map(|triggers| report::Autoscaling {
                triggers,
                samples: samples.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            });
            match std::fs::write(path, report::html(&reports, autoscaling.as_ref(), cli.time_scale)) {
                Ok(()) => eprintln!("report: {}", path.display()),
                Err(e) => eprintln!("warning: --report {}: {e}", path.display()),
            }
        }
        if exposition.is_some() && code != ExitCode::from(INTERRUPTED) {
            // Prometheus scrapes every 5 s: one more scrape sees the final counts.
            tokio::time::sleep(METRICS_LINGER).await;
        }
        code
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(watching) = watching {
        let _ = watching.join();
    }
    code
}

/// `--prometheus` with `--scaled-object`: a ScaledObject that cannot be read is a warning, not a reason to send no load.
fn autoscaling_table(cli: &Cli) -> Option<Watch> {
    let (url, file) = (cli.prometheus.as_deref()?, cli.scaled_object.as_deref()?);
    Watch::load(url, file, cli.redis.as_deref(), cli.time_scale)
        .map_err(|e| eprintln!("warning: no autoscaling table: {e}"))
        .ok()
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(UNUSABLE)
}

/// How a plan's runs are watched and reported.
struct Options<'a> {
    output: Output,
    probes: u32,
    monitor_interval: std::time::Duration,
    /// Keep every request's end for `--report`'s timeline.
    keep_timeline: bool,
    loki: Option<&'a Target>,
}

async fn run_plan(
    plan: Plan,
    options: &Options<'_>,
    exposition: Option<&Exposition>,
    reports: &mut Vec<report::RunReport>,
) -> ExitCode {
    let Options { output, probes, monitor_interval, keep_timeline, loki } = *options;
    let url = plan.target.url.clone();
    let connect = |reuse| Client::new(&plan.target, plan.timeout, reuse);
    let control = match connect(false).await {
        Ok(client) => client,
        Err(cause) => return fail(&format!("cannot reach {url}: {cause}")),
    };
    let replicas_seen = match probe(&control, probes, &url).await {
        Ok(pods) => pods,
        Err(message) => return fail(&message),
    };
    if plan.cleanup {
        match control.once(Method::DELETE, "/process/cleanup", None).await {
            Ok(reply) if reply.status.is_success() => {
                eprintln!("cleanup: {}", String::from_utf8_lossy(&reply.body));
            }
            Ok(reply) => return fail(&format!("cleanup at {url}/process/cleanup answered {}", reply.status)),
            Err(cause) => return fail(&format!("cleanup at {url}/process/cleanup failed: {cause}")),
        }
    }

    let traces = match traces::Traces::from_env(&url) {
        Ok(traces) => traces.map(Arc::new),
        Err(message) => return fail(&message),
    };
    let cancel = CancellationToken::new();
    tokio::spawn(interrupt_on_signal(cancel.clone()));
    let mut summaries = Vec::new();
    for (index, run) in plan.runs.iter().enumerate() {
        if index > 0 {
            eprintln!("pausing {:?} before the next profile", plan.pause);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(plan.pause) => {}
            }
        }
        let client = match connect(plan.connection_reuse).await {
            Ok(client) => client,
            Err(cause) => return fail(&format!("cannot reach {url}: {cause}")),
        };
        let tracing = match (&traces, plan.traceparent) {
            (Some(traces), _) => Tracing::Export(Arc::clone(traces)),
            (None, true) => Tracing::Random,
            (None, false) => Tracing::Off,
        };
        let context = Context {
            plan: &plan,
            replicas_seen: &replicas_seen,
            cancel: &cancel,
            monitor_interval,
            exposition,
            keep_timeline,
        };
        let (mut summary, windows, tasks_over_time) = execute(run, client, tracing, &context).await;
        summary.thresholds = plan.thresholds.iter().map(|t| t.check(&summary)).collect();
        if output == Output::Text {
            print!("{}", printer::summary_text(&summary));
        }
        if keep_timeline {
            let intended = match &run.model {
                Model::Open { start_rate, stages, .. } => (0..windows.len())
                    // At the middle of each window, where the answered count it is compared with averages.
                    .map(|i| schedule::rate_at(*start_rate, stages, (i as f64 + 0.5) * report::WINDOW_SECONDS))
                    .collect(),
                Model::Closed { .. } => Vec::new(),
            };
            let title = format!("{}: {} {}{}", run.profile, run.method, plan.target.url, run.uri);
            reports.push(report::RunReport { title, intended, windows, tasks_over_time, summary: summary.clone() });
        }
        summaries.push(summary);
        if cancel.is_cancelled() {
            break;
        }
    }
    if let Some(traces) = traces {
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    if output == Output::Json {
        let document = match summaries.as_slice() {
            [single] => serde_json::to_string_pretty(single),
            all => serde_json::to_string_pretty(all),
        };
        println!("{}", document.unwrap_or_default());
    }
    if let Some(target) = loki {
        let pod = std::env::var("HOSTNAME").unwrap_or_else(|_| "generator".into());
        match loki::push(target, &summaries, &pod).await {
            Ok(()) => eprintln!("summary pushed to Loki: {{service=\"{}\", pod=\"{pod}\"}}", loki::SERVICE),
            Err(cause) => eprintln!("warning: summary not pushed to Loki at {}: {cause}", target.url),
        }
    }
    if cancel.is_cancelled() {
        ExitCode::from(INTERRUPTED)
    } else if summaries.iter().flat_map(|s| &s.thresholds).any(|v| !v.passed) {
        ExitCode::from(THRESHOLD_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Health check, then fresh connections to `/health` to learn which replicas answer behind the URL.
async fn probe(client: &Client, probes: u32, url: &str) -> Result<BTreeSet<String>, String> {
    let mut pods = BTreeSet::new();
    for attempt in 0..probes.max(1) {
        let reply =
            client.once(Method::GET, "/health", None).await.map_err(|cause| format!("cannot reach {url}: {cause}"))?;
        if reply.status != StatusCode::OK {
            return Err(format!("{url} is unhealthy: GET /health answered {}", reply.status));
        }
        if let Some(pod) = reply.served_by.as_ref().and_then(|v| v.to_str().ok()) {
            pods.insert(pod.to_owned());
        }
        if attempt == 0 && pods.is_empty() {
            break;
        }
    }
    Ok(pods)
}

/// What every run of a plan shares.
struct Context<'a> {
    plan: &'a Plan,
    replicas_seen: &'a BTreeSet<String>,
    cancel: &'a CancellationToken,
    monitor_interval: std::time::Duration,
    exposition: Option<&'a Exposition>,
    keep_timeline: bool,
}

/// One run: its summary, and its timeline when a report is asked for.
/// The run's summary, its timeline windows and its completed tasks' end-to-end seconds over time (those two only when
/// the report keeps a timeline).
async fn execute(
    run: &Run,
    client: Client,
    tracing: Tracing,
    context: &Context<'_>,
) -> (Summary, Vec<Window>, Vec<(f64, f64)>) {
    let Context { plan, replicas_seen, cancel, monitor_interval, exposition, keep_timeline } = *context;
    let expected = match &run.model {
        Model::Closed { requests, .. } => *requests,
        Model::Open { start_rate, stages, .. } => Some(schedule::Schedule::new(*start_rate, stages).total()),
    };
    let job = Arc::new(Job {
        client,
        method: run.method.clone(),
        asks: engine::asks(&run.method, &run.uri, &run.later_paths),
        recorder: if keep_timeline {
            Recorder::keeping_timeline(engine::slots(&run.model))
        } else {
            Recorder::new(engine::slots(&run.model))
        },
        tracing,
        max_retries: plan.max_retries,
        follower: Follower::default(),
    });
    if let Some(exposition) = exposition {
        exposition.started(&run.profile, Arc::clone(&job), &run.model);
    }
    eprintln!("running {}: {} {}{} ({})", run.profile, run.method, plan.target.url, run.uri, model_brief(&run.model));
    let finished = CancellationToken::new();
    let reporter =
        monitor::Reporter { expected, interval: monitor_interval, monitor: plan.monitor, profile: run.profile.clone() }
            .spawn(Arc::clone(&job), finished.clone());
    let sending = CancellationToken::new();
    let follower = (!plan.follow_timeout.is_zero()).then(|| {
        let (job, sending, cancel) = (Arc::clone(&job), sending.clone(), cancel.clone());
        let (interval, limit) = (plan.follow_interval, plan.follow_timeout);
        tokio::spawn(async move { job.follower.run(&job.client, interval, sending, limit, &cancel).await })
    });
    let abandoned = engine::run(Arc::clone(&job), &run.model, cancel).await;
    if let Some(exposition) = exposition {
        exposition.finished();
    }
    sending.cancel();
    if let Some(follower) = follower {
        let pending = job.follower.pending_count();
        if pending > 0 {
            eprintln!(
                "following {pending} accepted tasks to their end (at most {})",
                humantime::format_duration(plan.follow_timeout)
            );
        }
        let _ = follower.await;
    }
    finished.cancel();
    let _ = reporter.await;
    let mut summary = job.recorder.summarise(&run.profile, abandoned, replicas_seen);
    summary.interrupted = cancel.is_cancelled();
    summary.tasks = job.follower.summary();
    if !keep_timeline {
        return (summary, Vec::new(), Vec::new());
    }
    (summary, job.recorder.timeline(report::WINDOW_SECONDS), job.follower.ended_over_time())
}

fn model_brief(model: &Model) -> String {
    match model {
        Model::Closed { concurrency, requests: Some(requests), .. } => {
            format!("{requests} requests, {concurrency} at a time")
        }
        Model::Closed { concurrency, .. } => format!("{concurrency} workers"),
        Model::Open { stages, .. } => format!("open model, {} stages", stages.len()),
    }
}

async fn interrupt_on_signal(cancel: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    eprintln!("interrupted: no new requests; waiting briefly for those in flight");
    cancel.cancel();
}

/// With `--report` and the autoscaling table: after the load, keeps reading the table until the replicas are back at
/// `min` (or `limit`, or Ctrl-C), so the report shows the scale-down as well as the scale-up.
async fn wait_for_scale_down(samples: &Mutex<Vec<Sample>>, min: u32, limit: std::time::Duration) {
    eprintln!("report: watching the replicas return to {min} (at most {})", humantime::format_duration(limit));
    let settled = async {
        loop {
            let last = samples.lock().unwrap_or_else(|p| p.into_inner()).last().cloned();
            if last.is_some_and(|s| s.replicas == Some(min) && s.desired == Some(min)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        () = settled => {}
        () = tokio::time::sleep(limit) => eprintln!("report: not back at {min} replicas; writing it as it is"),
        _ = tokio::signal::ctrl_c() => eprintln!("report: interrupted; writing it as it is"),
    }
}
