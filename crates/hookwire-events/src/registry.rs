//! The schema registry: JSON Schemas per (event type, schema version), validation on publish
//! against the event's own version, and upcasters that lift old payloads on read.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use hookwire_core::Event;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::handler::HandlerError;

/// Most validation messages kept in one error.
const MAX_MESSAGES: usize = 8;

/// What `publish` does with a payload that fails its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ValidateMode {
    /// No validation.
    Off,
    /// Log a warning and publish anyway.
    #[default]
    Warn,
    /// Fail `publish` with [`ErrorKind::Schema`](crate::ErrorKind::Schema).
    Reject,
}

type Upcaster = Arc<dyn Fn(Value) -> std::result::Result<Value, HandlerError> + Send + Sync>;

/// Schemas per (type, version) and upcasters from version `v` to `v + 1`.
///
/// An event without a schema version is stamped with the latest registered version of its type
/// when published; events of unregistered types pass.
///
/// ```
/// use hookwire_events::{Registry, ValidateMode};
/// use serde_json::json;
/// let reg = Registry::new(ValidateMode::Reject)
///     .schema("order.created", 1, json!({
///         "type": "object", "required": ["id", "lines"],
///         "properties": {"id": {"type": "integer"},
///                        "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}}}
///     })).unwrap();
/// let ok = hookwire_core::Event::new("order.created", json!({"id": 1, "lines": [{"sku": "a"}]}));
/// assert!(reg.validate(&ok).is_ok());
/// let bad = hookwire_core::Event::new("order.created", json!({"id": 1.5, "lines": [{}]}));
/// assert!(reg.validate(&bad).unwrap_err().is_schema());
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    mode: ValidateMode,
    schemas: HashMap<(String, u32), Arc<jsonschema::Validator>>,
    latest: HashMap<String, u32>,
    upcasters: HashMap<(String, u32), Upcaster>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.schemas.keys().collect();
        keys.sort();
        f.debug_struct("Registry")
            .field("mode", &self.mode)
            .field("schemas", &keys)
            .field("upcasters", &self.upcasters.len())
            .finish()
    }
}

impl Registry {
    /// An empty registry in `mode`.
    pub fn new(mode: ValidateMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Registers the JSON Schema of `event_type` at `version`. A schema that does not compile
    /// or a (type, version) registered twice is a [`ErrorKind::Config`] error.
    ///
    /// ```
    /// let r = hookwire_events::Registry::default().schema("a", 1, serde_json::json!({"type": "nope"}));
    /// assert_eq!(r.unwrap_err().kind(), hookwire_events::ErrorKind::Config);
    /// ```
    pub fn schema(mut self, event_type: &str, version: u32, schema: Value) -> Result<Self> {
        let key = (event_type.to_owned(), version);
        if self.schemas.contains_key(&key) {
            return Err(Error::config(format!(
                "event '{event_type}' v{version} is already registered"
            )));
        }
        let v = jsonschema::validator_for(&schema).map_err(|e| {
            Error::config(format!(
                "schema of '{event_type}' v{version} is invalid: {e}"
            ))
        })?;
        self.schemas.insert(key, Arc::new(v));
        let latest = self.latest.entry(event_type.to_owned()).or_insert(version);
        *latest = (*latest).max(version);
        Ok(self)
    }

    /// Registers a function that turns a `version` payload of `event_type` into a
    /// `version + 1` payload; handlers then receive the newest shape.
    ///
    /// ```
    /// use serde_json::json;
    /// let reg = hookwire_events::Registry::default()
    ///     .upcaster("user.created", 1, |mut d| { d["name"] = d["first"].take(); Ok(d) });
    /// let old = hookwire_core::Event::new("user.created", json!({"first": "Ada"})).with_schema_version(1);
    /// let new = reg.upcast(old).unwrap();
    /// assert_eq!(new.data["name"], "Ada");
    /// assert_eq!(new.meta.schema_version, Some(2));
    /// ```
    #[must_use]
    pub fn upcaster<F>(mut self, event_type: &str, version: u32, f: F) -> Self
    where
        F: Fn(Value) -> std::result::Result<Value, HandlerError> + Send + Sync + 'static,
    {
        self.upcasters
            .insert((event_type.to_owned(), version), Arc::new(f));
        self
    }

    /// The validation mode.
    pub fn mode(&self) -> ValidateMode {
        self.mode
    }

    /// The latest registered version of `event_type`.
    pub fn latest_version(&self, event_type: &str) -> Option<u32> {
        self.latest.get(event_type).copied()
    }

    /// Stamps the latest version on an event that has none (registered types only).
    pub(crate) fn stamp(&self, event: &mut Event) {
        if event.meta.schema_version.is_none() {
            event.meta.schema_version = self.latest_version(&event.name);
        }
    }

    /// Validates the payload against the schema of the event's own version (the latest when the
    /// event has none). Unknown types and versions pass.
    pub fn validate(&self, event: &Event) -> Result<()> {
        let Some(version) = event
            .meta
            .schema_version
            .or_else(|| self.latest_version(&event.name))
        else {
            return Ok(());
        };
        let Some(v) = self.schemas.get(&(event.name.clone(), version)) else {
            return Ok(());
        };
        let msgs: Vec<String> = v
            .iter_errors(&event.data)
            .take(MAX_MESSAGES)
            .map(|e| format!("{} at '{}'", e, e.instance_path()))
            .collect();
        if msgs.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Schema,
            format!(
                "event '{}' v{version} payload validation failed: {}",
                event.name,
                msgs.join("; ")
            ),
        ))
    }

    /// Applies upcasters from the event's version up to the newest one reachable.
    pub fn upcast(&self, mut event: Event) -> std::result::Result<Event, HandlerError> {
        let Some(mut v) = event.meta.schema_version else {
            return Ok(event);
        };
        // Bounded by the number of upcasters: each step raises the version by one.
        for _ in 0..=self.upcasters.len() {
            let Some(f) = self.upcasters.get(&(event.name.clone(), v)) else {
                break;
            };
            event.data = f(std::mem::take(&mut event.data))?;
            v += 1;
            event.meta.schema_version = Some(v);
        }
        Ok(event)
    }
}
