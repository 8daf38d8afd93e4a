//! The backend conformance suite: one `pub async fn` per behaviour, expanded per backend with
//! [`jobs_conformance!`](crate::jobs_conformance) so the memory and Redis backends cannot drift.
//!
//! Every case takes a fresh backend and uses its own random queue names, panics on a violation,
//! and finishes in a few seconds at most. The `unwrap`/`expect` calls here are the suite's
//! assertions (a backend error is a conformance failure); this module only exists behind the
//! `conformance` feature, for tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwire_core::{Backoff, NonRetryableError, QueuedTask, TaskQueue};

use crate::{
    Ack, ClaimRequest, Defaults, DispatchOptions, ErrorKind, EventKind, JobBackend, JobDef,
    JobMeta, JobOutcome, JobState, Jobs, MAX_PAYLOAD, NewJob, Repeat, Retention, Schedule,
};

/// A shared backend handle as the suite takes it.
pub type Backend = Arc<dyn JobBackend>;

/// Expands one `#[tokio::test]` per conformance case. `$make` is an async expression yielding
/// `(Arc<dyn JobBackend>, guard)`; the guard (e.g. a Redis server) lives until the case ends.
///
/// ```text
/// hookwire_jobs::jobs_conformance!(async {
///     (std::sync::Arc::new(hookwire_jobs::MemoryBackend::new()) as hookwire_jobs::conformance::Backend, ())
/// });
/// ```
#[macro_export]
macro_rules! jobs_conformance {
    ($make:expr) => {
        $crate::jobs_conformance!(@cases $make;
            dispatch_and_complete_once, priorities_lower_first_fifo_within, delays_hold_jobs_back,
            returning_jobs_go_ahead_of_later_arrivals,
            job_id_deduplicates, retries_with_backoff_then_success, retries_exhausted_fail,
            non_retryable_fails_at_once, timeout_drops_the_future, dead_letter_contents_and_redrive,
            rate_limit_is_global_and_accurate, retention_options, stalled_jobs_are_recovered,
            stale_worker_acks_are_refused, lease_renewal_keeps_long_jobs_single,
            concurrency_is_bounded, events_completed_and_failed, shutdown_releases_active_jobs,
            raw_json_and_bad_input, many_due_at_once, no_duplicates_under_load,
            task_queue_deduplicates, counts_per_state, panicking_handler_is_retried,
            stats_handler_requires_the_token, progress_is_stored_and_emitted,
            repeat_runs_each_slot_once, stall_limit_failure_emits_failed_event,
            pause_holds_for_every_worker_until_resumed,
            drain_deletes_waiting_and_optionally_delayed_jobs,
            clean_deletes_old_finished_jobs_by_state, custom_dead_letter_queue_name,
            stalled_event_is_emitted_once_per_recovery,
            schedule_enqueues_each_tick_once_across_runtimes, schedules_are_listed_and_removed
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (backend, _guard) = $make.await;
                $crate::conformance::$case(backend).await;
            }
        )*
    };
}

mod admin;
#[cfg(feature = "events")]
mod bus;
mod delivery;
mod failure;
mod lease;
mod schedule;

pub use admin::{
    clean_deletes_old_finished_jobs_by_state, counts_per_state,
    drain_deletes_waiting_and_optionally_delayed_jobs, events_completed_and_failed,
    pause_holds_for_every_worker_until_resumed, progress_is_stored_and_emitted, retention_options,
    stats_handler_requires_the_token,
};
#[cfg(feature = "events")]
pub use bus::lifecycle_events_reach_the_bus;
pub use delivery::{
    concurrency_is_bounded, delays_hold_jobs_back, dispatch_and_complete_once, job_id_deduplicates,
    many_due_at_once, no_duplicates_under_load, priorities_lower_first_fifo_within,
    rate_limit_is_global_and_accurate, raw_json_and_bad_input,
    returning_jobs_go_ahead_of_later_arrivals, task_queue_deduplicates,
};
pub use failure::{
    custom_dead_letter_queue_name, dead_letter_contents_and_redrive, non_retryable_fails_at_once,
    panicking_handler_is_retried, retries_exhausted_fail, retries_with_backoff_then_success,
    timeout_drops_the_future,
};
pub use lease::{
    lease_renewal_keeps_long_jobs_single, shutdown_releases_active_jobs,
    stale_worker_acks_are_refused, stall_limit_failure_emits_failed_event,
    stalled_event_is_emitted_once_per_recovery, stalled_jobs_are_recovered,
};
pub use schedule::{
    repeat_runs_each_slot_once, schedule_enqueues_each_tick_once_across_runtimes,
    schedules_are_listed_and_removed,
};

fn queue() -> String {
    format!("cf-{}", hookwire_core::id::random_u64() % 1_000_000_000)
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; panics with `what` on timeout.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts executions per job id.
#[derive(Debug, Clone, Default)]
pub struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    /// Records one run of `id`; returns the run number (1-based).
    pub fn hit(&self, id: &str) -> usize {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(id.to_owned()).or_default();
        *n += 1;
        *n
    }
    /// Distinct ids run.
    pub fn distinct(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
    /// Runs beyond the first, over all ids: the duplicate-execution counter.
    pub fn duplicates(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|n| n - 1)
            .sum()
    }
}

fn quick_defaults() -> Defaults {
    Defaults {
        backoff: None,
        remove_on_complete: Retention::Keep,
        remove_on_fail: Retention::Keep,
        lease: Duration::from_millis(500),
        shutdown_grace: Duration::from_millis(200),
        ..Defaults::default()
    }
}

async fn start(b: &Backend, def: JobDef) -> Jobs {
    Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(def)
        .start()
        .await
        .expect("start")
}

fn counting(q: &str, runs: &Runs) -> JobDef {
    let runs = runs.clone();
    JobDef::new(q, move |_: serde_json::Value, m: JobMeta| {
        runs.hit(&m.id);
        async move { Ok::<_, std::io::Error>(()) }
    })
}

async fn state(b: &Backend, q: &str, id: &str) -> Option<JobState> {
    b.get(q, id).await.expect("get").map(|r| r.state)
}
