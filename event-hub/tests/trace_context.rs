//! Trace context across the broker: a consumer's span is the child of the span that published
//! the event, on both backends, with the W3C context carried in the message headers. One global
//! OpenTelemetry subscriber for this binary, recording to memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{Fixture, Kind, UserCreated, fast_retry};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tidewell_core::Envelope;
use tidewell_event_hub::{HandlerError, Subscription};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static SETUP: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        (exporter, provider)
    })
}

fn spans() -> Vec<SpanData> {
    exporter().0.get_finished_spans().unwrap()
}

async fn consumer_span_is_child_of_publish(kind: Kind) {
    exporter();
    let fx = Fixture::new(kind).await;
    let queue = fx.service("traced", &fast_retry(2));
    let queue_name = queue.name();
    let hub = fx.hub(fx.topology().service(queue.bind("auth.#"))).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    hub.subscribe(
        Subscription::new(&queue_name),
        move |e: Envelope<UserCreated>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.payload().user_id);
                if e.payload().user_id == 2 {
                    Err(HandlerError::permanent("user 2 is refused"))
                } else {
                    Ok(())
                }
            }
        },
    )
    .await
    .unwrap();

    let marker = fx.prefix.clone();
    for user_id in [1, 2] {
        let envelope = hub.envelope(UserCreated {
            user_id,
            email: marker.clone(),
        });
        hub.publish(&envelope)
            .instrument(tracing::info_span!("request", marker = %marker, user_id))
            .await
            .unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap(),
            Some(user_id)
        );
    }
    hub.shutdown(Duration::from_secs(5)).await.unwrap();

    let all = spans();
    let attr = |s: &SpanData, k: &str| {
        s.attributes
            .iter()
            .find(|a| a.key.as_str() == k)
            .map(|a| a.value.to_string())
    };
    for user_id in [1, 2] {
        let request = all
            .iter()
            .find(|s| {
                s.name == "request"
                    && attr(s, "marker").as_deref() == Some(marker.as_str())
                    && attr(s, "user_id") == Some(user_id.to_string())
            })
            .expect("request span");
        let trace_id = request.span_context.trace_id();
        let publish = all
            .iter()
            .find(|s| s.name == "event.publish" && s.span_context.trace_id() == trace_id)
            .expect("publish span in the request's trace");
        assert_eq!(publish.parent_span_id, request.span_context.span_id());
        let handle = all
            .iter()
            .find(|s| s.name == "event.handle" && s.span_context.trace_id() == trace_id)
            .unwrap_or_else(|| panic!("{kind:?}: consumer span in the publisher's trace"));
        assert_eq!(
            handle.parent_span_id,
            publish.span_context.span_id(),
            "{kind:?}: consumed from that publish"
        );
        let failed = matches!(handle.status, opentelemetry::trace::Status::Error { .. });
        assert_eq!(failed, user_id == 2, "{kind:?}: status {:?}", handle.status);
        if user_id == 2 {
            assert!(handle.events.iter().any(|e| e.name == "exception"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_consumer_span_is_child_of_publish() {
    consumer_span_is_child_of_publish(Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_consumer_span_is_child_of_publish() {
    consumer_span_is_child_of_publish(Kind::Amqp).await;
}
