//! The one error type of the WebSocket crate: opaque, with a kind to branch on and the source
//! chain kept (a bus error stays a bus error underneath).

use std::fmt;

/// A boxed error source.
type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Auth is on (the default) but no authenticator was given: fail closed, do not serve.
    MissingAuthenticator,
    /// A builder option is out of range (for example a zero `max_message_bytes`).
    InvalidOption,
    /// The event bus refused a subscription (feature `events`).
    Bus,
}

impl ErrorKind {
    /// A short lowercase name (`missing_authenticator`, `invalid_option`, `bus`).
    ///
    /// ```
    /// assert_eq!(hookwire_ws::ErrorKind::Bus.as_str(), "bus");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingAuthenticator => "missing_authenticator",
            Self::InvalidOption => "invalid_option",
            Self::Bus => "bus",
        }
    }
}

/// Why building a gateway or connecting its fan-out failed.
///
/// ```
/// let err = hookwire_ws::WsGateway::builder().build().unwrap_err();
/// assert!(err.is_missing_authenticator());
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    source: Source,
}

impl Error {
    fn new(kind: ErrorKind, source: impl Into<Source>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                source: source.into(),
            }),
        }
    }
    pub(crate) fn missing_authenticator() -> Self {
        Self::new(
            ErrorKind::MissingAuthenticator,
            "auth is on but no authenticator is set: call .authenticator(..) or .auth(false)",
        )
    }
    pub(crate) fn invalid(msg: impl fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidOption, format!("invalid option: {msg}"))
    }
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// Auth is on (the default) but no authenticator was given: fail closed, do not serve.
    pub fn is_missing_authenticator(&self) -> bool {
        self.inner.kind == ErrorKind::MissingAuthenticator
    }
    /// An option is out of range (for example a zero `max_message_bytes`).
    pub fn is_invalid_option(&self) -> bool {
        self.inner.kind == ErrorKind::InvalidOption
    }
    /// The event bus refused (feature `events`); the bus error is the source.
    pub fn is_bus(&self) -> bool {
        self.inner.kind == ErrorKind::Bus
    }
}

#[cfg(feature = "events")]
impl From<hookwire_events::Error> for Error {
    fn from(e: hookwire_events::Error) -> Self {
        Self::new(ErrorKind::Bus, e)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("hookwire_ws::Error")
            .field("kind", &self.inner.kind)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.source.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.inner.kind {
            ErrorKind::Bus => Some(&*self.inner.source),
            _ => None,
        }
    }
}
