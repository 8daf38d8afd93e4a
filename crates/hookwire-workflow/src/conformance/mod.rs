//! The run-store conformance suite: one `pub async fn` per behaviour of the engine over a store,
//! expanded per store with [`workflow_conformance!`](crate::workflow_conformance), so the memory
//! store and any other store (Redis) are held to the same semantics.
//!
//! Every case takes a fresh shared store, builds its own engines over it (a short 300 ms job
//! lease, so crash recovery fits in a test), panics on a violation and finishes in a few seconds.
//! The `unwrap`/`expect` calls are the suite's assertions; this module only exists behind the
//! `conformance` feature, for tests.
//!
//! The cases are grouped by concept: `lifecycle`, `signals`, `control` (cancel, pause, rewind),
//! `recovery` (crash takeover, memo), `limits` and `observe` (listing, transitions); this module
//! holds the expansion macro and the helpers they share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwire_jobs::{JobBackend, MemoryBackend};
use serde_json::Value;

use crate::{BoxError, Engine, Limits, Next, Run, RunStore, Scope, Step, Workflow};

mod control;
mod lifecycle;
mod limits;
mod observe;
mod recovery;
mod signals;

pub use control::{
    cancel_retires_waits_and_timers, pause_starts_no_new_step,
    rewind_is_fenced_and_continues_by_itself,
};
pub use lifecycle::{
    a_step_missing_in_the_new_version_stops_the_run, branching_goes_to_the_named_step,
    retry_then_success_and_exhausted_retries_fail_the_run, sleep_is_durable_and_never_early,
    start_runs_steps_in_order_and_is_idempotent,
};
pub use limits::limits_fail_the_step_that_exceeds_them;
pub use observe::{list_is_paged_and_scoped_by_organization, transitions_carry_a_per_run_sequence};
pub use recovery::{
    crash_is_taken_over_and_the_zombie_commit_is_refused, memo_runs_once_per_generation,
};
pub use signals::{
    duplicate_resume_key_advances_once, signal_before_wait_is_kept,
    wait_resumes_with_the_payload_or_the_timeout,
};

/// A shared store handle as the suite takes it.
pub type Store = Arc<dyn RunStore>;

/// Expands one `#[tokio::test]` per conformance case. `$make` is an async expression yielding
/// `(Arc<dyn RunStore>, guard)`; the guard (e.g. a Redis server) lives until the case ends.
///
/// ```text
/// hookwire_workflow::workflow_conformance!(async {
///     (std::sync::Arc::new(hookwire_workflow::MemoryRunStore::new()) as hookwire_workflow::conformance::Store, ())
/// });
/// ```
#[macro_export]
macro_rules! workflow_conformance {
    ($make:expr) => {
        $crate::workflow_conformance!(@cases $make;
            start_runs_steps_in_order_and_is_idempotent, branching_goes_to_the_named_step,
            retry_then_success_and_exhausted_retries_fail_the_run, sleep_is_durable_and_never_early,
            wait_resumes_with_the_payload_or_the_timeout, signal_before_wait_is_kept,
            duplicate_resume_key_advances_once, cancel_retires_waits_and_timers,
            pause_starts_no_new_step, rewind_is_fenced_and_continues_by_itself,
            crash_is_taken_over_and_the_zombie_commit_is_refused,
            limits_fail_the_step_that_exceeds_them, memo_runs_once_per_generation,
            a_step_missing_in_the_new_version_stops_the_run,
            list_is_paged_and_scoped_by_organization, transitions_carry_a_per_run_sequence
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

const LIMIT: Duration = Duration::from_secs(10);

/// An engine over `store` with a fresh in-memory job backend and a 300 ms lease.
pub async fn engine(store: &Store, wfs: Vec<Workflow>) -> Engine {
    engine_with(
        store,
        wfs,
        Arc::new(MemoryBackend::new()),
        true,
        Limits::default(),
    )
    .await
}

async fn engine_with(
    store: &Store,
    wfs: Vec<Workflow>,
    backend: Arc<dyn JobBackend>,
    workers: bool,
    limits: Limits,
) -> Engine {
    let mut b = Engine::builder()
        .store_shared(store.clone())
        .jobs_backend(backend)
        .lease(Duration::from_millis(300))
        .limits(limits)
        .workers(workers);
    for wf in wfs {
        b = b.workflow(wf);
    }
    b.build().await.expect("engine builds")
}

/// Polls the run every 10 ms until `cond` holds or `limit` passes; panics with `what`.
pub async fn until(
    engine: &Engine,
    run: &str,
    limit: Duration,
    what: &str,
    cond: impl Fn(&Run) -> bool,
) -> Run {
    let start = Instant::now();
    loop {
        let r = engine.get(&Scope::All, run).await.expect("get");
        if cond(&r) {
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for: {what}; run is {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn finished(engine: &Engine, run: &str) -> Run {
    until(engine, run, LIMIT, "a terminal status", |r| {
        r.status.is_terminal()
    })
    .await
}

fn add(name: &str, n: i64) -> Step {
    Step::new(name, move |v: i64, _| async move {
        Ok::<_, BoxError>(Next::output(v + n))
    })
}

fn pass(name: &str) -> Step {
    Step::new(name, |v: Value, _| async move {
        Ok::<_, BoxError>(Next::output(v))
    })
}

fn active(r: &Run) -> Vec<&str> {
    r.steps
        .iter()
        .filter(|s| !s.superseded)
        .map(|s| s.step.as_str())
        .collect()
}
