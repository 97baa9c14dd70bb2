//! The transactional outbox on SQLite and Postgres, relayed to the in-memory hub and to the real
//! RabbitMQ: committed events arrive, rolled-back ones never do, and closing the broker
//! connections mid-flow loses nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, Kind, PaymentCreated, close_connections, eventually};
use sqlx::AnyPool;
use tidewell_core::{Backoff, Envelope};
use tidewell_event_hub::outbox::{Outbox, connect};
use tidewell_event_hub::{Error, Hub, RetryPolicy, Subscription};
use tidewell_testkit::{TestDatabase, unique_name};
use tokio_util::sync::CancellationToken;

/// A database for one test: a SQLite file, or a fresh Postgres database.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(Box<TestDatabase>),
}

impl Db {
    async fn sqlite() -> Self {
        Self::Sqlite(std::env::temp_dir().join(format!("{}.db", unique_name("outbox"))))
    }

    async fn postgres() -> Self {
        Self::Postgres(Box::new(TestDatabase::create().await))
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}?mode=rwc", p.display()),
            Self::Postgres(d) => d.url().to_owned(),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Self::Sqlite(p) = self {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
    }
}

/// Counts `payments.payment.created` by payment id.
async fn collect(hub: &Hub, queue: String) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    hub.subscribe(
        Subscription::new(queue),
        move |e: Envelope<PaymentCreated>| {
            let s = Arc::clone(&s);
            async move {
                s.lock().unwrap().push(e.payload().payment_id);
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    seen
}

/// Writes payment `id` and its event in one transaction; commits or rolls back.
async fn write(pool: &AnyPool, outbox: &Outbox, hub: &Hub, id: u64, commit: bool) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO payments (id) VALUES ($1)")
        .bind(i64::try_from(id).unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    outbox
        .add(
            &mut tx,
            &hub.envelope(PaymentCreated {
                payment_id: id,
                seq: id,
            }),
        )
        .await
        .unwrap();
    if commit {
        tx.commit().await.unwrap();
        outbox.notify();
    } else {
        tx.rollback().await.unwrap();
    }
}

async fn committed_and_rolled_back(db: Db) {
    let fixture = Fixture::new(Kind::Memory).await;
    let service = fixture.service("ledger", &RetryPolicy::none());
    let queue = service.name();
    let hub = fixture
        .hub(fixture.topology().service(service.bind("payments.#")))
        .await;
    let pool = connect(&db.url()).await.unwrap();
    sqlx::query("CREATE TABLE payments (id BIGINT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let outbox = Outbox::new(pool.clone()).await.unwrap();
    // Creating twice is harmless (every service start does it).
    Outbox::new(pool.clone()).await.unwrap();
    let seen = collect(&hub, queue).await;
    let stop = CancellationToken::new();
    let relay = outbox.spawn_relay(
        hub.clone(),
        Duration::from_millis(200),
        Backoff::builder().build().unwrap(),
        stop.clone(),
    );
    for id in 1..=60 {
        // Every sixth transaction rolls back: its event must never be published.
        write(&pool, &outbox, &hub, id, id % 6 != 0).await;
    }
    // The single-statement form: an event only with a change, nothing from a failed statement.
    for id in 61..=80 {
        let event = || {
            hub.envelope(PaymentCreated {
                payment_id: id,
                seq: id,
            })
        };
        let insert = || {
            sqlx::query("INSERT INTO payments (id) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(i64::try_from(id).unwrap())
        };
        assert!(outbox.write(insert(), &event()).await.unwrap(), "{id}");
        assert!(
            !outbox.write(insert(), &event()).await.unwrap(),
            "{id} again"
        );
        let duplicate =
            sqlx::query("INSERT INTO payments (id) VALUES ($1)").bind(i64::try_from(id).unwrap());
        assert!(matches!(
            outbox.write(duplicate, &event()).await,
            Err(Error::Outbox { .. })
        ));
    }
    let want: Vec<u64> = (1..=80).filter(|id| *id > 60 || id % 6 != 0).collect();
    assert!(
        eventually(Duration::from_secs(10), || seen.lock().unwrap().len()
            >= want.len())
        .await,
        "only {} of {} events arrived",
        seen.lock().unwrap().len(),
        want.len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Handlers run concurrently (prefetch), so arrival order is not publish order.
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(
        got, want,
        "every committed event exactly once, no rolled-back one"
    );
    let mut pending = outbox.pending().await.unwrap();
    for _ in 0..50 {
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pending = outbox.pending().await.unwrap();
    }
    assert_eq!(pending, 0);
    assert_eq!(outbox.stuck().await.unwrap(), 0);
    assert_eq!(outbox.prune(Duration::ZERO).await.unwrap(), 70);
    stop.cancel();
    relay.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_committed_events_are_relayed_once_rolled_back_ones_never() {
    committed_and_rolled_back(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_committed_events_are_relayed_once_rolled_back_ones_never() {
    committed_and_rolled_back(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_events_stay_pending_with_the_error() {
    let db = Db::sqlite().await;
    let fixture = Fixture::new(Kind::Memory).await;
    // No queue is bound to payments.*: the broker returns the event.
    let hub = fixture.hub(fixture.topology()).await;
    let pool = connect(&db.url()).await.unwrap();
    sqlx::query("CREATE TABLE payments (id BIGINT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let outbox = Outbox::new(pool.clone()).await.unwrap();
    write(&pool, &outbox, &hub, 1, true).await;
    let err = outbox.relay_once(&hub).await.unwrap_err();
    assert!(matches!(err, Error::Unroutable { .. }), "{err}");
    assert_eq!(outbox.pending().await.unwrap(), 1);
    let row = sqlx::query("SELECT attempts, last_error FROM tidewell_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    let attempts: i64 = sqlx::Row::get(&row, "attempts");
    let last: String = sqlx::Row::get(&row, "last_error");
    assert_eq!(attempts, 1);
    assert!(last.contains("payments.payment.created"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_connections_closed_mid_flow_lose_nothing() {
    let db = Db::postgres().await;
    let fixture = Fixture::new(Kind::Amqp).await;
    let service = fixture.service("ledger", &RetryPolicy::none());
    let queue = service.name();
    let hub = fixture
        .hub(fixture.topology().service(service.bind("payments.#")))
        .await;
    let pool = connect(&db.url()).await.unwrap();
    sqlx::query("CREATE TABLE payments (id BIGINT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let outbox = Outbox::new(pool.clone()).await.unwrap();
    let seen = collect(&hub, queue).await;
    let stop = CancellationToken::new();
    let relay = outbox.spawn_relay(
        hub.clone(),
        Duration::from_millis(100),
        Backoff::builder()
            .min(Duration::from_millis(50))
            .max(Duration::from_millis(500))
            .build()
            .unwrap(),
        stop.clone(),
    );
    let prefix = fixture.prefix.clone();
    let killer = tokio::spawn(async move {
        let mut closed = Vec::new();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let p = prefix.clone();
            closed.push(
                tokio::task::spawn_blocking(move || close_connections(&p))
                    .await
                    .unwrap(),
            );
        }
        closed
    });
    for id in 1..=200 {
        write(&pool, &outbox, &hub, id, true).await;
        if id % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let closed = killer.await.unwrap();
    assert!(
        closed.iter().filter(|&&c| c > 0).count() >= 2,
        "the faults really happened: {closed:?}"
    );
    let arrived = eventually(Duration::from_secs(60), || {
        seen.lock().unwrap().iter().collect::<BTreeSet<_>>().len() >= 200
    })
    .await;
    let pending = outbox.pending().await.unwrap();
    let distinct = seen.lock().unwrap().iter().collect::<BTreeSet<_>>().len();
    assert!(
        arrived,
        "delivered {distinct} distinct of 200 (pending {pending})"
    );
    let distinct: BTreeSet<u64> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(distinct, (1..=200).collect());
    // Delivery can run ahead of the relay's marks by one batch.
    let mut pending = outbox.pending().await.unwrap();
    for _ in 0..100 {
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pending = outbox.pending().await.unwrap();
    }
    assert_eq!(pending, 0);
    eprintln!(
        "200 events through the outbox, connections closed per round {closed:?}, {} deliveries (duplicates are at-least-once redeliveries)",
        seen.lock().unwrap().len()
    );
    stop.cancel();
    relay.await.unwrap();
    // Stopped before the fixture deletes its queues: a running consumer would declare them again.
    hub.shutdown(Duration::from_secs(5)).await.unwrap();
}
