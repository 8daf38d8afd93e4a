//! A run's document and its state machine. Every transition is a pure function over the
//! document; the engine applies it with one compare-and-set write, so a transition is all or
//! nothing and user code is never replayed.
//!
//! The public view types live in `view`, the limits in `limits`, the stored document and its
//! bookkeeping in `state`, the step lifecycle (enter, schedule, attempts, timers) in
//! `transitions` and the operator operations (signal, cancel, pause, rewind) in `operations`.

mod limits;
mod operations;
mod state;
mod transitions;
mod view;

pub use limits::Limits;
pub use state::JOURNAL_LEN;
pub(crate) use state::{Begin, Env, RunState, Task, TaskKind, Transition};
pub use view::{Run, RunStatus, Signalled, StepRecord, StepStatus};
