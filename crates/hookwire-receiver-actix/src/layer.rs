//! The middleware: actix's `Transform` around the receiver's check and claim.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use hookwire_receiver::{Check, Gate};

use crate::{ActixHeaders, rejection_response, replayed_response};

/// The middleware factory: `App::new().wrap(HookwireLayer::new(gate))`.
#[derive(Debug, Clone)]
pub struct HookwireLayer {
    gate: Gate,
}

impl HookwireLayer {
    /// Checks requests with `gate`.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HookwireLayer
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

/// The middleware service [`HookwireLayer`] builds.
#[derive(Debug)]
pub struct HookwireMiddleware<S> {
    service: Rc<S>,
    gate: Gate,
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
            let payload = req.take_payload();
            let (admission, body) = match gate
                .admit_stream(&ActixHeaders(req.headers()), payload)
                .await
            {
                (Check::Proceed(a), body) => (a, body),
                (Check::Replay(_), _) => return Ok(own(req, replayed_response())),
                (Check::Reject(r), _) => return Ok(own(req, rejection_response(&r))),
            };
            req.extensions_mut().insert(admission.admitted());
            req.set_payload(Payload::from(body));
            // A panic or a dropped future drops the admission's guard, which releases the key.
            let res = service.call(req).await;
            let status = match &res {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.as_response_error().status_code().as_u16(),
            };
            admission.finish(status).await;
            res.map(ServiceResponse::map_into_left_body)
        })
    }
}

fn own<B>(req: ServiceRequest, resp: actix_web::HttpResponse) -> ServiceResponse<EitherBody<B>> {
    req.into_response(resp).map_into_right_body()
}
