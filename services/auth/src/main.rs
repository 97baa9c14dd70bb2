//! The auth service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-auth-service`.

use std::error::Error;
use std::process::ExitCode;

use tidewell_auth_service::{AuthConfig, AuthService};
use tidewell_core::cli::Cli;
use tidewell_event_hub::{Hub, ServiceQueue, Topology};
use tidewell_observability::{TelemetryConfig, init};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::new("tidewell-auth", env!("CARGO_PKG_VERSION"), "The Tidewell auth service: register, sign in, rotating refresh tokens, devices; publishes auth.* events.")
        .vars(AuthConfig::VARS)
        .vars(tidewell_event_hub::HubConfig::VARS)
        .vars(TelemetryConfig::VARS);
    if let Some(done) = cli.handle_args() {
        return done;
    }
    cli.report(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
    let _telemetry = init(TelemetryConfig::from_env("auth")?)?;
    let config = AuthConfig::from_env()?;
    // The auth service publishes; it consumes nothing. An in-memory hub (the default) keeps the
    // events in-process; set TIDEWELL_EVENT_HUB_URL=amqp://… for RabbitMQ.
    let hub = Hub::builder("auth")
        .config(tidewell_event_hub::HubConfig::from_env()?)
        .topology(Topology::new().service(ServiceQueue::new("auth-audit").bind("auth.#")))
        .connect()
        .await?;
    let stop = CancellationToken::new();
    let service = AuthService::start(config.clone(), hub, stop.clone()).await?;
    let listener = tidewell_service_kit::listen(config.addr, "AUTH_ADDR").await?;
    tracing::info!(addr = %config.addr, "auth service listening");
    tidewell_service_kit::serve(
        listener,
        service.router(),
        tidewell_service_kit::shutdown_signal(),
    )
    .await?;
    stop.cancel();
    Ok(())
}
