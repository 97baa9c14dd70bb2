//! The profile service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-profile-service`.

use std::error::Error;
use std::process::ExitCode;

use tidewell_cache::Cache;
use tidewell_core::cli::Cli;
use tidewell_event_hub::{Hub, Topology};
use tidewell_observability::{TelemetryConfig, init};
use tidewell_profile_service::{ProfileConfig, ProfileService};

fn main() -> ExitCode {
    let cli = Cli::new("tidewell-profile", env!("CARGO_PKG_VERSION"), "The Tidewell profile service: profiles and preferences, made on auth.user.created, cached.")
        .vars(ProfileConfig::VARS)
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
    let listener = tidewell_service_kit::listen(config.addr, "PROFILE_ADDR").await?;
    tracing::info!(addr = %config.addr, "profile service listening");
    tidewell_service_kit::serve(
        listener,
        service.router(),
        tidewell_service_kit::shutdown_signal(),
    )
    .await?;
    Ok(())
}
