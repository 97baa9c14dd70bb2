//! The auth service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-auth-service`.

use std::process::ExitCode;

use tidewell_auth_service::AuthService;
use tidewell_core::cli::Cli;

fn main() -> ExitCode {
    tidewell_service_kit::run_service::<AuthService>(Cli::new(
        "tidewell-auth",
        env!("CARGO_PKG_VERSION"),
        "The Tidewell auth service: register, sign in, rotating refresh tokens, devices; publishes auth.* events.",
    ))
}
