//! The storage boundary: what a job backend must do, split into [`WorkerBackend`] (what a worker
//! loop needs) and [`JobAdmin`] (queue administration); [`JobBackend`] is both. [`crate::MemoryBackend`] is the embedded
//! implementation; `hookwire-jobs-redis` is the durable one. Both pass the same conformance suite.

use std::fmt;
use std::time::Duration;

use hookwire_core::BoxFuture;

use crate::error::{Error, ErrorKind};
use crate::model::{
    Added, ClaimRequest, Claimed, Counts, JobRecord, JobState, NewJob, Recovered, StoredSchedule,
    TickOutcome,
};

fn unsupported<'a, T: Send + 'a>(what: &'static str) -> BoxFuture<'a, Result<T, Error>> {
    Box::pin(async move {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("this backend does not implement {what}"),
        ))
    })
}

/// What a worker needs from a job store: add, lease, renew, report progress, recover stalled
/// jobs. Together with [`JobAdmin`] it makes a [`JobBackend`].
///
/// A job store with leases. Every method is one atomic state transition: a crash between two
/// calls can delay a job, never lose or duplicate its record.
///
/// Queue names are validated by the runtime ([`crate::validate_queue_name`]); jobs by
/// [`NewJob::validate`], which implementations call again before storing.
///
/// Cancel safety: dropping a returned future may or may not have applied the transition; the
/// runtime never drops them mid-flight except on shutdown, and every transition is idempotent
/// under its lease token.
pub trait WorkerBackend: Send + Sync + fmt::Debug + 'static {
    /// Stores up to [`crate::MAX_BULK`] jobs in order; a job whose id exists is not stored again.
    fn add<'a>(
        &'a self,
        queue: &'a str,
        jobs: Vec<NewJob>,
    ) -> BoxFuture<'a, Result<Vec<Added>, Error>>;

    /// Records `req.acks`, promotes due delayed jobs, then leases up to `req.max` runnable jobs
    /// (best priority first, FIFO within a priority) within the rate limit.
    fn claim<'a>(
        &'a self,
        queue: &'a str,
        req: ClaimRequest,
    ) -> BoxFuture<'a, Result<Claimed, Error>>;

    /// Resolves `true` when work may be available (a job was added or left runnable, or the
    /// earliest delayed job changed), `false` after `timeout`. Blocks on the backend; never polls.
    fn wait_for_work<'a>(
        &'a self,
        queue: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Extends the leases of `ids` held under `token`; returns the ids whose lease was lost.
    fn renew<'a>(
        &'a self,
        queue: &'a str,
        token: &'a str,
        ids: Vec<String>,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>>;

    /// Stores `progress` (raw JSON) on job `id` if `token` holds its lease; returns whether it
    /// did.
    fn progress<'a>(
        &'a self,
        queue: &'a str,
        token: &'a str,
        id: &'a str,
        progress: String,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Puts jobs whose lease expired back to waiting; a job that stalled more than `max_stalled`
    /// times fails (to the DLQ when `dead_letter`).
    fn recover_stalled<'a>(
        &'a self,
        queue: &'a str,
        max_stalled: u32,
        dead_letter: bool,
    ) -> BoxFuture<'a, Result<Recovered, Error>>;
}

/// Queue administration on a job store: counts, records, dead letters and redrive, pause,
/// drain, clean, and the stored cron schedules. [`crate::Jobs`] uses it for its admin calls and
/// its schedulers; worker loops never do.
pub trait JobAdmin: Send + Sync + fmt::Debug + 'static {
    /// The counts of one queue, in one round trip.
    fn counts<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Counts, Error>>;

    /// One job's record.
    fn get<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobRecord>, Error>>;

    /// Dead-lettered jobs, oldest failure first.
    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<JobRecord>, Error>>;

    /// Moves dead-lettered jobs (`None`: all, at most 1000 per call) back to waiting with their
    /// attempts reset; returns how many moved.
    fn redrive<'a>(
        &'a self,
        queue: &'a str,
        ids: Option<Vec<String>>,
    ) -> BoxFuture<'a, Result<usize, Error>>;

    /// Pauses (`true`) or resumes (`false`) a queue for every worker of every process: while
    /// paused, [`WorkerBackend::claim`] still records acks and promotes due jobs but leases
    /// nothing, and no wake-up is sent; resuming wakes the waiting workers. Idempotent.
    ///
    /// Provided so older third-party backends keep compiling; it fails with
    /// [`ErrorKind::Unsupported`].
    fn set_paused<'a>(&'a self, queue: &'a str, paused: bool) -> BoxFuture<'a, Result<(), Error>> {
        let _ = (queue, paused);
        unsupported("pause")
    }

    /// Whether the queue is paused. Provided: fails with [`ErrorKind::Unsupported`].
    fn is_paused<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        let _ = queue;
        unsupported("pause")
    }

    /// Deletes every waiting job (and every delayed one when `delayed`) with its record; leased
    /// and finished jobs stay. Returns how many were deleted. Provided: fails with
    /// [`ErrorKind::Unsupported`].
    fn drain<'a>(&'a self, queue: &'a str, delayed: bool) -> BoxFuture<'a, Result<u64, Error>> {
        let _ = (queue, delayed);
        unsupported("drain")
    }

    /// Deletes up to `limit` (at most [`crate::MAX_CLEAN`]) jobs in `state` — completed, failed
    /// or dead — that finished more than `older_than` ago, oldest first, with their records;
    /// returns their ids. Other states are refused with [`ErrorKind::Invalid`]. Provided: fails
    /// with [`ErrorKind::Unsupported`].
    fn clean<'a>(
        &'a self,
        queue: &'a str,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let _ = (queue, state, older_than, limit);
        unsupported("clean")
    }

    /// Stores (or replaces) the description `spec` of schedule `id` of job `queue`, keeping its
    /// run count and last tick. Provided: fails with [`ErrorKind::Unsupported`].
    fn save_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        spec: String,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let _ = (queue, id, spec);
        unsupported("schedules")
    }

    /// The schedules stored for job `queue`. Provided: fails with [`ErrorKind::Unsupported`].
    fn schedules<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredSchedule>, Error>> {
        let _ = queue;
        unsupported("schedules")
    }

    /// Deletes schedule `id` of job `queue` with its run count; returns whether it existed.
    /// Provided: fails with [`ErrorKind::Unsupported`].
    fn remove_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        let _ = (queue, id);
        unsupported("schedules")
    }

    /// In one atomic step: if schedule `id` is stored, `tick_ms` is later than its last tick
    /// and its run count is below `limit`, records the tick, counts a run and stores `job`
    /// (runnable now; an existing job id is not stored again). Many runtimes may call this for
    /// the same tick: exactly one gets [`TickOutcome::Enqueued`]. Provided: fails with
    /// [`ErrorKind::Unsupported`].
    fn enqueue_tick<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        tick_ms: u64,
        limit: Option<u32>,
        job: NewJob,
    ) -> BoxFuture<'a, Result<TickOutcome, Error>> {
        let _ = (queue, id, tick_ms, limit, job);
        unsupported("schedules")
    }
}

/// A complete job backend: [`WorkerBackend`] + [`JobAdmin`]. Implemented for every type that
/// implements both; [`crate::Jobs`] runs on an `Arc<dyn JobBackend>`.
pub trait JobBackend: WorkerBackend + JobAdmin {}

impl<T: WorkerBackend + JobAdmin + ?Sized> JobBackend for T {}
