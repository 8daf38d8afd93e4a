//! Replay protection for schemes whose idempotency key is not signed.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use hookwire_core::signing::{HeaderLookup, HeaderSource, Scheme};

/// Default number of signatures remembered.
pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

/// Remembers which idempotency key each signature first came with, for the timestamp window.
///
/// Under `hookwire`, `stripe` and `slack` the `Idempotency-Key` header is not covered by the
/// signature, so someone who captured a request could resend it inside the window with a new
/// key and pass both verification and de-duplication. The cache binds the signature to the key
/// it was first seen with: a resend is de-duplicated on the original key whatever key it
/// carries, while the sender's own retries (same key) are unaffected. In-process only: with
/// several nodes each remembers what it saw.
#[derive(Debug)]
pub struct ReplayCache {
    window: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

struct Entry {
    // Shared with the expiry queue: one allocation per signature, and the queue finds its
    // entry by pointer.
    signature: Arc<str>,
    key: Box<str>,
}

struct Inner {
    table: HashTable<Entry>,
    // Keyed SipHash: signatures come from the network.
    hasher: RandomState,
    // First-seen order (and so expiry order, one window for all): (seen at, hash, signature).
    order: VecDeque<(Instant, u64, Arc<str>)>,
}

impl Inner {
    fn forget_oldest(&mut self) {
        if let Some((_, hash, sig)) = self.order.pop_front()
            && let Ok(e) = self
                .table
                .find_entry(hash, |e| Arc::ptr_eq(&e.signature, &sig))
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
    /// future), at most `max` of them (the oldest go first; a full cache of more than 1 024
    /// drops a small batch of them at once).
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

    /// The signature header of schemes that need the cache.
    pub(crate) fn signature<H: HeaderSource + ?Sized>(scheme: Scheme, headers: &H) -> Option<&str> {
        let name = match scheme {
            Scheme::Hookwire => "x-webhook-signature",
            Scheme::Stripe => "stripe-signature",
            Scheme::Slack => "x-slack-signature",
            _ => return None,
        };
        match headers.lookup(name) {
            HeaderLookup::One(v) => std::str::from_utf8(v).ok(),
            _ => None,
        }
    }

    /// The key to de-duplicate on: the one `signature` was first seen with (recording `key`
    /// when it is new).
    pub fn bind(&self, signature: &str, key: &str) -> String {
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
        let hash = inner.hasher.hash_one(signature);
        if let Some(e) = inner.table.find(hash, |e| &*e.signature == signature) {
            return e.key.to_string();
        }
        let sig: Arc<str> = Arc::from(signature);
        let hasher = &inner.hasher;
        inner.table.insert_unique(
            hash,
            Entry {
                signature: sig.clone(),
                key: key.into(),
            },
            |e| hasher.hash_one(&*e.signature),
        );
        inner.order.push_back((now, hash, sig));
        key.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_wins_within_the_window_and_is_forgotten_after() {
        let c = ReplayCache::new(Duration::from_millis(50), 10);
        assert_eq!(c.bind("sig", "k1"), "k1");
        assert_eq!(c.bind("sig", "k2"), "k1");
        assert_eq!(c.bind("other", "k2"), "k2");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.bind("sig", "k3"), "k3");
    }

    #[test]
    fn bounded() {
        let c = ReplayCache::new(Duration::from_secs(60), 2);
        c.bind("a", "1");
        c.bind("b", "2");
        c.bind("c", "3");
        assert_eq!(c.inner.lock().unwrap().table.len(), 2);
        assert_eq!(c.bind("c", "x"), "3");
    }

    #[test]
    fn a_full_large_cache_forgets_its_oldest_in_a_batch() {
        let c = ReplayCache::new(Duration::from_secs(60), 2048);
        for i in 0..2048 {
            assert_eq!(
                c.bind(&format!("sig{i}"), &format!("k{i}")),
                format!("k{i}")
            );
        }
        assert_eq!(c.bind("new", "kn"), "kn");
        // 2048 / 1024 = 2 oldest went; the third is still bound to its first key.
        assert_eq!(c.inner.lock().unwrap().table.len(), 2048 - 2 + 1);
        assert_eq!(c.bind("sig2", "other"), "k2");
        assert_eq!(c.bind("sig0", "again"), "again");
    }
}
