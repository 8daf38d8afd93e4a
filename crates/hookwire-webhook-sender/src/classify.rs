//! Response classification for deliveries and for callers' own HTTP calls: the same rules and
//! the same [`HttpError`]s, which the jobs runtime understands.

use hookwire_core::{Disposition, HttpError};
use http::{HeaderMap, StatusCode};

/// Classifies a response status: 2xx ok; 408, 425, 429 and 5xx retry; 3xx and every other
/// status block (the table in the crate guide).
///
/// ```
/// use hookwire_webhook_sender::classify_http_response;
/// use hookwire_core::Disposition;
/// use http::StatusCode;
/// assert_eq!(classify_http_response(StatusCode::NO_CONTENT), Disposition::Ok);
/// assert_eq!(classify_http_response(StatusCode::FOUND), Disposition::Block);
/// assert_eq!(classify_http_response(StatusCode::TOO_MANY_REQUESTS), Disposition::Retry);
/// assert_eq!(classify_http_response(StatusCode::BAD_GATEWAY), Disposition::Retry);
/// ```
pub fn classify_http_response(status: StatusCode) -> Disposition {
    hookwire_core::classify_http_status(status.as_u16())
}

/// Turns a response into `Ok(())` or the right [`HttpError`] (with the first 4 KiB of the body
/// and the parsed `Retry-After`), for custom integrations that make their own HTTP calls.
///
/// ```
/// use hookwire_webhook_sender::try_ok_parts;
/// let mut h = http::HeaderMap::new();
/// h.insert("retry-after", "3".parse().unwrap());
/// let e = try_ok_parts(&http::StatusCode::TOO_MANY_REQUESTS, &h, b"slow down", "https://x.test", "request").unwrap_err();
/// assert!(e.is_retryable());
/// assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
/// assert_eq!(e.response_body(), Some("slow down"));
/// assert!(try_ok_parts(&http::StatusCode::OK, &h, b"", "u", "request").is_ok());
/// ```
pub fn try_ok_parts(
    status: &StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    url: &str,
    label: &str,
) -> Result<(), HttpError> {
    if status.is_success() {
        return Ok(());
    }
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    HttpError::from_status(status.as_u16(), url, label, Some(body), retry_after)
}

/// [`try_ok_parts`] for an `http::Response` whose body is already in memory.
///
/// ```
/// let r = http::Response::builder().status(404).body(b"nope".to_vec()).unwrap();
/// let e = hookwire_webhook_sender::try_ok_response(&r, "u", "request").unwrap_err();
/// assert_eq!(e.status(), 404);
/// ```
pub fn try_ok_response<B: AsRef<[u8]>>(
    response: &http::Response<B>,
    url: &str,
    label: &str,
) -> Result<(), HttpError> {
    try_ok_parts(
        &response.status(),
        response.headers(),
        response.body().as_ref(),
        url,
        label,
    )
}
