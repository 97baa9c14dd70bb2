//! What an operator does with a running hub: is it connected, how deep is a queue, and the
//! dead letters of a service queue listed, taken or replayed.

use std::time::Duration;

use futures_util::StreamExt as _;

use crate::backend::Consumer;
use crate::dead_letter::DeadLetter;
use crate::message;
use crate::{Error, Hub};

/// How long the dead-letter operations wait for one more dead letter after the first.
const DEAD_LETTER_GAP: Duration = Duration::from_millis(250);

/// Headers a dead-lettering leaves on a message, removed when it is replayed (it starts again
/// at attempt 1).
const DEAD_HEADERS: &[&str] = &[
    message::ATTEMPT,
    message::LAST_ERROR,
    message::DEAD_REASON,
    message::HANDLER,
    message::QUEUE,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

impl Hub {
    /// Whether the hub is connected to its broker now (always, in memory). A readiness check:
    /// while RabbitMQ is down this is `false`, and it turns `true` again once the hub has
    /// reconnected.
    pub fn is_connected(&self) -> bool {
        self.inner.backend.connected()
    }

    /// How many messages `queue` (any queue of the broker) holds ready for delivery.
    pub async fn queue_depth(&self, queue: &str) -> Result<u64, Error> {
        self.inner.backend.queue_depth(queue).await
    }

    /// How many dead letters service queue `queue` (e.g. `payments.events`) holds.
    pub async fn dead_letter_depth(&self, queue: &str) -> Result<u64, Error> {
        let dlq = self.dead_letter_queue(queue)?;
        self.inner.backend.queue_depth(&dlq).await
    }

    /// Takes up to `max` dead letters of service queue `queue` (e.g. `payments.events`) and
    /// removes them from its dead-letter queue. Waits up to `wait` for the first; after that,
    /// returns as soon as none arrives for 250 ms.
    pub async fn take_dead_letters(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letters(queue, max, wait, Mode::Take).await
    }

    /// Lists up to `max` dead letters of service queue `queue` without removing them (they go
    /// back to the dead-letter queue). Waits up to `wait` for the first.
    pub async fn peek_dead_letters(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.dead_letters(queue, max, wait, Mode::Peek).await
    }

    /// Sends up to `max` dead letters of service queue `queue` back to that queue (only that
    /// one: the other services bound to the event had it already), each removed from the
    /// dead-letter queue once the broker has confirmed it back. It starts again at attempt 1
    /// with the same message id, so an idempotent consumer that did handle it skips it.
    /// Returns the ones replayed. Waits up to `wait` for the first.
    pub async fn replay_dead_letters(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<DeadLetter>, Error> {
        // The service queue must exist: replaying into nothing would lose the events.
        self.dead_letter_queue(queue)?;
        self.inner.backend.queue_depth(queue).await?;
        self.dead_letters(queue, max, wait, Mode::Replay).await
    }

    fn dead_letter_queue(&self, queue: &str) -> Result<String, Error> {
        Ok(self
            .inner
            .topology
            .queue(queue)
            .ok_or_else(|| Error::UnknownQueue {
                queue: queue.to_owned(),
            })?
            .dead_letter_queue())
    }

    /// Consumes up to `max` messages of `queue`'s dead-letter queue and deals with each as
    /// `mode` says. Waits up to `wait` for the first, then until none arrives for
    /// [`DEAD_LETTER_GAP`].
    async fn dead_letters(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        mode: Mode,
    ) -> Result<Vec<DeadLetter>, Error> {
        let dlq = self.dead_letter_queue(queue)?;
        let prefetch = u16::try_from(max.max(1)).unwrap_or(u16::MAX);
        let Consumer {
            mut deliveries,
            close,
            ..
        } = self.inner.backend.consume(&dlq, prefetch).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        // Peeked ones are held unsettled until the end, so they are not delivered again.
        let mut held = Vec::new();
        let result = async {
            while out.len() < max {
                let until = if out.is_empty() {
                    deadline
                } else {
                    deadline.min(tokio::time::Instant::now() + DEAD_LETTER_GAP)
                };
                let Ok(Some(delivery)) = tokio::time::timeout_at(until, deliveries.next()).await
                else {
                    break;
                };
                out.push(DeadLetter::from_message(delivery.message.clone()));
                match mode {
                    Mode::Take => delivery.acker.ack().await?,
                    Mode::Peek => held.push(delivery),
                    Mode::Replay => {
                        let mut m = delivery.message.clone();
                        for h in DEAD_HEADERS {
                            m.headers.remove(*h);
                        }
                        self.inner.backend.publish("", queue, &m).await?;
                        delivery.acker.ack().await?;
                    }
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        for d in held {
            d.acker.reject(true).await?;
        }
        drop(deliveries);
        close.await;
        result.map(|()| out)
    }
}

/// What [`Hub::dead_letters`] does with each one.
#[derive(Clone, Copy)]
enum Mode {
    /// Returned and removed.
    Take,
    /// Returned and put back.
    Peek,
    /// Sent back to the service queue, then removed.
    Replay,
}
