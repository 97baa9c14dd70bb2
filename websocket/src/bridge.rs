//! The event bridge: events from the event hub fanned out to rooms by rules.

use std::sync::Arc;

use tidewell_core::RawEnvelope;
use tidewell_event_hub::{HandlerError, Router, topic_matches};
use tidewell_protocol::close;

use crate::server::WsServer;

type RoomsFn = dyn Fn(&RawEnvelope) -> Vec<String> + Send + Sync;
type SessionFn = dyn Fn(&RawEnvelope) -> Option<(String, Option<String>)> + Send + Sync;

enum Action {
    Rooms(Box<RoomsFn>),
    Revoke(Box<SessionFn>),
}

/// Maps event types (AMQP topic patterns) to rooms; every matching rule applies. Turn it into a
/// [`Router`] and subscribe it to a queue bound to the same patterns: a message is acknowledged
/// only after its events are appended to the rooms' history and queued to every local member.
///
/// ```
/// use tidewell_websocket::Bridge;
/// # fn make(server: tidewell_websocket::WsServer) {
/// let bridge = Bridge::new(server)
///     .rule("payments.payment.*", |e| {
///         let p = e.payload();
///         vec![format!("user:{}", p["user_id"].as_u64().unwrap_or(0)), format!("payment:{}", p["id"])]
///     })
///     .rule("admin.#", |_| vec!["role:admin".into()])
///     .revoke_sessions("auth.session.revoked", |e| {
///         let p = e.payload();
///         Some((p["session_id"].as_str()?.to_owned(), p["device_id"].as_str().map(str::to_owned)))
///     });
/// // hub.subscribe_router(Subscription::new("gateway.events"), bridge.into_router()).await?;
/// # }
/// ```
pub struct Bridge {
    server: WsServer,
    rules: Vec<(String, Action)>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field(
                "patterns",
                &self.rules.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// A bridge into `server` with no rules.
    pub fn new(server: WsServer) -> Self {
        Self {
            server,
            rules: Vec::new(),
        }
    }

    /// Events whose type matches `pattern` go to the rooms `rooms` names (invalid names are
    /// skipped with a warning).
    #[must_use]
    pub fn rule(
        mut self,
        pattern: &str,
        rooms: impl Fn(&RawEnvelope) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.rules
            .push((pattern.to_owned(), Action::Rooms(Box::new(rooms))));
        self
    }

    /// Events whose type matches `pattern` revoke a session: `session` gives its id and
    /// optionally the device id; every connection of that session is closed with 4001 and the
    /// event is published to `device:<id>`.
    #[must_use]
    pub fn revoke_sessions(
        mut self,
        pattern: &str,
        session: impl Fn(&RawEnvelope) -> Option<(String, Option<String>)> + Send + Sync + 'static,
    ) -> Self {
        self.rules
            .push((pattern.to_owned(), Action::Revoke(Box::new(session))));
        self
    }

    /// Applies the rules to one event; answers how many rooms it went to.
    pub fn apply(&self, event: &RawEnvelope) -> Result<usize, HandlerError> {
        // Inside the consumer's span: the delivery joins the event's trace.
        let span = tracing::info_span!(
            "ws.deliver",
            event_type = %event.event_type(),
            message_id = %event.id(),
            rooms = tracing::field::Empty,
        );
        let _entered = span.enter();
        let json = serde_json::to_string(event).map_err(HandlerError::permanent)?;
        let mut rooms = Vec::new();
        for (pattern, action) in &self.rules {
            if !topic_matches(pattern, event.event_type()) {
                continue;
            }
            match action {
                Action::Rooms(f) => rooms.extend(f(event)),
                Action::Revoke(f) => {
                    if let Some((session, device)) = f(event) {
                        let closed = self.server.disconnect_session(&session);
                        tracing::info!(
                            closed,
                            "session revoked: connections closed with {}",
                            close::SESSION_REVOKED
                        );
                        if let Some(d) = device {
                            rooms.push(format!("device:{d}"));
                        }
                    }
                }
            }
        }
        rooms.sort();
        rooms.dedup();
        let mut sent = 0;
        for room in rooms {
            match self.server.publish_json(&room, &json) {
                Ok(_) => sent += 1,
                // The backplane's queue is full (Redis slow or down): the event hub retries the
                // event later (rooms already reached may see it twice: at least once).
                Err(error @ crate::Error::Full(_)) => {
                    return Err(HandlerError::retryable(error.to_string()));
                }
                Err(error) => {
                    tracing::warn!(%error, room, "bridge rule named an invalid room; skipped");
                }
            }
        }
        span.record("rooms", sent);
        Ok(sent)
    }

    /// A router for [`Hub::subscribe_router`](tidewell_event_hub::Hub::subscribe_router) that
    /// applies the rules to every event it receives.
    pub fn into_router(self) -> Router {
        let bridge = Arc::new(self);
        Router::new().fallback(move |event: RawEnvelope| {
            let bridge = Arc::clone(&bridge);
            async move { bridge.apply(&event).map(|_| ()) }
        })
    }
}
