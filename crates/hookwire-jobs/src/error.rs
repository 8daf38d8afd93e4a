//! The one error type of the jobs API.

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
/// let e = hookwire_jobs::JobsError::invalid("queue name is empty");
/// assert_eq!(e.kind(), hookwire_jobs::ErrorKind::Invalid);
/// assert!(e.to_string().contains("queue name is empty"));
/// ```
#[derive(Debug)]
pub struct JobsError {
    kind: ErrorKind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl JobsError {
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
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// True for backend failures (worth retrying later).
    ///
    /// ```
    /// assert!(hookwire_jobs::JobsError::backend("down").is_backend());
    /// ```
    pub fn is_backend(&self) -> bool {
        self.kind == ErrorKind::Backend
    }
}

impl fmt::Display for JobsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "jobs {} error: {}", self.kind.as_str(), self.source)
    }
}

impl std::error::Error for JobsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
