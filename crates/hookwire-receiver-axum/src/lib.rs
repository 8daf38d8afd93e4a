//! axum adapter for `hookwire-receiver`: a tower [`Layer`] that verifies and de-duplicates
//! webhooks on the raw body, and extractors for the handler.
//!
//! [`HookwireLayer`] reads the body with the limit, runs the receiver's check (signature,
//! replay window, idempotency claim), answers failures itself with the shared JSON responses
//! (`{"error":…}`, 400/401/409/413/503), re-inserts the body so `Json<T>` and other extractors
//! still work, and finalizes the claim from the response status: commit below 400, release at
//! 400 and above, release if the handler panics or the request is dropped. A duplicate of a done
//! key is answered `204` with `Idempotent-Replayed: true` without calling the handler.
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use hookwire_receiver::Gate;
//! use hookwire_receiver_axum::{HookwireLayer, Idempotency};
//!
//! async fn order(idem: Idempotency, Json(body): Json<serde_json::Value>) -> &'static str {
//!     println!("{:?} {body}", idem.key);
//!     "ok"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/webhook", post(order))
//!     .layer(HookwireLayer::new(Gate::new().secret("s3cret")));
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hookwire_core::signing::Scheme;
use hookwire_receiver::{Gate, REPLAYED_HEADER, Rejection};
use http::request::Parts;
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

/// What the layer established, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Idempotency {
    /// The idempotency key (absent only when the gate does not require one).
    pub key: Option<String>,
    /// Always `false` under the layer's default (replays are answered without the handler).
    pub deduped: bool,
    /// The scheme that verified the request (`None` for an unsigned gate).
    pub scheme: Option<Scheme>,
}

/// Converts a receiver rejection into an axum response (identical across adapters).
pub fn rejection_response(r: &Rejection) -> Response {
    r.to_response().map(Body::new)
}

/// A rejection usable as an axum error type.
#[derive(Debug)]
pub struct WebhookRejection(pub Rejection);

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        rejection_response(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = WebhookRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Fail closed: without the layer nothing was verified.
        parts
            .extensions
            .get::<Idempotency>()
            .cloned()
            .ok_or_else(|| WebhookRejection(Rejection::new(500, "receiver-not-configured")))
    }
}

/// The verified event parsed from the body, plus the [`Idempotency`] info. A body that does not
/// parse is a 422 `{"error":"validation-failed","detail":…}`, as in the typed receiver.
#[derive(Debug)]
pub struct Verified<T> {
    /// The event.
    pub event: T,
    /// Key, dedup flag and scheme.
    pub info: Idempotency,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Verified<T> {
    type Rejection = WebhookRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let info = Idempotency::from_request_parts(&mut parts, state).await?;
        // The layer already bounded the body; read it back from memory.
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|_| WebhookRejection(Rejection::bad_request()))?;
        let event = serde_json::from_slice(&bytes)
            .map_err(|e| WebhookRejection(Rejection::validation_failed(e.to_string())))?;
        Ok(Verified { event, info })
    }
}

/// The tower layer. Works with axum's `Router::layer` and any tower stack whose inner service
/// takes `Request<axum::body::Body>`.
#[derive(Debug, Clone)]
pub struct HookwireLayer {
    gate: Gate,
}

impl HookwireLayer {
    /// A layer checking requests with `gate`.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for HookwireLayer {
    type Service = HookwireService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HookwireService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service [`HookwireLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct HookwireService<S> {
    inner: S,
    gate: Gate,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<http::Request<B>> for HookwireService<S>
where
    S: Service<Request, Response = http::Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Into<Bytes> + Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Take the service that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let body = match hookwire_receiver::read_limited(body, gate.max_body_len()).await {
                Ok(b) => b,
                Err(r) => return Ok(rejection_response(&r)),
            };
            let checked = match gate.check(&parts.headers, &body).await {
                Ok(c) => c,
                Err(r) => return Ok(rejection_response(&r)),
            };
            if checked.deduped {
                return Ok(replayed());
            }
            parts.extensions.insert(Idempotency {
                scheme: checked.scheme(),
                key: checked.key,
                deduped: false,
            });
            let guard = checked.guard;
            let req = Request::from_parts(parts, Body::from(body));
            // If the handler panics, `guard` drops during unwinding and releases the key.
            let Ok(resp) = inner.call(req).await;
            if let Some(g) = guard {
                g.finish(resp.status().as_u16()).await;
            }
            Ok(resp.map(Body::new))
        })
    }
}

/// `204` with `Idempotent-Replayed: true`: the answer to a duplicate of a done key.
pub fn replayed() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = http::StatusCode::NO_CONTENT;
    r.headers_mut()
        .insert(REPLAYED_HEADER, http::HeaderValue::from_static("true"));
    r
}
