//! Configuration from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use tidewell_core::config::Env;
use tidewell_event_hub::ServiceQueue;

/// How the gateway runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// `GATEWAY_ADDR` (default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// `TIDEWELL_JWT_SECRET` (required).
    pub jwt_secret: Vec<u8>,
    /// `GATEWAY_AUTH_URL` (default `http://127.0.0.1:8081`).
    pub auth_url: String,
    /// `GATEWAY_PAYMENTS_URL` (default `http://127.0.0.1:8082`).
    pub payments_url: String,
    /// `GATEWAY_ADMIN_URL` (default `http://127.0.0.1:8083`).
    pub admin_url: String,
    /// `GATEWAY_PROFILE_URL` (default `http://127.0.0.1:8084`).
    pub profile_url: String,
    /// `GATEWAY_CORS_ORIGINS`: comma-separated origins allowed to call the API from a browser
    /// (default none: same origin only).
    pub cors_origins: Vec<String>,
    /// `GATEWAY_AUTH_PER_MINUTE`: requests per minute per client IP to each credential endpoint
    /// (login, register, refresh; default 10; 0 turns the limit off).
    pub auth_per_minute: u32,
    /// `GATEWAY_API_PER_MINUTE`: the same for each service's part of the rest of the API,
    /// including `/api/auth/me`, `/api/auth/devices` and logout (default 100).
    pub api_per_minute: u32,
    /// The service name of its queues, default `gateway`.
    pub queue_service: String,
    /// This node's name (`TIDEWELL_NODE_ID`, default `<host name>-<process id>`): its own
    /// queue is `<queue_service>.<node_id>.events`.
    pub node_id: String,
    /// `GATEWAY_QUEUE_EXPIRES`: how long the broker keeps this node's queue once the node is
    /// gone (default `10m`); a node that comes back with the same id within it receives what
    /// was published meanwhile.
    pub queue_expires: Duration,
    /// `REDIS_URL`: the Redis (`redis://`, `rediss://`, `redis-cluster://…`) that holds the rate
    /// limits every gateway node shares, so a client that spreads its requests over N nodes gets
    /// each limit once (while it does not answer, each node applies its own). `None`: each node
    /// counts alone. TLS settings: `GATEWAY_REDIS_TLS_CA_FILE`, `_CERT_FILE`, `_KEY_FILE`.
    pub redis_url: Option<String>,
    /// TLS for a `rediss://` [`redis_url`](Self::redis_url).
    pub redis_tls: tidewell_core::tls::ClientTls,
    /// `TIDEWELL_WS_BACKPLANE_URL` (else `REDIS_URL` when it is a single Redis): the Redis (`redis://`, `rediss://`) that
    /// joins the rooms of every gateway node, so a client recovers what it missed on whichever
    /// node it reconnects to. `None`: each node's rooms are its own.
    pub backplane_url: Option<String>,
    /// HTTPS (`wss://` for the rooms through the same listener): `GATEWAY_TLS_CERT_FILE` and
    /// `GATEWAY_TLS_KEY_FILE` (PEM), `GATEWAY_HSTS` (default `max-age=31536000`, `off` for none).
    /// `None` (the default): plain HTTP.
    pub tls: Option<tidewell_core::tls::ServerTls>,
    /// `GATEWAY_REDIRECT_ADDR`: with TLS, a plain-HTTP address that only redirects to HTTPS.
    pub redirect_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("addr", &self.addr)
            .field("auth_url", &self.auth_url)
            .field("payments_url", &self.payments_url)
            .field("admin_url", &self.admin_url)
            .field("profile_url", &self.profile_url)
            .field("cors_origins", &self.cors_origins)
            .field("auth_per_minute", &self.auth_per_minute)
            .field("api_per_minute", &self.api_per_minute)
            .field("node_id", &self.node_id)
            .field(
                "redis_url",
                &self
                    .redis_url
                    .as_deref()
                    .map(tidewell_core::config::redact_url),
            )
            .field(
                "backplane_url",
                &self
                    .backplane_url
                    .as_deref()
                    .map(tidewell_core::config::redact_url),
            )
            .field("tls", &self.tls)
            .field("redirect_addr", &self.redirect_addr)
            .finish_non_exhaustive()
    }
}

impl GatewayConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[tidewell_core::cli::Var] = &[
        tidewell_service_kit::JWT_SECRET,
        tidewell_core::cli::Var::new("GATEWAY_ADDR", "127.0.0.1:8080", "where to listen"),
        tidewell_core::cli::Var::new(
            "GATEWAY_AUTH_URL",
            "http://127.0.0.1:8081",
            "the auth service",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_PAYMENTS_URL",
            "http://127.0.0.1:8082",
            "the payments service",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_ADMIN_URL",
            "http://127.0.0.1:8083",
            "the admin service",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_PROFILE_URL",
            "http://127.0.0.1:8084",
            "the profile service",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_CORS_ORIGINS",
            "",
            "comma-separated origins allowed to call the API",
        ),
        Self::AUTH_PER_MINUTE,
        Self::API_PER_MINUTE,
        tidewell_service_kit::NODE_ID,
        tidewell_core::cli::Var::new(
            "GATEWAY_QUEUE_EXPIRES",
            "10m",
            "how long the broker keeps a gone node's queue",
        ),
        Self::BACKPLANE_URL,
        tidewell_core::cli::Var::new(
            "REDIS_URL",
            "",
            "Redis holding the rate limits all nodes share (and the backplane's, if unset)",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_REDIS_TLS_CA_FILE",
            "",
            "PEM CA certificates trusted for a rediss:// REDIS_URL",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_REDIS_TLS_CERT_FILE",
            "",
            "PEM client certificate for REDIS_URL (mutual TLS)",
        ),
        tidewell_core::cli::Var::new("GATEWAY_REDIS_TLS_KEY_FILE", "", "its PEM private key"),
        tidewell_core::cli::Var::new(
            "GATEWAY_TLS_CERT_FILE",
            "",
            "PEM certificate chain: serve HTTPS and wss:// (unset: plain HTTP)",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_TLS_KEY_FILE",
            "",
            "PEM private key of the served certificate",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_HSTS",
            "max-age=31536000",
            "Strict-Transport-Security on HTTPS answers (off: none)",
        ),
        tidewell_core::cli::Var::new(
            "GATEWAY_REDIRECT_ADDR",
            "",
            "with TLS, a plain-HTTP address that only redirects to HTTPS",
        ),
    ];

    /// `GATEWAY_AUTH_PER_MINUTE` as `--help` lists it (the platform reads it too).
    pub const AUTH_PER_MINUTE: tidewell_core::cli::Var = tidewell_core::cli::Var::new(
        "GATEWAY_AUTH_PER_MINUTE",
        "10",
        "login, register and refresh requests per minute per client IP (0: off)",
    );

    /// `GATEWAY_API_PER_MINUTE` as `--help` lists it (the platform reads it too).
    pub const API_PER_MINUTE: tidewell_core::cli::Var = tidewell_core::cli::Var::new(
        "GATEWAY_API_PER_MINUTE",
        "100",
        "other API requests per minute per client IP and service (0: off)",
    );

    /// `TIDEWELL_WS_BACKPLANE_URL` as `--help` lists it (the platform reads it too).
    pub const BACKPLANE_URL: tidewell_core::cli::Var = tidewell_core::cli::Var::new(
        "TIDEWELL_WS_BACKPLANE_URL",
        "",
        "redis://... or redis-cluster://... joining the rooms of every gateway node (unset: REDIS_URL, else none)",
    );

    /// `jwt_secret`, defaults for the rest (the node id from the host name and process).
    pub fn new(jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_secret: jwt_secret.into(),
            auth_url: "http://127.0.0.1:8081".into(),
            payments_url: "http://127.0.0.1:8082".into(),
            admin_url: "http://127.0.0.1:8083".into(),
            profile_url: "http://127.0.0.1:8084".into(),
            cors_origins: Vec::new(),
            auth_per_minute: 10,
            api_per_minute: 100,
            queue_service: "gateway".into(),
            node_id: default_node_id(),
            queue_expires: Duration::from_secs(600),
            backplane_url: None,
            redis_url: None,
            redis_tls: tidewell_core::tls::ClientTls::default(),
            tls: None,
            redirect_addr: None,
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        let env = Env::process();
        let secret = env.required(
            tidewell_service_kit::JWT_SECRET.name,
            "a secret of at least 32 bytes",
        )?;
        let mut c = Self::new(secret.into_bytes());
        if let Some(a) = env.parse("GATEWAY_ADDR", "an address such as 127.0.0.1:8080")? {
            c.addr = a;
        }
        for (name, slot) in [
            ("GATEWAY_AUTH_URL", &mut c.auth_url),
            ("GATEWAY_PAYMENTS_URL", &mut c.payments_url),
            ("GATEWAY_ADMIN_URL", &mut c.admin_url),
            ("GATEWAY_PROFILE_URL", &mut c.profile_url),
        ] {
            if let Some(v) = env.string(name)? {
                *slot = v;
            }
        }
        if let Some(list) = env.string("GATEWAY_CORS_ORIGINS")? {
            c.cors_origins = list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(n) = env.parse("GATEWAY_AUTH_PER_MINUTE", "a whole number")? {
            c.auth_per_minute = n;
        }
        if let Some(n) = env.parse("GATEWAY_API_PER_MINUTE", "a whole number")? {
            c.api_per_minute = n;
        }
        c.node_id = tidewell_service_kit::node_id(&env)?;
        if let Some(d) = env.duration("GATEWAY_QUEUE_EXPIRES")? {
            c.queue_expires = d;
        }
        c.redis_url = env.string("REDIS_URL")?;
        c.redis_tls = tidewell_core::tls::ClientTls::from_source(&env, "GATEWAY_REDIS")?;
        c.backplane_url = backplane_url(
            env.string("TIDEWELL_WS_BACKPLANE_URL")?
                .or(c.redis_url.clone()),
        );
        c.tls = tidewell_core::tls::ServerTls::from_source(&env, "GATEWAY")?;
        c.redirect_addr = env.parse("GATEWAY_REDIRECT_ADDR", "an address such as 0.0.0.0:80")?;
        if c.redirect_addr.is_some() && c.tls.is_none() {
            return Err(tidewell_core::Error::InvalidVar {
                name: "GATEWAY_REDIRECT_ADDR".into(),
                reason: "it redirects to HTTPS, which is off".into(),
                expected: "GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE set too",
            });
        }
        Ok(c)
    }

    /// The queues the gateway consumes, to add to the hub's topology:
    ///
    /// - its node's own, `<queue_service>.<node_id>.events`, deleted by the broker
    ///   [`queue_expires`](Self::queue_expires) after the node is gone: the session ends, which
    ///   every node must see to refuse the session's token and close its connections; and the
    ///   payment events too when there is no backplane, since each node then feeds its own rooms;
    /// - with a backplane, `<queue_service>.events`, shared by every node: each payment event is
    ///   taken by one node, which publishes it through the backplane to the rooms of all.
    pub fn queues(&self) -> Vec<ServiceQueue> {
        let own = ServiceQueue::per_node(&self.queue_service, &self.node_id, self.queue_expires)
            .bind("auth.session.revoked")
            .bind("auth.user.logout");
        if self.backplane_url.is_some() {
            vec![
                own,
                ServiceQueue::new(&self.queue_service).bind(PAYMENT_EVENTS),
            ]
        } else {
            vec![own.bind(PAYMENT_EVENTS)]
        }
    }
}

/// The backplane's URL if `url` is a Redis one: `redis://` or `rediss://` (one Redis, every
/// node keeps every room), `redis-cluster://` or `rediss-cluster://` (sharded pub/sub, each
/// node subscribes to the rooms it has). Any other scheme is said once at start and ignored:
/// each node then keeps its own rooms.
pub fn backplane_url(url: Option<String>) -> Option<String> {
    let url = url?;
    let scheme = url.split("://").next().unwrap_or_default();
    if matches!(
        scheme,
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster"
    ) {
        return Some(url);
    }
    tracing::warn!(
        scheme,
        "the WebSocket backplane needs a Redis URL (redis://, rediss://, redis-cluster://, rediss-cluster://): each gateway node keeps its own rooms, so a client recovers missed events only on the node it was on"
    );
    None
}

/// The events the gateway turns into room messages.
const PAYMENT_EVENTS: &str = "payments.payment.*";

/// [`tidewell_service_kit::node_id`] from the process environment, or `gateway-<pid>` if
/// `TIDEWELL_NODE_ID` is invalid there ([`GatewayConfig::from_env`] reports that).
fn default_node_id() -> String {
    tidewell_service_kit::node_id(&Env::process())
        .unwrap_or_else(|_| format!("gateway-{}", std::process::id()))
}

#[cfg(test)]
mod vars_tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("config.rs"), super::GatewayConfig::VARS);
    }
}
