//! The HTTP upgrade: checks the handshake and the token, then hands the upgraded connection
//! to its tasks.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::WsServer;

impl WsServer {
    /// The verified claims of an upgrade request that may connect, and whether it offered the
    /// `tidewell.v1` protocol; else the 401 to answer.
    fn admitted<B>(&self, req: &Request<B>) -> Result<(tidewell_auth::Claims, bool), Refusal> {
        let (token, offered) = token_of(req);
        let Some(token) = token else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "no_token",
                "send a token: Authorization: Bearer, a bearer.<token> WebSocket protocol, or ?token=",
            ));
        };
        let claims = self.state.verifier.verify(&token).map_err(|e| {
            tracing::debug!(path = %req.uri().path(), error = %e, "websocket upgrade refused");
            Refusal::new(StatusCode::UNAUTHORIZED, "bad_token", e.to_string())
        })?;
        if !(self.state.admit)(&claims) {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "session_revoked",
                "this session was revoked; sign in again",
            ));
        }
        Ok((claims, offered))
    }

    /// Answers a WebSocket upgrade request: 401 (JSON) for a missing or invalid token, 400/426
    /// for a request that is not a WebSocket upgrade, else 101 and the connection runs on the
    /// current tokio runtime. The token is never logged.
    pub fn handle<B>(&self, mut req: Request<B>) -> Response<Full<Bytes>> {
        if self.state.closing.load(Ordering::Acquire) {
            return json_error(
                req.headers(),
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; connect to another node",
            );
        }
        let key = match handshake_key(&req) {
            Ok(key) => key,
            Err(refused) => return refused.answer(req.headers()),
        };
        let (claims, offered) = match self.admitted(&req) {
            Ok(admitted) => admitted,
            Err(refused) => {
                self.state.rejected.fetch_add(1, Ordering::Relaxed);
                return refused.answer(req.headers());
            }
        };
        let upgrade = hyper::upgrade::on(&mut req);
        let server = self.clone();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => server.run(upgraded, claims).await,
                Err(error) => tracing::debug!(%error, "websocket upgrade did not complete"),
            }
        });
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let rh = res.headers_mut();
        rh.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            rh.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if offered {
            rh.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("tidewell.v1"),
            );
        }
        res
    }
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request (RFC 6455 section 4.2.1), or the
/// 426/400 to answer.
fn handshake_key<B>(req: &Request<B>) -> Result<HeaderValue, Refusal> {
    let h = req.headers();
    let is_ws = req.method() == http::Method::GET
        && h.get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_ws {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "not_websocket",
            "this endpoint speaks WebSocket only",
        ));
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_handshake",
            "Sec-WebSocket-Key is missing",
        ));
    };
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_handshake",
            "Sec-WebSocket-Version must be 13",
        ));
    }
    Ok(key)
}

/// Why an upgrade request is refused, answered by [`Refusal::answer`].
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: std::borrow::Cow<'static, str>,
}

impl Refusal {
    fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn answer(&self, request: &http::HeaderMap) -> Response<Full<Bytes>> {
        json_error(request, self.status, self.code, &self.message)
    }
}

/// An error answer to an upgrade request, in the shape every Tidewell HTTP error has
/// (`tidewell_core::http::error_body`), with the request's id.
fn json_error(
    request: &http::HeaderMap,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let id = tidewell_core::http::request_id_of(request);
    let body = tidewell_core::http::error_body(code, message, id);
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The token of an upgrade request: `Authorization: Bearer`, a `bearer.<token>` WebSocket
/// protocol, or `?token=`; and whether the client offered the `tidewell.v1` protocol.
fn token_of<B>(req: &Request<B>) -> (Option<String>, bool) {
    let mut offered = false;
    let mut from_protocol = None;
    for v in req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        for p in v.to_str().unwrap_or("").split(',').map(str::trim) {
            if p == "tidewell.v1" {
                offered = true;
            } else if let Some(t) = p.strip_prefix("bearer.") {
                from_protocol = Some(t.to_owned());
            }
        }
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    });
    (from_header.or(from_protocol).or(from_query), offered)
}
