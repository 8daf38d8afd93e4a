//! warp adapter for `hookwire-receiver`: a [`Filter`] that verifies and de-duplicates webhooks
//! on the raw body, and a rejection handler that renders the shared JSON failures.
//!
//! [`webhook`] reads the body with the limit (413 as soon as it is exceeded), runs the
//! receiver's check (signature, replay window, idempotency claim) and yields a [`Webhook`]: the
//! key, the scheme, the raw bytes and the claim. Finish it with [`Webhook::finish`], which
//! commits below 400 and releases at 400 and above; a handler that rejects, panics or is dropped
//! drops the `Webhook`, which releases the key so the sender's retry is processed. Failures and
//! replays travel as rejections: put [`recover`] at the end of the chain so they become the same
//! responses every adapter sends (`{"error":…}`; `204` + `Idempotent-Replayed: true` for a
//! duplicate of a done key).
//!
//! ```
//! use warp::Filter;
//! use hookwire_receiver::Gate;
//! use hookwire_receiver_warp::{recover, webhook, Webhook};
//!
//! let route = warp::post()
//!     .and(warp::path("webhook"))
//!     .and(webhook(Gate::new().secret("s3cret")))
//!     .and_then(|w: Webhook| async move {
//!         let event: serde_json::Value = w.json()?;
//!         println!("{:?} {event}", w.key);
//!         Ok::<_, warp::Rejection>(w.finish(warp::http::StatusCode::NO_CONTENT).await)
//!     })
//!     .recover(recover);
//! # let _ = route;
//! ```

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use hookwire_core::signing::Scheme;
use hookwire_receiver::{ClaimGuard, Gate, LimitedBody, REPLAYED_HEADER, Rejection};
use serde::de::DeserializeOwned;
use warp::http::{HeaderMap, Response, StatusCode};
use warp::{Filter, Reply};

/// A verified, claimed webhook.
#[derive(Debug)]
#[non_exhaustive]
pub struct Webhook {
    /// The idempotency key (absent only when the gate does not require one).
    pub key: Option<String>,
    /// The scheme that verified the request (`None` for an unsigned gate).
    pub scheme: Option<Scheme>,
    /// The raw body, exactly as verified.
    pub body: Bytes,
    guard: Option<ClaimGuard>,
}

impl Webhook {
    /// Parses the body as JSON; a body that does not parse is a 422 `validation-failed`
    /// rejection (and dropping the webhook then releases the key).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, warp::Rejection> {
        serde_json::from_slice(&self.body).map_err(|e| {
            warp::reject::custom(WebhookRejection(Rejection::validation_failed(
                e.to_string(),
            )))
        })
    }

    /// Turns `reply` into a response and finalizes the claim from its status.
    pub async fn finish(mut self, reply: impl Reply) -> warp::reply::Response {
        let resp = reply.into_response();
        if let Some(g) = self.guard.take() {
            g.finish(resp.status().as_u16()).await;
        }
        resp
    }
}

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

/// Recovers this crate's rejections into their responses; passes others on.
pub async fn recover(err: warp::Rejection) -> Result<warp::reply::Response, warp::Rejection> {
    if let Some(WebhookRejection(r)) = err.find::<WebhookRejection>() {
        return Ok(rejection_response(r));
    }
    if err.find::<Replayed>().is_some() {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        resp.headers_mut().insert(
            REPLAYED_HEADER,
            warp::http::HeaderValue::from_static("true"),
        );
        return Ok(resp);
    }
    Err(err)
}

async fn read_limited<S, B>(
    headers: &HeaderMap,
    stream: S,
    limit: usize,
) -> Result<Bytes, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut acc = LimitedBody::new(limit, declared)?;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| Rejection::bad_request())?;
        // Zero-copy when the chunk is already `Bytes`.
        let n = chunk.remaining();
        acc.push(chunk.copy_to_bytes(n))?;
    }
    Ok(acc.finish())
}

/// The filter: reads, verifies and claims; yields a [`Webhook`] or rejects with
/// [`WebhookRejection`] / [`Replayed`] (render them with [`recover`]).
pub fn webhook(gate: Gate) -> impl Filter<Extract = (Webhook,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .and(warp::any().map(move || gate.clone()))
        .and_then(|headers: HeaderMap, stream, gate: Gate| async move {
            let reject = |r| warp::reject::custom(WebhookRejection(r));
            let body = read_limited(&headers, stream, gate.max_body_len())
                .await
                .map_err(reject)?;
            let checked = gate.check(&headers, &body).await.map_err(reject)?;
            if checked.deduped {
                return Err(warp::reject::custom(Replayed));
            }
            Ok::<_, warp::Rejection>(Webhook {
                scheme: checked.scheme(),
                key: checked.key,
                body,
                guard: checked.guard,
            })
        })
}
