//! Background jobs for hookwire: typed job definitions, dispatch options, the worker runtime,
//! the [`JobBackend`] trait and the embedded [`MemoryBackend`].
//!
//! Use this crate with [`MemoryBackend`] for tests, demos and single-process apps; add
//! `hookwire-jobs-redis` for durable, multi-process queues (same API, same semantics, checked by
//! the same `conformance` suite when the `conformance` feature is on).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use hookwire_core::Backoff;
//! use hookwire_jobs::{DispatchOptions, Job, JobDef, Jobs, MemoryBackend};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Email { to: String }
//! const SEND_EMAIL: Job<Email> = Job::new("send-email");
//!
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let def = JobDef::typed(SEND_EMAIL, move |e: Email, _meta| {
//!     let tx = tx.clone();
//!     async move { tx.send(e.to).unwrap(); Ok::<_, std::io::Error>(()) }
//! })
//! .retries(3)
//! .backoff(Backoff::exponential(Duration::from_secs(1)))
//! .timeout(Duration::from_secs(30))
//! .concurrency(5)
//! .dead_letter_queue();
//!
//! let jobs = Jobs::builder(MemoryBackend::new()).job(def).start().await.unwrap();
//! let email = Email { to: "ada@example.test".into() };
//! jobs.dispatch_job(SEND_EMAIL, &email, DispatchOptions::new().job_id("welcome-ada")).await.unwrap();
//! assert_eq!(rx.recv().await.unwrap(), "ada@example.test");
//! jobs.shutdown().await;
//! # });
//! ```
//!
//! # Concepts
//! - **Delivery** is at-least-once: a worker holds a *lease* on each job, renewed every third of
//!   its length; a worker that dies leaves the job to the stalled check once the lease expires.
//! - **Counting**: `retries(n)` = retries after the first attempt. Errors wrapping
//!   [`hookwire_core::NonRetryableError`] fail at once; timeouts drop the handler's future and
//!   count as retryable failures.
//! - **Ordering**: lower priority first, FIFO within a priority ([`DEFAULT_PRIORITY`] when none is
//!   given, so urgent work can go before and bulk work after un-prioritized jobs).
//! - **Failure**: after the last attempt a job goes to the dead-letter queue (when enabled) with
//!   data, error, attempts and timestamps; [`Jobs::dead_letters`] lists and [`Jobs::redrive`]
//!   re-queues.
//! - **Stats** per name ([`Jobs::stats`]), also as a token-protected JSON handler
//!   ([`StatsHandler`]); **events** ([`JobEvent`]) via [`JobsBuilder::on_event`] or
//!   [`Jobs::subscribe`].
//! - **Queues** as a whole: [`Jobs::queue`] gives a [`QueueHandle`] to pause and resume a
//!   queue for every worker of every process, drain its backlog and clean old finished jobs.
//! - **Schedules**: [`Schedule`] enqueues a job at every tick of a cron expression (5 or 6
//!   fields) in an explicit time zone, daylight-saving safe, once per tick across runtimes.
//! - [`Jobs`] implements [`hookwire_core::TaskQueue`] for the sender's durable mode.
//!
//! # Features
//! | Name | Description | Default? |
//! | --- | --- | --- |
//! | `conformance` | the backend conformance suite (`hookwire_jobs::conformance`) and its `jobs_conformance!` macro | no |
//!
//! MSRV: Rust 1.88.

mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod def;
mod error;
mod events;
mod memory;
mod model;
mod queue;
mod repeat;
mod runtime;
mod schedule;

pub use backend::JobBackend;
pub use def::{Job, JobDef, JobMeta};
pub use error::{ErrorKind, JobsError};
pub use events::{EventKind, JobEvent, StatsHandler};
pub use memory::MemoryBackend;
pub use model::{
    Ack, Added, ClaimRequest, Claimed, Counts, DEFAULT_PRIORITY, DispatchOptions, JobRecord,
    JobState, LeasedJob, MAX_BULK, MAX_CLAIM, MAX_CLEAN, MAX_ERROR_TEXT, MAX_JOB_ID, MAX_PAYLOAD,
    MAX_PRIORITY, MAX_PROGRESS, MAX_QUEUE_NAME, NewJob, Outcome, RateLimit, Recovered, Retention,
    StoredSchedule, TickOutcome, validate_clean_state, validate_job_id, validate_queue_name,
};
pub use queue::QueueHandle;
pub use repeat::{MIN_REPEAT, Repeat};
pub use runtime::{Defaults, Jobs, JobsBuilder, Progress};
pub use schedule::{MAX_SCHEDULE_ID, Schedule, ScheduleBuilder, ScheduleInfo};
