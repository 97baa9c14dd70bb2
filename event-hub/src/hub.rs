//! The hub: one backend, one topology, typed publishing and subscriptions.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tidewell_core::config::Env;
use tidewell_core::{Backoff, Envelope, Event, Shutdown, propagation};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::Error;
use crate::backend::Backend;
use crate::handler::{HandlerError, Router};
use crate::memory::MemoryBackend;
use crate::message::{self, Message};
use crate::metrics::HubMetrics;
use crate::subscriber::{Subscription, Worker, WorkerContext};
use crate::topology::{QueueType, Topology};

/// Typed, versioned events over RabbitMQ or in memory.
///
/// Cheap to clone; clones share the connection, subscriptions and metrics.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_event_hub::Error> {
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use tidewell_core::{Envelope, Event};
/// use tidewell_event_hub::{HandlerError, Hub, ServiceQueue, Subscription, Topology};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct PaymentCreated { payment_id: u64 }
/// impl Event for PaymentCreated {
///     const TYPE: &'static str = "payments.payment.created";
///     const VERSION: u16 = 1;
/// }
///
/// let hub = Hub::builder("payments")
///     .url("memory://") // or "amqp://guest:guest@127.0.0.1:5672/%2f"
///     .topology(Topology::new().service(ServiceQueue::new("mailer").bind("payments.#")))
///     .connect()
///     .await?;
///
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// hub.subscribe(Subscription::new("mailer.events"), move |event: Envelope<PaymentCreated>| {
///     let tx = tx.clone();
///     async move {
///         tx.send(event.payload().payment_id).map_err(HandlerError::permanent)?;
///         Ok(())
///     }
/// })
/// .await?;
///
/// hub.publish(&Envelope::new("payments", PaymentCreated { payment_id: 42 })).await?;
/// assert_eq!(rx.recv().await, Some(42));
/// hub.shutdown(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubState>,
    /// The `source` this handle stamps (the builder's, or [`Hub::with_source`]'s).
    source: Arc<str>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("source", &self.source)
            .field("backend", &self.inner.backend_name)
            .field("exchange", &self.inner.topology.exchange())
            .finish_non_exhaustive()
    }
}

/// What every clone of a [`Hub`] shares: its backend, topology and subscriptions.
pub(crate) struct HubState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) backend_name: &'static str,
    pub(crate) topology: Topology,
    pub(crate) max_message_size: usize,
    pub(crate) metrics: HubMetrics,
    pub(crate) reconnect: Backoff,
    pub(crate) subscriptions: Shutdown,
    pub(crate) closed: CancellationToken,
}

/// Configuration read from the environment by [`HubBuilder::from_env`].
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `TIDEWELL_EVENT_HUB_URL` | `amqp://…`, `amqps://…`, `memory://` (private) or `memory://<name>` (shared in the process); for a RabbitMQ cluster, its nodes' URLs separated by commas | `memory://` |
/// | `TIDEWELL_EVENT_HUB_QUEUE_TYPE` | `quorum` or `classic`: the kind of the service queues declared (their dead-letter and wait queues included) | `quorum` |
/// | `TIDEWELL_EVENT_HUB_PUBLISH_TIMEOUT` | how long a publish may wait for a confirm, across reconnects | `30s` |
/// | `TIDEWELL_EVENT_HUB_MAX_MESSAGE_SIZE` | largest encoded event, published or consumed | `1MiB` |
/// | `TIDEWELL_EVENT_HUB_TLS_CA_FILE` | PEM CA certificates trusted for `amqps://`, besides the system's roots | unset |
/// | `TIDEWELL_EVENT_HUB_TLS_CERT_FILE` | PEM client certificate, for brokers that require mutual TLS | unset |
/// | `TIDEWELL_EVENT_HUB_TLS_KEY_FILE` | PEM private key of the client certificate | unset |
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HubConfig {
    /// The backend URL.
    pub url: String,
    /// How long a publish may wait for its confirm, across reconnects.
    pub publish_timeout: Duration,
    /// The largest encoded event accepted.
    pub max_message_size: usize,
    /// TLS for an `amqps://` URL: a CA file, a client certificate.
    pub tls: tidewell_core::tls::ClientTls,
    /// The kind of the queues declared when a [`ServiceQueue`](crate::ServiceQueue) does not say.
    pub queue_type: QueueType,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            url: "memory://".into(),
            publish_timeout: Duration::from_secs(30),
            max_message_size: 1 << 20,
            tls: tidewell_core::tls::ClientTls::default(),
            queue_type: QueueType::Quorum,
        }
    }
}

impl HubConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for a
    /// program's `--help`, see `tidewell_core::cli`).
    pub const VARS: &[tidewell_core::cli::Var] = &[
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_URL",
            "memory://",
            "the event hub: amqp://user:pass@host:5672/vhost (a cluster: several, comma-separated) or memory://",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_QUEUE_TYPE",
            "quorum",
            "quorum or classic: the kind of service, dead-letter and retry queues declared",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_PUBLISH_TIMEOUT",
            "30s",
            "how long a publish waits for the broker's confirm",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_MAX_MESSAGE_SIZE",
            "1MiB",
            "the largest encoded event accepted",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_TLS_CA_FILE",
            "",
            "PEM CA certificates trusted for amqps://, besides the system's roots",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_TLS_CERT_FILE",
            "",
            "PEM client certificate, for mutual TLS",
        ),
        tidewell_core::cli::Var::new(
            "TIDEWELL_EVENT_HUB_TLS_KEY_FILE",
            "",
            "PEM private key of the client certificate",
        ),
    ];

    /// Reads the variables in the table above from the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_source(&Env::process())
    }

    /// Reads the variables from `env`.
    pub fn from_source(env: &Env) -> Result<Self, Error> {
        let d = Self::default();
        Ok(Self {
            url: env
                .string("TIDEWELL_EVENT_HUB_URL")
                .map_err(Error::Config)?
                .unwrap_or(d.url),
            publish_timeout: env
                .duration("TIDEWELL_EVENT_HUB_PUBLISH_TIMEOUT")
                .map_err(Error::Config)?
                .unwrap_or(d.publish_timeout),
            max_message_size: env
                .byte_size("TIDEWELL_EVENT_HUB_MAX_MESSAGE_SIZE")
                .map_err(Error::Config)?
                .map_or(d.max_message_size, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            tls: tidewell_core::tls::ClientTls::from_source(env, "TIDEWELL_EVENT_HUB")
                .map_err(Error::Config)?,
            queue_type: env
                .parse("TIDEWELL_EVENT_HUB_QUEUE_TYPE", "quorum or classic")
                .map_err(Error::Config)?
                .unwrap_or(d.queue_type),
        })
    }
}

/// Builds a [`Hub`].
#[derive(Debug)]
pub struct HubBuilder {
    source: String,
    config: HubConfig,
    topology: Topology,
    reconnect: Backoff,
    metrics: HubMetrics,
    connection_name: Option<String>,
}

impl HubBuilder {
    /// A builder for events emitted by `source` (the service name in every envelope's `source`).
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            config: HubConfig::default(),
            topology: Topology::new(),
            reconnect: Backoff::builder()
                .min(Duration::from_millis(100))
                .max(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            metrics: HubMetrics::new(),
            connection_name: None,
        }
    }

    /// A builder configured from the `TIDEWELL_EVENT_HUB_*` variables (see [`HubConfig`]).
    pub fn from_env(source: impl Into<String>) -> Result<Self, Error> {
        Ok(Self::new(source).config(HubConfig::from_env()?))
    }

    /// Uses `config`.
    #[must_use]
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// The backend: `amqp://…` / `amqps://…` for RabbitMQ; `memory://` for a private in-process
    /// broker, `memory://<name>` for one shared by every hub of the process that names it.
    ///
    /// For a RabbitMQ cluster, give its nodes' URLs separated by commas
    /// (`amqp://u:p@10.0.0.1:5672,amqp://u:p@10.0.0.2:5672`): the hub connects to the first
    /// that answers and, when that connection fails, to the next.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// The exchanges and queues to declare (default: exchange `events`, no queues).
    #[must_use]
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// TLS for an `amqps://` URL: a CA file (trusted besides the system's roots), a client
    /// certificate and key for mutual TLS.
    #[must_use]
    pub fn tls(mut self, tls: tidewell_core::tls::ClientTls) -> Self {
        self.config.tls = tls;
        self
    }

    /// The kind of the queues declared for a [`ServiceQueue`](crate::ServiceQueue) that does not
    /// set its own (default quorum: replicated over a RabbitMQ cluster's nodes). The in-memory
    /// backend has one kind only and ignores it.
    #[must_use]
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.config.queue_type = queue_type;
        self
    }

    /// How long a publish may wait for its confirm, across reconnects (default 30 s).
    #[must_use]
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = timeout;
        self
    }

    /// The largest encoded event accepted, published or consumed (default 1 MiB).
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// The backoff between reconnect attempts (default 100 ms to 5 s).
    #[must_use]
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.reconnect = backoff;
        self
    }

    /// The name the broker shows for this hub's connection (default: the source service), so an
    /// operator can tell connections apart in `rabbitmqctl list_connections`.
    #[must_use]
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// Records into `metrics` (e.g. ones already registered with a registry).
    #[must_use]
    pub fn metrics(mut self, metrics: HubMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Connects and declares the topology. Fails fast if the broker is unreachable; after that,
    /// the hub reconnects by itself.
    pub async fn connect(self) -> Result<Hub, Error> {
        self.topology.validate()?;
        let declarations = self.topology.declarations(self.config.queue_type);
        let scheme = self.config.url.split_once("://").map_or("", |(s, _)| s);
        let (backend, backend_name): (Arc<dyn Backend>, &'static str) = match scheme {
            "memory" => {
                let name = self.config.url.split_once("://").map_or("", |(_, n)| n);
                let backend = MemoryBackend::named(name.trim_end_matches('/'));
                backend.declare(&declarations).await?;
                (Arc::new(backend), "memory")
            }
            #[cfg(feature = "amqp")]
            "amqp" | "amqps" => (
                Arc::new(
                    crate::amqp::AmqpBackend::connect(
                        &self.config.url,
                        self.connection_name.as_deref().unwrap_or(&self.source),
                        declarations,
                        self.config.publish_timeout,
                        self.reconnect.clone(),
                        &self.config.tls,
                    )
                    .await?,
                ),
                "amqp",
            ),
            other => {
                return Err(Error::UnsupportedUrl {
                    scheme: other.to_owned(),
                });
            }
        };
        Ok(Hub {
            source: Arc::from(self.source.as_str()),
            inner: Arc::new(HubState {
                backend,
                backend_name,
                topology: self.topology,
                max_message_size: self.config.max_message_size,
                metrics: self.metrics,
                reconnect: self.reconnect,
                subscriptions: Shutdown::new(),
                closed: CancellationToken::new(),
            }),
        })
    }
}

impl Hub {
    /// A builder for events emitted by `source`.
    pub fn builder(source: impl Into<String>) -> HubBuilder {
        HubBuilder::new(source)
    }

    /// An in-memory hub with `topology`: the embedded default for single-process runs and tests.
    pub async fn memory(source: impl Into<String>, topology: Topology) -> Result<Self, Error> {
        HubBuilder::new(source)
            .url("memory://")
            .topology(topology)
            .connect()
            .await
    }

    /// The topology this hub declared.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The hub's metrics.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// The service name this hub stamps as `source` on envelopes it creates.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A handle on the same connection, topology and subscriptions that stamps `source` on the
    /// envelopes it creates: for several services sharing one process and one connection, each
    /// emitting events under its own name.
    ///
    /// ```
    /// use tidewell_event_hub::{Hub, Topology};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tidewell_event_hub::Error> {
    /// let hub = Hub::memory("platform", Topology::new()).await?;
    /// let payments = hub.with_source("payments");
    /// assert_eq!(payments.source(), "payments");
    /// assert_eq!(hub.source(), "platform");
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_source(&self, source: impl Into<String>) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            source: Arc::from(source.into()),
        }
    }

    /// A new envelope from this hub's service.
    pub fn envelope<E: Event>(&self, payload: E) -> Envelope<E> {
        Envelope::new(self.source.to_string(), payload)
    }

    /// Publishes `envelope` to the topology's exchange with its event type as routing key, and
    /// resolves once the broker has confirmed it.
    ///
    /// Persistent and mandatory: an event no queue is bound for fails with
    /// [`Error::Unroutable`]. Across a connection loss it waits (up to the publish timeout) and
    /// republishes with the same message id. Many concurrent publishes are pipelined on one
    /// channel.
    pub async fn publish<T: Serialize>(&self, envelope: &Envelope<T>) -> Result<(), Error> {
        if self.inner.closed.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let mut message = self.message_of(envelope)?;
        let span = tracing::info_span!(
            "event.publish",
            event_type = %envelope.event_type(),
            message_id = %envelope.id(),
            correlation_id = %envelope.correlation_id(),
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "send",
            messaging.destination.name = %self.inner.topology.exchange(),
        );
        // An envelope that carries its writer's context (an outbox row, published later by the
        // relay) is published in the writer's trace; the consumer's span becomes a child of this
        // one (both no-ops without an OpenTelemetry layer, which leaves the envelope's
        // traceparent in the headers).
        if envelope.traceparent().is_some() {
            propagation::set_span_parent(&span, &message);
        }
        propagation::inject_span(&span, &mut message);
        let started = Instant::now();
        let result = self
            .inner
            .backend
            .publish(
                self.inner.topology.exchange(),
                envelope.event_type(),
                &message,
            )
            .instrument(span.clone())
            .await;
        let m = &self.inner.metrics;
        match &result {
            Ok(()) => {
                m.confirmed.inc();
                m.publish_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(Error::Unroutable { .. }) => m.returned.inc(),
            Err(_) => m.failed.inc(),
        }
        if let Err(error) = &result {
            propagation::record_error(&span, error);
        }
        result
    }

    /// Publishes every envelope with all of them in flight at once; the results are in order.
    pub async fn publish_batch<T: Serialize + Sync>(
        &self,
        envelopes: &[Envelope<T>],
    ) -> Vec<Result<(), Error>> {
        futures_util::future::join_all(envelopes.iter().map(|e| self.publish(e))).await
    }

    fn message_of<T: Serialize>(&self, envelope: &Envelope<T>) -> Result<Message, Error> {
        let body = serde_json::to_vec(envelope).map_err(|source| tidewell_core::Error::Encode {
            event_type: envelope.event_type().to_owned(),
            source,
        })?;
        let limit = self.inner.max_message_size;
        if body.len() > limit {
            return Err(Error::TooLarge {
                size: body.len(),
                limit,
            });
        }
        let mut message = Message {
            body: body.into(),
            message_id: envelope.id().to_string(),
            event_type: envelope.event_type().to_owned(),
            correlation_id: Some(envelope.correlation_id().to_string()),
            app_id: Some(envelope.source().to_owned()),
            timestamp: u64::try_from(envelope.occurred_at().unix_timestamp()).ok(),
            headers: Default::default(),
        };
        if let Some(tp) = envelope.traceparent() {
            message.set_text(message::TRACEPARENT, tp);
        }
        Ok(message)
    }

    /// Runs `handler` for every `E` on `queue`: acknowledged after `Ok`, retried after a
    /// retryable error (per the queue's [`RetryPolicy`](crate::RetryPolicy)), dead-lettered after a
    /// permanent one or when retries run out. Events of another type, or that cannot be decoded,
    /// are dead-lettered as poison.
    ///
    /// Resolves once the consumer is running; fails if the queue is not in the topology.
    pub async fn subscribe<E, F, Fut>(
        &self,
        subscription: Subscription,
        handler: F,
    ) -> Result<(), Error>
    where
        E: Event + Send + 'static,
        F: Fn(Envelope<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.subscribe_router(subscription, Router::new().route(handler))
            .await
    }

    /// Like [`Hub::subscribe`] for a queue that carries several event types.
    pub async fn subscribe_router(
        &self,
        subscription: Subscription,
        router: Router,
    ) -> Result<(), Error> {
        if self.inner.closed.is_cancelled() || self.inner.subscriptions.is_triggered() {
            return Err(Error::ShuttingDown);
        }
        let retry = self
            .inner
            .topology
            .queue(&subscription.queue)
            .ok_or_else(|| Error::UnknownQueue {
                queue: subscription.queue.clone(),
            })?
            .retry_policy()
            .clone();
        let first = self
            .inner
            .backend
            .consume(&subscription.queue, subscription.prefetch)
            .await?;
        let worker = Arc::new(Worker {
            hub: WorkerContext {
                backend: Arc::clone(&self.inner.backend),
                dead_letter_exchange: self.inner.topology.dead_letter_exchange(),
                max_message_size: self.inner.max_message_size,
                metrics: self.inner.metrics.clone(),
                reconnect: self.inner.reconnect.clone(),
            },
            sub: subscription,
            router,
            retry,
            rng: Mutex::new(fastrand::Rng::new()),
        });
        let stop = self.inner.subscriptions.clone();
        self.inner.subscriptions.spawn(worker.run(first, stop));
        Ok(())
    }

    /// Stops consuming, lets in-flight handlers finish and settle (up to `grace`), waits for
    /// outstanding confirms, and closes the connection. Publishing fails with
    /// [`Error::ShuttingDown`] afterwards.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), Error> {
        let drained = self.inner.subscriptions.drain(grace).await;
        self.inner.closed.cancel();
        self.inner.backend.close().await;
        drained.map_err(|e| match e {
            tidewell_core::Error::DrainTimeout { remaining, .. } => {
                Error::ShutdownTimeout { remaining, grace }
            }
            other => Error::Envelope(other),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("hub.rs"), HubConfig::VARS);
    }
    use super::*;

    #[test]
    fn config_from_env() {
        let env = Env::from_pairs([
            ("TIDEWELL_EVENT_HUB_URL", "amqp://127.0.0.1:5672/%2f"),
            ("TIDEWELL_EVENT_HUB_PUBLISH_TIMEOUT", "5s"),
            ("TIDEWELL_EVENT_HUB_MAX_MESSAGE_SIZE", "64KiB"),
        ]);
        let c = HubConfig::from_source(&env).unwrap();
        assert_eq!(c.publish_timeout, Duration::from_secs(5));
        assert_eq!(c.max_message_size, 65_536);
        let bad = Env::from_pairs([("TIDEWELL_EVENT_HUB_PUBLISH_TIMEOUT", "later")]);
        let err = HubConfig::from_source(&bad).unwrap_err().to_string();
        assert!(err.contains("TIDEWELL_EVENT_HUB_PUBLISH_TIMEOUT"), "{err}");
        assert_eq!(
            HubConfig::from_source(&Env::from_pairs::<&str, &str>([])).unwrap(),
            HubConfig::default()
        );
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused() {
        let err = Hub::builder("s")
            .url("kafka://x")
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedUrl { ref scheme } if scheme == "kafka"),
            "{err}"
        );
    }
}
