//! Subscriptions: consume a queue, run handlers, settle every delivery exactly one way.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{FutureExt as _, StreamExt as _};
use tidewell_core::RawEnvelope;
use tidewell_core::{Shutdown, propagation};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::backend::{Backend, Consumer};
use crate::dead_letter::DeadLetterReason;
use crate::dedup::{Claim, Dedup};
use crate::handler::{Outcome, Router};
use crate::message::{self, Acker, Delivery, Message};
use crate::metrics::HubMetrics;
use crate::retry::{RetryPolicy, wait_queue};

/// How long a delivery whose id is being processed elsewhere waits before going back to the queue.
const IN_PROGRESS_PAUSE: Duration = Duration::from_millis(200);

/// What to consume and how: queue, handler name, prefetch, concurrency, de-duplication.
///
/// ```
/// use tidewell_event_hub::{MemoryDedup, Subscription};
/// let sub = Subscription::new("payments.events")
///     .name("send-receipt")
///     .prefetch(64)
///     .concurrency(16)
///     .dedup(MemoryDedup::new(100_000));
/// ```
#[derive(Clone)]
pub struct Subscription {
    pub(crate) queue: String,
    pub(crate) name: String,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    pub(crate) dedup: Option<Arc<dyn Dedup>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("queue", &self.queue)
            .field("name", &self.name)
            .field("prefetch", &self.prefetch)
            .field("concurrency", &self.concurrency)
            .field("dedup", &self.dedup.is_some())
            .finish()
    }
}

impl Subscription {
    /// Consumes `queue` (a [`ServiceQueue`](crate::ServiceQueue) name such as `payments.events`)
    /// with prefetch 32 and 8 concurrent handler runs.
    pub fn new(queue: impl Into<String>) -> Self {
        let queue = queue.into();
        Self {
            name: queue.clone(),
            queue,
            prefetch: 32,
            concurrency: 8,
            dedup: None,
        }
    }

    /// The handler's name, recorded on dead letters and spans (default: the queue name).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many unacknowledged deliveries the broker may send ahead (at least 1).
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// How many handler runs at once (at least 1). With prefetch 1 and concurrency 1, events are
    /// handled in queue order.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Runs the handler at most once per message id that `guard` has seen processed.
    #[must_use]
    pub fn dedup(mut self, guard: impl Dedup) -> Self {
        self.dedup = Some(Arc::new(guard));
        self
    }

    /// Like [`Subscription::dedup`], sharing a guard already behind an `Arc`.
    #[must_use]
    pub fn dedup_shared(mut self, guard: Arc<dyn Dedup>) -> Self {
        self.dedup = Some(guard);
        self
    }
}

/// What a subscription's workers use of their hub: its backend and settings, shared.
pub(crate) struct WorkerContext {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) dead_letter_exchange: String,
    pub(crate) max_message_size: usize,
    pub(crate) metrics: HubMetrics,
    pub(crate) reconnect: tidewell_core::Backoff,
}

pub(crate) struct Worker {
    pub(crate) hub: WorkerContext,
    pub(crate) sub: Subscription,
    pub(crate) router: Router,
    pub(crate) retry: RetryPolicy,
    pub(crate) rng: Mutex<fastrand::Rng>,
}

impl Worker {
    /// Consumes until `stop`, consuming again whenever the consumer ends (connection loss).
    pub(crate) async fn run(self: Arc<Self>, first: Consumer, stop: Shutdown) {
        self.hub.metrics.prepare_queue(&self.sub.queue);
        let mut next = Some(first);
        let mut backoff = self.hub.reconnect.schedule();
        loop {
            let consumer = match next.take() {
                Some(c) => c,
                None => {
                    let attempt = tokio::select! {
                        () = stop.triggered() => return,
                        r = self.hub.backend.consume(&self.sub.queue, self.sub.prefetch) => r,
                    };
                    match attempt {
                        Ok(c) => {
                            tracing::info!(queue = %self.sub.queue, handler = %self.sub.name, "consuming again");
                            backoff.reset();
                            c
                        }
                        Err(error) => {
                            let delay = backoff.next_delay().unwrap_or(self.hub.reconnect.max());
                            tracing::warn!(%error, queue = %self.sub.queue, ?delay, "cannot consume; retrying");
                            tokio::select! {
                                () = stop.triggered() => return,
                                () = tokio::time::sleep(delay) => continue,
                            }
                        }
                    }
                }
            };
            let consuming = self.hub.metrics.consumer(&self.sub.queue);
            consuming.inc();
            let stopped = self.consume(consumer, &stop).await;
            consuming.dec();
            if stopped {
                return;
            }
        }
    }

    /// Runs one consumer until it ends (returns false) or `stop` fires (returns true). Either way
    /// every handler already started finishes and settles its delivery before the consumer closes.
    async fn consume(self: &Arc<Self>, consumer: Consumer, stop: &Shutdown) -> bool {
        let Consumer {
            mut deliveries,
            lost,
            close,
        } = consumer;
        let permits = Arc::new(Semaphore::new(self.sub.concurrency));
        let mut running = JoinSet::new();
        let stopped = loop {
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                () = stop.triggered() => break true,
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break true,
                },
            };
            let delivery = tokio::select! {
                () = stop.triggered() => break true,
                () = lost.cancelled() => None,
                d = deliveries.next() => d,
            };
            let Some(delivery) = delivery else {
                tracing::warn!(queue = %self.sub.queue, "consumer ended; will consume again");
                break false;
            };
            let worker = Arc::clone(self);
            running.spawn(async move {
                worker.process(delivery).await;
                drop(permit);
            });
        };
        while running.join_next().await.is_some() {}
        drop(deliveries);
        close.await;
        stopped
    }

    // Long: the one place a delivery is settled (size check, decode, de-dup claim, handler under a
    // span, then ack / retry / dead-letter); keeping it in one function keeps "settled once" visible.
    async fn process(&self, delivery: Delivery) {
        let Delivery {
            message,
            acker,
            redelivered,
        } = delivery;
        let attempt = message.attempt();
        let limit = self.hub.max_message_size;
        if message.body.len() > limit {
            let error = format!("{} bytes exceed the {limit}-byte limit", message.body.len());
            return self
                .dead_letter(message, acker.as_ref(), DeadLetterReason::TooLarge, &error)
                .await;
        }
        let raw = match RawEnvelope::parse(&message.body) {
            Ok(raw) => raw,
            Err(e) => {
                return self
                    .dead_letter(
                        message,
                        acker.as_ref(),
                        DeadLetterReason::Poison,
                        &e.to_string(),
                    )
                    .await;
            }
        };
        let span = tracing::info_span!(
            "event.handle",
            queue = %self.sub.queue,
            handler = %self.sub.name,
            event_type = %raw.event_type(),
            message_id = %raw.id(),
            correlation_id = %raw.correlation_id(),
            attempt,
            redelivered,
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = %self.sub.queue,
        );
        // The publisher's context rides in the AMQP headers; an envelope that came some other
        // way may still carry one in its body.
        match (message.text(message::TRACEPARENT), raw.traceparent()) {
            (None, Some(tp)) => {
                let carrier = std::collections::HashMap::from([(
                    message::TRACEPARENT.to_owned(),
                    tp.to_owned(),
                )]);
                propagation::set_span_parent(&span, &carrier);
            }
            _ => propagation::set_span_parent(&span, &message),
        }
        let id = raw.id().to_string();
        if let Some(guard) = &self.sub.dedup {
            match guard.claim(&id).await {
                Ok(Claim::Claimed) => {}
                Ok(Claim::Done) => {
                    tracing::debug!(parent: &span, "duplicate delivery acknowledged without running the handler");
                    return self.settle_ack(acker.as_ref(), "duplicate").await;
                }
                Ok(Claim::InProgress) => {
                    tokio::time::sleep(IN_PROGRESS_PAUSE).await;
                    return self.requeue(acker.as_ref()).await;
                }
                Err(error) => {
                    tracing::warn!(parent: &span, %error, "de-duplication store failed; requeueing");
                    return self.requeue(acker.as_ref()).await;
                }
            }
        }

        let started = Instant::now();
        let outcome = AssertUnwindSafe(self.router.dispatch(raw))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        self.hub
            .metrics
            .handler_seconds
            .with_label_values(&[&self.sub.queue])
            .observe(started.elapsed().as_secs_f64());

        let failure = match outcome {
            Ok(Outcome::Handled(Ok(()))) => {
                if let Some(guard) = &self.sub.dedup
                    && let Err(error) = guard.complete(&id).await
                {
                    tracing::warn!(parent: &span, %error, "cannot record the event as processed");
                }
                return self.settle_ack(acker.as_ref(), "acked").await;
            }
            Ok(Outcome::Undecodable(reason)) => Err((DeadLetterReason::Poison, reason)),
            Ok(Outcome::Handled(Err(e))) if !e.is_retryable() => {
                Err((DeadLetterReason::Permanent, e.message().to_owned()))
            }
            Ok(Outcome::Handled(Err(e))) => Ok(e.message().to_owned()),
            Err(panic) => Ok(format!("handler panicked: {}", panic_text(panic.as_ref()))),
        };
        if let Some(guard) = &self.sub.dedup
            && let Err(error) = guard.release(&id).await
        {
            tracing::warn!(parent: &span, %error, "cannot release the de-duplication claim");
        }
        let (Err((_, error)) | Ok(error)) = &failure;
        propagation::record_error(&span, error);
        match failure {
            Err((reason, error)) => {
                tracing::warn!(parent: &span, reason = reason.as_str(), %error, "dead-lettering event");
                self.dead_letter(message, acker.as_ref(), reason, &error)
                    .await;
            }
            Ok(error) if attempt >= self.retry.max_attempts() => {
                tracing::warn!(parent: &span, %error, "retries exhausted; dead-lettering event");
                self.dead_letter(
                    message,
                    acker.as_ref(),
                    DeadLetterReason::RetriesExhausted,
                    &error,
                )
                .await;
            }
            Ok(error) => {
                let delay = {
                    let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                    self.retry.wait_before(attempt + 1, &mut rng)
                };
                tracing::info!(parent: &span, %error, ?delay, "handler failed; retrying later");
                self.retry_later(message, acker.as_ref(), attempt + 1, delay, &error)
                    .await;
            }
        }
    }

    async fn retry_later(
        &self,
        mut message: Message,
        acker: &dyn Acker,
        next_attempt: u32,
        delay: Duration,
        error: &str,
    ) {
        message.set_int(message::ATTEMPT, i64::from(next_attempt));
        message.set_text(message::LAST_ERROR, error);
        let wait = wait_queue(&self.sub.queue, delay);
        match self.hub.backend.publish("", &wait, &message).await {
            Ok(()) => self.settle_ack(acker, "retried").await,
            Err(error) => {
                tracing::warn!(%error, queue = %self.sub.queue, "cannot schedule the retry; requeueing");
                self.requeue(acker).await;
            }
        }
    }

    async fn dead_letter(
        &self,
        mut message: Message,
        acker: &dyn Acker,
        reason: DeadLetterReason,
        error: &str,
    ) {
        message.set_text(message::DEAD_REASON, reason.as_str());
        message.set_text(message::HANDLER, &self.sub.name);
        message.set_text(message::QUEUE, &self.sub.queue);
        message.set_text(message::LAST_ERROR, error);
        let attempts = i64::from(message.attempt());
        message.set_int(message::ATTEMPT, attempts);
        self.hub
            .metrics
            .dead_lettered
            .with_label_values(&[self.sub.queue.as_str(), reason.as_str()])
            .inc();
        match self
            .hub
            .backend
            .publish(&self.hub.dead_letter_exchange, &self.sub.queue, &message)
            .await
        {
            Ok(()) => self.settle_ack(acker, "dead_lettered").await,
            Err(error) => {
                // The queue's own dead-letter arguments still move it to the DLQ (without our
                // metadata); nothing is dropped.
                tracing::warn!(%error, queue = %self.sub.queue, "cannot publish the dead letter; rejecting to the queue's DLX");
                if let Err(error) = acker.reject(false).await {
                    tracing::warn!(%error, "reject failed; the broker will redeliver");
                }
                self.count("dead_lettered");
            }
        }
    }

    async fn settle_ack(&self, acker: &dyn Acker, outcome: &str) {
        match acker.ack().await {
            Ok(()) => self.count(outcome),
            Err(error) => {
                // The channel is gone; the broker redelivers the message (at least once).
                tracing::warn!(%error, queue = %self.sub.queue, "ack failed; the broker will redeliver");
            }
        }
    }

    async fn requeue(&self, acker: &dyn Acker) {
        if let Err(error) = acker.reject(true).await {
            tracing::warn!(%error, queue = %self.sub.queue, "requeue failed; the broker will redeliver");
        }
        self.count("requeued");
    }

    fn count(&self, outcome: &str) {
        self.hub
            .metrics
            .consumed
            .with_label_values(&[self.sub.queue.as_str(), outcome])
            .inc();
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
