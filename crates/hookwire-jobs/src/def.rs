//! Typed job definitions: a name bound to a payload type, a handler and its policies.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use hookwire_core::{Backoff, BoxFuture, RetryPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::model::QueueRateLimit;

/// The shortest lease a [`JobDef`] may ask for: renewals every third of it must still fit
/// between two backend round trips.
pub const MIN_LEASE: Duration = Duration::from_millis(30);

/// A job name bound to its payload type, so dispatch and handler cannot disagree.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Email { to: String }
/// const SEND_EMAIL: hookwire_jobs::Job<Email> = hookwire_jobs::Job::new("send-email");
/// assert_eq!(SEND_EMAIL.name(), "send-email");
/// ```
pub struct Job<T> {
    name: &'static str,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Job<T> {
    /// Binds `name` to `T`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _t: PhantomData,
        }
    }
    /// The name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Job<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Job<T> {}
impl<T> fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Job").field(&self.name).finish()
    }
}

/// What a handler learns about the job it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobMeta {
    /// The job id.
    pub id: String,
    /// The job (queue) name.
    pub name: String,
    /// This attempt's number, 1 for the first run.
    pub attempt: u32,
    /// Times the job was recovered from a dead worker.
    pub stalled: u32,
    /// Creation time, Unix ms.
    pub created_at_ms: u64,
    /// Reports progress for this attempt (stored on the job, emitted as `job.<name>.progress`).
    pub progress: crate::progress::Progress,
}

/// A handler's failure after type erasure.
#[derive(Debug)]
pub(crate) struct HandlerFailure {
    pub(crate) message: String,
    pub(crate) retryable: bool,
}

pub(crate) type ErasedHandler = Arc<
    dyn Fn(String, JobMeta) -> BoxFuture<'static, Result<String, HandlerFailure>> + Send + Sync,
>;

/// One job type: name, handler and policies. Unset policies take the runtime's [`crate::Defaults`].
///
/// ```
/// use std::time::Duration;
/// use hookwire_core::Backoff;
/// use hookwire_jobs::{JobDef, JobMeta};
///
/// let def = JobDef::new("send-email", |to: String, _meta: JobMeta| async move {
///     Ok::<_, std::io::Error>(format!("sent to {to}"))
/// })
/// .retries(3)
/// .backoff(Backoff::exponential(Duration::from_secs(1)))
/// .timeout(Duration::from_secs(30))
/// .concurrency(5)
/// .rate_limit(100, Duration::from_secs(60))
/// .dead_letter_queue();
/// assert_eq!(def.name(), "send-email");
/// ```
#[derive(Clone)]
pub struct JobDef {
    pub(crate) name: String,
    pub(crate) handler: ErasedHandler,
    pub(crate) retries: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) concurrency: usize,
    pub(crate) rate_limit: Option<QueueRateLimit>,
    pub(crate) dead_letter: bool,
    pub(crate) dead_letter_name: Option<String>,
    pub(crate) lease: Option<Duration>,
    pub(crate) max_stalled: Option<u32>,
    pub(crate) batch: usize,
}

impl fmt::Debug for JobDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobDef")
            .field("name", &self.name)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("rate_limit", &self.rate_limit)
            .field("dead_letter", &self.dead_letter)
            .field("dead_letter_name", &self.dead_letter_name)
            .finish_non_exhaustive()
    }
}

fn erase<T, R, E, F, Fut>(handler: F) -> ErasedHandler
where
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
    F: Fn(T, JobMeta) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |data: String, meta: JobMeta| {
        let handler = handler.clone();
        Box::pin(async move {
            // A payload that does not match the type can never succeed: fail at once.
            let value: T = serde_json::from_str(&data).map_err(|e| HandlerFailure {
                message: format!("payload does not match the job type: {e}"),
                retryable: false,
            })?;
            match handler(value, meta).await {
                Ok(r) => serde_json::to_string(&r).map_err(|e| HandlerFailure {
                    message: format!("result does not serialize: {e}"),
                    retryable: false,
                }),
                Err(e) => {
                    let e: Box<dyn StdError + Send + Sync + 'static> = e.into();
                    let retryable = hookwire_core::error::is_retryable(&*e);
                    Err(HandlerFailure {
                        message: e.to_string(),
                        retryable,
                    })
                }
            }
        }) as BoxFuture<'static, _>
    })
}

impl JobDef {
    /// A job named `name` run by `handler(data, meta)`. An error wrapping
    /// [`hookwire_core::NonRetryableError`] (or a non-retryable HTTP error) fails the job at once.
    pub fn new<T, R, E, F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
        F: Fn(T, JobMeta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        Self {
            name: name.into(),
            handler: erase(handler),
            retries: None,
            backoff: None,
            timeout: None,
            concurrency: 1,
            rate_limit: None,
            dead_letter: false,
            dead_letter_name: None,
            lease: None,
            max_stalled: None,
            batch: 50,
        }
    }

    /// A definition for the typed name `job`.
    ///
    /// ```
    /// const PING: hookwire_jobs::Job<u32> = hookwire_jobs::Job::new("ping");
    /// let def = hookwire_jobs::JobDef::typed(PING, |n, _| async move { Ok::<_, std::io::Error>(n + 1) });
    /// assert_eq!(def.name(), "ping");
    /// ```
    pub fn typed<T, R, E, F, Fut>(job: Job<T>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
        F: Fn(T, JobMeta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        Self::new(job.name(), handler)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Retries after the first attempt (`retries(3)` = at most 4 runs).
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }
    /// Delay between attempts.
    #[must_use]
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = Some(b);
        self
    }
    /// Retries and backoff from a core [`RetryPolicy`] (its `max_retries` and `backoff`).
    #[must_use]
    pub fn retry_policy(mut self, p: &RetryPolicy) -> Self {
        self.retries = Some(p.max_retries);
        self.backoff.clone_from(&p.backoff);
        self
    }
    /// Per-attempt time limit: the handler's future is dropped and the attempt fails as a
    /// retryable timeout.
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    /// Jobs of this name run at once in this process (at least 1: [`crate::JobsBuilder::start`]
    /// refuses 0).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// At most `max` starts per `per` across every worker (global, stored in the backend).
    /// [`crate::JobsBuilder::start`] refuses `max` 0 and a window under 1 ms.
    #[must_use]
    pub fn rate_limit(mut self, max: u32, per: Duration) -> Self {
        self.rate_limit = Some(QueueRateLimit { max, per });
        self
    }
    /// Sends jobs that failed their last attempt to the queue's dead-letter queue (listable and
    /// re-drivable with [`crate::Jobs::dead_letters`] / [`crate::Jobs::redrive`]).
    #[must_use]
    pub fn dead_letter_queue(mut self) -> Self {
        self.dead_letter = true;
        self
    }
    /// Like [`JobDef::dead_letter_queue`], under a name of its own (e.g. `send-email-dead`):
    /// [`crate::Jobs::dead_letters`] and [`crate::Jobs::redrive`] accept it as well as the
    /// job's name. The entries stay with the job's queue (one atomic move, one Redis Cluster
    /// slot), so the name addresses one job's DLQ; two jobs cannot share it.
    ///
    /// The name follows the queue-name rules and may not be a registered job name;
    /// [`crate::JobsBuilder::start`] reports a bad or duplicate name.
    ///
    /// ```
    /// let def = hookwire_jobs::JobDef::new("send-email", |_: String, _| async {
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .dead_letter_queue_named("send-email-dead");
    /// assert_eq!(def.dead_letter_queue_name(), Some("send-email-dead"));
    /// ```
    #[must_use]
    pub fn dead_letter_queue_named(mut self, name: impl Into<String>) -> Self {
        self.dead_letter = true;
        self.dead_letter_name = Some(name.into());
        self
    }
    /// The dead-letter queue's own name, when one was given.
    pub fn dead_letter_queue_name(&self) -> Option<&str> {
        self.dead_letter_name.as_deref()
    }
    /// Lease length: a worker silent for this long is presumed dead and its jobs recovered.
    /// Renewed every third of it while the job runs. At least [`MIN_LEASE`]:
    /// [`crate::JobsBuilder::start`] refuses shorter ones.
    #[must_use]
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = Some(d);
        self
    }
    /// Recoveries from dead workers before the job fails.
    #[must_use]
    pub fn max_stalled(mut self, n: u32) -> Self {
        self.max_stalled = Some(n);
        self
    }
    /// Most jobs claimed per backend round trip (default 50; 1..=[`crate::MAX_CLAIM`]:
    /// [`crate::JobsBuilder::start`] refuses others).
    #[must_use]
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// Checks the options against their limits (called by [`crate::JobsBuilder::start`]).
    pub(crate) fn check(&self) -> Result<(), Error> {
        let name = &self.name;
        if self.concurrency == 0 {
            return Err(Error::invalid(format!(
                "job {name:?}: a concurrency of 0 would never run anything"
            )));
        }
        if let Some(r) = self.rate_limit {
            if r.max == 0 {
                return Err(Error::invalid(format!(
                    "job {name:?}: a rate limit of 0 jobs would never run anything"
                )));
            }
            if r.per < Duration::from_millis(1) {
                return Err(Error::invalid(format!(
                    "job {name:?}: a rate-limit window must be at least 1 ms"
                )));
            }
        }
        if self.lease.is_some_and(|l| l < MIN_LEASE) {
            return Err(Error::invalid(format!(
                "job {name:?}: a lease must be at least {} ms",
                MIN_LEASE.as_millis()
            )));
        }
        if self.batch == 0 || self.batch > crate::MAX_CLAIM {
            return Err(Error::invalid(format!(
                "job {name:?}: batch must be 1..={}",
                crate::MAX_CLAIM
            )));
        }
        Ok(())
    }
}
