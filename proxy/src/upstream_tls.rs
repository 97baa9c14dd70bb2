//! TLS to `https://` upstreams: the route's trust (the system's roots, or its CA file), SNI and
//! verification of the upstream's host name, HTTP/2 when the upstream picks `h2` by ALPN.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Error;
use crate::pool::AnswerFirst;

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
