//! [`Dispatcher`]: subscriptions with event patterns, fan-out, delivery log, endpoint health and
//! durable mode (the crate guide, "Many endpoints: the `Dispatcher`", states the contract).

mod builder;
#[cfg(feature = "events")]
mod bus;
mod durable;
mod health;
mod log;
mod queue;
mod rate;
#[cfg(feature = "redis")]
mod redis_store;
mod reload;
mod store;
mod subscription;
mod tasks;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwire_core::{Event, PatternSet, RetryPolicy, TaskQueue};
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast};
use tracing::Instrument;

pub use builder::DispatcherBuilder;
#[cfg(feature = "events")]
pub use bus::{
    BusDispatcher, BusDispatcherBuilder, DEFAULT_CHANGES_EVENT, DEFAULT_RELOAD_INTERVAL,
};
pub use durable::TaskOutcome;
pub use health::{HealthConfig, HealthEvent, HealthEventKind};
pub use log::DeliveryRecord;
pub use queue::MemoryTaskQueue;
#[cfg(feature = "redis")]
pub use redis_store::RedisSubscriptionStore;
pub use store::{MemoryWebhookStore, WebhookStore};
pub use subscription::{EndpointRateLimit, Subscription};

use crate::client::HttpClient;
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

#[derive(Debug)]
pub(crate) struct Entry {
    sub: Subscription,
    hook: Webhook,
    health: Mutex<Health>,
    bucket: Option<Bucket>,
}

impl Entry {
    /// Whether the endpoint's circuit breaker lets a delivery through now.
    fn gate(&self) -> Gate {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .gate(Instant::now())
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Arc<Entry>>,
    set: PatternSet<String>,
}

pub(crate) struct Inner {
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
    /// The delivery tasks `publish` and `work` started (stopped by `shutdown`).
    tasks: Arc<tasks::Tasks>,
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
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Writers only swap whole values under the lock, so a poisoned lock is consistent.
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn entry(&self, id: &str) -> Option<Arc<Entry>> {
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
        if let Some(limit) = &sub.rate_limit {
            limit
                .check()
                .map_err(|m| invalid(format!("subscription {}: {m}", sub.id)))?;
        }
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
        st.rebuild_set();
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

    fn targets(&self, event: &Event) -> Vec<Arc<Entry>> {
        let st = self.state();
        let mut seen = std::collections::HashSet::new();
        let org = event.organization_id();
        st.set
            .matching(&event.name)
            .into_iter()
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| st.entries.get(id.as_str()))
            .filter(|e| e.sub.enabled && e.sub.accepts_organization(org))
            .cloned()
            .collect()
    }

    /// Stops every delivery task this dispatcher (or any clone of it) started that is still
    /// running: `publish`'s fan-out, which goes on when its caller stops waiting, and the
    /// tasks of [`work`](Self::work). An attempt cut off this way is not recorded; a durable
    /// task is delivered again after its lease. Publishing after a shutdown works as before.
    pub fn shutdown(&self) {
        self.inner.tasks.abort_all();
    }

    /// How many delivery tasks are running (what [`shutdown`](Self::shutdown) would stop).
    pub fn running_deliveries(&self) -> usize {
        self.inner.tasks.len()
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
        let targets = self.targets(event);
        let body = envelope_body(event);
        let mut report = PublishReport {
            matched: targets.len(),
            ..PublishReport::default()
        };
        if let Some(q) = &self.inner.queue {
            report.enqueued = Self::enqueue_all(q.as_ref(), &targets, event, &body).await?;
            return Ok(report);
        }
        let event = Arc::new(event.clone());
        // The dispatcher's tasks (not a JoinSet of this call, which would abort them when
        // dropped): a caller that stops waiting does not cut deliveries off mid-request, and
        // `shutdown` still stops them.
        let handles: Vec<_> = targets
            .into_iter()
            .map(|e| {
                let (me, event, body) = (self.clone(), Arc::clone(&event), body.clone());
                self.inner
                    .tasks
                    .spawn(async move { me.deliver_one(&e, &event, body).await })
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

    pub(super) fn record(
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
        if let Gate::Open(wait) = e.gate() {
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
    pub(super) async fn after(&self, e: &Entry, outcome: &DeliveryOutcome) {
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
}
