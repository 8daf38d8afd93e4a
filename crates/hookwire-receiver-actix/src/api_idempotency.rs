//! [`ApiIdempotencyTransform`]: the receiver's API idempotency (`ApiIdempotencyLayer`) as an
//! actix-web middleware. The rules (claim, fingerprint, replay, what is stored) stay in the
//! receiver; this file only converts actix's request and response to and from `http` types.

use std::rc::Rc;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use hookwire_receiver::{ApiIdempotencyLayer, Rejection, read_stream};

use crate::middleware::{MiddlewareResponse, MiddlewareStep, Wrap, WrapService, own};
use crate::{ActixHeaders, rejection_response};

/// The middleware factory: `App::new().wrap(ApiIdempotencyTransform::new(layer))`. A
/// `POST`/`PUT`/`PATCH` (configurable on the layer) with an `Idempotency-Key` reaches the
/// handler at most once per key and caller; see `ApiIdempotencyLayer` for the contract. Clones
/// share the layer's configuration and store: `invalidate` and `has` on the layer see what the
/// middleware stored.
pub type ApiIdempotencyTransform = Wrap<ApiIdempotencyLayer>;

/// The middleware service [`ApiIdempotencyTransform`] builds.
pub type ApiIdempotencyMiddleware<S> = WrapService<S, ApiIdempotencyLayer>;

impl MiddlewareStep for ApiIdempotencyLayer {
    async fn run<S, B>(self, service: Rc<S>, mut req: ServiceRequest) -> MiddlewareResponse<B>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>
            + 'static,
        B: MessageBody + 'static,
    {
        let Some(parts) = parts_of(&req) else {
            return Ok(own(req, rejection_response(&Rejection::bad_request())));
        };
        let key = match self.key(&parts) {
            Ok(Some(k)) => k,
            Ok(None) => return service.call(req).await.map(|r| r.map_into_left_body()),
            Err(r) => return Ok(own(req, rejection_response(&r))),
        };
        let payload = req.take_payload();
        let limit = self.request_body_limit();
        let body = match read_stream(&ActixHeaders(req.headers()), payload, limit).await {
            Ok(b) => b,
            Err(r) => return Ok(own(req, rejection_response(&r))),
        };
        let run = match self.begin(&parts, &key, &body).await {
            Ok(run) => run,
            Err(answer) => return Ok(own(req, from_http(answer))),
        };
        req.set_payload(Payload::from(body));
        let handled = run
            .renew_while(async {
                let res = service.call(req).await?;
                let len = match res.response().body().size() {
                    BodySize::None => Some(0),
                    BodySize::Sized(n) => Some(n),
                    BodySize::Stream => None,
                };
                let status = http::StatusCode::from_u16(res.status().as_u16());
                if !status.is_ok_and(|s| run.keeps(s, len)) {
                    return Ok(Err(res));
                }
                let (req, resp) = res.into_parts();
                let (head, body) = resp.into_parts();
                let bytes = actix_web::body::to_bytes(body).await.ok();
                Ok::<_, actix_web::Error>(Ok((req, head, bytes)))
            })
            .await;
        let (req, head, bytes) = match handled {
            Ok(Ok(kept)) => kept,
            Ok(Err(passed_through)) => {
                run.release().await;
                return Ok(passed_through.map_into_left_body());
            }
            Err(e) => {
                run.release().await;
                return Err(e);
            }
        };
        let Some(bytes) = bytes else {
            run.release().await;
            let failed = rejection_response(&Rejection::handler_failed(None));
            return Ok(ServiceResponse::new(req, failed).map_into_right_body());
        };
        let mut headers = http::HeaderMap::new();
        for (k, v) in head.headers() {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_str().as_bytes()),
                http::HeaderValue::from_bytes(v.as_bytes()),
            ) {
                headers.append(k, v);
            }
        }
        let status =
            http::StatusCode::from_u16(head.status().as_u16()).unwrap_or(http::StatusCode::OK); // kept above, so it converted
        run.store(status, &headers, &bytes).await;
        Ok(
            ServiceResponse::new(req, head.set_body(bytes).map_into_boxed_body())
                .map_into_right_body(),
        )
    }
}

/// The request line and headers as `http` parts, what the receiver's rules read.
fn parts_of(req: &ServiceRequest) -> Option<http::request::Parts> {
    let mut b = http::Request::builder()
        .method(http::Method::from_bytes(req.method().as_str().as_bytes()).ok()?)
        .uri(req.uri().to_string());
    for (k, v) in req.headers() {
        b = b.header(k.as_str(), v.as_bytes());
    }
    Some(b.body(()).ok()?.into_parts().0)
}

/// An answer of the receiver (replay, refusal) as an actix response.
fn from_http(r: http::Response<Bytes>) -> HttpResponse {
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::OK);
    let mut b = HttpResponseBuilder::new(status);
    for (k, v) in r.headers() {
        b.append_header((k.as_str(), v.as_bytes()));
    }
    b.body(r.into_body())
}
