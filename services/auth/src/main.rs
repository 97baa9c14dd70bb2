//! The auth service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-auth-service`.

use tidewell_auth_service::{AuthConfig, AuthService};
use tidewell_event_hub::{Hub, ServiceQueue, Topology};
use tidewell_observability::{TelemetryConfig, init};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
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
