//! What an operator reads from a service: `/metrics`, liveness `/healthz` and readiness
//! `/readyz`.
//!
//! One [`Ops`] per service. Its metrics carry `service="<name>"` (a service is told apart by
//! that label and the scrape's `job`, never by renamed metrics); its readiness is the checks it
//! was given (the database, the broker, Redis...), each bounded by a timeout, answered as JSON
//! that names each dependency and its state. Several services in one process (the platform)
//! serve one `/metrics` and one `/readyz` through [`Ops::include`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use prometheus::{IntGauge, IntGaugeVec, Opts};
use tidewell_observability::{HttpMetrics, MetricsRegistry, prometheus};

/// How long one readiness check may take before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the work run before a scrape may take (counting rows, asking the broker).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type CheckFn = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;
type RefreshFn = Arc<dyn Fn() -> BoxFuture<()> + Send + Sync>;

/// A service's metrics and readiness, and the routes that serve them. Cheap to clone.
///
/// ```
/// use tidewell_service_kit::Ops;
///
/// let ops = Ops::new("greeter")?;
/// ops.check("answer", || async { Ok(()) });
/// let app: axum::Router = axum::Router::new().merge(ops.routes());
/// # Ok::<(), tidewell_observability::Error>(())
/// ```
#[derive(Clone)]
pub struct Ops {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    service: String,
    metrics: MetricsRegistry,
    http: HttpMetrics,
    checks: Mutex<Vec<(String, CheckFn)>>,
    refreshers: Mutex<Vec<RefreshFn>>,
    included: Mutex<Vec<Ops>>,
    ready: IntGaugeVec,
    pub(crate) housekeeping: crate::housekeeping::JobMetrics,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("service", &self.inner.service)
            .finish_non_exhaustive()
    }
}

/// What `/readyz` answers: ready when every check of this service and the included ones passed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Readiness {
    /// Whether every dependency answered.
    pub ready: bool,
    /// Each dependency (`<service>.<check>` for included services): `"up"` or why it is down.
    pub checks: BTreeMap<String, String>,
}

impl Ops {
    /// The metrics (HTTP RED by route template, `service="<service>"` on every series) and no
    /// readiness checks yet.
    pub fn new(service: &str) -> Result<Self, tidewell_observability::Error> {
        Self::with_route_templates(service, |_, ext| {
            ext.get::<axum::extract::MatchedPath>()
                .map(|p| p.as_str().into())
        })
    }

    /// Like [`Ops::new`], with the HTTP metrics' `route` label from `route` (a router whose
    /// requests mostly end in a fallback has no `MatchedPath`: a proxy, say).
    pub fn with_route_templates(
        service: &str,
        route: impl for<'a> Fn(&'a http::Uri, &'a http::Extensions) -> Option<std::borrow::Cow<'a, str>>
        + Send
        + Sync
        + 'static,
    ) -> Result<Self, tidewell_observability::Error> {
        let metrics = MetricsRegistry::for_service(service);
        let http = HttpMetrics::new(&metrics)?.route_with(route);
        let ready = IntGaugeVec::new(
            Opts::new(
                "tidewell_dependency_up",
                "Whether a dependency answered the last readiness check (1) or not (0).",
            ),
            &["dependency"],
        )?;
        metrics.register(Box::new(ready.clone()))?;
        let housekeeping = crate::housekeeping::JobMetrics::new(&metrics)?;
        Ok(Self {
            inner: Arc::new(Inner {
                service: service.to_owned(),
                metrics,
                http,
                checks: Mutex::default(),
                refreshers: Mutex::default(),
                included: Mutex::default(),
                ready,
                housekeeping,
            }),
        })
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The registry to add the service's own metrics to.
    pub fn metrics(&self) -> &MetricsRegistry {
        &self.inner.metrics
    }

    /// The layer recording HTTP RED metrics by route template (axum's `MatchedPath`): add it
    /// with `Router::layer`, which runs after routing.
    pub fn layer(&self) -> tidewell_observability::HttpMetricsLayer {
        self.inner.http.layer()
    }

    /// Adds a readiness check: `/readyz` answers 503 while it fails or takes longer than
    /// [`CHECK_TIMEOUT`].
    pub fn check<F, Fut>(&self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let f: CheckFn = Arc::new(move || Box::pin(check()));
        lock(&self.inner.checks).push((name.to_owned(), f));
    }

    /// Adds work run before each scrape (bounded by 2 s), for gauges that must be asked for:
    /// rows in a table, messages in a queue.
    pub fn before_scrape<F, Fut>(&self, refresh: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f: RefreshFn = Arc::new(move || Box::pin(refresh()));
        lock(&self.inner.refreshers).push(f);
    }

    /// Serves `other`'s metrics and checks with this service's (several services in one
    /// process): one `/metrics`, one `/readyz`.
    pub fn include(&self, other: &Ops) {
        self.inner.metrics.include(&other.inner.metrics);
        lock(&self.inner.included).push(other.clone());
    }

    /// The database behind `pool`: its pool's size and idle connections as gauges, and a
    /// readiness check (`SELECT 1`).
    pub fn database(
        &self,
        name: &str,
        pool: &sqlx::AnyPool,
    ) -> Result<(), tidewell_observability::Error> {
        let gauge = |metric: &str, help: &str| {
            IntGauge::with_opts(Opts::new(metric, help).const_label("pool", name))
        };
        let size = gauge(
            "tidewell_db_pool_connections",
            "Connections the database pool holds (idle or in use).",
        )?;
        let idle = gauge(
            "tidewell_db_pool_idle_connections",
            "Connections of the database pool waiting to be used.",
        )?;
        let max = gauge(
            "tidewell_db_pool_max_connections",
            "The most connections the database pool opens.",
        )?;
        self.metrics().register(Box::new(size.clone()))?;
        self.metrics().register(Box::new(idle.clone()))?;
        self.metrics().register(Box::new(max.clone()))?;
        max.set(i64::from(pool.options().get_max_connections()));
        let p = pool.clone();
        self.before_scrape(move || {
            size.set(i64::from(p.size()));
            idle.set(i64::try_from(p.num_idle()).unwrap_or(i64::MAX));
            async {}
        });
        let p = pool.clone();
        self.check(name, move || {
            let p = p.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&p)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        });
        Ok(())
    }

    /// The event hub: its metrics (publishes, confirms, handler outcomes, retries, dead
    /// letters), the dead letters waiting in each of `queues` (`tidewell_event_hub_dead_letters`,
    /// asked of the broker at scrape time), and a readiness check (`broker`: connected now).
    pub fn hub(
        &self,
        hub: &tidewell_event_hub::Hub,
        queues: &[String],
    ) -> Result<(), tidewell_observability::Error> {
        hub.metrics().register(self.metrics().registry())?;
        let h = hub.clone();
        self.check("broker", move || {
            let connected = h.is_connected();
            async move {
                if connected {
                    Ok(())
                } else {
                    Err("not connected to RabbitMQ; reconnecting".into())
                }
            }
        });
        if queues.is_empty() {
            return Ok(());
        }
        let waiting = IntGaugeVec::new(
            Opts::new(
                "tidewell_event_hub_dead_letters",
                "Dead letters waiting in a service queue's dead-letter queue.",
            ),
            &["queue"],
        )?;
        self.metrics().register(Box::new(waiting.clone()))?;
        let (h, queues) = (hub.clone(), queues.to_vec());
        self.before_scrape(move || {
            let (h, queues, waiting) = (h.clone(), queues.clone(), waiting.clone());
            async move {
                for q in &queues {
                    if let Ok(n) = h.dead_letter_depth(q).await {
                        waiting
                            .with_label_values(&[q.as_str()])
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                }
            }
        });
        Ok(())
    }

    /// A cache: its metrics (hits, misses, stale, errors...), whether its circuit breaker is
    /// open (`tidewell_cache_breaker_open`, at scrape time) and a readiness check (`redis`: the
    /// store answers a ping; always up for an in-memory cache).
    #[cfg(feature = "cache")]
    pub fn cache(
        &self,
        cache: &tidewell_cache::Cache,
    ) -> Result<(), tidewell_observability::Error> {
        cache.metrics().register(self.metrics().registry())?;
        let open = IntGauge::new(
            "tidewell_cache_breaker_open",
            "Whether the cache's circuit breaker is open (1): Redis is not being called.",
        )?;
        self.metrics().register(Box::new(open.clone()))?;
        let c = cache.clone();
        self.before_scrape(move || {
            let (c, open) = (c.clone(), open.clone());
            async move {
                open.set(i64::from(c.health().await.circuit_open));
            }
        });
        let c = cache.clone();
        self.check("redis", move || {
            let c = c.clone();
            async move {
                let h = c.health().await;
                if h.store_reachable {
                    Ok(())
                } else {
                    Err("the cache's Redis does not answer".into())
                }
            }
        });
        Ok(())
    }

    /// The transactional outbox: rows waiting to be relayed and the age of the oldest
    /// (`tidewell_outbox_backlog`, `tidewell_outbox_oldest_age_seconds`), counted at scrape time.
    pub fn outbox(
        &self,
        outbox: &tidewell_event_hub::outbox::Outbox,
    ) -> Result<(), tidewell_observability::Error> {
        let backlog = IntGauge::new(
            "tidewell_outbox_backlog",
            "Outbox rows written but not yet published.",
        )?;
        let oldest = prometheus::Gauge::new(
            "tidewell_outbox_oldest_age_seconds",
            "Age of the oldest outbox row not yet published (0: none).",
        )?;
        self.metrics().register(Box::new(backlog.clone()))?;
        self.metrics().register(Box::new(oldest.clone()))?;
        let o = outbox.clone();
        self.before_scrape(move || {
            let (o, backlog, oldest) = (o.clone(), backlog.clone(), oldest.clone());
            async move {
                if let Ok(n) = o.pending().await {
                    backlog.set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                if let Ok(age) = o.oldest_pending_age().await {
                    oldest.set(age.map_or(0.0, |a| a.as_secs_f64()));
                }
            }
        });
        Ok(())
    }

    /// Runs every check (this service's and the included ones') side by side, each bounded by
    /// [`CHECK_TIMEOUT`].
    pub async fn readiness(&self) -> Readiness {
        let mut all: Vec<(String, CheckFn, IntGaugeVec)> = Vec::new();
        let mut collect = |ops: &Ops, prefix: &str| {
            for (name, f) in lock(&ops.inner.checks).iter() {
                all.push((
                    format!("{prefix}{name}"),
                    Arc::clone(f),
                    ops.inner.ready.clone(),
                ));
            }
        };
        collect(self, "");
        for other in lock(&self.inner.included).clone() {
            collect(&other, &format!("{}.", other.service()));
        }
        let results =
            futures_util::future::join_all(all.into_iter().map(|(name, f, gauge)| async move {
                let started = Instant::now();
                let state = match tokio::time::timeout(CHECK_TIMEOUT, f()).await {
                    Ok(Ok(())) => "up".to_owned(),
                    Ok(Err(why)) => format!("down: {why}"),
                    Err(_) => format!("down: no answer in {CHECK_TIMEOUT:?}"),
                };
                let short = name.rsplit('.').next().unwrap_or(&name).to_owned();
                gauge
                    .with_label_values(&[short.as_str()])
                    .set(i64::from(state == "up"));
                tracing::trace!(check = %name, elapsed = ?started.elapsed(), %state, "readiness");
                (name, state)
            }))
            .await;
        Readiness {
            ready: results.iter().all(|(_, s)| s == "up"),
            checks: results.into_iter().collect(),
        }
    }

    /// `/metrics` (after the pre-scrape work), `/healthz` (the process answers) and `/readyz`
    /// (200 or 503 with [`Readiness`] as JSON).
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    /// The pre-scrape work of this service and the included ones, side by side.
    async fn refresh(&self) {
        let mut all: Vec<RefreshFn> = lock(&self.inner.refreshers).clone();
        for other in lock(&self.inner.included).clone() {
            all.extend(lock(&other.inner.refreshers).iter().cloned());
        }
        let work = futures_util::future::join_all(all.iter().map(|f| f()));
        if tokio::time::timeout(REFRESH_TIMEOUT, work).await.is_err() {
            tracing::warn!(
                "metrics refresh took longer than {REFRESH_TIMEOUT:?}; some gauges are old"
            );
        }
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    ops.refresh().await;
    ops.metrics().response().into_response()
}

async fn healthz(State(ops): State<Ops>) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    axum::Json(serde_json::json!({ "alive": true, "service": ops.service(), "time": now }))
        .into_response()
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let r = ops.readiness().await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r)).into_response()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
