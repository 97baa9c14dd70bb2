//! Correlation ids on HTTP: read or make one per request, keep it in the request's
//! `x-correlation-id` header and span, echo it on the response.

use std::task::{Context, Poll};

use crate::{CorrelationId, propagation};
use http::{HeaderName, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{CORRELATION_HEADER, REQUEST_ID_HEADER};

/// The correlation id of a request: from `x-correlation-id`, else `x-request-id`, else a fresh
/// UUID v7. A value that is not a valid [`CorrelationId`] (too long, bad characters) is replaced,
/// never trusted.
///
/// Behind [`CorrelationLayer`] the request's `x-correlation-id` always holds its valid id, so this
/// reads the layer's id (and always the same one for one request).
pub fn correlation_id_of(headers: &http::HeaderMap) -> CorrelationId {
    incoming_value(headers)
        .and_then(|(_, v)| v.to_str().ok()?.parse().ok())
        .unwrap_or_default()
}

/// The correlation id of a request as a header value, as [`correlation_id_of`] finds it: the
/// caller's valid value itself (shared, not copied), else a fresh UUID v7. For copying the id into
/// outbound or forwarded headers without parsing it.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-request-id", "req-42".parse().unwrap());
/// assert_eq!(tidewell_core::correlation::correlation_header(&headers), "req-42");
/// ```
pub fn correlation_header(headers: &http::HeaderMap) -> HeaderValue {
    incoming_value(headers).map_or_else(
        || CorrelationId::new().to_header_value(),
        |(_, v)| v.clone(),
    )
}

/// A tower layer that gives every request a correlation id: the request's own (a valid
/// `x-correlation-id`, else a valid `x-request-id`) or a fresh UUID v7. After the layer the
/// request's `x-correlation-id` header holds that id (read it with [`correlation_id_of`]; outbound
/// calls and proxies forward it with the other headers); it is recorded on an `http.request`
/// server span and echoed in the response's `x-correlation-id`.
///
/// The span continues the caller's trace when the request carries a W3C `traceparent` (with an
/// OpenTelemetry layer installed, e.g. by `tidewell_observability::init`), records the response status and
/// is marked failed on a 5xx or a service error. For outbound calls, copy the id into the
/// outbound headers and call [`inject_span`](crate::propagation::inject_span) on them.
///
/// A caller's valid id costs no allocation: its header value is shared, not parsed into a copy.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tidewell_core::correlation::{CorrelationLayer, correlation_id_of};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// let svc = CorrelationLayer.layer(service_fn(|req: http::Request<()>| async move {
///     let id = correlation_id_of(req.headers());
///     Ok::<_, std::convert::Infallible>(http::Response::new(id.to_string()))
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
        let header = match incoming_value(req.headers()) {
            // The caller's own value, echoed: the same bytes, no copy.
            Some((name, value)) => {
                let value = value.clone();
                if name != CORRELATION_HEADER {
                    req.headers_mut().insert(CORRELATION_HEADER, value.clone());
                }
                value
            }
            None => {
                let value = CorrelationId::new().to_header_value();
                // Replaces an invalid one: what handlers and proxies read next is valid.
                req.headers_mut().insert(CORRELATION_HEADER, value.clone());
                value
            }
        };
        // Without a subscriber that wants it, no span at all: `info_span!` would still record its
        // fields for the `log` fallback, a cost paid on every request for nothing.
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            let span = tracing::info_span!(
                "http.request",
                otel.kind = "server",
                // Checked visible ASCII: `to_str` cannot fail.
                correlation_id = header.to_str().unwrap_or_default(),
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
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        CorrelationFuture {
            inner,
            header: Some(header),
            span,
        }
    }
}

/// Header maps with at most this many values are searched with one scan, which looks for both
/// names in one pass; larger ones by hashed lookups. (The two names are usually absent, and two
/// hashed misses cost more than comparing a browser's dozen or so names, most of them standard
/// headers that differ from these at the first comparison.)
const SCAN_UP_TO: usize = 16;

/// The first header holding a valid correlation id, and its value: a valid first
/// `x-correlation-id` value, else a valid first `x-request-id` value.
fn incoming_value(headers: &http::HeaderMap) -> Option<(HeaderName, &HeaderValue)> {
    let valid = |v: &HeaderValue| v.to_str().is_ok_and(CorrelationId::is_valid);
    if headers.len() > SCAN_UP_TO {
        return [CORRELATION_HEADER, REQUEST_ID_HEADER]
            .into_iter()
            .find_map(|name| {
                let value = headers.get(&name)?;
                valid(value).then_some((name, value))
            });
    }
    // Only the first value of each name counts, as with `HeaderMap::get`.
    let (mut correlation_seen, mut request) = (false, None);
    for (name, value) in headers {
        if !correlation_seen && *name == CORRELATION_HEADER {
            if valid(value) {
                return Some((CORRELATION_HEADER, value));
            }
            correlation_seen = true;
        } else if request.is_none() && *name == REQUEST_ID_HEADER {
            request = Some(value);
        }
    }
    request.filter(|v| valid(v)).map(|v| (REQUEST_ID_HEADER, v))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A header map holding `fields` after `padding` unrelated fields.
    fn map(padding: usize, fields: &[(&str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for i in 0..padding {
            headers.append(
                HeaderName::try_from(format!("x-pad-{i}")).unwrap(),
                HeaderValue::from_static("p"),
            );
        }
        for (name, value) in fields {
            headers.append(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn found(headers: &http::HeaderMap) -> Option<(String, String)> {
        incoming_value(headers).map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn the_scan_and_the_hashed_lookups_find_the_same_id() {
        type Fields = &'static [(&'static str, &'static str)];
        let cases: &[(Fields, Option<(&str, &str)>)] = &[
            (&[], None),
            (
                &[("x-correlation-id", "c-1")],
                Some(("x-correlation-id", "c-1")),
            ),
            (&[("x-request-id", "r-1")], Some(("x-request-id", "r-1"))),
            (
                &[("x-request-id", "r-1"), ("x-correlation-id", "c-1")],
                Some(("x-correlation-id", "c-1")),
            ),
            // An invalid correlation id falls back to the request id.
            (
                &[("x-correlation-id", "bad;id"), ("x-request-id", "r-1")],
                Some(("x-request-id", "r-1")),
            ),
            // Only the first value of a name counts.
            (
                &[("x-correlation-id", "bad;id"), ("x-correlation-id", "c-2")],
                None,
            ),
            (
                &[("x-request-id", "r-1"), ("x-request-id", "r-2")],
                Some(("x-request-id", "r-1")),
            ),
            (&[("x-request-id", "bad,id"), ("x-request-id", "r-2")], None),
        ];
        // 0 and 3 padding fields: scanned; 40: over SCAN_UP_TO, hashed lookups.
        for padding in [0, 3, 40] {
            for (fields, expected) in cases {
                let headers = map(padding, fields);
                assert_eq!(
                    headers.len() > SCAN_UP_TO,
                    padding == 40,
                    "the case takes the path it means to"
                );
                let expected = expected.map(|(n, v)| (n.to_owned(), v.to_owned()));
                assert_eq!(
                    found(&headers),
                    expected,
                    "{fields:?} after {padding} fields"
                );
            }
        }
    }
}
