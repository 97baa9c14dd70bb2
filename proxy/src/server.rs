//! Serving the proxy on a TCP listener: HTTP/1.1 and HTTP/2, upgrades, graceful shutdown.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tidewell_core::correlation::{CorrelationFuture, CorrelationLayer, CorrelationService};
use tidewell_core::tls::ServerTls;
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
    run(listener, proxy, None, shutdown, drain).await;
}

/// [`serve`] over HTTPS: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, the certificate and key of
/// `tls` (loaded now: an unreadable or mismatched file is an error before anything is served, and
/// reloaded without a restart when the files change or on SIGHUP), and `Strict-Transport-Security`
/// on every answer when `tls.hsts` is set. A client whose handshake does not finish within the
/// header-read timeout is dropped. Upgrades (WebSocket, so `wss://`) go through the same
/// listener.
///
/// ```no_run
/// use tidewell_core::tls::ServerTls;
/// use tidewell_proxy::{Proxy, ProxyConfig, Route, serve_tls};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ProxyConfig::new().route(Route::new("/", &["http://127.0.0.1:3000"])?);
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
/// let tls = ServerTls::new("/etc/tidewell/cert.pem", "/etc/tidewell/key.pem");
/// serve_tls(listener, Proxy::new(config)?, &tls, tokio::signal::ctrl_c(), std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
pub async fn serve_tls<F, T>(
    listener: TcpListener,
    proxy: Proxy,
    tls: &ServerTls,
    shutdown: F,
    drain: Duration,
) -> Result<(), crate::Error>
where
    F: Future<Output = T>,
{
    let acceptor = tls
        .acceptor()
        .map_err(|e| crate::Error::Config(e.to_string()))?;
    let hsts = match &tls.hsts {
        Some(v) => Some(HeaderValue::from_str(v).map_err(|_| {
            crate::Error::Config(format!(
                "Strict-Transport-Security value {v:?} is not a valid header value"
            ))
        })?),
        None => None,
    };
    let tls = Tls { acceptor, hsts };
    run(listener, proxy, Some(tls), shutdown, drain).await;
    Ok(())
}

/// What an HTTPS listener adds: the handshake, and the HSTS header.
#[derive(Clone)]
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    hsts: Option<HeaderValue>,
}

// Long: the accept loop, plain and TLS alike (a TLS connection's handshake runs in its own task,
// so a slow client never holds up the accepts), then the drain.
async fn run<F, T>(
    listener: TcpListener,
    proxy: Proxy,
    tls: Option<Tls>,
    shutdown: F,
    drain: Duration,
) where
    F: Future<Output = T>,
{
    let graceful = GracefulShutdown::new();
    let head_timeout = proxy.header_read_timeout();
    let builder = http_builder(head_timeout);
    // The connections' tasks: owned here, aborted if they outlast the drain.
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = tidewell_core::accept(&listener) => accepted,
            _ = shutdown.as_mut() => break,
        };
        // Forget the connections that have ended, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        let svc = CorrelationLayer.layer(proxy.for_client(addr).behind_correlation_layer());
        // Closed politely: an early answer (a 413 while the client still sends) is not lost to
        // a reset (RFC 9112 9.6).
        let stream = tidewell_core::LingeringClose::new(stream);
        let Some(tls) = &tls else {
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                ConnectionService::new(svc, None),
            );
            let conn = graceful.watch(conn.into_owned());
            connections.spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "client connection ended with an error");
                }
            });
            continue;
        };
        let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
        connections.spawn(async move {
            let Some(stream) =
                tidewell_core::tls::handshake(&tls.acceptor, stream, head_timeout, addr).await
            else {
                return;
            };
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                ConnectionService::new(svc, tls.hsts),
            );
            if let Err(error) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%error, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    finish(graceful, connections, &proxy, drain).await;
}

/// Answers every request on `listener` with `308 Permanent Redirect` to the same host and path on
/// `https://` (on `https_port`, left out when it is 443), until `shutdown`: the plain-HTTP port of
/// a server whose real listener is [`serve_tls`]. A request without a usable `Host` gets 400.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:80").await?;
/// tidewell_proxy::serve_redirect(listener, 443, tokio::signal::ctrl_c()).await;
/// # Ok(()) }
/// ```
pub async fn serve_redirect<F, T>(listener: TcpListener, https_port: u16, shutdown: F)
where
    F: Future<Output = T>,
{
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(MAX_HEAD_BYTES);
    loop {
        let (stream, _) = tokio::select! {
            accepted = tidewell_core::accept(&listener) => accepted,
            _ = shutdown.as_mut() => break,
        };
        while connections.try_join_next().is_some() {}
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                std::future::ready(Ok::<_, std::convert::Infallible>(redirect(
                    &req, https_port,
                )))
            }),
        );
        connections.spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "redirect connection ended with an error");
            }
        });
    }
    // A redirect is answered at once: nothing in flight is worth waiting for.
    connections.shutdown().await;
}

/// The redirect for `req`: 308 to `https://host[:port]/path?query`, or 400 without a usable host.
fn redirect<B>(
    req: &http::Request<B>,
    https_port: u16,
) -> http::Response<http_body_util::Empty<bytes::Bytes>> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(strip_port)
        .filter(|h| is_host(h));
    let mut response = http::Response::new(http_body_util::Empty::new());
    let Some(host) = host else {
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
        return response;
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            *response.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
            response.headers_mut().insert(http::header::LOCATION, value);
        }
        Err(_) => *response.status_mut() = http::StatusCode::BAD_REQUEST,
    }
    response
}

/// `host` of `host:port` (and `[v6]` of `[v6]:port`).
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// A DNS name, an IPv4 address or a bracketed IPv6 address: nothing that could bend the
/// `Location` into another URL.
fn is_host(h: &str) -> bool {
    if let Some(v6) = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
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
    /// `Strict-Transport-Security`, on an HTTPS connection that sends it.
    hsts: Option<HeaderValue>,
}

impl ConnectionService {
    fn new(svc: CorrelationService<Proxy>, hsts: Option<HeaderValue>) -> Self {
        Self {
            spare: svc.clone(),
            svc: RefCell::new(svc),
            hsts,
        }
    }
}

type ProxyRequest = http::Request<hyper::body::Incoming>;

impl hyper::service::Service<ProxyRequest> for ConnectionService {
    type Response = http::Response<crate::ProxyBody>;
    type Error = std::convert::Infallible;
    type Future =
        WithHsts<CorrelationFuture<<Proxy as tower_service::Service<ProxyRequest>>::Future>>;

    fn call(&self, req: ProxyRequest) -> Self::Future {
        // `Proxy` and the correlation layer are always ready (`poll_ready` is `Ready` at once), so
        // no readiness is awaited. hyper makes each call from the connection's task and the call
        // returns before the next, so the borrow is always free.
        let inner = match self.svc.try_borrow_mut() {
            Ok(mut svc) => svc.call(req),
            Err(_) => self.spare.clone().call(req),
        };
        WithHsts {
            inner,
            hsts: self.hsts.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The proxy's answer, with `Strict-Transport-Security` added on HTTPS (unless the upstream
    /// set its own).
    struct WithHsts<F> {
        #[pin]
        inner: F,
        hsts: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for WithHsts<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let mut out = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(hsts)) = (&mut out, this.hsts.take()) {
            response
                .headers_mut()
                .entry(http::header::STRICT_TRANSPORT_SECURITY)
                .or_insert(hsts);
        }
        std::task::Poll::Ready(out)
    }
}
