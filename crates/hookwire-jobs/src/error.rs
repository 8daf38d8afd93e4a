//! The one error type of the jobs API: opaque, with a [`ErrorKind`] to branch on and the
//! underlying error (a Redis error stays a Redis error) as its source.

use std::fmt;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend could not be reached or answered with an error; the operation did not happen
    /// (for `dispatch`: the job is *not* stored, retry it).
    Backend,
    /// The input broke a stated limit or rule (queue name, job id, payload size, priority…).
    Invalid,
    /// The payload could not be (de)serialized.
    Serialize,
    /// No job definition with that name is registered.
    UnknownJob,
    /// The runtime is shutting down or already stopped.
    Shutdown,
    /// The backend does not implement this operation (a third-party backend written before it
    /// existed).
    Unsupported,
}

impl ErrorKind {
    /// A short lowercase name (`backend`, `invalid`…).
    ///
    /// ```
    /// assert_eq!(hookwire_jobs::ErrorKind::Invalid.as_str(), "invalid");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Invalid => "invalid",
            Self::Serialize => "serialize",
            Self::UnknownJob => "unknown_job",
            Self::Shutdown => "shutdown",
            Self::Unsupported => "unsupported",
        }
    }
}

/// An error from the jobs runtime or a backend.
///
/// ```
/// let e = hookwire_jobs::Error::invalid("queue name is empty");
/// assert_eq!(e.kind(), hookwire_jobs::ErrorKind::Invalid);
/// assert!(e.is_invalid());
/// assert!(e.to_string().contains("queue name is empty"));
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// The jobs API's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The former name of [`Error`], kept for one release.
#[deprecated(note = "renamed to `hookwire_jobs::Error`")]
pub type JobsError = Error;

impl Error {
    /// An error of `kind` wrapping `source`.
    pub fn new(
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }
    /// A backend failure (connection, server error, script error).
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::new(ErrorKind::Backend, source)
    }
    /// A broken limit or rule in the input.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg.into())
    }
    /// The underlying error's text, without this error's kind prefix.
    pub(crate) fn source_text(&self) -> String {
        self.source.to_string()
    }
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// True for backend failures (worth retrying later).
    ///
    /// ```
    /// assert!(hookwire_jobs::Error::backend("down").is_backend());
    /// ```
    pub fn is_backend(&self) -> bool {
        self.kind == ErrorKind::Backend
    }
    /// True when the input broke a stated limit or rule (fix the input, do not retry).
    pub fn is_invalid(&self) -> bool {
        self.kind == ErrorKind::Invalid
    }
    /// True when a payload or result could not be (de)serialized.
    pub fn is_serialize(&self) -> bool {
        self.kind == ErrorKind::Serialize
    }
    /// True when no job definition with that name is registered.
    pub fn is_unknown_job(&self) -> bool {
        self.kind == ErrorKind::UnknownJob
    }
    /// True when the runtime is shutting down or stopped.
    pub fn is_shutdown(&self) -> bool {
        self.kind == ErrorKind::Shutdown
    }
    /// True when the backend does not implement the operation.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ErrorKind::Unsupported
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "jobs {} error: {}", self.kind.as_str(), self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_chain_keeps_the_underlying_error_type() {
        let io = std::io::Error::other("refused");
        let e = Error::backend(io);
        let src = std::error::Error::source(&e).expect("a source");
        assert!(src.downcast_ref::<std::io::Error>().is_some());
        assert!(e.is_backend() && !e.is_invalid());
    }
}
