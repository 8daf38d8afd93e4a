//! The transactional outbox: write an event in the same database transaction as the business
//! change, and let a [`Relay`] publish it afterwards.
//!
//! Without an outbox a service that commits to its database and then publishes has a gap: a crash
//! between the two loses the event, and a publish before the commit announces a change that may
//! roll back. With the outbox the event is a row committed together with the change; the relay
//! claims committed rows, publishes them and deletes them. The guarantee is **at least once**:
//! a relay that dies after publishing and before its acknowledgement lands publishes that row
//! again later, so consumers remove duplicates by event id (an inbox).
//!
//! # How rows move
//!
//! - **Claim by lease, never by "last seen id".** A relay claims due rows for a lease: the row's
//!   fencing token is incremented and the row is hidden until the lease ends. Ids are handed out
//!   when a transaction inserts, not when it commits, so a relay that remembered "everything up to
//!   id 41 is done" would skip a row 40 whose transaction committed late; claiming by state never
//!   skips anything.
//! - **Fencing.** Acknowledging or failing a row needs the token of the claim. A relay that
//!   outlived its lease (the row was claimed again by another relay) is refused and cannot delete
//!   the row from under the new holder.
//! - **Failure leases the row forward.** A failed publish sets the row due again after its backoff
//!   ([`RelayBuilder::retry`]); the rest of the batch goes on. After the policy's last attempt the
//!   row becomes a **dead letter** ([`DeadLetters`]), kept with its event and last error until it is
//!   redriven.
//! - **Per-aggregate order.** Rows of one aggregate (the event's `stream`, e.g. `order-7`) are
//!   published in id order: a row is not claimed while an earlier row of its aggregate is still
//!   pending, leased or backing off. A dead letter no longer holds its aggregate back. Events with
//!   an empty `stream` have no order among themselves. One claim holds at most one row per
//!   aggregate.
//!
//! # Stores
//!
//! | store | feature | wake-up on commit |
//! | --- | --- | --- |
//! | [`MemoryOutbox`] | — | in process |
//! | `PostgresOutbox` | `postgres` | `LISTEN`/`NOTIFY` (a trigger notifies on insert; delivered at commit) |
//! | `SqliteOutbox` | `sqlite` | in process, for writes made through the store |
//!
//! Every store passes one conformance suite (`hookwire_testkit::outbox`).

use std::future::Future;
use std::time::Duration;

use hookwire_core::Event;

use crate::error::{Error, Result};

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod relay;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::{DEFAULT_MEMORY_CAPACITY, MemoryOutbox};
#[cfg(feature = "postgres")]
pub use postgres::PostgresOutbox;
pub use relay::{MAX_BATCH, Publish, Relay, RelayBuilder, RelayStats};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteOutbox;

/// The largest encoded event the outbox accepts by default (1 MiB, counted in bytes).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One event to append, already encoded.
///
/// ```
/// let e = hookwire_events::outbox::NewEntry::new("evt_1", "order-7", b"{}");
/// assert_eq!(e.aggregate(), "order-7");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    event_id: &'a str,
    aggregate: &'a str,
    payload: &'a [u8],
}

impl<'a> NewEntry<'a> {
    /// An entry: the event id (unique in the outbox), its aggregate (empty for none) and the
    /// encoded event.
    pub fn new(event_id: &'a str, aggregate: &'a str, payload: &'a [u8]) -> Self {
        Self {
            event_id,
            aggregate,
            payload,
        }
    }
    /// The event id.
    pub fn event_id(&self) -> &'a str {
        self.event_id
    }
    /// The aggregate whose order the row keeps (empty: none).
    pub fn aggregate(&self) -> &'a str {
        self.aggregate
    }
    /// The encoded event.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// The proof of one claim of one row: its id and the fencing token the claim got.
///
/// ```
/// let l = hookwire_events::outbox::Lease::new(7, 2);
/// assert_eq!((l.id(), l.token()), (7, 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    id: i64,
    token: i64,
}

impl Lease {
    /// A lease from its parts (stores build these; tests forge stale ones).
    pub fn new(id: i64, token: i64) -> Self {
        Self { id, token }
    }
    /// The row id.
    pub fn id(&self) -> i64 {
        self.id
    }
    /// The fencing token: incremented at every claim of the row.
    pub fn token(&self) -> i64 {
        self.token
    }
}

/// A claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimedRow {
    /// What the claim holds.
    pub lease: Lease,
    /// How many times the row has been claimed, this claim included (1 on the first).
    pub attempts: u32,
    /// The row's aggregate (empty: none).
    pub aggregate: String,
    /// The encoded event.
    pub payload: Vec<u8>,
}

impl ClaimedRow {
    /// A claimed row (for store implementations).
    pub fn new(lease: Lease, attempts: u32, aggregate: String, payload: Vec<u8>) -> Self {
        Self {
            lease,
            attempts,
            aggregate,
            payload,
        }
    }
    /// Decodes the event.
    pub fn event(&self) -> Result<Event> {
        decode(&self.payload)
    }
}

/// What to do with a row whose publish failed.
///
/// ```
/// use std::time::Duration;
/// use hookwire_events::outbox::Failure;
/// let f = Failure::retry(Duration::from_secs(1), "broker down");
/// assert_eq!(f.error(), "broker down");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    retry_after: Option<Duration>,
    error: String,
}

impl Failure {
    /// Make the row due again after `after` (the lease is moved forward).
    pub fn retry(after: Duration, error: impl Into<String>) -> Self {
        Self {
            retry_after: Some(after),
            error: truncate_error(error.into()),
        }
    }
    /// Park the row as a dead letter.
    pub fn dead(error: impl Into<String>) -> Self {
        Self {
            retry_after: None,
            error: truncate_error(error.into()),
        }
    }
    /// The delay before the next attempt; `None` for a dead letter.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    /// The error text kept with the row (at most [`MAX_ERROR_BYTES`]).
    pub fn error(&self) -> &str {
        &self.error
    }
}

/// The longest error text kept with a row; longer texts are cut at a character boundary.
pub const MAX_ERROR_BYTES: usize = 4096;

fn truncate_error(mut s: String) -> String {
    if s.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A parked row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The row id (pass it to [`DeadLetters::redrive`]).
    pub id: i64,
    /// The event id.
    pub event_id: String,
    /// The row's aggregate.
    pub aggregate: String,
    /// Claims made before it was parked.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// The encoded event.
    pub payload: Vec<u8>,
}

impl DeadLetter {
    /// Decodes the event.
    pub fn event(&self) -> Result<Event> {
        decode(&self.payload)
    }
}

/// Storage for outbox rows.
///
/// Four required methods on raw rows; [`enqueue`](OutboxStore::enqueue) and the other typed
/// helpers are provided. A store must make `claim` safe against concurrent claimers (no row is
/// held by two unexpired leases) and keep the order and fencing rules of the [module](self).
///
/// Cancel safety: dropping a returned future before it completes may or may not have applied the
/// operation; a claim that was applied but never returned is released when its lease ends.
pub trait OutboxStore: Send + Sync + 'static {
    /// Appends rows outside any user transaction (the SQL stores also write inside the caller's
    /// own transaction). An event id already in the outbox is an [`Invalid`](crate::ErrorKind::Invalid)
    /// error and nothing of the call is written.
    fn append(&self, entries: &[NewEntry<'_>]) -> impl Future<Output = Result<()>> + Send;

    /// Claims up to `max` due rows for `lease`, oldest first, at most one per aggregate, skipping
    /// rows another claimer holds.
    fn claim(
        &self,
        max: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<ClaimedRow>>> + Send;

    /// Deletes published rows whose lease is still current; returns how many were deleted. A
    /// stale lease (the row was claimed again since) is refused and does not count.
    fn ack(&self, leases: &[Lease]) -> impl Future<Output = Result<usize>> + Send;

    /// Moves a row's lease forward by the failure's delay, or parks it as a dead letter; false
    /// when the lease is stale.
    fn fail(&self, lease: Lease, failure: &Failure) -> impl Future<Output = Result<bool>> + Send;

    /// Encodes and appends one event (its `stream` is the aggregate).
    fn enqueue(&self, event: &Event) -> impl Future<Output = Result<()>> + Send {
        self.enqueue_many(std::slice::from_ref(event))
    }

    /// Encodes and appends events in one write.
    fn enqueue_many(&self, events: &[Event]) -> impl Future<Output = Result<()>> + Send {
        async move {
            let encoded = encode_all(events)?;
            self.append(&entries(events, &encoded)).await
        }
    }

    /// A signal that new rows may have been committed, for relays to wake on. `None` (the
    /// default) leaves relays to their polling interval.
    fn commits(&self) -> Option<CommitSignal> {
        None
    }
}

/// Inspect and redrive parked rows.
pub trait DeadLetters: OutboxStore {
    /// Up to `limit` dead letters, oldest first.
    fn dead_letters(&self, limit: usize) -> impl Future<Output = Result<Vec<DeadLetter>>> + Send;
    /// Makes a dead letter due again with its attempts reset; false when no such dead letter.
    fn redrive(&self, id: i64) -> impl Future<Output = Result<bool>> + Send;
}

/// Wakes relays when rows may have been committed.
///
/// Each clone keeps its own "seen" mark, so a commit that happens while a relay is busy is not
/// lost: the relay's next wait returns at once.
#[derive(Debug, Clone)]
pub struct CommitSignal {
    rx: tokio::sync::watch::Receiver<u64>,
}

impl CommitSignal {
    /// A signal and the sender that fires it.
    pub fn channel() -> (CommitNotifier, Self) {
        let (tx, rx) = tokio::sync::watch::channel(0);
        (CommitNotifier { tx }, Self { rx })
    }
    /// Marks everything until now as seen.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }
    /// Waits for a commit after the last [`mark_seen`](Self::mark_seen). Returns at once when the
    /// notifier is gone (the caller then falls back to its polling interval).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The sending half of a [`CommitSignal`].
#[derive(Debug, Clone)]
pub struct CommitNotifier {
    tx: tokio::sync::watch::Sender<u64>,
}

impl CommitNotifier {
    /// Wakes every relay waiting on a signal of this notifier.
    pub fn notify(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }
    /// A new signal from this notifier.
    pub fn subscribe(&self) -> CommitSignal {
        CommitSignal {
            rx: self.tx.subscribe(),
        }
    }
}

/// Encodes an event for the outbox, enforcing the size limit.
pub(crate) fn encode(event: &Event, max_bytes: usize) -> Result<Vec<u8>> {
    if event.id.is_empty() {
        return Err(Error::invalid("an outbox event needs a non-empty id"));
    }
    let bytes =
        serde_json::to_vec(event).map_err(|e| Error::new(crate::ErrorKind::Serialize, e))?;
    if bytes.len() > max_bytes {
        return Err(Error::invalid(format!(
            "event {} is {} bytes encoded, the outbox limit is {max_bytes}",
            event.id,
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Leases and backoffs longer than this are cut to it (about 100 years), so no clock arithmetic
/// overflows whatever a caller passes.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A lease or backoff, cut to [`MAX_DELAY`].
pub(crate) fn clamp_delay(d: Duration) -> Duration {
    d.min(MAX_DELAY)
}

/// Encodes events with the default size limit.
pub(crate) fn encode_all(events: &[Event]) -> Result<Vec<Vec<u8>>> {
    events
        .iter()
        .map(|e| encode(e, DEFAULT_MAX_EVENT_BYTES))
        .collect()
}

/// Rows for events and their encodings (the event's `stream` is the aggregate).
pub(crate) fn entries<'a>(events: &'a [Event], encoded: &'a [Vec<u8>]) -> Vec<NewEntry<'a>> {
    events
        .iter()
        .zip(encoded)
        .map(|(e, p)| NewEntry::new(&e.id, &e.stream, p))
        .collect()
}

fn decode(payload: &[u8]) -> Result<Event> {
    serde_json::from_slice(payload).map_err(|e| Error::new(crate::ErrorKind::Serialize, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_events_are_refused_with_a_typed_error() {
        let e = Event::new("a", serde_json::Value::String("x".repeat(2000)));
        let err = encode(&e, 1000).unwrap_err();
        assert!(err.is_invalid());
        assert!(encode(&e, 10_000).is_ok());
    }

    #[test]
    fn long_errors_are_cut_at_a_char_boundary() {
        let f = Failure::dead("é".repeat(MAX_ERROR_BYTES));
        assert!(f.error().len() <= MAX_ERROR_BYTES);
        assert!(f.error().chars().all(|c| c == 'é'));
    }
}

/// The outbox guide's examples, compiled so they cannot rot.
#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../../../../docs/hookwire-events-outbox.md")]
struct OutboxGuide;
