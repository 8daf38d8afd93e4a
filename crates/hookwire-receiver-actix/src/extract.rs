//! Extractors and the header view verification reads.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use hookwire_core::signing::{HeaderLookup, HeaderSource, Scheme};
use hookwire_receiver::{Admitted, Reason};

use crate::WebhookRejection;

/// actix's header map as a [`HeaderSource`] for verification.
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

impl HeaderSource for ActixHeaders<'_> {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        let mut it = self.0.get_all(name);
        match (it.next(), it.next()) {
            (None, _) => HeaderLookup::Absent,
            (Some(v), None) => HeaderLookup::One(v.as_bytes()),
            (Some(_), Some(_)) => HeaderLookup::Many,
        }
    }
}

/// What the middleware established, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Idempotency {
    /// The idempotency key (absent only when the gate does not require one).
    pub key: Option<String>,
    /// The scheme that verified the request (`None` for an unsigned gate).
    pub scheme: Option<Scheme>,
}

impl FromRequest for Idempotency {
    type Error = WebhookRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Fail closed: without the middleware nothing was verified.
        ready(
            req.extensions()
                .get::<Admitted>()
                .map(|a| Self {
                    key: a.key.clone(),
                    scheme: a.scheme,
                })
                .ok_or(WebhookRejection(Reason::NotConfigured.into())),
        )
    }
}
