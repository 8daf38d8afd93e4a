//! The data a backend stores and exchanges with the worker runtime, and the limits on it.

use std::time::Duration;

use serde::Serialize;

use crate::error::Error;

/// Longest queue (job) name, in bytes.
pub const MAX_QUEUE_NAME: usize = 128;
/// Longest caller-chosen job id, in bytes.
pub const MAX_JOB_ID: usize = 256;
/// Largest job payload (raw JSON), in bytes. Large blobs belong in object storage; the job
/// should carry a reference.
pub const MAX_PAYLOAD: usize = 512 * 1024;
/// Largest priority. Lower runs first; the score layout (`priority × 2³³ + sequence`) stays exact
/// in a Redis double up to this value.
pub const MAX_PRIORITY: u32 = (1 << 20) - 1;
/// The priority of a job dispatched without one: the middle of the usual range, so callers can
/// put urgent work before (`< 1000`) and background work after (`> 1000`) the default.
pub const DEFAULT_PRIORITY: u32 = 1000;
/// Most jobs one `add` call accepts (the runtime splits larger bulks).
pub const MAX_BULK: usize = 1000;
/// Most jobs one claim hands out.
pub const MAX_CLAIM: usize = 1000;
/// Largest progress value (raw JSON), in bytes.
pub const MAX_PROGRESS: usize = 4096;
/// Most jobs one clean call deletes (clean again for more).
pub const MAX_CLEAN: usize = 1000;
/// Longest stored error text, in bytes (longer texts are cut on a char boundary).
pub const MAX_ERROR_TEXT: usize = 4096;

/// What happens to a finished job's record.
///
/// ```
/// use hookwire_jobs::Retention;
/// assert_eq!(Retention::from(true), Retention::Remove);
/// assert_eq!(Retention::from(false), Retention::Keep);
/// assert_eq!(Retention::from(100u32), Retention::KeepLast(100));
/// assert_eq!(Retention::KeepLast(5).encode(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Keep every finished job.
    #[default]
    Keep,
    /// Delete the record as soon as the job finishes (this also ends job-id de-duplication).
    Remove,
    /// Keep the newest N finished jobs of the queue.
    KeepLast(u32),
}

impl Retention {
    /// The wire form both backends store: `-1` keep, `0` remove, `N` keep last N.
    pub fn encode(self) -> i64 {
        match self {
            Self::Keep => -1,
            Self::Remove | Self::KeepLast(0) => 0,
            Self::KeepLast(n) => i64::from(n),
        }
    }
    /// The inverse of [`Retention::encode`]; negative values keep.
    pub fn decode(v: i64) -> Self {
        match v {
            0 => Self::Remove,
            n if n > 0 => Self::KeepLast(u32::try_from(n).unwrap_or(u32::MAX)),
            _ => Self::Keep,
        }
    }
}

impl From<bool> for Retention {
    fn from(remove: bool) -> Self {
        if remove { Self::Remove } else { Self::Keep }
    }
}

impl From<u32> for Retention {
    fn from(n: u32) -> Self {
        Self::KeepLast(n)
    }
}

/// A job to store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewJob {
    /// Caller-chosen id for de-duplication; `None` lets the backend number the job.
    pub id: Option<String>,
    /// The payload as raw JSON text.
    pub data: String,
    /// Lower runs first ([`DEFAULT_PRIORITY`] when not given).
    pub priority: u32,
    /// Not runnable before now + delay.
    pub delay: Duration,
    /// Record handling on success.
    pub remove_on_complete: Retention,
    /// Record handling on final failure (dead-lettered jobs stay in the DLQ regardless).
    pub remove_on_fail: Retention,
}

impl NewJob {
    /// A job with `data` (raw JSON) and default options.
    ///
    /// ```
    /// let j = hookwire_jobs::NewJob::new(r#"{"to":"a@b.test"}"#);
    /// assert_eq!(j.priority, hookwire_jobs::DEFAULT_PRIORITY);
    /// assert!(j.validate().is_ok());
    /// ```
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            id: None,
            data: data.into(),
            priority: DEFAULT_PRIORITY,
            delay: Duration::ZERO,
            remove_on_complete: Retention::Keep,
            remove_on_fail: Retention::Keep,
        }
    }

    /// Applies dispatch options (unset ones keep their current value).
    #[must_use]
    pub fn with_options(mut self, o: &DispatchOptions) -> Self {
        if let Some(id) = &o.job_id {
            self.id = Some(id.clone());
        }
        if let Some(p) = o.priority {
            self.priority = p;
        }
        if let Some(d) = o.delay {
            self.delay = d;
        }
        if let Some(r) = o.remove_on_complete {
            self.remove_on_complete = r;
        }
        if let Some(r) = o.remove_on_fail {
            self.remove_on_fail = r;
        }
        self
    }

    /// Checks the limits: id length and charset, payload size and JSON syntax, priority range.
    /// Both backends call this before storing anything.
    ///
    /// ```
    /// let mut j = hookwire_jobs::NewJob::new("{}");
    /// j.id = Some("42".into());
    /// assert!(j.validate().is_err(), "all-digit ids are reserved for generated ids");
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(id) = &self.id {
            validate_job_id(id)?;
        }
        if self.data.len() > MAX_PAYLOAD {
            return Err(Error::invalid(format!(
                "payload is {} bytes, the limit is {MAX_PAYLOAD}",
                self.data.len()
            )));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&self.data).is_err() {
            return Err(Error::invalid("payload is not valid JSON"));
        }
        if self.priority > MAX_PRIORITY {
            return Err(Error::invalid(format!(
                "priority {} is above the limit {MAX_PRIORITY}",
                self.priority
            )));
        }
        Ok(())
    }
}

/// Checks a queue name: 1..=128 bytes of `[A-Za-z0-9._:-]` (no braces, so the Redis hash tag
/// `{queue}` cannot be broken).
///
/// ```
/// assert!(hookwire_jobs::validate_queue_name("send-email").is_ok());
/// assert!(hookwire_jobs::validate_queue_name("a{b}").is_err());
/// assert!(hookwire_jobs::validate_queue_name("").is_err());
/// ```
pub fn validate_queue_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_QUEUE_NAME {
        return Err(Error::invalid(format!(
            "queue name must be 1..={MAX_QUEUE_NAME} bytes"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(Error::invalid(format!(
            "queue name {name:?} may only hold A-Z a-z 0-9 . _ : -"
        )));
    }
    Ok(())
}

/// Checks a caller-chosen job id: 1..=256 bytes, printable ASCII without spaces, not all digits
/// (those are the backend's generated ids).
///
/// ```
/// assert!(hookwire_jobs::validate_job_id("order-7:email").is_ok());
/// assert!(hookwire_jobs::validate_job_id("has space").is_err());
/// ```
pub fn validate_job_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_JOB_ID {
        return Err(Error::invalid(format!(
            "job id must be 1..={MAX_JOB_ID} bytes"
        )));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "job id may only hold printable ASCII without spaces",
        ));
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(
            "all-digit job ids are reserved for generated ids",
        ));
    }
    Ok(())
}

/// Cuts `s` to at most [`MAX_ERROR_TEXT`] bytes on a char boundary.
pub(crate) fn clip_error(mut s: String) -> String {
    if s.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The outcome of storing one job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Added {
    /// The job's id (generated or the caller's).
    pub id: String,
    /// False when a job with this id already existed: the dispatch was a no-op.
    pub created: bool,
}

impl Added {
    /// Builds an outcome (for backend implementations).
    pub fn new(id: impl Into<String>, created: bool) -> Self {
        Self {
            id: id.into(),
            created,
        }
    }
}

/// Per-dispatch options; `None` fields take the runtime's defaults.
///
/// ```
/// use std::time::Duration;
/// let o = hookwire_jobs::DispatchOptions::new().delay(Duration::from_secs(5)).priority(1).job_id("order-7");
/// assert_eq!(o.priority, Some(1));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// Not runnable before now + delay.
    pub delay: Option<Duration>,
    /// Lower runs first; equal priorities run FIFO.
    pub priority: Option<u32>,
    /// De-duplication id: a second dispatch while the first record exists is a no-op.
    pub job_id: Option<String>,
    /// Record handling on success.
    pub remove_on_complete: Option<Retention>,
    /// Record handling on final failure.
    pub remove_on_fail: Option<Retention>,
}

impl DispatchOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the delay.
    #[must_use]
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    /// Sets the priority (lower first, at most [`MAX_PRIORITY`]).
    #[must_use]
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = Some(p);
        self
    }
    /// Sets the de-duplication id.
    #[must_use]
    pub fn job_id(mut self, id: impl Into<String>) -> Self {
        self.job_id = Some(id.into());
        self
    }
    /// Sets the success retention.
    #[must_use]
    pub fn remove_on_complete(mut self, r: impl Into<Retention>) -> Self {
        self.remove_on_complete = Some(r.into());
        self
    }
    /// Sets the failure retention.
    #[must_use]
    pub fn remove_on_fail(mut self, r: impl Into<Retention>) -> Self {
        self.remove_on_fail = Some(r.into());
        self
    }
}

/// A job handed to a worker under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeasedJob {
    /// The job id.
    pub id: String,
    /// The payload (raw JSON).
    pub data: String,
    /// Attempts finished before this one (0 on the first run).
    pub attempts_made: u32,
    /// Times the job was recovered from a dead worker.
    pub stalled: u32,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
}

impl LeasedJob {
    /// Builds a leased job (for backend implementations).
    pub fn new(
        id: impl Into<String>,
        data: impl Into<String>,
        attempts_made: u32,
        stalled: u32,
        created_at_ms: u64,
    ) -> Self {
        Self {
            id: id.into(),
            data: data.into(),
            attempts_made,
            stalled,
            created_at_ms,
        }
    }
}

/// What a worker reports for one leased job.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobOutcome {
    /// Done; `result` is the handler's return value as raw JSON.
    Completed {
        /// The result (raw JSON).
        result: String,
    },
    /// Failed, run again after `delay` (counts one attempt).
    Retry {
        /// Backoff before the next attempt.
        delay: Duration,
        /// The error text.
        error: String,
    },
    /// Failed for good (counts one attempt): to the DLQ when `dead_letter`, else the failed set.
    Failed {
        /// The error text.
        error: String,
        /// Move to the dead-letter queue.
        dead_letter: bool,
    },
    /// Not run (graceful shutdown): back to waiting, no attempt counted.
    Release,
}

/// A worker's report for one job, sent with its next claim.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Ack {
    /// The job id.
    pub id: String,
    /// What happened.
    pub outcome: JobOutcome,
}

impl Ack {
    /// Builds an ack.
    pub fn new(id: impl Into<String>, outcome: JobOutcome) -> Self {
        Self {
            id: id.into(),
            outcome,
        }
    }
}

/// A global rate limit: at most `max` jobs started per `per`, across every worker of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRateLimit {
    /// Jobs per window.
    pub max: u32,
    /// The window.
    pub per: Duration,
}

/// One round trip of a worker: acknowledge finished jobs, then claim up to `max` new ones.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The worker's lease token: acks and renewals must present it, so a worker whose lease was
    /// taken away cannot finish a job another worker now holds.
    pub token: String,
    /// Finished jobs to record first.
    pub acks: Vec<Ack>,
    /// Most jobs to claim (0: only ack).
    pub max: usize,
    /// Lease length for the claimed jobs.
    pub lease: Duration,
    /// The queue's global rate limit.
    pub rate_limit: Option<QueueRateLimit>,
}

impl ClaimRequest {
    /// A request.
    pub fn new(token: impl Into<String>, acks: Vec<Ack>, max: usize, lease: Duration) -> Self {
        Self {
            token: token.into(),
            acks,
            max,
            lease,
            rate_limit: None,
        }
    }
    /// Sets the rate limit.
    #[must_use]
    pub fn with_rate_limit(mut self, r: Option<QueueRateLimit>) -> Self {
        self.rate_limit = r;
        self
    }
}

/// The answer to a [`ClaimRequest`].
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Claimed {
    /// Jobs now leased to the caller, best first.
    pub jobs: Vec<LeasedJob>,
    /// Acks that were refused because the caller no longer held the job's lease.
    pub stale_acks: Vec<String>,
    /// When the earliest delayed job becomes due (if any).
    pub next_delayed_in: Option<Duration>,
    /// Set when the rate limit stopped the claim: wait this long.
    pub rate_limited_for: Option<Duration>,
}

/// What a stalled-job check did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Recovered {
    /// Jobs whose lease had expired, put back to waiting.
    pub requeued: Vec<String>,
    /// Jobs that stalled more than `max_stalled` times, failed.
    pub failed: Vec<String>,
    /// Every job of `requeued` and `failed` as it stood once recovered (data, attempts, stall
    /// count), so the runtime can emit its events even when retention already removed a failed
    /// job's record.
    pub jobs: Vec<LeasedJob>,
}

/// Job counts of one queue.
///
/// ```
/// let c = hookwire_jobs::Counts::default();
/// assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"waiting":0,"active":0,"completed":0,"failed":0,"delayed":0,"dead":0}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Runnable now.
    pub waiting: u64,
    /// Leased to a worker.
    pub active: u64,
    /// Finished successfully (retained records).
    pub completed: u64,
    /// Failed for good, not dead-lettered (retained records).
    pub failed: u64,
    /// Waiting for their due time (including retries in backoff).
    pub delayed: u64,
    /// In the dead-letter queue.
    pub dead: u64,
}

impl Counts {
    /// Builds counts (for backend implementations).
    pub fn new(
        waiting: u64,
        active: u64,
        completed: u64,
        failed: u64,
        delayed: u64,
        dead: u64,
    ) -> Self {
        Self {
            waiting,
            active,
            completed,
            failed,
            delayed,
            dead,
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JobState {
    /// Runnable.
    Waiting,
    /// Not yet due.
    Delayed,
    /// Leased.
    Active,
    /// Done.
    Completed,
    /// Failed for good.
    Failed,
    /// In the dead-letter queue.
    Dead,
}

impl JobState {
    /// The lowercase name (`waiting`, `completed`…), as serialized.
    ///
    /// ```
    /// assert_eq!(hookwire_jobs::JobState::Dead.as_str(), "dead");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Delayed => "delayed",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// True for the states a job ends in: completed, failed, dead.
    pub const fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Dead)
    }
}

/// Everything stored about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct JobRecord {
    /// The id.
    pub id: String,
    /// The state.
    pub state: JobState,
    /// The payload (raw JSON).
    pub data: String,
    /// Finished attempts.
    pub attempts_made: u32,
    /// Times recovered from a dead worker.
    pub stalled: u32,
    /// The priority.
    pub priority: u32,
    /// Creation time, Unix ms.
    pub created_at_ms: u64,
    /// Time of the last finish (success or failure), Unix ms.
    pub finished_at_ms: Option<u64>,
    /// The result of a completed job (raw JSON).
    pub result: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// The last progress reported by a handler (raw JSON).
    pub progress: Option<String>,
}

impl JobRecord {
    /// Builds a record in `state` (for backend implementations); the rest is set field by field.
    pub fn new(id: impl Into<String>, state: JobState, data: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            state,
            data: data.into(),
            attempts_made: 0,
            stalled: 0,
            priority: DEFAULT_PRIORITY,
            created_at_ms: 0,
            finished_at_ms: None,
            result: None,
            error: None,
            progress: None,
        }
    }
}

/// Milliseconds of a duration, saturating, at least 1 when non-zero (a 0.5 ms delay is a delay).
pub(crate) fn ms(d: Duration) -> u64 {
    let m = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if m == 0 && !d.is_zero() { 1 } else { m }
}

/// Checks that jobs in `state` can be cleaned by age: only finished states (completed, failed,
/// dead) can; waiting and delayed jobs are removed with a drain, leased ones never.
///
/// ```
/// use hookwire_jobs::{JobState, validate_clean_state};
/// assert!(validate_clean_state(JobState::Completed).is_ok());
/// assert!(validate_clean_state(JobState::Active).is_err());
/// ```
pub fn validate_clean_state(state: JobState) -> Result<(), Error> {
    if state.is_finished() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "only completed, failed and dead jobs can be cleaned by age, not {} ones \
         (a drain removes waiting and delayed jobs)",
        state.as_str()
    )))
}

/// What [`crate::JobAdmin::enqueue_tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TickOutcome {
    /// This call enqueued the tick's job.
    Enqueued,
    /// The tick (or a later one) was already enqueued, by this or another runtime.
    AlreadyEnqueued,
    /// The schedule reached its run limit: nothing enqueued, now or later.
    LimitReached,
    /// The schedule is not stored (it was removed): nothing enqueued.
    Removed,
}

/// A schedule as a backend stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredSchedule {
    /// The schedule id.
    pub id: String,
    /// The runtime's description of the schedule (JSON).
    pub spec: String,
    /// Ticks enqueued so far.
    pub runs: u32,
    /// The last enqueued tick (Unix ms).
    pub last_tick_ms: Option<u64>,
}

impl StoredSchedule {
    /// Builds a stored schedule (for backend implementations).
    pub fn new(
        id: impl Into<String>,
        spec: impl Into<String>,
        runs: u32,
        last_tick_ms: Option<u64>,
    ) -> Self {
        Self {
            id: id.into(),
            spec: spec.into(),
            runs,
            last_tick_ms,
        }
    }
}
