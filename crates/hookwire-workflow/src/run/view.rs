//! What callers see of a run: its status, its step executions and what a signal did.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
