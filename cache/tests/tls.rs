//! `rediss://` against real TLS endpoints (`scripts/tls-fixture`): a Redis that speaks only TLS,
//! one that also requires a client certificate, and stub servers with expired and not-yet-valid
//! certificates. A good connection round-trips a value; a wrong CA, a host name the certificate
//! does not list, an expired certificate, a missing client certificate and a plaintext port are
//! refused, each with an error naming the host and the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use tidewell_cache::{Cache, Error, Key};
use tidewell_core::tls::ClientTls;
use tidewell_testkit::tls::{TlsFixture, TlsStub, Validity};
use tidewell_testkit::unique_name;

const MIN: Duration = Duration::from_secs(60);

async fn build(url: String, tls: ClientTls) -> Result<Cache, Error> {
    Cache::builder()
        .url(url)
        .prefix(unique_name("tls"))
        .timeout(Duration::from_secs(2))
        .fail_open(false)
        .tls(tls)
        .build()
        .await
}

async fn refused(url: String, tls: ClientTls) -> String {
    match build(url.clone(), tls).await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => {
            assert!(matches!(e, Error::Connect { .. }), "{e:?}");
            e.to_string()
        }
    }
}

#[tokio::test]
async fn a_trusted_server_round_trips_a_value() {
    let f = TlsFixture::get();
    let url = format!("rediss://localhost:{}", f.rediss_port());
    let cache = build(url, ClientTls::new().ca_file(f.ca())).await.unwrap();
    let ns = cache.namespace("tls").unwrap();
    ns.set(&Key::from("k"), &"over TLS", MIN, &[])
        .await
        .unwrap();
    assert_eq!(
        ns.get::<String>(&Key::from("k")).await.unwrap().as_deref(),
        Some("over TLS")
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let f = TlsFixture::get();
    let url = format!("rediss://localhost:{}", f.rediss_port());
    let e = refused(url, ClientTls::new().ca_file(f.other_ca())).await;
    assert!(e.contains("localhost"), "{e}");
    assert!(e.contains("not signed by a trusted CA"), "{e}");
}

#[tokio::test]
async fn the_system_roots_do_not_trust_a_private_ca() {
    let f = TlsFixture::get();
    let e = refused(
        format!("rediss://localhost:{}", f.rediss_port()),
        ClientTls::new(),
    )
    .await;
    assert!(e.contains("not signed by a trusted CA"), "{e}");
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_list_is_refused() {
    let f = TlsFixture::get();
    // The certificate lists `localhost` only.
    let url = format!("rediss://127.0.0.1:{}", f.rediss_port());
    let e = refused(url, ClientTls::new().ca_file(f.ca())).await;
    assert!(e.contains("127.0.0.1"), "{e}");
    assert!(e.contains("not valid for this host name"), "{e}");
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_certificate_is_refused() {
    for (validity, words) in [
        (Validity::Expired, "expired"),
        (Validity::NotYetValid, "not valid yet"),
    ] {
        let stub = TlsStub::start(validity).await;
        let url = format!("rediss://localhost:{}", stub.port);
        let e = refused(url, ClientTls::new().ca_file(&stub.ca)).await;
        assert!(e.contains(words), "{validity:?}: {e}");
    }
    // The same stub with a current certificate completes the handshake: the refusals above are
    // the dates, not the stub.
    let stub = TlsStub::start(Validity::Current).await;
    let url = format!("rediss://localhost:{}", stub.port);
    let _ = build(url, ClientTls::new().ca_file(&stub.ca)).await;
    assert!(stub.handshakes.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn a_rediss_url_on_a_plaintext_port_fails_instead_of_falling_back() {
    let f = TlsFixture::get();
    let plain = tidewell_testkit::redis_url();
    let port = plain.rsplit(':').next().unwrap().trim_end_matches('/');
    let url = format!("rediss://localhost:{port}");
    let e = refused(url, ClientTls::new().ca_file(f.ca())).await;
    assert!(e.contains("localhost"), "{e}");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let f = TlsFixture::get();
    let url = format!("rediss://localhost:{}", f.rediss_mtls_port());
    let e = refused(url.clone(), ClientTls::new().ca_file(f.ca())).await;
    assert!(e.contains("localhost"), "{e}");
    let tls = ClientTls::new()
        .ca_file(f.ca())
        .client_cert(f.client_cert(), f.client_key());
    let cache = build(url, tls).await.unwrap();
    let ns = cache.namespace("mtls").unwrap();
    ns.set(&Key::from("k"), &1_u32, MIN, &[]).await.unwrap();
    assert_eq!(ns.get::<u32>(&Key::from("k")).await.unwrap(), Some(1));
}

#[tokio::test]
async fn tls_files_with_a_plaintext_url_are_a_configuration_error() {
    let f = TlsFixture::get();
    let e = build(
        tidewell_testkit::redis_url(),
        ClientTls::new().ca_file(f.ca()),
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("rediss://"), "{e}");
}
