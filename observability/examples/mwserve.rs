#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use tidewell_observability::{CorrelationLayer, HttpMetrics, MetricsRegistry};
use tower::{Layer, service_fn};
type Req = http::Request<hyper::body::Incoming>;
async fn hello(_: Req) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
}
async fn wire(_: Req) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let mut r = http::Response::new(Full::new(Bytes::from_static(b"hello")));
    r.headers_mut().insert(
        "x-correlation-id",
        http::HeaderValue::from_static("019ac0c4-5f6e-7a3b-9c2d-1e2f3a4b5c6d"),
    );
    Ok(r)
}
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let registry = MetricsRegistry::new(None);
    let metrics = HttpMetrics::new(&registry).unwrap().route_with(|uri, _| {
        uri.path()
            .starts_with("/users/")
            .then(|| "/users/{id}".to_owned())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:18080")
        .await
        .unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let which = which.clone();
        let m = metrics.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            match which.as_str() {
                "layered" => {
                    let _ = http1::Builder::new()
                        .serve_connection(
                            io,
                            TowerToHyperService::new(
                                CorrelationLayer.layer(m.layer().layer(service_fn(hello))),
                            ),
                        )
                        .await;
                }
                "metrics" => {
                    let _ = http1::Builder::new()
                        .serve_connection(
                            io,
                            TowerToHyperService::new(m.layer().layer(service_fn(hello))),
                        )
                        .await;
                }
                "corr" => {
                    let _ = http1::Builder::new()
                        .serve_connection(
                            io,
                            TowerToHyperService::new(CorrelationLayer.layer(service_fn(hello))),
                        )
                        .await;
                }
                "wire" => {
                    let _ = http1::Builder::new()
                        .serve_connection(io, TowerToHyperService::new(service_fn(wire)))
                        .await;
                }
                _ => {
                    let _ = http1::Builder::new()
                        .serve_connection(io, TowerToHyperService::new(service_fn(hello)))
                        .await;
                }
            }
        });
    }
}
