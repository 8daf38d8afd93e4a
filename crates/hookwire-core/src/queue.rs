//! The durable-delivery queue boundary between the webhook sender and a job system.
//!
//! The sender's durable mode enqueues one task per (event, subscription) instead of delivering
//! in-process (the outbox pattern). It does so through [`TaskQueue`], so it never depends on the
//! jobs crates; `hookwire-jobs` implements the trait, and the sender ships an in-memory one.

use std::fmt;
use std::time::Duration;

use crate::idempotency::BoxFuture;

/// One unit of deferred work.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QueuedTask {
    /// The task kind (a job name), e.g. `hookwire.webhook.deliver`.
    pub kind: String,
    /// De-duplication id: enqueuing the same id twice while the first exists is a no-op, so a
    /// retried fan-out never duplicates a delivery.
    pub id: String,
    /// The payload.
    pub payload: serde_json::Value,
    /// Not runnable before this delay has passed.
    pub delay: Duration,
}

impl QueuedTask {
    /// A task runnable now.
    ///
    /// ```
    /// let t = hookwire_core::QueuedTask::new("k", "id-1", serde_json::json!({}));
    /// assert_eq!(t.delay, std::time::Duration::ZERO);
    /// ```
    pub fn new(kind: impl Into<String>, id: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            payload,
            delay: Duration::ZERO,
        }
    }

    /// Delays the task.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Why a task could not be enqueued. The caller must treat the task as *not* stored.
#[derive(Debug)]
pub struct QueueError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl QueueError {
    /// Wraps the backend's error.
    ///
    /// ```
    /// let e = hookwire_core::QueueError::new("redis down");
    /// assert_eq!(e.to_string(), "enqueue failed: redis down");
    /// ```
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(source.into())
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enqueue failed: {}", self.0)
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A queue that stores tasks durably before `enqueue` resolves `Ok`.
pub trait TaskQueue: Send + Sync + fmt::Debug {
    /// Stores `task`. Resolves `Ok` only once the task is durable (as durable as the backend is).
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<(), QueueError>>;
}
