//! The in-memory outbox store: for tests, the demo, and services whose state is in memory too.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    ClaimedRow, CommitNotifier, CommitSignal, DeadLetter, DeadLetters, Failure, Lease, NewEntry,
    OutboxStore, clamp_delay,
};
use crate::error::{Error, Result};

/// The default row limit of a [`MemoryOutbox`].
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;

/// An outbox in process memory, bounded by a row limit.
///
/// An append beyond the limit fails with a transport error (the events are not durable; retry
/// after the relay has drained some rows). Wakes relays in process on every append.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use hookwire_events::outbox::{MemoryOutbox, OutboxStore};
/// let outbox = MemoryOutbox::new();
/// outbox.enqueue(&hookwire_core::Event::new("order.created", serde_json::json!({}))).await.unwrap();
/// let rows = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
/// assert_eq!(rows.len(), 1);
/// assert_eq!(outbox.ack(&[rows[0].lease]).await.unwrap(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct MemoryOutbox {
    state: Mutex<State>,
    notifier: CommitNotifier,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    next_id: i64,
    rows: BTreeMap<i64, Row>,
    event_ids: HashSet<String>,
}

#[derive(Debug)]
struct Row {
    event_id: String,
    aggregate: String,
    payload: Vec<u8>,
    dead: bool,
    attempts: u32,
    token: i64,
    due: Instant,
    error: String,
}

impl Default for MemoryOutbox {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryOutbox {
    /// An empty outbox holding at most [`DEFAULT_MEMORY_CAPACITY`] rows.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_CAPACITY)
    }

    /// An empty outbox holding at most `capacity` rows (dead letters included).
    ///
    /// ```
    /// let o = hookwire_events::outbox::MemoryOutbox::with_capacity(10);
    /// assert_eq!(o.len(), 0);
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        let (notifier, _) = CommitSignal::channel();
        Self {
            state: Mutex::new(State::default()),
            notifier,
            capacity,
        }
    }

    /// Rows held, dead letters included.
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    /// True when no row is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a row half-written (every update is a
        // plain field store), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append_now(&self, entries: &[NewEntry<'_>]) -> Result<()> {
        let mut st = self.lock();
        if st.rows.len().saturating_add(entries.len()) > self.capacity {
            return Err(Error::transport(format!(
                "memory outbox is full ({} rows)",
                self.capacity
            )));
        }
        let mut batch = HashSet::new();
        for e in entries {
            if st.event_ids.contains(e.event_id()) || !batch.insert(e.event_id()) {
                return Err(Error::invalid(format!(
                    "event id {} is already in the outbox",
                    e.event_id()
                )));
            }
        }
        let now = Instant::now();
        for e in entries {
            st.next_id += 1;
            let id = st.next_id;
            st.event_ids.insert(e.event_id().to_owned());
            st.rows.insert(
                id,
                Row {
                    event_id: e.event_id().to_owned(),
                    aggregate: e.aggregate().to_owned(),
                    payload: e.payload().to_vec(),
                    dead: false,
                    attempts: 0,
                    token: 0,
                    due: now,
                    error: String::new(),
                },
            );
        }
        drop(st);
        self.notifier.notify();
        Ok(())
    }

    fn claim_now(&self, max: usize, lease: Duration) -> Vec<ClaimedRow> {
        let mut st = self.lock();
        let now = Instant::now();
        let mut held_back = HashSet::new();
        let mut out = Vec::new();
        for (id, row) in st.rows.iter_mut() {
            if out.len() >= max {
                break;
            }
            if row.dead {
                continue;
            }
            // The first live row of an aggregate decides for the whole aggregate: later rows
            // wait until it is gone, whether it is due, leased or backing off.
            if !row.aggregate.is_empty() && !held_back.insert(row.aggregate.clone()) {
                continue;
            }
            if row.due > now {
                continue;
            }
            row.token += 1;
            row.attempts = row.attempts.saturating_add(1);
            row.due = now + clamp_delay(lease);
            out.push(ClaimedRow::new(
                Lease::new(*id, row.token),
                row.attempts,
                row.aggregate.clone(),
                row.payload.clone(),
            ));
        }
        out
    }

    fn ack_now(&self, leases: &[Lease]) -> usize {
        let mut st = self.lock();
        let mut n = 0;
        for l in leases {
            let current = st
                .rows
                .get(&l.id())
                .is_some_and(|r| !r.dead && r.token == l.token());
            if let Some(row) = current.then(|| st.rows.remove(&l.id())).flatten() {
                st.event_ids.remove(&row.event_id);
                n += 1;
            }
        }
        n
    }

    fn fail_now(&self, lease: Lease, failure: &Failure) -> bool {
        let mut st = self.lock();
        let Some(row) = st.rows.get_mut(&lease.id()) else {
            return false;
        };
        if row.dead || row.token != lease.token() {
            return false;
        }
        row.error = failure.error().to_owned();
        match failure.retry_after() {
            Some(after) => row.due = Instant::now() + clamp_delay(after),
            None => row.dead = true,
        }
        true
    }
}

impl OutboxStore for MemoryOutbox {
    async fn append(&self, entries: &[NewEntry<'_>]) -> Result<()> {
        self.append_now(entries)
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<ClaimedRow>> {
        Ok(self.claim_now(max, lease))
    }

    async fn ack(&self, leases: &[Lease]) -> Result<usize> {
        Ok(self.ack_now(leases))
    }

    async fn fail(&self, lease: Lease, failure: &Failure) -> Result<bool> {
        let parked = failure.retry_after().is_none();
        let ok = self.fail_now(lease, failure);
        if ok && parked {
            // A parked row releases its aggregate: wake relays for the rows behind it.
            self.notifier.notify();
        }
        Ok(ok)
    }

    fn commits(&self) -> Option<CommitSignal> {
        Some(self.notifier.subscribe())
    }
}

impl DeadLetters for MemoryOutbox {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let st = self.lock();
        Ok(st
            .rows
            .iter()
            .filter(|(_, r)| r.dead)
            .take(limit)
            .map(|(id, r)| DeadLetter {
                id: *id,
                event_id: r.event_id.clone(),
                aggregate: r.aggregate.clone(),
                attempts: r.attempts,
                error: r.error.clone(),
                payload: r.payload.clone(),
            })
            .collect())
    }

    async fn redrive(&self, id: i64) -> Result<bool> {
        let ok = {
            let mut st = self.lock();
            match st.rows.get_mut(&id) {
                Some(r) if r.dead => {
                    r.dead = false;
                    r.attempts = 0;
                    r.due = Instant::now();
                    true
                }
                _ => false,
            }
        };
        if ok {
            self.notifier.notify();
        }
        Ok(ok)
    }
}
