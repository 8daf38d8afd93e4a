//! The one error type of the SSE crate: opaque, with a kind to branch on and the source chain
//! kept (a Redis error stays a Redis error underneath). [`crate::PublishError`] and
//! [`crate::ApplyError`] stay enums: their variants are the version rules the crate sells.

use std::fmt;

use crate::channel::PublishError;

/// A boxed error source.
type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Redis failed or is unreachable (features `redis`, `events`); nothing was published
    /// anywhere.
    Redis,
    /// The event bus refused a publish or a subscription (feature `events`); nothing was
    /// published anywhere.
    Bus,
    /// Another node already published this or a newer version of the stream (feature
    /// `events`); see [`Error::versions`].
    NotNewer,
    /// The local publish was refused; the [`PublishError`] is the source.
    Publish,
    /// The input broke a stated rule or limit (an event filter, an option).
    Invalid,
    /// A state or envelope could not be (de)serialized.
    Serialize,
}

impl ErrorKind {
    /// A short lowercase name (`redis`, `not_newer`…).
    ///
    /// ```
    /// assert_eq!(hookwire_sse::ErrorKind::Invalid.as_str(), "invalid");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Bus => "bus",
            Self::NotNewer => "not_newer",
            Self::Publish => "publish",
            Self::Invalid => "invalid",
            Self::Serialize => "serialize",
        }
    }
}

/// An error from a fan-out, a filter or an option of this crate.
///
/// ```
/// let e = hookwire_sse::EventFilter::parse("a,,b").unwrap_err();
/// assert!(e.is_invalid());
/// assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    versions: Option<(u64, u64)>,
    source: Source,
}

/// The message of a [`ErrorKind::NotNewer`] error.
#[cfg(feature = "events")]
#[derive(Debug)]
struct NotNewer {
    current: u64,
    got: u64,
}

#[cfg(feature = "events")]
impl fmt::Display for NotNewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "version {} is not newer than {} in redis",
            self.got, self.current
        )
    }
}

#[cfg(feature = "events")]
impl std::error::Error for NotNewer {}

impl Error {
    fn new(kind: ErrorKind, source: impl Into<Source>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                versions: None,
                source: source.into(),
            }),
        }
    }
    /// A Redis failure, kept as the source.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(source: redis::RedisError) -> Self {
        Self::new(ErrorKind::Redis, source)
    }
    /// The event bus refused, kept as the source.
    #[cfg(feature = "events")]
    pub(crate) fn bus(source: hookwire_events::Error) -> Self {
        Self::new(ErrorKind::Bus, source)
    }
    /// Redis holds `current`, which is not older than `got`.
    #[cfg(feature = "events")]
    pub(crate) fn not_newer(current: u64, got: u64) -> Self {
        let mut e = Self::new(ErrorKind::NotNewer, NotNewer { current, got });
        e.inner.versions = Some((current, got));
        e
    }
    /// A broken rule in the input.
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg.into())
    }
    /// A (de)serialization failure.
    #[cfg(feature = "events")]
    pub(crate) fn serialize(source: serde_json::Error) -> Self {
        Self::new(ErrorKind::Serialize, source)
    }
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// True when Redis failed: nothing was published, retry later.
    pub fn is_redis(&self) -> bool {
        self.inner.kind == ErrorKind::Redis
    }
    /// True when the event bus refused: nothing was published, retry later.
    pub fn is_bus(&self) -> bool {
        self.inner.kind == ErrorKind::Bus
    }
    /// True when another node already published this or a newer version.
    pub fn is_not_newer(&self) -> bool {
        self.inner.kind == ErrorKind::NotNewer
    }
    /// True when the local publish was refused (see [`Error::publish_error`]).
    pub fn is_publish(&self) -> bool {
        self.inner.kind == ErrorKind::Publish
    }
    /// True when the input broke a stated rule or limit.
    pub fn is_invalid(&self) -> bool {
        self.inner.kind == ErrorKind::Invalid
    }
    /// For [`ErrorKind::NotNewer`]: `(current, got)`, the version Redis holds and the refused one.
    pub fn versions(&self) -> Option<(u64, u64)> {
        self.inner.versions
    }
    /// For [`ErrorKind::Publish`]: the rule the publish broke.
    pub fn publish_error(&self) -> Option<&PublishError> {
        self.inner.source.downcast_ref()
    }
    /// The HTTP status this error answers with where it reaches a client: 400 for bad input,
    /// 409 for a refused version, 503 when Redis or the bus failed, 500 otherwise.
    pub fn status(&self) -> http::StatusCode {
        match self.inner.kind {
            ErrorKind::Invalid => http::StatusCode::BAD_REQUEST,
            ErrorKind::NotNewer | ErrorKind::Publish => http::StatusCode::CONFLICT,
            ErrorKind::Redis | ErrorKind::Bus => http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Serialize => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<PublishError> for Error {
    fn from(e: PublishError) -> Self {
        Self::new(ErrorKind::Publish, e)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("hookwire_sse::Error")
            .field("kind", &self.inner.kind)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source's text alone: callers printed these messages before the error was one type.
        self.inner.source.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner.source)
    }
}
