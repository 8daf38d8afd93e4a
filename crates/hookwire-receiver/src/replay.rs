//! Replay protection for schemes whose idempotency key is not signed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[derive(Debug, Default)]
struct Inner {
    keys: HashMap<Box<str>, (Box<str>, Instant)>,
    order: VecDeque<(Instant, Box<str>)>,
}

impl ReplayCache {
    /// A cache remembering signatures for `window` (the whole timestamp window, past plus
    /// future), at most `max` of them (the oldest go first).
    pub fn new(window: Duration, max: usize) -> Self {
        Self {
            window,
            max,
            inner: Mutex::new(Inner::default()),
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
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((at, _)) = inner.order.front() {
            if now.duration_since(*at) < self.window && inner.order.len() < self.max.max(1) {
                break;
            }
            if let Some((at, sig)) = inner.order.pop_front()
                && inner.keys.get(&sig).is_some_and(|(_, t)| *t == at)
            {
                inner.keys.remove(&sig);
            }
        }
        if let Some((first, _)) = inner.keys.get(signature) {
            return first.to_string();
        }
        inner.keys.insert(signature.into(), (key.into(), now));
        inner.order.push_back((now, signature.into()));
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
        assert_eq!(c.inner.lock().unwrap().keys.len(), 2);
        assert_eq!(c.bind("c", "x"), "3");
    }
}
