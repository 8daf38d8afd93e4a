//! The middleware: the receiver's own tower layer, which axum's `Router::layer` takes as is.

/// The tower layer that verifies and de-duplicates every request of the router it wraps
/// (`hookwire_receiver::VerifyLayer`; the name is the one every hookwire adapter uses).
pub type HookwireLayer = hookwire_receiver::VerifyLayer;
