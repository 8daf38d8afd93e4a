//! The conformance suite on the Redis run store, against a real redis-server per case.

use std::sync::Arc;

use hookwire_testkit::RedisServer;
use hookwire_workflow::RedisRunStore;
use hookwire_workflow::conformance::Store;

hookwire_workflow::workflow_conformance!(async {
    let server = RedisServer::start().expect("redis-server");
    let store = RedisRunStore::connect(&server.url())
        .await
        .expect("connect");
    (Arc::new(store) as Store, server)
});

/// A durable timer outlives the engine that set it: a new engine (new job queue, new connection)
/// re-queues the run's task when it starts, and the sleep still ends no earlier than due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_wakes_on_time_after_an_engine_restart() {
    use std::time::{Duration, Instant};

    use hookwire_workflow::{
        BoxError, Engine, Next, RunStatus, Scope, StartOptions, Step, Workflow,
    };
    use serde_json::{Value, json};

    let server = RedisServer::start().expect("redis-server");
    let wf = || {
        Workflow::builder("nap", 1)
            .sleep("nap", Duration::from_millis(800))
            .step(Step::new("after", |v: Value, _| async move {
                Ok::<_, BoxError>(Next::output(v))
            }))
            .build()
            .unwrap()
    };
    let first = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .workflow(wf())
        .build()
        .await
        .unwrap();
    let t0 = Instant::now();
    let run = first
        .start(&Scope::All, "nap", &json!(7), StartOptions::new())
        .await
        .unwrap()
        .run;
    assert_eq!(run.status, RunStatus::Sleeping);
    first.shutdown().await;
    drop(first);

    let second = Engine::builder()
        .store(RedisRunStore::connect(&server.url()).await.unwrap())
        .workflow(wf())
        .build()
        .await
        .unwrap();
    let done = second
        .wait_for(&Scope::All, &run.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "woke early: {:?}",
        t0.elapsed()
    );
    assert!(done.steps[0].finished_ms.unwrap() >= done.steps[0].started_ms + 800);
    second.shutdown().await;
}
