//! One actix `Transform`/`Service` pair for every hookwire middleware: each middleware supplies
//! only its request [`MiddlewareStep`], so actix's factory and service boilerplate exists once.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};

/// The response every hookwire middleware produces: the inner service's body on the left, a
/// hookwire answer (refusal, replay) on the right.
pub type MiddlewareResponse<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

/// What a hookwire middleware does with one request: [`Gate`](hookwire_receiver::Gate)
/// (webhook admission) and [`ApiIdempotencyLayer`](hookwire_receiver::ApiIdempotencyLayer) (API
/// idempotency). Sealed: the rules stay in `hookwire-receiver`.
pub trait MiddlewareStep: Clone + 'static + sealed::Sealed {
    /// Runs the request through this step and, when it proceeds, through `service`.
    fn run<S, B>(
        self,
        service: Rc<S>,
        req: ServiceRequest,
    ) -> impl Future<Output = MiddlewareResponse<B>>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>
            + 'static,
        B: MessageBody + 'static;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for hookwire_receiver::Gate {}
    impl Sealed for hookwire_receiver::ApiIdempotencyLayer {}
}

/// The middleware factory for a [`MiddlewareStep`]: `App::new().wrap(HookwireLayer::new(gate))`.
#[derive(Debug, Clone)]
pub struct Wrap<T> {
    step: T,
}

impl<T: MiddlewareStep> Wrap<T> {
    /// Runs every request through `step` (clones share its configuration and store).
    pub fn new(step: T) -> Self {
        Self { step }
    }
}

impl<S, B, T> Transform<S, ServiceRequest> for Wrap<T>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    T: MiddlewareStep,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = WrapService<S, T>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(WrapService {
            service: Rc::new(service),
            step: self.step.clone(),
        }))
    }
}

/// The middleware service [`Wrap`] builds.
#[derive(Debug)]
pub struct WrapService<S, T> {
    service: Rc<S>,
    step: T,
}

impl<S, B, T> Service<ServiceRequest> for WrapService<S, T>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    T: MiddlewareStep,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = MiddlewareResponse<B>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        Box::pin(self.step.clone().run(self.service.clone(), req))
    }
}

/// Answers `req` with a hookwire response instead of calling the inner service.
pub(crate) fn own<B>(
    req: ServiceRequest,
    resp: actix_web::HttpResponse,
) -> ServiceResponse<EitherBody<B>> {
    req.into_response(resp).map_into_right_body()
}
