#![doc = include_str!("../../../docs/hookwire-server.md")]

mod body;
mod config;
mod serve;

pub use body::{BodyTimeout, RequestBody};
pub use config::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_HEAD_BYTES,
    DEFAULT_SHUTDOWN_GRACE, Error, FALLBACK_MAX_CONNECTIONS, FD_RESERVE, MAX_CONNECTIONS,
    MIN_HEAD_BYTES, Result, ServerConfig, ServerConfigBuilder, default_max_connections,
};
pub use serve::{Continuation, Server};
