//! The relay: claims committed outbox rows, publishes them, acknowledges them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hookwire_core::{Backoff, Event, Jitter, RetryPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ClaimedRow, CommitSignal, Failure, Lease, OutboxStore};
use crate::error::{Error, ErrorKind, Result};

/// Where a relay publishes: the bus implements it; tests and bridges may too.
///
/// `publish_batch` returns `Ok` only when every event of the batch is durable downstream. On
/// `Err` the relay publishes the batch's events one by one to find the failing ones, so a batch
/// may be published partly twice: publishing must tolerate duplicates (consumers remove them by
/// event id).
pub trait Publish: Send + Sync + 'static {
    /// Publishes events, in order.
    fn publish_batch(&self, events: &[Event]) -> impl Future<Output = Result<()>> + Send;
}

impl<P: Publish> Publish for Arc<P> {
    fn publish_batch(&self, events: &[Event]) -> impl Future<Output = Result<()>> + Send {
        (**self).publish_batch(events)
    }
}

/// The largest claim a relay makes per round.
pub const MAX_BATCH: usize = 10_000;

/// Options of a [`Relay`]; errors are reported by [`spawn`](RelayBuilder::spawn).
///
/// ```
/// use std::time::Duration;
/// let b = hookwire_events::outbox::Relay::builder()
///     .batch_size(100)
///     .lease(Duration::from_secs(30))
///     .poll_interval(Duration::from_millis(500));
/// # let _ = b;
/// ```
#[derive(Debug, Clone)]
pub struct RelayBuilder {
    batch: usize,
    lease: Duration,
    poll: Duration,
    retry: RetryPolicy,
}

impl Default for RelayBuilder {
    fn default() -> Self {
        Self {
            batch: 100,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            retry: RetryPolicy::new(9).with_backoff(
                Backoff::exponential(Duration::from_secs(1))
                    .with_max(Duration::from_secs(300))
                    .with_jitter(Jitter::Proportional(0.2)),
            ),
        }
    }
}

impl RelayBuilder {
    /// Rows claimed per round (default 100, at most [`MAX_BATCH`]).
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }
    /// How long a claim hides its rows (default 30 s). It must exceed the time a batch takes to
    /// publish: past it another relay may claim the rows again (a duplicate publish; the late
    /// relay's acknowledgement is then refused).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// How often an idle relay looks for due rows without a commit signal (default 500 ms). Rows
    /// backing off become due without a signal, so this also bounds how late a retry starts.
    #[must_use]
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }
    /// Retries of a failed publish: the backoff between attempts, and after `max_retries` the
    /// row is parked as a dead letter (default 9 retries, exponential from 1 s to 5 min, ±20 %).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Starts the relay on the current tokio runtime.
    pub fn spawn<S: OutboxStore, P: Publish>(self, store: Arc<S>, publisher: P) -> Result<Relay> {
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(Error::new(
                ErrorKind::Config,
                format!("relay batch size must be 1..={MAX_BATCH}"),
            ));
        }
        if self.lease.is_zero() || self.poll.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                "relay lease and poll interval must be positive",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("a relay needs a tokio runtime: {e}"),
            )
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(Counters::default());
        let worker = Worker {
            signal: store.commits(),
            store,
            publisher,
            cfg: self,
            stats: stats.clone(),
        };
        let task = runtime.spawn(worker.run(stop_rx));
        Ok(Relay {
            task: Some(task),
            stop: stop_tx,
            stats,
        })
    }
}

/// A running relay. It owns its task: [`shutdown`](Relay::shutdown) finishes the batch in hand
/// and stops; dropping the handle aborts the task at once (rows it held are claimed again when
/// their lease ends, nothing is lost).
///
/// Several relays may run against one store, in one process or many: claims never overlap.
#[derive(Debug)]
pub struct Relay {
    task: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    stats: Arc<Counters>,
}

/// What a relay has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RelayStats {
    /// Rows published and acknowledged.
    pub published: u64,
    /// Acknowledgements refused because the lease had passed to another claim (the row was
    /// published, and will be again by the new holder).
    pub stale_acks: u64,
    /// Failed publishes leased forward for a retry.
    pub retried: u64,
    /// Rows parked as dead letters.
    pub dead: u64,
    /// Store errors met while claiming or settling.
    pub store_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    stale_acks: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    store_errors: AtomicU64,
}

impl Relay {
    /// Options, with defaults.
    pub fn builder() -> RelayBuilder {
        RelayBuilder::default()
    }

    /// Counters since start.
    pub fn stats(&self) -> RelayStats {
        let s = &self.stats;
        RelayStats {
            published: s.published.load(Ordering::Relaxed),
            stale_acks: s.stale_acks.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            dead: s.dead.load(Ordering::Relaxed),
            store_errors: s.store_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops claiming, finishes the batch in hand (publish and settle) and waits for the task.
    ///
    /// Cancel safety: dropping this future aborts the task like dropping the relay.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
        }
        self.task = None;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Worker<S, P> {
    store: Arc<S>,
    publisher: P,
    cfg: RelayBuilder,
    stats: Arc<Counters>,
    signal: Option<CommitSignal>,
}

impl<S: OutboxStore, P: Publish> Worker<S, P> {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut errors: u32 = 0;
        while !*stop.borrow() {
            if let Some(s) = self.signal.as_mut() {
                s.mark_seen();
            }
            match self.store.claim(self.cfg.batch, self.cfg.lease).await {
                Ok(rows) if !rows.is_empty() => {
                    errors = 0;
                    self.process(rows).await;
                    // More rows may be due (a full batch, or rows held back behind the ones just
                    // acknowledged): claim again without waiting.
                    continue;
                }
                Ok(_) => errors = 0,
                Err(e) => {
                    errors = errors.saturating_add(1);
                    self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "outbox relay: claim failed");
                }
            }
            // Idle, or the store failed: wait for a commit, the poll interval (longer after
            // repeated store errors, up to 8×), or the stop signal.
            let wait = self.cfg.poll * 2u32.pow(errors.min(3));
            let signal = self.signal.as_mut();
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(wait) => {}
                () = async {
                    match signal {
                        Some(s) if errors == 0 => s.changed().await,
                        _ => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    async fn process(&self, rows: Vec<ClaimedRow>) {
        let mut leases = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        let mut attempts = Vec::with_capacity(rows.len());
        for row in rows {
            match row.event() {
                Ok(e) => {
                    leases.push(row.lease);
                    events.push(e);
                    attempts.push(row.attempts);
                }
                // A row that does not decode will never publish: park it at once.
                Err(e) => {
                    self.settle_failure(row.lease, Failure::dead(format!("undecodable: {e}")))
                        .await;
                }
            }
        }
        if events.is_empty() {
            return;
        }
        if self.publisher.publish_batch(&events).await.is_ok() {
            self.ack(&leases).await;
            return;
        }
        // The batch failed: find the failing events one by one so the others go on.
        let mut done = Vec::with_capacity(leases.len());
        for ((lease, event), attempt) in leases.iter().zip(&events).zip(&attempts) {
            match self
                .publisher
                .publish_batch(std::slice::from_ref(event))
                .await
            {
                Ok(()) => done.push(*lease),
                Err(e) => {
                    let failure = if *attempt >= self.cfg.retry.max_attempts() {
                        Failure::dead(e.to_string())
                    } else {
                        Failure::retry(
                            self.cfg.retry.delay(attempt.saturating_sub(1)),
                            e.to_string(),
                        )
                    };
                    self.settle_failure(*lease, failure).await;
                }
            }
        }
        self.ack(&done).await;
    }

    async fn ack(&self, leases: &[Lease]) {
        if leases.is_empty() {
            return;
        }
        match self.store.ack(leases).await {
            Ok(n) => {
                self.stats.published.fetch_add(n as u64, Ordering::Relaxed);
                let stale = leases.len().saturating_sub(n) as u64;
                if stale > 0 {
                    self.stats.stale_acks.fetch_add(stale, Ordering::Relaxed);
                    tracing::debug!(
                        stale,
                        "outbox relay: acknowledgement refused, the rows were claimed again"
                    );
                }
            }
            // The rows stay leased and are published again after the lease: a duplicate, never
            // a loss.
            Err(e) => {
                self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "outbox relay: acknowledgement failed");
            }
        }
    }

    async fn settle_failure(&self, lease: Lease, failure: Failure) {
        let dead = failure.retry_after().is_none();
        match self.store.fail(lease, &failure).await {
            Ok(true) if dead => {
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    row = lease.id(),
                    error = failure.error(),
                    "outbox row parked"
                );
            }
            Ok(true) => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {
                self.stats.stale_acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "outbox relay: recording a failure failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::MemoryOutbox;

    struct Nowhere;
    impl Publish for Nowhere {
        async fn publish_batch(&self, _: &[Event]) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn unusable_settings_are_config_errors_at_spawn() {
        let store = Arc::new(MemoryOutbox::new());
        for b in [
            Relay::builder().batch_size(0),
            Relay::builder().batch_size(MAX_BATCH + 1),
            Relay::builder().lease(Duration::ZERO),
            Relay::builder().poll_interval(Duration::ZERO),
        ] {
            let err = b.spawn(store.clone(), Nowhere).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        }
        assert!(Relay::builder().spawn(store, Nowhere).is_ok());
    }

    #[test]
    fn spawning_outside_a_runtime_is_a_config_error() {
        let err = Relay::builder()
            .spawn(Arc::new(MemoryOutbox::new()), Nowhere)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
