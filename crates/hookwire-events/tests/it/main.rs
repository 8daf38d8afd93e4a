//! Integration tests of the event bus: the memory transport in process, Redis Streams and Redis
//! pub/sub on a real `redis-server` per test.

#[cfg(feature = "cluster")]
mod cluster;
mod memory;
mod pubsub;
mod streams;
mod support;
