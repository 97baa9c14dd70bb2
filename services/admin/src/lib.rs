//! The admin reference service: consumes every event into an audit log (idempotent on the event
//! id: a redelivery changes nothing) and a denormalised users table, and answers admin-only
//! queries (the `admin` role, else 403): the audit log, the users, dashboard figures.

mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tidewell_core::RawEnvelope;
use tidewell_core::config::Env;
use tidewell_event_hub::{HandlerError, Hub, Router as EventRouter, ServiceQueue, Subscription};

use tidewell_service_kit::openapi::{BearerAuth, ErrorBody, ErrorDetail};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The OpenAPI document of this service.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Tidewell admin", description = "Audit log, users, dashboard"),
    paths(api::audit, api::users, api::dashboard),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// How the admin service runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct AdminConfig {
    /// `ADMIN_DATABASE_URL` (default `sqlite:./data/admin.db?mode=rwc`).
    pub database_url: String,
    /// `TIDEWELL_JWT_SECRET` (required).
    pub jwt_secret: Vec<u8>,
    /// The service name of its queue, default `admin`.
    pub queue_service: String,
    /// `ADMIN_ADDR` (default `127.0.0.1:8083`).
    pub addr: SocketAddr,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field(
                "database_url",
                &tidewell_core::config::redact_url(&self.database_url),
            )
            .field("queue_service", &self.queue_service)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AdminConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[tidewell_core::cli::Var] = &[
        tidewell_core::cli::Var::new(
            "TIDEWELL_JWT_SECRET",
            "required",
            "HS256 secret shared by every service (32+ bytes)",
        ),
        tidewell_core::cli::Var::new("ADMIN_ADDR", "127.0.0.1:8083", "where to listen"),
        tidewell_core::cli::Var::new(
            "ADMIN_DATABASE_URL",
            "sqlite:./data/admin.db?mode=rwc",
            "postgres://... or sqlite:...",
        ),
    ];

    /// `database_url` and `jwt_secret`, defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            database_url: database_url.into(),
            jwt_secret: jwt_secret.into(),
            queue_service: "admin".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8083)),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        let env = Env::process();
        let secret = env.required("TIDEWELL_JWT_SECRET", "a secret of at least 32 bytes")?;
        let mut c = Self::new(
            env.string("ADMIN_DATABASE_URL")?
                .unwrap_or_else(|| "sqlite:./data/admin.db?mode=rwc".into()),
            secret.into_bytes(),
        );
        if let Some(a) = env.parse("ADMIN_ADDR", "an address such as 127.0.0.1:8083")? {
            c.addr = a;
        }
        Ok(c)
    }

    /// The queue this service consumes (every event), to add to the hub's topology.
    pub fn queue(&self) -> ServiceQueue {
        ServiceQueue::new(&self.queue_service).bind("#")
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The JWT secret is unusable.
    #[error("TIDEWELL_JWT_SECRET: {0}")]
    Secret(#[from] tidewell_auth::Error),
    /// The database or the hub failed.
    #[error(transparent)]
    Hub(#[from] tidewell_event_hub::Error),
}

/// A running admin service.
#[derive(Clone, Debug)]
pub struct AdminService {
    state: Arc<api::State>,
}

impl AdminService {
    /// Connects the database and consumes every event from `hub` (whose topology holds
    /// [`AdminConfig::queue`]).
    pub async fn start(config: AdminConfig, hub: Hub) -> Result<Self, Error> {
        let verifier = tidewell_service_kit::verifier(&config.jwt_secret)?;
        let db = tidewell_service_kit::database(&config.database_url, &MIGRATIONS).await?;
        let state = Arc::new(api::State { db, verifier });
        let s = Arc::clone(&state);
        hub.subscribe_router(
            Subscription::new(config.queue().name()),
            EventRouter::new().fallback(move |e: RawEnvelope| {
                let s = Arc::clone(&s);
                async move {
                    api::record(&s.db, &e)
                        .await
                        .map_err(HandlerError::retryable)
                }
            }),
        )
        .await?;
        Ok(Self { state })
    }

    /// The routes, under `/api/admin`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/admin/audit", get(api::audit))
            .route("/api/admin/users", get(api::users))
            .route("/api/admin/dashboard", get(api::dashboard))
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/openapi.json",
                get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
            )
            .with_state(Arc::clone(&self.state))
    }
}

#[cfg(test)]
mod vars_tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("lib.rs"), super::AdminConfig::VARS);
    }
}
