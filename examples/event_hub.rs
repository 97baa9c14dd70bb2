//! A publisher and a consumer with retries and a dead-letter queue.
//!
//! In memory (the default): `cargo run --example event_hub`
//! On RabbitMQ: `TIDEWELL_EVENT_HUB_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example event_hub`
//!
//! Four payments are published. The receipt handler succeeds on the first, fails once and then
//! succeeds on the second (a retry), refuses the third for good (a permanent error), and keeps
//! failing on the fourth until the retry policy gives up. The last two end in the dead-letter
//! queue, with the reason, the attempts and the last error.
#![allow(
    clippy::print_stdout,
    reason = "an example prints for a person to read"
)]

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewell::core::{Backoff, Envelope, Event};
use tidewell::event_hub::{
    HandlerError, HubBuilder, MemoryDedup, RetryPolicy, ServiceQueue, Subscription, Topology,
};

#[derive(Debug, Serialize, Deserialize)]
struct PaymentCompleted {
    payment_id: u64,
    amount_cents: i64,
}

impl Event for PaymentCompleted {
    const TYPE: &'static str = "payments.payment.completed";
    const VERSION: u16 = 1;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let retry = RetryPolicy::new(
        3,
        Backoff::builder()
            .min(Duration::from_millis(200))
            .max(Duration::from_secs(1))
            .build()?,
    );
    let hub = HubBuilder::from_env("payments")?
        .topology(
            Topology::with_exchange("tidewell-example.events").service(
                ServiceQueue::new("tidewell-example.receipts")
                    .bind("payments.#")
                    .retry(retry),
            ),
        )
        .connect()
        .await?;
    println!("event hub: {hub:?}");
    let queue = "tidewell-example.receipts.events";

    let runs: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let seen = runs.clone();
    hub.subscribe(
        Subscription::new(queue)
            .name("send-receipt")
            .dedup(MemoryDedup::new(10_000)),
        move |event: Envelope<PaymentCompleted>| {
            let run = {
                let mut runs = seen.lock().unwrap_or_else(|e| e.into_inner());
                let n = runs.entry(event.payload().payment_id).or_default();
                *n += 1;
                *n
            };
            async move {
                let p = event.payload();
                println!("  handler: payment {} (run {run})", p.payment_id);
                match p.payment_id {
                    2 if run == 1 => Err(HandlerError::retryable("mail server busy")),
                    3 => Err(HandlerError::permanent(format!(
                        "amount {} is negative",
                        p.amount_cents
                    ))),
                    4 => Err(HandlerError::retryable("mailbox of payment 4 is full")),
                    _ => Ok(()),
                }
            }
        },
    )
    .await?;

    println!("publishing 4 payments (each resolves when the broker confirms it):");
    for (payment_id, amount_cents) in [(1, 1_999), (2, 500), (3, -10), (4, 250)] {
        hub.publish(&hub.envelope(PaymentCompleted {
            payment_id,
            amount_cents,
        }))
        .await?;
    }

    // Retries wait 200 ms to 1 s each; give them time to run out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    println!("\ndead letters of {queue}:");
    for letter in hub
        .take_dead_letters(queue, 10, Duration::from_secs(2))
        .await?
    {
        println!(
            "  {} {}: reason={} attempts={} handler={} last_error={:?}",
            letter.event_type,
            letter.message_id,
            letter.reason.as_str(),
            letter.attempts,
            letter.handler.as_deref().unwrap_or("-"),
            letter.last_error.as_deref().unwrap_or("-"),
        );
    }
    let m = hub.metrics();
    println!(
        "\nsettled: acked={} retried={} dead-lettered={}",
        m.consumed(queue, "acked"),
        m.consumed(queue, "retried"),
        m.consumed(queue, "dead_lettered")
    );
    hub.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
