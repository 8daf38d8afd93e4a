//! Where transitions go once they are durable: a small trait an event bus implements, and an
//! in-memory implementation that records and broadcasts.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use hookwire_core::{BoxFuture, Event};
use tokio::sync::broadcast;

use crate::error::Result;

/// Receives every transition of every run after it is stored, as an event named
/// `workflow.<id>.<transition>` whose `stream` is the run id and whose `version` is the run's
/// transition sequence (1, 2, 3… per run; gaps mean a publish was lost, and the run's journal
/// still has it). The event id is `<run>-<sequence>`, so a bus can de-duplicate re-publishes.
///
/// The engine publishes after the transition is durable and never fails an operation because a
/// publish failed (it logs a warning). Two transitions of one run applied concurrently on
/// different tasks may be published out of order: order by `version`.
pub trait TransitionSink: Send + Sync + fmt::Debug + 'static {
    /// Publishes one transition.
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<()>>;
}

/// Transitions recorded in [`MemorySink`] before the oldest is dropped.
pub const DEFAULT_SINK_CAPACITY: usize = 10_000;

/// Records the last transitions and broadcasts each one (slow receivers lose the oldest).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use hookwire_workflow::{MemorySink, TransitionSink};
/// let sink = MemorySink::new();
/// let mut rx = sink.subscribe();
/// let e = hookwire_core::Event::new("workflow.order.started", serde_json::Value::Null);
/// sink.publish(&e).await.unwrap();
/// assert_eq!(rx.recv().await.unwrap().name, "workflow.order.started");
/// assert_eq!(sink.events().len(), 1);
/// # });
/// ```
pub struct MemorySink {
    tx: broadcast::Sender<Event>,
    log: Mutex<VecDeque<Event>>,
    capacity: usize,
}

impl fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySink")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// A sink keeping the last [`DEFAULT_SINK_CAPACITY`] transitions.
    pub fn new() -> Self {
        Self::sized(DEFAULT_SINK_CAPACITY)
    }
    /// A sink keeping the last `capacity` transitions (and a broadcast buffer as deep). A
    /// capacity of 0 is refused (`ErrorKind::Config`): the broadcast channel needs room for
    /// one transition.
    ///
    /// ```
    /// use hookwire_workflow::{ErrorKind, MemorySink};
    /// assert!(MemorySink::with_capacity(8).is_ok());
    /// assert_eq!(MemorySink::with_capacity(0).unwrap_err().kind(), ErrorKind::Config);
    /// ```
    pub fn with_capacity(capacity: usize) -> crate::Result<Self> {
        if capacity == 0 {
            return Err(crate::Error::config(
                "MemorySink capacity must be at least 1, got 0",
            ));
        }
        Ok(Self::sized(capacity))
    }
    fn sized(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            log: Mutex::new(VecDeque::new()),
            capacity,
        }
    }
    /// A receiver of every later transition.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
    /// The recorded transitions, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.lock().iter().cloned().collect()
    }
    /// The recorded transitions of one run, oldest first.
    pub fn events_of(&self, run: &str) -> Vec<Event> {
        self.lock()
            .iter()
            .filter(|e| e.stream == run)
            .cloned()
            .collect()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TransitionSink for MemorySink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            {
                let mut log = self.lock();
                log.push_back(event.clone());
                while log.len() > self.capacity {
                    log.pop_front();
                }
            }
            // No receiver is not an error: the log keeps the event.
            let _ = self.tx.send(event.clone());
            Ok(())
        })
    }
}

/// The event bus is the production sink: every transition becomes a `workflow.<id>.<transition>`
/// event that webhooks, the SSE/WebSocket gateway and other services subscribe to.
#[cfg(feature = "events")]
impl TransitionSink for hookwire_events::Bus {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            hookwire_events::Bus::publish(self, event.clone())
                .await
                .map_err(crate::Error::store)
        })
    }
}
