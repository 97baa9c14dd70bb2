//! The registry of one service and its `/metrics` rendering.

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
        Self { registry }
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
            .encode(&self.registry.gather(), &mut body)
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
