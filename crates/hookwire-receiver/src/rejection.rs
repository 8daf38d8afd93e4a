//! The failure responses every adapter answers with, so status and body are identical whatever
//! the framework. The reasons are a closed set: an adapter converts a [`Rejection`], it never
//! makes one up.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use hookwire_core::signing::VerifyError;
use http_body_util::Full;

/// Header set on a 2xx answer to a duplicate of an already processed delivery.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Why a request was refused: the machine-readable `{"error":…}` string and its status.
///
/// ```
/// use hookwire_receiver::Reason;
/// assert_eq!(Reason::MissingKey.as_str(), "missing-key");
/// assert_eq!(Reason::MissingKey.status(), 400);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// 400 `empty-body`: a secret is configured and the body is empty (a framework probably
    /// consumed it before verification).
    EmptyBody,
    /// 400 `missing-key`: no usable idempotency key.
    MissingKey,
    /// 400 `key-too-long`: the idempotency key is longer than [`crate::MAX_KEY_LEN`] bytes.
    KeyTooLong,
    /// 400 `bad-request`: the body could not be read (client gone, malformed chunking).
    BadRequest,
    /// 401 with the verification reason (`bad-signature`, `stale`, …).
    Unauthorized(VerifyError),
    /// 404 `unknown-event`: the typed receiver has no route for the event.
    UnknownEvent,
    /// 404 `not-found`: `hookwire listen` serves one path.
    NotFound,
    /// 409 `in-flight`: the same key is being processed right now.
    InFlight,
    /// 413 `body-too-large`.
    BodyTooLarge,
    /// 415 `unsupported-media-type`: a content type other than JSON where JSON is required.
    UnsupportedMediaType,
    /// 422 `validation-failed`: the body does not parse into the event.
    ValidationFailed,
    /// 431 `headers-too-large`: the request head is over the built-in server's limit.
    HeadersTooLarge,
    /// 500 `handler-failed`: the handler failed or panicked.
    HandlerFailed,
    /// 500 `receiver-not-configured`: an extractor ran without the adapter's middleware, so
    /// nothing was verified (fail closed).
    NotConfigured,
    /// 502 `forward-failed`: `hookwire listen --forward-to` could not reach the app.
    ForwardFailed,
    /// 503 `output-busy`: `hookwire listen` cannot print as fast as requests arrive.
    OutputBusy,
    /// 503 `store-unavailable`: the idempotency store failed, so the request is refused rather
    /// than processed without protection.
    StoreUnavailable,
}

impl Reason {
    /// The `{"error":…}` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EmptyBody => "empty-body",
            Self::MissingKey => "missing-key",
            Self::KeyTooLong => "key-too-long",
            Self::BadRequest => "bad-request",
            Self::Unauthorized(e) => e.as_str(),
            Self::UnknownEvent => "unknown-event",
            Self::NotFound => "not-found",
            Self::InFlight => "in-flight",
            Self::BodyTooLarge => "body-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::ValidationFailed => "validation-failed",
            Self::HeadersTooLarge => "headers-too-large",
            Self::HandlerFailed => "handler-failed",
            Self::NotConfigured => "receiver-not-configured",
            Self::ForwardFailed => "forward-failed",
            Self::OutputBusy => "output-busy",
            Self::StoreUnavailable => "store-unavailable",
        }
    }

    /// The HTTP status.
    pub const fn status(self) -> u16 {
        match self {
            Self::EmptyBody | Self::MissingKey | Self::KeyTooLong | Self::BadRequest => 400,
            Self::Unauthorized(_) => 401,
            Self::UnknownEvent | Self::NotFound => 404,
            Self::InFlight => 409,
            Self::BodyTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::ValidationFailed => 422,
            Self::HeadersTooLarge => 431,
            Self::HandlerFailed | Self::NotConfigured => 500,
            Self::ForwardFailed => 502,
            Self::OutputBusy | Self::StoreUnavailable => 503,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request refused before (or instead of) its handler: a [`Reason`] (status and
/// machine-readable string), the JSON body `{"error":reason}` (plus `"detail"` for validation
/// failures) and, when the client should come back, `Retry-After`.
///
/// ```
/// use hookwire_receiver::{Reason, Rejection};
/// let r = Rejection::missing_key();
/// assert_eq!(r.kind(), Reason::MissingKey);
/// assert_eq!(r.status(), 400);
/// assert_eq!(r.body(), r#"{"error":"missing-key"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    detail: Option<String>,
    retry_after: Option<u64>,
}

impl From<Reason> for Rejection {
    fn from(reason: Reason) -> Self {
        let retry_after =
            matches!(reason, Reason::StoreUnavailable | Reason::OutputBusy).then_some(1);
        Self {
            reason,
            detail: None,
            retry_after,
        }
    }
}

impl Rejection {
    /// 400 `empty-body`.
    pub fn empty_body() -> Self {
        Reason::EmptyBody.into()
    }
    /// 400 `missing-key`.
    pub fn missing_key() -> Self {
        Reason::MissingKey.into()
    }
    /// 400 `key-too-long`.
    pub fn key_too_long() -> Self {
        Reason::KeyTooLong.into()
    }
    /// 401 with a verification reason.
    pub fn unauthorized(e: VerifyError) -> Self {
        Reason::Unauthorized(e).into()
    }
    /// 404 `unknown-event`.
    pub fn unknown_event() -> Self {
        Reason::UnknownEvent.into()
    }
    /// 409 `in-flight` with `Retry-After` (whole seconds, rounded up, at least 1).
    pub fn in_flight(retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Reason::InFlight.into()
        }
    }
    /// 413 `body-too-large`.
    pub fn too_large() -> Self {
        Reason::BodyTooLarge.into()
    }
    /// 415 `unsupported-media-type`.
    pub fn unsupported_media_type() -> Self {
        Reason::UnsupportedMediaType.into()
    }
    /// 422 `validation-failed` with the parser's message as `detail`.
    pub fn validation_failed(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Reason::ValidationFailed.into()
        }
    }
    /// 500 `handler-failed`; the detail goes to the log unless the receiver exposes it.
    pub fn handler_failed(detail: Option<String>) -> Self {
        Self {
            detail,
            ..Reason::HandlerFailed.into()
        }
    }
    /// 400 `bad-request`.
    pub fn bad_request() -> Self {
        Reason::BadRequest.into()
    }
    /// 503 `store-unavailable` with `Retry-After: 1`; the sender retries.
    pub fn store_unavailable() -> Self {
        Reason::StoreUnavailable.into()
    }

    /// Why the request was refused.
    pub fn kind(&self) -> Reason {
        self.reason
    }
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.reason.status()
    }
    /// The reason string (`{"error":…}`).
    pub fn reason(&self) -> &'static str {
        self.reason.as_str()
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
        let reason = self.reason.as_str();
        match &self.detail {
            Some(d) => format!(
                r#"{{"error":"{reason}","detail":{}}}"#,
                serde_json::Value::from(d.as_str())
            ),
            None => format!(r#"{{"error":"{reason}"}}"#),
        }
    }
    /// The headers to send besides `content-type: application/json`.
    pub fn extra_headers(&self) -> Option<(&'static str, String)> {
        self.retry_after.map(|s| ("retry-after", s.to_string()))
    }

    /// The rejection as an `http` response (hyper, axum, warp and any tower stack).
    pub fn to_response(&self) -> http::Response<Full<Bytes>> {
        let mut r = http::Response::new(Full::new(Bytes::from(self.body())));
        *r.status_mut() = http::StatusCode::from_u16(self.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
        }
        r
    }
}

/// `204` with `Idempotent-Replayed: true`: the answer to a duplicate of a done key.
pub fn replay_http_response() -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = http::StatusCode::NO_CONTENT;
    r.headers_mut()
        .insert(REPLAYED_HEADER, http::HeaderValue::from_static("true"));
    r
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason)
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
        assert_eq!(Rejection::store_unavailable().retry_after(), Some(1));
    }
}
