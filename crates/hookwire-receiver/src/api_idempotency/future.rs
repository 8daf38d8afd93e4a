//! [`ApiIdempotencyFuture`]: one keyed request from claim to commit (or release).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full};
use tower_service::Service;

use hookwire_core::idempotency::DEFAULT_LEASE;
use hookwire_core::{Claim, FencingToken, IdempotencyStore};

use super::{ApiIdempotencyBody, ApiRequestBody, Config, Stored, fingerprint};
use crate::guard::renewing;
use crate::{REPLAYED_HEADER, Rejection, read_limited};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The future of [`super::ApiIdempotency`]: resolves to the inner service's response (stored
/// on the way when it qualifies), a replay, or a refusal (400, 409, 413, 422, 503).
pub struct ApiIdempotencyFuture<ResBody, E> {
    inner: Boxed<Result<Response<ApiIdempotencyBody<ResBody>>, E>>,
}

impl<ResBody, E> std::fmt::Debug for ApiIdempotencyFuture<ResBody, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiIdempotencyFuture")
            .finish_non_exhaustive()
    }
}

impl<ResBody, E> Future for ApiIdempotencyFuture<ResBody, E> {
    type Output = Result<Response<ApiIdempotencyBody<ResBody>>, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Releases a claim nobody finished: the request errored, panicked or was dropped mid-way.
/// Without it the key would answer 409 until its lease ran out.
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

fn refuse<B>(r: &Rejection) -> Response<ApiIdempotencyBody<B>> {
    r.to_response().map(Either::Left)
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

pub(super) fn run<S, B, ResBody>(
    mut inner: S,
    config: Arc<Config>,
    req: Request<B>,
) -> ApiIdempotencyFuture<ResBody, S::Error>
where
    S: Service<Request<ApiRequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Into<Bytes> + Send,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Send,
{
    let fut = async move {
        let (parts, body) = req.into_parts();
        if !config.methods.contains(&parts.method) {
            let req = Request::from_parts(parts, Either::Right(body));
            return inner.call(req).await.map(|r| r.map(Either::Right));
        }
        let key = match parse_key(&config, &parts) {
            Ok(Some(k)) => k.to_owned(),
            Ok(None) => {
                let req = Request::from_parts(parts, Either::Right(body));
                return inner.call(req).await.map(|r| r.map(Either::Right));
            }
            Err(r) => return Ok(refuse(&r)),
        };
        let identity = config.identity.as_ref().and_then(|f| f(&parts));
        let body = match read_limited(body, config.max_request_body).await {
            Ok(b) => b,
            Err(r) => return Ok(refuse(&r)),
        };
        let fp = fingerprint(&parts.method, &parts.uri, identity.as_deref(), &body);
        let store_key = Config::store_key(identity.as_deref(), &key);
        // A done key whose value vanished (expired between the two reads) is claimed once more.
        let mut token = None;
        for _ in 0..2 {
            match config.store.claim(&store_key).await {
                Err(e) => {
                    tracing::warn!(error = %e, "api idempotency: claim failed");
                    return Ok(refuse(&Rejection::store_unavailable()));
                }
                Ok(Claim::InFlight { retry_after }) => {
                    return Ok(refuse(&Rejection::in_flight(retry_after)));
                }
                Ok(Claim::Fresh(t)) => {
                    token = Some(t);
                    break;
                }
                Ok(Claim::Done) => match config.store.value(&store_key).await {
                    Err(e) => {
                        tracing::warn!(error = %e, "api idempotency: read failed");
                        return Ok(refuse(&Rejection::store_unavailable()));
                    }
                    Ok(None) => {}
                    Ok(Some(raw)) => return Ok(replay(&raw, &fp)),
                },
            }
        }
        let Some(token) = token else {
            return Ok(refuse(&Rejection::in_flight(Duration::from_secs(1))));
        };
        let mut held = Held {
            store: config.store.clone(),
            key: store_key,
            token: Some(token),
        };
        let req = Request::from_parts(parts, Either::Left(Full::new(body)));
        // The claim is renewed while the handler runs and its body is read, so a handler
        // slower than the lease is never run twice for one key: a duplicate meanwhile gets 409.
        let lease = config.store.lease().unwrap_or(DEFAULT_LEASE);
        let handled = renewing(lease, &held.key, || held.renew(), async {
            let resp = inner.call(req).await?;
            let (rparts, rbody) = resp.into_parts();
            let fits = rbody
                .size_hint()
                .upper()
                .is_some_and(|n| n <= config.max_stored_body as u64);
            if !storable(rparts.status) || !fits {
                return Ok(Err(Response::from_parts(rparts, Either::Right(rbody))));
            }
            Ok(Ok((rparts, rbody.collect().await.map(|c| c.to_bytes()))))
        })
        .await?;
        let (rparts, bytes) = match handled {
            Err(passed_through) => {
                held.release().await;
                return Ok(passed_through);
            }
            Ok((rparts, Ok(bytes))) => (rparts, bytes),
            Ok((_, Err(_))) => {
                held.release().await;
                return Ok(refuse(&Rejection::handler_failed(None)));
            }
        };
        let stored = Stored {
            fingerprint: fp,
            status: rparts.status.as_u16(),
            headers: config
                .stored_headers
                .iter()
                .flat_map(|n| {
                    rparts
                        .headers
                        .get_all(n)
                        .iter()
                        .map(|v| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                })
                .collect(),
            body: bytes.clone(),
        };
        if let Some(token) = held.take() {
            match config
                .store
                .commit_value(&held.key, &token, &stored.encode())
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::warn!("api idempotency: lease lost before commit"),
                Err(e) => {
                    tracing::warn!(error = %e, "api idempotency: commit failed");
                    held.token = Some(token);
                    held.release().await;
                }
            }
        }
        Ok(Response::from_parts(rparts, Either::Left(Full::new(bytes))))
    };
    ApiIdempotencyFuture {
        inner: Box::pin(fut),
    }
}

/// The stored answer with `Idempotent-Replayed: true`, or 422 when the key was first used for
/// a different request.
fn replay<B>(raw: &[u8], fp: &[u8; 32]) -> Response<ApiIdempotencyBody<B>> {
    let Some(stored) = Stored::decode(raw) else {
        tracing::warn!("api idempotency: unreadable stored response");
        return refuse(&Rejection::store_unavailable());
    };
    if !subtle_eq(&stored.fingerprint, fp) {
        return refuse(&Rejection::validation_failed(
            "idempotency key reused with a different request",
        ));
    }
    let mut r = Response::new(Either::Left(Full::new(stored.body)));
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
