//! Three platform nodes (the binary, configured by environment only) on the local cluster of
//! `scripts/local-cluster`: the 3-node RabbitMQ cluster, the Redis Cluster and PostgreSQL.
//!
//! - A WebSocket client on node 1 receives a payment created through node 2 within a second,
//!   once.
//! - "Log out other devices" through node 3 closes a session connected to node 1 within a
//!   second, and its token is refused on every node.
//! - A client that takes turns over the three nodes is rate-limited as if it used one.
//! - A node killed mid-flow: its WebSocket client reconnects to another node and recovers, by
//!   offset, the events published while it was away (rooms joined over the backplane on the
//!   Redis Cluster).
//!
//! - Readiness follows the broker: `/readyz` answers 503 naming the broker within 5 s of the
//!   RabbitMQ node stopping, and 200 within 5 s of it being back.
//!
//! Runs in nextest's `cluster` group (one at a time): other cluster tests stop nodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;
use support::{access, call, login, next_json, register, ws};
use tidewell_testkit::cluster::LocalCluster;
use tidewell_testkit::{TestDatabase, unique_name};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "cluster-secret-cluster-secret-cluster!";

/// One platform process; killed when dropped.
struct Node {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        // ok to ignore: the process may have ended already
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three nodes of one platform: one virtual host on the RabbitMQ cluster, one set of
/// databases, the Redis Cluster.
struct Platform {
    nodes: Vec<Node>,
    _dbs: Vec<TestDatabase>,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Platform {
    /// Rate limits off.
    async fn start() -> Self {
        Self::start_with(&[
            ("GATEWAY_AUTH_PER_MINUTE", "0"),
            ("GATEWAY_API_PER_MINUTE", "0"),
        ])
        .await
    }

    /// With `env` added to every node's environment.
    async fn start_with(env: &[(&str, &str)]) -> Self {
        let cluster = LocalCluster::get();
        let vhost = cluster.vhost();
        let mut dbs = Vec::new();
        for _ in 0..4 {
            dbs.push(TestDatabase::create().await);
        }
        let urls: Vec<String> = cluster
            .amqp_urls_on(&vhost)
            .split(',')
            .map(str::to_owned)
            .collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let addr = free_addr();
            // Each node prefers another RabbitMQ node first.
            let mut order = urls.clone();
            order.rotate_left(i);
            let log = std::env::temp_dir().join(unique_name(&format!("platform-node{}", i + 1)));
            let child = Command::new(env!("CARGO_BIN_EXE_tidewell-platform"))
                .env("GATEWAY_ADDR", addr.to_string())
                .env("TIDEWELL_NODE_ID", format!("node{}", i + 1))
                .env("TIDEWELL_JWT_SECRET", SECRET)
                .env("TIDEWELL_EVENT_HUB_URL", order.join(","))
                .env("TIDEWELL_CACHE_URL", cluster.redis_url())
                .env("AUTH_DATABASE_URL", dbs[0].url())
                .env("PAYMENTS_DATABASE_URL", dbs[1].url())
                .env("ADMIN_DATABASE_URL", dbs[2].url())
                .env("PROFILE_DATABASE_URL", dbs[3].url())
                .envs(env.iter().copied())
                .env("RUST_LOG", "info")
                .env_remove("AMQP_URL")
                .env_remove("REDIS_URL")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            nodes.push(Node { child, addr, log });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in &mut nodes {
            loop {
                if let Some(status) = node.child.try_wait().unwrap() {
                    panic!(
                        "platform node ended ({status}):\n{}",
                        std::fs::read_to_string(&node.log).unwrap_or_default()
                    );
                }
                if TcpStream::connect(node.addr).await.is_ok()
                    && call(node.addr, "GET", "/healthz", None, None).await.0 == 200
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "platform node on {} did not start:\n{}",
                    node.addr,
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Self { nodes, _dbs: dbs }
    }

    fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node - 1].addr
    }

    /// Kills node `node` (SIGKILL: no drain, no goodbye to its clients).
    fn kill(&mut self, node: usize) {
        let n = &mut self.nodes[node - 1];
        n.child.kill().unwrap();
        n.child.wait().unwrap();
    }
}

/// The status of `GET /api/payments` on `addr` with `token`: whether the node accepts the token.
async fn list_payments(addr: SocketAddr, token: &str) -> u16 {
    call(addr, "GET", "/api/payments", Some(token), None)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_through_node_2_reaches_a_websocket_on_node_1_once_within_a_second() {
    let p = Platform::start().await;
    let email = format!("{}@example.com", unique_name("ann"));
    register(p.addr(3), &email, "Ann").await;
    let tokens = login(p.addr(1), &email, Some("laptop")).await;
    let token = access(&tokens);
    let mut on_node_1 = ws(p.addr(1), &token).await;
    // A second client on node 3 hears it too: every node feeds its own clients.
    let mut on_node_3 = ws(p.addr(3), &token).await;

    let started = Instant::now();
    let (s, payment) = call(
        p.addr(2),
        "POST",
        "/api/payments",
        Some(&token),
        Some(json!({"amount": "12.50", "currency": "EUR", "description": "across nodes"})),
    )
    .await;
    assert_eq!(s, 201, "{payment}");
    let id = payment["id"].as_str().unwrap();
    for ws in [&mut on_node_1, &mut on_node_3] {
        let frame = next_json(ws, Duration::from_secs(1))
            .await
            .expect("the payment reaches the other node's client within a second");
        assert_eq!(
            frame["event"]["type"], "payments.payment.created",
            "{frame}"
        );
        assert_eq!(frame["event"]["payload"]["payment_id"], id, "{frame}");
    }
    let delivered = started.elapsed();
    for ws in [&mut on_node_1, &mut on_node_3] {
        let again = next_json(ws, Duration::from_millis(500)).await;
        assert!(again.is_none(), "delivered once, then: {again:?}");
    }
    eprintln!("payment through node 2 on node 1's and node 3's clients after {delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_other_devices_through_node_3_closes_a_session_on_node_1_and_every_node_refuses_it()
 {
    let p = Platform::start().await;
    let email = format!("{}@example.com", unique_name("bob"));
    register(p.addr(2), &email, "Bob").await;
    let phone = login(p.addr(1), &email, Some("phone")).await;
    let laptop = login(p.addr(3), &email, Some("laptop")).await;
    let phone_token = access(&phone);
    for node in 1..=3 {
        let s = list_payments(p.addr(node), &phone_token).await;
        assert_eq!(s, 200, "the phone's token works on node {node} first");
    }
    let mut on_node_1 = ws(p.addr(1), &phone_token).await;

    let started = Instant::now();
    let (s, v) = call(
        p.addr(3),
        "POST",
        "/api/auth/devices/revoke-others",
        Some(&access(&laptop)),
        None,
    )
    .await;
    assert!((200..300).contains(&s), "{s} {v}");
    let mut code = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, on_node_1.next()).await {
        if let Message::Close(frame) = m {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    let closed = started.elapsed();
    assert_eq!(
        code,
        Some(4001),
        "the session on node 1 closes within a second"
    );
    // Each node learns of the end through its own queue: within the same second.
    for node in 1..=3 {
        let deadline = started + Duration::from_secs(1);
        loop {
            let s = list_payments(p.addr(node), &phone_token).await;
            if s == 401 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} still answers {s} to the signed-out token"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let s = list_payments(p.addr(1), &access(&laptop)).await;
    assert_eq!(s, 200, "the device that asked keeps working");
    eprintln!("session on node 1 closed {closed:?} after the request to node 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_taking_turns_over_three_nodes_is_limited_as_on_one() {
    // The API allows a burst of 6 then one request every 10 s per client (the credential
    // exchanges are not limited here, so that signing up does not count).
    let p = Platform::start_with(&[
        ("GATEWAY_AUTH_PER_MINUTE", "0"),
        ("GATEWAY_API_PER_MINUTE", "6"),
    ])
    .await;
    let email = format!("{}@example.com", unique_name("cy"));
    register(p.addr(1), &email, "Cy").await;
    let token = access(&login(p.addr(2), &email, None).await);
    let mut seen = Vec::new();
    for i in 0..9 {
        let s = list_payments(p.addr(i % 3 + 1), &token).await;
        seen.push(s);
    }
    assert_eq!(
        seen,
        [200, 200, 200, 200, 200, 200, 429, 429, 429],
        "6 for the three nodes together, not 6 each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_flow_its_client_recovers_on_another_node_by_offset() {
    use futures_util::SinkExt as _;
    // Rooms joined over the backplane on the Redis Cluster (the cache's URL), so offsets and
    // epochs are the same on every node, and the history comes from Redis on a node that did
    // not have the room.
    let mut p = Platform::start_with(&[
        ("GATEWAY_AUTH_PER_MINUTE", "0"),
        ("GATEWAY_API_PER_MINUTE", "0"),
    ])
    .await;
    let email = format!("{}@example.com", unique_name("dee"));
    register(p.addr(2), &email, "Dee").await;
    let token = access(&login(p.addr(2), &email, None).await);
    let mut on_node_1 = ws(p.addr(1), &token).await;
    let (node_2, owner) = (p.addr(2), token.clone());
    let create = move |n: u32| {
        let (token, addr) = (owner.clone(), node_2);
        async move {
            let (s, v) = call(
                addr,
                "POST",
                "/api/payments",
                Some(&token),
                Some(
                    json!({"amount": format!("{n}.00"), "currency": "EUR", "description": "kill"}),
                ),
            )
            .await;
            assert_eq!(s, 201, "{v}");
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let first = create(1).await;
    let seen = next_json(&mut on_node_1, Duration::from_secs(2))
        .await
        .expect("the first payment on node 1");
    assert_eq!(
        seen["event"]["payload"]["payment_id"],
        first.as_str(),
        "{seen}"
    );
    let room = seen["room"].as_str().unwrap().to_owned();
    let since = json!({"epoch": seen["epoch"], "offset": seen["offset"]});

    p.kill(1);
    drop(on_node_1);
    let mut missed = Vec::new();
    for n in 2..=4 {
        missed.push(create(n).await);
    }

    let mut on_node_3 = ws(p.addr(3), &token).await;
    on_node_3
        .send(Message::text(
            json!({"type": "subscribe", "id": 1, "room": room, "since": since}).to_string(),
        ))
        .await
        .unwrap();
    let mut recovered = None;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < missed.len() && Instant::now() < deadline {
        let Some(frame) = next_json(&mut on_node_3, Duration::from_secs(2)).await else {
            break;
        };
        match frame["type"].as_str() {
            Some("subscribed") if frame["id"] == 1 => recovered = frame["recovered"].as_bool(),
            Some("event") if frame["room"] == room.as_str() => {
                let id = frame["event"]["payload"]["payment_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if !got.contains(&id) {
                    got.push(id);
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        recovered,
        Some(true),
        "node 3 replays what node 1's client missed"
    );
    for id in &missed {
        assert!(
            got.contains(id),
            "payment {id} recovered on node 3: got {got:?}"
        );
    }
    assert!(
        !got.contains(&first),
        "the event seen before is not replayed"
    );
}

/// Polls `/readyz` on `a` for up to 5 s until it answers `status`: the last answer, and how long
/// it took.
async fn readyz_turns(a: SocketAddr, status: u16) -> ((u16, serde_json::Value), Duration) {
    let since = Instant::now();
    let mut answer = call(a, "GET", "/readyz", None, None).await;
    while answer.0 != status && since.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = call(a, "GET", "/readyz", None, None).await;
    }
    (answer, since.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_down_and_back() {
    let cluster = LocalCluster::get();
    let vhost = cluster.vhost();
    let node3 = cluster
        .amqp_urls_on(&vhost)
        .split(',')
        .nth(2)
        .unwrap()
        .to_owned();
    let data = support::DataDir::new("ready");
    let mut config = support::local_config(SECRET.as_bytes(), data.path());
    config.hub_url = node3;
    let platform = tidewell_platform::Platform::start(config).await.unwrap();
    let a = platform.addr;
    let (s, ready) = call(a, "GET", "/readyz", None, None).await;
    assert_eq!(s, 200, "{ready}");
    assert_eq!(ready["checks"]["platform.broker"], "up", "{ready}");

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_rabbit(3))
        .await
        .unwrap();
    let (answer, went_down) = readyz_turns(a, 503).await;
    assert_eq!(
        answer.0, 503,
        "not ready within 5 s of the broker stopping: {}",
        answer.1
    );
    let broker = answer.1["checks"]["platform.broker"].as_str().unwrap();
    assert!(broker.starts_with("down"), "{}", answer.1);
    assert_eq!(
        answer.1["checks"]["payments.database"], "up",
        "{}",
        answer.1
    );

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_rabbit(3))
        .await
        .unwrap();
    let (answer, came_back) = readyz_turns(a, 200).await;
    assert_eq!(
        answer.0, 200,
        "not ready within 5 s of the broker being back: {}",
        answer.1
    );
    eprintln!(
        "readiness: 503 {went_down:?} after the node stopped, 200 {came_back:?} after it was back"
    );
    platform.shutdown().await;
}
