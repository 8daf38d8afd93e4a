//! [`VerifyLayer`]: applies [`Verify`] to a service.

use tower_layer::Layer;

use super::Verify;
use crate::Gate;

/// Wraps services in [`Verify`]; works with axum's `Router::layer` and any tower stack.
///
/// ```
/// use hookwire_receiver::{Gate, VerifyLayer};
/// let layer = VerifyLayer::new(Gate::new().secret("s3cret"));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    gate: Gate,
}

impl VerifyLayer {
    /// A layer checking requests with `gate`.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Verify::new(inner, self.gate.clone())
    }
}
