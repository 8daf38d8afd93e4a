//! [`WebhookBody`]: what a [`crate::Webhook`] sends.

use bytes::Bytes;

/// A request body: text is sent verbatim, JSON is serialized, bytes are sent as they are.
///
/// ```
/// use hookwire_webhook_sender::WebhookBody;
/// let b = WebhookBody::from(serde_json::json!({"a": 1}));
/// assert_eq!(b.into_bytes().unwrap(), &br#"{"a":1}"#[..]);
/// assert_eq!(WebhookBody::from("raw").into_bytes().unwrap(), &b"raw"[..]);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WebhookBody {
    /// Sent as-is.
    Text(String),
    /// JSON-serialized.
    Json(serde_json::Value),
    /// Sent as-is (already serialized bytes).
    Bytes(Bytes),
}

impl WebhookBody {
    /// The bytes to put on the wire.
    pub fn into_bytes(self) -> Result<Bytes, serde_json::Error> {
        match self {
            WebhookBody::Text(s) => Ok(Bytes::from(s)),
            WebhookBody::Json(v) => serde_json::to_vec(&v).map(Bytes::from),
            WebhookBody::Bytes(b) => Ok(b),
        }
    }
}

impl From<&str> for WebhookBody {
    fn from(s: &str) -> Self {
        WebhookBody::Text(s.to_owned())
    }
}
impl From<String> for WebhookBody {
    fn from(s: String) -> Self {
        WebhookBody::Text(s)
    }
}
impl From<serde_json::Value> for WebhookBody {
    fn from(v: serde_json::Value) -> Self {
        WebhookBody::Json(v)
    }
}
impl From<Bytes> for WebhookBody {
    fn from(b: Bytes) -> Self {
        WebhookBody::Bytes(b)
    }
}
