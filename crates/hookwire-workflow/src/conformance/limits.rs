//! Cases on the limits a run is held to.

use std::sync::Arc;

use hookwire_jobs::MemoryBackend;

use super::{Store, engine_with, finished};
use crate::{
    BoxError, Limits, Next, RunStatus, Scope, StartOptions, Step, StepStatus, Wait, Workflow,
};

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
