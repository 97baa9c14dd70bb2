//! The payments reference service: create, list (filters, pagination), get and change the status
//! of payments (`pending` → `completed` | `failed` | `cancelled`; anything else is a 409). Reads
//! are cached with the tags `user:<id>` and `payment:<id>` and invalidated by every write;
//! `payments.payment.created|updated` leave through the transactional outbox.

mod api;
pub mod events;
mod money;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use tidewell_cache::Cache;
use tidewell_core::config::Env;
use tidewell_event_hub::Hub;
use tidewell_event_hub::outbox::Outbox;
use tokio_util::sync::CancellationToken;

use tidewell_service_kit::openapi::{BearerAuth, ErrorBody, ErrorDetail};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The OpenAPI document of this service.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Tidewell payments", description = "Payments with a status machine"),
    paths(api::create, api::list, api::get_one, api::set_status),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// How the payments service runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct PaymentsConfig {
    /// `PAYMENTS_DATABASE_URL` (default `sqlite:./data/payments.db?mode=rwc`).
    pub database_url: String,
    /// `TIDEWELL_JWT_SECRET`: verifies the auth service's tokens (required).
    pub jwt_secret: Vec<u8>,
    /// `PAYMENTS_CACHE_TTL`: how long cached reads live (default `60s`).
    pub cache_ttl: Duration,
    /// `PAYMENTS_ADDR` (default `127.0.0.1:8082`).
    pub addr: SocketAddr,
}

impl std::fmt::Debug for PaymentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsConfig")
            .field(
                "database_url",
                &tidewell_core::config::redact_url(&self.database_url),
            )
            .field("cache_ttl", &self.cache_ttl)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PaymentsConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[tidewell_core::cli::Var] = &[
        tidewell_core::cli::Var::new(
            "TIDEWELL_JWT_SECRET",
            "required",
            "HS256 secret shared by every service (32+ bytes)",
        ),
        tidewell_core::cli::Var::new("PAYMENTS_ADDR", "127.0.0.1:8082", "where to listen"),
        tidewell_core::cli::Var::new(
            "PAYMENTS_DATABASE_URL",
            "sqlite:./data/payments.db?mode=rwc",
            "postgres://... or sqlite:...",
        ),
        tidewell_core::cli::Var::new("PAYMENTS_CACHE_TTL", "60s", "how long reads stay cached"),
    ];

    /// `database_url` and `jwt_secret`, defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            database_url: database_url.into(),
            jwt_secret: jwt_secret.into(),
            cache_ttl: Duration::from_secs(60),
            addr: SocketAddr::from(([127, 0, 0, 1], 8082)),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        Self::from_source(&Env::process())
    }

    /// From `env`.
    pub fn from_source(env: &Env) -> Result<Self, tidewell_core::Error> {
        let secret = env.required("TIDEWELL_JWT_SECRET", "a secret of at least 32 bytes")?;
        let mut c = Self::new(
            env.string("PAYMENTS_DATABASE_URL")?
                .unwrap_or_else(|| "sqlite:./data/payments.db?mode=rwc".into()),
            secret.into_bytes(),
        );
        if let Some(t) = env.duration("PAYMENTS_CACHE_TTL")? {
            c.cache_ttl = t;
        }
        if let Some(a) = env.parse("PAYMENTS_ADDR", "an address such as 127.0.0.1:8082")? {
            c.addr = a;
        }
        Ok(c)
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The JWT secret is unusable.
    #[error("TIDEWELL_JWT_SECRET: {0}")]
    Secret(#[from] tidewell_auth::Error),
    /// The database or the outbox failed.
    #[error(transparent)]
    Database(#[from] tidewell_event_hub::Error),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] tidewell_cache::Error),
}

/// A running payments service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PaymentsService {
    state: Arc<api::State>,
}

impl PaymentsService {
    /// Connects the database (running migrations) and starts the outbox relay to `hub` (until
    /// `stop`); reads are cached in `cache`.
    pub async fn start(
        config: PaymentsConfig,
        hub: Hub,
        cache: Cache,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        let verifier = tidewell_service_kit::verifier(&config.jwt_secret)?;
        let db = tidewell_service_kit::database(&config.database_url, &MIGRATIONS).await?;
        let outbox = Outbox::new(db.clone()).await?;
        tidewell_service_kit::start_relay(&outbox, hub.clone(), stop)?;
        let reads = cache.namespace("payments")?;
        Ok(Self {
            state: Arc::new(api::State {
                db,
                outbox,
                hub,
                verifier,
                cache,
                reads,
                ttl: config.cache_ttl,
            }),
        })
    }

    /// The routes, under `/api/payments`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/payments", post(api::create).get(api::list))
            .route("/api/payments/{id}", get(api::get_one))
            .route("/api/payments/{id}/status", patch(api::set_status))
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/openapi.json",
                get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
            )
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(Arc::clone(&self.state))
    }

    /// Events written and not yet relayed.
    pub async fn outbox_pending(&self) -> Result<u64, Error> {
        Ok(self.state.outbox.pending().await?)
    }

    /// The cache's hit ratio for payment reads so far (0 to 1).
    pub fn cache_hit_ratio(&self) -> f64 {
        self.state
            .cache
            .stats()
            .namespaces
            .get("payments")
            .map_or(0.0, tidewell_cache::NamespaceStats::hit_ratio)
    }
}

#[cfg(test)]
mod vars_tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("lib.rs"), super::PaymentsConfig::VARS);
    }
}
