//! The backplane on the Redis Cluster of `scripts/local-cluster` (sharded pub/sub):
//!
//! - rooms spread over the masters; events published on either node reach the members on both,
//!   once, with the same offsets; a node subscribes only to the rooms it has;
//! - a client recovers on a node that never had the room (the history comes from Redis);
//! - the master serving a room is stopped: the replica takes over, the backplane resumes, the
//!   members on both nodes get every event published meanwhile once, in order, and a recovery
//!   across the failover answers `recovered: false` (a new epoch).
//!
//! Runs in nextest's `cluster` group (one at a time): it stops a Redis master.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tidewell_testkit::cluster::LocalCluster;
use tidewell_testkit::unique_name;
use tidewell_websocket::{WsConfig, WsServer};
use tokio_tungstenite::tungstenite::Message;

async fn node(prefix: &str) -> (WsServer, std::net::SocketAddr) {
    let (server, addr) = start(WsConfig::default()).await;
    server
        .connect_backplane(&LocalCluster::get().redis_url(), prefix)
        .await
        .unwrap();
    (server, addr)
}

async fn joined(
    addr: std::net::SocketAddr,
    user: &str,
    room: &str,
    since: Option<Value>,
) -> (Client, Value) {
    let mut ws = connect(addr, &token(user, &[], &format!("s-{user}")))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let mut frame = json!({"type": "subscribe", "room": room});
    if let Some(s) = since {
        frame["since"] = s;
    }
    send(&mut ws, frame).await;
    let sub = next_json(&mut ws).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    (ws, sub)
}

/// The next `n` events: (offset, event id, epoch).
async fn events(ws: &mut Client, n: usize) -> Vec<(u64, String, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let ev = next_json(ws).await;
        if ev["type"] != "event" {
            continue;
        }
        got.push((
            ev["offset"].as_u64().unwrap(),
            ev["event"]["id"].as_str().unwrap().to_owned(),
            ev["epoch"].as_str().unwrap().to_owned(),
        ));
    }
    got
}

async fn nothing_more(ws: &mut Client) {
    let extra = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(
        !matches!(extra, Ok(Some(Ok(Message::Text(_))))),
        "each event once: {extra:?}"
    );
}

fn shard_subscribers(port: u16, channel: &str) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "pubsub", "shardnumsub", channel])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_shard_and_a_client_recovers_on_a_node_that_never_had_the_room() {
    let c = LocalCluster::get();
    let prefix = unique_name("wsc");
    let (a, addr_a) = node(&prefix).await;
    let (b, addr_b) = node(&prefix).await;

    // Rooms live in their own slots: thirty rooms land on all three masters.
    for n in 0..30 {
        a.publish(&format!("doc:spread-{n}"), &envelope(n)).unwrap();
    }
    let mut owners = BTreeSet::new();
    for n in 0..30 {
        let key = format!("{prefix}:ws:{{doc:spread-{n}}}:doc:spread-{n}:o");
        for _ in 0..100 {
            if c.redis_count(c.redis_owner(&key), &key) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            c.redis_count(c.redis_owner(&key), &key),
            1,
            "{key} is in its slot"
        );
        owners.insert(c.redis_owner(&key));
    }
    assert_eq!(
        owners.len(),
        3,
        "rooms spread over every master: {owners:?}"
    );

    let room = "doc:shared";
    let (mut on_a, _) = joined(addr_a, "u1", room, None).await;
    let (mut on_b, _) = joined(addr_b, "u2", room, None).await;
    a.publish(room, &envelope(1)).unwrap();
    b.publish(room, &envelope(2)).unwrap();
    a.publish(room, &envelope(3)).unwrap();
    let seen_a = events(&mut on_a, 3).await;
    let seen_b = events(&mut on_b, 3).await;
    assert_eq!(seen_a, seen_b, "the same offsets and epoch on both nodes");
    assert_eq!(seen_a.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
    let ids: BTreeSet<_> = seen_a.iter().map(|e| e.1.clone()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["ev-1".into(), "ev-2".into(), "ev-3".into()])
    );
    nothing_more(&mut on_a).await;
    nothing_more(&mut on_b).await;

    // A node subscribes only to the rooms it has: one with a member on A alone.
    let (_only_a, _) = joined(addr_a, "u3", "doc:only-a", None).await;
    let channel = format!("{prefix}:ws:{{doc:only-a}}:doc:only-a");
    assert_eq!(shard_subscribers(c.redis_owner(&channel), &channel), 1);
    let shared = format!("{prefix}:ws:{{{room}}}:{room}");
    assert_eq!(shard_subscribers(c.redis_owner(&shared), &shared), 2);

    // The client on A leaves; 4 and 5 go out; it recovers on a third node that never had the
    // room, from the history in Redis.
    let epoch = seen_a[2].2.clone();
    drop(on_a);
    b.publish(room, &envelope(4)).unwrap();
    b.publish(room, &envelope(5)).unwrap();
    assert_eq!(
        events(&mut on_b, 2)
            .await
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [4, 5]
    );
    let (_c_node, addr_c) = node(&prefix).await;
    let (mut moved, sub) = joined(
        addr_c,
        "u1",
        room,
        Some(json!({"epoch": epoch, "offset": 3})),
    )
    .await;
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["epoch"], epoch.as_str());
    assert_eq!(sub["offset"], 5);
    let replay = events(&mut moved, 2).await;
    assert_eq!(
        replay
            .iter()
            .map(|e| (e.0, e.1.as_str()))
            .collect::<Vec<_>>(),
        [(4, "ev-4"), (5, "ev-5")]
    );
    nothing_more(&mut moved).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_the_backplane_resumes_and_members_miss_nothing() {
    let c = LocalCluster::get();
    let prefix = unique_name("wsf");
    let room = "doc:failover";
    let (a, addr_a) = node(&prefix).await;
    let (b, addr_b) = node(&prefix).await;
    let (mut on_a, _) = joined(addr_a, "u1", room, None).await;
    let (mut on_b, _) = joined(addr_b, "u2", room, None).await;
    a.publish(room, &envelope(1)).unwrap();
    let first = events(&mut on_a, 1).await;
    assert_eq!(events(&mut on_b, 1).await, first);

    let master = c.redis_owner(&format!("{prefix}:ws:{{{room}}}:{room}:o"));
    let c2 = c.clone();
    tokio::task::spawn_blocking(move || c2.stop_redis(master))
        .await
        .unwrap();
    // Published while the slot has no master: the publisher retries until the replica is
    // promoted.
    for n in 2..=4 {
        b.publish(room, &envelope(n)).unwrap();
        a.publish(room, &envelope(n + 10)).unwrap();
    }
    let after_a = events(&mut on_a, 6).await;
    let after_b = events(&mut on_b, 6).await;
    assert_eq!(
        after_a, after_b,
        "both nodes: the same events, offsets and epoch"
    );
    let offsets: Vec<u64> = after_a.iter().map(|e| e.0).collect();
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap: {offsets:?}"
    );
    let ids: BTreeSet<_> = after_a.iter().map(|e| e.1.clone()).collect();
    assert_eq!(ids.len(), 6, "each once: {after_a:?}");
    let from_b: Vec<_> = after_a
        .iter()
        .filter(|e| e.1.len() == 4)
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(
        from_b,
        ["ev-2", "ev-3", "ev-4"],
        "one node's publishes keep their order"
    );
    nothing_more(&mut on_a).await;
    nothing_more(&mut on_b).await;

    // The promoted replica has a new replication id: the epoch changed, so a recovery from
    // before the failover cannot claim to be complete; one within the new epoch is.
    let new_epoch = after_a[0].2.clone();
    assert_ne!(new_epoch, first[0].2, "a failover starts a new epoch");
    let (_, sub) = joined(
        addr_a,
        "u9",
        room,
        Some(json!({"epoch": first[0].2, "offset": 1})),
    )
    .await;
    assert_eq!(sub["recovered"], false, "{sub}");
    let (mut again, sub) = joined(
        addr_b,
        "u9",
        room,
        Some(json!({"epoch": new_epoch, "offset": after_a[0].0})),
    )
    .await;
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(events(&mut again, 5).await, after_a[1..].to_vec());

    tokio::task::spawn_blocking(move || c.start_redis(master))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_by_the_nodes_on_the_cluster() {
    let c = LocalCluster::get();
    let prefix = unique_name("wsp");
    let hash = format!("{prefix}:ws:{{doc:present}}:doc:present:p");
    let port = c.redis_masters()[0].0;
    presence_across_nodes(&c.redis_url(), &prefix, &hash, port).await;
}

/// A room forgotten by a node (no member, history expired: unsubscribed) and joined again
/// there is subscribed again: events published on another node reach the new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_swept_and_joined_again_is_subscribed_again() {
    let prefix = unique_name("wss");
    let room = "doc:comeback";
    let mut config = WsConfig::default();
    config.history_ttl = Duration::from_secs(1);
    let (a, addr_a) = start(config).await;
    a.connect_backplane(&LocalCluster::get().redis_url(), &prefix)
        .await
        .unwrap();
    let (b, _) = node(&prefix).await;
    let channel = format!("{prefix}:ws:{{{room}}}:{room}");
    let port = LocalCluster::get().redis_owner(&channel);
    let (first, _) = joined(addr_a, "u1", room, None).await;
    assert_eq!(shard_subscribers(port, &channel), 1);
    drop(first);
    // Swept within a second or two of the history's expiry: node A unsubscribes.
    let mut left = 1;
    for _ in 0..100 {
        left = shard_subscribers(port, &channel);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the forgotten room is unsubscribed");
    let (mut again, _) = joined(addr_a, "u2", room, None).await;
    assert_eq!(shard_subscribers(port, &channel), 1, "subscribed again");
    b.publish(room, &envelope(1)).unwrap();
    let got = events(&mut again, 1).await;
    assert_eq!(got[0].1, "ev-1");
}
