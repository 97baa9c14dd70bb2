//! Serving a router.

use std::future::Future;

use axum::Router;
use tidewell_core::LingeringClose;
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

/// `listener` as the services serve it: TCP_NODELAY on every accepted connection, so a small
/// response or WebSocket frame goes out at once instead of waiting for the previous segment's
/// ACK (axum leaves Nagle on), and each connection closed politely
/// ([`LingeringClose`]: an early 413 reaches a client that is still sending its body).
pub fn nodelay(listener: TcpListener) -> ServiceListener {
    ServiceListener(listener)
}

/// A listener for [`axum::serve()`] (see [`nodelay`]).
#[derive(Debug)]
pub struct ServiceListener(TcpListener);

impl axum::serve::Listener for ServiceListener {
    type Io = LingeringClose<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = tidewell_core::accept(&self.0).await;
        (LingeringClose::new(stream), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The client's address of a connection accepted by a [`ServiceListener`], for
/// `into_make_service_with_connect_info::<PeerAddr>()` and the `ConnectInfo<PeerAddr>` extractor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ServiceListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, ServiceListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// `router` with what every service has: correlation ids (`x-correlation-id` in and out) and
/// the request id of [`ApiError`](crate::ApiError)s. [`serve`] applies it.
pub fn layers(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(crate::request_id))
        .layer(axum::middleware::map_response(close_after_413))
        .layer(CorrelationLayer)
}

/// At most `max` requests of `router` at once: one more is answered at once with 503, a
/// `Retry-After: 1` header and the error body `overloaded`, rather than waiting in a queue
/// that grows with the load (a client retries later; a proxy in front passes the 503 on).
///
/// ```
/// # async fn demo() {
/// use axum::{Router, routing::get};
/// let app = tidewell_service_kit::shed_load(Router::new().route("/", get(|| async { "hi" })), 256);
/// # let _ = app;
/// # }
/// ```
pub fn shed_load(router: Router, max: usize) -> Router {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let permit = std::sync::Arc::clone(&permits).try_acquire_owned();
            async move {
                let Ok(_permit) = permit else {
                    return overloaded();
                };
                next.run(req).await
            }
        },
    ))
}

fn overloaded() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut res = crate::ApiError::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the service is at its limit of requests in flight; retry after a second",
    )
    .into_response();
    res.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    res
}

/// A 413 is answered before the body was read: the connection cannot carry another request, so
/// the answer says it closes (a proxy in front must not send the next request on it).
async fn close_after_413(mut res: axum::response::Response) -> axum::response::Response {
    if res.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    res
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
