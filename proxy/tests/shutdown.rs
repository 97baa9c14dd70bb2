//! Graceful shutdown with an upgraded connection open: `serve` closes the tunnel on both sides
//! and returns once the tunnel's task has ended.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use tidewell_proxy::{Proxy, ProxyConfig, Route};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a step may take before the test calls it stuck (a hang guard, not a measurement).
const STUCK: Duration = Duration::from_secs(20);

/// An upstream whose every request is a WebSocket upgrade that echoes messages; each upgraded
/// connection, once it has ended, is reported on the channel.
async fn start_ws_echo() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let ended = ended.clone();
            let svc = hyper::service::service_fn(move |req| {
                let ended = ended.clone();
                async move { Ok::<_, std::convert::Infallible>(ws_echo(req, ended)) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades(),
            );
        }
    });
    (addr, ends)
}

fn ws_echo(
    mut req: http::Request<Incoming>,
    ended: mpsc::UnboundedSender<()>,
) -> http::Response<Empty<Bytes>> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
        let _ = ended.send(());
    });
    http::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", key)
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn shutdown_closes_open_tunnels_and_waits_for_their_tasks() {
    let (upstream, mut upstream_ends) = start_ws_echo().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let route = Route::new("/", &[&format!("http://{upstream}")]).unwrap();
    let proxy = Proxy::new(ProxyConfig::new().route(route)).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    // A drain far longer than `STUCK`: a tunnel has no in-flight request to wait for, so it
    // must not hold the shutdown until the drain runs out.
    let server = tokio::spawn(tidewell_proxy::serve(
        listener,
        proxy,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(600),
    ));

    let (mut ws, res) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    ws.send(Message::text("through the tunnel")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "through the tunnel");

    stop.send(()).unwrap();
    tokio::time::timeout(STUCK, server)
        .await
        .expect("serve returns with a tunnel open")
        .unwrap();
    // Both sides of the tunnel were closed by the proxy (neither sent a close frame).
    let end = tokio::time::timeout(STUCK, ws.next())
        .await
        .expect("the client's side of the tunnel is closed");
    assert!(
        matches!(end, None | Some(Err(_))),
        "closed without another message: {end:?}"
    );
    tokio::time::timeout(STUCK, upstream_ends.recv())
        .await
        .expect("the upstream's side of the tunnel is closed")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// A request still waiting on its upstream when the drain runs out: `serve` returns and the
/// client's connection is closed, not left running without an owner.
#[tokio::test]
async fn connections_that_outlast_the_drain_are_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // An upstream that reads the request and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = silent.local_addr().unwrap();
    let (reached, mut reached_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
            let _ = reached.send(());
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let route = Route::new("/", &[&format!("http://{upstream}")])
        .unwrap()
        .timeout(Duration::from_secs(600));
    let proxy = Proxy::new(ProxyConfig::new().route(route)).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tidewell_proxy::serve(
        listener,
        proxy,
        async move {
            let _ = stopped.await;
        },
        Duration::from_millis(200),
    ));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    // In flight: the proxy has connected to the upstream for it.
    tokio::time::timeout(STUCK, reached_rx.recv())
        .await
        .expect("the request reaches the upstream")
        .unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(STUCK, server)
        .await
        .expect("serve returns once the drain has run out")
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(STUCK, client.read_to_end(&mut rest))
        .await
        .expect("the client's connection is closed when the drain runs out");
    assert!(
        read.is_err() || !rest.starts_with(b"HTTP/1.1 200"),
        "no answer, the connection closed: {read:?} {:?}",
        String::from_utf8_lossy(&rest)
    );
}
