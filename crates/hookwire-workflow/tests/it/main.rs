//! The engine's conformance suite on the memory store, and the signal race at scale.

use std::sync::Arc;

use hookwire_workflow::MemoryRunStore;
use hookwire_workflow::conformance::Store;

#[cfg(feature = "events")]
mod bus;
mod carry;
mod redis_store;
mod routes;
mod signals;

hookwire_workflow::workflow_conformance!(async { (Arc::new(MemoryRunStore::new()) as Store, ()) });

/// Dropping an engine without `shutdown` must not leave workers that swallow other engines'
/// tasks: a run started afterwards on the same queue still completes on a live engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_engine_does_not_swallow_tasks() {
    use std::time::Duration;

    use hookwire_jobs::{JobBackend, MemoryBackend};
    use hookwire_workflow::{
        BoxError, Engine, Next, RunStatus, Scope, StartOptions, Step, Workflow,
    };

    let store: Store = Arc::new(MemoryRunStore::new());
    let backend: Arc<dyn JobBackend> = Arc::new(MemoryBackend::new());
    let wf = || {
        Workflow::builder("d", 1)
            .step(Step::new("a", |v: u32, _| async move {
                Ok::<_, BoxError>(Next::output(v + 1))
            }))
            .build()
            .unwrap()
    };
    let build = |workers: bool| {
        Engine::builder()
            .store_shared(store.clone())
            .jobs_backend(backend.clone())
            .workflow(wf())
            .workers(workers)
            .build()
    };
    drop(build(true).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Built before the runs start, so its start-up re-queueing cannot rescue a swallowed task.
    let live = build(true).await.unwrap();
    let api = build(false).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            api.start(&Scope::All, "d", &i, StartOptions::new())
                .await
                .unwrap()
                .run
                .id,
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for id in ids {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let done = live.wait_for(&Scope::All, &id, left).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    }
    // The last attempts finish as shutdown begins: it returns once their outcomes are stored,
    // without sitting out the job layer's 10 s grace.
    let t = std::time::Instant::now();
    live.shutdown().await;
    api.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
}

/// Task retries never run out, so their backoff must stay bounded: `build` refuses one whose
/// delay can grow past an hour, and takes a capped one.
#[tokio::test]
async fn the_task_backoff_must_be_capped() {
    use std::time::Duration;

    use hookwire_core::Backoff;
    use hookwire_workflow::{BoxError, Engine, ErrorKind, Next, Step, Workflow};

    let wf = || {
        Workflow::builder("b", 1)
            .step(Step::new("a", |v: u32, _| async move {
                Ok::<_, BoxError>(Next::output(v))
            }))
            .build()
            .unwrap()
    };
    let uncapped = Engine::builder()
        .workflow(wf())
        .task_backoff(Backoff::exponential(Duration::from_millis(100)))
        .build()
        .await
        .unwrap_err();
    assert_eq!(uncapped.kind(), ErrorKind::Config, "{uncapped}");
    let capped = Engine::builder()
        .workflow(wf())
        .task_backoff(
            Backoff::exponential(Duration::from_millis(100)).with_max(Duration::from_secs(60)),
        )
        .build()
        .await
        .unwrap();
    capped.shutdown().await;
}
