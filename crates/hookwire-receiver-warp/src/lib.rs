//! warp adapter for `hookwire-receiver`: a [`Filter`](warp::Filter) that verifies and
//! de-duplicates webhooks on the raw body, and a rejection handler that renders the shared JSON
//! failures.
//!
//! [`webhook`] reads the body with the limit (413 as soon as it is exceeded), runs the
//! receiver's check (signature, replay window, idempotency claim) and yields a
//! [`WebhookRequest`]: the key, the scheme, the raw bytes and the claim. Finish it with
//! [`WebhookRequest::finish`], which commits below 400 and releases at 400 and above; a handler
//! that rejects, panics or is dropped drops the request, which releases the key so the sender's
//! retry is processed. Failures and replays travel as rejections: put [`recover`] at the end of
//! the chain so they become the same responses every adapter sends (`{"error":…}`; `204` +
//! `Idempotent-Replayed: true` for a duplicate of a done key).
//!
//! ```
//! use warp::Filter;
//! use hookwire_receiver::Gate;
//! use hookwire_receiver_warp::{recover, webhook, WebhookRequest};
//!
//! let route = warp::post()
//!     .and(warp::path("webhook"))
//!     .and(webhook(Gate::new().secret("s3cret")))
//!     .and_then(|w: WebhookRequest| async move {
//!         let event: serde_json::Value = w.json()?;
//!         println!("{:?} {event}", w.key);
//!         Ok::<_, warp::Rejection>(w.finish(warp::http::StatusCode::NO_CONTENT).await)
//!     })
//!     .recover(recover);
//! # let _ = route;
//! ```

mod extract;
mod layer;
mod response;

pub use extract::WebhookRequest;
pub use layer::{recover, webhook};
pub use response::{Replayed, WebhookRejection, rejection_response, replayed_response};
