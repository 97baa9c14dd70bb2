//! Device sessions on the server: a user signs in on a laptop and a phone, signs the phone out
//! from the laptop, and the gateway learns of it through the event hub.
//!
//! Run it with `cargo run --example session_sync` (SQLite in memory, in-memory event hub). The
//! same code runs on Postgres (`DeviceRegistry::connect("postgres://…")`) and RabbitMQ
//! (`Hub::builder("auth").url("amqp://…")`).
#![allow(
    clippy::print_stdout,
    reason = "an example prints for a person to read"
)]

use std::error::Error;
use std::time::Duration;

use tidewell::auth::{Issuer, SigningKey};
use tidewell::event_hub::{HandlerError, Hub, Router, ServiceQueue, Subscription, Topology};
use tidewell_session_sync::server::{DeviceRegistry, NewDevice, RevokedSessions};
use tokio::sync::mpsc;

const LAPTOP_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/120.0.0.0 Safari/537.36";
const PHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The gateway node has a queue of its own for revocations; "audit" hears every auth event.
    let hub = Hub::memory(
        "auth",
        Topology::new()
            .service(ServiceQueue::new("gateway-1").bind("auth.session.revoked"))
            .service(ServiceQueue::new("audit").bind("auth.#")),
    )
    .await?;
    let registry = DeviceRegistry::connect("sqlite::memory:")
        .await?
        .with_hub(hub.clone());
    println!("registry: {registry:?}\n");

    // The gateway: a bounded set of revoked sessions, fed by the hub, checked on every token.
    let revoked = RevokedSessions::new(registry.clone(), 100_000, Duration::from_secs(15 * 60));
    hub.subscribe_router(Subscription::new("gateway-1.events"), revoked.router())
        .await?;

    // Print every event as it travels (what the WebSocket bridge receives too).
    let (tx, mut events) = mpsc::unbounded_channel();
    hub.subscribe_router(
        Subscription::new("audit.events"),
        Router::new().fallback(move |event| {
            let sent = serde_json::to_string_pretty(&event)
                .map_err(HandlerError::permanent)
                .and_then(|json| tx.send(json).map_err(HandlerError::permanent));
            async move { sent }
        }),
    )
    .await?;

    // Two sign-ins: the auth service registers the device with the session it opened.
    let user = "user-7";
    registry
        .register(NewDevice::new(
            user,
            "laptop-1",
            "session-laptop",
            LAPTOP_UA,
        ))
        .await?;
    registry
        .register(NewDevice::new(user, "phone-1", "session-phone", PHONE_UA))
        .await?;
    println!("{user} is signed in on:");
    for device in registry.list(user).await? {
        println!(
            "  {:<10} {:<20} {:<8} session {}",
            device.device_id,
            device.name,
            device.device_type.as_str(),
            device.session_id
        );
    }

    // The phone's token, as the gateway sees it.
    let issuer = Issuer::new(SigningKey::hs256("k1", &[7; 32])?, "auth", "app");
    let mut phone_claims = issuer.claims_for(user);
    phone_claims.sid = Some("session-phone".into());
    println!(
        "\ngateway lets the phone's token through: {}",
        revoked.permits(&phone_claims)
    );

    // On the laptop: "sign out my other devices".
    let signed_out = registry.revoke_others(user, "laptop-1").await?;
    for device in &signed_out {
        println!("\nrevoked {} ({})", device.device_id, device.name);
    }
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await?
        .ok_or("the audit subscription ended")?;
    println!("event received:\n{event}");

    // The gateway heard of it through its own queue.
    tokio::time::timeout(Duration::from_secs(5), async {
        while revoked.permits(&phone_claims) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await?;
    println!(
        "\ngateway lets the phone's token through: {}",
        revoked.permits(&phone_claims)
    );
    println!(
        "{user} is now signed in on: {:?}",
        registry
            .list(user)
            .await?
            .iter()
            .map(|d| d.device_id.as_str())
            .collect::<Vec<_>>()
    );

    hub.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
