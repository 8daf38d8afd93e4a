//! [`QueueHandle`]: operations on one queue as a whole — pause and resume it for every worker,
//! drain its backlog, clean old finished jobs.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::JobBackend;
use crate::error::Error;
use crate::model::{Counts, JobState};

/// One queue (job name) of a backend, from [`crate::Jobs::queue`]. Cheap to clone; every
/// operation is one backend transition (a drain of a big backlog is a few, 1000 jobs each).
///
/// The state lives in the backend, so a pause holds for every worker of every process sharing
/// it (on Redis: every process on that Redis and key prefix), including workers started later.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use hookwire_jobs::{DispatchOptions, JobState, Jobs, MemoryBackend};
/// let jobs = Jobs::builder(MemoryBackend::new()).start().await.unwrap();
/// let q = jobs.queue("send-email").unwrap();
/// q.pause().await.unwrap();
/// jobs.dispatch("send-email", &"ada", DispatchOptions::new()).await.unwrap();
/// assert!(q.is_paused().await.unwrap());
/// assert_eq!(q.drain(false).await.unwrap(), 1);
/// q.resume().await.unwrap();
/// let removed = q.clean(JobState::Completed, Duration::from_secs(3600), 1000).await.unwrap();
/// assert!(removed.is_empty());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct QueueHandle {
    backend: Arc<dyn JobBackend>,
    name: String,
}

impl QueueHandle {
    pub(crate) fn new(backend: Arc<dyn JobBackend>, name: String) -> Self {
        Self { backend, name }
    }

    /// The queue (job) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops every worker from taking jobs of this queue. Running jobs finish and are recorded;
    /// dispatch keeps storing jobs (delayed ones still come due) and they wait for
    /// [`QueueHandle::resume`]. Idempotent.
    pub async fn pause(&self) -> Result<(), Error> {
        self.backend.set_paused(&self.name, true).await
    }

    /// Lets workers take jobs again and wakes the idle ones. Idempotent.
    pub async fn resume(&self) -> Result<(), Error> {
        self.backend.set_paused(&self.name, false).await
    }

    /// Whether the queue is paused.
    pub async fn is_paused(&self) -> Result<bool, Error> {
        self.backend.is_paused(&self.name).await
    }

    /// Deletes every waiting job, and every delayed one (including retries in backoff) when
    /// `delayed`, with their records (their job ids become free again). Running and finished
    /// jobs stay. Returns how many were deleted. Pause first if workers must not take jobs
    /// while you drain.
    pub async fn drain(&self, delayed: bool) -> Result<u64, Error> {
        self.backend.drain(&self.name, delayed).await
    }

    /// Deletes up to `limit` (at most [`crate::MAX_CLEAN`] per call) jobs in `state` —
    /// [`JobState::Completed`], [`JobState::Failed`] or [`JobState::Dead`] — that finished more
    /// than `older_than` ago, oldest first, and returns their ids. Other states are refused with
    /// [`crate::ErrorKind::Invalid`].
    pub async fn clean(
        &self,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        crate::validate_clean_state(state)?;
        self.backend
            .clean(&self.name, state, older_than, limit.min(crate::MAX_CLEAN))
            .await
    }

    /// The queue's counts.
    pub async fn counts(&self) -> Result<Counts, Error> {
        self.backend.counts(&self.name).await
    }
}
