//! From the client's request to the upstream's, synchronously: the request id, `Host`,
//! `Max-Forwards`, the route, the rate limit, the declared body size and the header rewriting.
//! An early answer (400, 404, 413, 429, or `Max-Forwards` reaching zero) comes back as `Err`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt as _;
use tidewell_core::http::REQUEST_ID_HEADER;

use crate::body::{BoxError, Limited, ProxyBody, full};
use crate::config::Route;
use crate::headers::{self, Peer};
use crate::response::{body_too_large, error, id_text};
use crate::state::{ProxyState, RouteState};

/// The client's address, for a proxy served by another server (axum): insert it in the request
/// extensions from the connection info so that `X-Forwarded-For`, `X-Real-IP` and rate limits see
/// the client. (With a handle per connection, [`Proxy::for_client`](crate::Proxy::for_client),
/// none is needed; [`serve`](crate::serve) uses that.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The last `Host` value a handle saw and its parsed authority: a connection's requests mostly
/// name one host, and comparing the bytes costs less than parsing (and copying) them again.
pub(crate) type HostCache = Option<(HeaderValue, Authority)>;

/// A request ready to go upstream, made by [`prepare`] for [`forward`](crate::forward::forward).
/// A plain hand-off from one step to the next: its fields are its interface.
pub(crate) struct Prepared {
    /// Index of the matched route, for [`ProxyState::route`].
    pub(crate) route: usize,
    pub(crate) up: Request<ProxyBody>,
    pub(crate) path_and_query: PathAndQuery,
    /// Whether the client named a host (`Host` or the request target's authority).
    pub(crate) has_host: bool,
    /// The request id, as forwarded in `x-request-id` and named in error bodies.
    pub(crate) request_id: HeaderValue,
    pub(crate) client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The client's address, for rate limits shared over Redis (checked in the async part).
    #[cfg(feature = "redis")]
    pub(crate) client_ip: Option<std::net::IpAddr>,
}

/// The request's authority and whether it is the `Host` field's (else the request target's).
type Host = (Authority, bool);

/// Everything before the first upstream attempt (see the module docs); `conn_peer` is the
/// connection's client, `layer_id` the id a correlation layer in front already checked. (Kept
/// out of the async part so the per-request future stays small.)
#[expect(
    clippy::result_large_err,
    reason = "moved once per request; boxing would allocate per request"
)]
pub(crate) fn prepare<B>(
    state: &ProxyState,
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
    let authority = host.as_ref().map(|(a, _)| a);
    let Some((route_index, rs)) = state.find_route(req.method(), authority, req.uri().path())
    else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no_route",
            "no route matches this request",
            id_text(&request_id),
        ));
    };
    admit(rs, &req, peer, &request_id, state.limits_are_local())?;
    #[cfg(feature = "redis")]
    let client_ip = peer.map(|p| p.ip);

    let upgrade = headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let path_and_query = upstream_path(rs.route(), &parts.uri, &request_id)?;
    let head = Forwarded {
        peer,
        host: host.as_ref(),
        upgrade,
        request_id: &request_id,
    }
    .head(state, parts.headers, parts.version);

    rs.earn_retry();
    // An empty body (a GET's) needs no limit: the zero-sized empty body allocates nothing.
    let body = if body.is_end_stream() {
        crate::body::empty()
    } else {
        Limited::new(body, rs.route().max_body).boxed_unsync()
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
        #[cfg(feature = "redis")]
        client_ip,
    })
}

/// The 429 of a client over its route's rate limit, with `Retry-After` in whole seconds.
pub(crate) fn too_many_requests(wait: Duration, request_id: &HeaderValue) -> Response<ProxyBody> {
    let mut res = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests from this client; retry later",
        id_text(request_id),
    );
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    res.headers_mut()
        .insert(header::RETRY_AFTER, secs.max(1).into());
    res
}

/// The route's own limits on the request: its client's rate (429 with `Retry-After`) and the
/// body size the request declares (413).
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer, made only when the request is refused"
)]
fn admit<B: Body>(
    rs: &RouteState,
    req: &Request<B>,
    peer: Option<&Peer>,
    request_id: &HeaderValue,
    local_limits: bool,
) -> Result<(), Response<ProxyBody>> {
    if local_limits
        && let Some(peer) = peer
        && let Some(wait) = rs.rate_limited(peer.ip)
    {
        return Err(too_many_requests(wait, request_id));
    }
    let max_body = rs.route().max_body;
    if req.body().size_hint().lower() > max_body {
        return Err(body_too_large(max_body, id_text(request_id)));
    }
    Ok(())
}

/// The upstream's path and query: the client's own when the route does not rewrite, else
/// rewritten (a 400 if the result is not a valid path).
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer, made only when the request is refused"
)]
fn upstream_path(
    route: &Route,
    uri: &http::Uri,
    request_id: &HeaderValue,
) -> Result<PathAndQuery, Response<ProxyBody>> {
    if let (None, Some(pq)) = (&route.rewrite, uri.path_and_query()) {
        return Ok(pq.clone());
    }
    let path = route.upstream_path(uri.path());
    let text = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    PathAndQuery::try_from(text).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the rewritten path is not valid",
            id_text(request_id),
        )
    })
}

/// What the upstream is told about the client and the request.
struct Forwarded<'a> {
    peer: Option<&'a Peer>,
    host: Option<&'a Host>,
    upgrade: bool,
    request_id: &'a HeaderValue,
}

impl Forwarded<'_> {
    /// The upstream request's head made from the client's `head`: hop-by-hop fields removed,
    /// `Via`, the `X-Forwarded-*` family, the request id, the trace context, and `Host` when the
    /// client named the host in the request target.
    fn head(&self, state: &ProxyState, mut head: HeaderMap, version: http::Version) -> HeaderMap {
        // The host as a header value: the client's own `Host` field (shared, not copied), or
        // made from the request target's authority.
        let host_value = match self.host {
            Some((_, true)) => head.get(header::HOST).cloned(),
            Some((a, false)) => HeaderValue::from_str(a.as_str()).ok(),
            None => None,
        };
        headers::strip_hop_by_hop(&mut head, self.upgrade);
        head.append(header::VIA, state.via(version));
        headers::set_forwarded(
            &mut head,
            self.peer,
            host_value.as_ref(),
            state.trusted_proxies(),
        );
        head.insert(REQUEST_ID_HEADER, self.request_id.clone());
        // The upstream's span becomes a child of the request's span here when traces are
        // exported (tidewell-core's `otel`); otherwise the client's `traceparent` passes as is.
        tidewell_core::propagation::inject_span(&tracing::Span::current(), &mut head);
        if let (Some((_, false)), Some(v)) = (self.host, &host_value) {
            head.insert(header::HOST, v.clone());
        }
        head
    }
}

/// The request id: a valid `x-correlation-id` (as the correlation layer leaves it), else a valid
/// `x-request-id`, else a new one; the client's own header value when it has one (shared, not
/// copied or parsed).
fn request_id_of<B>(req: &Request<B>) -> HeaderValue {
    tidewell_core::correlation::correlation_header(req.headers())
}

/// The request's authority: the request target's when it has one (absolute-form, or HTTP/2's
/// `:authority`; RFC 9112 3.2.2: the received `Host` is then ignored), else the `Host` field.
/// `Err` (a 400) when `Host` is missing on HTTP/1.1, repeated or malformed (userinfo, or a port
/// that is not a number from 0 to 65535), whichever authority wins (RFC 9112 3.2). The flag
/// says whether the authority is the `Host` field's. `cache` holds the connection's last `Host`
/// field that passed these checks, parsed.
fn host_of<B>(req: &Request<B>, cache: &mut HostCache) -> Result<Option<Host>, ()> {
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
                let parsed = Authority::try_from(v.as_bytes()).map_err(|_| ())?;
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
fn valid_authority(a: &Authority) -> bool {
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
