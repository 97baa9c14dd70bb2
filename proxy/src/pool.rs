//! Upstream connections: a pool of idle HTTP/1.1 connections per upstream, one shared HTTP/2
//! connection per `h2c://` upstream (and per `https://` upstream that picks `h2` by ALPN), built
//! on hyper's connection API.
//!
//! Unlike a general client, a failure is reported with the request handed back whenever nothing
//! of it was sent (connect failure, a pooled connection found closed), so the proxy can try
//! another upstream even with a streamed body, which it never buffers.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::{BoxError, ProxyBody};
use crate::upstream_io::{AnswerFirst, Io, UpstreamTls};

/// Idle HTTP/1.1 connections kept per upstream.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused (upstreams close idle
/// connections too; Node's default is 5 s, nginx's 75 s).
const IDLE_FOR: Duration = Duration::from_secs(4);

/// Why a request got no response.
pub(crate) enum SendError {
    /// Nothing was sent: the request comes back to be tried elsewhere.
    NotSent {
        reason: String,
        connect: bool,
        request: Box<Request<ProxyBody>>,
    },
    /// The request was (at least partly) sent and failed.
    Failed(hyper::Error),
}

pub(crate) struct ConnPool {
    authority: String,
    h2c: bool,
    /// `https://`: the TLS side, and whether the upstream chose HTTP/2 (known after the first
    /// handshake; every connection to one upstream speaks the same).
    tls: Option<UpstreamTls>,
    alpn_h2: OnceLock<bool>,
    connect_timeout: Duration,
    idle: Mutex<Vec<(http1::SendRequest<ProxyBody>, Instant)>>,
    h2: tokio::sync::Mutex<Option<http2::SendRequest<ProxyBody>>>,
    /// Connections opened (TCP, and TLS when `https://`), and attempts that failed.
    opened: AtomicU64,
    connect_failures: AtomicU64,
}

impl ConnPool {
    pub(crate) fn new(
        authority: &str,
        h2c: bool,
        tls: Option<UpstreamTls>,
        connect_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            authority: authority.to_owned(),
            h2c,
            tls,
            alpn_h2: OnceLock::new(),
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            h2: tokio::sync::Mutex::new(None),
            opened: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
        })
    }

    /// Idle HTTP/1.1 connections held now (some may have been closed by the upstream since).
    pub(crate) fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Connections opened so far, and connection attempts that failed.
    pub(crate) fn connects(&self) -> (u64, u64) {
        (
            self.opened.load(Ordering::Relaxed),
            self.connect_failures.load(Ordering::Relaxed),
        )
    }

    async fn connect(&self) -> Result<TokioIo<Io>, String> {
        let result = self.try_connect().await;
        let counter = match result {
            Ok(_) => &self.opened,
            Err(_) => &self.connect_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn try_connect(&self) -> Result<TokioIo<Io>, String> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| format!("connect timed out after {:?}", self.connect_timeout))?
        .map_err(|e| format!("connect failed: {e}"))?;
        // ok to ignore: a socket option is an optimisation
        let _ = stream.set_nodelay(true);
        let tcp = AnswerFirst::new(stream);
        let Some(tls) = &self.tls else {
            return Ok(TokioIo::new(Io::Plain(tcp)));
        };
        let (io, h2) = tokio::time::timeout(self.connect_timeout, tls.handshake(tcp))
            .await
            .map_err(|_| format!("TLS handshake timed out after {:?}", self.connect_timeout))??;
        let _ = self.alpn_h2.set(h2);
        Ok(TokioIo::new(io))
    }

    /// Whether requests go over one shared HTTP/2 connection: `h2c://`, or `https://` where the
    /// upstream chose `h2`. For an `https://` upstream not yet reached, connects once to learn
    /// it (the connection joins the pool).
    async fn speaks_h2(&self) -> Result<bool, String> {
        if self.h2c {
            return Ok(true);
        }
        if self.tls.is_none() {
            return Ok(false);
        }
        if let Some(h2) = self.alpn_h2.get() {
            return Ok(*h2);
        }
        let io = self.connect().await?;
        if self.alpn_h2.get() == Some(&true) {
            let sender = self.h2_handshake(io).await?;
            *self.h2.lock().await = Some(sender);
            Ok(true)
        } else {
            let sender = self.http1_handshake(io).await?;
            self.checkin(sender);
            Ok(false)
        }
    }

    /// A new HTTP/1.1 connection, its driver spawned.
    async fn open(&self) -> Result<http1::SendRequest<ProxyBody>, String> {
        let io = self.connect().await?;
        self.http1_handshake(io).await
    }

    async fn http1_handshake(
        &self,
        io: TokioIo<Io>,
    ) -> Result<http1::SendRequest<ProxyBody>, String> {
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| format!("handshake failed: {e}"))?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn checkout(&self) -> Option<http1::SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && now.duration_since(since) < IDLE_FOR {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    /// Sends `req`; the response body returns the connection to the pool when it ends.
    pub(crate) async fn send(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, SendError> {
        // The rare paths (h2c, a new connection) are boxed: their futures are large, and
        // inline they would make every request's future (allocated per request) that large.
        if self.h2c {
            return Box::pin(self.send_h2(req)).await;
        }
        if self.tls.is_some() {
            match Box::pin(self.speaks_h2()).await {
                Ok(true) => return Box::pin(self.send_h2(req)).await,
                Ok(false) => {}
                Err(reason) => {
                    return Err(SendError::NotSent {
                        reason,
                        connect: true,
                        request: Box::new(req),
                    });
                }
            }
        }
        // Whether the request body was sent to its end: an upstream may answer (a 413, say)
        // before reading all of it, and a connection with a body half written must not go back
        // to the pool (the next request on it failed with "error writing a body").
        // An empty body (a GET's) is sent with the head: nothing to track, nothing allocated.
        let (mut req, body_sent) = if req.body().is_end_stream() {
            (req, None)
        } else {
            let body_sent = Arc::new(AtomicBool::new(false));
            let req = req.map(|inner| {
                SentToEnd {
                    inner,
                    done: Arc::clone(&body_sent),
                }
                .boxed_unsync()
            });
            (req, Some(body_sent))
        };
        loop {
            let (mut sender, reused) = match self.checkout() {
                Some(s) => (s, true),
                None => match Box::pin(self.open()).await {
                    Ok(sender) => (sender, false),
                    Err(reason) => {
                        return Err(SendError::NotSent {
                            reason,
                            connect: true,
                            request: Box::new(req),
                        });
                    }
                },
            };
            if reused && sender.ready().await.is_err() {
                continue; // closed while idle: take another
            }
            match sender.try_send_request(req).await {
                Ok(res) => return Ok(self.returning(sender, res, body_sent)),
                Err(mut e) => match e.take_message() {
                    Some(back) if reused => req = back, // the pooled connection went away
                    Some(back) => {
                        return Err(SendError::NotSent {
                            reason: e.into_error().to_string(),
                            connect: false,
                            request: Box::new(back),
                        });
                    }
                    None => return Err(SendError::Failed(e.into_error())),
                },
            }
        }
    }

    /// The upstream's response `res` on `sender`'s connection, made to give the connection back
    /// to the pool when its body ends (unless the connection is not fit to keep). `body_sent`
    /// is set once the request body was sent to its end (`None`: it had none).
    fn returning(
        self: &Arc<Self>,
        sender: http1::SendRequest<ProxyBody>,
        res: Response<hyper::body::Incoming>,
        body_sent: Option<Arc<AtomicBool>>,
    ) -> Response<ProxyBody> {
        if res.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel.
            return res.map(|b| b.map_err(BoxError::from).boxed_unsync());
        }
        let pool = Arc::downgrade(self);
        // An answer that says the upstream closes: its connection is not kept, even before
        // hyper has seen the close (a request sent on it would fail).
        let closes = res
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
        // An answer that came before the body was all sent: the upstream did not read it, so it
        // will close this connection (after draining what we send: a request sent meanwhile
        // would vanish). Not kept either.
        let early = body_sent
            .as_ref()
            .is_some_and(|sent| !sent.load(Ordering::Acquire));
        // (The sender is kept until the body ends: hyper drives the body through it.)
        let body_sent = if closes || early {
            Some(Arc::new(AtomicBool::new(false))) // never set: never given back
        } else {
            body_sent
        };
        res.map(|b| {
            PoolReturn {
                inner: b,
                sender: Some(sender),
                pool,
                body_sent,
            }
            .boxed_unsync()
        })
    }

    /// A new HTTP/2 connection, its driver spawned.
    async fn h2_handshake(&self, io: TokioIo<Io>) -> Result<http2::SendRequest<ProxyBody>, String> {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn send_h2(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, SendError> {
        // HTTP/2 carries scheme and authority as pseudo-headers: an origin-form target (made
        // before the upstream's protocol was known) becomes absolute.
        if req.uri().scheme().is_none() && self.tls.is_some() {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(http::uri::Scheme::HTTPS);
            parts.authority = self.authority.parse().ok();
            parts.path_and_query = req.uri().path_and_query().cloned();
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
        let mut sender = {
            let mut shared = self.h2.lock().await;
            match shared.as_ref().filter(|s| !s.is_closed()) {
                Some(s) => s.clone(),
                None => {
                    let io = match self.connect().await {
                        Ok(io) => io,
                        Err(reason) => {
                            return Err(SendError::NotSent {
                                reason,
                                connect: true,
                                request: Box::new(req),
                            });
                        }
                    };
                    match self.h2_handshake(io).await {
                        Ok(sender) => {
                            *shared = Some(sender.clone());
                            sender
                        }
                        Err(reason) => {
                            return Err(SendError::NotSent {
                                reason,
                                connect: true,
                                request: Box::new(req),
                            });
                        }
                    }
                }
            }
        };
        match sender.try_send_request(req).await {
            Ok(res) => Ok(res.map(|b| b.map_err(BoxError::from).boxed_unsync())),
            Err(mut e) => match e.take_message() {
                Some(back) => Err(SendError::NotSent {
                    reason: e.into_error().to_string(),
                    connect: false,
                    request: Box::new(back),
                }),
                None => Err(SendError::Failed(e.into_error())),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that gives its connection back to the pool once it has ended (when
    /// read to its end, or dropped after its last byte: a server stops polling a body whose
    /// length is exhausted).
    struct PoolReturn {
        #[pin]
        inner: hyper::body::Incoming,
        sender: Option<http1::SendRequest<ProxyBody>>,
        pool: Weak<ConnPool>,
        // Whether the request's body went out to its end (else the connection is not reused);
        // `None`: the request had no body.
        body_sent: Option<Arc<AtomicBool>>,
    }

    impl PinnedDrop for PoolReturn {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.inner.is_end_stream() {
                give_back(this.sender, this.pool, this.body_sent);
            }
        }
    }
}

/// Returns the connection to the pool, if its request body was sent to its end.
fn give_back(
    sender: &mut Option<http1::SendRequest<ProxyBody>>,
    pool: &Weak<ConnPool>,
    body_sent: &Option<Arc<AtomicBool>>,
) {
    if let (Some(sender), Some(pool)) = (sender.take(), pool.upgrade())
        && body_sent
            .as_ref()
            .is_none_or(|sent| sent.load(Ordering::Acquire))
    {
        pool.checkin(sender);
    }
}

pin_project_lite::pin_project! {
    /// A request body that records when it has been sent to its end.
    struct SentToEnd {
        #[pin]
        inner: ProxyBody,
        done: Arc<AtomicBool>,
    }
}

impl Body for SentToEnd {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.done.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.done.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body for PoolReturn {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(None) => {
                give_back(this.sender, this.pool, this.body_sent);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.sender.take();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    give_back(this.sender, this.pool, this.body_sent);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
