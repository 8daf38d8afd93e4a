//! The [`Jobs`] handle: dispatch, admin calls, events and graceful shutdown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use hookwire_core::{BoxFuture, QueueError, QueuedTask, TaskQueue};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::backend::JobBackend;
use crate::builder::{Defaults, JobsBuilder};
use crate::def::Job;
use crate::error::{Error, ErrorKind};
use crate::events::JobEvent;
use crate::model::{
    Added, Counts, DispatchOptions, JobRecord, MAX_BULK, NewJob, validate_queue_name,
};
use crate::queue::QueueHandle;
use crate::schedule::ScheduleInfo;

/// The state every clone of [`Jobs`], every worker and every progress reporter shares.
pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn JobBackend>,
    pub(crate) defaults: Defaults,
    /// Registered names → dead-letter flag.
    pub(crate) names: HashMap<String, bool>,
    /// Custom dead-letter queue names → job names.
    pub(crate) dead_letter_names: HashMap<String, String>,
    pub(crate) events: broadcast::Sender<JobEvent>,
    pub(crate) listener_tx: Option<tokio::sync::mpsc::UnboundedSender<JobEvent>>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) workers: Mutex<Vec<JoinHandle<()>>>,
    /// Single dispatches waiting for their queue's next add call.
    pub(crate) dispatching: Arc<crate::coalesce::Coalescer>,
}

impl Inner {
    pub(crate) fn events_wanted(&self) -> bool {
        self.listener_tx.is_some() || self.events.receiver_count() > 0
    }
    pub(crate) fn emit(&self, e: JobEvent) {
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
    pub(crate) inner: Arc<Inner>,
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
    pub async fn schedules(&self, name: &str) -> Result<Vec<ScheduleInfo>, Error> {
        validate_queue_name(name)?;
        let stored = self.inner.backend.schedules(name).await?;
        stored.into_iter().map(ScheduleInfo::from_stored).collect()
    }

    /// Deletes schedule `id` of job `name` with its run count: runtimes declaring it stop at
    /// their next tick. Returns whether it existed. A runtime that declares it and starts later
    /// stores it again (fresh count).
    pub async fn remove_schedule(&self, name: &str, id: &str) -> Result<bool, Error> {
        validate_queue_name(name)?;
        self.inner.backend.remove_schedule(name, id).await
    }

    fn check_open(&self) -> Result<(), Error> {
        if *self.inner.shutdown.borrow() {
            return Err(Error::new(ErrorKind::Shutdown, "jobs runtime is shut down"));
        }
        Ok(())
    }

    /// Stores one job with a serializable payload. Any valid name may be dispatched (a producer
    /// need not run the workers). Resolves once the backend stored it; on error nothing is
    /// stored. Dispatches of one name that arrive while an add call for it is in flight go
    /// together in the next call (one backend round trip for many callers).
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        opts: DispatchOptions,
    ) -> Result<Added, Error> {
        let raw = serde_json::to_string(data).map_err(|e| Error::new(ErrorKind::Serialize, e))?;
        self.dispatch_raw(name, raw, opts).await
    }

    /// Stores one job of the typed name `job`.
    pub async fn dispatch_job<T: Serialize>(
        &self,
        job: Job<T>,
        data: &T,
        opts: DispatchOptions,
    ) -> Result<Added, Error> {
        self.dispatch(job.name(), data, opts).await
    }

    /// Stores one job whose payload is raw JSON text (the cross-language path); the text must
    /// be valid JSON.
    pub async fn dispatch_raw(
        &self,
        name: &str,
        json: impl Into<String>,
        opts: DispatchOptions,
    ) -> Result<Added, Error> {
        self.check_open()?;
        validate_queue_name(name)?;
        let job = self.new_job(json.into(), &opts);
        self.inner
            .dispatching
            .add(&self.inner.backend, name, job)
            .await
    }

    /// Stores many raw-JSON jobs of one name, in order, in chunks of [`MAX_BULK`] per backend
    /// call. On error, the chunks before the failing one are stored (the returned error says
    /// how many jobs were).
    pub async fn dispatch_bulk(
        &self,
        name: &str,
        jobs: Vec<(String, DispatchOptions)>,
    ) -> Result<Vec<Added>, Error> {
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
                        return Err(Error::new(
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
    pub async fn stats(&self) -> Result<BTreeMap<String, Counts>, Error> {
        let mut out = BTreeMap::new();
        for name in self.inner.names.keys() {
            out.insert(name.clone(), self.inner.backend.counts(name).await?);
        }
        Ok(out)
    }

    /// Counts of one name (registered or not).
    pub async fn counts(&self, name: &str) -> Result<Counts, Error> {
        validate_queue_name(name)?;
        self.inner.backend.counts(name).await
    }

    /// One job's record.
    pub async fn get(&self, name: &str, id: &str) -> Result<Option<JobRecord>, Error> {
        validate_queue_name(name)?;
        self.inner.backend.get(name, id).await
    }

    /// The job name whose DLQ `name` addresses: a custom dead-letter queue name resolves to its
    /// job, anything else is the job name itself.
    fn dead_letter_owner<'a>(&'a self, name: &'a str) -> Result<&'a str, Error> {
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
    ) -> Result<Vec<JobRecord>, Error> {
        let queue = self.dead_letter_owner(name)?;
        self.inner
            .backend
            .dead_letters(queue, offset, limit.min(1000))
            .await
    }

    /// Moves dead-lettered jobs of `name` (a job name or its custom dead-letter queue name)
    /// back to waiting (attempts reset); `None` re-drives up to 1000.
    pub async fn redrive(&self, name: &str, ids: Option<Vec<String>>) -> Result<usize, Error> {
        let queue = self.dead_letter_owner(name)?;
        self.inner.backend.redrive(queue, ids).await
    }

    /// A handle on the queue `name` (registered here or not): pause, resume, drain, clean.
    ///
    /// Errors: an invalid queue name.
    pub fn queue(&self, name: &str) -> Result<QueueHandle, Error> {
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
