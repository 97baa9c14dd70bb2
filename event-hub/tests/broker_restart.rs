//! The broker restarts (`rabbitmqctl stop_app`, then `start_app`) while events are published and
//! consumed: the hub reconnects, re-declares, re-consumes, and every confirmed event is handled.
//!
//! This stops RabbitMQ for everyone, so it lives in its own test binary and nextest runs it alone
//! (`.config/nextest.toml`); `cargo test` runs test binaries one after another.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Fixture, Kind, PaymentCreated, eventually};
use tidewell_core::Envelope;
use tidewell_event_hub::{MemoryDedup, RetryPolicy, Subscription};

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the broker app again even if the test fails half-way, so the rest of the suite runs.
struct Restart;
impl Drop for Restart {
    fn drop(&mut self) {
        // ok to ignore: best effort in a failing test; a healthy path started it already
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "60"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing() {
    const EVENTS: u64 = 5_000;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tidewell_event_hub=info")
        .with_test_writer()
        .try_init();
    let f = Fixture::new(Kind::Amqp).await;
    let q = f
        .service("restart", &RetryPolicy::none())
        .bind("payments.#");
    let name = q.name();
    let topology = f.topology().service(q);
    let producer = f
        .hub_with(topology.clone(), |b| {
            b.publish_timeout(Duration::from_secs(60))
        })
        .await;
    let consumer = f.hub(topology).await;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let s = seen.clone();
    consumer
        .subscribe(
            Subscription::new(&name)
                .prefetch(100)
                .dedup(MemoryDedup::new(10_000)),
            move |e: Envelope<PaymentCreated>| {
                let s = s.clone();
                async move {
                    assert!(
                        s.lock().unwrap().insert(e.payload().seq),
                        "ran twice behind the guard"
                    );
                    Ok(())
                }
            },
        )
        .await
        .unwrap();

    // A second producer with a 1 s publish timeout: while the broker is down, its publish must
    // fail with a clear error after about a second, not hang and not drop silently.
    let impatient = f
        .hub_with(f.topology(), |b| b.publish_timeout(Duration::from_secs(1)))
        .await;

    let publisher = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut confirmed = Vec::new();
            for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(250) {
                let batch: Vec<_> = chunk
                    .iter()
                    .map(|&seq| {
                        producer.envelope(PaymentCreated {
                            payment_id: seq,
                            seq,
                        })
                    })
                    .collect();
                for (seq, r) in chunk.iter().zip(producer.publish_batch(&batch).await) {
                    match r {
                        Ok(()) => confirmed.push(*seq),
                        Err(e) => panic!("publish {seq} failed across the restart: {e}"),
                    }
                }
            }
            confirmed
        })
    };

    let started = Instant::now();
    let guard = Restart;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
        .await
        .unwrap();
    let t = Instant::now();
    let err = impatient
        .publish(&impatient.envelope(PaymentCreated {
            payment_id: 0,
            seq: u64::MAX,
        }))
        .await
        .unwrap_err();
    let waited = t.elapsed();
    assert!(
        matches!(err, tidewell_event_hub::Error::Disconnected { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("did not recover"), "{err}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup", "--timeout", "60"]);
    })
    .await
    .unwrap();
    drop(guard);
    let confirmed = publisher.await.unwrap();
    eprintln!(
        "{} events confirmed across a broker restart in {:?}",
        confirmed.len(),
        started.elapsed()
    );

    let all = || {
        let s = seen.lock().unwrap();
        confirmed.iter().all(|c| s.contains(c))
    };
    if !eventually(Duration::from_secs(90), all).await {
        // Say where the missing events are before failing: still queued, unacked, or nowhere.
        let out = Command::new("rabbitmqctl")
            .args([
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            ])
            .output()
            .unwrap();
        let queues: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&f.prefix))
            .map(str::to_owned)
            .collect();
        panic!(
            "handled {} of {}; queues (name ready unacked consumers): {queues:?}; acked {}",
            seen.lock().unwrap().len(),
            confirmed.len(),
            consumer.metrics().consumed(&name, "acked"),
        );
    }
    producer.shutdown(Duration::from_secs(10)).await.unwrap();
    impatient.shutdown(Duration::from_secs(10)).await.unwrap();
    consumer.shutdown(Duration::from_secs(10)).await.unwrap();
}
