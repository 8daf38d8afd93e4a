//! The shared frame log of one stream of a [`BroadcastChannel`](crate::BroadcastChannel).
//!
//! A publish appends its frame once; every subscriber reads from its own cursor. Copying each
//! frame into every subscriber's queue cost one lock and one push per subscriber per frame,
//! each on a different cold cache line: a burst of M frames to N subscribers walked the
//! subscribers M times. With the log a burst costs O(M) for the publisher plus one wake-up per
//! waiting subscriber, and each subscriber takes the whole burst at once.
//!
//! The per-subscriber bound of the queue policy (`QueueLimits`) holds unchanged: the log keeps
//! at most `frames` frames and `bytes` bytes that some subscriber has not read. A frame that
//! has to go to keep within the bound takes the cursors still pointing at it along: those
//! subscribers overflowed, are counted at once, and get one `_resync` when they read next.
//! Frames every subscriber has read are dropped at once, so an idle stream holds nothing.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::frame::Frame;
use crate::queue::{Counters, QueueLimits, SubShared};

/// Most bytes of frames joined into one buffer for one read: beyond it, a `writev` moves more
/// than a copy would save.
const JOIN_BYTES: usize = 16 * 1024;

/// One stream's log and its subscribers.
#[derive(Debug)]
pub(crate) struct StreamLog {
    state: Mutex<LogState>,
    limits: QueueLimits,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct LogState {
    subs: Vec<Arc<SubShared>>,
    /// Sequence number of `frames[0]`; a cursor below it has overflowed.
    base: u64,
    frames: VecDeque<Frame>,
    bytes: usize,
    /// `at[i]`: how many subscribers have cursor `base + i`; `at` is one longer than `frames`
    /// (its last entry counts the subscribers that are up to date).
    at: VecDeque<u32>,
    /// Subscribers waiting for the next frame, woken by the next append.
    parked: Vec<Arc<SubShared>>,
    /// The last range of frames joined for a reader (`from`, `to`, the joined frame): after a
    /// burst every waiting subscriber reads the same range, so it is joined once.
    joined: Option<(u64, u64, Frame)>,
}

impl LogState {
    fn head(&self) -> u64 {
        self.base + self.frames.len() as u64
    }

    fn range_bytes(&self, from: usize, n: usize) -> usize {
        self.frames.range(from..from + n).map(Frame::len).sum()
    }

    fn pop_front(&mut self) -> u32 {
        if let Some(f) = self.frames.pop_front() {
            self.bytes -= f.len();
        }
        self.base += 1;
        self.at.pop_front().unwrap_or(0)
    }

    /// Drops the frames no subscriber still has to read.
    fn trim_read(&mut self) {
        while !self.frames.is_empty() && self.at.front() == Some(&0) {
            self.pop_front();
        }
        if self.frames.is_empty() {
            self.joined = None;
        }
    }

    fn leave_cursor(&mut self, cursor: u64) {
        if cursor >= self.base
            && let Some(n) = self.at.get_mut((cursor - self.base) as usize)
        {
            *n = n.saturating_sub(1);
        }
    }

    fn arrive_at_head(&mut self) {
        if let Some(n) = self.at.back_mut() {
            *n += 1;
        }
    }
}

impl StreamLog {
    pub(crate) fn new(limits: QueueLimits, counters: Arc<Counters>) -> Self {
        Self {
            state: Mutex::new(LogState {
                subs: Vec::new(),
                base: 0,
                frames: VecDeque::new(),
                bytes: 0,
                at: VecDeque::from([0]),
                parked: Vec::new(),
                joined: None,
            }),
            limits,
            counters,
        }
    }

    /// Adds a subscriber whose next frame is the next one appended.
    pub(crate) fn join(&self, sub: &Arc<SubShared>) {
        let mut st = crate::lock(&self.state);
        sub.cursor.store(st.head(), Ordering::Relaxed);
        st.arrive_at_head();
        sub.slot.store(st.subs.len(), Ordering::Relaxed);
        st.subs.push(Arc::clone(sub));
    }

    /// Removes a subscriber (its subscription was dropped). Returns whether none is left.
    pub(crate) fn leave(&self, sub: &SubShared) -> bool {
        let mut st = crate::lock(&self.state);
        let i = sub.slot.load(Ordering::Relaxed);
        // Not at its slot once `drain` took the list away (shutdown, disconnect).
        if st.subs.get(i).is_some_and(|x| x.id == sub.id) {
            st.subs.swap_remove(i);
            if let Some(moved) = st.subs.get(i) {
                moved.slot.store(i, Ordering::Relaxed);
            }
        }
        st.leave_cursor(sub.cursor.load(Ordering::Relaxed));
        st.trim_read();
        st.subs.is_empty()
    }

    /// Whether no subscriber is left.
    pub(crate) fn is_empty(&self) -> bool {
        crate::lock(&self.state).subs.is_empty()
    }

    /// Number of subscribers.
    pub(crate) fn len(&self) -> usize {
        crate::lock(&self.state).subs.len()
    }

    /// Takes every subscriber out of the log (to close them without holding its lock: a
    /// reader locks its queue before the log).
    pub(crate) fn drain(&self) -> Vec<Arc<SubShared>> {
        std::mem::take(&mut crate::lock(&self.state).subs)
    }

    /// The subscribers and whether each has read everything (for keep-alives).
    pub(crate) fn idle_subs(&self) -> Vec<(Arc<SubShared>, bool)> {
        let st = crate::lock(&self.state);
        let head = st.head();
        st.subs
            .iter()
            .map(|s| (Arc::clone(s), s.cursor.load(Ordering::Relaxed) >= head))
            .collect()
    }

    /// Appends `frame` for every subscriber. Returns the waiting subscribers, for the caller
    /// to [`wake`] once it has released the locks that order publishes.
    pub(crate) fn append(&self, frame: &Frame) -> Vec<Arc<SubShared>> {
        {
            let mut st = crate::lock(&self.state);
            st.bytes += frame.len();
            st.frames.push_back(frame.clone());
            st.at.push_back(0);
            let mut overflowed = 0u64;
            while st.frames.len() > self.limits.frames || st.bytes > self.limits.bytes {
                overflowed += u64::from(st.pop_front());
            }
            if overflowed > 0 {
                self.counters
                    .resyncs
                    .fetch_add(overflowed, Ordering::Relaxed);
                tracing::debug!(subscribers = overflowed, "queue overflow: _resync");
            }
            st.trim_read();
            std::mem::take(&mut st.parked)
        }
    }

    /// Moves up to `max` frames after `sub`'s cursor into `out` (one `_resync` instead when it
    /// overflowed). With nothing to read and `park` set, `sub` is woken by the next append
    /// (its waker is in its queue, whose lock the caller holds). With `join`, several small
    /// frames come as one [`Frame::joined`] for a writer of chunked bodies. Returns the frames
    /// read.
    pub(crate) fn read(
        &self,
        sub: &Arc<SubShared>,
        out: &mut impl Extend<Frame>,
        max: usize,
        park: Option<&mut bool>,
        join: bool,
    ) -> usize {
        let mut st = crate::lock(&self.state);
        let cursor = sub.cursor.load(Ordering::Relaxed);
        let head = st.head();
        if cursor < st.base {
            // Counted when its frames were dropped; it is no longer in `at`.
            out.extend([Frame::resync()]);
            sub.cursor.store(head, Ordering::Relaxed);
            st.arrive_at_head();
            return 1;
        }
        if cursor >= head {
            if let Some(parked) = park
                && !*parked
            {
                *parked = true;
                st.parked.push(Arc::clone(sub));
            }
            return 0;
        }
        let from = (cursor - st.base) as usize;
        let n = (st.frames.len() - from).min(max);
        let next = cursor + n as u64;
        let cached = match &st.joined {
            Some((f, t, frame)) if join && (*f, *t) == (cursor, next) => Some(frame.clone()),
            _ => None,
        };
        if let Some(frame) = cached {
            out.extend([frame]);
        } else if join && n >= 2 && st.range_bytes(from, n) <= JOIN_BYTES {
            let frame = Frame::joined(st.frames.range(from..from + n));
            st.joined = Some((cursor, next, frame.clone()));
            out.extend([frame]);
        } else {
            out.extend(st.frames.range(from..from + n).cloned());
        }
        st.leave_cursor(cursor);
        sub.cursor.store(next, Ordering::Relaxed);
        let at = (next - st.base) as usize;
        if let Some(c) = st.at.get_mut(at) {
            *c += 1;
        }
        st.trim_read();
        drop(st);
        self.counters
            .delivered
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Whether `sub` overflowed: its next read is a `_resync` that replaces everything it had
    /// queued.
    pub(crate) fn overflowed(&self, sub: &SubShared) -> bool {
        sub.cursor.load(Ordering::Relaxed) < crate::lock(&self.state).base
    }

    /// Frames `sub` has still to read (1 for a pending `_resync`).
    pub(crate) fn pending(&self, sub: &SubShared) -> usize {
        let st = crate::lock(&self.state);
        let cursor = sub.cursor.load(Ordering::Relaxed);
        if cursor < st.base {
            1
        } else {
            (st.head().saturating_sub(cursor)) as usize
        }
    }
}

/// Wakes the subscribers [`StreamLog::append`] returned.
pub(crate) fn wake(parked: Vec<Arc<SubShared>>) {
    for sub in parked {
        sub.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: u64) -> Frame {
        Frame::patch(v, v, format!("{{\"{v}\":{{\"n\":{v}}}}}").into_bytes())
    }

    fn log(frames: usize) -> (StreamLog, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let limits = QueueLimits {
            frames,
            bytes: 1 << 20,
        };
        (StreamLog::new(limits, Arc::clone(&counters)), counters)
    }

    fn sub(id: u64) -> Arc<SubShared> {
        Arc::new(SubShared::new(id, QueueLimits::default()))
    }

    /// Two subscribers joined to `log`.
    fn pair(log: &StreamLog) -> (Arc<SubShared>, Arc<SubShared>) {
        let (a, b) = (sub(1), sub(2));
        log.join(&a);
        log.join(&b);
        (a, b)
    }

    /// Appends frames `versions` while `reader` reads each as it comes (the other subscribers
    /// fall behind).
    fn append_read_by(
        log: &StreamLog,
        reader: &Arc<SubShared>,
        versions: std::ops::RangeInclusive<u64>,
        out: &mut Vec<Frame>,
    ) {
        for v in versions {
            log.append(&frame(v));
            log.read(reader, out, usize::MAX, None, false);
        }
    }

    fn held(log: &StreamLog) -> usize {
        crate::lock(&log.state).frames.len()
    }

    #[test]
    fn frames_stay_until_every_subscriber_read_them() {
        let (log, counters) = log(16);
        let (a, b) = pair(&log);
        for v in 1..=3 {
            assert!(log.append(&frame(v)).is_empty(), "nobody parked yet");
        }
        let mut out = Vec::new();
        assert_eq!(log.read(&a, &mut out, usize::MAX, None, false), 3);
        assert_eq!(held(&log), 3, "b has not read them");
        assert_eq!(log.read(&b, &mut out, 2, None, false), 2);
        assert_eq!(held(&log), 1);
        assert_eq!(log.pending(&b), 1);
        assert_eq!(log.read(&b, &mut out, usize::MAX, None, false), 1);
        assert_eq!(held(&log), 0, "an idle stream holds nothing");
        let versions: Vec<_> = out.iter().filter_map(Frame::version).collect();
        assert_eq!(versions, [1, 2, 3, 1, 2, 3]);
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 6);
        // A subscriber that leaves releases what it had not read.
        log.append(&frame(4));
        assert_eq!(held(&log), 1);
        assert!(!log.leave(&a));
        log.read(&b, &mut out, usize::MAX, None, false);
        assert_eq!(held(&log), 0);
        assert!(log.leave(&b));
    }

    #[test]
    fn subscribers_leave_in_any_order() {
        let (log, _) = log(16);
        let subs: Vec<_> = (1..=5).map(sub).collect();
        for s in &subs {
            log.join(s);
        }
        for (k, i) in [1, 4, 0, 3].into_iter().enumerate() {
            assert!(!log.leave(&subs[i]));
            let st = crate::lock(&log.state);
            assert_eq!(st.subs.len(), 4 - k);
            assert!(st.subs.iter().all(|s| s.id != subs[i].id));
            // Every remaining subscriber knows its place.
            for (at, s) in st.subs.iter().enumerate() {
                assert_eq!(s.slot.load(Ordering::Relaxed), at);
            }
        }
        assert_eq!(log.len(), 1);
        assert!(log.leave(&subs[2]));
        // Leaving after the list was drained (shutdown, disconnect) finds nothing to remove.
        log.join(&subs[0]);
        log.drain();
        assert!(log.leave(&subs[0]));
    }

    #[test]
    fn overflow_is_counted_at_once_and_read_as_one_resync() {
        let (log, counters) = log(2);
        let (slow, fast) = pair(&log);
        let mut out = Vec::new();
        append_read_by(&log, &fast, 1..=2, &mut out);
        assert_eq!(counters.resyncs.load(Ordering::Relaxed), 0);
        log.append(&frame(3));
        assert_eq!(
            counters.resyncs.load(Ordering::Relaxed),
            1,
            "only the slow one"
        );
        assert!(log.overflowed(&slow) && !log.overflowed(&fast));
        out.clear();
        assert_eq!(log.read(&slow, &mut out, usize::MAX, None, false), 1);
        assert_eq!(out[0].kind(), crate::FrameKind::Resync);
        log.append(&frame(4));
        out.clear();
        log.read(&slow, &mut out, usize::MAX, None, false);
        assert_eq!(
            out.iter().filter_map(Frame::version).collect::<Vec<_>>(),
            [4]
        );
    }

    #[test]
    fn the_byte_bound_overflows_a_lagging_subscriber_and_a_frame_too_big_for_it() {
        let counters = Arc::new(Counters::default());
        let f = frame(1).len();
        let limits = QueueLimits {
            frames: 100,
            bytes: 3 * f,
        };
        let log = StreamLog::new(limits, Arc::clone(&counters));
        let (slow, fast) = pair(&log);
        let mut out = Vec::new();
        append_read_by(&log, &fast, 1..=4, &mut out);
        assert_eq!(counters.resyncs.load(Ordering::Relaxed), 1);
        assert!(log.overflowed(&slow) && !log.overflowed(&fast));
        let held_bytes = crate::lock(&log.state).bytes;
        assert!(held_bytes <= limits.bytes, "{held_bytes}");
        // A frame over the whole bound can reach nobody: the up-to-date subscriber overflows
        // too, and the log keeps nothing of it.
        let big = Frame::patch(5, 5, format!("{{\"5\":\"{}\"}}", "x".repeat(4 * f)));
        log.append(&big);
        assert!(log.overflowed(&fast));
        assert_eq!(held(&log), 0);
        out.clear();
        log.read(&fast, &mut out, usize::MAX, None, false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind(), crate::FrameKind::Resync);
    }

    #[test]
    fn a_parked_subscriber_is_returned_by_the_next_append_once() {
        let (log, _) = log(16);
        let a = sub(1);
        log.join(&a);
        let mut parked = false;
        let mut out = Vec::new();
        assert_eq!(log.read(&a, &mut out, 1, Some(&mut parked), false), 0);
        assert!(parked);
        // Parking twice lists it once.
        log.read(&a, &mut out, 1, Some(&mut parked), false);
        let woken = log.append(&frame(1));
        assert_eq!(woken.len(), 1);
        assert!(log.append(&frame(2)).is_empty());
    }

    #[test]
    fn readers_of_the_same_burst_share_one_joined_frame() {
        let (log, _) = log(16);
        let (a, b) = pair(&log);
        let frames: Vec<Frame> = (1..=3).map(frame).collect();
        for f in &frames {
            log.append(f);
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        log.read(&a, &mut x, usize::MAX, None, true);
        log.read(&b, &mut y, usize::MAX, None, true);
        assert_eq!((x.len(), y.len()), (1, 1));
        assert!(x[0].same(&y[0]), "joined once, shared");
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.chunked().to_vec()).collect();
        assert_eq!(&x[0].chunked()[..], &expected[..]);
        // A lone frame is handed over as it is.
        log.append(&frame(4));
        x.clear();
        log.read(&a, &mut x, usize::MAX, None, true);
        assert_eq!(x[0].version(), Some(4));
    }
}
