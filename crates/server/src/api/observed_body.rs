//! A response or request body watched as it passes: an [`Observer`] sees each data frame and
//! the trailers, and learns once when the body ends (or is dropped: a cancelled call). The
//! gRPC metrics and the distributed-tracing spans are both observers.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::HeaderMap;

/// What watches a body.
pub trait Observer: Send + Unpin + 'static {
    fn data(&mut self, _data: &[u8]) {}
    fn trailers(&mut self, _trailers: &HeaderMap) {}
    /// The body ended or was dropped; called once.
    fn finish(&mut self);
}

/// `inner`, watched by `observer`.
pub fn observe(inner: Body, observer: impl Observer) -> Body {
    Body::new(Observed { inner, observer, finished: false })
}

struct Observed<O: Observer> {
    inner: Body,
    observer: O,
    finished: bool,
}

impl<O: Observer> Observed<O> {
    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.observer.finish();
        }
    }
}

impl<O: Observer> http_body::Body for Observed<O> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.observer.data(data);
                } else if let Some(t) = frame.trailers_ref() {
                    self.observer.trailers(t);
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<O: Observer> Drop for Observed<O> {
    fn drop(&mut self) {
        self.finish();
    }
}
