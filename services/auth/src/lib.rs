//! The auth reference service: accounts (argon2id), sign-in with short access tokens and
//! rotating refresh tokens (a refresh token used twice revokes its session), sign-out, and the
//! user's devices (list, sign out one, sign out all others) on `tidewell-session-sync`'s device
//! registry. Every event (`auth.user.created|login|logout`, `auth.session.revoked`) is written
//! through the transactional outbox in the same transaction as the change.
//!
//! `AuthService::start(config, hub)` then `router()`; the binary `auth` runs it on its own
//! (`AUTH_*`, `TIDEWELL_JWT_SECRET`, `TIDEWELL_EVENT_HUB_URL`), the `platform` binary beside the
//! other services.

mod api;
mod config;
pub mod events;
mod passwords;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use sqlx::AnyPool;
use tidewell_auth::Verifier;
use tidewell_core::cli::Var;
use tidewell_event_hub::{Hub, ServiceQueue};
use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
use tokio_util::sync::CancellationToken;

pub use config::AuthConfig;

pub use tidewell_service_kit::{AUDIENCE, ISSUER};

use tidewell_service_kit::openapi::{BearerAuth, ErrorBody, ErrorDetail};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The OpenAPI document of this service.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Tidewell auth", description = "Accounts, sessions and devices"),
    paths(api::register, api::login, api::refresh, api::logout, api::me, api::update_me,
        api::delete_me, api::devices,
        api::revoke, api::revoke_others),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Why the service could not start: its secret, its database, the outbox or the hub, or the
/// device registry (`Service`).
pub type Error = tidewell_service_kit::StartError<tidewell_session_sync::Error>;

/// A running auth service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthService {
    state: Arc<api::State>,
    ops: tidewell_service_kit::Ops,
}

impl AuthService {
    /// Connects the database (running migrations), the device registry (same database) and the
    /// outbox relay to `hub`; the relay stops with `stop`.
    pub async fn start(
        config: AuthConfig,
        hub: Hub,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        let common = &config.common;
        let verifier = common.verifier()?;
        let issuer = tidewell_service_kit::issuer(&common.jwt_secret, config.access_ttl)?;
        let db: AnyPool = common.database(&MIGRATIONS).await?;
        // The registry's own revocation events would bypass the outbox: it gets no hub, and the
        // service writes `auth.session.revoked` to the outbox itself.
        let devices = DeviceRegistry::connect(&common.database_url)
            .await
            .map_err(Error::Service)?;
        let revoked = RevokedSessions::new(devices.clone(), 100_000, config.refresh_ttl);
        let outbox = tidewell_service_kit::start_outbox(&db, hub.clone(), stop.clone()).await?;
        let ops = tidewell_service_kit::Ops::new(<Self as tidewell_service_kit::Service>::NAME)?;
        ops.database("database", &db)?;
        ops.outbox(&outbox)?;
        let prune_after = config.prune_revoked_after.unwrap_or(config.refresh_ttl);
        let registry = devices.clone();
        ops.schedule("revocations", config.prune_every, stop.clone(), move || {
            let registry = registry.clone();
            async move {
                let before = std::time::SystemTime::now()
                    .checked_sub(prune_after)
                    .unwrap_or(std::time::UNIX_EPOCH);
                registry
                    .prune_revoked(before)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        tidewell_service_kit::prune_outbox(&ops, &outbox, config.prune_every, stop);
        Ok(Self {
            ops,
            state: Arc::new(api::State {
                db,
                outbox,
                hub,
                issuer,
                verifier,
                devices,
                revoked,
                refresh_ttl: config.refresh_ttl,
                access_ttl: config.access_ttl,
                admin_emails: config.admin_emails,
            }),
        })
    }

    /// The routes, under `/api/auth`. Every answer carries `Cache-Control: no-store`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/auth/register", post(api::register))
            .route("/api/auth/login", post(api::login))
            .route("/api/auth/refresh", post(api::refresh))
            .route("/api/auth/logout", post(api::logout))
            .route(
                "/api/auth/me",
                get(api::me).patch(api::update_me).delete(api::delete_me),
            )
            .route("/api/auth/devices", get(api::devices))
            .route("/api/auth/devices/revoke-others", post(api::revoke_others))
            .route("/api/auth/devices/{device_id}/revoke", post(api::revoke))
            .route(
                "/openapi.json",
                get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
            )
            .layer(DefaultBodyLimit::max(16 * 1024))
            // Tokens and account data: no cache may keep them (RFC 6749 5.1 for token
            // responses; RFC 9111 5.2.2.5).
            .layer(axum::middleware::map_response(no_store))
            .with_state(Arc::clone(&self.state))
            .merge(self.ops.routes())
            .layer(self.ops.layer())
    }

    /// Its metrics and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops(&self) -> &tidewell_service_kit::Ops {
        &self.ops
    }

    /// A verifier for the tokens this service issues (for the other services and the gateway).
    pub fn verifier(&self) -> Verifier {
        self.state.verifier.clone()
    }

    /// The revoked sessions this service knows of.
    pub fn revoked_sessions(&self) -> RevokedSessions {
        self.state.revoked.clone()
    }

    /// Events written and not yet relayed.
    pub async fn outbox_pending(&self) -> Result<u64, Error> {
        Ok(self.state.outbox.pending().await?)
    }
}

impl tidewell_service_kit::Service for AuthService {
    type Config = AuthConfig;
    type Error = Error;
    const NAME: &'static str = "auth";
    const VARS: &'static [&'static [Var]] =
        &[AuthConfig::VARS, tidewell_event_hub::HubConfig::VARS];

    fn config_from_env() -> Result<AuthConfig, tidewell_core::Error> {
        AuthConfig::from_env()
    }

    /// The auth service publishes; it consumes nothing. Its events wait in its outbox until a
    /// consumer's queue is bound to them (the admin service's takes every event).
    fn queues(_: &AuthConfig) -> Vec<ServiceQueue> {
        Vec::new()
    }

    async fn listen(
        config: &AuthConfig,
    ) -> Result<tokio::net::TcpListener, tidewell_service_kit::ListenError> {
        config.common.listen().await
    }

    async fn launch(config: AuthConfig, hub: Hub, stop: CancellationToken) -> Result<Self, Error> {
        Self::start(config, hub, stop).await
    }

    fn ops(&self) -> &tidewell_service_kit::Ops {
        &self.ops
    }

    fn router(&self) -> Router {
        Self::router(self)
    }
}

/// `Cache-Control: no-store` (and `Pragma: no-cache` for HTTP/1.0 caches) on a response.
async fn no_store(mut res: axum::response::Response) -> axum::response::Response {
    let h = res.headers_mut();
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        http::header::PRAGMA,
        http::HeaderValue::from_static("no-cache"),
    );
    res
}
