//! The gateway on its own: `TIDEWELL_JWT_SECRET=… cargo run -p tidewell-gateway`, with the four
//! services at `GATEWAY_*_URL`.

use std::process::ExitCode;

use tidewell_core::cli::Cli;
use tidewell_gateway::Gateway;

fn main() -> ExitCode {
    tidewell_service_kit::run_service::<Gateway>(Cli::new(
        "tidewell-gateway",
        env!("CARGO_PKG_VERSION"),
        "The Tidewell gateway: the API of the four services behind one door (rate limits, revoked sessions refused), WebSocket rooms fed by events, and the demo page.",
    ))
}
