//! Replay protection for schemes whose idempotency key is not signed.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use hookwire_core::signing::{Scheme, Verified};

/// Default number of signatures remembered.
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

/// Default time a verified GitHub (or `body`) signature stays bound to its first delivery id:
/// 24 h, the default done-key TTL of the idempotency store.
pub const DEFAULT_UNTIMED_REPLAY_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// What identifies one signed message: the scheme, the MAC bytes that verified and the signed
/// timestamp. Header spelling (hex case, extra or reordered entries, spaces) does not change it,
/// so every spelling of one captured request is the same fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The scheme that verified.
    pub scheme: Scheme,
    /// The HMAC that matched.
    pub mac: [u8; 32],
    /// The signed timestamp (`None` for schemes without one).
    pub timestamp: Option<i64>,
}

impl Fingerprint {
    /// The fingerprint of a verified request whose idempotency key is not signed (`None` under
    /// `standard`, whose signed `webhook-id` is the key, and for Ed25519 matches).
    pub fn of(v: &Verified) -> Option<Self> {
        if v.id_is_signed() {
            return None;
        }
        Some(Self {
            scheme: v.scheme,
            mac: v.mac?,
            timestamp: v.timestamp,
        })
    }

    /// A key made of the fingerprint itself (`<scheme>:<hex MAC>`), for requests that carry no
    /// key: one signed message, one key.
    pub fn as_key(&self) -> String {
        let mut out = String::with_capacity(self.scheme.as_str().len() + 1 + 64);
        out.push_str(self.scheme.as_str());
        out.push(':');
        for b in self.mac {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }
}

/// Remembers which idempotency key each signed message first came with, for a window.
///
/// Under `hookwire`, `stripe` and `slack` the `Idempotency-Key` header is not covered by the
/// signature, so someone who captured a request could resend it inside the timestamp window
/// with a new key and pass both verification and de-duplication. GitHub signs neither a
/// timestamp nor its `X-GitHub-Delivery` id, so a captured delivery verifies forever under any
/// delivery id. The cache binds the message's [`Fingerprint`] to the key it was first seen
/// with: a resend is de-duplicated on the original key whatever key it carries, while the
/// sender's own retries (same key) are unaffected. In-process only: with several nodes each
/// remembers what it saw.
#[derive(Debug)]
pub struct ReplayCache {
    window: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

struct Entry {
    fp: Fingerprint,
    key: Box<str>,
}

struct Inner {
    table: HashTable<Entry>,
    // Keyed SipHash: MACs come from the network (though only verified ones get here).
    hasher: RandomState,
    // First-seen order (and so expiry order, one window for all): (seen at, hash, fingerprint).
    order: VecDeque<(Instant, u64, Fingerprint)>,
}

impl Inner {
    fn forget_oldest(&mut self) {
        if let Some((_, hash, fp)) = self.order.pop_front()
            && let Ok(e) = self.table.find_entry(hash, |e| e.fp == fp)
        {
            e.remove();
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("signatures", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl ReplayCache {
    /// A cache remembering signatures for `window` (the whole timestamp window, past plus
    /// future, or the horizon for schemes without a timestamp), at most `max` of them (the
    /// oldest go first; a full cache of more than 1 024 drops a small batch of them at once).
    pub fn new(window: Duration, max: usize) -> Self {
        Self {
            window,
            max,
            inner: Mutex::new(Inner {
                table: HashTable::new(),
                hasher: RandomState::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// How long a fingerprint stays bound.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The key to de-duplicate on: the one `fp` was first seen with (recording `key` when it
    /// is new).
    pub fn bind(&self, fp: &Fingerprint, key: &str) -> String {
        let now = Instant::now();
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let max = self.max.max(1);
        while inner
            .order
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= self.window)
        {
            inner.forget_oldest();
        }
        if inner.order.len() >= max {
            // Full: drop a small batch of the oldest (one per 1 024 of capacity, at most 32).
            // Each is a miss on a cold slot, and misses in one loop overlap.
            for _ in 0..(max / 1024).clamp(1, 32) {
                inner.forget_oldest();
            }
        }
        let hash = inner.hasher.hash_one(fp);
        if let Some(e) = inner.table.find(hash, |e| e.fp == *fp) {
            return e.key.to_string();
        }
        let hasher = &inner.hasher;
        inner.table.insert_unique(
            hash,
            Entry {
                fp: *fp,
                key: key.into(),
            },
            |e| hasher.hash_one(e.fp),
        );
        inner.order.push_back((now, hash, *fp));
        key.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u32) -> Fingerprint {
        let mut mac = [0u8; 32];
        mac[..4].copy_from_slice(&n.to_be_bytes());
        Fingerprint {
            scheme: Scheme::Hookwire,
            mac,
            timestamp: Some(1),
        }
    }

    #[test]
    fn first_key_wins_within_the_window_and_is_forgotten_after() {
        let c = ReplayCache::new(Duration::from_millis(50), 10);
        assert_eq!(c.bind(&fp(1), "k1"), "k1");
        assert_eq!(c.bind(&fp(1), "k2"), "k1");
        assert_eq!(c.bind(&fp(2), "k2"), "k2");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.bind(&fp(1), "k3"), "k3");
    }

    #[test]
    fn scheme_and_timestamp_are_part_of_the_fingerprint() {
        let c = ReplayCache::new(Duration::from_secs(60), 10);
        assert_eq!(c.bind(&fp(1), "k1"), "k1");
        let other_ts = Fingerprint {
            timestamp: Some(2),
            ..fp(1)
        };
        assert_eq!(c.bind(&other_ts, "k2"), "k2");
        let other_scheme = Fingerprint {
            scheme: Scheme::Slack,
            ..fp(1)
        };
        assert_eq!(c.bind(&other_scheme, "k3"), "k3");
    }

    #[test]
    fn a_fingerprint_key_is_the_scheme_and_the_hex_mac() {
        let k = fp(0x0102_a0ff).as_key();
        assert_eq!(k, format!("hookwire:0102a0ff{}", "0".repeat(56)));
    }

    #[test]
    fn bounded() {
        let c = ReplayCache::new(Duration::from_secs(60), 2);
        c.bind(&fp(1), "1");
        c.bind(&fp(2), "2");
        c.bind(&fp(3), "3");
        assert_eq!(c.inner.lock().unwrap().table.len(), 2);
        assert_eq!(c.bind(&fp(3), "x"), "3");
    }

    #[test]
    fn a_full_large_cache_forgets_its_oldest_in_a_batch() {
        let c = ReplayCache::new(Duration::from_secs(60), 2048);
        for i in 0..2048 {
            assert_eq!(c.bind(&fp(i), &format!("k{i}")), format!("k{i}"));
        }
        assert_eq!(c.bind(&fp(9999), "kn"), "kn");
        // 2048 / 1024 = 2 oldest went; the third is still bound to its first key.
        assert_eq!(c.inner.lock().unwrap().table.len(), 2048 - 2 + 1);
        assert_eq!(c.bind(&fp(2), "other"), "k2");
        assert_eq!(c.bind(&fp(0), "again"), "again");
    }
}
