//! Workflow definitions: an id, a version and named steps (code, sleep, wait), built once and
//! shared by every run.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookwire_core::{Backoff, BoxFuture, Jitter};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{BoxError, Error, Result};
use crate::exec::StepCtx;

/// Longest workflow id, in bytes.
pub const MAX_WORKFLOW_ID: usize = 64;
/// Longest step or signal name, in bytes.
pub const MAX_NAME: usize = 64;
/// Most steps one definition may declare.
pub const MAX_DEFINED_STEPS: usize = 1000;

/// Checks a workflow id: 1..=64 bytes of `A-Z a-z 0-9 _ -` (no dots, so `workflow.<id>.<transition>`
/// stays three segments for pattern matching, and no braces, so Redis hash tags cannot break).
///
/// ```
/// assert!(hookwire_workflow::validate_workflow_id("order-fulfilment").is_ok());
/// assert!(hookwire_workflow::validate_workflow_id("a.b").is_err());
/// ```
pub fn validate_workflow_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_WORKFLOW_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(Error::invalid(format!(
            "workflow id {:?} must be 1..={MAX_WORKFLOW_ID} bytes of A-Z a-z 0-9 _ -",
            truncate(id)
        )));
    }
    Ok(())
}

/// Checks a step or signal name: 1..=64 bytes of `A-Z a-z 0-9 . _ -`.
///
/// ```
/// assert!(hookwire_workflow::validate_name("charge-card").is_ok());
/// assert!(hookwire_workflow::validate_name("").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid(format!(
            "name {:?} must be 1..={MAX_NAME} bytes of A-Z a-z 0-9 . _ -",
            truncate(name)
        )));
    }
    Ok(())
}

/// At most 80 chars of hostile input go into an error text.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Where the run goes after a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Goto {
    /// The next step in definition order (the run completes after the last one).
    Next,
    /// A named step.
    Step(String),
    /// The run completes with this output.
    Complete,
}

/// What a code step returns: its output, and where the run goes next.
///
/// ```
/// use std::time::Duration;
/// use hookwire_workflow::Next;
/// let _n: Next<u32> = Next::output(7);                          // the next step in order
/// let _b: Next<u32> = Next::output(7).goto("refund");            // branch
/// let _s: Next<u32> = Next::output(7).sleep(Duration::from_secs(60)); // durable timer first
/// let _c: Next<u32> = Next::complete(7);                         // finish the run now
/// ```
#[derive(Debug, Clone)]
pub struct Next<O> {
    output: O,
    goto: Goto,
    sleep: Option<Duration>,
}

impl<O> Next<O> {
    /// The step's output; the run continues with the next step in definition order, or completes
    /// with this output after the last step.
    pub fn output(output: O) -> Self {
        Self {
            output,
            goto: Goto::Next,
            sleep: None,
        }
    }
    /// The run completes now, with `output` as its output.
    pub fn complete(output: O) -> Self {
        Self {
            output,
            goto: Goto::Complete,
            sleep: None,
        }
    }
    /// Continues with the step named `step` (of the run's definition) instead of the next one.
    #[must_use]
    pub fn goto(mut self, step: impl Into<String>) -> Self {
        self.goto = Goto::Step(step.into());
        self
    }
    /// The next step starts no earlier than now + `d` (a durable timer: it survives restarts and
    /// never fires early).
    #[must_use]
    pub fn sleep(mut self, d: Duration) -> Self {
        self.sleep = Some(d);
        self
    }
}

/// How a wait step was resumed: the output of a wait step, and so the input of the step after it.
///
/// ```
/// use hookwire_workflow::Resumed;
/// let r: Resumed<u32> = serde_json::from_str(r#"{"signal":5}"#).unwrap();
/// assert_eq!(r, Resumed::Signal(5));
/// let t: Resumed<u32> = serde_json::from_str(r#""timeout""#).unwrap();
/// assert_eq!(t, Resumed::Timeout);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resumed<T> {
    /// The signal arrived; its payload.
    Signal(T),
    /// The wait's timeout passed first.
    Timeout,
}

/// A wait step's configuration: the signal it waits for and an optional timeout.
///
/// ```
/// use std::time::Duration;
/// let w = hookwire_workflow::Wait::signal("approval").timeout(Duration::from_secs(3600));
/// assert_eq!(w.name(), "approval");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub(crate) signal: String,
    pub(crate) timeout: Option<Duration>,
}

impl Wait {
    /// Waits for the signal named `name` (sent with [`crate::Engine::signal`]).
    pub fn signal(name: impl Into<String>) -> Self {
        Self {
            signal: name.into(),
            timeout: None,
        }
    }
    /// Resumes with [`Resumed::Timeout`] when no signal came within `d`.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// The signal name.
    pub fn name(&self) -> &str {
        &self.signal
    }
}

/// A step attempt's failure after type erasure.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) retryable: bool,
}

/// A code step's result after type erasure.
#[derive(Debug, Clone)]
pub(crate) struct Erased {
    pub(crate) output: Value,
    pub(crate) goto: Goto,
    pub(crate) sleep: Option<Duration>,
}

pub(crate) type Handler =
    Arc<dyn Fn(Value, StepCtx) -> BoxFuture<'static, Result<Erased, Failure>> + Send + Sync>;

/// A step's retry policy and time limit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub(crate) retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) timeout: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff: Backoff::exponential(Duration::from_secs(1))
                .with_max(Duration::from_secs(60))
                .with_jitter(Jitter::Proportional(0.2)),
            timeout: None,
        }
    }
}

#[derive(Clone)]
pub(crate) enum Kind {
    Code(Handler, Policy),
    Sleep(Duration),
    Wait(Wait),
}

/// A code step: a name, a typed handler and its retry policy.
///
/// ```
/// use std::time::Duration;
/// use hookwire_core::Backoff;
/// use hookwire_workflow::{BoxError, Next, Step, StepCtx};
///
/// let step = Step::new("charge", |amount: u64, _ctx: StepCtx| async move {
///     Ok::<_, BoxError>(Next::output(format!("charged {amount}")))
/// })
/// .retries(3)
/// .backoff(Backoff::exponential(Duration::from_millis(200)))
/// .timeout(Duration::from_secs(10));
/// assert_eq!(step.name(), "charge");
/// ```
pub struct Step {
    name: String,
    kind: Kind,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("kind", &kind_name(&self.kind))
            .finish()
    }
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Code(..) => "code",
        Kind::Sleep(_) => "sleep",
        Kind::Wait(_) => "wait",
    }
}

fn erase<I, O, E, F, Fut>(handler: F) -> Handler
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    E: Into<BoxError> + Send + 'static,
    F: Fn(I, StepCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Next<O>, E>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |input: Value, ctx: StepCtx| {
        let handler = handler.clone();
        Box::pin(async move {
            // An input of the wrong shape can never succeed: fail without retrying.
            let input: I = serde_json::from_value(input).map_err(|e| Failure {
                message: format!("input does not match the step's type: {e}"),
                retryable: false,
            })?;
            match handler(input, ctx).await {
                Ok(next) => {
                    let output = serde_json::to_value(&next.output).map_err(|e| Failure {
                        message: format!("output does not serialize: {e}"),
                        retryable: false,
                    })?;
                    Ok(Erased {
                        output,
                        goto: next.goto,
                        sleep: next.sleep,
                    })
                }
                Err(e) => {
                    let e: BoxError = e.into();
                    Err(Failure {
                        retryable: hookwire_core::error::is_retryable(&*e),
                        message: e.to_string(),
                    })
                }
            }
        }) as BoxFuture<'static, _>
    })
}

impl Step {
    /// A code step named `name` run by `handler(input, ctx)`. The input is the previous step's
    /// output (the run's input for the first step). An error wrapping
    /// [`hookwire_core::NonRetryableError`] fails the run at once; other errors are retried by
    /// the step's policy (2 retries, exponential backoff from 1 s, by default).
    pub fn new<I, O, E, F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        E: Into<BoxError> + Send + 'static,
        F: Fn(I, StepCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Next<O>, E>> + Send + 'static,
    {
        Self {
            name: name.into(),
            kind: Kind::Code(erase(handler), Policy::default()),
        }
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    fn policy(mut self, f: impl FnOnce(&mut Policy)) -> Self {
        if let Kind::Code(_, p) = &mut self.kind {
            f(p);
        }
        self
    }
    /// Retries after the first attempt (`retries(3)` = at most 4 attempts); then the run fails.
    #[must_use]
    pub fn retries(self, n: u32) -> Self {
        self.policy(|p| p.retries = n)
    }
    /// Delay before each retry (each retry is a delayed job, so it survives restarts).
    #[must_use]
    pub fn backoff(self, b: Backoff) -> Self {
        self.policy(|p| p.backoff = b)
    }
    /// Per-attempt time limit: the handler's future is dropped and the attempt fails as a
    /// retryable timeout.
    #[must_use]
    pub fn timeout(self, d: Duration) -> Self {
        self.policy(|p| p.timeout = Some(d))
    }
}

/// Public description of a workflow, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkflowInfo {
    /// The id.
    pub id: String,
    /// A display name (the id when none was given).
    pub name: String,
    /// The definition version.
    pub version: u32,
    /// Step names in definition order.
    pub steps: Vec<String>,
}

/// A workflow definition: an id, a version and named steps, run in order unless a step branches.
/// Build it with [`Workflow::builder`].
pub struct Workflow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) steps: Vec<(String, Kind)>,
    pub(crate) index: HashMap<String, usize>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("id", &self.id)
            .field("version", &self.version)
            .field(
                "steps",
                &self
                    .steps
                    .iter()
                    .map(|(n, k)| format!("{n}:{}", kind_name(k)))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Workflow {
    /// A builder for version `version` of the workflow `id`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookwire_workflow::{BoxError, Next, Step, Wait, Workflow};
    ///
    /// let wf = Workflow::builder("expense", 1)
    ///     .name("Expense approval")
    ///     .step(Step::new("submit", |amount: u64, _| async move { Ok::<_, BoxError>(Next::output(amount)) }))
    ///     .wait("approve", Wait::signal("approval").timeout(Duration::from_secs(86_400)))
    ///     .sleep("cool-off", Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(wf.info().steps, ["submit", "approve", "cool-off"]);
    /// ```
    pub fn builder(id: impl Into<String>, version: u32) -> WorkflowBuilder {
        WorkflowBuilder {
            id: id.into(),
            name: None,
            version,
            steps: Vec::new(),
        }
    }
    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// Id, name, version and step names.
    pub fn info(&self) -> WorkflowInfo {
        WorkflowInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            version: self.version,
            steps: self.steps.iter().map(|(n, _)| n.clone()).collect(),
        }
    }
    pub(crate) fn step(&self, name: &str) -> Option<&Kind> {
        // ok: `index` is built from `steps` and neither changes after `build()`.
        self.index.get(name).map(|&i| &self.steps[i].1)
    }
    pub(crate) fn first(&self) -> &str {
        // ok: `build()` refuses a workflow without steps.
        &self.steps[0].0
    }
    /// The step after `name` in definition order (`None` after the last one).
    pub(crate) fn after(&self, name: &str) -> Option<&str> {
        let i = *self.index.get(name)?;
        self.steps.get(i + 1).map(|(n, _)| n.as_str())
    }
}

/// Builds a [`Workflow`]; every rule is checked by [`WorkflowBuilder::build`].
pub struct WorkflowBuilder {
    id: String,
    name: Option<String>,
    version: u32,
    steps: Vec<(String, Kind)>,
}

impl fmt::Debug for WorkflowBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowBuilder")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("steps", &self.steps.len())
            .finish_non_exhaustive()
    }
}

impl WorkflowBuilder {
    /// A display name for listings.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Appends a code step.
    #[must_use]
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push((step.name, step.kind));
        self
    }
    /// Appends a durable sleep: the step's input passes through as its output after `d`.
    #[must_use]
    pub fn sleep(mut self, name: impl Into<String>, d: Duration) -> Self {
        self.steps.push((name.into(), Kind::Sleep(d)));
        self
    }
    /// Appends a wait for a signal; the step's output is a [`Resumed`] with the signal's payload
    /// (or the timeout). A signal sent before the run reaches the wait is kept and consumed here.
    #[must_use]
    pub fn wait(mut self, name: impl Into<String>, wait: Wait) -> Self {
        self.steps.push((name.into(), Kind::Wait(wait)));
        self
    }
    /// Checks the id, the names (unique, valid), the step count and the wait signals.
    pub fn build(self) -> Result<Workflow> {
        validate_workflow_id(&self.id).map_err(|e| Error::config(e.to_string()))?;
        if self.steps.is_empty() {
            return Err(Error::config(format!(
                "workflow {:?} has no steps",
                self.id
            )));
        }
        if self.steps.len() > MAX_DEFINED_STEPS {
            return Err(Error::config(format!(
                "workflow {:?} has {} steps, the limit is {MAX_DEFINED_STEPS}",
                self.id,
                self.steps.len()
            )));
        }
        let mut index = HashMap::new();
        for (i, (name, kind)) in self.steps.iter().enumerate() {
            validate_name(name).map_err(|e| Error::config(e.to_string()))?;
            if let Kind::Wait(w) = kind {
                validate_name(&w.signal).map_err(|e| Error::config(e.to_string()))?;
            }
            if index.insert(name.clone(), i).is_some() {
                return Err(Error::config(format!(
                    "step {name:?} appears twice in workflow {:?}",
                    self.id
                )));
            }
        }
        Ok(Workflow {
            name: self.name.unwrap_or_else(|| self.id.clone()),
            id: self.id,
            version: self.version,
            steps: self.steps,
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(name: &str) -> Step {
        Step::new(name, |v: Value, _| async move {
            Ok::<_, BoxError>(Next::output(v))
        })
    }

    #[test]
    fn build_refuses_duplicate_steps_bad_names_and_empty_definitions() {
        let dup = Workflow::builder("w", 1)
            .step(noop("a"))
            .step(noop("a"))
            .build();
        assert_eq!(dup.unwrap_err().kind(), crate::ErrorKind::Config);
        assert!(Workflow::builder("w", 1).build().is_err());
        assert!(Workflow::builder("w.x", 1).step(noop("a")).build().is_err());
        assert!(Workflow::builder("w", 1).step(noop("a b")).build().is_err());
        let bad_signal = Workflow::builder("w", 1)
            .wait("a", Wait::signal("{x}"))
            .build();
        assert!(bad_signal.is_err());
    }

    #[test]
    fn steps_follow_definition_order() {
        let wf = Workflow::builder("w", 3)
            .step(noop("a"))
            .sleep("b", Duration::from_secs(1))
            .build()
            .unwrap();
        assert_eq!(wf.first(), "a");
        assert_eq!(wf.after("a"), Some("b"));
        assert_eq!(wf.after("b"), None);
        assert_eq!(wf.info().name, "w");
    }
}
