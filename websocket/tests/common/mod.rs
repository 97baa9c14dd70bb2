//! A server on an ephemeral port, tokens, and a client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test fixture; each test binary uses part of it"
)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tidewell_auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
use tidewell_websocket::{WsConfig, WsServer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub(crate) fn issuer() -> Issuer {
    Issuer::new(SigningKey::hs256("k1", SECRET).unwrap(), "auth", "tidewell")
}

pub(crate) fn token(sub: &str, roles: &[&str], sid: &str) -> String {
    let i = issuer();
    let mut c = i.claims_for(sub);
    c.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    c.sid = Some(sid.to_owned());
    c.did = Some(format!("dev-{sub}"));
    i.sign(&c).unwrap().into_string()
}

pub(crate) async fn start(config: WsConfig) -> (WsServer, SocketAddr) {
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("k1", SECRET).unwrap()]),
        "auth",
        "tidewell",
    );
    let server = WsServer::builder(verifier)
        .config(config)
        .authorize(|claims, room| {
            room.strip_prefix("payment:")
                .is_some_and(|id| claims.has_role("admin") || id.starts_with(&claims.sub))
                || room.starts_with("price:")
                || room.starts_with("doc:")
        })
        // As if it asked another service: `ledger:<sub>` is its owner's alone.
        .authorize_async(|claims, room| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            room.strip_prefix("ledger:") == Some(claims.sub.as_str())
        })
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(s.handle(req)) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (server, addr)
}

pub(crate) async fn connect(addr: SocketAddr, token: &str) -> Result<Client, WsError> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

pub(crate) async fn next_json(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

pub(crate) async fn send(ws: &mut Client, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

pub(crate) fn envelope(n: u64) -> Value {
    serde_json::json!({"id": format!("ev-{n}"), "type": "tests.thing.happened", "data": {"n": n}})
}
