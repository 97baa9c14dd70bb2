//! The payments service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-payments-service`.

use std::error::Error;
use std::process::ExitCode;

use tidewell_cache::Cache;
use tidewell_core::cli::Cli;
use tidewell_event_hub::{Hub, ServiceQueue, Topology};
use tidewell_observability::{TelemetryConfig, init};
use tidewell_payments_service::{PaymentsConfig, PaymentsService};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::new("tidewell-payments", env!("CARGO_PKG_VERSION"), "The Tidewell payments service: create, list and settle payments (cached reads); publishes payments.* events.")
        .vars(PaymentsConfig::VARS)
        .vars(tidewell_event_hub::HubConfig::VARS)
        .vars(tidewell_cache::CacheConfig::VARS)
        .vars(TelemetryConfig::VARS);
    if let Some(done) = cli.handle_args() {
        return done;
    }
    cli.report(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
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
    let listener = tidewell_service_kit::listen(config.addr, "PAYMENTS_ADDR").await?;
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
