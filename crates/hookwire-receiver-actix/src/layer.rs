//! Webhook admission as an actix middleware: the receiver's check and claim around the handler.

use std::rc::Rc;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use hookwire_receiver::{Check, Gate};

use crate::middleware::{MiddlewareResponse, MiddlewareStep, Wrap, WrapService, own};
use crate::{ActixHeaders, rejection_response, replayed_response};

/// The middleware factory: `App::new().wrap(HookwireLayer::new(gate))`.
pub type HookwireLayer = Wrap<Gate>;

/// The middleware service [`HookwireLayer`] builds.
pub type HookwireMiddleware<S> = WrapService<S, Gate>;

impl MiddlewareStep for Gate {
    async fn run<S, B>(self, service: Rc<S>, mut req: ServiceRequest) -> MiddlewareResponse<B>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>
            + 'static,
        B: MessageBody + 'static,
    {
        let payload = req.take_payload();
        let (admission, body) = match self
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
    }
}
