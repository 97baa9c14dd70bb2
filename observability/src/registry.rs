//! The registry of one service and its `/metrics` rendering.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::proto::MetricFamily;
use prometheus::{Encoder as _, Registry, TextEncoder};

use crate::Error;

/// The Prometheus registry of one service, with an optional name prefix.
///
/// ```
/// use tidewell_observability::MetricsRegistry;
/// let metrics = MetricsRegistry::new(None);
/// let counter = prometheus::IntCounter::new("jobs_total", "Jobs done.")?;
/// metrics.register(Box::new(counter.clone()))?;
/// counter.inc();
/// let (content_type, body) = metrics.render()?;
/// assert!(content_type.starts_with("text/plain"));
/// assert!(body.contains("jobs_total 1"));
/// # Ok::<(), tidewell_observability::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct MetricsRegistry {
    registry: Registry,
    /// Other registries rendered with this one ([`MetricsRegistry::include`]).
    included: Arc<Mutex<Vec<Registry>>>,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        Self::new(None)
    }
}

impl MetricsRegistry {
    /// A registry; with `prefix`, every metric name gets `<prefix>_` in front.
    pub fn new(prefix: Option<&str>) -> Self {
        let registry = prefix
            .and_then(|p| Registry::new_custom(Some(p.to_owned()), None).ok())
            .unwrap_or_default();
        Self {
            registry,
            included: Arc::default(),
        }
    }

    /// A registry whose every series carries `service="<service>"`: services are told apart by
    /// that label (and the scrape's `job`), never by renamed metrics, so one dashboard serves all.
    ///
    /// ```
    /// use tidewell_observability::MetricsRegistry;
    /// let metrics = MetricsRegistry::for_service("payments");
    /// let counter = prometheus::IntCounter::new("jobs_total", "Jobs done.")?;
    /// metrics.register(Box::new(counter.clone()))?;
    /// counter.inc();
    /// assert!(metrics.render()?.1.contains(r#"jobs_total{service="payments"} 1"#));
    /// # Ok::<(), tidewell_observability::Error>(())
    /// ```
    pub fn for_service(service: &str) -> Self {
        let labels = HashMap::from([("service".to_owned(), service.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels)).unwrap_or_default();
        Self {
            registry,
            included: Arc::default(),
        }
    }

    /// Renders `other`'s metrics with this registry's from now on (several services in one
    /// process, one `/metrics`): families of the same name are merged, so each name appears
    /// once in the scrape; their series differ by their labels (`service`).
    pub fn include(&self, other: &MetricsRegistry) {
        self.included
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(other.registry.clone());
    }

    /// Adds the process's own metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
    /// `process_open_fds`, ...; Linux only, a no-op elsewhere). Once per process: the registry
    /// that the process's `/metrics` serves.
    pub fn register_process_metrics(&self) -> Result<(), Error> {
        #[cfg(target_os = "linux")]
        self.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(())
    }

    /// Every family of this registry and the included ones, merged by name, sorted.
    fn gather(&self) -> Vec<MetricFamily> {
        let included = self
            .included
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if included.is_empty() {
            return self.registry.gather();
        }
        let mut by_name: BTreeMap<String, MetricFamily> = BTreeMap::new();
        for family in std::iter::once(&self.registry)
            .chain(&included)
            .flat_map(Registry::gather)
        {
            match by_name.get_mut(family.name()) {
                Some(merged) => merged
                    .mut_metric()
                    .extend(family.get_metric().iter().cloned()),
                None => {
                    by_name.insert(family.name().to_owned(), family);
                }
            }
        }
        by_name.into_values().collect()
    }

    /// The underlying registry, for crates that register their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a collector.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), Error> {
        self.registry.register(collector).map_err(Error::from)
    }

    /// The content type and body of a scrape (text exposition format 0.0.4).
    pub fn render(&self) -> Result<(String, String), Error> {
        let encoder = TextEncoder::new();
        let mut body = Vec::new();
        encoder
            .encode(&self.gather(), &mut body)
            .map_err(|e| Error::Render(e.to_string()))?;
        let body = String::from_utf8(body).map_err(|e| Error::Render(e.to_string()))?;
        Ok((encoder.format_type().to_owned(), body))
    }

    /// A `/metrics` response, to mount on any router (typically on an admin port).
    pub fn response(&self) -> http::Response<String> {
        match self.render() {
            Ok((content_type, body)) => {
                let mut res = http::Response::new(body);
                if let Ok(v) = http::HeaderValue::from_str(&content_type) {
                    res.headers_mut().insert(http::header::CONTENT_TYPE, v);
                }
                res
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot render metrics");
                let mut res = http::Response::new(e.to_string());
                *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                res
            }
        }
    }
}
