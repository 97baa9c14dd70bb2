//! The event bridge over a real RabbitMQ: events reach their rooms' connections only, a revoked
//! session is closed with 4001.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tidewell_core::Event;
use tidewell_event_hub::{Hub, ServiceQueue, Subscription, Topology};
use tidewell_testkit::TestRabbit;
use tidewell_websocket::{Bridge, WsConfig};
use tokio_tungstenite::tungstenite::Message;

#[derive(Serialize, Deserialize)]
struct PaymentCreated {
    id: u64,
    user_id: String,
}
impl Event for PaymentCreated {
    const TYPE: &'static str = "payments.payment.created";
    const VERSION: u16 = 1;
}

#[derive(Serialize, Deserialize)]
struct SessionRevoked {
    session_id: String,
    device_id: String,
}
impl Event for SessionRevoked {
    const TYPE: &'static str = "auth.session.revoked";
    const VERSION: u16 = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_their_rooms_and_revocations_close_sessions() {
    let rabbit = TestRabbit::connect().await;
    let (server, addr) = start(WsConfig::default()).await;
    let service = format!("{}.gateway", rabbit.prefix());
    let exchange = rabbit.exchange("events");
    rabbit.exchange("events.dlx");
    let topology = Topology::with_exchange(exchange).service(
        ServiceQueue::new(&service)
            .bind("payments.#")
            .bind("auth.#"),
    );
    // Every queue it declares (the retry wait queues too) is deleted with the test.
    for queue in topology.queue_names() {
        rabbit.own_queue(&queue);
    }
    let hub = Hub::builder("tests")
        .url(rabbit.url())
        .topology(topology)
        .connect()
        .await
        .unwrap();
    let bridge = Bridge::new(server.clone())
        .rule("payments.payment.*", |e| {
            let p = e.payload();
            vec![
                format!("user:{}", p["user_id"].as_str().unwrap_or("")),
                format!("payment:{}", p["id"]),
            ]
        })
        .revoke_sessions("auth.session.revoked", |e| {
            let p = e.payload();
            Some((
                p["session_id"].as_str()?.to_owned(),
                p["device_id"].as_str().map(str::to_owned),
            ))
        });
    hub.subscribe_router(
        Subscription::new(format!("{service}.events")),
        bridge.into_router(),
    )
    .await
    .unwrap();

    let mut owner = connect(addr, &token("u1", &[], "s1")).await.unwrap();
    next_json(&mut owner).await;
    let mut owner_phone = connect(addr, &token("u1", &[], "s-phone")).await.unwrap();
    next_json(&mut owner_phone).await;
    let mut other = connect(addr, &token("u2", &[], "s2")).await.unwrap();
    next_json(&mut other).await;

    hub.publish(&hub.envelope(PaymentCreated {
        id: 9,
        user_id: "u1".into(),
    }))
    .await
    .unwrap();
    for ws in [&mut owner, &mut owner_phone] {
        let ev = next_json(ws).await;
        assert_eq!(ev["room"], "user:u1");
        assert_eq!(ev["event"]["type"], "payments.payment.created");
        assert_eq!(ev["event"]["payload"]["id"], 9);
    }
    let nothing = tokio::time::timeout(Duration::from_millis(500), other.next()).await;
    assert!(
        !matches!(nothing, Ok(Some(Ok(Message::Text(_))))),
        "u2 got nothing: {nothing:?}"
    );

    hub.publish(&hub.envelope(SessionRevoked {
        session_id: "s1".into(),
        device_id: "dev-u1".into(),
    }))
    .await
    .unwrap();
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), owner.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(4001), "the revoked session is closed");
    // The same user's other session stays, and hears about it on its device room.
    let note = next_json(&mut owner_phone).await;
    assert_eq!(note["room"], "device:dev-u1");
    assert_eq!(note["event"]["type"], "auth.session.revoked");
    assert_eq!(server.connections_of_user("u1").len(), 1);
    hub.shutdown(Duration::from_secs(2)).await.unwrap();
}
