//! The engine handle: definitions, the run store, the job runtime that runs step attempts, and
//! every operation on runs (start, get, list, signal, cancel, pause, rewind, wait).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hookwire_core::{Backoff, Event};
use hookwire_jobs::{
    Defaults, DispatchOptions, JobBackend, JobDef, JobMeta, Jobs, MemoryBackend, Retention,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::def::{Workflow, WorkflowInfo, truncate, validate_name, validate_workflow_id};
use crate::error::{Error, ErrorKind, Result};
use crate::exec::TaskMsg;
use crate::run::{Env, Limits, Run, RunState, Signalled, Task, Transition};
use crate::sink::TransitionSink;
use crate::store::{Inserted, MemoryRunStore, RunDoc, RunQuery, RunStore};

/// Most runs one [`Engine::list`] page returns.
pub const MAX_PAGE: usize = 100;
/// Longest [`Engine::wait_for`] long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// Longest idempotency or resume key, in bytes.
pub const MAX_KEY: usize = 256;
/// Compare-and-set attempts of one operation before it reports a conflict.
const CAS_ATTEMPTS: usize = 64;

/// Whose runs an operation may see. Runs started under an organization are invisible (404) to
/// every other organization; [`Scope::All`] is for trusted, operator-side code.
///
/// ```
/// use hookwire_workflow::Scope;
/// let s = Scope::organization("acme");
/// assert_eq!(s.org(), Some("acme"));
/// assert_eq!(Scope::All.org(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Every run (operators, internal code).
    All,
    /// The runs of one organization.
    Organization(String),
}

impl Scope {
    /// The scope of organization `org`.
    pub fn organization(org: impl Into<String>) -> Self {
        Self::Organization(org.into())
    }
    /// The organization, if scoped.
    pub fn org(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Organization(o) => Some(o),
        }
    }
    fn allows(&self, run_org: Option<&str>) -> bool {
        match self {
            Self::All => true,
            Self::Organization(o) => run_org == Some(o.as_str()),
        }
    }
}

/// Options of [`Engine::start`].
///
/// ```
/// let o = hookwire_workflow::StartOptions::new().idempotency_key("order-7");
/// assert_eq!(o.idempotency_key.as_deref(), Some("order-7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// A second start with the same key (same workflow and organization) returns the first run,
    /// whatever its status, for as long as it is stored.
    pub idempotency_key: Option<String>,
}

impl StartOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// What [`Engine::start`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Started {
    /// The run, as stored.
    pub run: Run,
    /// False when the idempotency key matched an earlier run (returned instead).
    pub created: bool,
}

/// One page of [`Engine::list`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunPage {
    /// The runs, in id order.
    pub runs: Vec<Run>,
    /// Pass as [`RunQuery::after`] for the next page; `None` on the last page.
    pub next: Option<String>,
}

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

    /// Checks the configuration and starts the workers (one job queue `workflow.<id>` per
    /// workflow id), then re-dispatches the task of every unfinished run in the store (a task
    /// that is already queued is not queued twice).
    ///
    /// Errors: no workflow, a duplicate (id, version), a lease under 30 ms, a concurrency of 0,
    /// zero limits.
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
        });
        let mut defaults = Defaults::default();
        // Finished task jobs carry nothing the run does not already hold.
        defaults.remove_on_complete = Retention::Remove;
        defaults.remove_on_fail = Retention::KeepLast(1000);
        defaults.lease = self.lease;
        // The run counts lost attempts itself (against the step's retries), so the job layer
        // must keep re-delivering a stalled task instead of failing it behind the run's back.
        defaults.max_stalled = u32::MAX;
        // Job-level retries only cover store and queue failures around an attempt.
        defaults.retries = 10;
        defaults.backoff =
            Some(Backoff::exponential(Duration::from_millis(100)).with_max(Duration::from_secs(5)));
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

fn queue_name(workflow: &str) -> String {
    format!("workflow.{workflow}")
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn RunStore>,
    jobs: OnceLock<Jobs>,
    defs: HashMap<String, BTreeMap<u32, Arc<Workflow>>>,
    ids: Vec<String>,
    sink: Option<Arc<dyn TransitionSink>>,
    pub(crate) limits: Limits,
    changed: broadcast::Sender<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping every handle without `Engine::shutdown` must not leave workers running: stop
        // them in the background (running attempts are handed back to the queue).
        if let Some(jobs) = self.jobs.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { jobs.shutdown().await });
        }
    }
}

pub(crate) fn decode(doc: &RunDoc) -> Result<RunState> {
    serde_json::from_str(&doc.body).map_err(|e| {
        Error::store(format!(
            "run {} has an unreadable document: {e}",
            truncate(&doc.id)
        ))
    })
}

fn unix_ms() -> u64 {
    hookwire_core::time::unix_millis()
}

impl Inner {
    /// The definition a run continues on: its pinned version when registered, else the newest.
    pub(crate) fn definition(&self, workflow: &str, version: u32) -> Result<Arc<Workflow>> {
        let versions = self
            .defs
            .get(workflow)
            .ok_or_else(|| Error::not_found(format!("no workflow {:?}", truncate(workflow))))?;
        versions
            .get(&version)
            .or_else(|| versions.values().next_back())
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no workflow {:?}", truncate(workflow))))
    }

    /// Applies `f` to the run with one compare-and-set write, re-reading and re-applying on a
    /// concurrent change. `f` must be a pure function of the run it is given. A run outside
    /// `scope` is reported as not found.
    pub(crate) async fn transact<T>(
        &self,
        run: &str,
        scope: Option<&Scope>,
        mut f: impl FnMut(&mut RunState, &Env<'_>) -> Result<T>,
    ) -> Result<(T, RunState)> {
        for _ in 0..CAS_ATTEMPTS {
            let doc = self.load(run, scope).await?;
            let mut st = decode(&doc)?;
            let wf = self.definition(&st.workflow, st.version)?;
            let env = Env {
                now: unix_ms(),
                limits: &self.limits,
                wf: &wf,
            };
            let before_seq = st.seq;
            let before_task = st.task().map(|t| t.id.clone());
            let out = f(&mut st, &env)?;
            let body = serde_json::to_string(&st).map_err(Error::serialize)?;
            if body == doc.body {
                return Ok((out, st));
            }
            if body.len() > self.limits.max_run_state {
                return Err(Error::limit(format!(
                    "limit: run {} would be {} bytes, the limit is {}",
                    st.id,
                    body.len(),
                    self.limits.max_run_state
                )));
            }
            let next = RunDoc::new(
                &st.id,
                &st.workflow,
                st.organization.clone(),
                st.status,
                doc.rev + 1,
                body,
            );
            if self.store.replace(next, doc.rev).await? {
                self.after_commit(&st, before_seq, before_task.as_deref())
                    .await;
                return Ok((out, st));
            }
        }
        Err(Error::conflict(
            "the run changed too often to apply the operation; retry",
        ))
    }

    async fn load(&self, run: &str, scope: Option<&Scope>) -> Result<RunDoc> {
        let missing = || Error::not_found(format!("no run {:?}", truncate(run)));
        let doc = self.store.load(run).await?.ok_or_else(missing)?;
        if scope.is_some_and(|s| !s.allows(doc.organization.as_deref())) {
            return Err(missing());
        }
        Ok(doc)
    }

    /// Publishes the new transitions and queues the new task, once the write is durable.
    async fn after_commit(&self, st: &RunState, before_seq: u64, before_task: Option<&str>) {
        if let Some(t) = st.task()
            && Some(t.id.as_str()) != before_task
        {
            self.dispatch(st, t).await;
        }
        if let Some(sink) = &self.sink {
            for tr in st.journal.iter().filter(|t| t.seq > before_seq) {
                let e = to_event(st, tr);
                if let Err(err) = sink.publish(&e).await {
                    tracing::warn!(run = %st.id, seq = tr.seq, error = %err, "publishing a workflow transition failed");
                }
            }
        }
        let _ = self.changed.send(st.id.clone());
    }

    async fn dispatch(&self, st: &RunState, t: &Task) {
        let Some(jobs) = self.jobs.get() else {
            return;
        };
        let delay = Duration::from_millis(t.due.saturating_sub(unix_ms()));
        let msg = TaskMsg {
            run: st.id.clone(),
            task: t.id.clone(),
        };
        let opts = DispatchOptions::new().job_id(t.id.clone()).delay(delay);
        let mut backoff = Duration::from_millis(20);
        for attempt in 1..=3 {
            match jobs
                .dispatch(&queue_name(&st.workflow), &msg, opts.clone())
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    // The run keeps the task: `Engine::reconcile` queues it again later.
                    tracing::warn!(run = %st.id, task = %t.id, attempt, error = %e, "queueing a workflow task failed");
                    if e.kind() == hookwire_jobs::ErrorKind::Shutdown {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

/// The bus event of one transition: `workflow.<id>.<transition>`, stream = run id, version =
/// sequence.
pub(crate) fn to_event(st: &RunState, tr: &Transition) -> Event {
    let mut data = json!({
        "runId": st.id,
        "workflowId": st.workflow,
        "sequence": tr.seq,
        "generation": tr.generation,
        "status": tr.status.as_str(),
        "at": tr.at,
    });
    if let Some(step) = &tr.step {
        data["step"] = Value::String(step.clone());
    }
    if !tr.data.is_null() {
        data["detail"] = tr.data.clone();
    }
    let mut e = Event::new(format!("workflow.{}.{}", st.workflow, tr.kind), data)
        .with_id(format!("{}-{}", st.id, tr.seq))
        .with_stream(st.id.clone(), tr.seq);
    if let Some(org) = &st.organization {
        e = e.with_organization(org.clone());
    }
    e
}

fn check_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must be 1..={MAX_KEY} bytes without control characters"
        )));
    }
    Ok(())
}

fn to_json<T: Serialize + ?Sized>(v: &T, limits: &Limits, what: &str) -> Result<Value> {
    let v = serde_json::to_value(v).map_err(Error::serialize)?;
    let size = serde_json::to_string(&v).map_or(usize::MAX, |s| s.len());
    if size > limits.max_step_output {
        return Err(Error::limit(format!(
            "{what} is {size} bytes, the limit is {}",
            limits.max_step_output
        )));
    }
    Ok(v)
}

/// The workflow engine: registered definitions, a run store and the workers that run step
/// attempts as jobs. Clones share the engine; call [`Engine::shutdown`] to stop the workers (and
/// wait for them); dropping the last handle stops them in the background.
///
/// Cancel safety: every operation is one durable transition (or none); dropping its future may
/// or may not have applied it, and repeating it is safe (resume keys and idempotency keys make
/// signals and starts idempotent).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("workflows", &self.inner.ids)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
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
        }
    }

    /// The newest version of every registered workflow, by id.
    pub fn workflows(&self) -> Vec<WorkflowInfo> {
        let mut out: Vec<WorkflowInfo> = self
            .inner
            .defs
            .values()
            .filter_map(|v| v.values().next_back().map(|w| w.info()))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Starts a run of the newest version of `workflow` with `input`, in `scope`'s organization.
    /// Resolves once the run is stored and its first step queued (never waits for the step).
    pub async fn start<I: Serialize + ?Sized>(
        &self,
        scope: &Scope,
        workflow: &str,
        input: &I,
        opts: StartOptions,
    ) -> Result<Started> {
        validate_workflow_id(workflow)?;
        let inner = &self.inner;
        let wf = inner
            .defs
            .get(workflow)
            .and_then(|v| v.values().next_back())
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no workflow {workflow:?}")))?;
        let input = to_json(input, &inner.limits, "the input")?;
        if let Some(k) = &opts.idempotency_key {
            check_key("an idempotency key", k)?;
        }
        let env = Env {
            now: unix_ms(),
            limits: &inner.limits,
            wf: &wf,
        };
        let org = scope.org().map(str::to_owned);
        let mut st = RunState::new(hookwire_core::id::new_id("run"), &env, org.clone(), input);
        st.start(&env);
        let body = serde_json::to_string(&st).map_err(Error::serialize)?;
        let doc = RunDoc::new(&st.id, &st.workflow, org, st.status, 1, body);
        // The key is scoped to the workflow and organization: one tenant's key never returns
        // another tenant's run.
        let key = opts
            .idempotency_key
            .map(|k| format!("{workflow}\u{1f}{}\u{1f}{k}", scope.org().unwrap_or("")));
        match inner.store.insert(doc, key.as_deref()).await? {
            Inserted::New => {
                inner.after_commit(&st, 0, None).await;
                Ok(Started {
                    run: st.view(),
                    created: true,
                })
            }
            Inserted::Existing(doc) => Ok(Started {
                run: decode(&doc)?.view(),
                created: false,
            }),
        }
    }

    /// One run; [`ErrorKind::NotFound`] when unknown or outside `scope`.
    pub async fn get(&self, scope: &Scope, run: &str) -> Result<Run> {
        let doc = self.inner.load(run, Some(scope)).await?;
        Ok(decode(&doc)?.view())
    }

    /// Runs in id order (start order to the millisecond), filtered by `query`, at most [`MAX_PAGE`] per page. A scoped caller
    /// only ever sees its organization's runs, whatever `query.organization` says.
    pub async fn list(&self, scope: &Scope, mut query: RunQuery) -> Result<RunPage> {
        if let Some(o) = scope.org() {
            query.organization = Some(o.to_owned());
        }
        let limit = query.limit.clamp(1, MAX_PAGE);
        query.limit = limit + 1;
        let mut docs = self.inner.store.list(&query).await?;
        let next = if docs.len() > limit {
            docs.truncate(limit);
            docs.last().map(|d| d.id.clone())
        } else {
            None
        };
        let runs = docs
            .iter()
            .map(|d| decode(d).map(|s| s.view()))
            .collect::<Result<Vec<_>>>()?;
        Ok(RunPage { runs, next })
    }

    /// Sends the signal `name` to a run. It is stored first: the wait that is parked on it
    /// completes now, or the run consumes it when it reaches a wait for `name`. With a resume
    /// key, the same key twice is accepted once. [`ErrorKind::Conflict`] once the run finished.
    pub async fn signal<P: Serialize + ?Sized>(
        &self,
        scope: &Scope,
        run: &str,
        name: &str,
        payload: &P,
        resume_key: Option<&str>,
    ) -> Result<(Signalled, Run)> {
        validate_name(name)?;
        let payload = to_json(payload, &self.inner.limits, "the signal payload")?;
        let key = match resume_key {
            Some(k) => {
                check_key("a resume key", k)?;
                k.to_owned()
            }
            None => hookwire_core::id::new_id("sig"),
        };
        let (s, st) = self
            .inner
            .transact(run, Some(scope), |st, env| {
                st.signal(env, name, payload.clone(), key.clone())
            })
            .await?;
        Ok((s, st.view()))
    }

    /// Cancels a run: no step starts again and its waits and timers are retired (their jobs
    /// find nothing to do). A running attempt finishes but cannot commit. Cancelling a cancelled
    /// run is a no-op; a completed or failed run is a [`ErrorKind::Conflict`].
    pub async fn cancel(&self, scope: &Scope, run: &str) -> Result<Run> {
        self.op(scope, run, RunState::cancel).await
    }

    /// Pauses a run: a running attempt finishes and commits, but no new step starts (waits
    /// still take signals) until [`Engine::unpause`].
    pub async fn pause(&self, scope: &Scope, run: &str) -> Result<Run> {
        self.op(scope, run, RunState::pause).await
    }

    /// Unpauses a run and starts the step it stopped at.
    pub async fn unpause(&self, scope: &Scope, run: &str) -> Result<Run> {
        self.op(scope, run, RunState::unpause).await
    }

    async fn op(
        &self,
        scope: &Scope,
        run: &str,
        f: fn(&mut RunState, &Env<'_>) -> Result<()>,
    ) -> Result<Run> {
        let ((), st) = self.inner.transact(run, Some(scope), f).await?;
        Ok(st.view())
    }

    /// Rewinds a run to its latest execution of `step` (with `input`, or the input that
    /// execution had). It bumps the run's generation, so waits, timers and attempts of the old
    /// generation can no longer commit or consume signals; executions from `step` on stay in the
    /// history marked superseded; the run continues by itself.
    ///
    /// Errors: [`ErrorKind::Conflict`] while a step attempt runs (or the run is cancelled),
    /// [`ErrorKind::UnknownStep`] for a step the workflow lacks or the run never reached.
    pub async fn rewind(
        &self,
        scope: &Scope,
        run: &str,
        step: &str,
        input: Option<Value>,
    ) -> Result<Run> {
        validate_name(step).map_err(|e| Error::new(ErrorKind::UnknownStep, e.to_string()))?;
        let ((), st) = self
            .inner
            .transact(run, Some(scope), |st, env| {
                st.rewind(env, step, input.clone())
            })
            .await?;
        Ok(st.view())
    }

    /// Waits until the run finished or `timeout` (at most [`MAX_WAIT`]) passed, and returns it
    /// as it is then.
    pub async fn wait_for(&self, scope: &Scope, run: &str, timeout: Duration) -> Result<Run> {
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        let mut rx = self.inner.changed.subscribe();
        loop {
            let r = self.get(scope, run).await?;
            if r.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(r);
            }
            // Another node's transitions do not reach this channel: re-read every 250 ms too.
            let tick = (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline);
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(id) if id != run => continue,
                        _ => break,
                    },
                    () = tokio::time::sleep_until(tick) => break,
                }
            }
        }
    }

    /// The run's transitions after sequence `after`, as bus events, oldest first (the last
    /// [`crate::JOURNAL_LEN`] are kept): what a progress stream replays after a reconnect.
    pub async fn journal(&self, scope: &Scope, run: &str, after: u64) -> Result<Vec<Event>> {
        let doc = self.inner.load(run, Some(scope)).await?;
        let st = decode(&doc)?;
        Ok(st
            .journal
            .iter()
            .filter(|t| t.seq > after)
            .map(|t| to_event(&st, t))
            .collect())
    }

    /// The journal after `after` and whether the run finished, from one read (for progress
    /// streams), plus a receiver of this engine's change notifications.
    #[cfg(feature = "axum")]
    pub(crate) async fn progress(
        &self,
        scope: &Scope,
        run: &str,
        after: u64,
    ) -> Result<(Vec<Event>, bool)> {
        let doc = self.inner.load(run, Some(scope)).await?;
        let st = decode(&doc)?;
        let events = st
            .journal
            .iter()
            .filter(|t| t.seq > after)
            .map(|t| to_event(&st, t))
            .collect();
        Ok((events, st.status.is_terminal()))
    }

    /// A receiver that gets a run id after every transition this engine stored.
    #[cfg(feature = "axum")]
    pub(crate) fn changes(&self) -> broadcast::Receiver<String> {
        self.inner.changed.subscribe()
    }

    /// Queues again the task every unfinished run expects (a task still queued is not queued
    /// twice; a stale one does nothing). [`EngineBuilder::build`] calls it; call it after the
    /// job queue was unreachable for a while.
    pub async fn reconcile(&self) -> Result<usize> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let mut q = RunQuery::new(MAX_PAGE);
            q.after = after.clone();
            let docs = self.inner.store.list(&q).await?;
            let Some(last) = docs.last().map(|d| d.id.clone()) else {
                return Ok(n);
            };
            for d in docs.iter().filter(|d| !d.status.is_terminal()) {
                if !self.inner.defs.contains_key(&d.workflow) {
                    continue;
                }
                let st = decode(d)?;
                if let Some(t) = st.task() {
                    self.inner.dispatch(&st, t).await;
                    n += 1;
                }
            }
            after = Some(last);
        }
    }

    /// Stops the workers: running attempts finish within the job runtime's grace period, the
    /// rest go back to the queue. Idempotent.
    pub async fn shutdown(&self) {
        if let Some(j) = self.inner.jobs.get() {
            j.shutdown().await;
        }
    }
}
