//! The gateway on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-gateway`, with the four
//! services at `GATEWAY_*_URL`.

use std::error::Error;
use std::process::ExitCode;

use tidewell_core::cli::Cli;
use tidewell_event_hub::{Hub, Topology};
use tidewell_gateway::{Gateway, GatewayConfig};
use tidewell_observability::{TelemetryConfig, init};

fn main() -> ExitCode {
    let cli = Cli::new("tidewell-gateway", env!("CARGO_PKG_VERSION"), "The Tidewell gateway: the API of the four services behind one door (rate limits, revoked sessions refused), WebSocket rooms fed by events, and the demo page.")
        .vars(GatewayConfig::VARS)
        .vars(tidewell_event_hub::HubConfig::VARS)
        .vars(TelemetryConfig::VARS);
    if let Some(done) = cli.handle_args() {
        return done;
    }
    cli.report(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
    let _telemetry = init(TelemetryConfig::from_env("gateway")?)?;
    let config = GatewayConfig::from_env()?;
    let hub = Hub::builder("gateway")
        .config(tidewell_event_hub::HubConfig::from_env()?)
        .topology(Topology::new().service(config.queue()))
        .connect()
        .await?;
    let gateway = Gateway::start(config.clone(), hub).await?;
    let listener = tidewell_service_kit::listen(config.addr, "GATEWAY_ADDR").await?;
    tracing::info!(addr = %config.addr, "gateway listening");
    gateway
        .serve(listener, tidewell_service_kit::shutdown_signal())
        .await?;
    Ok(())
}
