//! The kit against the three real services: it connects, isolates, cleans up, and fails clearly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use redis::AsyncCommands;
use sqlx::Row;
use tidewell_testkit::{TestDatabase, TestRabbit, TestRedis, amqp_url, database_url, redis_url};

#[tokio::test]
async fn rabbit_round_trip_then_queue_is_deleted() {
    let rabbit = TestRabbit::connect().await;
    let queue = rabbit.queue("orders");
    assert!(queue.starts_with(rabbit.prefix()));
    let channel = rabbit.connection().create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"hello",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let got = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message we just published");
    assert_eq!(got.delivery.data, b"hello");
    drop(rabbit);

    // After the drop the queue is gone: a passive declare fails with NOT_FOUND.
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let err = channel
        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("NOT_FOUND") || err.to_string().contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn two_tests_never_share_names() {
    let (a, b) = (TestRabbit::connect().await, TestRabbit::connect().await);
    assert_ne!(a.queue("q"), b.queue("q"));
    let (x, y) = (TestRedis::connect().await, TestRedis::connect().await);
    assert_ne!(x.key("k"), y.key("k"));
}

#[tokio::test]
async fn redis_keys_under_the_prefix_are_removed_on_drop() {
    let redis = TestRedis::connect().await;
    let mut conn = redis.connection();
    let keys: Vec<String> = (0..1_200).map(|i| redis.key(&format!("k{i}"))).collect();
    for key in &keys {
        let () = conn.set(key, "v").await.unwrap();
    }
    let value: String = conn.get(&keys[0]).await.unwrap();
    assert_eq!(value, "v");
    drop(redis);

    let client = redis::Client::open(redis_url()).unwrap();
    let mut fresh = client.get_multiplexed_async_connection().await.unwrap();
    let left: u64 = fresh.exists(&keys).await.unwrap();
    assert_eq!(left, 0, "every key under the prefix is deleted");
}

#[tokio::test]
async fn each_test_gets_a_fresh_database_dropped_afterwards() {
    let db = TestDatabase::create().await;
    let name = db.name().to_owned();
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1), (2)")
        .execute(db.pool())
        .await
        .unwrap();
    let n: i64 = sqlx::query("SELECT count(*) FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let other = TestDatabase::create().await;
    assert_ne!(other.name(), name);
    drop(db);

    let admin = sqlx::PgPool::connect(&database_url()).await.unwrap();
    let exists: bool = sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&admin)
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "database {name} should have been dropped");
}

#[tokio::test]
async fn unreachable_services_fail_with_how_to_start_them() {
    let err = TestRabbit::try_connect("amqp://guest:guest@127.0.0.1:1/%2f")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("RabbitMQ is not reachable") && text.contains("rabbitmq-server -detached"),
        "{text}"
    );
    assert!(!text.contains("guest:guest"), "password hidden: {text}");

    let text = TestRedis::try_connect("redis://127.0.0.1:1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("Redis is not reachable") && text.contains("redis-server --daemonize yes"),
        "{text}"
    );

    let text = TestDatabase::try_create("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("PostgreSQL is not reachable") && text.contains("pg_ctlcluster"),
        "{text}"
    );
}
