//! One request followed end to end through OTLP: HTTP (with the caller's `traceparent`) -> handler
//! -> in-memory event hub -> consumer, exported by `init` to a test OTLP/HTTP receiver that decodes
//! with the official `opentelemetry-proto` types. One test per binary: `init` installs the global
//! subscriber.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::{Deserialize, Serialize};
use tidewell_core::Event;
use tidewell_event_hub::{HandlerError, Hub, ServiceQueue, Subscription, Topology};
use tidewell_observability::{
    CorrelationLayer, LogFormat, TelemetryConfig, correlation_id_of, init,
};
use tidewell_testkit::otlp::{Receiver, Span, attr, hex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer as _, service_fn};

#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order: u32,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "shop.order.placed";
    const VERSION: u16 = 1;
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn http_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n{headers}\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_http_through_the_hub_to_the_consumer() {
    let receiver = Receiver::start().await;
    let telemetry = init(
        TelemetryConfig::new("otlp-test")
            .with_log_format(LogFormat::Off)
            .with_trace_filter("info")
            .with_otlp_traces_endpoint(receiver.endpoint()),
    )
    .unwrap();
    assert!(telemetry.is_exporting());
    assert!(
        init(TelemetryConfig::new("again"))
            .unwrap_err()
            .to_string()
            .contains("once"),
        "a second init is refused with a clear error"
    );

    let hub = Hub::builder("shop")
        .url(format!(
            "memory://{}",
            tidewell_testkit::unique_name("otlp")
        ))
        .topology(Topology::new().service(ServiceQueue::new("shop").bind("shop.#")))
        .connect()
        .await
        .unwrap();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(u32, String)>();
    hub.subscribe(
        Subscription::new("shop.events"),
        move |e: tidewell_core::Envelope<OrderPlaced>| {
            let done = done_tx.clone();
            async move {
                let order = e.payload().order;
                tracing::info_span!("consumer.work", order).in_scope(|| {
                    tracing::info!("working");
                });
                // ok to ignore: the test may have stopped listening
                let _ = done.send((order, e.correlation_id().to_string()));
                if order == 2 {
                    return Err(HandlerError::permanent("order 2 is refused"));
                }
                Ok(())
            }
        },
    )
    .await
    .unwrap();

    let app_hub = hub.clone();
    let app = CorrelationLayer.layer(service_fn(
        move |req: http::Request<hyper::body::Incoming>| {
            let hub = app_hub.clone();
            async move {
                let id = correlation_id_of(req.headers());
                if req.uri().path() == "/fail" {
                    return Ok::<_, Infallible>(
                        http::Response::builder()
                            .status(500)
                            .body(Full::new(Bytes::from("no")))
                            .unwrap(),
                    );
                }
                let order = req
                    .uri()
                    .path()
                    .trim_start_matches("/order/")
                    .parse()
                    .unwrap();
                hub.publish(&hub.envelope(OrderPlaced { order }).with_correlation_id(id))
                    .await
                    .unwrap();
                Ok(http::Response::new(Full::new(Bytes::from("ok"))))
            }
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let response = http_get(
        addr,
        "/order/1",
        &format!(
            "traceparent: 00-{CALLER_TRACE}-{CALLER_SPAN}-01\r\nx-correlation-id: checkout-77\r\n"
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("x-correlation-id: checkout-77"),
        "{response}"
    );
    let (order, correlation) = tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((order, correlation.as_str()), (1, "checkout-77"));

    // A failing consumer and a failing request: both spans are marked failed.
    assert!(
        http_get(addr, "/order/2", "")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .unwrap()
            .unwrap()
            .0,
        2
    );
    assert!(
        http_get(addr, "/fail", "")
            .await
            .starts_with("HTTP/1.1 500")
    );

    // Spans end when their work ends; give the consumer a moment to settle, then flush.
    let find = |name: &str, pred: &dyn Fn(&Span) -> bool| {
        receiver
            .spans_named(name)
            .into_iter()
            .find(|s| pred(&s.span))
            .map(|s| s.span)
    };
    let mut handled_failure = None;
    for _ in 0..50 {
        let t = telemetry_flush(&telemetry).await;
        assert!(t.is_ok(), "{t:?}");
        handled_failure = find("event.handle", &|s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.code == StatusCode::Error as i32)
        });
        if handled_failure.is_some() && find("consumer.work", &|_| true).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let trace = |s: &Span| hex(&s.trace_id);
    let in_caller_trace = |s: &Span| trace(s) == CALLER_TRACE;
    let request = find("http.request", &in_caller_trace).expect("request span exported");
    assert_eq!(
        hex(&request.parent_span_id),
        CALLER_SPAN,
        "continues the caller's span"
    );
    assert_eq!(request.kind, 2, "SERVER");
    assert_eq!(
        attr(&request, "correlation_id").as_deref(),
        Some("checkout-77")
    );
    assert_eq!(
        attr(&request, "http.response.status_code").as_deref(),
        Some("200")
    );

    let publish = find("event.publish", &in_caller_trace).expect("publish span exported");
    assert_eq!(
        publish.parent_span_id, request.span_id,
        "published from the request"
    );
    assert_eq!(publish.kind, 4, "PRODUCER");

    let handle = find("event.handle", &in_caller_trace).expect("consumer span exported");
    assert_eq!(
        handle.parent_span_id, publish.span_id,
        "consumed from that publish"
    );
    assert_eq!(handle.kind, 5, "CONSUMER");
    assert_eq!(
        attr(&handle, "correlation_id").as_deref(),
        Some("checkout-77")
    );

    let work = find("consumer.work", &in_caller_trace).expect("handler's own span exported");
    assert_eq!(
        work.parent_span_id, handle.span_id,
        "the handler runs inside event.handle"
    );

    // Errors: the refused event and the 500 carry an error status and an exception event.
    let failed = handled_failure.expect("the refused event's span is marked failed");
    assert_ne!(
        trace(&failed),
        CALLER_TRACE,
        "a request without traceparent starts a trace"
    );
    assert!(failed.events.iter().any(|e| e.name == "exception"
        && e.attributes.iter().any(|a| a.key == "exception.message"
            && format!("{:?}", a.value).contains("order 2 is refused"))));
    let failed_request = find("http.request", &|s| {
        attr(s, "http.response.status_code").as_deref() == Some("500")
    })
    .expect("the 500 request span exported");
    assert_eq!(
        failed_request.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert!(failed_request.events.iter().any(|e| e.name == "exception"));

    assert!(
        receiver.spans().iter().all(|s| s.service == "otlp-test"),
        "every span names the service"
    );
    hub.shutdown(Duration::from_secs(1)).await.unwrap();
    drop(telemetry);
}

async fn telemetry_flush(
    telemetry: &tidewell_observability::TelemetryGuard,
) -> Result<(), tidewell_observability::Error> {
    tokio::task::block_in_place(|| telemetry.flush())
}
