//! A run's document and its state machine. Every transition is a pure function over the
//! document; the engine applies it with one compare-and-set write, so a transition is all or
//! nothing and user code is never replayed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::def::{Erased, Failure, Goto, Kind, Workflow};
use crate::error::{Error, Result};

/// Transitions kept per run for replay (`Engine::journal`); older ones are trimmed.
pub const JOURNAL_LEN: usize = 256;

/// The limits a run is held to. Each is enforced with [`crate::ErrorKind::Limit`] at the
/// operation or step that would exceed it.
///
/// ```
/// let l = hookwire_workflow::Limits::default().with_max_steps(50);
/// assert_eq!(l.max_steps, 50);
/// assert_eq!(l.max_step_output, 256 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest step output, signal payload or memoized value (JSON bytes). Default 256 KiB.
    pub max_step_output: usize,
    /// Largest stored run document (input, outputs, history, memo, queued signals, journal).
    /// Default 4 MiB.
    pub max_run_state: usize,
    /// Most step executions per run, counting retries of a step once and every re-run after a
    /// rewind or a loop. Default 1000.
    pub max_steps: u32,
    /// Most signals one run accepts in its life (their resume keys are kept for de-duplication).
    /// Default 1000.
    pub max_signals: u32,
    /// Most signals queued for a wait the run has not reached. Default 100.
    pub max_pending_signals: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_step_output: 256 * 1024,
            max_run_state: 4 * 1024 * 1024,
            max_steps: 1000,
            max_signals: 1000,
            max_pending_signals: 100,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_step_output`].
    #[must_use]
    pub fn with_max_step_output(mut self, n: usize) -> Self {
        self.max_step_output = n;
        self
    }
    /// Sets [`Limits::max_run_state`].
    #[must_use]
    pub fn with_max_run_state(mut self, n: usize) -> Self {
        self.max_run_state = n;
        self
    }
    /// Sets [`Limits::max_steps`].
    #[must_use]
    pub fn with_max_steps(mut self, n: u32) -> Self {
        self.max_steps = n;
        self
    }
    /// Sets [`Limits::max_signals`].
    #[must_use]
    pub fn with_max_signals(mut self, n: u32) -> Self {
        self.max_signals = n;
        self
    }
    /// Sets [`Limits::max_pending_signals`].
    #[must_use]
    pub fn with_max_pending_signals(mut self, n: u32) -> Self {
        self.max_pending_signals = n;
        self
    }
}

/// A run's status. `paused` is a separate flag on [`Run`]: a paused run keeps its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// A step is queued or running.
    Running,
    /// A durable timer holds the run (a sleep step, a retry backoff or `Next::sleep`).
    Sleeping,
    /// A wait step is parked until its signal (or timeout).
    Waiting,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl RunStatus {
    /// The lowercase name (`running`, `waiting`…).
    ///
    /// ```
    /// assert_eq!(hookwire_workflow::RunStatus::Waiting.as_str(), "waiting");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Sleeping => "sleeping",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
    /// The status named `s` (`None` for anything else).
    ///
    /// ```
    /// use hookwire_workflow::RunStatus;
    /// assert_eq!(RunStatus::parse("failed"), Some(RunStatus::Failed));
    /// assert_eq!(RunStatus::parse("nope"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Sleeping,
            Self::Waiting,
            Self::Completed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
    /// True for completed, failed and cancelled.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A step execution's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// Reached while the run was paused; nothing scheduled yet.
    Pending,
    /// Queued as a job (maybe delayed by a backoff or `Next::sleep`).
    Ready,
    /// An attempt is running.
    Running,
    /// A sleep step's timer is running.
    Sleeping,
    /// A wait step is parked.
    Waiting,
    /// Done, with an output.
    Completed,
    /// Failed for good (the run failed).
    Failed,
    /// Ended by a cancel.
    Cancelled,
}

/// One execution of one step, in execution order. Rewinds keep the executions they supersede.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step name.
    pub step: String,
    /// The run generation it ran in (bumped by every rewind).
    pub generation: u64,
    /// The status.
    pub status: StepStatus,
    /// The input it was given.
    pub input: Value,
    /// Its output, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Attempts started.
    pub attempts: u32,
    /// The last attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was reached, Unix ms.
    pub started_ms: u64,
    /// When it finished, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// True once a rewind replaced this execution (kept as history).
    #[serde(default)]
    pub superseded: bool,
}

/// A run as callers see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Run {
    /// The run id.
    pub id: String,
    /// The workflow id.
    pub workflow: String,
    /// The definition version the run pinned at start.
    pub version: u32,
    /// The owning organization, if the run was started in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The status.
    pub status: RunStatus,
    /// True while paused (no new step starts).
    pub paused: bool,
    /// Bumped by every rewind; part of every step's idempotency key.
    pub generation: u64,
    /// The sequence number of the last transition.
    pub sequence: u64,
    /// The step the run is at, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// The signal a waiting run waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// When the current timer (sleep, backoff, wait timeout) is due, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// The run's input.
    pub input: Value,
    /// The output, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Step executions in order, superseded ones included.
    pub steps: Vec<StepRecord>,
    /// Signals stored for a wait the run has not reached yet.
    pub pending_signals: usize,
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// Last transition time, Unix ms.
    pub updated_ms: u64,
}

/// What an operation did to a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Signalled {
    /// The run was waiting for it: the wait step completed with it.
    Resumed,
    /// Stored; the run consumes it when it reaches a wait for this name.
    Queued,
    /// A signal with this resume key was accepted before: nothing changed.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(crate) enum Phase {
    Pending,
    Ready,
    Running { token: String },
    Sleeping { until: u64 },
    Waiting { signal: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskKind {
    Run,
    Wake,
    Timeout,
}

/// The one job the run expects next; any other job for the run is stale and does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Task {
    pub(crate) id: String,
    pub(crate) kind: TaskKind,
    pub(crate) due: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub(crate) step: String,
    pub(crate) input: Value,
    pub(crate) not_before: u64,
    pub(crate) record: usize,
    pub(crate) phase: Phase,
    pub(crate) task: Option<Task>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Queued {
    pub(crate) name: String,
    pub(crate) payload: Value,
    pub(crate) key: String,
}

/// One journal entry: a transition with its per-run sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Transition {
    pub(crate) seq: u64,
    pub(crate) kind: String,
    pub(crate) generation: u64,
    pub(crate) at: u64,
    pub(crate) status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) step: Option<String>,
    #[serde(default)]
    pub(crate) data: Value,
}

/// The stored document of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub(crate) id: String,
    pub(crate) workflow: String,
    pub(crate) version: u32,
    #[serde(default)]
    pub(crate) organization: Option<String>,
    pub(crate) status: RunStatus,
    pub(crate) paused: bool,
    pub(crate) generation: u64,
    pub(crate) seq: u64,
    pub(crate) input: Value,
    #[serde(default)]
    pub(crate) output: Option<Value>,
    #[serde(default)]
    pub(crate) error: Option<String>,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
    pub(crate) steps: Vec<StepRecord>,
    #[serde(default)]
    pub(crate) cursor: Option<Cursor>,
    #[serde(default)]
    pub(crate) inbox: VecDeque<Queued>,
    #[serde(default)]
    pub(crate) keys: BTreeSet<String>,
    #[serde(default)]
    pub(crate) memo: BTreeMap<String, Value>,
    #[serde(default)]
    pub(crate) journal: VecDeque<Transition>,
    pub(crate) tasks_made: u64,
}

/// What a transition may consult: the clock, the limits and the run's definition.
pub(crate) struct Env<'a> {
    pub(crate) now: u64,
    pub(crate) limits: &'a Limits,
    pub(crate) wf: &'a Workflow,
}

/// What `begin` decided for a run task.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The task is stale, the run paused or failed: nothing to run.
    Skip,
    /// Run the step's handler under `token`.
    Run {
        step: String,
        input: Value,
        token: String,
        attempt: u32,
        generation: u64,
    },
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).map_or(usize::MAX, |s| s.len())
}

impl RunState {
    pub(crate) fn new(
        id: String,
        env: &Env<'_>,
        organization: Option<String>,
        input: Value,
    ) -> Self {
        Self {
            id,
            workflow: env.wf.id.clone(),
            version: env.wf.version,
            organization,
            status: RunStatus::Running,
            paused: false,
            generation: 0,
            seq: 0,
            input,
            output: None,
            error: None,
            created_ms: env.now,
            updated_ms: env.now,
            steps: Vec::new(),
            cursor: None,
            inbox: VecDeque::new(),
            keys: BTreeSet::new(),
            memo: BTreeMap::new(),
            journal: VecDeque::new(),
            tasks_made: 0,
        }
    }

    /// The public view.
    pub(crate) fn view(&self) -> Run {
        let c = self.cursor.as_ref();
        Run {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            version: self.version,
            organization: self.organization.clone(),
            status: self.status,
            paused: self.paused,
            generation: self.generation,
            sequence: self.seq,
            current_step: c.map(|c| c.step.clone()),
            waiting_for: c.and_then(|c| match &c.phase {
                Phase::Waiting { signal } => Some(signal.clone()),
                _ => None,
            }),
            due_ms: c.and_then(|c| c.task.as_ref()).map(|t| t.due),
            input: self.input.clone(),
            output: self.output.clone(),
            error: self.error.clone(),
            steps: self.steps.clone(),
            pending_signals: self.inbox.len(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        }
    }

    /// The task the run expects, if `id` is it.
    pub(crate) fn expects(&self, id: &str) -> Option<&Task> {
        self.cursor
            .as_ref()
            .and_then(|c| c.task.as_ref())
            .filter(|t| t.id == id)
    }

    pub(crate) fn task(&self) -> Option<&Task> {
        self.cursor.as_ref().and_then(|c| c.task.as_ref())
    }

    /// True while the attempt holding `token` is the run's current attempt.
    pub(crate) fn holds(&self, token: &str) -> bool {
        matches!(self.cursor.as_ref().map(|c| &c.phase), Some(Phase::Running { token: t }) if t == token)
    }

    pub(crate) fn memo_key(generation: u64, step: &str, key: &str) -> String {
        format!("{generation}/{step}/{key}")
    }

    fn emit(&mut self, env: &Env<'_>, kind: &str, step: Option<&str>, data: Value) {
        self.seq += 1;
        self.updated_ms = env.now;
        self.journal.push_back(Transition {
            seq: self.seq,
            kind: kind.to_owned(),
            generation: self.generation,
            at: env.now,
            status: self.status,
            step: step.map(str::to_owned),
            data,
        });
        while self.journal.len() > JOURNAL_LEN {
            self.journal.pop_front();
        }
    }

    fn new_task(&mut self, kind: TaskKind, due: u64) -> Task {
        self.tasks_made += 1;
        Task {
            id: format!("{}.t{}", self.id, self.tasks_made),
            kind,
            due,
        }
    }

    /// Sets the cursor's phase and task, and the run and step statuses that follow from them.
    fn set_phase(&mut self, env: &Env<'_>, phase: Phase, task: Option<Task>) {
        let Some(c) = self.cursor.as_mut() else {
            return;
        };
        let (run, step) = match &phase {
            Phase::Pending => (RunStatus::Running, StepStatus::Pending),
            Phase::Ready if task.as_ref().is_some_and(|t| t.due > env.now) => {
                (RunStatus::Sleeping, StepStatus::Ready)
            }
            Phase::Ready => (RunStatus::Running, StepStatus::Ready),
            Phase::Running { .. } => (RunStatus::Running, StepStatus::Running),
            Phase::Sleeping { .. } => (RunStatus::Sleeping, StepStatus::Sleeping),
            Phase::Waiting { .. } => (RunStatus::Waiting, StepStatus::Waiting),
        };
        c.phase = phase;
        c.task = task;
        let record = c.record;
        self.status = run;
        if let Some(r) = self.steps.get_mut(record) {
            r.status = step;
        }
    }

    /// Ends the current step execution with `status` (and `output`), clearing the cursor.
    fn close_step(
        &mut self,
        env: &Env<'_>,
        status: StepStatus,
        output: Option<Value>,
        error: Option<String>,
    ) -> Option<String> {
        let c = self.cursor.take()?;
        if let Some(r) = self.steps.get_mut(c.record) {
            r.status = status;
            r.output = output;
            if error.is_some() {
                r.error = error;
            }
            r.finished_ms = Some(env.now);
        }
        Some(c.step)
    }

    /// Starts the run at the definition's first step.
    pub(crate) fn start(&mut self, env: &Env<'_>) {
        self.emit(env, "started", None, json!({ "input": self.input }));
        let first = env.wf.first().to_owned();
        let input = self.input.clone();
        self.enter(env, first, input, 0);
    }

    /// The error of a run whose definition (a newer version) no longer has `step`.
    fn missing(&self, env: &Env<'_>, step: &str) -> String {
        format!(
            "step {step:?} is not in version {} of workflow {:?} (the run started on version {})",
            env.wf.version, env.wf.id, self.version
        )
    }

    fn fail_run(&mut self, env: &Env<'_>, step: Option<&str>, message: String) {
        if let Some(c) = &self.cursor {
            let failed = c.step.clone();
            self.close_step(env, StepStatus::Failed, None, Some(message.clone()));
            self.status = RunStatus::Failed;
            self.error = Some(message.clone());
            self.emit(env, "failed", Some(&failed), json!({ "error": message }));
            return;
        }
        self.status = RunStatus::Failed;
        self.error = Some(message.clone());
        self.emit(env, "failed", step, json!({ "error": message }));
    }

    fn complete_run(&mut self, env: &Env<'_>, output: Value) {
        self.cursor = None;
        self.status = RunStatus::Completed;
        self.output = Some(output);
        self.emit(env, "completed", None, Value::Null);
    }

    /// Moves the run to `step` with `input`; a wait that finds its signal already stored
    /// completes at once and the run moves on, in the same transition.
    fn enter(&mut self, env: &Env<'_>, step: String, input: Value, not_before: u64) {
        let (mut step, mut input, mut not_before) = (step, input, not_before);
        loop {
            if self.steps.len() >= env.limits.max_steps as usize {
                self.fail_run(
                    env,
                    Some(&step),
                    format!(
                        "limit: the run executed {} steps, the limit is {}",
                        self.steps.len(),
                        env.limits.max_steps
                    ),
                );
                return;
            }
            if env.wf.step(&step).is_none() {
                let m = self.missing(env, &step);
                self.fail_run(env, Some(&step), m);
                return;
            }
            self.steps.push(StepRecord {
                step: step.clone(),
                generation: self.generation,
                status: StepStatus::Pending,
                input: input.clone(),
                output: None,
                attempts: 0,
                error: None,
                started_ms: env.now,
                finished_ms: None,
                superseded: false,
            });
            self.cursor = Some(Cursor {
                step: step.clone(),
                input: input.clone(),
                not_before,
                record: self.steps.len() - 1,
                phase: Phase::Pending,
                task: None,
            });
            let Some(out) = self.schedule(env) else {
                return;
            };
            match env.wf.after(&step) {
                None => {
                    self.complete_run(env, out);
                    return;
                }
                Some(next) => {
                    step = next.to_owned();
                    input = out;
                    not_before = 0;
                }
            }
        }
    }

    /// Schedules the current (pending) step unless the run is paused. Returns the output when a
    /// wait step consumed a stored signal and so completed at once.
    fn schedule(&mut self, env: &Env<'_>) -> Option<Value> {
        let c = self.cursor.as_ref()?;
        let (step, not_before) = (c.step.clone(), c.not_before);
        if self.paused {
            self.set_phase(env, Phase::Pending, None);
            return None;
        }
        let start = not_before.max(env.now);
        let Some(kind) = env.wf.step(&step) else {
            let m = self.missing(env, &step);
            self.fail_run(env, Some(&step), m);
            return None;
        };
        match kind {
            Kind::Code(..) => {
                let t = self.new_task(TaskKind::Run, start);
                self.set_phase(env, Phase::Ready, Some(t));
                None
            }
            Kind::Sleep(d) => {
                let until = start.saturating_add(ms(*d));
                let t = self.new_task(TaskKind::Wake, until);
                self.set_phase(env, Phase::Sleeping { until }, Some(t));
                self.emit(env, "sleeping", Some(&step), json!({ "until": until }));
                None
            }
            Kind::Wait(w) => {
                let signal = w.signal.clone();
                if let Some(pos) = self.inbox.iter().position(|q| q.name == signal) {
                    let q = self.inbox.remove(pos)?;
                    let out = json!({ "signal": q.payload });
                    self.status = RunStatus::Running;
                    self.close_step(env, StepStatus::Completed, Some(out.clone()), None);
                    self.emit(
                        env,
                        "resumed",
                        Some(&step),
                        json!({ "signal": signal, "key": q.key, "queued": true }),
                    );
                    self.emit(env, "step_completed", Some(&step), Value::Null);
                    return Some(out);
                }
                let t = w
                    .timeout
                    .map(|d| self.new_task(TaskKind::Timeout, start.saturating_add(ms(d))));
                let due = t.as_ref().map(|t| t.due);
                self.set_phase(
                    env,
                    Phase::Waiting {
                        signal: signal.clone(),
                    },
                    t,
                );
                self.emit(
                    env,
                    "waiting",
                    Some(&step),
                    json!({ "signal": signal, "timeout_at": due }),
                );
                None
            }
        }
    }

    /// After the current step completed with `output`: the next step, a branch or the end.
    fn advance(&mut self, env: &Env<'_>, from: &str, output: Value, goto: Goto, not_before: u64) {
        match goto {
            Goto::Complete => self.complete_run(env, output),
            Goto::Step(s) => self.enter(env, s, output, not_before),
            Goto::Next if env.wf.step(from).is_none() => {
                // Without the step, "the next one" has no meaning in this version.
                let m = self.missing(env, from);
                self.fail_run(env, Some(from), m);
            }
            Goto::Next => match env.wf.after(from) {
                None => self.complete_run(env, output),
                Some(next) => {
                    let next = next.to_owned();
                    self.enter(env, next, output, not_before);
                }
            },
        }
    }

    fn policy(env: &Env<'_>, step: &str) -> (u32, Option<hookwire_core::Backoff>) {
        match env.wf.step(step) {
            Some(Kind::Code(_, p)) => (p.retries, Some(p.backoff.clone())),
            _ => (0, None),
        }
    }

    /// A run task's job starts: takes the step under a fresh fencing token. A task whose job was
    /// re-delivered after its worker died takes over the running attempt (counted as one).
    pub(crate) fn begin(&mut self, env: &Env<'_>, task: &str) -> Begin {
        if self.expects(task).is_none() || self.status.is_terminal() {
            return Begin::Skip;
        }
        if self.paused {
            self.set_phase(env, Phase::Pending, None);
            return Begin::Skip;
        }
        let Some(c) = self.cursor.as_ref() else {
            return Begin::Skip;
        };
        let lost = match c.phase {
            Phase::Ready => false,
            Phase::Running { .. } => true,
            _ => return Begin::Skip,
        };
        let (step, input, record, task) =
            (c.step.clone(), c.input.clone(), c.record, c.task.clone());
        if !matches!(env.wf.step(&step), Some(Kind::Code(..))) {
            let m = self.missing(env, &step);
            self.fail_run(env, Some(&step), m);
            return Begin::Skip;
        }
        let (retries, _) = Self::policy(env, &step);
        let attempt = match self.steps.get_mut(record) {
            Some(r) => {
                r.attempts += 1;
                if lost {
                    r.error = Some("the worker running the previous attempt was lost".to_owned());
                }
                r.attempts
            }
            None => return Begin::Skip,
        };
        if lost && attempt > retries.saturating_add(1) {
            self.fail_run(
                env,
                Some(&step),
                format!(
                    "step {step:?}: attempt {} lost its worker and no retries are left",
                    attempt - 1
                ),
            );
            return Begin::Skip;
        }
        let token = hookwire_core::id::new_id("att");
        self.set_phase(
            env,
            Phase::Running {
                token: token.clone(),
            },
            task,
        );
        self.emit(
            env,
            "step_started",
            Some(&step),
            json!({ "attempt": attempt }),
        );
        Begin::Run {
            step,
            input,
            token,
            attempt,
            generation: self.generation,
        }
    }

    /// Records an attempt's result, if `token` still holds the step.
    pub(crate) fn settle(
        &mut self,
        env: &Env<'_>,
        token: &str,
        result: std::result::Result<Erased, Failure>,
    ) -> Result<()> {
        if !self.holds(token) || self.status.is_terminal() {
            return Err(Error::fenced(
                "the attempt no longer holds the step (superseded, rewound or cancelled)",
            ));
        }
        let Some(c) = self.cursor.as_ref() else {
            return Err(Error::fenced("the run has no current step"));
        };
        let (step, record) = (c.step.clone(), c.record);
        match result {
            Ok(done) => {
                let size = json_len(&done.output);
                if size > env.limits.max_step_output {
                    self.fail_run(
                        env,
                        Some(&step),
                        format!(
                            "limit: step {step:?} output is {size} bytes, the limit is {}",
                            env.limits.max_step_output
                        ),
                    );
                    return Ok(());
                }
                self.close_step(env, StepStatus::Completed, Some(done.output.clone()), None);
                self.status = RunStatus::Running;
                self.emit(env, "step_completed", Some(&step), Value::Null);
                let not_before = done.sleep.map_or(0, |d| env.now.saturating_add(ms(d)));
                self.advance(env, &step, done.output, done.goto, not_before);
            }
            Err(f) => {
                let (retries, backoff) = Self::policy(env, &step);
                let attempts = self.steps.get(record).map_or(u32::MAX, |r| r.attempts);
                if f.retryable && attempts <= retries {
                    if let Some(r) = self.steps.get_mut(record) {
                        r.error = Some(f.message.clone());
                    }
                    let delay = backoff.map_or(0, |b| ms(b.delay(attempts.saturating_sub(1))));
                    if let Some(c) = self.cursor.as_mut() {
                        c.not_before = env.now.saturating_add(delay);
                    }
                    self.set_phase(env, Phase::Pending, None);
                    self.emit(
                        env,
                        "step_failed",
                        Some(&step),
                        json!({ "error": f.message, "attempt": attempts, "retry_in_ms": delay }),
                    );
                    // A paused run keeps the step pending; otherwise the retry is a delayed job.
                    let _ = self.schedule(env);
                } else {
                    self.fail_run(env, Some(&step), format!("step {step:?}: {}", f.message));
                }
            }
        }
        Ok(())
    }

    /// Completes the parked step (sleep or wait) with `out` and moves on.
    fn resume(&mut self, env: &Env<'_>, step: &str, out: Value, detail: Value) {
        self.status = RunStatus::Running;
        self.close_step(env, StepStatus::Completed, Some(out.clone()), None);
        self.emit(env, "resumed", Some(step), detail);
        self.emit(env, "step_completed", Some(step), Value::Null);
        self.advance(env, step, out, Goto::Next, 0);
    }

    /// A sleep step's timer fired.
    pub(crate) fn wake(&mut self, env: &Env<'_>, task: &str) {
        let Some(c) = self.cursor.as_ref() else {
            return;
        };
        if self.expects(task).is_none() || !matches!(c.phase, Phase::Sleeping { .. }) {
            return;
        }
        let (step, out) = (c.step.clone(), c.input.clone());
        self.resume(env, &step, out, json!({ "timer": true }));
    }

    /// A wait step's timeout fired.
    pub(crate) fn time_out(&mut self, env: &Env<'_>, task: &str) {
        let Some(c) = self.cursor.as_ref() else {
            return;
        };
        if self.expects(task).is_none() || !matches!(c.phase, Phase::Waiting { .. }) {
            return;
        }
        let step = c.step.clone();
        self.resume(env, &step, json!("timeout"), json!({ "timeout": true }));
    }

    /// Stores a signal, or completes the wait that is parked on it. The same key twice is a
    /// no-op.
    pub(crate) fn signal(
        &mut self,
        env: &Env<'_>,
        name: &str,
        payload: Value,
        key: String,
    ) -> Result<Signalled> {
        if self.status.is_terminal() {
            return Err(Error::conflict(format!(
                "run {} is {}",
                self.id,
                self.status.as_str()
            )));
        }
        if self.keys.contains(&key) {
            return Ok(Signalled::Duplicate);
        }
        if self.keys.len() >= env.limits.max_signals as usize {
            return Err(Error::limit(format!(
                "run {} accepted {} signals, the limit is {}",
                self.id,
                self.keys.len(),
                env.limits.max_signals
            )));
        }
        let size = json_len(&payload);
        if size > env.limits.max_step_output {
            return Err(Error::limit(format!(
                "signal payload is {size} bytes, the limit is {}",
                env.limits.max_step_output
            )));
        }
        let parked = self.cursor.as_ref().and_then(|c| match &c.phase {
            Phase::Waiting { signal } if signal == name => Some(c.step.clone()),
            _ => None,
        });
        if let Some(step) = parked {
            self.keys.insert(key.clone());
            let detail = json!({ "signal": name, "key": key, "queued": false });
            self.resume(env, &step, json!({ "signal": payload }), detail);
            return Ok(Signalled::Resumed);
        }
        if self.inbox.len() >= env.limits.max_pending_signals as usize {
            return Err(Error::limit(format!(
                "run {} has {} signals queued, the limit is {}",
                self.id,
                self.inbox.len(),
                env.limits.max_pending_signals
            )));
        }
        self.keys.insert(key.clone());
        self.inbox.push_back(Queued {
            name: name.to_owned(),
            payload,
            key,
        });
        self.updated_ms = env.now;
        Ok(Signalled::Queued)
    }

    /// Cancels a run that has not finished; waits and timers of the run can no longer fire.
    pub(crate) fn cancel(&mut self, env: &Env<'_>) -> Result<()> {
        match self.status {
            RunStatus::Cancelled => return Ok(()),
            RunStatus::Completed | RunStatus::Failed => {
                return Err(Error::conflict(format!(
                    "run {} is already {}",
                    self.id,
                    self.status.as_str()
                )));
            }
            _ => {}
        }
        let step = self.close_step(env, StepStatus::Cancelled, None, None);
        self.status = RunStatus::Cancelled;
        self.emit(env, "cancelled", step.as_deref(), Value::Null);
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if self.status.is_terminal() {
            return Err(Error::conflict(format!(
                "run {} is {}",
                self.id,
                self.status.as_str()
            )));
        }
        Ok(())
    }

    /// Pauses: the running attempt (if any) finishes, but no new step starts.
    pub(crate) fn pause(&mut self, env: &Env<'_>) -> Result<()> {
        self.check_open()?;
        if !self.paused {
            self.paused = true;
            let step = self.cursor.as_ref().map(|c| c.step.clone());
            self.emit(env, "paused", step.as_deref(), Value::Null);
        }
        Ok(())
    }

    /// Unpauses and schedules the step the run stopped at.
    pub(crate) fn unpause(&mut self, env: &Env<'_>) -> Result<()> {
        self.check_open()?;
        if !self.paused {
            return Ok(());
        }
        self.paused = false;
        let step = self.cursor.as_ref().map(|c| c.step.clone());
        self.emit(env, "unpaused", step.as_deref(), Value::Null);
        let pending = self
            .cursor
            .as_ref()
            .is_some_and(|c| c.phase == Phase::Pending);
        if pending && let Some(out) = self.schedule(env) {
            let from = step.unwrap_or_default();
            self.advance(env, &from, out, Goto::Next, 0);
        }
        Ok(())
    }

    /// Rewinds to the latest execution of `step`: a new generation, later executions kept as
    /// superseded history, and the run continues from `step` by itself.
    pub(crate) fn rewind(&mut self, env: &Env<'_>, step: &str, input: Option<Value>) -> Result<()> {
        if self.status == RunStatus::Cancelled {
            return Err(Error::conflict(format!("run {} is cancelled", self.id)));
        }
        if matches!(
            self.cursor.as_ref().map(|c| &c.phase),
            Some(Phase::Running { .. })
        ) {
            return Err(Error::conflict(
                "a step is running; retry when it finished (or pause the run first)",
            ));
        }
        if env.wf.step(step).is_none() {
            return Err(Error::new(
                crate::ErrorKind::UnknownStep,
                format!("workflow {:?} has no step {step:?}", env.wf.id),
            ));
        }
        let Some(at) = self
            .steps
            .iter()
            .rposition(|r| r.step == step && !r.superseded)
        else {
            return Err(Error::new(
                crate::ErrorKind::UnknownStep,
                format!("run {} never reached step {step:?}", self.id),
            ));
        };
        if let Some(v) = &input {
            let size = json_len(v);
            if size > env.limits.max_step_output {
                return Err(Error::limit(format!(
                    "rewind input is {size} bytes, the limit is {}",
                    env.limits.max_step_output
                )));
            }
        }
        // ok: `at` came from `rposition` over `steps`.
        let input = input.unwrap_or_else(|| self.steps[at].input.clone());
        self.close_step(env, StepStatus::Cancelled, None, None);
        for r in &mut self.steps[at..] {
            r.superseded = true;
        }
        self.generation += 1;
        // Memoized results belong to their generation: the new one runs its side effects anew.
        self.memo.clear();
        self.status = RunStatus::Running;
        self.output = None;
        self.error = None;
        self.emit(
            env,
            "rewound",
            Some(step),
            json!({ "generation": self.generation }),
        );
        self.enter(env, step.to_owned(), input, 0);
        Ok(())
    }
}
