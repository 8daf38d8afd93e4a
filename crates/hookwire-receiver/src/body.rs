//! Reading a request body with a limit that is enforced while reading.

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

use crate::Rejection;

/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

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
    let hint = body.size_hint();
    if usize::try_from(hint.lower()).map_or(true, |n| n > limit) {
        return Err(Rejection::too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Rejection::bad_request())?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let data: Bytes = data.into();
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(Rejection::too_large());
        }
        // The common case is a single frame: keep it without copying.
        match (&mut first, &mut buf) {
            (None, None) => first = Some(data),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(total.min(limit));
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                buf = Some(b);
                first = None;
            }
            (_, Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}
