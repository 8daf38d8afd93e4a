//! SSE over HTTP: the response body for hyper and axum, `Last-Event-ID` parsing, the
//! authorization hook, routes for `/events/<stream>`, `/state/<stream>`, `/events?filter=…`
//! and the browser client, and a plain-hyper server loop.
//!
//! Responses follow `docs/hookwire-sse.md`: `content-type: text/event-stream; charset=utf-8`,
//! `cache-control: no-cache, no-store`, `x-accel-buffering: no`; the body starts with a
//! `retry:` hint (jittered per connection) and a comment so proxies and browsers open at
//! once, then the snapshot (or the replay), then patches; idle connections get a `:` comment
//! from one shared timer. A non-200 status stops browser reconnects, so it is sent only
//! deliberately: 401/403 from the authorization hook, 400 for a malformed stream name or
//! filter, 404 for unknown routes.

mod app;
mod auth;
mod body;
mod config;
mod query;
mod serve;

pub use app::{SseApp, state_response};
pub use auth::{Access, Authorize, Public, RequestInfo};
pub(crate) use auth::{Refused, Unchosen};
pub use body::{ResponseBody, status_response};
pub(crate) use body::{SSE_HEADERS, sse_head};
pub use config::SseConfig;
pub use query::{last_event_id, query_param, valid_stream_name};
pub use serve::{serve, serve_fn, serve_fn_with};

/// The browser client, a dependency-free ES module (served at [`CLIENT_JS_PATH`]).
pub const CLIENT_JS: &str = include_str!("../../js/hookwire-sse.js");
/// Where [`SseApp`] serves [`CLIENT_JS`].
pub const CLIENT_JS_PATH: &str = "/hookwire-sse.js";
/// Longest accepted stream name, in bytes.
pub const MAX_STREAM_LEN: usize = 128;
/// Longest `Last-Event-ID` considered; longer values are treated as absent.
pub const MAX_LAST_EVENT_ID_LEN: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn garbage_last_event_ids_are_absent() {
        let mut h = HeaderMap::new();
        for bad in [
            "",
            "-1",
            "1.5",
            "abc",
            "999999999999999999999",
            " 12 x",
            "1e3",
        ] {
            h.insert("last-event-id", HeaderValue::from_str(bad).unwrap());
            assert_eq!(last_event_id(&h, None), None, "{bad}");
        }
        h.insert(
            "last-event-id",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(last_event_id(&h, None), None);
        assert_eq!(
            last_event_id(&HeaderMap::new(), Some("lastEventId=%33")),
            Some(3)
        );
    }

    #[test]
    fn a_percent_escape_needs_two_hex_digits() {
        // `%+4` was once decoded as byte 0x04 (`from_str_radix` accepts a sign): found by the
        // `query_decoding` fuzz target. A malformed escape stays as written; `+` is a space.
        assert_eq!(query_param("token=%+41", "token").unwrap(), "% 41");
        assert_eq!(query_param("token=%+a", "token").unwrap(), "% a");
        assert_eq!(query_param("token=%-1%4", "token").unwrap(), "%-1%4");
        assert_eq!(query_param("token=%4a%4A%", "token").unwrap(), "JJ%");
    }

    #[test]
    fn query_decoding_never_panics() {
        for q in [
            "filter=%",
            "filter=%4",
            "filter=%zz",
            "filter",
            "=&&=",
            "filter=a%2Cb",
        ] {
            let _ = query_param(q, "filter");
        }
        assert_eq!(query_param("filter=a%2Cb.*", "filter").unwrap(), "a,b.*");
        assert_eq!(query_param("filter=%", "filter").unwrap(), "%");
    }

    #[test]
    fn stream_names_are_restricted() {
        assert!(valid_stream_name("board"));
        assert!(valid_stream_name("org:acme.board-1_x"));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!valid_stream_name(bad), "{bad}");
        }
    }
}
