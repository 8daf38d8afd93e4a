//! The gateway: configuration (fail-closed at build time), publishing, and the per-connection
//! protocol state machine [`Connection`], free of any web framework.

use std::sync::Arc;

use serde_json::Value;

use crate::Identity;

mod admission;
mod builder;
mod connection;
mod handle;

pub use admission::DEFAULT_POLICY_TIMEOUT;
pub(crate) use admission::{Admission, Refusal, RoomPolicy};

pub use builder::WsGatewayBuilder;
pub use connection::{Close, Connection, Reaction};
pub(crate) use handle::Inner;
pub use handle::WsGateway;

/// Who may read `GET <path>/stats`.
///
/// ```
/// assert_eq!(hookwire_ws::ExposeStats::default(), hookwire_ws::ExposeStats::Off);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExposeStats {
    /// No stats route (404).
    #[default]
    Off,
    /// Anyone.
    On,
    /// Only requests the authenticator accepts (401 otherwise).
    Authenticated,
}

/// What an `on_message` hook did with a custom frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HookReply {
    /// Handled; nothing to send back.
    Handled,
    /// Handled; send this JSON frame back to the client.
    Reply(Value),
    /// Not a frame this application knows: the client gets an `unknown-type` error.
    Unknown,
}

/// The client a hook is called for.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// The protocol client id (`ws_…`).
    pub client_id: &'a str,
    /// Who the client is.
    pub identity: &'a Identity,
}

type ConnectHook = Arc<dyn Fn(ClientInfo<'_>) + Send + Sync>;
type MessageHook = Arc<dyn Fn(ClientInfo<'_>, &Value) -> HookReply + Send + Sync>;

/// Longest accepted room name, in bytes.
pub const MAX_ROOM_NAME_BYTES: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hookwire_core::Event;
    use serde_json::json;

    fn gw(b: WsGatewayBuilder) -> WsGateway {
        b.auth(false).resources(["order"]).build().unwrap()
    }

    fn parse(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn build_fails_closed_without_authenticator() {
        let err = WsGateway::builder().build().unwrap_err();
        assert!(err.is_missing_authenticator());
        assert!(WsGateway::builder().auth(false).build().is_ok());
        assert!(
            WsGateway::builder()
                .auth(false)
                .expose_stats(ExposeStats::Authenticated)
                .build()
                .unwrap_err()
                .is_invalid_option()
        );
        assert!(
            WsGateway::builder()
                .auth(false)
                .path("/ws/{x}")
                .build()
                .unwrap_err()
                .is_invalid_option()
        );
        assert!(
            WsGateway::builder()
                .auth(false)
                .path("ws")
                .build()
                .unwrap_err()
                .is_invalid_option()
        );
    }

    #[test]
    fn subscribe_limits_and_policy() {
        let g = gw(WsGateway::builder()
            .max_subscriptions_per_client(1)
            .room_policy(|_, room| room != "secret"));
        let mut c = g.connect(Identity::new());
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","resource":"secret"}"#)
                    .reply
                    .unwrap()
            )["code"],
            "forbidden"
        );
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","resource":"a"}"#)
                    .reply
                    .unwrap()
            ),
            json!({"type":"subscribed","channel":"a"})
        );
        // Re-subscribing to a held room is not a new subscription.
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","channel":"a"}"#)
                    .reply
                    .unwrap()
            )["type"],
            "subscribed"
        );
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"subscribe","resource":"b"}"#)
                    .reply
                    .unwrap()
            )["code"],
            "too-many-subscriptions"
        );
        assert_eq!(
            parse(
                &c.on_text(r#"{"type":"unsubscribe","resource":"a"}"#)
                    .reply
                    .unwrap()
            ),
            json!({"type":"unsubscribed","channel":"a"})
        );
        assert_eq!(
            parse(&c.on_text(r#"{"type":"subscribe"}"#).reply.unwrap())["code"],
            "bad-request"
        );
    }

    #[test]
    fn bad_input_gets_error_frames() {
        let g = gw(WsGateway::builder().max_message_bytes(64));
        let mut c = g.connect(Identity::new());
        for bad in ["{", "123", "[]", "null", "\"x\""] {
            assert_eq!(
                parse(&c.on_text(bad).reply.unwrap())["code"],
                "bad-json",
                "{bad}"
            );
        }
        assert_eq!(
            parse(&c.on_text(r#"{"type":"dance"}"#).reply.unwrap())["code"],
            "unknown-type"
        );
        let big = format!(r#"{{"type":"x","pad":"{}"}}"#, "a".repeat(100));
        let o = c.on_text(&big);
        assert_eq!(o.close.unwrap().code, 1009);
    }

    #[test]
    fn two_missed_pongs_close() {
        let g = gw(WsGateway::builder());
        let mut c = g.connect(Identity::new());
        assert!(c.on_heartbeat().reply.is_some());
        c.on_text(r#"{"type":"pong"}"#);
        assert!(c.on_heartbeat().close.is_none());
        assert!(c.on_heartbeat().close.is_none());
        assert_eq!(c.on_heartbeat().close.unwrap().code, 4000);
    }

    #[test]
    fn drop_leaves_rooms_and_runs_hook() {
        let gone = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g2 = Arc::clone(&gone);
        let g = gw(WsGateway::builder().on_disconnect(move |_| {
            g2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let mut c = g.connect(Identity::new());
        c.on_text(r#"{"type":"subscribe","resource":"order"}"#);
        assert_eq!(g.rooms().room_len("order"), 1);
        drop(c);
        assert_eq!(g.rooms().room_len("order"), 0);
        assert_eq!(g.rooms().client_count(), 0);
        assert_eq!(gone.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn events_route_by_resource_and_org() {
        let g = gw(WsGateway::builder());
        let mut acme = g.connect(Identity::new().with_organization("acme"));
        let mut none = g.connect(Identity::new());
        acme.on_text(r#"{"type":"subscribe","resource":"order"}"#);
        none.on_text(r#"{"type":"subscribe","resource":"order"}"#);
        let e = Event::new("order.paid", json!(1)).with_organization("acme");
        assert_eq!(g.publish(&e), 1);
        assert_eq!(
            parse(&acme.try_next_outbound().unwrap())["type"],
            "order.paid"
        );
        assert!(none.try_next_outbound().is_none());
        assert_eq!(g.publish(&Event::new("order.paid", json!(1))), 1);
        assert!(acme.try_next_outbound().is_none());
        assert_eq!(g.publish_global(&Event::new("order.paid", json!(1))), 2);
        assert_eq!(g.publish(&Event::new("orders.paid", json!(1))), 0);
    }
}
