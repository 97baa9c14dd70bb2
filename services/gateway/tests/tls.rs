//! The gateway terminating TLS: HTTPS answers with `Strict-Transport-Security`, the rooms over
//! `wss://` through the same listener with Tidewell's own client (trusting the test's CA), a
//! client that trusts another CA stopped with the reason, and the plain listener redirecting.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tidewell_core::tls::{ClientTls, ServerTls};
use tidewell_gateway::{Gateway, GatewayConfig};
use tidewell_testkit::tls::{CertFiles, Validity, client_config};
use tidewell_testkit::unique_name;
use tidewell_websocket::{ClientConfig, ClientEvent, WsClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

struct Running {
    https: SocketAddr,
    plain: SocketAddr,
    certs: CertFiles,
}

async fn start() -> Running {
    let certs = CertFiles::generate(Validity::Current);
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap();
    drop(plain);
    let mut config = GatewayConfig::new(SECRET.to_vec());
    config.queue_service = unique_name("gateway");
    config.tls = Some(ServerTls::new(&certs.cert, &certs.key));
    config.redirect_addr = Some(plain_addr);
    let hub = tidewell_event_hub::Hub::memory(
        "gateway",
        config.queues().into_iter().fold(
            tidewell_event_hub::Topology::new(),
            tidewell_event_hub::Topology::service,
        ),
    )
    .await
    .unwrap();
    let gateway = Gateway::start(config, hub).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = listener.local_addr().unwrap();
    tokio::spawn(async move {
        gateway
            .serve(listener, std::future::pending::<()>())
            .await
            .unwrap();
    });
    // The redirect listener binds inside `serve`: wait for it.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(plain_addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        https,
        plain: plain_addr,
        certs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_answers_with_hsts() {
    let g = start().await;
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&g.certs.ca, &[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(g.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let alive: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alive["alive"], true, "{alive}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_over_wss_with_a_private_ca() {
    let g = start().await;
    let token = tidewell_service_kit::issuer(SECRET, Duration::from_secs(300))
        .unwrap()
        .sign(
            &tidewell_service_kit::issuer(SECRET, Duration::from_secs(300))
                .unwrap()
                .claims_for("user-1"),
        )
        .unwrap();
    let url = format!("wss://localhost:{}/ws", g.https.port());
    let mut client = WsClient::connect(
        ClientConfig::new(&url, token.as_str()).tls(ClientTls::new().ca_file(&g.certs.ca)),
    );
    let first = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, ClientEvent::Connected { .. }), "{first:?}");
    client.close();

    // Trusting another CA: stopped at once, saying why (never retried, never plaintext).
    let other = CertFiles::generate(Validity::Current);
    let mut client = WsClient::connect(
        ClientConfig::new(&url, token.as_str()).tls(ClientTls::new().ca_file(&other.ca)),
    );
    let first = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .unwrap()
        .unwrap();
    let ClientEvent::Stopped { reason } = first else {
        panic!("{first:?}");
    };
    assert!(reason.contains("not signed by a trusted CA"), "{reason}");
    assert!(reason.contains("localhost"), "{reason}");

    // A wss:// URL on the plain (redirecting) port: refused, never spoken in plaintext.
    let plain = format!("wss://localhost:{}/ws", g.plain.port());
    let mut client = WsClient::connect(
        ClientConfig::new(&plain, token.as_str()).tls(ClientTls::new().ca_file(&g.certs.ca)),
    );
    let first = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .unwrap()
        .unwrap();
    let ClientEvent::Stopped { reason } = first else {
        panic!("{first:?}");
    };
    assert!(reason.contains("did not answer in TLS"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_redirects_to_https() {
    let g = start().await;
    let mut s = tokio::net::TcpStream::connect(g.plain).await.unwrap();
    s.write_all(b"GET /app.js HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    let location = format!(
        "location: https://example.com:{}/app.js\r\n",
        g.https.port()
    );
    assert!(out.to_lowercase().contains(&location), "{out}");
}
