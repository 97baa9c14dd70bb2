//! A test upstream and a proxy in front of it, on ephemeral ports.
#![allow(dead_code, reason = "each test binary uses part of the fixture")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use tidewell_proxy::{Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into()).boxed_unsync()
}

/// The upstream: `/echo` answers the request as JSON (method, path, query, every header value in
/// order); `/slow` waits 5 s; `/sleep/<ms>` waits that long; `/cookies` sets two cookies; `/trailers` sends a chunked body with
/// a trailer; `/bytes/<n>` streams n zero bytes; `/count` reads the body and answers its length;
/// `/ws` echoes WebSocket messages.
async fn upstream(req: http::Request<Incoming>) -> Result<http::Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    Ok(match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            http::Response::new(full("late"))
        }
        "/cookies" => http::Response::builder()
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/")
            .header("connection", "x-upstream-private")
            .header("x-upstream-private", "secret")
            .header("keep-alive", "timeout=5")
            .body(full("ok"))
            .unwrap(),
        "/trailers" => {
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from("part1 "))),
                Ok(Frame::data(Bytes::from("part2"))),
                Ok(Frame::trailers({
                    let mut t = http::HeaderMap::new();
                    t.insert("x-checksum", "abc123".parse().unwrap());
                    t
                })),
            ];
            http::Response::builder()
                .header("trailer", "x-checksum")
                .body(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
                .unwrap()
        }
        "/count" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            http::Response::new(full(n.to_string()))
        }
        p if p.starts_with("/sleep/") => {
            let ms: u64 = p.trim_start_matches("/sleep/").parse().unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            http::Response::new(full("slept"))
        }
        p if p.starts_with("/bytes/") => {
            let n: u64 = p.trim_start_matches("/bytes/").parse().unwrap();
            let chunk = Bytes::from(vec![0u8; 64 * 1024]);
            let chunks = n / chunk.len() as u64;
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
            );
            http::Response::builder()
                .header("content-length", (chunks * 64 * 1024).to_string())
                .body(StreamBody::new(stream).boxed_unsync())
                .unwrap()
        }
        _ => {
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            let json = serde_json::json!({
                "method": req.method().as_str(),
                "path": path,
                "query": req.uri().query(),
                "version": format!("{:?}", req.version()),
                "headers": headers,
            });
            http::Response::builder()
                .header("content-type", "application/json")
                .body(full(json.to_string()))
                .unwrap()
        }
    })
}

/// Starts the upstream (HTTP/1.1 and h2c on one port); answers its address.
pub(crate) async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    if req.uri().path() == "/ws" {
                        return Ok(ws_echo(req));
                    }
                    upstream(req).await
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    addr
}

/// An upstream that answers every request with a 1 MiB content-length, sends 1000 bytes and
/// closes the connection.
pub(crate) async fn start_resetting_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(reset_mid_body(stream));
        }
    });
    addr
}

/// An upstream that answers a `POST` with 413 as soon as it has the head, then leaves the body
/// unread and the connection open (as a server with a body limit that lingers before closing),
/// and answers every other request `200 ok` on a keep-alive connection.
pub(crate) async fn start_early_answering_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer_early(stream));
        }
    });
    addr
}

/// An upstream that answers `413` as soon as it has a request's head and then resets the
/// connection with the body unread (`SO_LINGER` 0): a server that does not close politely.
pub(crate) async fn start_resetting_early_answerer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = vec![0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!")
                    .await;
                let _ = stream.set_zero_linger();
                drop(stream);
            });
        }
    });
    addr
}

async fn answer_early(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let request: Vec<u8> = head.drain(..end + 4).collect();
            if request.starts_with(b"POST") {
                let _ = stream
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                    .await;
                // Never reads the body: the connection stays busy until the test ends.
                std::future::pending::<()>().await;
            }
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn reset_mid_body(mut stream: TcpStream) {
    let mut buf = vec![0u8; 4096];
    let _ = stream.read(&mut buf).await;
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n")
        .await;
    let _ = stream.write_all(&[b'x'; 1000]).await;
    let _ = stream.flush().await;
    drop(stream);
}

fn ws_echo(mut req: http::Request<Incoming>) -> http::Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        use futures_util::{SinkExt as _, StreamExt as _};
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
    });
    http::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", key)
        .body(full(""))
        .unwrap()
}

/// Serves `config` through `tidewell_proxy::serve`; answers the proxy's address.
pub(crate) async fn start_proxy(config: ProxyConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy::new(config).unwrap();
    tokio::spawn(tidewell_proxy::serve(
        listener,
        proxy,
        std::future::pending::<()>(),
        Duration::from_secs(1),
    ));
    addr
}

/// Sends raw bytes and reads the whole response (the request should ask to close).
pub(crate) async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A pooled hyper client for tests.
pub(crate) fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    UnsyncBoxBody<Bytes, Infallible>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

pub(crate) fn empty() -> UnsyncBoxBody<Bytes, Infallible> {
    full(Bytes::new())
}

pub(crate) fn body(b: impl Into<Bytes>) -> UnsyncBoxBody<Bytes, Infallible> {
    full(b)
}

/// The upstream's view of a request sent to `/echo`.
pub(crate) async fn echo_json(res: http::Response<Incoming>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&bytes)))
}

/// All values of `name` the upstream saw, in order.
pub(crate) fn seen(json: &serde_json::Value, name: &str) -> Vec<String> {
    json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == name)
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect()
}
