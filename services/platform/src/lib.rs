//! The whole reference platform in one process: the gateway in front of the auth, payments,
//! admin and profile services, sharing one event hub and one cache.
//!
//! On embedded defaults (no environment at all): an in-memory event hub, an in-memory cache,
//! SQLite files under `./data`. With `AMQP_URL` (or `TIDEWELL_EVENT_HUB_URL`), `REDIS_URL` (or
//! `TIDEWELL_CACHE_URL`) and `AUTH_/PAYMENTS_/ADMIN_/PROFILE_DATABASE_URL` it runs on RabbitMQ,
//! Redis and Postgres. Each service also runs on its own (their binaries).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tidewell_admin_service::{AdminConfig, AdminService};
use tidewell_auth_service::{AuthConfig, AuthService};
use tidewell_cache::Cache;
use tidewell_event_hub::{Hub, ServiceQueue, Topology};
use tidewell_gateway::{Gateway, GatewayConfig};
use tidewell_payments_service::{PaymentsConfig, PaymentsService};
use tidewell_profile_service::{ProfileConfig, ProfileService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where everything lives.
#[derive(Clone)]
#[non_exhaustive]
pub struct PlatformConfig {
    /// The gateway's address (`GATEWAY_ADDR`, default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// `TIDEWELL_JWT_SECRET`; without it a random one for this run (tokens do not survive a
    /// restart).
    pub jwt_secret: Vec<u8>,
    /// `AMQP_URL` / `TIDEWELL_EVENT_HUB_URL`, else `memory://platform`.
    pub hub_url: String,
    /// `REDIS_URL` / `TIDEWELL_CACHE_URL`, else `memory://`.
    pub cache_url: String,
    /// The folder of the default SQLite files (`TIDEWELL_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// Per-service database URLs (`AUTH_DATABASE_URL`, ...); `None`: SQLite under `data_dir`.
    pub auth_db: Option<String>,
    /// See `auth_db`.
    pub payments_db: Option<String>,
    /// See `auth_db`.
    pub admin_db: Option<String>,
    /// See `auth_db`.
    pub profile_db: Option<String>,
    /// `AUTH_ADMIN_EMAILS`: accounts that get the admin role.
    pub admin_emails: Vec<String>,
    /// Queue names get this prefix (several platforms on one broker, tests).
    pub queue_prefix: String,
    /// The topic exchange (default `events`).
    pub exchange: Option<String>,
    /// The cache's key prefix (default the cache's own).
    pub cache_prefix: Option<String>,
    /// Gateway rate limits per minute per client IP (auth, rest of the API); 0 turns one off.
    pub rate_limits: (u32, u32),
    /// Requests the payments service serves at once (`PAYMENTS_MAX_IN_FLIGHT`, default 512);
    /// more are answered 503 with `Retry-After`.
    pub payments_max_in_flight: usize,
    /// This node's name among several (`TIDEWELL_NODE_ID`, default `<host name>-<process id>`):
    /// names the gateway's own queue.
    pub node_id: String,
    /// The Redis holding the gateway's rate limits, shared by every node: the cache's URL when it
    /// is Redis (a single server or a cluster); `None` on embedded defaults.
    pub redis_url: Option<String>,
    /// The Redis joining the WebSocket rooms of every node (`TIDEWELL_WS_BACKPLANE_URL`, else the
    /// cache's URL when the cache is on Redis: `redis://`, `rediss://` or `redis-cluster://`);
    /// `None` on embedded defaults.
    pub backplane_url: Option<String>,
}

impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("addr", &self.addr)
            .field("hub_url", &tidewell_core::config::redact_url(&self.hub_url))
            .field(
                "cache_url",
                &tidewell_core::config::redact_url(&self.cache_url),
            )
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl PlatformConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`; telemetry's are `TelemetryConfig::VARS`).
    pub const VARS: &[tidewell_core::cli::Var] = &[
        tidewell_core::cli::Var::new(
            "GATEWAY_ADDR",
            "127.0.0.1:8080",
            "where the gateway (API, /ws, demo page) listens",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_JWT_SECRET",
            "",
            "HS256 secret (32+ bytes); unset: a random one, tokens end with the process",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_URL",
            "memory://platform",
            "the event hub (amqp://...); AMQP_URL is read too",
        ),
        tidewell_core::cli::Var::new(
            "AMQP_URL",
            "",
            "RabbitMQ, when TIDEWELL_EVENT_HUB_URL is unset",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_CACHE_URL",
            "memory://",
            "the cache (redis://...); REDIS_URL is read too",
        ),
        tidewell_core::cli::Var::new("REDIS_URL", "", "Redis, when TIDEWELL_CACHE_URL is unset"),
        tidewell_core::cli::Var::new(
            "TIDEWELL_DATA_DIR",
            "./data",
            "where the default SQLite databases live",
        ),
        tidewell_core::cli::Var::new(
            "AUTH_DATABASE_URL",
            "sqlite under TIDEWELL_DATA_DIR",
            "the auth service's database (postgres://...)",
        ),
        tidewell_core::cli::Var::new(
            "PAYMENTS_DATABASE_URL",
            "sqlite under TIDEWELL_DATA_DIR",
            "the payments service's database",
        ),
        tidewell_core::cli::Var::new(
            "ADMIN_DATABASE_URL",
            "sqlite under TIDEWELL_DATA_DIR",
            "the admin service's database",
        ),
        tidewell_core::cli::Var::new(
            "PROFILE_DATABASE_URL",
            "sqlite under TIDEWELL_DATA_DIR",
            "the profile service's database",
        ),
        AuthConfig::ADMIN_EMAILS,
        GatewayConfig::AUTH_PER_MINUTE,
        GatewayConfig::API_PER_MINUTE,
        tidewell_core::cli::Var::new(
            "PAYMENTS_MAX_IN_FLIGHT",
            "512",
            "requests the payments service serves at once; more get 503 with Retry-After",
        ),
        tidewell_service_kit::NODE_ID,
        GatewayConfig::BACKPLANE_URL,
    ];

    /// Embedded defaults with `jwt_secret`.
    pub fn embedded(jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_secret: jwt_secret.into(),
            hub_url: "memory://platform".into(),
            cache_url: "memory://".into(),
            data_dir: PathBuf::from("data"),
            auth_db: None,
            payments_db: None,
            admin_db: None,
            profile_db: None,
            admin_emails: Vec::new(),
            queue_prefix: String::new(),
            exchange: None,
            cache_prefix: None,
            rate_limits: (10, 100),
            payments_max_in_flight: 512,
            node_id: GatewayConfig::new(Vec::new()).node_id,
            redis_url: None,
            backplane_url: None,
        }
    }

    /// From the process environment (see each field).
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        let env = tidewell_core::config::Env::process();
        let secret = match env.string("TIDEWELL_JWT_SECRET")? {
            Some(s) => s.into_bytes(),
            None => {
                tracing::warn!(
                    "TIDEWELL_JWT_SECRET is not set: using a random secret for this run"
                );
                let a = uuid::Uuid::new_v4();
                let b = uuid::Uuid::new_v4();
                format!("{}{}", a.simple(), b.simple()).into_bytes()
            }
        };
        let mut c = Self::embedded(secret);
        if let Some(a) = env.parse("GATEWAY_ADDR", "an address such as 127.0.0.1:8080")? {
            c.addr = a;
        }
        if let Some(u) = env
            .string("TIDEWELL_EVENT_HUB_URL")?
            .or(env.string("AMQP_URL")?)
        {
            c.hub_url = u;
        }
        if let Some(u) = env
            .string("TIDEWELL_CACHE_URL")?
            .or(env.string("REDIS_URL")?)
        {
            c.cache_url = u;
        }
        if let Some(d) = env.string("TIDEWELL_DATA_DIR")? {
            c.data_dir = d.into();
        }
        c.auth_db = env.string("AUTH_DATABASE_URL")?;
        c.payments_db = env.string("PAYMENTS_DATABASE_URL")?;
        c.admin_db = env.string("ADMIN_DATABASE_URL")?;
        c.profile_db = env.string("PROFILE_DATABASE_URL")?;
        if let Some(list) = env.string("AUTH_ADMIN_EMAILS")? {
            c.admin_emails = list.split(',').map(|e| e.trim().to_lowercase()).collect();
        }
        if let Some(n) = env.parse("GATEWAY_AUTH_PER_MINUTE", "a whole number")? {
            c.rate_limits.0 = n;
        }
        if let Some(n) = env.parse("GATEWAY_API_PER_MINUTE", "a whole number")? {
            c.rate_limits.1 = n;
        }
        if let Some(n) = env.parse("PAYMENTS_MAX_IN_FLIGHT", "a whole number")? {
            c.payments_max_in_flight = n;
        }
        c.node_id = tidewell_service_kit::node_id(&env)?;
        c.redis_url = c
            .cache_url
            .starts_with("redis")
            .then(|| c.cache_url.clone());
        let backplane = env.string("TIDEWELL_WS_BACKPLANE_URL")?.or_else(|| {
            c.cache_url
                .starts_with("redis")
                .then(|| c.cache_url.clone())
        });
        c.backplane_url = tidewell_gateway::backplane_url(backplane);
        Ok(c)
    }

    fn db(&self, given: Option<&String>, name: &str) -> String {
        given.cloned().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join(format!("{name}.db")).display()
            )
        })
    }
}

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hub.
    #[error(transparent)]
    Hub(#[from] tidewell_event_hub::Error),
    /// The cache.
    #[error(transparent)]
    Cache(#[from] tidewell_cache::Error),
    /// The auth service.
    #[error("auth: {0}")]
    Auth(#[source] tidewell_auth_service::Error),
    /// The payments service.
    #[error("payments: {0}")]
    Payments(#[source] tidewell_payments_service::Error),
    /// The admin service.
    #[error("admin: {0}")]
    Admin(#[source] tidewell_admin_service::Error),
    /// The profile service.
    #[error("profile: {0}")]
    Profile(#[source] tidewell_profile_service::Error),
    /// The gateway.
    #[error("gateway: {0}")]
    Gateway(#[from] tidewell_gateway::Error),
    /// The gateway's address is taken or not allowed.
    #[error(transparent)]
    Listen(#[from] tidewell_service_kit::ListenError),
    /// A service's local listener could not bind.
    #[error("cannot listen on a local port for a service: {0}")]
    Io(#[from] std::io::Error),
    /// Its metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] tidewell_observability::Error),
}

/// Where each service listens (local ports behind the gateway).
#[derive(Clone, Copy, Debug)]
pub struct ServiceAddrs {
    /// The auth service.
    pub auth: SocketAddr,
    /// The payments service.
    pub payments: SocketAddr,
    /// The admin service.
    pub admin: SocketAddr,
    /// The profile service.
    pub profile: SocketAddr,
}

/// A running platform.
#[derive(Debug)]
pub struct Platform {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// Where the services listen.
    pub service_addrs: ServiceAddrs,
    /// The gateway.
    pub gateway: Gateway,
    /// The payments service (for its cache figures).
    pub payments: PaymentsService,
    /// The auth service.
    pub auth: AuthService,
    hub: Hub,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<std::io::Result<()>>,
}

impl Platform {
    /// Starts the services on local ports and the gateway on `config.addr` (port 0: any).
    pub async fn start(config: PlatformConfig) -> Result<Self, Error> {
        let p = &config.queue_prefix;
        let mut admin_cfg = AdminConfig::new(
            config.db(config.admin_db.as_ref(), "admin"),
            config.jwt_secret.clone(),
        );
        admin_cfg.queue_service = format!("{p}admin");
        let mut profile_cfg = ProfileConfig::new(
            config.db(config.profile_db.as_ref(), "profile"),
            config.jwt_secret.clone(),
        );
        profile_cfg.queue_service = format!("{p}profile");
        let mut gateway_cfg = GatewayConfig::new(config.jwt_secret.clone());
        gateway_cfg.queue_service = format!("{p}gateway");
        gateway_cfg.node_id.clone_from(&config.node_id);
        gateway_cfg.backplane_url.clone_from(&config.backplane_url);
        gateway_cfg.redis_url.clone_from(&config.redis_url);
        let topology = match &config.exchange {
            Some(x) => Topology::with_exchange(x.clone()),
            None => Topology::new(),
        };
        let (admin_queue, profile_queue) = (admin_cfg.queue().name(), profile_cfg.queue().name());
        let topology = gateway_cfg
            .queues()
            .into_iter()
            .fold(topology, Topology::service)
            .service(admin_cfg.queue())
            .service(profile_cfg.queue());
        // Reconnect attempts at most 2 s apart: the platform is ready again soon after the
        // broker is back (the readiness an orchestrator routes by).
        let reconnect = tidewell_core::Backoff::builder()
            .min(Duration::from_millis(100))
            .max(Duration::from_secs(2))
            .build()
            .map_err(tidewell_event_hub::Error::Config)?;
        let mut hub = Hub::builder("platform")
            .url(&config.hub_url)
            .topology(topology)
            .reconnect_backoff(reconnect);
        if !p.is_empty() {
            hub = hub.connection_name(p.trim_end_matches('.'));
        }
        let hub = hub.connect().await?;
        let mut cache = Cache::builder().url(&config.cache_url);
        if let Some(prefix) = &config.cache_prefix {
            cache = cache.prefix(prefix.clone());
        }
        let cache = cache.build().await?;
        let cache_for_ops = cache.clone();
        let stop = CancellationToken::new();

        let mut auth_cfg = AuthConfig::new(
            config.db(config.auth_db.as_ref(), "auth"),
            config.jwt_secret.clone(),
        );
        auth_cfg.admin_emails.clone_from(&config.admin_emails);
        // One connection for all, but each service emits its events under its own name.
        let auth = AuthService::start(auth_cfg, hub.with_source("auth"), stop.clone())
            .await
            .map_err(Error::Auth)?;
        let mut payments_cfg = PaymentsConfig::new(
            config.db(config.payments_db.as_ref(), "payments"),
            config.jwt_secret.clone(),
        );
        payments_cfg.max_in_flight = config.payments_max_in_flight;
        let payments = PaymentsService::start(
            payments_cfg,
            hub.with_source("payments"),
            cache.clone(),
            stop.clone(),
        )
        .await
        .map_err(Error::Payments)?;
        let admin = AdminService::start(admin_cfg, hub.with_source("admin"))
            .await
            .map_err(Error::Admin)?;
        let profile = ProfileService::start(profile_cfg, hub.with_source("profile"), cache)
            .await
            .map_err(Error::Profile)?;

        let mut tasks = tokio::task::JoinSet::new();
        let mut addrs = Vec::new();
        for router in [
            auth.router(),
            payments.router(),
            admin.router(),
            profile.router(),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            let s = stop.clone();
            tasks.spawn(async move {
                tidewell_service_kit::serve(listener, router, async move { s.cancelled().await })
                    .await
            });
        }
        let [auth_addr, payments_addr, admin_addr, profile_addr] =
            <[SocketAddr; 4]>::try_from(addrs)
                .map_err(|_| std::io::Error::other("four service listeners"))?;
        let service_addrs = ServiceAddrs {
            auth: auth_addr,
            payments: payments_addr,
            admin: admin_addr,
            profile: profile_addr,
        };
        gateway_cfg.auth_url = format!("http://{auth_addr}");
        gateway_cfg.payments_url = format!("http://{payments_addr}");
        gateway_cfg.admin_url = format!("http://{admin_addr}");
        gateway_cfg.profile_url = format!("http://{profile_addr}");
        gateway_cfg.auth_per_minute = config.rate_limits.0;
        gateway_cfg.api_per_minute = config.rate_limits.1;
        let queue_names: Vec<String> = gateway_cfg
            .queues()
            .iter()
            .map(ServiceQueue::name)
            .chain([admin_queue, profile_queue])
            .collect();
        let gateway = Gateway::start(gateway_cfg, hub.with_source("gateway")).await?;
        // One `/metrics` and one `/readyz` (the gateway's) for the whole process: each service's
        // series carry its `service` label; the shared hub, cache and the process are the
        // platform's.
        let shared = tidewell_service_kit::Ops::new("platform")?;
        shared.hub(&hub, &queue_names)?;
        shared.cache(&cache_for_ops)?;
        shared.metrics().register_process_metrics()?;
        for ops in [
            auth.ops(),
            payments.ops(),
            admin.ops(),
            profile.ops(),
            &shared,
        ] {
            gateway.ops().include(ops);
        }
        let listener = tidewell_service_kit::listen(config.addr, "GATEWAY_ADDR").await?;
        let addr = listener.local_addr()?;
        let g = gateway.clone();
        let s = stop.clone();
        tasks.spawn(async move { g.serve(listener, async move { s.cancelled().await }).await });
        tracing::info!(%addr, "platform up: gateway and four services");
        Ok(Self {
            addr,
            service_addrs,
            gateway,
            payments,
            auth,
            hub,
            stop,
            tasks,
        })
    }

    /// The broker queues this node declared: the consumers' queues, their dead-letter queues
    /// and their retry wait queues (on RabbitMQ, what `rabbitmqctl list_queues` shows of it).
    pub fn queues(&self) -> Vec<String> {
        self.hub.topology().queue_names()
    }

    /// Stops every server (requests in flight finish), the outbox relays, then the event hub
    /// (consumers, and the broker connection).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => if next.is_none() { break },
                () = &mut deadline => break,
            }
        }
        // Then the consumers stop (handlers in flight finish) and the broker connection closes.
        if let Err(error) = self.hub.shutdown(Duration::from_secs(5)).await {
            tracing::warn!(%error, "the event hub did not shut down cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("lib.rs"), super::PlatformConfig::VARS);
    }
}
