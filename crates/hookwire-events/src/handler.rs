//! What a subscription runs: a [`Handler`], any `Fn(Event) -> impl Future<Output = Result<..>>`.

use std::future::Future;

use hookwire_core::{BoxFuture, Event};

/// The error a handler returns. Wrap it in [`NonRetryable`](crate::NonRetryable) to send the
/// event to the dead letters at once instead of retrying it.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An event handler. Implemented for every `Fn(Event) -> Fut` where `Fut` resolves to
/// `Result<(), E>` and `E` converts into a [`HandlerError`].
///
/// ```
/// use hookwire_events::{Handler, HandlerError};
/// fn assert_handler(_: impl Handler) {}
/// assert_handler(|e: hookwire_core::Event| async move {
///     println!("{}", e.name);
///     Ok::<_, HandlerError>(())
/// });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one event. Returning `Err` asks for a redelivery (after the bus's backoff) unless
    /// the error is non-retryable.
    fn handle(&self, event: Event) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<HandlerError>,
{
    fn handle(&self, event: Event) -> BoxFuture<'static, Result<(), HandlerError>> {
        let fut = (self)(event);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
