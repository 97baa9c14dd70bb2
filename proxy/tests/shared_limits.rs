//! Rate limits shared over Redis: three proxies (three nodes) on one Redis, a client that
//! takes turns between them is limited as if it hit one; another client keeps its own budget;
//! and without sharing each node would have let it through three times as often.
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
use tidewell_testkit::TestRedis;
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
