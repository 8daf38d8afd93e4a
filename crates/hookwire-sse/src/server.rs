//! The accept loop behind [`crate::http::serve`], [`crate::http::serve_fn_with`] and the
//! [`crate::lean`] acceptor is hookwire-server's; its configuration and request body are
//! re-exported here so an SSE server needs no other dependency. See [`ServerConfig`] for every
//! limit (header-read and idle timeout, body timeout, connection cap, shutdown grace).

pub use hookwire_server::{
    BodyTimeout, Continuation, RequestBody, ServerConfig, ServerConfigBuilder,
};
