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
//!
//! For your own API, [`api_idempotency`] puts the receiver's `ApiIdempotencyLayer` (see
//! "API idempotency" in the `hookwire-receiver` guide) around a route: a `POST`/`PUT`/`PATCH`
//! with an `Idempotency-Key` runs once per key, retries get the stored response with
//! `Idempotent-Replayed: true`, the key reused with another request is a `422`, a duplicate
//! while the first still runs a `409` with `Retry-After`. Wrap the whole route tree.
//!
//! ```
//! use warp::Filter;
//! use hookwire_receiver::{ApiIdempotencyLayer, IdempotencyConfig};
//! use hookwire_receiver_warp::api_idempotency;
//!
//! let orders = warp::post()
//!     .and(warp::path("orders"))
//!     .and(warp::body::bytes())
//!     .map(|body: bytes::Bytes| warp::reply::with_status(body.to_vec(), warp::http::StatusCode::CREATED));
//! let idem = ApiIdempotencyLayer::memory(IdempotencyConfig::default());
//! let app = api_idempotency(idem, orders);
//! # async fn serve(app: impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static) {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     tokio::spawn(warp::serve(app).incoming(listener).run());
//! # }
//! # let _ = serve(app);
//! ```

mod api_idempotency;
mod extract;
mod layer;
mod response;

pub use api_idempotency::api_idempotency;
pub use extract::WebhookRequest;
pub use layer::{recover, webhook};
pub use response::{Replayed, WebhookRejection, rejection_response, replayed_response};
