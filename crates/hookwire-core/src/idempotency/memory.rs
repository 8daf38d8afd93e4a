//! [`MemoryStore`]: the bounded in-process [`IdempotencyStore`], one hash table of slots with
//! a commit-order eviction queue.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::{BoxFuture, Claim, FencingToken, IdempotencyConfig, IdempotencyStore, StoreError};

// A table slot is 48 bytes: the key, its expiry, one word that is either a commit sequence
// number (done) or a claim id (in flight, top bit set), and an optional committed value. With
// 100 000 keys the table is ~6 MiB, and each claim or eviction touches one line of it.
const IN_FLIGHT: u64 = 1 << 63;

/// Most committed keys evicted at once when a full store needs room.
const EVICT_BATCH: usize = 32;

#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    // Nanoseconds since the store's epoch.
    until: u64,
    word: u64,
    // What `commit_value` kept with a done key (an HTTP API's stored response); `None` for
    // plain commits and in-flight claims, so webhook keys pay only the empty option.
    value: Option<Arc<[u8]>>,
}

impl Slot {
    fn in_flight(&self) -> Option<u64> {
        (self.word & IN_FLIGHT != 0).then_some(self.word & !IN_FLIGHT)
    }
}

#[derive(Debug)]
struct DoneSlot {
    seq: u64,
    until: u64,
    hash: u64,
    // The same allocation as the table's key: eviction finds its slot by pointer, and while
    // this clone lives the address cannot be reused by a newer claim of the same key.
    key: Arc<str>,
}

struct Inner {
    table: HashTable<Slot>,
    // Keyed SipHash: keys come from the network, so a fixed hash would let a sender flood one
    // bucket chain.
    hasher: RandomState,
    // Committed keys by commit order (ascending `seq`): the eviction queue. In-flight keys are
    // never in it, so eviction can never drop a claim that is still being processed. An entry
    // whose key was since removed or re-committed is stale (its `seq` or allocation no longer
    // matches the table's) and is skipped when it reaches the front; it is always behind
    // expired entries only (one TTL per store), so `gc` drops it on the next claim. The slot
    // carries its expiry and hash so `gc` can stop at a live front without touching the table,
    // and eviction never rehashes a key whose text is cold in memory.
    done: VecDeque<DoneSlot>,
    seq: u64,
    // Claim ids: a token is `hex(salt) hex(id)`, so the table keeps 8 bytes per claim and a
    // token from another store (different salt) never matches.
    salt: u64,
    claims: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            hasher: RandomState::new(),
            done: VecDeque::new(),
            seq: 0,
            salt: crate::id::random_u64(),
            claims: 0,
        }
    }
}

impl Inner {
    fn token(&self, id: u64) -> FencingToken {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.salt.to_be_bytes());
        raw[8..].copy_from_slice(&id.to_be_bytes());
        FencingToken::from_raw(raw)
    }

    /// The claim id `token` stands for, if this store minted it.
    fn claim_id(&self, token: &FencingToken) -> Option<u64> {
        let mut raw = [0u8; 16];
        hex::decode_to_slice(token.as_str(), &mut raw).ok()?;
        let (salt, id) = raw.split_at(8);
        let salt = u64::from_be_bytes(salt.try_into().ok()?);
        let id = u64::from_be_bytes(id.try_into().ok()?);
        (salt == self.salt).then_some(id)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("keys", &self.table.len())
            .field("done_queue", &self.done.len())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A bounded in-process [`IdempotencyStore`].
///
/// When full it first drops expired keys, then the oldest *committed* keys (a batch of up to
/// 32 at once, one per 1 024 of capacity, so a full store of 100 000 keys may briefly hold 32
/// fewer), then expired leases; it never evicts a live in-flight claim — a claim that finds no
/// room fails with [`StoreError::is_full`] (the receiver answers 503, and the sender retries)
/// rather than risking a duplicate.
///
/// ```
/// # tokio_test_block_on(async {
/// use hookwire_core::{Claim, IdempotencyStore, MemoryStore};
/// let store = MemoryStore::new(Default::default());
/// let Claim::Fresh(token) = store.claim("evt_1").await.unwrap() else { unreachable!() };
/// assert!(matches!(store.claim("evt_1").await.unwrap(), Claim::InFlight { .. }));
/// assert!(store.commit("evt_1", &token).await.unwrap());
/// assert_eq!(store.claim("evt_1").await.unwrap(), Claim::Done);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output { hookwire_core::idempotency::block_on(f) }
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    config: IdempotencyConfig,
    // Expiries are kept as nanoseconds since this instant (8 bytes where `Instant` takes 16).
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// A store with `config`.
    pub fn new(config: IdempotencyConfig) -> Self {
        Self {
            config,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// Keys currently held (in flight or done, expired ones dropped first).
    pub fn len(&self) -> usize {
        let now = self.nanos(Instant::now());
        let mut inner = self.lock();
        Self::gc(&mut inner, now);
        inner.table.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.table.clear();
        inner.done.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-operation; every operation
        // leaves the table consistent between statements, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn nanos(&self, t: Instant) -> u64 {
        // u64 nanoseconds last 584 years; saturate rather than wrap past that.
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn later(now: u64, d: Duration) -> u64 {
        now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn gc(inner: &mut Inner, now: u64) {
        // Commit order approximates expiry order (one TTL per store), so stop at the first
        // live entry; a stray expired key further on is caught on lookup.
        // A stale slot's key expired before it was re-claimed, so stale slots are expired too
        // and the expiry test alone finds everything to drop.
        while inner.done.front().is_some_and(|s| s.until <= now) {
            if let Some(slot) = inner.done.pop_front() {
                Self::drop_done(inner, &slot);
            }
        }
    }

    /// Removes the key a dequeued slot stands for, unless the slot is stale (the key was
    /// re-claimed since, and may be in flight again).
    fn drop_done(inner: &mut Inner, slot: &DoneSlot) {
        if let Ok(entry) = inner.table.find_entry(slot.hash, |s| {
            Arc::ptr_eq(&s.key, &slot.key) && s.word == slot.seq
        }) {
            entry.remove();
        }
    }

    fn make_room(&self, inner: &mut Inner, now: u64) -> Result<(), StoreError> {
        let cap = self.config.max_entries;
        Self::gc(inner, now);
        while inner.table.len() >= cap {
            if !inner.done.is_empty() {
                // Evict a small batch (the oldest commits) rather than one key per claim: each
                // eviction is a cache miss on a cold slot, and independent misses in one loop
                // overlap, where one per claim pays the full latency every time.
                let batch = (cap / 1024).clamp(1, EVICT_BATCH);
                for _ in 0..batch {
                    let Some(slot) = inner.done.pop_front() else {
                        break;
                    };
                    Self::drop_done(inner, &slot);
                }
                continue;
            }
            // Only in-flight entries remain: drop those whose lease has run out.
            let before = inner.table.len();
            inner
                .table
                .retain(|s| !(s.in_flight().is_some() && s.until <= now));
            if inner.table.len() == before {
                return Err(StoreError::full(cap));
            }
        }
        Ok(())
    }

    fn claim_at(&self, key: &str, at: Instant) -> Result<Claim, StoreError> {
        let now = self.nanos(at);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let hash = inner.hasher.hash_one(key);
        if let Ok(entry) = inner.table.find_entry(hash, |s| &*s.key == key) {
            let slot = entry.get();
            if slot.until > now {
                if slot.in_flight().is_none() {
                    return Ok(Claim::Done);
                }
                return Ok(Claim::InFlight {
                    retry_after: Duration::from_nanos(slot.until - now).max(Duration::from_secs(1)),
                });
            }
            // Expired: the key is free again (its queue slot turns stale; `gc` below drops it
            // together with the older, also expired, slots in front of it).
            entry.remove();
        }
        if self.config.max_entries == 0 {
            return Err(StoreError::full(0));
        }
        self.make_room(inner, now)?;
        inner.claims = (inner.claims + 1) & !IN_FLIGHT;
        let id = inner.claims;
        let slot = Slot {
            key: Arc::from(key),
            until: Self::later(now, self.config.lease),
            word: id | IN_FLIGHT,
            value: None,
        };
        let hasher = &inner.hasher;
        inner
            .table
            .insert_unique(hash, slot, |s| hasher.hash_one(&*s.key));
        Ok(Claim::Fresh(inner.token(id)))
    }

    /// The value kept with `key`, while it is done and unexpired.
    fn value_at(&self, key: &str, at: Instant) -> Option<Vec<u8>> {
        let now = self.nanos(at);
        let inner = self.lock();
        let hash = inner.hasher.hash_one(key);
        let slot = inner.table.find(hash, |s| &*s.key == key)?;
        if slot.until <= now || slot.in_flight().is_some() {
            return None;
        }
        slot.value.as_deref().map(<[u8]>::to_vec)
    }

    /// Drops `key` in any state; its eviction-queue slot turns stale (the table no longer holds
    /// that allocation) and is skipped.
    fn remove_key(&self, key: &str) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let hash = inner.hasher.hash_one(key);
        match inner.table.find_entry(hash, |s| &*s.key == key) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// The in-flight claim `token` holds on `key`, with the key's hash.
    fn held<'i>(
        inner: &'i mut Inner,
        key: &str,
        token: &FencingToken,
    ) -> Option<(u64, hashbrown::hash_table::OccupiedEntry<'i, Slot>)> {
        let id = inner.claim_id(token)?;
        let hash = inner.hasher.hash_one(key);
        let entry = inner
            .table
            .find_entry(hash, |s| s.in_flight() == Some(id) && &*s.key == key)
            .ok()?;
        Some((hash, entry))
    }

    /// Pushes an in-flight claim's lease to one full lease from now.
    fn renew_at(&self, key: &str, token: &FencingToken, at: Instant) -> bool {
        let now = self.nanos(at);
        let mut guard = self.lock();
        let Some((_, mut entry)) = Self::held(&mut guard, key, token) else {
            return false;
        };
        let slot = entry.get_mut();
        if slot.until <= now {
            // Already expired: another request may claim it any moment; renewing now would
            // resurrect a lease the caller no longer had.
            return false;
        }
        slot.until = Self::later(now, self.config.lease);
        true
    }

    fn finish(&self, key: &str, token: &FencingToken, commit: bool) -> bool {
        self.finish_with(key, token, commit, None)
    }

    fn finish_with(
        &self,
        key: &str,
        token: &FencingToken,
        commit: bool,
        value: Option<Arc<[u8]>>,
    ) -> bool {
        let now = self.nanos(Instant::now());
        let mut guard = self.lock();
        let seq = guard.seq + 1;
        let until = Self::later(now, self.config.ttl);
        let Some((hash, entry)) = Self::held(&mut guard, key, token) else {
            return false;
        };
        if !commit {
            entry.remove();
            return true;
        }
        let slot = entry.into_mut();
        slot.until = until;
        slot.word = seq;
        slot.value = value;
        let key = slot.key.clone();
        let inner = &mut *guard;
        inner.seq = seq;
        inner.done.push_back(DoneSlot {
            seq,
            until,
            hash,
            key,
        });
        true
    }
}

impl IdempotencyStore for MemoryStore {
    fn commit_value<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let done = self.finish_with(key, token, true, Some(Arc::from(value)));
        Box::pin(std::future::ready(Ok(done)))
    }
    fn value<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(std::future::ready(Ok(self.value_at(key, Instant::now()))))
    }
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(self.remove_key(key))))
    }
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let r = self.claim_at(key, Instant::now());
        Box::pin(std::future::ready(r))
    }
    fn claim_now(&self, key: &str) -> Option<Result<Claim, StoreError>> {
        Some(self.claim_at(key, Instant::now()))
    }
    fn commit_now(&self, key: &str, token: &FencingToken) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.finish(key, token, true)))
    }
    fn release_now(&self, key: &str, token: &FencingToken) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.finish(key, token, false)))
    }
    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(self.finish(key, token, true))))
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(self.finish(key, token, false))))
    }
    fn lease(&self) -> Option<Duration> {
        Some(self.config.lease)
    }
    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(self.renew_at(
            key,
            token,
            Instant::now(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::super::block_on;
    use super::*;

    fn store(max: usize, lease_ms: u64, ttl_ms: u64) -> MemoryStore {
        MemoryStore::new(
            IdempotencyConfig::default()
                .with_max_entries(max)
                .with_lease(Duration::from_millis(lease_ms))
                .with_ttl(Duration::from_millis(ttl_ms)),
        )
    }

    fn fresh(s: &MemoryStore, k: &str) -> FencingToken {
        match block_on(s.claim(k)).unwrap() {
            Claim::Fresh(t) => t,
            other => panic!("expected fresh claim for {k}, got {other:?}"),
        }
    }

    #[test]
    fn eviction_drops_oldest_committed_never_in_flight() {
        let s = store(3, 60_000, 60_000);
        let t1 = fresh(&s, "a");
        let t2 = fresh(&s, "b");
        let _t3 = fresh(&s, "c"); // stays in flight
        assert!(block_on(s.commit("b", &t2)).unwrap());
        assert!(block_on(s.commit("a", &t1)).unwrap());
        // Full: "b" is the oldest commit and goes first.
        let _t4 = fresh(&s, "d");
        assert_eq!(block_on(s.claim("a")).unwrap(), Claim::Done);
        assert!(matches!(block_on(s.claim("b")).unwrap(), Claim::Fresh(_)));
        assert!(matches!(
            block_on(s.claim("c")).unwrap(),
            Claim::InFlight { .. }
        ));
    }

    #[test]
    fn full_of_live_claims_refuses_instead_of_evicting() {
        let s = store(2, 60_000, 60_000);
        fresh(&s, "a");
        fresh(&s, "b");
        let err = block_on(s.claim("c")).unwrap_err();
        assert!(err.is_full());
        assert!(matches!(
            block_on(s.claim("a")).unwrap(),
            Claim::InFlight { .. }
        ));
    }

    #[test]
    fn renew_extends_only_a_live_claim_of_its_own_token() {
        let s = store(10, 1_000, 60_000);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let Ok(Claim::Fresh(t)) = s.claim_at("a", t0) else {
            panic!("fresh claim");
        };
        // Renewed at 0.9 s: still in flight at 1.5 s, where the first lease had run out.
        assert!(s.renew_at("a", &t, t0 + ms(900)));
        assert!(matches!(
            s.claim_at("a", t0 + ms(1_500)),
            Ok(Claim::InFlight { .. })
        ));
        // Another token cannot renew it, and an expired lease is not resurrected.
        let Ok(Claim::Fresh(other)) = s.claim_at("b", t0) else {
            panic!("fresh claim");
        };
        assert!(!s.renew_at("a", &other, t0 + ms(1_000)));
        assert!(!s.renew_at("a", &t, t0 + ms(2_000)));
        assert!(matches!(
            s.claim_at("a", t0 + ms(2_000)),
            Ok(Claim::Fresh(_))
        ));
        // A committed key is no longer a claim to renew.
        assert!(s.finish("b", &other, true));
        assert!(!block_on(s.renew("b", &other)).unwrap());
    }

    #[test]
    fn zero_capacity_refuses_every_claim() {
        let s = store(0, 1000, 1000);
        assert!(block_on(s.claim("a")).unwrap_err().is_full());
    }

    #[test]
    fn recommitted_key_keeps_its_new_place_in_the_eviction_queue() {
        let s = store(2, 60_000, 30);
        let t = fresh(&s, "a");
        assert!(block_on(s.commit("a", &t)).unwrap());
        std::thread::sleep(Duration::from_millis(40));
        // Expired: claimable again; its old queue slot is now stale.
        let t = fresh(&s, "a");
        assert!(block_on(s.commit("a", &t)).unwrap());
        let t = fresh(&s, "b");
        assert!(block_on(s.commit("b", &t)).unwrap());
        // Full: the stale slot must not count; "a" (re-committed first) is the oldest.
        let _c = fresh(&s, "c");
        assert_eq!(s.len(), 2);
        assert_eq!(block_on(s.claim("b")).unwrap(), Claim::Done);
        assert!(matches!(block_on(s.claim("a")).unwrap(), Claim::Fresh(_)));
    }

    #[test]
    fn random_tokens_are_32_hex_digits_and_distinct() {
        let a = FencingToken::random();
        let b = FencingToken::random();
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        // A token read back as text (e.g. from Redis) is the same token.
        assert_eq!(FencingToken::new(a.as_str()), a);
        assert_ne!(FencingToken::new(b.as_str()), a);
    }

    #[test]
    fn stale_token_cannot_finish_a_newer_claim() {
        let s = store(10, 10, 60_000);
        let old = fresh(&s, "a");
        std::thread::sleep(Duration::from_millis(20));
        let new = fresh(&s, "a");
        assert!(!block_on(s.commit("a", &old)).unwrap());
        assert!(!block_on(s.release("a", &old)).unwrap());
        assert!(matches!(
            block_on(s.claim("a")).unwrap(),
            Claim::InFlight { .. }
        ));
        assert!(block_on(s.commit("a", &new)).unwrap());
        assert_eq!(block_on(s.claim("a")).unwrap(), Claim::Done);
    }

    #[test]
    fn many_keys_evict_in_commit_order() {
        let s = store(1000, 60_000, 60_000);
        for i in 0..5000 {
            let k = format!("k{i}");
            let t = fresh(&s, &k);
            assert!(block_on(s.commit(&k, &t)).unwrap());
        }
        assert_eq!(s.len(), 1000);
        assert!(matches!(
            block_on(s.claim("k3999")).unwrap(),
            Claim::Fresh(_)
        ));
        // Capacity 1000 evicts one key at a time: only k4000 made room for k3999.
        assert!(matches!(
            block_on(s.claim("k4000")).unwrap(),
            Claim::Fresh(_)
        ));
        assert_eq!(block_on(s.claim("k4002")).unwrap(), Claim::Done);
    }

    #[test]
    fn large_stores_evict_the_oldest_commits_in_a_batch() {
        let s = store(4096, 60_000, 60_000);
        for i in 0..4096 {
            let k = format!("k{i}");
            let t = fresh(&s, &k);
            assert!(block_on(s.commit(&k, &t)).unwrap());
        }
        let _new = fresh(&s, "new");
        // 4096 / 1024 = 4 oldest commits went at once; the fifth is still done.
        assert_eq!(s.len(), 4096 - 4 + 1);
        assert_eq!(block_on(s.claim("k4")).unwrap(), Claim::Done);
        assert!(matches!(
            block_on(s.claim("new")).unwrap(),
            Claim::InFlight { .. }
        ));
        for k in ["k0", "k1", "k2", "k3"] {
            assert!(
                matches!(block_on(s.claim(k)).unwrap(), Claim::Fresh(_)),
                "{k}"
            );
        }
    }

    #[test]
    fn committed_value_is_read_back_until_removed() {
        let s = store(10, 60_000, 60_000);
        let t = fresh(&s, "a");
        assert_eq!(block_on(s.value("a")).unwrap(), None);
        assert!(block_on(s.commit_value("a", &t, b"resp")).unwrap());
        assert_eq!(
            block_on(s.value("a")).unwrap().as_deref(),
            Some(&b"resp"[..])
        );
        assert_eq!(block_on(s.claim("a")).unwrap(), Claim::Done);
        assert!(block_on(s.remove("a")).unwrap());
        assert!(!block_on(s.remove("a")).unwrap());
        assert_eq!(block_on(s.value("a")).unwrap(), None);
        // The removed in-flight claim's token no longer finishes the new claim.
        let old = fresh(&s, "a");
        assert!(block_on(s.remove("a")).unwrap());
        let _new = fresh(&s, "a");
        assert!(!block_on(s.commit_value("a", &old, b"x")).unwrap());
    }

    #[test]
    fn expired_lease_frees_room_when_full() {
        let s = store(1, 10, 60_000);
        fresh(&s, "a");
        std::thread::sleep(Duration::from_millis(20));
        fresh(&s, "b");
        assert_eq!(s.len(), 1);
    }
}
