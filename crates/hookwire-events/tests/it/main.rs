//! Integration tests of hookwire-events: the memory transport in process, Redis Streams and Redis
//! pub/sub on a real `redis-server` per test, and the outbox over real stores (PostgreSQL started
//! per test process, SQLite files in temporary directories).

#[cfg(feature = "cluster")]
mod cluster;
mod memory;
mod order;
mod outbox;
mod pubsub;
mod streams;
mod support;
