//! Extractors: what the layer established, and the parsed event.

use axum::extract::{FromRequest, FromRequestParts, Request};
use hookwire_core::signing::Scheme;
use hookwire_receiver::{Admitted, Reason, Rejection};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::WebhookRejection;

/// What the layer established, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Idempotency {
    /// The idempotency key (absent only when the gate does not require one).
    pub key: Option<String>,
    /// The scheme that verified the request (`None` for an unsigned gate).
    pub scheme: Option<Scheme>,
}

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = WebhookRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Fail closed: without the layer nothing was verified.
        let a = parts
            .extensions
            .get::<Admitted>()
            .ok_or(WebhookRejection(Reason::NotConfigured.into()))?;
        Ok(Self {
            key: a.key.clone(),
            scheme: a.scheme,
        })
    }
}

/// The verified event parsed from the body, plus the [`Idempotency`] info. A body that does not
/// parse is a 422 `{"error":"validation-failed","detail":…}`, as in the typed receiver.
#[derive(Debug)]
pub struct WebhookEvent<T> {
    /// The event.
    pub event: T,
    /// Key and scheme.
    pub info: Idempotency,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for WebhookEvent<T> {
    type Rejection = WebhookRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let info = Idempotency::from_request_parts(&mut parts, state).await?;
        // The layer already bounded the body; read it back from memory.
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|_| WebhookRejection(Rejection::bad_request()))?;
        let event = serde_json::from_slice(&bytes)
            .map_err(|e| WebhookRejection(Rejection::validation_failed(e.to_string())))?;
        Ok(WebhookEvent { event, info })
    }
}
