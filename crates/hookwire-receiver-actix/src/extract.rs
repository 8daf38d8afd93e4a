//! Extractors and the header view verification reads.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use hookwire_core::signing::{
    HeaderLookup, HeaderSource, Scheme, lookup_pairs_into, present_mask_of,
};
use hookwire_receiver::{Admitted, Reason};

use crate::WebhookRejection;

/// actix's header map as a [`HeaderSource`] for verification.
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

// Walks the request's few headers instead of `get_all(&str)`, which parses the name into a
// `HeaderName` on every call (verification asks for several names per request).
impl HeaderSource for ActixHeaders<'_> {
    fn lookup(&self, name: &str) -> HeaderLookup<'_> {
        let mut out = [HeaderLookup::Absent];
        self.lookup_into(&[name], &mut out);
        out[0]
    }

    fn present_mask(&self, names: &[&str]) -> u32 {
        present_mask_of(self.0.keys().map(HeaderName::as_str), names)
    }

    fn lookup_into<'a>(&'a self, names: &[&str], out: &mut [HeaderLookup<'a>]) {
        let pairs = self.0.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        lookup_pairs_into(pairs, names, out);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_walk_answers_what_name_by_name_lookups_answer() {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Webhook-Id", "msg_1"))
            .append_header(("X-A", "1"))
            .append_header(("x-a", "2"))
            .insert_header(("Content-Type", "application/json"))
            .to_http_request();
        let h = ActixHeaders(req.headers());
        let names = ["webhook-id", "x-a", "x-b", "content-type"];
        let mut out = [HeaderLookup::Absent; 4];
        h.lookup_into(&names, &mut out);
        assert_eq!(
            out,
            [
                HeaderLookup::One(b"msg_1"),
                HeaderLookup::Many,
                HeaderLookup::Absent,
                HeaderLookup::One(b"application/json"),
            ]
        );
        for (n, o) in names.iter().zip(out) {
            assert_eq!(h.lookup(n), o, "{n}");
        }
        assert_eq!(h.present_mask(&names), 0b1011);
    }
}
