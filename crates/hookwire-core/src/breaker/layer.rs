//! The breaker as a tower layer: an `Err` from the inner service is a failure.

use super::{CallError, CircuitBreaker};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Wraps a service in a [`CircuitBreaker`]. Only `Err` from the inner service counts as a
/// failure; map failing responses (say HTTP 5xx) to `Err` in the inner service if they
/// should open the breaker.
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: CircuitBreaker,
}

impl BreakerLayer {
    /// A layer sharing `breaker` across every service it wraps.
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self { breaker }
    }
}

impl<S> tower_layer::Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// The service made by [`BreakerLayer`]; refused requests fail with `CallError::Open`
/// without reaching the inner service.
#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S> BreakerService<S> {
    /// The breaker guarding this service.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, R> tower_service::Service<R> for BreakerService<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = CallError<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(CallError::Inner)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.breaker.try_acquire() {
            Err(open) => Box::pin(std::future::ready(Err(CallError::Open(open)))),
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move { permit.settle(fut.await) })
            }
        }
    }
}
