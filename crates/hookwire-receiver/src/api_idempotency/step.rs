//! The framework-neutral driver behind every front end of API idempotency: the tower layer
//! (axum), the actix-web middleware and the warp wrapper all go through [`ApiIdempotencyLayer::key`],
//! [`ApiIdempotencyLayer::begin`] and [`ApiRun`], so the claim, fingerprint, replay and store
//! rules live in one place.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use hookwire_core::idempotency::DEFAULT_LEASE;
use hookwire_core::{Claim, FencingToken, IdempotencyStore};

use super::{ApiIdempotencyLayer, Config, Stored, fingerprint};
use crate::guard::renewing;
use crate::{REPLAYED_HEADER, Rejection};

impl ApiIdempotencyLayer {
    /// Step 1, before the body is read: `Ok(None)` when the request is not subject to
    /// idempotency (method not configured, no key: run the handler untouched), `Ok(Some(key))`
    /// when it is (read the body, at most [`request_body_limit`](Self::request_body_limit)
    /// bytes, and call [`begin`](Self::begin)), `Err` (400) for a malformed key.
    pub fn key(&self, parts: &http::request::Parts) -> Result<Option<String>, Rejection> {
        if !self.config.methods.contains(&parts.method) {
            return Ok(None);
        }
        parse_key(&self.config, parts).map(|k| k.map(str::to_owned))
    }

    /// The largest request body a keyed request may have; a larger one is answered with
    /// [`Rejection::too_large`] (413).
    pub fn request_body_limit(&self) -> usize {
        self.config.max_request_body
    }

    /// Step 2, with the whole body: claims `key` and either answers now (the stored response
    /// replayed, `422` for a reused key, `409` + `Retry-After` in flight, `503` when the store
    /// fails) or returns the [`ApiRun`] to run the handler under.
    pub async fn begin(
        &self,
        parts: &http::request::Parts,
        key: &str,
        body: &[u8],
    ) -> Result<ApiRun, Response<Bytes>> {
        let config = &self.config;
        let identity = config.identity.as_ref().and_then(|f| f(parts));
        let fp = fingerprint(&parts.method, &parts.uri, identity.as_deref(), body);
        let store_key = Config::store_key(identity.as_deref(), key);
        // A done key whose value vanished (expired between the two reads) is claimed once more.
        for _ in 0..2 {
            match config.store.claim(&store_key).await {
                Err(e) => {
                    tracing::warn!(error = %e, "api idempotency: claim failed");
                    return Err(answer(&Rejection::store_unavailable()));
                }
                Ok(Claim::InFlight { retry_after }) => {
                    return Err(answer(&Rejection::in_flight(retry_after)));
                }
                Ok(Claim::Fresh(token)) => {
                    return Ok(ApiRun {
                        config: config.clone(),
                        fingerprint: fp,
                        held: Held {
                            store: config.store.clone(),
                            key: store_key,
                            token: Some(token),
                        },
                    });
                }
                Ok(Claim::Done) => match config.store.value(&store_key).await {
                    Err(e) => {
                        tracing::warn!(error = %e, "api idempotency: read failed");
                        return Err(answer(&Rejection::store_unavailable()));
                    }
                    Ok(None) => {}
                    Ok(Some(raw)) => return Err(replay(&raw, &fp)),
                },
            }
        }
        Err(answer(&Rejection::in_flight(Duration::from_secs(1))))
    }
}

/// A claimed key while its handler runs. Finish with [`store`](Self::store) or
/// [`release`](Self::release); dropping it (handler error, panic, cancelled request) releases
/// the key, so the client's retry runs.
#[derive(Debug)]
pub struct ApiRun {
    config: Arc<Config>,
    fingerprint: [u8; 32],
    held: Held,
}

impl ApiRun {
    /// Runs `work` (the handler, and reading its body) while renewing the claim, so a handler
    /// slower than the lease is never run twice for one key: a duplicate meanwhile gets 409.
    pub async fn renew_while<T>(&self, work: impl Future<Output = T>) -> T {
        let lease = self.config.store.lease().unwrap_or(DEFAULT_LEASE);
        renewing(lease, &self.held.key, || self.held.renew(), work).await
    }

    /// Whether a response is kept: status below 500 other than 408, 409 and 429, and a body
    /// known (`len`, an upper bound) to fit the stored-body cap. Otherwise send it as is and
    /// [`release`](Self::release).
    pub fn keeps(&self, status: StatusCode, len: Option<u64>) -> bool {
        storable(status) && len.is_some_and(|n| n <= self.config.max_stored_body as u64)
    }

    /// Stores the handler's response (status, the configured headers, `body`) for replay.
    pub async fn store(mut self, status: StatusCode, headers: &HeaderMap, body: &Bytes) {
        let stored = Stored {
            fingerprint: self.fingerprint,
            status: status.as_u16(),
            headers: self
                .config
                .stored_headers
                .iter()
                .flat_map(|n| {
                    headers
                        .get_all(n)
                        .iter()
                        .map(|v| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                })
                .collect(),
            body: body.clone(),
        };
        let Some(token) = self.held.take() else {
            return;
        };
        match self
            .config
            .store
            .commit_value(&self.held.key, &token, &stored.encode())
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!("api idempotency: lease lost before commit"),
            Err(e) => {
                tracing::warn!(error = %e, "api idempotency: commit failed");
                self.held.token = Some(token);
                self.held.release().await;
            }
        }
    }

    /// Releases the key and waits for it, so the client's retry finds it free.
    pub async fn release(self) {
        self.held.release().await;
    }
}

/// A refusal as a neutral response.
pub(super) fn answer(r: &Rejection) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(r.body()));
    *resp.status_mut() =
        StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((k, v)) = r.extra_headers()
        && let Ok(v) = HeaderValue::from_str(&v)
    {
        h.insert(k, v);
    }
    resp
}

/// Releases a claim nobody finished: the request errored, panicked or was dropped mid-way.
/// Without it the key would answer 409 until its lease ran out.
#[derive(Debug)]
struct Held {
    store: Arc<dyn IdempotencyStore>,
    key: String,
    token: Option<FencingToken>,
}

impl Held {
    fn take(&mut self) -> Option<FencingToken> {
        self.token.take()
    }

    /// Extends the claim by one lease: `false` when it is no longer ours or the store cannot.
    async fn renew(&self) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        match self.store.renew(&self.key, token).await {
            Ok(renewed) => renewed,
            Err(e) => {
                tracing::warn!(error = %e, "api idempotency: renewing the claim failed");
                false
            }
        }
    }

    /// Releases now and waits for it, so the client's retry finds the key free.
    async fn release(mut self) {
        if let Some(token) = self.token.take()
            && let Err(e) = self.store.release(&self.key, &token).await
        {
            tracing::warn!(error = %e, "api idempotency: release failed; the lease expires");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        if let Some(r) = self.store.release_now(&self.key, &token) {
            let _ = r;
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let key = std::mem::take(&mut self.key);
            rt.spawn(async move {
                let _ = store.release(&key, &token).await;
            });
        }
    }
}

/// Statuses kept and replayed: everything below 500 except the transient refusals a client is
/// meant to retry (408 timeout, 409 conflict, 429 rate limit).
fn storable(status: StatusCode) -> bool {
    status.as_u16() < 500 && !matches!(status.as_u16(), 408 | 409 | 429)
}

/// The key from its header: one value, visible ASCII, optionally an RFC 8941 string in quotes.
fn parse_key<'a>(
    config: &Config,
    parts: &'a http::request::Parts,
) -> Result<Option<&'a str>, Rejection> {
    let mut values = parts.headers.get_all(&config.header).iter();
    let Some(raw) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::bad_request());
    }
    let text = raw.to_str().map_err(|_| Rejection::bad_request())?.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.len() > config.max_key_len {
        return Err(Rejection::key_too_long());
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Rejection::bad_request());
    }
    Ok(Some(text))
}

/// The stored answer with `Idempotent-Replayed: true`, or 422 when the key was first used for
/// a different request.
fn replay(raw: &[u8], fp: &[u8; 32]) -> Response<Bytes> {
    let Some(stored) = Stored::decode(raw) else {
        tracing::warn!("api idempotency: unreadable stored response");
        return answer(&Rejection::store_unavailable());
    };
    if !subtle_eq(&stored.fingerprint, fp) {
        return answer(&Rejection::validation_failed(
            "idempotency key reused with a different request",
        ));
    }
    let mut r = Response::new(stored.body);
    *r.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            h.append(n, v);
        }
    }
    h.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    r
}

/// Constant-time comparison: fingerprints cover caller identities.
fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
