//! The payments reference service: create, list (filters, pagination), get and change the status
//! of payments (`pending` → `completed` | `failed` | `cancelled`; anything else is a 409). Reads
//! are cached with the tags `user:<id>` and `payment:<id>` and invalidated by every write;
//! `payments.payment.created|updated` leave through the transactional outbox.

mod api;
pub mod events;
mod money;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use tidewell_cache::Cache;
use tidewell_core::cli::Var;
use tidewell_core::config::Env;
use tidewell_event_hub::{Hub, ServiceQueue};
use tokio_util::sync::CancellationToken;

use tidewell_service_kit::openapi::{BearerAuth, ErrorBody, ErrorDetail};
use tidewell_service_kit::{CommonConfig, CommonVars, JWT_SECRET};

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
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PaymentsConfig {
    /// `PAYMENTS_ADDR` (default `127.0.0.1:8082`), `PAYMENTS_DATABASE_URL` (default
    /// `sqlite:./data/payments.db?mode=rwc`) and `TIDEWELL_JWT_SECRET`, which verifies the auth
    /// service's tokens (required).
    pub common: CommonConfig,
    /// `PAYMENTS_CACHE_TTL`: how long cached reads live (default `60s`).
    pub cache_ttl: Duration,
    /// `PAYMENTS_MAX_IN_FLIGHT`: requests served at once (default 512); more are answered 503
    /// with `Retry-After` at once.
    pub max_in_flight: usize,
}

impl PaymentsConfig {
    const COMMON: CommonVars = CommonVars::new(
        "PAYMENTS_ADDR",
        "127.0.0.1:8082",
        "PAYMENTS_DATABASE_URL",
        "sqlite:./data/payments.db?mode=rwc",
    );

    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[Var] = &[
        JWT_SECRET,
        Self::COMMON.addr,
        Self::COMMON.database_url,
        Var::new("PAYMENTS_CACHE_TTL", "60s", "how long reads stay cached"),
        Var::new(
            "PAYMENTS_MAX_IN_FLIGHT",
            "512",
            "requests served at once; more are answered 503 with Retry-After",
        ),
    ];

    /// `database_url` and `jwt_secret`, defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self::with(CommonConfig::new(Self::COMMON, database_url, jwt_secret))
    }

    fn with(common: CommonConfig) -> Self {
        Self {
            common,
            cache_ttl: Duration::from_secs(60),
            max_in_flight: 512,
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        Self::from_source(&Env::process())
    }

    /// From `env`.
    pub fn from_source(env: &Env) -> Result<Self, tidewell_core::Error> {
        let mut c = Self::with(CommonConfig::from_source(env, Self::COMMON)?);
        if let Some(t) = env.duration("PAYMENTS_CACHE_TTL")? {
            c.cache_ttl = t;
        }
        if let Some(n) = env.parse("PAYMENTS_MAX_IN_FLIGHT", "a number of requests such as 512")? {
            c.max_in_flight = n;
        }
        Ok(c)
    }
}

/// Why the service could not start: its secret, its database, the outbox or the hub, or the
/// cache (`Service`).
pub type Error = tidewell_service_kit::StartError<tidewell_cache::Error>;

/// A running payments service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PaymentsService {
    state: Arc<api::State>,
    ops: tidewell_service_kit::Ops,
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
        let verifier = config.common.verifier()?;
        let db = config.common.database(&MIGRATIONS).await?;
        let outbox = tidewell_service_kit::start_outbox(&db, hub.clone(), stop.clone()).await?;
        let reads = cache.namespace("payments").map_err(Error::Service)?;
        let ops = tidewell_service_kit::Ops::new(<Self as tidewell_service_kit::Service>::NAME)?;
        ops.database("database", &db)?;
        ops.outbox(&outbox)?;
        tidewell_service_kit::prune_outbox(&ops, &outbox, Duration::from_secs(3600), stop);
        Ok(Self {
            ops,
            state: Arc::new(api::State {
                db,
                outbox,
                hub,
                verifier,
                cache,
                reads,
                ttl: config.cache_ttl,
                max_in_flight: config.max_in_flight,
            }),
        })
    }

    /// The routes, under `/api/payments`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/api/payments", post(api::create).get(api::list))
            .route("/api/payments/{id}", get(api::get_one))
            .route("/api/payments/{id}/status", patch(api::set_status))
            .route(
                "/openapi.json",
                get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
            )
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(Arc::clone(&self.state));
        // Only the API sheds load: health checks and scrapes answer under any load.
        tidewell_service_kit::shed_load(api, self.state.max_in_flight)
            .merge(self.ops.routes())
            .layer(self.ops.layer())
    }

    /// Its metrics and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops(&self) -> &tidewell_service_kit::Ops {
        &self.ops
    }

    /// Events written and not yet relayed.
    pub async fn outbox_pending(&self) -> Result<u64, Error> {
        Ok(self.state.outbox.pending().await?)
    }

    /// How long the oldest event not yet relayed has waited (zero when none waits).
    pub async fn outbox_oldest_age(&self) -> Result<Duration, Error> {
        Ok(self
            .state
            .outbox
            .oldest_pending_age()
            .await?
            .unwrap_or_default())
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

impl tidewell_service_kit::Service for PaymentsService {
    type Config = PaymentsConfig;
    type Error = Error;
    const NAME: &'static str = "payments";
    const VARS: &'static [&'static [Var]] = &[
        PaymentsConfig::VARS,
        tidewell_event_hub::HubConfig::VARS,
        tidewell_cache::CacheConfig::VARS,
    ];

    fn config_from_env() -> Result<PaymentsConfig, tidewell_core::Error> {
        PaymentsConfig::from_env()
    }

    /// It consumes nothing. Its events wait in its outbox until a consumer's queue is bound to
    /// them (the admin service's takes every event, the gateway's the payment events).
    fn queues(_: &PaymentsConfig) -> Vec<ServiceQueue> {
        Vec::new()
    }

    async fn listen(
        config: &PaymentsConfig,
    ) -> Result<tokio::net::TcpListener, tidewell_service_kit::ListenError> {
        config.common.listen().await
    }

    /// With the cache of `TIDEWELL_CACHE_URL` (`redis://…`, or `memory://`, the default).
    async fn launch(
        config: PaymentsConfig,
        hub: Hub,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        let cache = tidewell_cache::CacheConfig::from_env()
            .map(|c| Cache::builder().config(c))
            .map_err(Error::Service)?
            .build()
            .await
            .map_err(Error::Service)?;
        let service = Self::start(config, hub, cache.clone(), stop).await?;
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
        tidewell_testkit::assert_vars_listed(include_str!("lib.rs"), super::PaymentsConfig::VARS);
    }
}
