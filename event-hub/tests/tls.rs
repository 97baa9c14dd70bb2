//! TLS on every connection the event hub makes, against real TLS endpoints
//! (`scripts/tls-fixture`): RabbitMQ's TLS listener (`amqps://`), a TLS-only Redis for the
//! dedup store (`rediss://`), and a PostgreSQL with `ssl = on` for the outbox (libpq's
//! `sslmode`/`sslrootcert`); stub servers show expired and not-yet-valid certificates. A good
//! connection works end to end; a wrong CA, a host name the certificate does not list, an expired
//! certificate and a plaintext port are refused with an error naming the host and the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use tidewell_core::Envelope;
use tidewell_core::tls::ClientTls;
use tidewell_event_hub::{Error, Hub, ServiceQueue, Subscription, Topology};
use tidewell_testkit::tls::{TlsFixture, TlsStub, Validity};
use tidewell_testkit::unique_name;

fn amqps(port: u16, host: &str) -> String {
    format!("amqps://guest:guest@{host}:{port}/%2f")
}

async fn refused(url: String, tls: ClientTls) -> String {
    match Hub::builder("tls-test")
        .url(url.clone())
        .tls(tls)
        .connect()
        .await
    {
        Ok(_) => panic!("{url} connected"),
        Err(e) => {
            assert!(matches!(e, Error::Connect { .. }), "{e:?}");
            let text = e.to_string();
            assert!(
                !text.contains("guest:guest"),
                "no password in errors: {text}"
            );
            text
        }
    }
}

#[tokio::test]
async fn an_amqps_url_on_a_plaintext_port_is_refused() {
    // The broker every test uses, on its plaintext port, asked for TLS.
    let plain = tidewell_testkit::amqp_url();
    let tls = plain.replacen("amqp://", "amqps://", 1);
    assert!(tls.starts_with("amqps://"), "{tls}");
    let e = refused(tls, ClientTls::new()).await;
    assert!(e.contains("TLS"), "{e}");
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Ping {
    n: u32,
}

impl tidewell_core::Event for Ping {
    const TYPE: &'static str = "tls.test.ping";
    const VERSION: u16 = 1;
}

#[tokio::test]
async fn amqps_with_the_ca_publishes_and_consumes() {
    let f = TlsFixture::get();
    let service = ServiceQueue::new(unique_name("tls-q")).bind("tls.#");
    let queue = service.name();
    let topology = Topology::with_exchange(unique_name("tls-ex")).service(service);
    let hub = Hub::builder("tls-test")
        .url(amqps(f.amqps_port(), "localhost"))
        .tls(ClientTls::new().ca_file(f.ca()))
        .topology(topology)
        .connect()
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    hub.subscribe(Subscription::new(queue), move |e: Envelope<Ping>| {
        let tx = tx.clone();
        async move {
            tx.send(e.payload().n).unwrap();
            Ok(())
        }
    })
    .await
    .unwrap();
    // Confirmed by the broker over TLS, then delivered back over TLS.
    hub.publish(&Envelope::new("tls-test", Ping { n: 7 }))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(7));
    hub.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn amqps_refuses_another_ca_a_wrong_host_and_bad_dates() {
    let f = TlsFixture::get();
    let e = refused(
        amqps(f.amqps_port(), "localhost"),
        ClientTls::new().ca_file(f.other_ca()),
    )
    .await;
    assert!(
        e.contains("localhost:5671") || e.contains("localhost"),
        "{e}"
    );
    assert!(e.contains("not signed by a trusted CA"), "{e}");

    let e = refused(
        amqps(f.amqps_port(), "127.0.0.1"),
        ClientTls::new().ca_file(f.ca()),
    )
    .await;
    assert!(e.contains("127.0.0.1"), "{e}");
    assert!(e.contains("not valid for this host name"), "{e}");

    for (validity, words) in [
        (Validity::Expired, "expired"),
        (Validity::NotYetValid, "not valid yet"),
    ] {
        let stub = TlsStub::start(validity).await;
        let e = refused(
            amqps(stub.port, "localhost"),
            ClientTls::new().ca_file(&stub.ca),
        )
        .await;
        assert!(e.contains(words), "{validity:?}: {e}");
    }
}

#[tokio::test]
async fn tls_files_with_an_amqp_url_are_refused_at_start() {
    let f = TlsFixture::get();
    let result = Hub::builder("tls-test")
        .url(tidewell_testkit::amqp_url())
        .tls(ClientTls::new().ca_file(f.ca()))
        .connect()
        .await;
    let e = result.expect_err("refused");
    assert!(e.to_string().contains("amqps://"), "{e}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_dedup_store_over_rediss() {
    use tidewell_event_hub::RedisDedup;
    let f = TlsFixture::get();
    let url = format!("rediss://localhost:{}", f.rediss_port());
    RedisDedup::connect_tls(
        &url,
        unique_name("dedup"),
        &ClientTls::new().ca_file(f.ca()),
    )
    .await
    .unwrap();
    let e = RedisDedup::connect_tls(&url, "d", &ClientTls::new().ca_file(f.other_ca()))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");
}

#[cfg(feature = "outbox")]
mod outbox {
    use super::*;
    use tidewell_event_hub::outbox::connect;

    fn pg(port: u16, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{port}/postgres?{params}")
    }

    #[tokio::test]
    async fn verify_full_with_the_root_cert_connects_over_tls() {
        let f = TlsFixture::get();
        let url = pg(
            f.postgres_tls_port(),
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", f.ca().display()),
        );
        let pool = connect(&url).await.unwrap();
        // The server accepts only TLS (hostssl), and says so for this connection.
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(ssl);
    }

    #[tokio::test]
    async fn verify_ca_checks_the_signer_but_not_the_host_name() {
        let f = TlsFixture::get();
        let port = f.postgres_tls_port();
        // The certificate names `localhost`: verify-ca accepts it for 127.0.0.1 (libpq's meaning)…
        let ca = format!("sslmode=verify-ca&sslrootcert={}", f.ca().display());
        connect(&pg(port, "127.0.0.1", &ca)).await.unwrap();
        // …but not from another CA.
        let other = format!("sslmode=verify-ca&sslrootcert={}", f.other_ca().display());
        let e = connect(&pg(port, "127.0.0.1", &other))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");
    }

    #[tokio::test]
    async fn verify_full_refuses_another_ca_a_wrong_host_and_bad_dates() {
        let f = TlsFixture::get();
        let port = f.postgres_tls_port();
        let other = format!("sslmode=verify-full&sslrootcert={}", f.other_ca().display());
        let e = connect(&pg(port, "localhost", &other))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("localhost"), "{e}");
        assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");

        let good = format!("sslmode=verify-full&sslrootcert={}", f.ca().display());
        let e = connect(&pg(port, "127.0.0.1", &good))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        assert!(
            e.to_string().contains("not valid for this host name"),
            "{e}"
        );

        let stub = TlsStub::postgres(Validity::Expired).await;
        let expired = format!("sslmode=verify-full&sslrootcert={}", stub.ca.display());
        let e = connect(&pg(stub.port, "localhost", &expired))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[tokio::test]
    async fn sslmode_require_never_falls_back_to_plaintext() {
        // A server that declines TLS (answers `N` to the SSLRequest), as one with `ssl = off`.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut request = [0u8; 8];
                if tcp.read_exact(&mut request).await.is_ok() {
                    let _ = tcp.write_all(b"N").await;
                }
            }
        });
        let e = connect(&pg(port, "localhost", "sslmode=require"))
            .await
            .expect_err("refused");
        assert!(
            e.to_string().to_lowercase().contains("tls")
                || e.to_string().to_lowercase().contains("ssl"),
            "{e}"
        );
    }
}
