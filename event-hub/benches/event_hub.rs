//! Tidewell's event hub against raw lapin on the local RabbitMQ, in one run.
//!
//! - `publish_throughput`: durable queue, persistent 1 KiB events, publisher confirms, 1,000
//!   confirms in flight for both. Baseline: raw lapin on one confirm channel, publishing the same
//!   bytes with the same properties to the same exchange. Goal: ratio >= 0.95.
//! - `quorum_publish_throughput`: the same on a quorum queue (one node here: the cost of the
//!   Raft log, not of replication). Baseline: raw lapin on the same quorum queue. Goal: ratio >=
//!   0.95.
//! - `end_to_end_latency_p99`: publish -> handler at a steady 1,000 events/s. Baseline: raw lapin
//!   publisher and consumer (ack per message). Goal: < 5 ms.
//! - `amqps_publish_throughput`: `publish_throughput` with both over `amqps://` (TLS 1.3) to the
//!   TLS broker node of `scripts/tls-fixture` (started for the bench when not running). Goal:
//!   ratio >= 0.95.
//! - `memory_throughput`: the in-memory backend, publish and handle, against a tokio channel
//!   carrying the same bytes (for reference).
//!
//! Run: `cargo bench -p tidewell-event-hub --bench event_hub` (RabbitMQ at `AMQP_URL`, default
//! local; `BENCH_QUEUE_TYPE=quorum` for a quorum queue). Rounds alternate baseline and ours; each figure is the median of its rounds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};
use tidewell_core::{Envelope, Event};
use tidewell_event_hub::{Hub, QueueType, RetryPolicy, ServiceQueue, Subscription, Topology};
use tidewell_testkit::TestRabbit;
use tidewell_testkit::bench::median;

const MESSAGES: usize = 20_000;
const WINDOW: usize = 1_000;
const ROUNDS: usize = 3;
const LATENCY_RATE: u64 = 1_000;
const LATENCY_MESSAGES: usize = 5_000;

#[derive(Clone, Serialize, Deserialize)]
struct Sample {
    sent_micros: u64,
    data: String,
}
impl Event for Sample {
    const TYPE: &'static str = "bench.sample.created";
    const VERSION: u16 = 1;
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn sample() -> Sample {
    Sample {
        sent_micros: 0,
        data: "x".repeat(1_000),
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn line(name: &str, ours: f64, baseline: f64, unit: &str) {
    println!(
        "bench: {name} ours={ours:.2} baseline={baseline:.2} ratio={:.3} unit={unit}",
        ours / baseline
    );
}

/// The properties Tidewell sets, so the baseline makes the broker do the same work.
fn properties(e: &Envelope<Sample>) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(LongString::from(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(e.id().to_string().as_str().into())
        .with_type(Sample::TYPE.into())
        .with_correlation_id(e.correlation_id().as_str().into())
        .with_app_id("bench".into())
        .with_timestamp(e.occurred_at().unix_timestamp() as u64)
        .with_headers(headers)
}

async fn raw_publish(channel: &Channel, exchange: &str, envelopes: &[Envelope<Sample>]) -> f64 {
    let bodies: Vec<(Vec<u8>, BasicProperties)> = envelopes
        .iter()
        .map(|e| (serde_json::to_vec(e).unwrap(), properties(e)))
        .collect();
    let started = Instant::now();
    for chunk in bodies.chunks(WINDOW) {
        // Every publish of the window in flight at once, then every confirm: the same pipelining
        // the hub's publish_batch gets, and faster than awaiting each basic_publish in turn.
        let publishes = chunk.iter().map(|(body, props)| {
            let opts = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            channel.basic_publish(
                exchange.into(),
                Sample::TYPE.into(),
                opts,
                body,
                props.clone(),
            )
        });
        let confirms = futures_util::future::join_all(publishes).await;
        for c in futures_util::future::join_all(confirms.into_iter().map(|c| c.unwrap())).await {
            assert!(c.unwrap().is_ack());
        }
    }
    envelopes.len() as f64 / started.elapsed().as_secs_f64()
}

async fn hub_publish(hub: &Hub, envelopes: &[Envelope<Sample>]) -> f64 {
    let started = Instant::now();
    for chunk in envelopes.chunks(WINDOW) {
        for r in hub.publish_batch(chunk).await {
            r.unwrap();
        }
    }
    envelopes.len() as f64 / started.elapsed().as_secs_f64()
}

async fn publish_throughput(connection: &lapin::Connection, hub: &Hub, queue: &str) -> (f64, f64) {
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = hub.topology().exchange().to_owned();
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let envelopes: Vec<_> = (0..MESSAGES).map(|_| hub.envelope(sample())).collect();
        let b = raw_publish(&channel, &exchange, &envelopes).await;
        channel
            .queue_purge(queue.into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        let o = hub_publish(hub, &envelopes).await;
        channel
            .queue_purge(queue.into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        eprintln!("  round {round}: raw lapin {b:.0} msgs/s, tidewell {o:.0} msgs/s");
        base.push(b);
        ours.push(o);
    }
    (median(ours), median(base))
}

/// Publishes at a steady rate; returns send instants' latencies measured by the receiver.
async fn paced<F, Fut>(mut send: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..LATENCY_MESSAGES {
        tick.tick().await;
        send().await;
    }
}

async fn latency_raw(rabbit: &TestRabbit, exchange: &str, queue: &str) -> (f64, f64) {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(LATENCY_MESSAGES)));
    let consumer_channel = rabbit.connection().create_channel().await.unwrap();
    consumer_channel
        .basic_qos(100, Default::default())
        .await
        .unwrap();
    let mut consumer = consumer_channel
        .basic_consume(
            queue.into(),
            "bench-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let l = latencies.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let env: Envelope<Sample> = Envelope::from_json(&d.data).unwrap();
            l.lock()
                .unwrap()
                .push((now_micros() - env.payload().sent_micros) as f64 / 1_000.0);
            d.ack(BasicAckOptions::default()).await.unwrap();
            if l.lock().unwrap().len() == LATENCY_MESSAGES {
                break;
            }
        }
    });
    let channel = Arc::new(rabbit.connection().create_channel().await.unwrap());
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = exchange.to_owned();
    let hubless = Envelope::new("bench", sample());
    paced(|| {
        let (channel, exchange) = (channel.clone(), exchange.clone());
        let mut s = sample();
        s.sent_micros = now_micros();
        let env = Envelope::new("bench", s);
        let props = properties(&hubless);
        async move {
            let body = serde_json::to_vec(&env).unwrap();
            let opts = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    Sample::TYPE.into(),
                    opts,
                    &body,
                    props,
                )
                .await
                .unwrap();
            tokio::spawn(async move { confirm.await.unwrap() });
        }
    })
    .await;
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    consumer_channel.close(200, "done".into()).await.unwrap();
    let mut v = latencies.lock().unwrap().clone();
    (percentile(&mut v, 0.5), percentile(&mut v, 0.99))
}

async fn latency_hub(hub: &Hub, queue: &str) -> (f64, f64) {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(LATENCY_MESSAGES)));
    let l = latencies.clone();
    hub.subscribe(
        Subscription::new(queue).prefetch(100).concurrency(8),
        move |e: Envelope<Sample>| {
            l.lock()
                .unwrap()
                .push((now_micros() - e.payload().sent_micros) as f64 / 1_000.0);
            async { Ok(()) }
        },
    )
    .await
    .unwrap();
    let pending = Arc::new(tokio::sync::Semaphore::new(0));
    paced(|| {
        let mut s = sample();
        s.sent_micros = now_micros();
        let env = hub.envelope(s);
        let (hub, pending) = (hub.clone(), pending.clone());
        async move {
            tokio::spawn(async move {
                hub.publish(&env).await.unwrap();
                pending.add_permits(1);
            });
        }
    })
    .await;
    let _ = pending.acquire_many(LATENCY_MESSAGES as u32).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.lock().unwrap().len() < LATENCY_MESSAGES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut v = latencies.lock().unwrap().clone();
    assert_eq!(v.len(), LATENCY_MESSAGES);
    (percentile(&mut v, 0.5), percentile(&mut v, 0.99))
}

async fn memory_throughput() -> (f64, f64) {
    let topology = Topology::with_exchange("bench").service(
        ServiceQueue::new("mem")
            .bind("#")
            .retry(RetryPolicy::none()),
    );
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let hub = Hub::memory("bench", topology.clone()).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        hub.subscribe(
            Subscription::new("mem.events")
                .prefetch(1_000)
                .concurrency(64),
            move |_: Envelope<Sample>| {
                let _ = tx.send(());
                async { Ok(()) }
            },
        )
        .await
        .unwrap();
        let envelopes: Vec<_> = (0..MESSAGES).map(|_| hub.envelope(sample())).collect();
        let started = Instant::now();
        for chunk in envelopes.chunks(WINDOW) {
            for r in hub.publish_batch(chunk).await {
                r.unwrap();
            }
        }
        for _ in 0..MESSAGES {
            rx.recv().await.unwrap();
        }
        ours.push(MESSAGES as f64 / started.elapsed().as_secs_f64());
        hub.shutdown(Duration::from_secs(5)).await.unwrap();

        // Baseline: the same encoded bytes through a tokio channel to a task that decodes them.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        let reader = tokio::spawn(async move {
            for _ in 0..MESSAGES {
                let b = rx.recv().await.unwrap();
                let _: Envelope<Sample> = Envelope::from_json(&b).unwrap();
            }
        });
        let started = Instant::now();
        for e in &envelopes {
            tx.send(serde_json::to_vec(e).unwrap().into()).unwrap();
        }
        reader.await.unwrap();
        base.push(MESSAGES as f64 / started.elapsed().as_secs_f64());
    }
    (median(ours), median(base))
}

/// `publish_throughput` over `amqps://`, on the broker node of `scripts/tls-fixture` (started here
/// if it is not running, and stopped again): the hub and raw lapin both trust the fixture's CA.
async fn amqps_publish_throughput(queue_type: QueueType) -> (f64, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tls-fixture");
    let dir = std::env::var("TIDEWELL_TLS_FIXTURE")
        .unwrap_or_else(|_| "/tmp/tidewell-tls-fixture".into());
    let started_here = !std::path::Path::new(&dir).join("env").exists();
    if started_here {
        let ok = std::process::Command::new("bash")
            .args([script, "start"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "scripts/tls-fixture start failed");
    }
    let f = tidewell_testkit::tls::TlsFixture::get();
    let url = format!("amqps://guest:guest@localhost:{}/%2f", f.amqps_port());
    let ca = std::fs::read_to_string(f.ca()).unwrap();
    let connection = lapin::DefaultConnectionBuilder::new()
        .unwrap()
        .with_uri_str(url.clone())
        .with_tls_config(lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: Some(ca),
        })
        .connect()
        .await
        .unwrap();
    let prefix = tidewell_testkit::unique_name("bench-tls");
    let service = ServiceQueue::new(format!("{prefix}.bench"))
        .bind("bench.#")
        .retry(RetryPolicy::none())
        .queue_type(queue_type);
    let queue = service.name();
    let hub = Hub::builder("bench")
        .url(url)
        .tls(tidewell_core::tls::ClientTls::new().ca_file(f.ca()))
        .topology(Topology::with_exchange(format!("{prefix}.events")).service(service))
        .connect()
        .await
        .unwrap();
    let result = publish_throughput(&connection, &hub, &queue).await;
    hub.shutdown(Duration::from_secs(10)).await.unwrap();
    if started_here {
        let _ = std::process::Command::new("bash")
            .args([script, "stop"])
            .status();
    }
    result
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rabbit = TestRabbit::connect().await;
    let exchange = rabbit.exchange("events");
    rabbit.exchange("events.dlx");
    rabbit.queue("bench.events");
    rabbit.queue("bench.events.dlq");
    let queue_type = match std::env::var("BENCH_QUEUE_TYPE").as_deref() {
        Ok("quorum") => QueueType::Quorum,
        _ => QueueType::Classic,
    };
    let service = ServiceQueue::new(format!("{}.bench", rabbit.prefix()))
        .bind("bench.#")
        .retry(RetryPolicy::none())
        .queue_type(queue_type);
    let queue = service.name();
    let hub = Hub::builder("bench")
        .url(rabbit.url())
        .topology(Topology::with_exchange(&exchange).service(service))
        .connect()
        .await
        .unwrap();

    eprintln!(
        "publish_throughput: {MESSAGES} persistent 1 KiB events x {ROUNDS} rounds, {WINDOW} confirms in flight"
    );
    let (ours_tp, base_tp) = publish_throughput(rabbit.connection(), &hub, &queue).await;

    eprintln!("quorum_publish_throughput: the same on a quorum queue");
    rabbit.queue("benchq.events");
    rabbit.queue("benchq.events.dlq");
    let quorum = ServiceQueue::new(format!("{}.benchq", rabbit.prefix()))
        .bind("bench.#")
        .retry(RetryPolicy::none())
        .queue_type(QueueType::Quorum);
    let quorum_queue = quorum.name();
    // An exchange of its own: the classic queue above, bound to the same events, gets none.
    let quorum_exchange = rabbit.exchange("eventsq");
    rabbit.exchange("eventsq.dlx");
    let quorum_hub = Hub::builder("bench")
        .url(rabbit.url())
        .topology(Topology::with_exchange(&quorum_exchange).service(quorum))
        .connect()
        .await
        .unwrap();
    let (ours_q, base_q) =
        publish_throughput(rabbit.connection(), &quorum_hub, &quorum_queue).await;
    quorum_hub.shutdown(Duration::from_secs(10)).await.unwrap();

    eprintln!("end_to_end_latency: {LATENCY_MESSAGES} events at {LATENCY_RATE}/s");
    let (base_p50, base_p99) = latency_raw(&rabbit, &exchange, &queue).await;
    let (ours_p50, ours_p99) = latency_hub(&hub, &queue).await;
    eprintln!(
        "  raw lapin p50 {base_p50:.2} ms p99 {base_p99:.2} ms; tidewell p50 {ours_p50:.2} ms p99 {ours_p99:.2} ms"
    );
    hub.shutdown(Duration::from_secs(10)).await.unwrap();

    eprintln!("memory_throughput: {MESSAGES} events published and handled x {ROUNDS} rounds");
    let (ours_mem, base_mem) = memory_throughput().await;

    eprintln!("amqps_publish_throughput: the same, both over amqps:// (TLS 1.3) to the TLS node");
    let (ours_tls, base_tls) = amqps_publish_throughput(queue_type).await;

    line("publish_throughput", ours_tp, base_tp, "msgs/s");
    line("quorum_publish_throughput", ours_q, base_q, "msgs/s");
    line("amqps_publish_throughput", ours_tls, base_tls, "msgs/s");
    line("end_to_end_latency_p50", ours_p50, base_p50, "ms");
    line("end_to_end_latency_p99", ours_p99, base_p99, "ms");
    line("memory_throughput", ours_mem, base_mem, "msgs/s");
}
