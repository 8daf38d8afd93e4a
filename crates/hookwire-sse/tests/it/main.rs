//! Integration tests for hookwire-sse: reference behaviour, properties, HTTP end-to-end.

mod channel;
mod props;
