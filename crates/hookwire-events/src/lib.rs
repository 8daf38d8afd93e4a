//! The event spine of hookwire: a [`Bus`]-shaped publish/subscribe API over pluggable transports,
//! and a transactional outbox for services whose state lives in SQL.
//!
//! See `docs/hookwire-events.md` for the contract (delivery modes, retries, dead letters, order,
//! limits) and a worked example.
#![doc = include_str!("../../../docs/hookwire-events.md")]

mod error;
pub mod outbox;

pub use error::{Error, ErrorKind, Result};

mod bus;
mod context;
mod dead;
mod handler;
mod inbox;
mod redis;
mod registry;
mod runner;
mod transport;

pub use bus::{
    Bus, BusBuilder, BusSubscription, DEFAULT_HANDLER_CONCURRENCY, DEFAULT_HANDLER_TIMEOUT,
    DEFAULT_MAX_BATCH, DEFAULT_MAX_DELIVERIES, DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_IN_FLIGHT,
    DeadLetters, Group, MAX_EVENT_BYTES_LIMIT, MAX_NAME_LEN,
};
pub use context::{current_correlation_id, with_correlation};
pub use dead::{DeadLetter, Failure};
pub use handler::{Handler, HandlerError};
pub use hookwire_core::NonRetryableError as NonRetryable;
pub use hookwire_core::{Event, EventMeta};
pub use inbox::Inbox;
pub use redis::{RedisPubSub, RedisStreams};
pub use registry::{Registry, ValidateMode};
pub use transport::Transport;
pub use transport::memory::MemoryTransport;
