//! The hub's Prometheus metrics, for the observability crate (or the application) to register.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Counters and histograms of one hub. Register them with [`HubMetrics::register`].
///
/// | metric | labels |
/// |---|---|
/// | `tidewell_event_hub_published_total` | `outcome` = `confirmed`, `returned`, `failed` |
/// | `tidewell_event_hub_publish_duration_seconds` | (publish to confirm) |
/// | `tidewell_event_hub_consumed_total` | `queue`, `outcome` = `acked`, `retried`, `dead_lettered`, `duplicate`, `requeued` |
/// | `tidewell_event_hub_dead_lettered_total` | `queue`, `reason` |
/// | `tidewell_event_hub_handler_duration_seconds` | `queue` |
///
/// Label values are queue names from the topology and fixed words, never ids.
#[derive(Clone, Debug)]
pub struct HubMetrics {
    pub(crate) published: IntCounterVec,
    /// `published` children resolved once: the publish path is hot.
    pub(crate) confirmed: prometheus::IntCounter,
    pub(crate) returned: prometheus::IntCounter,
    pub(crate) failed: prometheus::IntCounter,
    pub(crate) publish_seconds: prometheus::Histogram,
    pub(crate) consumed: IntCounterVec,
    pub(crate) dead_lettered: IntCounterVec,
    pub(crate) handler_seconds: HistogramVec,
    pub(crate) consumers: prometheus::IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HubMetrics {
    /// Fresh, unregistered metrics.
    pub fn new() -> Self {
        // ok: the names, labels and buckets below are constants that prometheus accepts; the
        // constructors fail only on invalid names or mismatched label counts.
        #[allow(clippy::expect_used, reason = "constant, valid metric definitions")]
        let published = IntCounterVec::new(
            Opts::new(
                "tidewell_event_hub_published_total",
                "Events published, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        #[allow(clippy::expect_used, reason = "constant, valid metric definitions")]
        Self {
            confirmed: published.with_label_values(&["confirmed"]),
            returned: published.with_label_values(&["returned"]),
            failed: published.with_label_values(&["failed"]),
            published,
            publish_seconds: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "tidewell_event_hub_publish_duration_seconds",
                    "Time from publish to broker confirm.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            consumed: IntCounterVec::new(
                Opts::new(
                    "tidewell_event_hub_consumed_total",
                    "Deliveries settled, by queue and outcome.",
                ),
                &["queue", "outcome"],
            )
            .expect("valid metric"),
            dead_lettered: IntCounterVec::new(
                Opts::new(
                    "tidewell_event_hub_dead_lettered_total",
                    "Events dead-lettered, by queue and reason.",
                ),
                &["queue", "reason"],
            )
            .expect("valid metric"),
            consumers: prometheus::IntGaugeVec::new(
                Opts::new(
                    "tidewell_event_hub_consumers",
                    "Consumers this process runs on a queue now (0 while reconnecting).",
                ),
                &["queue"],
            )
            .expect("valid metric"),
            handler_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "tidewell_event_hub_handler_duration_seconds",
                    "Handler run time.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["queue"],
            )
            .expect("valid metric"),
        }
    }

    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.published.clone()))?;
        registry.register(Box::new(self.publish_seconds.clone()))?;
        registry.register(Box::new(self.consumed.clone()))?;
        registry.register(Box::new(self.dead_lettered.clone()))?;
        registry.register(Box::new(self.handler_seconds.clone()))?;
        registry.register(Box::new(self.consumers.clone()))?;
        Ok(())
    }

    /// Creates `queue`'s series at zero (every outcome, every dead-letter reason), so a
    /// dashboard or alert sees the queue before its first delivery and `rate` / `increase`
    /// count the first event too. Called when a subscription starts.
    pub(crate) fn prepare_queue(&self, queue: &str) {
        for outcome in ["acked", "retried", "dead_lettered", "duplicate", "requeued"] {
            self.consumed.with_label_values(&[queue, outcome]);
        }
        for reason in crate::DeadLetterReason::ALL {
            self.dead_lettered
                .with_label_values(&[queue, reason.as_str()]);
        }
        self.handler_seconds.with_label_values(&[queue]);
        self.consumers.with_label_values(&[queue]);
    }

    /// The gauge of `queue`'s running consumers.
    pub(crate) fn consumer(&self, queue: &str) -> prometheus::IntGauge {
        self.consumers.with_label_values(&[queue])
    }

    /// How many deliveries of `queue` ended with `outcome`.
    pub fn consumed(&self, queue: &str, outcome: &str) -> u64 {
        self.consumed.with_label_values(&[queue, outcome]).get()
    }

    /// How many publishes ended with `outcome` (`confirmed`, `returned`, `failed`).
    pub fn published(&self, outcome: &str) -> u64 {
        self.published.with_label_values(&[outcome]).get()
    }
}
