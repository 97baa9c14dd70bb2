//! Two server nodes on one Redis backplane: one client on each, one room; each event reaches
//! both once, with the same offsets; a client that moves to the other node recovers there.
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
use futures_util::StreamExt as _;
use tidewell_testkit::TestRedis;
use tidewell_websocket::WsConfig;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_rooms_offsets_and_recovery() {
    let redis = TestRedis::connect().await;
    let (node_a, addr_a) = start(WsConfig::default()).await;
    let (node_b, addr_b) = start(WsConfig::default()).await;
    node_a
        .connect_backplane(redis.url(), redis.prefix())
        .await
        .unwrap();
    node_b
        .connect_backplane(redis.url(), redis.prefix())
        .await
        .unwrap();

    let t = token("u1", &[], "s1");
    let mut on_a = connect(addr_a, &t).await.unwrap();
    next_json(&mut on_a).await;
    let mut on_b = connect(addr_b, &token("u2", &[], "s2")).await.unwrap();
    next_json(&mut on_b).await;
    for ws in [&mut on_a, &mut on_b] {
        send(
            ws,
            serde_json::json!({"type":"subscribe","room":"doc:shared"}),
        )
        .await;
        assert_eq!(next_json(ws).await["type"], "subscribed");
    }

    // Publishes from either node reach both clients once, in the same order with the same
    // offsets (the order between nodes is Redis's; within a node, publish order).
    node_a.publish("doc:shared", &envelope(1)).unwrap();
    node_b.publish("doc:shared", &envelope(2)).unwrap();
    node_a.publish("doc:shared", &envelope(3)).unwrap();
    let mut epoch = String::new();
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for ws in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for n in 1..=3u64 {
            let ev = next_json(ws).await;
            assert_eq!(ev["offset"], n, "{ev}");
            got.push((n, ev["event"]["id"].as_str().unwrap().to_owned()));
            epoch = ev["epoch"].as_str().unwrap().to_owned();
        }
        seen.push(got);
        let extra = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
        assert!(
            !matches!(extra, Ok(Some(Ok(Message::Text(_))))),
            "each event once: {extra:?}"
        );
    }
    assert_eq!(seen[0], seen[1], "the same offsets on both nodes");
    let mut ids: Vec<_> = seen[0].iter().map(|(_, id)| id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["ev-1", "ev-2", "ev-3"]);
    let ev1_before_ev3 = seen[0].iter().position(|(_, i)| i == "ev-1")
        < seen[0].iter().position(|(_, i)| i == "ev-3");
    assert!(ev1_before_ev3, "one node's publishes keep their order");

    // The client on A leaves; events 4 and 5 go out; it reconnects to B and recovers there.
    drop(on_a);
    node_b.publish("doc:shared", &envelope(4)).unwrap();
    node_b.publish("doc:shared", &envelope(5)).unwrap();
    for n in 4..=5u64 {
        assert_eq!(next_json(&mut on_b).await["offset"], n);
    }
    let mut moved = connect(addr_b, &t).await.unwrap();
    next_json(&mut moved).await;
    send(
        &mut moved,
        serde_json::json!({"type":"subscribe","room":"doc:shared","since":{"epoch":epoch,"offset":3}}),
    )
    .await;
    let sub = next_json(&mut moved).await;
    assert_eq!(sub["recovered"], true, "{sub}");
    for n in 4..=5u64 {
        let ev = next_json(&mut moved).await;
        assert_eq!(ev["offset"], n);
        assert_eq!(ev["event"]["id"], format!("ev-{n}"));
    }
}

/// Shutdown ends the tasks the server owns: what was published before it still reaches the
/// other nodes (the publisher sends its queue first), then the node's subscription is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_what_was_queued_then_ends_the_subscription() {
    let redis = TestRedis::connect().await;
    let (node_a, _) = start(WsConfig::default()).await;
    let (node_b, addr_b) = start(WsConfig::default()).await;
    node_a
        .connect_backplane(redis.url(), redis.prefix())
        .await
        .unwrap();
    node_b
        .connect_backplane(redis.url(), redis.prefix())
        .await
        .unwrap();
    let mut on_b = connect(addr_b, &token("u2", &[], "s2")).await.unwrap();
    next_json(&mut on_b).await;
    send(
        &mut on_b,
        serde_json::json!({"type":"subscribe","room":"doc:last-words"}),
    )
    .await;
    assert_eq!(next_json(&mut on_b).await["type"], "subscribed");

    let channel = format!("{}:ws", redis.prefix());
    let subscribers = |redis: &TestRedis| {
        let mut conn = redis.connection();
        let channel = channel.clone();
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .unwrap();
            counts[0].1
        }
    };
    assert_eq!(subscribers(&redis).await, 2, "both nodes subscribed");

    for n in 1..=50 {
        node_a.publish("doc:last-words", &envelope(n)).unwrap();
    }
    node_a.shutdown(Duration::from_secs(5)).await;
    for n in 1..=50u64 {
        let ev = next_json(&mut on_b).await;
        assert_eq!(
            ev["offset"], n,
            "every event queued before shutdown arrives: {ev}"
        );
    }
    // The subscription task has ended: only node B listens. (Redis may take a moment to see the
    // closed connection.)
    let mut left = subscribers(&redis).await;
    for _ in 0..100 {
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = subscribers(&redis).await;
    }
    assert_eq!(left, 1, "node A's subscription ended with its shutdown");
    assert!(
        node_a.publish("doc:last-words", &envelope(51)).is_err(),
        "a stopped node's backplane takes no more publishes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_backplane_carries_events_and_refuses_an_untrusted_server() {
    use tidewell_core::tls::ClientTls;
    use tidewell_testkit::tls::TlsFixture;
    let f = TlsFixture::get();
    let url = format!("rediss://localhost:{}", f.rediss_port());
    let prefix = tidewell_testkit::unique_name("bp-tls");
    let mut config = WsConfig::default();
    config.backplane_tls = ClientTls::new().ca_file(f.ca());
    let (node_a, _) = start(config.clone()).await;
    let (node_b, addr_b) = start(config).await;
    node_a.connect_backplane(&url, &prefix).await.unwrap();
    node_b.connect_backplane(&url, &prefix).await.unwrap();
    let mut on_b = connect(addr_b, &token("u1", &[], "s1")).await.unwrap();
    next_json(&mut on_b).await;
    send(
        &mut on_b,
        serde_json::json!({"type":"subscribe","room":"doc:tls"}),
    )
    .await;
    assert_eq!(next_json(&mut on_b).await["type"], "subscribed");
    node_a.publish("doc:tls", &envelope(1)).unwrap();
    let ev = next_json(&mut on_b).await;
    assert_eq!(ev["event"]["id"], "ev-1", "{ev}");

    let mut untrusting = WsConfig::default();
    untrusting.backplane_tls = ClientTls::new().ca_file(f.other_ca());
    let (node_c, _) = start(untrusting).await;
    let e = node_c
        .connect_backplane(&url, &prefix)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_by_the_nodes() {
    let redis = TestRedis::connect().await;
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let hash = format!("{}:p:doc:present", redis.prefix());
    presence_across_nodes(redis.url(), redis.prefix(), &hash, port).await;
}
