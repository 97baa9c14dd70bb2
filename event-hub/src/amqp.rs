//! The RabbitMQ backend (lapin): one supervised connection that heals.
//!
//! A supervisor task owns the connection. When the connection fails (broker restart, connections
//! closed by an operator, network loss) it marks the hub disconnected, reconnects with backoff,
//! re-declares the topology and opens a fresh confirm channel; consumers notice their stream end
//! and consume again on the new connection (one consumer per subscription, never two). lapin's
//! own auto-recovery stays off (see amqp-rs/lapin#450); this is the recovery the fault tests prove.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    DefaultConnectionBuilder,
};
use tidewell_core::Backoff;
use tidewell_core::tls::ClientTls;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::amqp_endpoint::{connect_error, host_of, split_urls, tls_config};
use crate::backend::{Backend, BoxFuture, Consumer};
use crate::message::{Acker, Delivery, HeaderValue, Message};
use crate::topology::{ArgValue, Declaration, ExchangeKind};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one broker round trip (open a channel, declare, consume) may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the supervisor checks the connection status besides listening for its errors.
const STATUS_POLL: Duration = Duration::from_millis(250);

pub(crate) struct AmqpBackend {
    inner: Arc<Supervised>,
}

/// The backend's shared state: its settings, the live connection the supervisor keeps, and the
/// tasks it owns.
struct Supervised {
    /// The URLs of the cluster's nodes (one for a single broker), tried in turn.
    urls: Vec<String>,
    /// The index in `urls` of the node connected last: a reconnect starts with the next one.
    current: AtomicUsize,
    /// The CA and client certificate for an `amqps://` URL, read once at start.
    tls: OwnedTLSConfig,
    name: String,
    declarations: Vec<Declaration>,
    publish_timeout: Duration,
    reconnect: Backoff,
    live: watch::Sender<Option<Arc<Live>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// One established connection with its confirm channel.
struct Live {
    generation: u64,
    connection: Connection,
    publish: Channel,
    /// Fired by anyone who sees this connection fail; the supervisor then replaces it.
    broken: CancellationToken,
}

impl AmqpBackend {
    /// Connects (failing fast if the broker is unreachable), declares the topology, and starts the
    /// supervisor that keeps the connection alive.
    pub(crate) async fn connect(
        url: &str,
        name: &str,
        declarations: Vec<Declaration>,
        publish_timeout: Duration,
        reconnect: Backoff,
        tls: &ClientTls,
    ) -> Result<Self, Error> {
        let (live, _) = watch::channel(None);
        let urls = split_urls(url)?;
        let mut tls_configs = urls.iter().map(|u| tls_config(u, tls));
        let tls = tls_configs
            .next()
            .unwrap_or_else(|| Ok(OwnedTLSConfig::default()))?;
        tls_configs.try_for_each(|t| t.map(drop))?;
        let inner = Arc::new(Supervised {
            tls,
            urls,
            current: AtomicUsize::new(0),
            name: name.to_owned(),
            declarations,
            publish_timeout,
            reconnect,
            live,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let first = inner.establish(1).await?;
        inner.live.send_replace(Some(Arc::new(first)));
        let supervisor = Arc::clone(&inner);
        inner
            .tasks
            .spawn(async move { supervisor.supervise().await });
        Ok(Self { inner })
    }
}

impl Supervised {
    /// Connects to the first node that answers, starting after the one connected last (the
    /// first in the list at start), so a node that went away is tried last.
    async fn establish(&self, generation: u64) -> Result<Live, Error> {
        let n = self.urls.len();
        let first = if generation == 1 {
            0
        } else {
            self.current.load(Ordering::Relaxed) + 1
        };
        let mut last_error = None;
        for i in 0..n {
            let index = (first + i) % n;
            let Some(url) = self.urls.get(index) else {
                continue;
            };
            match self.establish_on(url, generation).await {
                Ok(live) => {
                    self.current.store(index, Ordering::Relaxed);
                    if n > 1 {
                        tracing::info!(node = %host_of(url), generation, "connected to RabbitMQ");
                    }
                    return Ok(live);
                }
                Err(error) => {
                    if n > 1 {
                        tracing::warn!(node = %host_of(url), %error, "RabbitMQ node unavailable; trying the next");
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or(Error::UnsupportedUrl {
            scheme: String::new(),
        }))
    }

    async fn establish_on(&self, url: &str, generation: u64) -> Result<Live, Error> {
        let properties = ConnectionProperties::default().with_connection_name(LongString::from(
            format!("tidewell:{}#{generation}", self.name),
        ));
        let connect = async {
            DefaultConnectionBuilder::new()?
                .with_uri_str(url.to_owned())
                .with_properties(properties)
                .with_tls_config(self.tls.clone())
                .connect()
                .await
        };
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_error(url, e)),
            Err(_) => {
                return Err(connect_error(
                    url,
                    format!("no answer within {CONNECT_TIMEOUT:?}"),
                ));
            }
        };
        declare(&connection, &self.declarations).await?;
        let publish = rpc("open channel", connection.create_channel()).await?;
        rpc(
            "enable publisher confirms",
            publish.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        Ok(Live {
            generation,
            connection,
            publish,
            broken: CancellationToken::new(),
        })
    }

    async fn supervise(self: Arc<Self>) {
        loop {
            let Some(live) = self.live.borrow().clone() else {
                return;
            };
            let mut events = live.connection.events_listener();
            let mut poll = tokio::time::interval(STATUS_POLL);
            loop {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = live.broken.cancelled() => break,
                    event = events.next() => match event {
                        Some(lapin::Event::Error(error)) => {
                            tracing::warn!(%error, generation = live.generation, "RabbitMQ connection failed");
                            break;
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = poll.tick() => if !live.connection.status().connected() || !live.publish.status().connected() {
                        break;
                    },
                }
            }
            self.live.send_replace(None);
            live.broken.cancel();
            // ok to ignore: the connection is being replaced; closing is a courtesy to the broker
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                live.connection.close(320, "tidewell: reconnecting".into()),
            )
            .await;

            let mut schedule = self.reconnect.schedule();
            let next = live.generation + 1;
            loop {
                match self.establish(next).await {
                    Ok(fresh) => {
                        tracing::info!(generation = next, "RabbitMQ connection recovered");
                        self.live.send_replace(Some(Arc::new(fresh)));
                        break;
                    }
                    Err(error) => {
                        let delay = schedule.next_delay().unwrap_or(self.reconnect.max());
                        tracing::warn!(%error, ?delay, "RabbitMQ reconnect failed; retrying");
                        tokio::select! {
                            () = self.stop.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
    }

    /// The live connection of at least `min_generation`, waiting until `deadline` (or forever).
    async fn wait_live(&self, min_generation: u64, deadline: Option<Instant>) -> Option<Arc<Live>> {
        // Fast path, taken by nearly every publish: connected now.
        if let Some(live) = self.live.borrow().as_ref()
            && live.generation >= min_generation
            && !self.stop.is_cancelled()
        {
            return Some(Arc::clone(live));
        }
        let mut rx = self.live.subscribe();
        let wait = rx.wait_for(|l| l.as_ref().is_some_and(|l| l.generation >= min_generation));
        let found = tokio::select! {
            r = wait => r.ok().and_then(|l| l.clone()),
            () = self.stop.cancelled() => None,
            () = sleep_until(deadline) => None,
        };
        found
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs one broker round trip with [`RPC_TIMEOUT`]: a connection that died without telling lapin
/// must not hang the caller.
async fn rpc<T>(
    operation: &'static str,
    call: impl Future<Output = lapin::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::broker(operation, e)),
        Err(_) => Err(Error::broker(
            operation,
            format!("no answer within {RPC_TIMEOUT:?}"),
        )),
    }
}

/// Declares everything on one channel, within a bound of [`RPC_TIMEOUT`] per declaration.
async fn declare(connection: &Connection, declarations: &[Declaration]) -> Result<(), Error> {
    let bound =
        RPC_TIMEOUT.saturating_mul(u32::try_from(declarations.len()).unwrap_or(u32::MAX).max(1));
    match tokio::time::timeout(bound, declare_unbounded(connection, declarations)).await {
        Ok(result) => result,
        Err(_) => Err(Error::broker(
            "declare topology",
            format!("no answer within {bound:?}"),
        )),
    }
}

async fn declare_unbounded(
    connection: &Connection,
    declarations: &[Declaration],
) -> Result<(), Error> {
    let channel = rpc("open channel", connection.create_channel()).await?;
    for d in declarations {
        let result = match d {
            Declaration::Exchange { name, kind } => channel
                .exchange_declare(
                    name.as_str().into(),
                    match kind {
                        ExchangeKind::Topic => lapin::ExchangeKind::Topic,
                        ExchangeKind::Direct => lapin::ExchangeKind::Direct,
                    },
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| (format!("exchange {name:?}"), e)),
            Declaration::Queue { name, args } => {
                let mut table = FieldTable::default();
                for (k, v) in args {
                    table.insert(
                        ShortString::from(*k),
                        match v {
                            ArgValue::Text(s) => {
                                AMQPValue::LongString(LongString::from(s.as_str()))
                            }
                            ArgValue::Int(i) => AMQPValue::LongLongInt(*i),
                        },
                    );
                }
                channel
                    .queue_declare(
                        name.as_str().into(),
                        QueueDeclareOptions {
                            durable: true,
                            ..QueueDeclareOptions::default()
                        },
                        table,
                    )
                    .await
                    .map(drop)
                    .map_err(|e| (format!("queue {name:?}"), e))
            }
            Declaration::Binding {
                queue,
                exchange,
                pattern,
            } => channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| (format!("binding {queue:?} <- {exchange:?} {pattern:?}"), e)),
        };
        if let Err((what, e)) = result {
            let text = e.to_string();
            return Err(if text.contains("PRECONDITION_FAILED") {
                Error::TopologyMismatch { what, detail: text }
            } else {
                Error::broker("declare topology", format!("{what}: {text}"))
            });
        }
    }
    // ok to ignore: declarations are done; a failed close only leaks a channel until reconnect
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

fn properties(message: &Message) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &message.headers {
        headers.insert(
            ShortString::from(k.as_str()),
            match v {
                HeaderValue::Text(s) => AMQPValue::LongString(LongString::from(s.as_str())),
                HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
            },
        );
    }
    let mut p = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message.message_id.as_str().into())
        .with_type(message.event_type.as_str().into())
        .with_headers(headers);
    if let Some(c) = &message.correlation_id {
        p = p.with_correlation_id(c.as_str().into());
    }
    if let Some(a) = &message.app_id {
        p = p.with_app_id(a.as_str().into());
    }
    if let Some(t) = message.timestamp {
        p = p.with_timestamp(t);
    }
    p
}

fn message_of(delivery: &lapin::message::Delivery) -> Message {
    let p = &delivery.properties;
    let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    let mut headers = std::collections::BTreeMap::new();
    if let Some(table) = p.headers() {
        for (k, v) in table.inner() {
            let value = match v {
                AMQPValue::LongString(s) => Some(HeaderValue::Text(
                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                )),
                AMQPValue::ShortString(s) => Some(HeaderValue::Text(s.as_str().to_owned())),
                AMQPValue::LongLongInt(i) => Some(HeaderValue::Int(*i)),
                AMQPValue::LongInt(i) => Some(HeaderValue::Int(i64::from(*i))),
                AMQPValue::LongUInt(i) => Some(HeaderValue::Int(i64::from(*i))),
                AMQPValue::ShortInt(i) => Some(HeaderValue::Int(i64::from(*i))),
                AMQPValue::ShortUInt(i) => Some(HeaderValue::Int(i64::from(*i))),
                AMQPValue::ShortShortInt(i) => Some(HeaderValue::Int(i64::from(*i))),
                AMQPValue::ShortShortUInt(i) => Some(HeaderValue::Int(i64::from(*i))),
                _ => None,
            };
            if let Some(value) = value {
                headers.insert(k.as_str().to_owned(), value);
            }
        }
    }
    Message {
        body: bytes::Bytes::copy_from_slice(&delivery.data),
        message_id: text(p.message_id()).unwrap_or_default(),
        event_type: text(p.kind()).unwrap_or_default(),
        correlation_id: text(p.correlation_id()),
        app_id: text(p.app_id()),
        timestamp: *p.timestamp(),
        headers,
    }
}

struct AmqpAcker(lapin::Acker);

impl Acker for AmqpAcker {
    fn ack(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            rpc("ack", self.0.ack(BasicAckOptions::default()))
                .await
                .map(drop)
        })
    }

    fn reject(&self, requeue: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            rpc("reject", self.0.reject(BasicRejectOptions { requeue }))
                .await
                .map(drop)
        })
    }
}

impl Backend for AmqpBackend {
    fn declare<'a>(&'a self, declarations: &'a [Declaration]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let live = self
                .inner
                .wait_live(0, Some(Instant::now() + self.inner.publish_timeout))
                .await
                .ok_or(Error::Disconnected {
                    waited: self.inner.publish_timeout,
                })?;
            declare(&live.connection, declarations).await
        })
    }

    fn publish<'a>(
        &'a self,
        exchange: &'a str,
        routing_key: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let started = Instant::now();
            let deadline = started + self.inner.publish_timeout;
            let properties = properties(message);
            let mut min_generation = 0;
            let mut nacks = self.inner.reconnect.schedule();
            let mut nacked = 0_u32;
            loop {
                let Some(live) = self.inner.wait_live(min_generation, Some(deadline)).await else {
                    if self.inner.stop.is_cancelled() {
                        return Err(Error::ShuttingDown);
                    }
                    return Err(Error::Disconnected {
                        waited: started.elapsed(),
                    });
                };
                let attempt = async {
                    live.publish
                        .basic_publish(
                            exchange.into(),
                            routing_key.into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            },
                            &message.body,
                            properties.clone(),
                        )
                        .await?
                        .await
                };
                match tokio::time::timeout_at(deadline, attempt).await {
                    Err(_) => {
                        return Err(Error::Disconnected {
                            waited: started.elapsed(),
                        });
                    }
                    Ok(Ok(Confirmation::Ack(None))) => return Ok(()),
                    Ok(Ok(Confirmation::Ack(Some(_)))) => {
                        return Err(Error::Unroutable {
                            exchange: exchange.to_owned(),
                            routing_key: routing_key.to_owned(),
                        });
                    }
                    Ok(Ok(Confirmation::Nack(_))) => {
                        // The broker could not store it; try again (same message id) after a pause.
                        // Nacked twice: the channel may keep a stale view of the queue (RabbitMQ
                        // 3.10 keeps nacking every publish of a channel that first published to
                        // a quorum queue while its leader's node was going down, after a new
                        // leader was elected), so the retry goes out on a new connection.
                        nacked += 1;
                        let delay = nacks.next_delay().unwrap_or(self.inner.reconnect.max());
                        let renew = nacked >= 2;
                        tracing::warn!(
                            routing_key,
                            ?delay,
                            new_connection = renew,
                            "publish nacked by the broker; retrying"
                        );
                        tokio::time::sleep(
                            delay.min(deadline.saturating_duration_since(Instant::now())),
                        )
                        .await;
                        if renew {
                            live.broken.cancel();
                            min_generation = live.generation + 1;
                        }
                    }
                    Ok(Ok(Confirmation::NotRequested)) => {
                        return Err(Error::broker(
                            "publish",
                            "the channel has no publisher confirms",
                        ));
                    }
                    Ok(Err(error)) => {
                        // The connection or channel failed before the confirm: republish the same
                        // message on the next connection.
                        tracing::debug!(%error, routing_key, "publish interrupted; republishing after recovery");
                        live.broken.cancel();
                        min_generation = live.generation + 1;
                    }
                }
            }
        })
    }

    fn consume<'a>(
        &'a self,
        queue: &'a str,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Consumer, Error>> {
        Box::pin(async move {
            let live = self
                .inner
                .wait_live(0, None)
                .await
                .ok_or(Error::ShuttingDown)?;
            let channel = rpc("open channel", live.connection.create_channel()).await?;
            rpc(
                "set prefetch",
                channel.basic_qos(prefetch, BasicQosOptions::default()),
            )
            .await?;
            let tag = format!("tidewell.{queue}.{}", tidewell_core::uuid::Uuid::now_v7());
            let consumer = rpc(
                "consume",
                channel.basic_consume(
                    queue.into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
            let deliveries = consumer
                .take_while(|d| std::future::ready(d.is_ok()))
                .filter_map(|d| std::future::ready(d.ok()))
                .map(|d| Delivery {
                    message: message_of(&d),
                    redelivered: d.redelivered,
                    acker: Box::new(AmqpAcker(d.acker)),
                })
                .boxed();
            let close = Box::pin(async move {
                // ok to ignore: closing requeues unacked deliveries; a dead channel already did
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    channel.close(200, "tidewell: consumer closed".into()),
                )
                .await;
            });
            Ok(Consumer {
                deliveries,
                lost: live.broken.clone(),
                close,
            })
        })
    }

    fn connected(&self) -> bool {
        self.inner
            .live
            .borrow()
            .as_ref()
            .is_some_and(|l| l.connection.status().connected() && l.publish.status().connected())
    }

    fn queue_depth<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(async move {
            let live = self
                .inner
                .wait_live(0, Some(Instant::now() + RPC_TIMEOUT))
                .await
                .ok_or(Error::Disconnected {
                    waited: RPC_TIMEOUT,
                })?;
            let channel = rpc("open channel", live.connection.create_channel()).await?;
            let declared = rpc(
                "count a queue's messages",
                channel.queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await;
            // ok to ignore: a failed passive declare has closed the channel already
            let _ = channel.close(200, "tidewell: counted".into()).await;
            Ok(u64::from(declared?.message_count()))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.stop.cancel();
            self.inner.tasks.close();
            self.inner.tasks.wait().await;
            if let Some(live) = self.inner.live.send_replace(None) {
                // ok to ignore: outstanding publishes awaited their own confirms
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), live.publish.wait_for_confirms())
                        .await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    live.connection.close(200, "tidewell: shutdown".into()),
                )
                .await;
            }
        })
    }
}
