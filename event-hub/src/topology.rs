//! Topology as code: the exchanges, queues and bindings a hub declares.

use std::collections::BTreeMap;

use crate::Error;
use crate::retry::{RetryPolicy, wait_queue};
use crate::topic::is_valid_pattern;

/// The kind of a durable queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueType {
    /// A classic queue (the default).
    #[default]
    Classic,
    /// A replicated quorum queue.
    Quorum,
}

/// The queue of one consuming service: `<service>.events`, its bindings, its dead-letter queue
/// `<service>.events.dlq` and its retry wait queues.
///
/// ```
/// use tidewell_event_hub::{QueueType, ServiceQueue};
/// let q = ServiceQueue::new("admin").bind("#").queue_type(QueueType::Quorum);
/// assert_eq!(q.name(), "admin.events");
/// assert_eq!(q.dead_letter_queue(), "admin.events.dlq");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceQueue {
    service: String,
    patterns: Vec<String>,
    queue_type: QueueType,
    retry: RetryPolicy,
}

impl ServiceQueue {
    /// The queue of `service`, with no bindings yet.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            patterns: Vec::new(),
            queue_type: QueueType::Classic,
            retry: RetryPolicy::default(),
        }
    }

    /// Receives events whose type matches `pattern` (`*` one word, `#` zero or more).
    #[must_use]
    pub fn bind(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Classic (default) or quorum, for the service queue and its dead-letter queue. Retry wait
    /// queues are always classic: they only hold events for their TTL.
    #[must_use]
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
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

    /// Everything to declare, exchanges first.
    pub(crate) fn declarations(&self) -> Vec<Declaration> {
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
            let mut args = BTreeMap::new();
            if q.queue_type == QueueType::Quorum {
                args.insert(ARG_QUEUE_TYPE, ArgValue::Text("quorum".into()));
            }
            let dlq_args = args.clone();
            args.insert(ARG_DLX, ArgValue::Text(dlx.clone()));
            args.insert(ARG_DLRK, ArgValue::Text(name.clone()));
            out.push(Declaration::Queue {
                name: name.clone(),
                args,
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
                args: dlq_args,
            });
            out.push(Declaration::Binding {
                queue: q.dead_letter_queue(),
                exchange: dlx.clone(),
                pattern: name.clone(),
            });
            for delay in q.retry.ladder() {
                let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                out.push(Declaration::Queue {
                    name: wait_queue(&name, delay),
                    args: BTreeMap::from([
                        (ARG_TTL, ArgValue::Int(ttl)),
                        (ARG_DLX, ArgValue::Text(String::new())),
                        (ARG_DLRK, ArgValue::Text(name.clone())),
                    ]),
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
        let d = t.declarations();
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
            .declarations()
            .into_iter()
            .filter(|d| matches!(d, Declaration::Queue { .. }))
            .count();
        assert_eq!(queues, 2 + 7);
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
