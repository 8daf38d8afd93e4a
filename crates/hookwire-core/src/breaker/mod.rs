//! A circuit breaker: stop calling a dependency that keeps failing, probe it again after a
//! cool-down with a bounded number of concurrent calls, and close once enough probes succeed.
//!
//! States: **closed** (calls run; `failure_threshold` consecutive failures open it), **open**
//! (calls are refused with [`Open`] without running until `cool_down` has passed), **half-open**
//! (at most `half_open_probes` calls run at once; `success_threshold` successes close it, one
//! failure opens it again).
//!
//! Outcomes of calls admitted before the last state change only count in the totals: a slow call
//! started while closed cannot reopen (or close) a breaker that has moved on since.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use hookwire_core::breaker::{CallError, CircuitBreaker, State};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let breaker = CircuitBreaker::builder()
//!     .failure_threshold(2)
//!     .cool_down(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//! for _ in 0..2 {
//!     let r: Result<(), _> = breaker.call(async { Err::<(), _>("down") }).await;
//!     assert!(matches!(r, Err(CallError::Inner("down"))));
//! }
//! assert_eq!(breaker.state(), State::Open);
//! // While open the future is not run; a fallback answers instead.
//! let v = breaker.call_or(async { Ok::<_, &str>(1) }, |_open| Ok(0)).await;
//! assert_eq!(v, Ok(0));
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls run; consecutive failures are counted.
    Closed,
    /// Calls are refused until the cool-down has passed.
    Open,
    /// A bounded number of probe calls run; their outcome decides the next state.
    HalfOpen,
}

impl State {
    /// A stable lower-case name (`closed`, `open`, `half-open`) for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change, passed to the listener and kept as [`BreakerStats::last_transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// When it happened.
    pub at: Instant,
}

/// The call was refused because the breaker is open (or half-open with every probe slot taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// How long until the cool-down ends; `None` when half-open and all probe slots are busy.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "circuit breaker is open (retry in {} ms)", d.as_millis()),
            None => f.write_str("circuit breaker is half-open and all probe slots are busy"),
        }
    }
}

impl std::error::Error for Open {}

/// The error of [`CircuitBreaker::call`]: refused by the breaker, or the call's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// Refused without running the call.
    Open(Open),
    /// The call ran and failed (counted as a failure).
    Inner(E),
}

impl<E> CallError<E> {
    /// Whether the breaker refused the call.
    pub fn is_open(&self) -> bool {
        matches!(self, CallError::Open(_))
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Open(o) => o.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Open(o) => Some(o),
            CallError::Inner(e) => Some(e),
        }
    }
}

/// A builder option was refused by [`BreakerBuilder::build`] or [`BreakerRegistry::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `failure_threshold` was 0 (the breaker would open on no failure).
    ZeroFailureThreshold,
    /// `success_threshold` was 0 (half-open would close with no evidence).
    ZeroSuccessThreshold,
    /// `half_open_probes` was 0 (half-open could never admit a probe and would stay stuck).
    ZeroProbes,
    /// `cool_down` was zero (the breaker would never refuse a call).
    ZeroCoolDown,
    /// A registry's `max_keys` was 0.
    ZeroCapacity,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::ZeroFailureThreshold => "failure_threshold must be at least 1",
            ConfigError::ZeroSuccessThreshold => "success_threshold must be at least 1",
            ConfigError::ZeroProbes => "half_open_probes must be at least 1",
            ConfigError::ZeroCoolDown => "cool_down must be longer than zero",
            ConfigError::ZeroCapacity => "max_keys must be at least 1",
        })
    }
}

impl std::error::Error for ConfigError {}

/// Counters and state of a breaker at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStats {
    /// The current state (an open breaker whose cool-down has passed still reads `Open` until
    /// the next call moves it to half-open).
    pub state: State,
    /// Consecutive failures counted while closed.
    pub consecutive_failures: u32,
    /// Successes counted in the current half-open phase.
    pub half_open_successes: u32,
    /// Probe calls running now.
    pub probes_in_flight: u32,
    /// Calls admitted since the last reset.
    pub calls: u64,
    /// Admitted calls that succeeded.
    pub successes: u64,
    /// Admitted calls that failed.
    pub failures: u64,
    /// Calls refused without running.
    pub rejected: u64,
    /// The last state change, if any since the last reset.
    pub last_transition: Option<Transition>,
}

type Listener = Arc<dyn Fn(Transition) + Send + Sync>;

/// Options for a [`CircuitBreaker`]; [`build`](Self::build) checks them.
#[derive(Clone)]
pub struct BreakerBuilder {
    failure_threshold: u32,
    success_threshold: u32,
    half_open_probes: u32,
    cool_down: Duration,
    listener: Option<Listener>,
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("failure_threshold", &self.failure_threshold)
            .field("success_threshold", &self.success_threshold)
            .field("half_open_probes", &self.half_open_probes)
            .field("cool_down", &self.cool_down)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            success_threshold: 1,
            half_open_probes: 1,
            cool_down: Duration::from_secs(60),
            listener: None,
        }
    }
}

impl BreakerBuilder {
    /// Consecutive failures (while closed) that open the breaker. Default 5.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Successful probes (while half-open) that close the breaker. Default 1.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// Probe calls allowed to run at once while half-open; more are refused. Default 1.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// How long the breaker stays open before it admits probes. Default 60 s.
    pub fn cool_down(mut self, d: Duration) -> Self {
        self.cool_down = d;
        self
    }

    /// Called on every real state change, after the breaker's lock is released (so the listener
    /// may call back into the breaker). Keep it short: it runs on the calling task.
    pub fn on_state_change(mut self, f: impl Fn(Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::ZeroFailureThreshold);
        }
        if self.success_threshold == 0 {
            return Err(ConfigError::ZeroSuccessThreshold);
        }
        if self.half_open_probes == 0 {
            return Err(ConfigError::ZeroProbes);
        }
        if self.cool_down.is_zero() {
            return Err(ConfigError::ZeroCoolDown);
        }
        Ok(())
    }

    /// Check the options and build the breaker.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.check()?;
        Ok(CircuitBreaker::from_checked(self))
    }
}

#[derive(Debug)]
struct Core {
    state: State,
    /// Bumped on every transition; permits from an older generation do not move the state.
    generation: u64,
    opened_at: Option<Instant>,
    consecutive_failures: u32,
    half_open_successes: u32,
    probes_in_flight: u32,
    calls: u64,
    successes: u64,
    failures: u64,
    rejected: u64,
    last_transition: Option<Transition>,
}

impl Core {
    fn new() -> Self {
        Self {
            state: State::Closed,
            generation: 0,
            opened_at: None,
            consecutive_failures: 0,
            half_open_successes: 0,
            probes_in_flight: 0,
            calls: 0,
            successes: 0,
            failures: 0,
            rejected: 0,
            last_transition: None,
        }
    }

    fn move_to(&mut self, to: State, now: Instant) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let t = Transition {
            from: self.state,
            to,
            at: now,
        };
        self.state = to;
        self.generation = self.generation.wrapping_add(1);
        self.consecutive_failures = 0;
        self.half_open_successes = 0;
        self.probes_in_flight = 0;
        self.opened_at = (to == State::Open).then_some(now);
        self.last_transition = Some(t);
        Some(t)
    }
}

struct Inner {
    core: Mutex<Core>,
    config: BreakerBuilder,
}

/// A circuit breaker. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.inner.config)
            .field("state", &self.state())
            .finish()
    }
}

/// Permission to run one call, from [`CircuitBreaker::try_acquire`]. Report the outcome with
/// [`success`](Self::success) or [`failure`](Self::failure); dropping it unreported (a cancelled
/// call) frees its probe slot and counts as neither.
#[must_use = "report the outcome with success() or failure()"]
#[derive(Debug)]
pub struct Permit {
    breaker: CircuitBreaker,
    generation: u64,
    probe: bool,
    done: bool,
}

#[derive(Clone, Copy)]
enum Outcome {
    Success,
    Failure,
    Cancelled,
}

impl Permit {
    /// The call succeeded.
    pub fn success(mut self) {
        self.finish(Outcome::Success);
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.finish(Outcome::Failure);
    }

    /// Report `result` (`Err` is a failure) and hand it back, wrapped for [`CircuitBreaker::call`].
    pub fn settle<T, E>(self, result: Result<T, E>) -> Result<T, CallError<E>> {
        match result {
            Ok(v) => {
                self.success();
                Ok(v)
            }
            Err(e) => {
                self.failure();
                Err(CallError::Inner(e))
            }
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        self.breaker.record(self.generation, self.probe, outcome);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

impl CircuitBreaker {
    /// Start building a breaker (defaults: 5 failures, 1 success, 1 probe, 60 s cool-down).
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::default()
    }

    /// A breaker from options already passed through `check`.
    fn from_checked(config: BreakerBuilder) -> Self {
        Self {
            inner: Arc::new(Inner {
                core: Mutex::new(Core::new()),
                config,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panicking listener never runs under the lock, so poisoning only follows a bug in
        // this module; the counters stay consistent after each statement, so keep going.
        self.inner
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, t: Option<Transition>) {
        if let (Some(t), Some(l)) = (t, &self.inner.config.listener) {
            l(t);
        }
    }

    /// Ask to run one call: a [`Permit`] if admitted, [`Open`] if refused (counted as rejected).
    pub fn try_acquire(&self) -> Result<Permit, Open> {
        let now = Instant::now();
        let cfg = &self.inner.config;
        let mut core = self.lock();
        let mut transition = None;
        if core.state == State::Open {
            let elapsed = core
                .opened_at
                .map_or(cfg.cool_down, |t| now.duration_since(t));
            if elapsed < cfg.cool_down {
                core.rejected += 1;
                return Err(Open {
                    retry_after: Some(cfg.cool_down - elapsed),
                });
            }
            transition = core.move_to(State::HalfOpen, now);
        }
        let probe = core.state == State::HalfOpen;
        let result = if probe && core.probes_in_flight >= cfg.half_open_probes {
            core.rejected += 1;
            Err(Open { retry_after: None })
        } else {
            if probe {
                core.probes_in_flight += 1;
            }
            core.calls += 1;
            Ok(Permit {
                breaker: self.clone(),
                generation: core.generation,
                probe,
                done: false,
            })
        };
        drop(core);
        self.notify(transition);
        result
    }

    fn record(&self, generation: u64, probe: bool, outcome: Outcome) {
        let now = Instant::now();
        let cfg = &self.inner.config;
        let mut core = self.lock();
        match outcome {
            Outcome::Success => core.successes += 1,
            Outcome::Failure => core.failures += 1,
            Outcome::Cancelled => {}
        }
        if generation != core.generation {
            return;
        }
        if probe {
            core.probes_in_flight = core.probes_in_flight.saturating_sub(1);
        }
        let transition = match (core.state, outcome) {
            (_, Outcome::Cancelled) | (State::Open, _) => None,
            (State::Closed, Outcome::Success) => {
                core.consecutive_failures = 0;
                None
            }
            (State::Closed, Outcome::Failure) => {
                core.consecutive_failures = core.consecutive_failures.saturating_add(1);
                (core.consecutive_failures >= cfg.failure_threshold)
                    .then(|| core.move_to(State::Open, now))
                    .flatten()
            }
            (State::HalfOpen, Outcome::Success) => {
                core.half_open_successes = core.half_open_successes.saturating_add(1);
                (core.half_open_successes >= cfg.success_threshold)
                    .then(|| core.move_to(State::Closed, now))
                    .flatten()
            }
            (State::HalfOpen, Outcome::Failure) => core.move_to(State::Open, now),
        };
        drop(core);
        self.notify(transition);
    }

    /// Run `fut` if admitted; every `Err` counts as a failure. While open the future is dropped
    /// unpolled and `CallError::Open` is returned.
    pub async fn call<F, T, E>(&self, fut: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::Open)?;
        permit.settle(fut.await)
    }

    /// Like [`call`](Self::call), but a refused call is answered by `fallback` instead. The
    /// fallback only stands in for refused calls; a call that runs and fails returns its error.
    pub async fn call_or<F, T, E, G>(&self, fut: F, fallback: G) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        G: FnOnce(Open) -> Result<T, E>,
    {
        match self.call(fut).await {
            Ok(v) => Ok(v),
            Err(CallError::Open(o)) => fallback(o),
            Err(CallError::Inner(e)) => Err(e),
        }
    }

    /// The current state (see [`BreakerStats::state`]).
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BreakerStats {
        let c = self.lock();
        BreakerStats {
            state: c.state,
            consecutive_failures: c.consecutive_failures,
            half_open_successes: c.half_open_successes,
            probes_in_flight: c.probes_in_flight,
            calls: c.calls,
            successes: c.successes,
            failures: c.failures,
            rejected: c.rejected,
            last_transition: c.last_transition,
        }
    }

    /// Force the breaker open now (a fresh cool-down starts), e.g. on a known outage.
    pub fn trip(&self) {
        let now = Instant::now();
        let mut core = self.lock();
        let t = if core.state == State::Open {
            core.opened_at = Some(now);
            None
        } else {
            core.move_to(State::Open, now)
        };
        drop(core);
        self.notify(t);
    }

    /// Close the breaker and clear every counter (the listener hears a change if it was not
    /// closed). Calls still running from before the reset do not move the state.
    pub fn reset(&self) {
        let now = Instant::now();
        let mut core = self.lock();
        let t = core.move_to(State::Closed, now);
        let generation = core.generation.wrapping_add(1);
        *core = Core::new();
        core.generation = generation;
        drop(core);
        self.notify(t);
    }
}

mod registry;
pub use registry::{BreakerRegistry, RegistryFull};

#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tower")]
pub use layer::{BreakerLayer, BreakerService};
