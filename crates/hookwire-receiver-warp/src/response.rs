//! The receiver's answers as warp rejections and replies.

use hookwire_receiver::{REPLAYED_HEADER, Rejection};
use warp::Reply;
use warp::http::{HeaderValue, Response, StatusCode};

/// A receiver failure carried as a warp rejection.
#[derive(Debug)]
pub struct WebhookRejection(pub Rejection);

impl warp::reject::Reject for WebhookRejection {}

/// A duplicate of a done key, carried as a rejection so the handler never runs.
#[derive(Debug)]
pub struct Replayed;

impl warp::reject::Reject for Replayed {}

/// The shared failure response (status, `Retry-After`, `{"error":…}`).
pub fn rejection_response(r: &Rejection) -> warp::reply::Response {
    let mut b = Response::builder()
        .status(r.status())
        .header("content-type", "application/json");
    if let Some((k, v)) = r.extra_headers() {
        b = b.header(k, v);
    }
    b.body(r.body()).map_or_else(
        |_| StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Reply::into_response,
    )
}

/// `204` with `Idempotent-Replayed: true`: the answer to a duplicate of a done key.
pub fn replayed_response() -> warp::reply::Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    resp
}
