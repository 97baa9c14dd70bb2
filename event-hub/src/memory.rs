//! The in-memory backend: a small broker in the process with RabbitMQ's observable semantics
//! (topic and direct routing, mandatory publishing, prefetch, ack and reject, dead-letter and TTL
//! queue arguments). The embedded default for single-process runs and tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::backend::{Backend, BoxFuture, Consumer};
use crate::message::{Acker, Delivery, Message};
use crate::topic;
use crate::topology::{ARG_DLRK, ARG_DLX, ARG_TTL, ArgValue, Declaration, ExchangeKind};

/// The broker state; one lock, never held across an await.
#[derive(Default)]
struct State {
    exchanges: HashMap<String, ExchangeKind>,
    /// exchange -> (pattern, queue)
    bindings: HashMap<String, Vec<(String, String)>>,
    queues: HashMap<String, Queue>,
    next_seq: u64,
    next_consumer: u64,
}

struct Queue {
    args: BTreeMap<&'static str, ArgValue>,
    ready: VecDeque<Queued>,
    consumers: Vec<Subscriber>,
    next_rr: usize,
}

#[derive(Clone)]
struct Queued {
    seq: u64,
    routing_key: String,
    message: Message,
    redelivered: bool,
}

struct Subscriber {
    id: u64,
    prefetch: u16,
    unacked: HashMap<u64, Queued>,
    tx: mpsc::UnboundedSender<Delivery>,
}

/// The in-memory broker. Cheap to clone; clones share the broker.
#[derive(Clone)]
pub(crate) struct MemoryBackend {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    timers: TaskTracker,
    stop: CancellationToken,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared::fresh()),
        }
    }
}

/// Named brokers (`memory://<name>`), shared by every hub of the process that names them.
static NAMED: tidewell_core::SharedByName<Shared> = tidewell_core::SharedByName::new();

impl MemoryBackend {
    /// The broker for `memory://<name>`: a private one for an empty name, else the process-wide
    /// broker of that name (created on first use, gone when its last hub closes).
    pub(crate) fn named(name: &str) -> Self {
        if name.is_empty() {
            return Self::default();
        }
        Self {
            shared: NAMED.get_or_create(name, Shared::fresh),
        }
    }
}

impl Shared {
    fn fresh() -> Self {
        Self {
            state: Mutex::new(State::default()),
            timers: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryBackend {
    fn declare_sync(&self, declarations: &[Declaration]) -> Result<(), Error> {
        let mut st = self.shared.lock();
        for d in declarations {
            match d {
                Declaration::Exchange { name, kind } => match st.exchanges.get(name) {
                    Some(existing) if existing != kind => {
                        return Err(Error::TopologyMismatch {
                            what: format!("exchange {name:?}"),
                            detail: format!("it is {existing:?}, declared as {kind:?}"),
                        });
                    }
                    Some(_) => {}
                    None => {
                        st.exchanges.insert(name.clone(), *kind);
                    }
                },
                Declaration::Queue { name, args } => match st.queues.get(name) {
                    Some(existing) => {
                        if let Some(detail) = args_difference(&existing.args, args) {
                            return Err(Error::TopologyMismatch {
                                what: format!("queue {name:?}"),
                                detail,
                            });
                        }
                    }
                    None => {
                        st.queues.insert(
                            name.clone(),
                            Queue {
                                args: args.clone(),
                                ready: VecDeque::new(),
                                consumers: Vec::new(),
                                next_rr: 0,
                            },
                        );
                    }
                },
                Declaration::Binding {
                    queue,
                    exchange,
                    pattern,
                } => {
                    if !st.exchanges.contains_key(exchange) {
                        return Err(not_found("exchange", exchange));
                    }
                    if !st.queues.contains_key(queue) {
                        return Err(not_found("queue", queue));
                    }
                    let bindings = st.bindings.entry(exchange.clone()).or_default();
                    if !bindings.iter().any(|(p, q)| p == pattern && q == queue) {
                        bindings.push((pattern.clone(), queue.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Routes and enqueues; returns whether any queue took the message.
    fn route(
        &self,
        st: &mut State,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<bool, Error> {
        let targets: Vec<String> = if exchange.is_empty() {
            st.queues
                .contains_key(routing_key)
                .then(|| routing_key.to_owned())
                .into_iter()
                .collect()
        } else {
            let kind = *st
                .exchanges
                .get(exchange)
                .ok_or_else(|| not_found("exchange", exchange))?;
            let mut targets: Vec<String> = st
                .bindings
                .get(exchange)
                .into_iter()
                .flatten()
                .filter(|(pattern, _)| match kind {
                    ExchangeKind::Topic => topic::matches(pattern, routing_key),
                    ExchangeKind::Direct => pattern == routing_key,
                })
                .map(|(_, q)| q.clone())
                .collect();
            targets.sort_unstable();
            targets.dedup();
            targets
        };
        for queue in &targets {
            self.enqueue(st, queue, routing_key, message.clone());
        }
        Ok(!targets.is_empty())
    }

    fn enqueue(&self, st: &mut State, queue: &str, routing_key: &str, message: Message) {
        st.next_seq += 1;
        let seq = st.next_seq;
        let Some(q) = st.queues.get_mut(queue) else {
            return;
        };
        q.ready.push_back(Queued {
            seq,
            routing_key: routing_key.to_owned(),
            message,
            redelivered: false,
        });
        if let Some(ArgValue::Int(ttl)) = q.args.get(ARG_TTL) {
            let ttl = Duration::from_millis(u64::try_from(*ttl).unwrap_or(0));
            let broker = Arc::downgrade(&self.shared);
            let queue = queue.to_owned();
            let stop = self.shared.stop.clone();
            self.shared.timers.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(ttl) => expire(&broker, &queue, seq),
                    () = stop.cancelled() => {}
                }
            });
        }
        dispatch(&Arc::downgrade(&self.shared), st, queue);
    }

    /// Moves a message to its queue's dead-letter exchange, if it has one (else drops it, as
    /// RabbitMQ does).
    fn dead_letter(&self, st: &mut State, queue: &str, item: Queued) {
        let Some(q) = st.queues.get(queue) else {
            return;
        };
        let Some(ArgValue::Text(dlx)) = q.args.get(ARG_DLX).cloned() else {
            tracing::debug!(queue, "message dropped: queue has no dead-letter exchange");
            return;
        };
        let key = match q.args.get(ARG_DLRK) {
            Some(ArgValue::Text(k)) => k.clone(),
            _ => item.routing_key.clone(),
        };
        match self.route(st, &dlx, &key, &item.message) {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                tracing::warn!(
                    queue,
                    dlx,
                    key,
                    "dead-lettered message was unroutable and dropped"
                );
            }
        }
    }
}

fn expire(broker: &Weak<Shared>, queue: &str, seq: u64) {
    let Some(shared) = broker.upgrade() else {
        return;
    };
    let backend = MemoryBackend { shared };
    let mut st = backend.shared.lock();
    let item = st.queues.get_mut(queue).and_then(|q| {
        q.ready
            .iter()
            .position(|m| m.seq == seq)
            .and_then(|i| q.ready.remove(i))
    });
    if let Some(item) = item {
        backend.dead_letter(&mut st, queue, item);
    }
}

/// Hands ready messages to consumers with room under their prefetch, round robin.
fn dispatch(broker: &Weak<Shared>, st: &mut State, queue: &str) {
    let Some(q) = st.queues.get_mut(queue) else {
        return;
    };
    q.consumers.retain(|c| !c.tx.is_closed());
    while !q.ready.is_empty() && !q.consumers.is_empty() {
        let n = q.consumers.len();
        let Some(idx) = (0..n).map(|i| (q.next_rr + i) % n).find(|&i| {
            q.consumers
                .get(i)
                .is_some_and(|c| c.prefetch == 0 || c.unacked.len() < usize::from(c.prefetch))
        }) else {
            break;
        };
        let Some(item) = q.ready.pop_front() else {
            break;
        };
        let Some(consumer) = q.consumers.get_mut(idx) else {
            break;
        };
        q.next_rr = (idx + 1) % n;
        let tag = item.seq;
        let delivery = Delivery {
            message: item.message.clone(),
            redelivered: item.redelivered,
            acker: Box::new(MemoryAcker {
                broker: broker.clone(),
                queue: queue.to_owned(),
                consumer: consumer.id,
                tag,
            }),
        };
        consumer.unacked.insert(tag, item);
        if let Err(mpsc::error::SendError(_)) = consumer.tx.send(delivery) {
            // The receiver is gone between retain and send: put everything back.
            let back: Vec<Queued> = consumer.unacked.drain().map(|(_, m)| m).collect();
            for mut m in back {
                m.redelivered = true;
                q.ready.push_front(m);
            }
            q.consumers.retain(|c| !c.tx.is_closed());
        }
    }
}

fn not_found(what: &str, name: &str) -> Error {
    Error::broker(
        "declare",
        format!("NOT_FOUND - no {what} {name:?}; declare it in the Topology first"),
    )
}

fn args_difference(
    existing: &BTreeMap<&'static str, ArgValue>,
    declared: &BTreeMap<&'static str, ArgValue>,
) -> Option<String> {
    let keys: std::collections::BTreeSet<&&str> = existing.keys().chain(declared.keys()).collect();
    keys.into_iter().find_map(|k| {
        let (a, b) = (existing.get(*k), declared.get(*k));
        (a != b).then(|| {
            let show =
                |v: Option<&ArgValue>| v.map_or_else(|| "none".to_owned(), ToString::to_string);
            format!(
                "inequivalent arg '{k}': declared {} but current is {}",
                show(b),
                show(a)
            )
        })
    })
}

struct MemoryAcker {
    broker: Weak<Shared>,
    queue: String,
    consumer: u64,
    tag: u64,
}

impl MemoryAcker {
    fn settle(&self, outcome: Settle) -> Result<(), Error> {
        let Some(shared) = self.broker.upgrade() else {
            return Err(Error::broker("ack", "the in-memory broker is closed"));
        };
        let backend = MemoryBackend { shared };
        let mut st = backend.shared.lock();
        let item = st
            .queues
            .get_mut(&self.queue)
            .and_then(|q| q.consumers.iter_mut().find(|c| c.id == self.consumer))
            .and_then(|c| c.unacked.remove(&self.tag));
        let Some(mut item) = item else {
            return Err(Error::broker(
                "ack",
                "unknown delivery: its consumer was closed and the message requeued",
            ));
        };
        match outcome {
            Settle::Ack => {}
            Settle::Requeue => {
                item.redelivered = true;
                if let Some(q) = st.queues.get_mut(&self.queue) {
                    q.ready.push_front(item);
                }
            }
            Settle::DeadLetter => backend.dead_letter(&mut st, &self.queue, item),
        }
        dispatch(&self.broker, &mut st, &self.queue);
        Ok(())
    }
}

enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}

impl Acker for MemoryAcker {
    fn ack(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.settle(Settle::Ack) })
    }

    fn reject(&self, requeue: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.settle(if requeue {
                Settle::Requeue
            } else {
                Settle::DeadLetter
            })
        })
    }
}

impl Backend for MemoryBackend {
    fn declare<'a>(&'a self, declarations: &'a [Declaration]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { self.declare_sync(declarations) })
    }

    fn publish<'a>(
        &'a self,
        exchange: &'a str,
        routing_key: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut st = self.shared.lock();
            if self.route(&mut st, exchange, routing_key, message)? {
                Ok(())
            } else {
                Err(Error::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                })
            }
        })
    }

    fn consume<'a>(
        &'a self,
        queue: &'a str,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Consumer, Error>> {
        Box::pin(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let id = {
                let mut st = self.shared.lock();
                st.next_consumer += 1;
                let id = st.next_consumer;
                let q = st
                    .queues
                    .get_mut(queue)
                    .ok_or_else(|| not_found("queue", queue))?;
                q.consumers.push(Subscriber {
                    id,
                    prefetch,
                    unacked: HashMap::new(),
                    tx,
                });
                dispatch(&Arc::downgrade(&self.shared), &mut st, queue);
                id
            };
            let deliveries = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|d| (d, rx))
            })
            .boxed();
            let close_broker = Arc::downgrade(&self.shared);
            let queue = queue.to_owned();
            let close = Box::pin(async move { cancel_consumer(&close_broker, &queue, id) });
            Ok(Consumer {
                deliveries,
                lost: CancellationToken::new(),
                close,
            })
        })
    }

    fn connected(&self) -> bool {
        true
    }

    fn queue_depth<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(async move {
            let st = self.shared.lock();
            let q = st
                .queues
                .get(queue)
                .ok_or_else(|| not_found("queue", queue))?;
            Ok(q.ready.len() as u64)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shared.stop.cancel();
            self.shared.timers.close();
            self.shared.timers.wait().await;
        })
    }
}

/// Removes a consumer and requeues its unacknowledged messages, as a closed channel does.
fn cancel_consumer(broker: &Weak<Shared>, queue: &str, id: u64) {
    let Some(shared) = broker.upgrade() else {
        return;
    };
    let mut st = shared.lock();
    if let Some(q) = st.queues.get_mut(queue)
        && let Some(pos) = q.consumers.iter().position(|c| c.id == id)
    {
        let consumer = q.consumers.remove(pos);
        let mut back: Vec<Queued> = consumer.unacked.into_values().collect();
        back.sort_by_key(|m| std::cmp::Reverse(m.seq));
        for mut m in back {
            m.redelivered = true;
            q.ready.push_front(m);
        }
    }
    dispatch(broker, &mut st, queue);
}
