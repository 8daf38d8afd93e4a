//! The stored document of one run (cursor, queued signals, journal) and the bookkeeping every
//! transition shares: emitting a journal entry, minting tasks, setting the phase, closing a step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Limits, Run, RunStatus, StepRecord, StepStatus};
use crate::def::Workflow;

/// Transitions kept per run for replay (`Engine::journal`); older ones are trimmed.
pub const JOURNAL_LEN: usize = 256;

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
    /// The task whose job runs this one right after it (a step due at once, entered by the
    /// step that job ran), instead of a job of its own. If that job dies, the job layer
    /// delivers it again and it carries on from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) carrier: Option<String>,
}

impl Task {
    /// The id of the job that runs this task.
    pub(crate) fn job_id(&self) -> &str {
        self.carrier.as_deref().unwrap_or(&self.id)
    }
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
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub(crate) data: Value,
}

/// The stored document of one run. Empty collections and absent values are left out (every
/// such field reads back as its default), which keeps a parked run's document small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub(crate) id: String,
    pub(crate) workflow: String,
    pub(crate) version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) organization: Option<String>,
    pub(crate) status: RunStatus,
    pub(crate) paused: bool,
    pub(crate) generation: u64,
    pub(crate) seq: u64,
    pub(crate) input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
    pub(crate) steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cursor: Option<Cursor>,
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub(crate) inbox: VecDeque<Queued>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) keys: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn json_len(v: &Value) -> usize {
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

    pub(super) fn emit(&mut self, env: &Env<'_>, kind: &str, step: Option<&str>, data: Value) {
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

    pub(super) fn new_task(&mut self, kind: TaskKind, due: u64) -> Task {
        self.tasks_made += 1;
        Task {
            id: format!("{}.t{}", self.id, self.tasks_made),
            kind,
            due,
            carrier: None,
        }
    }

    /// The task the job `job` runs: the task with that id, or the one that job carries.
    pub(crate) fn task_of_job(&self, job: &str) -> Option<&Task> {
        self.task().filter(|t| t.job_id() == job)
    }

    /// Hands the run's task to the job `job` when the transition just made it a step attempt
    /// due now (not the task `before`), so that job runs it next without queueing a job.
    pub(crate) fn carry(&mut self, env: &Env<'_>, before: Option<&str>, job: &str) {
        let Some(c) = self.cursor.as_mut() else {
            return;
        };
        if !matches!(c.phase, Phase::Ready) {
            return;
        }
        if let Some(t) = c.task.as_mut()
            && t.kind == TaskKind::Run
            && t.due <= env.now
            && Some(t.id.as_str()) != before
        {
            t.carrier = Some(job.to_owned());
        }
    }

    /// Sets the cursor's phase and task, and the run and step statuses that follow from them.
    pub(super) fn set_phase(&mut self, env: &Env<'_>, phase: Phase, task: Option<Task>) {
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
    pub(super) fn close_step(
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
}
