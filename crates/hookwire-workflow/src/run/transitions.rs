//! The step lifecycle: entering a step, scheduling it, starting and settling attempts, retries,
//! and the timers of sleep and wait steps.

use serde_json::{Value, json};

use super::state::{Begin, Cursor, Env, Phase, RunState, TaskKind, json_len, ms};
use super::{RunStatus, StepRecord, StepStatus};
use crate::def::{Erased, Failure, Goto, Kind};
use crate::error::{Error, Result};

impl RunState {
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
    pub(super) fn enter(&mut self, env: &Env<'_>, step: String, input: Value, not_before: u64) {
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
    pub(super) fn schedule(&mut self, env: &Env<'_>) -> Option<Value> {
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
    pub(super) fn advance(
        &mut self,
        env: &Env<'_>,
        from: &str,
        output: Value,
        goto: Goto,
        not_before: u64,
    ) {
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
    pub(super) fn resume(&mut self, env: &Env<'_>, step: &str, out: Value, detail: Value) {
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
}
