//! The profile service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-profile-service`.

use tidewell_cache::Cache;
use tidewell_event_hub::{Hub, Topology};
use tidewell_observability::{TelemetryConfig, init};
use tidewell_profile_service::{ProfileConfig, ProfileService};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = init(TelemetryConfig::from_env("profile")?)?;
    let config = ProfileConfig::from_env()?;
    let hub = Hub::builder("profile")
        .config(tidewell_event_hub::HubConfig::from_env()?)
        .topology(Topology::new().service(config.queue()))
        .connect()
        .await?;
    let cache = Cache::builder()
        .config(tidewell_cache::CacheConfig::from_env()?)
        .build()
        .await?;
    let service = ProfileService::start(config.clone(), hub, cache).await?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %config.addr, "profile service listening");
    tidewell_service_kit::serve(
        listener,
        service.router(),
        tidewell_service_kit::shutdown_signal(),
    )
    .await?;
    Ok(())
}
