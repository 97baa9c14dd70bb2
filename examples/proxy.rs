//! The reverse proxy driven by a TOML file, with a demo upstream so it runs on its own.
//!
//! `cargo run --example proxy` serves `examples/proxy.toml` on 127.0.0.1:8080 (set
//! `TIDEWELL_PROXY_CONFIG` for another file, `TIDEWELL_PROXY_LISTEN` for another address) and
//! starts a small upstream on 127.0.0.1:3001 that answers with the headers it received. Try:
//!
//! ```text
//! curl -i localhost:8080/api/users/7          # rewritten to /users/7, X-Forwarded-* added
//! curl -i localhost:8080/anything -H 'x-request-id: demo-1'
//! ```
//!
//! Ctrl-C drains in-flight requests and stops.
#![allow(
    clippy::print_stdout,
    reason = "an example prints for a person to read"
)]

use std::convert::Infallible;
use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use tidewell::core::cli::{Cli, Var};
use tidewell::proxy::{Proxy, ProxyConfig, serve};

fn main() -> ExitCode {
    let cli = Cli::new(
        "proxy",
        env!("CARGO_PKG_VERSION"),
        "The reverse proxy driven by a TOML file, with a demo upstream on 127.0.0.1:3001.",
    )
    .vars(&[
        Var::new(
            "TIDEWELL_PROXY_CONFIG",
            "examples/proxy.toml",
            "the routes (TOML)",
        ),
        Var::new(
            "TIDEWELL_PROXY_LISTEN",
            "127.0.0.1:8080",
            "where the proxy listens",
        ),
    ]);
    if let Some(done) = cli.handle_args() {
        return done;
    }
    cli.report(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
    let config = match std::env::var("TIDEWELL_PROXY_CONFIG") {
        Ok(_) => ProxyConfig::from_env()?,
        Err(_) => ProxyConfig::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml"))?,
    };
    demo_upstream("127.0.0.1:3001").await?;
    let listen = std::env::var("TIDEWELL_PROXY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "proxy on http://{listen} with {} routes; Ctrl-C to stop",
        config.routes.len()
    );
    serve(
        listener,
        Proxy::new(config)?,
        tokio::signal::ctrl_c(),
        Duration::from_secs(10),
    )
    .await;
    println!("drained; bye");
    Ok(())
}

/// Answers every request with its method, path and headers, as text.
async fn demo_upstream(addr: &str) -> Result<(), Box<dyn Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let mut text = format!("{} {}\n", req.method(), req.uri());
                        for (k, v) in req.headers() {
                            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                        }
                        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(text),
                        )))
                    },
                );
                // ok to ignore: a client that goes away ends its connection
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}
