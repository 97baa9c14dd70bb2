//! Body types: what the proxy returns, and the request body cap that trips mid-stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;

/// A boxed error, as bodies carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy returns: the upstream's, streamed, or a small JSON error.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body (no allocation: the boxed body is zero-sized).
pub(crate) fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Whether `error` (a failed upstream exchange) was caused by [`Limited`] tripping: the request
/// body went over the route's limit mid-stream.
pub(crate) fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<TooLarge>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The request body was larger than the route allows.
#[derive(Debug, thiserror::Error)]
#[error("request body over the route's {0}-byte limit")]
pub(crate) struct TooLarge(pub(crate) u64);

pin_project_lite::pin_project! {
    /// Passes a body through, failing it (and raising `exceeded`) past `max` bytes.
    pub(crate) struct Limited<B> {
        #[pin]
        inner: B,
        seen: u64,
        max: u64,
    }
}

impl<B> Limited<B> {
    pub(crate) fn new(inner: B, max: u64) -> Self {
        Self {
            inner,
            seen: 0,
            max,
        }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen = this.seen.saturating_add(data.len() as u64);
                    if *this.seen > *this.max {
                        return Poll::Ready(Some(Err(Box::new(TooLarge(*this.max)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trips_past_the_limit() {
        let body = Limited::new(http_body_util::Full::new(Bytes::from(vec![0u8; 11])), 10);
        let err = body.collect().await.unwrap_err();
        assert!(is_too_large(&*err), "{err}");
        let body = Limited::new(http_body_util::Full::new(Bytes::from(vec![0u8; 10])), 10);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 10);
        let other: BoxError = "connection reset".into();
        assert!(!is_too_large(&*other));
    }
}
