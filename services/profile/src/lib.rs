//! The profile reference service: each user's profile and preferences, made when the auth
//! service publishes `auth.user.created` (idempotent: a redelivered event changes nothing) and
//! deleted on `auth.user.deleted`,
//! read through the cache (tag `user:<id>`), invalidated on every write.

mod api;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tidewell_auth_service::events::{UserCreated, UserDeleted};
use tidewell_cache::Cache;
use tidewell_core::Envelope;
use tidewell_core::cli::Var;
use tidewell_core::config::Env;
use tidewell_event_hub::{HandlerError, Hub, Router as EventRouter, ServiceQueue, Subscription};
use tokio_util::sync::CancellationToken;

use tidewell_service_kit::openapi::{BearerAuth, ErrorBody, ErrorDetail};
use tidewell_service_kit::{CommonConfig, CommonVars, JWT_SECRET};

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
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProfileConfig {
    /// `PROFILE_ADDR` (default `127.0.0.1:8084`), `PROFILE_DATABASE_URL` (default
    /// `sqlite:./data/profile.db?mode=rwc`) and `TIDEWELL_JWT_SECRET` (required).
    pub common: CommonConfig,
    /// The service name of its queue (`<name>.events`), default `profile`.
    pub queue_service: String,
    /// `PROFILE_CACHE_TTL` (default `60s`).
    pub cache_ttl: Duration,
}

impl ProfileConfig {
    const COMMON: CommonVars = CommonVars::new(
        "PROFILE_ADDR",
        "127.0.0.1:8084",
        "PROFILE_DATABASE_URL",
        "sqlite:./data/profile.db?mode=rwc",
    );

    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[Var] = &[
        JWT_SECRET,
        Self::COMMON.addr,
        Self::COMMON.database_url,
        Var::new("PROFILE_CACHE_TTL", "60s", "how long reads stay cached"),
    ];

    /// `database_url` and `jwt_secret`, defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self::with(CommonConfig::new(Self::COMMON, database_url, jwt_secret))
    }

    fn with(common: CommonConfig) -> Self {
        Self {
            common,
            queue_service: "profile".into(),
            cache_ttl: Duration::from_secs(60),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        let env = Env::process();
        let mut c = Self::with(CommonConfig::from_source(&env, Self::COMMON)?);
        if let Some(t) = env.duration("PROFILE_CACHE_TTL")? {
            c.cache_ttl = t;
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

/// Why the service could not start: its secret, its database or the hub, or the cache
/// (`Service`).
pub type Error = tidewell_service_kit::StartError<tidewell_cache::Error>;

/// A running profile service.
#[derive(Clone, Debug)]
pub struct ProfileService {
    state: Arc<api::State>,
    ops: tidewell_service_kit::Ops,
}

impl ProfileService {
    /// Connects the database and consumes `auth.user.created` from `hub` (whose topology holds
    /// [`ProfileConfig::queue`]).
    pub async fn start(config: ProfileConfig, hub: Hub, cache: Cache) -> Result<Self, Error> {
        let verifier = config.common.verifier()?;
        let db = config.common.database(&MIGRATIONS).await?;
        let reads = cache.namespace("profile").map_err(Error::Service)?;
        let ops = tidewell_service_kit::Ops::new(<Self as tidewell_service_kit::Service>::NAME)?;
        ops.database("database", &db)?;
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
        Ok(Self { state, ops })
    }

    /// The routes, under `/api/profile`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/profile/me", get(api::get_me).patch(api::update_me))
            .route(
                "/api/profile/me/preferences",
                get(api::get_preferences).put(api::put_preferences),
            )
            .route(
                "/openapi.json",
                get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
            )
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(Arc::clone(&self.state))
            .merge(self.ops.routes())
            .layer(self.ops.layer())
    }

    /// Its metrics and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops(&self) -> &tidewell_service_kit::Ops {
        &self.ops
    }
}

impl tidewell_service_kit::Service for ProfileService {
    type Config = ProfileConfig;
    type Error = Error;
    const NAME: &'static str = "profile";
    const VARS: &'static [&'static [Var]] = &[
        ProfileConfig::VARS,
        tidewell_event_hub::HubConfig::VARS,
        tidewell_cache::CacheConfig::VARS,
    ];

    fn config_from_env() -> Result<ProfileConfig, tidewell_core::Error> {
        ProfileConfig::from_env()
    }

    /// Shared by every profile node: each event is handled by one of them.
    fn queues(config: &ProfileConfig) -> Vec<ServiceQueue> {
        vec![config.queue()]
    }

    async fn listen(
        config: &ProfileConfig,
    ) -> Result<tokio::net::TcpListener, tidewell_service_kit::ListenError> {
        config.common.listen().await
    }

    /// With the cache of `TIDEWELL_CACHE_URL` (`redis://…`, or `memory://`, the default).
    async fn launch(config: ProfileConfig, hub: Hub, _: CancellationToken) -> Result<Self, Error> {
        let cache = tidewell_cache::CacheConfig::from_env()
            .map(|c| Cache::builder().config(c))
            .map_err(Error::Service)?
            .build()
            .await
            .map_err(Error::Service)?;
        let service = Self::start(config, hub, cache.clone()).await?;
        service.ops.cache(&cache)?;
        Ok(service)
    }

    fn ops(&self) -> &tidewell_service_kit::Ops {
        &self.ops
    }

    fn router(&self) -> Router {
        Self::router(self)
    }
}

#[cfg(test)]
mod vars_tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("lib.rs"), super::ProfileConfig::VARS);
    }
}
