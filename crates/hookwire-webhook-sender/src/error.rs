//! The one error type of the sender's configuration, subscription and store operations.
//!
//! A delivery's own failure is not an [`Error`]: it is a [`crate::DeliveryOutcome`] carrying the
//! core's `HttpError`, and a transport failure of an [`crate::HttpClient`] is a
//! [`crate::TransportError`] (both are the product: their variants are what callers branch on).

use std::fmt;

/// A boxed source error.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A builder was given an option it cannot use (URL, method, secret, certificate, limit).
    Build,
    /// The subscription is invalid (URL, SSRF, secret, patterns, limits).
    InvalidSubscription,
    /// No subscription with that id.
    NotFound,
    /// The subscription store failed; nothing changed.
    Store,
    /// The durable queue refused a task; the event was not (fully) enqueued.
    Queue,
    /// The event bus refused a subscription or an announcement (feature `events`).
    Bus,
}

impl ErrorKind {
    /// A short lowercase name (`build`, `store`…).
    ///
    /// ```
    /// assert_eq!(hookwire_webhook_sender::ErrorKind::NotFound.as_str(), "not_found");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Build => "build",
            Self::InvalidSubscription => "invalid_subscription",
            Self::NotFound => "not_found",
            Self::Store => "store",
            Self::Queue => "queue",
            Self::Bus => "bus",
        }
    }
}

/// An error from a builder, the [`crate::Dispatcher`] or a [`crate::WebhookStore`].
///
/// The cause stays reachable through [`std::error::Error::source`]: a Redis failure in the store
/// is a `redis::RedisError` underneath.
///
/// ```
/// use hookwire_webhook_sender::{Error, ErrorKind};
/// let e = Error::store(std::io::Error::other("connection refused"));
/// assert!(e.is_store());
/// assert_eq!(e.kind(), ErrorKind::Store);
/// assert_eq!(e.to_string(), "webhook store failed: connection refused");
/// assert!(std::error::Error::source(&e).is_some());
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: Option<String>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` caused by `source` (for custom [`crate::WebhookStore`]s and queues).
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            message: None,
            source: Some(source.into()),
        }
    }
    /// A store failure caused by `source`.
    pub fn store(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Store, source)
    }
    /// An error of `kind` described by `message`, with no underlying cause.
    pub(crate) fn msg(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: Some(message.into()),
            source: None,
        }
    }
    /// A builder option that cannot be used.
    pub(crate) fn build(message: impl Into<String>) -> Self {
        Self::msg(ErrorKind::Build, message)
    }
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// A builder refused an option.
    pub fn is_build(&self) -> bool {
        self.kind == ErrorKind::Build
    }
    /// The subscription was refused.
    pub fn is_invalid_subscription(&self) -> bool {
        self.kind == ErrorKind::InvalidSubscription
    }
    /// No subscription with that id.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
    /// The store failed (worth retrying later).
    pub fn is_store(&self) -> bool {
        self.kind == ErrorKind::Store
    }
    /// The durable queue failed (worth retrying later).
    pub fn is_queue(&self) -> bool {
        self.kind == ErrorKind::Queue
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ErrorKind::Store {
            f.write_str("webhook store failed: ")?;
        }
        match (&self.message, &self.source) {
            (Some(m), _) => f.write_str(m),
            (None, Some(s)) => write!(f, "{s}"),
            (None, None) => f.write_str(self.kind.as_str()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
