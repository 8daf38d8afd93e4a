//! Inbound webhooks that lose nothing: verification with every major scheme, two-phase
//! idempotency (claim → commit | release), a typed receiver, and stores.
//!
//! - **Primitives**: [`extract_idempotency_key`], [`check`] (empty body → 400 `empty-body`,
//!   verification → 401 `<reason>`, a key over [`MAX_KEY_LEN`] → 400 `key-too-long`, no key →
//!   400 `missing-key`, then the claim), and
//!   [`read_limited`] (a body limit enforced while reading).
//! - **Two-phase idempotency**: [`check`] returns a [`ClaimGuard`]; commit it after success,
//!   release it after failure (dropping it releases), so a failed delivery's retry is processed.
//!   A duplicate while the first is in flight gets **409** with `Retry-After`; a duplicate of a
//!   done key gets a 2xx with `Idempotent-Replayed: true`.
//! - **Stores**: [`hookwire_core::MemoryStore`] in process, [`RedisStore`] (feature `redis`)
//!   shared by every node.
//! - **Typed receiver**: [`receiver()`] `.on::<T>("OrderConfirmed", handler)` → a
//!   `tower::Service` and a server with graceful shutdown.
//! - **Adapters**: `hookwire-receiver-axum`, `-actix` and `-warp` use [`Gate`] so their failure
//!   responses ([`Rejection`]) are identical.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use hookwire_receiver::{receiver, Context};
//!
//! #[derive(serde::Deserialize)]
//! struct OrderConfirmed { order_id: String }
//!
//! let server = receiver()
//!     .secret("s3cret")
//!     .on("OrderConfirmed", |e: OrderConfirmed, ctx: Context| async move {
//!         println!("order {} (key {:?})", e.order_id, ctx.key);
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .build()
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .await?;
//! println!("POST http://{}/OrderConfirmed", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Limits
//! Body 1 MiB by default ([`Gate::max_body`]; 413 as soon as it is exceeded, never buffered
//! past the limit); request head 64 KiB (431 above it); signature headers 4 KiB with at most 16 entries
//! (`hookwire-core`); a timestamp window of ±300 s.
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `redis` | [`RedisStore`] | no |

mod body;
mod check;
mod guard;
mod receiver;
mod rejection;
mod replay;
pub mod server;

#[cfg(feature = "redis")]
mod redis_store;

pub use body::{DEFAULT_MAX_BODY, LimitedBody, read_limited};
pub use check::{CheckOptions, Checked, Gate, MAX_KEY_LEN, check, extract_idempotency_key};
pub use guard::{ClaimGuard, Finalized};
pub use hookwire_core::{IdempotencyConfig, IdempotencyStore, MemoryStore};
pub use receiver::{Context, Receiver, ReceiverBuilder, receiver};
pub use rejection::{REPLAYED_HEADER, Rejection};
pub use replay::{
    DEFAULT_REPLAY_ENTRIES, DEFAULT_UNTIMED_REPLAY_HORIZON, Fingerprint, ReplayCache,
};
pub use server::Server;

#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
