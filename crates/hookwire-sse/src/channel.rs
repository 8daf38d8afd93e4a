//! [`BroadcastChannel`]: per-stream state, version-keyed patch fan-out, overlays and resume.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cache::{DEFAULT_CACHE_SIZE, StateCache};
use crate::frame::{Frame, FrameKind};
use crate::log::StreamLog;
use crate::queue::{Counters, QueueLimits, StreamSubscription, SubShared, Unsubscribe};

/// A state that can be broadcast: serializable, with a version (`_v`, the event-store stream
/// version after the last change).
///
/// Implemented for [`serde_json::Value`] (reading `_v`, 0 when absent). For a typed state,
/// keep a `_v` field (serialized as `_v`) and return it here. Overlays are merged with
/// [`hookwire_patch::patch_typed`], so overlay keys must exist on a typed state.
pub trait BroadcastState: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The state's version.
    fn version(&self) -> u64;
}

impl BroadcastState for Value {
    fn version(&self) -> u64 {
        crate::apply::state_version(self).unwrap_or(0)
    }
}

/// Default number of patch frames kept per stream for `Last-Event-ID` resume.
pub const DEFAULT_HISTORY_FRAMES: usize = 128;
/// Default byte bound of a stream's resume history.
pub const DEFAULT_HISTORY_BYTES: usize = 1024 * 1024;

/// Limits of a [`BroadcastChannel`].
///
/// ```
/// use hookwire_sse::{ChannelConfig, QueueLimits};
/// let c = ChannelConfig::default()
///     .cache_size(1000)
///     .queue(QueueLimits { frames: 64, bytes: 64 * 1024 })
///     .history(256, 4 << 20);
/// assert_eq!(c.cache_size, 1000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Streams whose latest state is kept (LRU); default 50. A stream evicted from the cache
    /// loses its snapshot and history: new subscribers get nothing until the next publish.
    pub cache_size: usize,
    /// Per-subscriber queue bounds; overflow sends `_resync`.
    pub queue: QueueLimits,
    /// Most patch frames kept per stream for resume.
    pub history_frames: usize,
    /// Most bytes of patch frames kept per stream for resume.
    pub history_bytes: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            cache_size: DEFAULT_CACHE_SIZE,
            queue: QueueLimits::default(),
            history_frames: DEFAULT_HISTORY_FRAMES,
            history_bytes: DEFAULT_HISTORY_BYTES,
        }
    }
}

impl ChannelConfig {
    /// Sets the state cache capacity.
    #[must_use]
    pub fn cache_size(mut self, n: usize) -> Self {
        self.cache_size = n;
        self
    }

    /// Sets the per-subscriber queue bounds.
    #[must_use]
    pub fn queue(mut self, limits: QueueLimits) -> Self {
        self.queue = limits;
        self
    }

    /// Sets the resume history bounds (frames, bytes) per stream.
    #[must_use]
    pub fn history(mut self, frames: usize, bytes: usize) -> Self {
        self.history_frames = frames;
        self.history_bytes = bytes;
        self
    }
}

/// Why a publish was refused. Nothing was changed or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The state's version is not newer than the cached one.
    NotNewer {
        /// The cached version.
        current: u64,
        /// The refused version.
        got: u64,
    },
    /// More patches than versions `0..=_v`.
    TooManyPatches {
        /// Number of patches given.
        patches: usize,
        /// The state's version.
        version: u64,
    },
    /// The state or an overlay could not be (de)serialized.
    State(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotNewer { current, got } => {
                write!(
                    f,
                    "version {got} is not newer than the cached version {current}"
                )
            }
            Self::TooManyPatches { patches, version } => {
                write!(f, "{patches} patches cannot end at version {version}")
            }
            Self::State(e) => write!(f, "state serialization failed: {e}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Delivery counters of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ChannelStats {
    /// Frames handed to subscribers (one per subscriber per frame read).
    pub delivered: u64,
    /// `_resync` frames queued because a subscriber's queue overflowed.
    pub overflow_resyncs: u64,
}

struct Entry<S> {
    state: Arc<S>,
    version: u64,
    snapshot: Option<Frame>,
    history: VecDeque<Frame>,
    history_bytes: usize,
    // Accumulated overlay patches, re-applied to every published state so version-neutral
    // keys (presence, computed fields) survive publishes (Appendix B).
    overlay: Option<Value>,
}

impl<S: BroadcastState> Entry<S> {
    fn snapshot(&mut self) -> Frame {
        if let Some(f) = &self.snapshot {
            return f.clone();
        }
        let f = match serde_json::to_vec(&*self.state) {
            Ok(json) => Frame::snapshot(self.version, json),
            Err(e) => {
                tracing::error!(error = %e, "state does not serialize; sending _resync");
                return Frame::resync();
            }
        };
        self.snapshot = Some(f.clone());
        f
    }

    fn push_history(&mut self, f: &Frame, limits: (usize, usize)) {
        match f.kind() {
            FrameKind::Patch => {
                let contiguous = self
                    .history
                    .back()
                    .and_then(Frame::version)
                    .is_none_or(|last| f.first_version() == Some(last + 1));
                if !contiguous {
                    self.clear_history();
                }
            }
            FrameKind::Overlay => {}
            _ => {
                self.clear_history();
                return;
            }
        }
        self.history_bytes += f.len();
        self.history.push_back(f.clone());
        while self.history.len() > limits.0 || self.history_bytes > limits.1 {
            match self.history.pop_front() {
                Some(old) => self.history_bytes -= old.len(),
                None => break,
            }
        }
    }

    fn clear_history(&mut self) {
        self.history.clear();
        self.history_bytes = 0;
    }

    /// Frames that bring a client at `last` up to date: exactly the missed patches (plus
    /// overlays at or after `last`, which are idempotent) when the history covers them, else a
    /// snapshot.
    fn resume(&mut self, last: Option<u64>) -> Vec<Frame> {
        let Some(l) = last else {
            return vec![self.snapshot()];
        };
        if l > self.version {
            return vec![self.snapshot()];
        }
        let replay = |f: &&Frame| match (f.kind(), f.version()) {
            (FrameKind::Patch, Some(v)) => v > l,
            (FrameKind::Overlay, Some(v)) => v >= l,
            _ => false,
        };
        if l == self.version {
            return self.history.iter().filter(replay).cloned().collect();
        }
        let covered = self
            .history
            .iter()
            .find(|f| f.kind() == FrameKind::Patch)
            .and_then(Frame::first_version)
            .is_some_and(|first| first <= l + 1);
        if covered {
            self.history.iter().filter(replay).cloned().collect()
        } else {
            vec![self.snapshot()]
        }
    }
}

struct Inner<S> {
    cache: Mutex<StateCache<Arc<str>, Entry<S>>>,
    streams: Mutex<HashMap<Arc<str>, Arc<StreamLog>>>,
    config: ChannelConfig,
    next_id: AtomicU64,
    counters: Arc<Counters>,
    keep_alive: OnceLock<()>,
    // Set under the `streams` lock, so no subscription slips in after `shutdown` drained them.
    shut: std::sync::atomic::AtomicBool,
}

impl<S: Send + Sync + 'static> Unsubscribe for Inner<S> {
    // The subscription already left its own log; this forgets the stream's log once nobody
    // is left in it (a new subscriber may have joined meanwhile).
    fn unsubscribe(&self, key: &str, _id: u64) {
        let mut streams = crate::lock(&self.streams);
        if streams.get(key).is_some_and(|log| log.is_empty()) {
            streams.remove(key);
        }
    }
}

impl<S> Drop for Inner<S> {
    fn drop(&mut self) {
        let streams = crate::lock(&self.streams);
        for log in streams.values() {
            for sub in log.drain() {
                sub.close();
            }
        }
    }
}

/// Per-stream live state broadcast: version-keyed patches, overlays, snapshots and resume.
///
/// Cheap to clone (an `Arc`); every clone is the same channel. Each subscriber has its own
/// bounded queue, so a slow or gone subscriber never blocks [`publish`](Self::publish) or the
/// others; frames are encoded once per publish and shared.
///
/// ```
/// use futures_util::StreamExt;
/// use hookwire_sse::{BroadcastChannel, FrameKind};
/// use serde_json::json;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ch: BroadcastChannel = BroadcastChannel::new();
/// ch.publish("board", json!({"_v": 1, "cards": 1}), vec![]).unwrap();
/// let mut sub = ch.subscribe("board");
/// ch.publish("board", json!({"_v": 2, "cards": 2}), vec![json!({"cards": 2})]).unwrap();
/// let snap = sub.next().await.unwrap();
/// assert_eq!(snap.kind(), FrameKind::Snapshot);
/// let patch = sub.next().await.unwrap();
/// assert_eq!(&patch.json()[..], br#"{"2":{"cards":2}}"#);
/// assert_eq!(ch.subscriber_count("board"), 1);
/// # }
/// ```
pub struct BroadcastChannel<S = Value> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for BroadcastChannel<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for BroadcastChannel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastChannel")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<S: BroadcastState> Default for BroadcastChannel<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: BroadcastState> BroadcastChannel<S> {
    /// A channel with the default [`ChannelConfig`].
    pub fn new() -> Self {
        Self::with_config(ChannelConfig::default())
    }

    /// A channel with explicit limits.
    pub fn with_config(config: ChannelConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache: Mutex::new(StateCache::new(config.cache_size)),
                streams: Mutex::new(HashMap::new()),
                config,
                next_id: AtomicU64::new(1),
                counters: Arc::default(),
                keep_alive: OnceLock::new(),
                shut: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The channel's limits.
    pub fn config(&self) -> &ChannelConfig {
        &self.inner.config
    }

    /// Publishes `state` with the patches that produced it. Patch `i` of `n` is keyed with
    /// version `_v − n + 1 + i`, so the last patch is keyed `_v`. With no patches, subscribers
    /// get a snapshot frame instead. The frame is encoded once and returned.
    ///
    /// Refused (nothing changes) when the version is not newer than the cached one (a snapshot
    /// publish may repeat the cached version) or when there are more patches than versions.
    pub fn publish(
        &self,
        stream: &str,
        state: S,
        patches: Vec<Value>,
    ) -> Result<Frame, PublishError> {
        let v = state.version();
        let n = patches.len() as u64;
        if n > v.saturating_add(1) {
            return Err(PublishError::TooManyPatches {
                patches: patches.len(),
                version: v,
            });
        }
        let mut cache = crate::lock(&self.inner.cache);
        let mut overlay = None;
        if let Some(e) = cache.get(stream) {
            let ok = v > e.version || (n == 0 && v == e.version);
            if !ok {
                return Err(PublishError::NotNewer {
                    current: e.version,
                    got: v,
                });
            }
            overlay.clone_from(&e.overlay);
        }
        let state = match &overlay {
            Some(ov) => hookwire_patch::patch_typed(&state, ov)
                .map_err(|e| PublishError::State(e.to_string()))?,
            None => state,
        };
        let frame = if patches.is_empty() {
            let json =
                serde_json::to_vec(&state).map_err(|e| PublishError::State(e.to_string()))?;
            Frame::snapshot(v, json)
        } else {
            let first = v + 1 - n;
            Frame::patch(first, v, encode_message(first, &patches, false)?)
        };
        let key: Arc<str> = Arc::from(stream);
        let mut entry = Entry {
            state: Arc::new(state),
            version: v,
            snapshot: (frame.kind() == FrameKind::Snapshot).then(|| frame.clone()),
            history: VecDeque::new(),
            history_bytes: 0,
            overlay,
        };
        if let Some(old) = cache.delete(stream) {
            entry.history = old.history;
            entry.history_bytes = old.history_bytes;
        }
        entry.push_history(&frame, self.history_limits());
        cache.set(key, entry);
        self.fan_out(stream, &frame, cache);
        Ok(frame)
    }

    /// Publishes `state`, computing the patch from the cached state with
    /// [`hookwire_patch::delta`] (removed keys become `null`). When nothing is cached or the
    /// version does not follow the cached one by exactly 1, subscribers get a snapshot.
    pub fn publish_diff(&self, stream: &str, state: S) -> Result<Frame, PublishError> {
        let prev = self.current(stream);
        let patches = match prev {
            Some((prev, pv)) if state.version() == pv + 1 => {
                let err = |e: serde_json::Error| PublishError::State(e.to_string());
                let before = serde_json::to_value(&*prev).map_err(err)?;
                let mut after = serde_json::to_value(&state).map_err(err)?;
                if let Some(ov) = self.overlay_of(stream) {
                    hookwire_patch::patch_mut(&mut after, &ov);
                }
                let mut d = hookwire_patch::delta(&before, &after);
                if let Some(o) = d.as_object_mut() {
                    o.remove("_v");
                }
                vec![d]
            }
            _ => Vec::new(),
        };
        self.publish(stream, state, patches)
    }

    /// Merges a version-neutral `patch` (presence, computed fields) into the cached state and
    /// sends `{"<_v>": patch, "_overlay": true}`. The overlay is re-applied to later published
    /// states. When nothing is cached, subscribers get `_resync` and `Ok(None)` is returned.
    pub fn overlay(&self, stream: &str, patch: Value) -> Result<Option<Frame>, PublishError> {
        let mut cache = crate::lock(&self.inner.cache);
        let limits = self.history_limits();
        let Some(e) = cache.get_mut(stream) else {
            tracing::debug!(stream, "overlay without cached state: _resync");
            self.fan_out(stream, &Frame::resync(), cache);
            return Ok(None);
        };
        let state = hookwire_patch::patch_typed(&*e.state, &patch)
            .map_err(|err| PublishError::State(err.to_string()))?;
        let v = e.version;
        let frame = Frame::overlay(v, encode_message(v, std::slice::from_ref(&patch), true)?);
        e.state = Arc::new(state);
        e.snapshot = None;
        e.overlay = Some(match e.overlay.take() {
            Some(acc) => hookwire_patch::patch(&acc, &patch),
            None => patch,
        });
        e.push_history(&frame, limits);
        self.fan_out(stream, &frame, cache);
        Ok(Some(frame))
    }

    /// Sends `_resync` to every subscriber of `stream` (they refetch the state).
    pub fn resync(&self, stream: &str) {
        let cache = crate::lock(&self.inner.cache);
        self.fan_out(stream, &Frame::resync(), cache);
    }

    /// Replaces the state of `stream` at any version (e.g. after a restore), forgets its
    /// history and overlays, and sends every subscriber a snapshot.
    pub fn reset(&self, stream: &str, state: S) -> Result<Frame, PublishError> {
        let json = serde_json::to_vec(&state).map_err(|e| PublishError::State(e.to_string()))?;
        let v = state.version();
        let frame = Frame::snapshot(v, json);
        let mut cache = crate::lock(&self.inner.cache);
        cache.set(
            Arc::from(stream),
            Entry {
                state: Arc::new(state),
                version: v,
                snapshot: Some(frame.clone()),
                history: VecDeque::new(),
                history_bytes: 0,
                overlay: None,
            },
        );
        self.fan_out(stream, &frame, cache);
        Ok(frame)
    }

    /// Ends every subscription of `stream`: their streams end (SSE responses finish and
    /// browsers reconnect with `Last-Event-ID`), e.g. to drain a node before a deploy.
    pub fn disconnect(&self, stream: &str) {
        let removed = crate::lock(&self.inner.streams).remove(stream);
        if let Some(log) = removed {
            for sub in log.drain() {
                sub.close();
            }
        }
    }

    /// Ends every subscription of every stream, and every later one at once: for a graceful
    /// shutdown, whose server waits for open responses (an SSE stream never ends by itself).
    /// Publishing still updates the cache; nothing is delivered.
    pub fn shutdown(&self) {
        let drained: Vec<Arc<StreamLog>> = {
            let mut streams = crate::lock(&self.inner.streams);
            self.inner.shut.store(true, Ordering::Release);
            streams.drain().map(|(_, s)| s).collect()
        };
        for log in drained {
            for sub in log.drain() {
                sub.close();
            }
        }
    }

    /// Subscribes to `stream`; the first frame is the cached snapshot, if any.
    pub fn subscribe(&self, stream: &str) -> StreamSubscription {
        self.subscribe_from(stream, None)
    }

    /// Subscribes to `stream`, resuming after version `last` (`Last-Event-ID`): exactly the
    /// missed patches when the history still holds them, nothing when up to date, else a
    /// snapshot. `None` means a fresh start (snapshot).
    pub fn subscribe_from(&self, stream: &str, last: Option<u64>) -> StreamSubscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(SubShared::new(id, self.inner.config.queue));
        let mut cache = crate::lock(&self.inner.cache);
        if let Some(e) = cache.get_mut(stream) {
            shared.preload(e.resume(last));
        }
        let key: Arc<str> = Arc::from(stream);
        let mut streams = crate::lock(&self.inner.streams);
        let log = if self.inner.shut.load(Ordering::Acquire) {
            shared.close();
            None
        } else {
            let log = streams.entry(Arc::clone(&key)).or_insert_with(|| {
                Arc::new(StreamLog::new(
                    self.inner.config.queue,
                    Arc::clone(&self.inner.counters),
                ))
            });
            log.join(&shared);
            Some(Arc::clone(log))
        };
        drop(streams);
        drop(cache);
        let owner: Weak<Inner<S>> = Arc::downgrade(&self.inner);
        let owner: Weak<dyn Unsubscribe> = owner;
        StreamSubscription {
            shared,
            key,
            owner,
            log,
            join: false,
        }
    }

    /// The cached state of `stream` (promoted in the LRU).
    pub fn state(&self, stream: &str) -> Option<Arc<S>> {
        self.current(stream).map(|(s, _)| s)
    }

    /// The cached version of `stream`.
    pub fn version(&self, stream: &str) -> Option<u64> {
        self.current(stream).map(|(_, v)| v)
    }

    /// The cached snapshot frame of `stream` (serialized once per version, shared by every
    /// reconnect and `GET /state`).
    pub fn snapshot(&self, stream: &str) -> Option<Frame> {
        crate::lock(&self.inner.cache)
            .get_mut(stream)
            .map(Entry::snapshot)
    }

    /// Number of live subscriptions on `stream`.
    pub fn subscriber_count(&self, stream: &str) -> usize {
        crate::lock(&self.inner.streams)
            .get(stream)
            .map_or(0, |log| log.len())
    }

    /// Delivery counters.
    pub fn stats(&self) -> ChannelStats {
        ChannelStats {
            delivered: self.inner.counters.delivered.load(Ordering::Relaxed),
            overflow_resyncs: self.inner.counters.resyncs.load(Ordering::Relaxed),
        }
    }

    /// Queues a keep-alive comment to every idle subscriber of every stream, once.
    pub fn keep_alive_tick(&self) {
        let streams: Vec<_> = crate::lock(&self.inner.streams).values().cloned().collect();
        for log in streams {
            for (sub, idle) in log.idle_subs() {
                sub.push_keep_alive(idle);
            }
        }
    }

    /// Starts (once per channel) one shared task that calls
    /// [`keep_alive_tick`](Self::keep_alive_tick) every `period`, instead of a timer per
    /// connection. Must be called inside a Tokio runtime; the task ends with the channel.
    pub fn start_keep_alive(&self, period: Duration) {
        if self.inner.keep_alive.set(()).is_err() {
            return;
        }
        crate::queue::spawn_ticker(Arc::downgrade(&self.inner), period, |inner| {
            BroadcastChannel { inner }.keep_alive_tick();
        });
    }

    fn current(&self, stream: &str) -> Option<(Arc<S>, u64)> {
        crate::lock(&self.inner.cache)
            .get(stream)
            .map(|e| (Arc::clone(&e.state), e.version))
    }

    fn overlay_of(&self, stream: &str) -> Option<Value> {
        crate::lock(&self.inner.cache)
            .get(stream)
            .and_then(|e| e.overlay.clone())
    }

    fn history_limits(&self) -> (usize, usize) {
        (
            self.inner.config.history_frames,
            self.inner.config.history_bytes,
        )
    }

    /// Appends `frame` to the log of `stream` for every subscriber. The append happens before
    /// the cache lock is released, so frames of one stream reach every subscriber in publish
    /// order; the waiting subscribers are woken after it, while publishes to other streams
    /// proceed.
    fn fan_out<G>(&self, stream: &str, frame: &Frame, cache_guard: G) {
        let log = crate::lock(&self.inner.streams).get(stream).cloned();
        let Some(log) = log else { return };
        let parked = log.append(frame);
        drop(cache_guard);
        crate::log::wake(parked);
    }
}

/// Encodes `{"first": p0, "first+1": p1, …}` (plus `"_overlay":true`) in version order.
fn encode_message(first: u64, patches: &[Value], overlay: bool) -> Result<Vec<u8>, PublishError> {
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, p) in patches.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "\"{}\":", first + i as u64);
        serde_json::to_writer(&mut out, p).map_err(|e| PublishError::State(e.to_string()))?;
    }
    if overlay {
        out.extend_from_slice(b",\"_overlay\":true");
    }
    out.push(b'}');
    Ok(out)
}
