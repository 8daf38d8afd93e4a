//! Cases on what runs again and what runs once: a crashed worker's step taken over with its
//! late commit fenced, and `ctx.memo` once per generation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hookwire_core::Backoff;
use hookwire_jobs::{ClaimRequest, JobBackend, MemoryBackend};
use serde_json::{Value, json};

use super::{LIMIT, Store, add, engine, engine_with, finished, until};
use crate::def::{Erased, Goto};
use crate::exec::TaskMsg;
use crate::run::Begin;
use crate::{
    BoxError, Limits, Next, RunStatus, Scope, StartOptions, Step, StepCtx, Wait, Workflow,
};

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
