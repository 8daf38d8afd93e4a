//! Completed / failed events, listeners, and the stats HTTP handler.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::model::Counts;
use crate::runtime::Jobs;

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventKind {
    /// The job succeeded.
    Completed {
        /// The handler's result (raw JSON).
        result: String,
    },
    /// A handler reported progress (the job is still running).
    Progress {
        /// The reported progress (raw JSON).
        progress: String,
    },
    /// The job's worker stopped renewing its lease (died, or stalled longer than the lease)
    /// and the stalled check put the job back to waiting; it will run again.
    Stalled {
        /// Times the job has been recovered so far, this one included.
        stalled: u32,
    },
    /// The job failed for good (retries exhausted, non-retryable error, or too many stalls).
    Failed {
        /// The last error.
        error: String,
        /// Whether it went to the dead-letter queue.
        dead_lettered: bool,
    },
}

/// A completed or failed job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct JobEvent {
    /// The job name.
    pub name: String,
    /// The job id.
    pub id: String,
    /// The payload (raw JSON).
    pub data: String,
    /// Attempts made, including this one (for a job failed by the stall limit: the finished
    /// attempts, as in its record; a stalled run is not counted).
    pub attempts_made: u32,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl JobEvent {
    /// `job.<name>.completed`, `job.<name>.progress`, `job.<name>.stalled` or
    /// `job.<name>.failed`.
    pub fn event_name(&self) -> String {
        let k = match self.kind {
            EventKind::Completed { .. } => "completed",
            EventKind::Progress { .. } => "progress",
            EventKind::Stalled { .. } => "stalled",
            EventKind::Failed { .. } => "failed",
        };
        format!("job.{}.{k}", self.name)
    }

    /// As a core [`hookwire_core::Event`] (for the sender, SSE or WebSocket bus); the payload is
    /// `{ id, data, attempts_made, result | progress | stalled | error, dead_lettered }`.
    pub fn to_event(&self) -> hookwire_core::Event {
        let raw = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
        let mut v = serde_json::json!({
            "id": self.id,
            "data": raw(&self.data),
            "attempts_made": self.attempts_made,
        });
        match &self.kind {
            EventKind::Completed { result } => v["result"] = raw(result),
            EventKind::Progress { progress } => v["progress"] = raw(progress),
            EventKind::Stalled { stalled } => v["stalled"] = serde_json::Value::from(*stalled),
            EventKind::Failed {
                error,
                dead_lettered,
            } => {
                v["error"] = serde_json::Value::String(error.clone());
                v["dead_lettered"] = serde_json::Value::Bool(*dead_lettered);
            }
        }
        hookwire_core::Event::new(self.event_name(), v)
    }
}

pub(crate) type Listener = Arc<dyn Fn(&JobEvent) + Send + Sync>;

pub(crate) async fn run_listeners(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<JobEvent>,
    listeners: Vec<Listener>,
) {
    while let Some(e) = rx.recv().await {
        for l in &listeners {
            let call = std::panic::AssertUnwindSafe(|| l(&e));
            if std::panic::catch_unwind(call).is_err() {
                tracing::warn!(event = %e.event_name(), "event listener panicked; ignored");
            }
        }
    }
}

/// The stats endpoint: `GET` → `200 {"send-email":{"waiting":…}}` with a bearer token.
///
/// Fail-closed: without a configured token every request gets 401 (unlike peer queues with
/// unauthenticated stats). Mount [`StatsHandler::handle`] in any framework.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use hookwire_jobs::{Jobs, MemoryBackend, StatsHandler};
/// let jobs = Jobs::builder(MemoryBackend::new()).start().await.unwrap();
/// let h = StatsHandler::new(jobs, "s3cret");
/// assert_eq!(h.handle(None).await.0, 401);
/// assert_eq!(h.handle(Some("Bearer s3cret")).await, (200, "{}".to_owned()));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct StatsHandler {
    jobs: Jobs,
    token: Vec<u8>,
}

impl StatsHandler {
    /// A handler answering requests that carry `Authorization: Bearer <token>`. An empty token
    /// refuses every request.
    pub fn new(jobs: Jobs, token: impl Into<String>) -> Self {
        Self {
            jobs,
            token: token.into().into_bytes(),
        }
    }

    /// Answers one request given its `Authorization` header: `(status, JSON body)`.
    /// 401 on a missing or wrong token, 503 when the backend is unreachable.
    pub async fn handle(&self, authorization: Option<&str>) -> (u16, String) {
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::as_bytes)
            .unwrap_or_default();
        let ok = !self.token.is_empty()
            && presented.len() == self.token.len()
            && bool::from(presented.ct_eq(&self.token));
        if !ok {
            return (401, r#"{"error":"unauthorized"}"#.to_owned());
        }
        match self.jobs.stats().await {
            Ok(s) => (200, stats_json(&s)),
            Err(e) => (
                503,
                serde_json::json!({ "error": e.to_string() }).to_string(),
            ),
        }
    }
}

fn stats_json(s: &BTreeMap<String, Counts>) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".to_owned())
}
