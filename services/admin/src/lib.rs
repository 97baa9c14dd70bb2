//! The admin reference service: consumes every event into an audit log (idempotent on the event
//! id: a redelivery changes nothing) and a denormalised users table, and answers admin-only
//! queries (the `admin` role, else 403): the audit log, the users, dashboard figures.

mod api;
mod audit;
mod dead_letters;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tidewell_core::RawEnvelope;
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
    info(title = "Tidewell admin", description = "Audit log, users, dashboard"),
    paths(
        api::audit,
        api::users,
        api::dashboard,
        dead_letters::list,
        dead_letters::replay
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// How the admin service runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AdminConfig {
    /// `ADMIN_ADDR` (default `127.0.0.1:8083`), `ADMIN_DATABASE_URL` (default
    /// `sqlite:./data/admin.db?mode=rwc`) and `TIDEWELL_JWT_SECRET` (required).
    pub common: CommonConfig,
    /// The service name of its queue, default `admin`.
    pub queue_service: String,
}

impl AdminConfig {
    const COMMON: CommonVars = CommonVars::new(
        "ADMIN_ADDR",
        "127.0.0.1:8083",
        "ADMIN_DATABASE_URL",
        "sqlite:./data/admin.db?mode=rwc",
    );

    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[Var] = &[JWT_SECRET, Self::COMMON.addr, Self::COMMON.database_url];

    /// `database_url` and `jwt_secret`, defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self::with(CommonConfig::new(Self::COMMON, database_url, jwt_secret))
    }

    fn with(common: CommonConfig) -> Self {
        Self {
            common,
            queue_service: "admin".into(),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        Ok(Self::with(CommonConfig::from_source(
            &Env::process(),
            Self::COMMON,
        )?))
    }

    /// The queue this service consumes (every event), to add to the hub's topology.
    pub fn queue(&self) -> ServiceQueue {
        ServiceQueue::new(&self.queue_service).bind("#")
    }
}

/// Why the service could not start: its secret, its database or the hub.
pub type Error = tidewell_service_kit::StartError;

/// A running admin service.
#[derive(Clone, Debug)]
pub struct AdminService {
    state: Arc<api::State>,
    ops: tidewell_service_kit::Ops,
}

impl AdminService {
    /// Connects the database and consumes every event from `hub` (whose topology holds
    /// [`AdminConfig::queue`]).
    pub async fn start(config: AdminConfig, hub: Hub) -> Result<Self, Error> {
        let verifier = config.common.verifier()?;
        let db = config.common.database(&MIGRATIONS).await?;
        let ops = tidewell_service_kit::Ops::new(<Self as tidewell_service_kit::Service>::NAME)?;
        ops.database("database", &db)?;
        let state = Arc::new(api::State {
            db,
            verifier,
            hub: hub.clone(),
        });
        let writer = audit::Writer::spawn(state.db.clone());
        // Many handler runs at once: each waits for the writer's batch, which holds them all.
        hub.subscribe_router(
            Subscription::new(config.queue().name())
                .prefetch(256)
                .concurrency(128),
            EventRouter::new().fallback(move |e: RawEnvelope| {
                let writer = writer.clone();
                async move { writer.record(e).await.map_err(HandlerError::retryable) }
            }),
        )
        .await?;
        Ok(Self { state, ops })
    }

    /// The routes, under `/api/admin`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/admin/audit", get(api::audit))
            .route("/api/admin/users", get(api::users))
            .route("/api/admin/dashboard", get(api::dashboard))
            .route("/api/admin/dead-letters", get(dead_letters::list))
            .route("/api/admin/dead-letters/replay", post(dead_letters::replay))
            .route(
                "/openapi.json",
                get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }),
            )
            .with_state(Arc::clone(&self.state))
            .merge(self.ops.routes())
            .layer(self.ops.layer())
    }

    /// Its metrics and readiness (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops(&self) -> &tidewell_service_kit::Ops {
        &self.ops
    }
}

impl tidewell_service_kit::Service for AdminService {
    type Config = AdminConfig;
    type Error = Error;
    const NAME: &'static str = "admin";
    const VARS: &'static [&'static [Var]] =
        &[AdminConfig::VARS, tidewell_event_hub::HubConfig::VARS];

    fn config_from_env() -> Result<AdminConfig, tidewell_core::Error> {
        AdminConfig::from_env()
    }

    /// Shared by every admin node: each event is audited by one of them.
    fn queues(config: &AdminConfig) -> Vec<ServiceQueue> {
        vec![config.queue()]
    }

    async fn listen(
        config: &AdminConfig,
    ) -> Result<tokio::net::TcpListener, tidewell_service_kit::ListenError> {
        config.common.listen().await
    }

    async fn launch(config: AdminConfig, hub: Hub, _: CancellationToken) -> Result<Self, Error> {
        Self::start(config, hub).await
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
        tidewell_testkit::assert_vars_listed(include_str!("lib.rs"), super::AdminConfig::VARS);
    }
}
