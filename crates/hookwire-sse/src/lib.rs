//! Server-Sent Events for live state: version-keyed patch broadcast, state cache, presence,
//! `Last-Event-ID` resume, a browser client, a lean acceptor for large fan-outs and a fan-out
//! across nodes on the event bus.
//!
//! Use this crate to keep many browsers in sync with a server-side state by sending only what
//! changed. Use `hookwire-ws` instead when clients also send messages (rooms, commands).
//!
//! ```
//! use hookwire_sse::{apply_patch_message, BroadcastChannel};
//! use serde_json::json;
//!
//! let ch: BroadcastChannel = BroadcastChannel::new();
//! ch.publish("board", json!({"_v": 0, "todo": ["a"]}), vec![]).unwrap();
//! let mut sub = ch.subscribe("board");
//! ch.publish_diff("board", json!({"_v": 1, "todo": ["a", "b"]})).unwrap();
//!
//! // A client: first the snapshot, then patches applied with the version rules.
//! let snap: serde_json::Value = serde_json::from_slice(sub.try_next().unwrap().json()).unwrap();
//! let msg: serde_json::Value = serde_json::from_slice(sub.try_next().unwrap().json()).unwrap();
//! let state = apply_patch_message(&msg, Some(&snap)).unwrap();
//! assert_eq!(state, json!({"_v": 1, "todo": ["a", "b"]}));
//! ```
//!
//! # Concepts
//! - **Wire format**: a patch message is a JSON object keyed by decimal version (the state
//!   version after that patch), plus the markers `_overlay` and `_resync`. SSE frames carry
//!   `id:` = version and `event: snapshot | patch`.
//! - [`BroadcastChannel`]: per-stream state in an LRU [`StateCache`], per-subscriber bounded
//!   queues (overflow → `_resync`), frames encoded once and shared, a resume history.
//! - [`apply_patch_message`]: the client rules (genesis, overlays, `_resync`, gaps → Behind).
//! - [`PresenceTracker`]: ref-counted presence, published as overlays.
//! - [`EventBroadcast`]: application events with pattern filters (`order.*`).
//! - [`http`]: the SSE response body for hyper/axum, resume parsing, the browser client.
//! - [`lean`]: an opt-in acceptor costing ~2 KiB per idle subscriber.
//! - [`server`]: the accept loop's configuration ([`server::ServerConfig`], from
//!   hookwire-server): header-read and idle timeout, body timeout, connection cap, graceful
//!   shutdown.
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `axum` | axum handlers and a router for `/state`, `/events` and the client script | no |
//! | `redis` | `redis::SharedPresence`: one presence roster across nodes (TTL leases in Redis) | no |
//! | `events` | `SseBusFanOut`: publish on any node, deliver on every node in version order, on the `hookwire-events` bus (implies `redis`) | no |
//!
//! MSRV: the workspace's `rust-version`.
//!
//! ---
//!
#![doc = include_str!("../../../docs/hookwire-sse.md")]

mod apply;
mod cache;
mod channel;
mod error;
mod events;
mod frame;
mod log;
mod presence;
mod queue;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "events")]
mod bus;
pub mod http;
pub mod lean;
#[cfg(feature = "redis")]
pub mod redis;
pub mod server;

pub use apply::{ApplyError, apply_patch_message, state_version};
#[cfg(feature = "events")]
pub use bus::{DEFAULT_CATCH_UP, DEFAULT_SSE_FAN_OUT_EVENT, SseBusFanOut, SseBusFanOutBuilder};
pub use cache::{DEFAULT_CACHE_SIZE, StateCache};
pub use channel::{
    BroadcastChannel, BroadcastState, ChannelConfig, ChannelStats, DEFAULT_HISTORY_BYTES,
    DEFAULT_HISTORY_FRAMES, PublishError,
};
pub use error::{Error, ErrorKind, Result};
pub use events::{EventBroadcast, EventFilter, MAX_FILTER_PATTERNS};
pub use frame::{Frame, FrameKind};
pub use presence::{DEFAULT_MAX_PRESENCE_PER_STREAM, PresenceTracker};
pub use queue::{DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_FRAMES, QueueLimits, StreamSubscription};

/// Locks a mutex, recovering from poisoning: every critical section here leaves its data
/// consistent before any call that could panic, so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
