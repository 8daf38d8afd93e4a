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
    JobMeta, JobState, Jobs, MAX_PAYLOAD, NewJob, Outcome, Repeat, Retention, Schedule,
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

/// Every dispatched job completes exactly once and is counted as completed.
pub async fn dispatch_and_complete_once(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let jobs = start(&b, counting(&q, &runs).concurrency(8)).await;
    for i in 0..200 {
        jobs.dispatch(&q, &i, DispatchOptions::new())
            .await
            .expect("dispatch");
    }
    eventually(Duration::from_secs(10), "200 completed", || async {
        b.counts(&q).await.expect("counts").completed == 200
    })
    .await;
    assert_eq!(runs.distinct(), 200);
    assert_eq!(runs.duplicates(), 0, "duplicate executions");
    let c = b.counts(&q).await.expect("counts");
    assert_eq!((c.waiting, c.active, c.failed), (0, 0, 0));
    jobs.shutdown().await;
}

/// Lower priority numbers are claimed first; equal priorities are FIFO; un-prioritized jobs
/// take [`crate::DEFAULT_PRIORITY`].
pub async fn priorities_lower_first_fifo_within(b: Backend) {
    let q = queue();
    let spec: [(&str, Option<u32>); 7] = [
        ("a", Some(5)),
        ("b", Some(1)),
        ("none1", None),
        ("c", Some(5)),
        ("d", Some(1)),
        ("late", Some(2000)),
        ("none2", None),
    ];
    let jobs: Vec<NewJob> = spec
        .iter()
        .map(|(id, p)| {
            let mut o = DispatchOptions::new().job_id(format!("j-{id}"));
            if let Some(p) = p {
                o = o.priority(*p);
            }
            NewJob::new("{}").with_options(&o)
        })
        .collect();
    b.add(&q, jobs).await.expect("add");
    let mut order = Vec::new();
    for _ in 0..7 {
        let c = b
            .claim(
                &q,
                ClaimRequest::new("t", vec![], 1, Duration::from_secs(5)),
            )
            .await
            .expect("claim");
        order.extend(c.jobs.into_iter().map(|j| j.id));
    }
    assert_eq!(
        order,
        ["j-b", "j-d", "j-a", "j-c", "j-none1", "j-none2", "j-late"]
    );
}

/// A delayed job is not runnable before its due time and is promoted right after it.
pub async fn delays_hold_jobs_back(b: Backend) {
    let q = queue();
    let mut j = NewJob::new("1");
    j.delay = Duration::from_millis(400);
    b.add(&q, vec![j]).await.expect("add");
    assert_eq!(b.counts(&q).await.expect("counts").delayed, 1);
    let c = b
        .claim(
            &q,
            ClaimRequest::new("t", vec![], 10, Duration::from_secs(5)),
        )
        .await
        .expect("claim");
    assert!(c.jobs.is_empty(), "delayed job claimed early");
    let due = c.next_delayed_in.expect("next due");
    assert!(
        due <= Duration::from_millis(400) && due >= Duration::from_millis(200),
        "{due:?}"
    );

    // Through the runtime: started no earlier than the delay.
    let q2 = queue();
    let started = Arc::new(Mutex::new(None));
    let s = started.clone();
    let def = JobDef::new(&q2, move |_: u8, _| {
        *s.lock().expect("lock") = Some(Instant::now());
        async { Ok::<_, std::io::Error>(()) }
    });
    let jobs = start(&b, def).await;
    let t0 = Instant::now();
    jobs.dispatch(
        &q2,
        &1,
        DispatchOptions::new().delay(Duration::from_millis(300)),
    )
    .await
    .expect("dispatch");
    eventually(Duration::from_secs(5), "delayed job ran", || async {
        started.lock().expect("lock").is_some()
    })
    .await;
    let at = started.lock().expect("lock").expect("started") - t0;
    // Due times are whole milliseconds of the backend's clock: allow the truncation.
    assert!(at >= Duration::from_millis(298), "ran after {at:?}");
    assert!(at < Duration::from_millis(1500), "promotion late: {at:?}");
    jobs.shutdown().await;
}

/// A second dispatch with the same job id is a no-op returning the existing job.
pub async fn job_id_deduplicates(b: Backend) {
    let q = queue();
    let o = DispatchOptions::new().job_id("order-7");
    let a = b
        .add(&q, vec![NewJob::new("1").with_options(&o)])
        .await
        .expect("add");
    let c = b
        .add(&q, vec![NewJob::new("2").with_options(&o)])
        .await
        .expect("add");
    assert!(a[0].created);
    assert!(!c[0].created);
    assert_eq!(a[0].id, c[0].id);
    assert_eq!(b.counts(&q).await.expect("counts").waiting, 1);
    assert_eq!(
        b.get(&q, "order-7").await.expect("get").expect("job").data,
        "1"
    );
    // Within one bulk, too.
    let both = b
        .add(
            &q,
            vec![
                NewJob::new("3").with_options(&DispatchOptions::new().job_id("x")),
                NewJob::new("4").with_options(&DispatchOptions::new().job_id("x")),
            ],
        )
        .await
        .expect("add");
    assert!(both[0].created && !both[1].created);
}

/// A retryable error is retried after the backoff; attempts are counted.
pub async fn retries_with_backoff_then_success(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        let n = r.hit(&m.id);
        t.lock().expect("lock").push(Instant::now());
        async move {
            if n < 3 {
                Err(std::io::Error::other(format!("flaky {n}")))
            } else {
                Ok(n)
            }
        }
    })
    .retries(3)
    .backoff(Backoff::fixed(Duration::from_millis(150)));
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(
        Duration::from_secs(5),
        "completed after retries",
        || async { state(&b, &q, &id).await == Some(JobState::Completed) },
    )
    .await;
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 3);
    assert_eq!(rec.result.as_deref(), Some("3"));
    assert_eq!(rec.error.as_deref(), Some("flaky 2"));
    let t = times.lock().expect("lock").clone();
    for w in t.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(140),
            "backoff not honoured: {:?}",
            w[1] - w[0]
        );
    }
    jobs.shutdown().await;
}

/// After `retries + 1` attempts the job fails (not dead-lettered without a DLQ).
pub async fn retries_exhausted_fail(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        r.hit(&m.id);
        async { Err::<(), _>(std::io::Error::other("always")) }
    })
    .retries(2);
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "failed", || async {
        state(&b, &q, &id).await == Some(JobState::Failed)
    })
    .await;
    assert_eq!(runs.0.lock().expect("lock")[&id], 3);
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 3);
    assert!(rec.finished_at_ms.is_some());
    assert_eq!(b.counts(&q).await.expect("counts").failed, 1);
    jobs.shutdown().await;
}

/// A `NonRetryableError` fails the job on its first attempt despite retries left.
pub async fn non_retryable_fails_at_once(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        r.hit(&m.id);
        async {
            Err::<(), _>(NonRetryableError::new(std::io::Error::other(
                "card declined",
            )))
        }
    })
    .retries(5)
    .dead_letter_queue();
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "dead", || async {
        state(&b, &q, &id).await == Some(JobState::Dead)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        runs.0.lock().expect("lock")[&id],
        1,
        "retried a non-retryable error"
    );
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 1);
    assert!(rec.error.expect("error").contains("card declined"));
    jobs.shutdown().await;
}

struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A job over its timeout fails as a retryable timeout and its future is dropped.
pub async fn timeout_drops_the_future(b: Backend) {
    let q = queue();
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (d, f) = (dropped.clone(), finished.clone());
    let def = JobDef::new(&q, move |_: u8, _| {
        let guard = DropFlag(d.clone());
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            f.fetch_add(1, Ordering::SeqCst);
            drop(guard);
            Ok::<_, std::io::Error>(())
        }
    })
    .timeout(Duration::from_millis(100))
    .retries(1);
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "failed after timeouts", || async {
        state(&b, &q, &id).await == Some(JobState::Failed)
    })
    .await;
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 2, "a timeout is retryable");
    assert!(rec.error.expect("error").contains("timed out"));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "each timed-out future was dropped"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    jobs.shutdown().await;
}

/// A job that fails with `downstream 503` until the returned flag is set, then returns its
/// payload.
fn failing_until_healed(q: &str) -> (JobDef, Arc<AtomicUsize>) {
    let heal = Arc::new(AtomicUsize::new(0));
    let h = heal.clone();
    let def = JobDef::new(q, move |v: serde_json::Value, _| {
        let ok = h.load(Ordering::SeqCst) > 0;
        async move {
            if ok {
                Ok(v)
            } else {
                Err(std::io::Error::other("downstream 503"))
            }
        }
    });
    (def, heal)
}

/// The DLQ keeps data, error, attempts and timestamps; re-drive runs the job again.
pub async fn dead_letter_contents_and_redrive(b: Backend) {
    let q = queue();
    let (def, heal) = failing_until_healed(&q);
    let def = def.retries(1).dead_letter_queue();
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &serde_json::json!({"order": 7}), DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "dead-lettered", || async {
        b.counts(&q).await.expect("counts").dead == 1
    })
    .await;
    let dead = jobs.dead_letters(&q, 0, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.id, id);
    assert_eq!(d.state, JobState::Dead);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&d.data).expect("json"),
        serde_json::json!({"order": 7})
    );
    assert_eq!(d.error.as_deref(), Some("downstream 503"));
    assert_eq!(d.attempts_made, 2);
    assert!(d.created_at_ms > 0 && d.finished_at_ms.expect("finished") >= d.created_at_ms);
    assert_eq!(
        b.counts(&q).await.expect("counts").failed,
        0,
        "dead jobs are not in failed"
    );

    heal.store(1, Ordering::SeqCst);
    assert_eq!(jobs.redrive(&q, None).await.expect("redrive"), 1);
    eventually(
        Duration::from_secs(5),
        "re-driven job completed",
        || async { state(&b, &q, &id).await == Some(JobState::Completed) },
    )
    .await;
    assert_eq!(b.counts(&q).await.expect("counts").dead, 0);
    assert_eq!(
        jobs.redrive(&q, Some(vec!["nope".into()]))
            .await
            .expect("redrive"),
        0
    );
    jobs.shutdown().await;
}

/// At most `max` starts per window across two runtimes; the achieved rate is within ±10 %.
pub async fn rate_limit_is_global_and_accurate(b: Backend) {
    let q = queue();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let mk = || {
        let s = starts.clone();
        JobDef::new(&q, move |_: u32, _| {
            s.lock().expect("lock").push(Instant::now());
            async { Ok::<_, std::io::Error>(()) }
        })
        .concurrency(10)
        .rate_limit(20, Duration::from_millis(250))
    };
    let one = start(&b, mk()).await;
    let two = start(&b, mk()).await;
    let bulk = (0..100)
        .map(|i| (i.to_string(), DispatchOptions::new()))
        .collect();
    one.dispatch_bulk(&q, bulk).await.expect("bulk");
    eventually(Duration::from_secs(10), "100 started", || async {
        starts.lock().expect("lock").len() == 100
    })
    .await;
    let mut s = starts.lock().expect("lock").clone();
    s.sort();
    // 100 jobs at 20 per 250 ms: the first window starts 20 at once, the other 80 need 4 more
    // windows, so the span from first to last start is 1 s.
    let span = s[99] - s[0];
    let rate = 80.0 / span.as_secs_f64();
    assert!(
        (72.0..=88.0).contains(&rate),
        "rate {rate:.1}/s, want 80 ± 10 % (span {span:?})"
    );
    // No window of 250 ms ever holds more than 20 starts plus boundary slack of one window.
    for (i, t) in s.iter().enumerate() {
        let within = s[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_millis(240))
            .count();
        assert!(within <= 40, "{within} starts within 240 ms");
    }
    one.shutdown().await;
    two.shutdown().await;
}

/// `remove_on_complete` / `remove_on_fail`: remove, keep last N, keep.
pub async fn retention_options(b: Backend) {
    let q = queue();
    let def = JobDef::new(&q, |v: i32, _| async move {
        if v < 0 {
            Err(std::io::Error::other("neg"))
        } else {
            Ok(v)
        }
    })
    .retries(0);
    let jobs = start(&b, def).await;
    let gone = jobs
        .dispatch(
            &q,
            &1,
            DispatchOptions::new().job_id("rm").remove_on_complete(true),
        )
        .await
        .expect("dispatch");
    eventually(Duration::from_secs(5), "removed", || async {
        b.get(&q, &gone.id).await.expect("get").is_none()
            && b.counts(&q).await.expect("c").active == 0
    })
    .await;
    // Removed records no longer de-duplicate.
    let again = jobs
        .dispatch(
            &q,
            &1,
            DispatchOptions::new().job_id("rm").remove_on_complete(true),
        )
        .await
        .expect("dispatch");
    assert!(again.created);
    for i in 0..5 {
        jobs.dispatch(&q, &i, DispatchOptions::new().remove_on_complete(2u32))
            .await
            .expect("d");
    }
    for i in 0..3 {
        jobs.dispatch(&q, &(-1 - i), DispatchOptions::new().remove_on_fail(1u32))
            .await
            .expect("d");
    }
    eventually(Duration::from_secs(5), "retention applied", || async {
        let c = b.counts(&q).await.expect("counts");
        c.waiting == 0 && c.active == 0 && c.completed == 2 && c.failed == 1
    })
    .await;
    let kept = jobs
        .dispatch(
            &q,
            &9,
            DispatchOptions::new()
                .job_id("keep")
                .remove_on_complete(false),
        )
        .await
        .expect("d");
    eventually(Duration::from_secs(5), "kept", || async {
        state(&b, &q, &kept.id).await == Some(JobState::Completed)
    })
    .await;
    jobs.shutdown().await;
}

/// A job whose lease expired goes back to waiting; past `max_stalled` it fails.
pub async fn stalled_jobs_are_recovered(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new("1").with_options(&DispatchOptions::new().job_id("s"))],
    )
    .await
    .expect("add");
    let lease = Duration::from_millis(100);
    let c = b
        .claim(&q, ClaimRequest::new("dead-worker", vec![], 1, lease))
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    let r = b.recover_stalled(&q, 1, true).await.expect("recover");
    assert!(r.requeued.is_empty(), "recovered before the lease expired");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = b.recover_stalled(&q, 1, true).await.expect("recover");
    assert_eq!(r.requeued, ["s"]);
    let c = b
        .claim(&q, ClaimRequest::new("w2", vec![], 1, lease))
        .await
        .expect("claim");
    assert_eq!(c.jobs[0].stalled, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = b.recover_stalled(&q, 1, true).await.expect("recover");
    assert_eq!(r.failed, ["s"]);
    let rec = b.get(&q, "s").await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Dead);
    assert!(rec.error.expect("error").contains("stalled"));

    // Through the runtime: a job claimed by a worker that vanished completes once elsewhere.
    let q2 = queue();
    b.add(&q2, vec![NewJob::new("2")]).await.expect("add");
    b.claim(&q2, ClaimRequest::new("vanished", vec![], 1, lease))
        .await
        .expect("claim");
    let runs = Runs::default();
    let jobs = start(&b, counting(&q2, &runs).lease(Duration::from_millis(200))).await;
    eventually(
        Duration::from_secs(5),
        "recovered job completed",
        || async { b.counts(&q2).await.expect("counts").completed == 1 },
    )
    .await;
    assert_eq!(runs.duplicates(), 0);
    jobs.shutdown().await;
}

/// Acks and renewals from a worker that lost its lease are refused.
pub async fn stale_worker_acks_are_refused(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new("1").with_options(&DispatchOptions::new().job_id("k"))],
    )
    .await
    .expect("add");
    let lease = Duration::from_millis(80);
    b.claim(&q, ClaimRequest::new("old", vec![], 1, lease))
        .await
        .expect("claim");
    tokio::time::sleep(Duration::from_millis(120)).await;
    b.recover_stalled(&q, 5, false).await.expect("recover");
    let c = b
        .claim(
            &q,
            ClaimRequest::new("new", vec![], 1, Duration::from_secs(5)),
        )
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    let lost = b
        .renew(&q, "old", vec!["k".into()], lease)
        .await
        .expect("renew");
    assert_eq!(lost, ["k"]);
    let done = Ack::new("k", Outcome::Completed { result: "1".into() });
    let c = b
        .claim(&q, ClaimRequest::new("old", vec![done.clone()], 0, lease))
        .await
        .expect("ack");
    assert_eq!(c.stale_acks, ["k"]);
    assert_eq!(state(&b, &q, "k").await, Some(JobState::Active));
    let c = b
        .claim(&q, ClaimRequest::new("new", vec![done], 0, lease))
        .await
        .expect("ack");
    assert!(c.stale_acks.is_empty());
    assert_eq!(state(&b, &q, "k").await, Some(JobState::Completed));
}

/// A job running for several lease lengths keeps its lease and runs once, even with a second
/// worker checking for stalls.
pub async fn lease_renewal_keeps_long_jobs_single(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let mk = || {
        let r = runs.clone();
        JobDef::new(&q, move |_: u8, m: JobMeta| {
            r.hit(&m.id);
            async {
                tokio::time::sleep(Duration::from_millis(1300)).await;
                Ok::<_, std::io::Error>(())
            }
        })
        .lease(Duration::from_millis(400))
    };
    let one = start(&b, mk()).await;
    let two = start(&b, mk()).await;
    one.dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch");
    eventually(Duration::from_secs(5), "completed", || async {
        b.counts(&q).await.expect("counts").completed == 1
    })
    .await;
    assert_eq!(runs.duplicates(), 0, "lease renewal failed: job ran twice");
    one.shutdown().await;
    two.shutdown().await;
}

/// `concurrency(n)` bounds the jobs running at once in one process.
pub async fn concurrency_is_bounded(b: Backend) {
    let q = queue();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let def = JobDef::new(&q, move |_: u8, _| {
        let (n, p) = (n.clone(), p.clone());
        async move {
            let c = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(40)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        }
    })
    .concurrency(3);
    let jobs = start(&b, def).await;
    let bulk = (0..15)
        .map(|_| ("1".to_owned(), DispatchOptions::new()))
        .collect();
    jobs.dispatch_bulk(&q, bulk).await.expect("bulk");
    eventually(Duration::from_secs(5), "15 completed", || async {
        b.counts(&q).await.expect("counts").completed == 15
    })
    .await;
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    jobs.shutdown().await;
}

/// Completed and failed events carry id, data, result or error and attempts; a panicking
/// listener does not stop the worker.
pub async fn events_completed_and_failed(b: Backend) {
    let q = queue();
    let def = JobDef::new(&q, |v: i32, _| async move {
        if v < 0 {
            Err(std::io::Error::other("negative"))
        } else {
            Ok(v * 2)
        }
    })
    .retries(0);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let jobs = Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(def)
        .on_event(|_| panic!("listener bug"))
        .on_event(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .start()
        .await
        .expect("start");
    let mut rx = jobs.subscribe();
    let ok = jobs
        .dispatch(&q, &21, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    let bad = jobs
        .dispatch(&q, &-1, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    let mut got = HashMap::new();
    while got.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event")
            .expect("recv");
        got.insert(e.id.clone(), e);
    }
    let e = &got[&ok];
    assert_eq!(
        e.kind,
        EventKind::Completed {
            result: "42".into()
        }
    );
    assert_eq!((e.data.as_str(), e.attempts_made), ("21", 1));
    assert_eq!(e.to_event().name, format!("job.{q}.completed"));
    let e = &got[&bad];
    assert_eq!(
        e.kind,
        EventKind::Failed {
            error: "negative".into(),
            dead_lettered: false
        }
    );
    eventually(Duration::from_secs(2), "listener called", || async {
        seen.load(Ordering::SeqCst) == 2
    })
    .await;
    let third = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    eventually(
        Duration::from_secs(5),
        "worker survived listener panic",
        || async { state(&b, &q, &third).await == Some(JobState::Completed) },
    )
    .await;
    jobs.shutdown().await;
}

/// Shutdown lets short jobs finish, releases long ones back to waiting without counting an
/// attempt, and refuses new dispatches.
pub async fn shutdown_releases_active_jobs(b: Backend) {
    let q = queue();
    let def = JobDef::new(&q, |ms: u64, _| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::io::Error>(())
    })
    .concurrency(2);
    let jobs = start(&b, def).await;
    let short = jobs
        .dispatch(&q, &120u64, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    let long = jobs
        .dispatch(&q, &30_000u64, DispatchOptions::new())
        .await
        .expect("d")
        .id;
    eventually(Duration::from_secs(5), "both active", || async {
        b.counts(&q).await.expect("counts").active == 2
    })
    .await;
    let t = Instant::now();
    jobs.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown not bounded: {:?}",
        t.elapsed()
    );
    assert_eq!(state(&b, &q, &short).await, Some(JobState::Completed));
    let rec = b.get(&q, &long).await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Waiting);
    assert_eq!(rec.attempts_made, 0);
    let e = jobs
        .dispatch(&q, &1u64, DispatchOptions::new())
        .await
        .expect_err("closed");
    assert_eq!(e.kind(), ErrorKind::Shutdown);
}

/// Raw JSON is accepted from any producer; bad input is refused with `Invalid` and stores
/// nothing; a payload of the wrong type fails at once.
pub async fn raw_json_and_bad_input(b: Backend) {
    let q = queue();
    let def = JobDef::new(&q, |v: Vec<u8>, _| async move {
        Ok::<_, std::io::Error>(v.len())
    })
    .retries(3)
    .dead_letter_queue();
    let jobs = start(&b, def).await;
    let ok = jobs
        .dispatch_raw(&q, "[1,2,3]", DispatchOptions::new())
        .await
        .expect("raw")
        .id;
    let wrong = jobs
        .dispatch_raw(&q, r#"{"not":"a list"}"#, DispatchOptions::new())
        .await
        .expect("raw")
        .id;
    for (res, what) in [
        (
            jobs.dispatch_raw(&q, "{nope", DispatchOptions::new()).await,
            "bad json",
        ),
        (
            jobs.dispatch_raw(&q, "x".repeat(MAX_PAYLOAD + 1), DispatchOptions::new())
                .await,
            "too big",
        ),
        (
            jobs.dispatch_raw("bad{name}", "1", DispatchOptions::new())
                .await,
            "bad name",
        ),
        (
            jobs.dispatch_raw(&q, "1", DispatchOptions::new().priority(1 << 21))
                .await,
            "priority",
        ),
        (
            jobs.dispatch_raw(&q, "1", DispatchOptions::new().job_id("123"))
                .await,
            "digit id",
        ),
        (
            jobs.dispatch_raw(&q, "1", DispatchOptions::new().job_id("a b"))
                .await,
            "space id",
        ),
    ] {
        assert_eq!(res.expect_err(what).kind(), ErrorKind::Invalid, "{what}");
    }
    eventually(Duration::from_secs(5), "both done", || async {
        state(&b, &q, &ok).await == Some(JobState::Completed)
            && state(&b, &q, &wrong).await == Some(JobState::Dead)
    })
    .await;
    assert_eq!(
        b.get(&q, &ok)
            .await
            .expect("get")
            .expect("r")
            .result
            .as_deref(),
        Some("3")
    );
    assert_eq!(
        b.get(&q, &wrong)
            .await
            .expect("get")
            .expect("r")
            .attempts_made,
        1
    );
    let c = b.counts(&q).await.expect("counts");
    assert_eq!(
        c.waiting + c.delayed + c.active,
        0,
        "refused input was stored"
    );
    jobs.shutdown().await;
}

/// Thousands of jobs due at the same moment are all promoted and run (a known defect of one
/// peer queue, which stops for good past ~8 000).
pub async fn many_due_at_once(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let jobs = start(&b, counting(&q, &runs).concurrency(50).batch(200)).await;
    let n = 9000;
    let bulk = (0..n)
        .map(|i| {
            (
                i.to_string(),
                DispatchOptions::new()
                    .delay(Duration::from_millis(200))
                    .remove_on_complete(true),
            )
        })
        .collect();
    jobs.dispatch_bulk(&q, bulk).await.expect("bulk");
    eventually(Duration::from_secs(30), "all due jobs ran", || async {
        runs.distinct() == n
    })
    .await;
    assert_eq!(runs.duplicates(), 0);
    jobs.shutdown().await;
}

/// Three runtimes sharing one queue under load: every job runs exactly once.
pub async fn no_duplicates_under_load(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let mut rts = Vec::new();
    for _ in 0..3 {
        rts.push(start(&b, counting(&q, &runs).concurrency(20)).await);
    }
    let n = 3000;
    let bulk = (0..n)
        .map(|i| {
            (
                i.to_string(),
                DispatchOptions::new().remove_on_complete(true),
            )
        })
        .collect();
    rts[0].dispatch_bulk(&q, bulk).await.expect("bulk");
    eventually(Duration::from_secs(30), "all ran", || async {
        runs.distinct() == n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.duplicates(), 0, "duplicate executions");
    for r in rts {
        r.shutdown().await;
    }
}

/// The core `TaskQueue` implementation de-duplicates by task id and honours the delay.
pub async fn task_queue_deduplicates(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let jobs = start(&b, counting(&q, &runs)).await;
    let t = QueuedTask::new(
        q.clone(),
        "evt_1:sub_1",
        serde_json::json!({"url": "https://x.test"}),
    );
    jobs.enqueue(t.clone()).await.expect("enqueue");
    jobs.enqueue(t).await.expect("enqueue again");
    let later = QueuedTask::new(q.clone(), "evt_2:sub_1", serde_json::json!({}))
        .with_delay(Duration::from_secs(60));
    jobs.enqueue(later).await.expect("enqueue");
    eventually(Duration::from_secs(5), "ran", || async {
        runs.distinct() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.duplicates(), 0);
    assert_eq!(b.counts(&q).await.expect("counts").delayed, 1);
    jobs.shutdown().await;
}

/// Counts reflect each state; `stats` reports every registered name.
pub async fn counts_per_state(b: Backend) {
    let q = queue();
    let mut d = NewJob::new("1");
    d.delay = Duration::from_secs(60);
    b.add(
        &q,
        vec![NewJob::new("1"), NewJob::new("2"), NewJob::new("3"), d],
    )
    .await
    .expect("add");
    let c = b
        .claim(
            &q,
            ClaimRequest::new("t", vec![], 2, Duration::from_secs(5)),
        )
        .await
        .expect("claim");
    let ids: Vec<String> = c.jobs.iter().map(|j| j.id.clone()).collect();
    let acks = vec![Ack::new(
        ids[0].clone(),
        Outcome::Completed {
            result: "null".into(),
        },
    )];
    b.claim(&q, ClaimRequest::new("t", acks, 0, Duration::from_secs(5)))
        .await
        .expect("ack");
    let c = b.counts(&q).await.expect("counts");
    assert_eq!(
        (
            c.waiting,
            c.active,
            c.completed,
            c.delayed,
            c.failed,
            c.dead
        ),
        (1, 1, 1, 1, 0, 0)
    );
    let jobs = start(&b, counting(&q, &Runs::default()).concurrency(1)).await;
    let s = jobs.stats().await.expect("stats");
    assert!(s.contains_key(&q));
    jobs.shutdown().await;
}

/// A handler that panics fails that attempt as retryable; the worker keeps running.
pub async fn panicking_handler_is_retried(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let r = runs.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        let n = r.hit(&m.id);
        async move {
            assert!(n > 1, "first attempt panics");
            Ok::<_, std::io::Error>(n)
        }
    })
    .retries(2);
    let jobs = start(&b, def).await;
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(
        Duration::from_secs(5),
        "completed after a panic",
        || async { state(&b, &q, &id).await == Some(JobState::Completed) },
    )
    .await;
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.attempts_made, 2);
    assert_eq!(rec.error.as_deref(), Some("handler panicked"));
    jobs.shutdown().await;
}

/// The stats handler answers only with the right bearer token and reports per-name counts.
pub async fn stats_handler_requires_the_token(b: Backend) {
    let q = queue();
    let jobs = start(&b, counting(&q, &Runs::default())).await;
    jobs.dispatch(
        &q,
        &1,
        DispatchOptions::new().delay(Duration::from_secs(60)),
    )
    .await
    .expect("dispatch");
    let h = crate::StatsHandler::new(jobs.clone(), "t0ken");
    assert_eq!(h.handle(None).await.0, 401);
    assert_eq!(h.handle(Some("Bearer t0ke")).await.0, 401);
    assert_eq!(h.handle(Some("t0ken")).await.0, 401);
    let (status, body) = h.handle(Some("Bearer t0ken")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v[&q]["delayed"], 1);
    assert_eq!(v[&q]["waiting"], 0);
    let open = crate::StatsHandler::new(jobs.clone(), "");
    assert_eq!(
        open.handle(Some("Bearer ")).await.0,
        401,
        "empty token must fail closed"
    );
    jobs.shutdown().await;
}

/// `meta.progress.report` stores the value on the job and emits `job.<name>.progress`; a
/// reporter whose lease is gone stores nothing.
pub async fn progress_is_stored_and_emitted(b: Backend) {
    let q = queue();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let def = JobDef::new(&q, move |_: u8, m: JobMeta| {
        let g = g.clone();
        async move {
            let stored = m.progress.report(&serde_json::json!({"pct": 50})).await?;
            assert!(stored);
            g.notified().await;
            Ok::<_, crate::JobsError>(())
        }
    });
    let jobs = start(&b, def).await;
    let mut rx = jobs.subscribe();
    let id = jobs
        .dispatch(&q, &1, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event")
        .expect("recv");
    assert_eq!(e.event_name(), format!("job.{q}.progress"));
    assert_eq!(
        e.kind,
        EventKind::Progress {
            progress: r#"{"pct":50}"#.into()
        }
    );
    let rec = b.get(&q, &id).await.expect("get").expect("record");
    assert_eq!(rec.state, JobState::Active);
    assert_eq!(rec.progress.as_deref(), Some(r#"{"pct":50}"#));
    assert!(
        !b.progress(&q, "not-the-holder", &id, "1".into())
            .await
            .expect("progress")
    );
    gate.notify_one();
    eventually(Duration::from_secs(5), "completed", || async {
        state(&b, &q, &id).await == Some(JobState::Completed)
    })
    .await;
    jobs.shutdown().await;
}

/// A repeat declared by two runtimes runs once per slot.
pub async fn repeat_runs_each_slot_once(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let every = Duration::from_millis(300);
    let mut rts = Vec::new();
    for _ in 0..2 {
        let r =
            crate::Repeat::every(&q, every, &serde_json::json!({"tick": true})).expect("repeat");
        rts.push(
            Jobs::builder_shared(b.clone())
                .defaults(quick_defaults())
                .job(counting(&q, &runs).concurrency(2))
                .repeat(r)
                .start()
                .await
                .expect("start"),
        );
    }
    eventually(Duration::from_secs(10), "four slots ran", || async {
        runs.distinct() >= 4
    })
    .await;
    assert_eq!(runs.duplicates(), 0, "a slot ran twice");
    let ids: Vec<String> = runs.0.lock().expect("lock").keys().cloned().collect();
    assert!(
        ids.iter().all(|id| id.starts_with("repeat-300-")),
        "{ids:?}"
    );
    for r in rts {
        r.shutdown().await;
    }
    assert!(Repeat::every(&q, Duration::from_millis(1), &1).is_err());
    let zero = counting(&q, &runs).rate_limit(0, Duration::from_secs(1));
    let err = Jobs::builder_shared(b.clone())
        .job(zero)
        .start()
        .await
        .expect_err("rate 0");
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

/// Issue 14: a job failed by the stall limit emits its `failed` event (with data, the stall
/// error and the dead-letter flag), like a job failed by its handler.
pub async fn stall_limit_failure_emits_failed_event(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new(r#"{"n":5}"#).with_options(&DispatchOptions::new().job_id("gone"))],
    )
    .await
    .expect("add");
    b.claim(
        &q,
        ClaimRequest::new("vanished", vec![], 1, Duration::from_millis(100)),
    )
    .await
    .expect("claim");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runs = Runs::default();
    let jobs = Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(
            counting(&q, &runs)
                .max_stalled(0)
                .lease(Duration::from_millis(100))
                .dead_letter_queue(),
        )
        .on_event(move |e| {
            let _ = tx.send(e.clone());
        })
        .start()
        .await
        .expect("start");
    let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a failed event within 5 s")
        .expect("event");
    assert_eq!(e.id, "gone");
    assert_eq!(e.data, r#"{"n":5}"#);
    assert_eq!(e.to_event().name, format!("job.{q}.failed"));
    assert_eq!(
        e.kind,
        EventKind::Failed {
            error: "job stalled more than 0 times".into(),
            dead_lettered: true
        }
    );
    assert_eq!(state(&b, &q, "gone").await, Some(JobState::Dead));
    assert_eq!(
        runs.distinct(),
        0,
        "a job failed by the stall limit never runs"
    );
    jobs.shutdown().await;
}

/// A paused queue hands no job to any worker (several runtimes, several safety-net claims, a
/// delayed job coming due); a running job still finishes and is recorded; resuming runs the
/// backlog once.
pub async fn pause_holds_for_every_worker_until_resumed(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let mk = || {
        let r = runs.clone();
        JobDef::new(&q, move |ms: u64, m: JobMeta| {
            r.hit(&m.id);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, std::io::Error>(())
            }
        })
        .concurrency(4)
        // A stalled check, and with it a safety-net claim, every 100 ms on each runtime.
        .lease(Duration::from_millis(200))
    };
    let one = start(&b, mk()).await;
    let two = start(&b, mk()).await;
    let running = one
        .dispatch(&q, &400u64, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "job running", || async {
        runs.distinct() == 1
    })
    .await;
    let handle = one.queue(&q).expect("queue");
    assert!(!handle.is_paused().await.expect("is_paused"));
    handle.pause().await.expect("pause");
    handle.pause().await.expect("pause is idempotent");
    assert!(
        two.queue(&q)
            .expect("queue")
            .is_paused()
            .await
            .expect("is_paused"),
        "the pause is visible to every runtime"
    );
    for i in 0..10u64 {
        two.dispatch(&q, &i, DispatchOptions::new())
            .await
            .expect("dispatch");
    }
    one.dispatch(
        &q,
        &0u64,
        DispatchOptions::new().delay(Duration::from_millis(100)),
    )
    .await
    .expect("dispatch");
    eventually(
        Duration::from_secs(5),
        "the running job finished while paused",
        || async { state(&b, &q, &running).await == Some(JobState::Completed) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(runs.distinct(), 1, "a paused queue handed out a job");
    let c = b.counts(&q).await.expect("counts");
    assert_eq!((c.waiting, c.active, c.completed), (11, 0, 1));
    handle.resume().await.expect("resume");
    assert!(!handle.is_paused().await.expect("is_paused"));
    eventually(Duration::from_secs(5), "backlog completed", || async {
        b.counts(&q).await.expect("counts").completed == 12
    })
    .await;
    assert_eq!(runs.distinct(), 12);
    assert_eq!(runs.duplicates(), 0);
    one.shutdown().await;
    two.shutdown().await;
}

/// A drain deletes the waiting jobs (all of them, past one backend batch) and, when asked, the
/// delayed ones, with their records; leased jobs stay.
pub async fn drain_deletes_waiting_and_optionally_delayed_jobs(b: Backend) {
    let q = queue();
    let jobs = Jobs::builder_shared(b.clone())
        .start()
        .await
        .expect("start");
    let waiting: Vec<(String, DispatchOptions)> = (0..2500)
        .map(|i| {
            (
                "1".to_owned(),
                DispatchOptions::new().job_id(format!("w-{i}")),
            )
        })
        .collect();
    jobs.dispatch_bulk(&q, waiting).await.expect("bulk");
    for i in 0..3 {
        let o = DispatchOptions::new()
            .job_id(format!("d-{i}"))
            .delay(Duration::from_secs(60));
        jobs.dispatch(&q, &i, o).await.expect("dispatch");
    }
    let c = b
        .claim(
            &q,
            ClaimRequest::new("t", vec![], 1, Duration::from_secs(30)),
        )
        .await
        .expect("claim");
    assert_eq!(c.jobs[0].id, "w-0");
    let h = jobs.queue(&q).expect("queue");
    assert_eq!(h.drain(false).await.expect("drain"), 2499);
    let c = h.counts().await.expect("counts");
    assert_eq!((c.waiting, c.delayed, c.active), (0, 3, 1));
    assert!(
        b.get(&q, "w-7").await.expect("get").is_none(),
        "record kept"
    );
    let again = jobs
        .dispatch(&q, &1, DispatchOptions::new().job_id("w-7"))
        .await
        .expect("dispatch");
    assert!(again.created, "a drained job id is free again");
    assert_eq!(h.drain(true).await.expect("drain"), 4);
    let c = h.counts().await.expect("counts");
    assert_eq!((c.waiting, c.delayed, c.active), (0, 0, 1));
    assert_eq!(state(&b, &q, "w-0").await, Some(JobState::Active));
    assert_eq!(h.drain(true).await.expect("drain"), 0);
    jobs.shutdown().await;
}

/// Leases `id` and records `outcome` for it, straight on the backend.
async fn finish(b: &Backend, q: &str, id: &str, outcome: Outcome) {
    b.add(
        q,
        vec![NewJob::new("1").with_options(&DispatchOptions::new().job_id(id))],
    )
    .await
    .expect("add");
    let c = b
        .claim(
            q,
            ClaimRequest::new("t", vec![], 1, Duration::from_secs(30)),
        )
        .await
        .expect("claim");
    assert_eq!(c.jobs.len(), 1);
    let c = b
        .claim(
            q,
            ClaimRequest::new("t", vec![Ack::new(id, outcome)], 0, Duration::from_secs(30)),
        )
        .await
        .expect("ack");
    assert!(c.stale_acks.is_empty());
}

/// Clean deletes finished jobs of one state that finished longer ago than the age given, oldest
/// first, up to the limit; unfinished states are refused.
pub async fn clean_deletes_old_finished_jobs_by_state(b: Backend) {
    let q = queue();
    let done = || Outcome::Completed { result: "1".into() };
    let failed = |dead_letter| Outcome::Failed {
        error: "x".into(),
        dead_letter,
    };
    finish(&b, &q, "c1", done()).await;
    finish(&b, &q, "c2", done()).await;
    finish(&b, &q, "f1", failed(false)).await;
    finish(&b, &q, "x1", failed(true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish(&b, &q, "c3", done()).await;
    let jobs = Jobs::builder_shared(b.clone())
        .start()
        .await
        .expect("start");
    let h = jobs.queue(&q).expect("queue");
    let age = Duration::from_millis(200);
    let mut old = h
        .clean(JobState::Completed, age, 1000)
        .await
        .expect("clean");
    old.sort();
    assert_eq!(old, ["c1", "c2"]);
    assert!(b.get(&q, "c1").await.expect("get").is_none());
    assert_eq!(state(&b, &q, "c3").await, Some(JobState::Completed));
    assert_eq!(
        h.clean(JobState::Completed, Duration::ZERO, 0)
            .await
            .expect("clean"),
        Vec::<String>::new()
    );
    assert_eq!(
        h.clean(JobState::Completed, Duration::ZERO, 1)
            .await
            .expect("clean"),
        ["c3"]
    );
    assert_eq!(
        h.clean(JobState::Failed, age, 10).await.expect("clean"),
        ["f1"]
    );
    assert_eq!(
        h.clean(JobState::Dead, age, 10).await.expect("clean"),
        ["x1"]
    );
    let c = h.counts().await.expect("counts");
    assert_eq!((c.completed, c.failed, c.dead), (0, 0, 0));
    for s in [JobState::Waiting, JobState::Delayed, JobState::Active] {
        let e = h.clean(s, age, 10).await.expect_err("unfinished state");
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
    jobs.shutdown().await;
}

/// A custom dead-letter queue name lists and re-drives the job's DLQ; bad, clashing or shared
/// names are refused by `start`.
pub async fn custom_dead_letter_queue_name(b: Backend) {
    let q = queue();
    let dlq = format!("{q}-dead");
    let (def, heal) = failing_until_healed(&q);
    let def = def.retries(0).dead_letter_queue_named(&dlq);
    assert_eq!(def.dead_letter_queue_name(), Some(dlq.as_str()));
    let jobs = start(&b, def.clone()).await;
    let id = jobs
        .dispatch(&q, &7u32, DispatchOptions::new())
        .await
        .expect("dispatch")
        .id;
    eventually(Duration::from_secs(5), "dead-lettered", || async {
        b.counts(&q).await.expect("counts").dead == 1
    })
    .await;
    let by_dlq = jobs.dead_letters(&dlq, 0, 10).await.expect("list");
    assert_eq!(by_dlq.len(), 1);
    assert_eq!(by_dlq[0].id, id);
    assert_eq!(by_dlq, jobs.dead_letters(&q, 0, 10).await.expect("list"));
    heal.store(1, Ordering::SeqCst);
    assert_eq!(jobs.redrive(&dlq, None).await.expect("redrive"), 1);
    eventually(Duration::from_secs(5), "re-driven job done", || async {
        state(&b, &q, &id).await == Some(JobState::Completed)
    })
    .await;
    jobs.shutdown().await;

    let other = JobDef::new(format!("{q}-other"), |_: u32, _| async {
        Ok::<_, std::io::Error>(())
    });
    let refused = [
        vec![def.clone().dead_letter_queue_named("has space")],
        vec![
            def.clone().dead_letter_queue_named(other.name()),
            other.clone(),
        ],
        vec![def.clone(), other.clone().dead_letter_queue_named(&dlq)],
    ];
    for defs in refused {
        let mut builder = Jobs::builder_shared(b.clone());
        for d in defs {
            builder = builder.job(d);
        }
        let e = builder.start().await.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    }
}

/// A job recovered from a vanished worker emits one `stalled` event (from whichever runtime's
/// check recovered it), then runs once and completes.
pub async fn stalled_event_is_emitted_once_per_recovery(b: Backend) {
    let q = queue();
    b.add(
        &q,
        vec![NewJob::new("3").with_options(&DispatchOptions::new().job_id("st"))],
    )
    .await
    .expect("add");
    b.claim(
        &q,
        ClaimRequest::new("vanished", vec![], 1, Duration::from_millis(100)),
    )
    .await
    .expect("claim");
    let events = Arc::new(Mutex::new(Vec::new()));
    let runs = Runs::default();
    let mut runtimes = Vec::new();
    for _ in 0..2 {
        let ev = events.clone();
        let jobs = Jobs::builder_shared(b.clone())
            .defaults(quick_defaults())
            .job(counting(&q, &runs).lease(Duration::from_millis(100)))
            .on_event(move |e| ev.lock().expect("lock").push(e.clone()))
            .start()
            .await
            .expect("start");
        runtimes.push(jobs);
    }
    eventually(
        Duration::from_secs(5),
        "recovered job completed",
        || async { state(&b, &q, "st").await == Some(JobState::Completed) },
    )
    .await;
    // Several more stalled checks on both runtimes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kinds: Vec<EventKind> = events
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| e.id == "st")
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Stalled { stalled: 1 },
            EventKind::Completed {
                result: "null".into()
            }
        ]
    );
    let e = events.lock().expect("lock")[0].clone();
    assert_eq!((e.data.as_str(), e.attempts_made), ("3", 0));
    assert_eq!(e.to_event().name, format!("job.{q}.stalled"));
    assert_eq!(runs.duplicates(), 0);
    for j in runtimes {
        j.shutdown().await;
    }
}

fn every_second(q: &str) -> crate::ScheduleBuilder {
    Schedule::builder("every-second", q, "* * * * * *")
        .timezone("UTC")
        .data(&7)
}

/// Two runtimes declaring one schedule: each tick is enqueued once (the stored run count equals
/// the jobs run), tick job ids carry the tick, and the run limit holds across both.
pub async fn schedule_enqueues_each_tick_once_across_runtimes(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let mut runtimes = Vec::new();
    for _ in 0..2 {
        let s = every_second(&q).limit(3).build().expect("schedule");
        let jobs = Jobs::builder_shared(b.clone())
            .defaults(quick_defaults())
            .job(counting(&q, &runs))
            .schedule(s)
            .start()
            .await
            .expect("start");
        runtimes.push(jobs);
    }
    eventually(Duration::from_secs(8), "three ticks run", || async {
        b.counts(&q).await.expect("counts").completed == 3
    })
    .await;
    // Two more ticks pass: the limit stops both runtimes.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let c = b.counts(&q).await.expect("counts");
    assert_eq!((c.completed, c.waiting, c.active), (3, 0, 0));
    assert_eq!(runs.distinct(), 3);
    assert_eq!(runs.duplicates(), 0);
    let listed = runtimes[0].schedules(&q).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].runs, 3, "a tick was enqueued by both runtimes");
    let last = listed[0].last_tick_ms.expect("last tick");
    assert_eq!(last % 1000, 0, "ticks fall on whole seconds");
    let rec = b
        .get(&q, &format!("sched:every-second:{last}"))
        .await
        .expect("get")
        .expect("the last tick's job");
    assert_eq!((rec.state, rec.data.as_str()), (JobState::Completed, "7"));
    for j in runtimes {
        j.shutdown().await;
    }
}

/// Schedules are listed with their options and count; removing one stops every runtime
/// declaring it.
pub async fn schedules_are_listed_and_removed(b: Backend) {
    let q = queue();
    let runs = Runs::default();
    let s = every_second(&q).build().expect("schedule");
    let jobs = start_with(&b, counting(&q, &runs), s).await;
    eventually(Duration::from_secs(5), "a tick ran", || async {
        runs.distinct() >= 1
    })
    .await;
    let listed = jobs.schedules(&q).await.expect("list");
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(
        (info.id.as_str(), info.cron.as_str(), info.timezone.as_str()),
        ("every-second", "* * * * * *", "UTC")
    );
    assert_eq!(
        (info.limit, info.start_at_ms, info.end_at_ms),
        (None, None, None)
    );
    assert!(info.runs >= 1);
    assert!(
        jobs.remove_schedule(&q, "every-second")
            .await
            .expect("remove")
    );
    assert!(
        !jobs
            .remove_schedule(&q, "every-second")
            .await
            .expect("remove")
    );
    assert!(jobs.schedules(&q).await.expect("list").is_empty());
    let total = |c: crate::Counts| c.completed + c.waiting + c.active + c.delayed;
    let before = total(b.counts(&q).await.expect("counts"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        total(b.counts(&q).await.expect("counts")),
        before,
        "a removed schedule enqueued a tick"
    );
    jobs.shutdown().await;
}

async fn start_with(b: &Backend, def: JobDef, s: Schedule) -> Jobs {
    Jobs::builder_shared(b.clone())
        .defaults(quick_defaults())
        .job(def)
        .schedule(s)
        .start()
        .await
        .expect("start")
}
