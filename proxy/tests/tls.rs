//! The proxy terminating TLS: HTTPS over HTTP/1.1 and HTTP/2 (ALPN) with
//! `Strict-Transport-Security`, `wss://` through the same listener, a certificate rotated on disk
//! served without a restart, a bad certificate refused at start, plaintext on the TLS port not
//! served, and the plain-HTTP listener that only redirects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{raw, start_upstream};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tidewell_core::tls::ServerTls;
use tidewell_proxy::{Proxy, ProxyConfig, Route};
use tidewell_testkit::tls::{CertFiles, Validity, client_config};
use tokio::net::{TcpListener, TcpStream};

async fn start_tls(tls: &ServerTls) -> SocketAddr {
    let up = start_upstream().await;
    let config = ProxyConfig::new().route(Route::new("/", &[&format!("http://{up}")]).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::new(config).unwrap();
    let tls = tls.clone();
    tokio::spawn(async move {
        tidewell_proxy::serve_tls(
            listener,
            proxy,
            &tls,
            std::future::pending::<()>(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    });
    addr
}

async fn handshake(
    addr: SocketAddr,
    ca: &std::path::Path,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca, alpn)));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn https_over_http1_answers_with_hsts() {
    let certs = CertFiles::generate(Validity::Current);
    let addr = start_tls(&ServerTls::new(&certs.cert, &certs.key)).await;
    let tls = handshake(addr, &certs.ca, &[b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = send.send_request(get("/echo")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    res.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn http2_is_chosen_by_alpn() {
    let certs = CertFiles::generate(Validity::Current);
    let tls = ServerTls::new(&certs.cert, &certs.key).hsts(None);
    let addr = start_tls(&tls).await;
    let stream = handshake(addr, &certs.ca, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("https://localhost/echo")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert!(
        res.headers().get("strict-transport-security").is_none(),
        "HSTS off"
    );
}

#[tokio::test]
async fn wss_goes_through_the_same_listener() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let certs = CertFiles::generate(Validity::Current);
    let addr = start_tls(&ServerTls::new(&certs.cert, &certs.key)).await;
    let connector =
        tokio_tungstenite::Connector::Rustls(Arc::new(client_config(&certs.ca, &[b"http/1.1"])));
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://localhost:{}/ws", addr.port()),
        None,
        false,
        Some(connector),
    )
    .await
    .unwrap();
    ws.send(Message::text("over wss")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "over wss");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let certs = CertFiles::generate(Validity::Current);
    let addr = start_tls(&ServerTls::new(&certs.cert, &certs.key)).await;
    handshake(addr, &certs.ca, &[]).await.unwrap();
    let new_ca = certs.rotate(Validity::Current);
    // The files are watched (and SIGHUP reloads at once); wait for the new certificate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if handshake(addr, &new_ca, &[]).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = handshake(addr, &certs.ca, &[]).await;
    assert!(old.is_err(), "the old certificate is no longer served");
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_certificate_is_an_error_at_start() {
    let a = CertFiles::generate(Validity::Current);
    let b = CertFiles::generate(Validity::Current);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ProxyConfig::new().route(Route::new("/", &["http://127.0.0.1:9"]).unwrap());
    let proxy = Proxy::new(config).unwrap();
    let e = tidewell_proxy::serve_tls(
        listener,
        proxy,
        &ServerTls::new(&a.cert, &b.key),
        std::future::pending::<()>(),
        Duration::from_secs(1),
    )
    .await
    .expect_err("refused");
    let text = e.to_string();
    assert!(text.contains("does not fit"), "{text}");
    assert!(text.contains(&b.key.display().to_string()), "{text}");
}

#[tokio::test]
async fn plaintext_on_the_tls_port_is_not_served() {
    let certs = CertFiles::generate(Validity::Current);
    let addr = start_tls(&ServerTls::new(&certs.cert, &certs.key)).await;
    let answer = raw(
        addr,
        b"GET /echo HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(!answer.starts_with("HTTP/"), "{answer:?}");
}

#[tokio::test]
async fn the_plain_listener_only_redirects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tidewell_proxy::serve_redirect(
        listener,
        8443,
        std::future::pending::<()>(),
    ));
    let answer = raw(
        addr,
        b"GET /a/b?c=1 HTTP/1.1\r\nhost: example.com:80\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_lowercase()
            .contains("location: https://example.com:8443/a/b?c=1\r\n"),
        "{answer}"
    );
    for host in ["evil.com/x", "", "a b", "[::1"] {
        let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        let answer = raw(addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{host:?}: {answer}");
    }
}

/// A TLS upstream for `localhost` offering `alpn`; answers with the HTTP version it received in
/// `x-version`.
async fn start_tls_upstream(certs: &CertFiles, alpn: &[&[u8]]) -> SocketAddr {
    let mut config = ServerTls::new(&certs.cert, &certs.key)
        .server_config()
        .map(|c| (*c).clone())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("x-version", format!("{:?}", req.version()))
                                .body(http_body_util::Full::new(Bytes::from("from tls upstream")))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    addr
}

async fn through_proxy(route: Route) -> http::Response<hyper::body::Incoming> {
    let addr = common::start_proxy(ProxyConfig::new().route(route)).await;
    let req = http::Request::get(format!("http://{addr}/x"))
        .body(common::empty())
        .unwrap();
    common::client().request(req).await.unwrap()
}

#[tokio::test]
async fn an_https_upstream_is_reached_with_the_routes_ca_over_h2_or_http1() {
    for (alpn, version) in [
        (&[&b"h2"[..], &b"http/1.1"[..]][..], "HTTP/2.0"),
        (&[&b"http/1.1"[..]][..], "HTTP/1.1"),
    ] {
        let certs = CertFiles::generate(Validity::Current);
        let up = start_tls_upstream(&certs, alpn).await;
        let route = Route::new("/", &[&format!("https://localhost:{}", up.port())])
            .unwrap()
            .tls(tidewell_core::tls::ClientTls::new().ca_file(&certs.ca));
        let res = through_proxy(route).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-version"], version);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"from tls upstream");
    }
}

#[tokio::test]
async fn an_https_upstream_with_an_untrusted_or_misnamed_certificate_is_a_502() {
    let certs = CertFiles::generate(Validity::Current);
    let up = start_tls_upstream(&certs, &[b"http/1.1"]).await;
    // The system's roots do not know the test CA.
    let route = Route::new("/", &[&format!("https://localhost:{}", up.port())]).unwrap();
    assert_eq!(through_proxy(route).await.status(), 502);
    // Trusted, but the certificate names `localhost`, not 127.0.0.1.
    let route = Route::new("/", &[&format!("https://127.0.0.1:{}", up.port())])
        .unwrap()
        .tls(tidewell_core::tls::ClientTls::new().ca_file(&certs.ca));
    assert_eq!(through_proxy(route).await.status(), 502);
    // A plaintext upstream behind an https:// URL: never spoken to in plaintext.
    let plain = start_upstream().await;
    let route = Route::new("/", &[&format!("https://localhost:{}", plain.port())])
        .unwrap()
        .tls(tidewell_core::tls::ClientTls::new().ca_file(&certs.ca));
    assert_eq!(through_proxy(route).await.status(), 502);
    // Expired.
    let expired = CertFiles::generate(Validity::Expired);
    let up = start_tls_upstream(&expired, &[b"http/1.1"]).await;
    let route = Route::new("/", &[&format!("https://localhost:{}", up.port())])
        .unwrap()
        .tls(tidewell_core::tls::ClientTls::new().ca_file(&expired.ca));
    assert_eq!(through_proxy(route).await.status(), 502);
}
