//! Configuration from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use tidewell_core::config::Env;

/// How the auth service runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct AuthConfig {
    /// `AUTH_DATABASE_URL`: `postgres://…` or `sqlite:<file>?mode=rwc`
    /// (default `sqlite:./data/auth.db?mode=rwc`).
    pub database_url: String,
    /// `TIDEWELL_JWT_SECRET`: the HS256 secret shared with the services that verify tokens
    /// (at least 32 bytes; required).
    pub jwt_secret: Vec<u8>,
    /// `AUTH_ACCESS_TTL`: access token lifetime (default `15m`).
    pub access_ttl: Duration,
    /// `AUTH_REFRESH_TTL`: refresh token lifetime (default `30d`).
    pub refresh_ttl: Duration,
    /// `AUTH_ADMIN_EMAILS`: comma-separated emails that get the `admin` role when they register.
    pub admin_emails: Vec<String>,
    /// `AUTH_ADDR`: where the binary listens (default `127.0.0.1:8081`).
    pub addr: SocketAddr,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "database_url",
                &tidewell_core::config::redact_url(&self.database_url),
            )
            .field("jwt_secret", &"<redacted>")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("admin_emails", &self.admin_emails)
            .field("addr", &self.addr)
            .finish()
    }
}

impl AuthConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[tidewell_core::cli::Var] = &[
        tidewell_core::cli::Var::new(
            "TIDEWELL_JWT_SECRET",
            "required",
            "HS256 secret shared by every service (32+ bytes)",
        ),
        tidewell_core::cli::Var::new("AUTH_ADDR", "127.0.0.1:8081", "where to listen"),
        tidewell_core::cli::Var::new(
            "AUTH_DATABASE_URL",
            "sqlite:./data/auth.db?mode=rwc",
            "postgres://... or sqlite:...",
        ),
        tidewell_core::cli::Var::new("AUTH_ACCESS_TTL", "15m", "access token lifetime"),
        tidewell_core::cli::Var::new("AUTH_REFRESH_TTL", "30d", "refresh token lifetime"),
        tidewell_core::cli::Var::new(
            "AUTH_ADMIN_EMAILS",
            "",
            "comma-separated emails that get the admin role",
        ),
    ];

    /// A configuration with `database_url` and `jwt_secret` and the defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            database_url: database_url.into(),
            jwt_secret: jwt_secret.into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            admin_emails: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }

    /// From the process environment (see each field).
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        Self::from_source(&Env::process())
    }

    /// From `env`.
    pub fn from_source(env: &Env) -> Result<Self, tidewell_core::Error> {
        let secret = env.required("TIDEWELL_JWT_SECRET", "a secret of at least 32 bytes")?;
        let mut c = Self::new(
            env.string("AUTH_DATABASE_URL")?
                .unwrap_or_else(|| "sqlite:./data/auth.db?mode=rwc".into()),
            secret.into_bytes(),
        );
        if let Some(t) = env.duration("AUTH_ACCESS_TTL")? {
            c.access_ttl = t;
        }
        if let Some(t) = env.duration("AUTH_REFRESH_TTL")? {
            c.refresh_ttl = t;
        }
        if let Some(list) = env.string("AUTH_ADMIN_EMAILS")? {
            c.admin_emails = list
                .split(',')
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
                .collect();
        }
        if let Some(addr) = env.parse("AUTH_ADDR", "an address such as 127.0.0.1:8081")? {
            c.addr = addr;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod vars_tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("config.rs"), super::AuthConfig::VARS);
    }
}
