//! Idempotency for any HTTP API, as one tower middleware: [`ApiIdempotencyLayer`] builds
//! [`ApiIdempotency<S>`], whose [`ApiIdempotencyFuture`] claims the request's `Idempotency-Key`,
//! runs the inner service once, keeps its response in the store's committed value and replays
//! it to every later request with the same key and the same content.

mod future;
mod layer;
mod step;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response};
use http_body_util::{Either, Full};
use sha2::{Digest, Sha256};
use tower_service::Service;

use hookwire_core::IdempotencyStore;

pub use future::ApiIdempotencyFuture;
pub use layer::ApiIdempotencyLayer;
pub use step::ApiRun;

/// The request header carrying the key (IETF `Idempotency-Key`).
pub const API_IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest key accepted by default (bytes); a longer one is a 400 `key-too-long`.
pub const DEFAULT_API_MAX_KEY_LEN: usize = 255;
/// Largest response body stored by default (bytes); a larger one is sent but not stored.
pub const DEFAULT_API_MAX_STORED_BODY: usize = 256 * 1024;

/// The request body the inner service receives: the body already read (and fingerprinted) for
/// a keyed request on the left, the untouched original body on the right.
pub type ApiRequestBody<B> = Either<Full<Bytes>, B>;
/// The response body of [`ApiIdempotency`]: a stored, replayed or refused answer on the left,
/// the inner service's body, passed through, on the right.
pub type ApiIdempotencyBody<B> = Either<Full<Bytes>, B>;

/// Maps a request to its caller's identity (an account or API-key id), so keys are scoped per
/// caller: the same key from two callers names two requests, never one shared answer.
pub type IdentityFn = dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync;

/// Settings shared by every clone of the layer and its services.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) header: HeaderName,
    pub(crate) methods: Vec<Method>,
    pub(crate) max_key_len: usize,
    pub(crate) max_request_body: usize,
    pub(crate) max_stored_body: usize,
    pub(crate) stored_headers: Vec<HeaderName>,
    pub(crate) identity: Option<Arc<IdentityFn>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiIdempotencyConfig")
            .field("store", &self.store)
            .field("header", &self.header)
            .field("methods", &self.methods)
            .field("max_key_len", &self.max_key_len)
            .field("max_request_body", &self.max_request_body)
            .field("max_stored_body", &self.max_stored_body)
            .field("stored_headers", &self.stored_headers)
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl Config {
    /// The store key: the caller's scope (a hash of its identity, `-` when anonymous) and the
    /// client's key. Keys are visible ASCII and scopes are hex, so two pairs never collide.
    pub(crate) fn store_key(identity: Option<&str>, key: &str) -> String {
        match identity {
            Some(id) => {
                let h = Sha256::digest(id.as_bytes());
                format!("api:{}:{key}", hex::encode(&h[..16]))
            }
            None => format!("api:-:{key}"),
        }
    }
}

/// Digest of what makes two requests "the same": method, path with query, caller and body.
/// Each part is length-prefixed so no two different requests share an input.
pub(crate) fn fingerprint(
    method: &Method,
    uri: &http::Uri,
    identity: Option<&str>,
    body: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    for part in [
        method.as_str().as_bytes(),
        path.as_bytes(),
        identity.unwrap_or("").as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update([u8::from(identity.is_some())]);
    h.update(body);
    h.finalize().into()
}

/// A response as kept in the store: the request fingerprint, status, selected headers, body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) fingerprint: [u8; 32],
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Bytes,
}

const MAGIC: &[u8; 4] = b"HWA1";

impl Stored {
    /// `HWA1`, fingerprint, status (u16), header count (u16), each header as name length (u16),
    /// name, value length (u32), value; then the body to the end.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&self.status.to_be_bytes());
        let n = u16::try_from(self.headers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for (name, value) in self.headers.iter().take(usize::from(n)) {
            // Header names and values are bounded by the HTTP parser far below these widths.
            let nl = u16::try_from(name.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&nl.to_be_bytes());
            out.extend_from_slice(&name.as_bytes()[..usize::from(nl)]);
            let vl = u32::try_from(value.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&vl.to_be_bytes());
            out.extend_from_slice(&value[..vl as usize]);
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// The inverse of [`encode`](Self::encode); `None` for anything it did not write.
    pub(crate) fn decode(raw: &[u8]) -> Option<Self> {
        fn take<'a>(raw: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if raw.len() < n {
                return None;
            }
            let (head, rest) = raw.split_at(n);
            *raw = rest;
            Some(head)
        }
        let mut raw = raw;
        if take(&mut raw, 4)? != MAGIC {
            return None;
        }
        let fingerprint: [u8; 32] = take(&mut raw, 32)?.try_into().ok()?;
        let status = u16::from_be_bytes(take(&mut raw, 2)?.try_into().ok()?);
        let n = u16::from_be_bytes(take(&mut raw, 2)?.try_into().ok()?);
        let mut headers = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            let nl = u16::from_be_bytes(take(&mut raw, 2)?.try_into().ok()?);
            let name = std::str::from_utf8(take(&mut raw, usize::from(nl))?).ok()?;
            let vl = u32::from_be_bytes(take(&mut raw, 4)?.try_into().ok()?);
            let value = take(&mut raw, usize::try_from(vl).ok()?)?;
            headers.push((name.to_owned(), value.to_vec()));
        }
        Some(Self {
            fingerprint,
            status,
            headers,
            body: Bytes::copy_from_slice(raw),
        })
    }
}

/// Runs `POST`/`PUT`/`PATCH` requests (configurable) that carry an `Idempotency-Key` at most
/// once per key and caller, replaying the stored response to duplicates. Build it with
/// [`ApiIdempotencyLayer`]; the contract is in the crate guide ("API idempotency").
#[derive(Debug, Clone)]
pub struct ApiIdempotency<S> {
    inner: S,
    layer: ApiIdempotencyLayer,
}

impl<S> ApiIdempotency<S> {
    pub(crate) fn new(inner: S, layer: ApiIdempotencyLayer) -> Self {
        Self { inner, layer }
    }
}

impl<S, B, ResBody> Service<Request<B>> for ApiIdempotency<S>
where
    S: Service<Request<ApiRequestBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Into<Bytes> + Send,
    ResBody: http_body::Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Send,
{
    type Response = Response<ApiIdempotencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ApiIdempotencyFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready clone serves this call; the fresh clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        future::run(inner, self.layer.clone(), req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_response_round_trips_and_garbage_is_refused() {
        let s = Stored {
            fingerprint: [7; 32],
            status: 201,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: Bytes::from_static(b"{\"id\":1}"),
        };
        let raw = s.encode();
        assert_eq!(Stored::decode(&raw), Some(s));
        assert_eq!(Stored::decode(b"nope"), None);
        assert_eq!(Stored::decode(&raw[..40]), None);
    }

    #[test]
    fn fingerprint_separates_method_path_caller_and_body() {
        let uri: http::Uri = "/orders?x=1".parse().unwrap();
        let base = fingerprint(&Method::POST, &uri, None, b"{}");
        assert_eq!(base, fingerprint(&Method::POST, &uri, None, b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, &uri, None, b"{}"));
        assert_ne!(
            base,
            fingerprint(&Method::POST, &"/orders".parse().unwrap(), None, b"{}")
        );
        assert_ne!(base, fingerprint(&Method::POST, &uri, Some(""), b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, &uri, None, b"{ }"));
    }
}
