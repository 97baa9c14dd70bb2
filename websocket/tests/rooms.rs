//! The WebSocket server end to end over real sockets: authentication, rooms, recovery,
//! heartbeat, backpressure, bad input, shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use tidewell_auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
use tidewell_websocket::{Overflow, WsConfig, WsServer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_without_upgrade() {
    let (server, addr) = start(WsConfig::default()).await;
    let expired = {
        let i = issuer();
        let mut c = i.claims_for("u1");
        c.exp = 1;
        c.nbf = 0;
        c.iat = 0;
        i.sign(&c).unwrap().into_string()
    };
    let other_key = Issuer::new(
        SigningKey::hs256("k1", b"another secret of 32 bytes......").unwrap(),
        "auth",
        "tidewell",
    )
    .sign(&issuer().claims_for("u1"))
    .unwrap()
    .into_string();
    let alg_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSJ9.";
    for bad in [expired.as_str(), other_key.as_str(), alg_none, "garbage"] {
        match connect(addr, bad).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), 401, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    let no_token = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await;
    assert!(matches!(no_token, Err(WsError::Http(r)) if r.status() == 401));
    assert_eq!(server.stats().rejected, 5);
    assert_eq!(server.stats().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_own_rooms_and_authorization() {
    let (server, addr) = start(WsConfig::default()).await;
    let mut ws = connect(addr, &token("u1", &["support"], "s1"))
        .await
        .unwrap();
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["protocol"], 1);
    assert_eq!(
        welcome["rooms"],
        serde_json::json!(["user:u1", "role:support", "device:dev-u1", "broadcast"])
    );
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","id":1,"room":"payment:u1-9"}),
    )
    .await;
    let ok = next_json(&mut ws).await;
    assert_eq!(
        (ok["type"].as_str(), ok["id"].as_u64()),
        (Some("subscribed"), Some(1))
    );
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","id":2,"room":"payment:u2-1"}),
    )
    .await;
    let no = next_json(&mut ws).await;
    assert_eq!(
        (no["type"].as_str(), no["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );

    // The asynchronous check: the owner may join, nobody else; answers keep the frames' order.
    for (id, room) in [(3, "ledger:u2"), (4, "ledger:u1"), (5, "user:u1")] {
        send(
            &mut ws,
            serde_json::json!({"type":"subscribe","id":id,"room":room}),
        )
        .await;
    }
    let mut answers = Vec::new();
    for _ in 0..3 {
        let a = next_json(&mut ws).await;
        let what = a["code"]
            .as_str()
            .or(a["type"].as_str())
            .unwrap()
            .to_owned();
        answers.push((a["id"].as_u64(), what));
    }
    assert_eq!(
        answers,
        [
            (Some(3), "forbidden".to_owned()),
            (Some(4), "subscribed".to_owned()),
            (Some(5), "subscribed".to_owned())
        ]
    );

    // Events reach the right connections only.
    let mut other = connect(addr, &token("u2", &[], "s2")).await.unwrap();
    next_json(&mut other).await;
    server.publish("user:u1", &envelope(1)).unwrap();
    server.publish("payment:u1-9", &envelope(2)).unwrap();
    server.publish("broadcast", &envelope(3)).unwrap();
    for n in 1..=3 {
        let ev = next_json(&mut ws).await;
        assert_eq!(ev["type"], "event");
        assert_eq!(ev["event"]["id"], format!("ev-{n}"));
    }
    let ev = next_json(&mut other).await;
    assert_eq!(ev["event"]["id"], "ev-3", "u2 sees only the broadcast");
    assert_eq!(server.connections_of_user("u1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_since_recovers_exactly_what_was_missed() {
    let (server, addr) = start(WsConfig::default()).await;
    let t = token("u1", &[], "s1");
    let mut ws = connect(addr, &t).await.unwrap();
    next_json(&mut ws).await;
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","room":"doc:7"}),
    )
    .await;
    let sub = next_json(&mut ws).await;
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    server.publish("doc:7", &envelope(1)).unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(first["offset"], 1);
    drop(ws);

    for n in 2..=5 {
        server.publish("doc:7", &envelope(n)).unwrap();
    }
    let mut ws = connect(addr, &t).await.unwrap();
    next_json(&mut ws).await;
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","id":9,"room":"doc:7","since":{"epoch":epoch,"offset":1}}),
    )
    .await;
    let sub = next_json(&mut ws).await;
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["offset"], 5);
    for n in 2..=5 {
        let ev = next_json(&mut ws).await;
        assert_eq!(ev["offset"], n);
        assert_eq!(ev["event"]["id"], format!("ev-{n}"));
    }
    server.publish("doc:7", &envelope(6)).unwrap();
    assert_eq!(
        next_json(&mut ws).await["offset"],
        6,
        "then live events, in order"
    );

    // A different epoch (history lost) cannot be recovered.
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","room":"doc:7","since":{"epoch":"other","offset":3}}),
    )
    .await;
    let sub = next_json(&mut ws).await;
    assert_eq!(sub["recovered"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_fails_when_history_is_too_short() {
    let mut config = WsConfig::default();
    config.history_len = 3;
    let (server, addr) = start(config).await;
    let t = token("u1", &[], "s1");
    let mut ws = connect(addr, &t).await.unwrap();
    next_json(&mut ws).await;
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","room":"doc:1"}),
    )
    .await;
    let epoch = next_json(&mut ws).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=10 {
        server.publish("doc:1", &envelope(n)).unwrap();
    }
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","room":"doc:1","since":{"epoch":epoch,"offset":2}}),
    )
    .await;
    // Skip the live events already queued; find the answer.
    loop {
        let f = next_json(&mut ws).await;
        if f["type"] == "subscribed" {
            assert_eq!(f["recovered"], false, "{f}");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_by_the_heartbeat() {
    let mut config = WsConfig::default();
    config.ping_interval = Duration::from_millis(300);
    config.pong_timeout = Duration::from_millis(300);
    let (server, addr) = start(config).await;
    // A raw client that completes the handshake and then never reads nor answers pings.
    let mut s = TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let req = format!(
        "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nauthorization: Bearer {}\r\n\r\n",
        token("u1", &[], "s1")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if server.stats().connections == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "closed by the heartbeat: {:?}", server.stats());
    assert_eq!(server.stats().heartbeat_timeouts, 1);

    // A client that answers pings (tungstenite does while it reads) stays.
    let mut ws = connect(addr, &token("u2", &[], "s2")).await.unwrap();
    next_json(&mut ws).await;
    let until = tokio::time::Instant::now() + Duration::from_millis(1_500);
    let mut pings = 0;
    while let Ok(m) = tokio::time::timeout_at(until, ws.next()).await {
        match m {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("nothing but pings: {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 1.5 s");
    assert_eq!(server.stats().connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_stays_bounded_then_gets_the_policy() {
    let config = WsConfig::default().overflow("doc", Overflow::Disconnect);
    let (server, addr) = start(config).await;
    // Connects, then never reads again.
    let mut ws = connect(addr, &token("u1", &[], "s1")).await.unwrap();
    next_json(&mut ws).await;
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","room":"price:x"}),
    )
    .await;
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","room":"doc:x"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let big = serde_json::json!({"id":"e","type":"t.t.t","data":"x".repeat(4000)});
    // price:x uses drop-oldest: the queue stays bounded, the connection stays.
    for _ in 0..2_000 {
        server.publish("price:x", &big).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = server.stats();
    assert!(st.queued_bytes <= 256 * 1024, "{st:?}");
    assert!(st.shed > 0, "{st:?}");
    assert_eq!(st.connections, 1);
    // doc:x uses disconnect: overflow closes it with 4000.
    for _ in 0..2_000 {
        server.publish("doc:x", &big).unwrap();
    }
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if server.stats().connections == 0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "{:?}", server.stats());
    assert_eq!(server.stats().slow_disconnects, 1);
    // The client reads what was sent, then the close with 4000 (if it got through).
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert!(matches!(code, None | Some(4000)), "{code:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_the_server_stays_up() {
    let (server, addr) = start(WsConfig::default()).await;
    let mut ws = connect(addr, &token("u1", &[], "s1")).await.unwrap();
    next_json(&mut ws).await;
    ws.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_frame");
    ws.send(Message::text(r#"{"type":"fly"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_frame");
    // An error that answers a frame with an integer id carries that id (docs/protocol.md).
    ws.send(Message::text(
        r#"{"type":"subscribe","id":77,"room":"user:u1","colour":"red"}"#,
    ))
    .await
    .unwrap();
    let error = next_json(&mut ws).await;
    assert_eq!(
        (error["code"].as_str(), error["id"].as_u64()),
        (Some("bad_frame"), Some(77)),
        "{error}"
    );
    ws.send(Message::text(r#"{"type":"subscribe","id":"x","room":7}"#))
        .await
        .unwrap();
    let error = next_json(&mut ws).await;
    assert_eq!(error["code"], "bad_frame");
    assert!(
        error.get("id").is_none_or(serde_json::Value::is_null),
        "{error}"
    );
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "binary_not_supported");
    send(
        &mut ws,
        serde_json::json!({"type":"subscribe","room":"bad room"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "bad_room");

    // 10,000 garbage frames: rate limited, then closed with 4003; nothing else breaks.
    let mut garbage = connect(addr, &token("u3", &[], "s3")).await.unwrap();
    next_json(&mut garbage).await;
    for _ in 0..10_000 {
        if garbage.send(Message::text("{{{")).await.is_err() {
            break;
        }
    }
    // The client sees the 4003 close, or a reset if the server closed with unread frames.
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), garbage.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert!(matches!(code, None | Some(4003)), "{code:?}");
    let mut closed = false;
    for _ in 0..60 {
        if server.connections_of_user("u3").is_empty() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the garbage sender was disconnected");

    // Oversized message: closed with 1009.
    let mut big = connect(addr, &token("u4", &[], "s4")).await.unwrap();
    next_json(&mut big).await;
    let _ = big.send(Message::text("x".repeat(70 * 1024))).await;
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), big.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(1009));

    // The first connection still works.
    server.publish("user:u1", &envelope(1)).unwrap();
    assert_eq!(next_json(&mut ws).await["event"]["id"], "ev-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_session_and_shutdown_close_with_their_codes() {
    let (server, addr) = start(WsConfig::default()).await;
    let mut a = connect(addr, &token("u1", &[], "s-revoked")).await.unwrap();
    next_json(&mut a).await;
    let mut b = connect(addr, &token("u1", &[], "s-kept")).await.unwrap();
    next_json(&mut b).await;
    assert_eq!(server.disconnect_session("s-revoked"), 1);
    assert!(
        server.connections_of_session("s-revoked").is_empty(),
        "a revoked session is not listed once disconnect_session returns"
    );
    assert_eq!(
        server.connections_of_user("u1").len(),
        1,
        "the other session stays"
    );
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), a.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(4001));
    server.shutdown(Duration::from_secs(3)).await;
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), b.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(1001));
    assert!(
        matches!(connect(addr, &token("u9", &[], "s9")).await, Err(WsError::Http(r)) if r.status() == 503)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admit_refuses_revoked_sessions_before_the_upgrade() {
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("k1", SECRET).unwrap()]),
        "auth",
        "tidewell",
    );
    let server = WsServer::builder(verifier)
        .admit(|claims| claims.sid.as_deref() != Some("s-revoked"))
        .build()
        .unwrap();
    let upgrade = |tok: &str| {
        http::Request::builder()
            .uri("/ws")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .header("authorization", format!("Bearer {tok}"))
            .body(())
            .unwrap()
    };
    let refused = server.handle(upgrade(&token("u1", &[], "s-revoked")));
    assert_eq!(refused.status(), 401);
    let body = http_body_util::BodyExt::collect(refused.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("session_revoked"));
    assert_eq!(server.stats().rejected, 1);
    let admitted = server.handle(upgrade(&token("u1", &[], "s-ok")));
    assert_eq!(admitted.status(), 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_reported_where_enabled() {
    let (server, addr) = start(WsConfig::default().presence("doc")).await;
    let mut a = connect(addr, &token("u1", &[], "s1")).await.unwrap();
    next_json(&mut a).await;
    send(
        &mut a,
        serde_json::json!({"type":"subscribe","room":"doc:p"}),
    )
    .await;
    assert_eq!(next_json(&mut a).await["type"], "subscribed");
    let mut b = connect(addr, &token("u2", &[], "s2")).await.unwrap();
    next_json(&mut b).await;
    send(
        &mut b,
        serde_json::json!({"type":"subscribe","room":"doc:p"}),
    )
    .await;
    let p = next_json(&mut a).await;
    assert_eq!(
        (
            p["type"].as_str(),
            p["user"].as_str(),
            p["joined"].as_bool()
        ),
        (Some("presence"), Some("u2"), Some(true))
    );
    assert_eq!(
        server.presence("doc:p"),
        vec![("u1".to_owned(), 1), ("u2".to_owned(), 1)]
    );
}
