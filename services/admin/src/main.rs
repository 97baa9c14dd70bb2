//! The admin service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-admin-service`.

use tidewell_admin_service::{AdminConfig, AdminService};
use tidewell_event_hub::{Hub, Topology};
use tidewell_observability::{TelemetryConfig, init};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = init(TelemetryConfig::from_env("admin")?)?;
    let config = AdminConfig::from_env()?;
    let hub = Hub::builder("admin")
        .config(tidewell_event_hub::HubConfig::from_env()?)
        .topology(Topology::new().service(config.queue()))
        .connect()
        .await?;
    let service = AdminService::start(config.clone(), hub).await?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %config.addr, "admin service listening");
    tidewell_service_kit::serve(
        listener,
        service.router(),
        tidewell_service_kit::shutdown_signal(),
    )
    .await?;
    Ok(())
}
