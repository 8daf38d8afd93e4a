//! The runtime: dispatch, the worker loops, stats, events and graceful shutdown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::{Backoff, BoxFuture, Jitter, QueueError, QueuedTask, TaskQueue};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::backend::JobBackend;
use crate::def::{HandlerFailure, Job, JobDef, JobMeta};
use crate::error::{ErrorKind, JobsError};
use crate::events::{EventKind, JobEvent, Listener};
use crate::model::{
    Ack, Added, ClaimRequest, Claimed, Counts, DispatchOptions, JobRecord, LeasedJob, MAX_BULK,
    NewJob, Outcome, Recovered, Retention, validate_queue_name,
};
use crate::queue::QueueHandle;
use crate::repeat::Repeat;
use crate::schedule::{Schedule, ScheduleInfo};

/// Runtime-wide defaults for what a [`JobDef`] or a dispatch leaves unset.
///
/// ```
/// let d = hookwire_jobs::Defaults::default();
/// assert_eq!(d.retries, 3);
/// assert_eq!(d.remove_on_complete, hookwire_jobs::Retention::KeepLast(1000));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Defaults {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay between attempts (`None`: retry at once).
    pub backoff: Option<Backoff>,
    /// Per-attempt time limit (`None`: no limit).
    pub timeout: Option<Duration>,
    /// Success retention (bounded by default so a busy queue cannot grow without end).
    pub remove_on_complete: Retention,
    /// Failure retention.
    pub remove_on_fail: Retention,
    /// Lease length.
    pub lease: Duration,
    /// Recoveries from dead workers before the job fails.
    pub max_stalled: u32,
    /// How long [`Jobs::shutdown`] lets active jobs finish before releasing them.
    pub shutdown_grace: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            retries: 3,
            backoff: Some(
                Backoff::exponential(Duration::from_secs(1))
                    .with_max(Duration::from_secs(3600))
                    .with_jitter(Jitter::Proportional(0.2)),
            ),
            timeout: None,
            remove_on_complete: Retention::KeepLast(1000),
            remove_on_fail: Retention::KeepLast(5000),
            lease: Duration::from_secs(30),
            max_stalled: 1,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Builds a [`Jobs`] runtime.
pub struct JobsBuilder {
    backend: Arc<dyn JobBackend>,
    defs: Vec<JobDef>,
    defaults: Defaults,
    listeners: Vec<Listener>,
    repeats: Vec<Repeat>,
    schedules: Vec<Schedule>,
}

impl fmt::Debug for JobsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobsBuilder")
            .field("backend", &self.backend)
            .field("defs", &self.defs)
            .field("defaults", &self.defaults)
            .field("listeners", &self.listeners.len())
            .field("repeats", &self.repeats)
            .field("schedules", &self.schedules)
            .finish()
    }
}

impl JobsBuilder {
    /// Registers a job definition (its workers start with [`JobsBuilder::start`]).
    #[must_use]
    pub fn job(mut self, def: JobDef) -> Self {
        self.defs.push(def);
        self
    }
    /// Sets the defaults.
    #[must_use]
    pub fn defaults(mut self, d: Defaults) -> Self {
        self.defaults = d;
        self
    }
    /// Calls `f` for every completed / failed event, on a dedicated task; a panicking listener
    /// is logged and never affects a worker. Use it to bridge into an event bus
    /// ([`JobEvent::to_event`] gives `job.<name>.completed` / `job.<name>.failed`).
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&JobEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Dispatches a job every interval from this runtime (see [`Repeat`]). Several runtimes may
    /// declare the same repeat: each slot still runs once.
    #[must_use]
    pub fn repeat(mut self, r: Repeat) -> Self {
        self.repeats.push(r);
        self
    }

    /// Enqueues a job at every tick of `s` from this runtime (see [`Schedule`]); several
    /// runtimes may declare the same schedule: each tick is still enqueued once. Starting stores
    /// the schedule, so a removed schedule comes back with the next runtime that declares it.
    #[must_use]
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.schedules.push(s);
        self
    }

    /// Validates the definitions and starts one worker loop per definition.
    ///
    /// Errors: an invalid or duplicate job name, a rate limit of 0, a dead-letter queue name that
    /// is invalid, a job name, or used twice.
    pub async fn start(self) -> Result<Jobs, JobsError> {
        let mut names = HashMap::new();
        let dead_letter_names = dead_letter_names(&self.defs)?;
        for d in &self.defs {
            validate_queue_name(&d.name)?;
            if d.rate_limit.is_some_and(|r| r.max == 0) {
                return Err(JobsError::invalid(format!(
                    "job {:?}: a rate limit of 0 jobs would never run anything",
                    d.name
                )));
            }
            if names.insert(d.name.clone(), d.dead_letter).is_some() {
                return Err(JobsError::invalid(format!(
                    "job {:?} is registered twice",
                    d.name
                )));
            }
        }
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let listener_tx = if self.listeners.is_empty() {
            None
        } else {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(crate::events::run_listeners(rx, self.listeners));
            Some(tx)
        };
        let inner = Arc::new(Inner {
            backend: self.backend,
            defaults: self.defaults,
            names,
            dead_letter_names,
            events,
            listener_tx,
            shutdown,
            workers: Mutex::new(Vec::new()),
        });
        let mut handles = Vec::new();
        for def in self.defs {
            let w = Worker::new(inner.clone(), def);
            handles.push(tokio::spawn(w.run()));
        }
        let jobs = Jobs { inner };
        for r in self.repeats {
            let rx = jobs.inner.shutdown.subscribe();
            handles.push(tokio::spawn(crate::repeat::run(jobs.clone(), r, rx)));
        }
        for s in self.schedules {
            let rx = jobs.inner.shutdown.subscribe();
            let backend = jobs.inner.backend.clone();
            handles.push(tokio::spawn(crate::schedule::run(
                jobs.clone(),
                backend,
                s,
                rx,
            )));
        }
        *jobs
            .inner
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = handles;
        Ok(jobs)
    }
}

/// Custom dead-letter queue names → their job's name, checked: valid, not a job name, unique.
fn dead_letter_names(defs: &[JobDef]) -> Result<HashMap<String, String>, JobsError> {
    let mut out = HashMap::new();
    for d in defs {
        let Some(dlq) = &d.dead_letter_name else {
            continue;
        };
        validate_queue_name(dlq).map_err(|e| {
            JobsError::invalid(format!("job {:?}: dead-letter queue name: {e}", d.name))
        })?;
        if defs.iter().any(|o| o.name == *dlq) {
            return Err(JobsError::invalid(format!(
                "job {:?}: dead-letter queue name {dlq:?} is a job name",
                d.name
            )));
        }
        if out.insert(dlq.clone(), d.name.clone()).is_some() {
            return Err(JobsError::invalid(format!(
                "dead-letter queue name {dlq:?} is used by two jobs"
            )));
        }
    }
    Ok(out)
}

struct Inner {
    backend: Arc<dyn JobBackend>,
    defaults: Defaults,
    /// Registered names → dead-letter flag.
    names: HashMap<String, bool>,
    /// Custom dead-letter queue names → job names.
    dead_letter_names: HashMap<String, String>,
    events: broadcast::Sender<JobEvent>,
    listener_tx: Option<tokio::sync::mpsc::UnboundedSender<JobEvent>>,
    shutdown: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn events_wanted(&self) -> bool {
        self.listener_tx.is_some() || self.events.receiver_count() > 0
    }
    fn emit(&self, e: JobEvent) {
        if let Some(tx) = &self.listener_tx {
            let _ = tx.send(e.clone());
        }
        // No receiver is not an error: events are fire-and-forget.
        let _ = self.events.send(e);
    }
}

/// The jobs runtime: dispatches jobs and runs the registered workers in the background.
/// Clones share the runtime. Dropping every handle does not stop the workers: call
/// [`Jobs::shutdown`] to stop them and hand unfinished jobs back.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use hookwire_jobs::{DispatchOptions, JobDef, Jobs, MemoryBackend};
/// let done = std::sync::Arc::new(tokio::sync::Notify::new());
/// let d = done.clone();
/// let def = JobDef::new("greet", move |name: String, _| {
///     let d = d.clone();
///     async move { d.notify_one(); Ok::<_, std::io::Error>(format!("hello {name}")) }
/// });
/// let jobs = Jobs::builder(MemoryBackend::new()).job(def).start().await.unwrap();
/// jobs.dispatch("greet", &"ada", DispatchOptions::new()).await.unwrap();
/// done.notified().await;
/// jobs.shutdown().await;
/// # });
/// ```
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl fmt::Debug for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs")
            .field("backend", &self.inner.backend)
            .field("jobs", &self.inner.names.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// A builder over `backend`.
    pub fn builder(backend: impl JobBackend) -> JobsBuilder {
        Self::builder_shared(Arc::new(backend))
    }

    /// A builder over a shared backend (several runtimes, or a runtime plus direct access).
    pub fn builder_shared(backend: Arc<dyn JobBackend>) -> JobsBuilder {
        JobsBuilder {
            backend,
            defs: Vec::new(),
            defaults: Defaults::default(),
            listeners: Vec::new(),
            repeats: Vec::new(),
            schedules: Vec::new(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn JobBackend> {
        &self.inner.backend
    }

    fn new_job(&self, data: String, opts: &DispatchOptions) -> NewJob {
        self.new_job_raw(data).with_options(opts)
    }

    /// A job with the runtime's retention defaults.
    pub(crate) fn new_job_raw(&self, data: String) -> NewJob {
        let mut j = NewJob::new(data);
        j.remove_on_complete = self.inner.defaults.remove_on_complete;
        j.remove_on_fail = self.inner.defaults.remove_on_fail;
        j
    }

    /// The schedules stored for job `name` (declared by any runtime on this backend).
    pub async fn schedules(&self, name: &str) -> Result<Vec<ScheduleInfo>, JobsError> {
        validate_queue_name(name)?;
        let stored = self.inner.backend.schedules(name).await?;
        stored.into_iter().map(ScheduleInfo::from_stored).collect()
    }

    /// Deletes schedule `id` of job `name` with its run count: runtimes declaring it stop at
    /// their next tick. Returns whether it existed. A runtime that declares it and starts later
    /// stores it again (fresh count).
    pub async fn remove_schedule(&self, name: &str, id: &str) -> Result<bool, JobsError> {
        validate_queue_name(name)?;
        self.inner.backend.remove_schedule(name, id).await
    }

    fn check_open(&self) -> Result<(), JobsError> {
        if *self.inner.shutdown.borrow() {
            return Err(JobsError::new(
                ErrorKind::Shutdown,
                "jobs runtime is shut down",
            ));
        }
        Ok(())
    }

    /// Stores one job with a serializable payload. Any valid name may be dispatched (a producer
    /// need not run the workers). Resolves once the backend stored it; on error nothing is
    /// stored.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        opts: DispatchOptions,
    ) -> Result<Added, JobsError> {
        let raw =
            serde_json::to_string(data).map_err(|e| JobsError::new(ErrorKind::Serialize, e))?;
        self.dispatch_raw(name, raw, opts).await
    }

    /// Stores one job of the typed name `job`.
    pub async fn dispatch_job<T: Serialize>(
        &self,
        job: Job<T>,
        data: &T,
        opts: DispatchOptions,
    ) -> Result<Added, JobsError> {
        self.dispatch(job.name(), data, opts).await
    }

    /// Stores one job whose payload is raw JSON text (the cross-language path); the text must
    /// be valid JSON.
    pub async fn dispatch_raw(
        &self,
        name: &str,
        json: impl Into<String>,
        opts: DispatchOptions,
    ) -> Result<Added, JobsError> {
        self.check_open()?;
        validate_queue_name(name)?;
        let job = self.new_job(json.into(), &opts);
        let mut added = self.inner.backend.add(name, vec![job]).await?;
        added
            .pop()
            .ok_or_else(|| JobsError::backend("backend returned no outcome"))
    }

    /// Stores many raw-JSON jobs of one name, in order, in chunks of [`MAX_BULK`] per backend
    /// call. On error, the chunks before the failing one are stored (the returned error says
    /// how many jobs were).
    pub async fn dispatch_bulk(
        &self,
        name: &str,
        jobs: Vec<(String, DispatchOptions)>,
    ) -> Result<Vec<Added>, JobsError> {
        self.check_open()?;
        validate_queue_name(name)?;
        let mut out = Vec::with_capacity(jobs.len());
        let mut chunk = Vec::with_capacity(MAX_BULK.min(jobs.len()));
        let total = jobs.len();
        let mut it = jobs.into_iter().peekable();
        while let Some((data, opts)) = it.next() {
            chunk.push(self.new_job(data, &opts));
            if chunk.len() == MAX_BULK || it.peek().is_none() {
                let batch = std::mem::take(&mut chunk);
                match self.inner.backend.add(name, batch).await {
                    Ok(a) => out.extend(a),
                    Err(e) => {
                        return Err(JobsError::new(
                            e.kind(),
                            format!("{} of {total} jobs stored before: {e}", out.len()),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts per registered job name, one backend round trip per name.
    pub async fn stats(&self) -> Result<BTreeMap<String, Counts>, JobsError> {
        let mut out = BTreeMap::new();
        for name in self.inner.names.keys() {
            out.insert(name.clone(), self.inner.backend.counts(name).await?);
        }
        Ok(out)
    }

    /// Counts of one name (registered or not).
    pub async fn counts(&self, name: &str) -> Result<Counts, JobsError> {
        validate_queue_name(name)?;
        self.inner.backend.counts(name).await
    }

    /// One job's record.
    pub async fn get(&self, name: &str, id: &str) -> Result<Option<JobRecord>, JobsError> {
        validate_queue_name(name)?;
        self.inner.backend.get(name, id).await
    }

    /// The job name whose DLQ `name` addresses: a custom dead-letter queue name resolves to its
    /// job, anything else is the job name itself.
    fn dead_letter_owner<'a>(&'a self, name: &'a str) -> Result<&'a str, JobsError> {
        validate_queue_name(name)?;
        Ok(self
            .inner
            .dead_letter_names
            .get(name)
            .map_or(name, String::as_str))
    }

    /// Dead-lettered jobs of `name` (a job name or its custom dead-letter queue name), oldest
    /// first.
    pub async fn dead_letters(
        &self,
        name: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobRecord>, JobsError> {
        let queue = self.dead_letter_owner(name)?;
        self.inner
            .backend
            .dead_letters(queue, offset, limit.min(1000))
            .await
    }

    /// Moves dead-lettered jobs of `name` (a job name or its custom dead-letter queue name)
    /// back to waiting (attempts reset); `None` re-drives up to 1000.
    pub async fn redrive(&self, name: &str, ids: Option<Vec<String>>) -> Result<usize, JobsError> {
        let queue = self.dead_letter_owner(name)?;
        self.inner.backend.redrive(queue, ids).await
    }

    /// A handle on the queue `name` (registered here or not): pause, resume, drain, clean.
    ///
    /// Errors: an invalid queue name.
    pub fn queue(&self, name: &str) -> Result<QueueHandle, JobsError> {
        validate_queue_name(name)?;
        Ok(QueueHandle::new(
            self.inner.backend.clone(),
            name.to_owned(),
        ))
    }

    /// A receiver of completed / failed events (lagging receivers lose the oldest events).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// Stops taking jobs, lets active ones finish within the grace period, releases the rest
    /// back to waiting (no attempt counted), flushes acknowledgements, and waits for every
    /// worker loop. Dispatch fails with [`ErrorKind::Shutdown`] afterwards. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let handles = std::mem::take(
            &mut *self
                .inner
                .workers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for h in handles {
            let _ = h.await;
        }
    }
}

impl TaskQueue for Jobs {
    /// Dispatches `task.payload` under the job name `task.kind`, with `task.id` as the
    /// de-duplication id: a task enqueued twice runs once.
    fn enqueue(&self, task: QueuedTask) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let opts = DispatchOptions::new()
                .job_id(task.id.clone())
                .delay(task.delay);
            let raw = serde_json::to_string(&task.payload).map_err(QueueError::new)?;
            self.dispatch_raw(&task.kind, raw, opts)
                .await
                .map(|_| ())
                .map_err(QueueError::new)
        })
    }
}

/// A handler's progress reporter (in [`JobMeta::progress`]).
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
    /// Stores `progress` on the job (visible in [`JobRecord::progress`]) and emits a
    /// `job.<name>.progress` event. Returns `Ok(false)` when this attempt no longer holds the
    /// job's lease (nothing stored); errors only when the backend is unreachable or the value
    /// does not serialize.
    pub async fn report<T: Serialize + ?Sized>(&self, progress: &T) -> Result<bool, JobsError> {
        let raw =
            serde_json::to_string(progress).map_err(|e| JobsError::new(ErrorKind::Serialize, e))?;
        if raw.len() > crate::MAX_PROGRESS {
            return Err(JobsError::invalid(format!(
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

/// One running job, until its ack is stored.
struct Running {
    abort: AbortHandle,
    job: LeasedJob,
    started: Instant,
}

struct Worker {
    inner: Arc<Inner>,
    def: JobDef,
    token: String,
    retries: u32,
    backoff: Option<Backoff>,
    timeout: Option<Duration>,
    lease: Duration,
    max_stalled: u32,
}

type TaskOut = (String, Result<String, HandlerFailure>);

impl Worker {
    fn new(inner: Arc<Inner>, def: JobDef) -> Self {
        let d = &inner.defaults;
        Self {
            token: hookwire_core::id::new_id("lease"),
            retries: def.retries.unwrap_or(d.retries),
            backoff: def.backoff.clone().or_else(|| d.backoff.clone()),
            timeout: def.timeout.or(d.timeout),
            lease: def.lease.unwrap_or(d.lease),
            max_stalled: def.max_stalled.unwrap_or(d.max_stalled),
            inner: inner.clone(),
            def,
        }
    }

    fn outcome(&self, job: &LeasedJob, res: Result<String, HandlerFailure>) -> Outcome {
        match res {
            Ok(result) => Outcome::Completed { result },
            Err(f) => {
                let attempt = job.attempts_made.saturating_add(1);
                if f.retryable && attempt <= self.retries {
                    let delay = self
                        .backoff
                        .as_ref()
                        .map_or(Duration::ZERO, |b| b.delay(attempt - 1));
                    Outcome::Retry {
                        delay,
                        error: f.message,
                    }
                } else {
                    Outcome::Failed {
                        error: f.message,
                        dead_letter: self.def.dead_letter,
                    }
                }
            }
        }
    }

    fn spawn_job(&self, set: &mut JoinSet<TaskOut>, job: &LeasedJob) -> AbortHandle {
        let meta = JobMeta {
            id: job.id.clone(),
            name: self.def.name.clone(),
            attempt: job.attempts_made.saturating_add(1),
            stalled: job.stalled,
            created_at_ms: job.created_at_ms,
            progress: Progress {
                inner: self.inner.clone(),
                queue: self.def.name.clone(),
                token: self.token.clone(),
                job: Arc::new(job.clone()),
            },
        };
        let fut = (self.def.handler)(job.data.clone(), meta);
        let id = job.id.clone();
        let timeout = self.timeout;
        set.spawn(async move {
            let res = match timeout {
                // Dropping the future on timeout is the cancellation: the handler stops at
                // its next await point.
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(HandlerFailure {
                        message: format!("timed out after {} ms", t.as_millis()),
                        retryable: true,
                    }),
                },
                None => fut.await,
            };
            (id, res)
        })
    }

    #[allow(clippy::too_many_lines)] // one loop owning all worker state reads best in one place
    async fn run(self) {
        let queue = self.def.name.clone();
        let backend = self.inner.backend.clone();
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut set: JoinSet<TaskOut> = JoinSet::new();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut task_ids: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut acks: Vec<Ack> = Vec::new();
        let mut want_more = true;
        let mut next_due: Option<Instant> = None;
        let mut rate_until: Option<Instant> = None;
        let mut err_backoff = Duration::from_millis(50);
        let stall_every = (self.lease / 2).max(Duration::from_millis(20));
        let renew_every = (self.lease / 3).max(Duration::from_millis(10));
        let mut next_stall = Instant::now();
        let mut next_renew = Instant::now() + renew_every;
        let mut grace_until: Option<Instant> = None;

        // The waker blocks on the backend while the loop is idle, so an idle worker costs one
        // blocked connection, not a poll.
        let arm = Arc::new(Notify::new());
        let woken = Arc::new(Notify::new());
        let waker = tokio::spawn(waker_loop(
            backend.clone(),
            queue.clone(),
            arm.clone(),
            woken.clone(),
        ));
        let mut armed = false;

        loop {
            while let Some(r) = set.try_join_next_with_id() {
                self.collect(r, &mut running, &mut task_ids, &mut acks);
            }
            let stopping = *shutdown.borrow();
            let now = Instant::now();
            if stopping {
                let until = *grace_until.get_or_insert(now + self.inner.defaults.shutdown_grace);
                if now >= until && !running.is_empty() {
                    // Grace is over: stop the stragglers and hand their jobs back.
                    for (id, r) in running.drain() {
                        r.abort.abort();
                        acks.push(Ack::new(id, Outcome::Release));
                    }
                }
                if running.is_empty() && acks.is_empty() {
                    break;
                }
            }
            // Periodic lease work, inline: both are single backend calls.
            if now >= next_stall && !stopping {
                next_stall = now + stall_every;
                // Finished jobs must be recorded before this worker looks for expired leases:
                // after an outage longer than the lease, its own finished jobs have expired
                // leases too, and recovering them would run them again (issue 14).
                if let Err(e) = self.flush_acks(&mut acks, &mut running).await {
                    tracing::warn!(queue = %queue, error = %e, "ack flush failed; stalled check postponed");
                } else {
                    self.check_stalled(&mut want_more).await;
                }
            }
            if now >= next_renew {
                next_renew = now + renew_every;
                if !running.is_empty() {
                    let ids: Vec<String> = running.keys().cloned().collect();
                    match backend.renew(&queue, &self.token, ids, self.lease).await {
                        Ok(lost) => {
                            for id in lost {
                                if let Some(r) = running.remove(&id) {
                                    tracing::warn!(queue = %queue, job = %id, "lease lost; stopping the attempt");
                                    r.abort.abort();
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(queue = %queue, error = %e, "lease renewal failed");
                        }
                    }
                }
            }

            if rate_until.is_some_and(|t| t <= now) {
                rate_until = None;
                want_more = true;
            }
            if next_due.is_some_and(|t| t <= now) {
                next_due = None;
                want_more = true;
            }
            let free = self.def.concurrency.saturating_sub(running.len());
            let want = if stopping || rate_until.is_some() || !want_more {
                0
            } else {
                free.min(self.def.batch)
            };

            if !acks.is_empty() || want > 0 {
                // Bounded per call so a script never unpacks more than Lua's stack allows.
                let n_sent = acks.len().min(crate::MAX_CLAIM);
                let sent: Vec<Ack> = acks[..n_sent].to_vec();
                let req = ClaimRequest::new(self.token.clone(), sent, want, self.lease)
                    .with_rate_limit(self.def.rate_limit);
                match backend.claim(&queue, req).await {
                    Ok(c) => {
                        err_backoff = Duration::from_millis(50);
                        let sent: Vec<Ack> = acks.drain(..n_sent).collect();
                        self.after_claim(&c, sent, &mut running);
                        let got = c.jobs.len();
                        let now = Instant::now();
                        rate_until = c.rate_limited_for.map(|d| now + d);
                        next_due = c.next_delayed_in.map(|d| now + d);
                        for job in c.jobs {
                            let abort = self.spawn_job(&mut set, &job);
                            task_ids.insert(abort.id(), job.id.clone());
                            let id = job.id.clone();
                            if let Some(old) = running.insert(
                                id,
                                Running {
                                    abort,
                                    job,
                                    started: Instant::now(),
                                },
                            ) {
                                // This worker got the job back after losing its lease unnoticed:
                                // the old attempt is superseded and must not ack the new lease.
                                old.abort.abort();
                            }
                        }
                        if want > 0 {
                            want_more = got == want;
                        }
                        let more_work = want_more
                            && rate_until.is_none()
                            && running.len() < self.def.concurrency;
                        if more_work || !acks.is_empty() {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(queue = %queue, error = %e, "claim failed; backing off");
                        tokio::select! {
                            () = tokio::time::sleep(err_backoff) => {}
                            _ = shutdown.changed() => {}
                        }
                        err_backoff = (err_backoff * 2).min(Duration::from_secs(2));
                        if stopping
                            && grace_until
                                .is_some_and(|g| Instant::now() > g + Duration::from_secs(5))
                        {
                            // Unreachable backend at shutdown: leases expire and the stalled
                            // check elsewhere recovers the jobs.
                            break;
                        }
                        continue;
                    }
                }
            }

            let idle_wait = !stopping && !want_more && rate_until.is_none() && free > 0;
            if idle_wait && !armed {
                arm.notify_one();
                armed = true;
            }
            let mut wake_at = next_stall.min(next_renew);
            for t in [next_due, rate_until, grace_until].into_iter().flatten() {
                wake_at = wake_at.min(t);
            }
            tokio::select! {
                r = set.join_next_with_id(), if !set.is_empty() => {
                    if let Some(r) = r {
                        self.collect(r, &mut running, &mut task_ids, &mut acks);
                    }
                }
                () = woken.notified() => {
                    armed = false;
                    want_more = true;
                }
                () = tokio::time::sleep_until(wake_at) => {}
                _ = shutdown.changed() => {}
            }
        }
        waker.abort();
        set.shutdown().await;
    }

    /// Records every buffered ack (in chunks of [`crate::MAX_CLAIM`], claiming nothing). On
    /// error the unsent acks stay buffered for the next round.
    async fn flush_acks(
        &self,
        acks: &mut Vec<Ack>,
        running: &mut HashMap<String, Running>,
    ) -> Result<(), JobsError> {
        while !acks.is_empty() {
            let n = acks.len().min(crate::MAX_CLAIM);
            let req = ClaimRequest::new(self.token.clone(), acks[..n].to_vec(), 0, self.lease);
            let c = self.inner.backend.claim(&self.def.name, req).await?;
            let sent: Vec<Ack> = acks.drain(..n).collect();
            self.after_claim(&c, sent, running);
        }
        Ok(())
    }

    /// One stalled-job check; sets `want_more` so the loop claims at least once per check even
    /// when no wake-up came (a cheap safety net).
    async fn check_stalled(&self, want_more: &mut bool) {
        let queue = &self.def.name;
        match self
            .inner
            .backend
            .recover_stalled(queue, self.max_stalled, self.def.dead_letter)
            .await
        {
            Ok(r) => {
                if !r.requeued.is_empty() || !r.failed.is_empty() {
                    tracing::info!(queue = %queue, requeued = r.requeued.len(), failed = r.failed.len(), "recovered stalled jobs");
                }
                *want_more = true;
                if self.inner.events_wanted() {
                    self.emit_recovered(&r);
                }
            }
            Err(e) => tracing::warn!(queue = %queue, error = %e, "stalled check failed"),
        }
    }

    /// Events of a stalled check, emitted by the one worker whose check recovered the jobs:
    /// `stalled` for a job put back to waiting; `failed` for one failed by the stall limit,
    /// like any other failure (issue 14).
    fn emit_recovered(&self, r: &Recovered) {
        for job in &r.jobs {
            let kind = if r.failed.contains(&job.id) {
                EventKind::Failed {
                    error: format!("job stalled more than {} times", self.max_stalled),
                    dead_lettered: self.def.dead_letter,
                }
            } else {
                EventKind::Stalled {
                    stalled: job.stalled,
                }
            };
            self.inner.emit(JobEvent {
                name: self.def.name.clone(),
                id: job.id.clone(),
                data: job.data.clone(),
                attempts_made: job.attempts_made,
                kind,
            });
        }
    }

    fn collect(
        &self,
        r: Result<(tokio::task::Id, TaskOut), tokio::task::JoinError>,
        running: &mut HashMap<String, Running>,
        task_ids: &mut HashMap<tokio::task::Id, String>,
        acks: &mut Vec<Ack>,
    ) {
        let (tid, id, res) = match r {
            Ok((tid, (id, res))) => {
                task_ids.remove(&tid);
                (tid, id, res)
            }
            Err(e) => {
                let Some(id) = task_ids.remove(&e.id()) else {
                    return;
                };
                if e.is_cancelled() {
                    // Aborted by us (lease lost or shutdown): the ack, if any, is already queued.
                    return;
                }
                let failure = HandlerFailure {
                    message: "handler panicked".to_owned(),
                    retryable: true,
                };
                (e.id(), id, Err(failure))
            }
        };
        // Only the current attempt of a job may report: a superseded one (same id, older task)
        // finishing late is ignored.
        let Some(run) = running.get(&id).filter(|r| r.abort.id() == tid) else {
            return;
        };
        let outcome = self.outcome(&run.job, res);
        // The per-attempt metric: subscribers turn these into counters and latency histograms.
        tracing::debug!(
            queue = %self.def.name,
            job = %id,
            attempt = run.job.attempts_made.saturating_add(1),
            elapsed_us = u64::try_from(run.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            outcome = match &outcome {
                Outcome::Completed { .. } => "completed",
                Outcome::Retry { .. } => "retry",
                Outcome::Failed { .. } => "failed",
                _ => "released",
            },
            "job attempt finished"
        );
        acks.push(Ack::new(id, outcome));
    }

    /// Drops acknowledged jobs from `running` and emits their events.
    fn after_claim(&self, c: &Claimed, sent: Vec<Ack>, running: &mut HashMap<String, Running>) {
        let events = self.inner.events_wanted();
        for ack in sent {
            let Some(run) = running.remove(&ack.id) else {
                continue;
            };
            if c.stale_acks.contains(&ack.id) {
                tracing::warn!(queue = %self.def.name, job = %ack.id, "ack refused: lease was lost");
                continue;
            }
            if !events {
                continue;
            }
            let attempts_made = run.job.attempts_made.saturating_add(1);
            let kind = match ack.outcome {
                Outcome::Completed { result } => EventKind::Completed { result },
                Outcome::Failed { error, dead_letter } => EventKind::Failed {
                    error,
                    dead_lettered: dead_letter,
                },
                Outcome::Retry { .. } | Outcome::Release => continue,
            };
            self.inner.emit(JobEvent {
                name: self.def.name.clone(),
                id: ack.id,
                data: run.job.data,
                attempts_made,
                kind,
            });
        }
    }
}

async fn waker_loop(
    backend: Arc<dyn JobBackend>,
    queue: String,
    arm: Arc<Notify>,
    woken: Arc<Notify>,
) {
    loop {
        arm.notified().await;
        // Re-block until work shows up; each timeout is just a re-check of the connection.
        loop {
            match backend.wait_for_work(&queue, Duration::from_secs(5)).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(queue = %queue, error = %e, "blocking wait failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // The backend may have come back with work the marker never saw.
                    break;
                }
            }
        }
        woken.notify_one();
    }
}
