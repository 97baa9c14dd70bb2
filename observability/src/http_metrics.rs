//! HTTP RED metrics as a tower layer: rate, errors and duration per method, route template and
//! status, with a guard on the number of route labels.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Extensions, Method, Request, Response, Uri};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Error, MetricsRegistry};

/// The `route` label of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "__unmatched__";
/// The `route` label once the guard's limit of distinct routes is reached.
pub const OVERFLOW_ROUTE: &str = "__overflow__";

/// Duration buckets in seconds. They include the default SLO boundary of 250 ms; add yours with
/// [`HttpMetrics::with_slo`].
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type RouteFn = dyn Fn(&Uri, &Extensions) -> Option<String> + Send + Sync;

/// The HTTP metrics of one service:
///
/// | metric | labels |
/// |---|---|
/// | `http_requests_total` | `method`, `route`, `status` |
/// | `http_request_duration_seconds` (histogram, [`DEFAULT_BUCKETS`]) | `method`, `route` |
/// | `http_requests_in_flight` | |
///
/// `route` is the route template from the supplied function (e.g. axum's `MatchedPath`), never the
/// raw path; requests without one share [`UNMATCHED_ROUTE`]; past `max_routes` distinct templates
/// new ones share [`OVERFLOW_ROUTE`]. `method` is one of the standard methods or `OTHER`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    route: Arc<RouteFn>,
    seen: Arc<RwLock<HashSet<Arc<str>>>>,
    /// Resolved children by (method, route, status): the request path takes a read lock and two
    /// atomic adds instead of hashing label strings in prometheus on every request.
    series: Arc<RwLock<SeriesMap>>,
    max_routes: usize,
}

type SeriesMap = HashMap<(&'static str, Arc<str>, u16), Arc<Series>>;

struct Series {
    requests: IntCounter,
    duration: Histogram,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("max_routes", &self.max_routes)
            .finish_non_exhaustive()
    }
}

impl HttpMetrics {
    /// Registers the metrics in `registry`. Without a route function every request is unmatched.
    pub fn new(registry: &MetricsRegistry) -> Result<Self, Error> {
        Self::with_buckets(registry, DEFAULT_BUCKETS.to_vec())
    }

    /// Like [`HttpMetrics::new`], adding `slo` as a bucket boundary.
    pub fn with_slo(registry: &MetricsRegistry, slo: Duration) -> Result<Self, Error> {
        let mut buckets = DEFAULT_BUCKETS.to_vec();
        buckets.push(slo.as_secs_f64());
        buckets.sort_by(f64::total_cmp);
        buckets.dedup();
        Self::with_buckets(registry, buckets)
    }

    fn with_buckets(registry: &MetricsRegistry, buckets: Vec<f64>) -> Result<Self, Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests, by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request duration, by method and route template.",
            )
            .buckets(buckets),
            &["method", "route"],
        )?;
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            requests,
            duration,
            in_flight,
            route: Arc::new(|_, _| None),
            seen: Arc::default(),
            series: Arc::default(),
            max_routes: 200,
        })
    }

    /// How a request's route template is found, e.g.
    /// `|_, ext| ext.get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned())`.
    #[must_use]
    pub fn route_with(
        mut self,
        route: impl Fn(&Uri, &Extensions) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.route = Arc::new(route);
        self
    }

    /// The most distinct `route` values (default 200).
    #[must_use]
    pub fn max_routes(mut self, max: usize) -> Self {
        self.max_routes = max;
        self
    }

    /// The tower layer recording into these metrics.
    pub fn layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics: self.clone(),
        }
    }

    fn route_label(&self, uri: &Uri, ext: &Extensions) -> Arc<str> {
        let Some(route) = (self.route)(uri, ext) else {
            return Arc::from(UNMATCHED_ROUTE);
        };
        if let Some(known) = self
            .seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route.as_str())
        {
            return Arc::clone(known);
        }
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = seen.get(route.as_str()) {
            return Arc::clone(known);
        }
        if seen.len() >= self.max_routes {
            return Arc::from(OVERFLOW_ROUTE);
        }
        let route: Arc<str> = Arc::from(route);
        seen.insert(Arc::clone(&route));
        route
    }

    fn series(&self, method: &'static str, route: &Arc<str>, status: u16) -> Arc<Series> {
        let key = (method, Arc::clone(route), status);
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(s);
        }
        let status_text = if status == 0 {
            "error".to_owned()
        } else {
            status.to_string()
        };
        let series = Arc::new(Series {
            requests: self
                .requests
                .with_label_values(&[method, route, &status_text]),
            duration: self.duration.with_label_values(&[method, route]),
        });
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(series)
            .clone()
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The layer made by [`HttpMetrics::layer`].
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    metrics: HttpMetrics,
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`HttpMetricsLayer`].
#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: HttpMetrics,
}

/// Decrements the in-flight gauge however the request ends (even if its future is dropped).
struct InFlight(IntGauge);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<S, B, RB> Service<Request<B>> for HttpMetricsService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = method_label(req.method());
        let route = self.metrics.route_label(req.uri(), req.extensions());
        self.metrics.in_flight.inc();
        MetricsFuture {
            inner: self.inner.call(req),
            state: Some(Recording {
                metrics: self.metrics.clone(),
                method,
                route,
                started: Instant::now(),
                _in_flight: InFlight(self.metrics.in_flight.clone()),
            }),
        }
    }
}

struct Recording {
    metrics: HttpMetrics,
    method: &'static str,
    route: Arc<str>,
    started: Instant,
    _in_flight: InFlight,
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpMetricsService`].
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        state: Option<Recording>,
    }
}

impl<F, RB, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(r) = this.state.take() {
            // 0 stands for "the service failed" (label `error`): no HTTP status is 0.
            let status = out.as_ref().map_or(0, |res| res.status().as_u16());
            let series = r.metrics.series(r.method, &r.route, status);
            series.requests.inc();
            series.duration.observe(r.started.elapsed().as_secs_f64());
        }
        Poll::Ready(out)
    }
}
