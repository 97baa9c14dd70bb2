//! The gateway's own routes and middleware.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State as AxumState};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use tidewell_auth::Verifier;
use tidewell_observability::{HttpMetrics, MetricsRegistry};
use tidewell_proxy::{ClientAddr, Proxy};
use tidewell_service_kit::{ApiError, PeerAddr};
use tidewell_session_sync::server::RevokedSessions;
use tidewell_websocket::WsServer;

use crate::GatewayConfig;

/// What the routes share.
pub(crate) struct State {
    pub(crate) config: GatewayConfig,
    pub(crate) verifier: Verifier,
    pub(crate) revoked: RevokedSessions,
    pub(crate) ws: WsServer,
    pub(crate) proxy: Proxy,
    pub(crate) metrics: MetricsRegistry,
    pub(crate) http: HttpMetrics,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type S = AxumState<Arc<State>>;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/ws", get(websocket))
        .route("/", get(asset))
        .route("/app.js", get(asset))
        .route("/pkg/{file}", get(asset))
        .fallback_service(state.proxy.clone())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            refuse_revoked,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), cors))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(client_addr))
        .layer(state.http.layer())
        .with_state(state)
}

/// Gives the proxy the client's address (rate limits, `X-Forwarded-For`).
async fn client_addr(mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(PeerAddr(addr))) =
        req.extensions().get::<ConnectInfo<PeerAddr>>().copied()
    {
        req.extensions_mut().insert(ClientAddr(addr));
    }
    next.run(req).await
}

/// A token whose session was revoked or signed out is refused here, whatever the route: the
/// services need not ask. Tokens that do not verify pass on (the service answers 401).
async fn refuse_revoked(AxumState(s): S, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer
        && let Ok(claims) = s.verifier.verify(token.trim())
        && !s.revoked.permits(&claims)
    {
        return ApiError::unauthorized("this session was revoked; sign in again").into_response();
    }
    next.run(req).await
}

/// CORS for the configured origins; preflights answered here.
async fn cors(AxumState(s): S, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| s.config.cors_origins.iter().any(|a| a == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = match (&origin, preflight) {
        (Some(_), true) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "authorization, content-type, x-request-id, x-correlation-id",
                ),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        }
        (None, true) => StatusCode::FORBIDDEN.into_response(),
        _ => next.run(req).await,
    };
    if let Some(o) = origin {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-correlation-id, retry-after"),
        );
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

/// Security headers on every answer that lacks them.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}

async fn websocket(AxumState(s): S, req: Request) -> Response {
    s.ws.handle(req).map(Body::new)
}

async fn metrics(AxumState(s): S) -> Response {
    s.metrics.response().map(Body::from)
}

/// Ready when every upstream accepts a connection within a second.
async fn readyz(AxumState(s): S) -> Response {
    let c = &s.config;
    let mut down = Vec::new();
    for (name, url) in [
        ("auth", &c.auth_url),
        ("payments", &c.payments_url),
        ("admin", &c.admin_url),
        ("profile", &c.profile_url),
    ] {
        let authority = url
            .split("://")
            .nth(1)
            .unwrap_or(url)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let ok = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(authority),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !ok {
            down.push(name);
        }
    }
    if down.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "ready": true })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "down": down })),
        )
            .into_response()
    }
}

/// The demo page and the session-sync npm package it loads, built into the binary so that the
/// gateway serves them wherever it runs. The package is the one committed in `session-sync/pkg`
/// (CI checks that it matches its sources).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../static/index.html"),
    ),
    (
        "/app.js",
        "text/javascript",
        include_bytes!("../static/app.js"),
    ),
    (
        "/pkg/tidewell_session_sync.js",
        "text/javascript",
        include_bytes!("../../../session-sync/pkg/tidewell_session_sync.js"),
    ),
    (
        "/pkg/tidewell_session_sync_bg.wasm",
        "application/wasm",
        include_bytes!("../../../session-sync/pkg/tidewell_session_sync_bg.wasm"),
    ),
    (
        "/pkg/tidewell_session_sync.d.ts",
        "text/plain; charset=utf-8",
        include_bytes!("../../../session-sync/pkg/tidewell_session_sync.d.ts"),
    ),
    (
        "/pkg/package.json",
        "application/json",
        include_bytes!("../../../session-sync/pkg/package.json"),
    ),
];

async fn asset(req: Request) -> Response {
    match ASSETS.iter().find(|(path, _, _)| *path == req.uri().path()) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::not_found("no such file").into_response(),
    }
}

/// The services' OpenAPI documents merged into one (paths, schemas, security schemes); a service
/// that does not answer within two seconds is listed under `x-missing`.
async fn openapi(AxumState(s): S) -> Response {
    let c = &s.config;
    let mut merged = serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tidewell API (through the gateway)",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": {},
        "components": { "schemas": {}, "securitySchemes": {} },
    });
    let mut missing = Vec::new();
    for (name, url) in [
        ("auth", &c.auth_url),
        ("payments", &c.payments_url),
        ("admin", &c.admin_url),
        ("profile", &c.profile_url),
    ] {
        match fetch_json(url, "/openapi.json").await {
            Ok(doc) => {
                for target in [
                    "/paths",
                    "/components/schemas",
                    "/components/securitySchemes",
                ] {
                    let section = doc.pointer(target).cloned().unwrap_or_default();
                    if let (Some(from), Some(into)) = (
                        section.as_object(),
                        merged.pointer_mut(target).and_then(|v| v.as_object_mut()),
                    ) {
                        for (k, v) in from {
                            into.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(service = name, %error, "no OpenAPI document");
                missing.push(name);
            }
        }
    }
    if !missing.is_empty()
        && let Some(o) = merged.as_object_mut()
    {
        o.insert("x-missing".into(), serde_json::json!(missing));
    }
    axum::Json(merged).into_response()
}

/// GET `path` on the upstream `base` (`http://host:port`), as JSON, within two seconds.
async fn fetch_json(base: &str, path: &str) -> Result<serde_json::Value, String> {
    let (status, body) = get_upstream(base, path, None).await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// GET `path` on the upstream `base` (`http://host:port`), with `bearer` as its token, within
/// two seconds: the status and the body.
pub(crate) async fn get_upstream(
    base: &str,
    path: &str,
    bearer: Option<&str>,
) -> Result<(StatusCode, bytes::Bytes), String> {
    use http_body_util::BodyExt as _;
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base} is not http://"))?
        .trim_end_matches('/')
        .to_owned();
    let work = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = http::Request::get(path).header(header::HOST, &authority);
        if let Some(token) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .map_err(|_| "timed out".to_owned())?
}
