//! HTTP RED metrics as a tower layer: rate, errors and duration per method, route template and
//! status, with a guard on the number of route labels.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
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

type RouteFn = dyn for<'a> Fn(&'a Uri, &'a Extensions) -> Option<Cow<'a, str>> + Send + Sync;

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
///
/// On the request path the layer finds its route's series by comparing the template with the
/// first 16 known ones (no lock; past them, a read lock and a fast hash) and the
/// resolved Prometheus children by a short scan: no label strings are hashed in `prometheus` per
/// request.
#[derive(Clone)]
pub struct HttpMetrics {
    shared: Arc<Shared>,
    route: Arc<RouteFn>,
    max_routes: usize,
}

struct Shared {
    in_flight: IntGauge,
    /// The first [`LOCK_FREE_ROUTES`] route templates' series, found without a lock; they fill
    /// in order.
    first_routes: [OnceLock<Arc<RouteSeries>>; LOCK_FREE_ROUTES],
    /// The rest.
    routes: RwLock<HashMap<Arc<str>, Arc<RouteSeries>, foldhash::fast::RandomState>>,
    unmatched: Arc<RouteSeries>,
    overflow: Arc<RouteSeries>,
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// One route's series: its children by (method, status), created on first use.
struct RouteSeries {
    route: Arc<str>,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    /// The first [`LOCK_FREE_CHILDREN`] (method, status) children, found without a lock (a
    /// route's requests mostly share a few, `GET` 200 first among them).
    first: [OnceLock<Child>; LOCK_FREE_CHILDREN],
    /// The rest.
    children: RwLock<Vec<Child>>,
}

/// Children of a route found without taking a lock; the rest sit behind a read lock.
const LOCK_FREE_CHILDREN: usize = 4;

/// Route templates whose series are found without taking a lock (by comparing the template with
/// each known one in turn); the rest sit behind a read lock and a hash map.
const LOCK_FREE_ROUTES: usize = 16;

struct Child {
    /// Method index (see [`method_label`]) << 16 | status (0: the service failed).
    key: u32,
    requests: IntCounter,
    duration: Histogram,
}

impl Child {
    fn observe(&self, elapsed: Duration) {
        self.requests.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

impl RouteSeries {
    fn new(
        route: Arc<str>,
        requests: &IntCounterVec,
        duration: &HistogramVec,
        in_flight: &IntGauge,
    ) -> Arc<Self> {
        Arc::new(Self {
            route,
            requests: requests.clone(),
            duration: duration.clone(),
            in_flight: in_flight.clone(),
            first: Default::default(),
            children: RwLock::default(),
        })
    }

    fn record(&self, method: (u32, &'static str), status: u16, elapsed: Duration) {
        let key = (method.0 << 16) | u32::from(status);
        for slot in &self.first {
            match slot.get() {
                Some(c) if c.key == key => return c.observe(elapsed),
                Some(_) => {}
                // Slots fill in order: an empty one means the key is not among them.
                None => break,
            }
        }
        {
            let children = self.children.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = children.iter().find(|c| c.key == key) {
                return c.observe(elapsed);
            }
        }
        // 0 stands for "the service failed" (label `error`): no HTTP status is 0.
        let status_text = if status == 0 {
            "error".to_owned()
        } else {
            status.to_string()
        };
        // Two handles made for one key at once are harmless: both name the same series.
        let mut child = Child {
            key,
            requests: self
                .requests
                .with_label_values(&[method.1, &self.route, &status_text]),
            duration: self.duration.with_label_values(&[method.1, &self.route]),
        };
        child.observe(elapsed);
        for slot in &self.first {
            match slot.set(child) {
                Ok(()) => return,
                Err(back) => child = back,
            }
            if slot.get().is_some_and(|c| c.key == key) {
                return; // made at the same time by another request
            }
        }
        let mut children = self
            .children
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !children.iter().any(|c| c.key == key) {
            children.push(child);
        }
    }
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
        let series =
            |route: &str| RouteSeries::new(Arc::from(route), &requests, &duration, &in_flight);
        let shared = Shared {
            unmatched: series(UNMATCHED_ROUTE),
            overflow: series(OVERFLOW_ROUTE),
            first_routes: Default::default(),
            routes: RwLock::default(),
            in_flight,
            requests,
            duration,
        };
        Ok(Self {
            shared: Arc::new(shared),
            route: Arc::new(|_, _| None),
            max_routes: 200,
        })
    }

    /// How a request's route template is found, e.g.
    /// `|_, ext| ext.get::<axum::extract::MatchedPath>().map(|p| p.as_str().into())`, or
    /// `|uri, _| uri.path().starts_with("/users/").then(|| "/users/{id}".into())`. Borrowing (or
    /// a `'static` template) costs no allocation per request.
    #[must_use]
    pub fn route_with(
        mut self,
        route: impl for<'a> Fn(&'a Uri, &'a Extensions) -> Option<Cow<'a, str>> + Send + Sync + 'static,
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
            metrics: Arc::new(self.clone()),
        }
    }

    /// The series of a route template: its own, [`UNMATCHED_ROUTE`]'s for none, or
    /// [`OVERFLOW_ROUTE`]'s once `max_routes` templates are known.
    fn route_series(&self, route: Option<Cow<'_, str>>) -> Arc<RouteSeries> {
        let shared = &*self.shared;
        let Some(route) = route else {
            return Arc::clone(&shared.unmatched);
        };
        // The lock-free slots, in the order they fill. Everyone tries them in that order, so a
        // template is in at most one slot, and in the map only once every slot is taken.
        for (known, slot) in shared.first_routes.iter().enumerate() {
            let series = match slot.get() {
                Some(series) => series,
                None if known >= self.max_routes => return Arc::clone(&shared.overflow),
                None => {
                    let made = RouteSeries::new(
                        Arc::from(&*route),
                        &shared.requests,
                        &shared.duration,
                        &shared.in_flight,
                    );
                    match slot.set(Arc::clone(&made)) {
                        Ok(()) => return made,
                        // Another request filled it meanwhile: with this template or another.
                        Err(_) => match slot.get() {
                            Some(series) => series,
                            None => continue, // a set that failed leaves the slot full
                        },
                    }
                }
            };
            if *series.route == *route {
                return Arc::clone(series);
            }
        }
        if let Some(known) = shared
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&*route)
        {
            return Arc::clone(known);
        }
        let mut routes = shared
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = routes.get(&*route) {
            return Arc::clone(known);
        }
        if LOCK_FREE_ROUTES + routes.len() >= self.max_routes {
            return Arc::clone(&shared.overflow);
        }
        let route: Arc<str> = Arc::from(&*route);
        let series = RouteSeries::new(
            Arc::clone(&route),
            &shared.requests,
            &shared.duration,
            &shared.in_flight,
        );
        routes.insert(route, Arc::clone(&series));
        series
    }
}

/// The `method` label and its index (part of a child's key).
fn method_label(m: &Method) -> (u32, &'static str) {
    match *m {
        Method::GET => (0, "GET"),
        Method::POST => (1, "POST"),
        Method::PUT => (2, "PUT"),
        Method::DELETE => (3, "DELETE"),
        Method::PATCH => (4, "PATCH"),
        Method::HEAD => (5, "HEAD"),
        Method::OPTIONS => (6, "OPTIONS"),
        Method::CONNECT => (7, "CONNECT"),
        Method::TRACE => (8, "TRACE"),
        _ => (9, "OTHER"),
    }
}

/// The layer made by [`HttpMetrics::layer`].
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    /// Behind one reference count: servers (hyper's `TowerToHyperService`, axum's routes) clone
    /// the service for every request.
    metrics: Arc<HttpMetrics>,
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service made by [`HttpMetricsLayer`].
#[derive(Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for HttpMetricsService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetricsService")
            .field("inner", &self.inner)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
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
        let series = self
            .metrics
            .route_series((self.metrics.route)(req.uri(), req.extensions()));
        series.in_flight.inc();
        MetricsFuture {
            inner: self.inner.call(req),
            state: Some(Recording {
                series,
                method,
                started: Instant::now(),
            }),
        }
    }
}

/// One request being measured. Dropping it (the request ended, or its future was dropped)
/// decrements the in-flight gauge.
struct Recording {
    series: Arc<RouteSeries>,
    method: (u32, &'static str),
    started: Instant,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.series.in_flight.dec();
    }
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
            let status = out.as_ref().map_or(0, |res| res.status().as_u16());
            r.series.record(r.method, status, r.started.elapsed());
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_past_the_lock_free_slots_and_under_a_small_cap_each_get_one_series() {
        for max_routes in [3, LOCK_FREE_ROUTES, 40] {
            let registry = MetricsRegistry::new(None);
            let metrics = HttpMetrics::new(&registry).unwrap().max_routes(max_routes);
            let routes: Vec<String> = (0..60).map(|i| format!("/r{i}")).collect();
            // Four threads find the same templates at once, in different orders.
            let found: Vec<Vec<Arc<RouteSeries>>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|t| {
                        let (metrics, routes) = (&metrics, &routes);
                        scope.spawn(move || {
                            let mut order: Vec<usize> = (0..routes.len()).collect();
                            if t % 2 == 1 {
                                order.reverse();
                            }
                            let mut mine = vec![None; routes.len()];
                            for i in order {
                                mine[i] =
                                    Some(metrics.route_series(Some(routes[i].as_str().into())));
                            }
                            mine.into_iter().map(Option::unwrap).collect()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut own = std::collections::HashSet::new();
            for i in 0..routes.len() {
                let first = &found[0][i];
                for other in &found[1..] {
                    assert!(Arc::ptr_eq(first, &other[i]), "one series per template");
                }
                if *first.route == *routes[i] {
                    own.insert(i);
                } else {
                    assert_eq!(&*first.route, OVERFLOW_ROUTE, "{}", routes[i]);
                }
            }
            assert_eq!(own.len(), max_routes, "the cap holds at {max_routes}");
        }
    }

    #[test]
    fn every_method_and_status_of_a_route_is_counted_past_the_lock_free_slots() {
        let registry = MetricsRegistry::new(None);
        let metrics = HttpMetrics::new(&registry).unwrap();
        let series = metrics.route_series(Some("/r".into()));
        // More (method, status) pairs than lock-free slots, recorded from four threads at once.
        let pairs: Vec<((u32, &'static str), u16)> = [200, 201, 404, 500, 503, 0]
            .into_iter()
            .flat_map(|s| [((0, "GET"), s), ((1, "POST"), s)])
            .collect();
        assert!(pairs.len() > LOCK_FREE_CHILDREN);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for (i, (method, status)) in pairs.iter().enumerate() {
                        for _ in 0..=i {
                            series.record(*method, *status, Duration::from_millis(1));
                        }
                    }
                });
            }
        });
        let (_, text) = registry.render().unwrap();
        for (i, ((_, method), status)) in pairs.iter().enumerate() {
            let status = if *status == 0 {
                "error".to_owned()
            } else {
                status.to_string()
            };
            let line = format!(
                "http_requests_total{{method=\"{method}\",route=\"/r\",status=\"{status}\"}} {}",
                4 * (i + 1)
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        let total: usize = (1..=pairs.len()).map(|n| 4 * n).sum();
        let count = r#"http_request_duration_seconds_count{method="GET",route="/r"}"#;
        let gets: usize = (0..pairs.len()).step_by(2).map(|i| 4 * (i + 1)).sum();
        assert!(
            text.contains(&format!("{count} {gets}")),
            "{count} {gets} of {total} in\n{text}"
        );
    }
}
