//! [`PresenceTracker`]: reference-counted presence per stream (reference §3.4).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

#[derive(Debug, Default)]
struct StreamPresence {
    // identity → (insertion sequence, count); the sequence keeps `online` in insertion order.
    ids: HashMap<String, (u64, u32)>,
    seq: u64,
}

/// Who is online per stream, counting connections so that two tabs need two removes.
///
/// Thread-safe; share it in an `Arc`. Presence changes are usually published as overlays
/// with [`BroadcastChannel::overlay`](crate::BroadcastChannel::overlay) and
/// [`overlay_patch`](Self::overlay_patch).
///
/// ```
/// use hookwire_sse::PresenceTracker;
/// let p = PresenceTracker::new();
/// p.add("board", "ann");
/// p.add("board", "ann"); // second tab
/// p.add("board", "bob");
/// p.remove("board", "ann");
/// assert!(p.is_online("board", "ann"));
/// p.remove("board", "ann");
/// assert!(!p.is_online("board", "ann"));
/// assert_eq!(p.online("board"), ["bob"]);
/// ```
#[derive(Debug)]
pub struct PresenceTracker {
    streams: Mutex<HashMap<String, StreamPresence>>,
    /// Identities online on other nodes, per stream, as last read from a shared roster
    /// (`redis::SharedPresence`); empty without one.
    remote: Mutex<HashMap<String, Vec<String>>>,
    max_per_stream: usize,
}

/// Default cap on identities online per stream ([`PresenceTracker::max_per_stream`]): every
/// change publishes the whole roster, so an unbounded roster is unbounded work per join.
pub const DEFAULT_MAX_PRESENCE_PER_STREAM: usize = 1_000;

impl Default for PresenceTracker {
    fn default() -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            max_per_stream: DEFAULT_MAX_PRESENCE_PER_STREAM,
        }
    }
}

impl PresenceTracker {
    /// An empty tracker (at most [`DEFAULT_MAX_PRESENCE_PER_STREAM`] identities per stream).
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps the identities online per stream. A cap of 0 (nobody could ever show online) is
    /// refused with an error of kind [`crate::ErrorKind::Invalid`]. A further identity is not
    /// counted ([`try_add`](Self::try_add) answers `None`; its stream is still served, it just
    /// does not appear in the roster); more connections of an identity already online always
    /// count.
    ///
    /// ```
    /// let p = hookwire_sse::PresenceTracker::new().max_per_stream(2)?;
    /// assert_eq!(p.try_add("s", "ann"), Some(true));
    /// assert_eq!(p.try_add("s", "bob"), Some(true));
    /// assert_eq!(p.try_add("s", "eve"), None);
    /// assert_eq!(p.try_add("s", "ann"), Some(false), "a second tab of someone online");
    /// assert_eq!(p.online("s"), ["ann", "bob"]);
    /// assert!(hookwire_sse::PresenceTracker::new().max_per_stream(0).unwrap_err().is_invalid());
    /// # Ok::<(), hookwire_sse::Error>(())
    /// ```
    pub fn max_per_stream(mut self, n: usize) -> Result<Self, crate::Error> {
        if n == 0 {
            return Err(crate::Error::invalid(
                "presence max_per_stream must be at least 1, got 0",
            ));
        }
        self.max_per_stream = n;
        Ok(self)
    }

    /// One more connection of `id` on `stream`. Returns true when `id` just came online. Past
    /// the per-stream cap a new identity is not counted (and false is returned); use
    /// [`try_add`](Self::try_add) to tell the two apart.
    pub fn add(&self, stream: &str, id: &str) -> bool {
        self.try_add(stream, id).unwrap_or(false)
    }

    /// Like [`add`](Self::add), but `None` when `id` was not counted because `stream` already
    /// has the maximum of identities online; only a counted connection may be
    /// [`remove`](Self::remove)d.
    pub fn try_add(&self, stream: &str, id: &str) -> Option<bool> {
        let mut g = crate::lock(&self.streams);
        if let Some(s) = g.get(stream)
            && s.ids.len() >= self.max_per_stream
            && !s.ids.contains_key(id)
        {
            return None;
        }
        let s = g.entry(stream.to_owned()).or_default();
        s.seq += 1;
        let seq = s.seq;
        let e = s.ids.entry(id.to_owned()).or_insert((seq, 0));
        e.1 = e.1.saturating_add(1);
        Some(e.1 == 1)
    }

    /// One connection of `id` on `stream` fewer. Unknown streams and identities are a no-op.
    /// Returns true when `id` just went offline.
    pub fn remove(&self, stream: &str, id: &str) -> bool {
        let mut g = crate::lock(&self.streams);
        let Some(s) = g.get_mut(stream) else {
            return false;
        };
        let gone = match s.ids.get_mut(id) {
            Some(e) if e.1 > 1 => {
                e.1 -= 1;
                false
            }
            Some(_) => {
                s.ids.remove(id);
                true
            }
            None => false,
        };
        if s.ids.is_empty() {
            g.remove(stream);
        }
        gone
    }

    /// Identities online on `stream`, in the order they came online (a new `Vec`); with a
    /// shared roster, followed by those online only on other nodes (at most
    /// [`max_per_stream`](Self::max_per_stream) in all).
    pub fn online(&self, stream: &str) -> Vec<String> {
        let mut v = self.online_here(stream);
        if let Some(remote) = crate::lock(&self.remote).get(stream) {
            for id in remote {
                if v.len() >= self.max_per_stream {
                    break;
                }
                if !v.contains(id) {
                    v.push(id.clone());
                }
            }
        }
        v
    }

    /// Identities with a connection to this node on `stream`, in the order they came online.
    pub fn online_here(&self, stream: &str) -> Vec<String> {
        let g = crate::lock(&self.streams);
        let Some(s) = g.get(stream) else {
            return Vec::new();
        };
        let mut v: Vec<_> = s
            .ids
            .iter()
            .map(|(k, (seq, _))| (*seq, k.clone()))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, k)| k).collect()
    }

    /// Streams with at least one identity connected to this node.
    pub fn streams_here(&self) -> Vec<String> {
        crate::lock(&self.streams).keys().cloned().collect()
    }

    /// Replaces the identities online on other nodes for `stream` (sorted, deduplicated by the
    /// caller); true when the roster [`online`](Self::online) reports changed.
    #[cfg(feature = "redis")]
    pub(crate) fn set_remote(&self, stream: &str, ids: Vec<String>) -> bool {
        let before = self.online(stream);
        {
            let mut g = crate::lock(&self.remote);
            if ids.is_empty() {
                g.remove(stream);
            } else {
                g.insert(stream.to_owned(), ids);
            }
        }
        self.online(stream) != before
    }

    /// Streams with identities online on other nodes.
    #[cfg(feature = "redis")]
    pub(crate) fn remote_streams(&self) -> Vec<String> {
        crate::lock(&self.remote).keys().cloned().collect()
    }

    /// Whether `id` is online on `stream` (here, or on another node with a shared roster).
    pub fn is_online(&self, stream: &str, id: &str) -> bool {
        crate::lock(&self.streams)
            .get(stream)
            .is_some_and(|s| s.ids.contains_key(id))
            || crate::lock(&self.remote)
                .get(stream)
                .is_some_and(|r| r.iter().any(|x| x == id))
    }

    /// An overlay patch `{ key: [online ids] }` for publishing presence as a version-neutral
    /// change.
    ///
    /// ```
    /// let p = hookwire_sse::PresenceTracker::new();
    /// p.add("s", "ann");
    /// assert_eq!(p.overlay_patch("s", "online"), serde_json::json!({"online": ["ann"]}));
    /// ```
    pub fn overlay_patch(&self, stream: &str, key: &str) -> Value {
        json!({ key: self.online(stream) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_on_unknown_stream_or_identity_is_harmless() {
        let p = PresenceTracker::new();
        assert!(!p.remove("nope", "x"));
        p.add("s", "a");
        assert!(!p.remove("s", "x"));
        assert!(p.is_online("s", "a"));
        assert!(p.remove("s", "a"));
        assert!(p.online("s").is_empty());
        // The stream entry is gone once empty.
        assert!(crate::lock(&p.streams).is_empty());
    }

    #[test]
    fn online_keeps_insertion_order_and_is_a_copy() {
        let p = PresenceTracker::new();
        for id in ["c", "a", "b"] {
            assert!(p.add("s", id));
        }
        assert!(!p.add("s", "a"));
        let mut snapshot = p.online("s");
        assert_eq!(snapshot, ["c", "a", "b"]);
        snapshot.clear();
        assert_eq!(p.online("s").len(), 3);
        assert!(p.online("other").is_empty());
    }
}
