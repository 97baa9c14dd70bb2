//! What the platform's tests and its benchmark share: a platform on a free port, requests to it
//! on fresh HTTP/1.1 connections, and signing up.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tidewell_platform::PlatformConfig;
use tidewell_testkit::{TestDatabase, TestRabbit, TestRedis, unique_name};

/// A WebSocket client connection.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to `addr`'s `/ws` with `token`, past its `welcome` frame.
pub(crate) async fn ws(addr: SocketAddr, token: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let welcome = next_json(&mut ws, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(welcome["type"], "welcome");
    ws
}

/// The next text frame as JSON within `limit` (pings and pongs skipped); `None` when none came,
/// the connection closed or the frame is not JSON.
pub(crate) async fn next_json(ws: &mut Ws, limit: std::time::Duration) -> Option<Value> {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            _ => return None,
        }
    }
}

/// The password of every account the tests make.
pub(crate) const PASSWORD: &str = "a sound password 42";

/// The platform on embedded defaults signed with `secret`, on a free port, its SQLite files
/// under `data` and its in-memory hub of its own.
pub(crate) fn local_config(secret: &[u8], data: &Path) -> PlatformConfig {
    let mut c = PlatformConfig::embedded(secret.to_vec());
    c.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    c.data_dir = data.to_path_buf();
    c.hub_url = format!("memory://{}", unique_name("platform"));
    c
}

/// `method path` to `addr`, with `token` as the bearer token and `body` as JSON.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    req.body(body).unwrap()
}

/// Sends `req` to `addr` on a fresh HTTP/1.1 connection: the status, the headers and the whole
/// body.
pub(crate) async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> (u16, HeaderMap, Bytes) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (
        status,
        headers,
        res.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// One request (see [`request`]): the status and the body as JSON (`null` if it is not).
pub(crate) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, _, bytes) = send(addr, request(addr, method, path, token, body.as_ref())).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Registers `email` as `name` with [`PASSWORD`]: 201.
pub(crate) async fn register(addr: SocketAddr, email: &str, name: &str) {
    let body = json!({"email": email, "password": PASSWORD, "name": name});
    let (s, v) = call(addr, "POST", "/api/auth/register", None, Some(body)).await;
    assert_eq!(s, 201, "register {email}: {v}");
}

/// Signs `email` in (on `device`, if named): 200, and the tokens.
pub(crate) async fn login(addr: SocketAddr, email: &str, device: Option<&str>) -> Value {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(d) = device {
        body["device_id"] = d.into();
    }
    let (s, tokens) = call(addr, "POST", "/api/auth/login", None, Some(body)).await;
    assert_eq!(s, 200, "login {email}: {tokens}");
    tokens
}

/// The access token of `tokens` (an answer of [`login`]).
pub(crate) fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// A folder of its own under the temporary folder for one platform's data, removed on drop.
pub(crate) struct DataDir(std::path::PathBuf);

impl DataDir {
    /// A folder named after `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(unique_name(prefix)))
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        // ok to ignore: a platform that never started made no folder
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `c` on `rabbit`'s broker, with exchanges and queues of its own (removed with `rabbit`).
pub(crate) fn on_rabbit(c: &mut PlatformConfig, rabbit: &TestRabbit) {
    c.hub_url = rabbit.url().to_owned();
    c.exchange = Some(rabbit.exchange("events"));
    rabbit.exchange("events.dlx");
    c.queue_prefix = format!("{}.", rabbit.prefix());
    for q in ["admin", "profile", "gateway"] {
        rabbit.queue(&format!("{q}.events"));
        rabbit.queue(&format!("{q}.events.dlq"));
    }
}

/// Makes `rabbit` delete, when dropped, every queue `platform` declared on its broker (retry
/// wait queues included: quorum queues left behind weigh on the shared test broker).
pub(crate) fn owns(rabbit: &TestRabbit, platform: &tidewell_platform::Platform) {
    for queue in platform.queues() {
        rabbit.own_queue(&queue);
    }
}

/// `c` on the real services: `rabbit`'s broker (see [`on_rabbit`]), `redis` as the cache, and the
/// four databases `dbs` (auth, payments, admin, profile).
pub(crate) fn on_real_services(
    c: &mut PlatformConfig,
    rabbit: &TestRabbit,
    redis: &TestRedis,
    dbs: &[TestDatabase],
) {
    on_rabbit(c, rabbit);
    c.cache_url = redis.url().to_owned();
    c.cache_prefix = Some(redis.prefix().to_owned());
    c.auth_db = Some(dbs[0].url().to_owned());
    c.payments_db = Some(dbs[1].url().to_owned());
    c.admin_db = Some(dbs[2].url().to_owned());
    c.profile_db = Some(dbs[3].url().to_owned());
}
