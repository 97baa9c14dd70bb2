//! Configuration from the environment.

use std::time::Duration;

use tidewell_core::cli::Var;
use tidewell_core::config::Env;
use tidewell_service_kit::{CommonConfig, CommonVars, JWT_SECRET};

/// How the auth service runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthConfig {
    /// `AUTH_ADDR`: where the binary listens (default `127.0.0.1:8081`); `AUTH_DATABASE_URL`:
    /// `postgres://…` or `sqlite:<file>?mode=rwc` (default `sqlite:./data/auth.db?mode=rwc`);
    /// `TIDEWELL_JWT_SECRET`: the HS256 secret shared with the services that verify tokens (at
    /// least 32 bytes; required).
    pub common: CommonConfig,
    /// `AUTH_ACCESS_TTL`: access token lifetime (default `15m`).
    pub access_ttl: Duration,
    /// `AUTH_REFRESH_TTL`: refresh token lifetime (default `30d`).
    pub refresh_ttl: Duration,
    /// `AUTH_ADMIN_EMAILS`: comma-separated emails that get the `admin` role when they register.
    pub admin_emails: Vec<String>,
    /// `AUTH_PRUNE_REVOKED_AFTER`: revoked sessions and devices older than this are deleted
    /// (default: the refresh token lifetime, after which no token of theirs is valid anyway).
    pub prune_revoked_after: Option<Duration>,
    /// `AUTH_PRUNE_EVERY`: how often revocations and published outbox rows are pruned (default
    /// `1h`).
    pub prune_every: Duration,
}

impl AuthConfig {
    const COMMON: CommonVars = CommonVars::new(
        "AUTH_ADDR",
        "127.0.0.1:8081",
        "AUTH_DATABASE_URL",
        "sqlite:./data/auth.db?mode=rwc",
    );

    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for
    /// the binary's `--help`).
    pub const VARS: &[Var] = &[
        JWT_SECRET,
        Self::COMMON.addr,
        Self::COMMON.database_url,
        Var::new("AUTH_ACCESS_TTL", "15m", "access token lifetime"),
        Var::new("AUTH_REFRESH_TTL", "30d", "refresh token lifetime"),
        Self::ADMIN_EMAILS,
        Var::new(
            "AUTH_PRUNE_REVOKED_AFTER",
            "",
            "delete revoked sessions and devices older than this (unset: AUTH_REFRESH_TTL)",
        ),
        Var::new(
            "AUTH_PRUNE_EVERY",
            "1h",
            "how often old revocations and published outbox rows are deleted",
        ),
    ];

    /// `AUTH_ADMIN_EMAILS` as `--help` lists it (the platform reads it too).
    pub const ADMIN_EMAILS: Var = Var::new(
        "AUTH_ADMIN_EMAILS",
        "",
        "comma-separated emails that get the admin role",
    );

    /// A configuration with `database_url` and `jwt_secret` and the defaults for the rest.
    pub fn new(database_url: impl Into<String>, jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self::with(CommonConfig::new(Self::COMMON, database_url, jwt_secret))
    }

    fn with(common: CommonConfig) -> Self {
        Self {
            common,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            admin_emails: Vec::new(),
            prune_revoked_after: None,
            prune_every: Duration::from_secs(3600),
        }
    }

    /// From the process environment (see each field).
    pub fn from_env() -> Result<Self, tidewell_core::Error> {
        Self::from_source(&Env::process())
    }

    /// From `env`.
    pub fn from_source(env: &Env) -> Result<Self, tidewell_core::Error> {
        let mut c = Self::with(CommonConfig::from_source(env, Self::COMMON)?);
        if let Some(t) = env.duration("AUTH_ACCESS_TTL")? {
            c.access_ttl = t;
        }
        if let Some(t) = env.duration("AUTH_REFRESH_TTL")? {
            c.refresh_ttl = t;
        }
        c.prune_revoked_after = env.duration("AUTH_PRUNE_REVOKED_AFTER")?;
        if let Some(t) = env.duration("AUTH_PRUNE_EVERY")? {
            c.prune_every = t;
        }
        if let Some(list) = env.string("AUTH_ADMIN_EMAILS")? {
            c.admin_emails = list
                .split(',')
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
                .collect();
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
