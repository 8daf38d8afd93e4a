//! What the filter extracts: a verified, claimed request.

use bytes::Bytes;
use hookwire_core::signing::Scheme;
use hookwire_receiver::{Admission, Rejection};
use serde::de::DeserializeOwned;
use warp::Reply;

use crate::WebhookRejection;

/// A verified, claimed webhook request.
#[derive(Debug)]
#[non_exhaustive]
pub struct WebhookRequest {
    /// The idempotency key (absent only when the gate does not require one).
    pub key: Option<String>,
    /// The scheme that verified the request (`None` for an unsigned gate).
    pub scheme: Option<Scheme>,
    /// The raw body, exactly as verified.
    pub body: Bytes,
    admission: Admission,
}

impl WebhookRequest {
    pub(crate) fn new(admission: Admission, body: Bytes) -> Self {
        Self {
            scheme: admission.scheme(),
            key: admission.key.clone(),
            body,
            admission,
        }
    }

    /// Parses the body as JSON; a body that does not parse is a 422 `validation-failed`
    /// rejection (and dropping the request then releases the key).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, warp::Rejection> {
        serde_json::from_slice(&self.body).map_err(|e| {
            warp::reject::custom(WebhookRejection(Rejection::validation_failed(
                e.to_string(),
            )))
        })
    }

    /// Turns `reply` into a response and finalizes the claim from its status.
    pub async fn finish(self, reply: impl Reply) -> warp::reply::Response {
        let resp = reply.into_response();
        self.admission.finish(resp.status().as_u16()).await;
        resp
    }
}
