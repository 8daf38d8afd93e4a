//! The failure responses every adapter answers with, so status and body are identical whatever
//! the framework.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

/// Header set on a 2xx answer to a duplicate of an already processed delivery.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A request refused before (or instead of) its handler: a status, a machine-readable reason and
/// the JSON body `{"error":reason}` (plus `"detail"` for validation failures).
///
/// ```
/// use hookwire_receiver::Rejection;
/// let r = Rejection::missing_key();
/// assert_eq!(r.status(), 400);
/// assert_eq!(r.body(), r#"{"error":"missing-key"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: u16,
    reason: Cow<'static, str>,
    detail: Option<String>,
    retry_after: Option<u64>,
}

impl Rejection {
    /// A rejection with `status` and `reason`.
    pub fn new(status: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            reason: reason.into(),
            detail: None,
            retry_after: None,
        }
    }
    /// 400 `empty-body`: a secret is configured and the body is empty (a framework probably
    /// consumed it before verification).
    pub fn empty_body() -> Self {
        Self::new(400, "empty-body")
    }
    /// 400 `missing-key`: no usable idempotency key.
    pub fn missing_key() -> Self {
        Self::new(400, "missing-key")
    }
    /// 400 `key-too-long`: the idempotency key is longer than [`crate::MAX_KEY_LEN`] bytes.
    pub fn key_too_long() -> Self {
        Self::new(400, "key-too-long")
    }
    /// 401 with a verification reason.
    pub fn unauthorized(e: hookwire_core::signing::VerifyError) -> Self {
        Self::new(401, e.as_str())
    }
    /// 404 `unknown-event`.
    pub fn unknown_event() -> Self {
        Self::new(404, "unknown-event")
    }
    /// 409 `in-flight` with `Retry-After`: the same key is being processed right now.
    pub fn in_flight(retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(409, "in-flight")
        }
    }
    /// 413 `body-too-large`.
    pub fn too_large() -> Self {
        Self::new(413, "body-too-large")
    }
    /// 415 `unsupported-media-type`: a content type other than JSON where JSON is required.
    pub fn unsupported_media_type() -> Self {
        Self::new(415, "unsupported-media-type")
    }
    /// 422 `validation-failed` with the parser's message as `detail`.
    pub fn validation_failed(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(422, "validation-failed")
        }
    }
    /// 500 `handler-failed`; the detail goes to the log unless the receiver exposes it.
    pub fn handler_failed(detail: Option<String>) -> Self {
        Self {
            detail,
            ..Self::new(500, "handler-failed")
        }
    }
    /// 400 `bad-request`: the body could not be read (client gone, malformed chunking).
    pub fn bad_request() -> Self {
        Self::new(400, "bad-request")
    }
    /// 503 `store-unavailable` with `Retry-After: 1`: the idempotency store failed, so the request
    /// is refused rather than processed without protection; the sender retries.
    pub fn store_unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(503, "store-unavailable")
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The reason string (`{"error":…}`).
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// The detail, when any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// Seconds for `Retry-After`, when the client should retry later.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }
    /// The JSON body.
    pub fn body(&self) -> String {
        // Written by hand so `error` always comes first, whatever serde_json's map order.
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        match &self.detail {
            Some(d) => format!(
                r#"{{"error":{},"detail":{}}}"#,
                quote(&self.reason),
                quote(d)
            ),
            None => format!(r#"{{"error":{}}}"#, quote(&self.reason)),
        }
    }
    /// The headers to send besides `content-type: application/json`.
    pub fn extra_headers(&self) -> Option<(&'static str, String)> {
        self.retry_after.map(|s| ("retry-after", s.to_string()))
    }

    /// The rejection as an `http` response (hyper, axum, warp and any tower stack).
    pub fn to_response(&self) -> http::Response<Full<Bytes>> {
        let mut b = http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some((k, v)) = self.extra_headers() {
            b = b.header(k, v);
        }
        b.body(Full::new(Bytes::from(self.body())))
            .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_headers() {
        assert_eq!(
            Rejection::validation_failed("bad \"x\"").body(),
            r#"{"error":"validation-failed","detail":"bad \"x\""}"#
        );
        let r = Rejection::in_flight(Duration::from_millis(1500));
        assert_eq!(r.retry_after(), Some(2));
        let resp = r.to_response();
        assert_eq!(resp.status(), 409);
        assert_eq!(resp.headers()["retry-after"], "2");
        assert_eq!(Rejection::in_flight(Duration::ZERO).retry_after(), Some(1));
    }
}
