//! The ground every hookwire crate stands on: the [`Event`] envelope, HTTP error classification,
//! [`Backoff`] and [`RetryPolicy`], event [`Pattern`]s, the two-phase [`IdempotencyStore`] with a
//! bounded [`MemoryStore`], and the six webhook [`signing`] schemes.
//!
//! Use this crate directly when you integrate one piece by hand (verify a webhook in your own
//! handler, classify an HTTP response from your own client); the sender, receiver, SSE, WebSocket
//! and jobs crates build on it and re-export what their users need. It has no runtime, no HTTP
//! client or server and no Redis: features stay in the crates that need them.
//!
//! # Example: verify a GitHub webhook
//!
//! ```
//! use hookwire_core::signing::{verify, Scheme, VerifyOptions};
//! use hookwire_core::KeyRing;
//!
//! let headers = [(
//!     "X-Hub-Signature-256",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
//! )];
//! let keys = KeyRing::from("It's a Secret to Everybody");
//! let ok = verify(&headers, b"Hello, World!", &keys, &VerifyOptions::default()).unwrap();
//! assert_eq!(ok.scheme, Scheme::Github);
//! ```
//!
//! # Concepts
//! - **Signatures** ([`signing`]): `sign` returns headers; `verify` checks headers against a
//!   [`KeyRing`] with a replay window and returns a [`signing::VerifyError`] whose reason string
//!   is a wire contract.
//! - **Classification** ([`classify_http_status`], [`HttpError`]): 2xx ok; 408/425/429/5xx and
//!   network failures retry; other statuses block.
//! - **Retries** ([`RetryPolicy`]): `max_retries` counts retries after the first attempt; the
//!   policy's envelope sizes idempotency TTLs ([`IdempotencyConfig::for_retry_profile`]).
//! - **Patterns** ([`Pattern`], [`PatternSet`]): `order.created`, `order.*`, `*`.
//! - **Scopes** ([`scope::Scopes`], [`scope::ScopeRules`]): which rooms and event patterns need
//!   which scope, shared by the WebSocket and SSE gateways.
//! - **Idempotency** ([`IdempotencyStore`]): claim → commit | release, with fencing tokens.
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `http` | [`signing::HeaderSource`] for `http::HeaderMap` | no |
//! | `ed25519` | Standard Webhooks `v1a` signatures (`whsk_`/`whpk_` keys) | no |
//! | `tower` | `breaker::BreakerLayer`, the circuit breaker as a tower layer | no |
//!
//! MSRV: Rust 1.88.

pub mod backoff;
pub mod breaker;
pub mod error;
pub mod event;
pub mod id;
pub mod idempotency;
pub mod pattern;
pub mod queue;
pub mod scope;
pub mod signing;
pub mod time;

/// Compiles every Rust block of the crate guide, so its examples cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/hookwire-core.md")]
pub struct GuideDoctests;

pub use backoff::{Backoff, Jitter, RetryPolicy};
pub use breaker::{BreakerRegistry, CircuitBreaker};
pub use error::{
    Disposition, HttpError, NonRetryableError, NonRetryableHttpError, RetryableHttpError,
    classify_http_status, try_ok,
};
pub use event::{EnvelopeError, Event, EventMeta};
pub use idempotency::{
    BoxFuture, Claim, FencingToken, IdempotencyConfig, IdempotencyStore, MemoryStore, StoreError,
};
pub use pattern::{Pattern, PatternError, PatternSet};
pub use queue::{QueueError, QueuedTask, TaskQueue};
pub use signing::{KeyRing, Scheme, Secret};
