//! The proxy as a `tower::Service`: route, limit, rewrite headers, forward, stream back.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::Error;
use crate::body::{BoxError, Limited, ProxyBody, full};
use crate::config::{HostHeader, ProxyConfig, Route};
use crate::headers::{self, Peer};
use crate::limit::{Limiter, RetryBudget};
use crate::pool::SendError;
use crate::response_timer::TimerSlot;
use crate::upstream::Upstreams;

/// Share of a route's requests (in thousandths) that may be retries, and the retries a quiet
/// route saves up.
const RETRY_RATIO: u64 = 200;
const RETRY_CAP: u64 = 10;

/// The request header the request id is forwarded upstream in.
use tidewell_core::http::REQUEST_ID_HEADER;

/// The client's address, for a proxy served by another server (axum): insert it in the request
/// extensions from the connection info so that `X-Forwarded-For`, `X-Real-IP` and rate limits see
/// the client. (With a handle per connection, [`Proxy::for_client`], none is needed;
/// [`serve`](crate::serve) uses that.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The reverse proxy, as a `tower::Service` (cheap to clone: state is shared).
///
/// Every failure becomes a response: 400 (bad `Host`), 404 (no route), 413 (body over the route's
/// limit, even mid-stream), 429 (rate limit, with `Retry-After`), 502 (no upstream reachable or a
/// broken upstream response), 504 (no response head within the route's timeout); each with a JSON
/// body `{"error", "message", "request_id"}`.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
    /// The client of this handle's connection ([`Proxy::for_client`]); else the request's
    /// [`ClientAddr`] extension names it.
    peer: Option<Peer>,
    /// The last `Host` this handle saw, parsed.
    host_cache: HostCache,
    /// Whether a [`CorrelationLayer`](tidewell_core::correlation::CorrelationLayer) in front of this
    /// handle has already left a valid id in `x-correlation-id` ([`serve`](crate::serve)'s
    /// handles): then it is taken as it is, not searched for and checked a second time.
    behind_correlation_layer: bool,
    /// The connection's reusable 504 timer ([`serve`](crate::serve)'s handles only: a handle
    /// used from several runtimes must not keep a sleep made on one of them).
    timer: Option<Arc<TimerSlot>>,
}

/// The last `Host` value a handle saw and its parsed authority: a connection's requests mostly
/// name one host, and comparing the bytes costs less than parsing (and copying) them again.
type HostCache = Option<(HeaderValue, http::uri::Authority)>;

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("routes", &self.inner.routes.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ProxyConfig,
    routes: Vec<RouteState>,
    /// `Via` values for HTTP/1.0, 1.1 and 2, made once.
    via: [HeaderValue; 3],
    /// Security response headers, made once.
    security: Vec<(HeaderName, HeaderValue)>,
    /// Whether any route matches on the host (else a request's host name is never looked at).
    host_routes: bool,
}

/// A request ready to go upstream, made by [`Inner::prepare`].
struct Prepared {
    /// Index of the matched route in `Inner::routes`.
    route: usize,
    up: Request<ProxyBody>,
    path_and_query: http::uri::PathAndQuery,
    /// Whether the client named a host (`Host` or the request target's authority).
    has_host: bool,
    /// The request id, as forwarded in `x-request-id` and named in error bodies.
    request_id: HeaderValue,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The handle's reusable 504 timer, if it has one.
    timer: Option<Arc<TimerSlot>>,
}

struct RouteState {
    route: Route,
    upstreams: Upstreams,
    limiter: Option<Limiter>,
    budget: RetryBudget,
}

impl Proxy {
    /// Builds the proxy (and a connection pool per upstream).
    pub fn new(config: ProxyConfig) -> Result<Self, Error> {
        config.validate()?;
        let routes = config
            .routes
            .iter()
            .map(|r| RouteState {
                upstreams: Upstreams::new(
                    &r.upstreams,
                    r.balance,
                    r.eject_after,
                    r.eject_for,
                    r.connect_timeout,
                ),
                limiter: r.rate_limit.map(Limiter::new),
                budget: RetryBudget::new(RETRY_RATIO, RETRY_CAP),
                route: r.clone(),
            })
            .collect();
        let via_value = |proto: &str| {
            HeaderValue::from_str(&format!("{proto} {}", config.via_name)).map_err(|_| {
                Error::Config(format!(
                    "via_name {:?} is not a header value",
                    config.via_name
                ))
            })
        };
        let via = [via_value("1.0")?, via_value("1.1")?, via_value("2")?];
        let sec = &config.security_headers;
        let mut security = Vec::new();
        if sec.enabled {
            let value = |name: &str, v: &str| {
                HeaderValue::from_str(v).map_err(|_| {
                    Error::Config(format!(
                        "security header {name} {v:?} is not a header value"
                    ))
                })
            };
            security.push((
                header::X_FRAME_OPTIONS,
                value("frame_options", &sec.frame_options)?,
            ));
            security.push((
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ));
            security.push((
                header::REFERRER_POLICY,
                value("referrer_policy", &sec.referrer_policy)?,
            ));
            if let Some(csp) = &sec.content_security_policy {
                security.push((
                    header::CONTENT_SECURITY_POLICY,
                    value("content_security_policy", csp)?,
                ));
            }
        }
        let host_routes = config.routes.iter().any(|r| r.host.is_some());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                routes,
                via,
                security,
                host_routes,
            }),
            peer: None,
            host_cache: None,
            behind_correlation_layer: false,
            timer: None,
        })
    }

    /// A handle for one client connection: its requests come from `client` (for
    /// `X-Forwarded-For`, `X-Real-IP` and rate limits) without a [`ClientAddr`] extension per
    /// request, and the address is formatted once, not per request. [`serve`](crate::serve)
    /// does this for each connection it accepts.
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
            inner: Arc::clone(&self.inner),
            peer: Some(Peer::new(client)),
            host_cache: None,
            behind_correlation_layer: self.behind_correlation_layer,
            timer: None,
        }
    }

    /// How long a request head may take ([`ProxyConfig::header_read_timeout`]).
    pub(crate) fn header_read_timeout(&self) -> Duration {
        self.inner.config.header_read_timeout
    }

    /// This handle, told that a `CorrelationLayer` runs in front of it (for [`serve`](crate::serve)).
    pub(crate) fn behind_correlation_layer(mut self) -> Self {
        self.behind_correlation_layer = true;
        self
    }

    /// This handle, with one 504 timer reused by its requests (for [`serve`](crate::serve)'s
    /// per-connection handles, whose requests all run on one runtime).
    pub(crate) fn reusing_timer(mut self) -> Self {
        self.timer = Some(Arc::new(TimerSlot::default()));
        self
    }
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
        let inner = Arc::clone(&self.inner);
        let layer_id = if self.behind_correlation_layer {
            req.headers()
                .get(tidewell_core::http::CORRELATION_HEADER)
                .cloned()
        } else {
            None
        };
        match inner.prepare(req, self.peer.as_ref(), &mut self.host_cache, layer_id) {
            Ok(mut prepared) => {
                prepared.timer.clone_from(&self.timer);
                Box::pin(futures_util::FutureExt::map(inner.forward(prepared), Ok))
            }
            Err(response) => Box::pin(std::future::ready(Ok(response))),
        }
    }
}

/// The request id: a valid `x-correlation-id` (as the correlation layer leaves it), else a valid
/// `x-request-id`, else a new one; the client's own header value when it has one (shared, not
/// copied or parsed).
fn request_id_of<B>(req: &Request<B>) -> HeaderValue {
    tidewell_core::correlation::correlation_header(req.headers())
}

/// A request id header value as text (always visible ASCII: checked or made so).
fn id_text(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or_default()
}

/// A JSON error response: `{"error": {"code", "message", "request_id"}}`, the shape the
/// reference services use, so a client reads every error of a gateway the same way.
fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response<ProxyBody> {
    let mut res = Response::new(full(tidewell_core::http::error_body(
        code, message, request_id,
    )));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

/// The request's authority: the request target's when it has one (absolute-form, or HTTP/2's
/// `:authority`; RFC 9112 3.2.2: the received `Host` is then ignored), else the `Host` field.
/// `Err` (a 400) when `Host` is missing on HTTP/1.1, repeated or malformed (userinfo, or a port
/// that is not a number from 0 to 65535), whichever authority wins (RFC 9112 3.2). The flag
/// says whether the authority is the `Host` field's. `cache` holds the connection's last `Host`
/// field that passed these checks, parsed.
fn host_of<B>(
    req: &Request<B>,
    cache: &mut HostCache,
) -> Result<Option<(http::uri::Authority, bool)>, ()> {
    let from_header = req.headers().get_all(header::HOST);
    let mut values = from_header.iter();
    let header_value = values.next();
    if values.next().is_some() {
        return Err(()); // two Host fields: RFC 9112 says 400
    }
    let from_host = match header_value {
        Some(v) => match cache {
            Some((seen, parsed)) if seen == v => Some(parsed.clone()),
            _ => {
                let parsed = http::uri::Authority::try_from(v.as_bytes()).map_err(|_| ())?;
                if !valid_authority(&parsed) {
                    return Err(());
                }
                *cache = Some((v.clone(), parsed.clone()));
                Some(parsed)
            }
        },
        None => None,
    };
    match (req.uri().authority(), from_host) {
        (Some(a), _) if !valid_authority(a) => Err(()),
        (Some(a), _) => Ok(Some((a.clone(), false))),
        (None, Some(h)) => Ok(Some((h, true))),
        (None, None) if req.version() == http::Version::HTTP_11 => Err(()),
        (None, None) => Ok(None),
    }
}

/// RFC 9110 7.6.2: an `OPTIONS` or `TRACE` with `Max-Forwards` goes on with the value less
/// one, or, at zero, is answered here as by the final recipient: `OPTIONS` with a 200 and
/// `Allow`, `TRACE` with a 405 (echoing the request back, which RFC 9110 9.3.8 suggests, would
/// reflect its credentials to scripts; the README's header policy says so).
fn max_forwards<B>(req: &mut Request<B>, request_id: &HeaderValue) -> Option<Response<ProxyBody>> {
    const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
    if !matches!(*req.method(), http::Method::OPTIONS | http::Method::TRACE) {
        return None;
    }
    let left = req
        .headers()
        .get(header::MAX_FORWARDS)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if let Some(less) = left.checked_sub(1) {
        req.headers_mut().insert(header::MAX_FORWARDS, less.into());
        return None;
    }
    let mut res = if req.method() == http::Method::OPTIONS {
        let mut res = Response::new(full(""));
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        res
    } else {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "trace_not_allowed",
            "this proxy does not reflect TRACE requests",
            id_text(request_id),
        )
    };
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
    Some(res)
}

/// An authority a server may accept: no userinfo, and a port, when there is one after a `:`,
/// of digits only and at most 65535 (an empty port is allowed, RFC 3986 3.2.3).
fn valid_authority(a: &http::uri::Authority) -> bool {
    let text = a.as_str();
    if text.contains('@') {
        return false;
    }
    // The host ends at the `]` of an IP literal, else at the last `:`.
    let after_host = match text.rfind(']') {
        Some(end) => text.get(end + 1..).unwrap_or_default(),
        None => text
            .rfind(':')
            .map_or("", |colon| text.get(colon..).unwrap_or_default()),
    };
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some("") => true,
        Some(port) => {
            port.bytes().all(|b| b.is_ascii_digit())
                && port.len() <= 5
                && port.parse::<u32>().is_ok_and(|p| p <= 65_535)
        }
    }
}

impl Inner {
    fn via(&self, version: http::Version) -> HeaderValue {
        let [v10, v11, v2] = &self.via;
        match version {
            http::Version::HTTP_2 => v2.clone(),
            http::Version::HTTP_10 => v10.clone(),
            _ => v11.clone(),
        }
    }

    /// Everything before the first upstream attempt, synchronously: the request id, `Host`,
    /// route, rate limit, declared body size, header rewriting. An early answer comes back as
    /// `Err`. (Kept out of the async part so the per-request future stays small.)
    #[expect(
        clippy::result_large_err,
        reason = "moved once per request; boxing would allocate per request"
    )]
    fn prepare<B>(
        &self,
        mut req: Request<B>,
        conn_peer: Option<&Peer>,
        host_cache: &mut HostCache,
        layer_id: Option<HeaderValue>,
    ) -> Result<Prepared, Response<ProxyBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let request_id = layer_id.unwrap_or_else(|| request_id_of(&req));
        let extension_peer;
        let peer = match conn_peer {
            Some(p) => Some(p),
            None => {
                extension_peer = req.extensions().get::<ClientAddr>().map(|c| Peer::new(c.0));
                extension_peer.as_ref()
            }
        };
        let Ok(host) = host_of(&req, host_cache) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_host",
                "the Host header is missing, repeated or malformed",
                id_text(&request_id),
            ));
        };
        if let Some(answer) = max_forwards(&mut req, &request_id) {
            return Err(answer);
        }
        // Only a route with a host condition reads the name (splitting off the port costs).
        let host_name = if self.host_routes {
            host.as_ref().map(|(a, _)| a.host())
        } else {
            None
        };
        let path = req.uri().path();
        let Some((route_index, rs)) = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.route.matches(req.method(), host_name, path))
        else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "no_route",
                "no route matches this request",
                id_text(&request_id),
            ));
        };
        let route = &rs.route;
        if let (Some(limiter), Some(peer)) = (&rs.limiter, peer)
            && let Err(wait) = limiter.check(peer.ip, Instant::now())
        {
            let mut res = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this client; retry later",
                id_text(&request_id),
            );
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            res.headers_mut()
                .insert(header::RETRY_AFTER, secs.max(1).into());
            return Err(res);
        }
        if req.body().size_hint().lower() > route.max_body {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!(
                    "the request body is over this route's {}-byte limit",
                    route.max_body
                ),
                id_text(&request_id),
            ));
        }

        let upgrade = headers::is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let path_and_query = match (&route.rewrite, parts.uri.path_and_query()) {
            (None, Some(pq)) => pq.clone(),
            _ => {
                let path = route.upstream_path(parts.uri.path());
                let text = match parts.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                match http::uri::PathAndQuery::try_from(text) {
                    Ok(pq) => pq,
                    Err(_) => {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "bad_path",
                            "the rewritten path is not valid",
                            id_text(&request_id),
                        ));
                    }
                }
            }
        };
        // The host as a header value: the client's own `Host` field (shared, not copied), or
        // made from the request target's authority.
        let host_value = match &host {
            Some((_, true)) => parts.headers.get(header::HOST).cloned(),
            Some((a, false)) => HeaderValue::from_str(a.as_str()).ok(),
            None => None,
        };
        let mut head = parts.headers;
        headers::strip_hop_by_hop(&mut head, upgrade);
        head.append(header::VIA, self.via(parts.version));
        headers::set_forwarded(
            &mut head,
            peer,
            host_value.as_ref(),
            &self.config.trusted_proxies,
        );
        head.insert(REQUEST_ID_HEADER, request_id.clone());
        if let (Some((_, false)), Some(v)) = (&host, &host_value) {
            head.insert(header::HOST, v.clone());
        }

        rs.budget.earn();
        // An empty body (a GET's) needs no limit: the zero-sized empty body allocates nothing.
        let body = if body.is_end_stream() {
            crate::body::empty()
        } else {
            Limited::new(body, route.max_body).boxed_unsync()
        };
        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.headers_mut() = head;
        Ok(Prepared {
            route: route_index,
            up,
            path_and_query,
            has_host: host.is_some(),
            request_id,
            client_upgrade,
            timer: None,
        })
    }

    /// Sends the prepared request upstream (retrying only when nothing of it was sent) and
    /// turns the answer into the client's response.
    async fn forward(self: Arc<Self>, mut p: Prepared) -> Response<ProxyBody> {
        let request_id = id_text(&p.request_id);
        let Some(rs) = self.routes.get(p.route) else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the route went away",
                request_id,
            );
        };
        let route = &rs.route;
        // Upstreams tried and failed (filled only on a retry: nothing allocated per request).
        let mut tried = Vec::new();
        let attempts = (1 + route.retries as usize).min(rs.upstreams.len());
        let mut last_error: Option<String> = None;
        for attempt in 1..=attempts {
            let Some((index, in_flight)) = rs.upstreams.pick(&tried) else {
                break;
            };
            let upstream = in_flight.0;
            let Ok(uri) = upstream.uri_for(&p.path_and_query) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_path",
                    "the request path cannot be forwarded",
                    request_id,
                );
            };
            *p.up.uri_mut() = uri;
            if (route.host_header == HostHeader::Upstream || !p.has_host)
                && let Ok(v) = HeaderValue::from_str(upstream.authority())
            {
                p.up.headers_mut().insert(header::HOST, v);
            }
            // Boxed: the exchange's future is most of a request's state, and two small allocations
            // are cheaper than one large one (glibc's per-thread cache stops at 1 KiB). The 504
            // timer is the connection's reused sleep where `serve` gave the handle one.
            let exchange = std::mem::replace(&mut p.up, Request::new(crate::body::empty()));
            let sent = match &p.timer {
                Some(timer) => {
                    timer
                        .run(route.timeout, Box::pin(upstream.pool.send(exchange)))
                        .await
                }
                None => Box::pin(tokio::time::timeout(
                    route.timeout,
                    upstream.pool.send(exchange),
                ))
                .await
                .ok(),
            };
            match sent {
                None => {
                    tracing::warn!(upstream = %upstream.base, request_id, "upstream response timed out");
                    return error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        &format!("the upstream did not answer within {:?}", route.timeout),
                        request_id,
                    );
                }
                Some(Ok(res)) => {
                    rs.upstreams.succeeded(upstream);
                    return self.respond(res, p.client_upgrade.take(), route, &p.request_id);
                }
                Some(Err(SendError::NotSent {
                    reason,
                    connect,
                    request,
                })) => {
                    // Nothing of the request left this proxy: safe to try another upstream,
                    // streamed body included.
                    if connect {
                        rs.upstreams.connect_failed(upstream);
                    }
                    tracing::warn!(upstream = %upstream.base, request_id, %reason, "upstream not reached");
                    tried.push(index);
                    p.up = *request;
                    if attempt >= attempts {
                        last_error = Some(reason);
                        break;
                    }
                    if !rs.budget.spend() {
                        last_error = Some(format!("{reason} (retry budget spent)"));
                        break;
                    }
                    last_error = Some(reason);
                }
                Some(Err(SendError::Failed(e))) => {
                    if crate::body::is_too_large(&e) {
                        return error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body_too_large",
                            &format!(
                                "the request body is over this route's {}-byte limit",
                                route.max_body
                            ),
                            request_id,
                        );
                    }
                    // Part of the request may have reached the upstream: never sent twice.
                    let message = e.to_string();
                    tracing::warn!(upstream = %upstream.base, request_id, error = %message, "upstream request failed");
                    last_error = Some(message);
                    break;
                }
            }
        }
        error(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            &format!(
                "no upstream answered: {}",
                shorten(
                    last_error
                        .as_deref()
                        .unwrap_or("no upstream could be tried")
                )
            ),
            request_id,
        )
    }

    fn respond(
        &self,
        mut res: Response<ProxyBody>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        route: &Route,
        request_id: &HeaderValue,
    ) -> Response<ProxyBody> {
        let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            match client_upgrade {
                Some(client) => {
                    let upstream = hyper::upgrade::on(&mut res);
                    let idle = route.upgrade_idle_timeout;
                    tokio::spawn(tunnel(client, upstream, idle));
                }
                None => {
                    let id = id_text(request_id);
                    return error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        "the upstream switched protocols without being asked to",
                        id,
                    );
                }
            }
        }
        let (mut parts, body) = res.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, switching);
        parts.headers.append(header::VIA, self.via(parts.version));
        if !switching {
            // One hashed lookup each (`entry`), not a lookup and then an insert.
            for (name, value) in &self.security {
                parts
                    .headers
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        parts
            .headers
            .entry(REQUEST_ID_HEADER)
            .or_insert_with(|| request_id.clone());
        parts.version = http::Version::default();
        Response::from_parts(parts, body)
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Copies bytes both ways between the upgraded client and upstream connections until either
/// side closes or nothing moves for `idle`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: Duration,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let (mut cr, mut cw) = tokio::io::split(TokioIo::new(client));
    let (mut ur, mut uw) = tokio::io::split(TokioIo::new(upstream));
    let started = Instant::now();
    let last = std::sync::atomic::AtomicU64::new(0);
    let copy = async |r: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
                      w: &mut (dyn tokio::io::AsyncWrite + Unpin + Send)| {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Some(chunk) = buf.get(..n) else { break };
            if w.write_all(chunk).await.is_err() {
                break;
            }
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            last.store(ms, Ordering::Relaxed);
        }
        // ok to ignore: the peer may be gone already
        let _ = w.shutdown().await;
    };
    let watchdog = async {
        let tick = (idle / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let quiet = started
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= idle {
                tracing::debug!(?idle, "upgraded connection idle; closing");
                break;
            }
        }
    };
    tokio::select! {
        _ = futures_util::future::join(copy(&mut cr, &mut uw), copy(&mut ur, &mut cw)) => {}
        () = watchdog => {}
    }
}
