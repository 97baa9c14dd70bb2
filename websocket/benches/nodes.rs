//! `nodes_fanout`: payment events delivered per second to CLIENTS WebSocket clients spread over
//! three server nodes, against the same clients on one node, same run. Every node joins the
//! backplane on the Redis Cluster of `scripts/local-cluster` (started for the bench when it is
//! not running), so both layouts take the same path: a publish on node 1 goes through Redis to
//! every node with the room. Each node is its own tokio runtime with one worker thread, as if on
//! its own machine; on this 2-core machine they share the cores with the clients, so the figure
//! shows the cost of spreading more than the capacity it adds.
//!
//! Run: `cargo bench -p tidewell-websocket --features redis --bench nodes`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tidewell_auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
use tidewell_testkit::cluster::{ClusterGuard, LocalCluster};
use tidewell_testkit::unique_name;
use tidewell_websocket::{WsConfig, WsServer};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const CLIENTS: usize = 3_000;
const EVENTS: usize = 100;
const ROUNDS: usize = 3;
/// Every token joins it by itself.
const ROOM: &str = "broadcast";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A server node on its own runtime (one worker thread), serving upgrades on a port of its own.
struct Node {
    server: WsServer,
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn node(redis_url: &str, prefix: &str) -> Node {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server, addr) = runtime.block_on(async {
        let keys = KeySet::from_keys([VerifyingKey::hs256("k1", SECRET).unwrap()]);
        let server = WsServer::builder(Verifier::new(keys, "auth", "tidewell"))
            .config(WsConfig::default())
            .build()
            .unwrap();
        server.connect_backplane(redis_url, prefix).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let s = s.clone();
                            async move { Ok::<_, std::convert::Infallible>(s.handle(req)) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        (server, addr)
    });
    Node {
        server,
        addr,
        _runtime: runtime,
    }
}

/// A payment event as the gateway publishes it.
fn payment(n: usize) -> serde_json::Value {
    serde_json::json!({
        "id": format!("evt-{n:08}"),
        "type": "payments.payment.created",
        "source": "payments",
        "time": "2026-12-04T12:00:00Z",
        "correlation_id": "c0ffee00-0000-4000-8000-000000000000",
        "data": {
            "payment_id": format!("pay-{n:08}"),
            "user_id": "user-42",
            "amount": 1999,
            "currency": "EUR",
            "status": "pending"
        }
    })
}

/// Connects CLIENTS clients, round robin over `addrs`; each counts the events it receives and
/// bumps `done` at EVENTS.
async fn clients(
    addrs: &[SocketAddr],
    done: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let issuer = Issuer::new(SigningKey::hs256("k1", SECRET).unwrap(), "auth", "tidewell");
    let mut tasks = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let addr = addrs[i % addrs.len()];
        let mut claims = issuer.claims_for(format!("u{i}"));
        claims.sid = Some(format!("s{i}"));
        let token = issuer.sign(&claims).unwrap().into_string();
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        // The welcome: the client is in its rooms.
        ws.next().await.unwrap().unwrap();
        let done = Arc::clone(done);
        tasks.push(tokio::spawn(async move {
            let mut seen = 0;
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m
                    && t.starts_with(r#"{"type":"event""#)
                {
                    seen += 1;
                    if seen == EVENTS {
                        done.fetch_add(1, Ordering::Release);
                    }
                }
            }
        }));
    }
    tasks
}

/// Deliveries per second of EVENTS events published on the first node to CLIENTS clients
/// spread over `nodes`.
async fn round(nodes: &[&Node]) -> f64 {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let done = Arc::new(AtomicUsize::new(0));
    let tasks = clients(&addrs, &done).await;
    // Every node has the room (its state read from Redis) before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    for n in 0..EVENTS {
        while nodes[0].server.publish(ROOM, &payment(n)).is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    while done.load(Ordering::Acquire) < CLIENTS {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} of {CLIENTS} clients got every event",
            done.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = (CLIENTS * EVENTS) as f64 / start.elapsed().as_secs_f64();
    for t in tasks {
        t.abort();
    }
    // The servers see the closed connections and leave the room before the next round.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rate
}

fn main() {
    let _guard = ClusterGuard::ensure();
    let url = LocalCluster::get().redis_url();
    let prefix = unique_name("bench-nodes");
    let nodes: Vec<Node> = (0..3).map(|_| node(&url, &prefix)).collect();
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (mut three, mut one) = (Vec::new(), Vec::new());
    clients_rt.block_on(async {
        for _ in 0..ROUNDS {
            one.push(round(&[&nodes[0]]).await);
            three.push(round(&[&nodes[0], &nodes[1], &nodes[2]]).await);
        }
    });
    eprintln!(
        "  {CLIENTS} clients, {EVENTS} events: 1 node {one:.0?}, 3 nodes {three:.0?} deliveries/s"
    );
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (ours, base) = (best(&three), best(&one));
    println!(
        "bench: nodes_fanout ours={ours:.2} baseline={base:.2} ratio={:.3} unit=deliveries/s",
        ours / base
    );
}
