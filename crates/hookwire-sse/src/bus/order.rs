//! Version order on one node: envelopes may reach a node out of version order (two nodes won
//! versions N and N+1 in the version store but their bus publishes crossed, or this node missed
//! one), so each node holds an envelope whose patches start past its current version until the
//! missing versions arrive, and sends a snapshot when they do not arrive within the catch-up
//! time. Subscribers therefore see versions in increasing order, never a patch from a base they
//! do not have.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::channel::{BroadcastChannel, BroadcastState};

/// Envelopes held per stream while waiting for a missing version; one more sends the newest
/// as a snapshot at once.
pub(super) const MAX_HELD_PER_STREAM: usize = 256;

/// Streams with held envelopes; an envelope for one more stream is sent as a snapshot at once.
pub(super) const MAX_HELD_STREAMS: usize = 1024;

/// One state change as it travels: the state after it and the patches that produced it.
pub(super) struct Change<S> {
    pub(super) state: S,
    pub(super) patches: Vec<Value>,
}

impl<S: BroadcastState> Change<S> {
    fn version(&self) -> u64 {
        self.state.version()
    }

    /// The version the patches start from (`None` for a snapshot).
    fn base(&self) -> Option<u64> {
        if self.patches.is_empty() {
            None
        } else {
            Some(self.version().saturating_sub(self.patches.len() as u64))
        }
    }
}

struct Held<S> {
    since: Instant,
    changes: BTreeMap<u64, Change<S>>,
}

/// The per-node sequencer in front of a [`BroadcastChannel`].
pub(super) struct Sequencer<S> {
    channel: BroadcastChannel<S>,
    catch_up: Duration,
    held: Mutex<HashMap<String, Held<S>>>,
}

impl<S: BroadcastState + Clone> Sequencer<S> {
    pub(super) fn new(channel: BroadcastChannel<S>, catch_up: Duration) -> Arc<Self> {
        Arc::new(Self {
            channel,
            catch_up,
            held: Mutex::default(),
        })
    }

    pub(super) fn channel(&self) -> &BroadcastChannel<S> {
        &self.channel
    }

    /// Delivers `change` when it follows what this node has (or is a snapshot), then every held
    /// change that now follows; else holds it for at most the catch-up time. A change at or
    /// below this node's version is dropped: it arrived after a snapshot or a reload covered it.
    pub(super) fn offer(self: &Arc<Self>, stream: &str, change: Change<S>) {
        let mut held = crate::lock(&self.held);
        let cur = self.channel.version(stream);
        let v = change.version();
        if cur.is_some_and(|c| c >= v) {
            return;
        }
        let follows = match (cur, change.base()) {
            (None, _) | (_, None) => true,
            (Some(c), Some(base)) => base <= c,
        };
        if follows {
            self.deliver(stream, change);
            self.drain(&mut held, stream);
            return;
        }
        if !held.contains_key(stream) {
            if held.len() >= MAX_HELD_STREAMS {
                tracing::warn!(stream, "too many streams waiting for versions; snapshot");
                self.snapshot(stream, change.state);
                return;
            }
            self.arm(stream);
            held.insert(
                stream.to_owned(),
                Held {
                    since: Instant::now(),
                    changes: BTreeMap::new(),
                },
            );
        }
        let Some(entry) = held.get_mut(stream) else {
            return;
        };
        entry.changes.entry(v).or_insert(change);
        if entry.changes.len() > MAX_HELD_PER_STREAM {
            self.flush(&mut held, stream);
        }
    }

    /// Sends every held change that now follows the channel's version, in version order.
    fn drain(&self, held: &mut HashMap<String, Held<S>>, stream: &str) {
        let Some(h) = held.get_mut(stream) else {
            return;
        };
        while let Some(entry) = h.changes.first_entry() {
            let cur = self.channel.version(stream);
            let change = entry.get();
            if cur.is_some_and(|c| c >= change.version()) {
                entry.remove();
                continue;
            }
            match (cur, change.base()) {
                (Some(c), Some(base)) if base > c => break,
                _ => {
                    let change = entry.remove();
                    self.deliver(stream, change);
                }
            }
        }
        if h.changes.is_empty() {
            held.remove(stream);
        }
    }

    /// Gives up waiting: the newest held state goes out as a snapshot (clients refetch nothing,
    /// they replace), the older held changes are covered by it.
    fn flush(&self, held: &mut HashMap<String, Held<S>>, stream: &str) {
        let Some(mut h) = held.remove(stream) else {
            return;
        };
        if let Some((_, newest)) = h.changes.pop_last() {
            tracing::debug!(
                stream,
                version = newest.version(),
                "missing versions did not arrive in time; sending a snapshot"
            );
            self.snapshot(stream, newest.state);
        }
    }

    fn deliver(&self, stream: &str, change: Change<S>) {
        if let Err(e) = self.channel.publish(stream, change.state, change.patches) {
            // Refused by the channel's own rules: tell subscribers to refetch rather than
            // risk a wrong state.
            tracing::debug!(stream, error = %e, "fan-out change not applied; resync");
            self.channel.resync(stream);
        }
    }

    fn snapshot(&self, stream: &str, state: S) {
        if let Err(e) = self.channel.reset(stream, state) {
            tracing::debug!(stream, error = %e, "fan-out snapshot not applied; resync");
            self.channel.resync(stream);
        }
    }

    /// Starts the catch-up timer of `stream`: it snapshots when the changes held since the
    /// oldest one are still missing their base after the catch-up time. A timer whose stream
    /// was drained meanwhile ends at its next wake-up.
    fn arm(self: &Arc<Self>, stream: &str) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let stream = stream.to_owned();
        let catch_up = self.catch_up;
        tokio::spawn(async move {
            let mut wake = Instant::now() + catch_up;
            loop {
                tokio::time::sleep_until(wake).await;
                let Some(seq) = weak.upgrade() else { return };
                let mut held = crate::lock(&seq.held);
                let Some(since) = held.get(&stream).map(|h| h.since) else {
                    return;
                };
                if since + catch_up <= Instant::now() {
                    seq.flush(&mut held, &stream);
                    seq.drain(&mut held, &stream);
                    return;
                }
                wake = since + catch_up;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::{FrameKind, StreamSubscription};
    use serde_json::json;

    fn change(v: u64) -> Change<Value> {
        Change {
            state: json!({"_v": v, "n": v}),
            patches: vec![json!({"n": v})],
        }
    }

    fn frames(sub: &mut StreamSubscription) -> Vec<(FrameKind, Option<u64>)> {
        std::iter::from_fn(|| sub.try_next())
            .map(|f| (f.kind(), f.version()))
            .collect()
    }

    fn start() -> (Arc<Sequencer<Value>>, StreamSubscription) {
        let ch: BroadcastChannel = BroadcastChannel::new();
        ch.publish("s", json!({"_v": 1, "n": 1}), vec![]).unwrap();
        let seq = Sequencer::new(ch.clone(), Duration::from_secs(1));
        let mut sub = ch.subscribe("s");
        let _ = sub.try_next();
        (seq, sub)
    }

    #[tokio::test]
    async fn a_change_waits_for_the_missing_version_and_both_go_out_in_order() {
        let (seq, mut sub) = start();
        seq.offer("s", change(3));
        assert!(frames(&mut sub).is_empty(), "3 waits for 2");
        seq.offer("s", change(2));
        assert_eq!(
            frames(&mut sub),
            [(FrameKind::Patch, Some(2)), (FrameKind::Patch, Some(3))]
        );
        seq.offer("s", change(3));
        assert!(frames(&mut sub).is_empty(), "a duplicate is dropped");
    }

    #[tokio::test]
    async fn a_version_that_never_arrives_ends_in_a_snapshot_of_the_newest() {
        let (seq, mut sub) = start();
        seq.offer("s", change(4));
        seq.offer("s", change(3));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(frames(&mut sub).is_empty(), "held for the catch-up time");
        let mut got = Vec::new();
        for _ in 0..100 {
            got = frames(&mut sub);
            if !got.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(got, [(FrameKind::Snapshot, Some(4))]);
        seq.offer("s", change(2));
        assert!(frames(&mut sub).is_empty(), "2 is older than the snapshot");
    }

    #[tokio::test]
    async fn held_changes_are_bounded_per_stream() {
        let (seq, mut sub) = start();
        for v in 3..=(3 + MAX_HELD_PER_STREAM as u64) {
            seq.offer("s", change(v));
        }
        let got = frames(&mut sub);
        assert_eq!(
            got,
            [(FrameKind::Snapshot, Some(3 + MAX_HELD_PER_STREAM as u64))]
        );
    }
}
