//! Correlation ids on HTTP: read or make one per request, keep it in the request's extensions and
//! span, echo it on the response.

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use tidewell_core::{CorrelationId, propagation};
use tower_layer::Layer;
use tower_service::Service;

/// The header the id is read from first and echoed in.
pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");
/// The header read when `x-correlation-id` is absent.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The correlation id of a request: from `x-correlation-id`, else `x-request-id`, else a fresh
/// UUID v7. A value that is not a valid [`CorrelationId`] (too long, bad characters) is replaced,
/// never trusted.
pub fn correlation_id_of(headers: &http::HeaderMap) -> CorrelationId {
    incoming_id(headers).map(|(id, _)| id).unwrap_or_default()
}

/// A tower layer that gives every request a correlation id: stored in the request extensions
/// (`req.extensions().get::<CorrelationId>()`), recorded on an `http.request` server span, and
/// echoed in the response's `x-correlation-id`.
///
/// The span continues the caller's trace when the request carries a W3C `traceparent` (with an
/// OpenTelemetry layer installed, e.g. by [`init`](crate::init)), records the response status and
/// is marked failed on a 5xx or a service error. For outbound calls, take the id from the
/// extensions and call [`inject_span`](crate::inject_span) on the outbound headers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tidewell_core::{CorrelationId, propagation};
/// use tidewell_observability::CorrelationLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// let svc = CorrelationLayer.layer(service_fn(|req: http::Request<()>| async move {
///     let id = req.extensions().get::<CorrelationId>().cloned();
///     Ok::<_, std::convert::Infallible>(http::Response::new(id.map(|i| i.to_string()).unwrap_or_default()))
/// }));
/// let req = http::Request::builder().header("x-request-id", "req-42").body(()).unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.headers()["x-correlation-id"], "req-42");
/// assert_eq!(res.body(), "req-42");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CorrelationLayer;

impl<S> Layer<S> for CorrelationLayer {
    type Service = CorrelationService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CorrelationService { inner }
    }
}

/// The service made by [`CorrelationLayer`].
#[derive(Clone, Debug)]
pub struct CorrelationService<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for CorrelationService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = CorrelationFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (id, header) = match incoming_id(req.headers()) {
            // Echo the caller's own header value: the same bytes, no copy.
            Some((id, value)) => (id, Some(value.clone())),
            None => {
                let id = CorrelationId::new();
                let header = Some(id.to_header_value());
                (id, header)
            }
        };
        // Without a subscriber that wants it, no span at all: `info_span!` would still record its
        // fields for the `log` fallback, a cost paid on every request for nothing.
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            let span = tracing::info_span!(
                "http.request",
                otel.kind = "server",
                correlation_id = %id,
                http.request.method = %req.method(),
                url.path = %req.uri().path(),
                http.response.status_code = tracing::field::Empty,
            );
            // A caller's `traceparent` makes this request part of its trace.
            propagation::set_span_parent(&span, req.headers());
            span
        } else {
            tracing::Span::none()
        };
        req.extensions_mut().insert(id);
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        CorrelationFuture {
            inner,
            header,
            span,
        }
    }
}

/// The caller's valid correlation id and the header value it came in.
fn incoming_id(headers: &http::HeaderMap) -> Option<(CorrelationId, &HeaderValue)> {
    [CORRELATION_HEADER, REQUEST_ID_HEADER]
        .iter()
        .find_map(|h| {
            let value = headers.get(h)?;
            Some((value.to_str().ok()?.parse().ok()?, value))
        })
}

pin_project_lite::pin_project! {
    /// The response future of [`CorrelationService`].
    pub struct CorrelationFuture<F> {
        #[pin]
        inner: F,
        header: Option<HeaderValue>,
        span: tracing::Span,
    }
}

impl<F, RB, E> Future for CorrelationFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match this.inner.poll(cx) {
            Poll::Ready(Ok(mut res)) => {
                if let Some(h) = this.header.take() {
                    res.headers_mut().insert(CORRELATION_HEADER, h);
                }
                let status = res.status();
                this.span
                    .record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    propagation::record_error(this.span, &status);
                }
                Poll::Ready(Ok(res))
            }
            Poll::Ready(Err(e)) => {
                propagation::record_error(this.span, &"the service failed without a response");
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
