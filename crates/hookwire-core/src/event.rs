//! The event envelope every hookwire crate moves around.
//!
//! An [`Event`] is what a service publishes: the sender signs and delivers it, the receiver parses
//! it, SSE and WebSocket fan it out, jobs carry it. Its JSON form is stable (field order fixed by
//! the struct, optional metadata omitted when absent) so the same event always serializes to the
//! same bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One application event.
///
/// ```
/// use hookwire_core::Event;
/// let e = Event::new("order.created", serde_json::json!({"id": "o-1"}))
///     .with_stream("order-1", 3)
///     .with_organization("acme");
/// assert_eq!(e.name, "order.created");
/// assert_eq!(e.meta.organization_id.as_deref(), Some("acme"));
/// let json = serde_json::to_string(&e).unwrap();
/// let back: Event = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, e);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Unique per event; the default idempotency key of a delivery.
    pub id: String,
    /// The event type, dot-separated (`order.created`); matched by [`crate::Pattern`]s.
    pub name: String,
    /// The entity stream the event belongs to (`order-7`); empty when not applicable.
    #[serde(default)]
    pub stream: String,
    /// Per-stream version, monotonic; 0 for the first event of a stream.
    #[serde(default)]
    pub version: u64,
    /// The payload.
    #[serde(default)]
    pub data: Value,
    /// Optional metadata.
    #[serde(default)]
    pub meta: EventMeta,
}

/// Optional event metadata; absent fields are omitted from JSON.
///
/// ```
/// let m = hookwire_core::EventMeta::default();
/// assert_eq!(serde_json::to_string(&m).unwrap(), "{}");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EventMeta {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Correlation id shared by every event of one business flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Id of the event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The acting user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The tenant; WebSocket and SSE fan-out never cross it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
}

impl Event {
    /// A new event with a fresh time-sortable id (`evt_…`) and `created_at` set to now.
    ///
    /// ```
    /// let e = hookwire_core::Event::new("user.signed_up", serde_json::Value::Null);
    /// assert!(e.id.starts_with("evt_"));
    /// assert!(e.meta.created_at.is_some());
    /// ```
    pub fn new(name: impl Into<String>, data: Value) -> Self {
        Self {
            id: crate::id::new_id("evt"),
            name: name.into(),
            stream: String::new(),
            version: 0,
            data,
            meta: EventMeta {
                created_at: Some(crate::time::rfc3339(std::time::SystemTime::now())),
                ..EventMeta::default()
            },
        }
    }

    /// Replaces the id (e.g. with an id from the event store).
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_id("42");
    /// assert_eq!(e.id, "42");
    /// ```
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the stream and its version.
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_stream("s", 2);
    /// assert_eq!((e.stream.as_str(), e.version), ("s", 2));
    /// ```
    #[must_use]
    pub fn with_stream(mut self, stream: impl Into<String>, version: u64) -> Self {
        self.stream = stream.into();
        self.version = version;
        self
    }

    /// Sets the organization (tenant) id.
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_organization("acme");
    /// assert_eq!(e.organization_id(), Some("acme"));
    /// ```
    #[must_use]
    pub fn with_organization(mut self, org: impl Into<String>) -> Self {
        self.meta.organization_id = Some(org.into());
        self
    }

    /// Sets the acting user id.
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_user("u1");
    /// assert_eq!(e.meta.user_id.as_deref(), Some("u1"));
    /// ```
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.meta.user_id = Some(user.into());
        self
    }

    /// Sets the metadata wholesale.
    ///
    /// ```
    /// let mut meta = hookwire_core::EventMeta::default();
    /// meta.correlation_id = Some("c".into());
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_meta(meta.clone());
    /// assert_eq!(e.meta, meta);
    /// ```
    #[must_use]
    pub fn with_meta(mut self, meta: EventMeta) -> Self {
        self.meta = meta;
        self
    }

    /// The organization id, if the event is tenant-scoped.
    ///
    /// ```
    /// assert_eq!(hookwire_core::Event::new("a", serde_json::Value::Null).organization_id(), None);
    /// ```
    pub fn organization_id(&self) -> Option<&str> {
        self.meta.organization_id.as_deref()
    }

    /// Stable JSON bytes of the envelope (field order is the struct's).
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::json!(1)).with_id("1");
    /// let s = String::from_utf8(e.to_json_bytes()).unwrap();
    /// assert!(s.starts_with(r#"{"id":"1","name":"a","stream":"","version":0,"data":1,"#));
    /// ```
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings, numbers and a `Value` cannot fail: `Value` keys are
        // always strings and there are no custom serializers that could error.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_stable_and_omits_absent_meta() {
        let mut e = Event::new("order.created", json!({"total": 99.5}))
            .with_id("42")
            .with_stream("order-7", 0);
        e.meta = EventMeta {
            correlation_id: Some("test-corr".into()),
            ..EventMeta::default()
        };
        assert_eq!(
            String::from_utf8(e.to_json_bytes()).unwrap(),
            r#"{"id":"42","name":"order.created","stream":"order-7","version":0,"data":{"total":99.5},"meta":{"correlationId":"test-corr"}}"#
        );
    }

    #[test]
    fn deserializes_minimal_envelopes() {
        let e: Event = serde_json::from_str(r#"{"id":"1","name":"a"}"#).unwrap();
        assert_eq!(e.version, 0);
        assert_eq!(e.data, Value::Null);
        assert_eq!(e.meta, EventMeta::default());
    }
}
