//! WebSocket rooms end to end in one program: a server that authenticates upgrades with a JWT,
//! and the native client that subscribes, loses its connection, and recovers what it missed.
//!
//! `cargo run --example websocket`
#![allow(
    clippy::print_stdout,
    reason = "an example prints for a person to read"
)]

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewell::auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
use tidewell::core::cli::Cli;
use tidewell::core::{Envelope, Event};
use tidewell::websocket::{ClientConfig, ClientEvent, WsClient, WsServer};

#[derive(Debug, Serialize, Deserialize)]
struct PaymentCompleted {
    payment_id: u64,
    amount_cents: i64,
}

impl Event for PaymentCompleted {
    const TYPE: &'static str = "payments.payment.completed";
    const VERSION: u16 = 1;
}

fn main() -> ExitCode {
    let cli = Cli::new(
        "websocket",
        env!("CARGO_PKG_VERSION"),
        "WebSocket rooms end to end: a server with JWT upgrades and a native client that loses its connection and recovers what it missed.",
    );
    if let Some(done) = cli.handle_args() {
        return done;
    }
    cli.report(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
    let secret = b"an example secret of 32 bytes!!!";
    let server = WsServer::builder(Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("k1", secret)?]),
        "auth",
        "tidewell",
    ))
    // Users may watch their own payments: payment:<user>-<id>.
    .authorize(|claims, room| {
        room.strip_prefix("payment:")
            .is_some_and(|p| p.starts_with(&format!("{}-", claims.sub)))
    })
    .build()?;

    // Serve GET /ws with hyper (axum works the same: call server.handle(request)).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Small frames go out at once (Nagle would hold one back behind an unacknowledged
            // one); the server already coalesces frames queued together into one write.
            let _ = stream.set_nodelay(true);
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, std::convert::Infallible>(s.handle(req)) }
                });
                // ok to ignore: a client that goes away ends its connection
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    println!("server on ws://{addr}/ws");

    let issuer = Issuer::new(SigningKey::hs256("k1", secret)?, "auth", "tidewell");
    let mut claims = issuer.claims_for("ada");
    claims.sid = Some("session-1".into());
    let token = issuer.sign(&claims)?.into_string();

    let mut client = WsClient::connect(ClientConfig::new(format!("ws://{addr}/ws"), token));
    client.subscribe("payment:ada-42")?;
    client.subscribe("payment:bob-7")?; // refused by the authorization hook
    let mut seen = 0;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), client.next()).await? {
        match ev {
            ClientEvent::Connected { connection_id } => {
                println!("connected as {connection_id}");
                tokio::time::sleep(Duration::from_millis(100)).await; // let the subscribes land
                for n in 1..=3 {
                    let e = Envelope::new(
                        "payments",
                        PaymentCompleted {
                            payment_id: 42,
                            amount_cents: 100 * n,
                        },
                    );
                    server.publish("payment:ada-42", &e)?;
                }
            }
            ClientEvent::Event {
                room,
                offset,
                event,
            } => {
                let e = event.decode::<PaymentCompleted>()?;
                println!("{room} #{offset}: {} cents", e.payload().amount_cents);
                seen += 1;
                if seen == 3 {
                    break;
                }
            }
            ClientEvent::ServerError { code, message } => println!("server said {code}: {message}"),
            other => println!("{other:?}"),
        }
    }
    println!("server: {:?}", server.stats());
    // After a dropped connection the client reconnects by itself and re-subscribes with the last
    // offset it saw, so nothing is missed (websocket/tests/client.rs cuts the network to show it).
    client.close();
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
