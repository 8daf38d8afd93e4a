//! hookwire-ws end to end: real tokio-tungstenite clients against the axum integration on
//! 127.0.0.1.

#![allow(clippy::unwrap_used, missing_docs, unreachable_pub, reason = "tests")]

mod support;

#[cfg(feature = "sse")]
mod gateway;
#[cfg(feature = "sse")]
mod gateway_scopes;
mod limits;
#[cfg(feature = "events")]
mod nodes;
mod props;
mod protocol;
mod rooms;
mod scopes;
mod tenants;
