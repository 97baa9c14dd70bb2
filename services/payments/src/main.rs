//! The payments service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-payments-service`.

use tidewell_cache::Cache;
use tidewell_event_hub::{Hub, ServiceQueue, Topology};
use tidewell_observability::{TelemetryConfig, init};
use tidewell_payments_service::{PaymentsConfig, PaymentsService};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _telemetry = init(TelemetryConfig::from_env("payments")?)?;
    let config = PaymentsConfig::from_env()?;
    let hub = Hub::builder("payments")
        .config(tidewell_event_hub::HubConfig::from_env()?)
        .topology(Topology::new().service(ServiceQueue::new("payments-audit").bind("payments.#")))
        .connect()
        .await?;
    // TIDEWELL_CACHE_URL: redis://… or memory:// (the default).
    let cache = Cache::builder()
        .config(tidewell_cache::CacheConfig::from_env()?)
        .build()
        .await?;
    let stop = CancellationToken::new();
    let service = PaymentsService::start(config.clone(), hub, cache, stop.clone()).await?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %config.addr, "payments service listening");
    tidewell_service_kit::serve(
        listener,
        service.router(),
        tidewell_service_kit::shutdown_signal(),
    )
    .await?;
    stop.cancel();
    Ok(())
}
