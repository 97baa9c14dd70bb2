//! The settings every service has.

use std::net::SocketAddr;

use sqlx::AnyPool;
use sqlx::migrate::Migrator;
use tidewell_auth::Verifier;
use tidewell_core::cli::Var;
use tidewell_core::config::Env;
use tokio::net::TcpListener;

use crate::ListenError;

/// `TIDEWELL_JWT_SECRET` as `--help` lists it: the HS256 secret every service shares (required
/// by each service on its own).
pub const JWT_SECRET: Var = Var::new(
    "TIDEWELL_JWT_SECRET",
    "required",
    "HS256 secret shared by every service (32+ bytes)",
);

/// `TIDEWELL_NODE_ID` as `--help` lists it: the name of this process among the nodes of a
/// deployment, which names its own queues.
pub const NODE_ID: Var = Var::new(
    "TIDEWELL_NODE_ID",
    "<host name>-<process id>",
    "this node's name among several (letters, digits, - and _): names its own queues",
);

/// This node's name: `TIDEWELL_NODE_ID` from `env`, else `<host name>-<process id>` (so two
/// processes on one host differ). Letters, digits, `-` and `_`, at most 64 characters; other
/// characters of the host name become `-`.
///
/// ```
/// use tidewell_core::config::Env;
/// let id = tidewell_service_kit::node_id(&Env::from_pairs([("TIDEWELL_NODE_ID", "eu-1")]))?;
/// assert_eq!(id, "eu-1");
/// let bad = tidewell_service_kit::node_id(&Env::from_pairs([("TIDEWELL_NODE_ID", "a b")]));
/// assert!(bad.is_err());
/// # Ok::<(), tidewell_core::Error>(())
/// ```
pub fn node_id(env: &Env) -> Result<String, tidewell_core::Error> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if let Some(id) = env.string(NODE_ID.name)? {
        if valid(&id) {
            return Ok(id);
        }
        return Err(tidewell_core::Error::InvalidVar {
            name: NODE_ID.name.into(),
            reason: format!(
                "{id:?} has characters other than letters, digits, - and _, or is longer than 64"
            ),
            expected: "a name such as gateway-1",
        });
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let host = if host.is_empty() {
        "node".to_owned()
    } else {
        host
    };
    Ok(format!("{host}-{}", std::process::id()))
}

/// The variables of one service's [`CommonConfig`]: where it listens (`<AREA>_ADDR`) and its
/// database (`<AREA>_DATABASE_URL`), with their defaults. A service lists them in its `VARS`
/// after [`JWT_SECRET`].
///
/// ```
/// use tidewell_service_kit::{CommonConfig, CommonVars};
///
/// const COMMON: CommonVars = CommonVars::new(
///     "GREETER_ADDR",
///     "127.0.0.1:8090",
///     "GREETER_DATABASE_URL",
///     "sqlite:./data/greeter.db?mode=rwc",
/// );
/// let config = CommonConfig::new(COMMON, "sqlite::memory:", b"a secret of at least 32 bytes!!!".to_vec());
/// assert_eq!(config.addr.to_string(), "127.0.0.1:8090");
/// assert_eq!(COMMON.addr.name, "GREETER_ADDR");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommonVars {
    /// `<AREA>_ADDR`, whose default is an address such as `127.0.0.1:8081`.
    pub addr: Var,
    /// `<AREA>_DATABASE_URL`, whose default is the URL of a SQLite file.
    pub database_url: Var,
}

impl CommonVars {
    /// The variable `addr` with its `default_addr`, the variable `database_url` with its
    /// `default_database_url`.
    pub const fn new(
        addr: &'static str,
        default_addr: &'static str,
        database_url: &'static str,
        default_database_url: &'static str,
    ) -> Self {
        Self {
            addr: Var::new(addr, default_addr, "where to listen"),
            database_url: Var::new(
                database_url,
                default_database_url,
                "postgres://... or sqlite:...",
            ),
        }
    }

    /// The default address. A default that is not an address is a bug that debug builds (and
    /// so every test that makes the service's configuration) stop on; release builds take
    /// `127.0.0.1:0`, any free port.
    pub fn default_addr(&self) -> SocketAddr {
        let parsed = self.addr.default.parse();
        debug_assert!(
            parsed.is_ok(),
            "the default of {} is not an address: {:?}",
            self.addr.name,
            self.addr.default
        );
        parsed.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// What every service's configuration holds: where its binary listens, its database and the
/// JWT secret that verifies access tokens. Its `Debug` hides the secret and the database
/// password.
#[derive(Clone)]
#[non_exhaustive]
pub struct CommonConfig {
    /// Where the binary listens (`<AREA>_ADDR`).
    pub addr: SocketAddr,
    /// `postgres://…` or `sqlite:<file>?mode=rwc` (`<AREA>_DATABASE_URL`).
    pub database_url: String,
    /// The HS256 secret shared with the services that verify tokens (`TIDEWELL_JWT_SECRET`, at
    /// least 32 bytes).
    pub jwt_secret: Vec<u8>,
    vars: CommonVars,
}

impl std::fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonConfig")
            .field("addr", &self.addr)
            .field(
                "database_url",
                &tidewell_core::config::redact_url(&self.database_url),
            )
            .field("jwt_secret", &"<redacted>")
            .finish()
    }
}

impl CommonConfig {
    /// `database_url` and `jwt_secret`, and the default address of `vars`.
    pub fn new(
        vars: CommonVars,
        database_url: impl Into<String>,
        jwt_secret: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            addr: vars.default_addr(),
            database_url: database_url.into(),
            jwt_secret: jwt_secret.into(),
            vars,
        }
    }

    /// From `env`: [`JWT_SECRET`] (required) and the variables of `vars`.
    pub fn from_source(env: &Env, vars: CommonVars) -> Result<Self, tidewell_core::Error> {
        let secret = env.required(JWT_SECRET.name, "a secret of at least 32 bytes")?;
        let database_url = env
            .string(vars.database_url.name)?
            .unwrap_or_else(|| vars.database_url.default.to_owned());
        let mut c = Self::new(vars, database_url, secret.into_bytes());
        if let Some(addr) = env.parse(vars.addr.name, "an address such as 127.0.0.1:8080")? {
            c.addr = addr;
        }
        Ok(c)
    }

    /// Binds [`addr`](Self::addr); the error names the variable that sets it.
    pub async fn listen(&self) -> Result<TcpListener, ListenError> {
        crate::listen(self.addr, self.vars.addr.name).await
    }

    /// The verifier of the access tokens signed with [`jwt_secret`](Self::jwt_secret).
    pub fn verifier(&self) -> Result<Verifier, tidewell_auth::Error> {
        crate::verifier(&self.jwt_secret)
    }

    /// The database (see [`database`](crate::database())) with `migrations` run.
    pub async fn database(
        &self,
        migrations: &Migrator,
    ) -> Result<AnyPool, tidewell_event_hub::Error> {
        crate::database(&self.database_url, migrations).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: CommonVars = CommonVars::new(
        "X_ADDR",
        "127.0.0.1:8089",
        "X_DATABASE_URL",
        "sqlite:./data/x.db?mode=rwc",
    );

    #[test]
    fn reads_the_variables_it_is_given_with_their_defaults() -> Result<(), tidewell_core::Error> {
        let env = Env::from_pairs([("TIDEWELL_JWT_SECRET", "s")]);
        let c = CommonConfig::from_source(&env, VARS)?;
        assert_eq!(c.addr, SocketAddr::from(([127, 0, 0, 1], 8089)));
        assert_eq!(c.database_url, "sqlite:./data/x.db?mode=rwc");
        assert_eq!(c.jwt_secret, b"s");
        let env = Env::from_pairs([
            ("TIDEWELL_JWT_SECRET", "s"),
            ("X_ADDR", "0.0.0.0:1"),
            ("X_DATABASE_URL", "postgres://u:pw@db/x"),
        ]);
        let c = CommonConfig::from_source(&env, VARS)?;
        assert_eq!(c.addr, SocketAddr::from(([0, 0, 0, 0], 1)));
        let debug = format!("{c:?}");
        assert!(!debug.contains("pw") && !debug.contains("\"s\""), "{debug}");
        Ok(())
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "the default of X_ADDR is not an address")]
    fn a_default_that_is_not_an_address_stops_debug_builds() {
        let vars = CommonVars::new("X_ADDR", "port 1", "X_DATABASE_URL", "sqlite::memory:");
        let _ = CommonConfig::new(vars, "sqlite::memory:", "secret");
    }

    #[test]
    fn node_id_defaults_to_host_and_process() -> Result<(), tidewell_core::Error> {
        let id = node_id(&Env::from_pairs([("UNRELATED", "1")]))?;
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
        let long = "x".repeat(65);
        assert!(node_id(&Env::from_pairs([("TIDEWELL_NODE_ID", long.as_str())])).is_err());
        Ok(())
    }

    #[test]
    fn a_missing_secret_or_a_bad_address_says_which_variable() {
        let missing = CommonConfig::from_source(&Env::from_pairs([("X_ADDR", "0.0.0.0:1")]), VARS);
        assert!(missing.is_err_and(|e| e.to_string().contains("TIDEWELL_JWT_SECRET")));
        let env = Env::from_pairs([("TIDEWELL_JWT_SECRET", "s"), ("X_ADDR", "port 1")]);
        let bad = CommonConfig::from_source(&env, VARS);
        assert!(bad.is_err_and(|e| e.to_string().contains("X_ADDR")));
    }
}
