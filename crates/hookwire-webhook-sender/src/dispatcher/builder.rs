//! [`DispatcherBuilder`]: the dispatcher's options, checked by `build`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use hookwire_core::{RetryPolicy, TaskQueue};
use tokio::sync::{Semaphore, broadcast};

use super::{
    DEFAULT_CONCURRENCY, DEFAULT_LOG_CAPACITY, DEFAULT_MAX_SUBSCRIPTIONS, Dispatcher, HealthConfig,
    Inner, MemoryWebhookStore, State, WebhookStore, log,
};
use crate::client::{HttpClient, HyperClient};
use crate::error::Error;
use crate::ssrf::SsrfPolicy;

/// Configures a [`Dispatcher`].
#[derive(Debug)]
pub struct DispatcherBuilder {
    store: Arc<dyn WebhookStore>,
    client: Option<Arc<dyn HttpClient>>,
    ssrf: SsrfPolicy,
    policy: RetryPolicy,
    timeout: Duration,
    concurrency: usize,
    log_capacity: usize,
    health: HealthConfig,
    queue: Option<Arc<dyn TaskQueue>>,
    max_subscriptions: usize,
}

impl DispatcherBuilder {
    /// Where subscriptions are persisted (default: in memory).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn WebhookStore>) -> Self {
        self.store = store;
        self
    }
    /// The SSRF policy for registered URLs and for every connection (default: guard on, no
    /// allow-list).
    #[must_use]
    pub fn ssrf(mut self, policy: SsrfPolicy) -> Self {
        self.ssrf = policy;
        self
    }
    /// A custom HTTP client. It replaces the connect-time SSRF check, which then becomes the
    /// client's job; registration-time checks still apply.
    #[must_use]
    pub fn client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.client = Some(client);
        self
    }
    /// The retry policy of each delivery (default [`RetryPolicy::default`]). A server's
    /// `Retry-After` is honoured up to the policy's longest own delay
    /// ([`RetryPolicy::cap_retry_after_at_max_delay`]), in-process and durable alike.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// The per-attempt timeout (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Deliveries in flight at once (default [`DEFAULT_CONCURRENCY`]). 0 is refused by
    /// [`DispatcherBuilder::build`]; `usize::MAX` (or anything above tokio's semaphore limit)
    /// means unbounded.
    ///
    /// ```
    /// use hookwire_webhook_sender::Dispatcher;
    /// let d = Dispatcher::builder().concurrency(usize::MAX).build().unwrap();
    /// # let _ = d;
    /// assert!(Dispatcher::builder().concurrency(0).build().unwrap_err().is_build());
    /// ```
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Delivery log size (default [`DEFAULT_LOG_CAPACITY`]; 0 disables it).
    #[must_use]
    pub fn log_capacity(mut self, n: usize) -> Self {
        self.log_capacity = n;
        self
    }
    /// Health thresholds.
    #[must_use]
    pub fn health(mut self, cfg: HealthConfig) -> Self {
        self.health = cfg;
        self
    }
    /// Durable mode: `publish` enqueues one task per matching subscription on `queue` instead of
    /// delivering; a worker runs them ([`Dispatcher::run_task`], [`Dispatcher::work`]).
    #[must_use]
    pub fn durable(mut self, queue: Arc<dyn TaskQueue>) -> Self {
        self.queue = Some(queue);
        self
    }
    /// Most subscriptions accepted (default [`DEFAULT_MAX_SUBSCRIPTIONS`]).
    #[must_use]
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n;
        self
    }

    /// Builds the dispatcher (empty: call [`Dispatcher::load`] to read the store). Fails with
    /// [`crate::ErrorKind::Build`] on a concurrency of 0, a zero timeout or a zero subscription limit.
    pub fn build(self) -> Result<Dispatcher, Error> {
        if self.concurrency == 0 {
            return Err(Error::build("concurrency must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(Error::build(
                "the delivery timeout must be longer than zero",
            ));
        }
        if self.max_subscriptions == 0 {
            return Err(Error::build("max_subscriptions must be at least 1"));
        }
        // Tokio's semaphore panics above `MAX_PERMITS`; any larger bound means "unbounded".
        let concurrency = self.concurrency.min(Semaphore::MAX_PERMITS);
        let client = self
            .client
            .unwrap_or_else(|| Arc::new(HyperClient::with_policy(self.ssrf.clone())));
        let (events, _) = broadcast::channel(256);
        Ok(Dispatcher {
            inner: Arc::new(Inner {
                store: self.store,
                client,
                ssrf: self.ssrf,
                // A server's `Retry-After` never exceeds the policy's own longest delay.
                policy: self.policy.cap_retry_after_at_max_delay(),
                timeout: self.timeout,
                sem: Arc::new(Semaphore::new(concurrency)),
                log: log::DeliveryLog::new(self.log_capacity),
                health: self.health,
                queue: self.queue,
                max_subscriptions: self.max_subscriptions,
                events,
                state: RwLock::new(State::default()),
                write: tokio::sync::Mutex::new(()),
                tasks: Arc::default(),
            }),
        })
    }
}

impl Dispatcher {
    /// A builder with the defaults.
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder {
            store: Arc::new(MemoryWebhookStore::default()),
            client: None,
            ssrf: SsrfPolicy::default(),
            policy: RetryPolicy::default(),
            timeout: crate::DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            log_capacity: DEFAULT_LOG_CAPACITY,
            health: HealthConfig::default(),
            queue: None,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
        }
    }
}
