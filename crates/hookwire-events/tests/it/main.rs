//! Integration tests of the event bus: the memory transport in process, Redis Streams and Redis
//! pub/sub on a real `redis-server` per test.

mod memory;
mod pubsub;
mod streams;
mod support;
