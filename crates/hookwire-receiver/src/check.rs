//! The receiver's primitives: key extraction and `check` (verify, key, claim).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use hookwire_core::signing::{self, HeaderLookup, HeaderSource, Scheme, Verified, VerifyOptions};
use hookwire_core::{Claim, IdempotencyStore, KeyRing};

use crate::Rejection;
use crate::guard::ClaimGuard;
use crate::replay::{DEFAULT_UNTIMED_REPLAY_HORIZON, Fingerprint, ReplayCache};

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
    /// Refuse requests without a key (400 `missing-key`). When `false`, a verified request
    /// without one is claimed on its signature (one signed message, one key); an unsigned
    /// receiver lets it pass without a claim.
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

/// What [`check`] decided: go on with a claim, answer as a replay, or refuse.
///
/// Not `#[non_exhaustive]`: these three are the whole contract, and every caller must handle
/// each of them.
#[derive(Debug)]
pub enum Check {
    /// Run the handler, then finish [`Admission::guard`] from its status.
    Proceed(Admission),
    /// The key was already processed successfully: answer `204` with `Idempotent-Replayed:
    /// true` ([`crate::replay_http_response`]) and skip the handler. The admission holds no claim.
    Replay(Admission),
    /// Refuse with this response.
    Reject(Rejection),
}

impl Check {
    /// `Proceed` and `Replay` as `Ok(admission)` with a flag telling which, `Reject` as `Err`.
    pub fn into_result(self) -> Result<(Admission, bool), Rejection> {
        match self {
            Self::Proceed(a) => Ok((a, false)),
            Self::Replay(a) => Ok((a, true)),
            Self::Reject(r) => Err(r),
        }
    }
}

/// A request that passed [`check`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Admission {
    /// The idempotency key (`None` only when keys are optional and none was sent; such a
    /// signed request is still claimed, on its signature, see [`ClaimGuard::key`]).
    pub key: Option<String>,
    /// What verification established (`None` for unsigned receivers).
    pub verified: Option<Verified>,
    /// The claim to finalize: commit after success, release after failure (dropping it
    /// releases). `None` for replays and for keyless requests to an unsigned receiver.
    pub guard: Option<ClaimGuard>,
}

impl Admission {
    /// The scheme that verified, if any.
    pub fn scheme(&self) -> Option<Scheme> {
        self.verified.as_ref().map(|v| v.scheme)
    }
    /// What a handler may learn: key and scheme (the claim stays with the caller).
    pub fn admitted(&self) -> Admitted {
        Admitted {
            key: self.key.clone(),
            scheme: self.scheme(),
        }
    }

    /// Finishes the claim, if any, from the response status: commit below 400, release from
    /// 400 on ([`ClaimGuard::finish`]).
    pub async fn finish(self, status: u16) {
        if let Some(g) = self.guard {
            g.finish(status).await;
        }
    }
}

/// What admission established about a request, as the tower layer puts it in the request's
/// extensions for the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Admitted {
    /// The idempotency key (absent only when the gate does not require one).
    pub key: Option<String>,
    /// The scheme that verified the request (`None` for an unsigned gate).
    pub scheme: Option<Scheme>,
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
/// 3. a key over [`MAX_KEY_LEN`] → 400 `key-too-long`; no key → 400 `missing-key` (the signed
///    id is the key for `standard`, the unsigned delivery id for `github`), or, when keys are
///    optional, the verified signature is the key;
/// 4. claim: in flight elsewhere → 409 `in-flight` with `Retry-After`; done →
///    [`Check::Replay`]; store failure → 503 `store-unavailable`.
///
/// ```
/// # hookwire_core::idempotency::block_on(async {
/// use std::sync::Arc;
/// use hookwire_core::{IdempotencyStore, MemoryStore, signing::VerifyOptions};
/// use hookwire_receiver::{check, Check, CheckOptions};
/// let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::new(Default::default()));
/// let verify = VerifyOptions::default();
/// let headers = [("Idempotency-Key", "evt_1")];
/// let Check::Proceed(first) = check(&headers, b"{}", &CheckOptions::new(&store, None, &verify)).await
/// else { panic!("a fresh key proceeds") };
/// first.guard.unwrap().commit().await;
/// let again = check(&headers, b"{}", &CheckOptions::new(&store, None, &verify)).await;
/// assert!(matches!(again, Check::Replay(_)));
/// # });
/// ```
pub async fn check<H: HeaderSource + ?Sized>(
    headers: &H,
    body: &[u8],
    opts: &CheckOptions<'_>,
) -> Check {
    match prepare(headers, body, opts, |_, key| key.to_owned()) {
        Prepared::Known(done) => done,
        Prepared::Claim(pending) => pending.claim().await,
    }
}

/// Longest idempotency key accepted, in bytes (the `Idempotency-Key` header, GitHub's delivery
/// id, a Stripe event id): a longer one is refused with 400 `key-too-long`, so keys kept for
/// the store's TTL stay small whatever a client sends.
pub const MAX_KEY_LEN: usize = 255;

/// How far [`check`] got without I/O.
pub(crate) enum Prepared {
    /// The outcome is known.
    Known(Check),
    /// The key still has to be claimed.
    Claim(PendingClaim),
}

/// A verified request whose key still has to be claimed.
pub(crate) struct PendingClaim {
    store: Arc<dyn IdempotencyStore>,
    key: String,
    sent: bool,
    verified: Option<Verified>,
}

impl PendingClaim {
    /// Claims without waiting when the store can (the in-process store), else gives itself back.
    pub(crate) fn claim_now(self) -> Prepared {
        match self.store.claim_now(&self.key) {
            Some(r) => Prepared::Known(self.resolve(r)),
            None => Prepared::Claim(self),
        }
    }

    /// Claims, waiting for the store.
    pub(crate) async fn claim(self) -> Check {
        match self.claim_now() {
            Prepared::Known(c) => c,
            Prepared::Claim(me) => {
                let claimed = me.store.claim(&me.key).await;
                me.resolve(claimed)
            }
        }
    }

    fn resolve(self, claimed: Result<Claim, hookwire_core::StoreError>) -> Check {
        let Self {
            store,
            key,
            sent,
            verified,
        } = self;
        match claimed {
            Ok(Claim::Fresh(token)) => {
                let (guard_key, key) = if sent {
                    (key.clone(), Some(key))
                } else {
                    (key, None)
                };
                Check::Proceed(Admission {
                    guard: Some(ClaimGuard::new(store, guard_key, token)),
                    key,
                    verified,
                })
            }
            Ok(Claim::Done) => Check::Replay(Admission {
                key: sent.then_some(key),
                verified,
                guard: None,
            }),
            Ok(Claim::InFlight { retry_after }) => Check::Reject(Rejection::in_flight(retry_after)),
            Err(e) => {
                tracing::error!(error = %e, "idempotency store failed; refusing the request");
                Check::Reject(Rejection::store_unavailable())
            }
        }
    }
}

/// Steps 1–3 of [`check`] (no I/O): the outcome when it is already known, else the claim to
/// make. `rekey` may replace the key of a request whose key is not signed, given the
/// fingerprint of its signature.
fn prepare<H: HeaderSource + ?Sized>(
    headers: &H,
    body: &[u8],
    opts: &CheckOptions<'_>,
    rekey: impl FnOnce(&Fingerprint, &str) -> String,
) -> Prepared {
    let reject = |r| Prepared::Known(Check::Reject(r));
    let verified = match opts.keys {
        Some(keys) => {
            if body.is_empty() {
                return reject(Rejection::empty_body());
            }
            match signing::verify(headers, body, keys, opts.verify) {
                Ok(v) => Some(v),
                Err(e) => return reject(Rejection::unauthorized(e)),
            }
        }
        None => None,
    };
    let fingerprint = verified.as_ref().and_then(Fingerprint::of);
    let sent = key_for(headers, verified.as_ref(), body);
    if sent.as_ref().is_some_and(|k| k.len() > MAX_KEY_LEN) {
        return reject(Rejection::key_too_long());
    }
    let (key, sent) = match (sent, &fingerprint) {
        (Some(k), Some(fp)) => (rekey(fp, &k), true),
        (Some(k), None) => (k.into_owned(), true),
        (None, _) if opts.require_key => return reject(Rejection::missing_key()),
        // No key and an unsigned one would be optional anyway: the verified signature is the
        // key, so a captured request stripped of its key is still one message.
        (None, Some(fp)) => (rekey(fp, &fp.as_key()), false),
        (None, None) => {
            return Prepared::Known(Check::Proceed(Admission {
                key: None,
                verified,
                guard: None,
            }));
        }
    };
    Prepared::Claim(PendingClaim {
        store: opts.store.clone(),
        key,
        sent,
        verified,
    })
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
    replay: Option<Arc<ReplayCaches>>,
    replay_horizon: std::time::Duration,
}

/// The two replay caches: one for the timestamp window, one for schemes without a timestamp.
#[derive(Debug)]
struct ReplayCaches {
    timed: ReplayCache,
    untimed: ReplayCache,
}

impl ReplayCaches {
    fn new(v: &VerifyOptions, horizon: std::time::Duration) -> Arc<Self> {
        let max = crate::replay::DEFAULT_REPLAY_ENTRIES;
        Arc::new(Self {
            timed: ReplayCache::new(v.tolerance_past.saturating_add(v.tolerance_future), max),
            untimed: ReplayCache::new(horizon, max),
        })
    }

    fn bind(&self, fp: &Fingerprint, key: &str) -> String {
        match fp.timestamp {
            Some(_) => self.timed.bind(fp, key),
            None => self.untimed.bind(fp, key),
        }
    }
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
            max_body: crate::body::DEFAULT_RECEIVER_MAX_BODY,
            replay: Some(ReplayCaches::new(
                &VerifyOptions::default(),
                DEFAULT_UNTIMED_REPLAY_HORIZON,
            )),
            replay_horizon: DEFAULT_UNTIMED_REPLAY_HORIZON,
        }))
    }

    fn config(&mut self) -> &mut GateConfig {
        Arc::make_mut(&mut self.0)
    }

    /// Whether to bind unsigned idempotency keys to their signature: for the timestamp window,
    /// or for [`Gate::replay_horizon`] under `github` and `body`, which sign no timestamp (see
    /// [`crate::ReplayCache`]; default on).
    #[must_use]
    pub fn replay_protection(mut self, on: bool) -> Self {
        let c = self.config();
        c.replay = on.then(|| ReplayCaches::new(&c.verify, c.replay_horizon));
        self
    }
    /// How long a verified `github` (or `body`) signature stays bound to the delivery id it
    /// first came with (default 24 h, the store's default done-key TTL): a resend of a captured
    /// delivery under a new `X-GitHub-Delivery` inside it is a duplicate. Those schemes sign no
    /// timestamp, so after it a captured delivery verifies again; keep it at least as long as
    /// the store's TTL.
    #[must_use]
    pub fn replay_horizon(mut self, horizon: std::time::Duration) -> Self {
        let c = self.config();
        c.replay_horizon = horizon;
        if c.replay.is_some() {
            c.replay = Some(ReplayCaches::new(&c.verify, horizon));
        }
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
            c.replay = Some(ReplayCaches::new(&v, c.replay_horizon));
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
    /// of a sender with `policy` and per-attempt `timeout` (safety factor 4 over the
    /// sender's whole retry envelope), instead of the 24 h default.
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

    /// The admission of a request whose body arrives as a stream of chunks (actix-web's
    /// payload, warp's body stream): reads it under the body limit ([`crate::read_stream`]),
    /// then [`Gate::check`]s it. The framework adapters run this and [`Admission::finish`]
    /// and no admission step of their own. A body that cannot be read is a `Reject` with an
    /// empty body.
    pub async fn admit_stream<H, S, D, E>(&self, headers: &H, stream: S) -> (Check, Bytes)
    where
        H: HeaderSource + ?Sized,
        S: futures_core::Stream<Item = Result<D, E>>,
        D: bytes::Buf,
    {
        match crate::read_stream(headers, stream, self.max_body_len()).await {
            Ok(body) => (self.check(headers, &body).await, body),
            Err(r) => (Check::Reject(r), Bytes::new()),
        }
    }

    /// Runs [`check`] with this configuration.
    pub async fn check<H: HeaderSource + ?Sized>(&self, headers: &H, body: &[u8]) -> Check {
        match self.prepare(headers, body) {
            Prepared::Known(done) => done,
            Prepared::Claim(pending) => pending.claim().await,
        }
    }

    /// Steps 1–3 of [`Gate::check`], without I/O.
    pub(crate) fn prepare<H: HeaderSource + ?Sized>(&self, headers: &H, body: &[u8]) -> Prepared {
        let c = &*self.0;
        let opts = CheckOptions {
            store: &c.store,
            keys: c.keys.as_deref(),
            verify: &c.verify,
            require_key: c.require_key,
        };
        match &c.replay {
            None => prepare(headers, body, &opts, |_, key| key.to_owned()),
            Some(replay) => prepare(headers, body, &opts, |fp, key| replay.bind(fp, key)),
        }
    }
}
