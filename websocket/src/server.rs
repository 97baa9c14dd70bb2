//! The server: upgrade with authentication, the connection registry, rooms with history.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::value::RawValue;
use tidewell_auth::{Claims, Verifier};
use tidewell_protocol::{PROTOCOL_VERSION, ServerFrame, Since, codes, is_valid_room};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::Error;
use crate::config::{Overflow, WsConfig};
use crate::outbox::{Frame, Outbox, Pushed};

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

/// What is known about one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection id sent in `welcome`.
    pub id: String,
    /// The token's subject.
    pub user: String,
    /// The token's roles.
    pub roles: Vec<String>,
    /// The token's device id.
    pub device: Option<String>,
    /// The token's session id.
    pub session: Option<String>,
}

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

pub(crate) struct Conn {
    /// The registry key.
    pub(crate) key: u64,
    pub(crate) info: ConnectionInfo,
    pub(crate) claims: Claims,
    pub(crate) outbox: Outbox,
    pub(crate) rooms: Mutex<HashSet<String>>,
    /// The close code and reason to send when the connection ends by the server's decision.
    pub(crate) close: Mutex<Option<(u16, &'static str)>>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Conn {
    /// Whether the server has decided to close this connection ([`Conn::end`]).
    fn is_ending(&self) -> bool {
        self.close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    pub(crate) fn end(&self, code: u16, reason: &'static str) {
        let mut close = self.close.lock().unwrap_or_else(PoisonError::into_inner);
        if close.is_none() {
            *close = Some((code, reason));
        }
        drop(close);
        self.outbox.close();
    }
}

struct Room {
    members: HashMap<u64, Arc<Conn>>,
    epoch: Arc<str>,
    offset: u64,
    history: VecDeque<(u64, Instant, Utf8Bytes)>,
    touched: Instant,
}

impl Room {
    fn new() -> Self {
        Self {
            members: HashMap::new(),
            epoch: uuid::Uuid::now_v7().simple().to_string().into(),
            offset: 0,
            history: VecDeque::new(),
            touched: Instant::now(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: WsConfig,
    verifier: Verifier,
    authorize: Box<Authorize>,
    authorize_async: Option<Box<AuthorizeAsync>>,
    admit: Box<Admit>,
    rooms: Mutex<HashMap<String, Room>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    pub(crate) closing: AtomicBool,
    rejected: AtomicU64,
    delivered: AtomicU64,
    shed: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
    pub(crate) heartbeat_timeouts: AtomicU64,
    #[cfg(feature = "redis")]
    backplane: std::sync::OnceLock<crate::backplane::Backplane>,
}

/// The WebSocket server: give it upgrade requests with [`WsServer::handle`] (from hyper or axum),
/// publish to rooms with [`WsServer::publish`]. Cheap to clone.
#[derive(Clone)]
pub struct WsServer {
    pub(crate) inner: Arc<Inner>,
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

    /// Builds the server; starts a sweeper for idle rooms on the current tokio runtime.
    pub fn build(self) -> Result<WsServer, Error> {
        self.config.validate()?;
        let server = WsServer {
            inner: Arc::new(Inner {
                config: self.config,
                verifier: self.verifier,
                authorize: self.authorize,
                authorize_async: self.authorize_async,
                admit: self.admit,
                rooms: Mutex::new(HashMap::new()),
                conns: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                closing: AtomicBool::new(false),
                rejected: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                shed: AtomicU64::new(0),
                slow_disconnects: AtomicU64::new(0),
                heartbeat_timeouts: AtomicU64::new(0),
                #[cfg(feature = "redis")]
                backplane: std::sync::OnceLock::new(),
            }),
        };
        let weak = Arc::downgrade(&server.inner);
        let every = (server.inner.config.history_ttl / 4).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                inner.sweep();
            }
        });
        Ok(server)
    }
}

/// An error answer to an upgrade request, in the shape every Tidewell HTTP error has
/// (`tidewell_core::http::error_body`), with the request's id.
fn json_error(
    request: &http::HeaderMap,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let id = tidewell_core::http::request_id_of(request);
    let body = tidewell_core::http::error_body(code, message, id);
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The token of an upgrade request: `Authorization: Bearer`, a `bearer.<token>` WebSocket
/// protocol, or `?token=`; and whether the client offered the `tidewell.v1` protocol.
fn token_of<B>(req: &Request<B>) -> (Option<String>, bool) {
    let mut offered = false;
    let mut from_protocol = None;
    for v in req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        for p in v.to_str().unwrap_or("").split(',').map(str::trim) {
            if p == "tidewell.v1" {
                offered = true;
            } else if let Some(t) = p.strip_prefix("bearer.") {
                from_protocol = Some(t.to_owned());
            }
        }
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    });
    (from_header.or(from_protocol).or(from_query), offered)
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

    /// Answers a WebSocket upgrade request: 401 (JSON) for a missing or invalid token, 400/426
    /// for a request that is not a WebSocket upgrade, else 101 and the connection runs on the
    /// current tokio runtime. The token is never logged.
    pub fn handle<B>(&self, mut req: Request<B>) -> Response<Full<Bytes>> {
        if self.inner.closing.load(Ordering::Acquire) {
            return json_error(
                req.headers(),
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; connect to another node",
            );
        }
        let h = req.headers();
        let is_ws = req.method() == http::Method::GET
            && h.get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if !is_ws {
            return json_error(
                req.headers(),
                StatusCode::UPGRADE_REQUIRED,
                "not_websocket",
                "this endpoint speaks WebSocket only",
            );
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return json_error(
                req.headers(),
                StatusCode::BAD_REQUEST,
                "bad_handshake",
                "Sec-WebSocket-Key is missing",
            );
        };
        if h.get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return json_error(
                req.headers(),
                StatusCode::BAD_REQUEST,
                "bad_handshake",
                "Sec-WebSocket-Version must be 13",
            );
        }
        let (token, offered) = token_of(&req);
        let Some(token) = token else {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            return json_error(
                req.headers(),
                StatusCode::UNAUTHORIZED,
                "no_token",
                "send a token: Authorization: Bearer, a bearer.<token> WebSocket protocol, or ?token=",
            );
        };
        let claims = match self.inner.verifier.verify(&token) {
            Ok(c) => c,
            Err(e) => {
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %req.uri().path(), error = %e, "websocket upgrade refused");
                return json_error(
                    req.headers(),
                    StatusCode::UNAUTHORIZED,
                    "bad_token",
                    &e.to_string(),
                );
            }
        };
        if !(self.inner.admit)(&claims) {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
            return json_error(
                req.headers(),
                StatusCode::UNAUTHORIZED,
                "session_revoked",
                "this session was revoked; sign in again",
            );
        }
        let upgrade = hyper::upgrade::on(&mut req);
        let server = self.clone();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => server.run(upgraded, claims).await,
                Err(error) => tracing::debug!(%error, "websocket upgrade did not complete"),
            }
        });
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let rh = res.headers_mut();
        rh.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            rh.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if offered {
            rh.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("tidewell.v1"),
            );
        }
        res
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
        if let Some(b) = self.inner.backplane.get() {
            return b.publish(room, event.get().to_owned());
        }
        self.inner.publish(room, event);
        Ok(())
    }

    /// Joins the nodes sharing `prefix` on the Redis at `url` (feature `redis`): every publish on
    /// any node reaches the members on every node, with the same offsets and epochs everywhere,
    /// so a client recovers with `since` on whichever node it reconnects to. Fails fast if Redis
    /// is unreachable; afterwards a lost subscription is retried by itself (and the node's
    /// histories are forgotten, so a window it missed answers `recovered: false`).
    #[cfg(feature = "redis")]
    pub async fn connect_backplane(&self, url: &str, prefix: &str) -> Result<(), Error> {
        let b =
            crate::backplane::Backplane::start(url, prefix, Arc::downgrade(&self.inner)).await?;
        self.inner
            .backplane
            .set(b)
            .map_err(|_| Error::BackplaneAttached)
    }

    /// The open connections of `user`.
    pub fn connections_of_user(&self, user: &str) -> Vec<ConnectionInfo> {
        self.inner.find(|c| c.info.user == user)
    }

    /// The open connections of `session`.
    pub fn connections_of_session(&self, session: &str) -> Vec<ConnectionInfo> {
        self.inner
            .find(|c| c.info.session.as_deref() == Some(session))
    }

    /// Closes every connection of `session` with 4001 (session revoked); answers how many.
    /// They leave their rooms at once (before their close frames are written), so nothing more
    /// reaches them, and no lookup lists them once this returns; [`WsServer::shutdown`] still
    /// waits for their close frames.
    pub fn disconnect_session(&self, session: &str) -> usize {
        let conns = self
            .inner
            .conns_where(|c| c.info.session.as_deref() == Some(session) && !c.is_ending());
        for c in &conns {
            c.end(tidewell_protocol::close::SESSION_REVOKED, "session revoked");
            // The connection's task runs this again when it ends: a no-op by then.
            self.leave_rooms(c);
        }
        conns.len()
    }

    /// Who is in `room`: user ids and their connection counts.
    pub fn presence(&self, room: &str) -> Vec<(String, usize)> {
        let rooms = self
            .inner
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut users: HashMap<String, usize> = HashMap::new();
        if let Some(r) = rooms.get(room) {
            for c in r.members.values() {
                *users.entry(c.info.user.clone()).or_default() += 1;
            }
        }
        let mut v: Vec<_> = users.into_iter().collect();
        v.sort();
        v
    }

    /// The server's Prometheus metrics (read from [`WsServer::stats`] at scrape time).
    pub fn metrics(&self) -> crate::WsMetrics {
        crate::WsMetrics::new(self.clone())
    }

    /// Counters for metrics.
    pub fn stats(&self) -> WsStats {
        let i = &self.inner;
        let queued_bytes = i
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|c| c.outbox.queued_bytes() as u64)
            .sum();
        let shed = i.shed.load(Ordering::Relaxed);
        WsStats {
            connections: i.conns.lock().unwrap_or_else(PoisonError::into_inner).len() as u64,
            rooms: i.rooms.lock().unwrap_or_else(PoisonError::into_inner).len() as u64,
            rejected: i.rejected.load(Ordering::Relaxed),
            delivered: i.delivered.load(Ordering::Relaxed),
            shed,
            slow_disconnects: i.slow_disconnects.load(Ordering::Relaxed),
            heartbeat_timeouts: i.heartbeat_timeouts.load(Ordering::Relaxed),
            queued_bytes,
        }
    }

    /// Stops accepting upgrades, closes every connection with 1001 (going away) and waits up
    /// to `drain` for them to end.
    pub async fn shutdown(&self, drain: Duration) {
        self.inner.closing.store(true, Ordering::Release);
        for c in self.inner.conns_where(|_| true) {
            c.end(tidewell_protocol::close::GOING_AWAY, "server shutting down");
        }
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline
            && !self
                .inner
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn register(&self, claims: Claims) -> Arc<Conn> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            key: id,
            info: ConnectionInfo {
                id: format!("{}-{id}", uuid::Uuid::now_v7().simple()),
                user: claims.sub.clone(),
                roles: claims.roles.clone(),
                device: claims.did.clone(),
                session: claims.sid.clone(),
            },
            claims,
            outbox: Outbox::new(self.inner.config.queue_bytes),
            rooms: Mutex::new(HashSet::new()),
            close: Mutex::new(None),
            stop: tokio_util::sync::CancellationToken::new(),
        });
        self.inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&conn));
        let own = own_rooms(&conn.claims);
        {
            let mut rooms = self
                .inner
                .rooms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for r in &own {
                rooms
                    .entry(r.clone())
                    .or_insert_with(Room::new)
                    .members
                    .insert(id, Arc::clone(&conn));
            }
        }
        conn.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(own.iter().cloned());
        let welcome = ServerFrame::Welcome {
            connection_id: conn.info.id.clone(),
            protocol: PROTOCOL_VERSION,
            server_time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            rooms: own,
        };
        self.inner.answer(&conn, &welcome);
        conn
    }

    pub(crate) fn unregister(&self, conn: &Arc<Conn>) {
        self.leave_rooms(conn);
        self.inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&conn.key);
    }

    /// Takes `conn` out of every room it is in.
    fn leave_rooms(&self, conn: &Arc<Conn>) {
        let rooms: Vec<String> = conn
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for r in rooms {
            self.inner.leave(conn, conn.key, &r);
        }
    }
}

/// The rooms a token joins by itself.
fn own_rooms(claims: &Claims) -> Vec<String> {
    let mut rooms = vec![format!("user:{}", claims.sub)];
    rooms.extend(claims.roles.iter().map(|r| format!("role:{r}")));
    if let Some(d) = &claims.did {
        rooms.push(format!("device:{d}"));
    }
    rooms.push("broadcast".to_owned());
    rooms.retain(|r| is_valid_room(r));
    rooms
}

impl Inner {
    /// The open connections matching `pred` (not those the server has decided to close).
    fn find(&self, pred: impl Fn(&Conn) -> bool) -> Vec<ConnectionInfo> {
        self.conns_where(|c| !c.is_ending() && pred(c))
            .iter()
            .map(|c| c.info.clone())
            .collect()
    }

    fn conns_where(&self, pred: impl Fn(&Conn) -> bool) -> Vec<Arc<Conn>> {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|c| pred(c))
            .cloned()
            .collect()
    }

    /// Queues an answer (never shed) to one connection.
    pub(crate) fn answer(&self, conn: &Conn, frame: &ServerFrame) {
        match serde_json::to_string(frame) {
            Ok(text) => {
                conn.outbox.push(
                    Frame {
                        text: Utf8Bytes::from(text),
                        room: None,
                    },
                    Overflow::DropOldest,
                );
            }
            Err(error) => tracing::warn!(%error, "cannot encode a server frame"),
        }
    }

    pub(crate) fn error(&self, conn: &Conn, id: Option<u64>, code: &str, message: &str) {
        self.answer(
            conn,
            &ServerFrame::Error {
                id,
                code: code.to_owned(),
                message: message.to_owned(),
            },
        );
    }

    fn deliver(&self, conn: &Conn, frame: Frame, policy: Overflow) {
        match conn.outbox.push(frame, policy) {
            Pushed::Queued => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Pushed::Shed(n) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.shed.fetch_add(n, Ordering::Relaxed);
            }
            Pushed::Overflowed => {
                self.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                conn.end(tidewell_protocol::close::SLOW_CONSUMER, "slow consumer");
                // Stop now: the writer may be blocked on a client that does not read.
                conn.stop.cancel();
            }
            Pushed::Closed => {}
        }
    }

    fn publish(&self, room: &str, event: Box<RawValue>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let r = rooms.entry(room.to_owned()).or_insert_with(Room::new);
        let offset = r.offset + 1;
        self.append_and_fan_out(r, room, offset, event);
    }

    /// Records `event` at `offset` in the room's history (offset and epoch already decided) and
    /// queues its frame, encoded once, to every member.
    fn append_and_fan_out(&self, r: &mut Room, room: &str, offset: u64, event: Box<RawValue>) {
        r.offset = offset;
        r.touched = Instant::now();
        let frame = ServerFrame::Event {
            room: room.to_owned(),
            offset,
            epoch: r.epoch.to_string(),
            event,
        };
        let text = match serde_json::to_string(&frame) {
            Ok(t) => Utf8Bytes::from(t),
            Err(error) => {
                tracing::warn!(%error, "cannot encode an event frame");
                return;
            }
        };
        r.history.push_back((offset, Instant::now(), text.clone()));
        while r.history.len() > self.config.history_len {
            r.history.pop_front();
        }
        let policy = self.config.overflow_for(room);
        let room_name: Arc<str> = room.into();
        for conn in r.members.values() {
            self.deliver(
                conn,
                Frame {
                    text: text.clone(),
                    room: Some(Arc::clone(&room_name)),
                },
                policy,
            );
        }
    }

    /// An event from the backplane, with the offset and epoch Redis gave it.
    #[cfg(feature = "redis")]
    pub(crate) fn deliver_remote(&self, room: &str, offset: u64, epoch: &str, json: &str) {
        let Ok(event) = RawValue::from_string(json.to_owned()) else {
            return;
        };
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let r = rooms.entry(room.to_owned()).or_insert_with(Room::new);
        if *r.epoch != *epoch {
            r.epoch = epoch.into();
            r.history.clear();
        } else if offset <= r.offset {
            return; // already seen
        } else if offset != r.offset + 1 {
            r.history.clear(); // a gap this node did not see: never replay across it
        }
        self.append_and_fan_out(r, room, offset, event);
    }

    /// Forgets every room's history (the backplane subscription dropped: events were missed).
    #[cfg(feature = "redis")]
    pub(crate) fn forget_histories(&self) {
        for r in self
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values_mut()
        {
            r.history.clear();
        }
    }

    /// Whether `claims` may join `room`: its own rooms, then the [`Authorize`] hook, then the
    /// [`AuthorizeAsync`] one (bounded by [`AUTHORIZE_TIMEOUT`]).
    pub(crate) async fn may_join(&self, claims: &Claims, room: &str) -> bool {
        if !is_valid_room(room) {
            return false;
        }
        if own_rooms(claims).iter().any(|r| r == room) || (self.authorize)(claims, room) {
            return true;
        }
        match &self.authorize_async {
            Some(check) => {
                tokio::time::timeout(AUTHORIZE_TIMEOUT, check(claims.clone(), room.to_owned()))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        }
    }

    /// Joins `room` (which [`may_join`](Self::may_join) answered with `allowed`), answering
    /// `subscribed` and replaying what `since` missed, atomically with respect to publishes in
    /// the room.
    pub(crate) fn subscribe(
        &self,
        conn: &Arc<Conn>,
        key: u64,
        id: Option<u64>,
        room: &str,
        since: Option<Since>,
        allowed: bool,
    ) {
        if !is_valid_room(room) {
            return self.error(
                conn,
                id,
                codes::BAD_ROOM,
                "room names are 1 to 128 visible ASCII characters",
            );
        }
        if !allowed {
            return self.error(conn, id, codes::FORBIDDEN, "you may not join this room");
        }
        {
            let mut joined = conn.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if !joined.contains(room) {
                if joined.len() >= self.config.max_rooms {
                    drop(joined);
                    return self.error(conn, id, codes::TOO_MANY_ROOMS, "leave a room first");
                }
                joined.insert(room.to_owned());
            }
        }
        let policy = self.config.overflow_for(room);
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let r = rooms.entry(room.to_owned()).or_insert_with(Room::new);
        let ttl = self.config.history_ttl;
        let now = Instant::now();
        let (recovered, replay): (Option<bool>, Vec<Utf8Bytes>) = match since {
            None => (None, Vec::new()),
            Some(s) if *s.epoch != *r.epoch || s.offset > r.offset => (Some(false), Vec::new()),
            Some(s) if s.offset == r.offset => (Some(true), Vec::new()),
            Some(s) => {
                // Every offset after `since` must still be kept (not evicted, not expired).
                let oldest_kept = r
                    .history
                    .iter()
                    .find(|(_, at, _)| now.duration_since(*at) <= ttl)
                    .map(|(o, _, _)| *o);
                match oldest_kept {
                    Some(o) if o <= s.offset + 1 => (
                        Some(true),
                        r.history
                            .iter()
                            .filter(|(o, _, _)| *o > s.offset)
                            .map(|(_, _, t)| t.clone())
                            .collect(),
                    ),
                    _ => (Some(false), Vec::new()),
                }
            }
        };
        self.answer(
            conn,
            &ServerFrame::Subscribed {
                id,
                room: room.to_owned(),
                epoch: r.epoch.to_string(),
                offset: r.offset,
                recovered,
            },
        );
        let room_name: Arc<str> = room.into();
        for text in replay {
            self.deliver(
                conn,
                Frame {
                    text,
                    room: Some(Arc::clone(&room_name)),
                },
                policy,
            );
        }
        if !r.members.contains_key(&key) && self.config.presence_for(room) {
            self.presence(r, room, &conn.info.user, true); // to the others
        }
        r.members.insert(key, Arc::clone(conn));
    }

    fn presence(&self, r: &Room, room: &str, user: &str, joined: bool) {
        let frame = ServerFrame::Presence {
            room: room.to_owned(),
            user: user.to_owned(),
            joined,
        };
        if let Ok(text) = serde_json::to_string(&frame) {
            let text = Utf8Bytes::from(text);
            let room_name: Arc<str> = room.into();
            for c in r.members.values() {
                self.deliver(
                    c,
                    Frame {
                        text: text.clone(),
                        room: Some(Arc::clone(&room_name)),
                    },
                    Overflow::DropOldest,
                );
            }
        }
    }

    pub(crate) fn unsubscribe(&self, conn: &Arc<Conn>, key: u64, id: Option<u64>, room: &str) {
        let was_in = conn
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(room);
        if was_in {
            self.leave(conn, key, room);
        }
        if let Some(id) = id {
            self.answer(conn, &ServerFrame::Ack { id });
        }
    }

    fn leave(&self, conn: &Arc<Conn>, key: u64, room: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = rooms.get_mut(room)
            && r.members.remove(&key).is_some()
        {
            r.touched = Instant::now();
            if self.config.presence_for(room) {
                self.presence(r, room, &conn.info.user, false);
            }
        }
    }

    /// Forgets rooms with no members whose history has expired.
    fn sweep(&self) {
        let ttl = self.config.history_ttl;
        let now = Instant::now();
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, r| !r.members.is_empty() || now.duration_since(r.touched) < ttl);
    }
}
