//! [`Dispatcher`]: subscriptions with event patterns, fan-out, delivery log, endpoint health and
//! durable mode (`spec/sender.md`, "`Dispatcher` — subscriptions and fan-out").

mod health;
mod log;
mod queue;
mod rate;
#[cfg(feature = "redis")]
mod redis_store;
mod store;
mod subscription;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwire_core::{Event, PatternSet, QueuedTask, RetryPolicy, TaskQueue};
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast};
use tracing::Instrument;

pub use health::{HealthConfig, HealthEvent, HealthEventKind};
pub use log::DeliveryRecord;
pub use queue::MemoryTaskQueue;
#[cfg(feature = "redis")]
pub use redis_store::RedisSubscriptionStore;
pub use store::{MemoryWebhookStore, WebhookStore};
pub use subscription::{EndpointRateLimit, Subscription};

use crate::client::{HttpClient, HyperClient};
use crate::delivery::DeliveryOutcome;
use crate::error::{Error, ErrorKind};
use crate::ssrf::{SsrfPolicy, check_url};
use crate::webhook::Webhook;
use health::{Gate, Health};
use rate::Bucket;

/// The task kind durable mode enqueues.
///
/// Task id: `"<event id>:<subscription id>"` (so a re-published event is not queued twice).
/// Payload (JSON object): `subscription_id`, `event_id`, `event_type`, `body` (the exact body as
/// a string), `attempt` (attempts made so far), `first_at_ms` (Unix ms of the first enqueue, for
/// the policy's `max_window`). A job system runs such a task with [`Dispatcher::run_task`] and
/// enqueues the returned task again on [`TaskOutcome::Retry`] (its `delay` is set).
pub const DELIVER_TASK: &str = "hookwire.webhook.deliver";

/// Default number of deliveries in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Default delivery log size.
pub const DEFAULT_LOG_CAPACITY: usize = 1000;

/// Default cap on registered subscriptions (a stated limit, like Outpost's per-tenant cap).
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 10_000;

/// What [`Dispatcher::publish`] did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PublishReport {
    /// Enabled subscriptions that matched the event.
    pub matched: usize,
    /// In-process mode: one record per matched subscription.
    pub records: Vec<DeliveryRecord>,
    /// Durable mode: tasks enqueued.
    pub enqueued: usize,
}

/// What [`Dispatcher::run_task`] decided for one durable task.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// Delivered.
    Done(DeliveryRecord),
    /// Try again: enqueue this task (same id, next attempt, with a delay).
    Retry(QueuedTask),
    /// Gave up (blocked, exhausted, or the subscription is disabled).
    Failed(DeliveryRecord),
    /// The task cannot be run (malformed payload, subscription removed).
    Dropped(String),
}

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
    /// [`ErrorKind::Build`] on a concurrency of 0, a zero timeout or a zero subscription limit.
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
            }),
        })
    }
}

#[derive(Debug)]
struct Entry {
    sub: Subscription,
    hook: Webhook,
    health: Mutex<Health>,
    bucket: Option<Bucket>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Arc<Entry>>,
    set: PatternSet<String>,
}

struct Inner {
    store: Arc<dyn WebhookStore>,
    client: Arc<dyn HttpClient>,
    ssrf: SsrfPolicy,
    policy: RetryPolicy,
    timeout: Duration,
    sem: Arc<Semaphore>,
    log: log::DeliveryLog,
    health: HealthConfig,
    queue: Option<Arc<dyn TaskQueue>>,
    max_subscriptions: usize,
    events: broadcast::Sender<HealthEvent>,
    state: RwLock<State>,
    /// Serializes store writes with the in-memory swap so the two never disagree.
    write: tokio::sync::Mutex<()>,
}

/// Fans events out to subscriptions whose patterns match, with retries, health tracking, rate
/// limits and a delivery log. Cheap to clone (shared state).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use hookwire_webhook_sender::{Dispatcher, Subscription};
/// let d = Dispatcher::builder().build().unwrap();
/// d.register(Subscription::new("s1", "https://hooks.example.com/in", &["order.*"]).unwrap()).await.unwrap();
/// assert_eq!(d.list().len(), 1);
/// // The SSRF guard refuses internal targets at registration (and again at connect time).
/// assert!(d.register(Subscription::new("s2", "http://169.254.169.254/", &["*"]).unwrap()).await.is_err());
/// # });
/// ```
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("store", &self.inner.store.name())
            .field("durable", &self.inner.queue.is_some())
            .field("subscriptions", &self.state().entries.len())
            .finish_non_exhaustive()
    }
}

/// The body of a dispatched webhook: `{ "type", "payload", "meta" }`, where `meta` carries the
/// event id, stream, version and the event's metadata.
///
/// ```
/// let e = hookwire_core::Event::new("order.created", serde_json::json!({"n": 1})).with_id("e1");
/// let b = hookwire_webhook_sender::envelope_body(&e);
/// let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
/// assert_eq!(v["type"], "order.created");
/// assert_eq!(v["payload"]["n"], 1);
/// assert_eq!(v["meta"]["id"], "e1");
/// ```
pub fn envelope_body(event: &Event) -> Bytes {
    #[derive(Serialize)]
    struct Meta<'a> {
        id: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        stream: &'a str,
        version: u64,
        #[serde(flatten)]
        meta: &'a hookwire_core::EventMeta,
    }
    #[derive(Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        payload: &'a serde_json::Value,
        meta: Meta<'a>,
    }
    let env = Envelope {
        kind: &event.name,
        payload: &event.data,
        meta: Meta {
            id: &event.id,
            stream: &event.stream,
            version: event.version,
            meta: &event.meta,
        },
    };
    // Strings, numbers and a `Value` cannot fail to serialize.
    Bytes::from(serde_json::to_vec(&env).unwrap_or_default())
}

fn unix_ms() -> u64 {
    hookwire_core::time::unix_millis()
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

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Writers only swap whole values under the lock, so a poisoned lock is consistent.
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        self.state().entries.get(id).cloned()
    }

    fn build_entry(&self, sub: Subscription) -> Result<Entry, Error> {
        let invalid = |m: String| Error::msg(ErrorKind::InvalidSubscription, m);
        if sub.id.is_empty() || sub.id.len() > 200 {
            return Err(invalid("a subscription id must have 1 to 200 bytes".into()));
        }
        if sub.events.is_empty() {
            return Err(invalid(format!(
                "subscription {} has no event patterns",
                sub.id
            )));
        }
        check_url(&sub.url, &self.inner.ssrf).map_err(invalid)?;
        let mut b = Webhook::builder()
            .url(sub.url.clone())
            .client(Arc::clone(&self.inner.client))
            .timeout(self.inner.timeout)
            .scheme(sub.scheme)
            .headers_fn(|e| {
                vec![
                    ("X-Webhook-Id".to_owned(), e.id.clone()),
                    ("X-Webhook-Event".to_owned(), e.name.clone()),
                ]
            });
        if let Some(s) = &sub.secret {
            b = b.secret(s.clone());
        }
        for (k, v) in &sub.headers {
            b = b.header(k.clone(), v.clone());
        }
        let hook = b
            .build()
            .map_err(|e| invalid(format!("subscription {}: {e}", sub.id)))?;
        let bucket = sub.rate_limit.map(Bucket::new);
        Ok(Entry {
            sub,
            hook,
            health: Mutex::new(Health::default()),
            bucket,
        })
    }

    fn install(&self, entry: Option<Entry>, remove: Option<&str>) {
        let mut st = self
            .inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(id) = remove {
            st.entries.remove(id);
        }
        if let Some(e) = entry {
            st.entries.insert(e.sub.id.clone(), Arc::new(e));
        }
        // Rebuild the matcher: registration is rare, matching is per event.
        let mut ids: Vec<&Arc<Entry>> = st.entries.values().collect();
        ids.sort_by(|a, b| a.sub.id.cmp(&b.sub.id));
        let mut set = PatternSet::new();
        for e in ids {
            for p in &e.sub.events {
                set.insert(p.clone(), e.sub.id.clone());
            }
        }
        st.set = set;
    }

    /// Reads every subscription from the store (call once at startup); returns how many were
    /// loaded. Invalid stored subscriptions are skipped with a warning.
    pub async fn load(&self) -> Result<usize, Error> {
        let _w = self.inner.write.lock().await;
        let all = self.inner.store.get_all().await?;
        let mut n = 0;
        for sub in all {
            let id = sub.id.clone();
            match self.build_entry(sub) {
                Ok(e) => {
                    self.install(Some(e), None);
                    n += 1;
                }
                Err(e) => tracing::warn!(%id, error = %e, "skipping stored subscription"),
            }
        }
        Ok(n)
    }

    /// Adds or replaces a subscription (validated, SSRF-checked, then saved to the store).
    pub async fn register(&self, sub: Subscription) -> Result<(), Error> {
        let entry = self.build_entry(sub)?;
        let _w = self.inner.write.lock().await;
        {
            let st = self.state();
            if !st.entries.contains_key(&entry.sub.id)
                && st.entries.len() >= self.inner.max_subscriptions
            {
                return Err(Error::msg(
                    ErrorKind::InvalidSubscription,
                    format!("at most {} subscriptions", self.inner.max_subscriptions),
                ));
            }
        }
        self.inner.store.save(entry.sub.clone()).await?;
        self.install(Some(entry), None);
        Ok(())
    }

    /// Removes a subscription; `true` when it existed.
    pub async fn unregister(&self, id: &str) -> Result<bool, Error> {
        let _w = self.inner.write.lock().await;
        let existed = self.inner.store.remove(id.to_owned()).await?;
        let had = self.entry(id).is_some();
        self.install(None, Some(id));
        Ok(existed || had)
    }

    /// A copy of every subscription, sorted by id.
    pub fn list(&self) -> Vec<Subscription> {
        let mut v: Vec<Subscription> = self
            .state()
            .entries
            .values()
            .map(|e| e.sub.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// One subscription.
    pub fn get(&self, id: &str) -> Option<Subscription> {
        self.entry(id).map(|e| e.sub.clone())
    }

    async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<(), Error> {
        let _w = self.inner.write.lock().await;
        let Some(old) = self.entry(id) else {
            return Err(Error::msg(
                ErrorKind::NotFound,
                format!("no subscription {id}"),
            ));
        };
        if old.sub.enabled == enabled {
            // Not a transition (e.g. two failing deliveries both crossing the threshold): no
            // store write, no event.
            return Ok(());
        }
        let mut sub = old.sub.clone();
        sub.enabled = enabled;
        sub.disabled_reason = reason.clone();
        self.inner.store.save(sub.clone()).await?;
        // Re-enabling starts with a clean bill of health; the hook and rate bucket carry over.
        let entry = Entry {
            sub,
            hook: old.hook.clone(),
            health: Mutex::new(Health::default()),
            bucket: old.sub.rate_limit.map(Bucket::new),
        };
        self.install(Some(entry), None);
        let kind = if enabled {
            HealthEventKind::Enabled
        } else {
            HealthEventKind::Disabled {
                reason: reason.unwrap_or_default(),
            }
        };
        self.emit(id, kind);
        Ok(())
    }

    /// Re-enables a disabled subscription (resets its health).
    pub async fn enable(&self, id: &str) -> Result<(), Error> {
        self.set_enabled(id, true, None).await
    }

    /// Disables a subscription with a reason.
    pub async fn disable(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.set_enabled(id, false, Some(reason.to_owned())).await
    }

    fn emit(&self, id: &str, kind: HealthEventKind) {
        tracing::info!(subscription = %id, ?kind, "webhook endpoint health changed");
        // No receiver is fine: events are for whoever listens.
        let _ = self.inner.events.send(HealthEvent {
            subscription_id: id.to_owned(),
            kind,
        });
    }

    /// A receiver of health transitions (circuit opened/closed, disabled, enabled).
    pub fn health_events(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.events.subscribe()
    }

    /// The newest `n` delivery records, newest first.
    pub fn delivery_log(&self, n: usize) -> Vec<DeliveryRecord> {
        self.inner.log.newest(n)
    }

    fn targets(&self, event_type: &str) -> Vec<Arc<Entry>> {
        let st = self.state();
        let mut seen = std::collections::HashSet::new();
        st.set
            .matching(event_type)
            .into_iter()
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| st.entries.get(id.as_str()))
            .filter(|e| e.sub.enabled)
            .cloned()
            .collect()
    }

    /// Delivers `event` to every enabled subscription whose patterns match — concurrently,
    /// bounded by the concurrency limit, each with the retry policy — and waits for all of them.
    /// In durable mode it only enqueues one task per subscription (the outbox pattern).
    ///
    /// The body is serialized once ([`envelope_body`]) and the same bytes go to every endpoint.
    ///
    /// Cancel safety: in-process deliveries run as spawned tasks and finish even if this future
    /// is dropped (their records still reach the log); in durable mode, tasks enqueued before the
    /// drop stay enqueued and the rest are not — publish again (re-enqueueing is de-duplicated).
    pub async fn publish(&self, event: &Event) -> Result<PublishReport, Error> {
        let targets = self.targets(&event.name);
        let body = envelope_body(event);
        let mut report = PublishReport {
            matched: targets.len(),
            ..PublishReport::default()
        };
        if let Some(q) = &self.inner.queue {
            for e in &targets {
                let task = QueuedTask::new(
                    DELIVER_TASK,
                    format!("{}:{}", event.id, e.sub.id),
                    serde_json::json!({
                        "subscription_id": e.sub.id,
                        "event_id": event.id,
                        "event_type": event.name,
                        "body": String::from_utf8_lossy(&body),
                        "attempt": 0,
                        "first_at_ms": unix_ms(),
                    }),
                );
                q.enqueue(task)
                    .await
                    .map_err(|e| Error::new(ErrorKind::Queue, e))?;
                report.enqueued += 1;
            }
            return Ok(report);
        }
        let event = Arc::new(event.clone());
        // Detached tasks (not a JoinSet, which aborts its tasks when dropped): a caller that
        // stops waiting does not cut deliveries off mid-request.
        let handles: Vec<_> = targets
            .into_iter()
            .map(|e| {
                let (me, event, body) = (self.clone(), Arc::clone(&event), body.clone());
                tokio::spawn(async move { me.deliver_one(&e, &event, body).await })
            })
            .collect();
        for h in handles {
            // A delivery task only fails by panicking; its siblings' records still count.
            if let Ok(rec) = h.await {
                report.records.push(rec);
            }
        }
        report
            .records
            .sort_by(|a, b| a.subscription_id.cmp(&b.subscription_id));
        Ok(report)
    }

    fn record(
        e: &Entry,
        event_id: &str,
        event_type: &str,
        outcome: &DeliveryOutcome,
        attempts: u32,
        duration: Duration,
        body: Bytes,
    ) -> DeliveryRecord {
        DeliveryRecord {
            subscription_id: e.sub.id.clone(),
            event_type: event_type.to_owned(),
            event_id: event_id.to_owned(),
            success: outcome.is_delivered(),
            status: outcome.status(),
            error: outcome.error().map(ToString::to_string),
            attempts,
            duration,
            timestamp: unix_ms(),
            body,
        }
    }

    async fn deliver_one(&self, e: &Entry, event: &Event, body: Bytes) -> DeliveryRecord {
        let gate = e
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .gate(Instant::now());
        if let Gate::Open(wait) = gate {
            let err = hookwire_core::HttpError::network(
                &e.sub.url,
                "webhook",
                format!("circuit open for another {}ms", wait.as_millis()),
            );
            let rec = Self::record(
                e,
                &event.id,
                &event.name,
                &DeliveryOutcome::Exhausted(err),
                0,
                Duration::ZERO,
                body,
            );
            self.inner.log.push(rec.clone());
            return rec;
        }
        if let Some(b) = &e.bucket {
            b.take().await;
        }
        let span =
            tracing::info_span!("webhook.delivery", subscription = %e.sub.id, event = %event.id);
        let d = async {
            match e.hook.prepare_with_body(event, body.clone()) {
                // A concurrency permit per attempt, not per delivery: endpoints that answer
                // `429 Retry-After` must not hold every slot while they sleep. Closed semaphores
                // do not happen (it is never closed); a failure only skips the bound.
                Ok(p) => {
                    e.hook
                        .deliver_prepared_gated(&p, &self.inner.policy, || async {
                            self.inner.sem.acquire().await.ok()
                        })
                        .await
                }
                Err(err) => crate::Delivery::unsent(err),
            }
        }
        .instrument(span)
        .await;
        let rec = Self::record(
            e,
            &event.id,
            &event.name,
            &d.outcome,
            d.attempts,
            d.duration,
            body,
        );
        self.after(e, &d.outcome).await;
        self.inner.log.push(rec.clone());
        rec
    }

    /// Updates health after a delivery (or, in durable mode, an attempt) and applies its verdict.
    async fn after(&self, e: &Entry, outcome: &DeliveryOutcome) {
        let gone = matches!(outcome, DeliveryOutcome::Blocked(err) if err.status() == 410);
        let verdict = e
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(outcome.is_delivered(), Instant::now(), &self.inner.health);
        for k in verdict.events {
            self.emit(&e.sub.id, k);
        }
        let reason = if gone {
            Some("endpoint answered 410 Gone".to_owned())
        } else {
            verdict.disable
        };
        if let Some(r) = reason
            && let Err(err) = self.disable(&e.sub.id, &r).await
        {
            tracing::error!(subscription = %e.sub.id, error = %err, "could not disable subscription");
        }
    }

    /// Runs one durable task: a single attempt; on a retryable failure returns the task to
    /// enqueue again with the policy's delay. Does not take a concurrency permit (the worker
    /// does, before taking the task).
    pub async fn run_task(&self, task: &QueuedTask) -> TaskOutcome {
        let p = &task.payload;
        let field = |k: &str| p.get(k).and_then(serde_json::Value::as_str);
        let (Some(sub_id), Some(event_id), Some(event_type), Some(body)) = (
            field("subscription_id"),
            field("event_id"),
            field("event_type"),
            field("body"),
        ) else {
            return TaskOutcome::Dropped(format!("task {} has a malformed payload", task.id));
        };
        let attempt = p
            .get("attempt")
            .and_then(serde_json::Value::as_u64)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0);
        let first_at = p
            .get("first_at_ms")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(unix_ms);
        let Some(e) = self.entry(sub_id) else {
            return TaskOutcome::Dropped(format!("subscription {sub_id} no longer exists"));
        };
        let body = Bytes::from(body.to_owned());
        let event = Event::new(event_type, serde_json::Value::Null).with_id(event_id);
        if !e.sub.enabled {
            let err =
                hookwire_core::HttpError::refused(&e.sub.url, "webhook", "subscription disabled");
            let rec = Self::record(
                &e,
                event_id,
                event_type,
                &DeliveryOutcome::Blocked(err),
                0,
                Duration::ZERO,
                body,
            );
            self.inner.log.push(rec.clone());
            return TaskOutcome::Failed(rec);
        }
        let gate = e
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .gate(Instant::now());
        if let Gate::Open(wait) = gate {
            // The breaker is open: park the task until the probe window, without using up an
            // attempt.
            return TaskOutcome::Retry(task.clone().with_delay(wait));
        }
        if let Some(b) = &e.bucket {
            b.take().await;
        }
        let started = Instant::now();
        let span = tracing::info_span!(
            "webhook.attempt",
            subscription = %sub_id,
            event = %event_id,
            url = %e.sub.url,
            attempt = attempt + 1,
            status = tracing::field::Empty,
        );
        let r = match e.hook.prepare_with_body(&event, body.clone()) {
            Ok(prep) => e.hook.attempt(&prep).instrument(span.clone()).await,
            Err(err) => Err(err),
        };
        span.record(
            "status",
            r.as_ref().map_or_else(|e| e.status(), |s| s.status),
        );
        let attempts = attempt + 1;
        let outcome = match r {
            Ok(s) => DeliveryOutcome::Delivered { status: s.status },
            Err(err) => {
                let elapsed = Duration::from_millis(unix_ms().saturating_sub(first_at));
                let policy = &self.inner.policy;
                let delay = policy.delay_after(attempt, err.retry_after());
                let retry = (err.is_retryable() || !policy.block_on_error)
                    && policy.allows_attempt(attempts + 1, elapsed.saturating_add(delay));
                if retry {
                    self.after(&e, &DeliveryOutcome::Exhausted(err)).await;
                    let mut next = task.clone().with_delay(delay);
                    if let Some(o) = next.payload.as_object_mut() {
                        o.insert("attempt".into(), attempts.into());
                        o.insert("first_at_ms".into(), first_at.into());
                    }
                    return TaskOutcome::Retry(next);
                }
                if err.is_retryable() || !policy.block_on_error {
                    DeliveryOutcome::Exhausted(err)
                } else {
                    DeliveryOutcome::Blocked(err)
                }
            }
        };
        let rec = Self::record(
            &e,
            event_id,
            event_type,
            &outcome,
            attempts,
            started.elapsed(),
            body,
        );
        self.after(&e, &outcome).await;
        self.inner.log.push(rec.clone());
        if rec.success {
            TaskOutcome::Done(rec)
        } else {
            TaskOutcome::Failed(rec)
        }
    }

    /// A worker for [`MemoryTaskQueue`]: takes a concurrency permit, then a task, runs it and
    /// re-enqueues retries. Runs until the future is dropped.
    pub async fn work(&self, queue: Arc<MemoryTaskQueue>) {
        loop {
            let Ok(permit) = Arc::clone(&self.inner.sem).acquire_owned().await else {
                return;
            };
            let task = queue.next().await;
            let (me, q) = (self.clone(), Arc::clone(&queue));
            tokio::spawn(async move {
                let _permit = permit;
                if let TaskOutcome::Retry(t) = me.run_task(&task).await
                    && let Err(e) = q.enqueue(t).await
                {
                    tracing::error!(error = %e, task = %task.id, "could not re-enqueue a delivery");
                }
            });
        }
    }
}
