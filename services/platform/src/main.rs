//! `cargo run -p tidewell-platform`: the gateway (http://127.0.0.1:8080) and the four services
//! in one process, on embedded defaults unless `AMQP_URL`, `REDIS_URL` and the
//! `*_DATABASE_URL`s say otherwise.

use tidewell_observability::{TelemetryConfig, init};
use tidewell_platform::{Platform, PlatformConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = init(TelemetryConfig::from_env("platform")?)?;
    let platform = Platform::start(PlatformConfig::from_env()?).await?;
    tracing::info!("open http://{} (Ctrl-C stops)", platform.addr);
    tidewell_service_kit::shutdown_signal().await;
    platform.shutdown().await;
    Ok(())
}
