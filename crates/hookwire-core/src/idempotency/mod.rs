//! Two-phase idempotency: claim, then commit or release.
//!
//! A receiver claims a delivery's key before running its handler. The claim is *tentative*: if
//! the handler succeeds the key is committed (duplicates are answered as replays for the TTL); if
//! it fails, the key is released so the sender's retry is processed instead of being swallowed
//! (a known failure of single-phase stores). A fencing token makes a late release from a request whose lease
//! already expired unable to delete a newer claim. An in-flight claim expires after its lease, so
//! a crashed node never holds a key forever.
//!
//! [`MemoryStore`] is the bounded in-process store; `hookwire-receiver` adds a Redis store. Both
//! pass the same conformance suite (`hookwire-testkit`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::RetryPolicy;

/// A boxed, `Send` future: keeps store traits object-safe so receivers can hold
/// `Arc<dyn IdempotencyStore>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Proof of a claim; pass it back to [`IdempotencyStore::commit`] or [`IdempotencyStore::release`].
///
/// ```
/// let t = hookwire_core::FencingToken::new("abc");
/// assert_eq!(t.as_str(), "abc");
/// ```
#[derive(Clone)]
pub struct FencingToken(TokenRepr);

#[derive(Clone)]
enum TokenRepr {
    // Random tokens live inline: minting one on every claim then costs no allocation, and the
    // copy a memory store keeps is a plain 32-byte copy.
    Hex([u8; 32]),
    // Tokens handed back by other stores (e.g. read from Redis).
    Text(Arc<str>),
}

impl FencingToken {
    /// Wraps a token produced by a store.
    pub fn new(token: impl Into<String>) -> Self {
        Self(TokenRepr::Text(Arc::from(token.into())))
    }
    /// A fresh random token: 128 random bits as 32 lowercase hex digits.
    pub fn random() -> Self {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&crate::id::random_u64().to_be_bytes());
        raw[8..].copy_from_slice(&crate::id::random_u64().to_be_bytes());
        Self::from_raw(raw)
    }
    fn from_raw(raw: [u8; 16]) -> Self {
        let mut text = [0u8; 32];
        // Encoding 16 bytes into exactly 32 always succeeds; the fallback is unreachable.
        if hex::encode_to_slice(raw, &mut text).is_err() {
            return Self::new(hex::encode(raw));
        }
        Self(TokenRepr::Hex(text))
    }
    /// The token text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Hex digits are ASCII, so this never fails; "" would only ever compare unequal.
            TokenRepr::Hex(b) => std::str::from_utf8(b).unwrap_or(""),
            TokenRepr::Text(t) => t,
        }
    }
}

impl PartialEq for FencingToken {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (TokenRepr::Hex(a), TokenRepr::Hex(b)) => a == b,
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for FencingToken {}

impl std::hash::Hash for FencingToken {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FencingToken").field(&self.as_str()).finish()
    }
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free: process the request, then commit or release with this token.
    Fresh(FencingToken),
    /// Another request holds the key right now: answer 409 with `Retry-After`.
    InFlight {
        /// Time left on the holder's lease (at least one second).
        retry_after: Duration,
    },
    /// The key was processed successfully: answer as a replay.
    Done,
}

/// Why a store operation failed (the store is unreachable, or full of in-flight claims).
///
/// ```
/// let e = hookwire_core::StoreError::unavailable("connection refused");
/// assert!(e.is_unavailable());
/// assert_eq!(e.to_string(), "idempotency store unavailable: connection refused");
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreErrorKind {
    Unavailable,
    Full,
}

impl StoreError {
    /// The backend could not be reached or answered with an error.
    pub fn unavailable(
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind: StoreErrorKind::Unavailable,
            source: source.into(),
        }
    }
    /// The store is at capacity and every entry is an in-flight claim it may not evict.
    pub fn full(capacity: usize) -> Self {
        Self {
            kind: StoreErrorKind::Full,
            source: format!("{capacity} keys are in flight").into(),
        }
    }
    /// True for backend failures.
    pub fn is_unavailable(&self) -> bool {
        self.kind == StoreErrorKind::Unavailable
    }
    /// True when the store refused a claim for lack of room.
    pub fn is_full(&self) -> bool {
        self.kind == StoreErrorKind::Full
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StoreErrorKind::Unavailable => {
                write!(f, "idempotency store unavailable: {}", self.source)
            }
            StoreErrorKind::Full => write!(f, "idempotency store full: {}", self.source),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Where idempotency claims live. Implementations must make `claim` atomic across every caller
/// that shares the store, and must honour fencing tokens on `commit` and `release`.
///
/// All three methods are cancel-safe in the sense that dropping the future leaves the key either
/// untouched or in the state the operation names; a dropped claim's lease expires by itself.
pub trait IdempotencyStore: Send + Sync + fmt::Debug {
    /// Atomically claims `key` for one processing lease.
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Marks `key` done for the store's TTL. Returns `false` (and changes nothing) when `token`
    /// no longer holds the key (its lease expired and another request claimed it).
    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Frees `key` so a retry is processed. Returns `false` when `token` no longer holds it.
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Extends the lease of a claim `token` still holds to one full lease from now, for work
    /// that runs longer than a lease (a slow app behind the receiver). Returns `false` (and
    /// changes nothing) when `token` no longer holds the key. The default returns `Ok(false)`:
    /// a store that cannot renew keeps each claim for one lease.
    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = (key, token);
        Box::pin(std::future::ready(Ok(false)))
    }

    /// How long a claim lasts before another request may take the key over, when the store
    /// knows it; holders that renew ([`renew`](Self::renew)) do so a few times per lease. The
    /// default returns `None` (callers then assume [`DEFAULT_LEASE`]).
    fn lease(&self) -> Option<Duration> {
        None
    }

    /// [`commit`](Self::commit), keeping `value` with the done key for the TTL, so a duplicate
    /// can be answered with what the first request produced (an HTTP API's stored response).
    /// Returns `false` (and changes nothing) when `token` no longer holds the key. The default
    /// refuses with [`StoreError::unavailable`]: a store that cannot keep values must not
    /// pretend to, or a duplicate would find a done key with nothing to replay.
    fn commit_value<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = (key, token, value);
        Box::pin(std::future::ready(Err(StoreError::unavailable(
            "this idempotency store cannot keep values",
        ))))
    }

    /// The value committed with `key` by [`commit_value`](Self::commit_value), while the key is
    /// done and unexpired; `None` otherwise (free, in flight, or committed without a value). The
    /// default returns `Ok(None)`.
    fn value<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let _ = key;
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Forgets `key` whatever its state (done or in flight), so the next claim is fresh.
    /// Returns whether a key was held. An in-flight holder's later commit or release then finds
    /// its token no longer holds the key and changes nothing. The default returns `Ok(false)`.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = key;
        Box::pin(std::future::ready(Ok(false)))
    }

    /// [`claim`](Self::claim) without a future, for stores that never wait (in-process ones):
    /// `None` (the default) means "call `claim`". Receivers try this first, which spares a boxed
    /// future on every request.
    fn claim_now(&self, key: &str) -> Option<Result<Claim, StoreError>> {
        let _ = key;
        None
    }

    /// [`commit`](Self::commit) without a future; `None` (the default) means "call `commit`".
    fn commit_now(&self, key: &str, token: &FencingToken) -> Option<Result<bool, StoreError>> {
        let _ = (key, token);
        None
    }

    /// [`release`](Self::release) without a future; `None` (the default) means "call `release`".
    fn release_now(&self, key: &str, token: &FencingToken) -> Option<Result<bool, StoreError>> {
        let _ = (key, token);
        None
    }
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, StoreError>> {
        (**self).claim(key)
    }
    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).commit(key, token)
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).release(key, token)
    }
    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).renew(key, token)
    }
    fn lease(&self) -> Option<Duration> {
        (**self).lease()
    }
    fn commit_value<'a>(
        &'a self,
        key: &'a str,
        token: &'a FencingToken,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).commit_value(key, token, value)
    }
    fn value<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        (**self).value(key)
    }
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).remove(key)
    }
    fn claim_now(&self, key: &str) -> Option<Result<Claim, StoreError>> {
        (**self).claim_now(key)
    }
    fn commit_now(&self, key: &str, token: &FencingToken) -> Option<Result<bool, StoreError>> {
        (**self).commit_now(key, token)
    }
    fn release_now(&self, key: &str, token: &FencingToken) -> Option<Result<bool, StoreError>> {
        (**self).release_now(key, token)
    }
}

/// Default TTL for done keys when no retry profile is given: 24 h.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default processing lease: 30 s (longer than a typical handler, shorter than a sender's retry).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default [`MemoryStore`] capacity.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Timing and size settings shared by every store.
///
/// ```
/// use std::time::Duration;
/// use hookwire_core::{IdempotencyConfig, RetryPolicy, Backoff};
/// let c = IdempotencyConfig::default();
/// assert_eq!(c.ttl, Duration::from_secs(86_400));
/// // Derived from the sender's retry profile, (what other toolkits call minSafeTtl):
/// let p = RetryPolicy::new(5).with_backoff(Backoff::exponential(Duration::from_millis(200)).with_max(Duration::from_secs(30)));
/// let c = IdempotencyConfig::for_retry_profile(&p, Duration::from_secs(2));
/// assert_eq!(c.ttl, Duration::from_millis(72_800));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyConfig {
    /// How long a committed key answers duplicates as replays.
    pub ttl: Duration,
    /// How long an uncommitted claim blocks duplicates before it expires.
    pub lease: Duration,
    /// Most keys held at once (memory stores; others ignore it).
    pub max_entries: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl IdempotencyConfig {
    /// TTL sized to outlive every retry of a sender with `policy` and per-attempt `timeout`
    /// (safety factor 4, the usual `minSafeTtl` rule).
    pub fn for_retry_profile(policy: &RetryPolicy, timeout: Duration) -> Self {
        Self {
            ttl: policy.min_safe_ttl(timeout, 4),
            ..Self::default()
        }
    }
    /// Sets the TTL.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// Sets the lease.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// Sets the capacity.
    #[must_use]
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }
}

mod memory;

pub use memory::MemoryStore;

/// Runs a future that never waits on I/O to completion on the current thread.
///
/// For doc examples and synchronous callers of [`MemoryStore`], whose futures are always ready;
/// a future that stays pending is polled in a yield loop.
pub fn block_on<F: Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}
