//! Integration tests for hookwire-sse: reference behaviour, properties, HTTP end-to-end.
#![allow(
    clippy::print_stdout,
    reason = "tests print measured figures for the record"
)]

mod browser;
#[cfg(feature = "events")]
mod bus;
mod channel;
mod http;
mod limits;
mod props;
#[cfg(feature = "redis")]
mod redis;
mod support;
