//! Sending a prepared request upstream: picking an upstream, the 504 timer, and a retry on
//! another upstream only when nothing of the request was sent (and the route's retry budget
//! allows it).

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::body::ProxyBody;
use crate::config::{HostHeader, Route};
use crate::pool::SendError;
use crate::request::Prepared;
use crate::response::{bad_gateway, body_too_large, error, id_text, respond};
use crate::state::{ProxyState, RouteState};
use crate::upstream::Upstream;

/// What one attempt left to do.
enum Attempt {
    /// The client's response.
    Answered(Response<ProxyBody>),
    /// Nothing of the request was sent; it is back in the [`Prepared`], and may go elsewhere.
    NotSent(String),
    /// Part of the request may have reached the upstream: it is never sent twice.
    Failed(String),
}

/// Sends the prepared request upstream (retrying only when nothing of it was sent) and turns
/// the answer into the client's response.
pub(crate) async fn forward(state: Arc<ProxyState>, mut p: Prepared) -> Response<ProxyBody> {
    let Some(rs) = state.route(p.route) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the route went away",
            id_text(&p.request_id),
        );
    };
    let route = rs.route();
    // Upstreams tried and failed (filled only on a retry: nothing allocated per request).
    let mut tried = Vec::new();
    let attempts = (1 + route.retries as usize).min(rs.upstreams().len());
    let mut last_error: Option<String> = None;
    for attempt in 1..=attempts {
        let Some((index, in_flight)) = rs.upstreams().pick(&tried) else {
            break;
        };
        let reason = match try_upstream(&state, rs, in_flight.0, &mut p).await {
            Attempt::Answered(res) => return res,
            Attempt::Failed(reason) => {
                last_error = Some(reason);
                break;
            }
            Attempt::NotSent(reason) => reason,
        };
        tried.push(index);
        if attempt >= attempts {
            last_error = Some(reason);
            break;
        }
        if !rs.spend_retry() {
            last_error = Some(format!("{reason} (retry budget spent)"));
            break;
        }
        last_error = Some(reason);
    }
    bad_gateway(last_error.as_deref(), id_text(&p.request_id))
}

/// One attempt on `upstream`: aims the request at it, sends it within the route's timeout, and
/// sorts out the result.
async fn try_upstream(
    state: &ProxyState,
    rs: &RouteState,
    upstream: &Upstream,
    p: &mut Prepared,
) -> Attempt {
    let route = rs.route();
    let request_id = id_text(&p.request_id);
    let Ok(uri) = upstream.uri_for(&p.path_and_query) else {
        return Attempt::Answered(error(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the request path cannot be forwarded",
            request_id,
        ));
    };
    *p.up.uri_mut() = uri;
    if (route.host_header == HostHeader::Upstream || !p.has_host)
        && let Ok(v) = HeaderValue::from_str(upstream.authority())
    {
        p.up.headers_mut().insert(header::HOST, v);
    }
    let exchange = std::mem::replace(&mut p.up, Request::new(crate::body::empty()));
    match send(upstream, exchange, route.timeout).await {
        None => {
            tracing::warn!(upstream = %upstream.base, request_id, "upstream response timed out");
            Attempt::Answered(error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                &format!("the upstream did not answer within {:?}", route.timeout),
                request_id,
            ))
        }
        Some(Ok(res)) => {
            rs.upstreams().succeeded(upstream);
            let client_upgrade = p.client_upgrade.take();
            Attempt::Answered(respond(state, res, client_upgrade, route, &p.request_id))
        }
        Some(Err(SendError::NotSent {
            reason,
            connect,
            request,
        })) => {
            // Nothing of the request left this proxy: safe to try another upstream, streamed
            // body included.
            if connect {
                rs.upstreams().connect_failed(upstream);
            }
            tracing::warn!(upstream = %upstream.base, request_id, %reason, "upstream not reached");
            p.up = *request;
            Attempt::NotSent(reason)
        }
        Some(Err(SendError::Failed(e))) => failed(route, upstream, &e, request_id),
    }
}

/// Sends `exchange` on `upstream`'s pool; `None` when no response head came within `timeout`.
///
/// Boxed: the exchange's future is most of a request's state, and two small allocations are
/// cheaper than one large one (glibc's per-thread cache stops at 1 KiB).
async fn send(
    upstream: &Upstream,
    exchange: Request<ProxyBody>,
    timeout: Duration,
) -> Option<Result<Response<ProxyBody>, SendError>> {
    Box::pin(tokio::time::timeout(timeout, upstream.pool.send(exchange)))
        .await
        .ok()
}

/// A request that failed after part of it may have been sent: a 413 if its body went over the
/// route's limit, else a failure that ends the attempts.
fn failed(route: &Route, upstream: &Upstream, e: &hyper::Error, request_id: &str) -> Attempt {
    if crate::body::is_too_large(e) {
        return Attempt::Answered(body_too_large(route.max_body, request_id));
    }
    let message = e.to_string();
    tracing::warn!(upstream = %upstream.base, request_id, error = %message, "upstream request failed");
    Attempt::Failed(message)
}
