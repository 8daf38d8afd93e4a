#![doc = include_str!("../../../docs/hookwire-workflow.md")]

mod def;
mod engine;
mod error;
mod exec;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "axum")]
mod routes;
mod run;
mod sink;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use def::{
    MAX_DEFINED_STEPS, MAX_NAME, MAX_WORKFLOW_ID, Next, Resumed, Step, Wait, Workflow,
    WorkflowBuilder, WorkflowInfo, validate_name, validate_workflow_id,
};
pub use engine::{
    Engine, EngineBuilder, MAX_KEY, MAX_PAGE, MAX_WAIT, RunPage, Scope, StartOptions, Started,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use exec::{MAX_MEMO_KEY, StepCtx};
#[cfg(feature = "redis")]
pub use redis_store::RedisRunStore;
#[cfg(feature = "axum")]
pub use routes::{Caller, Operation, Policy, RouteAuthenticator, Routes, RoutesBuilder};
pub use run::{JOURNAL_LEN, Limits, Run, RunStatus, Signalled, StepRecord, StepStatus};
pub use sink::{DEFAULT_SINK_CAPACITY, MemorySink, TransitionSink};
pub use store::{
    DEFAULT_MEMORY_RUNS, Inserted, MemoryRunStore, Replaced, RunDoc, RunQuery, RunStore,
};
