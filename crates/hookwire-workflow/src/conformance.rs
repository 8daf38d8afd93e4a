//! The run-store conformance suite: one `pub async fn` per behaviour of the engine over a store,
//! expanded per store with [`workflow_conformance!`](crate::workflow_conformance), so the memory
//! store and any other store (Redis) are held to the same semantics.
//!
//! Every case takes a fresh shared store, builds its own engines over it (a short 300 ms job
//! lease, so crash recovery fits in a test), panics on a violation and finishes in a few seconds.
//! The `unwrap`/`expect` calls are the suite's assertions; this module only exists behind the
//! `conformance` feature, for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hookwire_core::{Backoff, NonRetryableError};
use hookwire_jobs::{ClaimRequest, JobBackend, MemoryBackend};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::def::{Erased, Goto};
use crate::exec::TaskMsg;
use crate::run::Begin;
use crate::{
    BoxError, Engine, ErrorKind, Limits, MemorySink, Next, Resumed, Run, RunQuery, RunStatus,
    RunStore, Scope, Signalled, StartOptions, Step, StepCtx, StepStatus, Wait, Workflow,
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

/// Start answers before any step ran; steps run in order, each checkpointed with its input and
/// output; the same idempotency key returns the same run (after completion too), and the key is
/// scoped to the organization.
pub async fn start_runs_steps_in_order_and_is_idempotent(store: Store) {
    let wf = Workflow::builder("order", 1)
        .step(add("a", 1))
        .step(Step::new("b", |v: i64, _| async move {
            Ok::<_, BoxError>(Next::output(v * 10))
        }))
        .step(add("c", 5))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(
            &Scope::All,
            "order",
            &1,
            StartOptions::new().idempotency_key("k"),
        )
        .await
        .unwrap();
    assert!(s.created);
    assert_eq!(s.run.version, 1);
    assert!(
        !s.run.status.is_terminal(),
        "start does not run the steps inline"
    );
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output, Some(json!(25)));
    assert_eq!(active(&r), ["a", "b", "c"]);
    assert_eq!(r.steps[1].input, json!(2));
    assert_eq!(r.steps[1].output, Some(json!(20)));
    assert!(r.steps.iter().all(|s| s.attempts == 1));
    let again = e
        .start(
            &Scope::All,
            "order",
            &99,
            StartOptions::new().idempotency_key("k"),
        )
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(
        again.run.id, r.id,
        "a finished run still de-duplicates its key"
    );
    let other = e
        .start(
            &Scope::organization("acme"),
            "order",
            &1,
            StartOptions::new().idempotency_key("k"),
        )
        .await
        .unwrap();
    assert!(other.created, "another organization's key is another key");
    let unknown = e.start(&Scope::All, "nope", &1, StartOptions::new()).await;
    assert_eq!(unknown.unwrap_err().kind(), ErrorKind::NotFound);
    e.shutdown().await;
}

/// `Next::goto` skips to the named step; a goto to a step the definition lacks fails the run
/// with a clear error.
pub async fn branching_goes_to_the_named_step(store: Store) {
    let wf = Workflow::builder("branch", 1)
        .step(Step::new("a", |v: i64, _| async move {
            let next = if v > 0 { "c" } else { "nowhere" };
            Ok::<_, BoxError>(Next::output(v).goto(next))
        }))
        .step(add("b", 100))
        .step(add("c", 1))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "branch", &1, StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &s.run.id).await;
    assert_eq!(active(&r), ["a", "c"]);
    assert_eq!(r.output, Some(json!(2)));
    let s = e
        .start(&Scope::All, "branch", &-1, StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error.as_deref().unwrap_or("").contains("nowhere"),
        "{r:?}"
    );
    e.shutdown().await;
}

/// A failing step is retried by its policy (each retry a delayed job); a step that keeps failing
/// fails the run after its last retry; a non-retryable error fails at once; a panic is a failed
/// attempt.
pub async fn retry_then_success_and_exhausted_retries_fail_the_run(store: Store) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let wf = Workflow::builder("retry", 1)
        .step(
            Step::new("flaky", move |mode: String, ctx: StepCtx| {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    match mode.as_str() {
                        "twice" if ctx.attempt() <= 2 => Err::<Next<u32>, BoxError>("boom".into()),
                        "twice" => Ok(Next::output(ctx.attempt())),
                        "fatal" => Err(NonRetryableError::new("card declined").into()),
                        "panic" if ctx.attempt() == 1 => panic!("step panicked on purpose"),
                        "panic" => Ok(Next::output(ctx.attempt())),
                        _ => Err("always".into()),
                    }
                }
            })
            .retries(2)
            .backoff(Backoff::fixed(Duration::from_millis(20))),
        )
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let twice = e
        .start(&Scope::All, "retry", &"twice", StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &twice.run.id).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output, Some(json!(3)));
    assert_eq!(r.steps[0].attempts, 3);

    let always = e
        .start(&Scope::All, "retry", &"always", StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &always.run.id).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.steps[0].attempts, 3, "retries(2) = 3 attempts");
    assert_eq!(r.steps[0].status, StepStatus::Failed);
    assert!(r.error.as_deref().unwrap_or("").contains("always"));

    let before = calls.load(Ordering::SeqCst);
    let fatal = e
        .start(&Scope::All, "retry", &"fatal", StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &fatal.run.id).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(
        calls.load(Ordering::SeqCst) - before,
        1,
        "non-retryable: one attempt"
    );

    let panics = e
        .start(&Scope::All, "retry", &"panic", StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &panics.run.id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:?}");
    assert_eq!(r.output, Some(json!(2)));
    e.shutdown().await;
}

/// A sleep step and `Next::sleep` hold the run for at least their duration (never early), with
/// the run `sleeping` meanwhile.
pub async fn sleep_is_durable_and_never_early(store: Store) {
    let wf = Workflow::builder("nap", 1)
        .step(Step::new("a", |v: i64, _| async move {
            Ok::<_, BoxError>(Next::output(v).sleep(Duration::from_millis(250)))
        }))
        .sleep("nap", Duration::from_millis(300))
        .step(add("b", 1))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let t0 = Instant::now();
    let s = e
        .start(&Scope::All, "nap", &1, StartOptions::new())
        .await
        .unwrap();
    until(&e, &s.run.id, LIMIT, "sleeping", |r| {
        r.status == RunStatus::Sleeping
    })
    .await;
    let r = finished(&e, &s.run.id).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.output, Some(json!(2)));
    let a_done = r.steps[0].finished_ms.unwrap();
    let nap = &r.steps[1];
    assert!(nap.started_ms >= a_done);
    assert!(nap.finished_ms.unwrap() >= a_done + 250 + 300, "{r:#?}");
    assert!(r.steps[2].started_ms >= nap.finished_ms.unwrap());
    e.shutdown().await;
}

/// A wait parks the run; the signal's payload becomes the wait's output (`Resumed::Signal`),
/// and a wait with a timeout resumes with `Resumed::Timeout`.
pub async fn wait_resumes_with_the_payload_or_the_timeout(store: Store) {
    let wf = Workflow::builder("approve", 1)
        .step(pass("submit"))
        .wait(
            "approval",
            Wait::signal("decision").timeout(Duration::from_millis(400)),
        )
        .step(Step::new("apply", |r: Resumed<String>, _| async move {
            Ok::<_, BoxError>(Next::output(match r {
                Resumed::Signal(s) => s,
                Resumed::Timeout => "timed out".to_owned(),
            }))
        }))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "approve", &0, StartOptions::new())
        .await
        .unwrap();
    let w = until(&e, &s.run.id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    assert_eq!(w.waiting_for.as_deref(), Some("decision"));
    let (sig, _) = e
        .signal(&Scope::All, &s.run.id, "decision", &"yes", None)
        .await
        .unwrap();
    assert_eq!(sig, Signalled::Resumed);
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.output, Some(json!("yes")));
    assert_eq!(r.steps[1].output, Some(json!({"signal": "yes"})));

    let s = e
        .start(&Scope::All, "approve", &0, StartOptions::new())
        .await
        .unwrap();
    let t0 = Instant::now();
    let r = finished(&e, &s.run.id).await;
    assert!(t0.elapsed() >= Duration::from_millis(350));
    assert_eq!(r.output, Some(json!("timed out")));
    e.shutdown().await;
}

/// A signal that arrives while an earlier step still runs is stored and consumed when the run
/// reaches the wait.
pub async fn signal_before_wait_is_kept(store: Store) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let wf = Workflow::builder("early", 1)
        .step(Step::new("slow", move |v: Value, _| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok::<_, BoxError>(Next::output(v))
            }
        }))
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "early", &0, StartOptions::new())
        .await
        .unwrap();
    until(&e, &s.run.id, LIMIT, "slow running", |r| {
        r.steps
            .first()
            .is_some_and(|s| s.status == StepStatus::Running)
    })
    .await;
    let (sig, run) = e
        .signal(&Scope::All, &s.run.id, "go", &json!({"n": 1}), Some("k1"))
        .await
        .unwrap();
    assert_eq!(sig, Signalled::Queued);
    assert_eq!(run.pending_signals, 1);
    gate.notify_one();
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output, Some(json!({"signal": {"n": 1}})));
    assert_eq!(r.pending_signals, 0);
    e.shutdown().await;
}

/// The same resume key twice advances the run once; a signal to a finished run is a conflict.
pub async fn duplicate_resume_key_advances_once(store: Store) {
    let wf = Workflow::builder("twice", 1)
        .wait("first", Wait::signal("go"))
        .wait("second", Wait::signal("go"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "twice", &0, StartOptions::new())
        .await
        .unwrap();
    let id = s.run.id;
    until(&e, &id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    let (a, _) = e
        .signal(&Scope::All, &id, "go", &1, Some("k1"))
        .await
        .unwrap();
    let (b, run) = e
        .signal(&Scope::All, &id, "go", &1, Some("k1"))
        .await
        .unwrap();
    assert_eq!((a, b), (Signalled::Resumed, Signalled::Duplicate));
    assert_eq!(run.current_step.as_deref(), Some("second"));
    assert_eq!(run.status, RunStatus::Waiting);
    assert_eq!(run.pending_signals, 0, "a duplicate is not queued either");
    let (c, run) = e
        .signal(&Scope::All, &id, "go", &2, Some("k2"))
        .await
        .unwrap();
    assert_eq!(c, Signalled::Resumed);
    assert_eq!(run.status, RunStatus::Completed);
    let late = e
        .signal(&Scope::All, &id, "go", &3, Some("k3"))
        .await
        .unwrap_err();
    assert_eq!((late.kind(), late.status()), (ErrorKind::Conflict, 409));
    e.shutdown().await;
}

/// Cancel ends the run; its wait timeout and sleep timer find nothing to do when they fire;
/// signals are refused; cancelling twice is a no-op; a completed run cannot be cancelled.
pub async fn cancel_retires_waits_and_timers(store: Store) {
    let wf = Workflow::builder("stop", 1)
        .wait("w", Wait::signal("go").timeout(Duration::from_millis(200)))
        .sleep("nap", Duration::from_millis(200))
        .step(pass("after"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "stop", &0, StartOptions::new())
        .await
        .unwrap();
    until(&e, &s.run.id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    let r = e.cancel(&Scope::All, &s.run.id).await.unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    let seq = r.sequence;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = e.get(&Scope::All, &s.run.id).await.unwrap();
    assert_eq!(
        (r.status, r.sequence),
        (RunStatus::Cancelled, seq),
        "the timeout fired into a cancelled run: {r:#?}"
    );
    assert!(
        e.signal(&Scope::All, &s.run.id, "go", &1, None)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert_eq!(
        e.cancel(&Scope::All, &s.run.id).await.unwrap().sequence,
        seq
    );

    let s = e
        .start(&Scope::All, "stop", &0, StartOptions::new())
        .await
        .unwrap();
    e.signal(&Scope::All, &s.run.id, "go", &1, None)
        .await
        .unwrap();
    until(&e, &s.run.id, LIMIT, "sleeping", |r| {
        r.status == RunStatus::Sleeping
    })
    .await;
    e.cancel(&Scope::All, &s.run.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = e.get(&Scope::All, &s.run.id).await.unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    assert!(!r.steps.iter().any(|s| s.step == "after"), "{r:#?}");

    let done = Workflow::builder("done", 1)
        .step(pass("a"))
        .build()
        .unwrap();
    let e2 = engine(&store, vec![done]).await;
    let s = e2
        .start(&Scope::All, "done", &0, StartOptions::new())
        .await
        .unwrap();
    finished(&e2, &s.run.id).await;
    assert!(
        e2.cancel(&Scope::All, &s.run.id)
            .await
            .unwrap_err()
            .is_conflict()
    );
    e.shutdown().await;
    e2.shutdown().await;
}

/// A paused run lets its running attempt commit but starts no new step until unpaused; a paused
/// wait still takes its signal.
pub async fn pause_starts_no_new_step(store: Store) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let wf = Workflow::builder("hold", 1)
        .step(Step::new("a", move |v: i64, _| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok::<_, BoxError>(Next::output(v + 1))
            }
        }))
        .step(add("b", 1))
        .wait("w", Wait::signal("go"))
        .step(pass("c"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "hold", &0, StartOptions::new())
        .await
        .unwrap();
    let id = s.run.id;
    until(&e, &id, LIMIT, "a running", |r| {
        r.steps[0].status == StepStatus::Running
    })
    .await;
    let r = e.pause(&Scope::All, &id).await.unwrap();
    assert!(r.paused);
    gate.notify_one();
    let r = until(&e, &id, LIMIT, "a committed", |r| r.steps.len() == 2).await;
    assert_eq!(r.steps[0].output, Some(json!(1)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = e.get(&Scope::All, &id).await.unwrap();
    assert_eq!(r.steps[1].status, StepStatus::Pending, "{r:#?}");
    assert_eq!(r.steps[1].attempts, 0, "a paused run started b");
    e.unpause(&Scope::All, &id).await.unwrap();
    until(&e, &id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    e.pause(&Scope::All, &id).await.unwrap();
    let (sig, r) = e.signal(&Scope::All, &id, "go", &7, None).await.unwrap();
    assert_eq!(sig, Signalled::Resumed);
    assert_eq!(r.current_step.as_deref(), Some("c"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = e.get(&Scope::All, &id).await.unwrap();
    assert_eq!(r.steps.last().map(|s| s.status), Some(StepStatus::Pending));
    e.unpause(&Scope::All, &id).await.unwrap();
    let r = finished(&e, &id).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert!(e.pause(&Scope::All, &id).await.unwrap_err().is_conflict());
    e.shutdown().await;
}

/// Rewind: 409 while a step runs, 422 for an unknown or never-run step; otherwise a new
/// generation (new idempotency keys), superseded executions kept, the old wait's timeout fenced,
/// and the run continues by itself.
pub async fn rewind_is_fenced_and_continues_by_itself(store: Store) {
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let wf = Workflow::builder("rw", 1)
        .step(Step::new("a", |_: Value, ctx: StepCtx| async move {
            Ok::<_, BoxError>(Next::output(ctx.idempotency_key()))
        }))
        .step(Step::new("b", move |v: Value, _| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok::<_, BoxError>(Next::output(v))
            }
        }))
        .wait("w", Wait::signal("go").timeout(Duration::from_millis(600)))
        .step(pass("never"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "rw", &0, StartOptions::new())
        .await
        .unwrap();
    let id = s.run.id;
    until(&e, &id, LIMIT, "b running", |r| {
        r.steps
            .get(1)
            .is_some_and(|s| s.status == StepStatus::Running)
    })
    .await;
    let busy = e.rewind(&Scope::All, &id, "a", None).await.unwrap_err();
    assert_eq!((busy.kind(), busy.status()), (ErrorKind::Conflict, 409));
    gate.notify_one();
    let r = until(&e, &id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    let key0 = r.steps[0].output.clone().unwrap();
    let unknown = e.rewind(&Scope::All, &id, "zzz", None).await.unwrap_err();
    assert_eq!(
        (unknown.kind(), unknown.status()),
        (ErrorKind::UnknownStep, 422)
    );
    let never = e.rewind(&Scope::All, &id, "never", None).await.unwrap_err();
    assert_eq!(never.kind(), ErrorKind::UnknownStep);

    // Let the first generation's wait timeout come within 300 ms of firing, then rewind.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = e.rewind(&Scope::All, &id, "a", None).await.unwrap();
    assert_eq!(r.generation, 1);
    gate.notify_one();
    let r = until(&e, &id, LIMIT, "waiting again", |r| {
        r.status == RunStatus::Waiting && r.generation == 1
    })
    .await;
    assert_eq!(r.steps.iter().filter(|s| s.superseded).count(), 3, "{r:#?}");
    assert_eq!(active(&r), ["a", "b", "w"]);
    let key1 = r.steps[3].output.clone().unwrap();
    assert_ne!(key0, key1, "a rewind changes the step's idempotency key");
    assert_eq!(r.steps[0].output, Some(key0), "superseded outputs are kept");
    // The old timeout is due now; the new wait's is not: the run must still be waiting.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = e.get(&Scope::All, &id).await.unwrap();
    assert_eq!(
        r.status,
        RunStatus::Waiting,
        "an old-generation timeout fired: {r:#?}"
    );
    assert_eq!(r.steps.last().map(|s| s.generation), Some(1));
    let (sig, _) = e.signal(&Scope::All, &id, "go", &1, None).await.unwrap();
    assert_eq!(sig, Signalled::Resumed);
    let r = finished(&e, &id).await;
    assert_eq!(r.status, RunStatus::Completed);
    e.shutdown().await;
}

/// A worker that dies mid-step (its job lease lapses) loses the step to another worker, which
/// finishes the run; the dead worker's late commit is refused by its fencing token.
pub async fn crash_is_taken_over_and_the_zombie_commit_is_refused(store: Store) {
    let wf = || {
        Workflow::builder("crash", 1)
            .step(add("a", 1))
            .wait("w", Wait::signal("go"))
            .build()
            .unwrap()
    };
    let backend: Arc<dyn JobBackend> = Arc::new(MemoryBackend::new());
    let api = engine_with(
        &store,
        vec![wf()],
        backend.clone(),
        false,
        Limits::default(),
    )
    .await;
    let s = api
        .start(&Scope::All, "crash", &0, StartOptions::new())
        .await
        .unwrap();
    let id = s.run.id;

    // The zombie: claims the task job with a 300 ms lease, begins the step, then goes silent.
    let claimed = backend
        .claim(
            "workflow.crash",
            ClaimRequest::new("zombie", Vec::new(), 1, Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let job = claimed
        .jobs
        .first()
        .expect("the first step's job is queued");
    let msg: TaskMsg = serde_json::from_str(&job.data).unwrap();
    let (begin, _) = api
        .inner
        .transact(&id, None, |st, env| Ok(st.begin(env, &msg.task)))
        .await
        .unwrap();
    let Begin::Run { token, .. } = begin else {
        panic!("the zombie should hold the step, got {begin:?}");
    };

    let t0 = Instant::now();
    let worker = engine_with(&store, vec![wf()], backend, true, Limits::default()).await;
    let r = until(&worker, &id, LIMIT, "waiting after the takeover", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    assert_eq!(r.steps[0].output, Some(json!(1)));
    assert_eq!(r.steps[0].attempts, 2, "the lost attempt counts");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "taken over within the lease plus the stalled check: {:?}",
        t0.elapsed()
    );
    let late = api
        .inner
        .settle(
            &id,
            &token,
            Ok(Erased {
                output: json!(1000),
                goto: Goto::Next,
                sleep: None,
            }),
        )
        .await
        .unwrap_err();
    assert!(late.is_fenced(), "{late:?}");
    let after = api.get(&Scope::All, &id).await.unwrap();
    assert_eq!(after, r, "the zombie's commit changed the run");
    api.signal(&Scope::All, &id, "go", &1, None).await.unwrap();
    assert_eq!(finished(&worker, &id).await.status, RunStatus::Completed);
    api.shutdown().await;
    worker.shutdown().await;
}

/// Step output, step count, signal payload and queued signals are limited with a typed error at
/// the step or operation that exceeds them.
pub async fn limits_fail_the_step_that_exceeds_them(store: Store) {
    let wf = Workflow::builder("big", 1)
        .step(Step::new("blow", |n: usize, _| async move {
            Ok::<_, BoxError>(Next::output("x".repeat(n)))
        }))
        .build()
        .unwrap();
    let spin = Workflow::builder("spin", 1)
        .step(Step::new("again", |n: u32, _| async move {
            Ok::<_, BoxError>(Next::output(n + 1).goto("again"))
        }))
        .build()
        .unwrap();
    let hold = Workflow::builder("hold", 1)
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let limits = Limits::default()
        .with_max_step_output(1024)
        .with_max_steps(5)
        .with_max_pending_signals(2);
    let e = engine_with(
        &store,
        vec![wf, spin, hold],
        Arc::new(MemoryBackend::new()),
        true,
        limits,
    )
    .await;
    let s = e
        .start(&Scope::All, "big", &2000, StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.error.as_deref().unwrap_or("").contains("limit"), "{r:?}");
    assert_eq!(r.steps[0].status, StepStatus::Failed);

    let s = e
        .start(&Scope::All, "spin", &0, StartOptions::new())
        .await
        .unwrap();
    let r = finished(&e, &s.run.id).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.steps.len(), 5);
    assert!(r.error.as_deref().unwrap_or("").contains("limit"));

    let big_input = e
        .start(&Scope::All, "big", &"y".repeat(2000), StartOptions::new())
        .await;
    assert!(big_input.unwrap_err().is_limit());
    let s = e
        .start(&Scope::All, "hold", &0, StartOptions::new())
        .await
        .unwrap();
    let big = e
        .signal(&Scope::All, &s.run.id, "go", &"z".repeat(2000), None)
        .await;
    assert_eq!(big.unwrap_err().status(), 413);
    e.signal(&Scope::All, &s.run.id, "other", &1, None)
        .await
        .unwrap();
    e.signal(&Scope::All, &s.run.id, "other", &2, None)
        .await
        .unwrap();
    let full = e.signal(&Scope::All, &s.run.id, "other", &3, None).await;
    assert!(full.unwrap_err().is_limit());
    e.shutdown().await;
}

/// `ctx.memo` runs its sub-operation once across retries of the step, and again after a rewind
/// (a new generation is a new operation).
pub async fn memo_runs_once_per_generation(store: Store) {
    let charges = Arc::new(AtomicU32::new(0));
    let c = charges.clone();
    let wf = Workflow::builder("memo", 1)
        .step(
            Step::new("charge", move |_: Value, ctx: StepCtx| {
                let c = c.clone();
                async move {
                    let receipt: u32 = ctx
                        .memo("charge", async {
                            Ok::<_, BoxError>(c.fetch_add(1, Ordering::SeqCst) + 1)
                        })
                        .await?;
                    if ctx.attempt() == 1 {
                        return Err::<Next<u32>, BoxError>("lost the response".into());
                    }
                    Ok(Next::output(receipt))
                }
            })
            .retries(2)
            .backoff(Backoff::fixed(Duration::from_millis(10))),
        )
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let s = e
        .start(&Scope::All, "memo", &0, StartOptions::new())
        .await
        .unwrap();
    let r = until(&e, &s.run.id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    assert_eq!(r.steps[0].attempts, 2);
    assert_eq!(r.steps[0].output, Some(json!(1)));
    assert_eq!(
        charges.load(Ordering::SeqCst),
        1,
        "the retry re-used the memo"
    );
    e.rewind(&Scope::All, &s.run.id, "charge", None)
        .await
        .unwrap();
    let r = until(&e, &s.run.id, LIMIT, "waiting again", |r| {
        r.status == RunStatus::Waiting && r.generation == 1
    })
    .await;
    assert_eq!(charges.load(Ordering::SeqCst), 2);
    assert_eq!(r.steps[2].output, Some(json!(2)));
    e.shutdown().await;
}

/// A run keeps its pinned version number; when it reaches a step the registered (newer) version
/// no longer has, it fails with an error naming the step and both versions.
pub async fn a_step_missing_in_the_new_version_stops_the_run(store: Store) {
    let v1 = Workflow::builder("ver", 1)
        .wait("w", Wait::signal("go"))
        .step(pass("old"))
        .build()
        .unwrap();
    let e1 = engine(&store, vec![v1]).await;
    let s = e1
        .start(&Scope::All, "ver", &0, StartOptions::new())
        .await
        .unwrap();
    let id = s.run.id;
    until(&e1, &id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    e1.pause(&Scope::All, &id).await.unwrap();
    e1.signal(&Scope::All, &id, "go", &1, None).await.unwrap();
    e1.shutdown().await;

    let v2 = Workflow::builder("ver", 2)
        .wait("w", Wait::signal("go"))
        .step(pass("new"))
        .build()
        .unwrap();
    let e2 = engine(&store, vec![v2]).await;
    assert_eq!(e2.get(&Scope::All, &id).await.unwrap().version, 1);
    e2.unpause(&Scope::All, &id).await.unwrap();
    let r = finished(&e2, &id).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("\"old\"") && err.contains("version 2") && err.contains("version 1"),
        "{err}"
    );
    let fresh = e2
        .start(&Scope::All, "ver", &0, StartOptions::new())
        .await
        .unwrap();
    assert_eq!(fresh.run.version, 2);
    e2.shutdown().await;
}

/// Listing is paged in id order (start order to the millisecond) and filtered by workflow and status; a scoped caller sees only
/// its organization's runs, and another organization's run is not found for every operation.
pub async fn list_is_paged_and_scoped_by_organization(store: Store) {
    let wf = Workflow::builder("lst", 1)
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let e = engine(&store, vec![wf]).await;
    let acme = Scope::organization("acme");
    let globex = Scope::organization("globex");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            e.start(&acme, "lst", &0, StartOptions::new())
                .await
                .unwrap()
                .run
                .id,
        );
    }
    let theirs = e
        .start(&globex, "lst", &0, StartOptions::new())
        .await
        .unwrap()
        .run
        .id;
    e.start(&Scope::All, "lst", &0, StartOptions::new())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut q = RunQuery::new(2).workflow("lst");
    loop {
        let page = e.list(&acme, q.clone()).await.unwrap();
        assert!(page.runs.len() <= 2);
        seen.extend(page.runs.iter().map(|r| r.id.clone()));
        match page.next {
            Some(n) => q = q.after(n),
            None => break,
        }
    }
    // Ids sort by start time at millisecond resolution; within a millisecond, by chance.
    ids.sort();
    assert_eq!(seen, ids, "every acme run once, in id order");
    let mut sneaky = RunQuery::new(100);
    sneaky.organization = Some("globex".to_owned());
    let page = e.list(&acme, sneaky).await.unwrap();
    assert!(
        page.runs
            .iter()
            .all(|r| r.organization.as_deref() == Some("acme"))
    );
    let all = e
        .list(&Scope::All, RunQuery::new(100).workflow("lst"))
        .await
        .unwrap();
    assert_eq!(all.runs.len(), 7);
    e.signal(&acme, &ids[0], "go", &1, None).await.unwrap();
    finished(&e, &ids[0]).await;
    let waiting = e
        .list(&acme, RunQuery::new(100).status(RunStatus::Waiting))
        .await
        .unwrap();
    assert_eq!(waiting.runs.len(), 4);

    assert!(e.get(&acme, &theirs).await.unwrap_err().is_not_found());
    assert!(
        e.signal(&acme, &theirs, "go", &1, None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(e.cancel(&acme, &theirs).await.unwrap_err().is_not_found());
    assert!(e.pause(&acme, &theirs).await.unwrap_err().is_not_found());
    assert!(
        e.rewind(&acme, &theirs, "w", None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        e.journal(&acme, &theirs, 0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        e.get(&globex, &theirs).await.unwrap().status,
        RunStatus::Waiting
    );
    e.shutdown().await;
}

/// Every transition reaches the sink as `workflow.<id>.<transition>` with the run id as stream
/// and a per-run sequence 1, 2, 3…; the journal replays the ones after a given sequence.
pub async fn transitions_carry_a_per_run_sequence(store: Store) {
    let sink = Arc::new(MemorySink::new());
    let wf = Workflow::builder("seq", 1)
        .step(add("a", 1))
        .wait("w", Wait::signal("go"))
        .build()
        .unwrap();
    let e = Engine::builder()
        .store_shared(store.clone())
        .sink_shared(sink.clone())
        .workflow(wf)
        .build()
        .await
        .unwrap();
    let s = e
        .start(&Scope::organization("acme"), "seq", &0, StartOptions::new())
        .await
        .unwrap();
    until(&e, &s.run.id, LIMIT, "waiting", |r| {
        r.status == RunStatus::Waiting
    })
    .await;
    e.signal(&Scope::All, &s.run.id, "go", &1, None)
        .await
        .unwrap();
    let r = finished(&e, &s.run.id).await;
    let mut events = sink.events_of(&s.run.id);
    events.sort_by_key(|e| e.version);
    let seqs: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(seqs, (1..=r.sequence).collect::<Vec<_>>());
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let expect = [
        "workflow.seq.started",
        "workflow.seq.step_started",
        "workflow.seq.step_completed",
        "workflow.seq.waiting",
        "workflow.seq.resumed",
        "workflow.seq.step_completed",
        "workflow.seq.completed",
    ];
    assert_eq!(names, expect);
    assert!(events.iter().all(|e| e.organization_id() == Some("acme")));
    assert!(events.iter().all(|e| e.data["runId"] == json!(s.run.id)));
    let replay = e.journal(&Scope::All, &s.run.id, 3).await.unwrap();
    assert_eq!(
        replay.iter().map(|e| e.version).collect::<Vec<_>>(),
        (4..=r.sequence).collect::<Vec<_>>()
    );
    e.shutdown().await;
}
