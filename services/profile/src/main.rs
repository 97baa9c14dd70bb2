//! The profile service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-profile-service`.

use std::process::ExitCode;

use tidewell_core::cli::Cli;
use tidewell_profile_service::ProfileService;

fn main() -> ExitCode {
    tidewell_service_kit::run_service::<ProfileService>(Cli::new(
        "tidewell-profile",
        env!("CARGO_PKG_VERSION"),
        "The Tidewell profile service: profiles and preferences, made on auth.user.created, cached.",
    ))
}
