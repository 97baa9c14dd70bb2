//! A server connection that closes politely (RFC 9112 9.6).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a closing connection keeps reading what the peer still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much it reads at most while doing so.
const LINGER_BYTES: u64 = 32 << 20;

/// A server's connection that, when closed, first closes its sending half and then reads and
/// discards what the client still sends, until the client closes too, for up to 2 s and 32 MiB
/// (RFC 9112 9.6).
///
/// Closing at once with unread bytes in the socket makes the kernel answer them with a reset,
/// and a reset can destroy the response the client had not read yet: a server that answers
/// `413 Payload Too Large` early, while the client is still sending, would otherwise often be
/// seen as a dropped connection (a proxy in front of it then answers 502). Wrap each accepted
/// stream in it before handing it to the HTTP server; reads and writes pass through untouched.
///
/// ```
/// use tidewell_core::LingeringClose;
/// use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (client, server) = tokio::io::duplex(64);
/// let mut server = LingeringClose::new(server);
/// let (mut from_client, mut to_client) = tokio::io::split(client);
/// server.write_all(b"HTTP/1.1 413 Payload Too Large\r\n\r\n").await?;
/// to_client.write_all(b"the rest of a body the server will not read").await?;
/// to_client.shutdown().await?; // the client is done sending: the server's close ends at once
/// server.shutdown().await?; // half-closes, then reads and discards until the client's end
/// let mut answer = String::new();
/// from_client.read_to_string(&mut answer).await?;
/// assert!(answer.starts_with("HTTP/1.1 413"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LingeringClose<T> {
    inner: T,
    state: State,
}

#[derive(Debug)]
enum State {
    Open,
    Draining {
        deadline: Pin<Box<tokio::time::Sleep>>,
        left: u64,
    },
    Closed,
}

impl<T> LingeringClose<T> {
    /// Wraps a server's accepted connection.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            state: State::Open,
        }
    }

    /// The connection inside.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LingeringClose<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.state = State::Draining {
                        deadline: Box::pin(tokio::time::sleep(LINGER)),
                        left: LINGER_BYTES,
                    };
                }
                State::Draining { deadline, left } => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0_u8; 8 * 1024];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            let n = u64::try_from(buf.filled().len()).unwrap_or(u64::MAX);
                            *left = left.saturating_sub(n);
                            if *left == 0 {
                                this.state = State::Closed;
                            }
                        }
                        // The client closed its half (or the connection broke): done.
                        Poll::Ready(_) => this.state = State::Closed,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn a_client_still_sending_reads_the_whole_answer_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut s = LingeringClose::new(stream);
            let mut head = [0_u8; 16];
            s.read_exact(&mut head).await.unwrap();
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            s.shutdown().await.unwrap();
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Like an HTTP client (hyper's, a proxy's), it sends its whole request before it reads
        // and fails on a write error. Four MiB the server never reads as a request: closing at
        // once, the server's kernel resets the connection and the client never gets to read.
        let body = vec![b'x'; 4 << 20];
        client
            .write_all(&body)
            .await
            .expect("the whole request is taken");
        client.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 413"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_closes_is_dropped_after_the_linger() {
        let (client, server) = tokio::io::duplex(1024);
        let mut server = LingeringClose::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert!(started.elapsed() >= LINGER);
        drop(client);
    }
}
