//! Reading the request

use http::HeaderMap;

use super::*;

/// The resume point of a request: the `Last-Event-ID` header, else the `last_event_id` or
/// `lastEventId` query parameter (for the first connect, which cannot set headers). Anything
/// that is not a plain decimal `u64` of at most 20 digits counts as absent (→ snapshot).
///
/// ```
/// use hookwire_sse::http::last_event_id;
/// let mut h = http::HeaderMap::new();
/// assert_eq!(last_event_id(&h, Some("a=1&last_event_id=41")), Some(41));
/// h.insert("last-event-id", "42".parse().unwrap());
/// assert_eq!(last_event_id(&h, Some("lastEventId=7")), Some(42));
/// h.insert("last-event-id", "42; DROP".parse().unwrap());
/// assert_eq!(last_event_id(&h, None), None);
/// ```
pub fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Option<u64> {
    if let Some(v) = headers.get("last-event-id") {
        return v.to_str().ok().and_then(parse_version);
    }
    query_param(query?, "last_event_id")
        .or_else(|| query_param(query?, "lastEventId"))
        .as_deref()
        .and_then(parse_version)
}

fn parse_version(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_LAST_EVENT_ID_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The decoded value of the first query parameter `name`, decoded as
/// `application/x-www-form-urlencoded` (`+` is a space, `%XX` escapes; a malformed escape stays
/// as written and invalid UTF-8 becomes U+FFFD, so no input is refused or panics). The
/// WebSocket gateway reads its `?token=` the same way.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether `s` is an acceptable stream name: 1–128 bytes of `A-Z a-z 0-9 _ - . :`.
pub fn valid_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STREAM_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}
