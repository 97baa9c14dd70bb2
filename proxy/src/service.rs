//! The proxy as a `tower::Service`: each call prepares the request ([`request`](crate::request))
//! and forwards it ([`forward`](crate::forward)); this module holds the handle, [`Proxy`], and what
//! a handle knows about its connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;

use crate::Error;
use crate::body::{BoxError, ProxyBody};
use crate::config::ProxyConfig;
use crate::forward::forward;
use crate::headers::Peer;
use crate::request::{HostCache, prepare};
use crate::state::ProxyState;

/// The reverse proxy, as a `tower::Service` (cheap to clone: state is shared).
///
/// Every failure becomes a response: 400 (bad `Host`), 404 (no route), 413 (body over the route's
/// limit, even mid-stream), 429 (rate limit, with `Retry-After`), 502 (no upstream reachable or a
/// broken upstream response), 504 (no response head within the route's timeout); each with a JSON
/// body `{"error": {"code", "message", "request_id"}}` (`tidewell_core::http::error_body`).
#[derive(Clone)]
pub struct Proxy {
    state: Arc<ProxyState>,
    /// The client of this handle's connection ([`Proxy::for_client`]); else the request's
    /// [`ClientAddr`](crate::ClientAddr) extension names it.
    peer: Option<Peer>,
    /// The last `Host` this handle saw, parsed.
    host_cache: HostCache,
    /// Whether a [`CorrelationLayer`](tidewell_core::correlation::CorrelationLayer) in front of this
    /// handle has already left a valid id in `x-correlation-id` ([`serve`](crate::serve)'s
    /// handles): then it is taken as it is, not searched for and checked a second time.
    behind_correlation_layer: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("routes", &self.state.route_count())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Builds the proxy (and a connection pool per upstream).
    pub fn new(config: ProxyConfig) -> Result<Self, Error> {
        Ok(Self {
            state: Arc::new(ProxyState::new(config)?),
            peer: None,
            host_cache: None,
            behind_correlation_layer: false,
        })
    }

    /// A handle for one client connection: its requests come from `client` (for
    /// `X-Forwarded-For`, `X-Real-IP` and rate limits) without a
    /// [`ClientAddr`](crate::ClientAddr) extension per request, and the address is formatted
    /// once, not per request. [`serve`](crate::serve) does this for each connection it accepts.
    ///
    /// ```
    /// # fn main() -> Result<(), tidewell_proxy::Error> {
    /// use tidewell_proxy::{Proxy, ProxyConfig, Route};
    /// let proxy = Proxy::new(ProxyConfig::new().route(Route::new("/", &["http://127.0.0.1:8081"])?))?;
    /// let for_one_connection = proxy.for_client(([192, 0, 2, 7], 50000).into());
    /// # drop(for_one_connection);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn for_client(&self, client: SocketAddr) -> Self {
        Self {
            state: Arc::clone(&self.state),
            peer: Some(Peer::new(client)),
            host_cache: None,
            behind_correlation_layer: self.behind_correlation_layer,
        }
    }

    /// Keeps the routes' rate limits in Redis from now on, shared by every proxy attached to the
    /// same Redis and prefix (see [`SharedLimits`](crate::SharedLimits)): a client that spreads
    /// its requests over several nodes gets each route's limit once. Fails if limits were
    /// shared already.
    #[cfg(feature = "redis")]
    pub fn share_limits(&self, limits: crate::SharedLimits) -> Result<(), Error> {
        if self.state.share_limits(limits) {
            Ok(())
        } else {
            Err(Error::Config(
                "this proxy's rate limits are shared already".into(),
            ))
        }
    }

    /// Each route's upstreams as they are now: requests in flight, pooled idle connections,
    /// ejection, connections opened and failed. Cheap (a few atomic reads and one short lock
    /// per upstream): meant for a metrics scrape.
    ///
    /// ```
    /// # fn main() -> Result<(), tidewell_proxy::Error> {
    /// use tidewell_proxy::{Proxy, ProxyConfig, Route};
    /// let proxy = Proxy::new(ProxyConfig::new().route(Route::new("/api", &["http://127.0.0.1:8081"])?))?;
    /// let stats = proxy.upstream_stats();
    /// assert_eq!((stats[0].route.as_str(), stats[0].upstream.as_str()), ("/api", "127.0.0.1:8081"));
    /// assert_eq!((stats[0].in_flight, stats[0].connections_opened), (0, 0));
    /// # Ok(()) }
    /// ```
    pub fn upstream_stats(&self) -> Vec<crate::UpstreamStats> {
        crate::stats::upstream_stats(&self.state)
    }

    /// How long a request head may take ([`ProxyConfig::header_read_timeout`]).
    pub(crate) fn header_read_timeout(&self) -> Duration {
        self.state.header_read_timeout()
    }

    /// This handle, told that a `CorrelationLayer` runs in front of it (for [`serve`](crate::serve)).
    pub(crate) fn behind_correlation_layer(mut self) -> Self {
        self.behind_correlation_layer = true;
        self
    }

    /// Closes every upgraded connection (WebSocket or another protocol switched to after a
    /// `101`) this proxy has open, and any it opens from now on, then waits up to `grace` for
    /// their tasks to end. Answers how many were still running when `grace` ran out (0: all
    /// ended). [`serve`](crate::serve) calls it when it shuts down; call it yourself when another
    /// server (axum) serves the proxy, once that server starts its graceful shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_proxy::Error> {
    /// use std::time::Duration;
    /// use tidewell_proxy::{Proxy, ProxyConfig, Route};
    /// let proxy = Proxy::new(ProxyConfig::new().route(Route::new("/", &["http://127.0.0.1:8081"])?))?;
    /// // ... served by another server, until its shutdown signal; then:
    /// let still_open = proxy.close_tunnels(Duration::from_secs(5)).await;
    /// assert_eq!(still_open, 0);
    /// # Ok(()) }
    /// ```
    pub async fn close_tunnels(&self, grace: Duration) -> usize {
        self.state.tunnels().close(grace).await
    }
}

/// The 429 when the route's limit, kept in Redis, refuses the client; while Redis does not
/// answer, the node's own limiter decides.
#[cfg(feature = "redis")]
async fn shared_limit_refuses(
    state: &ProxyState,
    route: usize,
    ip: Option<std::net::IpAddr>,
    request_id: &http::HeaderValue,
) -> Option<Response<ProxyBody>> {
    let shared = state.shared_limits()?;
    let ip = ip?;
    let rs = state.route(route)?;
    let route = rs.route();
    let limit = route.rate_limit?;
    let key = format!("{}{}", route.host.as_deref().unwrap_or(""), route.prefix);
    let wait = match shared.check(&key, ip, limit).await {
        Ok(wait) => wait,
        Err(error) => {
            shared.warn_fallback(&error);
            rs.rate_limited(ip)
        }
    };
    wait.map(|w| crate::request::too_many_requests(w, request_id))
}

impl<B> tower_service::Service<Request<B>> for Proxy
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let layer_id = if self.behind_correlation_layer {
            req.headers()
                .get(tidewell_core::http::CORRELATION_HEADER)
                .cloned()
        } else {
            None
        };
        match prepare(
            &self.state,
            req,
            self.peer.as_ref(),
            &mut self.host_cache,
            layer_id,
        ) {
            Ok(prepared) => {
                let state = Arc::clone(&self.state);
                #[cfg(feature = "redis")]
                if state.shared_limits().is_some() {
                    let (route, ip) = (prepared.route, prepared.client_ip);
                    let request_id = prepared.request_id.clone();
                    return Box::pin(async move {
                        if let Some(refused) =
                            shared_limit_refuses(&state, route, ip, &request_id).await
                        {
                            return Ok(refused);
                        }
                        Ok(forward(state, prepared).await)
                    });
                }
                Box::pin(futures_util::FutureExt::map(forward(state, prepared), Ok))
            }
            Err(response) => Box::pin(std::future::ready(Ok(response))),
        }
    }
}
