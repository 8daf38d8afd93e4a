//! Unique, sortable identifiers for events, deliveries and fencing tokens.
//!
//! Core avoids a `rand`/`uuid` dependency: std's `RandomState` is seeded from the OS once per
//! process and hashing a counter through it gives unpredictable 64-bit words, which is all an id
//! needs (ids are not secrets; signatures never depend on them being unguessable).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn state() -> &'static RandomState {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::new)
}

/// A random 64-bit word (not cryptographically secure; used for ids and jitter).
///
/// ```
/// assert_ne!(hookwire_core::id::random_u64(), hookwire_core::id::random_u64());
/// ```
pub fn random_u64() -> u64 {
    let mut h = state().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A uniform float in `[0, 1)`, for jitter.
///
/// ```
/// let x = hookwire_core::id::random_unit();
/// assert!((0.0..1.0).contains(&x));
/// ```
pub fn random_unit() -> f64 {
    // 53 random mantissa bits give every representable step in [0, 1).
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new identifier `<prefix>_<26 chars>`: 48 bits of milliseconds then 80 random bits, in
/// Crockford base32, so ids sort by creation time (like ULIDs).
///
/// ```
/// let id = hookwire_core::id::new_id("evt");
/// assert!(id.starts_with("evt_"));
/// assert_eq!(id.len(), 4 + 26);
/// ```
pub fn new_id(prefix: &str) -> String {
    let millis = u128::from(crate::time::unix_millis() & 0xFFFF_FFFF_FFFF);
    let rand = (u128::from(random_u64()) << 16) | u128::from(random_u64() & 0xFFFF);
    let mut v = (millis << 80) | (rand & ((1u128 << 80) - 1));
    let mut buf = [0u8; 26];
    for slot in buf.iter_mut().rev() {
        *slot = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    // The alphabet is ASCII, so each byte is one char.
    out.extend(buf.iter().map(|&b| b as char));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_time_sorted() {
        let a = new_id("x");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("x");
        assert_ne!(a, b);
        assert!(a < b, "{a} should sort before {b}");
    }
}
