//! `make bench`: throughput as ratios against peers measured in the same run. Servers run in this process pinned
//! to core 0 with one worker; every load client runs pinned to core 1 (`taskset`), so they never share a core.
//!
//! 1. The consumer's `/health` with and without the metrics middleware, and a bare actix-web handler.
//! 2. One `/metrics` render, timed in-process.
//! 3. The generator against wrk and oha on the bare handler, with and without connection reuse.

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use actix_web::middleware::{from_fn, Condition, DefaultHeaders};
use actix_web::{web, App, HttpResponse, HttpServer};
use surge_consumer::configuration::Settings;
use surge_consumer::identity::PodIdentity;
use surge_consumer::metrics::{Metrics, RequestMetrics};
use surge_consumer::routes;
use surge_consumer::state::AppState;
use surge_consumer::telemetry::request_span;
use surge_consumer::work::tasks::TaskRegistry;

const SECONDS: u32 = 4;
const CONNECTIONS: u32 = 32;
const ROUNDS: usize = 3;

fn pin_to_core(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "pin to core {core}");
    }
}

fn state(listener: &TcpListener) -> web::Data<AppState> {
    let metrics = Metrics::new().expect("metrics");
    let config = <Settings as clap::Parser>::parse_from(["consumer", "--memory-budget-mb", "1024"])
        .registry_config()
        .expect("registry config");
    let registry = TaskRegistry::new(config, metrics.tasks.clone(), tokio::runtime::Handle::current());
    web::Data::new(AppState {
        identity: PodIdentity::from_env(listener.local_addr().expect("addr")),
        registry,
        metrics,
        draining: AtomicBool::new(false),
    })
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind")
}

fn url(listener: &TcpListener) -> String {
    format!("http://{}", listener.local_addr().expect("addr"))
}

/// A bare actix-web handler answering `/health` like the consumer: the floor for any actix service.
fn serve_bare() -> String {
    let listener = listener();
    let url = url(&listener);
    let server = HttpServer::new(|| {
        App::new().wrap(DefaultHeaders::new().add(("X-Served-By", "bench"))).route(
            "/health",
            web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "healthy"})) }),
        )
    });
    tokio::spawn(server.workers(1).disable_signals().listen(listener).expect("listen").run());
    url
}

/// The consumer's app as `startup` composes it, with or without the metrics middleware.
fn serve_consumer(with_metrics: bool) -> (String, web::Data<AppState>) {
    let listener = listener();
    let url = url(&listener);
    let data = state(&listener);
    let shared = data.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(request_span))
            .wrap(Condition::new(with_metrics, RequestMetrics::new(shared.metrics.http.clone())))
            .wrap(DefaultHeaders::new().add(("X-Served-By", "bench")))
            .app_data(shared.clone())
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    });
    tokio::spawn(server.workers(1).disable_signals().listen(listener).expect("listen").run());
    (url, data)
}

/// A load client pinned to core 1; returns its stdout.
fn client(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new("taskset").args(["-c", "1", program]).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn wrk(url: &str, reuse: bool) -> Option<f64> {
    let (duration, connections) = (format!("{SECONDS}s"), CONNECTIONS.to_string());
    let mut args = vec!["-t1", "-c", &connections, "-d", &duration];
    if !reuse {
        args.extend(["-H", "Connection: close"]);
    }
    let target = format!("{url}/health");
    args.push(&target);
    let text = client("wrk", &args)?;
    text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())
}

fn oha(url: &str, reuse: bool) -> Option<f64> {
    let (duration, connections) = (format!("{SECONDS}s"), CONNECTIONS.to_string());
    let target = format!("{url}/health");
    let mut args = vec!["--no-tui", "--output-format", "json", "-z", &duration, "-c", &connections];
    if !reuse {
        args.push("--disable-keepalive");
    }
    args.push(&target);
    let report: serde_json::Value = serde_json::from_str(&client("oha", &args)?).ok()?;
    report["summary"]["requestsPerSec"].as_f64()
}

fn generator(url: &str, reuse: bool) -> Option<f64> {
    let binary = std::env::current_exe().ok()?.parent()?.parent()?.join("generator");
    let (duration, connections) = (format!("{SECONDS}s"), CONNECTIONS.to_string());
    let mut args = vec!["--url", url, "--path", "/health", "--duration", &duration, "--concurrency", &connections];
    args.extend(["--probes", "1", "--output", "json"]);
    if !reuse {
        args.push("--no-connection-reuse");
    }
    let report: serde_json::Value = serde_json::from_str(&client(binary.to_str()?, &args)?).ok()?;
    report["rate_achieved"].as_f64()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn show(label: &str, value: Option<f64>) -> String {
    value
        .map_or_else(|| format!("{label}: not measured (tool missing or failed)"), |v| format!("{label}: {v:.0} req/s"))
}

fn main() {
    pin_to_core(0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let bare = serve_bare();
        let (plain, _) = serve_consumer(false);
        let (full, data) = serve_consumer(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let run = |url: String| tokio::task::spawn_blocking(move || wrk(&url, true));

        println!(
            "== consumer /health, {SECONDS} s x {ROUNDS} rounds, wrk -c {CONNECTIONS}, server core 0, client core 1"
        );
        let (mut b, mut p, mut f) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            // Interleaved so drift in the machine affects every variant alike.
            b.push(run(bare.clone()).await.expect("join").expect("wrk is installed"));
            p.push(run(plain.clone()).await.expect("join").expect("wrk"));
            f.push(run(full.clone()).await.expect("join").expect("wrk"));
        }
        let (b, p, f) = (median(b), median(p), median(f));
        println!("bare actix-web handler:              {b:>9.0} req/s");
        println!("consumer without metrics middleware: {p:>9.0} req/s");
        println!("consumer with metrics middleware:    {f:>9.0} req/s");
        println!("ratio with/without metrics middleware: {:.3}", f / p);
        println!("ratio consumer/bare handler:           {:.3}", f / b);

        let renders = 2000;
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..renders {
            bytes = std::hint::black_box(data.metrics.render()).len();
        }
        let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(renders);
        println!("\n== /metrics render: {micros:.1} us per render ({bytes} bytes), mean of {renders}");

        println!("\n== load generators against the bare handler, -c {CONNECTIONS}, {SECONDS} s each");
        for reuse in [true, false] {
            let mode = if reuse { "keep-alive" } else { "new connection per request" };
            let url = bare.clone();
            let (w, o, g) =
                tokio::task::spawn_blocking(move || (wrk(&url, reuse), oha(&url, reuse), generator(&url, reuse)))
                    .await
                    .expect("join");
            println!("{mode}: {}; {}; {}", show("wrk", w), show("oha", o), show("generator", g));
            if let (Some(g), Some(w)) = (g, w) {
                print!("  generator/wrk {:.3}", g / w);
            }
            if let (Some(g), Some(o)) = (g, o) {
                print!("  generator/oha {:.3}", g / o);
            }
            println!();
        }
    });
}
