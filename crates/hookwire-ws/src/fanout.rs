//! Cross-node fan-out: every broadcast is delivered locally first, then handed to a [`FanOut`]
//! that carries it to the other nodes, which deliver it to *their* members only (spec `ws.md`,
//! "Several nodes"). A node ignores its own envelopes, so each subscriber gets a frame once.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Audience;
use crate::gateway::Inner;

/// One frame on its way to another node: the room, who in it may receive it, and the
/// serialized frame. The audience is structured data, never parsed back out of a room name.
///
/// ```
/// use hookwire_ws::{Audience, Envelope};
/// let e = Envelope::new("order", Audience::Org("acme".into()), bytes::Bytes::from_static(b"{}"));
/// assert_eq!(e.room(), "order");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    room: String,
    audience: Audience,
    #[serde(with = "frame_str")]
    frame: Bytes,
    #[serde(default, skip_serializing_if = "is_frame")]
    kind: Kind,
}

/// What an envelope carries: a WebSocket frame for a room, or (for the event gateway's SSE
/// side) a whole event as JSON, which the receiving node publishes to its own SSE subscribers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    #[default]
    Frame,
    Event,
}

fn is_frame(k: &Kind) -> bool {
    *k == Kind::Frame
}

impl Envelope {
    /// A new envelope.
    pub fn new(room: impl Into<String>, audience: Audience, frame: Bytes) -> Self {
        Self {
            room: room.into(),
            audience,
            frame,
            kind: Kind::Frame,
        }
    }

    /// An application event (JSON of a `hookwire_core::Event`) for the other nodes' SSE side.
    #[cfg(feature = "sse")]
    pub(crate) fn event(json: Bytes) -> Self {
        Self {
            room: String::new(),
            audience: Audience::All,
            frame: json,
            kind: Kind::Event,
        }
    }
    /// The target room.
    pub fn room(&self) -> &str {
        &self.room
    }
    /// Who in the room may receive it.
    pub fn audience(&self) -> &Audience {
        &self.audience
    }
    /// The serialized frame (UTF-8 JSON).
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

/// Frames are UTF-8 JSON text; on the wire between nodes they travel as a JSON string.
mod frame_str {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => s.serialize_str(t),
            Err(_) => Err(serde::ser::Error::custom("frame is not UTF-8")),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        String::deserialize(d).map(Bytes::from)
    }
}

/// Delivers envelopes that arrived from other nodes to this node's members.
#[derive(Debug, Clone)]
pub struct RemoteSink {
    inner: Weak<Inner>,
}

impl RemoteSink {
    pub(crate) fn new(inner: &Arc<Inner>) -> Self {
        Self {
            inner: Arc::downgrade(inner),
        }
    }

    /// Delivers `env` locally; `None` once the gateway is gone (the fan-out should stop).
    pub fn deliver(&self, env: &Envelope) -> Option<usize> {
        let inner = self.inner.upgrade()?;
        if env.kind == Kind::Event {
            if let Some(relay) = inner.event_relay.get() {
                relay(&env.frame);
            }
            return Some(0);
        }
        Some(
            inner
                .rooms
                .deliver(&env.room, &env.audience, env.frame.clone()),
        )
    }
}

/// Carries envelopes between the nodes of a cluster (the implementation on the event bus is
/// `BusFanOut`, feature `events`).
///
/// `publish` must not block: queue the envelope and send it from a task. Delivery across nodes
/// is at most once (a node that is disconnected misses frames), as with any pub/sub.
pub trait FanOut: Send + Sync + 'static {
    /// Sends `env` to every *other* node.
    fn publish(&self, env: &Envelope);
    /// Starts delivering envelopes from other nodes into `sink`; called once by
    /// [`crate::WsGatewayBuilder::build`].
    fn start(&self, sink: RemoteSink);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_as_json() {
        let e = Envelope::new(
            "a:b",
            Audience::Org("x:y".into()),
            Bytes::from_static(br#"{"type":"t"}"#),
        );
        let s = serde_json::to_string(&e).unwrap();
        let back: Envelope = serde_json::from_str(&s).unwrap();
        assert_eq!(back, e);
        let all: Envelope =
            serde_json::from_str(r#"{"room":"r","audience":{"kind":"all"},"frame":"{}"}"#).unwrap();
        assert_eq!(all.audience(), &Audience::All);
    }
}
