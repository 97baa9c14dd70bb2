//! The native client: reconnects with backoff and jitter, re-subscribes with `since`, keeps a
//! bounded queue of requests made while offline, de-duplicates events by envelope id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tidewell_core::tls::ClientTls;
use tidewell_core::{Backoff, RawEnvelope};
use tidewell_protocol::{ClientFrame, ServerFrame, Since, close};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Envelope ids remembered for de-duplication.
const SEEN_IDS: usize = 4_096;

/// What the client reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connected (again); `connection_id` from the server's `welcome`.
    Connected {
        /// The server's id for this connection.
        connection_id: String,
    },
    /// One event (never the same envelope id twice in a row of the last 4,096).
    Event {
        /// The room.
        room: String,
        /// Its offset in the room.
        offset: u64,
        /// The envelope; decode the payload with `RawEnvelope::decode`.
        event: RawEnvelope,
    },
    /// After a reconnect, events of `room` could not all be replayed (`recovered: false`):
    /// reload that room's state another way.
    Gap {
        /// The room.
        room: String,
    },
    /// The server answered a request with an error.
    ServerError {
        /// The stable code.
        code: String,
        /// The message.
        message: String,
    },
    /// The connection dropped; the client reconnects by itself.
    Disconnected {
        /// The close code, if the server sent one.
        code: Option<u16>,
    },
    /// The client stopped for good: the token was refused, the session revoked (4001), or the
    /// protocol version is not spoken (4002). Make a new client with a new token.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// How the client connects.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `ws://host:port/path`, or `wss://host:port/path` over TLS.
    pub url: String,
    /// The JWT, sent as `Authorization: Bearer`.
    pub token: String,
    /// Waits between reconnects.
    pub backoff: Backoff,
    /// Requests (subscribe / unsubscribe) kept while offline; older ones are dropped past it.
    pub offline_queue: usize,
    /// For a `wss://` URL: a CA file trusted instead of the system's roots, a client certificate.
    pub tls: ClientTls,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: configurations end up in logs.
        f.debug_struct("ClientConfig")
            .field("url", &tidewell_core::config::redact_url(&self.url))
            .field("token", &"<redacted>")
            .field("backoff", &self.backoff)
            .field("offline_queue", &self.offline_queue)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClientConfig {
    /// Reconnects between 100 ms and 10 s with full jitter, and keeps 256 offline requests.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            backoff: Backoff::builder()
                .min(Duration::from_millis(100))
                .max(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            offline_queue: 256,
            tls: ClientTls::default(),
        }
    }

    /// TLS for a `wss://` URL: a private CA, a client certificate.
    #[must_use]
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }
}

enum Command {
    Subscribe(String),
    Unsubscribe(String),
}

/// How many subscribe and unsubscribe calls may wait for the connection.
const COMMAND_QUEUE: usize = 1_024;

fn command_error(e: mpsc::error::TrySendError<Command>) -> Error {
    match e {
        mpsc::error::TrySendError::Full(_) => Error::Full("client's command queue"),
        mpsc::error::TrySendError::Closed(_) => Error::Stopped("client"),
    }
}

/// A WebSocket client for the Tidewell protocol; see the crate docs.
///
/// ```no_run
/// use tidewell_websocket::{ClientConfig, ClientEvent, WsClient};
///
/// # async fn run() -> Result<(), tidewell_websocket::Error> {
/// let mut client = WsClient::connect(ClientConfig::new("ws://127.0.0.1:8080/ws", "<jwt>"));
/// client.subscribe("payment:42")?;
/// while let Some(ev) = client.next().await {
///     if let ClientEvent::Event { room, event, .. } = ev {
///         println!("{room}: {}", event.event_type());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WsClient {
    commands: mpsc::Sender<Command>,
    /// [`WsClient::close`]: apart from the bounded commands, so a full queue cannot hold it up.
    closing: CancellationToken,
    events: mpsc::Receiver<ClientEvent>,
}

impl WsClient {
    /// Starts the client on the current tokio runtime; it connects (and reconnects) by itself.
    pub fn connect(config: ClientConfig) -> Self {
        // Bounded: subscribe and unsubscribe calls beyond this many waiting are refused.
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (tx, events) = mpsc::channel(1_024);
        let closing = CancellationToken::new();
        tokio::spawn(run(config, rx, tx, closing.clone()));
        Self {
            commands,
            events,
            closing,
        }
    }

    /// Joins `room` now, or as soon as connected; after a reconnect it is joined again with
    /// `since` the last event seen.
    pub fn subscribe(&self, room: &str) -> Result<(), Error> {
        self.commands
            .try_send(Command::Subscribe(room.to_owned()))
            .map_err(command_error)
    }

    /// Leaves `room`.
    pub fn unsubscribe(&self, room: &str) -> Result<(), Error> {
        self.commands
            .try_send(Command::Unsubscribe(room.to_owned()))
            .map_err(command_error)
    }

    /// The next event; `None` once the client has stopped and everything was read.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Closes the connection (1000) and stops.
    pub fn close(&self) {
        self.closing.cancel();
    }
}

/// Why the server's certificate was refused, if that is what `error` is.
fn tls_refusal(url: &str, error: &WsError) -> Option<String> {
    if !url.starts_with("wss://") {
        return None;
    }
    let host = url
        .trim_start_matches("wss://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    tidewell_core::tls::explain(host, error)
}

/// The TLS connector of a `wss://` URL (`None` for `ws://`, which must then have no TLS files).
fn tls_connector(config: &ClientConfig) -> Result<Option<tokio_tungstenite::Connector>, String> {
    let tls = config.url.starts_with("wss://");
    if !tls {
        return if config.tls.is_default() {
            Ok(None)
        } else {
            Err("TLS files are set but the URL is not wss://; use wss:// or unset them".into())
        };
    }
    let rustls = config.tls.rustls_config().map_err(|e| e.to_string())?;
    Ok(Some(tokio_tungstenite::Connector::Rustls(
        std::sync::Arc::new(rustls),
    )))
}

#[derive(Default)]
struct State {
    /// Rooms wanted, with the last position seen in each.
    rooms: HashMap<String, Option<Since>>,
    /// Requests made while offline, in order, bounded.
    offline: VecDeque<ClientFrame>,
    seen: HashSet<uuid::Uuid>,
    seen_order: VecDeque<uuid::Uuid>,
}

// Long: the client's one event loop (commands, frames, heartbeat, reconnect with resubscribe);
// its state is the loop's locals, shared by every branch.
async fn run(
    config: ClientConfig,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<ClientEvent>,
    closing: CancellationToken,
) {
    let mut st = State::default();
    let mut schedule = config.backoff.schedule();
    let connector = match tls_connector(&config) {
        Ok(c) => c,
        Err(reason) => {
            let _ = events.send(ClientEvent::Stopped { reason }).await;
            return;
        }
    };
    loop {
        let mut req = match config.url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => {
                let _ = events
                    .send(ClientEvent::Stopped {
                        reason: format!("bad URL: {e}"),
                    })
                    .await;
                return;
            }
        };
        if let Ok(v) = format!("Bearer {}", config.token).parse() {
            req.headers_mut().insert("authorization", v);
        }
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector.clone());
        let ws = match connect.await {
            Ok((ws, _)) => ws,
            // A certificate the client does not accept stays unaccepted: retrying would only
            // hide it. (Never a fallback to plaintext either: a wss:// URL is TLS or nothing.)
            Err(error) if tls_refusal(&config.url, &error).is_some() => {
                let reason = tls_refusal(&config.url, &error).unwrap_or_default();
                let _ = events.send(ClientEvent::Stopped { reason }).await;
                return;
            }
            Err(WsError::Http(res)) if res.status() == 401 => {
                let _ = events
                    .send(ClientEvent::Stopped {
                        reason: "the server refused the token (401)".into(),
                    })
                    .await;
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "websocket connect failed; retrying");
                let delay = schedule.next_delay().unwrap_or(config.backoff.max());
                // Commands keep arriving while offline.
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        () = closing.cancelled() => return,
                        c = commands.recv() => match c {
                            None => return,
                            Some(c) => apply_offline(&mut st, c, config.offline_queue),
                        },
                    }
                }
                continue;
            }
        };
        let (mut sink, mut stream) = ws.split();
        // Join everything wanted, from where we left off; then the requests made offline.
        let mut frames: Vec<ClientFrame> = st
            .rooms
            .iter()
            .map(|(room, since)| ClientFrame::Subscribe {
                id: None,
                room: room.clone(),
                since: since.clone(),
            })
            .collect();
        frames.extend(st.offline.drain(..));
        let mut ok = true;
        for f in frames {
            if let Ok(text) = serde_json::to_string(&f)
                && sink.send(Message::text(text)).await.is_err()
            {
                ok = false;
                break;
            }
        }
        let mut close_code = None;
        loop {
            if !ok {
                break; // the handshake's first sends failed
            }
            tokio::select! {
                () = closing.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
                c = commands.recv() => match c {
                    None => {
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
                    Some(Command::Subscribe(room)) => {
                        let since = st.rooms.entry(room.clone()).or_default().clone();
                        let f = ClientFrame::Subscribe { id: None, room, since };
                        if let Ok(text) = serde_json::to_string(&f) && sink.send(Message::text(text)).await.is_err() {
                            break;
                        }
                    }
                    Some(Command::Unsubscribe(room)) => {
                        st.rooms.remove(&room);
                        let f = ClientFrame::Unsubscribe { id: None, room };
                        if let Ok(text) = serde_json::to_string(&f) && sink.send(Message::text(text)).await.is_err() {
                            break;
                        }
                    }
                },
                m = stream.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(ev) = handle(&mut st, &t, &mut schedule)
                            && events.send(ev).await.is_err()
                        {
                            return; // nobody listens any more
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        close_code = frame.map(|f| u16::from(f.code));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
            }
        }
        if matches!(
            close_code,
            Some(close::SESSION_REVOKED | close::UNSUPPORTED_PROTOCOL)
        ) {
            let _ = events
                .send(ClientEvent::Stopped {
                    reason: format!("closed by the server with {}", close_code.unwrap_or(0)),
                })
                .await;
            return;
        }
        if events
            .send(ClientEvent::Disconnected { code: close_code })
            .await
            .is_err()
        {
            return;
        }
        let delay = schedule.next_delay().unwrap_or(config.backoff.max());
        tokio::time::sleep(delay).await;
    }
}

fn apply_offline(st: &mut State, c: Command, limit: usize) {
    let frame = match c {
        Command::Subscribe(room) => {
            if st.rooms.contains_key(&room) {
                return;
            }
            st.rooms.insert(room, None);
            return; // joined on (re)connect from `rooms`
        }
        Command::Unsubscribe(room) => {
            st.rooms.remove(&room);
            ClientFrame::Unsubscribe { id: None, room }
        }
    };
    st.offline.push_back(frame);
    while st.offline.len() > limit {
        st.offline.pop_front();
    }
}

fn handle(
    st: &mut State,
    text: &str,
    schedule: &mut tidewell_core::Schedule,
) -> Option<ClientEvent> {
    let frame: ServerFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(error) => {
            tracing::debug!(%error, "unreadable frame from the server; skipped");
            return None;
        }
    };
    match frame {
        ServerFrame::Welcome { connection_id, .. } => {
            schedule.reset();
            Some(ClientEvent::Connected { connection_id })
        }
        ServerFrame::Subscribed {
            room,
            epoch,
            offset,
            recovered,
            ..
        } => {
            let gap = recovered == Some(false);
            if let Some(pos) = st.rooms.get_mut(&room) {
                // Keep the last position seen; a fresh subscription starts at the room's now.
                if pos.is_none() || gap {
                    *pos = Some(Since { epoch, offset });
                }
            }
            gap.then_some(ClientEvent::Gap { room })
        }
        ServerFrame::Event {
            room,
            offset,
            epoch,
            event,
        } => {
            if let Some(pos) = st.rooms.get_mut(&room) {
                *pos = Some(Since { epoch, offset });
            }
            let event: RawEnvelope = match serde_json::from_str(event.get()) {
                Ok(e) => e,
                Err(error) => {
                    tracing::debug!(%error, room, "event is not an envelope; skipped");
                    return None;
                }
            };
            let id = event.id();
            if !st.seen.insert(id) {
                return None; // replayed after a reconnect: already delivered
            }
            st.seen_order.push_back(id);
            if st.seen_order.len() > SEEN_IDS
                && let Some(old) = st.seen_order.pop_front()
            {
                st.seen.remove(&old);
            }
            Some(ClientEvent::Event {
                room,
                offset,
                event,
            })
        }
        ServerFrame::Error { code, message, .. } => {
            Some(ClientEvent::ServerError { code, message })
        }
        _ => None,
    }
}
