//! The one error type of the events crate: opaque, with a kind to branch on and the source chain
//! kept (a Redis or SQL error stays that error underneath).

use std::fmt;

/// A boxed error source.
type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The transport or store could not be reached or answered with an error; the operation did
    /// not happen (for `publish`: the event is *not* durable, retry it).
    Transport,
    /// The input broke a stated limit or rule (event size, batch size, name, pattern…).
    Invalid,
    /// The event could not be (de)serialized.
    Serialize,
    /// A configuration given to a builder is not usable; reported by `build()`.
    Config,
    /// The bus or relay is shutting down or already stopped.
    Shutdown,
    /// An event is larger than the configured maximum (bytes of its JSON form).
    TooLarge,
    /// The registry rejected the event's payload (mode `reject`).
    Schema,
    /// The transport cannot do this (a group subscription on Redis pub/sub).
    Unsupported,
    /// The item asked for does not exist (a dead letter already redriven or discarded).
    NotFound,
}

impl ErrorKind {
    /// A short lowercase name (`transport`, `invalid`…).
    ///
    /// ```
    /// assert_eq!(hookwire_events::ErrorKind::Invalid.as_str(), "invalid");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transport => "transport",
            Self::Invalid => "invalid",
            Self::Serialize => "serialize",
            Self::Config => "config",
            Self::Shutdown => "shutdown",
            Self::TooLarge => "too_large",
            Self::Schema => "schema",
            Self::Unsupported => "unsupported",
            Self::NotFound => "not_found",
        }
    }
}

/// An error from the bus, a transport, an outbox store or a relay.
///
/// ```
/// let e = hookwire_events::Error::invalid("event is 2 MiB, the limit is 1 MiB");
/// assert_eq!(e.kind(), hookwire_events::ErrorKind::Invalid);
/// assert!(e.is_invalid());
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    source: Source,
}

impl Error {
    /// An error of `kind` wrapping `source`.
    pub(crate) fn new(kind: ErrorKind, source: impl Into<Source>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                source: source.into(),
            }),
        }
    }
    /// A transport or store failure (connection, server error, script or SQL error).
    pub(crate) fn transport(source: impl Into<Source>) -> Self {
        Self::new(ErrorKind::Transport, source)
    }
    /// A broken limit or rule in the input.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg.into())
    }
    /// A configuration problem reported by `build()`.
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, msg.into())
    }
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// True when the transport or store failed: the operation did not happen, retry later.
    pub fn is_transport(&self) -> bool {
        self.inner.kind == ErrorKind::Transport
    }
    /// True when the input broke a stated limit or rule.
    pub fn is_invalid(&self) -> bool {
        self.inner.kind == ErrorKind::Invalid
    }
    /// True when an event broke the size limit.
    pub fn is_too_large(&self) -> bool {
        self.inner.kind == ErrorKind::TooLarge
    }
    /// True when the registry rejected the payload.
    pub fn is_schema(&self) -> bool {
        self.inner.kind == ErrorKind::Schema
    }
    /// True when the bus or relay is stopped.
    pub fn is_shutdown(&self) -> bool {
        self.inner.kind == ErrorKind::Shutdown
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("hookwire_events::Error")
            .field("kind", &self.inner.kind)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events {} error: {}",
            self.inner.kind.as_str(),
            self.inner.source
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::transport(io);
        assert!(e.is_transport());
        let src = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            src.map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    }
}
