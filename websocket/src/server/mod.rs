//! The server: its public API and the state its clones share. The HTTP upgrade is `upgrade`;
//! connections are kept by `registry`, rooms and their histories by `rooms`, fan-out counted
//! by `fanout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;
use tidewell_auth::{Claims, Verifier};
use tidewell_protocol::{PROTOCOL_VERSION, ServerFrame, is_valid_room};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::WsConfig;
use crate::registry::{Conn, ConnectionInfo, Registry};
use crate::rooms::{Rooms, own_rooms};

mod upgrade;

/// Decides whether a connection may join a room that is not one of its own. Its own rooms
/// (`user:<sub>`, `role:<r>` for its roles, `device:<did>`, `broadcast`) are always allowed.
pub type Authorize = dyn Fn(&Claims, &str) -> bool + Send + Sync;

/// Decides, asynchronously, whether a connection may join a room that neither its own rooms nor
/// [`Authorize`] allow (see [`WsServerBuilder::authorize_async`]): it gets the claims and the
/// room name, owned.
pub type AuthorizeAsync =
    dyn Fn(Claims, String) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync;

/// How long an [`AuthorizeAsync`] check may take before the answer is "no".
const AUTHORIZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Decides whether a verified token may connect at all (see [`WsServerBuilder::admit`]).
pub type Admit = dyn Fn(&Claims) -> bool + Send + Sync;

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WsStats {
    /// Open connections.
    pub connections: u64,
    /// Rooms held (with members or history).
    pub rooms: u64,
    /// Upgrades refused for a bad or missing token.
    pub rejected: u64,
    /// Event frames queued to connections.
    pub delivered: u64,
    /// Event frames shed by the drop-oldest or coalesce policies.
    pub shed: u64,
    /// Connections closed as slow consumers (disconnect policy).
    pub slow_disconnects: u64,
    /// Connections closed by the heartbeat.
    pub heartbeat_timeouts: u64,
    /// Bytes queued to all connections now.
    pub queued_bytes: u64,
}

/// The state every clone of a [`WsServer`] shares.
pub(crate) struct ServerState {
    pub(crate) config: Arc<WsConfig>,
    verifier: Verifier,
    authorize: Box<Authorize>,
    authorize_async: Option<Box<AuthorizeAsync>>,
    admit: Box<Admit>,
    registry: Registry,
    rooms: Arc<Rooms>,
    closing: AtomicBool,
    rejected: AtomicU64,
    pub(crate) heartbeat_timeouts: AtomicU64,
    /// Ends the tasks the server owns (the room sweeper, the backplane's): cancelled by
    /// [`WsServer::shutdown`], or when the last clone of the server is dropped.
    stop: CancellationToken,
    #[cfg(feature = "redis")]
    backplane: std::sync::OnceLock<crate::backplane::Backplane>,
}

impl Drop for ServerState {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The WebSocket server: give it upgrade requests with [`WsServer::handle`] (from hyper or axum),
/// publish to rooms with [`WsServer::publish`]. Cheap to clone.
#[derive(Clone)]
pub struct WsServer {
    pub(crate) state: Arc<ServerState>,
}

impl std::fmt::Debug for WsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsServer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Builds a [`WsServer`].
pub struct WsServerBuilder {
    config: WsConfig,
    verifier: Verifier,
    authorize: Box<Authorize>,
    authorize_async: Option<Box<AuthorizeAsync>>,
    admit: Box<Admit>,
}

impl std::fmt::Debug for WsServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsServerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WsServerBuilder {
    /// Sets limits and timings.
    #[must_use]
    pub fn config(mut self, config: WsConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets who may join rooms other than their own (default: nobody).
    #[must_use]
    pub fn authorize(mut self, f: impl Fn(&Claims, &str) -> bool + Send + Sync + 'static) -> Self {
        self.authorize = Box::new(f);
        self
    }

    /// Adds an asynchronous check for rooms that neither the connection's own rooms nor
    /// [`authorize`](Self::authorize) allow: for a decision that needs I/O, such as asking the
    /// service that owns a record whether this user may see it. It runs on the connection's
    /// reader (the connection's later frames wait for it, so its answers keep their order) and
    /// counts as "no" after 5 seconds.
    ///
    /// ```
    /// # use tidewell_auth::{KeySet, Verifier, VerifyingKey};
    /// # use tidewell_websocket::WsServer;
    /// # let verifier = Verifier::new(KeySet::from_keys([VerifyingKey::hs256("k", &[7; 32]).unwrap()]), "iss", "aud");
    /// let server = WsServer::builder(verifier)
    ///     .authorize_async(|claims, room| async move {
    ///         // e.g. ask the payments service whether claims.sub owns the payment in `room`
    ///         room.starts_with("payment:") && claims.has_role("auditor")
    ///     });
    /// ```
    #[must_use]
    pub fn authorize_async<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Claims, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.authorize_async = Some(Box::new(move |claims, room| Box::pin(f(claims, room))));
        self
    }

    /// Sets which verified tokens may connect (default: all). A token refused here gets 401
    /// `session_revoked` before any upgrade. The check runs on every upgrade, so keep it to
    /// memory: e.g. `tidewell_session_sync::server::RevokedSessions::permits`, which a hub
    /// subscription keeps current.
    #[must_use]
    pub fn admit(mut self, f: impl Fn(&Claims) -> bool + Send + Sync + 'static) -> Self {
        self.admit = Box::new(f);
        self
    }

    /// Builds the server; starts a sweeper for idle rooms on the current tokio runtime, which
    /// [`WsServer::shutdown`] (or dropping the last clone of the server) ends.
    pub fn build(self) -> Result<WsServer, Error> {
        self.config.validate()?;
        let config = Arc::new(self.config);
        let rooms = Arc::new(Rooms::new(Arc::clone(&config)));
        let stop = CancellationToken::new();
        let every = (config.history_ttl / 4).max(Duration::from_secs(1));
        tokio::spawn(sweep(Arc::clone(&rooms), every, stop.clone()));
        Ok(WsServer {
            state: Arc::new(ServerState {
                config,
                verifier: self.verifier,
                authorize: self.authorize,
                authorize_async: self.authorize_async,
                admit: self.admit,
                registry: Registry::new(),
                rooms,
                closing: AtomicBool::new(false),
                rejected: AtomicU64::new(0),
                heartbeat_timeouts: AtomicU64::new(0),
                stop,
                #[cfg(feature = "redis")]
                backplane: std::sync::OnceLock::new(),
            }),
        })
    }
}

/// Forgets idle rooms every `every`, until `stop` fires.
async fn sweep(rooms: Arc<Rooms>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => rooms.sweep(),
        }
    }
}

impl WsServer {
    /// A builder verifying tokens with `verifier`.
    pub fn builder(verifier: Verifier) -> WsServerBuilder {
        WsServerBuilder {
            config: WsConfig::default(),
            verifier,
            authorize: Box::new(|_, _| false),
            authorize_async: None,
            admit: Box::new(|_| true),
        }
    }

    /// Publishes an event envelope (any JSON object, normally a `tidewell_core::Envelope`) to
    /// `room`: appended to the room's history, encoded once, queued to every member. With a
    /// backplane ([`WsServer::connect_backplane`]) it goes through Redis to every node, this one
    /// included, in publish order.
    pub fn publish<T: serde::Serialize>(&self, room: &str, envelope: &T) -> Result<(), Error> {
        let json = serde_json::to_string(envelope).map_err(Error::Encode)?;
        self.publish_json(room, &json)
    }

    /// Like [`WsServer::publish`] with the envelope already in JSON.
    pub fn publish_json(&self, room: &str, json: &str) -> Result<(), Error> {
        if !is_valid_room(room) {
            return Err(Error::InvalidRoom(room.to_owned()));
        }
        let event = RawValue::from_string(json.to_owned()).map_err(Error::Encode)?;
        #[cfg(feature = "redis")]
        if let Some(b) = self.state.backplane.get() {
            return b.publish(room, event.get().to_owned());
        }
        self.state.rooms.publish(room, event);
        Ok(())
    }

    /// Joins the nodes sharing `prefix` on the Redis at `url` (feature `redis`): every publish on
    /// any node reaches the members on every node, with the same offsets and epochs everywhere,
    /// so a client recovers with `since` on whichever node it reconnects to. `redis://` or
    /// `rediss://` is one Redis (one channel; every node keeps every room's history);
    /// `redis-cluster://host:port,host:port` or `rediss-cluster://` is a Redis Cluster (each room
    /// in its own slot, sharded pub/sub, a node subscribes to the rooms it has and reads a room's
    /// state from Redis when a client first joins it there). Fails fast if Redis is unreachable;
    /// afterwards a lost subscription is retried by itself (a window the node missed answers
    /// `recovered: false`, or on a cluster is re-read from Redis). TLS URLs use
    /// [`WsConfig::backplane_tls`](crate::WsConfig::backplane_tls).
    #[cfg(feature = "redis")]
    pub async fn connect_backplane(&self, url: &str, prefix: &str) -> Result<(), Error> {
        if self.state.backplane.get().is_some() {
            return Err(Error::BackplaneAttached);
        }
        let b = crate::backplane::Backplane::start(
            url,
            &self.state.config,
            prefix,
            &self.state.rooms,
            self.state.stop.child_token(),
        )
        .await?;
        self.state
            .backplane
            .set(b)
            .map_err(|_| Error::BackplaneAttached)
    }

    /// On a sharded backplane, makes sure this node has each of `rooms` (subscribed, state read
    /// from Redis) before a connection joins it.
    pub(crate) async fn warm(&self, rooms: &[String]) {
        #[cfg(feature = "redis")]
        if let Some(b) = self.state.backplane.get() {
            b.warm(&Arc::downgrade(&self.state.rooms), rooms).await;
        }
        #[cfg(not(feature = "redis"))]
        let _ = rooms;
    }

    /// The open connections of `user`.
    pub fn connections_of_user(&self, user: &str) -> Vec<ConnectionInfo> {
        self.state.registry.find(|c| c.info.user == user)
    }

    /// The open connections of `session`.
    pub fn connections_of_session(&self, session: &str) -> Vec<ConnectionInfo> {
        self.state
            .registry
            .find(|c| c.info.session.as_deref() == Some(session))
    }

    /// Closes every connection of `session` with 4001 (session revoked); answers how many.
    /// They leave their rooms at once (before their close frames are written), so nothing more
    /// reaches them, and no lookup lists them once this returns; [`WsServer::shutdown`] still
    /// waits for their close frames.
    pub fn disconnect_session(&self, session: &str) -> usize {
        let conns = self
            .state
            .registry
            .matching(|c| c.info.session.as_deref() == Some(session) && !c.is_ending());
        for c in &conns {
            c.end(tidewell_protocol::close::SESSION_REVOKED, "session revoked");
            // The connection's task runs this again when it ends: a no-op by then.
            self.state.rooms.leave_all(c);
        }
        conns.len()
    }

    /// Who is in `room` on this node: user ids and their connection counts
    /// ([`WsServer::presence_everywhere`] for every node's).
    pub fn presence(&self, room: &str) -> Vec<(String, usize)> {
        self.state.rooms.presence_of(room)
    }

    /// Who is in `room` on every node of the backplane (feature `redis`): user ids and their
    /// connection counts, sorted; without a backplane, this node's ([`WsServer::presence`]).
    /// Counts only rooms whose kind has presence on ([`WsConfig::presence`](crate::WsConfig::presence)).
    /// A node that stopped without its members leaving stops counting within 30 s.
    #[cfg(feature = "redis")]
    pub async fn presence_everywhere(&self, room: &str) -> Result<Vec<(String, usize)>, Error> {
        match self.state.backplane.get() {
            Some(b) => b.presence(room).await,
            None => Ok(self.presence(room)),
        }
    }

    /// The server's Prometheus metrics (read from [`WsServer::stats`] at scrape time).
    pub fn metrics(&self) -> crate::WsMetrics {
        crate::WsMetrics::new(self.clone())
    }

    /// Counters for metrics.
    pub fn stats(&self) -> WsStats {
        let s = &self.state;
        let fan_out = &s.rooms.counters;
        WsStats {
            connections: s.registry.len() as u64,
            rooms: s.rooms.len() as u64,
            rejected: s.rejected.load(Ordering::Relaxed),
            delivered: fan_out.delivered.load(Ordering::Relaxed),
            shed: fan_out.shed.load(Ordering::Relaxed),
            slow_disconnects: fan_out.slow_disconnects.load(Ordering::Relaxed),
            heartbeat_timeouts: s.heartbeat_timeouts.load(Ordering::Relaxed),
            queued_bytes: s.registry.queued_bytes(),
        }
    }

    /// Stops accepting upgrades, closes every connection with 1001 (going away) and waits up
    /// to `drain` for them to end; then ends the tasks the server owns (the room sweeper; the
    /// backplane's subscriber, and its publisher once it has sent what was queued, within what is
    /// left of `drain`).
    pub async fn shutdown(&self, drain: Duration) {
        self.state.closing.store(true, Ordering::Release);
        for c in self.state.registry.matching(|_| true) {
            c.end(tidewell_protocol::close::GOING_AWAY, "server shutting down");
        }
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline && !self.state.registry.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.state.stop.cancel();
        #[cfg(feature = "redis")]
        if let Some(b) = self.state.backplane.get() {
            b.stopped(deadline).await;
        }
    }

    /// Registers a connection that has just been upgraded: in the registry, in its own rooms,
    /// and greeted with `welcome`.
    pub(crate) fn register(&self, claims: Claims) -> Arc<Conn> {
        let conn = self
            .state
            .registry
            .add(claims, self.state.config.queue_bytes);
        let own = own_rooms(&conn.claims);
        self.state.rooms.join_own(&conn, &own);
        conn.answer(&ServerFrame::Welcome {
            connection_id: conn.info.id.clone(),
            protocol: PROTOCOL_VERSION,
            server_time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            rooms: own,
        });
        conn
    }

    /// Takes an ended connection out of its rooms and the registry.
    pub(crate) fn unregister(&self, conn: &Arc<Conn>) {
        self.state.rooms.leave_all(conn);
        self.state.registry.remove(conn.key);
    }

    /// Whether `claims` may join `room`: its own rooms, then the [`Authorize`] hook, then the
    /// [`AuthorizeAsync`] one (bounded by [`AUTHORIZE_TIMEOUT`]).
    pub(crate) async fn may_join(&self, claims: &Claims, room: &str) -> bool {
        if !is_valid_room(room) {
            return false;
        }
        if own_rooms(claims).iter().any(|r| r == room) || (self.state.authorize)(claims, room) {
            return true;
        }
        match &self.state.authorize_async {
            Some(check) => {
                tokio::time::timeout(AUTHORIZE_TIMEOUT, check(claims.clone(), room.to_owned()))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        }
    }

    /// The server's rooms.
    pub(crate) fn rooms(&self) -> &Rooms {
        &self.state.rooms
    }
}
