//! Serving the proxy on a TCP listener: HTTP/1.1 and HTTP/2, upgrades, graceful shutdown.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tidewell_core::correlation::{CorrelationFuture, CorrelationLayer, CorrelationService};
use tokio::net::TcpListener;
use tower_layer::Layer as _;
use tower_service::Service as _;

use crate::service::Proxy;

/// Largest request head (request line and headers) accepted; over it, 431. (More than 100 header
/// fields is also 431: hyper's default, kept because setting it explicitly costs a zeroed array
/// per request.)
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `proxy` on `listener` (HTTP/1.1 and HTTP/2, with upgrades), behind the correlation
/// layer (request id kept or made, echoed in `x-correlation-id`), until `shutdown` resolves; then
/// stops accepting, closes the upgraded connections (WebSocket tunnels, through
/// [`Proxy::close_tunnels`]) and waits up to `drain` for in-flight requests and for the tunnels'
/// tasks to end.
///
/// ```no_run
/// use tidewell_proxy::{Proxy, ProxyConfig, Route, serve};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ProxyConfig::new().route(Route::new("/", &["http://127.0.0.1:3000"])?);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// serve(listener, Proxy::new(config)?, tokio::signal::ctrl_c(), std::time::Duration::from_secs(10)).await;
/// # Ok(()) }
/// ```
pub async fn serve<F, T>(listener: TcpListener, proxy: Proxy, shutdown: F, drain: Duration)
where
    F: Future<Output = T>,
{
    let graceful = GracefulShutdown::new();
    let builder = http_builder(proxy.header_read_timeout());
    // The connections' tasks: owned here, aborted if they outlast the drain.
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.as_mut() => break,
        };
        // Forget the connections that have ended, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        // ok to ignore: a socket option is an optimisation
        let _ = stream.set_nodelay(true);
        let svc = CorrelationLayer.layer(proxy.for_client(addr).behind_correlation_layer());
        // Closed politely: an early answer (a 413 while the client still sends) is not lost to
        // a reset (RFC 9112 9.6).
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(tidewell_core::LingeringClose::new(stream)),
            ConnectionService {
                spare: svc.clone(),
                svc: RefCell::new(svc),
            },
        );
        let conn = graceful.watch(conn.into_owned());
        connections.spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    finish(graceful, connections, &proxy, drain).await;
}

/// hyper's server for both protocols, with the header-read timeout and the head size limit.
fn http_builder(head_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEAD_BYTES)
        .header_read_timeout(head_timeout)
        .timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Shutdown once accepting has stopped: served connections finish their in-flight requests,
/// and upgraded ones are closed at once (the proxy cannot end their protocols gracefully and they
/// have no in-flight request to wait for, so waiting would only hold the shutdown for the whole
/// `drain` while any WebSocket is open); both within `drain`. Connections still open then are
/// aborted.
async fn finish(
    graceful: GracefulShutdown,
    mut connections: tokio::task::JoinSet<()>,
    proxy: &Proxy,
    drain: Duration,
) {
    let drained = async {
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("proxy drained"),
            () = tokio::time::sleep(drain) => tracing::warn!(
                ?drain,
                open = connections.len(),
                "proxy drain timed out; closing the rest"
            ),
        }
        connections.shutdown().await;
    };
    let tunnels = async {
        let open = proxy.close_tunnels(drain).await;
        if open > 0 {
            tracing::warn!(
                open,
                ?drain,
                "upgraded connections still open after the drain"
            );
        }
    };
    tokio::join!(drained, tunnels);
}

/// One client connection's service, as hyper calls it: by shared reference, from the
/// connection's own task, one call at a time. hyper-util's `TowerToHyperService` would clone the
/// handle for every request instead, paying its reference counts and throwing away what it learnt
/// about the connection (its parsed `Host`).
struct ConnectionService {
    svc: RefCell<CorrelationService<Proxy>>,
    /// For a call made while another is under way, which hyper never does: a copy to clone.
    spare: CorrelationService<Proxy>,
}

type ProxyRequest = http::Request<hyper::body::Incoming>;

impl hyper::service::Service<ProxyRequest> for ConnectionService {
    type Response = http::Response<crate::ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = CorrelationFuture<<Proxy as tower_service::Service<ProxyRequest>>::Future>;

    fn call(&self, req: ProxyRequest) -> Self::Future {
        // `Proxy` and the correlation layer are always ready (`poll_ready` is `Ready` at once), so
        // no readiness is awaited. hyper makes each call from the connection's task and the call
        // returns before the next, so the borrow is always free.
        match self.svc.try_borrow_mut() {
            Ok(mut svc) => svc.call(req),
            Err(_) => self.spare.clone().call(req),
        }
    }
}
