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
use tidewell_proxy::{ClientAddr, Proxy};
use tidewell_service_kit::{ApiError, PeerAddr};
use tidewell_session_sync::server::RevokedSessions;
use tidewell_websocket::WsServer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::GatewayConfig;

/// What the routes share.
pub(crate) struct State {
    pub(crate) config: GatewayConfig,
    pub(crate) verifier: Verifier,
    pub(crate) revoked: RevokedSessions,
    pub(crate) ws: WsServer,
    pub(crate) proxy: Proxy,
    pub(crate) ops: tidewell_service_kit::Ops,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type S = AxumState<Arc<State>>;

/// The demo page's Content-Security-Policy: its own scripts, styles and connections only, and
/// WebAssembly compilation for the session-sync package.
const DEMO_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) fn router(state: Arc<State>) -> Router {
    // The demo page: compressed when the client accepts it, with validators (304s) and a CSP.
    let assets = Router::new()
        .route("/", get(asset))
        .route("/app.js", get(asset))
        .route("/app.css", get(asset))
        .route("/pkg/{file}", get(asset))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEMO_CSP),
        ));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/ws", get(websocket))
        .merge(assets)
        .merge(state.ops.routes())
        .fallback_service(state.proxy.clone())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            refuse_revoked,
        ))
        .layer(cors(&state.config))
        // Security headers on every answer that lacks them (the proxy sets them on the API's).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ))
        .layer(middleware::from_fn(client_addr))
        .layer(state.ops.layer())
        .with_state(state)
}

/// CORS for the configured origins (none: same origin only); preflights answered here.
fn cors(config: &GatewayConfig) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            tidewell_core::http::REQUEST_ID_HEADER,
            tidewell_core::http::CORRELATION_HEADER,
        ])
        .expose_headers([tidewell_core::http::CORRELATION_HEADER, header::RETRY_AFTER])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
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

async fn websocket(AxumState(s): S, req: Request) -> Response {
    s.ws.handle(req).map(Body::new)
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
    ("/app.css", "text/css", include_bytes!("../static/app.css")),
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

/// Each asset's validator: a weak ETag of its bytes (weak: the compressed and plain forms are
/// the same content), made once.
static ETAGS: std::sync::LazyLock<Vec<HeaderValue>> = std::sync::LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, _, body)| {
            use std::hash::{Hash as _, Hasher as _};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut h);
            HeaderValue::from_str(&format!("W/\"{:016x}-{:x}\"", h.finish(), body.len()))
                .unwrap_or(HeaderValue::from_static("W/\"0\""))
        })
        .collect()
});

/// An asset, or `304 Not Modified` when the client's copy is current. None of the names is
/// versioned, so each is revalidated before use (`no-cache`), which the validator makes cheap.
async fn asset(req: Request) -> Response {
    let Some(i) = ASSETS
        .iter()
        .position(|(path, _, _)| *path == req.uri().path())
    else {
        return ApiError::not_found("no such file").into_response();
    };
    let (Some((_, content_type, body)), Some(etag)) = (ASSETS.get(i), ETAGS.get(i)) else {
        return ApiError::not_found("no such file").into_response();
    };
    let current = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // Weak comparison (RFC 9110 13.1.2): `W/` is ignored on both sides.
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag_text(etag));
    let headers = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if current {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, [(header::CONTENT_TYPE, *content_type)], *body).into_response()
}

/// An ETag without its weakness prefix.
fn etag_text(etag: &HeaderValue) -> &str {
    etag.to_str().unwrap_or_default().trim_start_matches("W/")
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
