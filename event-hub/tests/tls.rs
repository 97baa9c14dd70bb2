//! An `amqps://` URL never connects in plaintext: pointed at the broker's plain AMQP port it fails
//! with an error that says TLS failed and what to check.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use tidewell_event_hub::{Error, Hub};

#[tokio::test]
async fn an_amqps_url_on_a_plaintext_port_is_refused() {
    // The broker every test uses, on its plaintext port, asked for TLS.
    let plain = tidewell_testkit::amqp_url();
    let tls = plain.replacen("amqp://", "amqps://", 1);
    assert!(tls.starts_with("amqps://"), "{tls}");
    let result = Hub::builder("tls-test").url(tls).connect().await;
    let Err(error) = result else {
        panic!("an amqps:// URL connected to a plaintext port");
    };
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("TLS connection failed"), "{message}");
    assert!(
        !message.contains("guest:guest"),
        "no password in the error: {message}"
    );
}
