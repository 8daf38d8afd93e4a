//! Cases on a run's normal life: steps in order, idempotent starts, branching, retries,
//! durable sleeps and a definition version that lost a step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hookwire_core::{Backoff, NonRetryableError};
use serde_json::json;

use super::{LIMIT, Store, active, add, engine, finished, pass, until};
use crate::{
    BoxError, ErrorKind, Next, RunStatus, Scope, StartOptions, Step, StepCtx, StepStatus, Wait,
    Workflow,
};

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
                        // An unwind without the panic hook: `panic!` would make the hook
                        // capture and print a backtrace on this runtime thread first, which
                        // with RUST_BACKTRACE=1 on a loaded machine blocked the worker for
                        // seconds (the case then timed out at 10 s now and then).
                        "panic" if ctx.attempt() == 1 => {
                            std::panic::resume_unwind(Box::new("step panicked on purpose"))
                        }
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
