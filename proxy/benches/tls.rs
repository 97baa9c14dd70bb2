//! Tidewell's proxy terminating TLS against nginx terminating TLS: same certificate (ECDSA P-256,
//! made here), same protocol and cipher (TLS 1.3, TLS_AES_256_GCM_SHA384, X25519), same upstream,
//! same wrk load; each proxy on one core (ours on a current-thread runtime on its own thread,
//! nginx with one worker).
//!
//! Run: `cargo bench -p tidewell-proxy --bench tls` (needs `wrk` and `nginx`).
//!
//! - `tls_proxy_throughput`: HTTP/1.1 keep-alive over TLS (`wrk -t1 -c32 -d3s`), requests/s.
//! - `tls_handshakes_per_s`: every request on a new connection (`Connection: close`), so each is
//!   a full TLS 1.3 handshake (no resumption: wrk does not resume sessions); connections/s.
//!
//! 7 alternating rounds of 3 s; rounds where the hypervisor stole over 5% are dropped; medians.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tidewell_core::tls::ServerTls;
use tidewell_proxy::{Proxy, ProxyConfig, Route};
use tidewell_testkit::bench::{Steal, calm_rounds, median};
use tidewell_testkit::tls::{CertFiles, Validity};

mod support;
use support::Nginx;

const ROUNDS: usize = 7;

/// The upstream: hello, on its own one-thread runtime.
fn start_upstream() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"hello",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// Tidewell's proxy terminating TLS, on one thread (HSTS off: nginx sends none either).
fn start_ours(upstream: SocketAddr, certs: &CertFiles) -> SocketAddr {
    let tls = ServerTls::new(&certs.cert, &certs.key).hsts(None);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("tidewell".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let proxy = Proxy::new(
                    ProxyConfig::new()
                        .route(Route::new("/", &[&format!("http://{upstream}")]).unwrap()),
                )
                .unwrap();
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
        })
        .unwrap();
    rx.recv().unwrap()
}

/// nginx terminating TLS with the same certificate, protocol and cipher, the same forwarding
/// headers as the plain bench's nginx.
fn start_nginx(upstream: SocketAddr, certs: &CertFiles) -> Nginx {
    let body = format!(
        r#"    upstream up {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{{port}} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
        ssl_ecdh_curve X25519;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_buffering off;
        }}
    }}"#,
        cert = certs.cert.display(),
        key = certs.key.display(),
    );
    Nginx::start("tls", &body)
}

/// (keep-alive req/s, new connections/s, share stolen by the hypervisor).
type Run = (f64, f64, f64);
/// Ours, then nginx.
type Round = (Run, Run);

/// One keep-alive run and one new-connection run against `addr`.
fn measure(addr: SocketAddr) -> Run {
    let steal = Steal::start();
    let url = format!("https://{addr}/");
    let keep_alive = support::wrk(&url, &[]).rps;
    let handshakes = support::wrk(&url, &["-H", "Connection: close"]).rps;
    (keep_alive, handshakes, steal.share())
}

fn main() {
    let certs = CertFiles::generate(Validity::Current);
    let upstream = start_upstream();
    let ours = start_ours(upstream, &certs);
    let nginx = start_nginx(upstream, &certs);
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let (o, n) = if round % 2 == 0 {
            let o = measure(ours);
            (o, measure(nginx.addr))
        } else {
            let n = measure(nginx.addr);
            (measure(ours), n)
        };
        eprintln!(
            "  round {round}: tidewell {:.0} req/s {:.0} conn/s; nginx {:.0} req/s {:.0} conn/s; stolen {:.0}%",
            o.0,
            o.1,
            n.0,
            n.1,
            100.0 * o.2.max(n.2)
        );
        rounds.push((o, n));
    }
    let stolen: Vec<f64> = rounds.iter().map(|(o, n)| o.2.max(n.2)).collect();
    let (keep, _) = calm_rounds(&stolen, 3);
    let kept = |f: &dyn Fn(&Round) -> f64| keep.iter().map(|&i| f(&rounds[i])).collect::<Vec<_>>();
    let (ours_rps, nginx_rps) = (median(kept(&|r| r.0.0)), median(kept(&|r| r.1.0)));
    let (ours_hs, nginx_hs) = (median(kept(&|r| r.0.1)), median(kept(&|r| r.1.1)));
    eprintln!("  {} of {ROUNDS} rounds count", keep.len());
    println!(
        "bench: tls_proxy_throughput ours={ours_rps:.0} baseline={nginx_rps:.0} ratio={:.3} unit=req/s",
        ours_rps / nginx_rps
    );
    println!(
        "bench: tls_handshakes_per_s ours={ours_hs:.0} baseline={nginx_hs:.0} ratio={:.3} unit=conn/s",
        ours_hs / nginx_hs
    );
}
