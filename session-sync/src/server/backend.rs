//! The two database backends of the registry: one enum, the same SQL on both.
//!
//! Every statement of the registry is written once in the dialect both accept (`$n` parameters,
//! `ON CONFLICT`, `RETURNING`, integers for times) and run through [`on_pool!`], which expands
//! the same code once per pool type. Both backends therefore behave the same by construction,
//! and `tests/registry.rs` checks it.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::Error;

/// The table that records which of the registry's migrations ran. Its own name, so that the
/// registry can share a database with an application that runs sqlx migrations of its own
/// (`_sqlx_migrations`) without the two sets mistaking each other for missing or changed.
const MIGRATIONS_TABLE: &str = "_tidewell_session_sync_migrations";

/// How long an operation waits for a free connection (including connecting).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a single Postgres statement may run (`statement_timeout`).
const STATEMENT_TIMEOUT: &str = "30s";

/// Connections of a Postgres pool made by [`Pool::connect`].
const POSTGRES_CONNECTIONS: u32 = 10;

/// Connections of a file-backed SQLite pool made by [`Pool::connect`] (one writer at a time
/// anyway; WAL lets readers run beside it).
const SQLITE_CONNECTIONS: u32 = 4;

/// A connection pool of either backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$p` bound to the pool of whichever backend `$pool` is (a `&PgPool` or a
/// `&SqlitePool`): the code is written once and compiled once per backend.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::server::backend::Pool::Postgres($p) => $body,
            $crate::server::backend::Pool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Pool {
    /// Connects to `url`: `postgres://…` / `postgresql://…`, or `sqlite:…` (a file, created if
    /// missing, or `sqlite::memory:`).
    pub(crate) async fn connect(url: &str) -> Result<Self, Error> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url)?
                    .application_name("tidewell-session-sync")
                    .options([("statement_timeout", STATEMENT_TIMEOUT)]);
                let pool = PgPoolOptions::new()
                    .max_connections(POSTGRES_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await?;
                Ok(Self::Postgres(pool))
            }
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
                // An in-memory database lives as long as one connection to it: keep exactly one,
                // forever, so every operation sees the same database.
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let pool = if in_memory {
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    SqlitePoolOptions::new().max_connections(SQLITE_CONNECTIONS)
                };
                let options = if in_memory {
                    options
                } else {
                    options.journal_mode(SqliteJournalMode::Wal)
                };
                let pool = pool
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await?;
                Ok(Self::Sqlite(pool))
            }
            _ => Err(Error::UnsupportedUrl(tidewell_core::config::redact_url(
                url,
            ))),
        }
    }

    /// Creates or updates the registry's tables (idempotent; concurrent callers are serialised
    /// by sqlx's migration lock on Postgres).
    pub(crate) async fn migrate(&self) -> Result<(), Error> {
        match self {
            Self::Postgres(pool) => {
                let mut migrator: Migrator = sqlx::migrate!("./migrations/postgres");
                migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
                migrator.run(pool).await?;
            }
            Self::Sqlite(pool) => {
                let mut migrator: Migrator = sqlx::migrate!("./migrations/sqlite");
                migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
                migrator.run(pool).await?;
            }
        }
        Ok(())
    }

    /// `"postgres"` or `"sqlite"`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }
}
