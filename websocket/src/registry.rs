//! The connection registry: every open connection by key, what is known about it, its outbox,
//! and the server's decision to close it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tidewell_auth::Claims;
use tidewell_protocol::ServerFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::Overflow;
use crate::outbox::{Frame, Outbox};

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

/// One open connection, as the server and its rooms see it.
pub(crate) struct Conn {
    /// The registry key.
    pub(crate) key: u64,
    pub(crate) info: ConnectionInfo,
    pub(crate) claims: Claims,
    pub(crate) outbox: Outbox,
    /// The rooms it has joined (the rooms' member lists hold it too).
    pub(crate) rooms: Mutex<HashSet<String>>,
    /// The close code and reason to send when the connection ends by the server's decision.
    close: Mutex<Option<(u16, &'static str)>>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Conn {
    /// Whether the server has decided to close this connection ([`Conn::end`]).
    pub(crate) fn is_ending(&self) -> bool {
        self.close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Decides to close the connection with `code` (the first decision wins) and closes its
    /// outbox, so the writer sends what is queued, then the close frame.
    pub(crate) fn end(&self, code: u16, reason: &'static str) {
        let mut close = self.close.lock().unwrap_or_else(PoisonError::into_inner);
        if close.is_none() {
            *close = Some((code, reason));
        }
        drop(close);
        self.outbox.close();
    }

    /// The close code and reason decided by [`Conn::end`], if any.
    pub(crate) fn close_reason(&self) -> Option<(u16, &'static str)> {
        *self.close.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an answer (never shed) to this connection.
    pub(crate) fn answer(&self, frame: &ServerFrame) {
        match serde_json::to_string(frame) {
            Ok(text) => {
                self.outbox.push(
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

    /// Queues an `error` frame answering the client's frame `id`.
    pub(crate) fn error(&self, id: Option<u64>, code: &str, message: &str) {
        self.answer(&ServerFrame::Error {
            id,
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }
}

/// Every open connection by key.
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_key: AtomicU64,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
        }
    }

    /// Registers a connection for `claims` with an outbox of `queue_bytes`.
    pub(crate) fn add(&self, claims: Claims, queue_bytes: usize) -> Arc<Conn> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            key,
            info: ConnectionInfo {
                id: format!("{}-{key}", uuid::Uuid::now_v7().simple()),
                user: claims.sub.clone(),
                roles: claims.roles.clone(),
                device: claims.did.clone(),
                session: claims.sid.clone(),
            },
            claims,
            outbox: Outbox::new(queue_bytes),
            rooms: Mutex::new(HashSet::new()),
            close: Mutex::new(None),
            stop: tokio_util::sync::CancellationToken::new(),
        });
        self.lock().insert(key, Arc::clone(&conn));
        conn
    }

    pub(crate) fn remove(&self, key: u64) {
        self.lock().remove(&key);
    }

    /// The open connections matching `pred` (not those the server has decided to close).
    pub(crate) fn find(&self, pred: impl Fn(&Conn) -> bool) -> Vec<ConnectionInfo> {
        self.matching(|c| !c.is_ending() && pred(c))
            .iter()
            .map(|c| c.info.clone())
            .collect()
    }

    /// Every registered connection matching `pred`, those ending included.
    pub(crate) fn matching(&self, pred: impl Fn(&Conn) -> bool) -> Vec<Arc<Conn>> {
        self.lock().values().filter(|c| pred(c)).cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Bytes queued to all connections now.
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.lock()
            .values()
            .map(|c| c.outbox.queued_bytes() as u64)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
