//! Reading a request body with a limit that is enforced while reading.

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use hookwire_core::signing::{HeaderLookup, HeaderSource};
use http_body::Body;
use http_body_util::BodyExt;

use crate::Rejection;

/// Default body limit: 1 MiB.
pub const DEFAULT_RECEIVER_MAX_BODY: usize = 1024 * 1024;

/// Reads `body` into memory, refusing with 413 as soon as it is known to exceed `limit` bytes:
/// from the declared length (`Content-Length`) before reading anything, else after at most
/// `limit` bytes plus one frame. A body that fails mid-read is a 400 `bad-request`.
///
/// ```
/// # hookwire_core::idempotency::block_on(async {
/// use http_body_util::Full;
/// let ok = hookwire_receiver::read_limited(Full::new(bytes::Bytes::from_static(b"{}")), 2).await;
/// assert_eq!(&ok.unwrap()[..], b"{}");
/// let err = hookwire_receiver::read_limited(Full::new(bytes::Bytes::from_static(b"{}")), 1).await;
/// assert_eq!(err.unwrap_err().status(), 413);
/// # });
/// ```
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Data: Into<Bytes>,
{
    let mut acc = LimitedBody::new(limit, Some(body.size_hint().lower()))?;
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Rejection::bad_request())?;
        if let Ok(data) = frame.into_data() {
            acc.push(data.into())?;
        }
        // Trailers carry nothing to verify.
    }
    Ok(acc.finish())
}

/// [`read_limited`] for a body that arrives as a stream of chunks (actix-web's payload, warp's
/// body stream): the declared length is read from the `Content-Length` header of `headers`.
///
/// ```
/// # hookwire_core::idempotency::block_on(async {
/// use bytes::Bytes;
/// let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{}"))]);
/// let body = hookwire_receiver::read_stream(&http::HeaderMap::new(), chunks, 2).await;
/// assert_eq!(&body.unwrap()[..], b"{}");
/// # });
/// ```
pub async fn read_stream<H, S, D, E>(
    headers: &H,
    stream: S,
    limit: usize,
) -> Result<Bytes, Rejection>
where
    H: HeaderSource + ?Sized,
    S: Stream<Item = Result<D, E>>,
    D: Buf,
{
    let declared = match headers.lookup("content-length") {
        HeaderLookup::One(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse().ok()),
        _ => None,
    };
    let mut acc = LimitedBody::new(limit, declared)?;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let mut chunk = chunk.map_err(|_| Rejection::bad_request())?;
        // Zero-copy when the chunk is already `Bytes`.
        let n = chunk.remaining();
        acc.push(chunk.copy_to_bytes(n))?;
    }
    Ok(acc.finish())
}

/// Accumulates body chunks under a limit; what every adapter's body reader is built on.
///
/// ```
/// use bytes::Bytes;
/// use hookwire_receiver::LimitedBody;
/// let mut b = LimitedBody::new(4, None).unwrap();
/// b.push(Bytes::from_static(b"ab")).unwrap();
/// b.push(Bytes::from_static(b"cd")).unwrap();
/// assert_eq!(b.push(Bytes::from_static(b"e")).unwrap_err().status(), 413);
/// assert!(LimitedBody::new(4, Some(5)).is_err(), "a declared length over the limit");
/// ```
#[derive(Debug)]
pub struct LimitedBody {
    limit: usize,
    total: usize,
    // The usual body is one chunk: keep it without copying.
    first: Option<Bytes>,
    buf: Option<BytesMut>,
}

impl LimitedBody {
    /// Starts reading; refuses at once when the `declared` length exceeds `limit`.
    pub fn new(limit: usize, declared: Option<u64>) -> Result<Self, Rejection> {
        if declared.is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit)) {
            return Err(Rejection::too_large());
        }
        Ok(Self {
            limit,
            total: 0,
            first: None,
            buf: None,
        })
    }

    /// Adds a chunk; 413 as soon as the total passes the limit.
    pub fn push(&mut self, chunk: Bytes) -> Result<(), Rejection> {
        self.total = self.total.saturating_add(chunk.len());
        if self.total > self.limit {
            return Err(Rejection::too_large());
        }
        match (&mut self.buf, self.first.take()) {
            (Some(b), _) => b.extend_from_slice(&chunk),
            (None, None) => self.first = Some(chunk),
            (None, Some(f)) => {
                let mut b = BytesMut::with_capacity(self.total);
                b.extend_from_slice(&f);
                b.extend_from_slice(&chunk);
                self.buf = Some(b);
            }
        }
        Ok(())
    }

    /// The whole body.
    pub fn finish(self) -> Bytes {
        match self.buf {
            Some(b) => b.freeze(),
            None => self.first.unwrap_or_default(),
        }
    }
}
