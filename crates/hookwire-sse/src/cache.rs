//! [`StateCache`]: an LRU of latest states per stream, on the `lru` crate.

use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;

use lru::LruCache;

/// Default capacity (50 streams), what JavaScript live-state servers default to.
pub const DEFAULT_CACHE_SIZE: usize = 50;

/// A least-recently-used map from stream id to its latest state.
///
/// `get` promotes to most-recently-used, `has` does not; `set` evicts the least recently used
/// entry when full; a capacity of 0 retains nothing (reference §3.3).
///
/// ```
/// use hookwire_sse::StateCache;
/// let mut c = StateCache::new(2);
/// c.set("a", 1);
/// c.set("b", 2);
/// c.get(&"a");          // a becomes most recent
/// c.set("c", 3);        // evicts b
/// assert!(c.has(&"a") && !c.has(&"b") && c.has(&"c"));
/// let order: Vec<_> = c.entries().map(|(k, _)| *k).collect();
/// assert_eq!(order, ["a", "c"]); // least → most recently used
/// ```
#[derive(Debug)]
pub struct StateCache<K: Hash + Eq, V> {
    inner: Option<LruCache<K, V>>,
}

impl<K: Hash + Eq, V> StateCache<K, V> {
    /// A cache holding at most `max_size` entries.
    pub fn new(max_size: usize) -> Self {
        Self {
            inner: NonZeroUsize::new(max_size).map(LruCache::new),
        }
    }

    /// The value for `key`, promoted to most recently used.
    pub fn get<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.inner.as_mut()?.get(key)
    }

    /// Mutable access, promoted to most recently used.
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.inner.as_mut()?.get_mut(key)
    }

    /// Inserts or replaces `key` as most recently used; returns the entry evicted to make room.
    pub fn set(&mut self, key: K, value: V) -> Option<(K, V)> {
        let out = match self.inner.as_mut() {
            Some(c) => c.push(key, value),
            None => Some((key, value)),
        };
        // `push` also returns the old value of a replaced key; that is not an eviction.
        out.filter(|(k, _)| !self.has(k))
    }

    /// Removes `key`.
    pub fn delete<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.inner.as_mut()?.pop(key)
    }

    /// Whether `key` is cached (no promotion).
    pub fn has<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.inner.as_ref().is_some_and(|c| c.contains(key))
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, LruCache::len)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.inner.as_ref().map_or(0, |c| c.cap().get())
    }

    /// Entries from least to most recently used.
    pub fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.inner.iter().flat_map(|c| c.iter().rev())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwriting_a_key_does_not_grow_or_evict() {
        let mut c = StateCache::new(2);
        assert!(c.set("a", 1).is_none());
        assert!(c.set("b", 2).is_none());
        assert!(c.set("a", 3).is_none());
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"a"), Some(&3));
        assert_eq!(c.set("c", 4), Some(("b", 2)));
    }

    #[test]
    fn zero_capacity_retains_nothing() {
        let mut c = StateCache::new(0);
        assert_eq!(c.set("a", 1), Some(("a", 1)));
        assert!(!c.has(&"a"));
        assert_eq!(c.get(&"a"), None);
        assert_eq!(c.len(), 0);
        assert_eq!(c.capacity(), 0);
    }

    #[test]
    fn has_does_not_promote_but_get_does() {
        let mut c = StateCache::new(2);
        c.set("a", 1);
        c.set("b", 2);
        assert!(c.has(&"a"));
        c.set("c", 3); // a was not promoted by has → evicted
        assert!(!c.has(&"a"));
        c.get(&"b");
        c.set("d", 4); // b was promoted by get → c evicted
        assert!(c.has(&"b") && !c.has(&"c"));
        assert_eq!(c.delete(&"b"), Some(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c.capacity(), 2);
    }
}
