//! Topology as code: the exchanges, queues and bindings a hub declares.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Error;
use crate::retry::{RetryPolicy, wait_queue};
use crate::topic::is_valid_pattern;

/// The kind of a durable queue.
///
/// A hub declares quorum queues unless told otherwise ([`HubBuilder::queue_type`](crate::HubBuilder::queue_type),
/// `TIDEWELL_EVENT_HUB_QUEUE_TYPE`, or [`ServiceQueue::queue_type`] for one queue): they are
/// replicated over the nodes of a RabbitMQ cluster and keep their messages when one node stops.
/// On a quorum queue, dead-lettering (a retry's wait ending, an event given up) is at least
/// once, so an event never vanishes between two queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueType {
    /// A classic queue: held by one node, lost to consumers while that node is down.
    Classic,
    /// A replicated quorum queue (the default).
    #[default]
    Quorum,
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quorum" => Ok(Self::Quorum),
            "classic" => Ok(Self::Classic),
            other => Err(format!("{other:?} is not a queue type")),
        }
    }
}

/// The queue of one consuming service: `<service>.events`, its bindings, its dead-letter queue
/// `<service>.events.dlq` and its retry wait queues.
///
/// Every node of a service that shares one queue is a competing consumer: each event goes to
/// one of them. A node that must see every event (a gateway feeding its own WebSocket clients)
/// takes a queue of its own, [`ServiceQueue::per_node`], which the broker deletes once the node
/// has been gone for its expiry.
///
/// ```
/// use std::time::Duration;
/// use tidewell_event_hub::{QueueType, ServiceQueue};
/// let q = ServiceQueue::new("admin").bind("#").queue_type(QueueType::Classic);
/// assert_eq!(q.name(), "admin.events");
/// assert_eq!(q.dead_letter_queue(), "admin.events.dlq");
/// let mine = ServiceQueue::per_node("gateway", "node-7", Duration::from_secs(600));
/// assert_eq!(mine.name(), "gateway.node-7.events");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceQueue {
    service: String,
    patterns: Vec<String>,
    /// `None`: the hub's default.
    queue_type: Option<QueueType>,
    retry: RetryPolicy,
    /// `x-expires`: the broker deletes the queues once unused for this long.
    expires: Option<Duration>,
}

impl ServiceQueue {
    /// The queue of `service`, with no bindings yet.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            patterns: Vec::new(),
            queue_type: None,
            retry: RetryPolicy::default(),
            expires: None,
        }
    }

    /// The queue of one node of `service`, `<service>.<node>.events`, deleted by the broker with
    /// its dead-letter and wait queues once no node has used it for `expires` (a node that
    /// restarts within that time finds what was published meanwhile).
    pub fn per_node(service: impl Into<String>, node: &str, expires: Duration) -> Self {
        Self::new(format!("{}.{node}", service.into())).expires(expires)
    }

    /// The broker deletes the queue, its dead-letter queue and its wait queues once they have had
    /// no consumer and no use for `after` (RabbitMQ's `x-expires`; at least one second).
    #[must_use]
    pub fn expires(mut self, after: Duration) -> Self {
        self.expires = Some(after.max(Duration::from_secs(1)));
        self
    }

    /// Receives events whose type matches `pattern` (`*` one word, `#` zero or more).
    #[must_use]
    pub fn bind(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Quorum or classic for this queue, its dead-letter queue and its retry wait queues
    /// (default: the hub's, quorum unless set).
    #[must_use]
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = Some(queue_type);
        self
    }

    /// How failed handlers are retried (default: [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// `<service>.events`.
    pub fn name(&self) -> String {
        format!("{}.events", self.service)
    }

    /// `<service>.events.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.name())
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }
}

/// The exchanges, queues and bindings of a hub. Declaring is idempotent; a conflict with what
/// exists is an [`Error::TopologyMismatch`] naming what differs.
///
/// Defaults: topic exchange `events`, dead-letter exchange `events.dlx` (direct).
///
/// ```
/// use tidewell_event_hub::{ServiceQueue, Topology};
/// let topology = Topology::new()
///     .service(ServiceQueue::new("payments").bind("payments.#").bind("auth.user.#"))
///     .service(ServiceQueue::new("admin").bind("#"));
/// assert_eq!(topology.exchange(), "events");
/// assert_eq!(topology.dead_letter_exchange(), "events.dlx");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    exchange: String,
    services: Vec<ServiceQueue>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

/// One thing to declare, in the order it must be declared.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Declaration {
    Exchange {
        name: String,
        kind: ExchangeKind,
    },
    Queue {
        name: String,
        args: BTreeMap<&'static str, ArgValue>,
    },
    Binding {
        queue: String,
        exchange: String,
        pattern: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExchangeKind {
    Topic,
    Direct,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ArgValue {
    Text(String),
    Int(i64),
}

impl std::fmt::Display for ArgValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(s) => write!(f, "{s:?}"),
            Self::Int(i) => write!(f, "{i}"),
        }
    }
}

/// Queue arguments understood by both backends.
pub(crate) const ARG_QUEUE_TYPE: &str = "x-queue-type";
pub(crate) const ARG_DLX: &str = "x-dead-letter-exchange";
pub(crate) const ARG_DLRK: &str = "x-dead-letter-routing-key";
pub(crate) const ARG_TTL: &str = "x-message-ttl";
pub(crate) const ARG_EXPIRES: &str = "x-expires";
/// Quorum queues only: dead letters stay on their queue until the target queue confirms them.
const ARG_DL_STRATEGY: &str = "x-dead-letter-strategy";
/// Required by at-least-once dead-lettering.
const ARG_OVERFLOW: &str = "x-overflow";

impl Topology {
    /// The default topology: exchange `events`, no service queues.
    pub fn new() -> Self {
        Self::with_exchange("events")
    }

    /// A topology whose main exchange is `exchange` (dead-letter exchange `<exchange>.dlx`).
    pub fn with_exchange(exchange: impl Into<String>) -> Self {
        Self {
            exchange: exchange.into(),
            services: Vec::new(),
        }
    }

    /// Adds a service queue.
    #[must_use]
    pub fn service(mut self, queue: ServiceQueue) -> Self {
        self.services.push(queue);
        self
    }

    /// The topic exchange events are published to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The direct exchange dead letters go through.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    /// The service queue named `name` (`<service>.events`).
    pub fn queue(&self, name: &str) -> Option<&ServiceQueue> {
        self.services.iter().find(|q| q.name() == name)
    }

    /// Every queue the topology declares, in declaration order: each service queue, its
    /// dead-letter queue and its retry wait queues (to list, watch or delete them).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidewell_core::Backoff;
    /// use tidewell_event_hub::{RetryPolicy, ServiceQueue, Topology};
    /// let backoff = Backoff::builder().min(Duration::from_secs(1)).max(Duration::from_secs(2)).build()?;
    /// let retry = RetryPolicy::new(3, backoff);
    /// let topology = Topology::new().service(ServiceQueue::new("mail").bind("#").retry(retry));
    /// assert_eq!(
    ///     topology.queue_names(),
    ///     ["mail.events", "mail.events.dlq", "mail.events.wait.1000ms", "mail.events.wait.2000ms"]
    /// );
    /// # Ok::<(), tidewell_core::Error>(())
    /// ```
    pub fn queue_names(&self) -> Vec<String> {
        self.declarations(QueueType::Classic)
            .into_iter()
            .filter_map(|d| match d {
                Declaration::Queue { name, .. } => Some(name),
                Declaration::Exchange { .. } | Declaration::Binding { .. } => None,
            })
            .collect()
    }

    /// Checks names and patterns.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let name_ok =
            |n: &str| !n.is_empty() && n.len() <= 200 && n.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok(&self.exchange) {
            return Err(Error::InvalidTopology(format!(
                "exchange name {:?} must be 1 to 200 visible ASCII characters",
                self.exchange
            )));
        }
        for q in &self.services {
            if !name_ok(&q.service) {
                return Err(Error::InvalidTopology(format!(
                    "service name {:?} must be 1 to 200 visible ASCII characters",
                    q.service
                )));
            }
            if let Some(bad) = q.patterns.iter().find(|p| !is_valid_pattern(p)) {
                return Err(Error::InvalidTopology(format!(
                    "binding pattern {bad:?} of {} is invalid: use dot-separated words, with * or # as whole words",
                    q.name()
                )));
            }
        }
        Ok(())
    }

    /// Everything to declare, exchanges first; queues without a type of their own are
    /// `default_type`.
    pub(crate) fn declarations(&self, default_type: QueueType) -> Vec<Declaration> {
        let dlx = self.dead_letter_exchange();
        let mut out = vec![
            Declaration::Exchange {
                name: self.exchange.clone(),
                kind: ExchangeKind::Topic,
            },
            Declaration::Exchange {
                name: dlx.clone(),
                kind: ExchangeKind::Direct,
            },
        ];
        for q in &self.services {
            let name = q.name();
            let quorum = q.queue_type.unwrap_or(default_type) == QueueType::Quorum;
            let mut base = BTreeMap::new();
            if quorum {
                base.insert(ARG_QUEUE_TYPE, ArgValue::Text("quorum".into()));
            }
            if let Some(expires) = q.expires {
                let ms = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX);
                base.insert(ARG_EXPIRES, ArgValue::Int(ms));
            }
            // A queue that dead-letters: on a quorum queue, at least once.
            let dead_letters = |mut args: BTreeMap<&'static str, ArgValue>, x: &str, key: &str| {
                args.insert(ARG_DLX, ArgValue::Text(x.to_owned()));
                args.insert(ARG_DLRK, ArgValue::Text(key.to_owned()));
                if quorum {
                    args.insert(ARG_DL_STRATEGY, ArgValue::Text("at-least-once".into()));
                    args.insert(ARG_OVERFLOW, ArgValue::Text("reject-publish".into()));
                }
                args
            };
            out.push(Declaration::Queue {
                name: name.clone(),
                args: dead_letters(base.clone(), &dlx, &name),
            });
            for pattern in &q.patterns {
                out.push(Declaration::Binding {
                    queue: name.clone(),
                    exchange: self.exchange.clone(),
                    pattern: pattern.clone(),
                });
            }
            out.push(Declaration::Queue {
                name: q.dead_letter_queue(),
                args: base.clone(),
            });
            out.push(Declaration::Binding {
                queue: q.dead_letter_queue(),
                exchange: dlx.clone(),
                pattern: name.clone(),
            });
            for delay in q.retry.ladder() {
                let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                let mut args = dead_letters(base.clone(), "", &name);
                args.insert(ARG_TTL, ArgValue::Int(ttl));
                out.push(Declaration::Queue {
                    name: wait_queue(&name, delay),
                    args,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_cover_queue_dlq_and_wait_queues() {
        let t = Topology::new().service(
            ServiceQueue::new("payments")
                .bind("payments.#")
                .retry(RetryPolicy::none()),
        );
        let d = t.declarations(QueueType::Classic);
        assert!(d.contains(&Declaration::Binding {
            queue: "payments.events".into(),
            exchange: "events".into(),
            pattern: "payments.#".into()
        }));
        assert!(d.contains(&Declaration::Binding {
            queue: "payments.events.dlq".into(),
            exchange: "events.dlx".into(),
            pattern: "payments.events".into()
        }));
        let queues = d
            .iter()
            .filter(|d| matches!(d, Declaration::Queue { .. }))
            .count();
        assert_eq!(queues, 2, "no wait queues without retries");
        let with_retry = Topology::new().service(ServiceQueue::new("p").bind("#"));
        let queues = with_retry
            .declarations(QueueType::Quorum)
            .into_iter()
            .filter(|d| matches!(d, Declaration::Queue { .. }))
            .count();
        assert_eq!(queues, 2 + 7);
    }

    #[test]
    fn quorum_by_default_with_at_least_once_dead_lettering_and_expiry_on_every_queue() {
        let node = ServiceQueue::per_node("gateway", "n1", Duration::from_secs(600)).bind("#");
        let classic = ServiceQueue::new("audit").queue_type(QueueType::Classic);
        let d = Topology::new()
            .service(node)
            .service(classic)
            .declarations(QueueType::Quorum);
        let queues: Vec<_> = d
            .iter()
            .filter_map(|d| match d {
                Declaration::Queue { name, args } => Some((name.as_str(), args)),
                _ => None,
            })
            .collect();
        let quorum = ArgValue::Text("quorum".into());
        for (name, args) in queues.iter().filter(|(n, _)| n.starts_with("gateway.n1.")) {
            assert_eq!(args.get(ARG_QUEUE_TYPE), Some(&quorum), "{name}");
            assert_eq!(
                args.get(ARG_EXPIRES),
                Some(&ArgValue::Int(600_000)),
                "{name}"
            );
            let dead_letters = args.contains_key(ARG_DLX);
            assert_eq!(
                args.get(ARG_DL_STRATEGY).is_some(),
                dead_letters,
                "{name}: at-least-once wherever it dead-letters"
            );
        }
        assert_eq!(
            queues
                .iter()
                .filter(|(n, _)| n.starts_with("gateway.n1."))
                .count(),
            9,
            "queue, dead-letter queue and 7 wait queues"
        );
        for (name, args) in queues.iter().filter(|(n, _)| n.starts_with("audit.")) {
            assert!(!args.contains_key(ARG_QUEUE_TYPE), "{name} stays classic");
            assert!(!args.contains_key(ARG_DL_STRATEGY), "{name}");
            assert!(!args.contains_key(ARG_EXPIRES), "{name}");
        }
        assert_eq!("Classic".parse::<QueueType>(), Ok(QueueType::Classic));
        assert!("mirrored".parse::<QueueType>().is_err());
    }

    #[test]
    fn invalid_patterns_and_names_are_refused() {
        let bad = Topology::new().service(ServiceQueue::new("p").bind("a..b"));
        assert!(matches!(bad.validate(), Err(Error::InvalidTopology(m)) if m.contains("a..b")));
        assert!(Topology::with_exchange("").validate().is_err());
        assert!(
            Topology::new()
                .service(ServiceQueue::new("has space"))
                .validate()
                .is_err()
        );
    }
}
