//! [`EventBroadcast`]: application events (not state) to SSE subscribers with pattern filters
//! (`order.*`), organization scoping and `Last-Event-ID` resume.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use hookwire_core::{Event, Pattern};

use crate::frame::Frame;
use crate::queue::{Counters, QueueLimits, StreamSubscription, SubShared, Unsubscribe};

/// Which events a subscriber receives.
///
/// ```
/// use hookwire_core::Event;
/// use hookwire_sse::EventFilter;
/// let f = EventFilter::parse("order.*,invoice.paid").unwrap().organization("acme");
/// let e = Event::new("order.created", serde_json::json!({})).with_organization("acme");
/// assert!(f.matches(&e));
/// assert!(!f.matches(&Event::new("order.created", serde_json::json!({})).with_organization("globex")));
/// assert!(!f.matches(&Event::new("invoice.sent", serde_json::json!({})).with_organization("acme")));
/// ```
#[derive(Debug, Clone)]
pub struct EventFilter {
    patterns: Vec<Pattern>,
    organization: Option<String>,
}

/// Most patterns in one filter.
pub const MAX_FILTER_PATTERNS: usize = 32;

impl EventFilter {
    /// A filter matching any of `patterns` (no patterns: nothing matches).
    pub fn new(patterns: Vec<Pattern>) -> Self {
        Self {
            patterns,
            organization: None,
        }
    }

    /// Parses a comma-separated pattern list (`order.*,invoice.paid`), at most
    /// [`MAX_FILTER_PATTERNS`] entries.
    pub fn parse(list: &str) -> crate::Result<Self> {
        let parts: Vec<&str> = list.split(',').map(str::trim).collect();
        if parts.len() > MAX_FILTER_PATTERNS {
            return Err(crate::Error::invalid(format!(
                "more than {MAX_FILTER_PATTERNS} patterns"
            )));
        }
        parts
            .into_iter()
            .map(|p| Pattern::parse(p).map_err(|e| crate::Error::invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// The filter's patterns.
    ///
    /// ```
    /// let f = hookwire_sse::EventFilter::parse("order.*, user.created").unwrap();
    /// assert_eq!(f.patterns().len(), 2);
    /// ```
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Only events of organization `org` (events without an organization never match). Set
    /// this from the authenticated principal so tenants never see each other's events.
    #[must_use]
    pub fn organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(org) = &self.organization
            && event.organization_id() != Some(org.as_str())
        {
            return false;
        }
        self.patterns.iter().any(|p| p.matches(&event.name))
    }
}

struct Published {
    frame: Frame,
    event: Arc<Event>,
}

struct State {
    subs: Vec<(Arc<SubShared>, EventFilter)>,
    history: VecDeque<Published>,
    shut: bool,
}

struct EvInner {
    state: Mutex<State>,
    seq: AtomicU64,
    next_id: AtomicU64,
    history_len: usize,
    queue: QueueLimits,
    counters: Counters,
    keep_alive: std::sync::OnceLock<()>,
}

impl Unsubscribe for EvInner {
    fn unsubscribe(&self, _key: &str, id: u64) {
        let mut st = crate::lock(&self.state);
        if let Some(i) = st.subs.iter().position(|(s, _)| s.id == id) {
            st.subs.swap_remove(i);
        }
    }
}

impl Drop for EvInner {
    fn drop(&mut self) {
        for (s, _) in &crate::lock(&self.state).subs {
            s.close();
        }
    }
}

/// Fan-out of application events with per-subscriber filters.
///
/// Every event gets a channel-wide sequence number used as the SSE `id:`; a reconnect with
/// `Last-Event-ID` replays the matching events still in the history (default 1024 events),
/// or a `_resync` frame when some were already dropped.
///
/// ```
/// use hookwire_core::Event;
/// use hookwire_sse::{EventBroadcast, EventFilter};
/// let b = EventBroadcast::new(1024);
/// let mut sub = b.subscribe(EventFilter::parse("order.*").unwrap(), None);
/// b.publish(&Event::new("order.paid", serde_json::json!({"id": 1})));
/// b.publish(&Event::new("user.created", serde_json::json!({})));
/// let f = sub.try_next().unwrap();
/// assert!(std::str::from_utf8(&f.sse()).unwrap().contains("event: order.paid"));
/// assert!(sub.try_next().is_none());
/// ```
#[derive(Clone)]
pub struct EventBroadcast {
    inner: Arc<EvInner>,
}

impl fmt::Debug for EventBroadcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBroadcast")
            .field("history_len", &self.inner.history_len)
            .finish_non_exhaustive()
    }
}

impl EventBroadcast {
    /// A broadcast keeping the last `history_len` events for resume.
    pub fn new(history_len: usize) -> Self {
        Self::with_queue(history_len, QueueLimits::default())
    }

    /// Like [`new`](Self::new) with explicit per-subscriber queue bounds.
    pub fn with_queue(history_len: usize, queue: QueueLimits) -> Self {
        Self {
            inner: Arc::new(EvInner {
                state: Mutex::new(State {
                    subs: Vec::new(),
                    history: VecDeque::new(),
                    shut: false,
                }),
                seq: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                history_len,
                queue,
                counters: Counters::default(),
                keep_alive: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sends `event` to every subscriber whose filter matches; encoded once. Returns the frame
    /// (its version is the sequence number).
    pub fn publish(&self, event: &Event) -> Frame {
        let json = event.to_json_bytes();
        let mut st = crate::lock(&self.inner.state);
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = Frame::event(seq, Some(&seq.to_string()), Some(&event.name), json);
        let counters = &self.inner.counters;
        let delivered = st
            .subs
            .iter()
            .filter(|(sub, filter)| filter.matches(event) && sub.push(&frame, counters))
            .count();
        counters
            .delivered
            .fetch_add(delivered as u64, Ordering::Relaxed);
        if self.inner.history_len > 0 {
            if st.history.len() >= self.inner.history_len {
                st.history.pop_front();
            }
            st.history.push_back(Published {
                frame: frame.clone(),
                event: Arc::new(event.clone()),
            });
        }
        frame
    }

    /// Subscribes with `filter`, resuming after sequence `last` when given.
    pub fn subscribe(&self, filter: EventFilter, last: Option<u64>) -> StreamSubscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(SubShared::new(id, self.inner.queue));
        let mut st = crate::lock(&self.inner.state);
        if let Some(l) = last {
            let current = self.inner.seq.load(Ordering::Relaxed);
            let oldest = st.history.front().and_then(|p| p.frame.version());
            let covered = l >= current || oldest.is_some_and(|o| o <= l + 1);
            if covered {
                shared.preload(
                    st.history
                        .iter()
                        .filter(|p| {
                            p.frame.version().is_some_and(|v| v > l) && filter.matches(&p.event)
                        })
                        .map(|p| p.frame.clone()),
                );
            } else {
                shared.preload([Frame::resync()]);
            }
        }
        if st.shut {
            shared.close();
        } else {
            st.subs.push((Arc::clone(&shared), filter));
        }
        drop(st);
        let owner: Weak<EvInner> = Arc::downgrade(&self.inner);
        let owner: Weak<dyn Unsubscribe> = owner;
        StreamSubscription {
            shared,
            key: Arc::from(""),
            owner,
            log: None,
            join: false,
        }
    }

    /// Ends every subscription, and every later one at once: for a graceful shutdown, whose
    /// server waits for open responses (an SSE stream never ends by itself). Publishing still
    /// fills the history; nothing is delivered.
    pub fn shutdown(&self) {
        let subs = {
            let mut st = crate::lock(&self.inner.state);
            st.shut = true;
            std::mem::take(&mut st.subs)
        };
        for (s, _) in subs {
            s.close();
        }
    }

    /// Queues a keep-alive comment to every idle subscriber, once.
    pub fn keep_alive_tick(&self) {
        for (sub, _) in &crate::lock(&self.inner.state).subs {
            sub.push_keep_alive(true);
        }
    }

    /// Starts (once) one shared task calling [`keep_alive_tick`](Self::keep_alive_tick)
    /// every `period`. Must be called inside a Tokio runtime; the task ends with the
    /// broadcast.
    pub fn start_keep_alive(&self, period: std::time::Duration) {
        if self.inner.keep_alive.set(()).is_err() {
            return;
        }
        crate::queue::spawn_ticker(Arc::downgrade(&self.inner), period, |inner| {
            EventBroadcast { inner }.keep_alive_tick();
        });
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        crate::lock(&self.inner.state).subs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resume_replays_only_matching_missed_events_or_resyncs() {
        let b = EventBroadcast::new(3);
        for name in ["order.a", "user.b", "order.c", "order.d"] {
            b.publish(&Event::new(name, json!({})));
        }
        let f = EventFilter::parse("order.*").unwrap();
        let mut s = b.subscribe(f.clone(), Some(2));
        let ids: Vec<_> = std::iter::from_fn(|| s.try_next())
            .map(|f| f.version())
            .collect();
        assert_eq!(ids, [Some(3), Some(4)]);
        // Event 1 fell out of the 3-event history: a resume from 0 cannot be exact.
        let mut s = b.subscribe(f.clone(), Some(0));
        assert_eq!(s.try_next().unwrap().kind(), crate::FrameKind::Resync);
        // Up to date: nothing.
        let mut s = b.subscribe(f, Some(4));
        assert!(s.try_next().is_none());
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(EventFilter::parse("order.*,").is_err());
        assert!(EventFilter::parse(&vec!["a"; 40].join(",")).is_err());
    }
}
