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

/// Presence across two nodes on the backplane at `url` (one Redis or a cluster): a join and a
/// leave on node B are shown to a member on node A; both nodes list the members of both; the
/// entries of a node that is gone (no heartbeat) are left out and removed. `presence_hash` is
/// where the room's presence lives for `prefix`.
#[cfg(feature = "redis")]
pub(crate) async fn presence_across_nodes(
    url: &str,
    prefix: &str,
    presence_hash: &str,
    redis_port: u16,
) {
    let room = "doc:present";
    let config = || WsConfig::default().presence("doc");
    let (a, addr_a) = start(config()).await;
    let (b, addr_b) = start(config()).await;
    a.connect_backplane(url, prefix).await.unwrap();
    b.connect_backplane(url, prefix).await.unwrap();
    let join = |addr, user: &'static str| async move {
        let mut ws = connect(addr, &token(user, &[], &format!("s-{user}")))
            .await
            .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
        send(
            &mut ws,
            serde_json::json!({"type": "subscribe", "room": room}),
        )
        .await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        ws
    };
    let mut on_a = join(addr_a, "u1").await;
    let on_b = join(addr_b, "u2").await;
    let shown = next_json(&mut on_a).await;
    assert_eq!(
        (&shown["type"], &shown["user"], &shown["joined"]),
        (&"presence".into(), &"u2".into(), &true.into()),
        "{shown}"
    );
    let both = vec![("u1".to_owned(), 1), ("u2".to_owned(), 1)];
    for node in [&a, &b] {
        let mut listed = node.presence_everywhere(room).await.unwrap();
        for _ in 0..100 {
            if listed == both {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            listed = node.presence_everywhere(room).await.unwrap();
        }
        assert_eq!(listed, both, "every node lists the members of every node");
    }
    assert_eq!(
        a.presence(room),
        vec![("u1".to_owned(), 1)],
        "this node's own"
    );

    // A node that stopped without its members leaving: its entries do not count, and go.
    let out = std::process::Command::new("redis-cli")
        .args([
            "-c",
            "-p",
            &redis_port.to_string(),
            "hset",
            presence_hash,
            "0gone|ghost",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(a.presence_everywhere(room).await.unwrap(), both);
    let left = std::process::Command::new("redis-cli")
        .args([
            "-c",
            "-p",
            &redis_port.to_string(),
            "hexists",
            presence_hash,
            "0gone|ghost",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "0",
        "a dead node's entry is removed"
    );

    drop(on_b);
    let shown = next_json(&mut on_a).await;
    assert_eq!(
        (&shown["user"], &shown["joined"]),
        (&"u2".into(), &false.into()),
        "{shown}"
    );
    let mut listed = a.presence_everywhere(room).await.unwrap();
    for _ in 0..100 {
        if listed.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        listed = a.presence_everywhere(room).await.unwrap();
    }
    assert_eq!(listed, vec![("u1".to_owned(), 1)]);
}
