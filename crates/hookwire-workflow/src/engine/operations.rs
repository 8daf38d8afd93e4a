//! The caller's operations on runs: start, get, list, signal, cancel, pause, rewind, wait,
//! journal replay, reconcile and shutdown.

use std::time::Duration;

use hookwire_core::Event;
use serde::Serialize;
use serde_json::Value;
#[cfg(feature = "axum")]
use tokio::sync::broadcast;

use super::inner::{decode, to_event, unix_ms};
use super::{Engine, MAX_KEY, MAX_PAGE, MAX_WAIT, RunPage, Scope, StartOptions, Started};
use crate::def::{WorkflowInfo, validate_name, validate_workflow_id};
use crate::error::{Error, ErrorKind, Result};
use crate::run::{Env, Limits, Run, RunState, Signalled};
use crate::store::{Inserted, RunDoc, RunQuery};

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

impl Engine {
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
        let stored = doc.clone();
        // The key is scoped to the workflow and organization: one tenant's key never returns
        // another tenant's run.
        let key = opts
            .idempotency_key
            .map(|k| format!("{workflow}\u{1f}{}\u{1f}{k}", scope.org().unwrap_or("")));
        match inner.store.insert(doc, key.as_deref()).await? {
            Inserted::New => {
                inner.after_commit(&st, &stored, 0, None).await;
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
    ///
    /// [`EngineBuilder::build`]: crate::EngineBuilder::build
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
            let mut unfinished = Vec::new();
            for d in docs.iter().filter(|d| !d.status.is_terminal()) {
                if self.inner.defs.contains_key(&d.workflow) {
                    unfinished.push(decode(d)?);
                }
            }
            n += self.inner.dispatch_all(&unfinished).await;
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
