//! Running one task job: a step attempt under a fencing token, a sleep's wake-up or a wait's
//! timeout; and the context a step handler gets.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::def::{Erased, Failure, Kind};
use crate::engine::{Inner, decode};
use crate::error::{BoxError, Error, ErrorKind, Result};
use crate::run::{Begin, Env, RunState, TaskKind};
use crate::store::RunDoc;

/// The job payload: which run, and which of its tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) run: String,
    pub(crate) task: String,
}

/// Longest memo key, in bytes.
pub const MAX_MEMO_KEY: usize = 128;

/// Step attempts one task job runs in a row: each next step due at once is carried by the job
/// that ran the step before it, up to this many; then the next step gets a job of its own (so
/// a looping run shares the workers with the others).
const CARRY_MAX: usize = 16;

/// The step attempt a task job runs next.
enum Next {
    /// Begin task `0`'s step, starting from the run as stored (`1`) when known.
    Task(String, Option<RunDoc>),
    /// Already begun by the transition that handed the step to this job (the run as that
    /// transition stored it).
    Begun(Begin, Box<RunState>, RunDoc),
}

/// Begins, inside the transition that hands it over, the step whose task was just carried by
/// job `carrier`: the hand-over and the begin are one store write instead of two, and nothing
/// can come between them (the same outcome as a begin written right after, with no other
/// operation in between).
fn begin_carried(st: &mut RunState, env: &Env<'_>, carrier: &str) -> Option<Begin> {
    let id = st
        .task()
        .filter(|t| t.carrier.as_deref() == Some(carrier))?
        .id
        .clone();
    Some(st.begin(env, &id))
}

impl Inner {
    /// Runs one task job. Errors are store or queue failures: the job layer retries them.
    pub(crate) async fn run_task(self: &Arc<Self>, msg: TaskMsg) -> Result<()> {
        // The document this engine stored when it queued the task, else a read.
        let doc = match self.recall(&msg.task) {
            Some(d) => d,
            None => match self.store.load(&msg.run).await? {
                Some(d) => d,
                None => return Ok(()),
            },
        };
        let st = decode(&doc)?;
        let Some(task) = st.task_of_job(&msg.task).cloned() else {
            // Stale: the run moved on (rewound, cancelled, resumed by a signal…).
            return Ok(());
        };
        // Timers never fire early: a job delivered before its due time (a node whose clock runs
        // ahead) waits out the rest while holding its lease.
        let now = hookwire_core::time::unix_millis();
        if task.due > now {
            tokio::time::sleep(Duration::from_millis(task.due - now)).await;
        }
        // The document just read starts the transition: a write is then one store call.
        let known = Some(doc);
        // A timer that fires into a code step due at once hands it to this job too, like a
        // settled attempt does (see `attempt`).
        let first = match task.kind {
            TaskKind::Wake | TaskKind::Timeout => {
                let (begun, st, stored) = self
                    .transact_from(&msg.run, None, known, |st, env| {
                        let before = st.task().map(|t| t.id.clone());
                        if task.kind == TaskKind::Wake {
                            st.wake(env, &task.id);
                        } else {
                            st.time_out(env, &task.id);
                        }
                        st.carry(env, before.as_deref(), &msg.task);
                        Ok(begin_carried(st, env, &msg.task))
                    })
                    .await?;
                begun.map(|b| Next::Begun(b, Box::new(st), stored))
            }
            TaskKind::Run => Some(Next::Task(task.id, known)),
        };
        // Each next step due at once runs in this job too (up to `CARRY_MAX`), which saves
        // queueing, claiming and acknowledging a job per step.
        let mut next = first;
        let mut hops = 1;
        while let Some(step) = next.take() {
            let carrier = (hops < CARRY_MAX).then_some(msg.task.as_str());
            next = self.attempt(&msg.run, step, carrier).await?;
            hops += 1;
        }
        Ok(())
    }

    /// Runs the step attempt `step` (beginning it first unless it was begun by the transition
    /// that handed it over); returns the attempt this job runs next, begun by the commit that
    /// handed it to `carrier`, if any.
    async fn attempt(
        self: &Arc<Self>,
        run: &str,
        step: Next,
        carrier: Option<&str>,
    ) -> Result<Option<Next>> {
        let (begin, st, stored) = match step {
            Next::Begun(begin, st, stored) => (begin, *st, stored),
            Next::Task(task, known) => {
                self.transact_from(run, None, known, |st, env| Ok(st.begin(env, &task)))
                    .await?
            }
        };
        let Begin::Run {
            step,
            input,
            token,
            attempt,
            generation,
        } = begin
        else {
            return Ok(None);
        };
        let wf = self.definition(&st.workflow, st.version)?;
        let Some(Kind::Code(handler, policy)) = wf.step(&step).cloned() else {
            return Ok(None);
        };
        let ctx = StepCtx {
            inner: self.clone(),
            run: run.to_owned(),
            workflow: st.workflow.clone(),
            step,
            generation,
            attempt,
            token: token.clone(),
            organization: st.organization.clone(),
        };
        // A panicking step is a retryable failure of that attempt, never a dead worker.
        let fut = AssertUnwindSafe(handler(input, ctx)).catch_unwind();
        let caught = match policy.timeout {
            // Dropping the future on timeout is the cancellation: the step stops at its next
            // await point.
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                Ok(Err(Failure {
                    message: format!("timed out after {} ms", t.as_millis()),
                    retryable: true,
                }))
            }),
            None => fut.await,
        };
        let result = caught.unwrap_or_else(|_| {
            Err(Failure {
                message: "the step panicked".to_owned(),
                retryable: true,
            })
        });
        match self
            .settle_from(run, &token, result, Some(stored), carrier)
            .await
        {
            Ok(Some((Some(begun), st, doc))) => Ok(Some(Next::Begun(begun, Box::new(st), doc))),
            Ok(_) => Ok(None),
            // A fenced attempt is done: retrying the job could not make it commit.
            Err(e) if e.is_fenced() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `settle_from` with a fresh read (the conformance suite's zombie commits).
    #[cfg(feature = "conformance")]
    pub(crate) async fn settle(
        &self,
        run: &str,
        token: &str,
        result: std::result::Result<Erased, Failure>,
    ) -> Result<()> {
        self.settle_from(run, token, result, None, None)
            .await
            .map(|_| ())
    }

    /// Commits an attempt's result under its token, starting from `known` (the document the
    /// attempt began on: still the stored one unless something happened to the run meanwhile).
    /// A fenced attempt (a zombie whose step was taken over, rewound or cancelled) is refused
    /// and changes nothing.
    ///
    /// With `carrier`, a next step due at once is handed to that job (`RunState::carry`) and
    /// begun in the same write; returns that begin with the run as stored by the commit.
    async fn settle_from(
        &self,
        run: &str,
        token: &str,
        result: std::result::Result<Erased, Failure>,
        known: Option<RunDoc>,
        carrier: Option<&str>,
    ) -> Result<Option<(Option<Begin>, RunState, RunDoc)>> {
        match self
            .transact_from(run, None, known, |st, env| {
                let before = st.task().map(|t| t.id.clone());
                st.settle(env, token, result.clone())?;
                Ok(carrier.and_then(|c| {
                    st.carry(env, before.as_deref(), c);
                    begin_carried(st, env, c)
                }))
            })
            .await
        {
            Ok((begun, st, doc)) => Ok(Some((begun, st, doc))),
            Err(e) if e.is_fenced() => {
                tracing::info!(run = %run, error = %e, "a superseded step attempt tried to commit; refused");
                Err(e)
            }
            Err(e) if e.is_limit() => {
                // The step's output would push the run past its state limit: the step fails,
                // with the limit as the reason, instead of the run growing past it.
                let message = e.to_string();
                self.transact(run, None, |st, env| {
                    st.settle(
                        env,
                        token,
                        Err(Failure {
                            message: message.clone(),
                            retryable: false,
                        }),
                    )
                })
                .await
                .map(|_| None)
            }
            Err(e) => Err(e),
        }
    }
}

/// What a step handler knows about its attempt, and its durable helpers.
#[derive(Clone)]
pub struct StepCtx {
    inner: Arc<Inner>,
    run: String,
    workflow: String,
    step: String,
    generation: u64,
    attempt: u32,
    token: String,
    organization: Option<String>,
}

impl fmt::Debug for StepCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepCtx")
            .field("run", &self.run)
            .field("workflow", &self.workflow)
            .field("step", &self.step)
            .field("generation", &self.generation)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl StepCtx {
    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run
    }
    /// The workflow id.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }
    /// This step's name.
    pub fn step(&self) -> &str {
        &self.step
    }
    /// The run's generation (bumped by every rewind).
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// This attempt's number, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The run's organization.
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }
    /// An idempotency key for side effects of this step: `<run>:<step>:<generation>`. Retries
    /// of the step share it; a rewind changes it, so a re-run after a rewind is a new operation
    /// downstream.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.run, self.step, self.generation)
    }

    /// Runs `fut` once per (run, step, generation, `key`): its `Ok` value is stored before this
    /// returns, and later attempts of the step (retries, a worker taking over) get the stored
    /// value without running `fut` again. An error is not stored (the next attempt runs `fut`
    /// again). The value counts against [`crate::Limits::max_step_output`].
    ///
    /// Errors: [`ErrorKind::Step`] wrapping `fut`'s error; [`ErrorKind::Fenced`] when this
    /// attempt was superseded (stop: nothing it does will commit); [`ErrorKind::Limit`] (not
    /// retried) for a value over the limit.
    pub async fn memo<T, E, Fut>(&self, key: &str, fut: Fut) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<BoxError>,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        if key.is_empty() || key.len() > MAX_MEMO_KEY {
            return Err(Error::invalid(format!(
                "a memo key must be 1..={MAX_MEMO_KEY} bytes"
            )));
        }
        let mk = RunState::memo_key(self.generation, &self.step, key);
        let doc = self
            .inner
            .store
            .load(&self.run)
            .await?
            .ok_or_else(|| Error::fenced("the run is gone"))?;
        let st = decode(&doc)?;
        if let Some(v) = st.memo.get(&mk) {
            return serde_json::from_value(v.clone()).map_err(Error::serialize);
        }
        if !st.holds(&self.token) {
            return Err(Error::fenced("this attempt no longer holds the step"));
        }
        let value = fut.await.map_err(|e| Error::new(ErrorKind::Step, e))?;
        let json = serde_json::to_value(&value).map_err(Error::serialize)?;
        let size = serde_json::to_string(&json).map_or(usize::MAX, |s| s.len());
        let max = self.inner.limits.max_step_output;
        if size > max {
            return Err(Error::new(
                ErrorKind::Limit,
                hookwire_core::NonRetryableError::new(format!(
                    "memo {key:?} is {size} bytes, the limit is {max}"
                )),
            ));
        }
        self.inner
            .transact(&self.run, None, |st, _| {
                if !st.holds(&self.token) {
                    return Err(Error::fenced("this attempt no longer holds the step"));
                }
                st.memo.insert(mk.clone(), json.clone());
                Ok(())
            })
            .await?;
        Ok(value)
    }
}
