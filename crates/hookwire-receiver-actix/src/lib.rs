//! actix-web adapter for `hookwire-receiver`: a middleware that verifies and de-duplicates
//! webhooks on the raw body, and a `FromRequest` extractor for the handler.
//!
//! [`HookwireLayer`] buffers the payload with the limit (413 as soon as it is exceeded), runs
//! the receiver's check (signature, replay window, idempotency claim), answers failures with the
//! same JSON responses as every other adapter, restores the payload so `web::Json<T>`,
//! `web::Bytes` and friends still work, and finalizes the claim from the response status: commit
//! below 400, release at 400 and above, on handler errors, and when the request is dropped. A
//! duplicate of a done key is answered `204` with `Idempotent-Replayed: true` without calling
//! the handler.
//!
//! ```
//! use actix_web::{App, HttpResponse, web};
//! use hookwire_receiver::Gate;
//! use hookwire_receiver_actix::{HookwireLayer, Idempotency};
//!
//! async fn order(idem: Idempotency, body: web::Json<serde_json::Value>) -> HttpResponse {
//!     println!("{:?} {}", idem.key, body.0);
//!     HttpResponse::NoContent().finish()
//! }
//!
//! let app = App::new()
//!     .wrap(HookwireLayer::new(Gate::new().secret("s3cret")))
//!     .route("/webhook", web::post().to(order));
//! ```
//!
//! For your own API, [`ApiIdempotencyTransform`] wraps an app (or a scope) in the receiver's
//! `ApiIdempotencyLayer` (see "API idempotency" in the `hookwire-receiver` guide): a
//! `POST`/`PUT`/`PATCH` with an `Idempotency-Key` runs once per key, retries get the stored
//! response with `Idempotent-Replayed: true`, the key reused with another request is a `422`, a
//! duplicate while the first still runs a `409` with `Retry-After`. Create the layer once,
//! outside the `HttpServer` factory, so every worker shares its store.
//!
//! ```
//! use actix_web::{App, HttpResponse, web};
//! use hookwire_receiver::{ApiIdempotencyLayer, IdempotencyConfig};
//! use hookwire_receiver_actix::ApiIdempotencyTransform;
//!
//! async fn create(body: web::Bytes) -> HttpResponse {
//!     HttpResponse::Created().body(body)
//! }
//!
//! let idem = ApiIdempotencyLayer::memory(IdempotencyConfig::default());
//! let app = App::new()
//!     .wrap(ApiIdempotencyTransform::new(idem.clone()))
//!     .route("/orders", web::post().to(create));
//! # let _ = app;
//! ```

mod api_idempotency;
mod extract;
mod layer;
mod middleware;
mod response;

pub use api_idempotency::{ApiIdempotencyMiddleware, ApiIdempotencyTransform};
pub use extract::{ActixHeaders, Idempotency};
pub use layer::{HookwireLayer, HookwireMiddleware};
pub use middleware::{MiddlewareResponse, MiddlewareStep, Wrap, WrapService};
pub use response::{WebhookRejection, rejection_response, replayed_response};
