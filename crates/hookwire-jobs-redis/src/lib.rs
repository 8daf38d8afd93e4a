//! The hookwire job backend on Redis. The front page below is the crate guide,
//! `docs/hookwire-jobs-redis.md`, so its examples compile as doctests.
#![doc = include_str!("../../../docs/hookwire-jobs-redis.md")]

mod backend;
#[cfg(feature = "cluster")]
mod cluster;
mod keys;
mod scripts;
mod value;

pub use backend::{MARKER_CHECK, RedisBackend};
