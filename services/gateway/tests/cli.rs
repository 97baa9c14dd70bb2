//! The gateway's binary behaves like a tool.
#![allow(clippy::unwrap_used, reason = "tests")]

use tidewell_gateway::GatewayConfig;

/// `--help`, `--version`, a usage error, and a start-up error printed for a person (not a
/// `Debug` dump) with exit code 1.
#[test]
fn the_binary_behaves_like_a_tool() {
    let bin = env!("CARGO_BIN_EXE_tidewell-gateway");
    tidewell_testkit::assert_behaves_like_a_tool(bin, GatewayConfig::VARS);
    tidewell_testkit::assert_behaves_like_a_tool(bin, tidewell_event_hub::HubConfig::VARS);
    let out = std::process::Command::new(bin)
        .env("TIDEWELL_JWT_SECRET", "a gateway test secret of 32 bytes!!")
        .env("GATEWAY_AUTH_PER_MINUTE", "ten")
        .env("TIDEWELL_LOG_FORMAT", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GATEWAY_AUTH_PER_MINUTE") && err.contains("tidewell-gateway --help"),
        "{err}"
    );
}
