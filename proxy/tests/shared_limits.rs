//! Rate limits shared over Redis: three proxies (three nodes) on one Redis, a client that
//! takes turns between them is limited as if it hit one; without sharing each node lets it
//! through as often as the limit says; with Redis stopped, every request is still answered and
//! each node's own limiter decides.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tidewell_core::tls::ClientTls;
use tidewell_proxy::{Proxy, ProxyConfig, Route, SharedLimits};
use tidewell_testkit::{OwnRedis, TestRedis};
use tokio::net::TcpListener;

/// A proxy to `up` whose route allows a burst of 5 requests then one a minute, its limits shared
/// on `redis` (under the test's prefix) when `shared`; answers its address.
async fn node(up: SocketAddr, redis: &TestRedis, shared: bool) -> SocketAddr {
    let route = Route::new("/", &[&format!("http://{up}")])
        .unwrap()
        .rate_limit(1.0 / 60.0, 5);
    let proxy = Proxy::new(ProxyConfig::new().route(route)).unwrap();
    if shared {
        let limits = SharedLimits::connect(redis.url(), redis.prefix(), &ClientTls::default())
            .await
            .unwrap();
        proxy.share_limits(limits).unwrap();
        let again = SharedLimits::connect(redis.url(), redis.prefix(), &ClientTls::default())
            .await
            .unwrap();
        assert!(proxy.share_limits(again).is_err(), "shared once only");
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tidewell_proxy::serve(
        listener,
        proxy,
        std::future::pending::<()>(),
        Duration::from_secs(1),
    ));
    addr
}

/// The status of a GET to `proxy`; every request comes from 127.0.0.1, one client.
async fn status(proxy: SocketAddr) -> u16 {
    let req = http::Request::get(format!("http://{proxy}/echo"))
        .body(empty())
        .unwrap();
    client().request(req).await.unwrap().status().as_u16()
}

async fn statuses(nodes: &[SocketAddr], n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(status(nodes[i % nodes.len()]).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_taking_turns_over_three_nodes_is_limited_as_on_one() {
    let up = start_upstream().await;
    let redis = TestRedis::connect().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(up, &redis, true).await);
    }
    let seen = statuses(&nodes, 9).await;
    assert_eq!(
        seen,
        [200, 200, 200, 200, 200, 429, 429, 429, 429],
        "the burst of 5 is for all nodes together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sharing_each_node_counts_alone() {
    let up = start_upstream().await;
    let redis = TestRedis::connect().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(up, &redis, false).await);
    }
    let seen = statuses(&nodes, 18).await;
    let admitted = seen.iter().filter(|s| **s == 200).count();
    assert_eq!(admitted, 15, "5 per node: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_each_node_applies_its_own_limit() {
    let up = start_upstream().await;
    let mut redis = OwnRedis::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let route = Route::new("/", &[&format!("http://{up}")])
            .unwrap()
            .rate_limit(1.0 / 60.0, 5);
        let proxy = Proxy::new(ProxyConfig::new().route(route)).unwrap();
        let limits = SharedLimits::connect(&redis.url(), "down", &ClientTls::default())
            .await
            .unwrap();
        proxy.share_limits(limits).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(listener.local_addr().unwrap());
        tokio::spawn(tidewell_proxy::serve(
            listener,
            proxy,
            std::future::pending::<()>(),
            Duration::from_secs(1),
        ));
    }
    assert_eq!(statuses(&nodes, 6).await, [200, 200, 200, 200, 200, 429]);
    redis.kill();
    // Every request is answered (never a 5xx); each node's own limiter decides, a burst of 5
    // per node: the shared budget spent above does not carry over to them.
    let seen = statuses(&nodes, 18).await;
    assert!(seen.iter().all(|s| *s == 200 || *s == 429), "{seen:?}");
    assert_eq!(seen.iter().filter(|s| **s == 200).count(), 15, "{seen:?}");
}
