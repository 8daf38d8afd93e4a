//! The engine handle: definitions, the run store, the job runtime that runs step attempts, and
//! every operation on runs (start, get, list, signal, cancel, pause, rewind, wait).
//!
//! `builder` checks the configuration and starts the workers, `inner` holds the shared state,
//! the compare-and-set transaction and the dispatch of task jobs, `operations` is the caller's
//! API on runs and `types` the values it takes and returns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod builder;
mod inner;
mod operations;
mod types;

pub use builder::EngineBuilder;
pub(crate) use inner::{Inner, decode};
pub use types::{RunPage, Scope, StartOptions, Started};

/// Most runs one [`Engine::list`] page returns.
pub const MAX_PAGE: usize = 100;
/// Longest [`Engine::wait_for`] long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// Longest idempotency or resume key, in bytes.
pub const MAX_KEY: usize = 256;

/// The workflow engine: registered definitions, a run store and the workers that run step
/// attempts as jobs. Clones share the engine; call [`Engine::shutdown`] to stop the workers (and
/// wait for them); dropping the last handle stops them in the background.
///
/// Cancel safety: every operation is one durable transition (or none); dropping its future may
/// or may not have applied it, and repeating it is safe (resume keys and idempotency keys make
/// signals and starts idempotent).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("workflows", &self.inner.ids)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}
