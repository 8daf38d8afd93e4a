//! [`JobsBuilder`] and the runtime-wide [`Defaults`]: registering definitions, repeats,
//! schedules and listeners, and checking them all in [`JobsBuilder::start`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::{Backoff, Jitter};
use tokio::sync::{broadcast, watch};

use crate::backend::JobBackend;
use crate::def::JobDef;
use crate::error::Error;
use crate::events::{JobEvent, Listener};
use crate::model::{Retention, validate_queue_name};
use crate::repeat::Repeat;
use crate::runtime::{Inner, Jobs};
use crate::schedule::Schedule;
use crate::worker::Worker;

/// Runtime-wide defaults for what a [`JobDef`] or a dispatch leaves unset.
///
/// ```
/// let d = hookwire_jobs::Defaults::default();
/// assert_eq!(d.retries, 3);
/// assert_eq!(d.remove_on_complete, hookwire_jobs::Retention::KeepLast(1000));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Defaults {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay between attempts (`None`: retry at once).
    pub backoff: Option<Backoff>,
    /// Per-attempt time limit (`None`: no limit).
    pub timeout: Option<Duration>,
    /// Success retention (bounded by default so a busy queue cannot grow without end).
    pub remove_on_complete: Retention,
    /// Failure retention.
    pub remove_on_fail: Retention,
    /// Lease length.
    pub lease: Duration,
    /// Recoveries from dead workers before the job fails.
    pub max_stalled: u32,
    /// How long [`Jobs::shutdown`] lets active jobs finish before releasing them.
    pub shutdown_grace: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            retries: 3,
            backoff: Some(
                Backoff::exponential(Duration::from_secs(1))
                    .with_max(Duration::from_secs(3600))
                    .with_jitter(Jitter::Proportional(0.2)),
            ),
            timeout: None,
            remove_on_complete: Retention::KeepLast(1000),
            remove_on_fail: Retention::KeepLast(5000),
            lease: Duration::from_secs(30),
            max_stalled: 1,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Builds a [`Jobs`] runtime.
pub struct JobsBuilder {
    pub(crate) backend: Arc<dyn JobBackend>,
    pub(crate) defs: Vec<JobDef>,
    pub(crate) defaults: Defaults,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) repeats: Vec<Repeat>,
    pub(crate) schedules: Vec<Schedule>,
}

impl fmt::Debug for JobsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobsBuilder")
            .field("backend", &self.backend)
            .field("defs", &self.defs)
            .field("defaults", &self.defaults)
            .field("listeners", &self.listeners.len())
            .field("repeats", &self.repeats)
            .field("schedules", &self.schedules)
            .finish()
    }
}

impl JobsBuilder {
    /// Registers a job definition (its workers start with [`JobsBuilder::start`]).
    #[must_use]
    pub fn job(mut self, def: JobDef) -> Self {
        self.defs.push(def);
        self
    }
    /// Sets the defaults.
    #[must_use]
    pub fn defaults(mut self, d: Defaults) -> Self {
        self.defaults = d;
        self
    }
    /// Calls `f` for every completed / failed event, on a dedicated task; a panicking listener
    /// is logged and never affects a worker. Use it to bridge into an event bus
    /// ([`JobEvent::to_event`] gives `job.<name>.completed` / `job.<name>.failed`), or use
    /// `publish_events` (feature `events`), which does it for the `hookwire-events` bus.
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&JobEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Dispatches a job every interval from this runtime (see [`Repeat`]). Several runtimes may
    /// declare the same repeat: each slot still runs once.
    #[must_use]
    pub fn repeat(mut self, r: Repeat) -> Self {
        self.repeats.push(r);
        self
    }

    /// Enqueues a job at every tick of `s` from this runtime (see [`Schedule`]); several
    /// runtimes may declare the same schedule: each tick is still enqueued once. Starting stores
    /// the schedule, so a removed schedule comes back with the next runtime that declares it.
    #[must_use]
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.schedules.push(s);
        self
    }

    /// Validates the definitions and starts one worker loop per definition.
    ///
    /// Errors ([`crate::ErrorKind::Invalid`]): an invalid or duplicate job name; an option out
    /// of its range (concurrency 0, a rate limit of 0 jobs or a window under 1 ms, a lease under
    /// [`crate::MIN_LEASE`], a batch outside 1..=[`crate::MAX_CLAIM`]); a dead-letter queue name
    /// that is invalid, a job name, or used twice.
    pub async fn start(self) -> Result<Jobs, Error> {
        let mut names = HashMap::new();
        let dead_letter_names = dead_letter_names(&self.defs)?;
        for d in &self.defs {
            validate_queue_name(&d.name)?;
            d.check()?;
            if names.insert(d.name.clone(), d.dead_letter).is_some() {
                return Err(Error::invalid(format!(
                    "job {:?} is registered twice",
                    d.name
                )));
            }
        }
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let listener_tx = if self.listeners.is_empty() {
            None
        } else {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(crate::events::run_listeners(rx, self.listeners));
            Some(tx)
        };
        let inner = Arc::new(Inner {
            backend: self.backend,
            defaults: self.defaults,
            names,
            dead_letter_names,
            events,
            listener_tx,
            shutdown,
            workers: Mutex::new(Vec::new()),
            dispatching: Arc::default(),
        });
        let mut handles = Vec::new();
        for def in self.defs {
            let w = Worker::new(inner.clone(), def);
            handles.push(tokio::spawn(w.run()));
        }
        let jobs = Jobs { inner };
        for r in self.repeats {
            let rx = jobs.inner.shutdown.subscribe();
            handles.push(tokio::spawn(crate::repeat::run(jobs.clone(), r, rx)));
        }
        for s in self.schedules {
            let rx = jobs.inner.shutdown.subscribe();
            let backend = jobs.inner.backend.clone();
            handles.push(tokio::spawn(crate::schedule::run(
                jobs.clone(),
                backend,
                s,
                rx,
            )));
        }
        *jobs
            .inner
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = handles;
        Ok(jobs)
    }
}

/// Custom dead-letter queue names → their job's name, checked: valid, not a job name, unique.
fn dead_letter_names(defs: &[JobDef]) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    for d in defs {
        let Some(dlq) = &d.dead_letter_name else {
            continue;
        };
        validate_queue_name(dlq).map_err(|e| {
            Error::invalid(format!("job {:?}: dead-letter queue name: {e}", d.name))
        })?;
        if defs.iter().any(|o| o.name == *dlq) {
            return Err(Error::invalid(format!(
                "job {:?}: dead-letter queue name {dlq:?} is a job name",
                d.name
            )));
        }
        if out.insert(dlq.clone(), d.name.clone()).is_some() {
            return Err(Error::invalid(format!(
                "dead-letter queue name {dlq:?} is used by two jobs"
            )));
        }
    }
    Ok(out)
}
