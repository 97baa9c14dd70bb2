//! One trace for a payment, exported over OTLP/HTTP to a receiver in the test: the gateway's
//! request, the payments service's request, the outbox write, the relay's publish (later, in
//! another task: the context rides in the outbox row), the admin and gateway consumers and the
//! WebSocket delivery share one trace id, each span the child of the one before.
//!
//! On RabbitMQ + Redis + PostgreSQL. One test in this binary: telemetry's `init` installs the
//! process's global subscriber.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{DataDir, access, call, login, next_json, register, ws};
use tidewell_observability::{LogFormat, TelemetryConfig};
use tidewell_platform::Platform;
use tidewell_testkit::otlp::{Received, Receiver};
use tidewell_testkit::{TestDatabase, TestRabbit, TestRedis};

const SECRET: &[u8] = b"trace-secret-trace-secret-trace-secret";

/// The one span named `name` in `trace` whose parent is `parent` and that passes `also`;
/// fails with every span of the trace when there is none, or more than one.
fn child<'a>(
    spans: &'a [Received],
    name: &str,
    parent: &Received,
    also: impl Fn(&Received) -> bool,
) -> &'a Received {
    let found: Vec<&Received> = spans
        .iter()
        .filter(|s| {
            s.span.name == name
                && s.trace_id() == parent.trace_id()
                && s.parent_span_id() == parent.span_id()
                && also(s)
        })
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "expected one `{name}` under `{}` ({}), found {}; the trace:\n{}",
            parent.span.name,
            parent.span_id(),
            found.len(),
            spans
                .iter()
                .filter(|s| s.trace_id() == parent.trace_id())
                .map(|s| format!(
                    "  {} {} parent {} queue={:?}",
                    s.span.name,
                    s.span_id(),
                    s.parent_span_id(),
                    s.attr("queue")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_one_trace_from_the_gateway_to_the_websocket() {
    let receiver = Receiver::start().await;
    let telemetry = tidewell_observability::init(
        TelemetryConfig::new("platform")
            .with_log_format(LogFormat::Off)
            .with_trace_filter("info")
            .with_otlp_traces_endpoint(receiver.endpoint()),
    )
    .unwrap();

    let rabbit = TestRabbit::connect().await;
    let redis = TestRedis::connect().await;
    let mut dbs = Vec::new();
    for _ in 0..4 {
        dbs.push(TestDatabase::create().await);
    }
    let data = DataDir::new("trace");
    let mut c = support::local_config(SECRET, data.path());
    support::on_real_services(&mut c, &rabbit, &redis, &dbs);
    let platform = Platform::start(c).await.unwrap();
    support::owns(&rabbit, &platform);
    let a = platform.addr;

    register(a, "tess@example.com", "Tess").await;
    let tokens = login(a, "tess@example.com", Some("tess-laptop")).await;
    let mut socket = ws(a, &access(&tokens)).await;
    let (status, payment) = call(
        a,
        "POST",
        "/api/payments",
        Some(&access(&tokens)),
        Some(json!({"amount": "7.00", "currency": "EUR", "description": "traced"})),
    )
    .await;
    assert_eq!(status, 201, "{payment}");
    let id = payment["id"].as_str().unwrap().to_owned();
    let frame = next_json(&mut socket, Duration::from_secs(5))
        .await
        .expect("the owner hears of the payment");
    assert_eq!(frame["event"]["payload"]["payment_id"], id.as_str());

    // The gateway's span for the POST starts the trace (the client sent no traceparent).
    let root = |spans: &[Received]| {
        spans
            .iter()
            .find(|s| {
                s.span.name == "http.request"
                    && s.parent_span_id().is_empty()
                    && s.attr("http.request.method").as_deref() == Some("POST")
                    && s.attr("url.path").as_deref() == Some("/api/payments")
            })
            .cloned()
    };
    // Spans are exported when they end: the consumers' after their acknowledgement. Flush
    // until the delivery span of this trace is in.
    let mut spans = Vec::new();
    for _ in 0..100 {
        tokio::task::block_in_place(|| telemetry.flush()).unwrap();
        spans = receiver.spans();
        let done = root(&spans).is_some_and(|r| {
            spans
                .iter()
                .filter(|s| s.trace_id() == r.trace_id() && s.span.name == "event.handle")
                .count()
                >= 2
                && spans
                    .iter()
                    .any(|s| s.trace_id() == r.trace_id() && s.span.name == "ws.deliver")
        });
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gateway = root(&spans).expect("the gateway's request span was exported");
    assert_eq!(gateway.span.kind, 2, "SERVER");
    let payments = child(&spans, "http.request", &gateway, |_| true);
    assert_eq!(
        payments.attr("http.response.status_code").as_deref(),
        Some("201")
    );
    let write = child(&spans, "outbox.write", payments, |s| {
        s.attr("event_type").as_deref() == Some("payments.payment.created")
    });
    let publish = child(&spans, "event.publish", write, |_| true);
    assert_eq!(publish.span.kind, 4, "PRODUCER");
    assert_eq!(
        publish.attr("message_id"),
        write.attr("message_id"),
        "the relay published the row written"
    );
    let consumed = |queue: &'static str| {
        move |s: &Received| s.attr("queue").is_some_and(|q| q.contains(queue))
    };
    let admin = child(&spans, "event.handle", publish, consumed("admin"));
    assert_eq!(admin.span.kind, 5, "CONSUMER");
    let at_gateway = child(&spans, "event.handle", publish, consumed("gateway"));
    let delivery = child(&spans, "ws.deliver", at_gateway, |_| true);
    assert_eq!(
        delivery.attr("rooms").as_deref(),
        Some("2"),
        "user and payment rooms"
    );
    assert!(
        spans.iter().all(|s| s.service == "platform"),
        "every span names the service"
    );

    platform.shutdown().await;
    drop(telemetry);
}
