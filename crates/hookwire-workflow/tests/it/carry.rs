//! A step due at once after the step before it runs in the same task job (no job of its own);
//! when the process running that job dies mid-step, the job's lease lapses, the job is
//! delivered again and the step is taken over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwire_jobs::{JobBackend, JobState, MemoryBackend};
use hookwire_workflow::conformance::Store;
use hookwire_workflow::{
    BoxError, Engine, MemoryRunStore, Next, RunStatus, Scope, StartOptions, Step, StepCtx, Workflow,
};

/// `first` (a code step, or a sleep), then `b` (whose first attempt never ends), then `c`.
fn carry(first: &str) -> Workflow {
    let b = Workflow::builder("carry", 1);
    let b = if first == "sleep" {
        b.sleep("a", Duration::from_millis(100))
    } else {
        b.step(Step::new("a", |v: u32, _| async move {
            Ok::<_, BoxError>(Next::output(v + 1))
        }))
    };
    b.step(Step::new("b", |v: u32, ctx: StepCtx| async move {
        if ctx.attempt() == 1 {
            // The first attempt never ends: its process dies under it.
            std::future::pending::<()>().await;
        }
        Ok::<_, BoxError>(Next::output(v + 10))
    }))
    .step(Step::new("c", |v: u32, _| async move {
        Ok::<_, BoxError>(Next::output(v + 100))
    }))
    .build()
    .unwrap()
}

async fn worker(store: &Store, backend: &Arc<dyn JobBackend>, first: &str) -> Engine {
    Engine::builder()
        .store_shared(store.clone())
        .jobs_backend(backend.clone())
        .workflow(carry(first))
        .lease(Duration::from_millis(300))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_step_whose_process_dies_is_taken_over_after_the_lease() {
    dies_in_a_carried_step("step", 111, [1, 2, 1]).await;
}

/// A sleep's wake-up job carries the step after the sleep the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_step_after_a_sleep_runs_in_the_wake_up_job_and_is_taken_over_when_it_dies() {
    dies_in_a_carried_step("sleep", 110, [0, 2, 1]).await;
}

async fn dies_in_a_carried_step(kind: &str, output: u32, attempts: [u32; 3]) {
    let store: Store = Arc::new(MemoryRunStore::new());
    let backend: Arc<dyn JobBackend> = Arc::new(MemoryBackend::new());

    // The doomed process: its own runtime (built on a thread of its own: a runtime cannot be
    // entered from this one), stopped later without any shutdown.
    let (s, b, k) = (store.clone(), backend.clone(), kind.to_owned());
    let (doomed, first, id) = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (e, id) = rt.block_on(async move {
            let e = worker(&s, &b, &k).await;
            let id = e
                .start(&Scope::All, "carry", &0u32, StartOptions::new())
                .await
                .unwrap()
                .run
                .id;
            (e, id)
        });
        (rt, e, id)
    })
    .join()
    .unwrap();
    let t0 = Instant::now();
    loop {
        let r = first.get(&Scope::All, &id).await.unwrap();
        if r.current_step.as_deref() == Some("b") && r.steps[1].attempts == 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "step b never began: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Step b runs in the job that ran step a (or woke the sleep): no job was queued for it.
    let counts = backend.counts("workflow.carry").await.unwrap();
    assert_eq!(
        (counts.waiting, counts.active, counts.delayed),
        (0, 1, 0),
        "{counts:?}"
    );
    // The one active job is the run's first task's (`<run>.t1`: run step a, or wake the run).
    let job = backend
        .get("workflow.carry", &format!("{id}.t1"))
        .await
        .unwrap()
        .expect("the first task's job");
    assert_eq!(job.state, JobState::Active);
    // Its tasks stop where they are: no release, no acknowledgement, the lease just lapses.
    doomed.shutdown_background();

    let t1 = Instant::now();
    let second = worker(&store, &backend, kind).await;
    let done = second
        .wait_for(&Scope::All, &id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    assert_eq!(done.output, Some(serde_json::json!(output)));
    let made: Vec<u32> = done.steps.iter().map(|s| s.attempts).collect();
    assert_eq!(made, attempts, "only the step that died ran again");
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "taken over after {:?} (lease 300 ms)",
        t1.elapsed()
    );
    second.shutdown().await;
    drop(first);
}
