//! [`Bus`]: publish, group and broadcast subscriptions, dead letters, shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hookwire_core::{Backoff, Event, Jitter, Pattern};

use crate::dead::DeadLetter;
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Handler;
use crate::registry::{Registry, ValidateMode};
use crate::runner::Runner;
use crate::transport::{Control, Delivery, Driver, Encoded, Mode, Start, SubSpec, Transport};

/// Default largest event, in bytes of its JSON form: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Largest `max_event_bytes` accepted: Redis strings stop at 512 MiB.
pub const MAX_EVENT_BYTES_LIMIT: usize = 512 * 1024 * 1024;
/// Default most events per `publish_many`.
pub const DEFAULT_MAX_BATCH: usize = 1000;
/// Default handler timeout (a timeout counts as a failed delivery).
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deliveries before an event goes to the dead letters.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
/// Default handlers running at once per subscription (different partition keys).
pub const DEFAULT_HANDLER_CONCURRENCY: usize = 32;
/// Default events held in memory per subscription (read but not yet acknowledged).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// Longest event type and group name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A consumer group: every event once per group across all nodes. Where a *new* group starts
/// is always said explicitly; an existing group continues where it is.
///
/// ```
/// let g = hookwire_events::Group::from_beginning("billing");
/// assert_eq!(g.name(), "billing");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    name: String,
    start: Start,
}

impl Group {
    /// A group that, when created, sees only events published from now on.
    pub fn at_end(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            start: Start::End,
        }
    }
    /// A group that, when created, first reads every event still in the stream.
    pub fn from_beginning(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            start: Start::Beginning,
        }
    }
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Group names: 1–256 bytes of `[A-Za-z0-9_.:-]`, so they are safe inside Redis keys and
/// dead-letter ids.
pub(crate) fn validate_group(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    {
        return Err(Error::invalid(format!(
            "group name {name:?} must be 1-{MAX_NAME_LEN} bytes of [A-Za-z0-9_.:-]"
        )));
    }
    Ok(())
}

/// Builds a [`Bus`]; setters never fail, [`BusBuilder::build`] reports bad options.
#[derive(Debug)]
#[must_use]
pub struct BusBuilder {
    transport: Transport,
    registry: Option<Registry>,
    backoff: Backoff,
    max_deliveries: u32,
    max_event_bytes: usize,
    max_batch: usize,
    handler_timeout: Duration,
    concurrency: usize,
    max_in_flight: usize,
    fail_open: bool,
}

impl BusBuilder {
    /// Validates payloads on publish and upcasts them on read.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }
    /// The delay before redelivery number `r` (default exponential from 100 ms, capped at 30 s,
    /// ±20 % jitter). The handler's slot is free while an event waits.
    pub fn retry(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
    /// Deliveries per group before the event goes to the dead letters (default 5, at least 1).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }
    /// Largest event in bytes of its JSON form (default 1 MiB); larger ones fail `publish` with
    /// [`ErrorKind::TooLarge`].
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.max_event_bytes = n;
        self
    }
    /// Most events per `publish_many` (default 1000).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }
    /// How long one handler call may run (default 30 s); a timeout is a failed delivery.
    pub fn handler_timeout(mut self, d: Duration) -> Self {
        self.handler_timeout = d;
        self
    }
    /// Handler calls running at once per subscription, across partition keys (default 32).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Events read but not yet acknowledged, per subscription (default 1000): bounds memory.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }
    /// When true, a publish the transport refused is logged, counted ([`Bus::dropped`]) and
    /// reported as success. Off by default: `publish` fails when the event is not durable.
    pub fn fail_open(mut self, yes: bool) -> Self {
        self.fail_open = yes;
        self
    }

    /// The bus, or [`ErrorKind::Config`] for an unusable option.
    pub fn build(self) -> Result<Bus> {
        if let Some(why) = &self.transport.invalid {
            return Err(Error::config(why.clone()));
        }
        if self.max_deliveries == 0 {
            return Err(Error::config("max_deliveries must be at least 1"));
        }
        if self.max_event_bytes == 0 || self.max_event_bytes > MAX_EVENT_BYTES_LIMIT {
            return Err(Error::config(format!(
                "max_event_bytes must be 1..={MAX_EVENT_BYTES_LIMIT}"
            )));
        }
        if self.max_batch == 0 || self.max_batch > 100_000 {
            return Err(Error::config("max_batch must be 1..=100000"));
        }
        if self.handler_timeout.is_zero() {
            return Err(Error::config("handler_timeout must be positive"));
        }
        if self.concurrency == 0 || self.max_in_flight < self.concurrency {
            return Err(Error::config(
                "concurrency must be at least 1 and max_in_flight at least concurrency",
            ));
        }
        Ok(Bus {
            inner: Arc::new(Inner {
                driver: self.transport.driver,
                registry: self.registry.map(Arc::new),
                delivery: Arc::new(Delivery {
                    backoff: self.backoff,
                    max_deliveries: self.max_deliveries,
                    concurrency: self.concurrency,
                    max_in_flight: self.max_in_flight,
                }),
                max_event_bytes: self.max_event_bytes,
                max_batch: self.max_batch,
                handler_timeout: self.handler_timeout,
                fail_open: self.fail_open,
                dropped: AtomicU64::new(0),
                subs: Mutex::new(Vec::new()),
                groups: Mutex::new(HashSet::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }
}

/// The event bus. Cheap to clone; clones share subscriptions and settings.
///
/// See the crate documentation for the delivery contract.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    driver: Arc<dyn Driver>,
    registry: Option<Arc<Registry>>,
    delivery: Arc<Delivery>,
    max_event_bytes: usize,
    max_batch: usize,
    handler_timeout: Duration,
    fail_open: bool,
    dropped: AtomicU64,
    subs: Mutex<Vec<Arc<Control>>>,
    groups: Mutex<HashSet<String>>,
    closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for c in self
            .subs
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            c.signal();
        }
    }
}

/// A running subscription. Dropping it stops the subscription (in-flight handler calls
/// finish); [`BusSubscription::stop`] also waits for that.
#[derive(Debug)]
#[must_use = "dropping a BusSubscription stops it"]
pub struct BusSubscription {
    control: Arc<Control>,
}

impl BusSubscription {
    /// Stops reading, lets in-flight handler calls finish and acknowledges them.
    pub async fn stop(self) {
        self.control.stop().await;
    }
}

impl Drop for BusSubscription {
    fn drop(&mut self) {
        self.control.signal();
    }
}

/// The dead-letter store of a bus: list, inspect, redrive, discard.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetters<'a> {
    bus: &'a Bus,
}

impl DeadLetters<'_> {
    /// Up to `limit` dead letters (at most 1000), oldest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.bus.inner.driver.dl_list(limit.min(1000)).await
    }
    /// One dead letter.
    pub async fn get(&self, id: &str) -> Result<Option<DeadLetter>> {
        self.bus.inner.driver.dl_get(id).await
    }
    /// Publishes the dead letter's exact event bytes again, for its group only, and removes it
    /// from the store; [`ErrorKind::NotFound`] when it is gone.
    pub async fn redrive(&self, id: &str) -> Result<()> {
        if self.bus.inner.driver.dl_redrive(id).await? {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("no dead letter {id}"),
            ))
        }
    }
    /// Deletes a dead letter; false when it was not there.
    pub async fn discard(&self, id: &str) -> Result<bool> {
        self.bus.inner.driver.dl_discard(id).await
    }
}

impl Bus {
    /// A builder on `transport` with the defaults above.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hookwire_events::{Bus, MemoryTransport};
    /// let bus = Bus::builder(MemoryTransport::new()).max_deliveries(0).build();
    /// assert_eq!(bus.unwrap_err().kind(), hookwire_events::ErrorKind::Config);
    /// # }
    /// ```
    pub fn builder(transport: impl Into<Transport>) -> BusBuilder {
        BusBuilder {
            transport: transport.into(),
            registry: None,
            backoff: Backoff::exponential(Duration::from_millis(100))
                .with_max(Duration::from_secs(30))
                .with_jitter(Jitter::Proportional(0.2)),
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            concurrency: DEFAULT_HANDLER_CONCURRENCY,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            fail_open: false,
        }
    }

    /// The transport's name.
    pub fn transport_name(&self) -> &'static str {
        self.inner.driver.name()
    }

    fn prepare(&self, mut event: Event) -> Result<Encoded> {
        let name = &event.name;
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::invalid(format!(
                "event type must be 1-{MAX_NAME_LEN} bytes"
            )));
        }
        if name.starts_with('$') {
            return Err(Error::invalid(format!(
                "event type {name:?} uses the reserved '$' prefix"
            )));
        }
        if event.id.is_empty() {
            return Err(Error::invalid("event id must not be empty"));
        }
        crate::context::inherit(&mut event);
        if let Some(reg) = &self.inner.registry {
            reg.stamp(&mut event);
            match reg.mode() {
                ValidateMode::Off => {}
                ValidateMode::Warn => {
                    if let Err(e) = reg.validate(&event) {
                        tracing::warn!(event.id = %event.id, error = %e, "publishing an invalid event");
                    }
                }
                ValidateMode::Reject => reg.validate(&event)?,
            }
        }
        let bytes = event.to_json_bytes();
        if bytes.len() > self.inner.max_event_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "event {} is {} bytes, the limit is {}",
                    event.id,
                    bytes.len(),
                    self.inner.max_event_bytes
                ),
            ));
        }
        let key = event.effective_partition_key().map(|k| k.into_owned());
        Ok(Encoded { event, bytes, key })
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Shutdown, "the bus is shut down"));
        }
        Ok(())
    }

    /// Publishes one event. `Ok` means the transport made it durable (Redis Streams: it is in
    /// the stream); `Err` means it was not published and may be retried.
    ///
    /// Inside a handler (or [`with_correlation`](crate::with_correlation)) the event inherits
    /// the correlation id and names the handled event as its cause, unless already set.
    ///
    /// Cancel safety: dropping the future may or may not have published the event.
    pub async fn publish(&self, event: Event) -> Result<()> {
        self.publish_many(vec![event]).await
    }

    /// Publishes several events in one round trip, all or none (Redis: one `MULTI` pipeline).
    pub async fn publish_many(&self, events: Vec<Event>) -> Result<()> {
        self.check_open()?;
        if events.len() > self.inner.max_batch {
            return Err(Error::invalid(format!(
                "batch of {} events, the limit is {}",
                events.len(),
                self.inner.max_batch
            )));
        }
        if events.is_empty() {
            return Ok(());
        }
        let batch = events
            .into_iter()
            .map(|e| self.prepare(e))
            .collect::<Result<Vec<_>>>()?;
        match self.inner.driver.publish(&batch).await {
            Ok(()) => Ok(()),
            Err(e) if self.inner.fail_open && e.is_transport() => {
                let n = batch.len() as u64;
                let total = self.inner.dropped.fetch_add(n, Ordering::Relaxed) + n;
                tracing::error!(error = %e, dropped = n, total, "fail-open bus dropped events");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn runner(&self, handler: impl Handler) -> Arc<Runner> {
        Arc::new(Runner {
            handler: Arc::new(handler),
            timeout: self.inner.handler_timeout,
            registry: self.inner.registry.clone(),
        })
    }

    async fn start(
        &self,
        mode: Mode,
        pattern: &str,
        handler: impl Handler,
    ) -> Result<BusSubscription> {
        self.check_open()?;
        let pattern = Pattern::parse(pattern).map_err(|e| Error::new(ErrorKind::Invalid, e))?;
        let spec = SubSpec {
            mode,
            pattern,
            runner: self.runner(handler),
            delivery: self.inner.delivery.clone(),
        };
        let control = self.inner.driver.subscribe(spec).await?;
        let mut subs = self
            .inner
            .subs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|c| !c.is_stopped());
        subs.push(control.clone());
        Ok(BusSubscription { control })
    }

    /// Competing subscription: each event matching `pattern` is handled once per group across
    /// every node. One subscription per group per bus; every node of a group should use the same
    /// pattern (events a node's pattern does not match are acknowledged unhandled).
    pub async fn subscribe(
        &self,
        group: Group,
        pattern: &str,
        handler: impl Handler,
    ) -> Result<BusSubscription> {
        validate_group(&group.name)?;
        {
            let mut groups = self
                .inner
                .groups
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !groups.insert(group.name.clone()) {
                return Err(Error::invalid(format!(
                    "group {} already has a subscription on this bus",
                    group.name
                )));
            }
        }
        let name = group.name.clone();
        let r = self
            .start(
                Mode::Group {
                    name: group.name,
                    start: group.start,
                },
                pattern,
                handler,
            )
            .await;
        if r.is_err() {
            self.inner
                .groups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
        }
        r
    }

    /// Broadcast subscription: this node handles every matching event published from now on
    /// (every node with a broadcast subscription sees every event).
    pub async fn broadcast(&self, pattern: &str, handler: impl Handler) -> Result<BusSubscription> {
        self.start(Mode::Broadcast, pattern, handler).await
    }

    /// The dead-letter store.
    pub fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters { bus: self }
    }

    /// Events a fail-open bus reported as published but dropped.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// How many times `group` lost unread entries to the transport's hard length cap (always
    /// 0 on transports without one).
    pub async fn overruns(&self, group: &str) -> Result<u64> {
        self.inner.driver.overruns(group).await
    }

    /// Stops every subscription (no new reads; in-flight handler calls finish and are
    /// acknowledged), then closes the transport. Later publishes fail with
    /// [`ErrorKind::Shutdown`].
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let subs: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .subs
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for c in &subs {
            c.signal();
        }
        for c in subs {
            c.stop().await;
        }
        self.inner.driver.close().await;
    }
}

/// The bus is what an outbox [`Relay`](crate::outbox::Relay) publishes to: a relay's claim may be
/// larger than the bus's batch limit, so it is published in chunks of at most that limit. A chunk
/// that fails leaves the rows unacknowledged and the relay publishes them again later (the outbox
/// is at-least-once; consumers drop duplicates with an [`Inbox`](crate::Inbox)).
impl crate::outbox::Publish for Bus {
    async fn publish_batch(&self, events: &[Event]) -> Result<()> {
        for chunk in events.chunks(self.inner.max_batch) {
            self.publish_many(chunk.to_vec()).await?;
        }
        Ok(())
    }
}
