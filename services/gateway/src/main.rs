//! The gateway on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-gateway`, with the four
//! services at `GATEWAY_*_URL`.

use tidewell_event_hub::{Hub, Topology};
use tidewell_gateway::{Gateway, GatewayConfig};
use tidewell_observability::{TelemetryConfig, init};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = init(TelemetryConfig::from_env("gateway")?)?;
    let config = GatewayConfig::from_env()?;
    let hub = Hub::builder("gateway")
        .config(tidewell_event_hub::HubConfig::from_env()?)
        .topology(Topology::new().service(config.queue()))
        .connect()
        .await?;
    let gateway = Gateway::start(config.clone(), hub).await?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %config.addr, "gateway listening");
    gateway
        .serve(listener, tidewell_service_kit::shutdown_signal())
        .await?;
    Ok(())
}
