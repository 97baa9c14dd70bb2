//! The admin service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-admin-service`.

use std::error::Error;
use std::process::ExitCode;

use tidewell_admin_service::{AdminConfig, AdminService};
use tidewell_core::cli::Cli;
use tidewell_event_hub::{Hub, Topology};
use tidewell_observability::{TelemetryConfig, init};

fn main() -> ExitCode {
    let cli = Cli::new("tidewell-admin", env!("CARGO_PKG_VERSION"), "The Tidewell admin service: an idempotent audit log of every event, users and a dashboard (admin role only).")
        .vars(AdminConfig::VARS)
        .vars(tidewell_event_hub::HubConfig::VARS)
        .vars(TelemetryConfig::VARS);
    if let Some(done) = cli.handle_args() {
        return done;
    }
    cli.report(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
    let _telemetry = init(TelemetryConfig::from_env("admin")?)?;
    let config = AdminConfig::from_env()?;
    let hub = Hub::builder("admin")
        .config(tidewell_event_hub::HubConfig::from_env()?)
        .topology(Topology::new().service(config.queue()))
        .connect()
        .await?;
    let service = AdminService::start(config.clone(), hub).await?;
    let listener = tidewell_service_kit::listen(config.addr, "ADMIN_ADDR").await?;
    tracing::info!(addr = %config.addr, "admin service listening");
    tidewell_service_kit::serve(
        listener,
        service.router(),
        tidewell_service_kit::shutdown_signal(),
    )
    .await?;
    Ok(())
}
