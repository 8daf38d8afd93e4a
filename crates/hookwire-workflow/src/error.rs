//! The one error type of the workflow crate: opaque, with a kind to branch on, an HTTP status for
//! routes, and the source chain kept (a store error stays that error underneath).

use std::fmt;

/// A boxed error, as step handlers and sub-operations may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No run (or workflow) with that id is visible to the caller. Runs of another organization
    /// are reported this way too, so ids cannot be probed across tenants.
    NotFound,
    /// The run is in a state that does not allow the operation (finished, a step is running,
    /// cancelled…).
    Conflict,
    /// The input broke a stated rule (a name, an id, a payload that does not deserialize…).
    Invalid,
    /// A rewind named a step the workflow does not have or the run never reached.
    UnknownStep,
    /// A stated limit (step output, run state, step count, pending signals) would be exceeded.
    Limit,
    /// The caller's attempt no longer holds the step: a newer attempt or a rewind fenced it off.
    Fenced,
    /// A value could not be (de)serialized.
    Serialize,
    /// The run store or the job queue failed; the operation did not happen, retry later.
    Store,
    /// A builder got a configuration it cannot use; reported by `build()`.
    Config,
    /// A step's own code failed (carried by [`crate::StepCtx::memo`]).
    Step,
    /// The engine is shutting down.
    Shutdown,
}

impl ErrorKind {
    /// A short lowercase name (`not_found`, `conflict`…).
    ///
    /// ```
    /// assert_eq!(hookwire_workflow::ErrorKind::UnknownStep.as_str(), "unknown_step");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::UnknownStep => "unknown_step",
            Self::Limit => "limit",
            Self::Fenced => "fenced",
            Self::Serialize => "serialize",
            Self::Store => "store",
            Self::Config => "config",
            Self::Step => "step",
            Self::Shutdown => "shutdown",
        }
    }

    /// The HTTP status a route answers with for this kind.
    ///
    /// ```
    /// use hookwire_workflow::ErrorKind;
    /// assert_eq!(ErrorKind::NotFound.status(), 404);
    /// assert_eq!(ErrorKind::Conflict.status(), 409);
    /// assert_eq!(ErrorKind::UnknownStep.status(), 422);
    /// ```
    pub const fn status(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::Conflict | Self::Fenced => 409,
            Self::Invalid | Self::Serialize => 400,
            Self::UnknownStep => 422,
            Self::Limit => 413,
            Self::Store | Self::Shutdown => 503,
            Self::Config | Self::Step => 500,
        }
    }
}

/// An error from the engine, a run store or a step's sub-operation.
///
/// ```
/// let e = hookwire_workflow::Error::invalid("workflow id is empty");
/// assert!(e.is_invalid());
/// assert_eq!(e.status(), 400);
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    source: BoxError,
}

impl Error {
    /// An error of `kind` wrapping `source` (for run-store implementations).
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                source: source.into(),
            }),
        }
    }
    /// A store failure (connection, server error, script error): the operation did not happen.
    pub fn store(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Store, source)
    }
    /// A broken rule in the input.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg.into())
    }
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, what.into())
    }
    pub(crate) fn conflict(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, msg.into())
    }
    pub(crate) fn limit(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Limit, msg.into())
    }
    pub(crate) fn fenced(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fenced, msg.into())
    }
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, msg.into())
    }
    pub(crate) fn serialize(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Serialize, source)
    }
    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// The HTTP status for this error ([`ErrorKind::status`]).
    pub fn status(&self) -> u16 {
        self.inner.kind.status()
    }
    /// True when no visible run or workflow has that id.
    pub fn is_not_found(&self) -> bool {
        self.inner.kind == ErrorKind::NotFound
    }
    /// True when the run's state forbids the operation.
    pub fn is_conflict(&self) -> bool {
        self.inner.kind == ErrorKind::Conflict
    }
    /// True when the input broke a rule.
    pub fn is_invalid(&self) -> bool {
        self.inner.kind == ErrorKind::Invalid
    }
    /// True when a rewind named an unknown or never-run step.
    pub fn is_unknown_step(&self) -> bool {
        self.inner.kind == ErrorKind::UnknownStep
    }
    /// True when a limit would be exceeded.
    pub fn is_limit(&self) -> bool {
        self.inner.kind == ErrorKind::Limit
    }
    /// True when an attempt was fenced off by a newer attempt or a rewind.
    pub fn is_fenced(&self) -> bool {
        self.inner.kind == ErrorKind::Fenced
    }
    /// True when the store failed (retry later).
    pub fn is_store(&self) -> bool {
        self.inner.kind == ErrorKind::Store
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("hookwire_workflow::Error")
            .field("kind", &self.inner.kind)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workflow {} error: {}",
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

impl From<hookwire_jobs::Error> for Error {
    fn from(e: hookwire_jobs::Error) -> Self {
        match e.kind() {
            hookwire_jobs::ErrorKind::Shutdown => Self::new(ErrorKind::Shutdown, e),
            hookwire_jobs::ErrorKind::Invalid => Self::new(ErrorKind::Invalid, e),
            _ => Self::store(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_non_retryable_error_stays_non_retryable() {
        let e = Error::new(
            ErrorKind::Step,
            hookwire_core::NonRetryableError::new("card declined"),
        );
        assert!(!hookwire_core::error::is_retryable(&e));
        assert!(hookwire_core::error::is_retryable(&Error::store("down")));
    }
}
