//! The hookwire job backend on Redis: every state transition is one Lua script, workers block on
//! Redis instead of polling, leases reject stale workers, and all keys of a queue share the hash
//! tag `{queue}` so the backend runs unchanged on Redis Cluster.
//!
//! Use it with [`hookwire_jobs::Jobs`] when jobs must survive restarts or be shared by several
//! processes; use [`hookwire_jobs::MemoryBackend`] for tests and single-process apps. Both pass
//! the same conformance suite.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hookwire_jobs::JobsError> {
//! use std::time::Duration;
//! use hookwire_jobs::{DispatchOptions, JobDef, Jobs};
//! use hookwire_jobs_redis::RedisBackend;
//!
//! let backend = RedisBackend::connect("redis://127.0.0.1:6379/").await?;
//! let resize = JobDef::new("resize-image", |url: String, _meta| async move {
//!     Ok::<_, std::io::Error>(format!("resized {url}"))
//! })
//! .concurrency(8)
//! .retries(5)
//! .rate_limit(100, Duration::from_secs(1))
//! .dead_letter_queue();
//! let jobs = Jobs::builder(backend).job(resize).start().await?;
//! jobs.dispatch("resize-image", &"https://img.test/1.png", DispatchOptions::new()).await?;
//! jobs.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Concepts
//! - **Layout** (`hw:{queue}:…`): `wait` (sorted by priority, then sequence), `delayed` (by due
//!   time), `active` (by lease deadline) with `lease` (job → worker token), job fields in a few
//!   hashes (`data`, `meta`, `att`, `err`, `res`, …) so one script call claims or acknowledges
//!   a whole batch with a constant number of commands.
//! - **Transitions**: add, claim (acks + delayed promotion + rate limit + claim in one script),
//!   renew, progress, recover stalled, re-drive — each one `EVALSHA`, reloaded on `NOSCRIPT`. Time comes
//!   from the server's `TIME`, so worker clocks do not matter.
//! - **Blocking fetch**: idle workers `BLPOP` the queue's `mark` list, pushed by every
//!   transition that leaves runnable work (and handed on by each claim while work is left).
//! - **Raw protocol for other languages**: producers in other languages may call `add.lua`
//!   with the same keys and arguments (see the script header).
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `cluster` | `RedisBackend::connect_cluster` over `redis`'s async cluster client | no |
//!
//! MSRV: Rust 1.88.

mod backend;
#[cfg(feature = "cluster")]
mod cluster;
mod keys;
mod scripts;
mod value;

pub use backend::RedisBackend;

/// The guide's examples (`docs/hookwire-jobs.md`), compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/hookwire-jobs.md")]
struct Guide;
