//! The native client across a cut network: it reconnects, recovers with `since`, and never hands
//! the same event over twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use tidewell_core::{Envelope, Event};
use tidewell_websocket::{ClientConfig, ClientEvent, WsClient, WsConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Note {
    n: u64,
}
impl Event for Note {
    const TYPE: &'static str = "tests.note.written";
    const VERSION: u16 = 1;
}

/// A TCP forwarder whose connections can all be cut at once.
struct Cutter {
    addr: SocketAddr,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Cutter {
    async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let c = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let token = c.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    fn cut_all(&self) {
        let mut t = self.cut.lock().unwrap();
        t.cancel();
        *t = CancellationToken::new();
    }
}

async fn next_event(client: &mut WsClient) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("an event in time")
        .expect("client running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_recovers_and_deduplicates() {
    let (server, addr) = start(WsConfig::default()).await;
    let cutter = Cutter::start(addr).await;
    let mut client = WsClient::connect(ClientConfig::new(
        format!("ws://{}/ws", cutter.addr),
        token("u1", &[], "s1"),
    ));
    client.subscribe("doc:c").unwrap();
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    // Wait until the subscription is in place on the server.
    for _ in 0..100 {
        if server.presence("doc:c").len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "presence {:?} stats {:?}",
        server.presence("doc:c"),
        server.stats()
    );
    let publish = |n: u64| {
        server
            .publish("doc:c", &Envelope::new("tests", Note { n }))
            .unwrap();
    };
    publish(1);
    publish(2);
    let mut got = Vec::new();
    while got.len() < 2 {
        if let ClientEvent::Event { event, .. } = next_event(&mut client).await {
            got.push(event.decode::<Note>().unwrap().into_payload().n);
        }
    }

    cutter.cut_all();
    match next_event(&mut client).await {
        ClientEvent::Disconnected { .. } => {}
        other => panic!("{other:?}"),
    }
    for _ in 0..100 {
        if server.presence("doc:c").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    publish(3);
    publish(4);
    // Reconnects by itself, recovers 3 and 4, then gets live 5.
    assert!(matches!(
        next_event(&mut client).await,
        ClientEvent::Connected { .. }
    ));
    let mut sent_5 = false;
    while got.len() < 5 {
        match next_event(&mut client).await {
            ClientEvent::Event { event, .. } => {
                got.push(event.decode::<Note>().unwrap().into_payload().n);
                if got.len() == 4 && !sent_5 {
                    publish(5);
                    sent_5 = true;
                }
            }
            ClientEvent::Gap { room } => panic!("no gap expected in {room}"),
            _ => {}
        }
    }
    assert_eq!(got, [1, 2, 3, 4, 5], "each event once, in order");
    // close() ends the connection (the server sees its member leave) and the client.
    client.close();
    let mut left = false;
    for _ in 0..500 {
        if server.presence("doc:c").is_empty() {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        left,
        "still present after close(): {:?}",
        server.presence("doc:c")
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .is_ok(),
        "the client's event stream ends after close()"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_the_client() {
    let (_server, addr) = start(WsConfig::default()).await;
    let mut client = WsClient::connect(ClientConfig::new(format!("ws://{addr}/ws"), "garbage"));
    match next_event(&mut client).await {
        ClientEvent::Stopped { reason } => assert!(reason.contains("401"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(client.next().await.is_none());
}
