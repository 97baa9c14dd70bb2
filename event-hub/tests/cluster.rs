//! The hub on the 3-node RabbitMQ cluster of `scripts/local-cluster`: the node that leads a
//! quorum queue is stopped while events are published (1,000 before, those while it goes down,
//! then 5,000 while it is gone); none is lost, none is handled twice by an idempotent consumer,
//! and the hub keeps publishing through the other nodes.
//!
//! Runs alone (nextest's `cluster` group): it stops a node the other cluster tests use.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidewell_core::{Envelope, Event};
use tidewell_event_hub::{Hub, MemoryDedup, RetryPolicy, ServiceQueue, Subscription, Topology};
use tidewell_testkit::cluster::LocalCluster;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    n: u32,
}

impl Event for Entry {
    const TYPE: &'static str = "ledger.entry.created";
    const VERSION: u16 = 1;
}

const EVENTS: u32 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_leader_stopped_mid_publish_loses_nothing_and_handles_nothing_twice() {
    let cluster = LocalCluster::get();
    let vhost = cluster.vhost();
    let url = cluster.amqp_urls_on(&vhost);
    let queue = ServiceQueue::new("ledger")
        .bind("ledger.#")
        .retry(RetryPolicy::none());
    let name = queue.name();
    let hub = Hub::builder("ledger")
        .url(&url)
        .topology(Topology::new().service(queue))
        .publish_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    // The consumer on a connection of its own, which starts on another node than the publisher's
    // (the URLs in another order).
    let mut reversed: Vec<&str> = url.split(',').collect();
    reversed.reverse();
    let consumer = Hub::builder("ledger-consumer")
        .url(reversed.join(","))
        .topology(hub.topology().clone())
        .connect()
        .await
        .unwrap();
    let handled: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let h = handled.clone();
    consumer
        .subscribe(
            Subscription::new(&name).dedup(MemoryDedup::new(100_000)),
            move |e: Envelope<Entry>| {
                *h.lock().unwrap().entry(e.payload().n).or_default() += 1;
                async { Ok(()) }
            },
        )
        .await
        .unwrap();

    let leader = cluster.quorum_leader(&vhost, &name);
    // Paced at about 500 a second: 1,000 before the leader stops, more while it goes down, then
    // EVENTS once it is gone (the publisher counts them from the moment the node is down).
    let published = Arc::new(AtomicU32::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (hub, published, down) = (hub.clone(), published.clone(), down.clone());
        tokio::spawn(async move {
            let mut failed = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut after_down = 0;
            let mut n = 0;
            while after_down < EVENTS {
                if n % 5 == 0 {
                    tick.tick().await;
                }
                let was_down = down.load(Ordering::SeqCst);
                if let Err(e) = hub.publish(&hub.envelope(Entry { n })).await {
                    failed.push((n, e.to_string()));
                }
                if was_down {
                    after_down += 1;
                }
                n += 1;
                published.store(n, Ordering::SeqCst);
            }
            (n, failed)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while published.load(Ordering::SeqCst) < 1_000 {
        assert!(
            Instant::now() < deadline,
            "the first events were never published"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopped_at = published.load(Ordering::SeqCst);
    // The script waits for the node to be gone: off the runtime's threads.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_rabbit(leader))
        .await
        .unwrap();
    down.store(true, Ordering::SeqCst);
    let gone_at = published.load(Ordering::SeqCst);
    let (total, failed) = publisher.await.unwrap();
    let all_published = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = all_published.elapsed();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_rabbit(leader))
        .await
        .unwrap();
    assert!(
        failed.is_empty(),
        "publishes refused: {:?}",
        &failed[..failed.len().min(5)]
    );
    let handled = handled.lock().unwrap().clone();
    let missing: Vec<u32> = (0..total).filter(|n| !handled.contains_key(n)).collect();
    let twice: Vec<(u32, u32)> = handled
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(twice.is_empty(), "handled twice: {twice:?}");
    eprintln!(
        "leader twc{leader} stopping after {stopped_at} events, gone after {gone_at}, then {EVENTS} more; all {total} handled once, {caught_up:?} after the last publish; duplicates suppressed: {}",
        consumer.metrics().consumed(&name, "duplicate")
    );
    consumer.shutdown(Duration::from_secs(5)).await.unwrap();
    hub.shutdown(Duration::from_secs(5)).await.unwrap();
}
