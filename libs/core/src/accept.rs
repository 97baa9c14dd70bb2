//! Accepting a server's next TCP connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next connection on `listener`, with `TCP_NODELAY` set (a small answer or frame goes out
/// at once instead of waiting for the previous segment's ACK). An accept that fails (out of file
/// descriptors and the like) is logged and retried after 50 ms instead of spinning or ending the
/// server.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                // ok to ignore: without it the connection still works, only with Nagle's delays
                let _ = stream.set_nodelay(true);
                return (stream, addr);
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
