//! An OTLP/HTTP traces receiver for tests: it decodes every export request with the official
//! `opentelemetry-proto` types and keeps the spans, each with the `service.name` of its resource.
//!
//! ```no_run
//! # async fn demo() {
//! let receiver = tidewell_testkit::otlp::Receiver::start().await;
//! // Point the exporter at `receiver.endpoint()`, run the code under test, flush, then:
//! let requests = receiver.spans_named("http.request");
//! # }
//! ```

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use tokio::net::TcpListener;

pub use opentelemetry_proto::tonic::trace::v1::Span;

/// One exported span and the `service.name` of the resource that exported it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The exporter's `service.name` (empty if it sent none).
    pub service: String,
    /// The span as exported.
    pub span: Span,
}

impl Received {
    /// The trace id, as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id, as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id, as hex (empty for a root span).
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// The span's attribute `key` as text (strings as they are, integers and booleans printed).
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span, key)
    }
}

/// A running receiver; it stops with the test's runtime.
#[derive(Clone, Debug)]
pub struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the OTLP receiver cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the OTLP receiver has no address: {e}"));
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let kept = Arc::clone(&spans);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let kept = Arc::clone(&kept);
                            async move { Ok::<_, Infallible>(export(req, &kept).await) }
                        },
                    );
                    // ok to ignore: an exporter that hangs up mid-request loses only its own batch
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}/v1/traces"),
            spans,
        }
    }

    /// The URL to export traces to (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans received so far named `name`.
    pub fn spans_named(&self, name: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|s| s.span.name == name)
            .collect()
    }
}

/// Decodes one export request and keeps its spans; a request the receiver cannot read is
/// answered 400 (the exporter logs it) and fails nothing here: the test then misses spans.
async fn export(
    req: http::Request<hyper::body::Incoming>,
    kept: &Mutex<Vec<Received>>,
) -> http::Response<Full<Bytes>> {
    let answer = |status: u16| {
        let mut response = http::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        response
    };
    let protobuf = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-protobuf");
    if req.uri().path() != "/v1/traces" || !protobuf {
        return answer(400);
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return answer(400);
    };
    let Ok(request) =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
    else {
        return answer(400);
    };
    let mut spans = kept.lock().unwrap_or_else(PoisonError::into_inner);
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| Received {
                service: service.clone(),
                span,
            }));
        }
    }
    answer(200)
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `span`'s attribute `key` as text (strings as they are, integers and booleans printed).
pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(text)
}

fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}
