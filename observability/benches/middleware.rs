//! The cost of Tidewell's HTTP middleware: a hyper hello-world with and without the metrics and
//! correlation layers (tracing on, no subscriber: export off), measured with wrk in one run.
//! A second baseline sends the same bytes as the layered server (a fixed `x-correlation-id`), to
//! tell the cost of the echoed header from the cost of the layers' code.
//!
//! A third figure needs no sockets: the layers' own cost per request, calling the layered and the
//! plain service in a loop in this process (stable where wrk's figures swing between rounds).
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
    clippy::indexing_slicing,
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

const ROUNDS: usize = 7;

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

async fn hello_unit(_: http::Request<()>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
}

/// Nanoseconds per call of `svc` on a fresh `GET /users/7` (the futures are ready at once).
fn ns_per_call<S>(mut svc: S, n: u32) -> f64
where
    S: tower::Service<
            http::Request<()>,
            Response = http::Response<Full<Bytes>>,
            Error = Infallible,
        >,
{
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let started = std::time::Instant::now();
    for _ in 0..n {
        let req = http::Request::get("/users/7").body(()).unwrap();
        let mut fut = std::pin::pin!(svc.call(req));
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(res)) => {
                std::hint::black_box(res);
            }
            _ => unreachable!("the hello service answers at once"),
        }
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

/// The layers' cost per request in process: best of 5 alternating runs of 200,000 calls each.
fn in_process(metrics: &HttpMetrics) -> (f64, f64) {
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        base.push(ns_per_call(service_fn(hello_unit), 200_000));
        let layered = CorrelationLayer.layer(metrics.layer().layer(service_fn(hello_unit)));
        ours.push(ns_per_call(layered, 200_000));
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    (best(&ours), best(&base))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let registry = MetricsRegistry::new(None);
    let metrics = HttpMetrics::new(&registry).unwrap().route_with(|uri, _| {
        uri.path()
            .starts_with("/users/")
            .then_some("/users/{id}".into())
    });

    let (ours_ns, base_ns) = in_process(&metrics);
    eprintln!(
        "  in process: {base_ns:.0} ns per plain call, {ours_ns:.0} ns layered: the layers cost {:.0} ns",
        ours_ns - base_ns
    );
    if std::env::args().any(|a| a == "in-process") {
        return; // `-- in-process`: only this figure (for profiling the layers)
    }

    let (mut ours, mut base, mut wire) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // The order alternates too: a server measured first in a round was not systematically
        // faster or slower than one measured last, but nothing should hang on that.
        let m = metrics.clone();
        let (b, w, o) = if round % 2 == 0 {
            let b = measure(|| service_fn(hello)).await;
            let w = measure(|| service_fn(hello_same_wire)).await;
            let o =
                measure(move || CorrelationLayer.layer(m.layer().layer(service_fn(hello)))).await;
            (b, w, o)
        } else {
            let o =
                measure(move || CorrelationLayer.layer(m.layer().layer(service_fn(hello)))).await;
            let w = measure(|| service_fn(hello_same_wire)).await;
            let b = measure(|| service_fn(hello)).await;
            (b, w, o)
        };
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
    let mut ratios: Vec<f64> = ours.iter().zip(&base).map(|(o, b)| o / b).collect();
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "  per-round ratios {ratios:.3?}: median {:.3} (the best-of figures below are the headline)",
        ratios[ratios.len() / 2]
    );
    println!(
        "bench: middleware_overhead ours={o:.2} baseline={b:.2} ratio={:.3} unit=req/s",
        o / b
    );
    println!(
        "bench: middleware_overhead_same_wire ours={o:.2} baseline={w:.2} ratio={:.3} unit=req/s",
        o / w
    );
    println!(
        "bench: middleware_cost_in_process ours={ours_ns:.1} baseline={base_ns:.1} ratio={:.3} unit=ns_per_request",
        ours_ns / base_ns
    );
}
