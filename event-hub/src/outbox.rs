//! The transactional outbox (feature `outbox`): an event is written in the same database
//! transaction as the change it describes, and a relay publishes it through the hub afterwards.
//!
//! Either both the change and its event are stored, or neither: no event for a rolled-back change,
//! no change without its event, whatever crashes when. The relay publishes pending rows in the
//! order they were written, with confirms, and marks them published only after the broker
//! confirmed them; a crash between the two publishes the event again with the same id, which the
//! consumers' de-duplication drops (at least once, effectively once).
//!
//! One table, `tidewell_outbox`, on Postgres or SQLite through sqlx's `Any` driver: the same
//! statements on both (`$n` parameters, integers for times). On Postgres several relays may run at
//! once (`FOR UPDATE SKIP LOCKED`).
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! use tidewell_core::Event;
//! use tidewell_event_hub::outbox::Outbox;
//! use tidewell_event_hub::{Hub, ServiceQueue, Subscription, Topology};
//!
//! #[derive(Serialize, Deserialize)]
//! struct UserCreated { id: u64 }
//! impl Event for UserCreated { const TYPE: &'static str = "auth.user.created"; const VERSION: u16 = 1; }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::memory("auth", Topology::new().service(ServiceQueue::new("admin").bind("auth.#"))).await?;
//! let pool = tidewell_event_hub::outbox::connect("sqlite::memory:").await?;
//! let outbox = Outbox::new(pool.clone()).await?;
//!
//! let mut tx = pool.begin().await?;
//! // ... the change itself, in `tx` ...
//! outbox.add(&mut tx, &hub.envelope(UserCreated { id: 7 })).await?;
//! tx.commit().await?;
//!
//! assert_eq!(outbox.pending().await?, 1);
//! assert_eq!(outbox.relay_once(&hub).await?, 1);   // or outbox.spawn_relay(hub, ..)
//! assert_eq!(outbox.pending().await?, 0);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{Any, AnyArguments};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Arguments as _, AssertSqlSafe, Execute as _, Row as _};
use tidewell_core::{Backoff, Envelope, RawEnvelope, propagation};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{Error, Hub};

/// A pooled connection idle longer than this is pinged before use.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Rows published per round trip.
const BATCH: i64 = 100;
/// Attempts after which a row is left aside (reported by [`Outbox::stuck`]) instead of retried.
const MAX_ATTEMPTS: i64 = 20;

/// The outbox table and its relay. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    pool: AnyPool,
    postgres: bool,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field(
                "backend",
                &if self.postgres { "postgres" } else { "sqlite" },
            )
            .finish_non_exhaustive()
    }
}

/// A pool for `url` (`postgres://…` or `sqlite:…`), with sqlx's drivers installed: the pool an
/// application hands to [`Outbox::new`] and uses for its own tables too.
pub async fn connect(url: &str) -> Result<AnyPool, Error> {
    sqlx::any::install_default_drivers();
    let options: AnyConnectOptions = url.parse().map_err(|e| db("parse the database URL", e))?;
    // sqlx pings a connection before handing it out (a round trip on PostgreSQL) by default;
    // only one idle for over a second is checked here: under load a connection has just answered
    // (and sqlx pings each on its release).
    let mut pool = AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_CHECK {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        });
    if url.starts_with("sqlite::memory:") || url.contains("mode=memory") {
        // Each connection to an in-memory SQLite database is a database of its own: keep one.
        pool = pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    } else if url.starts_with("sqlite:") {
        // SQLite takes one writer at a time: writers on several connections wait for each
        // other in SQLite's busy handler (sleeps of 1 to 100 ms), so one connection, always
        // open, serves every statement in turn. A write-ahead log with `synchronous = NORMAL`:
        // a commit appends to the log without an fsync (the log is synced at checkpoints); a
        // crash of the process loses nothing, a power loss the last commits at most.
        pool = pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *conn, "PRAGMA journal_mode = WAL").await?;
                    sqlx::Executor::execute(&mut *conn, "PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
    }
    pool.connect_with(options).await.map_err(|e| {
        // A refused TLS handshake (sslmode=verify-full and friends) says why, naming the host.
        let host = url
            .split_once('@')
            .map_or(url, |(_, rest)| rest)
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        match tidewell_core::tls::explain(host, &e) {
            Some(why) => db("connect to the outbox database", why),
            None => db("connect to the outbox database", e),
        }
    })
}

fn db(operation: &'static str, e: impl Into<crate::BoxError>) -> Error {
    Error::Outbox {
        operation,
        source: e.into(),
    }
}

/// `envelope` as the JSON an outbox row holds, with `traceparent` added when given.
fn encode<T: Serialize>(
    envelope: &Envelope<T>,
    traceparent: Option<String>,
) -> Result<String, serde_json::Error> {
    let Some(traceparent) = traceparent else {
        return serde_json::to_string(envelope);
    };
    let mut value = serde_json::to_value(envelope)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("traceparent".to_owned(), traceparent.into());
    }
    serde_json::to_string(&value)
}

/// An outbox row's values, and the span `outbox.write` its write runs in.
struct Row {
    id: String,
    event_type: String,
    body: String,
    created_at: i64,
}

impl Row {
    /// The row for `envelope`: stored with the new span's context when it has no
    /// `traceparent`, so that the relay's publish joins the writer's trace.
    fn of<T: Serialize>(envelope: &Envelope<T>) -> Result<(Self, tracing::Span), Error> {
        let span = tracing::info_span!(
            "outbox.write",
            event_type = %envelope.event_type(),
            message_id = %envelope.id(),
        );
        let traceparent = match envelope.traceparent() {
            Some(_) => None,
            None => propagation::traceparent_of(&span),
        };
        let body = encode(envelope, traceparent).map_err(|source| {
            Error::Envelope(tidewell_core::Error::Encode {
                event_type: envelope.event_type().to_owned(),
                source,
            })
        })?;
        let row = Self {
            id: envelope.id().to_string(),
            event_type: envelope.event_type().to_owned(),
            body,
            created_at: now_ms(),
        };
        Ok((row, span))
    }

    /// Inserts the row on `conn` (in the caller's transaction).
    async fn insert(self, conn: &mut AnyConnection) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO tidewell_outbox (id, event_type, body, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(self.id)
        .bind(self.event_type)
        .bind(self.body)
        .bind(self.created_at)
        .execute(conn)
        .await
        .map_err(|e| db("write an event to the outbox", e))?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Outbox {
    /// The outbox on `pool` (from [`connect`], or any `AnyPool` on Postgres or SQLite); creates
    /// its table if missing.
    pub async fn new(pool: AnyPool) -> Result<Self, Error> {
        let postgres = pool
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres");
        let seq = if postgres {
            "seq BIGSERIAL PRIMARY KEY"
        } else {
            "seq INTEGER PRIMARY KEY AUTOINCREMENT"
        };
        let create = format!(
            "CREATE TABLE IF NOT EXISTS tidewell_outbox (
                {seq},
                id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                published_at BIGINT,
                attempts BIGINT NOT NULL DEFAULT 0,
                last_error TEXT
            )"
        );
        // Several nodes starting at once on one Postgres would race on `CREATE ... IF NOT
        // EXISTS` (which is not atomic there: a unique violation on pg_type): one transaction
        // holding an advisory lock creates the table and its index at a time.
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| db("create the outbox table", e))?;
        if postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7465787401)")
                .execute(&mut *tx)
                .await
                .map_err(|e| db("lock the outbox table's creation", e))?;
        }
        sqlx::query(AssertSqlSafe(create))
            .execute(&mut *tx)
            .await
            .map_err(|e| db("create the outbox table", e))?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS tidewell_outbox_pending ON tidewell_outbox (seq) \
             WHERE published_at IS NULL",
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| db("create the outbox index", e))?;
        tx.commit()
            .await
            .map_err(|e| db("create the outbox table", e))?;
        Ok(Self {
            pool,
            postgres,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Writes `envelope` in the caller's transaction (`&mut tx` of `pool.begin()`): it is
    /// published if and only if that transaction commits. Call [`notify`](Self::notify) after
    /// the commit for the relay to publish at once rather than at its next poll.
    ///
    /// The write is the span `outbox.write`; an envelope without a `traceparent` is stored with
    /// this span's (when traces are exported), so that the relay's publish, which runs later in
    /// another task, joins the writer's trace.
    pub async fn add<T: Serialize>(
        &self,
        tx: &mut AnyConnection,
        envelope: &Envelope<T>,
    ) -> Result<(), Error> {
        let (row, span) = Row::of(envelope)?;
        row.insert(tx).instrument(span).await
    }

    /// Runs `statement` (one `INSERT`, `UPDATE` or `DELETE` on this outbox's pool, without
    /// `RETURNING`) and writes `envelope` with it, atomically, if and only if the statement
    /// changed a row; answers whether it did. Then wakes the relay.
    ///
    /// The single-change form of [`add`](Self::add), for the hot path: on PostgreSQL the change
    /// and its event are one statement (`WITH change AS (… RETURNING 1) INSERT INTO
    /// tidewell_outbox … WHERE EXISTS …`), so one round trip instead of the four of `BEGIN`, the
    /// change, the event and `COMMIT`; on SQLite, one transaction. Traced like
    /// [`add`](Self::add).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use tidewell_core::Event;
    /// # use tidewell_event_hub::outbox::Outbox;
    /// # use tidewell_event_hub::{Hub, Topology};
    /// # #[derive(Serialize, Deserialize)]
    /// # struct UserCreated { id: i64 }
    /// # impl Event for UserCreated { const TYPE: &'static str = "auth.user.created"; const VERSION: u16 = 1; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let hub = Hub::memory("auth", Topology::new()).await?;
    /// let pool = tidewell_event_hub::outbox::connect("sqlite::memory:").await?;
    /// sqlx::query("CREATE TABLE users (id BIGINT PRIMARY KEY)").execute(&pool).await?;
    /// let outbox = Outbox::new(pool.clone()).await?;
    ///
    /// let insert = || sqlx::query("INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING").bind(7_i64);
    /// assert!(outbox.write(insert(), &hub.envelope(UserCreated { id: 7 })).await?);
    /// // Nothing changed, so no event:
    /// assert!(!outbox.write(insert(), &hub.envelope(UserCreated { id: 7 })).await?);
    /// assert_eq!(outbox.pending().await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn write<T: Serialize>(
        &self,
        mut statement: sqlx::query::Query<'_, Any, AnyArguments>,
        envelope: &Envelope<T>,
    ) -> Result<bool, Error> {
        let (row, span) = Row::of(envelope)?;
        let changed = async {
            if self.postgres {
                let mut args = statement
                    .take_arguments()
                    .map_err(|e| db("read the statement's arguments", e))?
                    .unwrap_or_default();
                let n = args.len();
                let sql = format!(
                    "WITH change AS ({} RETURNING 1) INSERT INTO tidewell_outbox \
                     (id, event_type, body, created_at) SELECT ${}, ${}, ${}, ${} \
                     WHERE EXISTS (SELECT 1 FROM change)",
                    statement.sql().as_str(),
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4
                );
                for value in [row.id, row.event_type, row.body] {
                    args.add(value).map_err(|e| db("bind the outbox row", e))?;
                }
                args.add(row.created_at)
                    .map_err(|e| db("bind the outbox row", e))?;
                let done = sqlx::query_with(AssertSqlSafe(sql), args)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| db("write a change and its event", e))?;
                Ok::<_, Error>(done.rows_affected() > 0)
            } else {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| db("begin a transaction", e))?;
                let changed = statement
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db("write a change", e))?
                    .rows_affected()
                    > 0;
                if changed {
                    row.insert(&mut tx).await?;
                }
                tx.commit()
                    .await
                    .map_err(|e| db("commit a change and its event", e))?;
                Ok(changed)
            }
        }
        .instrument(span)
        .await?;
        if changed {
            self.notify();
        }
        Ok(changed)
    }

    /// Wakes the relay of this process (after a commit).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Events written and not yet published.
    pub async fn pending(&self) -> Result<u64, Error> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM tidewell_outbox WHERE published_at IS NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| db("count pending outbox events", e))?;
        let n: i64 = row
            .try_get("n")
            .map_err(|e| db("count pending outbox events", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How long the oldest event not yet published has waited (`None`: none waits). An
    /// operator's backlog figure: it grows while the broker is down or the relay is stuck.
    pub async fn oldest_pending_age(&self) -> Result<Option<Duration>, Error> {
        let row = sqlx::query(
            "SELECT MIN(created_at) AS t FROM tidewell_outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db("find the oldest pending outbox event", e))?;
        let t: Option<i64> = row
            .try_get("t")
            .map_err(|e| db("find the oldest pending outbox event", e))?;
        Ok(
            t.map(|t| {
                Duration::from_millis(u64::try_from(now_ms().saturating_sub(t)).unwrap_or(0))
            }),
        )
    }

    /// Events the relay gave up on after 20 failed attempts (their `last_error` says why); they
    /// stay in the table for an operator.
    pub async fn stuck(&self) -> Result<u64, Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM tidewell_outbox WHERE published_at IS NULL AND attempts >= $1",
        )
        .bind(MAX_ATTEMPTS)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db("count stuck outbox events", e))?;
        let n: i64 = row
            .try_get("n")
            .map_err(|e| db("count stuck outbox events", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes published events older than `age`; answers how many.
    pub async fn prune(&self, age: Duration) -> Result<u64, Error> {
        let cutoff = now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        let done = sqlx::query(
            "DELETE FROM tidewell_outbox WHERE published_at IS NOT NULL AND published_at < $1",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await
        .map_err(|e| db("prune the outbox", e))?;
        Ok(done.rows_affected())
    }

    /// Publishes up to 100 pending events, oldest first, all in flight at once; marks those the
    /// broker confirmed. Answers how many were published; fails with the first publish error
    /// after marking the others (the failed ones are retried by the next call).
    // Long: one claim-publish-mark pass (in one transaction on Postgres); its steps share the batch
    // and the transaction, and splitting them would only pass both around.
    pub async fn relay_once(&self, hub: &Hub) -> Result<usize, Error> {
        // Postgres: the rows stay locked (SKIP LOCKED) until marked, so relays in several
        // processes share the work. SQLite: no transaction across the publish (a read
        // transaction that later writes fails at once when a writer got in between); one relay
        // per database file.
        let mut tx = if self.postgres {
            Some(
                self.pool
                    .begin()
                    .await
                    .map_err(|e| db("begin an outbox transaction", e))?,
            )
        } else {
            None
        };
        macro_rules! on {
            ($query:expr, $method:ident) => {
                match tx.as_mut() {
                    Some(tx) => $query.$method(&mut **tx).await,
                    None => $query.$method(&self.pool).await,
                }
            };
        }
        let select = if self.postgres {
            "SELECT seq, body FROM tidewell_outbox WHERE published_at IS NULL AND attempts < $1 \
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED"
        } else {
            "SELECT seq, body FROM tidewell_outbox WHERE published_at IS NULL AND attempts < $1 \
             ORDER BY seq LIMIT $2"
        };
        let rows = on!(
            sqlx::query(select).bind(MAX_ATTEMPTS).bind(BATCH),
            fetch_all
        )
        .map_err(|e| db("read pending outbox events", e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut envelopes = Vec::with_capacity(rows.len());
        let mut failures: Vec<(i64, String)> = Vec::new();
        for row in &rows {
            let seq: i64 = row
                .try_get("seq")
                .map_err(|e| db("read an outbox row", e))?;
            let body: String = row
                .try_get("body")
                .map_err(|e| db("read an outbox row", e))?;
            match RawEnvelope::parse(body.as_bytes()) {
                Ok(env) => {
                    seqs.push(seq);
                    envelopes.push(env);
                }
                Err(e) => failures.push((seq, e.to_string())),
            }
        }
        let results = hub.publish_batch(&envelopes).await;
        let mut published_seqs = Vec::with_capacity(seqs.len());
        let mut first_error = None;
        for (seq, result) in seqs.into_iter().zip(results) {
            match result {
                Ok(()) => published_seqs.push(seq),
                Err(e) => {
                    failures.push((seq, e.to_string()));
                    first_error.get_or_insert(e);
                }
            }
        }
        let published = published_seqs.len();
        if !published_seqs.is_empty() {
            // One statement for the batch: SQLite commits once, not once per row.
            let marks = (2..published_seqs.len() + 2)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql =
                format!("UPDATE tidewell_outbox SET published_at = $1 WHERE seq IN ({marks})");
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now_ms());
            for seq in published_seqs {
                query = query.bind(seq);
            }
            on!(query, execute).map_err(|e| db("mark outbox events published", e))?;
        }
        for (seq, error) in &failures {
            on!(
                sqlx::query(
                    "UPDATE tidewell_outbox SET attempts = attempts + 1, last_error = $1 \
                     WHERE seq = $2",
                )
                .bind(error.clone())
                .bind(*seq),
                execute
            )
            .map_err(|e| db("record an outbox failure", e))?;
        }
        if let Some(tx) = tx {
            tx.commit()
                .await
                .map_err(|e| db("commit the outbox marks", e))?;
        }
        match first_error {
            Some(e) => Err(e),
            None if !failures.is_empty() => Err(db(
                "read an outbox row",
                format!(
                    "{} rows are not envelopes: {}",
                    failures.len(),
                    failures.first().map_or("", |f| f.1.as_str())
                ),
            )),
            None => Ok(published),
        }
    }

    /// Runs the relay on the current tokio runtime until `stop` is cancelled: publishes
    /// everything pending, then waits for [`notify`](Self::notify) or `poll` (another process may
    /// write to the same table); after a failure it waits per `backoff` and tries again.
    pub fn spawn_relay(
        &self,
        hub: Hub,
        poll: Duration,
        backoff: Backoff,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            let mut rng = fastrand::Rng::new();
            loop {
                let wait = match outbox.relay_once(&hub).await {
                    Ok(n) if n > 0 => {
                        attempt = 0;
                        continue;
                    }
                    Ok(_) => {
                        attempt = 0;
                        poll
                    }
                    Err(Error::ShuttingDown) => return,
                    Err(error) => {
                        let delay = backoff.delay(attempt, &mut rng);
                        attempt = attempt.saturating_add(1);
                        tracing::warn!(%error, ?delay, "outbox relay failed; retrying");
                        delay
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = outbox.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}
