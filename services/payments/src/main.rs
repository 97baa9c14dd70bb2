//! The payments service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-payments-service`.

use std::process::ExitCode;

use tidewell_core::cli::Cli;
use tidewell_payments_service::PaymentsService;

fn main() -> ExitCode {
    tidewell_service_kit::run_service::<PaymentsService>(Cli::new(
        "tidewell-payments",
        env!("CARGO_PKG_VERSION"),
        "The Tidewell payments service: create, list and settle payments (cached reads); publishes payments.* events.",
    ))
}
