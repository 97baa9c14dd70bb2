//! The admin service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-admin-service`.

use std::process::ExitCode;

use tidewell_admin_service::AdminService;
use tidewell_core::cli::Cli;

fn main() -> ExitCode {
    tidewell_service_kit::run_service::<AdminService>(Cli::new(
        "tidewell-admin",
        env!("CARGO_PKG_VERSION"),
        "The Tidewell admin service: an idempotent audit log of every event, users and a dashboard (admin role only).",
    ))
}
