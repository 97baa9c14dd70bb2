//! The revocation check a gateway runs on every token.

use std::fmt;
use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use tidewell_auth::Claims;
use tidewell_core::Envelope;
use tidewell_event_hub::{HandlerError, Router};

use super::device_record::check_id;
use super::event::SessionRevoked;
use super::registry::DeviceRegistry;
use crate::Error;

/// moka refuses a time to live beyond 1,000 years; longer ones are cut to this.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The sessions a gateway knows to be revoked: a bounded in-memory set fed by the
/// `auth.session.revoked` events, with the [`DeviceRegistry`] behind it.
///
/// Cheap to clone; clones share the set.
///
/// - Feed it: subscribe [`router`](Self::router) to a queue bound to `auth.session.revoked`,
///   **one queue per gateway node** (e.g. `ServiceQueue::new("gateway-<node>")`), so that every
///   node hears of every revocation within the event latency. [`insert`](Self::insert) adds one
///   by hand.
/// - Check tokens: [`permits`](Self::permits) (sync, memory only) inside a synchronous token
///   check; [`is_revoked`](Self::is_revoked) (async) also asks the registry when the set does
///   not know the session, and remembers a revoked answer (for a node that just started, or an
///   entry that was evicted).
///
/// Entries expire `ttl` after they were added: make it the longest token lifetime, after which
/// the revoked session's tokens are refused as expired anyway. The set keeps at most `capacity`
/// sessions, evicting the least recently added first; size it for the revocations of one
/// token lifetime. Sessions are never logged.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tidewell_event_hub::{Hub, ServiceQueue, Subscription, Topology};
/// use tidewell_session_sync::server::{DeviceRegistry, NewDevice, RevokedSessions};
///
/// let topology = Topology::new().service(ServiceQueue::new("gateway-1").bind("auth.session.revoked"));
/// let hub = Hub::memory("auth", topology).await?;
/// let registry = DeviceRegistry::connect("sqlite::memory:").await?.with_hub(hub.clone());
///
/// // On each gateway node:
/// let revoked = RevokedSessions::new(registry.clone(), 100_000, Duration::from_secs(3600));
/// hub.subscribe_router(Subscription::new("gateway-1.events"), revoked.router()).await?;
///
/// registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
/// registry.revoke("user-1", "device-1").await?;
/// tokio::time::timeout(Duration::from_secs(5), async {
///     while !revoked.contains("session-1") {
///         tokio::time::sleep(Duration::from_millis(10)).await;
///     }
/// })
/// .await?;
/// assert!(!revoked.contains("session-2"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RevokedSessions {
    sessions: Cache<String, ()>,
    registry: Option<DeviceRegistry>,
}

impl fmt::Debug for RevokedSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokedSessions")
            .field("entries", &self.sessions.entry_count())
            .field("capacity", &self.sessions.policy().max_capacity())
            .field("ttl", &self.sessions.policy().time_to_live())
            .field("registry", &self.registry)
            .finish()
    }
}

impl RevokedSessions {
    /// A set of at most `capacity` revoked sessions, each kept for `ttl` (the longest token
    /// lifetime), that asks `registry` about sessions it does not know.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// use std::time::Duration;
    /// use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
    ///
    /// let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// let revoked = RevokedSessions::new(registry, 100_000, Duration::from_secs(15 * 60));
    /// assert!(revoked.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn new(registry: DeviceRegistry, capacity: u64, ttl: Duration) -> Self {
        Self::build(Some(registry), capacity, ttl)
    }

    /// Like [`new`](Self::new) without a registry, for a process that does not reach the device
    /// database (a gateway): it learns only through [`insert`](Self::insert) and the hub
    /// subscription ([`router`](Self::router)), and [`is_revoked`](Self::is_revoked) answers
    /// from memory.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidewell_session_sync::server::RevokedSessions;
    ///
    /// let revoked = RevokedSessions::in_memory(100_000, Duration::from_secs(15 * 60));
    /// revoked.insert("session-1");
    /// assert!(revoked.contains("session-1"));
    /// ```
    pub fn in_memory(capacity: u64, ttl: Duration) -> Self {
        Self::build(None, capacity, ttl)
    }

    fn build(registry: Option<DeviceRegistry>, capacity: u64, ttl: Duration) -> Self {
        let sessions = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl.min(MAX_TTL))
            // The newest revocations matter most: never refuse one for being unseen so far,
            // as the default (TinyLFU) admission may.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { sessions, registry }
    }

    /// Whether the set holds `session_id` (memory only, never waits).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use std::time::Duration;
    /// # use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
    /// # let revoked = RevokedSessions::new(DeviceRegistry::connect("sqlite::memory:").await?, 10, Duration::from_secs(60));
    /// revoked.insert("session-1");
    /// assert!(revoked.contains("session-1"));
    /// assert!(!revoked.contains("session-2"));
    /// # Ok(()) }
    /// ```
    pub fn contains(&self, session_id: &str) -> bool {
        self.sessions.contains_key(session_id)
    }

    /// Whether a token with `claims` may pass: false when its session (`sid`) is in the set,
    /// true otherwise, and for tokens without a session (service tokens). Memory only: call it
    /// right after `Verifier::verify` in a synchronous token check.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// # use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
    /// use tidewell_auth::{Issuer, SigningKey};
    /// # let revoked = RevokedSessions::new(DeviceRegistry::connect("sqlite::memory:").await?, 10, Duration::from_secs(60));
    ///
    /// let issuer = Issuer::new(SigningKey::hs256("k1", &[7; 32])?, "auth", "app");
    /// let mut claims = issuer.claims_for("user-1");
    /// claims.sid = Some("session-1".into());
    /// assert!(revoked.permits(&claims));
    /// revoked.insert("session-1");
    /// assert!(!revoked.permits(&claims));
    /// # Ok(()) }
    /// ```
    pub fn permits(&self, claims: &Claims) -> bool {
        claims.sid.as_deref().is_none_or(|sid| !self.contains(sid))
    }

    /// Whether `session_id` is revoked: the set first, then the registry; a revoked answer from
    /// the registry is added to the set. [`Error::InvalidArgument`] for an empty or over-long id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use std::time::Duration;
    /// use tidewell_session_sync::server::{DeviceRegistry, NewDevice, RevokedSessions};
    ///
    /// let registry = DeviceRegistry::connect("sqlite::memory:").await?; // no hub: no events
    /// let revoked = RevokedSessions::new(registry.clone(), 10, Duration::from_secs(60));
    /// registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// registry.revoke("user-1", "device-1").await?;
    /// assert!(!revoked.contains("session-1"));
    /// assert!(revoked.is_revoked("session-1").await?);
    /// assert!(revoked.contains("session-1"));
    /// # Ok(()) }
    /// ```
    pub async fn is_revoked(&self, session_id: &str) -> Result<bool, Error> {
        if self.contains(session_id) {
            return Ok(true);
        }
        let Some(registry) = &self.registry else {
            return Ok(false);
        };
        let revoked = registry.is_revoked(session_id).await?;
        if revoked {
            self.insert(session_id);
        }
        Ok(revoked)
    }

    /// Adds `session_id` to the set.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use std::time::Duration;
    /// # use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
    /// # let revoked = RevokedSessions::new(DeviceRegistry::connect("sqlite::memory:").await?, 10, Duration::from_secs(60));
    /// revoked.insert("session-1");
    /// assert_eq!(revoked.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn insert(&self, session_id: impl Into<String>) {
        self.sessions.insert(session_id.into(), ());
    }

    /// A router for `Hub::subscribe_router` that adds the session of every
    /// [`SessionRevoked`] it receives. Subscribe it to a queue of this node's own, bound to
    /// `auth.session.revoked` (see the type's example); an event with an invalid session id is
    /// dead-lettered.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use std::time::Duration;
    /// # use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
    /// # let revoked = RevokedSessions::new(DeviceRegistry::connect("sqlite::memory:").await?, 10, Duration::from_secs(60));
    /// let router = revoked.router();
    /// assert_eq!(router.event_types(), ["auth.session.revoked"]);
    /// # Ok(()) }
    /// ```
    pub fn router(&self) -> Router {
        let sessions = self.sessions.clone();
        Router::new().route(move |event: Envelope<SessionRevoked>| {
            let session_id = &event.payload().session_id;
            let outcome = check_id("session id", session_id)
                .map(|()| sessions.insert(session_id.clone(), ()))
                .map_err(HandlerError::permanent);
            if outcome.is_ok() {
                tracing::debug!(device_id = %event.payload().device_id, "session revocation learnt");
            }
            async move { outcome }
        })
    }

    /// How many sessions the set holds (after applying pending evictions).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use std::time::Duration;
    /// # use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
    /// let revoked = RevokedSessions::new(DeviceRegistry::connect("sqlite::memory:").await?, 2, Duration::from_secs(60));
    /// for sid in ["a", "b", "c"] {
    ///     revoked.insert(sid);
    /// }
    /// assert_eq!(revoked.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn len(&self) -> u64 {
        self.sessions.run_pending_tasks();
        self.sessions.entry_count()
    }

    /// Whether the set is empty.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use std::time::Duration;
    /// # use tidewell_session_sync::server::{DeviceRegistry, RevokedSessions};
    /// # let revoked = RevokedSessions::new(DeviceRegistry::connect("sqlite::memory:").await?, 10, Duration::from_secs(60));
    /// assert!(revoked.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
