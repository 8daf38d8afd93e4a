//! actix-web adapter for `hookwire-receiver`: a middleware that verifies and de-duplicates
//! webhooks on the raw body, and a `FromRequest` extractor for the handler.
//!
//! [`Hookwire`] buffers the payload with the limit (413 as soon as it is exceeded), runs the
//! receiver's check (signature, replay window, idempotency claim), answers failures with the
//! same JSON responses as every other adapter, restores the payload so `web::Json<T>`,
//! `web::Bytes` and friends still work, and finalizes the claim from the response status: commit
//! below 400, release at 400 and above, on handler errors, and when the request is dropped. A
//! duplicate of a done key is answered `204` with `Idempotent-Replayed: true` without calling
//! the handler.
//!
//! ```
//! use actix_web::{App, HttpResponse, web};
//! use hookwire_receiver::Gate;
//! use hookwire_receiver_actix::{Hookwire, Idempotency};
//!
//! async fn order(idem: Idempotency, body: web::Json<serde_json::Value>) -> HttpResponse {
//!     println!("{:?} {}", idem.key, body.0);
//!     HttpResponse::NoContent().finish()
//! }
//!
//! let app = App::new()
//!     .wrap(Hookwire::new(Gate::new().secret("s3cret")))
//!     .route("/webhook", web::post().to(order));
//! ```

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use futures_util::StreamExt;
use hookwire_core::signing::{HeaderLookup, HeaderSource, Scheme};
use hookwire_receiver::{Gate, LimitedBody, REPLAYED_HEADER, Rejection};

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
    /// Always `false` under the middleware (replays are answered without the handler).
    pub deduped: bool,
    /// The scheme that verified the request (`None` for an unsigned gate).
    pub scheme: Option<Scheme>,
}

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

impl FromRequest for Idempotency {
    type Error = WebhookRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Fail closed: without the middleware nothing was verified.
        ready(
            req.extensions()
                .get::<Idempotency>()
                .cloned()
                .ok_or_else(|| WebhookRejection(Rejection::new(500, "receiver-not-configured"))),
        )
    }
}

/// The middleware factory: `App::new().wrap(Hookwire::new(gate))`.
#[derive(Debug, Clone)]
pub struct Hookwire {
    gate: Gate,
}

impl Hookwire {
    /// Checks requests with `gate`.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Hookwire
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = HookwireMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HookwireMiddleware {
            service: Rc::new(service),
            gate: self.gate.clone(),
        }))
    }
}

/// The middleware service [`Hookwire`] builds.
#[derive(Debug)]
pub struct HookwireMiddleware<S> {
    service: Rc<S>,
    gate: Gate,
}

/// Reads an actix payload with a limit enforced while reading.
async fn read_payload(
    headers: &HeaderMap,
    payload: &mut Payload,
    limit: usize,
) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut acc = LimitedBody::new(limit, declared)?;
    while let Some(chunk) = payload.next().await {
        acc.push(chunk.map_err(|_| Rejection::bad_request())?)?;
    }
    Ok(acc.finish())
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for HookwireMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            let mut payload = req.take_payload();
            let body = match read_payload(req.headers(), &mut payload, gate.max_body_len()).await {
                Ok(b) => b,
                Err(r) => return Ok(reject(req, &r)),
            };
            let checked = match gate.check(&ActixHeaders(req.headers()), &body).await {
                Ok(c) => c,
                Err(r) => return Ok(reject(req, &r)),
            };
            if checked.deduped {
                let resp = HttpResponse::NoContent()
                    .insert_header((REPLAYED_HEADER, "true"))
                    .finish();
                return Ok(req.into_response(resp).map_into_right_body());
            }
            req.extensions_mut().insert(Idempotency {
                scheme: checked.scheme(),
                key: checked.key,
                deduped: false,
            });
            let guard = checked.guard;
            req.set_payload(Payload::from(body));
            // A panic or a dropped future drops `guard`, which releases the key.
            let res = service.call(req).await;
            let status = match &res {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.as_response_error().status_code().as_u16(),
            };
            if let Some(g) = guard {
                g.finish(status).await;
            }
            res.map(ServiceResponse::map_into_left_body)
        })
    }
}

fn reject<B>(req: ServiceRequest, r: &Rejection) -> ServiceResponse<EitherBody<B>> {
    req.into_response(rejection_response(r))
        .map_into_right_body()
}
