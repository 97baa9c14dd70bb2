//! A Node.js client using the npm `ws` package, written from `docs/protocol.md` alone, completes
//! the protocol: hello, subscribe, receive, disconnect, recover with `since`.
//! Needs `node` and `npm ci --prefix websocket/tests/node` (scripts/test runs it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tidewell_websocket::WsConfig;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_ws_client_completes_the_protocol() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    assert!(
        std::path::Path::new(dir).join("node_modules/ws").exists(),
        "the npm `ws` package is missing: run `npm ci --prefix websocket/tests/node` (scripts/test does)"
    );
    let (server, addr) = start(WsConfig::default()).await;
    let mut child = tokio::process::Command::new("node")
        .arg(format!("{dir}/client.mjs"))
        .arg(format!("ws://{addr}/ws"))
        .arg(token("u-node", &[], "s-node"))
        .arg("doc:node")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node on PATH (apt-get install nodejs npm)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the node client answers in time")
            .unwrap()
            .expect("the node client is still running")
    };

    let ready = line().await;
    assert!(ready.starts_with("ready "), "{ready}");
    for n in 1..=3 {
        server.publish("doc:node", &envelope(n)).unwrap();
    }
    stdin.write_all(b"published\n").await.unwrap();
    assert_eq!(line().await, "closed 3");
    // Wait until the server has seen the client go, then publish what it will have missed.
    for _ in 0..100 {
        if server.connections_of_user("u-node").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 4..=5 {
        server.publish("doc:node", &envelope(n)).unwrap();
    }
    stdin.write_all(b"published\n").await.unwrap();
    assert_eq!(line().await, "recovered 4,5");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
