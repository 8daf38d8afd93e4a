//! The admission flow as one tower middleware, shaped like tower-http's `validate_request`:
//! [`VerifyLayer`] builds [`Verify<S>`], whose [`ResponseFuture`] reads the body with the limit,
//! checks it, answers a replay, calls the inner service and finishes the claim from the status.

mod future;
mod layer;

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use tower_service::Service;

use crate::Gate;

pub use future::ResponseFuture;
pub use layer::VerifyLayer;

/// The response body of [`Verify`]: the receiver's own answer (a rejection or a replay) on the
/// left, the inner service's body on the right.
pub type VerifyBody<B> = Either<Full<Bytes>, B>;

/// Verifies and de-duplicates every request before the inner service sees it.
///
/// The inner service receives the body, already read and verified, as a `Full<Bytes>`, and
/// the [`crate::Admitted`] key and scheme in the request's extensions. The claim is committed
/// when its response is below 400 and released otherwise, when it errors, panics or the future
/// is dropped.
///
/// ```
/// use std::convert::Infallible;
/// use std::future::{Ready, ready};
/// use std::task::{Context, Poll};
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hookwire_receiver::{Admitted, Gate, Verify};
/// use tower_service::Service;
///
/// /// Answers with the admitted key.
/// #[derive(Clone)]
/// struct EchoKey;
///
/// impl Service<http::Request<Full<Bytes>>> for EchoKey {
///     type Response = http::Response<Full<Bytes>>;
///     type Error = Infallible;
///     type Future = Ready<Result<Self::Response, Infallible>>;
///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///     fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
///         let key = req.extensions().get::<Admitted>().and_then(|a| a.key.clone());
///         ready(Ok(http::Response::new(Full::new(Bytes::from(key.unwrap_or_default())))))
///     }
/// }
///
/// # hookwire_core::idempotency::block_on(async {
/// let mut svc = Verify::new(EchoKey, Gate::new());
/// let req = || http::Request::post("/").header("idempotency-key", "evt_1").body(Full::new(Bytes::from("{}"))).unwrap();
/// assert_eq!(svc.call(req()).await.unwrap().status(), 200);
/// let again = svc.call(req()).await.unwrap();
/// assert_eq!(again.status(), 204);
/// assert_eq!(again.headers()["idempotent-replayed"], "true");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Verify<S> {
    inner: S,
    gate: Gate,
}

impl<S> Verify<S> {
    /// Wraps `inner`, checking requests with `gate`.
    pub fn new(inner: S, gate: Gate) -> Self {
        Self { inner, gate }
    }

    /// The check configuration.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Verify<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body,
    ReqBody::Data: Into<Bytes>,
{
    type Response = Response<VerifyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ReqBody, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Take the service that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(req, inner, self.gate.clone())
    }
}
