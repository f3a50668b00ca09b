//! Builds the HTTP server from a bound `TcpListener` (tests bind port 0) and runs it through a graceful drain.

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;

use crate::configuration::Settings;
use crate::identity::PodIdentity;
use crate::metrics::Metrics;
use crate::middleware::RequestInstruments;
use crate::queue::Backlog;
use crate::state::AppState;
use crate::telemetry::AccessLogger;
use crate::work::memory::pin_mmap_threshold;
use crate::work::tasks::TaskRegistry;
use crate::{route_label, routes};

/// A built, not yet running, consumer.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    settings: Settings,
    /// Cancelled at SIGTERM: the shared backlog's puller takes nothing new from then on.
    stop_taking: CancellationToken,
}

impl Application {
    /// Builds the server on `listener`. Must be called inside a Tokio runtime, which will also run the tasks.
    pub fn build(settings: Settings, listener: TcpListener) -> std::io::Result<Self> {
        pin_mmap_threshold();
        let local_addr = listener.local_addr()?;
        let metrics = Metrics::new().map_err(std::io::Error::other)?;
        metrics.http.initialise(&route_label::NAMED_ROUTES);
        let registry =
            TaskRegistry::new(settings.registry_config()?, metrics.tasks.clone(), tokio::runtime::Handle::current());
        if let Some(path) = settings.node_share_file.clone() {
            tokio::spawn(crate::work::node::follow(path, Arc::clone(&registry)));
        }
        let identity = PodIdentity::from_env(local_addr);
        let stop_taking = CancellationToken::new();
        let backlog =
            Backlog::start(&settings, &registry, metrics.queue.clone(), &identity.pod_name, stop_taking.clone())?;
        let state = web::Data::new(AppState {
            identity,
            registry,
            backlog,
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
        });
        let instruments = RequestInstruments::new(
            state.metrics.http.clone(),
            AccessLogger::new(settings.access_log),
            &state.identity.pod_name,
            Arc::clone(&state.draining),
        );
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(instruments.clone())
                .app_data(app_state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        // Sync requests watch their client's socket, to cancel work nobody waits for any more.
        .on_connect(crate::peer::record)
        .listen(listener)?
        // Signals are ours: SIGTERM starts a drain, not actix's immediate stop.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs.saturating_sub(settings.drain_delay_secs).max(1));
        if let Some(workers) = settings.workers {
            server = server.workers(usize::from(workers));
        }
        Ok(Self { port: local_addr.port(), server: server.run(), state, settings, stop_taking })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: `/ready` turns 503, the listener serves on for the drain delay,
    /// stops accepting, lets in-flight requests and running background work finish, and cancels what is still running
    /// a second before the shutdown timeout.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let Self { server, state, settings, stop_taking, .. } = self;
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        tokio::select! {
            result = &mut server => return result.map_err(std::io::Error::other)?,
            () = shutdown => {}
        }
        // Work is still taken during the drain delay: requests keep arriving until the endpoints update, and a 503
        // then would fail them for nothing. The registry stops taking work when the listener closes.
        state.draining.store(true, Ordering::Release);
        stop_taking.cancel();
        tracing::info!(drain_delay_secs = settings.drain_delay_secs, "shutdown signal: readiness is now 503, draining");
        let deadline = tokio::time::Instant::now() + settings.shutdown_timeout();
        // Background work may run until a second before the deadline, then it is cancelled and counted.
        let finish_by = deadline.checked_sub(Duration::from_secs(1)).unwrap_or(deadline);
        let drained = tokio::time::timeout_at(
            deadline,
            drain(handle, server, &state.registry, settings.drain_delay(), finish_by),
        )
        .await;
        match drained {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    timeout_secs = settings.shutdown_timeout_secs,
                    "shutdown timeout reached; exiting with work unfinished"
                );
                Ok(())
            }
        }
    }
}

async fn drain(
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    registry: &TaskRegistry,
    drain_delay: Duration,
    finish_by: tokio::time::Instant,
) -> std::io::Result<()> {
    tokio::time::sleep(drain_delay).await;
    tracing::info!("drain delay over: closing the listener; running work may finish until the shutdown deadline");
    let (stopped, ()) = tokio::join!(async { handle.stop(true).await }, registry.shutdown(finish_by));
    let () = stopped;
    server.await.map_err(std::io::Error::other)?
}

/// Installs SIGTERM and SIGINT handlers now (so a signal right after start is not fatal) and resolves on either.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
