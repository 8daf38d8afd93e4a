//! The response body (an SSE stream, a buffer, or nothing) and the response heads built on it.

use crate::frame::Frame;
use crate::queue::StreamSubscription;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body: an SSE stream, a complete buffer, or nothing.
///
/// Implements [`http_body::Body`], so it can be returned from hyper services and (with the
/// `axum` feature, or `axum::body::Body::new`) from axum handlers. An SSE body yields each
/// frame's shared bytes as its own data frame; hyper queues them and writes several with one
/// vectored write.
pub struct ResponseBody {
    kind: BodyKind,
}

enum BodyKind {
    Full(Option<Bytes>),
    Sse {
        preamble: Option<Bytes>,
        sub: StreamSubscription,
        pending: VecDeque<Frame>,
        batch: Vec<Frame>,
        // Dropped with the body, i.e. when the connection ends (presence).
        _guard: Option<Box<dyn Send + Sync>>,
    },
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Full(b) => f
                .debug_tuple("Full")
                .field(&b.as_ref().map(Bytes::len))
                .finish(),
            BodyKind::Sse { sub, .. } => f.debug_tuple("Sse").field(sub).finish(),
        }
    }
}

impl ResponseBody {
    /// A complete body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        Self {
            kind: BodyKind::Full(Some(b.into())),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: BodyKind::Full(None),
        }
    }

    /// An SSE body: `preamble` first, then every frame of `sub`.
    pub fn sse(preamble: Bytes, sub: StreamSubscription) -> Self {
        Self::sse_with_guard(preamble, sub, None)
    }

    pub(super) fn sse_with_guard(
        preamble: Bytes,
        sub: StreamSubscription,
        guard: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Self {
            kind: BodyKind::Sse {
                preamble: Some(preamble),
                sub,
                pending: VecDeque::new(),
                batch: Vec::new(),
                _guard: guard,
            },
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            BodyKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(http_body::Frame::data(b)))),
            BodyKind::Sse {
                preamble,
                sub,
                pending,
                batch,
                ..
            } => {
                if let Some(p) = preamble.take() {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(p))));
                }
                if pending.is_empty() {
                    match sub.poll_batch(cx, batch) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(false) => return Poll::Ready(None),
                        Poll::Ready(true) => pending.extend(batch.drain(..)),
                    }
                }
                Poll::Ready(
                    pending
                        .pop_front()
                        .map(|f| Ok(http_body::Frame::data(f.sse()))),
                )
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, BodyKind::Full(None))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.kind {
            BodyKind::Full(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            BodyKind::Sse { .. } => http_body::SizeHint::default(),
        }
    }
}

/// The response head of an SSE stream, shared by every serving path.
pub(crate) const SSE_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache, no-store"),
    ("x-accel-buffering", "no"),
];

pub(crate) fn sse_head(body: ResponseBody) -> Response<ResponseBody> {
    let mut r = Response::new(body);
    for (k, v) in SSE_HEADERS {
        r.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    r
}

/// A plain response with `status` and a short text body.
pub fn status_response(status: StatusCode) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(
        status
            .canonical_reason()
            .unwrap_or("error")
            .as_bytes()
            .to_vec(),
    ));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
