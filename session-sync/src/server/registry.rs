//! The device registry: which devices a user is signed in on, and their revocation.

use std::fmt;
use std::time::SystemTime;

use tidewell_event_hub::Hub;

use super::backend::{Pool, on_pool};
use super::device_record::{
    Device, DeviceRow, MAX_NAME_LEN, MAX_USER_AGENT_LEN, NewDevice, check_id, clean_text, now_ms,
    unix_ms,
};
use super::event::{RevokeReason, SessionRevoked};
use super::sql::{
    IS_REVOKED, LIST, PRUNE_DEVICES, PRUNE_SESSIONS, RECORD_REVOKED, REGISTER, REVOKE,
    REVOKE_OTHERS, TOUCH,
};
use crate::Error;
use crate::device::describe;

/// The devices of each user, on Postgres or SQLite, and their revocation.
///
/// Cheap to clone; clones share the connection pool and the hub.
///
/// - [`register`](Self::register) on every sign-in (a new session on a known device replaces
///   the old one), [`touch`](Self::touch) now and then while the device is used.
/// - [`list`](Self::list) for the user's "your devices" page: the devices that are **not
///   revoked**, most recently active first.
/// - [`revoke`](Self::revoke) and [`revoke_others`](Self::revoke_others) sign devices out. The
///   revocation is committed first, then, with a hub ([`with_hub`](Self::with_hub)), one
///   [`SessionRevoked`] event per device is published (`auth.session.revoked`); **without a
///   hub, nothing is published**. Gateways learn of revocations from those events
///   ([`RevokedSessions::router`](super::RevokedSessions::router)), the WebSocket bridge closes
///   the session's connections, and the browser's `DeviceSessionSync` logs every tab out.
/// - [`is_revoked`](Self::is_revoked) answers for any session ever revoked, even after its
///   device signed in again with a new session.
///
/// A device of another user is treated exactly like a device that does not exist
/// ([`Error::DeviceNotFound`]), so ids cannot be probed. User, device and session ids must be 1
/// to 256 bytes without control characters ([`Error::InvalidArgument`] otherwise).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
/// use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
///
/// let registry = DeviceRegistry::connect("sqlite::memory:").await?; // or "postgres://…"
/// registry.register(NewDevice::new("user-1", "laptop", "session-a", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")).await?;
/// registry.register(NewDevice::new("user-1", "phone", "session-b", "Mozilla/5.0 (iPhone) Mobile/15E148 Safari/604.1")).await?;
/// assert_eq!(registry.list("user-1").await?.len(), 2);
///
/// // Signed in on the laptop: sign the phone out.
/// let revoked = registry.revoke_others("user-1", "laptop").await?;
/// assert_eq!(revoked[0].device_id, "phone");
/// assert!(registry.is_revoked("session-b").await?);
/// assert_eq!(registry.list("user-1").await?[0].device_id, "laptop");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DeviceRegistry {
    pool: Pool,
    hub: Option<Hub>,
}

impl fmt::Debug for DeviceRegistry {
    // Not the pool: its options hold the database password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceRegistry")
            .field("backend", &self.pool.name())
            .field("hub", &self.hub)
            .finish()
    }
}

impl DeviceRegistry {
    /// Connects to the database of `url` and creates or updates the registry's tables:
    ///
    /// - `postgres://…` or `postgresql://…`: a pool of 10 connections; statements time out after
    ///   30 s, waiting for a connection after 10 s.
    /// - `sqlite:<path>` (created if missing, WAL journal), or `sqlite::memory:` for tests and
    ///   examples (one connection, kept open: the database lives as long as the registry).
    ///
    /// The migrations are recorded in the table `_tidewell_session_sync_migrations`, apart from
    /// an application's own sqlx migrations; the tables are `devices` and `revoked_sessions`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// use tidewell_session_sync::{Error, server::DeviceRegistry};
    ///
    /// let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// assert_eq!(registry.backend(), "sqlite");
    /// let err = DeviceRegistry::connect("mysql://root:secret@db/app").await.unwrap_err();
    /// assert!(matches!(err, Error::UnsupportedUrl(_)));
    /// assert!(!err.to_string().contains("secret"));
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::from_pool(Pool::connect(url).await?).await
    }

    /// A registry on an existing Postgres pool; creates or updates its tables.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), tidewell_session_sync::Error> {
    /// use tidewell_session_sync::server::{DeviceRegistry, sqlx::PgPool};
    ///
    /// let pool = PgPool::connect("postgres://app@127.0.0.1/app").await?;
    /// let registry = DeviceRegistry::from_postgres(pool).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_postgres(pool: sqlx::PgPool) -> Result<Self, Error> {
        Self::from_pool(Pool::Postgres(pool)).await
    }

    /// A registry on an existing SQLite pool; creates or updates its tables. An in-memory
    /// database must be kept to one connection (`max_connections(1)`, no idle timeout), or each
    /// connection sees a database of its own.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// use tidewell_session_sync::server::{DeviceRegistry, sqlx::sqlite::SqlitePoolOptions};
    ///
    /// let pool = SqlitePoolOptions::new()
    ///     .max_connections(1)
    ///     .idle_timeout(None)
    ///     .max_lifetime(None)
    ///     .connect("sqlite::memory:")
    ///     .await?;
    /// let registry = DeviceRegistry::from_sqlite(pool).await?;
    /// assert!(registry.list("user-1").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn from_sqlite(pool: sqlx::SqlitePool) -> Result<Self, Error> {
        Self::from_pool(Pool::Sqlite(pool)).await
    }

    async fn from_pool(pool: Pool) -> Result<Self, Error> {
        pool.migrate().await?;
        Ok(Self { pool, hub: None })
    }

    /// Publishes a [`SessionRevoked`] through `hub` for every device revoked from now on (with
    /// the hub's service as the envelope's `source`). The hub's topology must bind a queue to
    /// `auth.session.revoked` (publishing is mandatory: an event no queue takes is an error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidewell_event_hub::{Hub, ServiceQueue, Topology};
    /// use tidewell_session_sync::server::DeviceRegistry;
    ///
    /// let topology = Topology::new().service(ServiceQueue::new("gateway").bind("auth.session.revoked"));
    /// let hub = Hub::memory("auth", topology).await?;
    /// let registry = DeviceRegistry::connect("sqlite::memory:").await?.with_hub(hub);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        self.pool.name()
    }

    /// Records a sign-in and answers the device as stored.
    ///
    /// A new sign-in on a device the user already has (same user and device id) replaces the
    /// session, updates name, type, user agent and last activity, and clears any revocation
    /// (the old session, if revoked, stays revoked: see [`is_revoked`](Self::is_revoked)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// let first = registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// let again = registry.register(NewDevice::new("user-1", "device-1", "session-2", "")).await?;
    /// assert_eq!(again.session_id, "session-2");
    /// assert_eq!(again.created_at_ms, first.created_at_ms);
    /// assert_eq!(registry.list("user-1").await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn register(&self, device: NewDevice) -> Result<Device, Error> {
        check_id("user id", &device.user_id)?;
        check_id("device id", &device.device_id)?;
        check_id("session id", &device.session_id)?;
        let user_agent = clean_text(&device.user_agent, MAX_USER_AGENT_LEN);
        let mut name = clean_text(&device.name, MAX_NAME_LEN);
        if name.trim().is_empty() {
            name = describe(&user_agent).name;
        }
        let now = now_ms();
        let row: DeviceRow = on_pool!(&self.pool, |pool| {
            sqlx::query_as(REGISTER)
                .bind(&device.user_id)
                .bind(&device.device_id)
                .bind(&device.session_id)
                .bind(&name)
                .bind(device.device_type.as_str())
                .bind(&user_agent)
                .bind(now)
                .fetch_one(pool)
                .await?
        });
        tracing::debug!(device_id = %row.device_id, "device registered");
        Ok(row.into())
    }

    /// Records activity on a device now (its last activity never moves back).
    ///
    /// [`Error::DeviceNotFound`] when the user has no such device, or it is revoked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::{Error, server::{DeviceRegistry, NewDevice}};
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// registry.touch("user-1", "device-1").await?;
    /// let err = registry.touch("user-2", "device-1").await.unwrap_err();
    /// assert!(matches!(err, Error::DeviceNotFound { .. }));
    /// # Ok(()) }
    /// ```
    pub async fn touch(&self, user_id: &str, device_id: &str) -> Result<(), Error> {
        check_id("user id", user_id)?;
        check_id("device id", device_id)?;
        let now = now_ms();
        let touched = on_pool!(&self.pool, |pool| {
            sqlx::query(TOUCH)
                .bind(user_id)
                .bind(device_id)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if touched == 0 {
            return Err(not_found(device_id));
        }
        Ok(())
    }

    /// The user's devices that are not revoked, most recently active first (revoked devices are
    /// not listed; [`is_revoked`](Self::is_revoked) still knows their sessions).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// let devices = registry.list("user-1").await?;
    /// assert_eq!(devices[0].session_id, "session-1");
    /// assert!(registry.list("someone-else").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, user_id: &str) -> Result<Vec<Device>, Error> {
        check_id("user id", user_id)?;
        let rows: Vec<DeviceRow> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(LIST).bind(user_id).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(Device::from).collect())
    }

    /// Revokes one of the user's devices and answers it; with a hub, then publishes its
    /// [`SessionRevoked`] (reason [`RevokeReason::Revoked`]).
    ///
    /// Revoking a device that is already revoked changes nothing stored (its first revocation
    /// time stays) and publishes the event again, so a revocation whose event failed
    /// ([`Error::Publish`]) is completed by calling this again.
    ///
    /// [`Error::DeviceNotFound`] when the user has no such device: a device of another user
    /// gets the same answer and is left alone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::{Error, server::{DeviceRegistry, NewDevice}};
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// let err = registry.revoke("user-2", "device-1").await.unwrap_err();
    /// assert!(matches!(err, Error::DeviceNotFound { .. }));
    /// let device = registry.revoke("user-1", "device-1").await?;
    /// assert!(device.is_revoked());
    /// assert!(registry.is_revoked("session-1").await?);
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, user_id: &str, device_id: &str) -> Result<Device, Error> {
        check_id("user id", user_id)?;
        check_id("device id", device_id)?;
        let now = now_ms();
        let row: Option<DeviceRow> = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let row: Option<DeviceRow> = sqlx::query_as(REVOKE)
                .bind(user_id)
                .bind(device_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = &row {
                sqlx::query(RECORD_REVOKED)
                    .bind(&row.session_id)
                    .bind(&row.user_id)
                    .bind(&row.device_id)
                    .bind(row.revoked_at.unwrap_or(now))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            row
        });
        let device = Device::from(row.ok_or_else(|| not_found(device_id))?);
        tracing::info!(device_id = %device.device_id, "device revoked");
        self.publish(std::slice::from_ref(&device), RevokeReason::Revoked)
            .await?;
        Ok(device)
    }

    /// Revokes every device of the user that is not revoked yet except `keep_device_id` (the
    /// one asking, typically), in one transaction, and answers them, most recently active
    /// first; with a hub, then publishes one [`SessionRevoked`] per device (reason
    /// [`RevokeReason::RevokedOthers`]).
    ///
    /// On [`Error::Publish`] every device is revoked; the message names the devices whose event
    /// failed, and [`revoke`](Self::revoke) on each publishes it again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// for (device, session) in [("a", "s-a"), ("b", "s-b"), ("c", "s-c")] {
    ///     registry.register(NewDevice::new("user-1", device, session, "")).await?;
    /// }
    /// let revoked = registry.revoke_others("user-1", "a").await?;
    /// assert_eq!(revoked.len(), 2);
    /// assert_eq!(registry.list("user-1").await?.len(), 1);
    /// assert!(registry.revoke_others("user-1", "a").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn revoke_others(
        &self,
        user_id: &str,
        keep_device_id: &str,
    ) -> Result<Vec<Device>, Error> {
        check_id("user id", user_id)?;
        check_id("device id", keep_device_id)?;
        let now = now_ms();
        let rows: Vec<DeviceRow> = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let rows: Vec<DeviceRow> = sqlx::query_as(REVOKE_OTHERS)
                .bind(user_id)
                .bind(keep_device_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                sqlx::query(RECORD_REVOKED)
                    .bind(&row.session_id)
                    .bind(&row.user_id)
                    .bind(&row.device_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            rows
        });
        let mut devices: Vec<Device> = rows.into_iter().map(Device::from).collect();
        devices.sort_by(|a, b| {
            b.last_active_at_ms
                .cmp(&a.last_active_at_ms)
                .then_with(|| b.created_at_ms.cmp(&a.created_at_ms))
                .then_with(|| a.device_id.cmp(&b.device_id))
        });
        tracing::info!(revoked = devices.len(), "other devices revoked");
        self.publish(&devices, RevokeReason::RevokedOthers).await?;
        Ok(devices)
    }

    /// Whether `session_id` was revoked: true for the session of a revoked device, and for any
    /// session revoked earlier, even after its device signed in again with a new one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// registry.revoke("user-1", "device-1").await?;
    /// registry.register(NewDevice::new("user-1", "device-1", "session-2", "")).await?;
    /// assert!(registry.is_revoked("session-1").await?);
    /// assert!(!registry.is_revoked("session-2").await?);
    /// # Ok(()) }
    /// ```
    pub async fn is_revoked(&self, session_id: &str) -> Result<bool, Error> {
        check_id("session id", session_id)?;
        let (count,): (i64,) = on_pool!(&self.pool, |pool| {
            sqlx::query_as(IS_REVOKED)
                .bind(session_id)
                .fetch_one(pool)
                .await?
        });
        Ok(count > 0)
    }

    /// Forgets what was revoked before `before`: those sessions (then [`is_revoked`](Self::is_revoked)
    /// answers `false` for them) and those revoked devices. Answers how many sessions were
    /// forgotten.
    ///
    /// Revocations are otherwise kept for good, so run this now and then (daily, say) with
    /// `before` at least the longest lifetime of a session's tokens (refresh tokens included) in
    /// the past: a forgotten session's tokens must all have expired already.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
    /// use std::time::{Duration, SystemTime};
    ///
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// registry.revoke("user-1", "device-1").await?;
    /// // Refresh tokens live 30 days: older revocations are no longer needed.
    /// let month_ago = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    /// assert_eq!(registry.prune_revoked(month_ago).await?, 0);
    /// assert!(registry.is_revoked("session-1").await?);
    /// # Ok(()) }
    /// ```
    pub async fn prune_revoked(&self, before: SystemTime) -> Result<u64, Error> {
        let cutoff = unix_ms(before);
        let sessions = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let sessions = sqlx::query(PRUNE_SESSIONS)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(PRUNE_DEVICES)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            sessions
        });
        tracing::info!(sessions, "old revocations pruned");
        Ok(sessions)
    }

    /// Publishes one event per device, all in flight at once; without a hub, nothing.
    async fn publish(&self, devices: &[Device], reason: RevokeReason) -> Result<(), Error> {
        let Some(hub) = &self.hub else {
            return Ok(());
        };
        let envelopes: Vec<_> = devices
            .iter()
            .map(|d| {
                hub.envelope(SessionRevoked::new(
                    &d.user_id,
                    &d.device_id,
                    &d.session_id,
                    reason,
                ))
            })
            .collect();
        let results = hub.publish_batch(&envelopes).await;
        let mut failed = Vec::new();
        let mut first_error = None;
        for (device, result) in devices.iter().zip(results) {
            if let Err(error) = result {
                tracing::warn!(%error, device_id = %device.device_id, "cannot publish auth.session.revoked");
                failed.push(device.device_id.as_str());
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            None => Ok(()),
            Some(error) => {
                let devices = if failed.len() == 1 {
                    "device"
                } else {
                    "devices"
                };
                Err(Error::Publish(format!(
                    "{error} ({devices} {})",
                    failed.join(", ")
                )))
            }
        }
    }
}

fn not_found(device_id: &str) -> Error {
    Error::DeviceNotFound {
        device_id: device_id.to_owned(),
    }
}
