//! The consumer binary: settings → telemetry → server → drain on SIGTERM.

use std::net::{SocketAddr, TcpListener};

use clap::Parser;
use surge_consumer::configuration::Settings;
use surge_consumer::startup::{shutdown_signal, Application};
use surge_consumer::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let settings = Settings::parse();
    let listener = TcpListener::bind(SocketAddr::new(settings.bind, settings.port))?;
    let log_format = LogFormat::resolve(settings.log_format);
    let app = Application::build(settings, listener)?;
    let _telemetry = telemetry::init(&app.state().identity, &app.state().metrics.telemetry_dropped, log_format);
    let shutdown = shutdown_signal()?;
    tracing::info!(port = app.port(), "consumer listening");
    app.run_until(shutdown).await?;
    tracing::info!("drained; exiting");
    Ok(())
}
