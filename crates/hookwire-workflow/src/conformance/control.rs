//! Cases on operator control: cancel, pause and unpause, rewind.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::{LIMIT, Store, active, add, engine, finished, pass, until};
use crate::{
    BoxError, ErrorKind, Next, RunStatus, Scope, Signalled, StartOptions, Step, StepCtx,
    StepStatus, Wait, Workflow,
};

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
