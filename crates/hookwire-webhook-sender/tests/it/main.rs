//! End-to-end tests of the sender over real sockets on 127.0.0.1.

#[cfg(all(feature = "events", feature = "redis"))]
mod bus;
mod dispatcher;
mod h1;
mod spans;
mod support;
mod tls;
mod webhook;
