//! Fault tests against the real RabbitMQ: connections killed under load, a consumer process
//! killed mid-batch, and malformed input. Each shows that nothing confirmed is lost.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Fixture, Kind, PaymentCreated, close_connections, eventually};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use tidewell_core::Envelope;
use tidewell_event_hub::{
    DeadLetterReason, Hub, MemoryDedup, RetryPolicy, ServiceQueue, Subscription, Topology,
};
use tidewell_testkit::amqp_url;

type Counts = Arc<Mutex<HashMap<u64, u32>>>;

async fn counting(hub: &Hub, sub: Subscription) -> Counts {
    let counts = Counts::default();
    let c = counts.clone();
    hub.subscribe(sub, move |e: Envelope<PaymentCreated>| {
        let c = c.clone();
        async move {
            *c.lock().unwrap().entry(e.payload().seq).or_default() += 1;
            Ok(())
        }
    })
    .await
    .unwrap();
    counts
}

/// 20,000 events published and consumed while the broker closes every connection of the test
/// four times: each confirmed event is handled at least once, and exactly once behind the guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_under_load_lose_nothing() {
    const EVENTS: u64 = 20_000;
    let f = Fixture::new(Kind::Amqp).await;
    let plain = f
        .service("kill-plain", &RetryPolicy::none())
        .bind("payments.#");
    let guarded = f
        .service("kill-dedup", &RetryPolicy::none())
        .bind("payments.#");
    let (plain_q, guarded_q) = (plain.name(), guarded.name());
    let topology = f.topology().service(plain).service(guarded);
    let producer = f.hub(topology.clone()).await;
    let consumer = f.hub(topology).await;
    let at_least_once = counting(
        &consumer,
        Subscription::new(&plain_q).prefetch(200).concurrency(16),
    )
    .await;
    let exactly_once = counting(
        &consumer,
        Subscription::new(&guarded_q)
            .prefetch(200)
            .concurrency(16)
            .dedup(MemoryDedup::new(100_000)),
    )
    .await;

    let prefix = f.prefix.clone();
    let killer = tokio::spawn(async move {
        let mut kills = Vec::new();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let p = prefix.clone();
            kills.push(
                tokio::task::spawn_blocking(move || close_connections(&p))
                    .await
                    .unwrap(),
            );
        }
        kills
    });

    let started = Instant::now();
    let mut confirmed = Vec::new();
    let mut failed = 0;
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&seq| {
                producer.envelope(PaymentCreated {
                    payment_id: seq,
                    seq,
                })
            })
            .collect();
        for (seq, result) in chunk.iter().zip(producer.publish_batch(&batch).await) {
            match result {
                Ok(()) => confirmed.push(*seq),
                Err(e) => {
                    failed += 1;
                    eprintln!("publish {seq} failed: {e}");
                }
            }
        }
    }
    let kills = killer.await.unwrap();
    eprintln!(
        "published {} in {:?}, {failed} failed, connections closed per round: {kills:?}",
        confirmed.len(),
        started.elapsed()
    );
    assert!(
        kills.iter().filter(|&&k| k > 0).count() >= 3,
        "the faults really happened: {kills:?}"
    );
    assert_eq!(
        failed, 0,
        "publishes wait out reconnects instead of failing"
    );

    let all_seen = |c: &Counts| {
        let c = c.lock().unwrap();
        confirmed.iter().all(|s| c.contains_key(s))
    };
    let done = eventually(Duration::from_secs(120), || {
        all_seen(&at_least_once) && all_seen(&exactly_once)
    })
    .await;
    let missing = |c: &Counts| {
        let c = c.lock().unwrap();
        confirmed.iter().filter(|s| !c.contains_key(s)).count()
    };
    assert!(
        done,
        "missing: plain {}, guarded {}",
        missing(&at_least_once),
        missing(&exactly_once)
    );
    let dup_plain: u32 = at_least_once.lock().unwrap().values().map(|n| n - 1).sum();
    let over = exactly_once
        .lock()
        .unwrap()
        .values()
        .filter(|&&n| n != 1)
        .count();
    eprintln!("redelivered duplicates without the guard: {dup_plain}");
    assert_eq!(over, 0, "behind the guard every event ran exactly once");
    producer.shutdown(Duration::from_secs(10)).await.unwrap();
    consumer.shutdown(Duration::from_secs(10)).await.unwrap();
}

const CHILD_ENV: &str = "TIDEWELL_FAULT_CHILD_PREFIX";

fn crash_topology(prefix: &str) -> (Topology, String) {
    let q = ServiceQueue::new(format!("{prefix}.crash"))
        .bind("payments.#")
        .retry(RetryPolicy::none());
    let name = q.name();
    (
        Topology::with_exchange(format!("{prefix}.events")).service(q),
        name,
    )
}

/// A consumer process dies (SIGKILL) holding unacknowledged events: the broker redelivers every
/// one of them to another consumer.
///
/// The test runs itself a second time as the consumer to kill: with `TIDEWELL_FAULT_CHILD_PREFIX`
/// set, it takes deliveries, never acknowledges, reports how many it holds, and waits to die.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_mid_batch_is_redelivered() {
    if let Ok(prefix) = std::env::var(CHILD_ENV) {
        let (topology, queue) = crash_topology(&prefix);
        let hub = Hub::builder("crash-child")
            .url(amqp_url())
            .connection_name(&prefix)
            .topology(topology)
            .connect()
            .await
            .unwrap();
        let held = Arc::new(Mutex::new(0u32));
        let h = held.clone();
        hub.subscribe(
            Subscription::new(&queue).prefetch(20).concurrency(20),
            move |_: Envelope<PaymentCreated>| {
                let n = {
                    let mut g = h.lock().unwrap();
                    *g += 1;
                    *g
                };
                println!("holding {n}");
                async {
                    std::future::pending::<Result<(), tidewell_event_hub::HandlerError>>().await
                }
            },
        )
        .await
        .unwrap();
        std::future::pending::<()>().await;
    }

    let f = Fixture::new(Kind::Amqp).await;
    // Register the child's names for cleanup, then build the same topology here.
    let _ = f.service("crash", &RetryPolicy::none());
    let _ = f.exchange();
    let (topology, queue) = crash_topology(&f.prefix);
    let hub = f.hub(topology).await;
    for seq in 0..50 {
        hub.publish(&hub.envelope(PaymentCreated {
            payment_id: seq,
            seq,
        }))
        .await
        .unwrap();
    }

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "consumer_killed_mid_batch_is_redelivered",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &f.prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let holding = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines
            .find(|l| l.as_ref().is_ok_and(|l| l == "holding 20"))
            .is_some()
    });
    let held = tokio::time::timeout(Duration::from_secs(30), holding).await;
    child.kill().unwrap(); // SIGKILL: no shutdown, no acks, no channel close
    child.wait().unwrap();
    assert!(
        matches!(held, Ok(Ok(true))),
        "the child took 20 deliveries before it was killed"
    );

    let counts = counting(&hub, Subscription::new(&queue).prefetch(50)).await;
    assert!(
        eventually(Duration::from_secs(30), || counts.lock().unwrap().len()
            == 50)
        .await,
        "all 50 events handled after the crash; got {}",
        counts.lock().unwrap().len()
    );
    hub.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// Bytes that are not an envelope, sent straight through lapin: dead-lettered as poison with a
/// reason, never a panic, never a silent drop, and the consumer keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_dead_lettered_with_a_reason() {
    let f = Fixture::new(Kind::Amqp).await;
    let q = f
        .service("garbage", &RetryPolicy::none())
        .bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    let counts = counting(&hub, Subscription::new(&name)).await;

    let rabbit = f.rabbit.as_ref().unwrap();
    let channel = rabbit.connection().create_channel().await.unwrap();
    let exchange = hub.topology().exchange().to_owned();
    let bodies: [&[u8]; 5] = [
        b"",
        b"not json",
        b"{\"id\":",
        &[0xff, 0xfe, 0x00],
        b"[1,2,3]",
    ];
    for body in bodies {
        channel
            .basic_publish(
                exchange.as_str().into(),
                "payments.payment.created".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    hub.publish(&hub.envelope(PaymentCreated {
        payment_id: 1,
        seq: 1,
    }))
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || counts
            .lock()
            .unwrap()
            .contains_key(&1))
        .await,
        "good events still flow"
    );
    assert!(
        eventually(Duration::from_secs(10), || hub
            .metrics()
            .consumed(&name, "dead_lettered")
            == 5)
        .await
    );
    let dead = hub
        .take_dead_letters(&name, 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(dead.len(), 5);
    for d in &dead {
        assert_eq!(d.reason, DeadLetterReason::Poison);
        assert!(
            d.last_error
                .as_deref()
                .unwrap()
                .contains("malformed event envelope"),
            "{d:?}"
        );
    }
    let mut bodies_back: Vec<Vec<u8>> = dead.iter().map(|d| d.body.to_vec()).collect();
    bodies_back.sort();
    let mut sent: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_vec()).collect();
    sent.sort();
    assert_eq!(bodies_back, sent, "the exact bytes are kept for inspection");
    hub.shutdown(Duration::from_secs(10)).await.unwrap();
}
