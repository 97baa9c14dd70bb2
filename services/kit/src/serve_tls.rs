//! Serving a router over HTTPS: the TLS handshake in each connection's own task, HTTP/1.1 and
//! HTTP/2 by ALPN, upgrades (`wss://`), `Strict-Transport-Security`, the client's address for
//! `ConnectInfo<PeerAddr>`, and a graceful stop.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tidewell_core::LingeringClose;
use tidewell_core::tls::ServerTls;
use tokio::net::TcpListener;

use crate::serve::PeerAddr;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may take to finish once `shutdown` resolved.
const DRAIN: Duration = Duration::from_secs(10);

/// [`serve`](crate::serve) over HTTPS with `tls` (loaded now: a bad certificate or key is an
/// error before anything is served; reloaded when its files change or on SIGHUP). `router` is
/// served as given: apply [`layers`](crate::layers) first, as `serve` does. The client's address
/// is in `ConnectInfo<PeerAddr>`, as with `into_make_service_with_connect_info`.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: &ServerTls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.acceptor().map_err(std::io::Error::other)?;
    let hsts = tls
        .hsts
        .as_deref()
        .map(http::HeaderValue::from_str)
        .transpose()
        .map_err(|_| {
            std::io::Error::other("Strict-Transport-Security is not a valid header value")
        })?;
    let router = match hsts {
        Some(value) => router.layer(axum::middleware::map_response(
            move |mut res: axum::response::Response| {
                let value = value.clone();
                async move {
                    res.headers_mut()
                        .entry(http::header::STRICT_TRANSPORT_SECURITY)
                        .or_insert(value);
                    res
                }
            },
        )),
        None => router,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = tidewell_core::accept(&listener) => accepted,
            () = shutdown.as_mut() => break,
        };
        while connections.try_join_next().is_some() {}
        let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
        let svc = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(PeerAddr(addr)));
                req
            })
            .service(router.clone());
        connections.spawn(async move {
            let stream = LingeringClose::new(stream);
            let Some(stream) =
                tidewell_core::tls::handshake(&acceptor, stream, HANDSHAKE_TIMEOUT, addr).await
            else {
                return;
            };
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            if let Err(error) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!(open = connections.len(), "HTTPS drain timed out; closing the rest"),
    }
    connections.shutdown().await;
    Ok(())
}
