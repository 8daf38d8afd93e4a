//! [`Progress`]: a running handler reporting its progress under its lease.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::events::{EventKind, JobEvent};
use crate::model::LeasedJob;
use crate::runtime::Inner;

/// A handler's progress reporter (in [`crate::JobMeta::progress`]).
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
    queue: String,
    token: String,
    job: Arc<LeasedJob>,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("queue", &self.queue)
            .field("job", &self.job.id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Progress {
    fn eq(&self, other: &Self) -> bool {
        self.queue == other.queue && self.token == other.token && self.job.id == other.job.id
    }
}
impl Eq for Progress {}

impl Progress {
    pub(crate) fn new(
        inner: Arc<Inner>,
        queue: String,
        token: String,
        job: Arc<LeasedJob>,
    ) -> Self {
        Self {
            inner,
            queue,
            token,
            job,
        }
    }

    /// Stores `progress` on the job (visible in [`crate::JobRecord::progress`]) and emits a
    /// `job.<name>.progress` event. Returns `Ok(false)` when this attempt no longer holds the
    /// job's lease (nothing stored); errors only when the backend is unreachable or the value
    /// does not serialize.
    pub async fn report<T: Serialize + ?Sized>(&self, progress: &T) -> Result<bool, Error> {
        let raw =
            serde_json::to_string(progress).map_err(|e| Error::new(ErrorKind::Serialize, e))?;
        if raw.len() > crate::MAX_PROGRESS {
            return Err(Error::invalid(format!(
                "progress is {} bytes, the limit is {}",
                raw.len(),
                crate::MAX_PROGRESS
            )));
        }
        let held = self
            .inner
            .backend
            .progress(&self.queue, &self.token, &self.job.id, raw.clone())
            .await?;
        if held && self.inner.events_wanted() {
            self.inner.emit(JobEvent {
                name: self.queue.clone(),
                id: self.job.id.clone(),
                data: self.job.data.clone(),
                attempts_made: self.job.attempts_made,
                kind: EventKind::Progress { progress: raw },
            });
        }
        Ok(held)
    }
}
