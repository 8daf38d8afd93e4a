//! axum adapter for `hookwire-receiver`: the receiver's tower layer under the adapters' shared
//! name, and extractors for the handler.
//!
//! [`HookwireLayer`] is `hookwire_receiver::VerifyLayer`: it reads the body with the limit, runs
//! the receiver's check (signature, replay window, idempotency claim), answers failures itself
//! with the shared JSON responses (`{"error":…}`, 400/401/409/413/503), passes the body on so
//! `Json<T>` and other extractors still work, and finalizes the claim from the response status:
//! commit below 400, release at 400 and above, release if the handler panics or the request is
//! dropped. A duplicate of a done key is answered `204` with `Idempotent-Replayed: true` without
//! calling the handler.
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

mod extract;
mod layer;
mod response;

pub use extract::{Idempotency, WebhookEvent};
pub use layer::HookwireLayer;
pub use response::{WebhookRejection, rejection_response, replayed_response};
