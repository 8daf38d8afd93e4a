//! The event envelope every hookwire crate moves around.
//!
//! An [`Event`] is what a service publishes: the sender signs and delivers it, the receiver parses
//! it, SSE and WebSocket fan it out, jobs carry it. Its JSON form is stable (field order fixed by
//! the struct, optional metadata omitted when absent) so the same event always serializes to the
//! same bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// The kind of entity the event is about (`order`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The id of that entity (`o-123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Events with the same partition key are handled in publish order within a consumer group;
    /// when absent the bus uses `resource:resourceId` if both are set (see
    /// [`Event::effective_partition_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// The version of the payload's schema (registries validate against this version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Who produced the event (a URI reference such as `/billing-service`); CloudEvents'
    /// `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Further attributes carried through unchanged (CloudEvents extensions, unknown
    /// `DomainEvent` meta keys); omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, Value>,
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

    /// Sets the partition key: events with one key are handled in order within a group.
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_partition_key("order-7");
    /// assert_eq!(e.effective_partition_key().as_deref(), Some("order-7"));
    /// ```
    #[must_use]
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.meta.partition_key = Some(key.into());
        self
    }

    /// Sets the resource kind and id the event is about.
    ///
    /// ```
    /// let e = hookwire_core::Event::new("order.created", serde_json::Value::Null)
    ///     .with_resource("order", "o-1");
    /// assert_eq!(e.effective_partition_key().as_deref(), Some("order:o-1"));
    /// ```
    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>, id: impl Into<String>) -> Self {
        self.meta.resource = Some(resource.into());
        self.meta.resource_id = Some(id.into());
        self
    }

    /// Sets the payload's schema version.
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_schema_version(2);
    /// assert_eq!(e.meta.schema_version, Some(2));
    /// ```
    #[must_use]
    pub fn with_schema_version(mut self, version: u32) -> Self {
        self.meta.schema_version = Some(version);
        self
    }

    /// Sets the producer (CloudEvents `source`).
    ///
    /// ```
    /// let e = hookwire_core::Event::new("a", serde_json::Value::Null).with_source("/billing");
    /// assert_eq!(e.meta.source.as_deref(), Some("/billing"));
    /// ```
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.meta.source = Some(source.into());
        self
    }

    /// The key that orders this event: the partition key, else `resource:resourceId` when both
    /// are set, else `None` (unordered).
    ///
    /// ```
    /// assert_eq!(hookwire_core::Event::new("a", serde_json::Value::Null).effective_partition_key(), None);
    /// ```
    pub fn effective_partition_key(&self) -> Option<std::borrow::Cow<'_, str>> {
        if let Some(k) = &self.meta.partition_key {
            return Some(std::borrow::Cow::Borrowed(k));
        }
        match (&self.meta.resource, &self.meta.resource_id) {
            (Some(r), Some(id)) => Some(std::borrow::Cow::Owned(format!("{r}:{id}"))),
            _ => None,
        }
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

/// The CloudEvents `source` written for an event whose [`EventMeta::source`] is unset (the
/// attribute is required there); reading it back gives `None` again.
pub const NO_SOURCE: &str = "urn:hookwire:no-source";

/// CloudEvents attribute names the mapping owns; extensions with these names are not emitted.
const CE_RESERVED: [&str; 19] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "data",
    "data_base64",
    "datacontenttype",
    "correlationid",
    "causationid",
    "userid",
    "organizationid",
    "resource",
    "resourceid",
    "partitionkey",
    "schemaversion",
    "streamversion",
    "dataschema",
];

/// `DomainEvent` meta keys the mapping owns.
const DOMAIN_RESERVED: [&str; 12] = [
    "id",
    "timestamp",
    "resource",
    "resourceId",
    "userId",
    "organizationId",
    "correlationId",
    "causationId",
    "partitionKey",
    "schemaVersion",
    "source",
    "aggregate",
];

/// Why a CloudEvent or `DomainEvent` document could not be read as an [`Event`].
///
/// ```
/// let e = hookwire_core::Event::from_cloud_event(serde_json::json!({"id": "1"})).unwrap_err();
/// assert!(e.to_string().contains("specversion"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    why: String,
}

impl EnvelopeError {
    fn new(why: impl Into<String>) -> Self {
        Self { why: why.into() }
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid event envelope: {}", self.why)
    }
}

impl std::error::Error for EnvelopeError {}

fn put_opt(m: &mut Map<String, Value>, k: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), Value::String(v.clone()));
    }
}

fn take_str(m: &mut Map<String, Value>, k: &str) -> Result<Option<String>, EnvelopeError> {
    match m.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EnvelopeError::new(format!("`{k}` must be a string"))),
    }
}

fn take_u64(m: &mut Map<String, Value>, k: &str) -> Result<Option<u64>, EnvelopeError> {
    match m.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| EnvelopeError::new(format!("`{k}` must be a non-negative integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| EnvelopeError::new(format!("`{k}` must be a non-negative integer"))),
        Some(_) => Err(EnvelopeError::new(format!("`{k}` must be an integer"))),
    }
}

fn take_u32(m: &mut Map<String, Value>, k: &str) -> Result<Option<u32>, EnvelopeError> {
    take_u64(m, k)?
        .map(|v| u32::try_from(v).map_err(|_| EnvelopeError::new(format!("`{k}` is too large"))))
        .transpose()
}

fn required(m: &mut Map<String, Value>, k: &str) -> Result<String, EnvelopeError> {
    match take_str(m, k)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(EnvelopeError::new(format!("`{k}` is required"))),
    }
}

impl Event {
    /// This event as a CloudEvents 1.0 document in structured JSON mode.
    ///
    /// `id`, `type`, `time` (created-at), `subject` (the stream, when set), `source` and
    /// `data` map to their CloudEvents attributes; the rest of the metadata travels as the
    /// extensions `correlationid`, `causationid`, `userid`, `organizationid`, `resource`,
    /// `resourceid`, `partitionkey`, `schemaversion` and `streamversion`, and
    /// [`EventMeta::extensions`] become top-level attributes. [`Event::from_cloud_event`]
    /// reverses it exactly.
    ///
    /// ```
    /// use hookwire_core::Event;
    /// let e = Event::new("order.created", serde_json::json!({"id": 1})).with_source("/shop");
    /// let ce = e.to_cloud_event();
    /// assert_eq!(ce["specversion"], "1.0");
    /// assert_eq!(ce["type"], "order.created");
    /// assert_eq!(Event::from_cloud_event(ce).unwrap(), e);
    /// ```
    pub fn to_cloud_event(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.meta.extensions {
            if !CE_RESERVED.contains(&k.as_str()) || k == "datacontenttype" || k == "dataschema" {
                m.insert(k.clone(), v.clone());
            }
        }
        m.insert("specversion".to_owned(), Value::from("1.0"));
        m.insert("id".to_owned(), Value::from(self.id.clone()));
        m.insert(
            "source".to_owned(),
            Value::from(
                self.meta
                    .source
                    .clone()
                    .unwrap_or_else(|| NO_SOURCE.to_owned()),
            ),
        );
        m.insert("type".to_owned(), Value::from(self.name.clone()));
        put_opt(&mut m, "time", &self.meta.created_at);
        if !self.stream.is_empty() {
            m.insert("subject".to_owned(), Value::from(self.stream.clone()));
        }
        if self.version != 0 {
            m.insert(
                "streamversion".to_owned(),
                Value::from(self.version.to_string()),
            );
        }
        let meta = &self.meta;
        put_opt(&mut m, "correlationid", &meta.correlation_id);
        put_opt(&mut m, "causationid", &meta.causation_id);
        put_opt(&mut m, "userid", &meta.user_id);
        put_opt(&mut m, "organizationid", &meta.organization_id);
        put_opt(&mut m, "resource", &meta.resource);
        put_opt(&mut m, "resourceid", &meta.resource_id);
        put_opt(&mut m, "partitionkey", &meta.partition_key);
        if let Some(v) = meta.schema_version {
            // CloudEvents integers are 32-bit signed; larger versions travel as strings.
            let v = i32::try_from(v).map_or_else(|_| Value::from(v.to_string()), Value::from);
            m.insert("schemaversion".to_owned(), v);
        }
        if !self.data.is_null() {
            m.entry("datacontenttype")
                .or_insert_with(|| Value::from("application/json"));
            m.insert("data".to_owned(), self.data.clone());
        }
        Value::Object(m)
    }

    /// Reads a CloudEvents 1.0 structured-mode JSON document (see [`Event::to_cloud_event`]).
    /// Attributes without a field of their own (other extensions, `dataschema`, a non-JSON
    /// `datacontenttype`) are kept in [`EventMeta::extensions`]. `data_base64` is refused.
    ///
    /// ```
    /// let ce = serde_json::json!({
    ///     "specversion": "1.0", "id": "a-1", "source": "/shop", "type": "order.created",
    ///     "subject": "order-7", "traceparent": "00-abc", "data": {"total": 3}
    /// });
    /// let e = hookwire_core::Event::from_cloud_event(ce).unwrap();
    /// assert_eq!((e.id.as_str(), e.stream.as_str()), ("a-1", "order-7"));
    /// assert_eq!(e.meta.extensions["traceparent"], "00-abc");
    /// ```
    pub fn from_cloud_event(doc: Value) -> Result<Self, EnvelopeError> {
        let Value::Object(mut m) = doc else {
            return Err(EnvelopeError::new("a CloudEvent is a JSON object"));
        };
        match take_str(&mut m, "specversion")?.as_deref() {
            Some("1.0") => {}
            _ => return Err(EnvelopeError::new("`specversion` must be \"1.0\"")),
        }
        if m.contains_key("data_base64") {
            return Err(EnvelopeError::new("`data_base64` is not supported"));
        }
        let id = required(&mut m, "id")?;
        let name = required(&mut m, "type")?;
        let source = required(&mut m, "source")?;
        if m.get("datacontenttype").and_then(Value::as_str) == Some("application/json") {
            m.remove("datacontenttype");
        }
        let meta = EventMeta {
            created_at: take_str(&mut m, "time")?,
            correlation_id: take_str(&mut m, "correlationid")?,
            causation_id: take_str(&mut m, "causationid")?,
            user_id: take_str(&mut m, "userid")?,
            organization_id: take_str(&mut m, "organizationid")?,
            resource: take_str(&mut m, "resource")?,
            resource_id: take_str(&mut m, "resourceid")?,
            partition_key: take_str(&mut m, "partitionkey")?,
            schema_version: take_u32(&mut m, "schemaversion")?,
            source: (source != NO_SOURCE).then_some(source),
            extensions: BTreeMap::new(),
        };
        let stream = take_str(&mut m, "subject")?.unwrap_or_default();
        let version = take_u64(&mut m, "streamversion")?.unwrap_or(0);
        let data = m.remove("data").unwrap_or(Value::Null);
        let mut e = Event {
            id,
            name,
            stream,
            version,
            data,
            meta,
        };
        e.meta.extensions = m.into_iter().collect();
        Ok(e)
    }

    /// This event in the `DomainEvent` shape used by Node event buses:
    /// `{"type", "payload", "meta": {"id", "timestamp", "resource", "resourceId", "userId",
    /// "organizationId", "correlationId", "causationId", "partitionKey", "schemaVersion",
    /// "source", "aggregate": {"id", "version"}, …extensions}}`.
    ///
    /// ```
    /// use hookwire_core::Event;
    /// let e = Event::new("order.created", serde_json::json!({"orderId": "1"}))
    ///     .with_resource("order", "1");
    /// let d = e.to_domain_event();
    /// assert_eq!(d["payload"]["orderId"], "1");
    /// assert_eq!(d["meta"]["resourceId"], "1");
    /// assert_eq!(Event::from_domain_event(d).unwrap(), e);
    /// ```
    pub fn to_domain_event(&self) -> Value {
        let mut meta = Map::new();
        for (k, v) in &self.meta.extensions {
            if !DOMAIN_RESERVED.contains(&k.as_str()) {
                meta.insert(k.clone(), v.clone());
            }
        }
        let m = &self.meta;
        meta.insert("id".to_owned(), Value::from(self.id.clone()));
        put_opt(&mut meta, "timestamp", &m.created_at);
        put_opt(&mut meta, "resource", &m.resource);
        put_opt(&mut meta, "resourceId", &m.resource_id);
        put_opt(&mut meta, "userId", &m.user_id);
        put_opt(&mut meta, "organizationId", &m.organization_id);
        put_opt(&mut meta, "correlationId", &m.correlation_id);
        put_opt(&mut meta, "causationId", &m.causation_id);
        put_opt(&mut meta, "partitionKey", &m.partition_key);
        if let Some(v) = m.schema_version {
            meta.insert("schemaVersion".to_owned(), Value::from(v));
        }
        put_opt(&mut meta, "source", &m.source);
        if !self.stream.is_empty() || self.version != 0 {
            meta.insert(
                "aggregate".to_owned(),
                serde_json::json!({"id": self.stream, "version": self.version}),
            );
        }
        serde_json::json!({"type": self.name, "payload": self.data, "meta": meta})
    }

    /// Reads the `DomainEvent` shape (see [`Event::to_domain_event`]); unknown meta keys (such
    /// as `idempotencyKey`) are kept in [`EventMeta::extensions`].
    ///
    /// ```
    /// let d = serde_json::json!({"type": "order.created", "payload": {"orderId": "1"},
    ///     "meta": {"id": "u-1", "timestamp": "2024-01-01T00:00:00.000Z", "idempotencyKey": "k"}});
    /// let e = hookwire_core::Event::from_domain_event(d).unwrap();
    /// assert_eq!(e.id, "u-1");
    /// assert_eq!(e.meta.extensions["idempotencyKey"], "k");
    /// ```
    pub fn from_domain_event(doc: Value) -> Result<Self, EnvelopeError> {
        let Value::Object(mut top) = doc else {
            return Err(EnvelopeError::new("a DomainEvent is a JSON object"));
        };
        let name = required(&mut top, "type")?;
        let data = top.remove("payload").unwrap_or(Value::Null);
        let Some(Value::Object(mut m)) = top.remove("meta") else {
            return Err(EnvelopeError::new("`meta` is required"));
        };
        let id = required(&mut m, "id")?;
        let (mut stream, mut version) = (String::new(), 0);
        if let Some(Value::Object(agg)) = m.get("aggregate") {
            let mut agg = agg.clone();
            if agg.len() == 2
                && let (Ok(Some(s)), Ok(Some(v))) =
                    (take_str(&mut agg, "id"), take_u64(&mut agg, "version"))
            {
                (stream, version) = (s, v);
                m.remove("aggregate");
            }
        }
        let meta = EventMeta {
            created_at: take_str(&mut m, "timestamp")?,
            correlation_id: take_str(&mut m, "correlationId")?,
            causation_id: take_str(&mut m, "causationId")?,
            user_id: take_str(&mut m, "userId")?,
            organization_id: take_str(&mut m, "organizationId")?,
            resource: take_str(&mut m, "resource")?,
            resource_id: take_str(&mut m, "resourceId")?,
            partition_key: take_str(&mut m, "partitionKey")?,
            schema_version: take_u32(&mut m, "schemaVersion")?,
            source: take_str(&mut m, "source")?,
            extensions: m.into_iter().collect(),
        };
        Ok(Event {
            id,
            name,
            stream,
            version,
            data,
            meta,
        })
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

    #[test]
    fn new_meta_fields_are_camel_case_and_old_json_still_parses() {
        let e = Event::new("a", Value::Null)
            .with_id("1")
            .with_partition_key("k")
            .with_resource("order", "o1")
            .with_schema_version(2)
            .with_source("/s");
        let j: Value = serde_json::to_value(&e).unwrap();
        assert_eq!(j["meta"]["partitionKey"], "k");
        assert_eq!(j["meta"]["resourceId"], "o1");
        assert_eq!(j["meta"]["schemaVersion"], 2);
        let old = r#"{"id":"1","name":"a","stream":"","version":0,"data":null,"meta":{"createdAt":"2024-01-01T00:00:00Z"}}"#;
        let back: Event = serde_json::from_str(old).unwrap();
        assert_eq!(String::from_utf8(back.to_json_bytes()).unwrap(), old);
    }

    fn opt(s: &str) -> Option<String> {
        (!s.is_empty()).then(|| s.to_owned())
    }

    proptest::proptest! {
        #[test]
        fn cloud_event_and_domain_event_round_trips_are_lossless(
            id in "[a-z0-9]{1,8}", name in "[a-z]{1,5}(\\.[a-z]{1,5}){0,2}",
            stream in "[a-z0-9-]{0,6}", version in proptest::prelude::any::<u64>(),
            n in proptest::prelude::any::<i64>(), s in "\\PC{0,12}",
            corr in "[a-z]{0,4}", cause in "[a-z]{0,4}", user in "[a-z]{0,4}", org in "[a-z]{0,4}",
            res in "[a-z]{0,4}", rid in "[a-z]{0,4}", pk in "[a-z]{0,4}", src in "[a-z/]{0,6}",
            sv in proptest::option::of(proptest::prelude::any::<u32>()),
            ext in proptest::collection::btree_map("x[a-z]{1,6}", "[a-z]{0,5}", 0..3),
        ) {
            let data = if s.is_empty() { Value::Null } else { serde_json::json!({"n": n, "s": s, "nested": [{"k": s}]}) };
            let mut e = Event::new(name, data).with_id(id).with_stream(stream, version);
            e.meta.correlation_id = opt(&corr);
            e.meta.causation_id = opt(&cause);
            e.meta.user_id = opt(&user);
            e.meta.organization_id = opt(&org);
            e.meta.resource = opt(&res);
            e.meta.resource_id = opt(&rid);
            e.meta.partition_key = opt(&pk);
            e.meta.source = opt(&src);
            e.meta.schema_version = sv;
            e.meta.extensions = ext.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
            let ce = e.to_cloud_event();
            let back = Event::from_cloud_event(ce.clone()).unwrap();
            proptest::prop_assert_eq!(&back, &e);
            proptest::prop_assert_eq!(back.to_cloud_event(), ce);
            let d = e.to_domain_event();
            let back = Event::from_domain_event(d.clone()).unwrap();
            proptest::prop_assert_eq!(&back, &e);
            proptest::prop_assert_eq!(back.to_domain_event(), d);
        }
    }

    #[test]
    fn foreign_cloud_events_keep_unknown_attributes() {
        let ce = json!({"specversion": "1.0", "id": "1", "source": "/x", "type": "a.b",
            "datacontenttype": "text/plain", "dataschema": "https://s", "data": "hi", "traceparent": "t"});
        let e = Event::from_cloud_event(ce.clone()).unwrap();
        assert_eq!(e.to_cloud_event(), ce);
        assert!(
            Event::from_cloud_event(json!({"specversion": "1.0", "id": "1", "source": "/x",
            "type": "a", "data_base64": "aGk="}))
            .is_err()
        );
        assert!(
            Event::from_cloud_event(
                json!({"specversion": "0.3", "id": "1", "source": "/x", "type": "a"})
            )
            .is_err()
        );
    }
}
