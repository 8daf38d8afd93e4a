//! [`ApiIdempotencyLayer`]: applies [`ApiIdempotency`] to a service, and reaches its store.

use std::sync::Arc;

use http::{HeaderName, Method};
use tower_layer::Layer;

use hookwire_core::{IdempotencyConfig, IdempotencyStore, MemoryStore, StoreError};

use super::{
    API_IDEMPOTENCY_HEADER, ApiIdempotency, Config, DEFAULT_API_MAX_KEY_LEN,
    DEFAULT_API_MAX_STORED_BODY, IdentityFn,
};
use crate::DEFAULT_RECEIVER_MAX_BODY;

/// Wraps services in [`ApiIdempotency`]; works with axum's `Router::layer` and any tower stack.
/// Clones share one configuration and one store.
///
/// ```
/// use hookwire_receiver::{ApiIdempotencyLayer, IdempotencyConfig};
/// let layer = ApiIdempotencyLayer::memory(IdempotencyConfig::default())
///     .identity(|parts| parts.headers.get("x-account").and_then(|v| v.to_str().ok()).map(str::to_owned));
/// assert!(!hookwire_core::idempotency::block_on(layer.has("order-1")).unwrap());
/// ```
#[derive(Debug, Clone)]
pub struct ApiIdempotencyLayer {
    pub(super) config: Arc<Config>,
}

impl ApiIdempotencyLayer {
    /// A layer keeping its keys and responses in `store` (TTL and lease come from the store).
    pub fn new(store: impl IdempotencyStore + 'static) -> Self {
        Self {
            config: Arc::new(Config {
                store: Arc::new(store),
                header: HeaderName::from_static(API_IDEMPOTENCY_HEADER),
                methods: vec![Method::POST, Method::PUT, Method::PATCH],
                max_key_len: DEFAULT_API_MAX_KEY_LEN,
                max_request_body: DEFAULT_RECEIVER_MAX_BODY,
                max_stored_body: DEFAULT_API_MAX_STORED_BODY,
                stored_headers: [
                    "content-type",
                    "content-language",
                    "location",
                    "etag",
                    "last-modified",
                    "cache-control",
                ]
                .into_iter()
                .map(HeaderName::from_static)
                .collect(),
                identity: None,
            }),
        }
    }

    /// A layer on an in-process [`MemoryStore`] with `config`.
    pub fn memory(config: IdempotencyConfig) -> Self {
        Self::new(MemoryStore::new(config))
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        // Builders run before the layer is cloned; a shared config is copied first.
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The methods that honour the key (default `POST`, `PUT`, `PATCH`); others pass untouched.
    #[must_use]
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter().collect();
        self.edit(|c| c.methods = methods)
    }

    /// The header carrying the key (default `Idempotency-Key`).
    #[must_use]
    pub fn header(self, name: HeaderName) -> Self {
        self.edit(|c| c.header = name)
    }

    /// Longest key accepted, in bytes (default 255); longer keys are a 400 `key-too-long`.
    #[must_use]
    pub fn max_key_len(self, n: usize) -> Self {
        self.edit(|c| c.max_key_len = n)
    }

    /// Largest request body read for a keyed request (default 1 MiB); larger is a 413.
    #[must_use]
    pub fn max_request_body(self, n: usize) -> Self {
        self.edit(|c| c.max_request_body = n)
    }

    /// Largest response body stored (default 256 KiB). A larger response, or one whose length
    /// is not known up front, is sent as is and its key released, so a retry runs again.
    #[must_use]
    pub fn max_stored_body(self, n: usize) -> Self {
        self.edit(|c| c.max_stored_body = n)
    }

    /// Adds a response header to store and replay (default `content-type`, `content-language`,
    /// `location`, `etag`, `last-modified`, `cache-control`).
    #[must_use]
    pub fn store_header(self, name: HeaderName) -> Self {
        self.edit(|c| {
            if !c.stored_headers.contains(&name) {
                c.stored_headers.push(name);
            }
        })
    }

    /// Scopes keys to the caller `f` names (run it after authentication, so the identity is
    /// trusted); requests for which it answers `None` share the anonymous scope.
    #[must_use]
    pub fn identity<F>(self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        let f: Arc<IdentityFn> = Arc::new(f);
        self.edit(|c| c.identity = Some(f))
    }

    /// Forgets the anonymous caller's `key` (done or in flight): the next request with it runs.
    pub async fn invalidate(&self, key: &str) -> Result<bool, StoreError> {
        self.invalidate_for(None, key).await
    }

    /// Forgets `key` in `identity`'s scope.
    pub async fn invalidate_for(
        &self,
        identity: Option<&str>,
        key: &str,
    ) -> Result<bool, StoreError> {
        let k = Config::store_key(identity, key);
        self.config.store.remove(&k).await
    }

    /// True while the anonymous caller's `key` has a stored response to replay.
    pub async fn has(&self, key: &str) -> Result<bool, StoreError> {
        self.has_for(None, key).await
    }

    /// True while `key` in `identity`'s scope has a stored response to replay.
    pub async fn has_for(&self, identity: Option<&str>, key: &str) -> Result<bool, StoreError> {
        let k = Config::store_key(identity, key);
        Ok(self.config.store.value(&k).await?.is_some())
    }
}

impl<S> Layer<S> for ApiIdempotencyLayer {
    type Service = ApiIdempotency<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ApiIdempotency::new(inner, self.clone())
    }
}
