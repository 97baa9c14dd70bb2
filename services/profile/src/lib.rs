//! The profile reference service: each user's profile and preferences, made when the auth
//! service publishes `auth.user.created` (idempotent: a redelivered event changes nothing) and
//! deleted on `auth.user.deleted`,
//! read through the cache (tag `user:<id>`), invalidated on every write.

mod api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tidewell_auth_service::events::{UserCreated, UserDeleted};
use tidewell_cache::Cache;
use tidewell_core::Envelope;
use tidewell_core::config::Env;
use tidewell_event_hub::{HandlerError, Hub, Router as EventRouter, ServiceQueue, Subscription};

use tidewell_service_kit::openapi::{BearerAuth, ErrorBody, ErrorDetail};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The OpenAPI document of this service.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Tidewell profile", description = "Profiles and preferences"),
    paths(api::get_me, api::update_me, api::get_preferences, api::put_preferences),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// How the profile service runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct ProfileConfig {
    /// `PROFILE_DATABASE_URL` (default `sqlite:./data/profile.db?mode=rwc`).
    pub database_url: String,
    /// `TIDEWELL_JWT_SECRET` (required).
    pub jwt_secret: Vec<u8>,
    /// The service name of its queue (`<name>.events`), default `profile`.
    pub queue_service: String,
    /// `PROFILE_CACHE_TTL` (default `60s`).
    pub cache_ttl: Duration,
    /// `PROFILE_ADDR` (default `127.0.0.1:8084`).
    pub addr: SocketAddr,
}

impl std::fmt::Debug for ProfileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileConfig")
            .field(
                "database_url",
                &tidewell_core::config::redact_url(&self.database_url),
            )
            .field("queue_service", &self.queue_service)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ProfileConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[tidewell_core::cli::Var] = &[
        tidewell_core::cli::Var::new(
            "TIDEWELL_JWT_SECRET",
            "required",
            "HS256 secret shared by every service (32+ bytes)",
        ),
        tidewell_core::cli::Var::new("PROFILE_ADDR", "127.0.0.1:8084", "where to listen"),
        tidewell_core::cli::Var::new(
            "PROFILE_DATABASE_URL",
            "sqlite:./data/profile.db?mode=rwc",
            "postgres://... or sqlite:...",
        ),
        tidewell_core::cli::Var::new("PROFILE_CACHE_TTL", "60s", "how long reads stay cached"),
    ];

    /// `database_url` and `jwt_secret`, defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            database_url: database_url.into(),
            jwt_secret: jwt_secret.into(),
            queue_service: "profile".into(),
            cache_ttl: Duration::from_secs(60),
            addr: SocketAddr::from(([127, 0, 0, 1], 8084)),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        let env = Env::process();
        let secret = env.required("TIDEWELL_JWT_SECRET", "a secret of at least 32 bytes")?;
        let mut c = Self::new(
            env.string("PROFILE_DATABASE_URL")?
                .unwrap_or_else(|| "sqlite:./data/profile.db?mode=rwc".into()),
            secret.into_bytes(),
        );
        if let Some(t) = env.duration("PROFILE_CACHE_TTL")? {
            c.cache_ttl = t;
        }
        if let Some(a) = env.parse("PROFILE_ADDR", "an address such as 127.0.0.1:8084")? {
            c.addr = a;
        }
        Ok(c)
    }

    /// The queue this service consumes, to add to the hub's topology.
    pub fn queue(&self) -> ServiceQueue {
        ServiceQueue::new(&self.queue_service)
            .bind("auth.user.created")
            .bind("auth.user.deleted")
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
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] tidewell_cache::Error),
}

/// A running profile service.
#[derive(Clone, Debug)]
pub struct ProfileService {
    state: Arc<api::State>,
}

impl ProfileService {
    /// Connects the database and consumes `auth.user.created` from `hub` (whose topology holds
    /// [`ProfileConfig::queue`]).
    pub async fn start(config: ProfileConfig, hub: Hub, cache: Cache) -> Result<Self, Error> {
        let verifier = tidewell_service_kit::verifier(&config.jwt_secret)?;
        let db = tidewell_service_kit::database(&config.database_url, &MIGRATIONS).await?;
        let reads = cache.namespace("profile")?;
        let state = Arc::new(api::State {
            db,
            verifier,
            reads,
            ttl: config.cache_ttl,
        });
        let (created, deleted) = (Arc::clone(&state), Arc::clone(&state));
        let router = EventRouter::new()
            .route(move |e: Envelope<UserCreated>| {
                let s = Arc::clone(&created);
                async move {
                    let u = e.payload();
                    api::create_profile(&s.db, &u.user_id, &u.name)
                        .await
                        .map_err(HandlerError::retryable)?;
                    s.forget(&u.user_id).await;
                    Ok(())
                }
            })
            .route(move |e: Envelope<UserDeleted>| {
                let s = Arc::clone(&deleted);
                async move {
                    let user = &e.payload().user_id;
                    api::delete_profile(&s.db, user)
                        .await
                        .map_err(HandlerError::retryable)?;
                    s.forget(user).await;
                    Ok(())
                }
            });
        hub.subscribe_router(Subscription::new(config.queue().name()), router)
            .await?;
        Ok(Self { state })
    }

    /// The routes, under `/api/profile`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/profile/me", get(api::get_me).patch(api::update_me))
            .route(
                "/api/profile/me/preferences",
                get(api::get_preferences).put(api::put_preferences),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/openapi.json",
                get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
            )
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(Arc::clone(&self.state))
    }
}

#[cfg(test)]
mod vars_tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("lib.rs"), super::ProfileConfig::VARS);
    }
}
