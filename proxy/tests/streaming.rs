//! Streaming in constant memory both ways, and client aborts that leak nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use tidewell_proxy::{ProxyConfig, Route};

const GIB: u64 = 1024 * 1024 * 1024;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Samples RSS every 20 ms until dropped; answers the peak.
struct Peak {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Peak {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }
}

async fn proxy() -> std::net::SocketAddr {
    let up = start_upstream().await;
    start_proxy(
        ProxyConfig::new().route(
            Route::new("/", &[&format!("http://{up}")])
                .unwrap()
                .max_body(2 * GIB)
                .timeout(Duration::from_secs(120)),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_each_way_in_constant_memory() {
    let proxy = proxy().await;
    // Warm up: pools, buffers, allocator arenas.
    let res = client()
        .request(
            http::Request::get(format!("http://{proxy}/bytes/{}", 8 * 1024 * 1024))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();
    let before = rss_bytes();
    let peak = Peak::start();

    // Download.
    let res = client()
        .request(
            http::Request::get(format!("http://{proxy}/bytes/{GIB}"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-length"],
        GIB.to_string(),
        "length preserved"
    );
    let mut body = res.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, GIB);

    // Upload, streamed (chunked) from a generator.
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let frames = futures_util::stream::iter(
        (0..GIB / chunk.len() as u64).map(move |_| Ok(Frame::data(chunk.clone()))),
    );
    let res = client()
        .request(
            http::Request::post(format!("http://{proxy}/count"))
                .body(StreamBody::new(frames).boxed_unsync())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let counted = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(counted, GIB.to_string());

    let peak = peak.stop();
    let growth = peak.saturating_sub(before);
    eprintln!("rss before {before} peak {peak} growth {growth}");
    assert!(
        growth < 32 * 1024 * 1024,
        "RSS grew by {} MiB while 2 GiB streamed (client, proxy and upstream in this process)",
        growth / 1024 / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_client_aborts_leak_nothing() {
    let proxy = proxy().await;
    // One normal request first so the pools exist.
    client()
        .request(
            http::Request::get(format!("http://{proxy}/echo"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_before = open_fds();
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    let sem = Arc::new(tokio::sync::Semaphore::new(50));
    let mut joins = Vec::new();
    for _ in 0..1_000 {
        let permit = sem.clone().acquire_owned().await.unwrap();
        joins.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
            s.write_all(b"GET /bytes/104857600 HTTP/1.1\r\nhost: a\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 32 * 1024];
            let _ = s.read(&mut buf).await.unwrap();
            drop(s); // abort mid-body
            drop(permit);
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    let mut settled = false;
    for _ in 0..100 {
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        if open_fds() <= fds_before + 2 && tasks <= tasks_before + 2 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        settled,
        "fds {} (before {fds_before}), tasks {} (before {tasks_before})",
        open_fds(),
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    );
}
