//! Configuration from the environment.

use std::net::SocketAddr;

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
    /// The service name of its queue, default `gateway`.
    pub queue_service: String,
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

    /// `jwt_secret`, defaults for the rest.
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

    /// The queue the gateway consumes (payment events for the rooms, session ends), to add to
    /// the hub's topology. Each gateway node needs its own (set `queue_service`).
    pub fn queue(&self) -> ServiceQueue {
        ServiceQueue::new(&self.queue_service)
            .bind("payments.payment.*")
            .bind("auth.session.revoked")
            .bind("auth.user.logout")
    }
}

#[cfg(test)]
mod vars_tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("config.rs"), super::GatewayConfig::VARS);
    }
}
