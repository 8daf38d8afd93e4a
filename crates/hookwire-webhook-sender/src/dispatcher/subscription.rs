//! A subscription: one endpoint that wants the events matching its patterns.

use std::fmt;

use hookwire_core::{Pattern, PatternError, Scheme};
use serde::{Deserialize, Serialize};

/// A token-bucket rate limit: `per_second` deliveries on average, bursts up to `burst`.
///
/// ```
/// use hookwire_webhook_sender::EndpointRateLimit;
/// let r = EndpointRateLimit::new(10.0, 5)?;
/// assert_eq!(r.burst, 5);
/// assert!(EndpointRateLimit::new(0.0, 5).unwrap_err().is_build());
/// assert!(EndpointRateLimit::new(10.0, 0).unwrap_err().is_build());
/// # Ok::<(), hookwire_webhook_sender::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointRateLimit {
    /// Sustained deliveries per second (> 0).
    pub per_second: f64,
    /// Bucket size (≥ 1).
    pub burst: u32,
}

impl EndpointRateLimit {
    /// A limit. A rate that is not a finite number above 0, or a zero burst, is refused
    /// with an error of kind [`crate::ErrorKind::Build`] (never changed silently).
    pub fn new(per_second: f64, burst: u32) -> Result<Self, crate::Error> {
        let limit = Self { per_second, burst };
        limit.check().map_err(crate::Error::build)?;
        Ok(limit)
    }

    /// Why this limit cannot be used, if it cannot (the fields are public and deserialized
    /// from stores, so registration checks them again).
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(format!(
                "rate limit per_second must be a finite number above 0, got {}",
                self.per_second
            ));
        }
        if self.burst == 0 {
            return Err("rate limit burst must be at least 1, got 0".to_owned());
        }
        Ok(())
    }
}

/// One registered endpoint.
///
/// Serializable so a [`crate::WebhookStore`] can persist it; the secret is stored with it (protect
/// the store like any secret store) and is redacted in `Debug`.
///
/// ```
/// use hookwire_webhook_sender::Subscription;
/// let s = Subscription::new("s1", "https://hooks.example.com/in", &["order.*", "user.created"])
///     .unwrap()
///     .with_secret("s3cret");
/// assert!(s.enabled);
/// assert!(format!("{s:?}").contains("[redacted]"));
/// assert!(Subscription::new("s2", "https://x.test/", &["bad..pattern"]).is_err());
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Subscription {
    /// Unique id; registering the same id again replaces the subscription.
    pub id: String,
    /// Where events are delivered.
    pub url: String,
    /// Event patterns: `order.created`, `order.*`, `*`.
    pub events: Vec<Pattern>,
    /// Signing secret; `None` or empty = unsigned.
    #[serde(default)]
    pub secret: Option<String>,
    /// Signature scheme (default `hookwire`).
    #[serde(default = "default_scheme", with = "scheme_name")]
    pub scheme: Scheme,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Disabled subscriptions receive nothing until re-enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Why the subscription was disabled (by the health tracker, a 410, or an operator).
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// Optional per-endpoint rate limit.
    #[serde(default)]
    pub rate_limit: Option<EndpointRateLimit>,
}

fn default_scheme() -> Scheme {
    Scheme::Hookwire
}

fn yes() -> bool {
    true
}

mod scheme_name {
    use hookwire_core::Scheme;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(s: &Scheme, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Scheme, D::Error> {
        let s = String::deserialize(de)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("scheme", &self.scheme)
            .field("enabled", &self.enabled)
            .field("disabled_reason", &self.disabled_reason)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// An enabled, unsigned subscription to `patterns`.
    pub fn new(
        id: impl Into<String>,
        url: impl Into<String>,
        patterns: &[&str],
    ) -> Result<Self, PatternError> {
        let events = patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            id: id.into(),
            url: url.into(),
            events,
            secret: None,
            scheme: Scheme::Hookwire,
            headers: Vec::new(),
            enabled: true,
            disabled_reason: None,
            rate_limit: None,
        })
    }

    /// Signs deliveries with `secret`.
    #[must_use]
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Uses `scheme` for signatures.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Adds a header to every delivery.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Limits the delivery rate to this endpoint.
    #[must_use]
    pub fn with_rate_limit(mut self, limit: EndpointRateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Whether any pattern matches `event_type`.
    pub fn matches(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| p.matches(event_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_with_scheme_names() {
        let s = Subscription::new("a", "https://x.test/", &["order.*"])
            .unwrap()
            .with_scheme(Scheme::Standard)
            .with_rate_limit(EndpointRateLimit::new(5.0, 2).unwrap());
        let j = serde_json::to_string(&s).unwrap();
        assert!(j.contains(r#""scheme":"standard""#), "{j}");
        let back: Subscription = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn minimal_json_gets_defaults_and_unknown_schemes_fail() {
        let s: Subscription =
            serde_json::from_str(r#"{"id":"a","url":"https://x.test/","events":["*"]}"#).unwrap();
        assert!(s.enabled);
        assert_eq!(s.scheme, Scheme::Hookwire);
        let bad = serde_json::from_str::<Subscription>(
            r#"{"id":"a","url":"u","events":["*"],"scheme":"rot13"}"#,
        );
        assert!(bad.is_err());
    }
}
