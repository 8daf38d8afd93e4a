//! Per-subscriber bounded queues and the [`StreamSubscription`] stream.
//!
//! Policy: a publish never waits for a subscriber. Each subscriber's backlog is bounded in
//! frames and bytes; when a frame would exceed either bound the backlog is dropped and one
//! shared `_resync` frame is queued instead, so a stalled client costs at most the bound and,
//! when it reads again, refetches the state instead of replaying a backlog.
//!
//! A channel subscriber's backlog is its own queue (snapshot, resume replay, keep-alive) plus
//! the frames after its cursor in the stream's shared log ([`StreamLog`]); an event subscriber
//! has only its own queue, filled by [`SubShared::push`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use crate::frame::Frame;
use crate::log::StreamLog;

/// Default frame bound of a subscriber queue.
pub const DEFAULT_QUEUE_FRAMES: usize = 256;
/// Default byte bound of a subscriber queue.
pub const DEFAULT_QUEUE_BYTES: usize = 256 * 1024;

/// Largest frame buffer (in frames) a queue keeps while idle; larger ones, grown by a burst,
/// are freed once drained.
pub(crate) const SPARE_FRAMES: usize = 16;

/// Bounds of one subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most frames queued.
    pub frames: usize,
    /// Most encoded bytes queued.
    pub bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            frames: DEFAULT_QUEUE_FRAMES,
            bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

/// A non-blocking writer the publisher may use directly while the subscriber is idle (the
/// lean acceptor's socket), so an idle subscriber gets a frame with one `write` from the
/// publishing thread instead of a task wake-up.
pub(crate) trait DirectWrite: Send + Sync {
    /// Writes what the socket takes now; `WouldBlock` when nothing fits.
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    bytes: usize,
    waker: Option<Waker>,
    closed: bool,
    // The subscriber's writer is writing frames it took from the queue: a direct write now
    // would overtake them.
    busy: bool,
    direct: Option<Arc<dyn DirectWrite>>,
    // Listed in the stream log's waiters (woken by its next append).
    parked: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("frames", &self.frames.len())
            .field("bytes", &self.bytes)
            .field("closed", &self.closed)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Tries to write `frame` straight to the socket; returns the part still to be queued.
    fn try_direct(&mut self, frame: &Frame) -> Option<Frame> {
        if !self.frames.is_empty() || self.busy {
            return Some(frame.clone());
        }
        let Some(d) = &self.direct else {
            return Some(frame.clone());
        };
        match d.try_write(frame.chunked()) {
            Ok(n) if n >= frame.len() => None,
            Ok(n) => Some(frame.tail(n)),
            // WouldBlock or a broken socket: queue it; the writer task sees the error.
            Err(_) => Some(frame.clone()),
        }
    }
}

/// Counters shared by all subscribers of a channel.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) resyncs: AtomicU64,
    pub(crate) delivered: AtomicU64,
}

/// The publisher's side of one subscriber.
#[derive(Debug)]
pub(crate) struct SubShared {
    pub(crate) id: u64,
    limits: QueueLimits,
    q: Mutex<Queue>,
    /// Sequence number of the next frame to read from the stream's log; written under the
    /// log's lock only.
    pub(crate) cursor: AtomicU64,
    /// Index in the stream log's subscriber list (written under the log's lock only), so
    /// leaving is O(1) even when thousands of subscribers reconnect at once.
    pub(crate) slot: std::sync::atomic::AtomicUsize,
}

impl SubShared {
    pub(crate) fn new(id: u64, limits: QueueLimits) -> Self {
        Self {
            id,
            limits,
            q: Mutex::new(Queue::default()),
            cursor: AtomicU64::new(0),
            slot: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Queues `frame`; on overflow replaces the queue by a `_resync`. Never blocks on I/O.
    /// Returns whether the frame counts as delivered (false once the subscriber is closed); the
    /// caller adds the deliveries of one fan-out to the shared counter at once, instead of one
    /// atomic add per subscriber.
    pub(crate) fn push(&self, frame: &Frame, counters: &Counters) -> bool {
        let waker = {
            let mut q = crate::lock(&self.q);
            if q.closed {
                return false;
            }
            if q.frames.len() >= self.limits.frames || q.bytes + frame.len() > self.limits.bytes {
                q.frames.clear();
                let r = Frame::resync();
                q.bytes = r.len();
                q.frames.push_back(r);
                counters.resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(subscriber = self.id, "queue overflow: sent _resync");
            } else {
                q.bytes += frame.len();
                q.frames.push_back(frame.clone());
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Queues a keep-alive comment only when nothing else is waiting (a queued frame, or one
    /// still to read from the stream's log when `idle` is false, already keeps the connection
    /// busy).
    pub(crate) fn push_keep_alive(&self, idle: bool) {
        let waker = {
            let mut q = crate::lock(&self.q);
            if q.closed || !idle || !q.frames.is_empty() {
                return;
            }
            let Some(k) = q.try_direct(&Frame::keep_alive()) else {
                return;
            };
            q.bytes += k.len();
            q.frames.push_back(k);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues frames before the subscriber is visible to publishers (snapshot or replay).
    pub(crate) fn preload(&self, frames: impl IntoIterator<Item = Frame>) {
        let mut q = crate::lock(&self.q);
        for f in frames {
            q.bytes += f.len();
            q.frames.push_back(f);
        }
    }

    /// Wakes the subscriber after an append to its stream's log.
    pub(crate) fn unpark(&self) {
        let waker = {
            let mut q = crate::lock(&self.q);
            q.parked = false;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(crate) fn close(&self) {
        let waker = {
            let mut q = crate::lock(&self.q);
            q.closed = true;
            q.direct = None;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Holds the one frame a single-frame read takes from the stream's log, without a `Vec`
/// allocation per frame.
struct One(Option<Frame>);

impl Extend<Frame> for One {
    fn extend<I: IntoIterator<Item = Frame>>(&mut self, frames: I) {
        if let Some(f) = frames.into_iter().next() {
            self.0 = Some(f);
        }
    }
}

/// Removes a subscriber from its channel when the [`StreamSubscription`] is dropped.
pub(crate) trait Unsubscribe: Send + Sync {
    fn unsubscribe(&self, key: &str, id: u64);
}

/// A subscriber's receiving end: an async [`Stream`](futures_core::Stream) of [`Frame`]s.
///
/// The first frame is the snapshot (or the replay after a resume). The stream ends when the
/// channel is dropped or the stream is closed. Dropping the subscription unsubscribes.
/// `poll_next` and [`recv_batch`](Self::recv_batch) are cancel safe: a frame is removed from
/// the queue only when it is returned.
pub struct StreamSubscription {
    pub(crate) shared: Arc<SubShared>,
    pub(crate) key: Arc<str>,
    pub(crate) owner: Weak<dyn Unsubscribe>,
    /// The stream's shared log (channel subscriptions); event subscriptions get every frame
    /// in their own queue.
    pub(crate) log: Option<Arc<StreamLog>>,
    /// Batches join several small frames into one (see [`join_bursts`](Self::join_bursts)).
    pub(crate) join: bool,
}

impl std::fmt::Debug for StreamSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSubscription")
            .field("stream", &self.key)
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl StreamSubscription {
    /// The stream (or event filter key) this subscription belongs to.
    pub fn stream(&self) -> &str {
        &self.key
    }

    /// Takes the next queued frame without waiting.
    pub fn try_next(&mut self) -> Option<Frame> {
        let mut q = crate::lock(&self.shared.q);
        self.next_frame(&mut q, None)
    }

    /// The next frame: the subscriber's own queue (snapshot, replay, keep-alive) comes first,
    /// then the stream's log. With `cx`, an empty subscriber waits for the next frame.
    fn next_frame(&self, q: &mut Queue, cx: Option<&Context<'_>>) -> Option<Frame> {
        self.drop_own_on_overflow(q);
        if let Some(f) = q.frames.pop_front() {
            q.bytes -= f.len();
            return Some(f);
        }
        let log = self.log.as_ref()?;
        let mut one = One(None);
        let park = cx.is_some().then_some(&mut q.parked);
        log.read(&self.shared, &mut one, 1, park, false);
        let f = one.0;
        if f.is_none()
            && let Some(cx) = cx
            && !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            q.waker = Some(cx.waker().clone());
        }
        f
    }

    /// An overflow replaces the whole queue by one `_resync`, the subscriber's own frames too.
    fn drop_own_on_overflow(&self, q: &mut Queue) {
        if q.frames.is_empty() {
            return;
        }
        if self
            .log
            .as_ref()
            .is_some_and(|log| log.overflowed(&self.shared))
        {
            q.frames.clear();
            q.bytes = 0;
        }
    }

    /// Moves every queued frame into `out` (for one vectored write); `Pending` when nothing is
    /// queued, `Ready(false)` when the stream has ended.
    pub fn poll_batch(&mut self, cx: &mut Context<'_>, out: &mut Vec<Frame>) -> Poll<bool> {
        let mut q = crate::lock(&self.shared.q);
        self.drop_own_on_overflow(&mut q);
        if q.frames.is_empty() {
            let q = &mut *q;
            let read = self.log.as_ref().map_or(0, |log| {
                log.read(
                    &self.shared,
                    out,
                    usize::MAX,
                    Some(&mut q.parked),
                    self.join,
                )
            });
            if read > 0 {
                q.busy = q.direct.is_some();
                return Poll::Ready(true);
            }
            if q.closed {
                return Poll::Ready(false);
            }
            if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                q.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        if out.is_empty() {
            // The buffers trade places: the caller gets the queue's (no copy, no growth of
            // `out`) and the queue gets the caller's emptied one back, so a steady stream
            // allocates nothing. A buffer grown by a burst is not kept, so an idle subscriber
            // stays small.
            let spare = std::mem::take(out);
            let spare = if spare.capacity() <= SPARE_FRAMES {
                VecDeque::from(spare)
            } else {
                VecDeque::new()
            };
            *out = Vec::from(std::mem::replace(&mut q.frames, spare));
        } else {
            out.extend(q.frames.drain(..));
        }
        q.bytes = 0;
        if let Some(log) = &self.log {
            log.read(&self.shared, out, usize::MAX, None, self.join);
        }
        q.busy = q.direct.is_some();
        Poll::Ready(true)
    }

    /// Waits for at least one frame and moves every queued frame into `out`. Returns false
    /// when the stream has ended.
    pub async fn recv_batch(&mut self, out: &mut Vec<Frame>) -> bool {
        std::future::poll_fn(|cx| self.poll_batch(cx, out)).await
    }

    /// Lets the publisher write frames straight to `direct` while this subscriber is idle.
    /// The writer must call [`write_done`](Self::write_done) after writing each batch from
    /// [`poll_batch`](Self::poll_batch).
    pub(crate) fn set_direct(&self, direct: Arc<dyn DirectWrite>) {
        crate::lock(&self.shared.q).direct = Some(direct);
    }

    /// Lets [`poll_batch`](Self::poll_batch) hand over a burst of small frames from the
    /// stream's log as one frame whose [`chunked`](Frame::chunked) form is all of them: for a
    /// writer of chunked bodies only (its `sse()` text is empty). Joined once per burst and
    /// shared by every subscriber reading the same frames.
    pub(crate) fn join_bursts(&mut self) {
        self.join = true;
    }

    /// The batch taken by the last [`poll_batch`](Self::poll_batch) is fully written.
    pub(crate) fn write_done(&self) {
        crate::lock(&self.shared.q).busy = false;
    }

    /// Number of frames waiting.
    pub fn queued(&self) -> usize {
        let own = crate::lock(&self.shared.q).frames.len();
        own + self.log.as_ref().map_or(0, |log| log.pending(&self.shared))
    }
}

impl futures_core::Stream for StreamSubscription {
    type Item = Frame;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let mut q = crate::lock(&self.shared.q);
        match self.next_frame(&mut q, Some(cx)) {
            Some(f) => Poll::Ready(Some(f)),
            None if q.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl Drop for StreamSubscription {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(log) = &self.log {
            log.leave(&self.shared);
        }
        if let Some(owner) = self.owner.upgrade() {
            owner.unsubscribe(&self.key, self.shared.id);
        }
    }
}

/// Runs `tick` every `period` on one shared task while `owner` lives (keep-alive timers: one
/// per channel, not one per connection).
pub(crate) fn spawn_ticker<T: Send + Sync + 'static>(
    owner: Weak<T>,
    period: std::time::Duration,
    tick: fn(Arc<T>),
) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(inner) = owner.upgrade() else { return };
            tick(inner);
        }
    });
}
