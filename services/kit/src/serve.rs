//! Serving a router.

use std::future::Future;

use axum::Router;
use tidewell_observability::CorrelationLayer;
use tokio::net::TcpListener;

/// Serves `router` on `listener` with correlation ids (`x-correlation-id` in and out, the
/// `request_id` of errors) until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(nodelay(listener), layers(router))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A listening socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr}: {source}; stop the program that uses this address, or set {var} to another one"
)]
pub struct ListenError {
    addr: std::net::SocketAddr,
    var: &'static str,
    #[source]
    source: std::io::Error,
}

/// Binds `addr`, which the variable `var` configures; the error says so.
pub async fn listen(
    addr: std::net::SocketAddr,
    var: &'static str,
) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, var, source })
}

/// `listener` with TCP_NODELAY on every accepted connection, so a small response or WebSocket
/// frame goes out at once instead of waiting for the previous segment's ACK (axum leaves Nagle
/// on).
pub fn nodelay(
    listener: TcpListener,
) -> axum::serve::TapIo<TcpListener, impl FnMut(&mut tokio::net::TcpStream) + Send + 'static> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|stream| {
        // ok to ignore: without it the connection still works, only with Nagle's delays
        let _ = stream.set_nodelay(true);
    })
}

/// `router` with what every service has: correlation ids (`x-correlation-id` in and out) and
/// the request id of [`ApiError`](crate::ApiError)s. [`serve`] applies it.
pub fn layers(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(crate::request_id))
        .layer(CorrelationLayer)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // ok to ignore: without a signal handler the service runs until killed
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
