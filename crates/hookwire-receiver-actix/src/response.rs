//! The receiver's answers as actix responses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hookwire_receiver::{REPLAYED_HEADER, Rejection};

/// A receiver rejection as an actix error: renders the shared JSON response.
#[derive(Debug)]
pub struct WebhookRejection(pub Rejection);

impl std::fmt::Display for WebhookRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for WebhookRejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        rejection_response(&self.0)
    }
}

/// The shared failure response (status, `Retry-After`, `{"error":…}`).
pub fn rejection_response(r: &Rejection) -> HttpResponse {
    let mut b = HttpResponse::build(
        StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    b.content_type("application/json");
    if let Some(h) = r.extra_headers() {
        b.insert_header(h);
    }
    b.body(r.body())
}

/// `204` with `Idempotent-Replayed: true`: the answer to a duplicate of a done key.
pub fn replayed_response() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((REPLAYED_HEADER, "true"))
        .finish()
}
