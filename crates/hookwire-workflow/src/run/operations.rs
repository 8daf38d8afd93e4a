//! The operations callers apply to a run: signals, cancel, pause and unpause, rewind.

use serde_json::{Value, json};

use super::state::{Env, Phase, Queued, RunState, json_len};
use super::{RunStatus, Signalled, StepStatus};
use crate::def::Goto;
use crate::error::{Error, Result};

impl RunState {
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
