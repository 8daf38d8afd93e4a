//! HTTP delivery errors and their classification.
//!
//! The sender produces these, the jobs runtime acts on them (retry or fail at once), and custom
//! integrations use [`try_ok`] to get the same behaviour for their own HTTP calls. The table in
//! The contract (`docs/hookwire-webhook-sender.md`): 2xx ok; 408/425/429 and 5xx retry; every other status blocks.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

/// How much of an error response body is kept (bytes, before lossy UTF-8 decoding).
pub const RESPONSE_BODY_CAPTURE: usize = 4096;

/// What to do after one delivery attempt.
///
/// ```
/// use hookwire_core::{classify_http_status, Disposition};
/// assert_eq!(classify_http_status(204), Disposition::Ok);
/// assert_eq!(classify_http_status(429), Disposition::Retry);
/// assert_eq!(classify_http_status(302), Disposition::Block);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Delivered.
    Ok,
    /// A transient failure: try again later.
    Retry,
    /// A permanent failure: retrying the same request cannot succeed.
    Block,
}

impl Disposition {
    /// The lowercase name (`ok`, `retry`, `block`).
    ///
    /// ```
    /// assert_eq!(hookwire_core::Disposition::Block.as_str(), "block");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retry => "retry",
            Self::Block => "block",
        }
    }
}

/// Classifies an HTTP status.
///
/// 2xx → `Ok`; 408, 425, 429 and every status ≥ 500 → `Retry`; everything else (1xx, 3xx,
/// other 4xx, and the non-status 0) → `Block`. Redirects block because hookwire never follows
/// them: a redirect at the delivery layer means the registered URL is wrong. Network failures are
/// not statuses; they are retryable errors built with [`HttpError::network`].
///
/// ```
/// use hookwire_core::{classify_http_status, Disposition::*};
/// assert_eq!(classify_http_status(200), Ok);
/// assert_eq!(classify_http_status(408), Retry);
/// assert_eq!(classify_http_status(425), Retry);
/// assert_eq!(classify_http_status(503), Retry);
/// assert_eq!(classify_http_status(410), Block);
/// assert_eq!(classify_http_status(0), Block);
/// ```
pub const fn classify_http_status(status: u16) -> Disposition {
    match status {
        200..=299 => Disposition::Ok,
        408 | 425 | 429 => Disposition::Retry,
        500.. => Disposition::Retry,
        _ => Disposition::Block,
    }
}

/// The fields both HTTP error kinds carry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    status: u16,
    url: String,
    response_body: Option<String>,
    message: String,
}

/// A transient HTTP failure: 408/425/429, 5xx, or a network/TLS/timeout failure (status 0).
///
/// ```
/// use hookwire_core::HttpError;
/// let e = HttpError::from_status(503, "https://x.test/h", "webhook", Some(b"busy"), None).unwrap_err();
/// let r = e.as_retryable().unwrap();
/// assert_eq!(r.status(), 503);
/// assert_eq!(r.response_body(), Some("busy"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryableHttpError {
    details: Details,
    timeout: bool,
    retry_after: Option<Duration>,
}

/// A permanent HTTP failure: 3xx and 4xx other than 408/425/429.
///
/// ```
/// use hookwire_core::HttpError;
/// let e = HttpError::from_status(404, "https://x.test/h", "webhook", None, None).unwrap_err();
/// assert_eq!(e.as_non_retryable().unwrap().status(), 404);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonRetryableHttpError {
    details: Details,
}

macro_rules! details_accessors {
    ($t:ty) => {
        impl $t {
            /// The HTTP status, 0 for network and timeout failures.
            pub fn status(&self) -> u16 {
                self.details.status
            }
            /// The URL the request went to.
            pub fn url(&self) -> &str {
                &self.details.url
            }
            /// The first [`RESPONSE_BODY_CAPTURE`] bytes of the response body, lossy UTF-8.
            pub fn response_body(&self) -> Option<&str> {
                self.details.response_body.as_deref()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.details.message)
            }
        }
        impl StdError for $t {}
    };
}
details_accessors!(RetryableHttpError);
details_accessors!(NonRetryableHttpError);

impl RetryableHttpError {
    /// True when the attempt ran out of time.
    pub fn is_timeout(&self) -> bool {
        self.timeout
    }
    /// The server's `Retry-After`, already parsed (not clamped).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Either kind of HTTP failure; what the sender returns for one attempt.
///
/// ```
/// use hookwire_core::{Disposition, HttpError};
/// let e = HttpError::network("https://x.test/h", "webhook", "connection refused");
/// assert!(e.is_retryable());
/// assert_eq!(e.status(), 0);
/// assert_eq!(e.disposition(), Disposition::Retry);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Try again.
    Retryable(RetryableHttpError),
    /// Do not try again.
    NonRetryable(NonRetryableHttpError),
}

impl HttpError {
    /// Classifies a response status: `Ok(())` for 2xx, else the matching error.
    ///
    /// `label` starts the message (`"<label> <url> responded <status>"`); `body` is captured up to
    /// [`RESPONSE_BODY_CAPTURE`] bytes; `retry_after` is the raw `Retry-After` header value.
    ///
    /// ```
    /// use hookwire_core::HttpError;
    /// assert!(HttpError::from_status(200, "u", "request", None, None).is_ok());
    /// let e = HttpError::from_status(429, "u", "request", None, Some("7")).unwrap_err();
    /// assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
    /// assert_eq!(e.to_string(), "request u responded 429");
    /// ```
    pub fn from_status(
        status: u16,
        url: &str,
        label: &str,
        body: Option<&[u8]>,
        retry_after: Option<&str>,
    ) -> Result<(), HttpError> {
        let details = || Details {
            status,
            url: url.to_owned(),
            response_body: body.map(capture_body),
            message: format!("{label} {url} responded {status}"),
        };
        match classify_http_status(status) {
            Disposition::Ok => Ok(()),
            Disposition::Retry => Err(HttpError::Retryable(RetryableHttpError {
                details: details(),
                timeout: false,
                retry_after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
            })),
            Disposition::Block => Err(HttpError::NonRetryable(NonRetryableHttpError {
                details: details(),
            })),
        }
    }

    /// A retryable network, DNS, TLS or reset failure (status 0).
    ///
    /// ```
    /// let e = hookwire_core::HttpError::network("u", "webhook POST", "reset");
    /// assert_eq!(e.to_string(), "webhook POST u failed: reset");
    /// ```
    pub fn network(url: &str, label: &str, cause: impl fmt::Display) -> HttpError {
        HttpError::Retryable(RetryableHttpError {
            details: Details {
                status: 0,
                url: url.to_owned(),
                response_body: None,
                message: format!("{label} {url} failed: {cause}"),
            },
            timeout: false,
            retry_after: None,
        })
    }

    /// A retryable timeout (status 0, [`HttpError::is_timeout`] true).
    ///
    /// ```
    /// let e = hookwire_core::HttpError::timeout("u", "webhook POST", std::time::Duration::from_millis(5));
    /// assert!(e.is_timeout());
    /// assert_eq!(e.to_string(), "webhook POST u timed out after 5ms");
    /// ```
    pub fn timeout(url: &str, label: &str, after: Duration) -> HttpError {
        HttpError::Retryable(RetryableHttpError {
            details: Details {
                status: 0,
                url: url.to_owned(),
                response_body: None,
                message: format!("{label} {url} timed out after {}ms", after.as_millis()),
            },
            timeout: true,
            retry_after: None,
        })
    }

    /// A permanent failure that is not an HTTP status (an SSRF-refused address, an invalid URL).
    ///
    /// ```
    /// let e = hookwire_core::HttpError::refused("http://10.0.0.1/", "webhook POST", "address not allowed");
    /// assert!(!e.is_retryable());
    /// ```
    pub fn refused(url: &str, label: &str, cause: impl fmt::Display) -> HttpError {
        HttpError::NonRetryable(NonRetryableHttpError {
            details: Details {
                status: 0,
                url: url.to_owned(),
                response_body: None,
                message: format!("{label} {url} refused: {cause}"),
            },
        })
    }

    fn details(&self) -> &Details {
        match self {
            HttpError::Retryable(e) => &e.details,
            HttpError::NonRetryable(e) => &e.details,
        }
    }

    /// The HTTP status, 0 when there was none.
    pub fn status(&self) -> u16 {
        self.details().status
    }
    /// The request URL.
    pub fn url(&self) -> &str {
        &self.details().url
    }
    /// The captured response body, if any.
    pub fn response_body(&self) -> Option<&str> {
        self.details().response_body.as_deref()
    }
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HttpError::Retryable(_))
    }
    /// `Retry` or `Block`.
    pub fn disposition(&self) -> Disposition {
        if self.is_retryable() {
            Disposition::Retry
        } else {
            Disposition::Block
        }
    }
    /// True for timeouts.
    pub fn is_timeout(&self) -> bool {
        matches!(self, HttpError::Retryable(e) if e.timeout)
    }
    /// The parsed `Retry-After`, for retryable statuses that sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Retryable(e) => e.retry_after,
            HttpError::NonRetryable(_) => None,
        }
    }
    /// The retryable error, if this is one.
    pub fn as_retryable(&self) -> Option<&RetryableHttpError> {
        match self {
            HttpError::Retryable(e) => Some(e),
            HttpError::NonRetryable(_) => None,
        }
    }
    /// The non-retryable error, if this is one.
    pub fn as_non_retryable(&self) -> Option<&NonRetryableHttpError> {
        match self {
            HttpError::NonRetryable(e) => Some(e),
            HttpError::Retryable(_) => None,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.details().message)
    }
}

impl StdError for HttpError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            HttpError::Retryable(e) => Some(e),
            HttpError::NonRetryable(e) => Some(e),
        }
    }
}

/// Turns a response status into `Ok(())` or the right [`HttpError`], for custom integrations.
///
/// Same as [`HttpError::from_status`]; `label` defaults to `request` in the message when empty is
/// not wanted, so pass it explicitly.
///
/// ```
/// use hookwire_core::try_ok;
/// assert!(try_ok(201, "https://x.test", "request", None, None).is_ok());
/// assert!(!try_ok(400, "https://x.test", "request", Some(b"bad"), None).unwrap_err().is_retryable());
/// ```
pub fn try_ok(
    status: u16,
    url: &str,
    label: &str,
    body: Option<&[u8]>,
    retry_after: Option<&str>,
) -> Result<(), HttpError> {
    HttpError::from_status(status, url, label, body, retry_after)
}

/// Keeps the first [`RESPONSE_BODY_CAPTURE`] bytes of a body as lossy UTF-8.
///
/// ```
/// let big = vec![b'a'; 10_000];
/// assert_eq!(hookwire_core::error::capture_body(&big).len(), 4096);
/// ```
pub fn capture_body(body: &[u8]) -> String {
    let end = body.len().min(RESPONSE_BODY_CAPTURE);
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// Parses a `Retry-After` value: delay seconds (`120`) or an HTTP date, relative to `now`.
///
/// Dates in the past give zero; unparsable values give `None`. Callers clamp the result.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use hookwire_core::error::parse_retry_after;
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Marks any error as non-retryable: the retry driver and the jobs runtime fail at once on it.
///
/// ```
/// use hookwire_core::error::{is_retryable, NonRetryableError};
/// let e = NonRetryableError::new(std::io::Error::other("invalid card"));
/// assert!(!is_retryable(&e));
/// assert!(is_retryable(&std::io::Error::other("flaky")));
/// ```
#[derive(Debug)]
pub struct NonRetryableError {
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl NonRetryableError {
    /// Wraps `source`.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self {
            source: source.into(),
        }
    }
    /// The wrapped error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for NonRetryableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "non-retryable: {}", self.source)
    }
}

impl StdError for NonRetryableError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// Whether `err` (or anything in its `source()` chain) allows a retry.
///
/// False when the chain holds a [`NonRetryableError`], a [`NonRetryableHttpError`] or a
/// non-retryable [`HttpError`]; true otherwise (unknown errors are assumed transient, as in the
/// reference runtime).
///
/// ```
/// use hookwire_core::{error::is_retryable, HttpError};
/// assert!(!is_retryable(&HttpError::from_status(404, "u", "r", None, None).unwrap_err()));
/// assert!(is_retryable(&HttpError::from_status(500, "u", "r", None, None).unwrap_err()));
/// ```
pub fn is_retryable(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    // Bounded walk: a pathological cyclic `source()` chain must not hang the worker.
    for _ in 0..64 {
        let Some(e) = cur else { return true };
        if e.is::<NonRetryableError>() || e.is::<NonRetryableHttpError>() {
            return false;
        }
        if let Some(h) = e.downcast_ref::<HttpError>() {
            return h.is_retryable();
        }
        cur = e.source();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_class_is_classified_as_the_table_says() {
        for s in 200..=299 {
            assert_eq!(classify_http_status(s), Disposition::Ok, "{s}");
        }
        for s in [100, 101, 199, 300, 301, 302, 304, 307, 308, 399] {
            assert_eq!(classify_http_status(s), Disposition::Block, "{s}");
        }
        for s in 400..=499 {
            let want = if matches!(s, 408 | 425 | 429) {
                Disposition::Retry
            } else {
                Disposition::Block
            };
            assert_eq!(classify_http_status(s), want, "{s}");
        }
        for s in [500, 502, 503, 504, 599, 600, 999] {
            assert_eq!(classify_http_status(s), Disposition::Retry, "{s}");
        }
    }

    #[test]
    fn retry_after_handles_dates_in_the_past_and_garbage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("99999999999999999999", now), None);
    }

    #[test]
    fn error_chain_is_searched_for_non_retryable_markers() {
        #[derive(Debug)]
        struct Wrap(NonRetryableError);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrap")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(NonRetryableError::new("nope"));
        assert!(!is_retryable(&e));
    }

    #[test]
    fn body_capture_is_lossy_and_capped() {
        assert_eq!(capture_body(&[0xff, b'a']), "\u{fffd}a");
        let e = HttpError::from_status(500, "u", "r", Some(&vec![b'x'; 9000]), None).unwrap_err();
        assert_eq!(e.response_body().map(str::len), Some(RESPONSE_BODY_CAPTURE));
    }
}
