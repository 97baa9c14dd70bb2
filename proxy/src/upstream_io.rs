//! The byte stream to an upstream: TCP that keeps an answer sent before a reset
//! ([`AnswerFirst`]), in plaintext or under TLS for `https://` upstreams (the route's trust: the
//! system's roots or its CA file; SNI and verification of the upstream's host name; HTTP/2 when
//! the upstream picks `h2` by ALPN).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Error;

/// The TLS side of one `https://` upstream.
pub(crate) struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    host: String,
}

impl UpstreamTls {
    /// TLS to `host` (the upstream URL's host: the name sent as SNI and checked in its
    /// certificate) with `config` (its ALPN offer is set here: `h2`, then `http/1.1`).
    pub(crate) fn new(mut config: rustls::ClientConfig, host: &str) -> Result<Self, Error> {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned()).map_err(|e| {
            Error::Config(format!(
                "upstream host {host:?} is not a TLS server name: {e}"
            ))
        })?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
            host: host.to_owned(),
        })
    }

    /// The handshake over `tcp`; answers the stream and whether the upstream chose HTTP/2.
    pub(crate) async fn handshake(&self, tcp: AnswerFirst) -> Result<(Io, bool), String> {
        match self.connector.connect(self.name.clone(), tcp).await {
            Ok(stream) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                Ok((Io::Tls(Box::new(stream)), h2))
            }
            Err(e) => Err(tidewell_core::tls::explain(&self.host, &e)
                .unwrap_or_else(|| format!("TLS to {} failed: {e}", self.host))),
        }
    }
}

/// A connection to an upstream, in plaintext or TLS.
pub(crate) enum Io {
    Plain(AnswerFirst),
    Tls(Box<tokio_rustls::client::TlsStream<AnswerFirst>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An upstream connection that, when the upstream has reset it *after answering* (its answer is
/// waiting to be read), takes the rest of the request as sent instead of failing the write:
/// hyper then reads that answer (a `413` for a body it would not take, sent while the body was
/// still going out) and the client gets it, instead of a `502` for "error writing a body". A
/// write error with no answer waiting (an idle pooled connection the upstream closed, an
/// upstream that died) is returned as it is, so hyper hands back a request it did not send and
/// the pool retries it on another connection. An upstream that closes politely (RFC 9112 9.6)
/// never gets here. A reset connection is never reused: its reads fail, so hyper closes it.
#[derive(Debug)]
pub(crate) struct AnswerFirst {
    stream: tokio::net::TcpStream,
    reset: bool,
}

impl AnswerFirst {
    /// The connection on `stream`.
    pub(crate) fn new(stream: tokio::net::TcpStream) -> Self {
        Self {
            stream,
            reset: false,
        }
    }

    /// A failed write because the upstream is gone while its answer waits to be read: taken as
    /// written (and every write after it). Any other result is returned as it is.
    fn gone(&mut self, result: std::io::Result<usize>, len: usize) -> std::io::Result<usize> {
        match result {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                ) && self.answer_waiting() =>
            {
                tracing::debug!(error = %e, "upstream reset while the request was sent; reading its answer");
                self.reset = true;
                Ok(len)
            }
            other => other,
        }
    }

    /// Whether bytes from the upstream are waiting to be read (checked without waiting). The
    /// socket reports a reset once, to the first call after it (the kernel then clears it), and
    /// only then the bytes received before it: so a failed look is tried once more.
    fn answer_waiting(&self) -> bool {
        // A direct peek: tokio's own would wait for the reactor to report readiness first.
        let socket = socket2::SockRef::from(&self.stream);
        for _ in 0..2 {
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            match socket.peek(&mut probe) {
                Ok(n) => return n > 0,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => {} // the reset, reported once
            }
        }
        false
    }
}

impl AsyncRead for AnswerFirst {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AnswerFirst {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.reset {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, buf));
        Poll::Ready(self.gone(result, buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.reset {
            return Poll::Ready(Ok(len));
        }
        let result = std::task::ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, bufs));
        Poll::Ready(self.gone(result, len))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.reset {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.reset {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
