//! The client's response: the upstream's answer under the header policy (a `101` also opens the
//! tunnel), or one of the proxy's own JSON error answers.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tidewell_core::http::REQUEST_ID_HEADER;

use crate::body::{ProxyBody, full};
use crate::config::Route;
use crate::headers;
use crate::state::ProxyState;

/// A request id header value as text (always visible ASCII: checked or made so).
pub(crate) fn id_text(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or_default()
}

/// A JSON error response: `{"error": {"code", "message", "request_id"}}`, the shape the
/// reference services use, so a client reads every error of a gateway the same way.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<ProxyBody> {
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

/// The 413 for a request body over the route's `max_body`.
pub(crate) fn body_too_large(max_body: u64, request_id: &str) -> Response<ProxyBody> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the request body is over this route's {max_body}-byte limit"),
        request_id,
    )
}

/// The 502 when no upstream answered; `last_error` says why the last one did not.
pub(crate) fn bad_gateway(last_error: Option<&str>, request_id: &str) -> Response<ProxyBody> {
    let reason = last_error.unwrap_or("no upstream could be tried");
    error(
        StatusCode::BAD_GATEWAY,
        "bad_gateway",
        &format!("no upstream answered: {}", shorten(reason)),
        request_id,
    )
}

fn shorten(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The upstream's response `res` made the client's: hop-by-hop fields removed, `Via`, the
/// security headers and the request id added. A `101` opens the tunnel between the two
/// upgraded connections (a 502 if the client did not ask for an upgrade).
pub(crate) fn respond(
    state: &ProxyState,
    mut res: Response<ProxyBody>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    route: &Route,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let Some(client) = client_upgrade else {
            return error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream switched protocols without being asked to",
                id_text(request_id),
            );
        };
        let upstream = hyper::upgrade::on(&mut res);
        state
            .tunnels()
            .open(client, upstream, route.upgrade_idle_timeout);
    }
    let (mut parts, body) = res.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, switching);
    parts.headers.append(header::VIA, state.via(parts.version));
    if !switching {
        // One hashed lookup each (`entry`), not a lookup and then an insert.
        for (name, value) in state.security_headers() {
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
