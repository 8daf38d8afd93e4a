//! [`EngineBuilder`]: the engine's configuration, checked at build, which also starts the
//! workers and re-dispatches unfinished runs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hookwire_core::Backoff;
use hookwire_jobs::{Defaults, JobBackend, JobDef, JobMeta, Jobs, MemoryBackend, Retention};
use tokio::sync::broadcast;

use super::Engine;
use super::inner::{Inner, Recent, queue_name};
use crate::def::Workflow;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::TaskMsg;
use crate::run::Limits;
use crate::sink::TransitionSink;
use crate::store::{MemoryRunStore, RunStore};

/// The longest delay [`EngineBuilder::task_backoff`] may reach.
const MAX_TASK_BACKOFF: Duration = Duration::from_secs(3600);

/// Builds an [`Engine`]. Every setting is checked by [`EngineBuilder::build`].
pub struct EngineBuilder {
    store: Option<Arc<dyn RunStore>>,
    backend: Option<Arc<dyn JobBackend>>,
    sink: Option<Arc<dyn TransitionSink>>,
    workflows: Vec<Workflow>,
    limits: Limits,
    lease: Duration,
    concurrency: usize,
    workers: bool,
    task_backoff: Backoff,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("store", &self.store)
            .field("workflows", &self.workflows)
            .field("limits", &self.limits)
            .field("lease", &self.lease)
            .field("concurrency", &self.concurrency)
            .field("workers", &self.workers)
            .field("task_backoff", &self.task_backoff)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// The run store (default: a fresh [`MemoryRunStore`]).
    #[must_use]
    pub fn store(self, store: impl RunStore) -> Self {
        self.store_shared(Arc::new(store))
    }
    /// A shared run store (several engines over one store).
    #[must_use]
    pub fn store_shared(mut self, store: Arc<dyn RunStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// The job backend step attempts run on (default: a fresh in-memory backend).
    #[must_use]
    pub fn jobs_backend(mut self, backend: Arc<dyn JobBackend>) -> Self {
        self.backend = Some(backend);
        self
    }
    /// Where transitions are published (default: nowhere; the run journal keeps them).
    #[must_use]
    pub fn sink(self, sink: impl TransitionSink) -> Self {
        self.sink_shared(Arc::new(sink))
    }
    /// A shared sink.
    #[must_use]
    pub fn sink_shared(mut self, sink: Arc<dyn TransitionSink>) -> Self {
        self.sink = Some(sink);
        self
    }
    /// Registers a workflow definition. Several versions of one id may be registered: a run
    /// continues on the version it started with when registered, else on the newest.
    #[must_use]
    pub fn workflow(mut self, wf: Workflow) -> Self {
        self.workflows.push(wf);
        self
    }
    /// The limits runs are held to.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// The job lease of a step attempt (default 30 s, renewed every third of it): a worker that
    /// dies mid-step loses the step after this long and another worker takes it over.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// Step attempts run at once per workflow in this process (default 64).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Whether this engine runs step attempts (default true). An engine without workers only
    /// starts and operates runs (an API node); another engine with workers runs them.
    #[must_use]
    pub fn workers(mut self, on: bool) -> Self {
        self.workers = on;
        self
    }

    /// The wait before a task runs again after the run store or the job queue failed around its
    /// step attempt (default 100 ms, doubling to 5 s). Such a task is retried until it runs (a
    /// store outage of any length delays runs and never strands them); the step's own retries
    /// are counted by the run, not here. Its longest delay must be at most an hour.
    #[must_use]
    pub fn task_backoff(mut self, backoff: Backoff) -> Self {
        self.task_backoff = backoff;
        self
    }

    /// Checks the configuration and starts the workers (one job queue `workflow.<id>` per
    /// workflow id), then re-dispatches the task of every unfinished run in the store (a task
    /// that is already queued is not queued twice).
    ///
    /// Errors: no workflow, a duplicate (id, version), a lease under 30 ms, a concurrency of 0,
    /// zero limits, a task backoff whose longest delay is over an hour.
    pub async fn build(self) -> Result<Engine> {
        if self.workflows.is_empty() {
            return Err(Error::config("an engine needs at least one workflow"));
        }
        if self.lease < Duration::from_millis(30) {
            return Err(Error::config("the lease must be at least 30 ms"));
        }
        if self.concurrency == 0 {
            return Err(Error::config("concurrency must be at least 1"));
        }
        if self.task_backoff.upper_bound(u32::MAX) > MAX_TASK_BACKOFF {
            return Err(Error::config(
                "the task backoff's longest delay must be at most an hour",
            ));
        }
        let l = &self.limits;
        if l.max_step_output == 0 || l.max_run_state == 0 || l.max_steps == 0 {
            return Err(Error::config("limits must be above 0"));
        }
        let mut defs: HashMap<String, BTreeMap<u32, Arc<Workflow>>> = HashMap::new();
        for wf in self.workflows {
            let versions = defs.entry(wf.id.clone()).or_default();
            if versions.contains_key(&wf.version) {
                return Err(Error::config(format!(
                    "workflow {:?} version {} is registered twice",
                    wf.id, wf.version
                )));
            }
            versions.insert(wf.version, Arc::new(wf));
        }
        let backend = self
            .backend
            .unwrap_or_else(|| Arc::new(MemoryBackend::new()));
        let (changed, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            store: self
                .store
                .unwrap_or_else(|| Arc::new(MemoryRunStore::new())),
            jobs: OnceLock::new(),
            ids: defs.keys().cloned().collect(),
            defs,
            sink: self.sink,
            limits: self.limits,
            changed,
            recent: self.workers.then(|| Mutex::new(Recent::default())),
        });
        let mut defaults = Defaults::default();
        // Finished task jobs carry nothing the run does not already hold.
        defaults.remove_on_complete = Retention::Remove;
        defaults.remove_on_fail = Retention::KeepLast(1000);
        defaults.lease = self.lease;
        // The run counts lost attempts itself (against the step's retries), so the job layer
        // must keep re-delivering a stalled task instead of failing it behind the run's back.
        defaults.max_stalled = u32::MAX;
        // Job-level retries only cover store and queue failures around an attempt, and they never
        // run out: a task job failed for good would keep its id in the failed set, where it
        // blocks the re-queue by `reconcile` (same job id), and the run would wait forever.
        defaults.retries = u32::MAX;
        defaults.backoff = Some(self.task_backoff);
        let mut builder = Jobs::builder_shared(backend).defaults(defaults);
        if self.workers {
            for id in inner.defs.keys() {
                let weak = Arc::downgrade(&inner);
                let def = JobDef::new(queue_name(id), move |msg: TaskMsg, _meta: JobMeta| {
                    let weak = weak.clone();
                    async move {
                        match weak.upgrade() {
                            Some(inner) => inner.run_task(msg).await,
                            // The engine was dropped while its workers still ran: hand the task
                            // back (a retry) so a live engine runs it, instead of completing it.
                            None => Err(Error::new(ErrorKind::Shutdown, "the engine was dropped")),
                        }
                    }
                })
                .concurrency(self.concurrency)
                .batch(self.concurrency.min(hookwire_jobs::MAX_CLAIM));
                builder = builder.job(def);
            }
        }
        let jobs = builder.start().await?;
        let _ = inner.jobs.set(jobs);
        let engine = Engine { inner };
        if self.workers {
            engine.reconcile().await?;
        }
        Ok(engine)
    }
}

impl Engine {
    /// A builder with the memory store, an in-memory job backend and default limits.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            store: None,
            backend: None,
            sink: None,
            workflows: Vec::new(),
            limits: Limits::default(),
            lease: Duration::from_secs(30),
            concurrency: 64,
            workers: true,
            task_backoff: Backoff::exponential(Duration::from_millis(100))
                .with_max(Duration::from_secs(5)),
        }
    }
}
