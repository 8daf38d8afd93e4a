//! The filter that reads, verifies and claims, and the recovery that renders its rejections.

use hookwire_receiver::{Check, Gate};
use warp::Filter;
use warp::http::HeaderMap;

use crate::{Replayed, WebhookRejection, WebhookRequest, rejection_response, replayed_response};

/// Recovers this crate's rejections into their responses; passes others on.
pub async fn recover(err: warp::Rejection) -> Result<warp::reply::Response, warp::Rejection> {
    if let Some(WebhookRejection(r)) = err.find::<WebhookRejection>() {
        return Ok(rejection_response(r));
    }
    if err.find::<Replayed>().is_some() {
        return Ok(replayed_response());
    }
    Err(err)
}

/// The filter: reads, verifies and claims; yields a [`WebhookRequest`] or rejects with
/// [`WebhookRejection`] / [`Replayed`] (render them with [`recover`]).
pub fn webhook(
    gate: Gate,
) -> impl Filter<Extract = (WebhookRequest,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .and(warp::any().map(move || gate.clone()))
        .and_then(|headers: HeaderMap, stream, gate: Gate| async move {
            match gate.admit_stream(&headers, stream).await {
                (Check::Proceed(a), body) => Ok(WebhookRequest::new(a, body)),
                (Check::Replay(_), _) => Err(warp::reject::custom(Replayed)),
                (Check::Reject(r), _) => Err(warp::reject::custom(WebhookRejection(r))),
            }
        })
}
