//! The transports a [`Bus`](crate::Bus) runs on. The driver trait is crate-private: the bus and
//! its transports share delivery, retry and dead-letter duties that are not a public contract.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::{Backoff, BoxFuture, Event, Pattern};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dead::DeadLetter;
use crate::error::Result;
use crate::runner::Runner;

pub(crate) mod memory;

/// A transport for [`Bus::builder`](crate::Bus::builder), converted from
/// [`MemoryTransport`](crate::MemoryTransport), [`RedisStreams`](crate::RedisStreams) or
/// [`RedisPubSub`](crate::RedisPubSub).
///
/// ```
/// let t: hookwire_events::Transport = hookwire_events::MemoryTransport::new().into();
/// assert_eq!(t.name(), "memory");
/// ```
#[derive(Clone, Debug)]
pub struct Transport {
    pub(crate) driver: Arc<dyn Driver>,
    /// A bad transport option, reported by `BusBuilder::build`.
    pub(crate) invalid: Option<String>,
}

impl Transport {
    pub(crate) fn new(driver: Arc<dyn Driver>) -> Self {
        Self {
            driver,
            invalid: None,
        }
    }
    /// The transport's short name (`memory`, `redis-streams`, `redis-pubsub`).
    pub fn name(&self) -> &'static str {
        self.driver.name()
    }
}

/// One event ready for the wire: encoded once.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub(crate) event: Event,
    pub(crate) bytes: Vec<u8>,
    pub(crate) key: Option<String>,
}

/// Where a new group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    End,
    Beginning,
}

/// Group or broadcast.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    Group { name: String, start: Start },
    Broadcast,
}

/// Delivery settings shared by every subscription of a bus.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) backoff: Backoff,
    pub(crate) max_deliveries: u32,
    pub(crate) concurrency: usize,
    pub(crate) max_in_flight: usize,
}

/// A subscription request.
#[derive(Clone)]
pub(crate) struct SubSpec {
    pub(crate) mode: Mode,
    pub(crate) pattern: Pattern,
    pub(crate) runner: Arc<Runner>,
    pub(crate) delivery: Arc<Delivery>,
}

impl fmt::Debug for SubSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubSpec")
            .field("mode", &self.mode)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

/// The stop switch and the task of one subscription.
#[derive(Debug)]
pub(crate) struct Control {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Control {
    /// A control and the receiver its task watches.
    pub(crate) fn new() -> (Arc<Self>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (
            Arc::new(Self {
                stop: tx,
                task: Mutex::new(None),
            }),
            rx,
        )
    }
    /// Hands the subscription's main task to the control.
    pub(crate) fn set_task(&self, h: JoinHandle<()>) {
        *self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(h);
    }
    /// Asks the task to stop (it finishes in-flight work first).
    pub(crate) fn signal(&self) {
        self.stop.send_replace(true);
    }
    /// True once stopping was asked for.
    pub(crate) fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }
    /// Signals and waits for the task to end.
    pub(crate) async fn stop(&self) {
        self.signal();
        let h = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = h {
            let _ = h.await;
        }
    }
}

/// Waits until `rx` says stop (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Sleeps for `d` unless stopped first; true when stopped.
pub(crate) async fn sleep_or_stop(rx: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *rx.borrow(),
        () = stopped(rx) => true,
    }
}

/// The bus's view of a transport.
pub(crate) trait Driver: Send + Sync + fmt::Debug {
    /// A short name for logs (`memory`, `redis-streams`, `redis-pubsub`).
    fn name(&self) -> &'static str;
    /// Makes the batch durable (or fails as a whole where the transport allows).
    fn publish<'a>(&'a self, batch: &'a [Encoded]) -> BoxFuture<'a, Result<()>>;
    /// Starts a subscription.
    fn subscribe(&self, spec: SubSpec) -> BoxFuture<'_, Result<Arc<Control>>>;
    /// Dead letters, oldest first.
    fn dl_list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>>>;
    /// One dead letter.
    fn dl_get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<DeadLetter>>>;
    /// Publishes a dead letter's event again for its group only; returns false when unknown.
    fn dl_redrive<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Deletes a dead letter; returns false when unknown.
    fn dl_discard<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Times the group lost entries to the hard length cap.
    fn overruns<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64>>;
    /// Releases transport resources after every subscription stopped.
    fn close(&self) -> BoxFuture<'_, ()>;
}
