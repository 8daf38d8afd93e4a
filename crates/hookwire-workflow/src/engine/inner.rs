//! The state every engine handle shares, the compare-and-set transaction that applies a
//! transition to a stored run, and what follows a durable write: the task job is queued and the
//! transitions are published.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use hookwire_core::Event;
use hookwire_jobs::{DispatchOptions, Jobs};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::Scope;
use crate::def::{Workflow, truncate};
use crate::error::{Error, Result};
use crate::exec::TaskMsg;
use crate::run::{Env, Limits, RunState, Task, Transition};
use crate::sink::TransitionSink;
use crate::store::{Replaced, RunDoc, RunStore};

/// Compare-and-set attempts of one operation before it reports a conflict.
const CAS_ATTEMPTS: usize = 64;

/// Documents kept for tasks this engine queued, so the worker that picks a task up starts from
/// the document as it was stored instead of reading it again (a stale one only costs the
/// compare-and-set, which answers with the stored run). Past this many documents, or
/// [`RECENT_BYTES`] of them, the cache starts over.
const RECENT_MAX: usize = 4096;
/// The most document bytes the cache holds (a document is at most `Limits::max_run_state`).
const RECENT_BYTES: usize = 16 << 20;

/// Task id → the run as stored when the task was queued, and the bytes of those documents.
#[derive(Default)]
pub(super) struct Recent {
    docs: HashMap<String, RunDoc>,
    bytes: usize,
}

impl Recent {
    fn put(&mut self, task: &str, doc: &RunDoc) {
        let size = doc.body.len();
        if size > RECENT_BYTES / 64 {
            return;
        }
        if self.docs.len() >= RECENT_MAX || self.bytes + size > RECENT_BYTES {
            self.docs.clear();
            self.bytes = 0;
        }
        if let Some(old) = self.docs.insert(task.to_owned(), doc.clone()) {
            self.bytes = self.bytes.saturating_sub(old.body.len());
        }
        self.bytes += size;
    }

    fn take(&mut self, task: &str) -> Option<RunDoc> {
        let doc = self.docs.remove(task)?;
        self.bytes = self.bytes.saturating_sub(doc.body.len());
        Some(doc)
    }
}

pub(super) fn queue_name(workflow: &str) -> String {
    format!("workflow.{workflow}")
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn RunStore>,
    pub(super) jobs: OnceLock<Jobs>,
    pub(super) defs: HashMap<String, BTreeMap<u32, Arc<Workflow>>>,
    pub(super) ids: Vec<String>,
    pub(super) sink: Option<Arc<dyn TransitionSink>>,
    pub(crate) limits: Limits,
    pub(super) changed: broadcast::Sender<String>,
    /// Task id → the run as stored when the task was queued (only on engines with workers).
    pub(super) recent: Option<Mutex<Recent>>,
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

fn missing(run: &str) -> Error {
    Error::not_found(format!("no run {:?}", truncate(run)))
}

/// `doc`, unless it is outside `scope` (then reported as missing, like an unknown run).
fn scoped(run: &str, doc: RunDoc, scope: Option<&Scope>) -> Result<RunDoc> {
    if scope.is_some_and(|s| !s.allows(doc.organization.as_deref())) {
        return Err(missing(run));
    }
    Ok(doc)
}

pub(super) fn unix_ms() -> u64 {
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
        f: impl FnMut(&mut RunState, &Env<'_>) -> Result<T>,
    ) -> Result<(T, RunState)> {
        self.transact_from(run, scope, None, f)
            .await
            .map(|(out, st, _)| (out, st))
    }

    /// [`Inner::transact`] starting from `known` (a document read or written moments ago)
    /// instead of a fresh read: a stale one only costs the compare-and-set, which answers with
    /// the stored document. Also returns the document as stored afterwards, for the next
    /// transition of the same caller.
    pub(crate) async fn transact_from<T>(
        &self,
        run: &str,
        scope: Option<&Scope>,
        known: Option<RunDoc>,
        mut f: impl FnMut(&mut RunState, &Env<'_>) -> Result<T>,
    ) -> Result<(T, RunState, RunDoc)> {
        let mut known = known;
        for _ in 0..CAS_ATTEMPTS {
            let doc = match known.take() {
                Some(d) => scoped(run, d, scope)?,
                None => self.load(run, scope).await?,
            };
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
                return Ok((out, st, doc));
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
            match self.store.replace_or_current(next.clone(), doc.rev).await? {
                Replaced::Written => {
                    self.after_commit(&st, &next, before_seq, before_task.as_deref())
                        .await;
                    return Ok((out, st, next));
                }
                Replaced::Stale(Some(current)) => known = Some(current),
                Replaced::Stale(None) => return Err(missing(run)),
            }
        }
        Err(Error::conflict(
            "the run changed too often to apply the operation; retry",
        ))
    }

    /// Keeps `doc` for the worker that will pick up `task`.
    fn remember(&self, task: &str, doc: &RunDoc) {
        let Some(recent) = &self.recent else {
            return;
        };
        recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(task, doc);
    }

    /// The document kept for `task`, if this engine queued it (taken: each task runs once).
    pub(crate) fn recall(&self, task: &str) -> Option<RunDoc> {
        self.recent
            .as_ref()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(task)
    }

    pub(super) async fn load(&self, run: &str, scope: Option<&Scope>) -> Result<RunDoc> {
        let doc = self.store.load(run).await?.ok_or_else(|| missing(run))?;
        scoped(run, doc, scope)
    }

    /// Publishes the new transitions and queues the new task, once the write is durable.
    pub(super) async fn after_commit(
        &self,
        st: &RunState,
        doc: &RunDoc,
        before_seq: u64,
        before_task: Option<&str>,
    ) {
        // A carried task needs no job: the job that carries it runs it next.
        if let Some(t) = st.task()
            && Some(t.id.as_str()) != before_task
            && t.carrier.is_none()
        {
            self.remember(&t.id, doc);
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

    pub(super) async fn dispatch(&self, st: &RunState, t: &Task) {
        let Some(jobs) = self.jobs.get() else {
            return;
        };
        let (msg, opts) = job_of(st, t);
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

/// The job that runs task `t` of run `st`: its payload and options. A carried task goes out
/// under its carrier's job id, so while that job lives (running, or waiting for its stalled
/// lease to be recovered) the task is not queued twice.
fn job_of(st: &RunState, t: &Task) -> (TaskMsg, DispatchOptions) {
    let delay = Duration::from_millis(t.due.saturating_sub(unix_ms()));
    let msg = TaskMsg {
        run: st.id.clone(),
        task: t.job_id().to_owned(),
    };
    let opts = DispatchOptions::new().job_id(msg.task.clone()).delay(delay);
    (msg, opts)
}

impl Inner {
    /// Queues the task of every run in `runs` (those without one are skipped): one backend
    /// call per workflow queue (in chunks of the job layer's bulk limit) instead of one per
    /// run. Job ids de-duplicate tasks still queued. Should a bulk call fail, each of its runs'
    /// tasks is queued on its own, with [`Inner::dispatch`]'s retries. Returns how many runs had
    /// a task.
    pub(super) async fn dispatch_all(&self, runs: &[RunState]) -> usize {
        let Some(jobs) = self.jobs.get() else {
            return 0;
        };
        let mut by_queue: HashMap<String, Vec<&RunState>> = HashMap::new();
        for st in runs.iter().filter(|st| st.task().is_some()) {
            by_queue
                .entry(queue_name(&st.workflow))
                .or_default()
                .push(st);
        }
        let mut n = 0;
        for (queue, group) in by_queue {
            n += group.len();
            let mut batch = Vec::with_capacity(group.len());
            for st in &group {
                if let Some(t) = st.task() {
                    let (msg, opts) = job_of(st, t);
                    match serde_json::to_string(&msg) {
                        Ok(json) => batch.push((json, opts)),
                        Err(e) => {
                            tracing::warn!(run = %st.id, error = %e, "encoding a workflow task failed");
                        }
                    }
                }
            }
            if let Err(e) = jobs.dispatch_bulk(&queue, batch).await {
                tracing::warn!(queue = %queue, error = %e, "queueing workflow tasks in bulk failed; one by one");
                for st in group {
                    if let Some(t) = st.task() {
                        self.dispatch(st, t).await;
                    }
                }
            }
        }
        n
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunStatus;

    fn doc(bytes: usize) -> RunDoc {
        RunDoc::new("r", "w", None, RunStatus::Running, 1, "x".repeat(bytes))
    }

    #[test]
    fn the_document_cache_stays_within_its_count_and_byte_bounds() {
        let mut r = Recent::default();
        // A document over 1/64 of the budget is never kept.
        r.put("big", &doc(RECENT_BYTES / 64 + 1));
        assert!(r.take("big").is_none());
        let each = RECENT_BYTES / 64;
        for i in 0..200 {
            r.put(&format!("t{i}"), &doc(each));
            assert!(r.bytes <= RECENT_BYTES, "{} bytes after {i}", r.bytes);
        }
        assert!(r.docs.len() <= 64);
        let mut small = Recent::default();
        for i in 0..RECENT_MAX + 10 {
            small.put(&format!("t{i}"), &doc(1));
            assert!(small.docs.len() <= RECENT_MAX);
        }
        let last = format!("t{}", RECENT_MAX + 9);
        assert_eq!(small.take(&last).map(|d| d.body.len()), Some(1));
        assert!(
            small.take(&last).is_none(),
            "a task's document is taken once"
        );
    }
}
