//! The event spine of hookwire: a [`Bus`]-shaped publish/subscribe API over pluggable transports,
//! and a transactional outbox for services whose state lives in SQL.
//!
//! See `docs/hookwire-events.md` for the contract (delivery modes, retries, dead letters, order,
//! limits) and a worked example.

mod error;
pub mod outbox;

pub use error::{Error, ErrorKind, Result};
