//! Redis-backed helpers across nodes (feature `redis`): [`SharedPresence`], one presence roster
//! kept in Redis with TTL leases.
//!
//! Patches between nodes travel on the event bus, not here: see
//! [`SseBusFanOut`](crate::SseBusFanOut) (feature `events`).

mod presence;

pub use presence::{DEFAULT_PRESENCE_TTL, SharedPresence};
