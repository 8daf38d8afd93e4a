//! The receiver's primitives: key extraction and `check` (verify, key, claim).

use std::borrow::Cow;
use std::sync::Arc;

use hookwire_core::signing::{self, HeaderLookup, HeaderSource, Scheme, Verified, VerifyOptions};
use hookwire_core::{Claim, IdempotencyStore, KeyRing};

use crate::Rejection;
use crate::guard::ClaimGuard;

/// The request's `Idempotency-Key` (any case): `None` when absent, empty, not valid UTF-8, or
/// present more than once (ambiguous).
///
/// ```
/// use hookwire_receiver::extract_idempotency_key;
/// let mut h = http::HeaderMap::new();
/// assert_eq!(extract_idempotency_key(&h), None);
/// h.insert("Idempotency-Key", "evt_1".parse().unwrap());
/// assert_eq!(extract_idempotency_key(&h), Some("evt_1"));
/// h.append("idempotency-key", "evt_2".parse().unwrap());
/// assert_eq!(extract_idempotency_key(&h), None);
/// ```
pub fn extract_idempotency_key<H: HeaderSource + ?Sized>(headers: &H) -> Option<&str> {
    match headers.lookup("idempotency-key") {
        HeaderLookup::One(v) if !v.is_empty() => std::str::from_utf8(v).ok(),
        _ => None,
    }
}

/// What [`check`] needs.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions<'a> {
    /// Where claims live.
    pub store: &'a Arc<dyn IdempotencyStore>,
    /// The secrets; `None` accepts unsigned requests (and never answers `empty-body`).
    pub keys: Option<&'a KeyRing>,
    /// Scheme, tolerance and clock for verification.
    pub verify: &'a VerifyOptions,
    /// Refuse requests without a key (400 `missing-key`). When `false`, such requests pass
    /// without a claim and are never de-duplicated.
    pub require_key: bool,
}

impl<'a> CheckOptions<'a> {
    /// Options with verification by `keys` (or none) and a required key.
    pub fn new(
        store: &'a Arc<dyn IdempotencyStore>,
        keys: Option<&'a KeyRing>,
        verify: &'a VerifyOptions,
    ) -> Self {
        Self {
            store,
            keys,
            verify,
            require_key: true,
        }
    }
}

/// A request that passed [`check`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Checked {
    /// The idempotency key (`None` only when keys are optional and none was sent).
    pub key: Option<String>,
    /// `true` when the key was already processed successfully: answer as a replay and skip the
    /// handler.
    pub deduped: bool,
    /// What verification established (`None` for unsigned receivers).
    pub verified: Option<Verified>,
    /// The claim to finalize: commit after success, release after failure (dropping it
    /// releases). `None` for replays and keyless requests.
    pub guard: Option<ClaimGuard>,
}

impl Checked {
    /// The scheme that verified, if any.
    pub fn scheme(&self) -> Option<Scheme> {
        self.verified.as_ref().map(|v| v.scheme)
    }
}

/// The key a verified request is de-duplicated on.
///
/// Under `standard` the signed `webhook-id` always wins: an unsigned `Idempotency-Key` could be
/// swapped by someone replaying a captured request inside the window. For `github` (and `body`)
/// the delivery id is used when no `Idempotency-Key` is sent. Stripe sends neither a delivery id
/// header nor a key, but every event body carries its id (`"id":"evt_…"`), covered by the
/// signature; a verified Stripe request without a key is de-duplicated on it, so Stripe's retries
/// of one event are processed once.
fn key_for<'h, H: HeaderSource + ?Sized>(
    headers: &'h H,
    verified: Option<&'h Verified>,
    body: &'h [u8],
) -> Option<Cow<'h, str>> {
    if let Some(v) = verified
        && v.id_is_signed()
    {
        return v.id.as_deref().map(Cow::Borrowed);
    }
    if let Some(k) = extract_idempotency_key(headers) {
        return Some(Cow::Borrowed(k));
    }
    let v = verified?;
    match v.scheme {
        Scheme::Github | Scheme::Body => {
            v.id.as_deref()
                .filter(|id| !id.is_empty())
                .map(Cow::Borrowed)
        }
        Scheme::Stripe => stripe_event_id(body),
        _ => None,
    }
}

/// The top-level `id` of a Stripe event body, if it is a non-empty string.
fn stripe_event_id(body: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Event<'_>>(body)
        .ok()?
        .id
        .filter(|id| !id.is_empty())
}

/// Verifies, extracts the key and claims it, in this order (so spoofed requests never touch the
/// store):
/// 1. a secret is configured and the body is empty → 400 `empty-body`;
/// 2. verification fails → 401 `<reason>`;
/// 3. no key → 400 `missing-key` (the signed id is the key for `standard`/`github`);
/// 4. claim: in flight elsewhere → 409 `in-flight` with `Retry-After`; done → `deduped`; store
///    failure → 503 `store-unavailable`.
///
/// ```
/// # hookwire_core::idempotency::block_on(async {
/// use std::sync::Arc;
/// use hookwire_core::{IdempotencyStore, MemoryStore, signing::VerifyOptions};
/// use hookwire_receiver::{check, CheckOptions};
/// let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::new(Default::default()));
/// let verify = VerifyOptions::default();
/// let headers = [("Idempotency-Key", "evt_1")];
/// let first = check(&headers, b"{}", &CheckOptions::new(&store, None, &verify)).await.unwrap();
/// assert!(!first.deduped);
/// first.guard.unwrap().commit().await;
/// let again = check(&headers, b"{}", &CheckOptions::new(&store, None, &verify)).await.unwrap();
/// assert!(again.deduped);
/// # });
/// ```
pub async fn check<H: HeaderSource + ?Sized>(
    headers: &H,
    body: &[u8],
    opts: &CheckOptions<'_>,
) -> Result<Checked, Rejection> {
    check_with(headers, body, opts, |_, key| key.to_owned()).await
}

/// [`check`] with a hook that may replace the key once verification passed.
async fn check_with<H: HeaderSource + ?Sized>(
    headers: &H,
    body: &[u8],
    opts: &CheckOptions<'_>,
    rekey: impl FnOnce(Option<&Verified>, &str) -> String,
) -> Result<Checked, Rejection> {
    let verified = match opts.keys {
        Some(keys) => {
            if body.is_empty() {
                return Err(Rejection::empty_body());
            }
            Some(
                signing::verify(headers, body, keys, opts.verify)
                    .map_err(Rejection::unauthorized)?,
            )
        }
        None => None,
    };
    let Some(key) = key_for(headers, verified.as_ref(), body) else {
        if opts.require_key {
            return Err(Rejection::missing_key());
        }
        return Ok(Checked {
            key: None,
            deduped: false,
            verified,
            guard: None,
        });
    };
    let key = rekey(verified.as_ref(), &key);
    let claimed = match opts.store.claim_now(&key) {
        Some(r) => r,
        None => opts.store.claim(&key).await,
    };
    match claimed {
        Ok(Claim::Fresh(token)) => Ok(Checked {
            guard: Some(ClaimGuard::new(opts.store.clone(), key.clone(), token)),
            key: Some(key),
            deduped: false,
            verified,
        }),
        Ok(Claim::Done) => Ok(Checked {
            key: Some(key),
            deduped: true,
            verified,
            guard: None,
        }),
        Ok(Claim::InFlight { retry_after }) => Err(Rejection::in_flight(retry_after)),
        Err(e) => {
            tracing::error!(error = %e, "idempotency store failed; refusing the request");
            Err(Rejection::store_unavailable())
        }
    }
}

/// Everything [`check`] needs, owned and shareable: the configuration each adapter holds.
///
/// ```
/// use hookwire_receiver::Gate;
/// let gate = Gate::new().secret("s3cret").max_body(64 * 1024);
/// assert_eq!(gate.max_body_len(), 64 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct Gate(
    // One shared allocation: adapters clone the gate for every request, which is then a single
    // reference-count bump. Builder methods copy on write (they run before the gate is shared).
    Arc<GateConfig>,
);

#[derive(Debug, Clone)]
struct GateConfig {
    store: Arc<dyn IdempotencyStore>,
    keys: Option<Arc<KeyRing>>,
    verify: VerifyOptions,
    require_key: bool,
    max_body: usize,
    replay: Option<Arc<crate::ReplayCache>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// Unsigned, with a default [`hookwire_core::MemoryStore`], required keys and a 1 MiB limit.
    pub fn new() -> Self {
        Self(Arc::new(GateConfig {
            store: Arc::new(hookwire_core::MemoryStore::new(Default::default())),
            keys: None,
            verify: VerifyOptions::default(),
            require_key: true,
            max_body: crate::body::DEFAULT_MAX_BODY,
            replay: Some(Self::replay_cache(&VerifyOptions::default())),
        }))
    }

    fn config(&mut self) -> &mut GateConfig {
        Arc::make_mut(&mut self.0)
    }

    fn replay_cache(v: &VerifyOptions) -> Arc<crate::ReplayCache> {
        Arc::new(crate::ReplayCache::new(
            v.tolerance_past.saturating_add(v.tolerance_future),
            crate::replay::DEFAULT_REPLAY_ENTRIES,
        ))
    }

    /// Whether to bind unsigned idempotency keys to their signature for the timestamp window
    /// (see [`crate::ReplayCache`]; default on).
    #[must_use]
    pub fn replay_protection(mut self, on: bool) -> Self {
        let c = self.config();
        c.replay = on.then(|| Self::replay_cache(&c.verify));
        self
    }
    /// Verifies with one secret (adds it to the key ring).
    #[must_use]
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        Arc::make_mut(self.config().keys.get_or_insert_with(Default::default))
            .push(hookwire_core::Secret::new(secret));
        self
    }
    /// Verifies with a key ring (rotation: any key may match).
    #[must_use]
    pub fn keys(mut self, keys: KeyRing) -> Self {
        self.config().keys = Some(Arc::new(keys));
        self
    }
    /// Verification options (scheme, tolerance).
    #[must_use]
    pub fn verify_options(mut self, v: VerifyOptions) -> Self {
        let c = self.config();
        if c.replay.is_some() {
            c.replay = Some(Self::replay_cache(&v));
        }
        c.verify = v;
        self
    }
    /// The accepted scheme(s).
    #[must_use]
    pub fn scheme(mut self, s: impl Into<signing::SchemeChoice>) -> Self {
        self.config().verify.scheme = s.into();
        self
    }
    /// The idempotency store.
    #[must_use]
    pub fn store(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.config().store = store;
        self
    }
    /// Uses an in-process [`hookwire_core::MemoryStore`] whose done-key TTL outlives every retry
    /// of a sender with `policy` and per-attempt `timeout` (the reference's `minSafeTtl`,
    /// safety factor 4), instead of the 24 h default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookwire_core::{Backoff, IdempotencyConfig, RetryPolicy};
    /// let policy = RetryPolicy::new(5)
    ///     .with_backoff(Backoff::exponential(Duration::from_millis(200)).with_max(Duration::from_secs(30)));
    /// let gate = hookwire_receiver::Gate::new().retry_profile(&policy, Duration::from_secs(2));
    /// assert_eq!(IdempotencyConfig::for_retry_profile(&policy, Duration::from_secs(2)).ttl, Duration::from_millis(72_800));
    /// # let _ = gate;
    /// ```
    #[must_use]
    pub fn retry_profile(
        mut self,
        policy: &hookwire_core::RetryPolicy,
        timeout: std::time::Duration,
    ) -> Self {
        self.config().store = Arc::new(hookwire_core::MemoryStore::new(
            hookwire_core::IdempotencyConfig::for_retry_profile(policy, timeout),
        ));
        self
    }
    /// Whether requests without a key are refused (default `true`).
    #[must_use]
    pub fn require_key(mut self, yes: bool) -> Self {
        self.config().require_key = yes;
        self
    }
    /// Body limit in bytes (default 1 MiB).
    #[must_use]
    pub fn max_body(mut self, n: usize) -> Self {
        self.config().max_body = n;
        self
    }
    /// The body limit.
    pub fn max_body_len(&self) -> usize {
        self.0.max_body
    }
    /// The store.
    pub fn store_ref(&self) -> &Arc<dyn IdempotencyStore> {
        &self.0.store
    }
    /// Whether a secret is configured.
    pub fn is_signed(&self) -> bool {
        self.0.keys.is_some()
    }

    /// Runs [`check`] with this configuration.
    pub async fn check<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
    ) -> Result<Checked, Rejection> {
        let c = &*self.0;
        let opts = CheckOptions {
            store: &c.store,
            keys: c.keys.as_deref(),
            verify: &c.verify,
            require_key: c.require_key,
        };
        let Some(replay) = &c.replay else {
            return check(headers, body, &opts).await;
        };
        check_with(headers, body, &opts, |verified, key| {
            verified
                .and_then(|v| crate::ReplayCache::signature(v.scheme, headers))
                .map_or_else(|| key.to_owned(), |sig| replay.bind(sig, key))
        })
        .await
    }
}
