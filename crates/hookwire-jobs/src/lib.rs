//! Background jobs for hookwire. The front page below is the crate guide, `docs/hookwire-jobs.md`,
//! so its examples compile and run as doctests.
#![doc = include_str!("../../../docs/hookwire-jobs.md")]

mod backend;
mod builder;
#[cfg(feature = "events")]
mod bus;
mod coalesce;
#[cfg(feature = "conformance")]
pub mod conformance;
mod def;
mod error;
mod events;
mod memory;
mod model;
mod progress;
mod queue;
mod repeat;
mod runtime;
mod schedule;
mod worker;

pub use backend::{JobAdmin, JobBackend, WorkerBackend};
pub use builder::{Defaults, JobsBuilder};
#[cfg(feature = "events")]
pub use bus::BUS_QUEUE_CAPACITY;
pub use def::{Job, JobDef, JobMeta, MIN_LEASE};
#[allow(deprecated)]
pub use error::JobsError;
pub use error::{Error, ErrorKind, Result};
pub use events::{EventKind, JobEvent, StatsHandler};
pub use memory::MemoryBackend;
pub use model::{
    Ack, Added, ClaimRequest, Claimed, Counts, DEFAULT_PRIORITY, DispatchOptions, JobOutcome,
    JobRecord, JobState, LeasedJob, MAX_BULK, MAX_CLAIM, MAX_CLEAN, MAX_ERROR_TEXT, MAX_JOB_ID,
    MAX_PAYLOAD, MAX_PRIORITY, MAX_PROGRESS, MAX_QUEUE_NAME, NewJob, QueueRateLimit, Recovered,
    Retention, StoredSchedule, TickOutcome, validate_clean_state, validate_job_id,
    validate_queue_name,
};
pub use progress::Progress;
pub use queue::QueueHandle;
pub use repeat::{MIN_REPEAT, Repeat};
pub use runtime::Jobs;
pub use schedule::{MAX_SCHEDULE_ID, Schedule, ScheduleBuilder, ScheduleInfo};
