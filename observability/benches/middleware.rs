//! The cost of Tidewell's HTTP middleware: a hyper hello-world with and without the metrics and
//! correlation layers (tracing on, no subscriber: export off), measured with wrk in one run.
//! A second baseline sends the same bytes as the layered server (a fixed `x-correlation-id`), to
//! tell the cost of the echoed header from the cost of the layers' code.
//!
//! Run: `cargo bench -p tidewell-observability --bench middleware` (needs `wrk`: apt-get install wrk).
//! Rounds alternate plain and layered servers, each measurement on a fresh server (a server bound
//! earlier measured systematically faster here, whatever it served); figures are the best round.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    reason = "benchmark"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tidewell_observability::{CorrelationLayer, HttpMetrics, MetricsRegistry};
use tower::{Layer, service_fn};

const ROUNDS: usize = 5;

type Req = http::Request<hyper::body::Incoming>;
type Res = http::Response<Full<Bytes>>;

async fn hello(_: Req) -> Result<Res, Infallible> {
    Ok(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
}

/// The same hello with a fixed header as long as the echoed correlation id: the bytes on the wire
/// of the layered server, without its work. Separates the cost of the echoed header (which wrk
/// parses on the same two cores) from the cost of the layers' code.
async fn hello_same_wire(_: Req) -> Result<Res, Infallible> {
    let mut res = http::Response::new(Full::new(Bytes::from_static(b"hello")));
    res.headers_mut().insert(
        tidewell_observability::CORRELATION_HEADER,
        http::HeaderValue::from_static("019ac0c4-5f6e-7a3b-9c2d-1e2f3a4b5c6d"),
    );
    Ok(res)
}

/// Serves `make()` per connection on a fresh port for one wrk run; returns requests per second.
async fn measure<S>(make: impl Fn() -> S + Send + 'static) -> f64
where
    S: tower::Service<Req, Response = Res, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let svc = TowerToHyperService::new(make());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let rps = tokio::task::spawn_blocking(move || wrk(addr))
        .await
        .unwrap();
    accept.abort();
    rps
}

fn wrk(addr: SocketAddr) -> f64 {
    let out = Command::new("wrk")
        .args(["-t1", "-c32", "-d4s", &format!("http://{addr}/users/7")])
        .output()
        .expect("wrk on PATH (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read wrk output: {text}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let registry = MetricsRegistry::new(None);
    let metrics = HttpMetrics::new(&registry).unwrap().route_with(|uri, _| {
        uri.path()
            .starts_with("/users/")
            .then(|| "/users/{id}".to_owned())
    });

    let (mut ours, mut base, mut wire) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let b = measure(|| service_fn(hello)).await;
        let w = measure(|| service_fn(hello_same_wire)).await;
        let m = metrics.clone();
        let o = measure(move || CorrelationLayer.layer(m.layer().layer(service_fn(hello)))).await;
        eprintln!(
            "  round {round}: plain {b:.0} req/s, plain + same header {w:.0} req/s, with metrics + correlation {o:.0} req/s"
        );
        base.push(b);
        wire.push(w);
        ours.push(o);
    }
    let (_, scrape) = registry.render().unwrap();
    assert!(
        scrape.contains(r#"route="/users/{id}""#),
        "the layered server really recorded"
    );
    let best = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    let (o, b, w) = (best(&ours), best(&base), best(&wire));
    println!(
        "bench: middleware_overhead ours={o:.2} baseline={b:.2} ratio={:.3} unit=req/s",
        o / b
    );
    println!(
        "bench: middleware_overhead_same_wire ours={o:.2} baseline={w:.2} ratio={:.3} unit=req/s",
        o / w
    );
}
