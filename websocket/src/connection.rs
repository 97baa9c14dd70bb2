//! One connection: a reader (client frames, pongs), a writer (queued frames, pings) and the
//! heartbeat, until either side ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use tidewell_auth::Claims;
use tidewell_protocol::{ClientFrame, PROTOCOL_VERSION, close, codes};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::registry::Conn;
use crate::server::WsServer;

/// Errors in a row after which a connection is closed with 4003.
const MAX_ERRORS: u32 = 100;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

impl WsServer {
    pub(crate) async fn run(&self, upgraded: hyper::upgrade::Upgraded, claims: Claims) {
        let c = &self.state.config;
        let mut ws_config = WebSocketConfig::default();
        ws_config.read_buffer_size = 8 * 1024;
        // Frames queued together go out in one write of up to 8 KiB instead of one write (and,
        // with TCP_NODELAY, one segment) each: 1.7x the deliveries per second of immediate
        // writes in the fanout bench. The cost: an active connection keeps a buffer of that size.
        ws_config.write_buffer_size = 8 * 1024;
        ws_config.max_write_buffer_size = c.max_message.saturating_mul(2).max(64 * 1024);
        ws_config.max_message_size = Some(c.max_message);
        ws_config.max_frame_size = Some(c.max_message);
        let ws: Ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        self.warm(&crate::rooms::own_rooms(&claims)).await;
        let conn = self.register(claims);
        let (sink, stream) = ws.split();
        let started = Instant::now();
        let last_pong = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_loop(
            self.clone(),
            Arc::clone(&conn),
            sink,
            Arc::clone(&last_pong),
            started,
        ));
        self.read_loop(&conn, stream, &last_pong, started).await;
        conn.outbox.close();
        conn.stop.cancel();
        // ok to ignore: the writer ends once the outbox is closed, or was aborted
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        self.unregister(&conn);
    }

    // Long: one match over what a client can send, with the rate and error budgets every branch
    // shares.
    async fn read_loop(
        &self,
        conn: &Arc<Conn>,
        mut stream: futures_util::stream::SplitStream<Ws>,
        last_pong: &AtomicU64,
        started: Instant,
    ) {
        let c = &self.state.config;
        let mut tokens = f64::from(c.inbound_burst);
        let mut refilled = Instant::now();
        let mut errors = 0u32;
        loop {
            let msg = tokio::select! {
                () = conn.stop.cancelled() => return,
                m = stream.next() => m,
            };
            let msg = match msg {
                None => return,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    use tokio_tungstenite::tungstenite::Error as WsError;
                    if matches!(e, WsError::Capacity(_)) {
                        conn.end(close::TOO_BIG, "message too big");
                    } else if matches!(e, WsError::Protocol(_) | WsError::Utf8(_)) {
                        conn.end(close::PROTOCOL_ERROR, "protocol error");
                    }
                    tracing::debug!(error = %e, "websocket read ended");
                    return;
                }
            };
            let text = match msg {
                Message::Text(t) => t,
                Message::Binary(_) => {
                    conn.error(None, codes::BINARY_NOT_SUPPORTED, "send JSON text frames");
                    errors += 1;
                    if errors >= MAX_ERRORS {
                        conn.end(close::POLICY, "too many errors");
                        return;
                    }
                    continue;
                }
                Message::Pong(_) => {
                    last_pong.store(millis(started), Ordering::Relaxed);
                    continue;
                }
                Message::Close(_) => return,
                _ => continue,
            };
            // Any frame from the client shows it is alive.
            last_pong.store(millis(started), Ordering::Relaxed);
            let now = Instant::now();
            tokens = (tokens + now.duration_since(refilled).as_secs_f64() * c.inbound_per_second)
                .min(f64::from(c.inbound_burst));
            refilled = now;
            if tokens < 1.0 {
                conn.error(frame_id(&text), codes::RATE_LIMITED, "slow down");
                errors += 1;
                if errors >= MAX_ERRORS {
                    conn.end(close::POLICY, "too many messages");
                    return;
                }
                continue;
            }
            tokens -= 1.0;
            match serde_json::from_str::<ClientFrame>(&text) {
                Ok(frame) => {
                    errors = 0;
                    match frame {
                        ClientFrame::Hello { protocol } if protocol != PROTOCOL_VERSION => {
                            conn.end(close::UNSUPPORTED_PROTOCOL, "unsupported protocol version");
                            return;
                        }
                        ClientFrame::Subscribe { id, room, since } => {
                            let allowed = self.may_join(&conn.claims, &room).await;
                            if allowed {
                                self.warm(std::slice::from_ref(&room)).await;
                            }
                            self.rooms().subscribe(conn, id, &room, since, allowed);
                        }
                        ClientFrame::Unsubscribe { id, room } => {
                            self.rooms().unsubscribe(conn, id, &room);
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    // The error answers the frame: it carries the frame's `id` when it has an
                    // integer one, so a client waiting on that id hears back.
                    conn.error(frame_id(&text), codes::BAD_FRAME, &format!("{e}"));
                    errors += 1;
                    if errors >= MAX_ERRORS {
                        conn.end(close::POLICY, "too many bad frames");
                        return;
                    }
                }
            }
        }
    }
}

/// The integer `id` of a client frame that did not parse as a whole (an unknown field, a bad
/// room type...), if it has one.
fn frame_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    serde_json::from_str::<IdOnly>(text).ok()?.id
}

/// Sends a batch and flushes; `false` if the peer does not take it in time.
async fn send_batch(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    batch: &mut Vec<crate::outbox::Frame>,
    send_timeout: Duration,
) -> bool {
    for f in batch.drain(..) {
        if !matches!(
            tokio::time::timeout(send_timeout, sink.feed(Message::Text(f.text))).await,
            Ok(Ok(()))
        ) {
            return false;
        }
    }
    matches!(
        tokio::time::timeout(send_timeout, sink.flush()).await,
        Ok(Ok(()))
    )
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Sends queued frames and pings; closes with the connection's close code when it ends.
async fn write_loop(
    server: WsServer,
    conn: Arc<Conn>,
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    last_pong: Arc<AtomicU64>,
    started: Instant,
) {
    let c = &server.state.config;
    let ping_every = c.ping_interval;
    let pong_timeout = c.pong_timeout;
    // A send that cannot complete in this long means the peer is not reading (or gone).
    let send_timeout = pong_timeout.max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_ping: Option<u64> = None;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            () = conn.outbox.notify.notified() => {}
            _ = ticker.tick() => {
                let pong = last_pong.load(Ordering::Relaxed);
                if let Some(sent) = last_ping
                    && pong < sent
                {
                    // No pong since the previous ping: that was `ping_every` ago, so at least
                    // `pong_timeout` has passed too (ping_every >= pong_timeout by default); check it.
                    if millis(started).saturating_sub(sent) >= u64::try_from(pong_timeout.as_millis()).unwrap_or(u64::MAX) {
                        server.state.heartbeat_timeouts.fetch_add(1, Ordering::Relaxed);
                        conn.end(close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
                    }
                }
                if !conn.stop.is_cancelled() {
                    last_ping = Some(millis(started));
                    let ping = tokio::time::timeout(send_timeout, sink.send(Message::Ping(Bytes::new()))).await;
                    if !matches!(ping, Ok(Ok(()))) {
                        conn.end(close::HEARTBEAT_TIMEOUT, "cannot reach the client");
                    }
                }
            }
            () = conn.stop.cancelled() => {}
        }
        let open = conn.outbox.drain(&mut batch);
        if !batch.is_empty() {
            let sent = tokio::select! {
                r = send_batch(&mut sink, &mut batch, send_timeout) => r,
                () = conn.stop.cancelled() => false,
            };
            batch.clear();
            if !sent && !conn.stop.is_cancelled() {
                conn.end(close::SLOW_CONSUMER, "client not reading");
                conn.stop.cancel();
                return;
            }
        }
        if !open || conn.stop.is_cancelled() {
            let code = conn
                .close_reason()
                .unwrap_or((close::GOING_AWAY, "closing"));
            let frame = CloseFrame {
                code: CloseCode::from(code.0),
                reason: code.1.into(),
            };
            // ok to ignore: the peer may be gone
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                sink.send(Message::Close(Some(frame))),
            )
            .await;
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
            conn.stop.cancel();
            return;
        }
    }
}
