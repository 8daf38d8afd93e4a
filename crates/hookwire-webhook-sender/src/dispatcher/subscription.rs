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
    /// Only events of this organization (`meta.organizationId`) are delivered; `None` = every
    /// event. An organization-scoped subscription never receives an event of another
    /// organization, nor one without organization. Omitted from JSON when `None`, so stored
    /// subscriptions read and write as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
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
            .field("organization", &self.organization)
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
            organization: None,
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

    /// Receives only events of organization `org`.
    ///
    /// ```
    /// use hookwire_core::Event;
    /// use hookwire_webhook_sender::Subscription;
    /// let s = Subscription::new("s1", "https://a.example/", &["order.*"])
    ///     .unwrap()
    ///     .with_organization("acme");
    /// let e = Event::new("order.paid", serde_json::json!({}));
    /// assert!(s.accepts(&e.clone().with_organization("acme")));
    /// assert!(!s.accepts(&e.clone().with_organization("globex")));
    /// assert!(!s.accepts(&e), "an event without organization is not acme's");
    /// ```
    #[must_use]
    pub fn with_organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }

    /// Whether any pattern matches `event_type`.
    pub fn matches(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| p.matches(event_type))
    }

    /// Whether the organization filter lets an event of organization `org` through.
    pub fn accepts_organization(&self, org: Option<&str>) -> bool {
        self.organization
            .as_deref()
            .is_none_or(|mine| org == Some(mine))
    }

    /// Whether `event` is for this subscription: a pattern matches its type and the
    /// organization filter lets it through.
    pub fn accepts(&self, event: &hookwire_core::Event) -> bool {
        self.matches(&event.name) && self.accepts_organization(event.organization_id())
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
        assert!(
            !j.contains("organization"),
            "absent filter, absent field: {j}"
        );
        let scoped = s.with_organization("acme");
        let j = serde_json::to_string(&scoped).unwrap();
        assert!(j.contains(r#""organization":"acme""#), "{j}");
        assert_eq!(serde_json::from_str::<Subscription>(&j).unwrap(), scoped);
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
