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
//! With `TIDEWELL_PROXY_TLS_CERT_FILE` and `TIDEWELL_PROXY_TLS_KEY_FILE` it serves HTTPS instead
//! (TLS 1.2 and 1.3, HTTP/2 by ALPN, the certificate reloaded when the files change or on
//! SIGHUP), and with `TIDEWELL_PROXY_REDIRECT_LISTEN` also a plain-HTTP port that only redirects
//! to it.
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
use tidewell::core::config::Env;
use tidewell::core::tls::ServerTls;
use tidewell::proxy::{Proxy, ProxyConfig, serve, serve_redirect, serve_tls};

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
        Var::new(
            "TIDEWELL_PROXY_TLS_CERT_FILE",
            "",
            "PEM certificate chain to serve HTTPS with (unset: plain HTTP)",
        ),
        Var::new(
            "TIDEWELL_PROXY_TLS_KEY_FILE",
            "",
            "PEM private key of the served certificate",
        ),
        Var::new(
            "TIDEWELL_PROXY_HSTS",
            "max-age=31536000",
            "Strict-Transport-Security on HTTPS answers (off: none)",
        ),
        Var::new(
            "TIDEWELL_PROXY_REDIRECT_LISTEN",
            "",
            "a plain-HTTP address that only redirects to HTTPS (with TLS)",
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
    let tls = ServerTls::from_source(&Env::process(), "TIDEWELL_PROXY")?;
    let routes = config.routes.len();
    let proxy = Proxy::new(config)?;
    let Some(tls) = tls else {
        println!("proxy on http://{listen} with {routes} routes; Ctrl-C to stop");
        serve(
            listener,
            proxy,
            tokio::signal::ctrl_c(),
            Duration::from_secs(10),
        )
        .await;
        println!("drained; bye");
        return Ok(());
    };
    if let Ok(redirect) = std::env::var("TIDEWELL_PROXY_REDIRECT_LISTEN") {
        let plain = tokio::net::TcpListener::bind(&redirect).await?;
        let port = listener.local_addr()?.port();
        println!("redirecting http://{redirect} to https://…:{port}");
        tokio::spawn(serve_redirect(plain, port, std::future::pending::<()>()));
    }
    println!("proxy on https://{listen} with {routes} routes; Ctrl-C to stop");
    serve_tls(
        listener,
        proxy,
        &tls,
        tokio::signal::ctrl_c(),
        Duration::from_secs(10),
    )
    .await?;
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
