//! The reference gateway: one front door for the browser.
//!
//! - `/api/auth` → auth, `/api/payments` → payments, `/api/admin` → admin, `/api/profile` →
//!   profile, through `tidewell-proxy` (streaming, 502/504, rate limits per client IP: login,
//!   register and refresh 10 a minute each, the rest of the API, `/api/auth/me` and
//!   `/api/auth/devices` included, 100 a minute by default). A 429 carries `Retry-After` and the
//!   services' error shape `{"error": {"code", "message", "request_id"}}`.
//! - `/ws`: the `tidewell-websocket` rooms, fed by the event bridge: `payments.payment.*` to the
//!   owner's room `user:<id>` (and `payment:<id>`), `auth.session.revoked` and `auth.user.logout`
//!   close that session's connections (4001) and tell its device room.
//! - Tokens of revoked or signed-out sessions are refused at the door (401), whatever the route;
//!   every gateway node learns of them through the hub.
//! - CORS for the configured origins and security headers (tower-http), `/healthz`, `/readyz`
//!   (every upstream reachable), `/metrics` (HTTP RED and WebSocket metrics, Prometheus text), and
//!   the demo page at `/` with the session-sync package under `/pkg/`, built into the binary:
//!   compressed (gzip, br) when the client accepts it, with weak ETags answered by 304 and
//!   `Cache-Control: no-cache`, under a Content-Security-Policy.
//! - `payment:<id>` rooms: an admin, or whoever the payments service shows the payment to.

mod config;
mod upstreams;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tidewell_core::RawEnvelope;
use tidewell_event_hub::{HandlerError, Hub, Router as EventRouter, Subscription};
use tidewell_proxy::{Proxy, ProxyConfig, Route};
use tidewell_service_kit::Ops;
use tidewell_session_sync::server::RevokedSessions;
use tidewell_websocket::{Bridge, WsServer};

pub use config::{GatewayConfig, backplane_url};

/// The endpoints that trade a credential (a password or a refresh token) for tokens: each is
/// limited to [`GatewayConfig::auth_per_minute`] requests per client IP.
pub const CREDENTIAL_PATHS: [&str; 3] =
    ["/api/auth/login", "/api/auth/register", "/api/auth/refresh"];

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The JWT secret is unusable.
    #[error("TIDEWELL_JWT_SECRET: {0}")]
    Secret(#[from] tidewell_auth::Error),
    /// A route or upstream is invalid.
    #[error(transparent)]
    Proxy(#[from] tidewell_proxy::Error),
    /// The WebSocket server could not be built.
    #[error(transparent)]
    WebSocket(#[from] tidewell_websocket::Error),
    /// The hub failed.
    #[error(transparent)]
    Hub(#[from] tidewell_event_hub::Error),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] tidewell_observability::Error),
}

/// Who may join `payment:<id>`: an admin, or whoever the payments service shows the payment to
/// (its owner): the gateway asks it, as the user, with a token of 30 seconds that keeps the
/// user's session and device, so the rule stays the payments service's own.
#[derive(Clone)]
struct PaymentRooms {
    payments_url: String,
    issuer: Arc<tidewell_auth::Issuer>,
}

impl PaymentRooms {
    async fn check(&self, claims: &tidewell_auth::Claims, room: &str) -> bool {
        let Some(id) = room.strip_prefix("payment:") else {
            return false;
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return false;
        }
        if claims.has_role("admin") {
            return true;
        }
        let mut asking = self.issuer.claims_for(claims.sub.clone());
        asking.roles.clone_from(&claims.roles);
        asking.sid.clone_from(&claims.sid);
        asking.did.clone_from(&claims.did);
        let Ok(token) = self.issuer.sign(&asking) else {
            return false;
        };
        let path = format!("/api/payments/{id}");
        match web::get_upstream(&self.payments_url, &path, Some(token.as_str())).await {
            Ok((status, _)) => status == http::StatusCode::OK,
            Err(error) => {
                tracing::warn!(%error, "cannot ask the payments service who may see a payment");
                false
            }
        }
    }
}

/// A running gateway.
#[derive(Clone, Debug)]
pub struct Gateway {
    state: Arc<web::State>,
}

impl Gateway {
    /// Builds the proxy and the WebSocket server, joins the backplane if the configuration
    /// names one, and subscribes the bridge to `hub` (whose topology holds
    /// [`GatewayConfig::queues`]).
    pub async fn start(config: GatewayConfig, hub: Hub) -> Result<Self, Error> {
        let verifier = tidewell_service_kit::verifier(&config.jwt_secret)?;
        let revoked = RevokedSessions::in_memory(1_000_000, Duration::from_secs(24 * 3600));
        let admit = revoked.clone();
        let may_see = PaymentRooms {
            payments_url: config.payments_url.clone(),
            issuer: Arc::new(tidewell_service_kit::issuer(
                &config.jwt_secret,
                Duration::from_secs(30),
            )?),
        };
        let ws = WsServer::builder(verifier.clone())
            .admit(move |claims| admit.permits(claims))
            .authorize_async(move |claims, room| {
                let may_see = may_see.clone();
                async move { may_see.check(&claims, &room).await }
            })
            .build()?;
        let bridge = Bridge::new(ws.clone())
            .rule("payments.payment.*", |e| {
                let p = e.payload();
                let mut rooms = Vec::new();
                if let Some(u) = p["user_id"].as_str() {
                    rooms.push(format!("user:{u}"));
                }
                if let Some(id) = p["payment_id"].as_str() {
                    rooms.push(format!("payment:{id}"));
                }
                rooms
            })
            .revoke_sessions("auth.session.revoked", |e| {
                let p = e.payload();
                Some((
                    p["session_id"].as_str()?.to_owned(),
                    p["device_id"].as_str().map(str::to_owned),
                ))
            })
            .revoke_sessions("auth.user.logout", |e| {
                Some((e.payload()["session_id"].as_str()?.to_owned(), None))
            });
        if let Some(url) = &config.backplane_url {
            ws.connect_backplane(url, &format!("tidewell:{}:ws", config.queue_service))
                .await?;
            tracing::info!(backplane = %tidewell_core::config::redact_url(url), "rooms joined across gateway nodes");
        }
        let bridge = Arc::new(bridge);
        for queue in config.queues() {
            let learn = revoked.clone();
            let bridge = Arc::clone(&bridge);
            hub.subscribe_router(
                Subscription::new(queue.name()),
                EventRouter::new().fallback(move |e: RawEnvelope| {
                    let ended =
                        matches!(e.event_type(), "auth.session.revoked" | "auth.user.logout");
                    if ended && let Some(sid) = e.payload()["session_id"].as_str() {
                        learn.insert(sid);
                    }
                    let result = bridge.apply(&e);
                    async move {
                        result
                            .map(|_| ())
                            .map_err(|e| HandlerError::permanent(e.to_string()))
                    }
                }),
            )
            .await?;
        }

        let per_minute = |n: u32| (f64::from(n) / 60.0, n);
        let mut routes = ProxyConfig::new();
        // The credential exchanges (a password or a refresh token for tokens) are limited per
        // client IP, as a brute-force guard; the rest of `/api/auth` (me, devices, logout), which
        // needs a valid access token, counts against the API's limit instead.
        let credential =
            CREDENTIAL_PATHS.map(|path| (path, &config.auth_url, config.auth_per_minute));
        let api = [
            ("/api/auth", &config.auth_url, config.api_per_minute),
            ("/api/payments", &config.payments_url, config.api_per_minute),
            ("/api/admin", &config.admin_url, config.api_per_minute),
            ("/api/profile", &config.profile_url, config.api_per_minute),
        ];
        for (prefix, upstream, limit) in credential.into_iter().chain(api) {
            let mut route = Route::new(prefix, &[upstream.as_str()])?
                .timeout(Duration::from_secs(30))
                .max_body(1024 * 1024);
            if limit > 0 {
                let (rate, burst) = per_minute(limit);
                route = route.rate_limit(rate, burst);
            }
            routes = routes.route(route);
        }
        let proxy = Proxy::new(routes)?;
        if let Some(url) = &config.redis_url {
            let shared = tidewell_proxy::SharedLimits::connect(
                url,
                &format!("tidewell:{}", config.queue_service),
                &config.redis_tls,
            )
            .await?;
            proxy.share_limits(shared)?;
        }
        // The `route` label: the gateway's own paths, and each proxied service's prefix (most
        // requests end in the proxy, the router's fallback, which has no MatchedPath).
        let ops = Ops::with_route_templates("gateway", |uri, _| {
            const OWN: &[&str] = &[
                "/healthz",
                "/readyz",
                "/metrics",
                "/openapi.json",
                "/ws",
                "/",
                "/app.js",
            ];
            const PROXIED: &[(&str, &str)] = &[
                ("/api/auth", "/api/auth/*"),
                ("/api/payments", "/api/payments/*"),
                ("/api/admin", "/api/admin/*"),
                ("/api/profile", "/api/profile/*"),
            ];
            let path = uri.path();
            if let Some(own) = OWN.iter().find(|p| **p == path) {
                return Some((*own).into());
            }
            if path.starts_with("/pkg/") {
                return Some("/pkg/{file}".into());
            }
            PROXIED
                .iter()
                .find(|(prefix, _)| {
                    path.strip_prefix(*prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                })
                .map(|(_, template)| (*template).into())
        })?;
        ws.metrics()
            .register(ops.metrics().registry())
            .map_err(tidewell_observability::Error::from)?;
        upstreams::register(&ops, &proxy)?;
        for (name, url) in [
            ("auth", &config.auth_url),
            ("payments", &config.payments_url),
            ("admin", &config.admin_url),
            ("profile", &config.profile_url),
        ] {
            let authority = url
                .split("://")
                .nth(1)
                .unwrap_or(url)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            ops.check(name, move || {
                let authority = authority.clone();
                async move {
                    tokio::net::TcpStream::connect(&authority)
                        .await
                        .map(drop)
                        .map_err(|e| format!("{authority}: {e}"))
                }
            });
        }
        Ok(Self {
            state: Arc::new(web::State {
                config,
                verifier,
                revoked,
                ws,
                proxy,
                ops,
            }),
        })
    }

    /// The gateway's routes (serve with [`Gateway::serve`] so that rate limits see client IPs).
    pub fn router(&self) -> Router {
        web::router(Arc::clone(&self.state))
    }

    /// Serves the gateway on `listener` until `shutdown`, then closes WebSockets with 1001:
    /// over HTTPS (and `wss://`) when the configuration has `tls`, with the redirecting plain
    /// listener on `redirect_addr` if set; plain HTTP otherwise.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = tidewell_service_kit::layers(self.router());
        let result = match &self.state.config.tls {
            Some(tls) => {
                let redirect = match self.state.config.redirect_addr {
                    Some(addr) => {
                        let plain = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                            std::io::Error::new(
                                e.kind(),
                                format!("cannot listen on {addr} (GATEWAY_REDIRECT_ADDR): {e}"),
                            )
                        })?;
                        let port = listener.local_addr()?.port();
                        Some(tokio::spawn(tidewell_proxy::serve_redirect(
                            plain,
                            port,
                            std::future::pending::<()>(),
                        )))
                    }
                    None => None,
                };
                let served = tidewell_service_kit::serve_tls(listener, app, tls, shutdown).await;
                if let Some(task) = redirect {
                    task.abort();
                }
                served
            }
            None => {
                let app =
                    app.into_make_service_with_connect_info::<tidewell_service_kit::PeerAddr>();
                axum::serve(tidewell_service_kit::nodelay(listener), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        self.state.ws.shutdown(Duration::from_secs(5)).await;
        result
    }

    /// The WebSocket server (for its statistics).
    pub fn ops(&self) -> &Ops {
        &self.state.ops
    }

    /// The WebSocket server.
    pub fn websocket(&self) -> &WsServer {
        &self.state.ws
    }

    /// The sessions the gateway refuses.
    pub fn revoked_sessions(&self) -> &RevokedSessions {
        &self.state.revoked
    }
}

impl tidewell_service_kit::Service for Gateway {
    type Config = GatewayConfig;
    type Error = Error;
    const NAME: &'static str = "gateway";
    const VARS: &'static [&'static [tidewell_core::cli::Var]] =
        &[GatewayConfig::VARS, tidewell_event_hub::HubConfig::VARS];

    fn config_from_env() -> Result<GatewayConfig, tidewell_core::Error> {
        GatewayConfig::from_env()
    }

    fn queues(config: &GatewayConfig) -> Vec<tidewell_event_hub::ServiceQueue> {
        config.queues()
    }

    async fn listen(
        config: &GatewayConfig,
    ) -> Result<tokio::net::TcpListener, tidewell_service_kit::ListenError> {
        tidewell_service_kit::listen(config.addr, "GATEWAY_ADDR").await
    }

    async fn launch(
        config: GatewayConfig,
        hub: Hub,
        _: tokio_util::sync::CancellationToken,
    ) -> Result<Self, Error> {
        Self::start(config, hub).await
    }

    fn router(&self) -> Router {
        Self::router(self)
    }

    fn ops(&self) -> &Ops {
        &self.state.ops
    }

    /// [`Gateway::serve`]: client addresses for the rate limits, WebSockets closed at the end.
    async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        Self::serve(self, listener, shutdown).await
    }
}
