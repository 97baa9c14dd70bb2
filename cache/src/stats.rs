//! Counters per namespace, as Prometheus metrics and as a snapshot.

use std::collections::BTreeMap;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The cache's Prometheus metrics. Register them with [`CacheMetrics::register`].
///
/// | metric | labels |
/// |---|---|
/// | `tidewell_cache_requests_total` | `namespace`, `result` = `hit`, `local_hit`, `miss`, `stale`, `undecodable` |
/// | `tidewell_cache_writes_total` | `namespace`, `op` = `set`, `delete`, `skipped` (a load raced an invalidation) |
/// | `tidewell_cache_loads_total` | `namespace` (loader calls) |
/// | `tidewell_cache_errors_total` | `namespace` (Redis errors and timeouts, circuit rejections) |
/// | `tidewell_cache_invalidations_total` | (tags invalidated) |
#[derive(Clone, Debug)]
pub struct CacheMetrics {
    requests: IntCounterVec,
    writes: IntCounterVec,
    loads: IntCounterVec,
    errors: IntCounterVec,
    invalidations: IntCounter,
}

impl Default for CacheMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheMetrics {
    /// Fresh, unregistered metrics.
    #[allow(clippy::expect_used, reason = "constant, valid metric definitions")]
    pub fn new() -> Self {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        Self {
            requests: vec(
                "tidewell_cache_requests_total",
                "Cache reads, by namespace and result.",
                &["namespace", "result"],
            ),
            writes: vec(
                "tidewell_cache_writes_total",
                "Cache writes, by namespace and operation.",
                &["namespace", "op"],
            ),
            loads: vec(
                "tidewell_cache_loads_total",
                "Loader calls, by namespace.",
                &["namespace"],
            ),
            errors: vec(
                "tidewell_cache_errors_total",
                "Backend errors, by namespace.",
                &["namespace"],
            ),
            invalidations: IntCounter::new(
                "tidewell_cache_invalidations_total",
                "Tags invalidated.",
            )
            .expect("valid metric"),
        }
    }

    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.writes.clone()))?;
        registry.register(Box::new(self.loads.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.invalidations.clone()))?;
        Ok(())
    }

    /// Counts `n` tags invalidated.
    pub(crate) fn count_invalidations(&self, n: u64) {
        self.invalidations.inc_by(n);
    }

    /// Tags invalidated so far.
    pub(crate) fn invalidations(&self) -> u64 {
        self.invalidations.get()
    }

    pub(crate) fn namespace(&self, ns: &str) -> NsCounters {
        let r = |result: &str| self.requests.with_label_values(&[ns, result]);
        let w = |op: &str| self.writes.with_label_values(&[ns, op]);
        NsCounters {
            hit: r("hit"),
            local_hit: r("local_hit"),
            miss: r("miss"),
            stale: r("stale"),
            undecodable: r("undecodable"),
            set: w("set"),
            delete: w("delete"),
            skipped: w("skipped"),
            load: self.loads.with_label_values(&[ns]),
            error: self.errors.with_label_values(&[ns]),
        }
    }
}

/// The counters of one namespace, resolved once (the read path is hot).
#[derive(Clone, Debug)]
pub(crate) struct NsCounters {
    pub(crate) hit: IntCounter,
    pub(crate) local_hit: IntCounter,
    pub(crate) miss: IntCounter,
    pub(crate) stale: IntCounter,
    pub(crate) undecodable: IntCounter,
    pub(crate) set: IntCounter,
    pub(crate) delete: IntCounter,
    pub(crate) skipped: IntCounter,
    pub(crate) load: IntCounter,
    pub(crate) error: IntCounter,
}

impl NsCounters {
    pub(crate) fn snapshot(&self) -> NamespaceStats {
        NamespaceStats {
            hits: self.hit.get(),
            local_hits: self.local_hit.get(),
            misses: self.miss.get(),
            stale: self.stale.get(),
            undecodable: self.undecodable.get(),
            sets: self.set.get(),
            deletes: self.delete.get(),
            skipped_writes: self.skipped.get(),
            loader_calls: self.load.get(),
            errors: self.error.get(),
        }
    }
}

/// Counters of one namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespaceStats {
    /// Reads served by Redis (or the in-memory store).
    pub hits: u64,
    /// Reads served by the local tier.
    pub local_hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Reads that found an entry whose tags were invalidated (counted as misses for the ratio).
    pub stale: u64,
    /// Reads that found bytes that no longer decode (a schema change; counted as misses).
    pub undecodable: u64,
    /// Values written.
    pub sets: u64,
    /// Keys deleted.
    pub deletes: u64,
    /// Loaded values not written because an invalidation landed during the load.
    pub skipped_writes: u64,
    /// Loader calls.
    pub loader_calls: u64,
    /// Backend errors (the caller was served through the loader in fail-open mode).
    pub errors: u64,
}

impl NamespaceStats {
    /// Hits (both tiers) over all reads; 0 when there were no reads.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.hits + self.local_hits;
        let reads = hits + self.misses + self.stale + self.undecodable;
        if reads == 0 {
            0.0
        } else {
            hits as f64 / reads as f64
        }
    }
}

/// A snapshot of every namespace's counters.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Counters by namespace.
    pub namespaces: BTreeMap<String, NamespaceStats>,
    /// Tags invalidated.
    pub invalidations: u64,
}
