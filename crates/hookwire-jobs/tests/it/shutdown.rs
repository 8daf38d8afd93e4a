//! Shutdown returns as soon as the last running job's outcome is stored: it does not sit out
//! the rest of the grace period once nothing is left to wait for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwire_jobs::{DispatchOptions, JobDef, Jobs, MemoryBackend};
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_once_a_job_finishing_during_it_is_acknowledged() {
    let started = Arc::new(Notify::new());
    let s = started.clone();
    let def = JobDef::new("finishing", move |_: u8, _| {
        let s = s.clone();
        async move {
            s.notify_one();
            // Still running when shutdown begins; done long before the grace (10 s) is over.
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, std::io::Error>(())
        }
    })
    // A claim that comes back short of its batch leaves nothing to claim: the loop then
    // waits for a job, a wake-up or a timer.
    .concurrency(8)
    .batch(8);
    let backend = Arc::new(MemoryBackend::new());
    let jobs = Jobs::builder_shared(backend.clone())
        .job(def)
        .start()
        .await
        .unwrap();
    let id = jobs
        .dispatch("finishing", &1u8, DispatchOptions::new())
        .await
        .unwrap()
        .id;
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the job started");
    let t = Instant::now();
    jobs.shutdown().await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown waited {took:?} for a job that finished after 300 ms"
    );
    let counts = jobs.counts("finishing").await.unwrap();
    assert_eq!(
        counts.completed, 1,
        "the job's outcome was stored: {counts:?}; job {id}"
    );
}
