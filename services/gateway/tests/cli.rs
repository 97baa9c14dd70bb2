//! The gateway's binary behaves like a tool.

use tidewell_gateway::Gateway;

/// `--help`, `--version`, a usage error, and start-up errors printed for a person (not a
/// `Debug` dump) with exit code 1: without the secret, and with a variable that does not parse.
#[test]
fn the_binary_behaves_like_a_tool() {
    let bin = env!("CARGO_BIN_EXE_tidewell-gateway");
    tidewell_service_kit::test_support::assert_service_binary::<Gateway>(bin);
    tidewell_testkit::assert_start_error(
        bin,
        &[
            (
                "TIDEWELL_JWT_SECRET",
                Some("a gateway test secret of 32 bytes!!"),
            ),
            ("GATEWAY_AUTH_PER_MINUTE", Some("ten")),
        ],
        &["GATEWAY_AUTH_PER_MINUTE"],
    );
}
