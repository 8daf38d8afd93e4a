//! The one error type of `hookwire-receiver` (failures outside a request: opening a store,
//! binding a socket). A refused request is a [`crate::Rejection`], not an error.

use std::fmt;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The idempotency store could not be opened (a bad URL, for instance).
    Store,
    /// A socket could not be bound or read (the built-in server).
    Io,
}

/// An error from `hookwire-receiver`: a kind and the underlying error, kept as the source
/// (a Redis error stays a Redis error underneath, an I/O error an [`std::io::Error`]).
///
/// ```
/// let e = hookwire_receiver::Error::from(std::io::Error::from(std::io::ErrorKind::AddrInUse));
/// assert!(e.is_io());
/// assert_eq!(e.io_kind(), Some(std::io::ErrorKind::AddrInUse));
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                source: source.into(),
            }),
        }
    }
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// True when the store could not be opened.
    pub fn is_store(&self) -> bool {
        self.inner.kind == ErrorKind::Store
    }
    /// True for socket errors (a taken port, for instance).
    pub fn is_io(&self) -> bool {
        self.inner.kind == ErrorKind::Io
    }
    /// The [`std::io::ErrorKind`] of an I/O error (`AddrInUse` for a taken port).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        self.inner
            .source
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
    }
    /// The HTTP status a server should answer with while this error lasts: 503 for a store
    /// that cannot be opened, none for the rest (they happen outside a request).
    pub fn status(&self) -> Option<u16> {
        self.is_store().then_some(503)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, e)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("hookwire_receiver::Error")
            .field("kind", &self.inner.kind)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.kind {
            ErrorKind::Store => write!(f, "idempotency store: {}", self.inner.source),
            ErrorKind::Io => write!(f, "receiver I/O: {}", self.inner.source),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner.source)
    }
}
