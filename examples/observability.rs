//! Metrics, correlation ids and traces on an HTTP service.
//!
//! `cargo run --example observability` serves one route behind the metrics and correlation
//! layers, calls it three times (once with the caller's own `x-request-id`), prints the ids it
//! got back and the Prometheus scrape, and exits. Logs go to stderr (`RUST_LOG=debug` for more);
//! with a collector, spans are exported too:
//! `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run --example observability`.
#![allow(
    clippy::print_stdout,
    reason = "an example prints for a person to read"
)]

use std::convert::Infallible;
use std::error::Error;
use std::process::ExitCode;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tidewell::core::cli::Cli;
use tidewell::observability::{
    CorrelationLayer, HttpMetrics, MetricsRegistry, TelemetryConfig, correlation_id_of, init,
};
use tower::{Layer as _, service_fn};

/// The application's handler: the correlation layer left the request's id in its
/// `x-correlation-id` header.
async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = correlation_id_of(req.headers());
    tracing::info!(correlation_id = %id, path = req.uri().path(), "hello");
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello from request {id}\n"
    )))))
}

fn main() -> ExitCode {
    let cli = Cli::new("observability", env!("CARGO_PKG_VERSION"), "Metrics, correlation ids and traces on an HTTP service: three calls, then the Prometheus scrape.")
        .vars(TelemetryConfig::VARS);
    if let Some(done) = cli.handle_args() {
        return done;
    }
    cli.report(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
    // Once, first thing: logs, and span export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let _telemetry = init(TelemetryConfig::from_env("observability-example")?)?;

    let registry = MetricsRegistry::new(Some("example"));
    // Route templates, never raw paths: `/users/7` and `/users/8` are one series.
    let metrics = HttpMetrics::new(&registry)?.route_with(|uri, _| {
        uri.path()
            .starts_with("/users/")
            .then_some("/users/{id}".into())
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = CorrelationLayer.layer(metrics.layer().layer(service_fn(hello)));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc)),
            );
        }
    });

    for (path, request_id) in [
        ("/users/7", None),
        ("/users/8", Some("req-from-caller")),
        ("/nowhere", None),
    ] {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header("host", addr.to_string());
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let res = sender
            .send_request(req.body(Empty::<Bytes>::new())?)
            .await?;
        let echoed = res.headers().get("x-correlation-id").cloned();
        let body = res.into_body().collect().await?.to_bytes();
        println!(
            "GET {path}: x-correlation-id {echoed:?}, body {:?}",
            String::from_utf8_lossy(&body).trim()
        );
    }

    let (content_type, scrape) = registry.render()?;
    println!("\n/metrics ({content_type}):");
    for line in scrape
        .lines()
        .filter(|l| l.starts_with("example_http_requests_total"))
    {
        println!("  {line}");
    }
    Ok(())
}
