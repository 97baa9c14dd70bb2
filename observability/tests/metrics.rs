//! The middleware and the registry end to end: RED metrics with route templates, the cardinality
//! guard, correlation ids, and a scrape that `promtool check metrics` accepts without warnings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::convert::Infallible;

use std::time::Duration;

use http::{Request, Response, StatusCode};
use tidewell_observability::{
    CorrelationLayer, HttpMetrics, MetricsRegistry, OVERFLOW_ROUTE, UNMATCHED_ROUTE,
    correlation_id_of,
};
use tower::{Layer, Service, ServiceExt, service_fn};

fn app() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(|req: Request<()>| async move {
        let status = match req.uri().path() {
            p if p.starts_with("/users/") => StatusCode::OK,
            "/boom" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::NOT_FOUND,
        };
        // What the handler sees: the layer leaves the id in the request's header.
        let id = req
            .headers()
            .get("x-correlation-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        if !id.is_empty() {
            assert_eq!(id, correlation_id_of(req.headers()).as_str());
        }
        let mut res = Response::new(id);
        *res.status_mut() = status;
        Ok::<_, Infallible>(res)
    })
}

fn users_route<'a>(
    uri: &'a http::Uri,
    _: &'a http::Extensions,
) -> Option<std::borrow::Cow<'a, str>> {
    uri.path()
        .starts_with("/users/")
        .then_some("/users/{id}".into())
}

fn line_value(scrape: &str, starts: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(starts))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn red_metrics_by_route_template_pass_promtool() {
    let registry = MetricsRegistry::new(None);
    let metrics = HttpMetrics::with_slo(&registry, Duration::from_millis(300))
        .unwrap()
        .route_with(users_route);
    let svc = CorrelationLayer.layer(metrics.layer().layer(app()));
    for path in ["/users/1", "/users/2", "/users/3", "/nope", "/boom"] {
        let req = Request::builder().uri(path).body(()).unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let post = Request::builder()
        .method("BREW")
        .uri("/users/9")
        .body(())
        .unwrap();
    svc.clone().oneshot(post).await.unwrap();

    let (content_type, scrape) = registry.render().unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    assert_eq!(
        line_value(
            &scrape,
            r#"http_requests_total{method="GET",route="/users/{id}",status="200"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        line_value(
            &scrape,
            &format!(
                r#"http_requests_total{{method="GET",route="{UNMATCHED_ROUTE}",status="404"}}"#
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        line_value(
            &scrape,
            &format!(
                r#"http_requests_total{{method="GET",route="{UNMATCHED_ROUTE}",status="500"}}"#
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        line_value(
            &scrape,
            r#"http_requests_total{method="OTHER",route="/users/{id}",status="200"}"#
        ),
        Some(1.0),
        "unknown methods share one label"
    );
    assert!(
        scrape.contains(r#"le="0.3""#),
        "the SLO boundary is a bucket"
    );
    assert_eq!(line_value(&scrape, "http_requests_in_flight"), Some(0.0));
    assert!(!scrape.contains("/users/1"), "never a raw path as a label");
    if let Err(complaints) = tidewell_testkit::metrics::promtool_check(&scrape) {
        panic!("promtool: {complaints}");
    }

    let res = registry.response();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn cardinality_guard_holds_under_100k_distinct_paths() {
    let registry = MetricsRegistry::new(Some("guard"));
    // Unmatched paths: one label value.
    let unmatched = HttpMetrics::new(&registry).unwrap().layer().layer(app());
    for i in 0..100_000 {
        let req = Request::builder().uri(format!("/x/{i}")).body(()).unwrap();
        unmatched.clone().oneshot(req).await.unwrap();
    }
    let scrape = registry.render().unwrap().1;
    let series = scrape
        .lines()
        .filter(|l| l.starts_with("guard_http_requests_total{"))
        .count();
    assert_eq!(series, 1, "{scrape}");

    // A route function that (wrongly) returns raw paths is capped by the guard.
    let registry = MetricsRegistry::new(None);
    let leaky = HttpMetrics::new(&registry)
        .unwrap()
        .route_with(|uri, _| Some(uri.path().into()))
        .max_routes(50);
    let svc = leaky.layer().layer(app());
    for i in 0..1_000 {
        let req = Request::builder().uri(format!("/y/{i}")).body(()).unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let scrape = registry.render().unwrap().1;
    let series = scrape
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count();
    assert_eq!(series, 51, "50 routes and the overflow label");
    assert_eq!(
        line_value(
            &scrape,
            &format!(
                r#"http_requests_total{{method="GET",route="{OVERFLOW_ROUTE}",status="404"}}"#
            )
        ),
        Some(950.0)
    );
}

#[tokio::test]
async fn in_flight_returns_to_zero_when_a_request_is_dropped() {
    let registry = MetricsRegistry::new(None);
    let slow = service_fn(|_: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut svc = HttpMetrics::new(&registry).unwrap().layer().layer(slow);
    let fut = svc.call(Request::new(()));
    assert_eq!(
        line_value(&registry.render().unwrap().1, "http_requests_in_flight"),
        Some(1.0)
    );
    drop(fut); // the client went away
    assert_eq!(
        line_value(&registry.render().unwrap().1, "http_requests_in_flight"),
        Some(0.0)
    );
}

#[tokio::test]
async fn correlation_id_is_kept_made_or_replaced_and_echoed() {
    let svc = CorrelationLayer.layer(app());
    let call = |header: Option<(&'static str, &'static str)>| {
        let svc = svc.clone();
        async move {
            let mut req = Request::builder().uri("/users/1");
            if let Some((k, v)) = header {
                req = req.header(k, v);
            }
            let res = svc.oneshot(req.body(()).unwrap()).await.unwrap();
            let echoed = res.headers()["x-correlation-id"]
                .to_str()
                .unwrap()
                .to_owned();
            (echoed, res.into_body())
        }
    };
    let (echoed, seen) = call(Some(("x-correlation-id", "abc-123"))).await;
    assert_eq!(
        (echoed.as_str(), seen.as_str()),
        ("abc-123", "abc-123"),
        "kept"
    );
    let (echoed, seen) = call(Some(("x-request-id", "req-9"))).await;
    assert_eq!(
        (echoed.as_str(), seen.as_str()),
        ("req-9", "req-9"),
        "x-request-id is the fallback"
    );
    let (echoed, seen) = call(None).await;
    assert_eq!(echoed, seen, "the handler sees the id that is echoed");
    assert_eq!(uuid_version(&echoed), Some(7), "made: a UUID v7");
    let (echoed, seen) = call(Some(("x-correlation-id", "has space"))).await;
    assert_ne!(
        echoed, "has space",
        "an invalid id is replaced, never trusted"
    );
    assert_eq!(echoed, seen, "the handler sees the replacement");
    assert_eq!(uuid_version(&echoed), Some(7));
}

fn uuid_version(s: &str) -> Option<u32> {
    let v = s.split('-').nth(2)?.chars().next()?;
    v.to_digit(16)
}

#[tokio::test]
async fn event_hub_and_cache_metrics_register_and_pass_promtool() {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl tidewell_core::Event for Ping {
        const TYPE: &'static str = "tests.ping.sent";
        const VERSION: u16 = 1;
    }
    let registry = MetricsRegistry::new(Some("svc"));
    let hub = tidewell_event_hub::Hub::builder("svc")
        .url("memory://")
        .topology(
            tidewell_event_hub::Topology::new()
                .service(tidewell_event_hub::ServiceQueue::new("svc").bind("#")),
        )
        .connect()
        .await
        .unwrap();
    hub.metrics().register(registry.registry()).unwrap();
    hub.publish(&hub.envelope(Ping { n: 1 })).await.unwrap();
    let cache = tidewell_cache::Cache::builder()
        .url("memory://")
        .build()
        .await
        .unwrap();
    cache.metrics().register(registry.registry()).unwrap();
    let ns = cache.namespace("users").unwrap();
    let _ = ns
        .get::<u32>(&tidewell_cache::Key::from("k"))
        .await
        .unwrap();

    let scrape = registry.render().unwrap().1;
    assert_eq!(
        line_value(
            &scrape,
            r#"svc_tidewell_event_hub_published_total{outcome="confirmed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        line_value(
            &scrape,
            r#"svc_tidewell_cache_requests_total{namespace="users",result="miss"}"#
        ),
        Some(1.0)
    );
    if let Err(complaints) = tidewell_testkit::metrics::promtool_check(&scrape) {
        panic!("promtool: {complaints}");
    }
    assert!(
        cache.metrics().register(registry.registry()).is_err(),
        "twice is a clear error"
    );
    hub.shutdown(Duration::from_secs(1)).await.unwrap();
}
