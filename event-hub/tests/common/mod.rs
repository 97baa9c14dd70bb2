//! Shared fixtures: one broker (RabbitMQ or in-memory) with names unique to the test.
#![allow(dead_code, reason = "each test binary uses part of the fixture")]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewell_core::{Backoff, Event};
use tidewell_event_hub::{Hub, RetryPolicy, ServiceQueue, Topology};
use tidewell_testkit::{TestRabbit, unique_name};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    Amqp,
}

/// A broker and the unique names one test uses on it.
pub(crate) struct Fixture {
    pub(crate) kind: Kind,
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) rabbit: Option<TestRabbit>,
}

impl Fixture {
    pub(crate) async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Memory => {
                let prefix = unique_name("mem");
                Self {
                    kind,
                    url: format!("memory://{prefix}"),
                    prefix,
                    rabbit: None,
                }
            }
            Kind::Amqp => {
                let rabbit = TestRabbit::connect().await;
                Self {
                    kind,
                    url: rabbit.url().to_owned(),
                    prefix: rabbit.prefix().to_owned(),
                    rabbit: Some(rabbit),
                }
            }
        }
    }

    /// The topology's exchange, registered for cleanup.
    pub(crate) fn exchange(&self) -> String {
        match &self.rabbit {
            Some(r) => {
                r.exchange("events.dlx");
                r.exchange("events")
            }
            None => format!("{}.events", self.prefix),
        }
    }

    /// A service queue named `<prefix>.<service>`, registered (with its DLQ and wait queues) for cleanup.
    pub(crate) fn service(&self, service: &str, policy: &RetryPolicy) -> ServiceQueue {
        let full = format!("{}.{service}", self.prefix);
        let q = ServiceQueue::new(&full).retry(policy.clone());
        if let Some(r) = &self.rabbit {
            r.queue(&format!("{service}.events"));
            r.queue(&format!("{service}.events.dlq"));
            for d in policy.ladder() {
                r.queue(&format!("{service}.events.wait.{}ms", d.as_millis()));
            }
        }
        q
    }

    pub(crate) fn topology(&self) -> Topology {
        Topology::with_exchange(self.exchange())
    }

    pub(crate) async fn hub(&self, topology: Topology) -> Hub {
        self.hub_with(topology, |b| b).await
    }

    pub(crate) async fn hub_with(
        &self,
        topology: Topology,
        f: impl FnOnce(tidewell_event_hub::HubBuilder) -> tidewell_event_hub::HubBuilder,
    ) -> Hub {
        let builder = Hub::builder("tests")
            .url(&self.url)
            .connection_name(&self.prefix)
            .topology(topology)
            .publish_timeout(Duration::from_secs(20));
        f(builder).connect().await.expect("hub connects")
    }
}

/// Fast retries for tests: `attempts` runs, waits of 50 to 200 ms.
pub(crate) fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(
        attempts,
        Backoff::builder()
            .min(Duration::from_millis(50))
            .max(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserCreated {
    pub(crate) user_id: u64,
    pub(crate) email: String,
}
impl Event for UserCreated {
    const TYPE: &'static str = "auth.user.created";
    const VERSION: u16 = 1;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionRevoked {
    pub(crate) session_id: String,
}
impl Event for SessionRevoked {
    const TYPE: &'static str = "auth.session.revoked";
    const VERSION: u16 = 1;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PaymentCreated {
    pub(crate) payment_id: u64,
    pub(crate) seq: u64,
}
impl Event for PaymentCreated {
    const TYPE: &'static str = "payments.payment.created";
    const VERSION: u16 = 1;
}

/// Waits until `cond` holds, polling, for up to `limit`.
pub(crate) async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Closes every broker connection whose client-provided name contains `needle`, as an operator
/// (or a network fault) would; returns how many it closed.
pub(crate) fn close_connections(needle: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
            "-q",
        ])
        .output()
        .expect("rabbitmqctl runs (the fault tests need it on PATH)");
    assert!(
        out.status.success(),
        "rabbitmqctl list_connections: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
    {
        let Some(pid) = line.split_whitespace().next() else {
            continue;
        };
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "tidewell fault test"])
            .output()
            .expect("rabbitmqctl runs");
        if status.status.success() {
            closed += 1;
        }
    }
    closed
}
