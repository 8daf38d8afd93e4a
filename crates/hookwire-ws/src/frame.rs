//! The JSON text frames of the client protocol (spec `ws.md`, "Client protocol"), serialized
//! once and shared as [`Bytes`] by every recipient.

use bytes::Bytes;
use hookwire_core::Event;
use serde::Serialize;
use serde_json::Value;

/// Close code sent when an inbound frame exceeds `max_message_bytes` (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code sent to a client whose outbound queue overflowed (RFC 6455 "try again later").
pub const CLOSE_SLOW_CLIENT: u16 = 1013;
/// Close code sent to a client that missed two heartbeat pings.
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4000;
/// Close code sent when re-authentication of a live socket fails (an expired session).
pub const CLOSE_SESSION_EXPIRED: u16 = 4003;
/// Close code sent when the server shuts the gateway down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Why a client frame was refused; the `code` of an `error` frame.
///
/// ```
/// assert_eq!(hookwire_ws::ErrorCode::RoomFull.as_str(), "room-full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The room policy refused the subscription.
    Forbidden,
    /// The client already holds `max_subscriptions_per_client` rooms.
    TooManySubscriptions,
    /// The room already has `max_clients_per_room` members.
    RoomFull,
    /// The frame is not JSON (or not a JSON object).
    BadJson,
    /// The frame's `type` is not part of the protocol and no `on_message` hook took it.
    UnknownType,
    /// A required field (such as `resource`) is missing or empty.
    BadRequest,
    /// The frame is larger than `max_message_bytes`; the socket is closed with 1009.
    MessageTooLarge,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// Re-authentication failed; the socket is closed with 4003.
    SessionExpired,
    /// A scope rule covers the room and the identity lacks its scope (the message names it).
    InsufficientScope,
    /// The asynchronous room policy failed or did not answer within its time limit: the join
    /// is refused (fail closed); the client may retry later.
    PolicyUnavailable,
}

impl ErrorCode {
    /// The wire string.
    ///
    /// ```
    /// assert_eq!(hookwire_ws::ErrorCode::TooManySubscriptions.as_str(), "too-many-subscriptions");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::TooManySubscriptions => "too-many-subscriptions",
            Self::RoomFull => "room-full",
            Self::BadJson => "bad-json",
            Self::UnknownType => "unknown-type",
            Self::BadRequest => "bad-request",
            Self::MessageTooLarge => "message-too-large",
            Self::BinaryNotSupported => "binary-not-supported",
            Self::SessionExpired => "session-expired",
            Self::InsufficientScope => "insufficient-scope",
            Self::PolicyUnavailable => "policy-unavailable",
        }
    }
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // The frames below are structs of strings and `Value`s: serialization cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

pub(crate) fn connected(client_id: &str, resources: &[String]) -> Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Connected<'a> {
        r#type: &'static str,
        client_id: &'a str,
        resources: &'a [String],
    }
    to_bytes(&Connected {
        r#type: "connected",
        client_id,
        resources,
    })
}

pub(crate) fn channel(kind: &'static str, room: &str) -> Bytes {
    #[derive(Serialize)]
    struct Channel<'a> {
        r#type: &'static str,
        channel: &'a str,
    }
    to_bytes(&Channel {
        r#type: kind,
        channel: room,
    })
}

pub(crate) fn error(code: ErrorCode, message: &str, room: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Error<'a> {
        r#type: &'static str,
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
    }
    to_bytes(&Error {
        r#type: "error",
        code: code.as_str(),
        message,
        channel: room,
    })
}

pub(crate) const PING: &[u8] = br#"{"type":"ping"}"#;
pub(crate) const PONG: &[u8] = br#"{"type":"pong"}"#;

/// `{"type":"<event name>","data":…,"meta":{"timestamp":…,"userId":…,"organizationId":…}}`.
pub(crate) fn event(e: &Event) -> Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        timestamp: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        organization_id: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'a str,
        data: &'a Value,
        meta: Meta<'a>,
    }
    to_bytes(&Frame {
        r#type: &e.name,
        data: &e.data,
        meta: Meta {
            timestamp: e.meta.created_at.as_deref(),
            user_id: e.meta.user_id.as_deref(),
            organization_id: e.meta.organization_id.as_deref(),
        },
    })
}

/// `{"type":"broadcast","channel":"<room>","data":…}`.
pub(crate) fn broadcast(room: &str, data: &Value) -> Bytes {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        channel: &'a str,
        data: &'a Value,
    }
    to_bytes(&Frame {
        r#type: "broadcast",
        channel: room,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_frame_carries_meta_and_omits_absent_fields() {
        let mut e = Event::new("product.created", json!({"id": 1})).with_organization("acme");
        e.meta.created_at = Some("2026-01-01T00:00:00Z".into());
        let v: Value = serde_json::from_slice(&event(&e)).unwrap();
        assert_eq!(
            v,
            json!({"type":"product.created","data":{"id":1},
                   "meta":{"timestamp":"2026-01-01T00:00:00Z","organizationId":"acme"}})
        );
    }

    #[test]
    fn error_frame_shape() {
        let v: Value =
            serde_json::from_slice(&error(ErrorCode::Forbidden, "denied", Some("x"))).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","code":"forbidden","message":"denied","channel":"x"})
        );
    }
}
