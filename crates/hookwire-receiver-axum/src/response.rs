//! The receiver's answers as axum responses.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hookwire_receiver::Rejection;

/// A receiver rejection usable as an axum error type.
#[derive(Debug)]
pub struct WebhookRejection(pub Rejection);

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        rejection_response(&self.0)
    }
}

/// Converts a receiver rejection into an axum response (identical across adapters).
pub fn rejection_response(r: &Rejection) -> Response {
    r.to_response().map(Body::new)
}

/// `204` with `Idempotent-Replayed: true`: the answer to a duplicate of a done key.
pub fn replayed_response() -> Response {
    hookwire_receiver::replay_http_response().map(Body::new)
}
