//! The payments service on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-payments-service`.

// mimalloc rather than glibc's malloc: the write path saturates at about 1,990 payments/s instead
// of 1,820 to 1,930 on 2 cores, p95 at 1,500/s 12 ms instead of 21 to 62 (bench writes).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
